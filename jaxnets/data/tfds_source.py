"""The tensorflow-datasets path of the data layer: its cache and its downloads, without TensorFlow.

`sources.load` calls `load_cached` (read a split already prepared in the tfds data dir) and,
when that finds nothing, `download_and_load` (download, verify, prepare, read back).

Design:
- The builders (`tfds_builders`, one per registry entry, named `jaxnets_<name>`) parse the
  downloaded files with the registry entry's reader and write `array_record`; that module
  imports tensorflow_datasets and is imported only here, lazily, so `import jaxnets` and a
  cache miss never import tfds. Cached splits are read in one batch and decoded in bulk (~3x
  faster than tfds' per-example decoding; a test checks both agree).
- Downloads are ours, not tfds' `DownloadManager` (which has no timeout: a host that accepts
  the connection and then stalls hung it for good): every read waits at most `read_timeout`
  seconds, the whole download ends by `deadline` seconds, and the bytes are checked against
  the registered size and sha256 while they arrive. A file is written under a unique
  temporary name (`jaxnets.atomic`) and renamed only once verified, so the cache
  (`<tfds_dir>/downloads/<builder>/<sha256>.<file>`) holds only verified files, a failure or
  an interrupt leaves nothing behind, and what a killed download left is deleted by the next.
- Quiet: tfds' preparation prints (its progress bars, its 'Downloading and preparing' lines)
  are silenced: jaxnets prints nothing.
- Checksums: the official (size, sha256) of every file ship in `checksums/<name>.tsv` (copied
  from tfds' own url_checksums; CIFAR-10's binary tarball is among them), and validation is
  forced: a file without a registered checksum is never accepted. An explicit override,
  `checksums={filename: (size, sha256)}` (or a tsv path), replaces entries for mirrors that
  re-pack files (Debian's Fashion-MNIST is re-gzipped: same contents, other bytes). `load()` has
  no such argument; it reaches the override through the environment variable
  `JAXNETS_DATA_CHECKSUMS` (a tsv path), read at call time, never cached in module state.
- Mirrors: `mirror` (default: environment variable `JAXNETS_DATA_MIRROR`) is an http(s) base
  URL replacing the official hosts: file `f` is fetched from `<mirror>/<f>`; `{name}` in it
  becomes the dataset name, so one setting can serve all datasets from sub-folders.
- Redirects are followed to http:// and https:// only (urllib would follow one to ftp://),
  at most 10, a loop said in one line.
- Offline: before downloading, the first file not already cached is probed with a short,
  thread-bounded timeout (DNS lookups ignore socket timeouts), so with no network it fails
  within ~3.5 s with `DataUnavailable` listing the ways to get the data. The probe asks with
  HEAD and, when the host answers that with an error (some mirrors serve GET only), with GET. A checksum mismatch, a
  transfer cut short or a file that does not parse is a `DataError` naming the file; a failed
  preparation leaves no prepared folder behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

import numpy as np

from jaxnets import atomic
from jaxnets.data import registry
from jaxnets.errors import ConfigError, DataError, DataUnavailable

MIRROR_ENV = "JAXNETS_DATA_MIRROR"
CHECKSUMS_ENV = "JAXNETS_DATA_CHECKSUMS"
VERSION = registry.TFDS_VERSION
# The probe waits this long for the first byte of an answer; the whole check is bounded a bit
# above it by a thread join, because DNS lookups ignore socket timeouts.
PROBE_TIMEOUT_S = 3.0
# A download fails when no byte arrives for READ_TIMEOUT_S, or when all of it takes longer than
# DEADLINE_S (CIFAR-10's 170 MB at 1 Mbit/s take about 23 minutes).
READ_TIMEOUT_S = 30.0
DEADLINE_S = 3600.0
_SHA256 = re.compile(r"[0-9a-f]{64}")

# filename -> (size in bytes, sha256 hex digest)
Checksums = Mapping[str, tuple[int, str]]
ChecksumsArg = Checksums | str | os.PathLike | None


def _parse_checksums(text: str, origin: str) -> dict[str, tuple[int, str]]:
    """Parse tsv lines `url-or-filename, size, sha256[, filename]`, keyed by url or file name."""
    out = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) not in (3, 4) or not cols[1].isdigit() or not _SHA256.fullmatch(cols[2]):
            raise ConfigError(
                f"{origin}:{number}: expected 'url-or-filename<TAB>size<TAB>sha256[<TAB>filename]'"
                f", got {line!r}; fix that line")
        out[cols[0]] = (int(cols[1]), cols[2])
    return out


def read_checksums(path: str | os.PathLike) -> dict[str, tuple[int, str]]:
    """Read a checksums tsv (tfds' url_checksums format or filename lines): key -> (size, sha256).

    A key is the line's first column: a URL (matched against the URL actually fetched, so one
    file can describe MNIST and Fashion-MNIST, whose file names are the same) or a file name.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"checksums file {path}: cannot read ({e.strerror}); check the path "
                          f"(given directly or through ${CHECKSUMS_ENV})") from e
    return _parse_checksums(text, path)


def official_files(name: str) -> dict[str, tuple[str, int, str]]:
    """The official files of a dataset: filename -> (url, size, sha256), from checksums/*.tsv."""
    return registry.entry(name).official_files()


def _resolve_files(name: str, mirror: str | None,
                   checksums: ChecksumsArg) -> dict[str, tuple[str, int, str]]:
    """filename -> (url to fetch, expected size, expected sha256), mirror and override applied."""
    files = official_files(name)
    if mirror is not None:
        if not re.match(r"https?://", mirror):
            raise ConfigError(f"mirror {mirror!r}: must be an http:// or https:// base URL; for "
                              "files already on disk pass data_dir instead")
        # '{name}' lets one mirror setting serve all datasets (MNIST and Fashion-MNIST files
        # have the same names, so they cannot share a folder).
        base = mirror.replace("{name}", name).rstrip("/")
        files = {f: (f"{base}/{f}", size, sha) for f, (_, size, sha) in files.items()}
    if checksums is None:
        return files
    # An explicit mapping must only name this dataset's files; a tsv file may cover others too.
    strict = not isinstance(checksums, (str, os.PathLike))
    if not strict:
        checksums = read_checksums(checksums)
    by_url = {url: f for f, (url, _, _) in files.items()}
    # File-name keys first, so that a URL key (more specific) wins for the same file.
    for key, value in sorted(checksums.items(), key=lambda item: "://" in item[0]):
        filename = by_url.get(key, key if key in files else None)
        if filename is None:
            if strict:
                raise ConfigError(f"checksums override names {key!r}, not a file of {name}; "
                                  f"its files are {', '.join(sorted(files))}")
            continue
        try:
            size, sha = int(value[0]), str(value[1]).lower()
        except (TypeError, ValueError, IndexError):
            size, sha = -1, ""
        if size < 0 or not _SHA256.fullmatch(sha):
            raise ConfigError(f"checksums override for {filename}: expected (size, sha256 hex), "
                              f"got {value!r}")
        files[filename] = (files[filename][0], size, sha)
    return files


def _version_dir(name: str, tfds_dir: str) -> str:
    return os.path.join(os.fspath(tfds_dir), registry.entry(name).tfds_name, VERSION)


def _maybe_prepared(name: str, tfds_dir: str) -> bool:
    """Cheap test, no tfds import: has a preparation of this builder version finished here?"""
    # tfds writes dataset_info.json last, inside an incomplete.* folder renamed on success.
    return os.path.isfile(os.path.join(_version_dir(name, tfds_dir), "dataset_info.json"))


def _ways(name: str) -> str:
    return (f"{registry.entry(name).how_to_get()}; or set ${MIRROR_ENV} (or pass mirror=) to the "
            "base URL of a mirror serving the files")


def _read_prepared(builder, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read a prepared split through the builder's array_record data source, decoded in bulk."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.proto import tf_example_pb2

    def corrupt(why: str) -> DataError:
        return DataError(f"{builder.data_dir}: the prepared {name} {split} split is unreadable "
                         f"({why}); delete that folder to download and prepare it again")

    try:
        source = builder.as_data_source(
            split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
        records = source.__getitems__(range(len(source)))  # one batched read, not N calls
        # tfds' own per-example decoding costs ~40 us an example (2.6 s for 60000 images);
        # parsing the tf.train.Example protos here and joining the pixel bytes once is ~4x
        # faster. Test `test_bulk_decoding_equals_tfds_decoding` checks both agree.
        parse = tf_example_pb2.Example.FromString
        pixels, labels = [], np.empty(len(records), np.int64)
        for i, record in enumerate(records):
            feature = parse(record).features.feature
            pixels.append(feature["image"].bytes_list.value[0])
            labels[i] = feature["label"].int64_list.value[0]
    except (OSError, ValueError, RuntimeError, KeyError, IndexError) as e:
        raise corrupt(str(e)) from e
    shape = registry.entry(name).shape
    size = int(np.prod(shape))
    if any(len(p) != size for p in pixels):
        raise corrupt(f"an image is not {size} bytes")
    if labels.size and not (0 <= labels.min() and labels.max() <= 9):
        raise corrupt("a label outside 0..9")
    images = np.frombuffer(b"".join(pixels), np.uint8).reshape(len(pixels), *shape)
    return images, labels.astype(np.int32)


def load_cached(name: str, split: str, tfds_dir: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A split already prepared in tfds_dir as (uint8[N,H,W,C], int32[N]), None if absent."""
    registry.entry(name)
    registry.check_split(split)
    tfds_dir = os.path.expanduser(os.fspath(tfds_dir))
    if not _maybe_prepared(name, tfds_dir):
        return None  # without importing tfds: this is the common, must-be-fast case
    builder = _builders().BUILDERS[name](data_dir=tfds_dir)
    if not builder.is_prepared():
        return None
    return _read_prepared(builder, name, split)


def _one_line(text: object) -> str:
    """A server's or urllib's words on one line (urllib's redirect-loop error is three)."""
    return " ".join(str(text).split())


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, to http:// and https:// only (urllib's own also follows ftp://,
    where no timeout or checksum policy of ours was meant to apply), the loop said in one
    line."""

    max_redirections = 10
    inf_msg = "too many redirects (a redirect loop?); the last answer: "

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.URLError(f"redirected to {newurl}, which is not an http:// or "
                                        "https:// URL (not followed)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# The one opener of every request here (urlopen's default one follows redirects to ftp://).
_OPENER = urllib.request.build_opener(_HttpRedirects)


def _why(e: BaseException) -> str:
    """Why a request failed, in one line."""
    if isinstance(e, urllib.error.HTTPError):
        return _one_line(f"HTTP {e.code} {e.reason}")
    return _one_line(getattr(e, "reason", e))


def _answered(e: BaseException) -> bool:
    """Whether a failed request reached an HTTP server (an error status, a hang-up, a bad
    status line), rather than no server (DNS, refused, timed out) or a refused redirect."""
    if isinstance(e, (urllib.error.HTTPError, http.client.HTTPException)):
        return True
    return isinstance(e, urllib.error.URLError) and isinstance(e.reason,
                                                                http.client.HTTPException)


def _builders():
    """The tfds_builders module (it imports tensorflow_datasets, slowly), once no other import
    of ours is running: tensorflow_datasets' import swaps `builtins.__import__` for the whole
    process for a while (etils' lazy_imports), and matplotlib, which `jaxnets.plots.preload`
    imports in a background thread, then failed now and then ('Relative import statements not
    supported'), leaving a half-imported matplotlib whose first plot was a traceback."""
    plots = sys.modules.get("jaxnets.plots")   # (not imported for this: it imports nothing)
    if plots is not None:
        plots.wait_for_preload()
    from jaxnets.data import tfds_builders

    return tfds_builders


def _probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if url answers, else why not; bounded in time even for DNS lookups."""
    outcome: list[str | None] = []

    def ask(method: str) -> None:
        with _OPENER.open(urllib.request.Request(url, method=method,
                                                 headers={"User-Agent": "jaxnets"}),
                          timeout=timeout):
            pass   # the status line and headers are the answer; the body is not read

    def attempt() -> None:
        # HEAD: the headers say whether the file is there without sending its body. A host
        # that answers HEAD with an error status, or hangs up on it, may still serve GET
        # (some mirrors refuse HEAD with 403): then GET decides.
        for method in ("HEAD", "GET"):
            try:
                ask(method)
                outcome.append(None)
                return
            except (OSError, ValueError, http.client.HTTPException) as e:
                if method == "GET" or not _answered(e):
                    outcome.append(_why(e))
                    return

    thread = threading.Thread(target=attempt, daemon=True)  # daemon: a hung lookup is abandoned
    thread.start()
    thread.join(2 * timeout + 0.5)   # HEAD, then maybe GET
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _download_dir(name: str, tfds_dir: str) -> str:
    return os.path.join(tfds_dir, "downloads", registry.entry(name).tfds_name)


def _cache_path(download_dir: str, filename: str, sha: str) -> str:
    # Keyed by the expected digest: a file verified against other checksums is not reused.
    return os.path.join(download_dir, f"{sha}.{filename}")


def _fetch(name: str, filename: str, url: str, size: int, sha: str, path: str, *,
           read_timeout: float, deadline: float) -> None:
    """Download url to path, verifying size and sha256; nothing is left at path on failure.

    Every socket read waits at most read_timeout seconds; past time.monotonic() == deadline the
    download stops. Bytes go to a unique temporary name renamed once verified.
    """
    digest, got = hashlib.sha256(), 0

    def unavailable(why: str) -> DataUnavailable:
        return DataUnavailable(f"{filename}: download from {url} failed ({why}); {_ways(name)}")

    try:
        request = urllib.request.Request(url, headers={"User-Agent": "jaxnets"})
        with atomic.replacing(path) as tmp:
            with _OPENER.open(request, timeout=read_timeout) as response, \
                    open(tmp, "wb") as out:
                while True:
                    if time.monotonic() > deadline:
                        raise unavailable(f"not finished by the deadline, {got} of {size} "
                                          "bytes received")
                    # read1: at most one socket read, so the deadline is checked between reads.
                    block = response.read1(1 << 20)
                    if not block:
                        if response.length:  # the connection closed before Content-Length bytes
                            raise DataError(
                                f"{filename}: the download from {url} was cut short ({got} of "
                                f"{got + response.length} announced bytes); retry")
                        break
                    got += len(block)
                    if got > size:
                        break  # longer than the registered file: the checksum check says so
                    digest.update(block)
                    out.write(block)
            if got != size or digest.hexdigest() != sha:
                seen = f"got more than {size} bytes" if got > size else (
                    f"got {got} bytes, sha256 {digest.hexdigest()}")
                raise DataError(
                    f"{filename} downloaded from {url} does not match its registered checksum "
                    f"(expected {size} bytes, sha256 {sha}; {seen}): the download is corrupt or "
                    "truncated, or the mirror serves other bytes; retry, or pass that file's "
                    f"checksums (checksums= or ${CHECKSUMS_ENV}) if you trust the mirror")
    except DataUnavailable:   # (ours, above: an OSError too, not to be wrapped again)
        raise
    except urllib.error.HTTPError as e:
        raise unavailable(_why(e)) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", e)  # urlopen wraps a connect time-out in a URLError
        if isinstance(reason, TimeoutError):
            reason = (f"no data for {read_timeout:g} s, {got} of {size} bytes received; the "
                      "host stalled")
        raise unavailable(_one_line(reason)) from None


def download_and_load(
    name: str,
    split: str,
    tfds_dir: str,
    mirror: str | None = None,
    *,
    checksums: ChecksumsArg = None,
    read_timeout: float = READ_TIMEOUT_S,
    deadline: float = DEADLINE_S,
) -> tuple[np.ndarray, np.ndarray]:
    """Download a dataset (no TensorFlow), prepare it for tfds as array_record, read a split.

    Args:
      name: a registered dataset ('mnist', 'fashion_mnist' or 'cifar10').
      split: 'train' or 'test'.
      tfds_dir: the tfds data dir; downloads go to <tfds_dir>/downloads, the prepared data to
        <tfds_dir>/jaxnets_<name>/<VERSION>.
      mirror: http(s) base URL serving the files instead of the official hosts; file f is
        fetched from <mirror>/f, and '{name}' in it becomes the dataset name (default
        $JAXNETS_DATA_MIRROR, else the official hosts).
      checksums: {filename or url: (size, sha256)} or the path of a tsv file (see
        `read_checksums`), replacing the official checksums of those files (default: the file
        named by $JAXNETS_DATA_CHECKSUMS, if set).
      read_timeout: seconds one network read may wait for data before the download fails.
      deadline: seconds all the downloads of this call may take.

    Returns:
      (images uint8[N, H, W, C], labels int32[N]).

    Raises:
      DataUnavailable: the files cannot be fetched (offline, host down, HTTP error, a host that
        stalls or is too slow); the message lists the ways to get the data. Offline, this comes
        within about 3 s.
      DataError: a downloaded file fails its checksum, was cut short, or does not parse.
      ConfigError: bad name, split, mirror, checksums or timeouts.
    """
    registry.entry(name)
    registry.check_split(split)
    if not (read_timeout > 0 and deadline > 0):
        raise ConfigError(f"read_timeout {read_timeout} and deadline {deadline}: both must be "
                          "positive numbers of seconds")
    end = time.monotonic() + deadline
    tfds_dir = os.path.expanduser(os.fspath(tfds_dir))
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if checksums is None:
        checksums = os.environ.get(CHECKSUMS_ENV) or None
    files = _resolve_files(name, mirror, checksums)
    cached = load_cached(name, split, tfds_dir)
    if cached is not None:
        return cached
    download_dir = _download_dir(name, tfds_dir)
    paths = {f: _cache_path(download_dir, f, sha) for f, (_, _, sha) in files.items()}
    missing = [f for f in files if not os.path.isfile(paths[f])]
    if missing:
        url = files[missing[0]][0]
        reason = _probe(url, min(PROBE_TIMEOUT_S, read_timeout))
        if reason is not None:
            raise DataUnavailable(f"{name}: not found locally and {url} cannot be reached "
                                  f"({reason}); {_ways(name)}")
        os.makedirs(download_dir, exist_ok=True)
    for f in missing:  # one file at a time, so that a failure names the file it concerns
        url, size, sha = files[f]
        _fetch(name, f, url, size, sha, paths[f], read_timeout=read_timeout, deadline=end)
    builder = _builders().BUILDERS[name](
        data_dir=tfds_dir, paths=paths, urls={f: url for f, (url, _, _) in files.items()},
        file_format="array_record")
    _prepare(builder)
    return _read_prepared(builder, name, split)


def _prepare(builder) -> None:
    """Run tfds' preparation of the downloaded files (it removes its incomplete.* on failure),
    silently: tfds prints its progress bars (to stderr, terminal or not) and two lines (to
    stdout, on purpose), and jaxnets prints nothing."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.utils import tqdm_utils

    # (the two lines come from these builder methods; on this instance only)
    builder._log_download_bytes = builder._log_download_done = lambda: None
    shown = getattr(tqdm_utils, "_active", True)   # tfds' switch, as the caller had it
    tfds.display_progress_bar(False)
    try:
        builder.download_and_prepare(file_format="array_record",
                                     download_config=tfds.download.DownloadConfig())
    finally:
        tfds.display_progress_bar(shown)

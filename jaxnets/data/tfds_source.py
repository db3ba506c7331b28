"""The tensorflow-datasets path of the data layer: its cache and its downloads, without TensorFlow.

`sources.load` calls `load_cached` (read a split already prepared in the tfds data dir) and,
when that finds nothing, `download_and_load` (download, verify, prepare, read back).

Design:
- The official tfds builders for mnist/fashion_mnist/cifar10 need TensorFlow to generate, so
  this module defines its own `tfds.core.GeneratorBasedBuilder`s, named `jaxnets_mnist`,
  `jaxnets_fashion_mnist` and `jaxnets_cifar10` (no clash with tfds' own names). They download
  through tfds' `DownloadManager` (its cache, its checksum validation), parse the files with
  `jaxnets.data.idx` / `jaxnets.data.cifar` (numpy only; CIFAR-10's *binary* tarball, never
  pickles) and write `array_record`, read back through the builder's own `as_data_source`.
  The prepared folders are ordinary tfds datasets: `tfds.builder_from_directory(path)` reads them.
- Images are stored as raw bytes (`tfds.features.Tensor(uint8, encoding=BYTES)`), not as
  `Image`: PNG needs TF or a PIL round trip, and on our 2-core CPU it made preparing
  Fashion-MNIST ~1.5x slower and reading its cached train split ~6x slower (18 s vs 2.8 s, on a
  loaded machine). Cached splits are read in one batch and decoded in bulk (~3x faster than
  tfds' per-example decoding; a test checks both agree). Shuffling is disabled so the records
  keep the files' order: the arrays equal what `idx`/`cifar` read from the files.
- The builders are created on first use (`_builder_classes`, memoized) and stay out of tfds'
  name registry, so `import jaxnets` never imports tensorflow_datasets and no tfds name is taken.
- Checksums: the official (size, sha256) of every file ship in `checksums/<name>.tsv` (copied
  from tfds' own url_checksums; CIFAR-10's binary tarball is among them), and validation is
  forced: a file without a registered checksum is never accepted. An explicit override,
  `checksums={filename: (size, sha256)}` (or a tsv path), replaces entries for mirrors that
  re-pack files (Debian's Fashion-MNIST is re-gzipped: same contents, other bytes). `load()` has
  no such argument; it reaches the override through the environment variable
  `JAXNETS_DATA_CHECKSUMS` (a tsv path), read at call time, never cached in module state.
- Mirrors: `mirror` (default: environment variable `JAXNETS_DATA_MIRROR`) is an http(s) base
  URL replacing the official hosts: file `f` is fetched from `<mirror>/<f>`; `{name}` in it
  becomes the dataset name, so one setting can serve all three datasets from sub-folders.
- Offline: tfds retries an unreachable host for minutes. Before handing over to tfds, the first
  file that is not already in the download cache is probed with a short, thread-bounded
  timeout, so with no network it fails within ~3.5 s with `DataUnavailable` listing the ways to
  get the data. A checksum mismatch, a transfer cut short or a file that does not parse is a
  `DataError` naming the file; a failed preparation leaves no prepared folder behind.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import re
import shutil
import tarfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from jaxnets.data import cifar, idx, sources
from jaxnets.errors import ConfigError, DataError, DataUnavailable

MIRROR_ENV = "JAXNETS_DATA_MIRROR"
CHECKSUMS_ENV = "JAXNETS_DATA_CHECKSUMS"
BUILDER_NAMES = {name: f"jaxnets_{name}" for name in sources.DATASETS}
VERSION = "1.0.0"
# The probe waits this long for the first byte of an answer; the whole check is bounded a bit
# above it by a thread join, because DNS lookups ignore socket timeouts.
PROBE_TIMEOUT_S = 3.0

_IDX_FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
_HOMEPAGES = {"mnist": "http://yann.lecun.com/exdb/mnist/",
              "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist",
              "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html"}
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
    _check_name(name)
    text = (importlib.resources.files("jaxnets.data") / "checksums" / f"{name}.tsv").read_text()
    files = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            url, size, sha, filename = line.strip().split("\t")
            files[filename] = (url, int(size), sha)
    return files


def _check_name(name: str) -> None:
    if name not in BUILDER_NAMES:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(BUILDER_NAMES)}")


def _check_split(split: str) -> None:
    if split not in sources.SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose 'train' or 'test'")


def _resolve_files(name: str, mirror: str | None,
                   checksums: ChecksumsArg) -> dict[str, tuple[str, int, str]]:
    """filename -> (url to fetch, expected size, expected sha256), mirror and override applied."""
    files = official_files(name)
    if mirror is not None:
        if not re.match(r"https?://", mirror):
            raise ConfigError(f"mirror {mirror!r}: must be an http:// or https:// base URL; for "
                              "files already on disk pass data_dir (--data-dir) instead")
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
    return os.path.join(os.fspath(tfds_dir), BUILDER_NAMES[name], VERSION)


def _maybe_prepared(name: str, tfds_dir: str) -> bool:
    """Cheap test, no tfds import: has a preparation of this builder version finished here?"""
    # tfds writes dataset_info.json last, inside an incomplete.* folder renamed on success.
    return os.path.isfile(os.path.join(_version_dir(name, tfds_dir), "dataset_info.json"))


@functools.cache
def _builder_classes() -> dict[str, type]:
    """Define the builders on first use (importing tfds is slow; `import jaxnets` must not)."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import download_manager
    from tensorflow_datasets.core.utils.lazy_imports_utils import requests

    version = VERSION  # the class body below rebinds the name VERSION
    class JaxnetsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Shared machinery: download each file through tfds, map failures to JaxnetsErrors."""

        VERSION = tfds.core.Version(version)
        RELEASE_NOTES: ClassVar[dict[str, str]] = {
            version: "Parsed with numpy (no TensorFlow); images as uint8 tensors."}
        dataset: str  # the jaxnets dataset name

        def __init__(self, *, files: dict[str, tuple[str, int, str]] | None = None,
                     **kwargs: Any):
            # Set before super().__init__, which already builds the DatasetInfo.
            self._files = dict(files or {})
            super().__init__(**kwargs)

        @property
        def url_infos(self) -> dict:
            # An instance property shadowing tfds' class-level one: the URLs depend on the
            # mirror and the checksums on the override, both per call.
            return {url: tfds.download.checksums.UrlInfo(
                        size=tfds.core.units.Size(size), checksum=sha, filename=filename)
                    for filename, (url, size, sha) in self._files.items()}

        def _info(self) -> tfds.core.DatasetInfo:
            return tfds.core.DatasetInfo(
                builder=self,
                description=f"{self.dataset} parsed by jaxnets without TensorFlow.",
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Tensor(shape=_SHAPES[self.dataset], dtype=np.uint8,
                                                  encoding=tfds.features.Encoding.BYTES),
                    "label": tfds.features.ClassLabel(names=sources.CLASS_NAMES[self.dataset]),
                }),
                supervised_keys=("image", "label"),
                homepage=_HOMEPAGES[self.dataset],
                # Keep the files' order: records are written sorted by key (the file index).
                disable_shuffling=True,
            )

        def _split_generators(self, dl_manager):
            # One file at a time, so that a failure names the file it concerns.
            paths = {filename: self._download(dl_manager, filename) for filename in self._files}
            return {split: self._generate_examples(split=split, paths=paths)
                    for split in sources.SPLITS}

        def _download(self, dl_manager, filename: str) -> str:
            url = self._files[filename][0]
            try:
                return os.fspath(dl_manager.download(url))
            except download_manager.NonMatchingChecksumError as e:
                got = re.search(r"Got: UrlInfo\(size=([^,]+), checksum='?([0-9a-f]+)", str(e))
                seen = f"got {got.group(1)}, sha256 {got.group(2)}" if got else str(e)
                size, sha = self._files[filename][1:]
                raise DataError(
                    f"{filename} downloaded from {url} does not match its registered checksum "
                    f"(expected {tfds.core.units.Size(size)}, sha256 {sha}; {seen}): the download is corrupt or truncated,"
                    " or the mirror serves other bytes; retry, or pass that file's checksums "
                    f"(checksums= or ${CHECKSUMS_ENV}) if you trust the mirror") from None
            except (requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as e:
                raise DataError(f"{filename}: the download from {url} was cut short or garbled "
                                f"({e}); retry") from None
            except tfds.download.DownloadError as e:
                raise DataUnavailable(f"{filename}: cannot download ({e}); "
                                      f"{_ways(self.dataset)}") from None
            except (requests.exceptions.RequestException, OSError) as e:
                raise DataUnavailable(f"{filename}: download from {url} failed ({e}); "
                                      f"{_ways(self.dataset)}") from None

        def _generate_examples(self, split: str, paths: dict[str, str]):
            for key, (image, label) in enumerate(self._examples(split, paths)):
                yield key, {"image": image, "label": int(label)}

    class IdxBuilder(JaxnetsBuilder, skip_registration=True):
        """MNIST-style datasets: four gzipped IDX files."""

        def _examples(self, split: str, paths: dict[str, str]):
            images_file, labels_file = _IDX_FILES[split]
            try:
                images, labels = idx.read_image_label_pair(paths[images_file], paths[labels_file])
            except DataError as e:
                # Name the original file first: the cached path is a mangled url+hash.
                bad = labels_file if paths[labels_file] in str(e) else images_file
                raise DataError(f"{bad} (downloaded from {self._files[bad][0]}): {e}") from None
            return zip(images, labels)

    class JaxnetsMnist(IdxBuilder, skip_registration=True):
        """MNIST, parsed with numpy."""

        name = BUILDER_NAMES["mnist"]
        dataset = "mnist"

    class JaxnetsFashionMnist(IdxBuilder, skip_registration=True):
        """Fashion-MNIST, parsed with numpy."""

        name = BUILDER_NAMES["fashion_mnist"]
        dataset = "fashion_mnist"

    class JaxnetsCifar10(JaxnetsBuilder, skip_registration=True):
        """CIFAR-10 from its binary tarball (never the pickled version)."""

        name = BUILDER_NAMES["cifar10"]
        dataset = "cifar10"

        def _examples(self, split: str, paths: dict[str, str]):
            for images, labels in _cifar_archive_batches(paths[cifar.ARCHIVE], split):
                yield from zip(images, labels)

    return {"mnist": JaxnetsMnist, "fashion_mnist": JaxnetsFashionMnist,
            "cifar10": JaxnetsCifar10}


def _cifar_archive_batches(path: str, split: str):
    """Yield (images, labels) per batch file of `split`, read in place from the downloaded tar."""
    names = cifar.TRAIN_FILES if split == "train" else cifar.TEST_FILES
    where = f"{cifar.ARCHIVE} (downloaded to {path})"
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            for n in names:
                if n not in members:
                    raise DataError(f"{where}: the archive has no {n}; it is not CIFAR-10's "
                                    "binary version, get it again")
                yield cifar.parse_batch(tar.extractfile(members[n]).read(), f"{where}:{n}")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{where}: corrupt or truncated archive ({e}); delete it and get it "
                        "again") from None


def _ways(name: str) -> str:
    return (f"{sources.how_to_get(name)}; or set ${MIRROR_ENV} (or pass mirror=) to the base "
            "URL of a mirror serving the files")


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
    shape = _SHAPES[name]
    size = int(np.prod(shape))
    if any(len(p) != size for p in pixels):
        raise corrupt(f"an image is not {size} bytes")
    if labels.size and not (0 <= labels.min() and labels.max() <= 9):
        raise corrupt("a label outside 0..9")
    images = np.frombuffer(b"".join(pixels), np.uint8).reshape(len(pixels), *shape)
    return images, labels.astype(np.int32)


def load_cached(name: str, split: str, tfds_dir: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A split already prepared in tfds_dir as (uint8[N,H,W,C], int32[N]), None if absent."""
    _check_name(name)
    _check_split(split)
    tfds_dir = os.path.expanduser(os.fspath(tfds_dir))
    if not _maybe_prepared(name, tfds_dir):
        return None  # without importing tfds: this is the common, must-be-fast case
    builder = _builder_classes()[name](data_dir=tfds_dir)
    if not builder.is_prepared():
        return None
    return _read_prepared(builder, name, split)


def _probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if url answers, else why not; bounded in time even for DNS lookups."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            # HEAD: the headers say whether the file is there without sending its body.
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                        timeout=timeout):
                outcome.append(None)
        except urllib.error.HTTPError as e:
            # 405/501: the host is up but refuses HEAD; let tfds' GET decide.
            outcome.append(None if e.code in (405, 501) else f"HTTP {e.code} {e.reason}")
        except (OSError, ValueError) as e:
            outcome.append(str(getattr(e, "reason", e)))

    thread = threading.Thread(target=attempt, daemon=True)  # daemon: a hung lookup is abandoned
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def _uncached(name: str, tfds_dir: str, files: dict[str, tuple[str, int, str]]) -> list[str]:
    """The files not yet in tfds' download cache (so fetching them needs the network)."""
    download_dir = os.path.join(os.fspath(tfds_dir), "downloads", BUILDER_NAMES[name])
    if not os.path.isdir(download_dir):
        return list(files)  # nothing cached: skip importing tfds before the probe
    try:
        from etils import epath
        from tensorflow_datasets.core.download import resource

        # tfds caches a download as <downloads>/<builder>/<get_dl_fname(url, sha256)> + .INFO.
        return [f for f, (url, _, sha) in files.items()
                if not resource.is_locally_cached(
                    epath.Path(download_dir) / resource.get_dl_fname(url, sha))]
    except (ImportError, AttributeError):  # tfds moved its internals: assume nothing cached
        return list(files)


def download_and_load(
    name: str,
    split: str,
    tfds_dir: str,
    mirror: str | None = None,
    *,
    checksums: ChecksumsArg = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Download a dataset with tfds (no TensorFlow), prepare it as array_record, read a split.

    Args:
      name: 'mnist', 'fashion_mnist' or 'cifar10'.
      split: 'train' or 'test'.
      tfds_dir: the tfds data dir; downloads go to <tfds_dir>/downloads, the prepared data to
        <tfds_dir>/jaxnets_<name>/<VERSION>.
      mirror: http(s) base URL serving the files instead of the official hosts; file f is
        fetched from <mirror>/f, and '{name}' in it becomes the dataset name (default
        $JAXNETS_DATA_MIRROR, else the official hosts).
      checksums: {filename or url: (size, sha256)} or the path of a tsv file (see
        `read_checksums`), replacing the official checksums of those files (default: the file
        named by $JAXNETS_DATA_CHECKSUMS, if set).

    Returns:
      (images uint8[N, H, W, C], labels int32[N]).

    Raises:
      DataUnavailable: the files cannot be fetched (offline, host down, HTTP error); the
        message lists the ways to get the data. Offline, this comes within about 3 s.
      DataError: a downloaded file fails its checksum, was cut short, or does not parse.
      ConfigError: bad name, split, mirror or checksums.
    """
    _check_name(name)
    _check_split(split)
    tfds_dir = os.path.expanduser(os.fspath(tfds_dir))
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if checksums is None:
        checksums = os.environ.get(CHECKSUMS_ENV) or None
    files = _resolve_files(name, mirror, checksums)
    cached = load_cached(name, split, tfds_dir)
    if cached is not None:
        return cached
    missing = _uncached(name, tfds_dir, files)
    if missing:
        url = files[missing[0]][0]
        reason = _probe(url)
        if reason is not None:
            raise DataUnavailable(f"{name}: not found locally and {url} cannot be reached "
                                  f"({reason}); {_ways(name)}")
    builder = _builder_classes()[name](data_dir=tfds_dir, files=files,
                                        file_format="array_record")
    _prepare(builder, os.path.join(tfds_dir, "downloads", builder.name))
    return _read_prepared(builder, name, split)


def _prepare(builder, download_dir: str) -> None:
    """Run tfds' download_and_prepare; on failure, remove the partial downloads tfds leaves."""
    import tensorflow_datasets as tfds

    before = set(os.listdir(download_dir)) if os.path.isdir(download_dir) else set()
    try:
        builder.download_and_prepare(
            file_format="array_record",
            download_config=tfds.download.DownloadConfig(force_checksums_validation=True))
    except BaseException:
        # A failed download stays in <file>.tmp.<uuid>/ folders: remove the ones made just now.
        if os.path.isdir(download_dir):
            for entry in set(os.listdir(download_dir)) - before:
                if ".tmp." in entry and os.path.isdir(os.path.join(download_dir, entry)):
                    shutil.rmtree(os.path.join(download_dir, entry), ignore_errors=True)
        raise

"""The tensorflow-datasets path (jaxnets.data.tfds_source), offline: files come from a loopback
HTTP server used as a mirror.

Checksum overrides: `load()` has no checksums argument, so the test going through `load()` sets
$JAXNETS_DATA_CHECKSUMS (a tsv path, read at call time, via monkeypatch); the others pass
`checksums=` to `tfds_source.download_and_load` directly.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time

import numpy as np
import pytest
from conftest import FASHION_DIR, make_idx_dir
from loopback import running, serve

from jaxnets import atomic, data
from jaxnets.data import cifar, idx, tfds_source
from jaxnets.errors import ConfigError, DataError, DataUnavailable


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    """No mirror or checksums from the developer's environment."""
    monkeypatch.delenv(tfds_source.MIRROR_ENV, raising=False)
    monkeypatch.delenv(tfds_source.CHECKSUMS_ENV, raising=False)


def checksums_of(directory: str) -> dict[str, tuple[int, str]]:
    """{filename: (size, sha256)} of every file in directory."""
    out = {}
    for f in sorted(os.listdir(directory)):
        with open(os.path.join(directory, f), "rb") as fh:
            blob = fh.read()
        out[f] = (len(blob), hashlib.sha256(blob).hexdigest())
    return out


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mnist_files(tmp_path):
    """A mirror folder of small generated gzipped MNIST files (64 train, 32 test)."""
    return make_idx_dir(str(tmp_path / "mirror"), gz=True)


@pytest.mark.slow
def test_fashion_mnist_download_then_cache(tmp_path, monkeypatch):
    """Debian's real files served from loopback: exact arrays, then read from cache offline."""
    mirror_dir = tmp_path / "mirror"
    shutil.copytree(FASHION_DIR, mirror_dir)
    tsv = tmp_path / "checksums.tsv"
    tsv.write_text("".join(f"{f}\t{size}\t{sha}\n"
                           for f, (size, sha) in checksums_of(str(mirror_dir)).items()))
    monkeypatch.setenv(tfds_source.CHECKSUMS_ENV, str(tsv))  # Debian re-gzipped the files
    tfds_dir = str(tmp_path / "tfds")
    expected = {s: idx.read_image_label_pair(str(mirror_dir / f"{p}-images-idx3-ubyte.gz"),
                                             str(mirror_dir / f"{p}-labels-idx1-ubyte.gz"))
                for s, p in (("train", "train"), ("test", "t10k"))}

    with serve(str(mirror_dir)) as url:
        train = data.load("fashion_mnist", "train", local_dirs=(), tfds_dir=tfds_dir, mirror=url)
    assert train.source.startswith("tfds download")
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int32
    np.testing.assert_array_equal(train.images, expected["train"][0])
    np.testing.assert_array_equal(train.labels, expected["train"][1])

    # The server is gone: both splits now come from the prepared array_record files.
    for split, n in (("test", 10000), ("train", 60000)):
        got = data.load("fashion_mnist", split, local_dirs=(), tfds_dir=tfds_dir, mirror=url)
        assert got.source.startswith("tfds cache"), got.source
        assert len(got) == n
        np.testing.assert_array_equal(got.images, expected[split][0])
        np.testing.assert_array_equal(got.labels, expected[split][1])


def _write_cifar_tarball(directory, rng, per_batch: int = 50):
    """A cifar-10-binary.tar.gz in the real layout; returns {split: (images, labels)}."""
    batches = os.path.join(directory, "build", "cifar-10-batches-bin")
    os.makedirs(batches)
    written = {"train": [], "test": []}
    for split, names in (("train", cifar.TRAIN_FILES), ("test", cifar.TEST_FILES)):
        for n in names:
            images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, 10, per_batch).astype(np.int32)
            cifar.write_batch(os.path.join(batches, n), images, labels)
            written[split].append((images, labels))
    os.makedirs(os.path.join(directory, "mirror"))
    with tarfile.open(os.path.join(directory, "mirror", cifar.ARCHIVE), "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-bin")
    return {s: (np.concatenate([b[0] for b in parts]), np.concatenate([b[1] for b in parts]))
            for s, parts in written.items()}


def test_cifar10_binary_tarball(tmp_path):
    expected = _write_cifar_tarball(str(tmp_path), np.random.default_rng(0))
    mirror_dir = str(tmp_path / "mirror")
    tfds_dir = str(tmp_path / "tfds")
    with serve(mirror_dir) as url:
        images, labels = tfds_source.download_and_load(
            "cifar10", "train", tfds_dir, mirror=url, checksums=checksums_of(mirror_dir))
    assert images.shape == (250, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, expected["train"][0])
    np.testing.assert_array_equal(labels, expected["train"][1])
    images, labels = tfds_source.load_cached("cifar10", "test", tfds_dir)
    np.testing.assert_array_equal(images, expected["test"][0])
    np.testing.assert_array_equal(labels, expected["test"][1])


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_offline_fails_fast_listing_the_ways(tmp_path, monkeypatch, how):
    mirror = f"http://127.0.0.1:{closed_port()}"
    kwargs = {"mirror": mirror}
    if how == "environment":
        monkeypatch.setenv(tfds_source.MIRROR_ENV, mirror)
        kwargs = {}
    start = time.perf_counter()
    with pytest.raises(DataUnavailable) as err:
        data.load("mnist", "train", local_dirs=(), tfds_dir=str(tmp_path), **kwargs)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert mirror in message
    assert "data_dir" in message and "tensorflow-datasets" in message
    assert tfds_source.MIRROR_ENV in message


def test_unreachable_official_host_fails_fast(tmp_path):
    """No mirror: the official URL is probed; offline (as here) that fails within 5 s."""
    start = time.perf_counter()
    with pytest.raises(DataUnavailable, match="storage.googleapis.com"):
        tfds_source.download_and_load("mnist", "test", str(tmp_path))
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize("missing", ["t10k-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"])
def test_missing_file_on_mirror_is_unavailable(tmp_path, mnist_files, missing):
    """The first file is probed before tfds starts; a later one fails inside tfds' download."""
    sums = checksums_of(mnist_files)
    os.remove(os.path.join(mnist_files, missing))
    with serve(mnist_files) as url, pytest.raises(DataUnavailable) as err:
        tfds_source.download_and_load("mnist", "train", str(tmp_path / "tfds"), mirror=url,
                                      checksums=sums)
    assert missing in str(err.value) and "404" in str(err.value)
    assert "data_dir" in str(err.value)


def _leftovers(tfds_dir: str) -> list[str]:
    """Partial downloads or preparations left behind: *.tmp.* and incomplete.* files or folders."""
    out = []
    for root, dirs, files in os.walk(tfds_dir):
        out += [os.path.join(root, d) for d in dirs + files
                if ".tmp." in d or d.endswith(atomic.SUFFIX) or "incomplete" in d]
    return out


def test_official_checksum_mismatch(tmp_path, mnist_files):
    """Files that are not the official ones fail the shipped checksums."""
    tfds_dir = str(tmp_path / "tfds")
    with serve(mnist_files) as url, pytest.raises(DataError) as err:
        tfds_source.download_and_load("mnist", "train", tfds_dir, mirror=url)
    assert "-ubyte.gz" in str(err.value) and "checksum" in str(err.value)
    assert tfds_source.load_cached("mnist", "train", tfds_dir) is None
    assert _leftovers(tfds_dir) == []


def test_override_checksum_mismatch_names_the_file_then_recovers(tmp_path, mnist_files):
    tfds_dir = str(tmp_path / "tfds")
    good = checksums_of(mnist_files)
    bad = dict(good)
    size, _ = bad["train-labels-idx1-ubyte.gz"]
    bad["train-labels-idx1-ubyte.gz"] = (size, "0" * 64)
    with serve(mnist_files) as url:
        with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz.*checksum"):
            tfds_source.download_and_load("mnist", "train", tfds_dir, mirror=url, checksums=bad)
        assert _leftovers(tfds_dir) == []
        # The right checksums: the failed attempt left nothing that gets in the way.
        images, labels = tfds_source.download_and_load("mnist", "test", tfds_dir, mirror=url,
                                                       checksums=good)
    expected = idx.read_image_label_pair(os.path.join(mnist_files, "t10k-images-idx3-ubyte.gz"),
                                         os.path.join(mnist_files, "t10k-labels-idx1-ubyte.gz"))
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def test_truncated_file_fails_its_checksum(tmp_path, mnist_files):
    """A short file served whole (right Content-Length) fails the checksums of the full one."""
    good = checksums_of(mnist_files)
    path = os.path.join(mnist_files, "train-images-idx3-ubyte.gz")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) // 2])
    with serve(mnist_files) as url, pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        tfds_source.download_and_load("mnist", "train", str(tmp_path / "tfds"), mirror=url,
                                      checksums=good)


def test_transfer_cut_short_names_the_file(tmp_path, mnist_files):
    """The server announces the full length but closes halfway through the body."""
    tfds_dir = str(tmp_path / "tfds")
    with (serve(mnist_files, cut=("t10k-labels-idx1-ubyte.gz",)) as url,
          pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*cut short")):
        tfds_source.download_and_load("mnist", "test", tfds_dir, mirror=url,
                                      checksums=checksums_of(mnist_files))
    assert tfds_source.load_cached("mnist", "test", tfds_dir) is None
    assert _leftovers(tfds_dir) == []


def test_truncated_file_matching_its_checksums_does_not_parse(tmp_path, mnist_files):
    """Even when the registered checksums describe a bad file, it never becomes an array."""
    path = os.path.join(mnist_files, "t10k-images-idx3-ubyte.gz")
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(blob[: len(blob) - 100])
    tfds_dir = str(tmp_path / "tfds")
    with serve(mnist_files) as url, pytest.raises(DataError) as err:
        tfds_source.download_and_load("mnist", "test", tfds_dir, mirror=url,
                                      checksums=checksums_of(mnist_files))
    assert str(err.value).startswith("t10k-images-idx3-ubyte.gz")
    assert "truncated" in str(err.value)
    assert tfds_source.load_cached("mnist", "test", tfds_dir) is None
    assert _leftovers(tfds_dir) == []  # tfds' incomplete.* preparation folder is gone too


def test_wrong_ungzipped_length_does_not_parse(tmp_path, mnist_files):
    """A well-formed gzip of a short IDX payload: caught by the IDX length check."""
    path = os.path.join(mnist_files, "train-labels-idx1-ubyte.gz")
    with open(path, "rb") as f:
        payload = gzip.decompress(f.read())
    with open(path, "wb") as f:
        f.write(gzip.compress(payload[:-3]))
    with serve(mnist_files) as url, pytest.raises(DataError, match="^train-labels-idx1-ubyte.gz"):
        tfds_source.download_and_load("mnist", "train", str(tmp_path / "tfds"), mirror=url,
                                      checksums=checksums_of(mnist_files))


def test_corrupt_prepared_cache_is_a_data_error(tmp_path, mnist_files):
    tfds_dir = str(tmp_path / "tfds")
    with serve(mnist_files) as url:
        tfds_source.download_and_load("mnist", "train", tfds_dir, mirror=url,
                                      checksums=checksums_of(mnist_files))
    version_dir = os.path.join(tfds_dir, "jaxnets_mnist", tfds_source.VERSION)
    (record,) = [f for f in os.listdir(version_dir) if "-train.array_record" in f]
    with open(os.path.join(version_dir, record), "r+b") as f:
        f.truncate(100)
    with pytest.raises(DataError, match="jaxnets_mnist"):
        tfds_source.load_cached("mnist", "train", tfds_dir)


def test_bulk_decoding_equals_tfds_decoding(tmp_path, mnist_files):
    """The bulk proto decoding of cached splits agrees with tfds' own per-example decoding."""
    tfds_dir = str(tmp_path / "tfds")
    with serve(mnist_files) as url:
        tfds_source.download_and_load("mnist", "train", tfds_dir, mirror=url,
                                      checksums=checksums_of(mnist_files))
    from jaxnets.data import tfds_builders

    builder = tfds_builders.BUILDERS["mnist"](data_dir=tfds_dir)
    for split in ("train", "test"):
        images, labels = tfds_source.load_cached("mnist", split, tfds_dir)
        source = builder.as_data_source(split=split)
        examples = [source[i] for i in range(len(source))]
        np.testing.assert_array_equal(images, np.stack([e["image"] for e in examples]))
        np.testing.assert_array_equal(labels, [e["label"] for e in examples])


def test_load_cached_nothing_there(tmp_path):
    assert tfds_source.load_cached("cifar10", "train", str(tmp_path)) is None
    (tmp_path / "jaxnets_cifar10").mkdir()  # what a failed preparation leaves
    assert tfds_source.load_cached("cifar10", "train", str(tmp_path)) is None


@pytest.mark.slow
def test_tensorflow_datasets_imported_lazily():
    code = ("import sys, tempfile, jaxnets, jaxnets.data\n"
            "from jaxnets.data import tfds_source\n"
            "assert tfds_source.load_cached('mnist', 'test', tempfile.mkdtemp()) is None\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('tensorflow_datasets', 'tensorflow')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_shipped_checksums_match_tfds(name):
    """checksums/*.tsv agree with tfds' registered checksums for the same official URLs."""
    from tensorflow_datasets.core import utils
    from tensorflow_datasets.core.download import checksums

    registered = checksums.load_url_infos(utils.tfds_path() / "url_checksums" / f"{name}.txt")
    files = tfds_source.official_files(name)
    assert len(files) == (1 if name == "cifar10" else 4)
    for filename, (url, size, sha) in files.items():
        assert (int(registered[url].size), registered[url].checksum) == (size, sha), filename
        assert url.rsplit("/", 1)[1] == filename


def test_bad_options_are_config_errors(tmp_path):
    tfds_dir = str(tmp_path)
    with pytest.raises(ConfigError, match="mirror"):
        tfds_source.download_and_load("mnist", "train", tfds_dir, mirror="/srv/mnist")
    with pytest.raises(ConfigError, match="not a file of mnist"):
        tfds_source.download_and_load("mnist", "train", tfds_dir, mirror="http://127.0.0.1:1",
                                      checksums={"data_batch_1.bin": (1, "0" * 64)})
    with pytest.raises(ConfigError, match="sha256"):
        tfds_source.download_and_load("mnist", "train", tfds_dir, mirror="http://127.0.0.1:1",
                                      checksums={"train-images-idx3-ubyte.gz": (1, "xyz")})
    tsv = tmp_path / "sums.tsv"
    tsv.write_text("# comment\ntrain-images-idx3-ubyte.gz 12 abc\n")
    with pytest.raises(ConfigError, match=r"sums.tsv:2"):
        tfds_source.download_and_load("mnist", "train", tfds_dir, checksums=str(tsv))
    with pytest.raises(ConfigError, match="cannot read"):
        tfds_source.download_and_load("mnist", "train", tfds_dir,
                                      checksums=str(tmp_path / "missing.tsv"))
    with pytest.raises(ConfigError, match="split"):
        tfds_source.load_cached("mnist", "validation", tfds_dir)


def test_read_checksums_formats(tmp_path):
    """Both tfds' url_checksums lines and bare filename lines are read."""
    sha = "ab" * 32
    tsv = tmp_path / "sums.tsv"
    tsv.write_text(f"https://host/dir/a.gz\t10\t{sha}\ta.gz\nb.gz\t20\t{sha}\n\n"
                   f"https://host/c.gz\t30\t{sha}\n")
    assert tfds_source.read_checksums(tsv) == {
        "https://host/dir/a.gz": (10, sha), "b.gz": (20, sha), "https://host/c.gz": (30, sha)}


def test_checksums_file_matches_urls_and_skips_other_datasets(tmp_path, mnist_files):
    """One tsv for several datasets: URL lines pick the file; other datasets' lines are skipped.

    The mirror holds each dataset in its own folder, reached through '{name}' in the mirror.
    """
    root = tmp_path / "root"
    shutil.copytree(mnist_files, root / "mnist")
    (root / "fashion_mnist").mkdir()
    sums = checksums_of(mnist_files)
    with serve(str(root)) as url:
        mirror = url + "/{name}"
        tsv = tmp_path / "sums.tsv"
        lines = [f"{url}/mnist/{f}\t{size}\t{sha}\t{f}" for f, (size, sha) in sums.items()]
        # Same names for Fashion-MNIST and a wrong name-only line: the URL lines must win.
        lines += [f"{url}/fashion_mnist/{f}\t1\t{'0' * 64}\t{f}" for f in sums]
        lines += [f"{f}\t1\t{'0' * 64}" for f in sums]
        lines += [f"data_batch_1.bin\t1\t{'0' * 64}"]
        tsv.write_text("\n".join(lines) + "\n")
        images, _ = tfds_source.download_and_load("mnist", "test", str(tmp_path / "tfds"),
                                                  mirror=mirror, checksums=str(tsv))
    assert images.shape == (32, 28, 28, 1)


@pytest.mark.parametrize("where", ["stall", "stall_headers"])
def test_stalled_download_fails_within_its_read_timeout(tmp_path, mnist_files, where):
    """A mirror that answers HEAD, then sends half a file (or not even the headers of the GET)
    and nothing more: one line, no leftovers.

    Without a read timeout the client would wait until the server gives up (loopback.STALL_S)
    and then see a transfer cut short or a closed connection, not the time-out said below.
    """
    tfds_dir = str(tmp_path / "tfds")
    with (serve(mnist_files, **{where: ("train-images-idx3-ubyte.gz",)}) as url,
          pytest.raises(DataUnavailable) as err):
        tfds_source.download_and_load("mnist", "train", tfds_dir, mirror=url,
                                      checksums=checksums_of(mnist_files), read_timeout=0.5)
    message = str(err.value)
    assert message.startswith("train-images-idx3-ubyte.gz: download from")
    assert "no data for 0.5 s" in message and "stalled" in message and "\n" not in message
    assert ("0 of" in message) == (where == "stall_headers")
    assert _leftovers(tfds_dir) == []
    assert tfds_source.load_cached("mnist", "train", tfds_dir) is None


def test_slow_download_fails_at_its_deadline(tmp_path, mnist_files):
    """Bytes keep coming, each well within the read timeout, but the whole is too slow."""
    tfds_dir = str(tmp_path / "tfds")
    with (serve(mnist_files, trickle=("t10k-images-idx3-ubyte.gz",)) as url,
          pytest.raises(DataUnavailable, match="t10k-images-idx3-ubyte.gz.*deadline") as info):
        tfds_source.download_and_load("mnist", "test", tfds_dir, mirror=url,
                                      checksums=checksums_of(mnist_files), deadline=1.0)
    assert _leftovers(tfds_dir) == []
    # said once (it was wrapped in itself: the file, the URL and the ways, twice)
    assert str(info.value).count("failed (") == 1, str(info.value)


class _InterruptingSha256:
    """A sha256 whose first update for the second file raises KeyboardInterrupt (a Ctrl-C)."""

    made = 0
    real = hashlib.sha256  # tfds_source.hashlib is this hashlib: keep the real one

    def __init__(self):
        type(self).made += 1
        self._hash = self.real()

    def update(self, block):
        if self.made == 2:
            raise KeyboardInterrupt
        self._hash.update(block)

    def hexdigest(self):
        return self._hash.hexdigest()


def test_interrupted_download_leaves_no_partial_file(tmp_path, mnist_files, monkeypatch):
    """Ctrl-C in the middle of a file: its temporary file goes, the verified ones are reused."""
    tfds_dir = str(tmp_path / "tfds")
    sums = checksums_of(mnist_files)
    monkeypatch.setattr(tfds_source.hashlib, "sha256", _InterruptingSha256)
    with serve(mnist_files) as url, pytest.raises(KeyboardInterrupt):
        tfds_source.download_and_load("mnist", "test", tfds_dir, mirror=url, checksums=sums)
    monkeypatch.undo()
    assert _leftovers(tfds_dir) == []
    (done,) = os.listdir(os.path.join(tfds_dir, "downloads", "jaxnets_mnist"))
    assert done.endswith("t10k-images-idx3-ubyte.gz")  # the first file, verified and renamed
    with serve(mnist_files) as url:
        images, _ = tfds_source.download_and_load("mnist", "test", tfds_dir, mirror=url,
                                                  checksums=sums)
    assert images.shape == (32, 28, 28, 1)


def test_bad_timeouts_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="read_timeout"):
        tfds_source.download_and_load("mnist", "test", str(tmp_path), read_timeout=0)


def test_fashion_mnist_served_as_mnist_is_refused(tmp_path):
    """A mirror serving Fashion-MNIST under MNIST's names (checksums overridden): refused before
    anything is prepared under jaxnets_mnist."""
    mirror_dir = tmp_path / "mirror"
    shutil.copytree(FASHION_DIR, mirror_dir)
    tfds_dir = str(tmp_path / "tfds")
    with (serve(str(mirror_dir)) as url,
          pytest.raises(DataError, match="these are the fashion_mnist train files, not mnist")):
        tfds_source.download_and_load("mnist", "test", tfds_dir, mirror=url,
                                      checksums=checksums_of(str(mirror_dir)))
    assert tfds_source.load_cached("mnist", "test", tfds_dir) is None
    assert _leftovers(tfds_dir) == []


def test_data_modules_import_one_way():
    """No import cycle inside jaxnets.data, counting imports inside functions too (sources and
    tfds_source used to import each other); the registry imports only the format readers."""
    import ast
    import pathlib

    root = pathlib.Path(data.__file__).parent
    graph = {}
    for path in root.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "jaxnets.data":
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "jaxnets.data."):
                deps.add(node.module.rsplit(".", 1)[1])
        graph[path.stem] = deps & {p.stem for p in root.glob("*.py")}
    assert graph["registry"] == {"cifar", "idx"}
    assert "sources" not in graph["tfds_source"] and "tfds_source" not in graph["tfds_builders"]

    def reaches(start, target, seen=()):
        return any(d == target or (d not in seen and reaches(d, target, (*seen, d)))
                   for d in graph[start])

    cycles = [m for m in graph if m != "__init__" and reaches(m, m)]
    assert cycles == []


# --- mirrors that redirect, refuse HEAD, or print (issue 23 s6) -------------------------------

class _Mirror(http.server.SimpleHTTPRequestHandler):
    """Serves a folder under /<mode>/<file>, misbehaving as <mode> says."""

    def log_message(self, *args):
        pass

    def _redirect(self) -> bool:
        mode, _, name = self.path.lstrip("/").partition("/")
        where = {"ftp": f"ftp://127.0.0.1/{name}", "file": "file:///etc/passwd",
                 "loop": self.path, "hop": f"/plain/{name}"}.get(mode)
        if mode == "getftp" and self.command == "GET":   # HEAD answers; the download is sent on
            where = f"ftp://127.0.0.1/{name}"
        if where is None:
            return False
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_HEAD(self):
        if self._redirect():
            return
        mode = self.path.lstrip("/").partition("/")[0]
        if mode in ("nohead", "nohead404"):
            self.send_error(403, "HEAD not allowed")
            return
        if mode == "hangup":
            self.close_connection = True
            return
        self.path = "/" + self.path.lstrip("/").partition("/")[2]
        super().do_HEAD()

    def do_GET(self):
        if self._redirect():
            return
        mode = self.path.lstrip("/").partition("/")[0]
        if mode == "nohead404":
            self.send_error(404, "Not Found")
            return
        self.path = "/" + self.path.lstrip("/").partition("/")[2]
        super().do_GET()


def _mirror(directory):
    """The misbehaving mirror on loopback (`loopback.running`); yields its base URL."""
    return running(functools.partial(_Mirror, directory=directory))


@pytest.mark.parametrize("mode,says", [
    ("ftp", ("(redirected to ftp://127.0.0.1/t10k-images-idx3-ubyte.gz, which is not an "
             "http:// or https:// URL (not followed))")),
    ("file", "(HTTP 302 "),
    ("loop", "(HTTP 302 too many redirects (a redirect loop?); the last answer: Found)"),
    ("nohead404", "(HTTP 404 Not Found)"),
    ("getftp", "download from http://")])
def test_mirror_answers_that_are_refused_in_one_line(mode, says, tmp_path, mnist_files):
    """Issue 23: a 302 to ftp:// was followed; a redirect loop was a 3-line error. Only
    http(s) redirects are followed; each failure is one line saying what happened."""
    with _mirror(mnist_files) as url, pytest.raises(DataUnavailable) as info:
        tfds_source.download_and_load("mnist", "test", str(tmp_path / "tfds"),
                                      mirror=f"{url}/{mode}", checksums=checksums_of(mnist_files))
    message = str(info.value)
    assert "\n" not in message and says in message, message
    if mode == "getftp":   # HEAD was fine: the download itself refused the redirect
        assert "failed (redirected to ftp://127.0.0.1/" in message, message


@pytest.mark.parametrize("mode", ["nohead", "hangup", "hop"])
def test_mirror_that_refuses_head_but_serves_get(mode, tmp_path, mnist_files):
    """Issue 23: a mirror that answers HEAD with 403 (or hangs up on it) but serves GET was
    called unreachable. An http(s) redirect is followed."""
    with _mirror(mnist_files) as url:
        images, labels = tfds_source.download_and_load(
            "mnist", "test", str(tmp_path / "tfds"), mirror=f"{url}/{mode}",
            checksums=checksums_of(mnist_files))
    assert images.shape == (32, 28, 28, 1) and labels.shape == (32,)


def test_download_and_preparation_print_nothing(tmp_path, mnist_files, capfd):
    """Issue 23: --quiet still showed tensorflow-datasets' progress bars (and its two
    'Downloading and preparing' lines) while preparing. jaxnets prints nothing; tfds' own
    switch is left as it was."""
    from tensorflow_datasets.core.utils import tqdm_utils

    capfd.readouterr()
    with _mirror(mnist_files) as url:
        tfds_source.download_and_load("mnist", "test", str(tmp_path / "tfds"),
                                      mirror=f"{url}/plain", checksums=checksums_of(mnist_files))
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)
    assert tqdm_utils._active is True


def test_a_killed_download_leaves_a_temporary_the_next_one_removes(tmp_path, mnist_files):
    """SIGKILL in the middle of a download: its temporary file is deleted by the next download
    of that file (it is ours: named and locked by jaxnets.atomic)."""
    import signal

    tfds_dir = tmp_path / "tfds"
    folder = tfds_dir / "downloads" / "jaxnets_mnist"
    code = f"""
import os, signal
from jaxnets.data import tfds_source
real = tfds_source.hashlib.sha256
class Killing:
    def __init__(self): self.h = real()
    def update(self, block): os.kill(os.getpid(), signal.SIGKILL)
    def hexdigest(self): return self.h.hexdigest()
tfds_source.hashlib.sha256 = Killing
tfds_source.download_and_load("mnist", "test", {str(tfds_dir)!r}, mirror=os.environ["URL"],
                              checksums={checksums_of(mnist_files)!r})
"""
    with serve(mnist_files) as url:
        p = subprocess.run([sys.executable, "-c", code], env={**os.environ, "URL": url},
                           cwd=os.path.dirname(os.path.dirname(__file__)), check=False)
        assert p.returncode == -signal.SIGKILL
        assert [n for n in os.listdir(folder) if n.endswith(atomic.SUFFIX)]
        tfds_source.download_and_load("mnist", "test", str(tfds_dir), mirror=url,
                                      checksums=checksums_of(mnist_files))
    assert _leftovers(str(tfds_dir)) == []


def test_tfds_import_waits_for_the_matplotlib_preload(monkeypatch):
    """tensorflow_datasets' import swaps builtins.__import__ for the whole process (etils'
    lazy_imports); matplotlib imported meanwhile by plots.preload's thread failed now and then
    ('Relative import statements not supported'), and the first plot was a traceback. The
    builders are imported only once the preload has ended."""
    import time

    from jaxnets import plots

    done = []

    def slow_import():
        time.sleep(0.5)
        done.append(True)

    @functools.cache
    def importer():
        thread = threading.Thread(target=slow_import)
        thread.start()
        return thread

    monkeypatch.setattr(plots, "_importer", importer)
    plots.preload()
    tfds_source._builders()
    assert done == [True]

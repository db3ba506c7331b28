"""Issue 23, sections 1-3 and 6 (data): every input checked against what it claims.

1. Reads are bounded by what the file declares (IDX, CIFAR-10 binary, text tables, weights);
   non-regular files are refused; an overrun is one line naming the file.
2. Data that contradicts its registry entry is refused before training; models that declare
   an input size say so.
3. Values that cannot be right are said, not used: non-finite, absurd or non-float weights,
   meta tensors, labels outside 0..classes-1 (against PyTorch's behaviour).
6. Raw and .gz files that disagree; empty text files.
Memory bounds are measured with tracemalloc (numpy and bytes allocations are traced), so a
test never needs the memory the attack asks for.
"""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import threading
import tracemalloc
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_idx_dir, write_idx

from jaxnets import data as D
from jaxnets import losses, optim, torch_io, train
from jaxnets.data import bounded, cifar, idx
from jaxnets.errors import CheckpointError, ConfigError, DataError
from jaxnets.models import LeNet, LinearClassifier, SeedMLP
from jaxnets.options import TrainOptions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20


def _idx_header(*dims: int) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + np.asarray(dims, ">u4").tobytes()


def _gz_bomb(path, head: bytes, zeros_mib: int) -> str:
    """A gzip file: `head`, then `zeros_mib` MiB of zeros, as repeated gzip members (gzip
    readers join members into one stream), so a GiB costs ~1 MB of disk and no time."""
    member = gzip.compress(bytes(MiB), 9)
    with open(path, "wb") as f:
        f.write(gzip.compress(head, 9))
        f.writelines(member for _ in range(zeros_mib))
    return str(path)


def _peak_mib(fn, *args):
    """(what fn raised, peak MiB traced while it ran)."""
    tracemalloc.start()
    try:
        fn(*args)
        raised = None
    except Exception as e:  # noqa: BLE001 (returned for the test to judge)
        raised = e
    finally:
        peak = tracemalloc.get_traced_memory()[1] / MiB
        tracemalloc.stop()
    return raised, peak


def _within(seconds, fn, *args):
    """fn(*args) in a daemon thread; what it raised, or AssertionError if it is still running
    after `seconds` (a FIFO that blocks)."""
    out = {}

    def target():
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            out["e"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} still blocked after {seconds} s"
    return out.get("e")


def _cli(*argv, timeout=300):
    """`python -m experiments.<argv>`: (exit status, stderr lines)."""
    p = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=ROOT,
                       timeout=timeout, check=False,
                       env={**os.environ, "PYTHONPATH": ROOT})
    return p.returncode, [line for line in p.stderr.splitlines() if line.strip()]


# --- 1. reads bounded by what the file declares -------------------------------------------------


def test_idx_gz_bomb_stops_at_the_declared_size(tmp_path):
    """The issue's case, scaled: a header declaring 60000x28x28 whose stream expands to 1 GiB
    more. Decompressed up to the declared 47 MB plus one byte, then one line naming the file
    (before: the whole stream in memory, then MemoryError)."""
    d = make_idx_dir(str(tmp_path), gz=True)
    rng = np.random.default_rng(0)
    head = _idx_header(60000, 28, 28) + rng.integers(0, 256, 60000 * 784, np.uint8).tobytes()
    path = _gz_bomb(tmp_path / "train-images-idx3-ubyte.gz", head, 1024)
    assert os.path.getsize(path) < 50 * MiB
    err, peak = _peak_mib(idx.read_idx, path, 3)
    assert isinstance(err, DataError) and "\n" not in str(err)
    assert str(err).startswith(path) and "goes on past the 47,040,016 bytes" in str(err)
    assert peak < 3 * 47 + 8, peak  # the declared data (and its copy), not the GiB behind it
    with pytest.raises(DataError, match="goes on past"):
        D.load("mnist", "train", d)


def test_gz_bomb_in_the_labels_file(tmp_path):
    d = make_idx_dir(str(tmp_path), gz=True)
    path = _gz_bomb(tmp_path / "train-labels-idx1-ubyte.gz", _idx_header(64) + bytes(64), 512)
    err, peak = _peak_mib(D.load, "mnist", "train", d)
    assert isinstance(err, DataError) and str(err).startswith(path), err
    assert "goes on past the 72 bytes" in str(err) and peak < 16, peak


def test_gz_header_declaring_more_than_its_stream_can_hold(tmp_path):
    """2^20 images (823 MB) declared in a 256 KB file whose stream holds 256 MiB of zeros:
    deflate expands at most 1032:1, so the header is refused before anything is decompressed
    (before: the 256 MiB were decompressed, then 'wrong length')."""
    path = _gz_bomb(tmp_path / "x.gz", _idx_header(2**20, 28, 28), 256)
    err, peak = _peak_mib(idx.read_idx, path, 3)
    assert isinstance(err, DataError) and "more than" in str(err), err
    assert "compressed bytes can expand to" in str(err) and peak < 4, peak


def test_declared_size_beyond_the_machines_memory(tmp_path, monkeypatch):
    path = write_idx(str(tmp_path / "x"), np.zeros((10, 28, 28)))
    monkeypatch.setattr(bounded, "memory_bytes", lambda: 4096)
    with pytest.raises(DataError, match=r"x: declares 7,856 bytes .* more than this machine's"):
        idx.read_idx(path)


def test_truncated_gzip_with_a_valid_header_and_a_proper_end(tmp_path):
    """A well-formed gzip stream (CRC and all) that holds only half the declared images."""
    path = str(tmp_path / "x.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(_idx_header(10, 28, 28) + bytes(5 * 784)))
    with pytest.raises(DataError, match=r"x.gz: wrong length 3936 bytes .* \(expected 7856\)"):
        idx.read_idx(path, 3)


def test_gz_header_declaring_zero_images_then_a_stream(tmp_path):
    d = make_idx_dir(str(tmp_path), gz=True)
    _gz_bomb(tmp_path / "train-images-idx3-ubyte.gz", _idx_header(0, 28, 28), 64)
    with pytest.raises(DataError, match="goes on past the 16 bytes its header declares"):
        D.load("mnist", "train", d)
    write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), np.zeros((0, 28, 28)), gz=True)
    with pytest.raises(DataError, match="holds 0 images"):
        D.load("mnist", "train", d)


def test_raw_idx_larger_than_declared_is_refused_unread(tmp_path):
    """A raw file is compared with its header by its size: an 8 GiB (sparse) file whose header
    declares 2 images is not read at all."""
    path = write_idx(str(tmp_path / "x"), np.zeros((2, 28, 28)))
    os.truncate(path, 8 << 30)
    err, peak = _peak_mib(idx.read_idx, path, 3)
    assert isinstance(err, DataError) and "wrong length 8589934592 bytes" in str(err), err
    assert peak < 2, peak


def test_short_raw_idx_is_called_short_from_its_size(tmp_path, monkeypatch):
    """A raw file's size is known before its data is read: a short one is 'wrong length', said
    from the size, whatever its header declares (here more than the machine's memory)."""
    path = str(tmp_path / "x")
    with open(path, "wb") as f:
        f.write(_idx_header(2**20, 28, 28) + bytes(100))
    monkeypatch.setattr(bounded, "memory_bytes", lambda: 4096)
    with pytest.raises(DataError, match=r"x: wrong length 116 bytes for dimensions \(1048576, 28, "
                       r"28\) \(expected 822083600\)"):
        idx.read_idx(path)


@pytest.mark.parametrize("kind", ["fifo", "device", "dangling"])
def test_idx_path_that_is_not_a_regular_file(tmp_path, kind):
    """Found (not "no files there") and refused by name, without blocking on a FIFO."""
    d = make_idx_dir(str(tmp_path))
    path = os.path.join(d, "train-images-idx3-ubyte")
    os.remove(path)
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero" if kind == "device" else str(tmp_path / "nowhere"), path)
    err = _within(10, D.load, "mnist", "train", d)
    assert isinstance(err, DataError) and str(err).startswith(path), err
    assert {"fifo": "is a FIFO", "device": "is a device",
            "dangling": "cannot read (No such file"}[kind] in str(err)


def test_cifar_files_bounded_and_regular(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (3, 32, 32, 3)), rng.integers(0, 10, 3)
    cifar.write_batch(str(tmp_path / "test_batch.bin"), images, labels)
    # extra bytes, a whole record's worth of them too: the latter is a 4th image by the format
    with open(tmp_path / "test_batch.bin", "ab") as f:
        f.write(b"x" * 100)
    with pytest.raises(DataError, match="test_batch.bin: wrong length 9319 bytes"):
        D.load("cifar10", "test", str(tmp_path))
    # a big (sparse) file of the wrong length: refused from its size, not read
    os.truncate(tmp_path / "test_batch.bin", (4 << 30) + 1)
    err, peak = _peak_mib(D.load, "cifar10", "test", str(tmp_path))
    assert isinstance(err, DataError) and "wrong length 4294967297" in str(err) and peak < 2
    # whole records, but more than the machine's memory
    os.truncate(tmp_path / "test_batch.bin", cifar.RECORD * 1000)
    monkeypatch.setattr(bounded, "memory_bytes", lambda: 1 << 20)
    with pytest.raises(DataError, match="declares 3,073,000 bytes .* more than this machine's"):
        D.load("cifar10", "test", str(tmp_path))
    os.remove(tmp_path / "test_batch.bin")
    os.mkfifo(tmp_path / "test_batch.bin")
    err = _within(10, D.load, "cifar10", "test", str(tmp_path))
    assert isinstance(err, DataError) and "test_batch.bin: is a FIFO" in str(err), err


def _tar_gz(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))


def test_cifar_archive_members_bounded_by_their_headers(tmp_path, monkeypatch):
    record = bytes(cifar.RECORD)
    _tar_gz(tmp_path / cifar.ARCHIVE, {"test_batch.bin": record * 2 + b"xy"})
    with pytest.raises(DataError, match=r"tar.gz:test_batch.bin: wrong length 6148 bytes"):
        D.load("cifar10", "test", str(tmp_path))
    _tar_gz(tmp_path / cifar.ARCHIVE, {"test_batch.bin": record * 300})
    monkeypatch.setattr(bounded, "memory_bytes", lambda: 1 << 16)
    err, peak = _peak_mib(D.load, "cifar10", "test", str(tmp_path))
    assert isinstance(err, DataError) and "declares 921,900 bytes" in str(err), err
    assert peak < 1, peak
    # a member's length is judged from its tar header, before it is read (or its size weighed)
    _tar_gz(tmp_path / cifar.ARCHIVE, {"test_batch.bin": record * 300 + b"xy"})
    with pytest.raises(DataError, match=r"tar.gz:test_batch.bin: wrong length 921902 bytes"):
        D.load("cifar10", "test", str(tmp_path))


def test_text_tables_bounded_and_regular(tmp_path, monkeypatch):
    """custom_dataset's files: /dev/zero (before: 5 GB, then MemoryError), a FIFO (before: a
    hang), a file too large to parse here, empty, comment-only, NaN values."""
    for path, message in (("/dev/zero", "/dev/zero: is a device"),):
        err, peak = _peak_mib(D.read_rows, path, ",")
        assert isinstance(err, DataError) and str(err).startswith(message) and peak < 1, err
    os.mkfifo(tmp_path / "pipe.csv")
    err = _within(10, D.read_rows, str(tmp_path / "pipe.csv"), ",")
    assert isinstance(err, DataError) and "pipe.csv: is a FIFO" in str(err), err
    big = tmp_path / "big.csv"
    big.write_text("1,2\n" * 1000)
    with pytest.raises(DataError, match="big.csv: .* too large to parse in this machine's"):
        D.read_rows(str(big), ",", memory=8000)
    assert D.read_rows(str(big), ",", memory=16000).shape == (1000, 2)
    cases = {"": "is empty", "\n  \n": "is empty", "# a comment\n": "holds no rows",
             "1,2\n3,nan\n": "row 2, column 2 is nan", "1,inf\n": "row 1, column 2 is inf",
             "1,2\n3\n": "not rows of numbers"}
    for i, (text, message) in enumerate(cases.items()):
        (tmp_path / f"t{i}.csv").write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy's "input contained no data" is said, once
            with pytest.raises(DataError, match=message) as e:
                D.read_rows(str(tmp_path / f"t{i}.csv"), ",")
        assert "\n" not in str(e.value)


def test_custom_dataset_dev_zero_and_empty_files_on_the_command_line(tmp_path):
    """One line, exit 2; an empty file is said to be empty (before: 'use a smaller
    --batch-size')."""
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "y.txt").write_text("1\n")
    for csv, expect in (("/dev/zero", "/dev/zero: is a device"),
                        (str(tmp_path / "empty.csv"), "empty.csv: is empty")):
        code, err = _cli("experiments.custom_dataset", "--csv-file", csv, "--txt-file",
                         str(tmp_path / "y.txt"), "--out", str(tmp_path / "out"))
        assert code == 2 and len(err) == 1 and expect in err[0], err
        assert "batch" not in err[0]


def _pth_with(tmp_path, compression, payload=None) -> str:
    """A torch.save'd state_dict, its entries rewritten with `compression`."""
    import torch

    src = tmp_path / "plain.pth"
    torch.save({"w": torch.zeros(64 * MiB // 4) if payload is None else payload}, src)
    out = tmp_path / f"c{compression}.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", compression) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    return str(out)


def test_pth_with_compressed_entries_is_refused_before_torch_reads_it(tmp_path):
    """torch.load inflates a deflated entry to its declared size (a 64 MB tensor from a 64 KB
    file here); torch.save never compresses, so such a file is refused unread."""
    path = _pth_with(tmp_path, zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < MiB
    err, peak = _peak_mib(torch_io.load, path)
    assert isinstance(err, CheckpointError) and "\n" not in str(err), err
    import re

    assert re.search(r"entries are compressed \('plain/data/0': [\d,]+ bytes that expand to "
                     r"67,108,864\); torch.save never compresses", str(err)), err
    assert peak < 4, peak
    import torch

    assert torch.load(path, weights_only=True)["w"].numel() == 16 * MiB  # torch alone: inflated


def test_weights_that_are_not_regular_files(tmp_path):
    os.mkfifo(tmp_path / "w.safetensors")
    err = _within(10, torch_io.load, str(tmp_path / "w.safetensors"))
    assert isinstance(err, CheckpointError) and "is a FIFO" in str(err), err
    for name in ("w.pth", "x.safetensors"):
        os.symlink("/dev/zero", tmp_path / name)
        with pytest.raises(CheckpointError, match=f"{name}: is a device"):
            torch_io.load(str(tmp_path / name))


def test_safetensors_with_extra_bytes_or_a_lying_header(tmp_path):
    from safetensors.numpy import save_file

    path = str(tmp_path / "w.safetensors")
    save_file({"a": np.ones(4, np.float32)}, path)
    with open(path, "ab") as f:
        f.write(b"\0" * 1000)
    with pytest.raises(CheckpointError, match="w.safetensors: corrupt"):
        torch_io.load(path)
    with open(path, "wb") as f:  # a header length of 2^62 bytes
        f.write((2**62).to_bytes(8, "little") + b"{}")
    err, peak = _peak_mib(torch_io.load, path)
    assert isinstance(err, CheckpointError) and peak < 1, err


# --- 2. data that contradicts its registry entry ------------------------------------------------


def _idx_dir_of(path, size_train=28, size_test=28, n=16):
    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    for prefix, size in (("train", size_train), ("t10k", size_test)):
        write_idx(os.path.join(path, f"{prefix}-images-idx3-ubyte"),
                  rng.integers(0, 256, (n, size, size)))
        write_idx(os.path.join(path, f"{prefix}-labels-idx1-ubyte"), rng.integers(0, 10, n))
    return str(path)


def test_mnist_folder_of_32x32_images_is_refused(tmp_path):
    d = _idx_dir_of(tmp_path / "d", 32, 32)
    for split in ("train", "test"):
        with pytest.raises(DataError, match=f"the {split} images are 32x32x1, but mnist's are "
                           r"28x28x1 \(HxWxC\)"):
            D.load("mnist", split, d)


def test_only_the_test_split_32x32_fails_before_training(tmp_path, monkeypatch):
    """Before: the whole run trained, then a ScopeParamShapeError traceback, no metrics.json."""
    from experiments import mnist

    d = _idx_dir_of(tmp_path / "d", 28, 32)
    out = tmp_path / "out"

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "run_training", never)
    with pytest.raises(DataError, match="test images are 32x32x1"):
        mnist.run(mnist.Config(dataset="mnist", data_dir=d, steps=10,
                               options=TrainOptions(out=str(out), quiet=True)))
    assert not (out / "metrics.json").exists()


def test_mnist_32x32_on_the_command_line_is_one_line(tmp_path):
    d = _idx_dir_of(tmp_path / "d", 32, 32)
    code, err = _cli("experiments.mnist", "--dataset", "mnist", "--data-dir", d, "--steps", "10",
                     "--out", str(tmp_path / "out"))
    assert code == 2 and len(err) == 1 and "32x32x1, but mnist's are 28x28x1" in err[0], err
    assert not (tmp_path / "out" / "metrics.json").exists()


@pytest.mark.parametrize("bad", ["32x32", "labels 10", "labels -1", "float images", "no images"])
def test_every_source_is_checked_against_the_registry(tmp_path, monkeypatch, bad):
    """The tfds cache path (and so the download path: the same check) refuses what contradicts
    the entry, not only the IDX reader."""
    from jaxnets.data import tfds_source

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 28, 28, 1)).astype(np.uint8)
    labels = rng.integers(0, 10, 8).astype(np.int32)
    if bad == "32x32":
        images = np.zeros((8, 32, 32, 1), np.uint8)
    elif bad == "labels 10":
        labels[3] = 10
    elif bad == "labels -1":
        labels[3] = -1
    elif bad == "float images":
        images = images.astype(np.float32)
    else:
        images, labels = images[:0], labels[:0]
    monkeypatch.setattr(tfds_source, "load_cached", lambda *a, **k: (images, labels))
    with pytest.raises(DataError) as e:
        D.load("mnist", "train", local_dirs=(), tfds_dir=str(tmp_path))
    assert str(e.value).startswith("tfds cache") and "\n" not in str(e.value)
    expect = {"32x32": "32x32x1, but mnist's are 28x28x1", "labels 10": "label 10 is outside 0..9",
              "labels -1": "label -1 is outside 0..9", "float images": "images are float32",
              "no images": "holds no images"}[bad]
    assert expect in str(e.value)


def test_models_that_declare_an_input_size_say_so():
    """Before: SeedMLP().init on [N,28,28,1] built w1 of shape (1, 200) and output
    [N,28,28,10]; params for 784 fed 1024 features raised Flax's ScopeParamShapeError;
    LinearClassifier built fc1 for 1024 inputs from 32x32 images."""
    key = jax.random.key(0)
    with pytest.raises(ConfigError, match=r"SeedMLP takes rows of 784 features .* got shape "
                       r"\(2, 28, 28, 1\); flatten the images first"):
        SeedMLP().init(key, jnp.zeros((2, 28, 28, 1)))
    params = SeedMLP().init(key, jnp.zeros((2, 784)))
    assert params["params"]["w1"].shape == (784, 200)
    with pytest.raises(ConfigError, match=r"got shape \(2, 1024\)"):
        SeedMLP().apply(params, jnp.zeros((2, 1024)))
    assert SeedMLP(in_features=12).init(key, jnp.zeros((1, 12)))["params"]["w1"].shape == (12, 200)
    with pytest.raises(ConfigError, match=r"LinearClassifier takes 784 values per example .* got "
                       r"shape \(2, 32, 32, 1\) \(1024 per example\)"):
        LinearClassifier().init(key, jnp.zeros((2, 32, 32, 1)))
    v = LinearClassifier().init(key, jnp.zeros((2, 28, 28, 1)))
    np.testing.assert_array_equal(LinearClassifier().apply(v, jnp.ones((2, 28, 28, 1))),
                                  LinearClassifier().apply(v, jnp.ones((2, 784))))
    with pytest.raises(ConfigError, match="LeNet expects NHWC images of 32x32"):
        LeNet().init(key, jnp.zeros((1, 28, 28, 1)))
    import torch

    with pytest.raises(RuntimeError, match="cannot be multiplied"):  # PyTorch refuses too
        torch.nn.Linear(784, 10)(torch.zeros(2, 1024))


# --- 3. values that cannot be right -------------------------------------------------------------


@pytest.fixture(scope="module")
def lenet_template():
    return {"params": LeNet(classes=10).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))[
        "params"]}


def _state_dict(template, **changes):
    sd = torch_io.to_state_dict(template)
    sd.update(changes)
    return sd


@pytest.mark.parametrize("value,message", [
    (np.nan, r"'fc3.bias'\[4\] is nan, not a number a weight can hold"),
    (np.inf, r"'fc3.bias'\[4\] is inf"), (-np.inf, r"is -inf"),
    (3e38, r"is 3e\+38, beyond 1.8e\+19, the largest magnitude a float32 weight may have"),
    (-2e19, r"is -2e\+19, beyond")])
def test_non_finite_or_absurd_weights_are_refused(lenet_template, tmp_path, value, message):
    bias = np.zeros(10, np.float32)
    bias[4] = value
    path = torch_io.save(str(tmp_path / "w.safetensors"),
                         _state_dict(lenet_template, **{"fc3.bias": bias}))
    with pytest.raises(CheckpointError, match=message) as e:
        torch_io.from_state_dict(torch_io.load(path), lenet_template, source=path)
    assert str(e.value).startswith(path) and "\n" not in str(e.value)


def test_the_magnitude_rule_and_float64(lenet_template):
    """At the bound loads; float64 values are narrowed as PyTorch's load_state_dict copies them,
    and one that overflows float32 is said."""
    assert torch_io.max_magnitude(np.float32) == pytest.approx(1.8446743e19)
    sd = _state_dict(lenet_template, **{"fc3.bias": np.full(10, 1e19, np.float32)})
    assert torch_io.from_state_dict(sd, lenet_template)["params"]["fc3"]["bias"][0] == 1e19
    sd = _state_dict(lenet_template, **{"fc3.bias": np.full(10, 0.25, np.float64)})
    assert torch_io.from_state_dict(sd, lenet_template)["params"]["fc3"]["bias"].dtype == np.float32
    sd = _state_dict(lenet_template, **{"fc3.bias": np.full(10, 1e300, np.float64)})
    with pytest.raises(CheckpointError, match=r"'fc3.bias'\[0\] is 1e\+300, which overflows float32"):
        torch_io.from_state_dict(sd, lenet_template)


def test_bad_value_index_is_in_the_files_layout(lenet_template):
    """fc1.weight is [120, 400] in the file, [400, 120] in Flax: the index named is the file's."""
    w = np.zeros((120, 400), np.float32)
    w[7, 300] = np.nan
    with pytest.raises(CheckpointError, match=r"'fc1.weight'\[7, 300\] is nan"):
        torch_io.from_state_dict(_state_dict(lenet_template, **{"fc1.weight": w}), lenet_template)


@pytest.mark.parametrize("dtype", ["int8", "bool", "int64", "uint8", "complex64"])
def test_non_float_weights_are_refused(lenet_template, tmp_path, dtype):
    """Before: cast to float32 silently (10% accuracy); complex64 with numpy's ComplexWarning."""
    import torch

    sd = {k: torch.tensor(v) for k, v in torch_io.to_state_dict(lenet_template).items()}
    sd["conv1.weight"] = torch.ones(6, 3, 5, 5, dtype=getattr(torch, dtype))
    torch.save(sd, tmp_path / "w.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(CheckpointError, match=rf"'conv1.weight' holds {dtype} values"):
            torch_io.from_state_dict(torch_io.load(str(tmp_path / "w.pth")), lenet_template)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_float_weights_of_other_widths_still_load(lenet_template, tmp_path, dtype):
    import torch

    sd = {k: torch.tensor(v).to(getattr(torch, dtype))
          for k, v in torch_io.to_state_dict(lenet_template).items()}
    torch.save(sd, tmp_path / "w.pth")
    back = torch_io.from_state_dict(torch_io.load(str(tmp_path / "w.pth")), lenet_template)
    assert back["params"]["fc3"]["bias"].dtype == np.float32


def test_meta_tensor_pth_is_one_line(tmp_path):
    """Before: NotImplementedError ('Cannot copy out of meta tensor') traceback."""
    import torch

    torch.save({"fc3.bias": torch.empty(10, device="meta")}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match=r"meta.pth: 'fc3.bias' is a meta tensor") as e:
        torch_io.load(str(tmp_path / "meta.pth"))
    assert "\n" not in str(e.value)


def test_wrong_shape_weights_name_the_key(lenet_template):
    w = np.zeros((400, 120), np.float32)  # fc1.weight transposed: Flax's layout, not PyTorch's
    with pytest.raises(CheckpointError, match=r"'fc1.weight' has shape \(400, 120\), the model "
                       r"expects \(120, 400\)"):
        torch_io.from_state_dict(_state_dict(lenet_template, **{"fc1.weight": w}), lenet_template)


def _cifar_dir(path, n=4):
    rng = np.random.default_rng(0)
    folder = os.path.join(path, "cifar-10-batches-bin")
    os.makedirs(folder)
    for name in cifar.TRAIN_FILES + cifar.TEST_FILES:
        cifar.write_batch(os.path.join(folder, name), rng.integers(0, 256, (n, 32, 32, 3)),
                          rng.integers(0, 10, n))
    return str(path)


def test_cifar10_weights_with_a_nan_on_the_command_line(lenet_template, tmp_path):
    """Before: '10 %', every prediction 'plane', exit 0."""
    bias = np.zeros(10, np.float32)
    bias[0] = np.nan
    path = torch_io.save(str(tmp_path / "nan.safetensors"),
                         _state_dict(lenet_template, **{"fc3.bias": bias}))
    code, err = _cli("experiments.cifar10", "--weights", path, "--data-dir",
                     _cifar_dir(str(tmp_path / "c")), "--out", str(tmp_path / "out"))
    assert code == 2 and len(err) == 1 and "'fc3.bias'[0] is nan" in err[0], err


@pytest.mark.parametrize("label", [-1, 10, -100])
def test_cross_entropy_out_of_range_labels_like_pytorch(label):
    """PyTorch raises IndexError on both (-100 is its ignore_index, not supported here: said);
    called with concrete labels, so do we. Valid labels give PyTorch's value."""
    import torch
    import torch.nn.functional as F

    logits = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    good = np.array([0, 3, 9, 1])
    np.testing.assert_allclose(losses.cross_entropy(logits, good),
                               F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(good)),
                               rtol=1e-6)
    bad = good.copy()
    bad[2] = label
    if label != -100:
        with pytest.raises(IndexError, match="out of bounds"):
            F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(bad))
    with pytest.raises(DataError, match=rf"label {label} \(at index 2, one of 1\) is outside 0..9"):
        losses.cross_entropy(logits, bad)


def test_cross_entropy_float_labels_like_pytorch():
    import torch
    import torch.nn.functional as F

    with pytest.raises(RuntimeError, match="expected target dtype to be Long"):
        F.cross_entropy(torch.zeros(2, 10), torch.tensor([0.0, 1.0]))
    with pytest.raises(DataError, match="labels are float32, not integer class indices"):
        losses.cross_entropy(np.zeros((2, 10), np.float32), np.array([0.0, 1.0], np.float32))
    with pytest.raises(DataError, match="float32, not integer"):  # static: refused when traced
        jax.jit(losses.cross_entropy)(jnp.zeros((2, 10)), jnp.array([0.0, 1.0]))


def test_cross_entropy_inside_jit_is_nan_not_another_class():
    """Traced labels cannot be checked without a host round trip per step: the loss is NaN
    (before: -1 read class 9, loss 0.016), the other examples' gradients unchanged."""
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(3, 10)), jnp.float32)
    f = jax.jit(losses.cross_entropy)
    for label in (-1, 10, 2**30):
        assert np.isnan(f(logits, jnp.array([0, label, 2])))
    good = jax.grad(lambda x: losses.cross_entropy(x, jnp.array([0, 2]), "sum"))(logits[::2])
    grad = jax.jit(jax.grad(lambda x: losses.cross_entropy(x, jnp.array([0, -1, 2]), "sum")))(
        logits)
    np.testing.assert_allclose(grad[::2], good, rtol=1e-6)
    assert not grad[1].any()


def _fit_setup(labels):
    n = len(labels)
    arrays = {"image": np.random.default_rng(0).integers(0, 256, (n, 784)).astype(np.uint8),
              "label": np.asarray(labels)}
    model = SeedMLP(hidden=8)
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    state = train.TrainState.create(apply_fn=model.apply, params=params, tx=optim.sgd(1e-3))
    step = train.make_train_step(train.classification_loss(model.apply, lambda x: x / 255.0))
    return arrays, state, step


@pytest.mark.parametrize("bad", [-1, 10])
def test_fit_and_run_training_refuse_out_of_range_labels_before_training(bad):
    """Before: label -1 trained as class 9 (loss 0.016), 10 gave NaN, without a word."""
    labels = np.arange(16) % 10
    labels[11] = bad
    arrays, state, step = _fit_setup(labels)
    run_steps = train.make_run_steps(step)
    sampler = D.EpochSampler(16, 4, None)
    with pytest.raises(DataError, match=rf"training data's labels: label {bad} \(at index 11, "
                       r"one of 1\) is outside 0..9"):
        train.fit(state, run_steps, D.to_device(arrays), sampler, 4, jax.random.key(0),
                  progress=False)
    seen = []
    with pytest.raises(DataError, match=f"label {bad}"):
        train.run_training(state, step, arrays, sampler, 4, train.split_keys(0),
                           on_chunk=lambda s, h: seen.append(int(s.step)))
    assert seen == []  # no chunk ran
    arrays["label"] = labels % 10  # the same compiled loop then trains
    _, history = train.fit(state, run_steps, D.to_device(arrays), sampler, 4, jax.random.key(0),
                           progress=False)
    assert np.isfinite(history.metrics["loss"]).all()


def test_fit_refuses_float_labels():
    arrays, state, step = _fit_setup(np.arange(8, dtype=np.float32) % 10)
    with pytest.raises(DataError, match="labels are float32, not integer class indices"):
        train.fit(state, train.make_run_steps(step), D.to_device(arrays), D.EpochSampler(8, 4),
                  2, jax.random.key(0), progress=False)


# --- 6. messages that send the user the right way -----------------------------------------------


def test_raw_and_gz_with_different_contents(tmp_path):
    """Before: the raw one used without a word."""
    d = make_idx_dir(str(tmp_path))  # raw files
    raw = os.path.join(d, "train-images-idx3-ubyte")
    with open(raw, "rb") as f:
        good = f.read()
    with open(raw + ".gz", "wb") as f:
        f.write(gzip.compress(good))
    assert len(D.load("mnist", "train", d)) == 64  # the same bytes: torchvision's layout, fine
    changed = bytearray(good)
    changed[-1] ^= 1
    with open(raw + ".gz", "wb") as f:
        f.write(gzip.compress(bytes(changed)))
    with pytest.raises(DataError) as e:
        D.load("mnist", "train", d)
    message = str(e.value)
    assert message.startswith(f"{d}: holds both train-images-idx3-ubyte and "
                              "train-images-idx3-ubyte.gz, with different contents")
    assert f"gunzip -kf {raw}.gz" in message and "\n" not in message
    os.remove(raw)  # the .gz alone is read
    np.testing.assert_array_equal(D.load("mnist", "train", d).images.reshape(-1)[-1],
                                  changed[-1])

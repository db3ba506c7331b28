"""The data layer: IDX and CIFAR-10 binary readers, the search order, transforms, batching."""

from __future__ import annotations

import gzip
import os
import tarfile

import jax
import numpy as np
import pytest
from conftest import FASHION_DIR, make_idx_dir, write_idx

from jaxnets import data
from jaxnets.data import bounded, cifar, idx
from jaxnets.errors import ConfigError, DataError, DataUnavailable


def test_fashion_mnist_real_files(fashion):
    train, test = fashion
    assert train.images.shape == (60000, 28, 28, 1) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28, 1)
    assert train.labels.dtype == np.int32 and set(np.unique(train.labels)) == set(range(10))
    assert np.bincount(train.labels).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    assert train.source == FASHION_DIR and train.class_names[9] == "Ankle boot"


@pytest.mark.parametrize("gz", [False, True])
def test_data_dir_raw_and_gz(tmp_path, gz):
    d = make_idx_dir(str(tmp_path), gz=gz)
    ds = data.load("mnist", "train", str(d))
    assert ds.images.shape == (64, 28, 28, 1) and len(ds) == 64
    assert data.load("mnist", "test", str(d)).images.shape == (32, 28, 28, 1)


def test_torchvision_layout(tmp_path):
    make_idx_dir(str(tmp_path / "MNIST" / "raw"))
    assert len(data.load("mnist", "train", str(tmp_path))) == 64


def test_data_dir_without_files(tmp_path):
    with pytest.raises(DataUnavailable, match="no mnist train files") as e:
        data.load("mnist", "train", str(tmp_path))
    assert "data_dir" in str(e.value)
    with pytest.raises(DataUnavailable, match="no such directory"):
        data.load("mnist", "train", str(tmp_path / "nope"))


def test_unknown_name_and_split():
    with pytest.raises(ConfigError, match="unknown dataset"):
        data.load("imagenet", "train")
    with pytest.raises(ConfigError, match="unknown split"):
        data.load("mnist", "validation")


def _corrupt_dir(tmp_path, mutate):
    d = make_idx_dir(str(tmp_path))
    path = os.path.join(d, "train-images-idx3-ubyte")
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    with open(path, "wb") as f:
        f.write(mutate(raw))
    return d


def test_bad_magic(tmp_path):
    d = _corrupt_dir(tmp_path, lambda b: b"\x00\x00\x0d" + b[3:])
    with pytest.raises(DataError, match="bad magic number.*train-images|train-images.*bad magic"):
        data.load("mnist", "train", d)


def test_truncated(tmp_path):
    d = _corrupt_dir(tmp_path, lambda b: b[:-100])
    with pytest.raises(DataError, match="wrong length"):
        data.load("mnist", "train", d)


def test_truncated_gzip(tmp_path):
    d = make_idx_dir(str(tmp_path), gz=True)
    path = os.path.join(d, "train-images-idx3-ubyte.gz")
    with open(path, "rb") as f:
        raw = f.read()
    with open(path, "wb") as f:
        f.write(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        data.load("mnist", "train", d)


def test_label_count_mismatch(tmp_path):
    d = make_idx_dir(str(tmp_path))
    write_idx(os.path.join(d, "train-labels-idx1-ubyte"), np.zeros(10))
    with pytest.raises(DataError, match="10 labels but .* has 64 images"):
        data.load("mnist", "train", d)


def test_parse_idx_wrong_ndim():
    payload = bytes([0, 0, 8, 1]) + np.asarray([3], ">u4").tobytes() + b"abc"
    assert idx.parse_idx(payload).tolist() == [97, 98, 99]
    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        idx.parse_idx(payload, ndim=3)


def _cifar_arrays(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n)


def test_cifar_binary_dir_and_tar(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    written = {}
    for i, name in enumerate(cifar.TRAIN_FILES + cifar.TEST_FILES):
        written[name] = _cifar_arrays(7, i)
        cifar.write_batch(str(folder / name), *written[name])
    train = data.load("cifar10", "train", str(tmp_path))
    assert train.images.shape == (35, 32, 32, 3) and train.class_names[0] == "plane"
    np.testing.assert_array_equal(train.images[:7], written["data_batch_1.bin"][0])
    np.testing.assert_array_equal(train.labels[7:14], written["data_batch_2.bin"][1])
    # The channel planes are R, G, B: pixel (0, 0) of image 0 reads the bytes 1, 1025, 2049.
    raw = (folder / "data_batch_1.bin").read_bytes()
    assert list(train.images[0, 0, 0]) == [raw[1], raw[1025], raw[2049]]
    # The same files inside the official tar.gz, read in place.
    tar_dir = tmp_path / "tar"
    tar_dir.mkdir()
    with tarfile.open(tar_dir / cifar.ARCHIVE, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-bin")
    test = data.load("cifar10", "test", str(tar_dir))
    np.testing.assert_array_equal(test.images, written["test_batch.bin"][0])


def test_cifar_corrupt(tmp_path):
    cifar.write_batch(str(tmp_path / "test_batch.bin"), *_cifar_arrays(3, 0))
    with open(tmp_path / "test_batch.bin", "ab") as f:
        f.write(b"xx")
    with pytest.raises(DataError, match="test_batch.bin: wrong length"):
        data.load("cifar10", "test", str(tmp_path))
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / cifar.ARCHIVE).write_bytes(gzip.compress(b"not a tar")[:20])
    with pytest.raises(DataError, match="corrupt or truncated archive"):
        data.load("cifar10", "test", str(tmp_path / "t2"))


def test_transforms_match_torchvision_semantics():
    x = np.array([[[[0], [255]], [[51], [204]]]], np.uint8)  # [1, 2, 2, 1]
    t = np.asarray(data.to_tensor(x))
    np.testing.assert_allclose(t[0, :, :, 0], [[0.0, 1.0], [0.2, 0.8]], rtol=1e-6)
    n = np.asarray(data.to_tensor_normalize((0.5,), (0.5,))(x))
    np.testing.assert_allclose(n[0, :, :, 0], [[-1.0, 1.0], [-0.6, 0.6]], rtol=1e-6)
    assert data.flatten(np.zeros((3, 4, 5, 2))).shape == (3, 40)


def test_epoch_sampler_is_a_pure_function_of_key_and_epoch():
    key = jax.random.key(0)
    s = data.EpochSampler(10, 4, key)
    idx0, mask0 = s.epoch_batches(0)
    assert idx0.shape == (3, 4) and mask0.sum() == 10  # last batch: 2 real + 2 padded
    assert sorted(idx0[mask0].tolist()) == list(range(10))
    np.testing.assert_array_equal(idx0, data.EpochSampler(10, 4, key).epoch_batches(0)[0])
    assert not np.array_equal(idx0, s.epoch_batches(1)[0])
    # Any range of global steps equals the same slice of the epoch-by-epoch concatenation.
    full = np.concatenate([s.epoch_batches(e)[0] for e in range(3)])
    np.testing.assert_array_equal(s.indices(2, 5)[0], full[2:7])
    # drop_last and no shuffling.
    assert data.EpochSampler(10, 4, None, drop_last=True).epoch_batches(0)[0].tolist() == [
        [0, 1, 2, 3], [4, 5, 6, 7]]
    with pytest.raises(ConfigError):
        data.EpochSampler(10, 0)
    with pytest.raises(ConfigError, match="leaves no batch"):
        data.EpochSampler(3, 4, drop_last=True)


def test_batches_is_a_dataloader():
    """batches() over a Dataset (itself an IndexableDataset): DataLoader's batches, short last."""
    ds = data.Dataset("toy", "train", np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1),
                      np.arange(10, dtype=np.int32) * 2, ("a",), "memory")
    got = list(data.batches(ds, data.EpochSampler(len(ds), 4)))
    assert [len(b["image"]) for b in got] == [4, 4, 2]
    assert got[2]["label"].tolist() == [16, 18]
    shuffled = list(data.batches(ds, data.EpochSampler(len(ds), 4, jax.random.key(1))))
    assert sorted(np.concatenate([b["label"] for b in shuffled]).tolist()) == list(range(0, 20, 2))
    np.testing.assert_array_equal(data.materialize(ds, chunk=3)["image"], ds.images)
    with pytest.raises(ConfigError, match="sampler over 9 examples"):
        next(data.batches(ds, data.EpochSampler(9, 4)))


def test_indexable_dataset_that_breaks_the_protocol():
    class Pairs:
        def __len__(self):
            return 5

        def __getitem__(self, index):
            return (index, index)

    class Rows:
        def __len__(self):
            return 5

        def __getitem__(self, index):
            return {"x": np.zeros(3)}

    with pytest.raises(DataError, match="Pairs\\[index\\] returned tuple; .* dict of arrays"):
        data.materialize(Pairs())
    with pytest.raises(DataError, match="'x' of shape \\(3,\\) for 2 indices"):
        next(data.batches(Rows(), data.EpochSampler(5, 2)))


@pytest.mark.slow
def test_replacement_sampler():
    s = data.ReplacementSampler(50, 8, jax.random.key(3))
    idx, mask = s.indices(0, 6)
    assert idx.shape == (6, 8) and mask.all() and idx.min() >= 0 and idx.max() < 50
    np.testing.assert_array_equal(s.indices(2, 3)[0], idx[2:5])


def test_unreadable_cifar_file_is_one_line(tmp_path, monkeypatch):
    """EACCES (root ignores permissions, so open is made to refuse): a DataError naming the file."""
    cifar.write_batch(str(tmp_path / "test_batch.bin"), *_cifar_arrays(3, 0))

    target = str(tmp_path / "test_batch.bin")
    real_open = os.open

    def refuse(path, *args, **kwargs):  # the one open every reader goes through (data.bounded)
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(bounded.os, "open", refuse)
    with pytest.raises(DataError) as err:
        data.load("cifar10", "test", str(tmp_path))
    message = str(err.value)
    assert message.startswith(str(tmp_path / "test_batch.bin") + ": cannot read (Permission denied)")
    assert "permissions" in message and "\n" not in message


def test_directory_where_a_cifar_file_is_expected(tmp_path):
    (tmp_path / "test_batch.bin").mkdir()
    with pytest.raises(DataUnavailable, match="no cifar10 test files there"):
        data.load("cifar10", "test", str(tmp_path))


def test_idx_with_zero_images(tmp_path):
    d = make_idx_dir(str(tmp_path))
    write_idx(os.path.join(d, "train-images-idx3-ubyte"), np.zeros((0, 28, 28)))
    write_idx(os.path.join(d, "train-labels-idx1-ubyte"), np.zeros((0,)))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: holds 0 images.*get it again"):
        data.load("mnist", "train", d)


def test_idx_header_whose_dimensions_overflow():
    """2^31 x 2^31 x 4 is 0 modulo 2^64: the length check must use exact integers."""
    header = bytes([0, 0, 8, 3]) + np.asarray([2**31, 2**31, 4], ">u4").tobytes()
    with pytest.raises(DataError, match=rf"wrong length 16 bytes .* \(expected {16 + 2**64}\)"):
        idx.parse_idx(header, "huge")
    header = bytes([0, 0, 8, 4]) + np.asarray([65536] * 4, ">u4").tobytes()
    with pytest.raises(DataError, match=rf"wrong length 36 bytes .* \(expected {20 + 2**64}\)"):
        idx.parse_idx(header + bytes(16), "huge")


def test_fashion_mnist_files_are_not_mnist(fashion):
    """Fashion-MNIST's files have MNIST's names and shapes: recognised by their labels."""
    for split in ("train", "test"):
        with pytest.raises(DataError, match=f"these are the fashion_mnist {split} files, not mnist"):
            data.load("mnist", split, FASHION_DIR)
    assert len(data.load("fashion_mnist", "test", FASHION_DIR)) == 10000

"""`load(name, split)`: one entry point for MNIST, Fashion-MNIST and CIFAR-10.

Where the data comes from, in order:
1. an explicit `data_dir` (raw or gzipped IDX files; CIFAR-10's binary batches or its tar.gz);
   when given, it must hold the files: no silent fallback to other data;
2. known local installs (Debian's `dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist);
3. the tensorflow-datasets cache (`~/tensorflow_datasets` or $TFDS_DATA_DIR);
4. a tensorflow-datasets download (no TensorFlow needed), which fails within seconds offline.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxnets.data import cifar, idx
from jaxnets.errors import ConfigError, DataUnavailable

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

DATASETS = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
CLASS_NAMES = {"mnist": MNIST_CLASSES, "fashion_mnist": FASHION_CLASSES,
               "cifar10": cifar.CLASS_NAMES}
# Known local installs, searched after an explicit data_dir.
KNOWN_DIRS = {"fashion_mnist": ("/usr/share/datasets/fashion-mnist",)}
# Sub-folders where people commonly keep the files (torchvision's layout among them).
_SUBDIRS = {"mnist": ("", "mnist", "MNIST/raw"),
            "fashion_mnist": ("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
            "cifar10": ("",)}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A split held in host memory. images: uint8[N, H, W, C]; labels: int32[N]."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str  # where it was read from, for the user's information

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def how_to_get(name: str) -> str:
    """The ways to make `name` available, for error messages."""
    ways = [f"pass --data-dir DIR holding the {name} files",
            "run once with internet so tensorflow-datasets downloads and caches it"]
    if name == "fashion_mnist":
        ways.insert(0, "apt-get install dataset-fashion-mnist (Debian)")
    if name == "cifar10":
        ways[0] = "pass --data-dir DIR holding CIFAR-10's binary version (cifar-10-batches-bin)"
    return "; or ".join(ways)


def _idx_paths(directory: str, split: str) -> tuple[str, str] | None:
    """The (images, labels) IDX paths for split in directory, raw or gzipped, or None."""
    found = []
    for kind, nd in (("images", 3), ("labels", 1)):
        stem = f"{_IDX_PREFIX[split]}-{kind}-idx{nd}-ubyte"
        hit = next((os.path.join(directory, stem + ext) for ext in ("", ".gz")
                    if os.path.isfile(os.path.join(directory, stem + ext))), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def read_dir(name: str, split: str, directory: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Read a split from a local folder (or its usual sub-folders), None if the files are absent."""
    if name == "cifar10":
        if cifar.find_files(directory, split) is None:
            return None
        return cifar.read_split(directory, split)
    for sub in _SUBDIRS[name]:
        paths = _idx_paths(os.path.join(directory, sub), split)
        if paths:
            return idx.read_image_label_pair(*paths)
    return None


def check_name(name: str, split: str) -> None:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose 'train' or 'test'")


def load(
    name: str,
    split: str,
    data_dir: str | None = None,
    *,
    local_dirs: tuple[str, ...] | None = None,
    tfds_dir: str | None = None,
    download: bool = True,
    mirror: str | None = None,
) -> Dataset:
    """Load a dataset split as uint8 NHWC images and int32 labels.

    Args:
      name: 'mnist', 'fashion_mnist' or 'cifar10'.
      split: 'train' or 'test'.
      data_dir: a folder holding the dataset's files; when given, it is the only place looked at.
      local_dirs: known installs to search (default: KNOWN_DIRS for the dataset).
      tfds_dir: the tensorflow-datasets data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
      download: whether to try a tensorflow-datasets download when nothing local is found.
      mirror: base URL to download the files from instead of the official hosts (tests, mirrors).

    Returns:
      A `Dataset`.

    Raises:
      DataUnavailable: no copy found and none could be downloaded (lists the ways to get it).
      DataError: a file is corrupt or truncated (names the file and what is wrong).
    """
    check_name(name, split)
    names = CLASS_NAMES[name]
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise DataUnavailable(f"--data-dir {data_dir}: no such directory; {how_to_get(name)}")
        got = read_dir(name, split, data_dir)
        if got is None:
            raise DataUnavailable(
                f"--data-dir {data_dir}: no {name} {split} files there; {how_to_get(name)}")
        return Dataset(name, split, *got, names, source=data_dir)
    for directory in KNOWN_DIRS.get(name, ()) if local_dirs is None else local_dirs:
        if os.path.isdir(directory):
            got = read_dir(name, split, directory)
            if got is not None:
                return Dataset(name, split, *got, names, source=directory)
    from jaxnets.data import tfds_source  # lazy: tensorflow_datasets is slow to import

    tfds_dir = tfds_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(
        "~/tensorflow_datasets")
    got = tfds_source.load_cached(name, split, tfds_dir)
    if got is not None:
        return Dataset(name, split, *got, names, source=f"tfds cache {tfds_dir}")
    if not download:
        raise DataUnavailable(f"{name}: not found locally and download is off; {how_to_get(name)}")
    images, labels = tfds_source.download_and_load(name, split, tfds_dir, mirror=mirror)
    return Dataset(name, split, images, labels, names, source=f"tfds download -> {tfds_dir}")

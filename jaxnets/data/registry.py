"""The dataset registry: everything jaxnets knows about a dataset, in one entry each.

Read by the local loaders (`sources.load`) and by the tensorflow-datasets builders
(`tfds_builders`); neither knows a dataset by name. Adding a dataset is one `Entry` in
`REGISTRY` plus its official files in `checksums/<name>.tsv` (url, size, sha256, file name:
tfds' url_checksums format with the file name as fourth column).

An entry's `find` and `read` come from the format's module (`idx`, `cifar`):
`find(directory, split, files) -> {file name: path} | None` looks for a split's files in a
folder, `read(paths, split, files) -> (images uint8[N, H, W, C], labels int32[N])` parses them;
`files` are the entry's official file names for that split, and the tfds builders pass `read`
the downloaded files under those names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
from collections.abc import Callable, Mapping

import numpy as np

from jaxnets.data import cifar, idx
from jaxnets.errors import ConfigError, DataError

SPLITS = ("train", "test")
# The version of the tfds builders' prepared data (a new one re-prepares every cache).
TFDS_VERSION = "1.0.0"
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One dataset: what it is, where its files are, how to read them."""

    name: str
    shape: tuple[int, int, int]  # one image, HWC
    class_names: tuple[str, ...]
    files: Mapping[str, tuple[str, ...]]  # split -> the official files holding it (as downloaded)
    find: Callable  # (directory, split, files) -> {file name: path} | None
    read: Callable  # (paths, split, files) -> (images, labels)
    tfds_name: str  # the tfds builder's name (not tfds' own, which needs TensorFlow)
    homepage: str
    files_hint: str  # what a data_dir must hold, for messages
    subdirs: tuple[str, ...] = ("",)  # where in a data_dir people keep the files
    known_dirs: tuple[str, ...] = ()  # system installs searched when no data_dir is given
    install: str | None = None  # a package that installs the files
    # sha256 of the uint8 labels of each split, in file order: labels are small and tell datasets
    # of the same format apart (Fashion-MNIST's files carry MNIST's names and shapes).
    label_digests: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def how_to_get(self) -> str:
        """The ways to make this dataset available, for error messages."""
        ways = [f"point data_dir at a folder holding {self.files_hint}",
                "run once with internet so tensorflow-datasets downloads and caches it"]
        if self.install:
            ways.insert(0, self.install)
        return "; or ".join(ways)

    def official_files(self) -> dict[str, tuple[str, int, str]]:
        """The official files: file name -> (url, size, sha256), from checksums/<name>.tsv."""
        text = (importlib.resources.files("jaxnets.data") / "checksums"
                / f"{self.name}.tsv").read_text()
        out = {}
        for line in text.splitlines():
            if line.strip() and not line.startswith("#"):
                url, size, sha, filename = line.strip().split("\t")
                out[filename] = (url, int(size), sha)
        return out


REGISTRY: dict[str, Entry] = {e.name: e for e in (
    Entry(
        name="mnist",
        shape=(28, 28, 1),
        class_names=tuple(str(i) for i in range(10)),
        files=_IDX_FILES,
        find=idx.find_split,
        read=idx.read_split,
        tfds_name="jaxnets_mnist",
        homepage="http://yann.lecun.com/exdb/mnist/",
        files_hint="the mnist files",
        subdirs=("", "mnist", "MNIST/raw"),  # torchvision's layout among them
    ),
    Entry(
        name="fashion_mnist",
        shape=(28, 28, 1),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        files=_IDX_FILES,
        find=idx.find_split,
        read=idx.read_split,
        tfds_name="jaxnets_fashion_mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        files_hint="the fashion_mnist files",
        subdirs=("", "fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
        known_dirs=("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist
        install="apt-get install dataset-fashion-mnist (Debian)",
        # Measured on Debian's files, which hold the official contents re-gzipped.
        label_digests={
            "train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
            "test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9"},
    ),
    Entry(
        name="cifar10",
        shape=(32, 32, 3),
        class_names=cifar.CLASS_NAMES,
        files={"train": (cifar.ARCHIVE,), "test": (cifar.ARCHIVE,)},
        find=cifar.find_split,
        read=cifar.read_split,
        tfds_name="jaxnets_cifar10",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        files_hint="CIFAR-10's binary version (cifar-10-batches-bin)",
    ),
)}
DATASETS = tuple(REGISTRY)


def entry(name: str) -> Entry:
    """The registry entry of a dataset; an unknown name is a ConfigError listing the known ones."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return REGISTRY[name]


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose 'train' or 'test'")


def check_data(name: str, split: str, images: np.ndarray, labels: np.ndarray,
               where: str) -> None:
    """Refuse a split that contradicts its registry entry, whichever source it came from:
    images uint8[N, *entry.shape] with N >= 1, labels integers in 0..classes-1, one per image.
    Checked once on the host, before any model sees the data (a 32x32 "mnist" would otherwise
    build a 1024-input network and be reported as the tutorial's 784 one)."""
    e = entry(name)
    images, labels = np.asarray(images), np.asarray(labels)
    shape = "x".join(map(str, e.shape))
    if images.ndim != 4 or tuple(images.shape[1:]) != e.shape:
        got = "x".join(map(str, images.shape[1:])) if images.ndim == 4 else f"{images.shape}"
        raise DataError(f"{where}: the {split} images are {got}, but {name}'s are {shape} (HxWxC); "
                        f"these are not {name} files: point to a folder holding {e.files_hint}")
    if images.dtype != np.uint8:
        raise DataError(f"{where}: the {split} images are {images.dtype}, {name}'s are uint8 "
                        "(0..255); these are not its files")
    if len(images) == 0:
        raise DataError(f"{where}: the {split} split holds no images; the files are cut or not "
                        "the real ones, get them again")
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: the {split} labels are {labels.dtype}{list(labels.shape)} for "
                        f"{len(images)} images, expected one integer label per image")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= len(e.class_names):
        bad = low if low < 0 else high
        raise DataError(f"{where}: {split} label {bad} is outside 0..{len(e.class_names) - 1} "
                        f"({name} has {len(e.class_names)} classes); the files are corrupt or not "
                        f"{name}'s")


def check_identity(name: str, split: str, labels: np.ndarray, where: str) -> None:
    """Refuse files that are another registered dataset's (found by their labels' digest)."""
    digest = hashlib.sha256(np.asarray(labels, np.uint8).tobytes()).hexdigest()
    for other in REGISTRY.values():
        if other.name != name and other.label_digests.get(split) == digest:
            raise DataError(
                f"{where}: these are the {other.name} {split} files, not {name}; load them as "
                f"dataset {other.name!r}, or point to a folder with {name}'s "
                "files")

"""`load(name, split)`: one entry point for every dataset of the registry (`registry.py`).

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

from jaxnets.data import fake, registry
from jaxnets.data.registry import DATASETS, SPLITS  # noqa: F401  (re-exported)
from jaxnets.errors import DataUnavailable

CLASS_NAMES = {name: e.class_names for name, e in registry.REGISTRY.items()}


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

    def __getitem__(self, index) -> dict[str, np.ndarray]:
        """Examples `index` as {'image', 'label'}: a Dataset is an `IndexableDataset` too."""
        return {"image": self.images[index], "label": self.labels[index]}


def how_to_get(name: str) -> str:
    """The ways to make `name` available, for error messages."""
    return registry.entry(name).how_to_get()


def read_dir(name: str, split: str, directory: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Read a split from a local folder (or its usual sub-folders), None if the files are absent."""
    entry = registry.entry(name)
    files = entry.files[split]
    for sub in entry.subdirs:
        folder = os.path.join(directory, sub) if sub else directory
        paths = entry.find(folder, split, files)
        if paths:
            images, labels = entry.read(paths, split, files)
            registry.check_data(name, split, images, labels, folder)
            registry.check_identity(name, split, labels, folder)
            return images, labels
    return None


def _dataset(name: str, split: str, got: tuple[np.ndarray, np.ndarray], source: str) -> Dataset:
    """The Dataset of a split read from `source`, checked against its registry entry (every
    source passes here: a folder, a known install, the tfds cache, a download)."""
    registry.check_data(name, split, *got, source)
    return Dataset(name, split, *got, registry.entry(name).class_names, source=source)


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
      name: a registered dataset ('mnist', 'fashion_mnist' or 'cifar10'), or its fake
        ('fake_cifar10': `jaxnets.data.fake`, torchvision's FakeData; nothing is read).
      split: 'train' or 'test'.
      data_dir: a folder holding the dataset's files; when given, it is the only place looked at.
      local_dirs: known installs to search (default: the registry's known_dirs for the dataset).
      tfds_dir: the tensorflow-datasets data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
      download: whether to try a tensorflow-datasets download when nothing local is found.
      mirror: base URL to download the files from instead of the official hosts (tests, mirrors).

    Returns:
      A `Dataset`.

    Raises:
      DataUnavailable: no copy found and none could be downloaded (lists the ways to get it).
      DataError: a file is corrupt, truncated, unreadable or another dataset's (names the file
        and what is wrong).
    """
    if fake.is_fake(name):
        real = name.removeprefix(fake.PREFIX)
        images, labels = fake.arrays(real, split)
        return Dataset(name, split, images, labels, registry.entry(real).class_names,
                       source=fake.source(real, split, len(labels)))
    entry = registry.entry(name)
    registry.check_split(split)
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise DataUnavailable(f"data_dir {data_dir}: no such directory; {how_to_get(name)}")
        got = read_dir(name, split, data_dir)
        if got is None:
            raise DataUnavailable(
                f"data_dir {data_dir}: no {name} {split} files there; {how_to_get(name)}")
        return _dataset(name, split, got, data_dir)
    for directory in entry.known_dirs if local_dirs is None else local_dirs:
        if os.path.isdir(directory):
            got = read_dir(name, split, directory)
            if got is not None:
                return _dataset(name, split, got, directory)
    from jaxnets.data import tfds_source  # lazy: only this path may need tensorflow_datasets

    tfds_dir = tfds_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(
        "~/tensorflow_datasets")
    got = tfds_source.load_cached(name, split, tfds_dir)
    if got is not None:
        return _dataset(name, split, got, f"tfds cache {tfds_dir}")
    if not download:
        raise DataUnavailable(f"{name}: not found locally and download is off; {how_to_get(name)}")
    got = tfds_source.download_and_load(name, split, tfds_dir, mirror=mirror)
    return _dataset(name, split, got, f"tfds download -> {tfds_dir}")

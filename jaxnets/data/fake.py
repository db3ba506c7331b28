"""Fake data, as torchvision's `datasets.FakeData`: seeded random images of a real dataset's shape.

    data.load("fake_cifar10", "train")     # 1000 random 32x32x3 images, CIFAR-10's 10 classes

For running a whole pipeline (training, plots, export) where the real images are not at hand:
the images are uniform random bytes and the labels uniform random classes, so nothing can be
learned from them (test accuracy stays near chance). A fake dataset is named as one everywhere
it shows: its `name` is `fake_<name>` and its `source` says it is FakeData. The same name,
split and seed give the same images; the train and test splits differ.
"""

from __future__ import annotations

import numpy as np

from jaxnets.data import registry

PREFIX = "fake_"
# torchvision's FakeData has size=1000; a test split of a fifth of that keeps evaluation quick.
SIZES = {"train": 1000, "test": 200}


def is_fake(name: str) -> bool:
    """Whether `name` names a fake dataset (`fake_<a registered dataset>`)."""
    return name.startswith(PREFIX)


def names() -> tuple[str, ...]:
    """The fake datasets there are: one per registered dataset."""
    return tuple(PREFIX + name for name in registry.REGISTRY)


def arrays(name: str, split: str, size: int | None = None, seed: int = 0
           ) -> tuple[np.ndarray, np.ndarray]:
    """`size` (default SIZES[split]) seeded random uint8 images of the registered dataset
    `name`'s shape, and int32 labels among its classes."""
    entry = registry.entry(name)
    registry.check_split(split)
    size = SIZES[split] if size is None else size
    rng = np.random.default_rng([seed, registry.SPLITS.index(split)])
    images = rng.integers(0, 256, (size, *entry.shape), dtype=np.uint8)
    labels = rng.integers(0, len(entry.class_names), size).astype(np.int32)
    return images, labels


def source(name: str, split: str, size: int) -> str:
    """What a fake dataset's `source` says: that it is fake, and of what."""
    return f"FakeData: {size} seeded random images of {name}'s shape, not {name} ({split})"

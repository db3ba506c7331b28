"""tensorflow-datasets builders for the registry's datasets, without TensorFlow.

The official tfds builders for mnist/fashion_mnist/cifar10 need TensorFlow to generate, so
jaxnets has its own `GeneratorBasedBuilder`, one subclass per registry entry, named by the
entry's `tfds_name` (`jaxnets_mnist`, ...: no clash with tfds' names). They parse files that
`tfds_source` already downloaded and verified with the entry's own reader (numpy only;
CIFAR-10's *binary* tarball, never pickles) and write `array_record`, read back through
`as_data_source`. The prepared folders are ordinary tfds datasets:
`tfds.builder_from_directory(path)` reads them. This module imports tensorflow_datasets, so it
is imported only when a tfds cache or download is used (`import jaxnets` must stay fast).

Images are stored as raw bytes (`tfds.features.Tensor(uint8, encoding=BYTES)`), not as `Image`:
PNG needs TF or a PIL round trip, and on our 2-core CPU it made preparing Fashion-MNIST ~1.5x
slower and reading its cached train split ~6x slower. Shuffling is disabled so the records keep
the files' order: the arrays equal what the readers return for the files.
"""

from __future__ import annotations

import types
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from jaxnets.data import registry
from jaxnets.errors import DataError

VERSION = registry.TFDS_VERSION


class JaxnetsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Prepares one registry entry from files already downloaded (`paths`: file name -> path)."""

    VERSION = tfds.core.Version(VERSION)
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        registry.TFDS_VERSION: "Parsed with numpy (no TensorFlow); images as uint8 tensors."}
    entry: ClassVar[registry.Entry]

    def __init__(self, *, paths: dict[str, str] | None = None,
                 urls: dict[str, str] | None = None, **kwargs: Any):
        # Set before super().__init__, which already builds the DatasetInfo.
        self._paths = dict(paths or {})
        self._urls = dict(urls or {})
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.entry.name} parsed by jaxnets without TensorFlow.",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Tensor(shape=self.entry.shape, dtype=np.uint8,
                                              encoding=tfds.features.Encoding.BYTES),
                "label": tfds.features.ClassLabel(names=self.entry.class_names),
            }),
            supervised_keys=("image", "label"),
            homepage=self.entry.homepage,
            # Keep the files' order: records are written sorted by key (the file index).
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # tfds_source downloads (with timeouts) before preparing
        return {split: self._generate_examples(split) for split in registry.SPLITS}

    def _generate_examples(self, split: str):
        files = self.entry.files[split]
        try:
            images, labels = self.entry.read(self._paths, split, files)
        except DataError as e:
            # Name the official file first: the downloaded path is a cache name.
            bad = next((f for f in files if self._paths[f] in str(e)), files[0])
            raise DataError(f"{bad} (downloaded from {self._urls.get(bad, '?')}): {e}") from None
        # Before anything is written: no prepared folder under this name holds other data.
        registry.check_identity(self.entry.name, split, labels,
                                f"{', '.join(files)} (downloaded from {self._urls.get(files[0])})")
        for key, (image, label) in enumerate(zip(images, labels)):
            yield key, {"image": image, "label": int(label)}


def _subclass(entry: registry.Entry) -> type:
    """The builder of one registry entry (tfds reads a builder's name from its class)."""
    return types.new_class(entry.tfds_name, (JaxnetsBuilder,), {"skip_registration": True},
                           lambda ns: ns.update(name=entry.tfds_name, entry=entry,
                                                __doc__=f"{entry.name}, parsed with numpy."))


BUILDERS: dict[str, type] = {name: _subclass(e) for name, e in registry.REGISTRY.items()}

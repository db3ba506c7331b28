"""The data layer: a dataset registry, sources (IDX, CIFAR-10 binary, tensorflow-datasets),
user-defined datasets, transforms, batching."""

# Before batching: EpochSampler shuffles with jax.random.
import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)
from jaxnets.data.batching import (
    EpochSampler,
    ReplacementSampler,
    epoch_order,
    gather,
    num_batches,
    to_device,
)
from jaxnets.data.bounded import read_rows
from jaxnets.data.indexable import IndexableDataset, batches, materialize
from jaxnets.data.sources import CLASS_NAMES, DATASETS, Dataset, how_to_get, load
from jaxnets.data.transforms import (
    compose,
    divide_by_batch_max,
    flatten,
    normalize,
    to_tensor,
    to_tensor_normalize,
)

__all__ = [
    "CLASS_NAMES", "DATASETS", "Dataset", "EpochSampler", "IndexableDataset",
    "ReplacementSampler", "batches", "compose", "divide_by_batch_max", "epoch_order", "flatten",
    "gather", "how_to_get", "load", "materialize", "normalize", "num_batches", "read_rows",
    "to_device",
    "to_tensor", "to_tensor_normalize",
]

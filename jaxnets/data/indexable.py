"""User-defined datasets: torch.utils.data.Dataset's counterpart, fed to the same samplers and loop.

PyTorch: subclass `Dataset` with `__len__` and `__getitem__(idx)`, then
`DataLoader(dataset, batch_size=32)` collates one example at a time into batches. Here a dataset
is anything with `__len__` and a *batched* `__getitem__`: given an int array of indices it
returns a dict of arrays whose first axis follows those indices (what `DataLoader` calls
`__getitems__` when a dataset has it). A numpy-indexed class is a few lines (see
`experiments/custom_dataset.py`), and so is a `Dataset` from `load`.

Two ways to use one:
- `batches(dataset, sampler)`: a host-side DataLoader, one dict of numpy arrays per step, in the
  order a sampler gives (`EpochSampler`: DataLoader's batch_size/shuffle/drop_last, with the last
  batch short as DataLoader's is).
- `materialize(dataset)`: every example read once into host arrays, for `to_device`, then the
  whole-run training loop (`train.fit`) gathers batches on the device with the same sampler:
  the fast path, used when the data fits in device memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from jaxnets.errors import ConfigError, DataError


@runtime_checkable
class IndexableDataset(Protocol):
    """What a user-defined dataset provides: its length and batched indexing."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: np.ndarray) -> Mapping[str, np.ndarray]: ...


def _fetch(dataset: IndexableDataset, index: np.ndarray) -> dict[str, np.ndarray]:
    """dataset[index] as a dict of numpy arrays, checked: one row per index in every array."""
    got = dataset[index]
    if not isinstance(got, Mapping):
        raise DataError(f"{type(dataset).__name__}[index] returned {type(got).__name__}; a "
                        "dataset's __getitem__ must return a dict of arrays")
    out = {k: np.asarray(v) for k, v in got.items()}
    for k, v in out.items():
        if v.ndim == 0 or v.shape[0] != len(index):
            raise DataError(f"{type(dataset).__name__}[index] returned {k!r} of shape {v.shape} "
                            f"for {len(index)} indices; its first axis must follow the indices")
    return out


def batches(dataset: IndexableDataset, sampler, start: int = 0,
            count: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield dataset[indices] for global steps start .. start+count-1 (default: one epoch).

    Args:
      dataset: anything with __len__ and a batched __getitem__ (see IndexableDataset).
      sampler: gives each step's indices (`EpochSampler`, `ReplacementSampler`); its padded
        slots (mask False) are left out, so a short last batch comes out short.
      start: the first global step.
      count: how many steps (default: the sampler's steps_per_epoch).

    Returns:
      An iterator of dicts of numpy arrays, one per step.
    """
    if getattr(sampler, "n", len(dataset)) != len(dataset):
        raise ConfigError(f"sampler over {sampler.n} examples for a dataset of {len(dataset)}; "
                          "build the sampler with n=len(dataset)")
    if count is None:
        count = sampler.steps_per_epoch
    for step in range(start, start + count):
        idx, mask = sampler.indices(step, 1)
        yield _fetch(dataset, idx[0][mask[0]])


def materialize(dataset: IndexableDataset, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Every example, in index order, as host arrays (for `to_device` and `train.fit`)."""
    n = len(dataset)
    if n < 1:
        raise DataError(f"{type(dataset).__name__} has no examples (len 0)")
    parts = [_fetch(dataset, np.arange(i, min(i + chunk, n), dtype=np.int32))
             for i in range(0, n, chunk)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

"""jaxnets: the classic PyTorch beginner tutorials in JAX + Flax + Optax, as pure functions.

Importing jaxnets touches no network and no data, and imports nothing heavy: the submodules and
the names below load on first use (PEP 562), so `jaxnets.errors` (what the experiments' command
line needs to answer --help and flag errors) imports without jax.
"""

from __future__ import annotations

import importlib

from jaxnets.errors import CheckpointError, ConfigError, DataError, DataUnavailable, JaxnetsError
from jaxnets.options import RunOptions, TrainOptions

_SUBMODULES = frozenset({
    "aot", "checkpoint", "data", "init", "layers", "losses", "metrics", "models", "optim",
    "options", "parallel", "plots", "resnet", "thermometer", "torch_io", "train",
})
_FROM_TRAIN = frozenset({"TrainState", "classification_loss", "evaluate", "fit", "make_run_steps",
                         "make_train_step", "run_training", "split_keys"})

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "DataUnavailable", "JaxnetsError",
    "RunOptions", "TrainOptions", "TrainState", "aot", "checkpoint", "classification_loss",
    "data", "evaluate", "fit", "init", "layers", "losses", "make_run_steps", "make_train_step",
    "metrics", "models", "optim", "options", "parallel", "plots", "resnet", "run_training",
    "split_keys", "thermometer", "torch_io", "train",
]


def __getattr__(name: str):
    """Import a submodule, or a name re-exported from jaxnets.train, when first asked for."""
    if name in _SUBMODULES:
        return importlib.import_module(f"jaxnets.{name}")
    if name in _FROM_TRAIN:
        return getattr(importlib.import_module("jaxnets.train"), name)
    raise AttributeError(f"module 'jaxnets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

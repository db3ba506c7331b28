"""jaxnets: the classic PyTorch beginner tutorials in JAX + Flax + Optax, as pure functions.

Importing jaxnets touches no network and no data; tensorflow-datasets and torch are imported
only where they are needed.
"""

from jaxnets import (
    checkpoint,
    data,
    init,
    layers,
    losses,
    metrics,
    models,
    optim,
    parallel,
    plots,
    resnet,
    thermometer,
    torch_io,
    train,
)
from jaxnets.errors import CheckpointError, ConfigError, DataError, DataUnavailable, JaxnetsError
from jaxnets.train import TrainState, evaluate, fit, make_run_steps, make_train_step

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "DataUnavailable", "JaxnetsError",
    "TrainState", "checkpoint", "data", "evaluate", "fit", "init", "layers", "losses",
    "make_run_steps", "make_train_step", "metrics", "models", "optim", "parallel", "plots",
    "resnet", "thermometer", "torch_io", "train",
]

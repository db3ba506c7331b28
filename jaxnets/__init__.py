"""jaxnets: the classic PyTorch beginner tutorials in JAX + Flax + Optax, as pure functions."""

from jaxnets import data, losses, metrics, models, optim, plots, train
from jaxnets.errors import CheckpointError, ConfigError, DataError, DataUnavailable, JaxnetsError
from jaxnets.train import TrainState, evaluate, fit, make_run_steps, make_train_step

__all__ = [
    "CheckpointError", "ConfigError", "DataError", "DataUnavailable", "JaxnetsError",
    "TrainState", "data", "evaluate", "fit", "losses", "make_run_steps", "make_train_step",
    "metrics", "models", "optim", "plots", "train",
]

"""Losses with PyTorch's reduction semantics (torch.nn.CrossEntropyLoss, MSELoss, ...).

`reduction` is 'mean' (PyTorch's default), 'sum' or 'none'. `weights` (e.g. the mask of a padded
last batch) makes 'mean' the mean over the real examples only, which is what PyTorch computes
on the short batch itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Here because jaxnets.train (keys, steps) imports losses: its draws follow the pin too.
import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)
from jaxnets.errors import DataError


def reduce(per_example: jnp.ndarray, reduction: str = "mean", weights=None) -> jnp.ndarray:
    """Apply a PyTorch-style reduction over the leading (batch) axis, honouring weights."""
    if reduction == "none":
        return per_example
    if weights is not None:
        w = jnp.asarray(weights, per_example.dtype).reshape(
            weights.shape + (1,) * (per_example.ndim - weights.ndim))
        total = jnp.sum(per_example * w)
        if reduction == "sum":
            return total
        count = jnp.sum(jnp.broadcast_to(w, per_example.shape))
        return total / jnp.maximum(count, 1)
    if reduction == "sum":
        return jnp.sum(per_example)
    if reduction == "mean":
        return jnp.mean(per_example)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def check_labels(labels, num_classes: int, what: str = "labels") -> None:
    """DataError unless `labels` (values on the host) are integers in 0..num_classes-1: what
    PyTorch's cross_entropy checks on every call ("IndexError: Target 10 is out of bounds.",
    "Target -1 ..."; float targets of shape [N]: "expected target dtype to be Long")."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{what} are {labels.dtype}, not integer class indices; cast them to "
                        "int32 (PyTorch's cross_entropy refuses them too)")
    if labels.size == 0:
        return
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{what}: label {int(labels.reshape(-1)[i])} (at index {i}, one of "
                        f"{bad.size}) is outside 0..{num_classes - 1}, the model's "
                        f"{num_classes} classes (PyTorch: \"Target out of bounds\"); fix or drop "
                        "those examples (PyTorch's ignore_index=-100 is not supported here)")


def cross_entropy(logits, labels, reduction: str = "mean", weights=None) -> jnp.ndarray:
    """nn.CrossEntropyLoss on integer class labels: log-softmax + NLL, mean over the batch.

    A label outside 0..C-1 (C = logits.shape[-1]) is an error, as in PyTorch, whose CPU kernel
    raises IndexError on each call. Labels known when called (not traced) are checked here,
    `check_labels`' DataError. Inside jit their values are unknown while tracing, so checking
    them would cost a host round trip per step: there the example's loss is NaN instead (never
    silently another class's: index -1 would read class C-1), so the batch's loss is NaN,
    which `train.run_training` reports; `train.fit` and `run_training` check the whole
    dataset's labels once before the first step. Labels of a float dtype are refused while
    tracing (static). PyTorch's `ignore_index=-100` is not supported: drop those examples, or
    give them a valid label and weight 0.
    """
    num_classes = logits.shape[-1]
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        check_labels(np.zeros(0, jnp.result_type(labels)), num_classes)  # its dtype error
    if not isinstance(labels, jax.core.Tracer):
        check_labels(labels, num_classes)
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    valid = (labels >= 0) & (labels < num_classes)
    return reduce(jnp.where(valid, per_example, jnp.nan), reduction, weights)


def mse(pred, target, reduction: str = "mean", weights=None) -> jnp.ndarray:
    """nn.MSELoss: mean of squared differences over *all* elements (not per example)."""
    return reduce((pred - target) ** 2, reduction, weights)


def sse(pred, target) -> jnp.ndarray:
    """Sum of squared errors, `(y_pred - y).pow(2).sum()` (seed 002's two-layer net)."""
    return jnp.sum((pred - target) ** 2)

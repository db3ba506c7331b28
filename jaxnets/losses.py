"""Losses with PyTorch's reduction semantics (torch.nn.CrossEntropyLoss, MSELoss, ...).

`reduction` is 'mean' (PyTorch's default), 'sum' or 'none'. `weights` (e.g. the mask of a padded
last batch) makes 'mean' the mean over the real examples only, which is what PyTorch computes
on the short batch itself.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

# Here because jaxnets.train (keys, steps) imports losses: its draws follow the pin too.
import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)


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


def cross_entropy(logits, labels, reduction: str = "mean", weights=None) -> jnp.ndarray:
    """nn.CrossEntropyLoss on integer class labels: log-softmax + NLL, mean over the batch."""
    per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return reduce(per_example, reduction, weights)


def mse(pred, target, reduction: str = "mean", weights=None) -> jnp.ndarray:
    """nn.MSELoss: mean of squared differences over *all* elements (not per example)."""
    return reduce((pred - target) ** 2, reduction, weights)


def sse(pred, target) -> jnp.ndarray:
    """Sum of squared errors, `(y_pred - y).pow(2).sum()` (seed 002's two-layer net)."""
    return jnp.sum((pred - target) ** 2)

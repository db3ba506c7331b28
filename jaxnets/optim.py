"""Optimizers as optax GradientTransformations, with PyTorch's semantics where they differ.

Tutorial-only rules live here too, as small transformations with a NamedTuple state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class AccumulatedGradState(NamedTuple):
    grad_sum: optax.Updates  # what PyTorch's never-zeroed `.grad` holds


def accumulating_sgd(learning_rate: float) -> optax.GradientTransformation:
    """Seed 000's hand-written update: `w -= lr * w.grad` without ever zeroing `.grad`.

    PyTorch *adds* each backward pass into `.grad`, and the seed never calls `zero_grad()`, so
    step t subtracts lr * (g_1 + ... + g_t). This reproduces that quirk; `optax.sgd(lr)` is the
    textbook rule (the experiment's --zero-grad).
    """

    def init(params):
        return AccumulatedGradState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        grad_sum = jax.tree.map(jnp.add, state.grad_sum, grads)
        return jax.tree.map(lambda g: -learning_rate * g, grad_sum), AccumulatedGradState(grad_sum)

    return optax.GradientTransformation(init, update)


def adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
    """torch.optim.Adam (no weight decay): same defaults as optax.adam (eps=1e-8 added after the
    square root, eps_root=0), so optax.adam is used as is."""
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps)

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


class TorchAdamState(NamedTuple):
    count: jax.Array  # steps taken, int32
    mu: optax.Updates  # exp_avg
    nu: optax.Updates  # exp_avg_sq


def adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
    """torch.optim.Adam (no weight decay, no amsgrad), arithmetic as torch/optim/adam.py does it.

    optax.adam has the same defaults (eps added after the square root) and the same rule on paper,
    but computes the bias corrections `1 - b**t` in float32, where `1 - 0.999**t` cancels
    catastrophically (1.3e-5 relative error at t=1); PyTorch computes them in Python doubles.
    That error moves the whole trajectory by ~1e-4 within 100 steps of seed 000's run. Here they
    are `-expm1(t * log(b))`, accurate to float32 rounding, and the update is PyTorch's:
        exp_avg.lerp_(g, 1 - b1); exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * g * g
        p -= lr / bc1 * exp_avg / (sqrt(exp_avg_sq) / sqrt(bc2) + eps)
    """
    import math

    log_b1, log_b2 = math.log(b1), math.log(b2)

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return TorchAdamState(jnp.zeros((), jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        del params
        count = state.count + 1
        t = count.astype(jnp.float32)
        bc1 = -jnp.expm1(t * log_b1)
        bc2_sqrt = jnp.sqrt(-jnp.expm1(t * log_b2))
        mu = jax.tree.map(lambda m, g: m + (1 - b1) * (g - m), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v * b2 + (1 - b2) * g * g, state.nu, grads)
        step_size = learning_rate / bc1
        updates = jax.tree.map(lambda m, v: -step_size * m / (jnp.sqrt(v) / bc2_sqrt + eps), mu, nu)
        return updates, TorchAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


# --- torch.optim.SGD ---------------------------------------------------------------------------
# optax.sgd(lr, momentum) keeps `trace = g + momentum * trace` from trace = 0, which equals
# PyTorch's buffer only while dampening = 0. PyTorch's rule (torch/optim/sgd.py), per parameter:
#   g = grad + weight_decay * p                       (L2 added to the gradient first)
#   buf = g on the first step, else momentum * buf + (1 - dampening) * g
#   g = g + momentum * buf if nesterov else buf
#   p = p - lr * g
# The first step copies g undamped: a zero-initialised trace would scale it by (1 - dampening).

from jaxnets.errors import ConfigError  # imported here: this section was appended


class TorchMomentumState(NamedTuple):
    count: jax.Array         # steps taken; 0 means PyTorch's momentum_buffer is still None
    buf: optax.Updates       # PyTorch's momentum_buffer


def torch_momentum(momentum: float, dampening: float = 0.0,
                   nesterov: bool = False) -> optax.GradientTransformation:
    """PyTorch's SGD momentum buffer (first step buf = g, then momentum*buf + (1-dampening)*g)."""

    def init(params):
        return TorchMomentumState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        first = state.count == 0
        buf = jax.tree.map(
            lambda b, g: jnp.where(first, g, momentum * b + (1.0 - dampening) * g),
            state.buf, grads)
        if nesterov:
            updates = jax.tree.map(lambda g, b: g + momentum * b, grads, buf)
        else:
            updates = buf
        return updates, TorchMomentumState(optax.safe_int32_increment(state.count), buf)

    return optax.GradientTransformation(init, update)


def sgd(learning_rate: float | optax.Schedule, momentum: float = 0.0, dampening: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """torch.optim.SGD(lr, momentum, dampening, nesterov, weight_decay) as an optax chain.

    Raises ConfigError for the settings PyTorch rejects (negative values; nesterov without
    momentum or with dampening).
    """
    if not callable(learning_rate) and learning_rate < 0:
        raise ConfigError(f"SGD learning rate must be >= 0, got {learning_rate}")
    if momentum < 0 or weight_decay < 0:
        raise ConfigError(f"SGD momentum and weight_decay must be >= 0, got {momentum}, "
                          f"{weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ConfigError("SGD nesterov momentum needs momentum > 0 and dampening = 0 "
                          "(as in torch.optim.SGD)")
    parts = []
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    if momentum:
        parts.append(torch_momentum(momentum, dampening, nesterov))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


# --- Newton's method (seed 002's second-order optimisation) --------------------------------------
# Seed 002 names the second-order rule w = w - eta * H^-1 dL/dw. PyTorch has no such optimizer
# (torch.autograd.functional.hessian gives H); here it is an optax transformation that needs the
# loss itself, because H is not a function of the gradient alone.

# imported here: this section was appended
from collections.abc import Callable

from jax.flatten_util import ravel_pytree


def newton(loss_fn: Callable[[optax.Params], jax.Array],
           learning_rate: float = 1.0) -> optax.GradientTransformation:
    """Newton's method, `w = w - learning_rate * H^-1 dL/dw`, as a GradientTransformation.

    `loss_fn(params) -> scalar` is the function being minimised (close over the data). `update`
    needs `params`: it flattens them, takes `jax.hessian` of the loss there and solves H d = g
    (a solve, not an inverse: cheaper and more accurate). On a quadratic loss one step with
    learning_rate 1 lands on the minimum; elsewhere it heads for the nearest stationary point,
    which is a minimum only where H is positive definite.
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("newton needs the params: call tx.update(grads, state, params)")
        flat, unravel = ravel_pytree(params)
        g, _ = ravel_pytree(grads)
        hessian = jax.hessian(lambda f: loss_fn(unravel(f)))(flat)
        direction = jnp.linalg.solve(hessian, g)
        return unravel(-learning_rate * direction), state

    return optax.GradientTransformation(init, update)

"""The optimizers' rules in optax's shape, with PyTorch's arithmetic where it differs from optax's.

Each rule is a `scale_by_*` GradientTransformation plus an alias that chains it with the
learning rate, as optax does; learning rates may be optax schedules (`step -> lr`). Use them as
`jaxnets.optim.sgd` etc.; `jaxnets.optim.by_name` picks one by its name in the registry.
(Which PyTorch optimizer each equals: the table in `jaxnets.optim`.)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxnets.errors import ConfigError

ScalarOrSchedule = float | optax.Schedule


def _check_learning_rate(name: str, learning_rate: ScalarOrSchedule) -> None:
    """A fixed learning rate must be >= 0 (PyTorch's check); a schedule is taken as given."""
    if not callable(learning_rate) and learning_rate < 0:
        raise ConfigError(f"{name} learning_rate must be >= 0, got {learning_rate}")


# --- torch.optim.SGD ---------------------------------------------------------------------------
# PyTorch's rule (torch/optim/sgd.py), per parameter:
#   g = grad + weight_decay * p                       (L2 added to the gradient first)
#   buf = g on the first step, else momentum * buf + (1 - dampening) * g
#   g = g + momentum * buf if nesterov else buf
#   p = p - lr * g
# optax.sgd(lr, momentum, nesterov) keeps `trace = g + momentum * trace` from trace = 0: on the
# first step that is g exactly, and afterwards the same two float32 operations as PyTorch's
# `buf.mul_(momentum).add_(g)` (1 - 0 = 1 scales nothing), so with dampening = 0 it is
# bit-identical to torch.optim.SGD, nesterov and weight decay (optax.add_decayed_weights first)
# included; tests/test_init_losses_optim.py checks it step by step. Only dampening > 0 needs
# PyTorch's own buffer: its first step copies g undamped, where a zero-initialised trace would
# scale it by (1 - dampening).


class TorchMomentumState(NamedTuple):
    count: jax.Array         # steps taken; 0 means PyTorch's momentum_buffer is still None
    buf: optax.Updates       # PyTorch's momentum_buffer


def scale_by_torch_momentum(momentum: float, dampening: float = 0.0,
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


def sgd(learning_rate: ScalarOrSchedule, momentum: float = 0.0, dampening: float = 0.0,
        nesterov: bool = False, weight_decay: float = 0.0) -> optax.GradientTransformation:
    """torch.optim.SGD(lr, momentum, dampening, nesterov, weight_decay) as an optax chain.

    Args:
        learning_rate: a float or an optax schedule (step -> lr).
        momentum, dampening, nesterov, weight_decay: as in torch.optim.SGD.
    Returns:
        optax.sgd (bit-identical to PyTorch, see above) after optax.add_decayed_weights when
        weight_decay > 0; with dampening > 0, scale_by_torch_momentum instead of optax's trace.
    Raises:
        ConfigError for the settings PyTorch rejects (negative values; nesterov without
        momentum or with dampening).
    """
    _check_learning_rate("SGD", learning_rate)
    if momentum < 0 or weight_decay < 0:
        raise ConfigError(f"SGD momentum and weight_decay must be >= 0, got {momentum}, "
                          f"{weight_decay}")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ConfigError("SGD nesterov momentum needs momentum > 0 and dampening = 0 "
                          "(as in torch.optim.SGD)")
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    if momentum and dampening:
        parts += [scale_by_torch_momentum(momentum, dampening, nesterov),
                  optax.scale_by_learning_rate(learning_rate)]
    else:
        parts.append(optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov))
    return optax.chain(*parts) if len(parts) > 1 else parts[0]


def seed_sgd(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    """Seed 000's hand-written update: `w -= lr * w.grad` without ever zeroing `.grad`.

    PyTorch *adds* each backward pass into `.grad`, and the seed never calls `zero_grad()`, so
    step t subtracts lr * (g_1 + ... + g_t). That running sum is a momentum buffer with
    momentum 1: optax's trace `g + 1.0 * trace` is exactly `.grad += g` (multiplying by 1.0 is
    exact), so the quirk is `optax.sgd(lr, momentum=1.0)`, bit-identical to the seed's loop
    (tests/test_init_losses_optim.py). `optax.sgd(lr)` is the textbook rule.
    """
    _check_learning_rate("seed_sgd", learning_rate)
    return optax.sgd(learning_rate, momentum=1.0)



# --- torch.optim.Adam --------------------------------------------------------------------------
# optax.adam has the same defaults (eps added after the square root) and the same rule on paper,
# but computes the bias corrections `1 - b**t` in float32, where `1 - 0.999**t` cancels
# catastrophically (1.3e-5 relative error at t=1); PyTorch computes them in Python doubles.
# That error moves the whole trajectory by ~1e-4 within 100 steps of seed 000's run. Here they
# are `-expm1(t * log(b))`, accurate to float32 rounding, and the update is PyTorch's:
#     exp_avg.lerp_(g, 1 - b1); exp_avg_sq = b2 * exp_avg_sq + (1 - b2) * g * g
#     step_size = lr / bc1;     p -= step_size * exp_avg / (sqrt(exp_avg_sq) / sqrt(bc2) + eps)
# The learning rate is folded into step_size as PyTorch folds it, not chained after as
# optax.scale_by_learning_rate: `(lr / bc1) * m` and `lr * (m / bc1 ...)` round differently, and
# seed 000's Adam run must stay bit-identical. So a schedule is evaluated here, at the step.


class TorchAdamState(NamedTuple):
    count: jax.Array  # steps taken, int32
    mu: optax.Updates  # exp_avg
    nu: optax.Updates  # exp_avg_sq


def scale_by_torch_adam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8) -> optax.GradientTransformation:
    """torch.optim.Adam's whole step (no weight decay, no amsgrad), learning rate folded in.

    Its updates are the final ones (already scaled by -lr), as in PyTorch's addcdiv_; a
    schedule is called with the 0-based step count, as optax calls schedules.
    """
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
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        step_size = lr / bc1
        updates = jax.tree.map(lambda m, v: -step_size * m / (jnp.sqrt(v) / bc2_sqrt + eps), mu, nu)
        return updates, TorchAdamState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def adam(learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> optax.GradientTransformation:
    """torch.optim.Adam(lr, betas=(b1, b2), eps): `scale_by_torch_adam`, lr checked as torch does.

    Args:
        learning_rate: a float or an optax schedule (step -> lr).
        b1, b2, eps: torch's betas and eps.
    Returns:
        The GradientTransformation (its updates include -lr).
    """
    _check_learning_rate("Adam", learning_rate)
    return scale_by_torch_adam(learning_rate, b1, b2, eps)


# --- Newton's method (seed 002's second-order optimisation) --------------------------------------
# Seed 002 names the second-order rule w = w - eta * H^-1 dL/dw. PyTorch has no such optimizer
# (torch.autograd.functional.hessian gives H); here it is an optax transformation that needs the
# loss itself, because H is not a function of the gradient alone.

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

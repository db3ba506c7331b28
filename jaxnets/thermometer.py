"""Seed 003 ("Deep Learning with PyTorch", ch. 5): fit t_c = w * t_u + b to 11 thermometer readings.

Everything is a pure function of float32 arrays, as in the book: the data, the linear model, the
mean-squared loss, the finite-difference rate of change, the hand-derived gradient `grad_fn`, and
`training_loop`, which runs all its epochs in one jitted `lax.scan` and returns the per-epoch
history the book prints (loss before the update, params after it, the gradient used).
`fit_optax` is the book's later loop (`optimizer.zero_grad(); loss.backward(); optimizer.step()`)
through `jaxnets.train`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)
from jaxnets import train

# The book's In[2]: t_c in degrees Celsius, t_u in the unknown unit of the new thermometer.
T_C = (0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0)
T_U = (35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4)

# The epochs the book's training_loop prints ('...' stands between the groups).
PRINTED_EPOCHS = (1, 2, 3, 10, 11, 99, 100, 4000, 5000)


def data() -> tuple[jax.Array, jax.Array]:
    """(t_c, t_u) as float32 arrays, like `torch.tensor(t_c)` and `torch.tensor(t_u)`."""
    return jnp.asarray(T_C, jnp.float32), jnp.asarray(T_U, jnp.float32)


def model(t_u: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """The linear model `w * t_u + b`."""
    return w * t_u + b


def loss_fn(t_p: jax.Array, t_c: jax.Array) -> jax.Array:
    """Mean of squared differences."""
    return jnp.mean((t_p - t_c) ** 2)


def dloss_fn(t_p: jax.Array, t_c: jax.Array) -> jax.Array:
    """d loss / d t_p, element by element."""
    return 2 * (t_p - t_c) / t_p.shape[0]


def dmodel_dw(t_u: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """d model / d w."""
    return t_u


def dmodel_db(t_u: jax.Array, w: jax.Array, b: jax.Array) -> float:
    """d model / d b."""
    return 1.0


def grad_fn(t_u: jax.Array, t_c: jax.Array, t_p: jax.Array, w: jax.Array,
            b: jax.Array) -> jax.Array:
    """The book's hand-derived gradient [d loss/d w, d loss/d b] by the chain rule."""
    dloss_dtp = dloss_fn(t_p, t_c)
    dloss_dw = dloss_dtp * dmodel_dw(t_u, w, b)
    dloss_db = dloss_dtp * dmodel_db(t_u, w, b)
    return jnp.stack([dloss_dw.sum(), dloss_db.sum()])


def params_loss(params: jax.Array, t_u: jax.Array, t_c: jax.Array) -> jax.Array:
    """`loss_fn(model(t_u, *params), t_c)`: the loss as a function of params = [w, b]."""
    return loss_fn(model(t_u, params[0], params[1]), t_c)


def autograd_grad(params: jax.Array, t_u: jax.Array, t_c: jax.Array) -> jax.Array:
    """What `loss.backward(); params.grad` gives: jax.grad of `params_loss`."""
    return jax.grad(params_loss)(params, t_u, t_c)


def rate_of_change(params: jax.Array, t_u: jax.Array, t_c: jax.Array,
                   delta: float = 0.1) -> jax.Array:
    """The book's central finite differences of the loss in w and in b (In[8], In[10])."""
    w, b = params[0], params[1]
    d_w = (loss_fn(model(t_u, w + delta, b), t_c)
           - loss_fn(model(t_u, w - delta, b), t_c)) / (2.0 * delta)
    d_b = (loss_fn(model(t_u, w, b + delta), t_c)
           - loss_fn(model(t_u, w, b - delta), t_c)) / (2.0 * delta)
    return jnp.stack([d_w, d_b])


class History(NamedTuple):
    """Per epoch: the loss before the update, params after it, the gradient used."""

    loss: jax.Array    # float32[n_epochs]
    params: jax.Array  # float32[n_epochs, 2]
    grad: jax.Array    # float32[n_epochs, 2]


@functools.partial(jax.jit, static_argnames=("n_epochs",))
def training_loop(n_epochs: int, learning_rate: float | jax.Array, params: jax.Array,
                  t_u: jax.Array, t_c: jax.Array) -> tuple[jax.Array, History]:
    """The book's In[15] gradient descent with `grad_fn`, all epochs in one jitted lax.scan.

    The seed's transcription indents `return params` inside the loop, so it would stop after one
    epoch; its printed output (100 epochs with Params and Grad lines) shows the book's intended
    loop, which is what this is. The book's loop also stops early once the loss is not finite;
    a scan cannot stop, so a diverging run just carries inf/nan to the end (see `History.loss`).

    Returns:
      (final params, History of every epoch).
    """

    def epoch(params, _):
        w, b = params[0], params[1]
        t_p = model(t_u, w, b)
        loss = loss_fn(t_p, t_c)
        grad = grad_fn(t_u, t_c, t_p, w, b)
        params = params - learning_rate * grad
        return params, History(loss, params, grad)

    params = jnp.asarray(params, jnp.float32)
    return jax.lax.scan(epoch, params, None, length=n_epochs)


def _full_batch_loss(params, model_state, batch, key):
    del key  # deterministic: nothing random in this fit
    return params_loss(params, batch["t_u"], batch["t_c"]), ({}, model_state)


# The optimizer loop, built once: `jax.jit` compiles it once per optimizer and epoch count,
# and later calls with the same ones reuse the compiled loop.
run_epochs = train.make_run_steps(train.make_train_step(_full_batch_loss))


def full_batches(n_epochs: int, t_u: jax.Array, t_c: jax.Array):
    """`run_epochs`' inputs for n_epochs full-batch steps: (data, idx, mask, key)."""
    n = t_u.shape[0]
    idx = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (n_epochs, n))
    mask = jnp.ones((n_epochs, n), bool)
    # The key is required by the loop's signature and unused by this loss.
    return {"t_u": t_u, "t_c": t_c}, idx, mask, jax.random.key(0)


def fit_optax(tx: optax.GradientTransformation, n_epochs: int, params: jax.Array,
              t_u: jax.Array, t_c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The book's optimizer loop, full batch, through the one training loop (`jaxnets.train`).

    Each epoch is one `train_step` on all 11 points; the n_epochs steps run in one jitted scan
    (`run_epochs`, every batch the whole data set).

    Returns:
      (final params, float32[n_epochs] loss of each epoch before its step, as the book prints).
    """
    state = train.TrainState.create(apply_fn=model, params=jnp.asarray(params, jnp.float32),
                                    tx=tx)
    state, metrics = run_epochs(state, *full_batches(n_epochs, t_u, t_c))
    return state.params, metrics["loss"]

"""The one training loop: TrainState, train_step, many steps per jit (lax.scan), evaluate, fit.

Every experiment trains through here. The pieces:

- `TrainState`: step, params, optimizer state, model state (e.g. BatchNorm statistics).
- `make_train_step(loss_fn)`: `train_step(state, batch, key) -> (state, metrics)`, pure;
  `jax.jit` it once (`jit_train_step`).
- `make_run_steps(train_step)`: T steps in one jitted `lax.scan` over a dataset kept on the
  device, each batch gathered inside the graph from precomputed indices.
- `fit(...)`: drives `run_steps` chunk by chunk with a tqdm bar. Batch order and per-step keys
  are pure functions of (key, global step), so a resumed run equals an uninterrupted one.
- `predict`/`evaluate`: batched inference with a padded last batch (one compile).

A loss function has the signature
    loss_fn(params, model_state, batch, key) -> (loss, (metrics: dict, new_model_state))
`classification_loss` builds the common one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from jaxnets import losses, parallel
from jaxnets.data.batching import gather

LossFn = Callable[..., tuple[jax.Array, tuple[dict, Any]]]


class TrainState(struct.PyTreeNode):
    """Everything that changes during training; the optimizer and model functions are static."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any
    apply_fn: Callable = struct.field(pytree_node=False)
    tx: optax.GradientTransformation = struct.field(pytree_node=False)

    @classmethod
    def create(cls, apply_fn: Callable, params: Any, tx: optax.GradientTransformation,
               model_state: Any = None) -> TrainState:
        # step is an int32 array, not a Python int: a Python int would be a different (weakly
        # typed) input on the first call and make jit compile twice.
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                   model_state={} if model_state is None else model_state,
                   apply_fn=apply_fn, tx=tx)


def classification_loss(apply_fn: Callable, preprocess: Callable = lambda x: x,
                        loss: Callable = losses.cross_entropy) -> LossFn:
    """Cross-entropy (by default) of `apply_fn({'params': p}, preprocess(image))` vs. label.

    The batch is a dict with 'image', 'label' and optionally 'mask' (padded examples count 0).
    """

    def loss_fn(params, model_state, batch, key):
        del key
        logits = apply_fn({"params": params, **model_state}, preprocess(batch["image"]))
        mask = batch.get("mask")
        value = loss(logits, batch["label"], weights=mask)
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        acc = losses.reduce(correct, "mean", mask)
        return value, ({"accuracy": acc}, model_state)

    return loss_fn


def make_train_step(loss_fn: LossFn) -> Callable:
    """Build the pure `train_step(state, batch, key) -> (state, metrics)` (jit it yourself)."""

    def train_step(state: TrainState, batch: Mapping[str, jax.Array], key: jax.Array):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, key)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=model_state)
        return state, {"loss": loss, **metrics}

    return train_step


def jit_train_step(loss_fn: LossFn) -> Callable:
    """`make_train_step` jitted: one compile for all calls with the same shapes."""
    return jax.jit(make_train_step(loss_fn))


def make_run_steps(train_step: Callable, preprocess_batch: Callable | None = None,
                   mesh: Mesh | None = None, unroll: int = 1) -> Callable:
    """`run_steps(state, data, idx[T,B], mask[T,B], key) -> (state, metrics[T])` in one jit.

    `data` is a dict of whole-dataset arrays resident on the device; batch t is gathered inside
    the graph. The per-step key is fold_in(key, global step), so chunking does not change results.
    With a `mesh` (`jaxnets.parallel.make_mesh`), each batch stays split over its devices and
    the state stays replicated: data parallel training with the same `train_step` (pass the
    same mesh to `fit`, which places the inputs).

    `unroll` steps run per iteration of the compiled loop (`lax.scan(unroll=)`); the results
    are the same to float rounding (XLA fuses the unrolled body differently; a resumed run
    with the same chunk partition stays bit-identical). Sub-millisecond steps can be faster
    unrolled on CPU, where each loop iteration has fixed costs (copies of the carried state,
    the loop's own bookkeeping). Measured here: 4 made seed 000's MNIST step ~10% faster at
    no extra compile time (experiments.mnist uses it); LeNet at batch 4 ran ~5% faster but
    compiled ~1.4 s longer, no net gain over the tutorial's 2 epochs, and at batch 128 it was
    ~4% slower, so experiments.cifar10 keeps 1.
    """

    def run_steps(state, data, idx, mask, key):
        def body(state, xs):
            i, m = xs
            batch = gather(data, i)
            batch["mask"] = m
            if mesh is not None:
                batch = parallel.constrain_batch(batch, mesh)
            if preprocess_batch is not None:
                batch = preprocess_batch(batch)
            state, metrics = train_step(state, batch, jax.random.fold_in(key, state.step))
            if mesh is not None:
                state = parallel.constrain_replicated(state, mesh)
            return state, metrics

        return jax.lax.scan(body, state, (idx, mask), unroll=unroll)

    # No buffer donation: callers keep their input state (resume tests reuse it), and these
    # models are small enough that the copy costs nothing measurable.
    return jax.jit(run_steps)


def fit(
    state: TrainState,
    run_steps: Callable,
    data: Mapping[str, jax.Array],
    sampler,
    num_steps: int,
    key: jax.Array,
    *,
    chunk_size: int = 1000,
    progress: bool = True,
    desc: str = "train",
    on_chunk: Callable[[TrainState, dict], None] | None = None,
    mesh: Mesh | None = None,
) -> tuple[TrainState, dict]:
    """Train from `state.step` up to `num_steps` total steps, `chunk_size` steps per jit call.

    Args:
      state: the starting state (step 0, or a restored one to resume).
      run_steps: from `make_run_steps`.
      data: the training set on the device, e.g. {'image': uint8[N,...], 'label': int32[N]}.
      sampler: gives batch indices for global steps (`EpochSampler`, `ReplacementSampler`).
      num_steps: total steps of the run (not steps left).
      key: the training key; step t uses fold_in(key, t).
      chunk_size: steps per compiled call (the progress bar advances per chunk).
      progress: show a tqdm bar.
      on_chunk: called after each chunk with (state, that chunk's metrics as numpy), e.g. to
        print running losses or save a checkpoint.
      mesh: data parallel over this device mesh (`jaxnets.parallel`; `run_steps` built with the
        same mesh): state, data and key are replicated on its devices, each batch split over
        them. The batch size must be a multiple of the mesh size (ConfigError otherwise).

    Returns:
      (final state, {'metrics': {name: np.ndarray over the steps run}, 'compile_seconds',
      'train_seconds'}). compile_seconds is the first chunk's time minus the steady-state
      time of the same number of steps, estimated from the later chunks.
    """
    from tqdm.auto import tqdm

    start = int(state.step)
    if mesh is not None:
        state, data, key = parallel.replicate((state, data, key), mesh)
    history: dict[str, list] = {}
    timings = []
    # disable=None: tqdm switches itself off when stderr is not a terminal (CI logs, pipes).
    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=None if progress else True,
               leave=False, unit="step")
    step = start
    while step < num_steps:
        count = min(chunk_size, num_steps - step)
        idx, mask = sampler.indices(step, count)
        if mesh is not None:
            parallel.check_batch_size(idx.shape[-1], mesh)
            idx, mask = parallel.shard_batch((idx, mask), mesh, batch_axis=1)
        t0 = time.perf_counter()
        state, metrics = run_steps(state, data, idx, mask, key)
        metrics = jax.device_get(metrics)
        timings.append((count, time.perf_counter() - t0))
        for k, v in metrics.items():
            history.setdefault(k, []).append(np.asarray(v))
        step += count
        bar.update(count)
        if on_chunk is not None:
            with tqdm.external_write_mode():  # prints from on_chunk do not tear the bar
                on_chunk(state, metrics)
    bar.close()
    total = sum(t for _, t in timings)
    compile_s = 0.0
    if len(timings) > 1:
        rest_steps = sum(c for c, _ in timings[1:])
        per_step = sum(t for _, t in timings[1:]) / rest_steps
        compile_s = max(0.0, timings[0][1] - per_step * timings[0][0])
    out = {k: np.concatenate(v) for k, v in history.items()}
    return state, {"metrics": out, "compile_seconds": compile_s,
                   "train_seconds": total - compile_s}


@functools.lru_cache(maxsize=64)
def _jit(fn: Callable) -> Callable:
    """jax.jit(fn), made once per fn: a new jit wrapper per call would trace and compile again
    on every evaluation (once per epoch in the training experiments)."""
    return jax.jit(fn)


@functools.lru_cache(maxsize=64)
def _apply_preprocessed(apply_fn: Callable, preprocess: Callable) -> Callable:
    """`apply_fn(variables, preprocess(x))`, one function object per (apply_fn, preprocess)."""
    return lambda variables, x: apply_fn(variables, preprocess(x))


def predict(
    fn: Callable[[Any, jax.Array], jax.Array],
    variables: Any,
    inputs: np.ndarray | jax.Array,
    batch_size: int = 1000,
) -> np.ndarray:
    """Run jitted `fn(variables, batch)` over `inputs` in batches; the last batch is padded so
    there is one compile. Returns the concatenated outputs as numpy."""
    n = len(inputs)
    jfn = _jit(fn)
    outs = []
    for s in range(0, n, batch_size):
        chunk = inputs[s : s + batch_size]
        real = len(chunk)
        if real < batch_size and n > batch_size:
            pad = [(0, batch_size - real)] + [(0, 0)] * (chunk.ndim - 1)
            chunk = np.pad(np.asarray(chunk), pad)
        outs.append(np.asarray(jfn(variables, chunk))[:real])
    return np.concatenate(outs) if outs else np.zeros((0,))


def evaluate(state: TrainState, images, labels, preprocess: Callable = lambda x: x,
             batch_size: int = 1000) -> dict:
    """Accuracy and logits of `state` on a labelled set."""
    from jaxnets import metrics as M

    fn = _apply_preprocessed(state.apply_fn, preprocess)
    logits = predict(fn, {"params": state.params, **state.model_state}, images, batch_size)
    return {"accuracy": M.accuracy(logits, labels), "logits": logits}

"""The one training loop: TrainState, train_step, many steps per jit (lax.scan), the driver.

Every experiment trains through here. The pieces:

- `TrainState`: step, params, optimizer state, model state (e.g. BatchNorm statistics).
- `make_train_step(loss_fn)`: `train_step(state, batch, key) -> (state, metrics)`, pure.
- `make_run_steps(train_step)`: T steps in one jitted `lax.scan` over a dataset kept on the
  device, each batch gathered inside the graph from precomputed indices; compiled ahead of time
  (so compile seconds are measured, not estimated).
- `split_keys(seed)`: a run's `Keys(init, data, train)`.
- `run_training(...)`: the driver: resume, chunks of compiled steps with a tqdm bar, the run's
  one `History` (per-step metrics and logged records, restored ones included), checkpoints,
  the device mesh, clean SIGINT/SIGTERM. Batch order and per-step keys are pure functions of
  (key, global step), so a resumed run equals an uninterrupted one. `fit` is its loop without
  checkpoints, for a prebuilt `run_steps`.
- `predict`/`evaluate`: batched inference with a padded last batch (one compile).

A loss function has the signature
    loss_fn(params, model_state, batch, key) -> (loss, (metrics: dict, new_model_state))
`classification_loss` builds the common one.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import hashlib
import math
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training import train_state
from jax.sharding import Mesh

from jaxnets import aot, checkpoint, losses, parallel
from jaxnets.data.batching import gather, to_device
from jaxnets.data.bounded import memory_bytes  # (the one reading of the machine's memory)
from jaxnets.errors import ConfigError, DataError, JaxnetsWarning
from jaxnets.options import TrainOptions, may_differ, settings

LossFn = Callable[..., tuple[jax.Array, tuple[dict, Any]]]


class TrainState(train_state.TrainState):
    """Flax's `TrainState` (step, apply_fn, params, tx, opt_state; `apply_gradients`), plus the
    model's other variable collections, `model_state` (BatchNorm's running statistics), which
    `apply_fn` takes beside the params and a training step returns updated.

        state = TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(1e-3))
        state = state.apply_gradients(grads=grads)          # as in the Flax examples
    """

    model_state: Any = struct.field(default_factory=dict)

    @classmethod
    def create(cls, *, apply_fn: Callable, params: Any, tx: optax.GradientTransformation,
               model_state: Any = None, **kwargs) -> TrainState:
        """Flax's `create` (opt_state = tx.init(params)), with `model_state` ({} if None) and
        `step` an int32 array: Flax starts it at the Python int 0, which jit sees as another
        (weakly typed) input than the int32 array `apply_gradients` makes of it, so the first
        jitted step would compile twice."""
        state = super().create(apply_fn=apply_fn, params=params, tx=tx,
                               model_state={} if model_state is None else model_state, **kwargs)
        return state.replace(step=jnp.zeros((), jnp.int32))

    def apply_gradients(self, *, grads: Any, **kwargs) -> TrainState:
        """Flax's `apply_gradients`; also for params that are one array (the thermometer's
        [w, b]), where Flax's looks up a key in `grads` and fails."""
        if not isinstance(grads, jax.Array):
            return super().apply_gradients(grads=grads, **kwargs)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                            opt_state=opt_state, **kwargs)


# What `classification_loss` reads from a batch ('mask', padded examples, is optional).
BATCH_KEYS = ("image", "label")


def check_batch_keys(batch: Mapping[str, Any], expected: tuple[str, ...] = BATCH_KEYS) -> None:
    """DataError naming the keys a batch (or the training data) lacks, before anything is traced
    from it (a missing key would be a bare KeyError from inside the trace)."""
    missing = [k for k in expected if k not in batch]
    if missing:
        raise DataError(f"the batch has no {', '.join(map(repr, missing))}: a batch is a dict with "
                        f"{' and '.join(map(repr, expected))} (got keys: "
                        f"{', '.join(map(repr, sorted(batch))) or 'none'})", param="data")


_PARAM_SHAPE = re.compile(r'parameter "([^"]+)".*?generate shape (\([^)]*\)).*?has shape '
                          r'(\([^)]*\))', re.DOTALL)


def apply_model(apply_fn: Callable, variables: Any, images: jax.Array) -> jax.Array:
    """`apply_fn(variables, images)`, with images that do not fit the parameters' shapes said in
    one line (DataError) instead of Flax's ScopeParamShapeError: what usually causes it is
    images not preprocessed the way they were when the parameters were made."""
    try:
        return apply_fn(variables, images)
    except flax.errors.ScopeParamShapeError as e:
        found = _PARAM_SHAPE.search(str(e))
        detail = (f"parameter {found[1]} has shape {found[3]}, these images would need {found[2]}"
                  if found else str(e).split(". ")[0])
        raise DataError(f"images of shape {tuple(images.shape)} (after preprocessing) do not fit "
                        f"the model's parameters ({detail}); preprocess them as the images the "
                        "parameters were initialised with (for an MLP: flattened)",
                        param="data") from None


# The number of classes of classification_loss's logits, noted while a train step is traced
# (shapes are static), so that _loop can check the dataset's labels against it once, on the
# host, before the first step runs: no check inside the compiled loop.
_CLASSES_SEEN: contextvars.ContextVar[list | None] = contextvars.ContextVar("classes_seen",
                                                                            default=None)


def classification_loss(apply_fn: Callable, preprocess: Callable = lambda x: x,
                        loss: Callable = losses.cross_entropy) -> LossFn:
    """Cross-entropy (by default) of `apply_fn({'params': p}, preprocess(image))` vs. label.

    The batch is a dict with 'image', 'label' and optionally 'mask' (padded examples count 0).
    Labels must be integers in 0..classes-1: `fit`/`run_training` check the dataset's once
    before training (a DataError), `losses.cross_entropy` says what happens inside jit.
    """

    def loss_fn(params, model_state, batch, key):
        del key
        check_batch_keys(batch)
        logits = apply_model(apply_fn, {"params": params, **model_state},
                             preprocess(batch["image"]))
        seen = _CLASSES_SEEN.get()
        if seen is not None:
            seen.append(logits.shape[-1])
        mask = batch.get("mask")
        value = loss(logits, batch["label"], weights=mask)
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        acc = losses.reduce(correct, "mean", mask)
        return value, ({"accuracy": acc}, model_state)

    loss_fn.batch_keys = BATCH_KEYS
    return loss_fn


def make_train_step(loss_fn: LossFn) -> Callable:
    """Build the pure `train_step(state, batch, key) -> (state, metrics)` (jit it yourself):
    the gradient of `loss_fn`, then `state.apply_gradients`, as in the Flax examples."""

    def train_step(state: TrainState, batch: Mapping[str, jax.Array], key: jax.Array):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, key)
        state = state.apply_gradients(grads=grads, model_state=model_state)
        return state, {"loss": loss, **metrics}

    train_step.batch_keys = getattr(loss_fn, "batch_keys", ())
    return train_step


class Keys(NamedTuple):
    """A run's three keys, split from its seed in this order (all randomness of a run)."""

    init: jax.Array     # the model's initial parameters
    data: jax.Array     # the batch order (the sampler's key)
    train: jax.Array    # the training steps: step t uses fold_in(train, t) (dropout, ...)


def split_keys(seed: int) -> Keys:
    """`Keys(init, data, train)` from `jax.random.key(seed)`: the one split every experiment uses."""
    if -2**31 <= seed < 2**31:
        return Keys(*_split_seed(seed))
    return Keys(*jax.random.split(jax.random.key(seed), 3))  # (the jitted seed is an int32)


@aot.once
def _split_seed(seed):
    # One compiled program, shared by every seed: op by op, key/split/unstack compiled four
    # (~0.5 s of a cold start). The same bits (tested against the op-by-op split).
    return tuple(jax.random.split(jax.random.key(seed), 3))


class Loop(aot.Program):
    """`run_steps(state, data, idx[T,B], mask[T,B], key) -> (state, metrics[T])`, jitted, with its
    ahead-of-time compiled executables kept per input signature (exact compile seconds)."""

    # the class count its classification_loss traced with (None: no such loss, or not traced)
    label_classes: int | None = None


def _compiled_noting_classes(run_steps: Loop, *args) -> tuple[Callable, float]:
    """`run_steps.compiled(*args)`, noting the class count of a classification_loss traced on
    the way (a second compile of the same Loop may not trace again: the count is kept)."""
    seen: list[int] = []
    token = _CLASSES_SEEN.set(seen)
    try:
        compiled = run_steps.compiled(*args)
    finally:
        _CLASSES_SEEN.reset(token)
    if seen:
        run_steps.label_classes = min(seen)
    return compiled


def make_run_steps(train_step: Callable, mesh: Mesh | None = None, unroll: int = 1) -> Loop:
    """`run_steps(state, data, idx[T,B], mask[T,B], key) -> (state, metrics[T])` in one jit.

    `data` is a dict of whole-dataset arrays resident on the device; batch t is gathered inside
    the graph. The per-step key is fold_in(key, global step), so chunking does not change results.
    With a `mesh` (`jaxnets.parallel.make_mesh`), each batch stays split over its devices and
    the state stays replicated: data parallel training with the same `train_step`.
    Made once per (train_step, mesh, unroll), so repeated runs reuse the compiled loop.

    `unroll` steps run per iteration of the compiled loop (`lax.scan(unroll=)`); the results
    are the same to float rounding (XLA fuses the unrolled body differently; a resumed run
    with the same chunk partition stays bit-identical). Sub-millisecond steps can be faster
    unrolled on CPU, where each loop iteration has fixed costs (copies of the carried state,
    the loop's own bookkeeping), at the price of a longer compile (benchmarks/NOTES.md).

    No buffer donation: callers keep their input state (resume tests and benchmarks reuse it),
    and these models are small enough that the copy costs nothing measurable.
    """
    return _loop_for(train_step, mesh, unroll)


@functools.lru_cache(maxsize=64)
def _loop_for(train_step: Callable, mesh: Mesh | None, unroll: int) -> Loop:
    """make_run_steps's Loop, one per (train_step, mesh, unroll)."""

    def run_steps(state, data, idx, mask, key):
        def body(state, xs):
            i, m = xs
            batch = gather(data, i)
            batch["mask"] = m
            if mesh is not None:
                batch = parallel.constrain_batch(batch, mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(key, state.step))
            if mesh is not None:
                state = parallel.constrain_replicated(state, mesh)
            return state, metrics

        return jax.lax.scan(body, state, (idx, mask), unroll=unroll)

    loop = Loop(run_steps)
    loop.batch_keys = getattr(train_step, "batch_keys", ())  # (what `fit` checks the data for)
    return loop


@dataclasses.dataclass
class History:
    """The one record of a run: per-step metrics and logged records, restored ones included.

    `metrics` holds every step's metrics from step 0 (those before a resume come from the
    checkpoint); `logs` holds what the experiment logged (`log`), e.g. per-epoch results or the
    running-loss prints, also restored on resume, so a resumed run reports what an
    uninterrupted one does.
    """

    resumed_step: int = 0
    status: str = ""                 # one line about checkpoints, for the experiment to print
    compile_seconds: float = 0.0     # ahead-of-time lowering + compiling of this process's loops
    train_seconds: float = 0.0       # running the compiled loops
    chunk_start: int = 0             # the global step where the latest chunk began
    logs: dict[str, list] = dataclasses.field(default_factory=dict)
    _chunks: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """{name: np.ndarray over every step run so far}."""
        return {k: np.concatenate(v) if v else np.zeros(0, np.float32)
                for k, v in self._chunks.items()}

    def add(self, metrics: Mapping[str, np.ndarray]) -> None:
        """Append per-step metrics (a chunk's, or those restored from a checkpoint)."""
        for k, v in metrics.items():
            self._chunks.setdefault(k, []).append(np.asarray(v))

    def log(self, name: str, record: Any) -> None:
        """Append a JSON-able record to `logs[name]` (saved with the next checkpoint)."""
        self.logs.setdefault(name, []).append(record)


def fingerprint(data: Mapping[str, Any]) -> str:
    """sha256 over the training arrays (names, dtypes, shapes, bytes): resume refuses other data."""
    h = hashlib.sha256()
    for name in sorted(data):
        a = np.ascontiguousarray(jax.device_get(data[name]))
        h.update(f"{name}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# XLA's dimension sizes and our gathered batch indices are 32-bit: no batch can be larger.
MAX_BATCH = 2**31 - 1


def check_batch_fits(data: Mapping[str, Any], batch_size: int, chunk_steps: int,
                     memory: int | None = None) -> None:
    """ConfigError (batch_size) for a batch no run can hold, before anything is compiled (XLA
    aborts the whole process on an impossible allocation, with no Python error to catch):
    more than MAX_BATCH examples, or more bytes than the machine's memory (`memory`, default
    `memory_bytes()`) for one batch of the examples as float32 plus the batch indices of a
    chunk of `chunk_steps` steps. A lower bound of what training needs, so nothing that could
    run is refused."""
    if batch_size > MAX_BATCH:
        raise ConfigError(f"{batch_size:,} is more than the {MAX_BATCH:,} examples a batch can "
                          "hold; use a smaller batch size", param="batch_size")
    memory = memory_bytes() if memory is None else memory
    if memory is None:
        return
    # each example's arrays as the models compute them (float32, or wider), plus its int32
    # index and float32 mask for every step of a chunk
    example = sum(int(np.prod(np.shape(v)[1:])) * max(np.dtype(v.dtype).itemsize, 4)
                  for v in data.values())
    need = batch_size * (example + 8 * chunk_steps)
    if need > memory:
        raise ConfigError(f"a batch of {batch_size:,} examples needs at least {need / 2**30:,.1f}"
                          f" GiB, more than this machine's {memory / 2**30:,.1f} GiB of memory; "
                          "use a smaller batch size", param="batch_size")


def non_finite_loss(losses: np.ndarray, first_step: int) -> str | None:
    """The warning for the first NaN or infinite value of a chunk's per-step `losses` (whose
    first value is step `first_step`, counting from 1), None when all are finite."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(losses, np.float64)))
    if bad.size == 0:
        return None
    i = int(bad[0])
    return (f"loss became {float(losses[i])} at step {first_step + i}: the learning rate may be "
            "too large, or an input batch is all zeros (x / x.max() divides by 0); the run "
            "goes on as the tutorial's would, its numbers are not meaningful")


def _warn(text: str) -> None:
    """run_training's default `warn`: a JaxnetsWarning (the CLI prints it as one line)."""
    warnings.warn(text, JaxnetsWarning, stacklevel=3)


class _Interrupt:
    """SIGINT/SIGTERM during training: noted here and acted on between chunks, so no signal
    lands inside orbax's asynchronous save (a KeyboardInterrupt there hangs ~300 s in orbax's
    shutdown). The run then waits for the pending save, and stops. A second signal quits at once
    (the last completed checkpoint stays intact: orbax renames a step folder only when done)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            os._exit(128 + signum)
        self.signum = signum

    def raise_if_signalled(self) -> None:
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signum is not None:
            raise SystemExit(128 + self.signum)

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _loop(state, run_steps: Loop, data, sampler, num_steps: int, key, history: History, *,
          chunk_size: int, progress: bool, desc: str, mesh: Mesh | None,
          after_chunk: Callable[[TrainState], None], interrupt: _Interrupt | None = None):
    """Run `run_steps` chunk by chunk from state.step to num_steps, recording into `history`."""
    from tqdm import tqdm  # (tqdm.auto warns in a notebook without ipywidgets)

    start = int(state.step)
    # The labels, once, on the host (before a mesh may spread them over processes), checked
    # against the class count once the first compile has traced the loss.
    labels = np.asarray(jax.device_get(data["label"])) if "label" in data else None
    if mesh is not None:
        state, data, key = parallel.replicate((state, data, key), mesh)
    # disable=None: tqdm switches itself off when stderr is not a terminal (CI logs, pipes).
    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=None if progress else True,
               leave=False, unit="step")
    step = start
    try:
        while step < num_steps:
            count = min(chunk_size, num_steps - step)
            idx, mask = sampler.indices(step, count)
            if mesh is not None:
                parallel.check_batch_size(idx.shape[-1], mesh)
                idx, mask = parallel.shard_batch((idx, mask), mesh, batch_axis=1)
            executable, seconds = _compiled_noting_classes(run_steps, state, data, idx, mask, key)
            history.compile_seconds += seconds
            classes = getattr(run_steps, "label_classes", None)
            if labels is not None and classes is not None:
                losses.check_labels(labels, classes, "the training data's labels")
                labels = None  # checked
            t0 = time.perf_counter()
            state, metrics = executable(state, data, idx, mask, key)
            metrics = jax.device_get(metrics)
            history.train_seconds += time.perf_counter() - t0
            history.chunk_start = step
            history.add(metrics)
            step += count
            bar.update(count)
            with tqdm.external_write_mode():  # prints from the hooks do not tear the bar
                after_chunk(state)
            if interrupt is not None:
                interrupt.raise_if_signalled()
    finally:
        bar.close()
    return state


def fit(state: TrainState, run_steps: Loop, data: Mapping[str, jax.Array], sampler,
        num_steps: int, key: jax.Array, *, chunk_size: int = 1000, progress: bool = True,
        desc: str = "train", mesh: Mesh | None = None) -> tuple[TrainState, History]:
    """Train from `state.step` up to `num_steps` total steps with a prebuilt `run_steps`, no
    checkpoints (experiments use `run_training`; this is the loop it runs, for tests and the
    small experiments that build their own loop).

    Returns:
      (final state, History of the steps run).

    Raises:
      DataError: `data['label']` holds a label outside 0..classes-1 of the classification_loss
        the step was traced with (checked once on the host, before the first step runs).
    """
    check_batch_keys(data, getattr(run_steps, "batch_keys", ()))
    history = History(resumed_step=int(state.step))
    state = _loop(state, run_steps, data, sampler, num_steps, key, history,
                  chunk_size=chunk_size, progress=progress, desc=desc, mesh=mesh,
                  after_chunk=lambda s: None)
    return state, history


def run_training(
    state: TrainState,
    train_step: Callable,
    data: Mapping[str, Any],
    sampler,
    num_steps: int,
    keys: Keys,
    options: TrainOptions | None = None,
    *,
    config: Any = None,
    name: str = "train",
    chunk_size: int = 1000,
    unroll: int = 1,
    on_chunk: Callable[[TrainState, History], None] | None = None,
    report: Callable[[str], None] | None = None,
    warn: Callable[[str], None] = _warn,
) -> tuple[TrainState, History]:
    """The training driver every experiment calls: resume, train in compiled chunks, checkpoint.

    Args:
      state: the starting state (step 0), built from `keys.init`.
      train_step: `make_train_step(loss_fn)`; keep one object per recipe so its compiled loop is
        reused across runs.
      data: the training arrays, e.g. {'image': uint8[N,...], 'label': int32[N]} (host or
        device); placed on the device(s) here.
      sampler: batch indices for global steps and its `batch_size` (`EpochSampler`,
        `ReplacementSampler`), built from `keys.data`.
      num_steps: total steps of the run (not steps left).
      keys: `split_keys(seed)`; step t trains with fold_in(keys.train, t).
      options: the run's `TrainOptions` (None: its defaults): the progress bar, the devices
        (data parallel over `devices`; the batch size must divide by it) and the checkpoints
        (in `checkpoint_dir`, every `checkpoint_every` steps or at the end of every chunk, the
        latest `keep_checkpoints` kept; with `resume`, the state, key, history and logs come
        from the latest one, which must be of this data and of at most `num_steps` steps).
      config: the run's settings (a Config dataclass, its options included, or a mapping),
        saved with each checkpoint; a resume whose settings differ is refused, except in the
        fields marked `jaxnets.options.MAY_DIFFER`.
      name: what trains (the experiment): the progress bar's label, and the checkpoints'
        writer (a resume by another is refused).
      chunk_size: steps per compiled call, shortened so chunks end on checkpoint steps.
      unroll: steps per iteration of the compiled loop (`make_run_steps`).
      on_chunk: called after each chunk with (state, history), before that chunk's checkpoint
        is saved, e.g. to print running losses or `history.log` per-epoch results.
      report: called with the checkpoint status line before training (e.g. `print`).
      warn: called once, after the chunk where it happens, when the loss first becomes NaN or
        infinite (the step and a hint); the run goes on unchanged. Default: a JaxnetsWarning.

    Returns:
      (final state, History: every step's metrics and logs, restored ones included, and the
      exact compile and train seconds of this process).

    SIGINT/SIGTERM stop the run after the current chunk, once the pending checkpoint write has
    landed (KeyboardInterrupt / SystemExit(143)). Labels outside 0..classes-1 are a DataError
    before the first step, as in `fit`.
    """
    options = TrainOptions(out=os.curdir) if options is None else options  # (out: unused here)
    check_batch_keys(data, getattr(train_step, "batch_keys", ()))
    mesh = parallel.make_mesh(options.devices) if options.devices != 1 else None
    run_steps = make_run_steps(train_step, mesh, unroll)
    key = keys.train
    history = History()
    checkpoints = checkpoint.Checkpoints(
        options.checkpoint_dir, every=options.checkpoint_every or chunk_size,
        keep=options.keep_checkpoints, resume=options.resume, config=settings(config),
        may_differ=may_differ(config), name=name)
    enabled = checkpoints.enabled
    if enabled:
        chunk_size = checkpoints.chunk_size(chunk_size)
    check_batch_fits(data, sampler.batch_size, min(chunk_size, num_steps))
    if enabled:
        data_id = fingerprint(data)
        restored = checkpoints.restore(state, key, data_fingerprint=data_id, num_steps=num_steps)
        if restored is not None:
            state, key, metrics, logs = restored
            history.add(metrics)
            history.logs = logs
            history.resumed_step = int(state.step)
        history.status = checkpoints.status
    if report is not None and history.status:
        report(history.status)
    if mesh is None:  # (with a mesh, _loop replicates the data over it)
        data = {k: v if isinstance(v, jax.Array) else to_device({k: v})[k]
                for k, v in data.items()}

    left = num_steps - int(state.step)
    if unroll == 1 and left % chunk_size and 4 * math.gcd(chunk_size, left) >= chunk_size:
        # Equal chunks: one compiled loop instead of a second compile for a shorter last chunk.
        # Only without unrolling, where the chunk partition cannot change the results (XLA
        # fuses an unrolled loop's remainder differently).
        chunk_size = math.gcd(chunk_size, left)

    warned = False

    def after_chunk(state):
        nonlocal warned
        losses = history._chunks.get("loss")
        if not warned and losses:
            text = non_finite_loss(losses[-1], history.chunk_start + 1)
            if text is not None:
                warned = True
                warn(text)
        if on_chunk is not None:
            on_chunk(state, history)
        if enabled:
            checkpoints.save(state, key, history.metrics, history.logs, data_fingerprint=data_id)

    try:
        with _Interrupt() as interrupt:
            state = _loop(state, run_steps, data, sampler, num_steps, key, history,
                          chunk_size=chunk_size, progress=options.show_progress, desc=name,
                          mesh=mesh, after_chunk=after_chunk, interrupt=interrupt)
            if enabled:
                checkpoints.save(state, key, history.metrics, history.logs,
                                 data_fingerprint=data_id, force=True)
    finally:
        if enabled:
            checkpoints.close()  # waits for the pending writes, releases the folder's lock
    return state, history


@functools.lru_cache(maxsize=64)
def _jit(fn: Callable) -> Callable:
    """jax.jit(fn), made once per fn: a new jit wrapper per call would trace and compile again
    on every evaluation (once per epoch in the training experiments). Not `aot.once`: XLA
    emits small matrix products itself, and there its quicker compile can move a bit."""
    return jax.jit(fn)


@functools.lru_cache(maxsize=64)
def _apply_preprocessed(apply_fn: Callable, preprocess: Callable) -> Callable:
    """`apply_fn(variables, preprocess(x))`, one function object per (apply_fn, preprocess)."""
    return lambda variables, x: apply_model(apply_fn, variables, preprocess(x))


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
    from jaxnets.metrics import accuracy

    fn = _apply_preprocessed(state.apply_fn, preprocess)
    logits = predict(fn, {"params": state.params, **state.model_state}, images, batch_size)
    return {"accuracy": accuracy(logits, labels), "logits": logits}

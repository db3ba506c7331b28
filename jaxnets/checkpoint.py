"""Checkpoints and resume (orbax), and the PyTorch state_dict exchange (safetensors).

Every training experiment uses the same few lines (see experiments/mnist.py):

    ckpt = checkpoint.Checkpoints.for_run(config)    # does nothing without --checkpoint-dir
    state, train_key = ckpt.resume_or_start(state, train_key)
    state, result = train.fit(..., chunk_size=ckpt.chunk_size(1000), on_chunk=ckpt.on_chunk)
    ckpt.finish(state)                               # final save, waits for async writes
    losses = ckpt.metrics(result["metrics"])["loss"] # every step, also those before a resume

A checkpoint is one step folder written by orbax's `CheckpointManager` (atomic: a step appears
only once fully written; async: writes overlap training; the last `keep` are kept) with three
items: `state` (step, params, optimizer state, model state and the training PRNG key, as arrays),
`meta` (JSON: the run's config, the experiment, the key's implementation) and `history` (the
per-step metrics so far, so loss curves and running losses survive a resume). No pickle.

Resuming is exact: batch order and per-step keys are pure functions of (key, step) (see
jaxnets.train.fit), so a run killed after step k and resumed equals, bit for bit on CPU, a run
that was never interrupted. A checkpoint that does not fit (other experiment, other settings,
other model shapes, damaged files) raises CheckpointError before anything is written, so the
existing checkpoints stay as they were.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import torch_io
from jaxnets.errors import CheckpointError, ConfigError
from jaxnets.train import TrainState

FORMAT = "jaxnets-checkpoint-1"
# Config fields that may differ on --resume without changing the result: where files go, how
# progress is shown, how often checkpoints are written, and how long to train in total
# (resuming with more steps/epochs continues the run).
HARMLESS = frozenset({"out", "progress", "quiet", "data_dir", "checkpoint_dir", "resume",
                      "checkpoint_every", "keep_checkpoints", "steps", "epochs",
                      "coordinator", "num_processes", "process_id"})


def _config_dict(config: Any) -> dict:
    """A config (dataclass or mapping) as the plain JSON it is saved as."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    # JSON round trip: tuples become lists, so a saved and a live config compare equal.
    return json.loads(json.dumps(dict(config), default=str))


def _experiment_name(config: Any) -> str:
    """The module defining the config's class, e.g. 'experiments.mnist', also when it runs as
    `python -m experiments.mnist` (then the class lives in '__main__')."""
    if not dataclasses.is_dataclass(config):
        return "unknown"
    module = type(config).__module__
    if module == "__main__":
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = spec.name if spec is not None else module
    return module


def _path_str(path: tuple) -> str:
    """A tree path as 'params/fc1/kernel', the same for a live tree and orbax's metadata (which
    stores NamedTuples as dicts and tuples as lists)."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """{path: (shape, dtype)} of every array leaf."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path_str(p): (tuple(np.shape(x)), str(np.dtype(x.dtype))) for p, x in flat}


def _host_copy(tree: Any) -> Any:
    """Copy every leaf to a fresh numpy array. The train loop donates its state buffers to the
    next chunk, so an async save must not hold views of them."""
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def _key_data(key: jax.Array) -> tuple[np.ndarray, str | None]:
    """A PRNG key as raw uint32 data plus the implementation name (None for a raw uint32 key)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.array(jax.random.key_data(key)), str(jax.random.key_impl(key))
    return np.array(key), None


def _payload(state: TrainState, key: jax.Array) -> dict:
    """What the `state` item holds."""
    return {"step": state.step, "params": state.params, "opt_state": state.opt_state,
            "model_state": state.model_state, "key": _key_data(key)[0]}


def _check_tree(where: str, metadata: Any, template: dict) -> None:
    """Raise CheckpointError naming the first array whose path, shape or dtype differs."""
    tree = getattr(metadata, "tree", None)
    if tree is None:
        raise CheckpointError(f"{where}: no readable 'state' item; the checkpoint is "
                              "damaged, delete that step folder to resume from an earlier one")
    saved = {p: (tuple(m.shape), str(np.dtype(m.dtype))) for p, m in
             ((_path_str(p), m) for p, m in jax.tree_util.tree_flatten_with_path(tree)[0])}
    live = _leaf_specs(template)
    for path in sorted(set(saved) | set(live)):
        if path not in saved:
            raise CheckpointError(f"{where}: holds a different model: it has no {path!r} "
                                  "(this model does); use another --checkpoint-dir")
        if path not in live:
            raise CheckpointError(f"{where}: holds a different model: its {path!r} is not "
                                  "in this model; use another --checkpoint-dir")
        if saved[path] != live[path]:
            (s_shape, s_dtype), (l_shape, l_dtype) = saved[path], live[path]
            raise CheckpointError(f"{where}: holds a different model: {path!r} is "
                                  f"{s_dtype}{list(s_shape)} there, {l_dtype}{list(l_shape)} "
                                  "here; use another --checkpoint-dir")


def check_resume(resume: bool, directory: str | None) -> None:
    """ConfigError for --resume without --checkpoint-dir (experiment Configs call it too, so a
    bad command line fails before any data is loaded)."""
    if resume and directory is None:
        raise ConfigError("--resume needs --checkpoint-dir DIR (the folder to resume from)")


class Checkpoints:
    """A run's checkpoints in one folder: resume, save every `every` steps, keep the last `keep`.

    With `directory=None` every method is a no-op (apart from `metrics`), so an experiment
    wires checkpoints in unconditionally.
    """

    def __init__(self, directory: str | None, config: Any, *, every: int = 1000, keep: int = 3,
                 resume: bool = False, harmless: Iterable[str] = HARMLESS):
        if every < 1:
            raise ConfigError(f"--checkpoint-every must be at least 1, got {every}")
        if keep < 1:
            raise ConfigError(f"--keep-checkpoints must be at least 1, got {keep}")
        check_resume(resume, directory)
        self.directory = None if directory is None else os.path.abspath(directory)
        self.config = _config_dict(config)
        self.experiment = _experiment_name(config)
        self.every, self.keep, self.resume = every, keep, resume
        self.harmless = frozenset(harmless)
        self.key: jax.Array | None = None
        self.status = ""              # one line for the experiment to print
        self.resumed_step = 0
        self._restored: dict[str, np.ndarray] = {}   # metrics of the steps before the resume
        self._history: dict[str, list[np.ndarray]] = {}
        self._saved_step = -1
        self._manager = None

    @classmethod
    def for_run(cls, config: Any, harmless: Iterable[str] = ()) -> Checkpoints:
        """From a Config with checkpoint_dir, resume, checkpoint_every (keep_checkpoints);
        `harmless` names more config fields that may change on --resume (display options)."""
        return cls(getattr(config, "checkpoint_dir", None), config,
                   every=getattr(config, "checkpoint_every", 1000),
                   keep=getattr(config, "keep_checkpoints", 3),
                   resume=getattr(config, "resume", False), harmless=HARMLESS | set(harmless))

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def chunk_size(self, default: int) -> int:
        """Steps per `fit` chunk: `default`, shortened so chunks end on every checkpoint step."""
        return math.gcd(default, self.every) if self.enabled else default

    # --- orbax ------------------------------------------------------------------------------

    def _open(self):
        """The orbax CheckpointManager (created on first use; creating it writes nothing into
        an existing folder)."""
        if self._manager is None:
            import orbax.checkpoint as ocp

            if os.path.exists(self.directory) and not os.path.isdir(self.directory):
                raise CheckpointError(f"--checkpoint-dir {self.directory}: exists and is not a "
                                      "folder; choose another path")
            options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                                   enable_async_checkpointing=True)
            handlers = {"state": ocp.StandardCheckpointHandler(),
                        "meta": ocp.JsonCheckpointHandler(),
                        "history": ocp.StandardCheckpointHandler()}
            try:
                self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                      item_handlers=handlers)
            except OSError as e:
                raise CheckpointError(f"--checkpoint-dir {self.directory}: cannot use it ({e})"
                                      ) from e
        return self._manager

    def _where(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _check_meta(self, step: int, meta: Any) -> list[str]:
        """Raise CheckpointError if the saved run differs in what matters; return the harmless
        differences."""
        where = self._where(step)
        if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{where}: not a jaxnets checkpoint (no {FORMAT!r} meta); "
                                  "use an empty --checkpoint-dir")
        if meta.get("experiment") != self.experiment:
            raise CheckpointError(f"{where}: written by {meta.get('experiment')}, not "
                                  f"{self.experiment}; use another --checkpoint-dir")
        saved = meta.get("config", {})
        harmless, important = [], []
        for name in sorted(set(saved) | set(self.config)):
            old, new = saved.get(name, "<absent>"), self.config.get(name, "<absent>")
            if old != new:
                (harmless if name in self.harmless else important).append(
                    f"{name} {old!r} -> {new!r}")
        if important:
            raise CheckpointError(f"{where}: written with other settings ({'; '.join(important)}"
                                  "); rerun with the checkpoint's settings or use another "
                                  "--checkpoint-dir")
        return harmless

    # --- the run ----------------------------------------------------------------------------

    def resume_or_start(self, state: TrainState, key: jax.Array) -> tuple[TrainState, jax.Array]:
        """The state and training key to start from: the latest checkpoint with --resume,
        else the given ones.

        Raises CheckpointError (writing nothing) when the folder already holds checkpoints and
        --resume was not given, or when the latest checkpoint does not fit this run.
        """
        self.key = key
        if not self.enabled:
            return state, key
        try:
            return self._resume_or_start(state, key)
        except CheckpointError:
            self.close()  # release orbax's threads; nothing was written
            raise

    def _resume_or_start(self, state: TrainState, key: jax.Array
                         ) -> tuple[TrainState, jax.Array]:
        manager = self._open()
        step = manager.latest_step()
        every = f"every {self.every} steps into {self.directory} (keeping the last {self.keep})"
        if step is None:
            self.status = (f"checkpoints: {every}" if not self.resume else
                           f"checkpoints: nothing to resume in {self.directory}, starting at "
                           f"step 0; {every}")
            return state, key
        if not self.resume:
            raise CheckpointError(f"--checkpoint-dir {self.directory} already holds checkpoints "
                                  f"(latest step {step}); pass --resume to continue that run, "
                                  "or choose an empty folder")
        import orbax.checkpoint as ocp

        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = meta["meta"]
        except Exception as e:  # orbax/tensorstore raise many types for a damaged folder
            raise CheckpointError(f"{self._where(step)}: unreadable meta ({type(e).__name__}); "
                                  "the checkpoint is damaged, delete that step folder to resume "
                                  "from an earlier one") from e
        harmless = self._check_meta(step, meta)
        template = _host_copy(_payload(state, key))
        try:
            metadata = manager.item_metadata(step)["state"]
        except Exception as e:
            raise CheckpointError(f"{self._where(step)}: unreadable state metadata "
                                  f"({type(e).__name__}); the checkpoint is damaged, delete that "
                                  "step folder to resume from an earlier one") from e
        _check_tree(self._where(step), metadata, template)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        try:
            got = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.StandardRestore()))
        except Exception as e:
            raise CheckpointError(f"{self._where(step)}: damaged or truncated files "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); delete "
                                  "that step folder to resume from an earlier one") from e
        saved = got["state"]
        # Back to device arrays of exactly the saved dtypes (bit-identical resume).
        arrays = jax.tree.map(jnp.asarray, {k: v for k, v in saved.items() if k != "key"})
        if int(arrays["step"]) != step:
            raise CheckpointError(f"{self._where(step)}: holds step {int(arrays['step'])}, not "
                                  f"{step}; the folder was renamed or damaged")
        impl = _key_data(key)[1]
        if impl is not None:
            key = jax.random.wrap_key_data(jnp.asarray(saved["key"]),
                                           impl=meta.get("key_impl") or impl)
        else:
            key = jnp.asarray(saved["key"])
        state = state.replace(step=arrays["step"], params=arrays["params"],
                              opt_state=arrays["opt_state"], model_state=arrays["model_state"])
        history = got["history"] or {}
        self._restored = {k: np.asarray(v) for k, v in history.items()}
        self.key, self.resumed_step, self._saved_step = key, step, step
        self.status = f"checkpoints: resumed from {self._where(step)} at step {step}; {every}"
        if harmless:
            self.status += f" (ignored differences: {'; '.join(harmless)})"
        return state, key

    def metrics(self, metrics: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Per-step metrics of the whole run: those restored from the checkpoint, then `metrics`
        (fit's result['metrics'] for the steps this process ran)."""
        metrics = metrics or {}
        names = list(dict.fromkeys([*self._restored, *metrics]))
        return {k: np.concatenate([np.asarray(self._restored.get(k, np.zeros(0, np.float32))),
                                   np.asarray(metrics.get(k, np.zeros(0, np.float32)))])
                for k in names}

    def _seen(self) -> dict[str, np.ndarray]:
        return self.metrics({k: np.concatenate(v) if v else np.zeros(0, np.float32)
                             for k, v in self._history.items()})

    def save(self, state: TrainState, force: bool = False) -> bool:
        """Save `state` (asynchronously) if its step is due, or always with force."""
        if not self.enabled:
            return False
        step = int(state.step)
        if step == self._saved_step or not (force or step % self.every == 0):
            return False
        if self.key is None:
            raise CheckpointError("call resume_or_start before saving: it records the run's key")
        import orbax.checkpoint as ocp

        meta = {"format": FORMAT, "experiment": self.experiment, "config": self.config,
                "key_impl": _key_data(self.key)[1], "step": step}
        history = {k: np.asarray(v, np.float32) for k, v in self._seen().items()}
        self._open().save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(_host_copy(_payload(state, self.key))),
            meta=ocp.args.JsonSave(meta), history=ocp.args.StandardSave(history)), force=True)
        self._saved_step = step
        return True

    def on_chunk(self, state: TrainState, metrics: Mapping[str, np.ndarray]) -> None:
        """`fit`'s on_chunk hook: record the chunk's metrics, save when a checkpoint is due."""
        for k, v in metrics.items():
            self._history.setdefault(k, []).append(np.asarray(v))
        self.save(state)

    def finish(self, state: TrainState) -> None:
        """Save the final state (if not saved yet) and wait for the async writes to land."""
        if not self.enabled:
            return
        self.save(state, force=True)
        self.close()

    def close(self) -> None:
        """Wait for pending writes and release the manager (safe to call twice)."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None


def restore_state(directory: str, state: TrainState, step: int | None = None) -> TrainState:
    """Read a checkpoint's training state into the structure of `state` (e.g. to compare runs
    or evaluate a checkpoint); the latest step by default."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(directory):
        raise CheckpointError(f"{directory}: no such checkpoint folder")
    manager = ocp.CheckpointManager(os.path.abspath(directory),
                                    item_handlers={"state": ocp.StandardCheckpointHandler()})
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{directory}: holds no checkpoint")
        template = _host_copy(_payload(state, jax.random.key(0)))
        metadata = manager.item_metadata(step)["state"]
        _check_tree(os.path.join(directory, str(step)), metadata, template)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        try:
            saved = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract)))["state"]
        except Exception as e:
            raise CheckpointError(f"{directory}/{step}: damaged or truncated files "
                                  f"({type(e).__name__})") from e
    finally:
        manager.close()
    arrays = jax.tree.map(jnp.asarray, {k: v for k, v in saved.items() if k != "key"})
    return state.replace(step=arrays["step"], params=arrays["params"],
                         opt_state=arrays["opt_state"], model_state=arrays["model_state"])


# --- PyTorch exchange ---------------------------------------------------------------------------


def export_state_dict(path: str, variables: Mapping[str, Any], rename=None) -> str:
    """Write Flax variables as a PyTorch state_dict in safetensors (PyTorch's key names and
    layouts), so `Net().load_state_dict(safetensors.torch.load_file(path))` accepts it."""
    # "format": "pt" is the metadata PyTorch-side safetensors tooling expects for torch tensors.
    return torch_io.save(path, torch_io.to_state_dict(variables, rename), {"format": "pt"})


def import_state_dict(path: str, template: Mapping[str, Any], rename=None) -> dict:
    """Read a PyTorch state_dict (.safetensors, or .pth/.pt read with weights_only) into the
    structure of `template` (Flax variables, e.g. from `model.init`)."""
    return torch_io.from_state_dict(torch_io.load(path), template, rename, source=path)

"""Checkpoints and resume (orbax), and the PyTorch state_dict exchange (safetensors).

The training driver makes them from a run's options (see `jaxnets.train.run_training`):

    ckpt = checkpoint.Checkpoints(directory, every=1000, keep=3, resume=True,
                                  config=settings, may_differ={"out"},
                                  name="mnist")          # directory None: checkpoints off

A checkpoint is one step folder written by orbax's `CheckpointManager` (atomic: a step appears
only once fully written; async: writes overlap training; the last `keep` are kept) with three
items: `state` (step, params, optimizer state, model state and the training PRNG key, as arrays),
`history` (the per-step metrics so far, so loss curves survive a resume) and `meta` (JSON: the
run's config, what wrote it, the key's implementation, a fingerprint of the training data, the
run's logged records, a sha256 digest of every saved array and one of the meta itself). Once
orbax has committed a step, `jaxnets.sha256` (sha256sum's format) is written into its folder
with the digest of every other file there. No pickle.

Resuming is exact: batch order and per-step keys are pure functions of (key, step), so a run
killed after step k and resumed equals, bit for bit on CPU, a run that was never interrupted.
A checkpoint that does not fit (other writer, settings, training data, model shapes, more steps
than asked for, bytes that do not match their digests) raises CheckpointError before anything
is written, so the existing checkpoints stay as they were. Every byte of a sealed step folder is
covered: one flipped anywhere is refused as damage, never restored (a step a run was killed
before sealing still has every restored byte covered by the digests inside its meta).
A lock file (`.lock`: pid, host, boot and process start time) keeps a second run out of a
folder in use; one left by a process that has ended (killed, or before a reboot, its pid since
reused) is taken over.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import re
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import atomic, torch_io
from jaxnets.errors import CheckpointError, ConfigError

# 2: meta holds a digest of every array, the training data's fingerprint and the run's logs.
# 3: meta holds its own digest ('sha256'); step folders are sealed with SEAL.
FORMAT = "jaxnets-checkpoint-3"
LOCK = ".lock"   # who holds the folder: see lock_folder
# In each step folder once orbax has committed it: 'sha256  path' for every other file there
# (sha256sum's format: `cd <step> && sha256sum -c jaxnets.sha256` checks it by hand too).
SEAL = "jaxnets.sha256"
_SEAL_LINE = re.compile(r"([0-9a-f]{64})  ([^\n]+)")


def _config_dict(config: Any) -> dict:
    """A config (dataclass or mapping) as the plain JSON it is saved as."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    # JSON round trip: tuples become lists, so a saved and a live config compare equal.
    return json.loads(json.dumps(dict(config), default=str))


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
    """Copy every leaf to a fresh numpy array: the asynchronous save must hold its own bytes,
    not views of device buffers the next chunk may reuse."""
    return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def _key_data(key: jax.Array) -> tuple[np.ndarray, str | None]:
    """A PRNG key as raw uint32 data plus the implementation name (None for a raw uint32 key)."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.array(jax.random.key_data(key)), str(jax.random.key_impl(key))
    return np.array(key), None


def _payload(state: Any, key: jax.Array) -> dict:
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
                                  "(this model does); use another checkpoint folder",
                                  param="checkpoint_dir")
        if path not in live:
            raise CheckpointError(f"{where}: holds a different model: its {path!r} is not "
                                  "in this model; use another checkpoint folder",
                                  param="checkpoint_dir")
        if saved[path] != live[path]:
            (s_shape, s_dtype), (l_shape, l_dtype) = saved[path], live[path]
            raise CheckpointError(f"{where}: holds a different model: {path!r} is "
                                  f"{s_dtype}{list(s_shape)} there, {l_dtype}{list(l_shape)} "
                                  "here; use another checkpoint folder",
                                  param="checkpoint_dir")


def check_resume(resume: bool, directory: str | None) -> None:
    """ConfigError for resume without a checkpoint folder (experiment Configs call it too, so a
    bad command line fails before any data is loaded)."""
    if resume and directory is None:
        raise ConfigError("resume needs a checkpoint folder to resume from",
                          param="checkpoint_dir")


def _digests(tree: Any) -> dict[str, str]:
    """{path: sha256 of the array's bytes} of every array leaf (written with each step, checked
    on restore: orbax itself reads a flipped bit or overwritten bytes back without complaint)."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_path_str(p): hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
            for p, x in flat}


def _check_digests(where: str, step: int, saved: Mapping[str, str], tree: Any) -> None:
    """CheckpointError naming the first array whose bytes differ from those saved."""
    live = _digests(tree)
    for path in sorted(set(saved) | set(live)):
        if saved.get(path) != live.get(path):
            raise _damaged(where, f"{path!r} does not match the digest saved with step {step}")


def _damaged(where: str, what: str) -> CheckpointError:
    """The one message for a step whose bytes are not those saved: name it and the way out."""
    return CheckpointError(f"{where}: damaged checkpoint: {what}; delete that step folder to "
                           "resume from the previous checkpoint", param="checkpoint_dir")


def _meta_digest(meta: Mapping[str, Any]) -> str:
    """sha256 of the meta without its own 'sha256' entry, as canonical JSON (sorted keys, no
    spaces): the meta is JSON that orbax writes and reads back, and the JSON round trip of
    these values (str, int, float, NaN, lists, dicts with str keys) is exact."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _check_meta_digest(where: str, step: int, meta: Any) -> None:
    """CheckpointError unless the restored meta is the one saved: flipped bytes in the config,
    the logs, the fingerprint or the array digests would otherwise be restored as they are."""
    if not isinstance(meta, Mapping):
        raise _damaged(where, "its meta is not a JSON object")
    if "sha256" not in meta:
        if meta.get("format") == FORMAT:   # ours, its digest gone: damage
            raise _damaged(where, "its meta has no digest")
        return   # another writer or an older format: _check_meta says which
    if meta.get("sha256") != _meta_digest(meta):
        raise _damaged(where, f"its meta does not match the digest saved with step {step}")


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _folder_digests(step_dir: str) -> dict[str, str]:
    """{path relative to step_dir: sha256} of every file under step_dir but the seal."""
    out = {}
    for root, dirs, files in os.walk(step_dir):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(root, name), step_dir)
            if rel != SEAL:
                out[rel] = _file_sha256(os.path.join(root, name))
    return out


def _seal(step_dir: str) -> None:
    """Write SEAL into a step folder orbax has committed (atomically: a run killed while
    writing it leaves the step unsealed, which restores as before, on the meta's digests)."""
    if not os.path.isdir(step_dir):
        return
    lines = "".join(f"{sha}  {rel}\n" for rel, sha in _folder_digests(step_dir).items())
    with atomic.replacing(os.path.join(step_dir, SEAL)) as tmp, open(tmp, "w") as f:
        f.write(lines)


def _check_seal(where: str, step: int, step_dir: str) -> bool:
    """CheckpointError naming the first file of a sealed step whose bytes differ from those
    sealed (or that is missing, or was added); False for a step without a seal (killed between
    orbax's commit and the seal, or written before seals), True when every byte matches."""
    try:
        with open(os.path.join(step_dir, SEAL), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise _damaged(where, f"its {SEAL} cannot be read ({e.strerror})") from None
    saved: dict[str, str] = {}
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    lines = text.split("\n")
    if not text.endswith("\n") or not all(_SEAL_LINE.fullmatch(line) for line in lines[:-1]):
        raise _damaged(where, f"its {SEAL} is not the one saved")
    for line in lines[:-1]:
        sha, rel = _SEAL_LINE.fullmatch(line).groups()
        if rel in saved:
            raise _damaged(where, f"its {SEAL} is not the one saved")
        saved[rel] = sha
    live = _folder_digests(step_dir)
    for rel in sorted(set(saved) | set(live)):
        if rel not in live:
            raise _damaged(where, f"{rel!r} is missing")
        if rel not in saved:
            raise _damaged(where, f"{rel!r} was not saved with step {step}")
        if saved[rel] != live[rel]:
            raise _damaged(where, f"{rel!r} does not match the digest saved with step {step}")
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _boot_id() -> str:
    """This boot of the machine ('-' where Linux's /proc cannot say): pids restart at each boot."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or "-"
    except OSError:
        return "-"


def _start_time(pid: int) -> str:
    """When process `pid` started, in clock ticks since boot ('-' where /proc cannot say): a
    pid reused by another process has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return "-"
    # 'pid (comm) state ...': comm may hold spaces and parentheses; starttime is field 22.
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else "-"


def _lock_text() -> str:
    """What a lock file holds: 'pid host boot-id start-time', enough to tell a live holder from
    a process that merely has its pid now (after a reboot, or pid reuse)."""
    pid = os.getpid()
    return f"{pid} {socket.gethostname()} {_boot_id()} {_start_time(pid)}\n"


def _holder_gone(pid: int, host: str, boot: str, start: str) -> bool:
    """Whether the process a lock names has ended (its lock is stale). Another host's is taken
    as alive: it cannot be checked from here."""
    if host != socket.gethostname():
        return False
    if boot != "-" and _boot_id() != "-" and boot != _boot_id():
        return True                    # written before a reboot
    if not _pid_alive(pid):
        return True
    now = _start_time(pid)
    return start != "-" and now != "-" and start != now   # the pid is another process's now


def lock_folder(directory: str, name: str = LOCK, *, param: str = "checkpoint_dir",
                what: str = "checkpoint folder") -> str:
    """Create `directory/name` (`_lock_text`: pid, host, boot and start time) and return its
    path; CheckpointError (naming `param`; `what` the folder is, in the message) if a live
    process holds it. A lock whose process has ended (killed, or before a reboot, or whose pid
    now belongs to another process) is taken over. `unlock_folder` releases it."""
    path = os.path.join(directory, name)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    words = f.read().split()
                pid = int(words[0])
            except (OSError, ValueError, IndexError):
                pid, words = -1, []   # half-written by a process killed while writing it
            # (a lock of an older jaxnets holds 'pid host' only: boot and start unknown)
            host = words[1] if len(words) > 1 else ""
            boot = words[2] if len(words) > 2 else "-"
            start = words[3] if len(words) > 3 else "-"
            if pid > 0 and not _holder_gone(pid, host, boot, start):
                raise CheckpointError(
                    f"{directory} is in use by another run (process {pid} on "
                    f"{host or 'this host'}, lock file {path}); wait for it to end or use "
                    f"another {what} (if no run of ours is using it, delete {path})",
                    param=param) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)     # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(_lock_text())
        return path
    raise CheckpointError(f"{directory}: cannot take the lock file {path}; another run keeps "
                          f"creating it, use another {what}", param=param)


def unlock_folder(path: str | None) -> None:
    """Remove a lock file `lock_folder` made (None or already gone: nothing to do)."""
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


class _OrbaxErrorLogs(logging.Filter):
    """Drops orbax's ERROR log records (tracebacks from its background save threads) while a
    Checkpoints is open: every failure they report also reaches the run as an exception, which
    Checkpoints turns into one CheckpointError line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR
                    and f"{os.sep}orbax{os.sep}" in record.pathname)


def _closed_loop_noise(unraisable: Any) -> bool:
    """Whether an unraisable exception is tensorstore's late callback into the event loop orbax
    already closed: after a failed restore or save, reads and writes still in flight finish on
    tensorstore's threads and call `loop.call_soon_threadsafe` on orbax's closed per-call loop,
    which Python prints as an 'Event loop is closed' traceback after our one-line error."""
    e, tb = unraisable.exc_value, unraisable.exc_traceback
    if not (isinstance(e, RuntimeError) and str(e) == "Event loop is closed"):
        return False
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == "_check_closed"


def _quiet_closed_loop_noise() -> None:
    """Install (once per process) an unraisable-exception hook that drops `_closed_loop_noise`
    and hands everything else to the hook it replaces. Process-wide, because the callbacks may
    land after the failing call returned, even during interpreter shutdown."""
    previous = sys.unraisablehook
    if getattr(previous, "_jaxnets_closed_loop", False):
        return

    def hook(unraisable):
        if not _closed_loop_noise(unraisable):
            previous(unraisable)

    hook._jaxnets_closed_loop = True
    sys.unraisablehook = hook


def _write_error(directory: str, e: BaseException) -> CheckpointError:
    """A failed (possibly asynchronous) save as one line, a full disk said plainly."""
    text = str(e)
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in text:
        reason = "no space left on device"
    else:
        reason = f"{type(e).__name__}: {(text.splitlines() or [''])[0][:200]}"
    return CheckpointError(f"{directory}: saving a checkpoint failed ({reason}); free space or "
                           "use another checkpoint folder (the steps saved before are intact; "
                           "resume from them)", param="checkpoint_dir")


def _registry(items: Iterable[str]):
    """orbax's handler registry for our items (state and history: arrays; meta: JSON)."""
    import orbax.checkpoint as ocp

    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item in items:
        if item == "meta":
            handler = ocp.JsonCheckpointHandler()
            registry.add(item, ocp.args.JsonSave, handler)
            registry.add(item, ocp.args.JsonRestore, handler)
        else:
            handler = ocp.StandardCheckpointHandler()
            registry.add(item, ocp.args.StandardSave, handler)
            registry.add(item, ocp.args.StandardRestore, handler)
    return registry


class Checkpoints:
    """A run's checkpoints in one folder: resume, save every `every` steps, keep the last `keep`.

    Args:
      directory: the folder (None: checkpoints off, every method a no-op).
      every: steps between checkpoints (the last step is always saved).
      keep: how many of the latest checkpoints to keep.
      resume: continue from the latest checkpoint (starting fresh if there is none); without
        it a folder that holds checkpoints is refused.
      config: the run's settings as a mapping (saved; a resume with other values is refused).
      may_differ: names in `config` that may change on resume without changing the result
        (where outputs go, display options, checkpoint cadence, a longer run).
      name: what wrote the checkpoint (e.g. the experiment's name); a resume by another is
        refused.

    The training driver (`jaxnets.train.run_training`) calls `restore`, `save` and `close`.
    """

    def __init__(self, directory: str | None, *, every: int = 1000, keep: int = 3,
                 resume: bool = False, config: Mapping[str, Any] | None = None,
                 may_differ: Iterable[str] = (), name: str = "run"):
        if every < 1:
            raise ConfigError(f"checkpoint interval must be at least 1, got {every}",
                              param="checkpoint_every")
        if keep < 1:
            raise ConfigError(f"checkpoints to keep must be at least 1, got {keep}",
                              param="keep_checkpoints")
        check_resume(resume, directory)
        self.directory = None if directory is None else os.path.abspath(directory)
        self.config = _config_dict(config or {})
        self.name = name
        self.every, self.keep, self.resume = every, keep, resume
        self.may_differ = frozenset(may_differ)
        self.status = ""              # one line for the experiment to print
        self.resumed_step = 0
        self._saved_step = -1
        self._unsealed: int | None = None   # saved, not yet sealed (orbax may still be writing)
        self._manager = None
        self._lock_path: str | None = None
        self._log_filter = _OrbaxErrorLogs()

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def chunk_size(self, default: int) -> int:
        """Steps per chunk: `default`, shortened so chunks end on every checkpoint step."""
        return math.gcd(default, self.every) if self.enabled else default

    # --- orbax ------------------------------------------------------------------------------

    def _open(self):
        """The orbax CheckpointManager (created on first use, after taking the folder's lock;
        creating it writes nothing into an existing folder)."""
        if self._manager is None:
            import orbax.checkpoint as ocp

            if os.path.exists(self.directory) and not os.path.isdir(self.directory):
                raise CheckpointError(f"{self.directory}: exists and is not a folder; choose "
                                      "another checkpoint folder", param="checkpoint_dir")
            try:
                os.makedirs(self.directory, exist_ok=True)
                self._lock_path = lock_folder(self.directory)
                logging.getLogger("absl").addFilter(self._log_filter)
                _quiet_closed_loop_noise()
                # cleanup_tmp_directories: the unfinished step folders of a run that was
                # killed mid-save go now (we hold the lock: no run of ours is writing them),
                # not only when a later save of that same step comes, with an absl warning.
                options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                                       enable_async_checkpointing=True,
                                                       cleanup_tmp_directories=True)
                self._manager = ocp.CheckpointManager(
                    self.directory, options=options,
                    handler_registry=_registry(("state", "meta", "history")))
            except OSError as e:
                self._unlock()
                raise CheckpointError(f"{self.directory}: cannot use it as the checkpoint "
                                      f"folder ({e})", param="checkpoint_dir") from e
        return self._manager

    def _unlock(self) -> None:
        unlock_folder(self._lock_path)
        self._lock_path = None

    def _where(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _check_meta(self, step: int, meta: Any, data_fingerprint: str | None,
                    num_steps: int | None) -> list[str]:
        """Raise CheckpointError if the saved run differs in what matters; return the allowed
        differences."""
        where = self._where(step)
        if not isinstance(meta, Mapping) or meta.get("format") != FORMAT:
            older = str(meta.get("format", "")) if isinstance(meta, Mapping) else ""
            why = (f"written by an older jaxnets ({older}), which this one cannot resume"
                   if older.startswith("jaxnets-checkpoint-") else f"not a {FORMAT} checkpoint")
            raise CheckpointError(f"{where}: {why}; use an empty checkpoint folder",
                                  param="checkpoint_dir")
        if meta.get("experiment") != self.name:
            raise CheckpointError(f"{where}: written by {meta.get('experiment')}, not "
                                  f"{self.name}; use another checkpoint folder",
                                  param="checkpoint_dir")
        saved = meta.get("config", {})
        allowed, important = [], []
        for name in sorted(set(saved) | set(self.config)):
            old, new = saved.get(name, "<absent>"), self.config.get(name, "<absent>")
            if old != new:
                (allowed if name in self.may_differ else important).append(
                    f"{name} {old!r} -> {new!r}")
        if important:
            raise CheckpointError(f"{where}: written with other settings ({'; '.join(important)}"
                                  "); rerun with the checkpoint's settings or use another "
                                  "checkpoint folder", param="checkpoint_dir")
        if data_fingerprint is not None and meta.get("data") != data_fingerprint:
            raise CheckpointError(f"{where}: trained on other data (its training arrays' "
                                  "fingerprint differs from this run's); resume with the "
                                  "checkpoint's training data or use another checkpoint folder",
                                  param="data_dir")
        if num_steps is not None and num_steps < step:
            raise CheckpointError(f"{where}: holds {step} steps, more than this run's {num_steps}"
                                  f"; train at least {step} steps to resume it, or use another "
                                  "checkpoint folder", param="num_steps")
        return allowed

    # --- the run ----------------------------------------------------------------------------

    def restore(self, state: Any, key: jax.Array, *, data_fingerprint: str | None = None,
                num_steps: int | None = None) -> tuple[Any, jax.Array, dict, dict] | None:
        """(state, training key, per-step metrics, logs) of the latest checkpoint with resume;
        None to start fresh (resume in an empty folder, or checkpoints off).

        Raises CheckpointError (writing nothing) when the folder already holds checkpoints and
        resume is off, or when the latest checkpoint does not fit this run: other settings,
        data (`data_fingerprint`), model shapes, more steps than `num_steps`, damaged bytes.
        """
        if not self.enabled:
            return None
        try:
            return self._restore(state, key, data_fingerprint, num_steps)
        except BaseException:
            self.close()  # release orbax's threads and the lock; nothing was written
            raise

    def _restore(self, state, key, data_fingerprint, num_steps):
        manager = self._open()
        step = manager.latest_step()
        every = f"every {self.every} steps into {self.directory} (keeping the last {self.keep})"
        if step is None:
            self.status = (f"checkpoints: {every}" if not self.resume else
                           f"checkpoints: nothing to resume in {self.directory}, starting at "
                           f"step 0; {every}")
            return None
        if not self.resume:
            raise CheckpointError(f"{self.directory} already holds checkpoints (latest step "
                                  f"{step}); resume to continue that run, or choose an empty "
                                  "checkpoint folder", param="resume")
        import orbax.checkpoint as ocp

        # Every byte of a sealed step, before orbax reads any of it.
        _check_seal(self._where(step), step, self._where(step))
        damaged = (f"the checkpoint is damaged, delete that step folder ({self._where(step)}) "
                   "to resume from the previous one")
        try:
            meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = meta["meta"]
        except Exception as e:  # orbax/tensorstore raise many types for a damaged folder
            raise CheckpointError(f"{self._where(step)}: unreadable meta ({type(e).__name__}); "
                                  f"{damaged}", param="checkpoint_dir") from e
        _check_meta_digest(self._where(step), step, meta)
        allowed = self._check_meta(step, meta, data_fingerprint, num_steps)
        template = _host_copy(_payload(state, key))
        try:
            metadata = manager.item_metadata(step)["state"]
        except Exception as e:
            raise CheckpointError(f"{self._where(step)}: unreadable state metadata "
                                  f"({type(e).__name__}); {damaged}",
                                  param="checkpoint_dir") from e
        _check_tree(self._where(step), metadata, template)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        try:
            got = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), history=ocp.args.StandardRestore()))
        except Exception as e:
            raise CheckpointError(f"{self._where(step)}: damaged or truncated files "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                                  f"{damaged}", param="checkpoint_dir") from e
        saved, history = got["state"], got["history"] or {}
        digests = meta.get("digests") or {}
        _check_digests(self._where(step), step, digests.get("state", {}), saved)
        _check_digests(self._where(step), step, digests.get("history", {}), history)
        # Back to device arrays of exactly the saved dtypes (bit-identical resume).
        arrays = jax.tree.map(jnp.asarray, {k: v for k, v in saved.items() if k != "key"})
        if int(arrays["step"]) != step:
            raise CheckpointError(f"{self._where(step)}: holds step {int(arrays['step'])}, not "
                                  f"{step}; the folder was renamed or damaged",
                                  param="checkpoint_dir")
        impl = _key_data(key)[1]
        if impl is not None:
            key = jax.random.wrap_key_data(jnp.asarray(saved["key"]),
                                           impl=meta.get("key_impl") or impl)
        else:
            key = jnp.asarray(saved["key"])
        state = state.replace(step=arrays["step"], params=arrays["params"],
                              opt_state=arrays["opt_state"], model_state=arrays["model_state"])
        self.resumed_step, self._saved_step = step, step
        self.status = f"checkpoints: resumed from {self._where(step)} at step {step}; {every}"
        if allowed:
            self.status += f" (ignored differences: {'; '.join(allowed)})"
        return (state, key, {k: np.asarray(v) for k, v in history.items()},
                dict(meta.get("logs") or {}))

    def save(self, state: Any, key: jax.Array, metrics: Mapping[str, np.ndarray],
             logs: Mapping[str, list], *, data_fingerprint: str | None = None,
             force: bool = False) -> bool:
        """Save `state`, the training `key`, the per-step `metrics` and `logs` so far
        (asynchronously) if the step is due, or always with force. Returns whether it saved."""
        if not self.enabled:
            return False
        step = int(state.step)
        if step == self._saved_step or not (force or step % self.every == 0):
            return False
        import orbax.checkpoint as ocp

        payload = _host_copy(_payload(state, key))
        history = {k: np.asarray(v, np.float32) for k, v in metrics.items()}
        meta = {"format": FORMAT, "experiment": self.name, "config": self.config,
                "key_impl": _key_data(key)[1], "step": step, "data": data_fingerprint,
                "logs": logs, "digests": {"state": _digests(payload),
                                          "history": _digests(history)}}
        # The digest of exactly what a restore reads back: the JSON round trip of the meta.
        meta = json.loads(json.dumps(meta, default=float))
        meta["sha256"] = _meta_digest(meta)
        manager = self._open()
        try:  # (an earlier asynchronous save's failure surfaces here too)
            self._seal_pending(manager)   # the previous step, committed by now
            manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(payload), meta=ocp.args.JsonSave(meta),
                history=ocp.args.StandardSave(history)), force=True)
        except CheckpointError:
            raise
        except Exception as e:
            raise _write_error(self.directory, e) from e
        self._saved_step = self._unsealed = step
        return True

    def _seal_pending(self, manager) -> None:
        """Seal the step saved last, once orbax has committed it (waits for its asynchronous
        write, which orbax's next save would wait for anyway). Only process 0 writes the seal
        (multi-host: every process writes its part of a step, orbax commits it once)."""
        step, self._unsealed = self._unsealed, None
        if step is None:
            return
        manager.wait_until_finished()
        if jax.process_index() == 0:
            _seal(self._where(step))

    def close(self) -> None:
        """Wait for pending writes, release the manager and the folder's lock (safe twice).
        Raises CheckpointError if a pending write failed (a full disk)."""
        manager, self._manager = self._manager, None
        try:
            if manager is not None:
                try:
                    manager.wait_until_finished()
                    self._seal_pending(manager)
                except Exception as e:
                    raise _write_error(self.directory, e) from e
                finally:
                    with contextlib.suppress(Exception):
                        manager.close()
        finally:
            logging.getLogger("absl").removeFilter(self._log_filter)
            self._unlock()


def restore_state(directory: str, state: Any, step: int | None = None) -> Any:
    """Read a checkpoint's training state into the structure of `state` (e.g. to compare runs
    or evaluate a checkpoint), its digests checked; the latest step by default."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(directory):
        raise CheckpointError(f"{directory}: no such checkpoint folder", param="checkpoint_dir")
    _quiet_closed_loop_noise()
    manager = ocp.CheckpointManager(os.path.abspath(directory),
                                    handler_registry=_registry(("state", "meta", "history")))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"{directory}: holds no checkpoint", param="checkpoint_dir")
        where = os.path.join(directory, str(step))
        _check_seal(where, step, where)
        template = _host_copy(_payload(state, jax.random.key(0)))
        metadata = manager.item_metadata(step)["state"]
        _check_tree(where, metadata, template)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        try:
            got = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:
            raise CheckpointError(f"{where}: damaged or truncated files ({type(e).__name__})",
                                  param="checkpoint_dir") from e
        saved, meta = got["state"], got["meta"]
        _check_meta_digest(where, step, meta)
        _check_digests(where, step, (meta.get("digests") or {}).get("state", {}), saved)
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

"""The command line every experiment shares: flags generated from its `Config`.

An experiment module declares each hyper-parameter once, as a field of a frozen dataclass
`Config` with `arg(default, help, choices=...)`, and holds the run's options (output folder,
printing, checkpoints, devices: `jaxnets.options`) in its `options` field;
`Config.__post_init__` checks the values and raises `ConfigError(message, param=field)`. From
that one declaration this module builds the argparse parser (`parser`: the experiment's own
flags first, then the run options' groups), turns the command line into a Config (`parse`),
and runs it (`main`). `flag` is the one mapping from a parameter name to its flag (`batch_size` ->
`--batch-size`), so an error from the Config or from the library (which names parameters,
never flags) is printed as `python -m experiments.mnist: error: --batch-size: must be ...`,
one line, exit status 2.

This module and `jaxnets.errors` import neither jax nor numpy: `answer_early`, called near the
top of an experiment before its heavy imports, answers --help and bad flags at once.
`main` also turns on JAX's persistent compilation cache (`compile_cache`) and says whether the
run used it. `Reporter` is the experiments' printing: narrative (`say`, silenced by --quiet),
the tutorial-vs-jaxnets table (`compare`) and the files written (`wrote`), always printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import json
import math
import os
import re
import stat
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from jaxnets.errors import ConfigError, JaxnetsError, JaxnetsWarning
from jaxnets.options import MAY_DIFFER, RunOptions, TrainOptions, settings

# --- declaring fields ---------------------------------------------------------------------------


def flag(param: str) -> str:
    """The flag of a Config field or library parameter: `batch_size` -> `--batch-size`."""
    return "--" + param.replace("_", "-")


def arg(default: Any, help: str, *, choices: Sequence[Any] | None = None,
        metavar: str | None = None, group: str | None = None,
        bounds: tuple[int, int] | None = None, may_differ: bool = False) -> Any:
    """A Config field with its flag's help text (and fixed choices or inclusive integer
    bounds, if any) in its metadata; `check_fields` checks those. `may_differ`: a resumed run
    may change it without changing the result (e.g. a longer run's steps).

    `help` says what the flag does; for a bool that defaults to True the flag is
    `--no-<name>`, and `help` says what turning it off does."""
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": None if choices is None else tuple(choices),
        "metavar": metavar, "group": group, "bounds": bounds, MAY_DIFFER: may_differ})


# The fields several experiments share, so their help text is written once.

# jax.random.key takes a seed that fits a signed 64-bit integer; negative seeds are refused
# too, so that one run has one spelling.
SEED_BOUNDS = (0, 2**63 - 1)


def seed(default: int = 0) -> Any:
    return arg(default, "PRNG seed: the same seed gives the same run", bounds=SEED_BOUNDS)


# --- checks for Config.__post_init__ ------------------------------------------------------------


def check(condition: bool, param: str, message: str) -> None:
    """Raise ConfigError(message, param=param) unless condition."""
    if not condition:
        raise ConfigError(message, param=param)


def check_fields(config: Any) -> None:
    """The checks every field declares (its choices, its bounds), and that the batch splits
    over the run's devices (the options check themselves when made)."""
    options = getattr(config, "options", None)
    if isinstance(options, TrainOptions) and hasattr(config, "batch_size"):
        options.check_batch_size(config.batch_size)
    for f in dataclasses.fields(config):
        choices = f.metadata.get("choices")
        value = getattr(config, f.name)
        bounds = f.metadata.get("bounds")
        if bounds is not None and value is not None:
            check(bounds[0] <= value <= bounds[1], f.name,
                  f"must be in {bounds[0]} .. {bounds[1]:,}, got {value}")
        if choices is not None and value is not None:
            for v in (value if isinstance(value, tuple) else (value,)):
                check(v in choices, f.name,
                      f"{v!r} is not one of {', '.join(map(str, choices))}")


def check_optimizer_takes(config: Any, *names: str) -> None:
    """ConfigError unless each named setting is one the chosen `config.optimizer` takes, or is
    left at its default (Adam takes no momentum: --momentum 0.5 with it would be ignored)."""
    from jaxnets import optim  # (the registry imports without jax)

    for name in names:
        default = type(config).__dataclass_fields__[name].default
        check(optim.takes(config.optimizer, name) or getattr(config, name) == default, name,
              f"{config.optimizer} takes no {name}; leave it out, or choose an optimizer that "
              "takes it")


def check_fake_data(config: Any) -> None:
    """ConfigError (data_dir) for a data folder given with a fake dataset, which reads none."""
    check(not (config.dataset or "").startswith("fake_") or config.data_dir is None, "data_dir",
          f"{config.dataset} is made up, not read: leave data_dir out, or choose a real dataset")


def check_positive(config: Any, *names: str) -> None:
    """ConfigError unless each named field is >= 1 (ints) or a finite number > 0 (floats)."""
    types = {f.name: _field_type(f)[0] for f in dataclasses.fields(config) if f.name in names}
    for name in names:
        value = getattr(config, name)
        if types[name] is int:
            check(value >= 1, name, f"must be at least 1, got {value}")
        else:
            check(math.isfinite(value) and value > 0, name,
                  f"must be a finite number > 0, got {value}")


# --- checks before any data is loaded (cli.main) -----------------------------------------------

# Fields, by name, that say where a run writes (folders, files) or what it reads first: main
# checks them before `run`, so a bad one fails in a second, not after the training. Every path
# flag is one of these, and goes through `check_path` (the text), then its kind's check (the
# file system's own answer).
OUTPUT_FOLDERS = ("out", "checkpoint_dir", "tensorboard")
OUTPUT_FILES = ("export",)
INPUT_FILES = ("weights", "csv_file", "txt_file")
INPUT_FOLDERS = ("data_dir", "cifar_data_dir")

# The limits of Linux's usual file systems (ext4, xfs, tmpfs, ...), where pathconf cannot say.
NAME_MAX, PATH_MAX = 255, 4096
# What a run adds under an output folder: file names, orbax's step folders (the longest,
# '<step>.orbax-checkpoint-tmp-<n>/state/ocdbt.process_0/d/<32 hex>', is about 100 bytes).
OUTPUT_ROOM = NAME_MAX + 1


def _shown(path: str) -> str:
    """A path short enough for a one-line message."""
    return path if len(path) <= 120 else f"{path[:60]}...{path[-40:]} ({len(path):,} characters)"


def _existing_ancestor(full: str) -> str:
    """The nearest folder of an absolute path that exists (the path itself if it does)."""
    existing = full
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    return existing


def _limit(folder: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError):
        return default
    return default if value is None or value <= 0 else value


def check_path(path: str, param: str, room: int = 0) -> str:
    """ConfigError for a path no file system takes, whatever it names: empty (which would mean
    the working folder, or nothing), a NUL byte, a name longer than NAME_MAX bytes, or a whole
    path (plus `room`, what the run adds under it) longer than PATH_MAX. Returns its absolute
    form."""
    if not isinstance(path, str) or path == "":
        raise ConfigError("an empty path names nothing; give a path", param=param)
    if "\0" in path:
        raise ConfigError(f"{_shown(path)!r}: a path cannot hold a NUL character", param=param)
    full = os.path.abspath(path)
    existing = _existing_ancestor(full)
    name_max = _limit(existing, "PC_NAME_MAX", NAME_MAX)
    for part in full.split(os.sep):
        if len(os.fsencode(part)) > name_max:
            raise ConfigError(f"{_shown(path)}: the name {_shown(part)} is "
                              f"{len(os.fsencode(part)):,} bytes, more than the {name_max} a "
                              "file name can have; use a shorter name", param=param)
    path_max = _limit(existing, "PC_PATH_MAX", PATH_MAX)
    if len(os.fsencode(full)) + room >= path_max:
        raise ConfigError(f"{_shown(path)}: its full path is {len(os.fsencode(full)):,} bytes"
                          + (f", and the run writes up to {room} more under it" if room else "")
                          + f"; the longest path a file system takes is {path_max - 1:,}; use a "
                          "shorter path", param=param)
    return full


def _try_create(folder: str, path: str, param: str, kind: str) -> None:
    """Create and remove a temporary folder (kind 'folder') or file in `folder`: the file
    system's own answer. os.access says yes to root everywhere, and /proc and /sys say yes to
    access but refuse to create anything."""
    import tempfile

    try:
        if kind == "folder":
            os.rmdir(tempfile.mkdtemp(prefix=".jaxnets-probe-", dir=folder))
        else:
            fd, probe = tempfile.mkstemp(prefix=".jaxnets-probe-", dir=folder)
            os.close(fd)
            os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{_shown(path)}: cannot create a {kind} in {_shown(folder)} "
                          f"({e.strerror}); choose another place", param=param) from None


def check_writable_folder(path: str, param: str, room: int = OUTPUT_ROOM, *,
                          named: str | None = None) -> None:
    """ConfigError unless `path` is a folder this process can write into, or can create.
    `named`: the path the user gave, when `path` is its folder (a file to write there)."""
    full = check_path(path, param, room)
    shown = _shown(named or path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise ConfigError(f"{shown} exists and is not a folder; name a folder (new or "
                          "existing)", param=param)
    existing = _existing_ancestor(full)
    if not os.path.isdir(existing):
        raise ConfigError(f"{shown}: cannot be created, {_shown(existing)} is "
                          + ("a file, not a folder" if os.path.exists(existing)
                             else "a broken link") + "; choose another place", param=param)
    # os.access also says no for a read-only file system, which permissions do not show.
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{shown}: cannot write there ({_shown(existing)} is not "
                          "writable); choose another place", param=param)
    _try_create(existing, named or path, param, "file" if existing == full else "folder")


def check_writable_file(path: str, param: str) -> None:
    """ConfigError unless the file `path` can be written (its folder exists or can be made):
    an existing one must be a regular file (the write renames a new file over it: a FIFO or a
    device would be replaced)."""
    full = check_path(path, param)
    if os.path.isdir(full):
        raise ConfigError(f"{_shown(path)} is a folder; name a file", param=param)
    if os.path.exists(full) and not stat.S_ISREG(os.stat(full).st_mode):
        raise ConfigError(f"{_shown(path)} exists and is not a regular file "
                          f"({_kind(os.stat(full).st_mode)}); name a new or a regular file",
                          param=param)
    folder = os.path.dirname(full)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"{_shown(path)}: cannot be created, {_shown(folder)} is a file, not "
                          "a folder; choose another place", param=param)
    # (room: the write goes through a temporary name next to it, up to NAME_MAX bytes)
    check_writable_folder(folder, param, room=OUTPUT_ROOM, named=path)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_readable_file(path: str, param: str) -> None:
    """ConfigError unless `path` is a regular file this process can read: the library's own
    rule (`jaxnets.data.bounded.open_regular`: anything else is refused from its stat, without
    opening it; a FIFO would wait for a writer for ever, a device reads without end or has side
    effects), checked here before any data is loaded."""
    check_path(path, param)
    from jaxnets.data import bounded

    with bounded.open_regular(path, error=functools.partial(ConfigError, param=param)) as f:
        try:
            f.read(1)
        except OSError as e:
            raise ConfigError(f"{_shown(path)}: cannot read it ({e.strerror}); pass an "
                              "existing, readable file", param=param) from None


def check_readable_folder(path: str, param: str) -> None:
    """ConfigError unless `path` is a folder this process can list."""
    check_path(path, param)
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.exists(path) else "no such folder"
        raise ConfigError(f"{_shown(path)}: {what}; name the folder that holds the files",
                          param=param)
    try:
        os.listdir(path)
    except OSError as e:
        raise ConfigError(f"{_shown(path)}: cannot read it ({e.strerror}); name a readable "
                          "folder", param=param) from None


_PATH_CHECKS = {**dict.fromkeys(OUTPUT_FOLDERS, check_writable_folder),
                **dict.fromkeys(OUTPUT_FILES, check_writable_file),
                **dict.fromkeys(INPUT_FILES, check_readable_file),
                **dict.fromkeys(INPUT_FOLDERS, check_readable_folder)}


def check_early(config: Any) -> None:
    """The checks of a Config that need the file system or jax, by field name: every path
    field (`_PATH_CHECKS`: output folders and files writable, input files and folders
    readable), no more devices than jax sees. main calls it before `run`, so they fail before
    any data is loaded."""
    flat = settings(config)  # (the run options' fields among the Config's own)
    for name, value in flat.items():
        if value is not None and name in _PATH_CHECKS:
            _PATH_CHECKS[name](value, name)
    if flat.get("devices", 1) != 1:
        device_mesh(flat["devices"])  # ConfigError naming devices when jax sees fewer


OUT_LOCK = ".run.lock"   # in --out while a run writes there (the checkpoint folder's is .lock)


@contextlib.contextmanager
def output_lock(out: str | None):
    """Hold a lock file in the output folder for the run (created now): a second run with the
    same folder fails at once with CheckpointError naming `out`, instead of the two
    overwriting each other's metrics.json and plots. The checkpoint folder's lock mechanism.

    Holding the folder, it deletes the temporaries of atomic writes whose writer was killed
    (`jaxnets.atomic.remove_stale`). A folder it created is removed again if the run leaves it
    empty (a run that failed while loading its data leaves no empty folder behind)."""
    if out is None:
        yield
        return
    from jaxnets import atomic, checkpoint

    created, folder = [], os.path.abspath(out)
    while not os.path.exists(folder):       # the folders this run makes, deepest first
        created.append(folder)
        folder = os.path.dirname(folder)
    path = None
    try:
        os.makedirs(out, exist_ok=True)
        path = checkpoint.lock_folder(out, OUT_LOCK, param="out", what="output folder")
        atomic.remove_stale(out)
        yield
    finally:
        checkpoint.unlock_folder(path)
        for folder in created:
            try:
                os.rmdir(folder)               # only if empty
            except OSError:
                break


# --- the parser generated from Config -----------------------------------------------------------


class FlagError(Exception):
    """A command line argparse rejects (unknown flag, not a number, not a choice)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit; main prints one line
        raise FlagError(message.removeprefix("argument "))


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written; each flag's default after its help text."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default  # (identity checks: 0 == False and 1 == True)
        if not (d is None or isinstance(d, bool) or d == () or d is argparse.SUPPRESS):
            text += f" (default {d})"
        return text


_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _field_type(f: dataclasses.Field) -> tuple[type, bool]:
    """(element type, is a tuple) of a field annotated int/float/str/bool, optionally `| None`
    or `tuple[T, ...]` (annotations are strings under `from __future__ import annotations`)."""
    text = (f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type)))
    text = text.replace(" ", "").replace("|None", "").replace("None|", "")
    many = text.startswith("tuple[")
    if many:
        text = text[len("tuple["):].split(",")[0]
    if text not in _TYPES:
        raise TypeError(f"Config field {f.name}: cannot make a flag for type {f.type!r}")
    return _TYPES[text], many


def prog(config_cls: type) -> str:
    """`python -m experiments.<name>`, also when the module runs as __main__."""
    module = config_cls.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        module = spec.name if spec is not None else os.path.splitext(
            os.path.basename(sys.argv[0]))[0]
    return f"python -m {module}"


def option(f: dataclasses.Field, default: Any = dataclasses.MISSING) -> str:
    """The flag of a field: `--name`, or `--no-name` for a bool that defaults to True."""
    default = f.default if default is dataclasses.MISSING else default
    return flag(("no_" if default is True else "") + f.name)


def options_field(config_cls: type) -> dataclasses.Field | None:
    """The Config's `options` field (a jaxnets.options.RunOptions), None if it has none."""
    for f in dataclasses.fields(config_cls):
        if f.name == "options":
            return f
    return None


def default_options(config_cls: type) -> RunOptions | None:
    """The run options a Config has by default (its output folder, for one)."""
    f = options_field(config_cls)
    if f is None:
        return None
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def flag_fields(config_cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """(field, default) for every flag, in --help's order: the experiment's own fields, its run
    options' fields (defaults from the Config's default options), then Common's."""
    options = default_options(config_cls)
    own = [(f, f.default) for f in dataclasses.fields(config_cls) if f.name != "options"]
    run = [] if options is None else [(f, getattr(options, f.name))
                                      for f in dataclasses.fields(options)]
    return own + run + [(f, f.default) for f in dataclasses.fields(Common)]


def _flags_named(text: str, names: Sequence[str]) -> str:
    """`text` with the parameter names in it (`checkpoint_dir`) spelled as their flags."""
    for name in sorted((n for n in names if "_" in n), key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){name}\b", flag(name), text)
    return text


def parser(config_cls: type, doc: str | None) -> argparse.ArgumentParser:
    """The argparse parser of a Config class: one flag per field, the experiment's own first,
    then the run options in their groups."""
    p = _Parser(prog=prog(config_cls), description=doc, formatter_class=_Formatter)
    groups: dict[str | None, Any] = {None: p}
    fields = flag_fields(config_cls)
    names = [f.name for f, _ in fields]
    for f, default in fields:
        meta = dict(f.metadata)
        # (argparse %-formats help)
        meta["help"] = _flags_named(meta.get("help") or "", names).replace("%", "%%")
        group = meta.get("group")
        if group not in groups:
            groups[group] = p.add_argument_group(group)
        g = groups[group]
        kind, many = _field_type(f)
        if kind is bool:
            g.add_argument(option(f, default), dest=f.name, default=default,
                           help=meta.get("help"),
                           action="store_false" if default else "store_true")
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": default, "type": kind,
                              "help": meta.get("help"), "metavar": meta.get("metavar")}
        if meta.get("choices") is not None:
            kw["choices"] = meta["choices"]
            if kw["metavar"]:  # the usage line shows the metavar, so the help lists them
                kw["help"] += f" (one of: {', '.join(map(str, meta['choices']))})"
            else:
                kw["metavar"] = "{" + ",".join(map(str, meta["choices"])) + "}"
        if many:
            kw["nargs"] = "+"
        g.add_argument(option(f, default), **kw)
    return p


@dataclasses.dataclass(frozen=True)
class Common:
    """Options of the process, not of the experiment (never part of a Config or checkpoint)."""

    compile_cache: bool = arg(True, "do not use JAX's persistent compilation cache (on by "
                                    "default, in $JAX_COMPILATION_CACHE_DIR or "
                                    "~/.cache/jaxnets/xla; JAXNETS_COMPILE_CACHE=0 also turns "
                                    "it off)", group="run options")


def parse(config_cls: type, doc: str | None, argv: Sequence[str] | None = None
          ) -> tuple[Any, Common]:
    """The Config (and the common options) a command line asks for.

    Raises FlagError for what argparse rejects and ConfigError from Config's checks; --help
    prints the help and raises SystemExit(0).
    """
    args = vars(parser(config_cls, doc).parse_args(argv))
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    common = {f.name: args.pop(f.name) for f in dataclasses.fields(Common)}
    options = default_options(config_cls)
    if options is not None:
        args["options"] = type(options)(**{f.name: args.pop(f.name)
                                           for f in dataclasses.fields(options)})
    config = config_cls(**args)
    check_fields(config)  # (for every experiment, also those whose Config does not call it)
    return config, Common(**common)


def describe(e: JaxnetsError, config_cls: type | None = None) -> str:
    """An error as the command line says it: the parameter as its flag (only a flag that
    exists when `config_cls` is given: a library parameter such as num_steps may have no flag
    of its own)."""
    message = e.message
    if config_cls is not None:
        names = {f.name for f, _ in flag_fields(config_cls)}
        # the library's text names parameters (`point data_dir at ...`): say their flags
        message = _flags_named(message, sorted(names))
        if e.param and e.param not in names:
            return message
    return f"{flag(e.param)}: {message}" if e.param else message


def answer_early(config_cls: type, doc: str | None) -> None:
    """Answer --help and bad flags before the experiment imports jax: exits for those, returns
    otherwise. Call it right after Config, under `if __name__ == "__main__":`."""
    try:
        parse(config_cls, doc, sys.argv[1:])
    except (FlagError, ConfigError) as e:
        sys.exit(_usage_error(config_cls, e))


_DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


_CACHE_READ_ERROR = "Error reading persistent compilation cache entry for"
# In JAX's message: the cache folder, not an entry, is at fault.
_FOLDER_ERRORS = ("NotADirectoryError", "FileExistsError", "PermissionError",
                  "FileNotFoundError", "Read-only file system")


def _show_warning(config_cls: type, message, category, filename, lineno, file=None,
                  line=None) -> None:
    """warnings.showwarning for a run: a JaxnetsWarning as one line, others as Python would."""
    if issubclass(category, JaxnetsWarning):
        print(f"{prog(config_cls)}: warning: {message}", file=sys.stderr)
    elif str(message).startswith(_CACHE_READ_ERROR):
        # JAX's own words are two lines with its source path; the entry stays damaged (JAX
        # does not write over an existing entry), so every later run would say it again.
        what = " ".join(str(message)[len(_CACHE_READ_ERROR):].strip(" :").split())
        folder = cache_dir()
        if folder and os.path.isdir(folder) and not any(e in what for e in _FOLDER_ERRORS):
            text = (f"a compile cache entry is damaged ({what}), so it was compiled again; "
                    f"delete {folder} to rebuild the cache")
        else:  # the folder itself: deleting it may not help, and it may not be a cache at all
            text = (f"the compile cache folder {folder or '(none)'} cannot be used ({what}), so "
                    "programs are compiled again; point JAX_COMPILATION_CACHE_DIR at a "
                    "writable folder")
        print(f"{prog(config_cls)}: warning: {text} (or run with --no-compile-cache)",
              file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line),
              file=sys.stderr if file is None else file, end="")


def _usage_error(config_cls: type, e: Exception) -> int:
    text = describe(e, config_cls) if isinstance(e, JaxnetsError) else str(e)
    print(f"{prog(config_cls)}: error: {text}", file=sys.stderr)
    return 2


def main(config_cls: type, run: Callable[[Any], Any], doc: str | None,
         argv: Sequence[str] | None = None) -> int:
    """Parse argv into a Config, set up the process (multi-host, compile cache), run it.

    Returns the exit status: 0, or 2 after one line on stderr for a user error (bad flags,
    bad data, bad checkpoint: any JaxnetsError), 130 when interrupted.
    """
    try:
        config, common = parse(config_cls, doc, argv)
    except (FlagError, ConfigError) as e:
        return _usage_error(config_cls, e)
    try:
        if "jaxnets.plots" in sys.modules:  # the experiment plots: import matplotlib meanwhile
            sys.modules["jaxnets.plots"].preload()
        options = getattr(config, "options", None)
        if getattr(options, "coordinator", None) is not None:
            from jaxnets import parallel

            parallel.initialize(options.coordinator, options.num_processes, options.process_id)
        check_early(config)
        # (multi-host: the hosts share one command line, and maybe one folder; process 0 locks)
        out = getattr(options, "out", None) if not getattr(options, "process_id", None) else None
        with output_lock(out), CompileCache(common.compile_cache) as cache, \
                warnings.catch_warnings():
            warnings.simplefilter("always", JaxnetsWarning)  # (each run says it again)
            warnings.showwarning = functools.partial(_show_warning, config_cls)
            if cache.problem:
                warnings.warn(cache.problem, JaxnetsWarning, stacklevel=1)
            run(config)
        Reporter(getattr(options, "quiet", False)).say(cache.summary())
        sys.stdout.flush()
    except BrokenPipeError:  # printed outside Reporter to a reader that has gone
        _stdout_gone()
        return 141  # (128 + SIGPIPE, what a shell reports for a command killed by it)
    except JaxnetsError as e:
        print(f"{prog(config_cls)}: error: {describe(e, config_cls)}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise
        # (a full or read-only disk while writing the outputs: the files written atomically
        # are the previous ones or none, never cut off)
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prog(config_cls)}: error: {where}{e.strerror or e}; free space or choose "
              f"another place ({flag('out')})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog(config_cls)}: interrupted", file=sys.stderr)
        return 130
    return 0


# --- JAX's persistent compilation cache ---------------------------------------------------------

_HIT, _MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"


def cache_dir() -> str | None:
    """Where compiled programs are cached: $JAX_COMPILATION_CACHE_DIR if set, else a per-user
    folder; None when JAXNETS_COMPILE_CACHE=0."""
    if os.environ.get("JAXNETS_COMPILE_CACHE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxnets", "xla")


# The size bound of the per-user cache folder (not of a $JAX_COMPILATION_CACHE_DIR, which keeps
# JAX's settings). With a bound, JAX evicts the least recently used entries and takes a file
# lock around every read and write; without one it writes entries in place, and a second
# command running at the same time can read an entry half written (JAX then warns and compiles
# again). A bounded folder keeps an access time beside each entry, and JAX cannot add entries
# to a folder of entries without them (it warns on every write): hence a folder of its own,
# `xla`. The price, a read of every entry's access time per program compiled, is small
# (benchmarks/NOTES.md).
CACHE_MAX_BYTES = 2 * 2**30


class CompileCache:
    """Turns JAX's persistent compilation cache on for one run and counts its hits and writes
    (jax.monitoring events). Every program is cached, however small or quick to compile: the
    experiments' programs compile in well under JAX's default one-second threshold. The
    per-user folder is bounded (`CACHE_MAX_BYTES`), which also makes concurrent commands safe."""

    def __init__(self, enabled: bool = True):
        self.directory = cache_dir() if enabled else None
        self.problem: str | None = None   # why the cache is off for this run, if it must be
        self.hits = self.writes = 0
        self._saved: dict[str, Any] = {}

    def _unusable(self) -> str | None:
        """Why the cache folder cannot take entries (made now if missing), None if it can. JAX
        would otherwise warn about every program, as if its entries were damaged."""
        import tempfile

        folder = self.directory
        where = (f"$JAX_COMPILATION_CACHE_DIR ({folder})"
                 if os.environ.get("JAX_COMPILATION_CACHE_DIR") else folder)
        fix = ("point JAX_COMPILATION_CACHE_DIR at a writable folder, or run with "
               "--no-compile-cache")
        if os.path.lexists(folder) and not os.path.isdir(folder):
            return f"compile cache off for this run: {where} is not a folder; {fix}"
        for step in ("created", "written"):
            try:
                if step == "created":
                    os.makedirs(folder, exist_ok=True)
                else:
                    fd, probe = tempfile.mkstemp(prefix=".jaxnets-probe-", dir=folder)
                    os.close(fd)
                    os.remove(probe)
            except OSError as e:
                return (f"compile cache off for this run: {where} cannot be {step} "
                        f"({e.strerror}); {fix}")
        return None

    def _count(self, event: str, **kwargs: Any) -> None:
        if event == _HIT:
            self.hits += 1
        elif event == _MISS:
            self.writes += 1

    def __enter__(self):
        if self.directory is not None:
            self.problem = self._unusable()
            if self.problem is not None:
                self.directory = None
        if self.directory is None:
            # JAX reads $JAX_COMPILATION_CACHE_DIR itself (and a process may have set its cache
            # before): off must be said to JAX too
            if os.environ.get("JAX_COMPILATION_CACHE_DIR") or "jax" in sys.modules:
                import jax

                if jax.config.jax_compilation_cache_dir:
                    self._saved["jax_enable_compilation_cache"] = \
                        jax.config.jax_enable_compilation_cache
                    jax.config.update("jax_enable_compilation_cache", False)
            return self
        import jax

        settings = {"jax_compilation_cache_dir": self.directory,
                    "jax_persistent_cache_min_compile_time_secs": 0.0,
                    "jax_persistent_cache_min_entry_size_bytes": -1}
        if not os.environ.get("JAX_COMPILATION_CACHE_DIR") and \
                jax.config.jax_compilation_cache_max_size == -1:  # (-1: unbounded, the default)
            settings["jax_compilation_cache_max_size"] = CACHE_MAX_BYTES
        for name, value in settings.items():
            self._saved[name] = getattr(jax.config, name)
            jax.config.update(name, value)
        jax.monitoring.register_event_listener(self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._saved:
            return
        import jax

        if self.directory is not None:
            # jax < 0.4.31 has no unregister: the listener then stays, counting into this object.
            unregister = getattr(jax.monitoring, "unregister_event_listener", None)
            if unregister is not None:
                unregister(self._count)
        for name, value in self._saved.items():
            jax.config.update(name, value)

    def summary(self) -> str:
        """One line: whether the run used the cache."""
        if self.directory is None:
            return "compile cache: off"
        return (f"compile cache: {self.hits} loaded, {self.writes} compiled and saved "
                f"({self.directory})")


# --- printing and writing -----------------------------------------------------------------------


class Reporter:
    """What an experiment prints. `say`: the narrative, silenced by --quiet; `compare` (the
    tutorial's figures next to ours), `wrote` (the files written) and `notice` (stderr):
    always."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet

    def say(self, *parts: Any, **kwargs: Any) -> None:
        if not self.quiet:
            _print(*parts, **kwargs)

    def compare(self, rows: Sequence[tuple[str, str, str]],
                title: str = "tutorial vs. jaxnets") -> None:
        _print(comparison(rows, title))

    def wrote(self, *paths: str) -> None:
        _print("wrote " + ", ".join(paths))

    def notice(self, text: str) -> None:
        print(f"NOTICE: {text}", file=sys.stderr)


def _print(*parts: Any, **kwargs: Any) -> None:
    """print to stdout; when its reader has gone (`| head`), the rest of the run's printing goes
    nowhere and the run goes on to write its files."""
    try:
        print(*parts, **kwargs)
    except BrokenPipeError:
        _stdout_gone()


def _stdout_gone() -> None:
    """Point stdout at /dev/null (its reader closed the pipe), so later prints and the final
    flush neither fail nor print a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def comparison(rows: Sequence[tuple[str, str, str]], title: str = "tutorial vs. jaxnets") -> str:
    """A small table: (figure, the tutorial's value, ours)."""
    w0 = max([len("figure")] + [len(r[0]) for r in rows])
    w1 = max([len("tutorial")] + [len(r[1]) for r in rows])
    lines = [title, f"  {'figure':<{w0}}  {'tutorial':<{w1}}  jaxnets"]
    lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """numpy/jax scalars and arrays -> plain Python, for json.dump (without importing numpy:
    both have .tolist())."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str, obj: Any) -> str:
    """Write obj as JSON, atomically (`jaxnets.atomic`: readers and concurrent writers never
    see half a file; a failed write leaves the previous one)."""
    from jaxnets import atomic

    with atomic.replacing(path) as tmp, open(tmp, "w") as f:
        json.dump(to_jsonable(obj), f, indent=1)
    return path


def device_mesh(devices: int):
    """The data parallel mesh for `devices` (None for 1: plain single-device training)."""
    if devices == 1:
        return None
    from jaxnets import parallel

    return parallel.make_mesh(devices)


def training_summary(config: Any) -> str:
    """'SGD lr 0.001 momentum 0.9, batch 64, 20 epochs': what tells one run of an experiment
    with an optimizer, a momentum, a batch size and epochs from another (headers, plot titles)."""
    from jaxnets import optim  # (the registry imports without jax)

    return (f"{optim.label(config.optimizer, config.lr, momentum=config.momentum)}, batch "
            f"{config.batch_size}, {plural(config.epochs, 'epoch')}")


def plural(count: int, noun: str) -> str:
    """'1 epoch', '2 epochs': a count with its noun (regular plurals only)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"

"""The CLI pattern every experiment follows.

Each experiment module has a frozen `Config` dataclass, `run(config, data=None) -> dict` (what
tests call) and `main(argv=None)`, which is `cli.main(build_parser(), to_config, run, report)`:
parse flags into a Config, run it, print, write `metrics.json` into `--out`. Any
`JaxnetsError` (bad data, bad flag values, bad checkpoint) becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxnets.errors import ConfigError, JaxnetsError


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is the module docstring."""
    return argparse.ArgumentParser(prog=f"python -m experiments.{prog}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_out(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--out", default=default,
                   help=f"folder for metrics.json and plots (default {default})")


def add_seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default,
                   help=f"PRNG seed: the same seed gives the same run (default {default})")


def add_data(p: argparse.ArgumentParser, datasets: Sequence[str], default: str) -> None:
    p.add_argument("--dataset", choices=list(datasets), default=default,
                   help=f"dataset (default {default})")
    p.add_argument("--data-dir", default=None,
                   help="folder holding the dataset files (IDX or CIFAR-10 binary); default: "
                        "known local installs, then the tensorflow-datasets cache or download")


def add_checkpoint(p: argparse.ArgumentParser, every: int | None = 1000) -> None:
    """--checkpoint-dir, --resume, --checkpoint-every, --keep-checkpoints (jaxnets.checkpoint)."""
    g = p.add_argument_group("checkpoints")
    g.add_argument("--checkpoint-dir", default=None,
                   help="save orbax checkpoints (params, optimizer state, step, PRNG key, "
                        "config) into this folder")
    g.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --checkpoint-dir (starts from "
                        "step 0 if there is none); the result equals an uninterrupted run")
    g.add_argument("--checkpoint-every", type=positive_int, default=every,
                   help="steps between checkpoints (default "
                        f"{'once per epoch' if every is None else every}); the last one is "
                        "always saved")
    g.add_argument("--keep-checkpoints", type=positive_int, default=3,
                   help="how many of the latest checkpoints to keep (default 3)")


def check_checkpoint(config: Any) -> None:
    """The checks of add_checkpoint's flags, for Config.__post_init__ (before data loading)."""
    from jaxnets import checkpoint

    checkpoint.check_resume(config.resume, config.checkpoint_dir)


def checkpoint_args(args: argparse.Namespace) -> dict:
    """The Config fields that add_checkpoint's flags set."""
    return {"checkpoint_dir": args.checkpoint_dir, "resume": args.resume,
            "checkpoint_every": args.checkpoint_every, "keep_checkpoints": args.keep_checkpoints}


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition: for checks in Config.__post_init__."""
    if not condition:
        raise ConfigError(message)


def to_jsonable(obj: Any) -> Any:
    """numpy/jax scalars and arrays -> plain Python, for json.dump."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str, obj: Any) -> str:
    """Write obj as JSON (atomically: a crash never leaves half a file)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(to_jsonable(obj), f, indent=1)
    os.replace(tmp, path)
    return path


def comparison(rows: Sequence[tuple[str, str, str]], title: str = "tutorial vs. jaxnets") -> str:
    """A small table: (figure, the tutorial's value, ours)."""
    w0 = max([len("figure")] + [len(r[0]) for r in rows])
    w1 = max([len("tutorial")] + [len(r[1]) for r in rows])
    lines = [title, f"  {'figure':<{w0}}  {'tutorial':<{w1}}  jaxnets"]
    lines += [f"  {a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main(
    p: argparse.ArgumentParser,
    to_config: Callable[[argparse.Namespace], Any],
    run: Callable[[Any], dict],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse argv, build the Config, run it. User errors: one line on stderr, exit code 2."""
    args = p.parse_args(argv)  # argparse itself prints usage + one error line and exits 2
    try:
        config = to_config(args)
        run(config)
    except JaxnetsError as e:
        print(f"{p.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{p.prog}: interrupted", file=sys.stderr)
        return 130
    return 0


# --- data parallel (--devices) --------------------------------------------------------------------

def add_devices(p: argparse.ArgumentParser) -> None:
    """--devices N (data parallel over N devices) and the multi-host flags."""
    p.add_argument("--devices", type=positive_int, default=1,
                   help="train data parallel on N devices: the batch is split over them, the "
                        "parameters replicated (default 1); the batch size must divide by N")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-host: process 0's address for jax.distributed.initialize (run "
                        "the same command on every host with its --process-id)")
    p.add_argument("--num-processes", type=positive_int, default=None,
                   help="multi-host: number of processes (hosts)")
    p.add_argument("--process-id", type=int, default=None,
                   help="multi-host: this process's index, 0 .. num-processes - 1")


def init_devices(args: argparse.Namespace) -> int:
    """Multi-host setup when --coordinator is given (before any jax computation); returns
    --devices. Call it from `to_config`."""
    if args.coordinator is not None:
        from jaxnets import parallel

        check(args.num_processes is not None and args.process_id is not None,
              "--coordinator needs --num-processes and --process-id")
        parallel.initialize(args.coordinator, args.num_processes, args.process_id)
    return args.devices


def check_devices(batch_size: int, devices: int) -> None:
    """ConfigError unless the batch splits evenly over --devices (for Config.__post_init__)."""
    check(devices >= 1 and batch_size % devices == 0,
          f"--batch-size {batch_size} must be a multiple of --devices {devices} (each device "
          "takes an equal share of the batch)")


def device_mesh(devices: int):
    """The data parallel mesh for `devices` (None for 1: plain single-device training)."""
    if devices == 1:
        return None
    from jaxnets import parallel

    return parallel.make_mesh(devices)


def plural(count: int, noun: str) -> str:
    """'1 epoch', '2 epochs': a count with its noun (regular plurals only)."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"

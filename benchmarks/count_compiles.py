"""Count the XLA compilations of one experiment command, with a cold (empty) compile cache.

    python -m benchmarks.count_compiles experiments.mnist --dataset fashion_mnist --optimizer adam
    python -m benchmarks.count_compiles --warm experiments.mnist --dataset fashion_mnist

Runs the experiment's `main` in this process with `jax_log_compiles` on and a listener on
jax.monitoring's backend-compile event, then prints one line per compiled program (its name
and seconds) and the totals. Cold by default: the compile cache points at a new empty folder,
so every program is compiled (what a first run pays); --warm keeps the user's cache.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import tempfile
import time
import traceback

from experiments import EXPERIMENTS


class _Names(logging.Handler):
    """Collects the names jax logs as it compiles ("Finished XLA compilation of NAME in ...")."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Finished XLA compilation of "):
            self.names.append(message[len("Finished XLA compilation of "):].split(" in ")[0])


def count(module: str, argv: list[str]) -> dict:
    """Run `module.main(argv)`; returns {'compiles': [(name, seconds)], 'wall': s, 'rc': rc}."""
    import jax

    durations: list[float] = []
    callers: list[str] = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            durations.append(duration)
            callers.append(_caller())

    jax.monitoring.register_event_duration_secs_listener(listen)
    names = _Names()
    for logger in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.compiler"):
        logging.getLogger(logger).addHandler(names)
    jax.config.update("jax_log_compiles", True)
    # The messages go to our handler only, not to stderr.
    logging.getLogger("jax").propagate = False
    t0 = time.perf_counter()
    rc = importlib.import_module(module).main(argv)
    wall = time.perf_counter() - t0
    return {"names": names.names, "durations": durations, "callers": callers, "wall": wall,
            "rc": rc}


def _caller() -> str:
    """The innermost project frame (experiments/, jaxnets/) on the stack: who asked to compile."""
    for frame in reversed(traceback.extract_stack()):
        if ("/experiments/" in frame.filename or "/jaxnets/" in frame.filename) and \
                "count_compiles" not in frame.filename and \
                not frame.filename.endswith(os.path.join("jaxnets", "aot.py")):
            return f"{os.path.relpath(frame.filename)}:{frame.lineno} {frame.name}"
    return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true", help="keep the user's compile cache")
    parser.add_argument("module", metavar="MODULE",
                        choices=[f"experiments.{name}" for name in EXPERIMENTS],
                        help="an experiment: " + ", ".join(f"experiments.{n}" for n in EXPERIMENTS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the experiment's flags")
    args = parser.parse_args(argv)
    if not args.warm:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxnets-cold-")
    result = count(args.module, args.args)
    print(f"\n{len(result['durations'])} backend compilations, "
          f"{sum(result['durations']):.2f} s of backend compile, "
          f"main() {result['wall']:.2f} s wall")
    for name, seconds, caller in zip(result["names"], result["durations"], result["callers"]):
        print(f"  {seconds:6.3f} s  {name:32s} {caller}")
    return result["rc"]


if __name__ == "__main__":
    sys.exit(main())

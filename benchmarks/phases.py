"""Run one experiment command and write where its time went (import, data, compile, train,
evaluate, write), as JSON.

    python -m benchmarks.phases OUT.json experiments.mnist --dataset fashion_mnist --out DIR

The command is the experiment's own `main(argv)`, in this process, with timers around the
library calls it makes (`jaxnets.data.load`, `jaxnets.train.evaluate`, the plots and
metrics.json writers); compile and train seconds are the run's own (metrics.json). `import`
counts from this process's first line to the experiment module imported (jax, flax, optax,
jaxnets); `other` is the rest of main (flags, keys, init, sampler indices, printing).
benchmarks/end_to_end.py runs it in fresh processes.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import functools
import importlib
import json
import sys


def _timed(owner, name: str, totals: dict, phase: str) -> None:
    """Replace owner.name by a wrapper adding its seconds to totals[phase]."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[phase] = totals.get(phase, 0.0) + time.perf_counter() - t0

    setattr(owner, name, wrapper)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out, module, args = argv[0], argv[1], argv[2:]
    experiment = importlib.import_module(module)
    import jax

    from experiments import cli
    from jaxnets import data, plots, train

    imported = time.perf_counter()
    totals: dict[str, float] = {}
    events = {"backend_compile": 0.0, "cache_retrieval": 0.0}

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events["backend_compile"] += duration
        elif event == "/jax/compilation_cache/cache_retrieval_time_sec":
            events["cache_retrieval"] += duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    _timed(data, "load", totals, "data")
    _timed(train, "evaluate", totals, "evaluate")
    for name in ("loss_curve", "confusion_matrix"):
        _timed(plots, name, totals, "write")
    _timed(cli, "write_json", totals, "write")
    rc = experiment.main(args)
    end = time.perf_counter()
    metrics_path = next(args[i + 1] for i, a in enumerate(args) if a == "--out")
    with open(f"{metrics_path}/metrics.json") as f:
        metrics = json.load(f)
    phases = {"import": imported - T0, "data": totals.get("data", 0.0),
              "compile": metrics["compile_seconds"], "train": metrics["train_seconds"],
              "evaluate": totals.get("evaluate", 0.0), "write": totals.get("write", 0.0)}
    phases["other"] = (end - T0) - sum(phases.values())
    with open(out, "w") as f:
        json.dump({"phases": phases, "in_process": end - T0, **events,
                   "test_accuracy": metrics["test_accuracy"]}, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())

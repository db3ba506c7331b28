"""Timing and memory measurement inside a worker process (no jax or torch imports here).

Memory is the process's resident set: before each timed run the kernel's high-water mark is
reset (`/proc/self/clear_refs` with 5, Linux >= 4.0) and the current RSS noted; after the run,
peak growth = VmHWM - that RSS. So it counts what training allocates (activations, gradients,
optimizer state, and for jax's first run the compiler's memory) and not the data set or the
libraries loaded before. Where /proc cannot be reset it falls back to ru_maxrss growth.
"""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def timed(run: Callable[[], object]) -> dict:
    """Run `run()` once: wall seconds and peak RSS growth in MiB."""
    gc.collect()
    exact = _reset_peak()
    base = _status_kib("VmRSS") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    run()
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_mib": max(0, (peak or 0) - (base or 0)) / 1024,
            "memory_method": "VmHWM reset" if exact else "ru_maxrss"}


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """Shortest wall time of `repeats` calls of `run()`, after one untimed warm-up call (jax:
    the compile). `run` must wait for its result (jax: block_until_ready)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


def repeat(prepare: Callable[[], Callable[[], object]], times: int) -> list[dict]:
    """`times` timed runs; `prepare()` (untimed) builds a fresh run each time (new model state)."""
    return [timed(prepare()) for _ in range(times)]

"""The whole command, as a user times it: jaxnets against the tutorial's PyTorch script.

    python -m benchmarks.end_to_end                    # all three, median of 3 rounds
    python -m benchmarks.end_to_end --repeats 1 --only mnist_adam

For mnist (the seed's SGD and Adam) and linear_classifier, each round runs, in fresh processes
and interleaved (so a busy machine slows every side alike): the tutorial's PyTorch code as a
script (`python -m reference.seed000`, `reference.seed004`: same Fashion-MNIST files, same steps,
same outputs: test accuracy and the loss plot), then the jaxnets command with an empty compile
cache (cold: every program compiled and saved), then again on the cache the cold run filled
(warm). The jaxnets runs go through benchmarks/phases.py (the experiment's own main plus
timers) for the breakdown: import, data, compile, train, evaluate, write. Floors: a bare
`import jax` (+ backend start) and `import torch`, in fresh processes.

Prints a table and writes benchmarks/END_TO_END.md's table (--write).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = ["--dataset", "fashion_mnist"]

# name: (jaxnets experiment args, torch script args)
WORKLOADS = {
    "mnist_sgd": (["experiments.mnist", *FASHION], ["-m", "reference.seed000"]),
    "mnist_adam": (["experiments.mnist", *FASHION, "--optimizer", "adam"],
                   ["-m", "reference.seed000", "--optimizer", "adam"]),
    "linear_classifier": (["experiments.linear_classifier"], ["-m", "reference.seed004"]),
}
FLOORS = {
    "python -c 'import jax; jax.devices()'": ["-c", "import jax; jax.devices()"],
    "python -c 'import jax, flax.linen, optax'": ["-c", "import jax, flax.linen, optax"],
    "python -c 'import torch'": ["-c", "import torch"],
}
PHASES = ("import", "data", "compile", "train", "evaluate", "write", "other")


def timed(args: list[str], env: dict | None = None) -> float:
    """Wall seconds of `python ARGS` in a fresh process (output discarded; fails loudly)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], check=False, cwd=ROOT, env={**os.environ, **(env or {})},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds


def round_of(name: str, scratch: str, i: int) -> dict:
    """One interleaved round of a workload: torch, jaxnets cold, jaxnets warm."""
    jax_args, torch_args = WORKLOADS[name]
    out = os.path.join(scratch, f"{name}-{i}")
    cache = {"JAX_COMPILATION_CACHE_DIR": os.path.join(out, "cache")}
    result = {"torch": timed([*torch_args, "--out", os.path.join(out, "torch")])}
    for kind in ("cold", "warm"):
        phases = os.path.join(out, f"{kind}.json")
        result[kind] = timed(["-m", "benchmarks.phases", phases, *jax_args, "--quiet",
                              "--out", os.path.join(out, kind)], cache)
        with open(phases) as f:
            result[f"{kind}_phases"] = json.load(f)
    return result


def table(results: dict, floors: dict, load: str) -> str:
    """The markdown tables: ratios, then the phases of jaxnets's median runs, then floors."""
    lines = [("| command | PyTorch script s | jaxnets cold s | cold ratio | jaxnets warm s | "
             "warm ratio | targets (cold <= 1.0, warm <= 0.5) |"), "|---|---|---|---|---|---|---|"]
    phase_lines = ["| command | cache | " + " | ".join(PHASES) + " | backend compile | "
                   "cache retrieval |", "|---|---|" + "---|" * (len(PHASES) + 2)]
    for name, rounds in results.items():
        med = {k: statistics.median(r[k] for r in rounds) for k in ("torch", "cold", "warm")}
        cold, warm = med["cold"] / med["torch"], med["warm"] / med["torch"]
        met = ("met" if cold <= 1.0 else "cold missed") + ", " + \
              ("met" if warm <= 0.5 else "warm missed")
        lines.append(f"| {name} | {med['torch']:.1f} | {med['cold']:.1f} | {cold:.2f}x | "
                     f"{med['warm']:.1f} | {warm:.2f}x | {met} |")
        for kind in ("cold", "warm"):
            run = min(rounds, key=lambda r: abs(r[kind] - med[kind]))[f"{kind}_phases"]
            cells = " | ".join(f"{run['phases'][p]:.2f}" for p in PHASES)
            phase_lines.append(f"| {name} | {kind} | {cells} | {run['backend_compile']:.2f} | "
                               f"{run['cache_retrieval']:.2f} |")
    floor_lines = ["| floor (fresh process) | median s |", "|---|---|"]
    floor_lines += [f"| `{k}` | {statistics.median(v):.2f} |" for k, v in floors.items()]
    n = len(next(iter(results.values())))
    return "\n".join([(f"Median of {n} interleaved round(s); machine load average at the start: "
                      f"{load}."), "", *lines, "", ("Where jaxnets's time goes (seconds, the run "
                      "nearest the median):"), "", *phase_lines, "", *floor_lines])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), help="some workloads")
    parser.add_argument("--json", help="also write the raw timings here")
    args = parser.parse_args(argv)
    names = args.only or list(WORKLOADS)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    results: dict[str, list] = {name: [] for name in names}
    floors: dict[str, list] = {name: [] for name in FLOORS}
    with tempfile.TemporaryDirectory(prefix="jaxnets-e2e-") as scratch:
        for i in range(args.repeats):
            for name in names:
                results[name].append(round_of(name, scratch, i))
                print(f"round {i + 1} {name}: " + ", ".join(
                    f"{k} {results[name][-1][k]:.1f} s" for k in ("torch", "cold", "warm")),
                    flush=True)
                if args.json:
                    with open(args.json, "w") as f:
                        json.dump({"results": results, "load": load}, f)
            for floor, floor_args in FLOORS.items():
                floors[floor].append(timed(floor_args))
    text = table(results, floors, load)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "floors": floors, "load": load, "table": text}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time every training workload in PyTorch (the tutorial's eager code) and jaxnets; one table.

    python -m benchmarks.run                       # all workloads, writes benchmarks/RESULTS.md
    python -m benchmarks.run --quick               # fewer steps (see workloads.py), minutes
    python -m benchmarks.run --only lenet_b128 --rounds 3 --results /tmp/r.md

How it measures (machines are noisy and shared, so ratios from one run, not absolute times):
- every (workload, framework) measurement is a fresh process (`benchmarks.worker`); the rounds
  alternate PyTorch and jaxnets, and each keeps its best (shortest) round;
- PyTorch runs with its default thread count and with 1 thread; the faster of the two is the
  one compared (on a loaded 2-core machine OpenMP's 2 threads can be many times slower; a
  setting over 2x slower than the other in round 1 is not repeated);
- jaxnets runs twice per process: the first run compiles, the second is the steady state;
  compile seconds = the tracing, lowering and XLA compilation jax reports during the first
  run (`jax.monitoring` '/jax/core/compile/*' durations);
- speedup = PyTorch seconds / jaxnets steady seconds; 'incl. compile' adds compile seconds;
- peak memory: growth of the process's peak resident set during a training run over its
  resident set just before it (data set and libraries already loaded), see benchmarks.measure;
  jaxnets' is that of the steady run (its first run also holds the compiler's memory:
  reported in the JSON);
- FLOP floor: for dense workloads, the matmul/convolution FLOPs of the steps divided by the
  steady seconds, as a fraction of this machine's measured sgemm peak (best of PyTorch and
  XLA on 2048x2048 float32, measured at the start and the end of the same run);
- matmul floor: for the MLP workloads with a target, the step's own matmuls (same shapes and
  layouts, `workloads._MNIST_MATMULS`) done `steps` times and nothing else, by torch.mm
  (faster thread setting) and by XLA in one jitted loop: no training loop on either side can
  take less than its library's time for these.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from benchmarks import workloads

HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.worker", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(HERE))
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {' '.join(args)} failed (exit {proc.returncode}):\n"
                       f"{proc.stderr[-3000:]}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def measure(names: list[str], quick: bool, rounds: int, torch_threads: list[int],
            data_dir: str, say) -> dict:
    """All measurements: {'peak': {...}, 'workloads': {name: {...}}}."""
    results: dict = {"workloads": {}}
    results["peak"] = peaks = _peaks()
    say(f"sgemm 2048^3 float32: PyTorch {peaks['torch']:.0f} GFLOP/s, "
        f"XLA {peaks['jax']:.0f} GFLOP/s")
    for name in names:
        w = workloads.WORKLOADS[name]
        steps = w.quick_steps if quick else w.steps
        common = ["--steps", str(steps), "--data", data_dir]
        torch_runs: dict[int, list] = {t: [] for t in torch_threads}
        jax_runs: list = []
        for r in range(rounds):
            for t in torch_threads:
                if r and _hopeless(torch_runs, t):
                    continue
                out = _worker([name, "torch", "--threads", str(t), *common], 3600)
                torch_runs[t].append(out["runs"][0] | {"threads": out["threads"]})
            out = _worker([name, "jax", "--repeats", "2", *common], 3600)
            jax_runs.append(out["runs"])
            say(f"  {name} round {r + 1}: PyTorch "
                + ", ".join(f"{torch_runs[t][-1]['seconds']:.3f}s ({torch_runs[t][-1]['threads']}"
                            f" thr)" for t in torch_threads if len(torch_runs[t]) > r)
                + f"; jaxnets {out['runs'][1]['seconds']:.3f}s steady, first run "
                  f"{out['runs'][0]['seconds']:.3f}s")
        results["workloads"][name] = {"steps": steps, "torch": torch_runs, "jax": jax_runs}
        if w.matmuls and w.target:
            floor = {"torch": min(_worker([name, "torch", "--matmuls-only", "--threads", str(t),
                                           *common], 600)["seconds"] for t in torch_threads),
                     "jax": _worker([name, "jax", "--matmuls-only", *common], 600)["seconds"]}
            results["workloads"][name]["matmul_floor"] = floor
            say(f"  {name} matmuls alone: PyTorch {floor['torch']:.3f}s, XLA "
                f"{floor['jax']:.3f}s")
    # The sgemm peak again at the end (the machine's load drifts): the higher one counts.
    end = _peaks()
    results["peak"] = {side: max(peaks[side], end[side]) for side in peaks}
    return results


def _peaks() -> dict:
    return {side: _worker(["peak", side], 600)["gflops"] for side in ("torch", "jax")}


def _hopeless(torch_runs: dict, threads: int) -> bool:
    """A PyTorch thread setting that took over twice the best setting's time in round 1 is
    not run again (on a loaded machine OpenMP's spinning threads can be 10x slower)."""
    best = min(runs[0]["seconds"] for runs in torch_runs.values() if runs)
    return torch_runs[threads][0]["seconds"] > 2 * best


def summarize(results: dict) -> list[dict]:
    """One row per workload from the raw measurements."""
    peak = max(results["peak"].values())
    rows = []
    for name, m in results["workloads"].items():
        w = workloads.WORKLOADS[name]
        steps = m["steps"]
        torch_all = [run for runs in m["torch"].values() for run in runs]
        best_torch = min(torch_all, key=lambda run: run["seconds"])
        steady = min(runs[1]["seconds"] for runs in m["jax"])
        compile_s = min(runs[0]["compile_seconds"] for runs in m["jax"])
        jax_mem = max(runs[1]["peak_mib"] for runs in m["jax"])
        jax_compile_mem = max(runs[0]["peak_mib"] for runs in m["jax"])
        torch_mem = max(run["peak_mib"] for run in torch_all)
        examples = steps * w.examples_per_step
        row = {
            "name": name, "title": w.title, "steps": steps, "torch_s": best_torch["seconds"],
            "torch_threads": best_torch["threads"], "jax_s": steady, "compile_s": compile_s,
            "speedup": best_torch["seconds"] / steady,
            "speedup_incl_compile": best_torch["seconds"] / (steady + compile_s),
            "torch_ex_s": examples / best_torch["seconds"], "jax_ex_s": examples / steady,
            "torch_mib": torch_mem, "jax_mib": jax_mem, "jax_compile_mib": jax_compile_mem,
            "target": w.target,
        }
        if w.flop_per_step:
            flops = w.flop_per_step * steps
            row["torch_floor"] = flops / best_torch["seconds"] / 1e9 / peak
            row["jax_floor"] = flops / steady / 1e9 / peak
        if "matmul_floor" in m:
            row["torch_mm_s"] = m["matmul_floor"]["torch"]
            row["jax_mm_s"] = m["matmul_floor"]["jax"]
        rows.append(row)
    return rows


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def table(rows: list[dict]) -> str:
    head = ["workload", "steps", "PyTorch s (thr)", "jaxnets s", "compile s", "speedup",
            "incl. compile", "PyTorch ex/s", "jaxnets ex/s", "peak MiB PT / jax",
            "FLOP floor PT / jax", "target"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        target = "-"
        if r["target"] is not None:
            met = r["speedup"] >= r["target"]
            target = (f">= {r['target']:g}x: {'met' if met else 'NOT met'}"
                      if r["target"] > 1 else f"not slower: {'met' if met else 'NOT met'}")
        lines.append("| " + " | ".join([
            r["name"], str(r["steps"]), f"{r['torch_s']:.3f} ({r['torch_threads']})",
            f"{r['jax_s']:.3f}", f"{r['compile_s']:.2f}", f"{r['speedup']:.2f}x",
            f"{r['speedup_incl_compile']:.2f}x", f"{r['torch_ex_s']:,.0f}", f"{r['jax_ex_s']:,.0f}",
            f"{r['torch_mib']:.1f} / {r['jax_mib']:.1f}",
            f"{_pct(r.get('torch_floor'))} / {_pct(r.get('jax_floor'))}", target]) + " |")
    return "\n".join(lines)


def report(rows: list[dict], results: dict, meta: dict) -> str:
    import jax
    peaks = results["peak"]
    out = [
        "# Benchmarks: jaxnets vs. the tutorials' PyTorch (eager, CPU)",
        "",
        f"Written by `{meta['command']}` on {meta['date']}.",
        "",
        (f"- machine: {meta['cpu']}, {os.cpu_count()} cores; load average "
        f"{meta['load_before']} before, {meta['load_after']} after (1/5/15 min)"),
        (f"- jax {jax.__version__}, PyTorch {meta['torch_version']}, Python "
        f"{platform.python_version()}; {meta['rounds']} rounds, best of each kept"),
        (f"- sgemm peak (2048^3 float32): PyTorch {peaks['torch']:.0f} GFLOP/s, XLA "
        f"{peaks['jax']:.0f} GFLOP/s"),
        f"- data: {meta['data']}",
        "",
        ("**Shared machine caveat**: these CPUs were shared with other jobs while this ran (see "
        "the load average), so absolute seconds drift from run to run; the ratios come from "
        "back-to-back measurements and are what to read."),
        "",
        table(rows),
        "",
        ("Columns: *PyTorch s (thr)*: the tutorial's loop, best round, with the faster of "
        "PyTorch's default thread count and 1 thread (in brackets); *jaxnets s*: steady-state "
        "seconds of the same steps (compiled loop already built); *compile s*: jax's tracing, "
        "lowering and XLA compile time in the first run; *speedup*: PyTorch s / jaxnets s; *incl. compile*: PyTorch s / "
        "(jaxnets s + compile s); *ex/s*: training examples per second; *peak MiB*: growth of "
        "the peak resident set during one training run (jaxnets: the steady run; its first "
        "run, with the compiler, is in the JSON); *FLOP floor*: matmul/convolution FLOPs per "
        "second as a fraction of the sgemm peak above (dense workloads only)."),
        "",
        "Workloads:",
        "",
    ]
    out += [f"- `{r['name']}`: {r['title']}" for r in rows]
    misses = notes(rows, max(peaks.values()))
    if misses:
        out += ["", "Targets not met, with what this run says about why:", ""] + misses
    out += ["", "Reproduce: `" + meta["command"] + "` (details in `benchmarks/run.py`).", ""]
    return "\n".join(out)


def notes(rows: list[dict], peak: float) -> list[str]:
    """One line per missed target: the speed it needed against this machine's sgemm peak."""
    lines = []
    for r in rows:
        if r["target"] is None or r["speedup"] >= r["target"]:
            continue
        w = workloads.WORKLOADS[r["name"]]
        need_s = r["torch_s"] / r["target"]
        line = (f"- `{r['name']}`: {r['speedup']:.2f}x, target {r['target']:g}x: jaxnets would "
                f"need {need_s:.3f} s instead of {r['jax_s']:.3f} s")
        if w.flop_per_step:
            need = w.flop_per_step * r["steps"] / need_s / 1e9
            line += (f", i.e. {need:.0f} GFLOP/s of matmul work against a measured sgemm peak "
                     f"of {peak:.0f} GFLOP/s (jaxnets runs at {100 * r['jax_floor']:.0f}% of it)")
            if need > peak:
                line += ": not reachable on this machine without doing fewer FLOPs"
        if "torch_mm_s" in r:
            line += (f". The step's {len(w.matmuls)} matmuls alone, {r['steps']} times and nothing "
                     f"else, take {r['torch_mm_s']:.3f} s in PyTorch's BLAS and "
                     f"{r['jax_mm_s']:.3f} s in XLA")
            if need_s < min(r["torch_mm_s"], r["jax_mm_s"]):
                line += (f": the target's {need_s:.3f} s for the whole training run is less than "
                         f"either library needs for those products alone")
        if w.miss_note:
            line += ". " + w.miss_note
        lines.append(line + ".")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", choices=list(workloads.WORKLOADS), default=None,
                   help="run only this workload (repeatable)")
    p.add_argument("--quick", action="store_true", help="fewer steps per workload")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per workload (2)")
    p.add_argument("--torch-threads", default="0,1",
                   help="PyTorch thread counts to try, 0 = its default (0,1)")
    p.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"),
                   help="markdown file to write (default benchmarks/RESULTS.md)")
    p.add_argument("--json", default=None, help="also write the raw measurements here")
    p.add_argument("--from-json", default=None, metavar="FILE",
                   help="measure nothing: re-write --results from a --json file of an earlier run")
    args = p.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        rows = summarize(saved["results"])
        with open(args.results, "w") as f:
            f.write(report(rows, saved["results"], saved["meta"]))
        print(table(rows))
        return 0
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    names = args.only or list(workloads.WORKLOADS)
    threads = [int(t) for t in args.torch_threads.split(",")]

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    command = "python -m benchmarks.run" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    load_before = _load()
    with tempfile.TemporaryDirectory(prefix="jaxnets-bench-") as data_dir:
        data = workloads.write_data(data_dir, {workloads.WORKLOADS[n].data for n in names})
        results = measure(names, args.quick, args.rounds, threads, data_dir, say)
    import torch
    meta = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M"), "cpu": _cpu_name(),
            "load_before": load_before, "load_after": _load(), "rounds": args.rounds,
            "torch_version": torch.__version__, "data": data}
    rows = summarize(results)
    print(table(rows))
    with open(args.results, "w") as f:
        f.write(report(rows, results, meta))
    say(f"wrote {args.results}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One measurement in a fresh process: `python -m benchmarks.worker NAME SIDE ...`.

Prints one line `RESULT {json}` at the end. SIDE is 'torch' or 'jax' (only that framework is
imported), or NAME 'peak' for the machine's matmul rate. The driver (`benchmarks.run`) calls
this; run it by hand to look at a single workload.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    p.add_argument("name")
    p.add_argument("side", choices=["torch", "jax"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--data", default=None, help="folder of .npy files from workloads.write_data")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed runs in this process (jax: the first includes compilation)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--matmuls-only", action="store_true",
                   help="time only the workload's per-step matmuls, --steps times (the floor)")
    args = p.parse_args(argv)

    from benchmarks import measure, workloads

    out: dict = {"name": args.name, "side": args.side}
    if args.side == "torch":
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        out["threads"] = torch.get_num_threads()
        out["version"] = torch.__version__
    else:
        import jax

        out["version"] = jax.__version__
        out["devices"] = jax.local_device_count()
        # Tracing, lowering and XLA compilation, as jax reports them (summed per run below).
        compile_events = []
        jax.monitoring.register_event_duration_secs_listener(
            lambda event, seconds, **kw: compile_events.append(seconds)
            if event.startswith("/jax/core/compile/") else None)

    if args.matmuls_only:
        w = workloads.WORKLOADS[args.name]
        out["steps"] = steps = args.steps or w.steps
        if args.side == "torch":
            out["seconds"] = workloads.torch_matmul_floor(w.matmuls, steps)
        else:
            out["seconds"] = workloads.jax_matmul_floor(w.matmuls, steps)
    elif args.name == "peak":
        if args.side == "torch":
            out["gflops"] = workloads.torch_matmul_gflops()
        else:
            out["gflops"] = workloads.jax_matmul_gflops()
    else:
        steps = args.steps or workloads.WORKLOADS[args.name].steps
        if args.side == "torch":
            prepare = workloads.torch_prepare(args.name, steps, args.data)
        else:
            prepare = workloads.jax_prepare(args.name, steps, args.data, args.devices)
        out["steps"] = steps
        if args.side == "torch":
            out["runs"] = measure.repeat(prepare, args.repeats)
        else:
            runs = []
            for _ in range(args.repeats):
                before = sum(compile_events)
                runs += measure.repeat(prepare, 1)
                runs[-1]["compile_seconds"] = sum(compile_events) - before
            out["runs"] = runs
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

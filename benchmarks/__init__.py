"""Side-by-side timing of jaxnets against the tutorials' own PyTorch (eager, CPU) code.

    python -m benchmarks.run                  # every workload, writes benchmarks/RESULTS.md
    python -m benchmarks.run --quick          # fewer steps per workload (a smoke run, minutes)
    python -m benchmarks.run --only mnist_sgd --only lenet_b128

Not part of the test suite: timings on shared machines drift, so nothing here asserts a time.
Each (workload, framework) runs in its own fresh process (`benchmarks.worker`), PyTorch and
jaxnets alternating, and the best of the rounds is kept; see `benchmarks.run` for what each
column means and how memory is measured.
"""

"""Multi-host data parallelism: two local processes joined by jax.distributed give one run's result.

`python -m experiments.mnist --devices 2` is run once as one process with two (fake) CPU devices
and once as two processes with one CPU device each, joined through a coordinator on 127.0.0.1
with gloo CPU collectives (--coordinator/--num-processes/--process-id, as on two hosts). The
losses and the test accuracy must agree up to float summation order.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ARGS = ["-m", "experiments.mnist", "--devices", "2", "--dataset", "fashion_mnist",
        "--steps", "20", "--no-progress"]
TIMEOUT = 300  # seconds per run: a hung rendezvous fails the test instead of blocking it


def _env(devices: int) -> dict:
    # The device count is fixed here, whatever the caller's XLA_FLAGS; gloo is jax 0.10's default
    # for CPU collectives, set explicitly because older jax defaulted to none.
    return dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo", JAX_PLATFORMS="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metrics(out) -> dict:
    with open(os.path.join(out, "metrics.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def fashion_mnist_available():
    if not os.path.isfile("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"):
        pytest.skip("needs Debian's dataset-fashion-mnist (setup.sh installs it)")


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path, fashion_mnist_available):
    one = subprocess.run([sys.executable, *ARGS, "--out", str(tmp_path / "one")],
                         env=_env(2), capture_output=True, text=True, timeout=TIMEOUT,
                         check=False)
    assert one.returncode == 0, one.stderr[-3000:]

    port = _free_port()
    procs = [subprocess.Popen(
        [sys.executable, *ARGS, "--out", str(tmp_path / f"p{i}"),
         "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)],
        env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    try:
        results = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:   # a timeout above leaves the other process waiting for its peer
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err[-3000:]

    want = _metrics(tmp_path / "one")
    for i in range(2):
        got = _metrics(tmp_path / f"p{i}")
        assert got["steps"] == want["steps"] == 20
        np.testing.assert_allclose(got["losses"], want["losses"], rtol=1e-6)
        assert abs(got["test_accuracy"] - want["test_accuracy"]) <= 1e-4  # 1 of 10,000 images

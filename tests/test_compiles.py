"""Avoidable compilations stay removed: each compiled program costs a cold start ~0.1-1 s."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxnets import train


@pytest.mark.parametrize("seed", [0, 1, 42, -1, 2**31 - 1, 2**31, 2**40])
def test_split_keys_same_bits_as_op_by_op(seed):
    ours = train.split_keys(seed)
    theirs = jax.random.split(jax.random.key(seed), 3)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(jax.random.key_data(a), jax.random.key_data(b))


@pytest.mark.slow
def test_mnist_compiles_six_programs(tmp_path, fashion):
    # A fresh process with an empty compile cache, as a user's first run: the six programs are
    # split_keys, init, the snippet, the sampler, the training loop, evaluation (23 before).
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.count_compiles", "experiments.mnist", "--dataset",
         "fashion_mnist", "--steps", "7", "--batch-size", "13", "--quiet", "--no-progress",
         "--out", str(tmp_path)], check=False, capture_output=True, text=True, timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    names = re.findall(r"^ +[\d.]+ s  (jit\(\S+\))", out.stdout, re.MULTILINE)
    assert sorted(names) == sorted([
        "jit(_split_seed)", "jit(init)", "jit(nn_on_randn)", "jit(_with_replacement)",
        "jit(run_steps)", "jit(<lambda>)"]), out.stdout[-3000:]


def test_mnist_init_same_as_op_by_op():
    from experiments import mnist
    from jaxnets.models import SeedMLP

    key = jax.random.key(3)
    state = mnist.init_state(mnist.Config(), key)
    params = SeedMLP().init(key, np.zeros((1, 784), np.float32))["params"]
    jax.tree.map(np.testing.assert_array_equal, state.params, params)
    assert state.step.dtype == np.int32 and not state.step.weak_type

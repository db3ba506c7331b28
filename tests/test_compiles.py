"""Avoidable compilations stay removed: each compiled program costs a cold start ~0.1-1 s."""

from __future__ import annotations

import dataclasses

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


def _backend_compiles(fn) -> int:
    """How many XLA programs `fn()` compiles (jax.monitoring's backend-compile event)."""
    events = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            events.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return len(events)


def test_mnist_compiles_five_programs_at_most(tmp_path, fashion):
    from experiments import mnist

    # Shapes no other test uses, so nothing comes from this process's in-memory caches; the
    # five: split_keys, init, the sampler, the training loop, evaluation (23 before).
    train_set, test_set = fashion
    cfg = mnist.Config(steps=7, batch_size=13, seed=5, quiet=True, out=str(tmp_path))
    small = (dataclasses.replace(train_set, images=train_set.images[:301],
                                 labels=train_set.labels[:301]),
             dataclasses.replace(test_set, images=test_set.images[:57], labels=test_set.labels[:57]))
    assert _backend_compiles(lambda: mnist.run(cfg, data=small)) <= 5


def test_mnist_init_same_as_op_by_op():
    from experiments import mnist
    from jaxnets.models import SeedMLP

    key = jax.random.key(3)
    state = mnist.init_state(mnist.Config(), key)
    params = SeedMLP().init(key, np.zeros((1, 784), np.float32))["params"]
    jax.tree.map(np.testing.assert_array_equal, state.params, params)
    assert state.step.dtype == np.int32 and not state.step.weak_type

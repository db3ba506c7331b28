"""jaxnets.aot: the one-shot programs compiled for a quick compile (`aot.once`) give the same
bits as XLA's default, for every program the experiments compile that way."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets import aot


def _both_ways(fn, *args, static_argnums=()):
    """fn(*args) compiled at XLA's default and with aot.ONCE_OPTIONS, with the persistent cache
    off (so neither can be the other's cached executable)."""
    with _no_cache():
        default = aot.Program(fn, static_argnums)(*args)
        once = aot.Program(fn, static_argnums, aot.ONCE_OPTIONS)(*args)
    return default, once


class _no_cache:
    """The persistent compilation cache off, for the `with` block."""

    def __enter__(self):
        self.before = jax.config.jax_enable_compilation_cache
        jax.config.update("jax_enable_compilation_cache", False)

    def __exit__(self, *exc):
        jax.config.update("jax_enable_compilation_cache", self.before)


def _assert_same_bits(a, b):
    def same(x, y):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x.reshape(-1).view(np.uint8), y.reshape(-1).view(np.uint8))

    # (leaf by leaf: a TrainState's apply_fn is a different bound method in each build)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        same(x, y)


def _mnist_init(optimizer):
    from experiments import mnist

    return lambda key: mnist.init_state(mnist.Config(optimizer=optimizer), key)


def _lenet_init(key):
    from experiments import cifar10

    return cifar10.init_params.__wrapped__(cifar10.MODEL, key)


def _linear_init(key):
    from jaxnets.models import LinearClassifier

    return LinearClassifier(10).init(key, jnp.zeros((1, 28, 28)))


def _two_layer_draw(key):
    from experiments import two_layer

    return two_layer.make_data(two_layer.Config(), key)


def _two_layer_torch_init(key):
    from jaxnets.models import two_layer_sequential

    return two_layer_sequential(100, 10).init(key, jnp.zeros((1, 1000)))


def _resnet_init(key):
    from jaxnets import resnet

    return resnet.init_variables(key, 10, (32, 32, 3))


# The experiments' own code, where it compiles with `aot.once` when called (run both ways by
# swapping aot.ONCE_OPTIONS), or the function under a module-level `once` (`__wrapped__`),
# or, for linear_classifier's init inside its `run`, the same expression.
OWN_CODE = {"mnist init (sgd)", "mnist init (adam)", "two_layer draws", "resnet18 init"}
PROGRAMS = {
    "mnist init (sgd)": _mnist_init("sgd"),
    "mnist init (adam)": _mnist_init("adam"),
    "cifar10/lenet init": _lenet_init,
    "linear_classifier init": _linear_init,
    "two_layer draws": _two_layer_draw,
    "two_layer torch init": _two_layer_torch_init,
    "resnet18 init": _resnet_init,
}


# Each case compiles its program twice with the compile cache off (1-2 s); the quick subset
# keeps one, the full suite runs all.
@pytest.mark.parametrize("name", [
    name if name == "mnist init (adam)" else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(PROGRAMS)])
@pytest.mark.parametrize("seed", [0, pytest.param(7, marks=pytest.mark.slow)])
def test_once_options_give_the_default_bits(name, seed, monkeypatch):
    key = jax.random.key(seed)
    if name in OWN_CODE:
        with _no_cache():
            once = PROGRAMS[name](key)
            monkeypatch.setattr(aot, "ONCE_OPTIONS", None)   # XLA's default
            default = PROGRAMS[name](key)
        _assert_same_bits(default, once)
    else:
        _assert_same_bits(*_both_ways(PROGRAMS[name], key))


def test_samplers_and_key_split_give_the_default_bits():
    from jaxnets.data import batching
    from jaxnets.train import _split_seed

    key = jax.random.key(3)
    steps = np.arange(5, 1005, dtype=np.int32)
    for fn, args, static in (
            (batching._with_replacement.__wrapped__, (key, steps, 60000, 100, 1000), (2, 3, 4)),
            (batching._epoch_perm.__wrapped__, (key, np.int32(4), 50000), (2,)),
            (_split_seed.__wrapped__, (12345,), ())):
        _assert_same_bits(*_both_ways(fn, *args, static_argnums=static))


def test_program_compiles_once_per_signature_and_takes_static_values():
    calls = []

    def f(x, n):
        calls.append(n)   # runs once per trace
        return x * n

    prog = aot.Program(f, static_argnums=(1,))
    _, first = prog.compiled(np.ones(3, np.float32), 2)
    _, again = prog.compiled(np.zeros(3, np.float32), 2)
    assert first > 0 and again == 0.0
    np.testing.assert_array_equal(prog(np.ones(3, np.float32), 3), [3, 3, 3])
    prog(np.ones(4, np.float32), 3)
    assert calls == [2, 3, 3]                          # new static value, new shape: new traces
    assert aot.once(f, static_argnums=(1,))(np.ones(2, np.float32), 5).tolist() == [5, 5]

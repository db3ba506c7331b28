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

    jax.tree.map(same, a, b)


def _mnist_init(optimizer):
    from experiments import mnist
    from jaxnets import train
    from jaxnets.models import SeedMLP

    tx = mnist.make_optimizer(mnist.Config(optimizer=optimizer))

    def init(key):
        model = SeedMLP()
        return train.TrainState.create(model.apply,
                                       model.init(key, jnp.zeros((1, 784)))["params"], tx)
    return init


def _lenet_init(key):
    from experiments import cifar10

    return cifar10.init_params.__wrapped__(key)


def _linear_init(key):
    from jaxnets.models import LinearClassifier

    return LinearClassifier(10).init(key, jnp.zeros((1, 28, 28)))


def _two_layer_draw(key):
    kx, ky, k1, k2 = jax.random.split(key, 4)
    return [jax.random.normal(k, s) for k, s in
            ((kx, (64, 1000)), (ky, (64, 10)), (k1, (1000, 100)), (k2, (100, 10)))]


def _two_layer_torch_init(key):
    from jaxnets.models import two_layer_sequential

    return two_layer_sequential(100, 10).init(key, jnp.zeros((1, 1000)))


def _resnet_init(key):
    from jaxnets.resnet import ResNet18

    return ResNet18(10).init(key, jnp.zeros((1, 32, 32, 3)))


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
def test_once_options_give_the_default_bits(name, seed):
    a, b = _both_ways(PROGRAMS[name], jax.random.key(seed))
    _assert_same_bits(a, b)


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

"""The blitz LeNet written as a Flax NNX module, beside the Linen `jaxnets.models.LeNet`.

NNX modules are Python objects holding their parameters (like `torch.nn.Module`); Linen modules
are stateless descriptions whose `apply(variables, x)` is a pure function. jaxnets trains pure
functions, so an NNX model enters it through `nnx.split` (graph definition + parameter State, a
pytree) and `nnx.merge` inside the function (`pure_apply`). The parameters have the Linen
LeNet's names and layouts (`conv1/kernel` HWIO, `fc1/kernel` [in, out]), so the same
PyTorch state_dict file (`jaxnets.checkpoint.export_state_dict`) loads into either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from flax import nnx

import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)
from jaxnets import init, layers, torch_io

LAYERS = ("conv1", "conv2", "fc1", "fc2", "fc3")


class LeNet(nnx.Module):
    """The tutorials' `Net`: conv(C->6,5) pool conv(6->16,5) pool fc 400-120-84-classes.

    Input NHWC [N, 32, 32, C]; PyTorch's default initialisation (jaxnets.init), as the Linen
    LeNet with torch_init=True. Unlike Linen, NNX needs the input channels up front (PyTorch's
    `nn.Conv2d(in, out, k)` style) and draws the weights when the object is built.
    """

    def __init__(self, channels: int = 1, classes: int = 10, *, rngs: nnx.Rngs):
        def conv(cin, cout):
            return nnx.Conv(cin, cout, (5, 5), padding="VALID", rngs=rngs,
                            kernel_init=init.torch_kernel_init,
                            bias_init=init.torch_bias_init(cin * 5 * 5))

        def linear(fin, fout):
            return nnx.Linear(fin, fout, rngs=rngs, kernel_init=init.torch_kernel_init,
                              bias_init=init.torch_bias_init(fin))

        self.conv1, self.conv2 = conv(channels, 6), conv(6, 16)
        self.fc1, self.fc2, self.fc3 = linear(16 * 5 * 5, 120), linear(120, 84), linear(84, classes)

    def __call__(self, x: jax.Array) -> jax.Array:
        # The same pooling and PyTorch-order flatten as the Linen LeNet (jaxnets.layers).
        x = layers.max_pool2d(jax.nn.relu(self.conv1(x)), 2)
        x = layers.max_pool2d(jax.nn.relu(self.conv2(x)), 2)
        x = layers.flatten_nchw(x)
        x = jax.nn.relu(self.fc1(x))
        x = jax.nn.relu(self.fc2(x))
        return self.fc3(x)


def _value(variable: nnx.Variable) -> jax.Array:
    # flax 0.12 deprecates `.value` for `get_value()`; older NNX releases have only `.value`.
    return variable.get_value() if hasattr(variable, "get_value") else variable.value


def params_tree(model: LeNet) -> dict[str, dict[str, jax.Array]]:
    """The model's parameters as the Linen LeNet's params tree ({'conv1': {'kernel', 'bias'}})."""
    return {name: {"kernel": _value(getattr(model, name).kernel),
                   "bias": _value(getattr(model, name).bias)} for name in LAYERS}


def load_params(model: LeNet, params: Mapping[str, Mapping[str, Any]]) -> LeNet:
    """Set the model's parameters in place from a Linen-LeNet-shaped params tree; returns it."""
    for name in LAYERS:
        layer = getattr(model, name)
        layer.kernel = nnx.Param(jax.numpy.asarray(params[name]["kernel"]))
        layer.bias = nnx.Param(jax.numpy.asarray(params[name]["bias"]))
    return model


def to_state_dict(model: LeNet) -> dict:
    """The PyTorch state_dict of the model (torch_io's keys and layouts, as the Linen LeNet's)."""
    return torch_io.to_state_dict({"params": params_tree(model)})


def load_state_dict_file(model: LeNet, path: str) -> LeNet:
    """Load a PyTorch LeNet state_dict file (.safetensors, or .pth with torch) into the model.

    Raises CheckpointError naming the key when the file holds a different model.
    """
    filled = torch_io.from_state_dict(torch_io.load(path), {"params": params_tree(model)},
                                      source=path)
    return load_params(model, filled["params"])


def pure_apply(model: nnx.Module) -> tuple[Callable[[Any, jax.Array], jax.Array], Any, Any]:
    """`(apply, graphdef, state)`: `apply(state, x)` is the model as a pure function of its State.

    `nnx.split` separates the static graph definition from the parameter State (a pytree that
    jax.grad, jit and optax take as they take Linen params); `nnx.merge` rebuilds a module
    inside the function, which is traced away under jit. `nnx.merge(graphdef, s)` also turns
    any State-shaped result (gradients, updated parameters) back into a module.
    """
    graphdef, state = nnx.split(model)

    def apply(state, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(x)

    return apply, graphdef, state

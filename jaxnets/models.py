"""Flax Linen modules for the tutorials' models.

Parameters are laid out the way the tutorial's PyTorch code holds them where that code uses raw
tensors (seed 000's `w1`, `w2` used as `x @ w1`), and NHWC for images.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import numpy as np

from jaxnets import layers
from jaxnets.errors import ConfigError


def check_features(model: str, x: jax.Array, features: int, takes: str, fix: str,
                   given: tuple[int, ...] | None = None) -> None:
    """ConfigError unless the last axis of `x` holds `features` values. Flax sizes a weight from
    its first input, so a model declaring its input size checks it: otherwise [N, 28, 28, 1]
    images build a w1 of shape (1, 200) and train without a word, and params made for 784
    features meet 1024 as Flax's ScopeParamShapeError. Shapes are static: checked when traced,
    nothing is added to the compiled program. `given`: the shape to name, if not x's."""
    if x.ndim == 0 or x.shape[-1] != features:
        got = f"{x.shape[-1] if x.ndim else 0} per example" if given is not None else ""
        raise ConfigError(f"{model} takes {takes}, got shape "
                          f"{tuple(x.shape) if given is None else tuple(given)}"
                          f"{f' ({got})' if got else ''}; {fix}")


class SeedMLP(nn.Module):
    """Seed 000's network: `relu(x @ w1) @ w2`, no biases, weights drawn with torch.randn.

    w1: [in_features, hidden], w2: [hidden, classes], both standard normal (not a scaled init:
    the tutorial's `torch.randn(784, 200)` is what makes its SGD run land near 70%). The input
    is rows of `in_features` values (the seed's flattened 28x28 images, `[N, 784]`, or one
    `[784]` vector); anything else is a ConfigError, not a network of another size.
    """

    hidden: int = 200
    classes: int = 10
    in_features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_features("SeedMLP", x, self.in_features,
                       f"rows of {self.in_features} features ([N, {self.in_features}])",
                       "flatten the images first (data.flatten: torch's flatten(start_dim=1)), "
                       f"of {self.in_features} pixels each, or build SeedMLP(in_features=...)")
        w1 = self.param("w1", nn.initializers.normal(1.0), (self.in_features, self.hidden))
        w2 = self.param("w2", nn.initializers.normal(1.0), (self.hidden, self.classes))
        return nn.relu(x @ w1) @ w2


# --- Seed 001/002's LeNet, seed 004's linear classifier, seed 002's two-layer net ---------------
# (built from jaxnets.layers so parameter names map 1:1 onto the tutorials' state_dicts)


class LeNet(nn.Module):
    """The tutorials' `Net`: conv(C->6,5) pool conv(6->16,5) pool fc 400-120-84-classes.

    Input NHWC [N, 32, 32, C]: C=1 is seed 001/002's Net (61,706 parameters), C=3 the CIFAR-10
    Net (62,006). Submodules are named `conv1 ... fc3` so `torch_io` keys are exactly the
    tutorial's `conv1.weight ... fc3.bias`; fc1 reads the conv features in PyTorch's NCHW
    flatten order (`flatten_nchw`) so its weight loads from a torch state_dict unchanged.
    `conv_features` and `fc_features` are the tutorial's widths by default; other widths make
    a wider or narrower Net of the same shape (the tutorial's PyTorch `Net` cannot load it).
    """

    classes: int = 10
    conv_features: tuple[int, int] = (6, 16)    # conv1's and conv2's output channels
    fc_features: tuple[int, int] = (120, 84)    # fc1's and fc2's outputs
    torch_init: bool = True
    conv_impl: str = "auto"         # layers.conv_impl: matmul forms on CPU, lax.conv elsewhere

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        (c1, c2), (f1, f2) = self.conv_features, self.fc_features
        if x.ndim != 4 or x.shape[1:3] != (32, 32):
            # fc1 reads c2 * 5 * 5 features, which only 32x32 images give; Flax would build an
            # fc1 for any size (28x28 silently makes 44,426 parameters), PyTorch's Net fails here.
            raise ConfigError(f"LeNet expects NHWC images of 32x32 pixels [N, 32, 32, C] (its fc1 "
                              f"takes {c2}*5*5 = {c2 * 25} features), got shape "
                              f"{tuple(x.shape)}; pad or resize the images to 32x32 "
                              "(transforms.Resize(32) in PyTorch)")
        conv = functools.partial(layers.Conv2d, kernel_size=5, torch_init=self.torch_init,
                                 impl=self.conv_impl)
        x = layers.max_pool2d(nn.relu(conv(c1, name="conv1")(x)), 2)
        x = layers.max_pool2d(nn.relu(conv(c2, name="conv2")(x)), 2)
        x = layers.flatten_nchw(x)
        x = nn.relu(layers.Linear(f1, torch_init=self.torch_init, name="fc1")(x))
        x = nn.relu(layers.Linear(f2, torch_init=self.torch_init, name="fc2")(x))
        return layers.Linear(self.classes, torch_init=self.torch_init, name="fc3")(x)


class LinearClassifier(nn.Module):
    """Seed 004's model: `fc1(x.reshape(x.size(0), -1))`, 784 -> classes with a bias.

    The reshape keeps the batch axis and flattens the rest, so it takes [N, 28, 28, 1] images or
    [N, 784] rows alike (NHWC and NCHW flatten identically when C = 1); other sizes are a
    ConfigError (PyTorch's `nn.Linear(784, 10)` refuses them too).
    """

    classes: int = 10
    torch_init: bool = True
    in_features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        flat = x.reshape(x.shape[0], -1) if x.ndim >= 2 else x
        check_features("LinearClassifier", flat, self.in_features,
                       f"{self.in_features} values per example ([N, 28, 28, 1] images or "
                       f"[N, {self.in_features}] rows)",
                       f"the images must have {self.in_features} pixels (28x28 for 784), or "
                       "build LinearClassifier(in_features=...)", given=x.shape)
        x = flat
        return layers.Linear(self.classes, torch_init=self.torch_init, name="fc1")(x)


class TwoLayerRaw(nn.Module):
    """Seed 002's module version: `relu(x @ w1) @ w2` with raw torch.randn weights, no biases.

    w1 [D_in, H], w2 [H, D_out] as the seed's `torch.randn(D_in, H)` / `torch.randn(H, D_out)`.
    """

    hidden: int = 100
    out: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w1 = self.param("w1", nn.initializers.normal(1.0), (x.shape[-1], self.hidden))
        w2 = self.param("w2", nn.initializers.normal(1.0), (self.hidden, self.out))
        return nn.relu(x @ w1) @ w2


def two_layer_sequential(hidden: int = 100, out: int = 10, torch_init: bool = True
                         ) -> nn.Sequential:
    """Seed 002's `nn.Sequential(nn.Linear(D_in, H), nn.ReLU(), nn.Linear(H, D_out))`.

    Flax names the Linears `layers_0` / `layers_2` (their index in the list, ReLU being index 1)
    the way Sequential's state_dict says `0.weight` / `2.weight`; `sequential_rename` maps them.
    """
    return nn.Sequential([layers.Linear(hidden, torch_init=torch_init), nn.relu,
                          layers.Linear(out, torch_init=torch_init)])


def sequential_rename(prefix: str) -> str:
    """torch_io rename for TwoLayerSequential: `layers_0` -> `0` (Sequential's state_dict keys)."""
    return prefix.removeprefix("layers_")


# --- print(net) ----------------------------------------------------------------------------------

_FUNCTION_REPRS = {nn.relu: "ReLU()", jax.nn.relu: "ReLU()", nn.sigmoid: "Sigmoid()",
                   nn.tanh: "Tanh()"}


def _layer_repr(module: nn.Module, in_shape: tuple[int, ...]) -> str:
    """PyTorch's repr of one layer, from the Flax module's fields and its input shape."""
    if isinstance(module, layers.Linear):
        return (f"Linear(in_features={in_shape[-1]}, out_features={module.features}, "
                f"bias={module.use_bias})")
    if isinstance(module, layers.Conv2d):
        kh, kw = layers._pair(module.kernel_size)
        sh, sw = layers._pair(module.stride)
        text = f"Conv2d({in_shape[-1]}, {module.features}, kernel_size=({kh}, {kw}), " \
               f"stride=({sh}, {sw})"
        ph, pw = layers._pair(module.padding)
        text += f", padding=({ph}, {pw})" if (ph, pw) != (0, 0) else ""
        return text + (")" if module.use_bias else ", bias=False)")
    return f"{type(module).__name__}()"


def torch_repr(model: nn.Module, x: jax.Array, name: str | None = None) -> str:
    """What PyTorch's `print(net)` shows for the equivalent torch module.

    The model is traced abstractly on `x` (no FLOPs); each direct child layer is recorded with
    its input shape, since Flax infers in_features / in_channels from the input. Activation
    functions only appear for nn.Sequential (they are modules there in PyTorch, functional
    calls inside `forward` otherwise, as in the tutorials' Net).
    """
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    depth = [0]

    def record(next_fun, args, kwargs, context):
        if context.method_name != "__call__":
            return next_fun(*args, **kwargs)
        if depth[0] == 1:
            calls.append((context.module, tuple(args[0].shape)))
        depth[0] += 1
        try:
            return next_fun(*args, **kwargs)
        finally:
            depth[0] -= 1

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    lines = []
    if isinstance(model, nn.Sequential):
        recorded = iter(calls)
        for i, layer in enumerate(model.layers):
            text = (_layer_repr(*next(recorded)) if isinstance(layer, nn.Module)
                    else _FUNCTION_REPRS.get(layer, f"{getattr(layer, '__name__', layer)}()"))
            lines.append(f"  ({i}): {text}")
    else:
        lines = [f"  ({m.name}): {_layer_repr(m, shape)}" for m, shape in calls]
    return "\n".join([f"{name or type(model).__name__}("] + lines + [")"])


def count_params(params) -> int:
    """Number of scalars in a parameter tree (torch: sum(p.numel() for p in parameters()))."""
    return int(sum(np.size(p) for p in jax.tree.leaves(params)))

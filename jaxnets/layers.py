"""torch.nn.Linear and torch.nn.Conv2d as Flax modules: PyTorch's init, padding and shapes.

Layout is NHWC with HWIO kernels (Flax/XLA's native layout); `jaxnets.torch_io` converts to
PyTorch's [out, in] / OIHW at the boundary. `torch_init=False` gives Flax's default init.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxnets import init as I


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class Linear(nn.Module):
    """y = x @ kernel + bias, kernel [in, out] (PyTorch stores weight = kernel.T)."""

    features: int
    use_bias: bool = True
    torch_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kinit = I.torch_kernel_init if self.torch_init else I.flax_kernel_init
        kernel = self.param("kernel", kinit, (fan_in, self.features))
        y = x @ kernel
        if self.use_bias:
            binit = I.torch_bias_init(fan_in) if self.torch_init else I.flax_bias_init
            y = y + self.param("bias", binit, (self.features,))
        return y


def conv2d(x: jax.Array, kernel: jax.Array, stride=(1, 1), padding=(0, 0)) -> jax.Array:
    """NHWC x HWIO convolution with PyTorch's symmetric zero padding (`padding=p` pads p on
    each side; Flax's 'SAME'/'VALID' strings are not the same thing for even kernels)."""
    ph, pw = padding
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=stride, padding=((ph, ph), (pw, pw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Conv2d(nn.Module):
    """torch.nn.Conv2d(in, out, kernel_size, stride, padding, bias) on NHWC input."""

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    use_bias: bool = True
    torch_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        cin = x.shape[-1]
        fan_in = cin * kh * kw
        kinit = I.torch_kernel_init if self.torch_init else I.flax_kernel_init
        kernel = self.param("kernel", kinit, (kh, kw, cin, self.features))
        y = conv2d(x, kernel.astype(x.dtype), _pair(self.stride), _pair(self.padding))
        if self.use_bias:
            binit = I.torch_bias_init(fan_in) if self.torch_init else I.flax_bias_init
            y = y + self.param("bias", binit, (self.features,))
        return y


def max_pool2d(x: jax.Array, size: int = 2, stride: int | None = None) -> jax.Array:
    """F.max_pool2d(x, size) on NHWC (stride defaults to size, no padding: floor mode)."""
    stride = size if stride is None else stride
    return nn.max_pool(x, (size, size), strides=(stride, stride), padding="VALID")


def flatten_nchw(x: jax.Array) -> jax.Array:
    """torch.flatten(x, 1) as PyTorch sees it: NHWC -> NCHW order, then flatten, so a Linear
    after a conv stack has PyTorch's weight layout (loadable from/into a state_dict)."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)

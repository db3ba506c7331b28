"""PyTorch's default initialisation, so a faithful model starts from the tutorial's distribution.

torch.nn.Linear and torch.nn.Conv2d call `kaiming_uniform_(weight, a=sqrt(5))`, i.e.
U(-b, b) with b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)), which is b = 1/sqrt(fan_in);
their bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)). fan_in is in_features for Linear and
in_channels/groups * kh * kw for Conv2d. Flax's defaults (lecun_normal kernels, zero biases)
are different; `flax_*` below names them for the option of using them instead.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)

# variance_scaling(1/3, fan_in, uniform) has bound sqrt(3 * (1/3) / fan_in) = 1/sqrt(fan_in);
# fan_in of a Flax kernel ([in, out] or HWIO) is the product of all axes but the last.
torch_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
flax_kernel_init = nn.initializers.lecun_normal()
flax_bias_init = nn.initializers.zeros


def torch_bias_init(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's Linear/Conv bias init."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def randn(key, shape, dtype=jnp.float32):
    """torch.randn: standard normal (seed 000's and 002's raw weight tensors)."""
    return jax.random.normal(key, shape, dtype)

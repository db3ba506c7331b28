"""Flax Linen modules for the tutorials' models.

Parameters are laid out the way the tutorial's PyTorch code holds them where that code uses raw
tensors (seed 000's `w1`, `w2` used as `x @ w1`), and NHWC for images.
"""

from __future__ import annotations

import flax.linen as nn
import jax


class SeedMLP(nn.Module):
    """Seed 000's network: `relu(x @ w1) @ w2`, no biases, weights drawn with torch.randn.

    w1: [784, hidden], w2: [hidden, classes], both standard normal (not a scaled init: the
    tutorial's `torch.randn(784, 200)` is what makes its SGD run land near 70%).
    """

    hidden: int = 200
    classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w1 = self.param("w1", nn.initializers.normal(1.0), (x.shape[-1], self.hidden))
        w2 = self.param("w2", nn.initializers.normal(1.0), (self.hidden, self.classes))
        return nn.relu(x @ w1) @ w2

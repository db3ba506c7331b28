"""Functional counterparts of torchvision.transforms: pure array -> array functions.

They work on NHWC arrays (numpy on the host or jax inside jit). `ToTensor` in PyTorch also
moves channels first (HWC -> CHW); jaxnets keeps NHWC everywhere and converts only at the
PyTorch boundary (state_dict exchange, parity tests).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp


def to_tensor(images) -> jnp.ndarray:
    """uint8 [0, 255] -> float32 [0, 1], like transforms.ToTensor (layout stays NHWC)."""
    return jnp.asarray(images, jnp.float32) / 255.0


def normalize(x, mean: Sequence[float], std: Sequence[float]) -> jnp.ndarray:
    """(x - mean) / std per channel (last axis), like transforms.Normalize."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (x - mean) / std


def flatten(x) -> jnp.ndarray:
    """[N, ...] -> [N, prod(...)], like x.reshape(x.size(0), -1) / flatten(start_dim=1)."""
    return jnp.reshape(x, (x.shape[0], -1))


def divide_by_batch_max(x) -> jnp.ndarray:
    """x / x.max() over the whole batch: seed 000's normalisation (`x /= x.max()`)."""
    x = jnp.asarray(x, jnp.float32)
    return x / jnp.max(x)


def compose(*fns: Callable) -> Callable:
    """transforms.Compose: apply fns left to right."""
    def composed(x):
        for fn in fns:
            x = fn(x)
        return x
    return composed


def to_tensor_normalize(mean: Sequence[float], std: Sequence[float]) -> Callable:
    """Compose([ToTensor(), Normalize(mean, std)]) as one function."""
    return compose(to_tensor, lambda x: normalize(x, mean, std))

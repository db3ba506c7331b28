"""Optimizers in optax's shape, with PyTorch's arithmetic, and the registry that names them.

    tx = optim.by_name("sgd", 1e-3, momentum=0.9)      # torch.optim.SGD(params, 1e-3, momentum=0.9)
    tx = optim.adam(1e-3)                              # torch.optim.Adam(params, 1e-3)

`OPTIMIZERS` is the one list of optimizers by name: an experiment's optimizer setting offers
`CHOICES`, builds the chosen one with `from_settings` and names it with `label`, so a new
optimizer is a rule in `jaxnets.optim.rules` plus one entry here. The registry imports without
jax (an experiment's help lists the choices at once); the rules (`optim.sgd`, `optim.adam`,
`optim.seed_sgd`, `optim.newton`, `optim.scale_by_torch_adam`, ...) load on first use.

Which PyTorch optimizer each name equals:
    sgd(lr, momentum, nesterov, weight_decay)   torch.optim.SGD  (optax.sgd when dampening = 0)
    sgd(lr, momentum, dampening > 0)            torch.optim.SGD  (scale_by_torch_momentum)
    seed_sgd(lr)                                seed 000's `w -= lr * w.grad`, .grad never zeroed
    adam(lr, b1, b2, eps)                       torch.optim.Adam (scale_by_torch_adam)
    newton(loss_fn, lr)                         seed 002's w = w - lr * H^-1 dL/dw (no torch optimizer)
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

from jaxnets.errors import ConfigError


class Optimizer(NamedTuple):
    """An entry of the registry; `jaxnets.optim.rules.<name>(learning_rate, **settings)` makes
    the optimizer."""

    label: str                 # how a run's header names it
    settings: tuple[str, ...]  # what it takes besides the learning rate (its keyword arguments)


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer("SGD", ("momentum", "dampening", "nesterov", "weight_decay")),
    "adam": Optimizer("Adam", ("b1", "b2", "eps")),
    "seed_sgd": Optimizer("seed 000's SGD", ()),
}
# What an experiment's --optimizer offers: torch.optim's optimizers. seed_sgd is sgd with momentum
# 1 (which is how seed 000's experiment asks for it); newton needs the loss itself, not a name.
CHOICES: tuple[str, ...] = ("sgd", "adam")


def _entry(name: str) -> Optimizer:
    if name not in OPTIMIZERS:
        raise ConfigError(f"must be one of {', '.join(OPTIMIZERS)}, got {name!r}",
                          param="optimizer")
    return OPTIMIZERS[name]


def takes(name: str, setting: str) -> bool:
    """Whether the optimizer `name` takes `setting` (e.g. 'momentum'); answered without jax."""
    return setting in _entry(name).settings


def by_name(name: str, learning_rate: Any, **settings) -> Any:
    """The optimizer called `name` with its settings: an optax GradientTransformation.

    Args:
        name: a key of OPTIMIZERS: 'sgd' (torch.optim.SGD), 'adam' (torch.optim.Adam) or
          'seed_sgd' (seed 000's never-zeroed rule).
        learning_rate: a float or an optax schedule.
        **settings: that optimizer's other settings (momentum=..., b1=...).
    Raises:
        ConfigError naming `optimizer` for an unknown name, or a setting it does not take.
    """
    unknown = sorted(set(settings) - set(_entry(name).settings))
    if unknown:
        raise ConfigError(f"{name!r} does not take {', '.join(unknown)}", param="optimizer")
    return getattr(_rules(), name)(learning_rate, **settings)


def from_settings(name: str, learning_rate: Any, **settings) -> Any:
    """`by_name` with those of `settings` that the optimizer takes: an experiment passes all of
    its settings (its momentum, say) whichever optimizer was chosen, and its Config refuses a
    setting the choice would ignore (`takes`)."""
    return by_name(name, learning_rate, **_taken(name, settings))


def label(name: str, learning_rate: Any, **settings) -> str:
    """How a run's header names the optimizer: 'SGD lr 0.001 momentum 0.9', 'Adam lr 0.001'."""
    taken = "".join(f" {k} {v}" for k, v in _taken(name, settings).items())
    return f"{_entry(name).label} lr {learning_rate}{taken}"


def _taken(name: str, settings: dict) -> dict:
    return {k: v for k, v in settings.items() if takes(name, k)}


def _rules():
    """The module of the rules, `jaxnets.optim.rules` (imports jax and optax)."""
    return importlib.import_module("jaxnets.optim.rules")


def __getattr__(name: str):
    """The rules' names (`optim.sgd`, `optim.scale_by_torch_adam`, ...), loaded on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return getattr(_rules(), name)
    except AttributeError:
        raise AttributeError(f"module 'jaxnets.optim' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | {n for n in dir(_rules()) if not n.startswith("_")})

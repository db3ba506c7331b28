"""jaxnets.init, jaxnets.losses and jaxnets.optim against PyTorch's own init, losses and optimizers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

from jaxnets import init as I
from jaxnets import layers, losses, optim
from jaxnets.errors import ConfigError

# ---------------------------------------------------------------- init


def _torch_bounds(module: torch.nn.Module) -> tuple[float, float]:
    """The weight and bias bounds PyTorch's reset_parameters uses, computed by torch itself."""
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(module.weight)
    gain = torch.nn.init.calculate_gain("leaky_relu", np.sqrt(5))
    return gain * np.sqrt(3.0 / fan_in), 1.0 / np.sqrt(fan_in)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_torch_init_matches_pytorch_distribution(kind):
    torch.manual_seed(0)
    if kind == "linear":
        ref = torch.nn.Linear(300, 200)
        module, x = layers.Linear(200), jnp.zeros((1, 300))
    else:
        ref = torch.nn.Conv2d(6, 64, 5)  # fan_in = 6 * 5 * 5 = 150, not 6 nor 64 * 25
        module, x = layers.Conv2d(64, 5), jnp.zeros((1, 8, 8, 6))
    w_bound, b_bound = _torch_bounds(ref)
    params = module.init(jax.random.key(0), x)["params"]
    ours_w, ours_b = np.asarray(params["kernel"]), np.asarray(params["bias"])
    theirs_w = ref.weight.detach().numpy()
    assert np.abs(ours_w).max() <= w_bound + 1e-7
    assert np.abs(ours_b).max() <= b_bound + 1e-7
    # Same uniform distribution: the extremes reach the bound and the quantiles agree with
    # torch's own sample (a wrong fan_in moves the 90% quantile by >= 2x).
    assert np.abs(ours_w).max() > 0.95 * w_bound
    q = [0.1, 0.25, 0.5, 0.75, 0.9]
    np.testing.assert_allclose(np.quantile(ours_w, q), np.quantile(theirs_w, q), atol=0.03 * w_bound)
    assert abs(np.std(ours_w) - np.std(theirs_w)) < 0.03 * w_bound


def test_flax_init_option_keeps_flax_defaults():
    params = layers.Linear(20, torch_init=False).init(jax.random.key(0), jnp.zeros((1, 400)))
    assert np.all(np.asarray(params["params"]["bias"]) == 0)  # Flax: zero bias, torch: uniform
    # lecun_normal: std 1/sqrt(fan_in) (truncated), beyond torch's uniform bound 1/sqrt(fan_in)
    assert np.abs(np.asarray(params["params"]["kernel"])).max() > 1 / np.sqrt(400)


def test_randn_is_standard_normal():
    x = np.asarray(I.randn(jax.random.key(1), (200, 100)))
    assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(reduction):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 7)
    ours = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), reduction)
    theirs = F.cross_entropy(torch.tensor(logits), torch.tensor(labels), reduction=reduction)
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(1)
    pred, target = rng.standard_normal((2, 4, 10)).astype(np.float32)
    ours = losses.mse(jnp.asarray(pred), jnp.asarray(target), reduction)
    theirs = F.mse_loss(torch.tensor(pred), torch.tensor(target), reduction=reduction)
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-6)


def test_masked_mean_equals_torch_on_the_short_batch():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((8, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 8)
    mask = np.arange(8) < 5  # a padded last batch with 5 real examples
    ours = losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), weights=mask)
    theirs = F.cross_entropy(torch.tensor(logits[:5]), torch.tensor(labels[:5]))
    np.testing.assert_allclose(float(ours), theirs.item(), rtol=1e-6)
    pred, target = logits, rng.standard_normal((8, 10)).astype(np.float32)
    ours = losses.mse(jnp.asarray(pred), jnp.asarray(target), weights=mask)
    theirs = F.mse_loss(torch.tensor(pred[:5]), torch.tensor(target[:5]))
    np.testing.assert_allclose(float(ours), theirs.item(), rtol=1e-6)


def test_sse_is_seed_002s_sum_of_squares():
    rng = np.random.default_rng(3)
    pred, y = rng.standard_normal((2, 100, 10)).astype(np.float32)
    theirs = (torch.tensor(pred) - torch.tensor(y)).pow(2).sum().item()
    np.testing.assert_allclose(float(losses.sse(jnp.asarray(pred), jnp.asarray(y))), theirs,
                               rtol=1e-5)


# ---------------------------------------------------------------- optimizers


def _step_by_step(tx, make_torch_opt, steps: int = 6):
    """Feed the same gradients to tx and a torch optimizer; return per-step max param diffs."""
    rng = np.random.default_rng(4)
    p0 = {"w": rng.standard_normal((5, 3)).astype(np.float32),
          "b": rng.standard_normal((3,)).astype(np.float32)}
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in p0.items()}
    topt = make_torch_opt(list(tparams.values()))
    params = jax.tree.map(jnp.asarray, p0)
    state = tx.init(params)
    update = jax.jit(tx.update)
    diffs = []
    for _ in range(steps):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in p0.items()}
        for k, t in tparams.items():
            t.grad = torch.tensor(grads[k])
        topt.step()
        updates, state = update(jax.tree.map(jnp.asarray, grads), state, params)
        params = optax.apply_updates(params, updates)
        diffs.append(max(np.abs(np.asarray(params[k]) - t.detach().numpy()).max()
                         for k, t in tparams.items()))
    return diffs


SGD_SETTINGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.5},  # optax.sgd differs here (first step and every step)
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.5, "dampening": 0.1, "weight_decay": 0.05},
    {"weight_decay": 0.1},
]


@pytest.mark.parametrize("kwargs", SGD_SETTINGS, ids=str)
def test_sgd_matches_torch_step_by_step(kwargs):
    diffs = _step_by_step(optim.sgd(0.05, **kwargs),
                          lambda ps: torch.optim.SGD(ps, lr=0.05, **kwargs))
    assert max(diffs) < 1e-6, diffs


def test_optax_sgd_would_not_match_torch_with_dampening():
    # Why jaxnets.optim.sgd exists: optax's trace scales nothing and starts from zero.
    diffs = _step_by_step(optax.sgd(0.05, momentum=0.9),
                          lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, dampening=0.5))
    assert diffs[0] < 1e-6 and diffs[-1] > 1e-3


def test_adam_matches_torch_step_by_step():
    diffs = _step_by_step(optim.adam(1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2), steps=10)
    assert max(diffs) < 1e-6, diffs


@pytest.mark.parametrize("kwargs", [{"momentum": -0.1}, {"nesterov": True},
                                    {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
                                    {"weight_decay": -1.0}], ids=str)
def test_sgd_rejects_what_torch_rejects(kwargs):
    with pytest.raises(ConfigError):
        optim.sgd(0.1, **kwargs)
    with pytest.raises(ValueError):
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, **kwargs)

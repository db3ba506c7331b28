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


def _run(tx, steps: int = 20):
    """Params after `steps` updates of tx on fixed random gradients (update jitted, as trained)."""
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)}
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(steps):
        grads = {"w": jnp.asarray(rng.standard_normal((5, 3)), jnp.float32)}
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return np.asarray(params["w"])


@pytest.mark.parametrize("kwargs", [s for s in SGD_SETTINGS if not s.get("dampening")], ids=str)
def test_sgd_without_dampening_is_optax_sgd_bit_for_bit_with_torchs_buffer(kwargs):
    # optim.sgd hands these settings to optax.sgd: its trace does PyTorch's momentum-buffer
    # arithmetic exactly (the test above checks it against torch itself to 1e-6; torch fuses
    # p + (-lr) * g into one multiply-add, which is the last-bit difference left).
    momentum = kwargs.get("momentum", 0.0)
    parts = [optax.add_decayed_weights(kwargs["weight_decay"])] if "weight_decay" in kwargs else []
    if momentum:
        parts.append(optim.scale_by_torch_momentum(momentum, nesterov=kwargs.get("nesterov", False)))
    by_hand = optax.chain(*parts, optax.scale_by_learning_rate(0.05))
    np.testing.assert_array_equal(_run(optim.sgd(0.05, **kwargs)), _run(by_hand))


class _NeverZeroed:
    """Seed 000's update as a torch 'optimizer': backward adds into .grad, nothing zeroes it."""

    def __init__(self, params, lr):
        self.params, self.lr, self.grad_sum = params, lr, [torch.zeros_like(p) for p in params]

    def step(self):
        with torch.no_grad():
            for p, acc in zip(self.params, self.grad_sum, strict=True):
                acc += p.grad  # what the next backward() does to a .grad nobody zeroed
                p -= self.lr * acc  # the seed's `w1 -= lr * w1.grad`


def test_seed_sgd_is_optax_sgd_momentum_one_and_bit_identical_to_the_seed():
    diffs = _step_by_step(optim.seed_sgd(1e-3), lambda ps: _NeverZeroed(ps, 1e-3), steps=20)
    assert max(diffs) == 0.0, diffs
    a, b = optim.seed_sgd(0.5), optax.sgd(0.5, momentum=1.0)
    params = {"w": jnp.ones(3)}
    assert jax.tree.structure(a.init(params)) == jax.tree.structure(b.init(params))


def test_adam_schedule_is_evaluated_at_each_step_as_torch_lr_scheduler_does():
    # torch: a LambdaLR sets param_group["lr"] before each step; optax calls schedule(step).
    schedule = lambda step: 1e-2 * 0.5 ** step
    diffs = _step_by_step(
        optim.adam(schedule),
        lambda ps: _Scheduled(torch.optim.Adam(ps, lr=1e-2), lambda s: 0.5 ** s), steps=8)
    assert max(diffs) < 1e-6, diffs
    # A constant schedule is bit-identical to the float (lr folded in the same way).
    const = _step_by_step(optim.adam(lambda step: 1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2))
    assert const == _step_by_step(optim.adam(1e-2), lambda ps: torch.optim.Adam(ps, lr=1e-2))


def test_sgd_schedule_matches_torch_lr_scheduler():
    schedule = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.7)
    diffs = _step_by_step(
        optim.sgd(schedule, momentum=0.9, dampening=0.3),
        lambda ps: _Scheduled(torch.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3),
                              lambda s: 0.7 ** s), steps=8)
    assert max(diffs) < 1e-6, diffs


class _Scheduled:
    """A torch optimizer stepped through torch.optim.lr_scheduler.LambdaLR."""

    def __init__(self, opt, factor):
        self.opt, self.sched = opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)

    def step(self):
        self.opt.step()
        self.sched.step()


def test_by_name_builds_each_optimizer_and_names_what_is_wrong():
    assert set(optim.OPTIMIZERS) == {"sgd", "seed_sgd", "adam"}
    diffs = _step_by_step(optim.by_name("sgd", 0.05, momentum=0.9, nesterov=True),
                          lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True))
    assert max(diffs) < 1e-6
    diffs = _step_by_step(optim.by_name("adam", 1e-2, b2=0.99),
                          lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.9, 0.99)))
    assert max(diffs) < 1e-6
    with pytest.raises(ConfigError, match=r"^optimizer: must be one of sgd, adam, seed_sgd, "
                                          r"got 'rms'$"):
        optim.by_name("rms", 0.1)
    with pytest.raises(ConfigError, match=r"^optimizer: 'adam' does not take momentum$"):
        optim.by_name("adam", 0.1, momentum=0.9)
    with pytest.raises(ConfigError, match="learning_rate must be >= 0"):
        optim.by_name("seed_sgd", -1.0)


def test_the_registry_names_each_rule_with_the_settings_it_takes():
    """OPTIMIZERS declares what each rule takes (so --help and Config checks answer without jax);
    the declaration must be the rule's own signature. The experiments offer CHOICES."""
    import inspect

    for name, entry in optim.OPTIMIZERS.items():
        params = list(inspect.signature(getattr(optim.rules, name)).parameters)
        assert params[0] == "learning_rate" and tuple(params[1:]) == entry.settings, name
    assert set(optim.CHOICES) <= set(optim.OPTIMIZERS)
    assert optim.takes("sgd", "momentum") and not optim.takes("adam", "momentum")
    # from_settings leaves out what the choice does not take; label names what it took
    assert optim.label("adam", 0.001, momentum=0.9) == "Adam lr 0.001"
    assert optim.label("sgd", 0.001, momentum=0.9) == "SGD lr 0.001 momentum 0.9"
    g = {"w": jnp.array([1.0, -2.0])}
    for name in optim.CHOICES:
        a, b = optim.from_settings(name, 0.1, momentum=0.5), optim.by_name(
            name, 0.1, **({"momentum": 0.5} if optim.takes(name, "momentum") else {}))
        np.testing.assert_array_equal(a.update(g, a.init(g))[0]["w"], b.update(g, b.init(g))[0]["w"])


def test_seed_sgd_is_sgd_with_momentum_one_bit_for_bit():
    """What experiments.mnist builds for the seed's never-zeroed SGD, by name."""
    g = [{"w": jnp.array([0.3, -1.7, 2.9], jnp.float32) * (i + 1)} for i in range(5)]
    params = {"w": jnp.array([0.1, 0.2, 0.3], jnp.float32)}

    def steps(tx):
        p, state = params, tx.init(params)
        for grads in g:
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        return np.asarray(p["w"])

    np.testing.assert_array_equal(steps(optim.seed_sgd(1e-3)),
                                  steps(optim.from_settings("sgd", 1e-3, momentum=1.0)))


def test_the_registry_imports_without_jax():
    import subprocess
    import sys

    code = ("import sys; from jaxnets import optim; assert 'jax' not in sys.modules; "
            "assert optim.CHOICES == ('sgd', 'adam') and optim.takes('sgd', 'momentum'); "
            "assert 'jax' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

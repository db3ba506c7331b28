"""Seed 003's thermometer fit against the same code in PyTorch and against the seed's printout."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from experiments import thermometer as E
from jaxnets import optim
from jaxnets import thermometer as thermo
from jaxnets.errors import ConfigError
from jaxnets.options import RunOptions
from reference import seeds as ref

# --- the book's code, in torch ---------------------------------------------------------------------

T_C = torch.tensor(thermo.T_C)
T_U = torch.tensor(thermo.T_U)


model, loss_fn, grad_fn = ref.thermo_model, ref.thermo_loss_fn, ref.thermo_grad_fn
torch_training_loop = ref.thermometer_loop


def torch_optimizer_loop(optimizer_cls, lr, n_epochs, t_u):
    return ref.thermometer_optimizer_fit(optimizer_cls, lr, n_epochs, t_u, T_C)


@pytest.fixture(scope="module")
def data():
    return thermo.data()


# --- tests ---------------------------------------------------------------------------------------


def test_data_model_and_initial_loss(data):
    t_c, t_u = data
    assert t_c.dtype == t_u.dtype == jnp.float32 and t_c.shape == t_u.shape == (11,)
    np.testing.assert_array_equal(t_c, T_C.numpy())
    np.testing.assert_array_equal(t_u, T_U.numpy())
    t_p = thermo.model(t_u, jnp.ones(()), jnp.zeros(()))
    np.testing.assert_array_equal(t_p, model(T_U, torch.ones(()), torch.zeros(())).numpy())
    loss = thermo.loss_fn(t_p, t_c)
    assert loss.dtype == jnp.float32
    assert f"{float(loss):.4f}" == "1763.8846"   # the seed's Out[6]
    np.testing.assert_allclose(loss, loss_fn(model(T_U, 1.0, 0.0), T_C).item(), rtol=2e-7)


def test_rate_of_change_matches_torch_and_the_gradient(data):
    t_c, t_u = data
    delta = 0.1
    w, b = torch.ones(()), torch.zeros(())
    d_w = (loss_fn(model(T_U, w + delta, b), T_C)
           - loss_fn(model(T_U, w - delta, b), T_C)) / (2.0 * delta)
    d_b = (loss_fn(model(T_U, w, b + delta), T_C)
           - loss_fn(model(T_U, w, b - delta), T_C)) / (2.0 * delta)
    ours = thermo.rate_of_change(jnp.array([1.0, 0.0]), t_u, t_c, delta)
    # A difference of two losses ~1764 (float32 ulp 1.2e-4) over 0.2: a few ulps are ~3e-3.
    np.testing.assert_allclose(ours, [d_w.item(), d_b.item()], rtol=1e-6, atol=5e-3)
    # Central differences of a quadratic are exact up to float32 cancellation.
    np.testing.assert_allclose(ours, [4517.2969, 82.6], rtol=1e-4)


def test_in10_step_measures_b_at_the_updated_w_like_the_book(data, capsys):
    """In[9] updates w before In[10] measures d loss/d b, so b = 46 comes from the rate at
    (w1, 0) = -4600, not from the 82.6 at (1, 0); the printed pair must be that one."""
    t_c, t_u = data
    delta, lr = 0.1, 1e-2
    w, b = torch.ones(()), torch.zeros(())
    rate_w = (loss_fn(model(T_U, w + delta, b), T_C)
              - loss_fn(model(T_U, w - delta, b), T_C)) / (2.0 * delta)
    w = w - lr * rate_w                                                   # In[9]
    rate_b = (loss_fn(model(T_U, w, b + delta), T_C)
              - loss_fn(model(T_U, w, b - delta), T_C)) / (2.0 * delta)   # In[10]
    b = b - lr * rate_b
    step = E.finite_difference_step(t_u, t_c, delta, print)
    printed = capsys.readouterr().out
    np.testing.assert_allclose(step["one_step_w_b"], [w.item(), b.item()], rtol=1e-6)
    np.testing.assert_allclose(step["rate_of_change_b_at_w1"], rate_b.item(), rtol=1e-6)
    in10 = next(line for line in printed.splitlines() if "In[10]" in line)
    assert f"= {rate_b.item():.4f} -> b = 0 - 1e-2 * that = {b.item():.4f}" in in10
    assert "82.5977" not in in10 and f"{b.item():.4f}" == "46.0000"


def test_tutorial_and_reference_tables_are_text_with_sources():
    assert all(isinstance(v, str) for v in E.TUTORIAL.values())
    assert E.TUTORIAL["epoch 100 loss"] == "29.022669" and len(E.TUTORIAL) == 1 + 7 * 3 + 1
    for value, source in E.REFERENCE.values():
        assert isinstance(value, str) and "dlwpt-code" in source and "ipynb" in source
        E.figure_value(value)  # every figure reads as numbers


def test_float32_gap_counts_ulps_of_the_book_value():
    ulp = float(np.spacing(np.float32(2.927648)))
    assert E.float32_gap(2.927648 - 4 * ulp, "2.927648").endswith(f"(-4.0 ulp, {-4 * ulp:+.1e})")
    assert "(+0.0 ulp" in E.float32_gap(2.927648, "2.927648")


def test_hand_gradient_equals_autograd_and_torch_backward(data):
    t_c, t_u = data
    p = jnp.array([1.0, 0.0])
    hand = thermo.grad_fn(t_u, t_c, thermo.model(t_u, p[0], p[1]), p[0], p[1])
    auto = thermo.autograd_grad(p, t_u, t_c)
    params = torch.tensor([1.0, 0.0], requires_grad=True)
    loss_fn(model(T_U, *params), T_C).backward()
    assert hand.dtype == auto.dtype == jnp.float32
    np.testing.assert_allclose(hand, auto, rtol=2e-7)
    np.testing.assert_allclose(auto, params.grad.numpy(), rtol=2e-7)
    np.testing.assert_allclose(auto, [4517.2969, 82.6000], atol=6e-5)   # the seed's params.grad
    for q in ([0.3, -2.0], [5.0, -17.0]):   # and elsewhere, not just at the start
        q = jnp.array(q)
        t_p = thermo.model(t_u, q[0], q[1])
        np.testing.assert_allclose(thermo.grad_fn(t_u, t_c, t_p, q[0], q[1]),
                                   thermo.autograd_grad(q, t_u, t_c), rtol=1e-5, atol=1e-4)


def test_training_loop_matches_torch(data):
    t_c, t_u = data
    params, hist = thermo.training_loop(100, 1e-4, jnp.array([1.0, 0.0]), t_u, t_c)
    t_params, t_loss, t_hist, t_grad = torch_training_loop(100, 1e-4, torch.tensor([1.0, 0.0]),
                                                           T_U, T_C)
    assert hist.loss.shape == (100,) and hist.params.shape == hist.grad.shape == (100, 2)
    assert params.dtype == hist.loss.dtype == hist.grad.dtype == jnp.float32
    np.testing.assert_allclose(hist.loss, t_loss.numpy(), rtol=5e-7)
    np.testing.assert_allclose(hist.params, t_hist.numpy(), rtol=1e-6, atol=1e-7)
    # Late gradients are small differences of terms ~4500 (float32 ulp ~5e-4): absolute tolerance.
    np.testing.assert_allclose(hist.grad, t_grad.numpy(), rtol=1e-6, atol=2e-4)
    np.testing.assert_allclose(params, t_params.numpy(), rtol=1e-6)


def test_training_loop_prints_the_seeds_numbers(data, capsys):
    t_c, t_u = data
    params, hist = thermo.training_loop(100, 1e-4, jnp.array([1.0, 0.0]), t_u, t_c)
    for epoch in (1, 2, 3, 10, 11, 99, 100):
        loss = E.figure_value(E.TUTORIAL[f"epoch {epoch} loss"])
        # The seed prints %f; float32 summation order may move the last digit (one ulp).
        np.testing.assert_allclose(hist.loss[epoch - 1], loss, rtol=3e-7)
        np.testing.assert_allclose(hist.params[epoch - 1],
                                   E.figure_value(E.TUTORIAL[f"epoch {epoch} params"]), atol=5.1e-5)
        np.testing.assert_allclose(hist.grad[epoch - 1],
                                   E.figure_value(E.TUTORIAL[f"epoch {epoch} grad"]),
                                   rtol=2e-7, atol=2e-4)
    assert E.fmt(params) == "[0.2327, -0.0438]"
    assert f"{float(hist.loss[0]):f}" == "1763.884644"
    lines = E.epoch_lines(hist)
    assert lines[:2] == ["Epoch 1, Loss 1763.884644", "    Params: [0.5483, -0.0083]"]
    assert lines[2].startswith("    Grad:   [4517.29") and lines[2].endswith(", 82.6000]")
    assert lines[9] == "..." and lines[-3].startswith("Epoch 100, Loss 29.0226")


def test_training_loop_compiles_once_per_length(data):
    t_c, t_u = data
    p0 = jnp.array([1.0, 0.0])
    thermo.training_loop(7, 1e-4, p0, t_u, t_c)
    size = thermo.training_loop._cache_size()
    thermo.training_loop(7, 2e-4, p0 + 1, t_u, t_c)   # new lr and params: same compiled loop
    assert thermo.training_loop._cache_size() == size


def test_normalised_input_5000_epochs_matches_torch(data):
    t_c, t_u = data
    params, hist = thermo.training_loop(5000, 1e-2, jnp.array([1.0, 0.0]), 0.1 * t_u, t_c)
    t_params, t_loss, _, _ = torch_training_loop(5000, 1e-2, torch.tensor([1.0, 0.0]),
                                                 0.1 * T_U, T_C)
    np.testing.assert_allclose(hist.loss, t_loss.numpy(), rtol=1e-5)
    np.testing.assert_allclose(params, t_params.numpy(), rtol=1e-5)
    assert E.fmt(params) == E.REFERENCE["normalised: params"][0] == "[5.3671, -17.3012]"


def test_optax_sgd_and_adam_through_train_match_torch_optim(data):
    t_c, t_u = data
    p0 = jnp.array([1.0, 0.0])
    sgd_params, sgd_losses = thermo.fit_optax(optax.sgd(1e-2), 5000, p0, 0.1 * t_u, t_c)
    t_params, t_losses = torch_optimizer_loop(torch.optim.SGD, 1e-2, 5000, 0.1 * T_U)
    assert sgd_losses.shape == (5000,) and sgd_losses.dtype == jnp.float32
    np.testing.assert_allclose(sgd_losses, t_losses, rtol=1e-5)
    np.testing.assert_allclose(sgd_params, t_params, rtol=1e-5)
    assert E.fmt(sgd_params) == E.REFERENCE["optax SGD: params"][0]
    adam_params, adam_losses = thermo.fit_optax(optim.adam(1e-1), 2000, p0, t_u, t_c)
    t_params, t_losses = torch_optimizer_loop(torch.optim.Adam, 1e-1, 2000, T_U)
    np.testing.assert_allclose(adam_losses, t_losses, rtol=1e-4)
    np.testing.assert_allclose(adam_params, t_params, rtol=1e-4)
    assert E.fmt(adam_params) == E.REFERENCE["Adam: params"][0]


def test_newton_converges_in_one_step_on_the_least_squares_fit(data):
    t_c, t_u = data

    def loss(p):
        return thermo.params_loss(p, t_u, t_c)

    a = np.stack([np.asarray(t_u, np.float64), np.ones(11)], 1)
    exact = np.linalg.lstsq(a, np.asarray(t_c, np.float64), rcond=None)[0]
    tx = optim.newton(loss)
    params = jnp.array([1.0, 0.0])
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(2):   # the first step lands on the minimum, the second stays there
        updates, state = update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(params, exact, rtol=2e-4)
    assert float(loss(params)) < float(loss(jnp.asarray(exact, jnp.float32))) + 1e-5
    # Gradient descent after the seed's 100 epochs is nowhere near.
    gd_params, _ = thermo.training_loop(100, 1e-4, jnp.array([1.0, 0.0]), t_u, t_c)
    assert float(loss(gd_params)) > 5 * float(loss(params))


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="norm_epochs"):
        E.Config(norm_epochs=0)
    with pytest.raises(ConfigError, match="adam_lr"):
        E.Config(adam_lr=-1.0)


def test_cli_writes_metrics_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert E.main(["--norm-epochs", "300", "--adam-epochs", "500", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Epoch 1, Loss 1763.884644" in printed and "Epoch 100, Loss 29.0226" in printed
    assert "seed 003 vs. jaxnets" in printed
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["experiment"] == "thermometer"
    assert f"{metrics['initial_loss']:.4f}" == "1763.8846"
    assert len(metrics["loop"]["loss"]) == 100 and len(metrics["adam"]["loss"]) == 500
    assert (out / "fit.png").stat().st_size > 0 and (out / "loss_curve.png").stat().st_size > 0
    assert E.main(["--epochs", "0"]) == 2


def test_default_run_compares_the_books_losses_with_their_ulp_distance(tmp_path, capsys):
    metrics = E.run(E.Config(options=RunOptions(out=str(tmp_path))))
    printed = capsys.readouterr().out
    for name, run in (("normalised: epoch 5000 loss", "normalized"),
                      ("optax SGD: epoch 5000 loss", "sgd"), ("Adam: epoch 2000 loss", "adam")):
        book = E.REFERENCE[name][0]
        row = next(line for line in printed.splitlines() if line.strip().startswith(name))
        ours = float(metrics[run]["loss"][-1])
        assert book in row and E.float32_gap(ours, book) in row
        # within 4 float32 ulps of the book's 6-decimal print (half a unit there is ~2 ulps)
        assert abs(ours - float(book)) <= 4 * float(np.spacing(np.float32(float(book))))
    for name in ("normalised: params", "optax SGD: params", "Adam: params"):
        assert any(line.strip().startswith(name) and line.count(E.REFERENCE[name][0]) == 2
                   for line in printed.splitlines())
    assert "1 epochs" not in printed and (tmp_path / "loss_curve.png").stat().st_size > 0


def test_one_epoch_runs_say_epoch_not_epochs(tmp_path, capsys):
    E.run(E.Config(epochs=1, norm_epochs=1, adam_epochs=1, options=RunOptions(out=str(tmp_path))))
    printed = capsys.readouterr().out
    assert "1 epochs" not in printed and "via jaxnets.train, 1 epoch on t_u:" in printed

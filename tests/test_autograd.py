"""The autograd tour against torch.autograd, and optim.newton against torch's Hessian."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.autograd import Variable

from experiments import autograd as A
from experiments import tour
from jaxnets import optim
from jaxnets import thermometer as thermo
from jaxnets.errors import ConfigError


def values(name, seed=0):
    """A section's values: its JAX cell (docs/lessons/03_autograd.md, 09_optim.md) run as
    `python -m experiments.autograd` runs it."""
    vals, text = tour.call(tour.find("autograd", name), seed)
    assert text.strip()
    return vals


def t(x, requires_grad=False):
    """A float32 (or our array's dtype) torch tensor."""
    x = np.array(x, np.float32) if isinstance(x, list) else np.array(x)
    return torch.tensor(x, requires_grad=requires_grad)


def close(ours, theirs, rtol=1e-6, atol=1e-7):
    ours = np.asarray(ours)
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def test_out_mean_and_its_gradient_is_4_5():
    v, g = values("requires_grad"), values("backward")
    x = torch.ones(2, 2, requires_grad=True)
    y = x + 2
    z = y * y * 3
    out = z.mean()
    out.backward()
    close(v["y"], y)
    close(v["z"], z)
    close(v["out"], out)
    close(g["grad"], x.grad)
    np.testing.assert_array_equal(g["grad"], np.full((2, 2), 4.5, np.float32))
    np.testing.assert_array_equal(g["hand"], g["grad"])  # the seed's 3/2 (x_i + 2)


def test_requires_grad_becomes_argnums_and_pytrees():
    v = values("requires_grad_")
    a = t(v["a"]).requires_grad_(True)
    b = (a * a).sum()
    b.backward()
    close(v["b"], b, rtol=1e-6)
    close(v["grad_a"], a.grad)
    x, w, bias = t([1.0], True), t([2.0], True), t([3.0], True)
    (w * x + bias).sum().backward()
    close(v["grad_params"]["w"], w.grad)
    close(v["grad_params"]["b"], bias.grad)
    close(v["grad_x"], x.grad)
    close(v["grad_all"][0]["w"], w.grad)
    close(v["grad_all"][1], x.grad)


def test_grad_fn_is_the_jaxpr():
    v = values("grad_fn")
    x = torch.ones(2, 2, requires_grad=True)
    out = ((x + 2) * (x + 2) * 3).mean()
    assert x.grad_fn is None and type(out.grad_fn).__name__ == "MeanBackward0"
    # The same computation, traced: mean is reduce_sum then div.
    assert v["primitives"] == ["add", "mul", "mul", "reduce_sum", "div"]
    assert "reduce_sum" in v["jaxpr"] and "f32[2,2]" in v["jaxpr"]


def doubled_torch(x):
    y = x * 2
    while y.data.norm() < 1000:
        y = y * 2
    return y


@pytest.mark.slow
def test_backward_v_on_the_doubling_loop_is_a_vjp():
    v = values("vjp")
    x = t(v["x"], True)
    y = x * 2
    while y.data.norm() < 1000:
        y = y * 2
    y.backward(torch.tensor(A.V, dtype=torch.float))
    close(v["y"], y)
    close(v["x_grad"], x.grad)
    jac = torch.autograd.functional.jacobian(doubled_torch, t(v["x"]))
    close(v["jacobian_rev"], jac)
    close(v["jacobian_fwd"], jac)
    close(v["jt_v"], x.grad)
    scale = float(v["scale"])
    assert scale >= 2 and scale == 2 ** round(np.log2(scale))


def test_no_grad_is_stop_gradient_or_not_differentiating():
    v = values("no_grad")
    x = t(v["x"], True)
    assert x.requires_grad and (x ** 2).requires_grad
    with torch.no_grad():
        squared = x ** 2
        assert not squared.requires_grad
    close(v["squared"], squared)
    (x ** 2 + (x ** 2).detach()).sum().backward()
    close(v["grad_stop"], x.grad)
    close(v["grad_stop"], v["two_x"])
    # requires_grad True: (x ** 2) passes 2x back; under no_grad it is a constant: nothing flows
    # through it (torch cannot even call backward on it), but its value still counts where it
    # multiplies x.
    x.grad = None
    (x ** 2).sum().backward()
    close(v["grad_tracked"], x.grad)
    np.testing.assert_array_equal(v["grad_stopped"], np.zeros(3, np.float32))
    with pytest.raises(RuntimeError, match="does not require grad"):
        squared.sum().backward()
    x.grad = None
    (squared * x).sum().backward()
    close(v["grad_detach_times_x"], x.grad)
    close(v["grad_detach_times_x"], squared)
    w = torch.ones(3, requires_grad=True)
    (w * x.detach()).sum().backward()
    with torch.no_grad():
        w -= 1e-3 * w.grad
    close(v["w_new"], w)


def test_variable_gradients_are_2_1_1():
    v = values("variable")
    x = Variable(torch.Tensor([1]), requires_grad=True)
    w = Variable(torch.Tensor([2]), requires_grad=True)
    b = Variable(torch.Tensor([3]), requires_grad=True)
    y = w * x + b
    y.backward()
    close(v["y"], y)
    close(v["x_grad"], x.grad)
    close(v["w_grad"], w.grad)
    close(v["b_grad"], b.grad)
    assert [float(v[k][0]) for k in ("x_grad", "w_grad", "b_grad")] == [2.0, 1.0, 1.0]


def test_seed_004_w_grad_is_v_times_x():
    v = values("backward_v")
    x = torch.tensor([4.0, 5.0, 6.0], requires_grad=True)
    w = t(v["w"], True)
    y = w * x
    y.backward(t(v["v"]))
    close(v["y"], y)
    close(v["w_grad"], w.grad)
    close(v["x_grad"], x.grad)
    close(v["w_grad"], v["v_times_x"])


def test_params_grad_is_torchs_and_the_seeds_printed_out_6_and_out_7():
    """seed 003 In[5]-In[7]: loss tensor(1763.8846), params.grad tensor([4517.2969, 82.6000])."""
    v = values("params_grad")
    params = torch.tensor([1.0, 0.0], requires_grad=True)
    t_u, t_c = torch.tensor(thermo.T_U), torch.tensor(thermo.T_C)
    loss = ((params[0] * t_u + params[1] - t_c) ** 2).mean()
    loss.backward()
    close(v["loss"], loss, rtol=1e-6)
    close(v["grad"], params.grad, rtol=1e-6)
    printed_loss = A.TUTORIAL["loss at w = 1, b = 0 (seed 003, Out[6])"]
    printed_grad = A.TUTORIAL["params.grad at w = 1, b = 0 (seed 003, Out[7])"]
    assert f"tensor({float(v['loss']):.4f})" == printed_loss
    assert "tensor([{:.4f}, {:.4f}])".format(*np.asarray(v["grad"]).tolist()) == printed_grad


def test_backward_is_the_seeds_4_5():
    assert A.TUTORIAL["x.grad after out.backward() (seed 002, its derivation: 9/2 = 4.5)"] == "4.5"
    np.testing.assert_array_equal(values("backward")["grad"], np.full((2, 2), 4.5, np.float32))


def torch_thermometer_loss(p):
    t_c = torch.tensor(thermo.T_C)
    t_u = torch.tensor(thermo.T_U)
    return ((p[0] * t_u + p[1] - t_c) ** 2).mean()


@pytest.mark.slow
def test_newton_step_matches_torch_hessian_solve():
    t_c, t_u = thermo.data()

    def loss(p):
        return thermo.params_loss(p, t_u, t_c)

    p0 = jnp.array([1.0, 0.0])
    tx = optim.newton(loss)
    updates, _ = jax.jit(tx.update)(jax.grad(loss)(p0), tx.init(p0), p0)
    tp = torch.tensor([1.0, 0.0], requires_grad=True)
    hessian = torch.autograd.functional.hessian(torch_thermometer_loss, tp)
    torch_thermometer_loss(tp).backward()
    step = -torch.linalg.solve(hessian, tp.grad)
    close(jax.hessian(loss)(p0), hessian, rtol=1e-5)
    close(updates, step, rtol=1e-4, atol=1e-4)


def log_f(x):
    """Seed 000's f(x) = log(x^4 + x^3 + 2), in JAX."""
    return jnp.log(x ** 4 + x ** 3 + 2)


def test_newton_on_log_f_follows_torch_newton():
    x = torch.tensor(-1.0, requires_grad=True)
    torch_xs = [x.item()]
    for _ in range(4):
        f = torch.log(x ** 4 + x ** 3 + 2)
        (g,) = torch.autograd.grad(f, x)
        h = torch.autograd.functional.hessian(lambda x: torch.log(x ** 4 + x ** 3 + 2), x.detach())
        x = (x.detach() - g / h).requires_grad_(True)
        torch_xs.append(x.item())
    ours = A.minimise(log_f, jnp.float32(-1.0), optim.newton(log_f), 4)
    np.testing.assert_allclose(ours, torch_xs, rtol=1e-5)
    assert abs(float(ours[-1]) + 0.75) < 1e-5


def test_newton_takes_pytrees_and_needs_params():
    t_c, t_u = thermo.data()

    def loss_tree(p):
        return thermo.loss_fn(thermo.model(t_u, p["w"], p["b"]), t_c)

    tree = {"w": jnp.float32(1.0), "b": jnp.float32(0.0)}
    tx = optim.newton(loss_tree, learning_rate=0.5)
    updates, _ = tx.update(jax.grad(loss_tree)(tree), tx.init(tree), tree)
    flat = optim.newton(lambda p: thermo.params_loss(p, t_u, t_c), learning_rate=0.5)
    p0 = jnp.array([1.0, 0.0])
    flat_updates, _ = flat.update(thermo.autograd_grad(p0, t_u, t_c), flat.init(p0), p0)
    np.testing.assert_allclose([updates["w"], updates["b"]], flat_updates, rtol=1e-5)
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(updates, tx.init(tree))


@pytest.mark.slow
def test_newton_section_one_step_on_least_squares_and_log_f():
    th = values("newton")
    np.testing.assert_allclose(th["newton_params"], th["least_squares"], rtol=2e-4)
    np.testing.assert_allclose(th["newton_params_step2"], th["newton_params"], rtol=2e-4)
    assert float(th["newton_loss"]) < 2.9277 < float(th["gd_loss_100"])
    tp = torch.tensor([1.0, 0.0], requires_grad=True)
    opt = torch.optim.SGD([tp], lr=1e-4)
    for _ in range(100):
        opt.zero_grad()
        torch_thermometer_loss(tp).backward()
        opt.step()
    close(th["gd_params_100"], tp, rtol=1e-5)
    runs = values("newton_log_f")["log_f"]
    near, far = runs[-1.0], runs[-1.5]
    assert 1 <= near["newton_steps"] < near["gd_steps"]
    assert far["newton_steps"] is None and abs(float(far["newton_end"])) < 1e-3
    assert far["gd_steps"] is not None
    sgd = A.minimise(log_f, jnp.float32(-1.0), optax.sgd(0.1), 3)
    x = torch.tensor(-1.0, requires_grad=True)
    opt = torch.optim.SGD([x], lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        torch.log(x ** 4 + x ** 3 + 2).backward()
        opt.step()
    np.testing.assert_allclose(sgd[-1], x.item(), rtol=1e-6)


def test_cli(tmp_path, capsys):
    assert A.main(["--list"]) == 0
    assert "vjp" in capsys.readouterr().out
    assert A.main(["--section", "variable", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## [variable] PyTorch:\n##     from torch.autograd import Variable" in out
    assert "[vjp]" not in out and "## explained in docs/lessons/03_autograd.md#variable" in out
    with open(tmp_path / "metrics.json") as f:
        saved = json.load(f)
    assert saved["sections"]["variable"]["x_grad"] == [2.0]
    assert A.main(["--section", "backwards"]) == 2
    assert "--section: unknown section 'backwards'" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        A.Config(section="backwards")

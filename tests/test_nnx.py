"""The NNX LeNet (jaxnets.nnx_lenet) against the Linen LeNet and PyTorch's Net, one weights file."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.torch import load_file

from experiments import lenet_nnx as E
from jaxnets import checkpoint, losses, torch_io
from jaxnets import nnx_lenet as N
from jaxnets.errors import CheckpointError
from jaxnets.models import LeNet
from jaxnets.options import RunOptions
from reference.seeds import tutorial_net


@pytest.fixture(scope="module")
def same_file(tmp_path_factory):
    """Linen LeNet weights (PyTorch's init, key 0) written by export_state_dict, and a batch."""
    x = jax.random.normal(jax.random.key(1), (3, 32, 32, 1))
    params = LeNet().init(jax.random.key(0), x)["params"]
    path = checkpoint.export_state_dict(str(tmp_path_factory.mktemp("w") / "lenet.safetensors"),
                                        {"params": params})
    target = jax.random.normal(jax.random.key(2), (3, 10))
    return path, params, x, target


def _nnx_model(path, channels=1):
    # A different init key than Linen's: every value must come from the file.
    return N.load_state_dict_file(N.LeNet(channels, rngs=nnx.Rngs(123)), path)


@pytest.mark.slow
@pytest.mark.parametrize("conv_impl", ["lax", "auto"])
def test_outputs_and_gradients_equal_linen(same_file, conv_impl):
    path, params, x, target = same_file
    apply, graphdef, state = N.pure_apply(_nnx_model(path))
    linen = LeNet(conv_impl=conv_impl)
    out_linen = linen.apply({"params": params}, x)
    out_nnx = jax.jit(apply)(state, x)
    # lax.conv on both sides is the same program; 'auto' (matmul forms on CPU) differs in
    # summation order only.
    tol = 0.0 if conv_impl == "lax" else 1e-5
    np.testing.assert_allclose(out_nnx, out_linen, rtol=0, atol=tol)
    g_linen = jax.grad(lambda p: losses.mse(linen.apply({"params": p}, x), target))(params)
    g_nnx = jax.grad(lambda s: losses.mse(apply(s, x), target))(state)
    g_nnx = N.params_tree(nnx.merge(graphdef, g_nnx))
    for a, b in zip(jax.tree.leaves(g_linen), jax.tree.leaves(g_nnx), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6 if tol else 0, atol=tol)


@pytest.mark.slow
def test_outputs_and_gradients_equal_torch(same_file):
    path, _, x, target = same_file
    net = tutorial_net(in_channels=1)
    net.load_state_dict(load_file(path))
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    out_t = net(xt)
    loss_t = torch.nn.MSELoss()(out_t, torch.from_numpy(np.array(target)))
    loss_t.backward()
    apply, graphdef, state = N.pure_apply(_nnx_model(path))
    loss, grads = jax.value_and_grad(lambda s: losses.mse(apply(s, x), target))(state)
    np.testing.assert_allclose(apply(state, x), out_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(loss), loss_t.item(), rtol=1e-6)
    ours = N.to_state_dict(nnx.merge(graphdef, grads))
    theirs = {k: p.grad.numpy() for k, p in net.named_parameters()}
    assert ours.keys() == theirs.keys()
    for k, grad in theirs.items():
        np.testing.assert_allclose(ours[k], grad, rtol=1e-4, atol=1e-6, err_msg=k)


def test_state_dict_round_trip_through_torch(same_file, tmp_path):
    path, params, _, _ = same_file
    model = _nnx_model(path)
    assert all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(N.params_tree(model)), jax.tree.leaves(params), strict=True))
    # NNX -> file -> torch -> .pth -> NNX: the same numbers (keys and layouts as PyTorch's).
    mine = torch_io.save(str(tmp_path / "nnx.safetensors"), N.to_state_dict(model))
    net = tutorial_net(in_channels=1)
    net.load_state_dict(load_file(mine))
    torch.save(net.state_dict(), tmp_path / "net.pth")
    again = N.load_state_dict_file(N.LeNet(1, rngs=nnx.Rngs(7)), str(tmp_path / "net.pth"))
    for k, v in N.to_state_dict(again).items():
        np.testing.assert_array_equal(v, net.state_dict()[k].numpy(), err_msg=k)


def test_other_models_file_is_a_clear_error(tmp_path):
    three = LeNet().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    path = checkpoint.export_state_dict(str(tmp_path / "cifar.safetensors"), three)
    with pytest.raises(CheckpointError, match="conv1.weight"):
        _nnx_model(path, channels=1)
    with pytest.raises(CheckpointError, match="no such file"):
        _nnx_model(str(tmp_path / "missing.safetensors"))


@pytest.mark.slow
def test_experiment_shows_equal_models(tmp_path):
    metrics = E.run(E.Config(options=RunOptions(out=str(tmp_path), progress=False)))
    assert metrics["output_max_abs_diff"] == 0.0
    assert metrics["grad_max_abs_diff"] == 0.0
    assert metrics["step_params_max_abs_diff"] == 0.0
    assert metrics["loss_linen"] == metrics["loss_nnx"]
    assert os.path.isfile(metrics["weights"])
    assert json.loads((tmp_path / "metrics.json").read_text())["experiment"] == "lenet_nnx"
    assert E.main(["--channels", "0", "--out", str(tmp_path)]) == 2   # a one-line error

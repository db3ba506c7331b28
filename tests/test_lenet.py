"""LeNet (seed 001/002's Net): the same weights in a PyTorch Net give the same outputs, loss,
gradients and SGD steps; the printed structure equals PyTorch's print(net)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments import lenet as E
from jaxnets import losses, torch_io
from jaxnets.errors import ConfigError
from jaxnets.models import LeNet


class Net(nn.Module):
    """Seed 001's Net, with the input channels as a parameter (3 for the CIFAR-10 version)."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, input):
        s2 = F.max_pool2d(F.relu(self.conv1(input)), (2, 2))
        s4 = F.max_pool2d(F.relu(self.conv2(s2)), 2)
        s4 = torch.flatten(s4, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(s4)))))


def _nhwc(t: torch.Tensor) -> jax.Array:
    return jnp.asarray(t.permute(0, 2, 3, 1).numpy())


def _jax_params(net: Net, channels: int):
    # Shapes only (eval_shape): the torch weights replace every value anyway.
    shapes = jax.eval_shape(LeNet().init, jax.random.key(0), jnp.zeros((1, 32, 32, channels)))
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    return torch_io.from_state_dict(sd, template)["params"]


def _torch_grads(net: Net) -> dict[str, np.ndarray]:
    return {k: p.grad.numpy().copy() for k, p in net.named_parameters()}


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """The tutorial's steps in PyTorch, and experiments.lenet.run on the same weights/tensors."""
    torch.manual_seed(0)
    net = Net()
    params = _jax_params(net, 1)
    input = torch.randn(1, 1, 32, 32)
    v = torch.randn(1, 10)
    target = torch.randn(10).view(1, -1)
    ref = {"structure": str(net)}
    net.zero_grad()
    out = net(input)
    ref["output"] = out.detach().numpy()[0]
    out.backward(v)
    ref["vjp_conv1_bias_grad"] = net.conv1.bias.grad.numpy().copy()
    criterion = nn.MSELoss()
    loss = criterion(net(input), target)
    ref["mse_loss"] = loss.item()
    net.zero_grad()
    ref["conv1_bias_grad_before"] = net.conv1.bias.grad  # None since PyTorch 2.0
    loss.backward()
    ref["grads"] = _torch_grads(net)
    learning_rate = 0.01
    for f in net.parameters():
        f.data.sub_(f.grad.data * learning_rate)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    optimizer.zero_grad()
    loss = criterion(net(input), target)
    ref["optimizer_step_loss_before"] = loss.item()
    loss.backward()
    optimizer.step()
    ref["optimizer_step_loss_after"] = criterion(net(input), target).item()

    start = {"params": params, "input": _nhwc(input), "v": jnp.asarray(v.numpy()),
             "target": jnp.asarray(target.numpy())}
    config = E.Config(out=str(tmp_path_factory.mktemp("lenet")), progress=False)
    return ref, start, E.run(config, start), config


def test_structure_and_parameter_list(walkthrough):
    ref, _, m, _ = walkthrough
    assert m["structure"] == ref["structure"]
    assert m["num_param_arrays"] == 10
    assert m["conv1_weight_shape"] == [6, 1, 5, 5]
    assert m["total_params"] == sum(p.numel() for p in Net().parameters()) == 61706


def test_forward_vjp_loss_and_grads_match_torch(walkthrough):
    ref, start, m, _ = walkthrough
    np.testing.assert_allclose(m["output"], ref["output"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(m["vjp_conv1_bias_grad"], ref["vjp_conv1_bias_grad"], atol=1e-6,
                               rtol=1e-5)
    np.testing.assert_allclose(m["mse_loss"], ref["mse_loss"], rtol=1e-5)
    assert ref["conv1_bias_grad_before"] is None and m["conv1_bias_grad_before"] is None
    np.testing.assert_allclose(m["conv1_bias_grad_after"], ref["grads"]["conv1.bias"],
                               atol=1e-7, rtol=1e-4)
    # every one of the 10 gradient arrays, in PyTorch's layout
    model = LeNet()
    grads = jax.jit(jax.grad(lambda p: losses.mse(model.apply({"params": p}, start["input"]),
                                                  start["target"])))(start["params"])
    ours = E.torch_layout(grads)
    assert set(ours) == set(ref["grads"])
    for k, g in ref["grads"].items():
        np.testing.assert_allclose(ours[k], g, atol=1e-6 * max(1.0, np.abs(g).max()), rtol=1e-4,
                                   err_msg=k)


def test_sgd_steps_match_torch(walkthrough):
    ref, _, m, _ = walkthrough
    assert m["manual_vs_optax_max_abs_diff"] == 0.0
    np.testing.assert_allclose(m["optimizer_step_loss_before"], ref["optimizer_step_loss_before"],
                               rtol=1e-5)
    np.testing.assert_allclose(m["optimizer_step_loss_after"], ref["optimizer_step_loss_after"],
                               rtol=1e-5)
    assert m["optimizer_step_loss_after"] < m["optimizer_step_loss_before"]


def test_metrics_json(walkthrough):
    *_, config = walkthrough
    with open(os.path.join(config.out, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["param_counts"]["fc1.weight"] == 48000
    assert len(saved["output"]) == 10


def test_cifar_variant_batch_matches_torch():
    # 3 channels, a batch of 5: flatten order of 16 channels and per-example independence
    torch.manual_seed(1)
    net = Net(3)
    params = _jax_params(net, 3)
    assert sum(a.size for a in jax.tree.leaves(params)) == 62006
    x = torch.randn(5, 3, 32, 32)
    labels = torch.tensor([0, 3, 9, 1, 3])
    loss = F.cross_entropy(net(x), labels)
    loss.backward()
    model = LeNet()

    def loss_fn(p):
        return losses.cross_entropy(model.apply({"params": p}, _nhwc(x)), jnp.asarray(labels.numpy()))

    value, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    np.testing.assert_allclose(float(value), loss.item(), rtol=1e-5)
    ours = E.torch_layout(grads)
    for k, g in _torch_grads(net).items():
        np.testing.assert_allclose(ours[k], g, atol=1e-6 * max(1.0, np.abs(g).max()), rtol=1e-4,
                                   err_msg=k)


def test_state_dict_round_trip():
    torch.manual_seed(2)
    net = Net()
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    back = E.torch_layout(_jax_params(net, 1))  # the params come back with sorted keys
    assert list(back) == list(sd)
    for k, value in sd.items():
        np.testing.assert_array_equal(back[k], value)


def test_bad_config():
    with pytest.raises(ConfigError, match="channels"):
        E.Config(channels=0)

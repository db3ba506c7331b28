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

from experiments import lenet as E
from jaxnets import losses, torch_io
from jaxnets.errors import ConfigError
from jaxnets.models import LeNet
from jaxnets.options import RunOptions
from reference import seeds

Net = seeds.neural_networks_net  # seed 001's Net; Net(3) for CIFAR-10's channels


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
    ref = seeds.neural_networks_walkthrough(net, input, v, target)

    start = {"params": params, "input": _nhwc(input), "v": jnp.asarray(v.numpy()),
             "target": jnp.asarray(target.numpy())}
    config = E.Config(options=RunOptions(out=str(tmp_path_factory.mktemp("lenet")), progress=False))
    return ref, start, E.run(config, start), config


@pytest.mark.slow
def test_structure_and_parameter_list(walkthrough):
    ref, _, m, _ = walkthrough
    assert m["structure"] == ref["structure"]
    assert m["num_param_arrays"] == 10
    assert m["conv1_weight_shape"] == [6, 1, 5, 5]
    assert m["total_params"] == sum(p.numel() for p in Net().parameters()) == 61706


@pytest.mark.slow
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
    with open(os.path.join(config.options.out, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["param_counts"]["fc1.weight"] == 48000
    assert len(saved["output"]) == 10


@pytest.mark.slow
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


@pytest.mark.parametrize("shape", [(1, 28, 28, 1), (2, 32, 28, 3), (32, 32, 1)])
def test_wrong_input_size_is_a_clear_error_not_a_different_model(shape):
    """The tutorial's Net fails on a 28x28 input (fc1 wants 400 features); Flax would silently
    build a 44,426-parameter model instead."""
    with pytest.raises(ConfigError, match=r"32x32 pixels \[N, 32, 32, C\].*got shape"):
        LeNet().init(jax.random.key(0), jnp.zeros(shape))
    x = torch.zeros(1, 1, 28, 28)
    net = seeds.neural_networks_net()  # the tutorial's own Net
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        net(x)  # what PyTorch's Net does with the same input


def test_comparison_is_built_from_tutorial_and_reference(walkthrough):
    ref, _, m, _ = walkthrough
    assert all(isinstance(v, str) for v in E.TUTORIAL.values())
    rows = {name: (theirs, ours) for name, theirs, ours in E.comparison_rows(m)}
    for name, value in E.TUTORIAL.items():
        assert rows[name][0] == value
    for name, (value, source) in E.REFERENCE.items():
        assert rows[name][0] == f"{value} (upstream)" and "neural_networks_tutorial" in source
    assert rows["len(params)"][1] == E.REFERENCE["len(params)"][0]
    assert rows["params[0].size()"][1] == E.REFERENCE["params[0].size()"][0]
    assert rows["flatten -> fc1 input"][1] == E.TUTORIAL["flatten -> fc1 input"]
    assert str(ref["conv1_bias_grad_before"]) == E.REFERENCE["conv1.bias.grad before backward"][0]

"""PyTorch exchange: a model trained here loads into the tutorial's own `Net`, and back."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from experiments import cifar10
from jaxnets import checkpoint, train
from jaxnets import data as D
from jaxnets.errors import CheckpointError
from reference import seeds as ref

TUTORIAL_KEYS = {  # Net().state_dict() of the CIFAR-10 tutorial: names and PyTorch shapes
    "conv1.weight": (6, 3, 5, 5), "conv1.bias": (6,), "conv2.weight": (16, 6, 5, 5),
    "conv2.bias": (16,), "fc1.weight": (120, 400), "fc1.bias": (120,),
    "fc2.weight": (84, 120), "fc2.bias": (84,), "fc3.weight": (10, 84), "fc3.bias": (10,),
}


Net = ref.tutorial_net  # the tutorial's CIFAR-10 network, verbatim


FAKE = D.load("fake_cifar10", "train")  # FakeData: seeded random images of CIFAR-10's shape


def images(n: int, start: int) -> np.ndarray:
    """n of FakeData's images, from `start` on."""
    return FAKE.images[start:start + n]


def jax_logits(params, x: np.ndarray) -> np.ndarray:
    return np.asarray(cifar10.MODEL.apply({"params": params}, cifar10.preprocess(x)))


def torch_logits(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """The same uint8 NHWC images through ToTensor + Normalize(0.5, 0.5) as NCHW."""
    t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).float() / 255.0
    with torch.no_grad():
        return net((t - 0.5) / 0.5).numpy()


@pytest.fixture(scope="module")
def trained():
    """LeNet after 20 SGD steps on FakeData's random labelled images (weights no longer the
    init's)."""
    config = cifar10.Config(lr=0.01)
    init_key, data_key, train_key = jax.random.split(jax.random.key(3), 3)
    state = cifar10.init_state(config, init_key)
    x, y = FAKE.images[:64], FAKE.labels[:64]
    run_steps = train.make_run_steps(train.make_train_step(
        train.classification_loss(state.apply_fn, cifar10.preprocess)))
    start = state.params
    state, _ = train.fit(state, run_steps, D.to_device({"image": x, "label": y}),
                         D.EpochSampler(64, 4, data_key), 20, train_key, progress=False)
    assert not np.array_equal(start["fc3"]["kernel"], state.params["fc3"]["kernel"])
    return state.params


@pytest.mark.slow
def test_export_loads_into_the_tutorials_net_with_same_predictions(trained, tmp_path):
    path = checkpoint.export_state_dict(str(tmp_path / "cifar_net.safetensors"),
                                        {"params": trained})
    state_dict = load_file(path)
    assert {k: tuple(v.shape) for k, v in state_dict.items()} == TUTORIAL_KEYS
    assert all(v.dtype == torch.float32 for v in state_dict.values())
    with safe_open(path, "pt") as f:
        assert f.metadata() == {"format": "pt"}
    net = Net()
    net.load_state_dict(state_dict)  # strict=True: every key present, none extra
    x = images(32, 100)
    ours, theirs = jax_logits(trained, x), torch_logits(net, x)
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    assert np.array_equal(theirs.argmax(1), ours.argmax(1))


def test_import_gives_back_identical_params(trained, tmp_path):
    path = checkpoint.export_state_dict(str(tmp_path / "net.safetensors"), {"params": trained})
    template = cifar10.init_params(cifar10.MODEL, jax.random.key(99))
    back = checkpoint.import_state_dict(path, {"params": template})["params"]
    flat_a, tree_a = jax.tree.flatten(back)
    flat_b, tree_b = jax.tree.flatten(trained)
    assert tree_a == tree_b
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(flat_a, flat_b))


def test_a_pytorch_trained_net_comes_in(tmp_path):
    """The other direction: the tutorial's Net, trained in PyTorch and saved with safetensors."""
    torch.manual_seed(0)
    net = Net()
    x = images(16, 200)
    t = (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).float() / 255.0 - 0.5) / 0.5
    ref.blitz_train(net, [(t, torch.arange(16) % 10)] * 3, epochs=1, lr=0.01, momentum=0.9)
    path = str(tmp_path / "from_torch.safetensors")
    save_file(net.state_dict(), path)
    params = checkpoint.import_state_dict(path, {"params": cifar10.init_params(
        cifar10.MODEL, jax.random.key(0))})["params"]
    np.testing.assert_allclose(jax_logits(params, x), torch_logits(net, x), rtol=1e-5, atol=1e-5)


def test_wrong_or_damaged_files_are_clear_errors(trained, tmp_path):
    template = {"params": trained}
    sd = load_file(checkpoint.export_state_dict(str(tmp_path / "ok.safetensors"), template))
    missing = {k: v for k, v in sd.items() if k != "fc2.bias"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="missing key 'fc2.bias'"):
        checkpoint.import_state_dict(str(tmp_path / "missing.safetensors"), template)
    save_file({**sd, "fc4.weight": sd["fc3.weight"].clone()}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match="unexpected keys \\['fc4.weight'\\]"):
        checkpoint.import_state_dict(str(tmp_path / "extra.safetensors"), template)
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors: corrupt"):
        checkpoint.import_state_dict(str(tmp_path / "cut.safetensors"), template)
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.import_state_dict(str(tmp_path / "absent.safetensors"), template)


def test_a_pytorch_pth_comes_in_and_bf16_loads_exactly(trained, tmp_path):
    """torch.save(net.state_dict()) as .pth, float32 and bfloat16: both import (bf16 values
    widened exactly to the model's float32), the float32 one bit-identical."""
    net = Net()
    net.load_state_dict(load_file(checkpoint.export_state_dict(
        str(tmp_path / "ours.safetensors"), {"params": trained})), strict=True)
    template = {"params": cifar10.init_params(cifar10.MODEL, jax.random.key(0))}
    torch.save(net.state_dict(), tmp_path / "net.pth")
    back = checkpoint.import_state_dict(str(tmp_path / "net.pth"), template)["params"]
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(trained)):
        np.testing.assert_array_equal(a, b)
    torch.save({k: v.to(torch.bfloat16) for k, v in net.state_dict().items()},
               tmp_path / "bf16.pth")
    half = checkpoint.import_state_dict(str(tmp_path / "bf16.pth"), template)["params"]
    assert half["fc3"]["kernel"].dtype == np.float32
    np.testing.assert_array_equal(
        half["fc3"]["kernel"], net.fc3.weight.detach().to(torch.bfloat16).float().numpy().T)


def test_0d_arrays_survive_export_import_and_torch(tmp_path):
    """A scalar parameter stays 0-d through our safetensors, torch's strict load_state_dict,
    torch's own .pth and .safetensors, and back (np.ascontiguousarray once made it [1])."""
    variables = {"params": {"temperature": np.asarray(1.5, np.float32),
                            "fc": {"kernel": np.ones((3, 2), np.float32),
                                   "bias": np.zeros(2, np.float32)}}}
    path = checkpoint.export_state_dict(str(tmp_path / "t.safetensors"), variables)
    sd = load_file(path)
    assert sd["temperature"].shape == () and sd["fc.weight"].shape == (2, 3)

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.temperature = nn.Parameter(torch.tensor(0.0))
            self.fc = nn.Linear(3, 2)

    module = Scaled()
    module.load_state_dict(sd, strict=True)
    assert module.temperature.shape == () and module.temperature.item() == 1.5
    torch.save(module.state_dict(), tmp_path / "t.pth")
    save_file(module.state_dict(), str(tmp_path / "torch.safetensors"))
    for name in ("t.safetensors", "t.pth", "torch.safetensors"):
        back = checkpoint.import_state_dict(str(tmp_path / name), variables)["params"]
        assert np.shape(back["temperature"]) == () and float(back["temperature"]) == 1.5, name
        np.testing.assert_array_equal(back["fc"]["kernel"], variables["params"]["fc"]["kernel"])

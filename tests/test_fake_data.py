"""FakeData (torchvision's convention): seeded random images of a real dataset's shape, named as
fake wherever they show, and the image experiments' whole pipelines run on them."""

from __future__ import annotations

import contextlib
import io
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from experiments import cifar10, linear_classifier, mnist
from jaxnets import data
from jaxnets.errors import ConfigError
from jaxnets.options import TrainOptions
from reference import seeds


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_a_fake_dataset_has_the_real_ones_shape_and_says_it_is_fake(name):
    train, test = data.load(f"fake_{name}", "train"), data.load(f"fake_{name}", "test")
    real = data.registry.entry(name)
    assert train.images.shape == (1000, *real.shape) and test.images.shape == (200, *real.shape)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
    assert train.class_names == real.class_names
    assert set(np.unique(train.labels)) <= set(range(len(real.class_names)))
    assert train.name == f"fake_{name}" and "FakeData" in train.source and "not " in train.source
    again = data.load(f"fake_{name}", "train")
    np.testing.assert_array_equal(again.images, train.images)   # seeded: the same every time
    assert not np.array_equal(train.images[:200], test.images)  # the splits differ


def run_quiet(module, config) -> tuple[dict, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = module.run(config)
    return metrics, out.getvalue()


def test_cifar10_runs_its_whole_pipeline_on_fake_data_and_exports_to_pytorch(tmp_path):
    """`--dataset fake_cifar10`: training, plots, the state_dict the tutorial's own `Net` loads,
    the reload and test; every output names the data as fake."""
    config = cifar10.Config(dataset="fake_cifar10", epochs=1, print_every=50,
                            options=TrainOptions(out=str(tmp_path), progress=False))
    metrics, printed = run_quiet(cifar10, config)
    assert metrics["dataset"] == "fake_cifar10" and "FakeData" in metrics["data_source"]
    assert "FakeData" in printed.splitlines()[0]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["dataset"] == "fake_cifar10" and len(saved["losses"]) == 250
    for png in ("train_images.png", "test_images.png", "loss_curve.png"):
        assert os.path.getsize(tmp_path / png) > 1000
    net = seeds.tutorial_net()   # the tutorial's Net, verbatim
    net.load_state_dict(load_file(str(tmp_path / "cifar_net.safetensors")))
    test = data.load("fake_cifar10", "test")
    x = torch.from_numpy(test.images.transpose(0, 3, 1, 2).copy()).float() / 255.0
    with torch.no_grad():
        predicted = net((x - 0.5) / 0.5).argmax(1).numpy()
    assert int((predicted == test.labels).sum()) == metrics["correct"]  # PyTorch agrees


def test_mnist_and_linear_classifier_take_fake_data_too(tmp_path):
    m, _ = run_quiet(mnist, mnist.Config(dataset="fake_mnist", steps=20, options=TrainOptions(
        out=str(tmp_path / "mnist"), progress=False)))
    assert m["dataset"] == "fake_mnist" and m["notice"] is None and len(m["losses"]) == 20
    lc, printed = run_quiet(linear_classifier, linear_classifier.Config(
        dataset="fake_fashion_mnist", epochs=1,
        options=TrainOptions(out=str(tmp_path / "linear"), progress=False)))
    assert lc["dataset"] == "fake_fashion_mnist" and "chance" in lc["baseline"]
    assert "fake_fashion_mnist" in printed


def test_fake_data_reads_no_folder():
    with pytest.raises(ConfigError, match="fake_cifar10 is made up, not read") as e:
        cifar10.Config(dataset="fake_cifar10", data_dir="/data/cifar")
    assert e.value.param == "data_dir"

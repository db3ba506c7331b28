"""jaxnets.options: the run options, declared once, flattened into what a checkpoint saves."""

from __future__ import annotations

import dataclasses

import pytest

from experiments import cli, mnist
from jaxnets import options
from jaxnets.errors import ConfigError
from jaxnets.options import RunOptions, TrainOptions


def test_a_config_saves_flat_and_says_what_may_differ_on_resume():
    config = mnist.Config(steps=30, options=TrainOptions(out="o", checkpoint_dir="c"))
    flat = options.settings(config)
    assert "options" not in flat and flat["out"] == "o" and flat["checkpoint_dir"] == "c"
    assert flat["steps"] == 30 and flat["lr"] == config.lr
    assert set(flat) == ({f.name for f in dataclasses.fields(mnist.Config)} - {"options"}
                         | {f.name for f in dataclasses.fields(TrainOptions)})
    free = options.may_differ(config)
    # where outputs go, how much is printed, checkpoint cadence, a longer run, another data folder
    assert {"out", "quiet", "progress", "tensorboard", "checkpoint_dir", "resume",
            "checkpoint_every", "keep_checkpoints", "steps", "data_dir"} <= free
    # what changes the numbers: the recipe, and the devices (float summation order)
    assert not free & {"lr", "batch_size", "seed", "optimizer", "hidden", "devices"}


def test_options_check_themselves_with_the_field_named():
    with pytest.raises(TypeError):
        RunOptions()  # no default folder: each experiment has its own
    for kw, param in [({"resume": True}, "resume"), ({"keep_checkpoints": 0}, "keep_checkpoints"),
                      ({"checkpoint_every": 0}, "checkpoint_every"), ({"devices": 0}, "devices"),
                      ({"coordinator": "h:1"}, "coordinator"),
                      ({"coordinator": "h:1", "num_processes": 2, "process_id": 2}, "process_id")]:
        with pytest.raises(ConfigError) as e:
            TrainOptions(out="o", **kw)
        assert e.value.param == param, kw
    with pytest.raises(ConfigError, match="batch_size: 100 must be a multiple of the 3 devices"):
        mnist.Config(options=TrainOptions(out="o", devices=3))


def test_every_experiment_has_its_own_folder_and_the_flags_of_its_options():
    from experiments import EXPERIMENTS, cifar10, lenet

    assert cli.default_options(cifar10.Config) == TrainOptions(out="runs/cifar10")
    assert type(cli.default_options(lenet.Config)) is RunOptions  # no training flags there
    text = cli.parser(lenet.Config, "").format_help()
    assert "--out" in text and "--checkpoint-dir" not in text and "--devices" not in text
    assert all(cli.default_options(__import__(f"experiments.{n}", fromlist=["Config"]).Config)
               .out == f"runs/{n}" for n in EXPERIMENTS)

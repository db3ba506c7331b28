"""Safety of runs: bad output places and inputs found before any work, atomic writes, one run
per output folder, one-line errors for impossible settings, a warning when the loss goes NaN."""

from __future__ import annotations

import importlib
import os

import pytest

from experiments import cli

EXPERIMENTS = ["autograd", "cifar10", "lenet", "linear_classifier", "mnist", "report",
               "resnet_step", "tensors", "thermometer", "two_layer"]


def _main_without_run(module, argv):
    """cli.main of an experiment with a `run` that fails the test if it is ever reached."""
    mod = importlib.import_module(f"experiments.{module}")

    def run(config):
        raise AssertionError("run (data loading, training) was reached")

    return cli.main(mod.Config, run, mod.__doc__, argv)


# --- 1. output places, devices and weights are checked before any data is loaded ---------------


@pytest.mark.parametrize("module", EXPERIMENTS)
def test_out_naming_a_file_fails_before_run(module, tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("x")
    assert _main_without_run(module, ["--out", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out" in err and "is not a folder" in err


@pytest.mark.parametrize("module", ["mnist", "resnet_step"])
def test_out_under_a_file_fails_before_run(module, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    assert _main_without_run(module, ["--out", str(tmp_path / "a_file" / "run")]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file, not a folder" in err


def test_unwritable_out_fails_before_run(tmp_path, monkeypatch, capsys):
    # (as root permissions do not stop a write; a read-only file system does, and os.access
    # reports both: simulated here)
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == str(locked)
                        else real(p, mode, **kw))
    assert _main_without_run("mnist", ["--out", str(locked / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_read_only_folder_fails_before_run(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert _main_without_run("mnist", ["--out", str(locked / "run")]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_checkpoint_dir_and_export_checked_before_run(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert _main_without_run("mnist", ["--out", str(tmp_path / "o"),
                                       "--checkpoint-dir", str(tmp_path / "f")]) == 2
    assert "--checkpoint-dir" in capsys.readouterr().err
    assert _main_without_run("resnet_step", ["--out", str(tmp_path / "o"), "--export",
                                             str(tmp_path / "f" / "w.safetensors")]) == 2
    assert "--export" in capsys.readouterr().err


@pytest.mark.parametrize("module,path", [("resnet_step", "missing.safetensors"),
                                         ("cifar10", "missing.safetensors"),
                                         ("cifar10", ".")])
def test_weights_unreadable_fails_before_run(module, path, tmp_path, capsys):
    assert _main_without_run(module, ["--out", str(tmp_path / "o"), "--weights",
                                      str(tmp_path / path)]) == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "cannot read it" in err


def test_more_devices_than_the_machine_fails_before_run(tmp_path, capsys):
    import jax

    n = 4 * jax.device_count()
    assert _main_without_run("mnist", ["--out", str(tmp_path / "o"), "--devices", str(n),
                                       "--batch-size", str(25 * n)]) == 2
    assert "--devices" in capsys.readouterr().err


def test_bad_out_never_loads_data(tmp_path, monkeypatch, capsys):
    """The real mnist.main: the data loader is never called."""
    from experiments import mnist

    def load_data(config):
        raise AssertionError("data loaded before --out was checked")

    monkeypatch.setattr(mnist, "load_data", load_data)
    (tmp_path / "f").write_text("x")
    assert mnist.main(["--out", str(tmp_path / "f")]) == 2
    assert "--out" in capsys.readouterr().err

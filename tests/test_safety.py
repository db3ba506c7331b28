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


# --- 2. every file we write is written atomically under a unique temporary name ---------------

_WRITER = """
import sys
from experiments import cli
path, tag = sys.argv[1], sys.argv[2]
for i in range({n}):
    cli.write_json(path, {{"writer": tag, "i": i, "payload": list(range(200))}})
"""


def test_concurrent_json_writers_and_a_reader(tmp_path):
    """Two processes write one metrics.json 400 times each while this one reads it: no writer
    fails (a shared fixed temporary name made them rename each other's files away) and every
    read is valid JSON."""
    import json
    import subprocess
    import sys

    path = str(tmp_path / "metrics.json")
    cli.write_json(path, {"writer": "first"})
    code = _WRITER.format(n=400)
    writers = [subprocess.Popen([sys.executable, "-c", code, path, tag],
                                stderr=subprocess.PIPE, text=True,
                                cwd=os.path.dirname(os.path.dirname(__file__)))
               for tag in ("a", "b")]
    reads = 0
    while any(w.poll() is None for w in writers) or reads == 0:
        with open(path) as f:
            json.loads(f.read())   # raises on a half-written file
        reads += 1
    errors = [w.stderr.read() for w in writers]
    assert [w.returncode for w in writers] == [0, 0], errors
    assert json.load(open(path))["i"] == 399
    assert os.listdir(tmp_path) == ["metrics.json"]   # no temporary file left


def _enospc(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def _write_then_fail(write):
    """A writer that writes a few bytes to its target, then fails as a full disk does."""
    def fail(*args, **kwargs):
        target = next(a for a in (*args, *kwargs.values())
                      if isinstance(a, str) or hasattr(a, "write"))
        if isinstance(target, str):
            with open(target, "wb") as f:
                f.write(b"\x89PNG half")
        else:
            target.write("{\"half\": ")
        _enospc()
    return fail


def test_failed_json_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import json

    path = str(tmp_path / "metrics.json")
    cli.write_json(path, {"ok": 1})
    monkeypatch.setattr(json, "dump", _write_then_fail(json.dump))
    with pytest.raises(OSError, match="No space"):
        cli.write_json(path, {"ok": 2})
    assert json.loads(open(path).read()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_failed_png_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from jaxnets import plots

    path = str(tmp_path / "loss.png")
    plots.loss_curve([3.0, 2.0, 1.0], path)
    before = open(path, "rb").read()
    assert before.startswith(b"\x89PNG")
    monkeypatch.setattr(Figure, "savefig", lambda self, fname, **kw: _write_then_fail(None)(fname))
    with pytest.raises(OSError, match="No space"):
        plots.loss_curve([1.0, 2.0], path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["loss.png"]


def test_failed_safetensors_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import numpy as np
    import safetensors.numpy

    from jaxnets import torch_io

    path = str(tmp_path / "w.safetensors")
    torch_io.save(path, {"w": np.ones(3, np.float32)})
    before = open(path, "rb").read()
    monkeypatch.setattr(safetensors.numpy, "save_file",
                        lambda tensors, filename, metadata=None: _write_then_fail(None)(filename))
    with pytest.raises(OSError, match="No space"):
        torch_io.save(path, {"w": np.zeros(3, np.float32)})
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["w.safetensors"]
    np.testing.assert_array_equal(torch_io.load(path)["w"], np.ones(3, np.float32))


def test_written_files_get_the_usual_mode(tmp_path):
    """mkstemp makes 0600 files; what we write is readable as a plain open() would make it."""
    path = str(tmp_path / "metrics.json")
    cli.write_json(path, {})
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


# --- 3. one run per output folder -------------------------------------------------------------

_HOLDER = """
import sys, time
from experiments import cli
with cli.output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_run_on_the_same_out_exits_2_at_once(tmp_path, capsys):
    import subprocess
    import sys

    out = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, out], stdout=subprocess.PIPE,
                              text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _main_without_run("mnist", ["--out", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--out" in err and "in use by another run" in err
        assert f"process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock is stale and the next run takes it over
    calls = []
    from experiments import mnist
    assert cli.main(mnist.Config, calls.append, None, ["--out", out]) == 0
    assert len(calls) == 1
    assert not os.path.exists(os.path.join(out, cli.OUT_LOCK))   # released after the run


def test_out_lock_is_released_after_an_error(tmp_path):
    from experiments import mnist
    from jaxnets.errors import DataError

    def run(config):
        assert os.path.exists(os.path.join(config.out, cli.OUT_LOCK))
        raise DataError("bad data")

    out = str(tmp_path / "run")
    assert cli.main(mnist.Config, run, None, ["--out", out]) == 2
    assert not os.path.exists(os.path.join(out, cli.OUT_LOCK))


def test_out_and_checkpoint_dir_may_be_one_folder(tmp_path):
    """The output lock and the checkpoint lock are different files."""
    from experiments import mnist

    folder = str(tmp_path / "both")
    calls = []

    def run(config):
        from jaxnets import checkpoint

        path = checkpoint.lock_folder(config.checkpoint_dir)
        checkpoint.unlock_folder(path)
        calls.append(path)

    assert cli.main(mnist.Config, run, None, ["--out", folder, "--checkpoint-dir", folder]) == 0
    assert calls

"""Safety of runs: bad output places and inputs found before any work, atomic writes, one run
per output folder, one-line errors for impossible settings, a warning when the loss goes NaN."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

import experiments
from experiments import cli
from jaxnets.options import TrainOptions

EXPERIMENTS = [*experiments.EXPERIMENTS, "report"]


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


@pytest.mark.parametrize("module,path,says", [
    ("resnet_step", "missing.safetensors", "cannot read (No such file"),
    ("cifar10", "missing.safetensors", "cannot read (No such file"),
    ("cifar10", ".", "is a directory, not a regular file")])
def test_weights_unreadable_fails_before_run(module, path, says, tmp_path, capsys):
    assert _main_without_run(module, ["--out", str(tmp_path / "o"), "--weights",
                                      str(tmp_path / path)]) == 2
    err = capsys.readouterr().err
    assert "--weights" in err and says in err


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


# --- 1b. every path flag: one check of its text, then the file system's own answer -------------

ALL = [*EXPERIMENTS, "custom_dataset", "lenet_nnx"]


def _path_flags():
    """(module, field) for every path field of every experiment (by the names cli checks)."""
    import dataclasses

    out = []
    for module in ALL:
        config_cls = importlib.import_module(f"experiments.{module}").Config
        for f in dataclasses.fields(config_cls):
            if f.name in cli._PATH_CHECKS:
                out.append((module, f.name))
    return out


def _argv(module, field, value, tmp_path):
    """A command line setting one path flag (and what it needs beside it)."""
    argv = [cli.flag(field), value]
    if field != "out" and "out" in cli._PATH_CHECKS and module != "report":
        argv += ["--out", str(tmp_path / "o")]
    if field in ("csv_file", "txt_file"):   # the two go together
        other = "txt_file" if field == "csv_file" else "csv_file"
        (tmp_path / "ok.txt").write_text("1\n")
        argv += [cli.flag(other), str(tmp_path / "ok.txt")]
    return argv


def _one_line_naming(capsys, flag):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {flag}: " in err, err
    return err


# The text fields that name no file or folder.
NOT_PATHS = {"section", "coordinator", "optimizer", "device", "conv_impl", "dataset", "only"}


def test_every_path_flag_is_known():
    """Every text field of every experiment is a path cli checks, or one of NOT_PATHS: a new
    path field under another name would otherwise be checked by nothing."""
    import dataclasses

    for module in ALL:
        config = importlib.import_module(f"experiments.{module}").Config
        fields = list(dataclasses.fields(config))
        for f in list(fields):   # the run options' fields, as the flags are made
            if f.name == "options":
                fields += dataclasses.fields(cli.default_options(config))
        for f in fields:
            if f.name != "options" and cli._field_type(f)[0] is str and f.name not in NOT_PATHS:
                assert f.name in cli._PATH_CHECKS, (module, f.name)


@pytest.mark.parametrize("module,field", _path_flags())
def test_an_empty_path_is_refused_before_run(module, field, tmp_path, capsys, monkeypatch):
    """Issue 23: --checkpoint-dir '' wrote step folders into the working folder, --out ''
    was a traceback, --tensorboard '' silently turned TensorBoard off."""
    monkeypatch.chdir(tmp_path)
    assert _main_without_run(module, _argv(module, field, "", tmp_path)) == 2
    _one_line_naming(capsys, cli.flag(field))
    assert sorted(os.listdir(tmp_path)) in ([], ["ok.txt"])


@pytest.mark.parametrize("field", ["out", "checkpoint_dir", "tensorboard"])
@pytest.mark.parametrize("where", ["long", "long_part", "proc", "sys"])
def test_output_folders_no_file_system_takes(field, where, tmp_path, capsys):
    """Longer than PATH_MAX, a name longer than NAME_MAX (ENAMETOOLONG), or in /proc or /sys
    (which root's os.access calls writable): one line naming the flag, before run."""
    path = {"long": str(tmp_path / ("a" * 250) / ("a" * 250)) * 9,
            "long_part": str(tmp_path / ("b" * 300) / "x"),
            "proc": "/proc/x", "sys": "/sys/kernel/x"}[where]
    assert _main_without_run("mnist", _argv("mnist", field, path, tmp_path)) == 2
    err = _one_line_naming(capsys, cli.flag(field))
    assert len(err) < 600, err    # the path is shortened in the message
    says = {"long": "the longest path a file system takes is", "long_part": "more than the 255",
            "proc": "cannot create a folder in /proc", "sys": "cannot create a folder in "
                                                              "/sys/kernel"}[where]
    assert says in err, err


def test_a_path_that_leaves_no_room_for_the_files_under_it(tmp_path, capsys):
    """A folder path that fits, but not with the names the run writes under it."""
    deep = str(tmp_path)
    while len(deep) < 4096 - 200:
        deep = os.path.join(deep, "d" * 100)
    assert _main_without_run("mnist", ["--out", deep]) == 2
    assert "and the run writes up to 256 more under it" in _one_line_naming(capsys, "--out")


def _path_of_length(base, length):
    """A path under base of exactly `length` bytes, in names of at most 200."""
    path = str(base)
    while len(path) < length:
        path = os.path.join(path, "p" * min(200, length - len(path) - 1))
    assert len(path) == length
    return path


def test_path_max_boundary(tmp_path):
    """PATH_MAX (4096) counts the terminating NUL: 4095 bytes are the longest path; with
    `room`, what the run adds under it counts too."""
    from jaxnets.errors import ConfigError

    cli.check_path(_path_of_length(tmp_path, 4095), "out")
    with pytest.raises(ConfigError, match="longest path a file system takes is 4,095"):
        cli.check_path(_path_of_length(tmp_path, 4096), "out")
    cli.check_path(_path_of_length(tmp_path, 4095 - 256), "out", room=256)
    with pytest.raises(ConfigError, match="and the run writes up to 256 more under it"):
        cli.check_path(_path_of_length(tmp_path, 4096 - 256), "out", room=256)
    cli.check_path(str(tmp_path / ("n" * 255)), "out")
    with pytest.raises(ConfigError, match="is 256 bytes, more than the 255"):
        cli.check_path(str(tmp_path / ("n" * 256)), "out")


@pytest.mark.parametrize("path", ["/proc/x.safetensors", "/sys/kernel/x.safetensors"])
def test_export_where_nothing_can_be_created(path, tmp_path, capsys):
    """Issue 23: a traceback after the training step."""
    assert _main_without_run("resnet_step", _argv("resnet_step", "export", path, tmp_path)) == 2
    assert "cannot create a file in" in _one_line_naming(capsys, "--export")


def _within(seconds, fn, *args):
    """fn(*args), failing the test if it has not returned after `seconds` (a hang)."""
    import threading

    result, raised = [], []

    def call():
        try:
            result.append(fn(*args))
        except BaseException as e:  # noqa: BLE001 (raised again in the test's thread)
            raised.append(e)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if raised:
        raise raised[0]
    return result[0]


@pytest.mark.parametrize("module,field", [(m, f) for m, f in _path_flags()
                                          if f in cli.INPUT_FILES])
@pytest.mark.parametrize("kind", ["fifo", "char_device", "folder"])
def test_an_input_file_that_is_not_a_regular_file(module, field, kind, tmp_path, capsys,
                                                  monkeypatch):
    """Issue 23: --weights naming a FIFO hung for ever (opening it waits for a writer); a
    device (/dev/zero) reads without end. Refused from its stat, without opening it."""
    path = {"fifo": str(tmp_path / "w.safetensors"), "char_device": "/dev/zero",
            "folder": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    real_open = os.open

    def never_this_one(name, *args, **kwargs):
        assert os.fspath(name) != path, f"{path} was opened"
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(os, "open", never_this_one)
    code = _within(20, _main_without_run, module, _argv(module, field, path, tmp_path))
    assert code == 2
    err = _one_line_naming(capsys, cli.flag(field))
    assert "is " + {"fifo": "a FIFO (named pipe)", "char_device": "a device",
                    "folder": "a directory"}[kind] + ", not a regular file" in err


def test_export_over_an_existing_fifo_or_device_is_refused(tmp_path, capsys):
    """The atomic write renames a new file over the target: a FIFO (as root, even /dev/null)
    would be replaced by a regular file."""
    fifo = tmp_path / "e.safetensors"
    os.mkfifo(fifo)
    assert _main_without_run("resnet_step", _argv("resnet_step", "export", str(fifo),
                                                  tmp_path)) == 2
    assert "exists and is not a regular file (a FIFO)" in _one_line_naming(capsys, "--export")
    import stat

    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("value,says", [("missing", "no such folder"),
                                        ("file", "is not a folder")])
def test_data_dir_is_checked_before_run(value, says, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    path = str(tmp_path / value)
    assert _main_without_run("mnist", _argv("mnist", "data_dir", path, tmp_path)) == 2
    assert says in _one_line_naming(capsys, "--data-dir")


def test_the_longest_names_that_fit_are_accepted(tmp_path):
    """The limits are the file system's: a 255-byte name is fine, and a 240-byte export name,
    whose temporary name would be longer than 255 bytes, is written (the temporary's name is
    cut to fit)."""
    from jaxnets import atomic

    cli.check_early(types_config(out=str(tmp_path / ("n" * 255))))
    target = str(tmp_path / ("c" * 240 + ".safetensors"))
    cli.check_writable_file(target, "export")
    with atomic.replacing(target) as tmp:
        assert len(os.path.basename(tmp)) <= 255
        Path(tmp).write_text("ok")
    assert Path(target).read_text() == "ok"


def types_config(**fields):
    """A frozen dataclass instance with the given fields (a stand-in Config)."""
    import dataclasses

    cls = dataclasses.make_dataclass("C", [(k, type(v)) for k, v in fields.items()],
                                     frozen=True)
    return cls(**fields)


def test_path_fields_inside_a_grouped_config_are_checked(tmp_path):
    """A Config groups its run options in one field (jaxnets.options): the same checks."""
    from jaxnets.errors import ConfigError
    from jaxnets.options import RunOptions

    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError) as e:
        cli.check_early(types_config(lr=0.1, options=RunOptions(out=str(tmp_path / "a_file"))))
    assert e.value.param == "out"
    cli.check_early(types_config(lr=0.1, options=RunOptions(out=str(tmp_path), quiet=True)))


def test_checks_leave_nothing_behind(tmp_path):
    """The probes create and remove their temporary file or folder."""
    cli.check_writable_folder(str(tmp_path / "new" / "deeper"), "out")
    cli.check_writable_folder(str(tmp_path), "out")
    cli.check_writable_file(str(tmp_path / "x.safetensors"), "export")
    assert os.listdir(tmp_path) == []


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
    assert json.loads(Path(path).read_text())["i"] == 399
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
    assert json.loads(Path(path).read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_failed_png_write_keeps_the_previous_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from jaxnets import plots

    path = str(tmp_path / "loss.png")
    plots.loss_curve([3.0, 2.0, 1.0], path)
    before = Path(path).read_bytes()
    assert before.startswith(b"\x89PNG")
    monkeypatch.setattr(Figure, "savefig", lambda self, fname, **kw: _write_then_fail(None)(fname))
    with pytest.raises(OSError, match="No space"):
        plots.loss_curve([1.0, 2.0], path)
    assert Path(path).read_bytes() == before
    assert os.listdir(tmp_path) == ["loss.png"]


def test_failed_safetensors_write_keeps_the_previous_file(tmp_path, monkeypatch):
    import numpy as np
    import safetensors.numpy

    from jaxnets import torch_io

    path = str(tmp_path / "w.safetensors")
    torch_io.save(path, {"w": np.ones(3, np.float32)})
    before = Path(path).read_bytes()
    monkeypatch.setattr(safetensors.numpy, "save_file",
                        lambda tensors, filename, metadata=None: _write_then_fail(None)(filename))
    with pytest.raises(OSError, match="No space"):
        torch_io.save(path, {"w": np.zeros(3, np.float32)})
    assert Path(path).read_bytes() == before
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
        assert os.path.exists(os.path.join(config.options.out, cli.OUT_LOCK))
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

        path = checkpoint.lock_folder(config.options.checkpoint_dir)
        checkpoint.unlock_folder(path)
        calls.append(path)

    assert cli.main(mnist.Config, run, None, ["--out", folder, "--checkpoint-dir", folder]) == 0
    assert calls


# --- 4. one line, exit 2, instead of a traceback or an abort -----------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*argv, timeout=300):
    """Run `python -m experiments.<argv>` in a subprocess: (exit status, stderr lines). mnist
    runs on Fashion-MNIST explicitly, so no MNIST lookup or fallback notice comes first."""
    import subprocess
    import sys

    if argv[0] == "experiments.mnist" and "--dataset" not in argv:
        argv = (*argv, "--dataset", "fashion_mnist")
    p = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True,
                       cwd=ROOT, timeout=timeout, check=False)
    return p.returncode, p.stderr.splitlines()


def _dataset(n=200, value=None, seed=0):
    """A small MNIST-shaped Dataset (random images, or all `value`)."""
    import numpy as np

    from jaxnets import data as D

    rng = np.random.default_rng(seed)
    images = (rng.integers(0, 256, (n, 28, 28, 1)) if value is None
              else np.full((n, 28, 28, 1), value)).astype(np.uint8)
    labels = rng.integers(0, 10, n).astype(np.int32)
    return D.Dataset("mnist", "train", images, labels, tuple(map(str, range(10))), "synthetic")


@pytest.mark.parametrize("module", EXPERIMENTS)
@pytest.mark.parametrize("seed", [2**63, -1])
def test_seed_out_of_range_is_one_line(module, seed, tmp_path, capsys):
    import dataclasses

    config_cls = importlib.import_module(f"experiments.{module}").Config
    if "seed" not in {f.name for f in dataclasses.fields(config_cls)}:
        pytest.skip(f"{module} has no seed")
    assert _main_without_run(module, ["--out", str(tmp_path), "--seed", str(seed)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--seed: must be in 0 .. " in err


def test_largest_seed_runs():
    from experiments import tensors

    config, _ = cli.parse(tensors.Config, None, ["--seed", str(2**63 - 1)])
    import jax

    jax.random.key(config.seed)   # the bound is what jax takes


@pytest.mark.slow  # subprocesses: a python with jax each
def test_impossible_batch_size_is_one_line_not_an_abort(tmp_path):
    """Today's abort inside XLA (exit 134) killed the process; run in a subprocess."""
    code, err = _cli("experiments.mnist", "--batch-size", str(10**12), "--steps", "2",
                     "--out", str(tmp_path), "--quiet")
    assert code == 2 and len(err) == 1, err
    assert "--batch-size" in err[0] and "2,147,483,647" in err[0]


def test_batch_larger_than_memory_is_refused_before_compiling():
    import numpy as np

    from jaxnets import train

    data = {"image": np.zeros((10, 28, 28, 1), np.uint8), "label": np.zeros(10, np.int32)}
    # 1000 examples * (785 * 4 bytes + 8 * 10 steps) = 3.22 MB
    train.check_batch_fits(data, 1000, 10, memory=4 * 10**6)
    with pytest.raises(train.ConfigError, match="needs at least .* GiB, more than") as e:
        train.check_batch_fits(data, 1000, 10, memory=3 * 10**6)
    assert e.value.param == "batch_size"


def test_run_training_refuses_a_batch_over_the_limit():
    import numpy as np

    from experiments import mnist
    from jaxnets import train

    config = mnist.Config(steps=2, batch_size=2**31)
    keys = train.split_keys(0)
    state = mnist.init_state(config, keys.init)
    with pytest.raises(train.ConfigError, match="examples a batch can hold"):
        train.run_training(state, mnist.train_step(state.apply_fn),
                           {"image": np.zeros((10, 28, 28, 1), np.uint8),
                            "label": np.zeros(10, np.int32)},
                           mnist.sampler(config, 10, keys.data), 2, keys,
                           TrainOptions(out=".", progress=False))


def _mount_tmpfs(path, size="200k"):
    import subprocess

    path.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, check=False)
    if p.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    return lambda: subprocess.run(["umount", str(path)], check=False)


@pytest.mark.slow  # subprocesses: a python with jax each
def test_full_disk_while_saving_a_checkpoint_is_one_line(tmp_path):
    """A real full disk: a 200 KiB tmpfs, too small for mnist's first checkpoint."""
    small = tmp_path / "small"
    umount = _mount_tmpfs(small)
    try:
        code, err = _cli("experiments.mnist", "--steps", "30", "--checkpoint-every", "10",
                         "--checkpoint-dir", str(small / "c"), "--out", str(tmp_path / "o"),
                         "--quiet")
    finally:
        umount()
    assert code == 2 and len(err) == 1, err
    assert "--checkpoint-dir" in err[0] and "no space left on device" in err[0]


def test_full_disk_while_saving_a_checkpoint_simulated(tmp_path, monkeypatch, capsys):
    """ENOSPC as orbax reports it (a ValueError from tensorstore, in a save or in the wait for
    the pending one): one CheckpointError line naming the folder, exit 2, lock released."""
    import orbax.checkpoint as ocp

    from experiments import mnist
    from jaxnets import checkpoint

    def save(self, step, *args, **kwargs):
        raise ValueError('RESOURCE_EXHAUSTED: Error writing "params.w1/0.0": Failed to write '
                         "1026457 bytes to file 4: No space left on device [os_error_code='28']")

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    small = (_dataset(), _dataset(seed=1))
    folder = tmp_path / "c"
    assert cli.main(mnist.Config, lambda c: mnist.run(c, data=small), None,
                    ["--steps", "20", "--checkpoint-every", "10", "--checkpoint-dir",
                     str(folder), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l]
    assert len(err) == 1 and "no space left on device" in err[0], err
    assert not (folder / checkpoint.LOCK).exists()


@pytest.mark.slow  # subprocesses: a python with jax each
def test_damaged_checkpoint_resume_prints_one_line(tmp_path):
    """A resume from a damaged checkpoint via the command line: exactly one line on stderr
    (no 'Event loop is closed' or orbax log noise after it)."""
    folder, out = str(tmp_path / "c"), str(tmp_path / "o")
    code, err = _cli("experiments.mnist", "--steps", "20", "--checkpoint-every", "20",
                     "--checkpoint-dir", folder, "--out", out, "--quiet")
    assert code == 0, err
    files = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(folder, "20", "state"))
             for f in fs]
    biggest = max(files, key=os.path.getsize)
    with open(biggest, "r+b") as f:
        f.seek(os.path.getsize(biggest) // 2)
        f.write(os.urandom(4096))
    for _ in range(4):  # the noise came in about half of the runs
        code, err = _cli("experiments.mnist", "--steps", "30", "--checkpoint-dir", folder,
                         "--out", out, "--quiet", "--resume")
        assert code == 2 and len(err) == 1, err
        assert "damaged" in err[0]


def test_library_parameter_without_a_flag_is_not_named_as_one(tmp_path, capsys):
    """run_training's num_steps has no --num-steps flag in mnist (its flag is --steps)."""
    from experiments import mnist
    from jaxnets.errors import CheckpointError

    def run(config):
        raise CheckpointError("holds 20 steps, more than this run's 10", param="num_steps")

    assert cli.main(mnist.Config, run, None, ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--num-steps" not in err and "holds 20 steps" in err


def test_closed_loop_callbacks_are_quiet_other_unraisables_are_not(monkeypatch):
    """The hook Checkpoints installs drops exactly the late 'Event loop is closed' callback and
    hands every other unraisable exception to the hook before it."""
    import asyncio
    import sys

    from jaxnets import checkpoint

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
    checkpoint._quiet_closed_loop_noise()
    hook = sys.unraisablehook
    checkpoint._quiet_closed_loop_noise()   # once per process, not chained twice
    assert sys.unraisablehook is hook

    def unraisable(e):
        return type("U", (), {"exc_type": type(e), "exc_value": e, "exc_traceback":
                              e.__traceback__, "err_msg": None, "object": None})()

    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        sys.unraisablehook(unraisable(e))
    try:
        raise RuntimeError("Event loop is closed")   # the same text from elsewhere: kept
    except RuntimeError as e:
        sys.unraisablehook(unraisable(e))
    try:
        raise RuntimeError("something else")
    except RuntimeError as e:
        sys.unraisablehook(unraisable(e))
    assert seen == ["Event loop is closed", "something else"]


# --- 5. a loss that becomes NaN or inf is said once -------------------------------------------


@pytest.mark.slow  # subprocesses: a python with jax each
def test_lr_1e30_warns_once_on_the_command_line(tmp_path):
    code, err = _cli("experiments.mnist", "--lr", "1e30", "--steps", "20", "--out",
                     str(tmp_path), "--quiet")
    assert code == 0, err
    assert len(err) == 1 and err[0].startswith("python -m experiments.mnist: warning: loss "
                                               "became "), err
    assert "at step " in err[0] and "learning rate may be too large" in err[0]


def test_all_black_images_warn_once_at_step_1_and_keep_the_numbers(tmp_path):
    """The seed's x / x.max() divides 0 by 0 on an all-zero batch: the loss is NaN from step 1.
    Several chunks, one warning; the metrics are what the run computes, NaN included."""
    import numpy as np

    from experiments import mnist
    from jaxnets import train

    config = mnist.Config(steps=12, batch_size=10,
                          options=TrainOptions(progress=False, quiet=True, out=str(tmp_path)))
    black = _dataset(n=50, value=0)
    keys = train.split_keys(0)
    state = mnist.init_state(config, keys.init)
    said = []
    _, history = train.run_training(
        state, mnist.train_step(state.apply_fn), {"image": black.images, "label": black.labels},
        mnist.sampler(config, len(black), keys.data), config.steps, keys, config.options,
        chunk_size=4, warn=said.append)
    assert len(said) == 1 and said[0].startswith("loss became nan at step 1:"), said
    assert np.isnan(history.metrics["loss"]).all() and len(history.metrics["loss"]) == 12


def test_warning_reaches_the_experiment_through_cli_main(tmp_path, capsys):
    """mnist.run does not pass warn=: the default JaxnetsWarning, printed by cli.main as one
    line; a finite run says nothing."""
    from experiments import mnist

    black, grey = _dataset(n=50, value=0), _dataset(n=50)
    argv = ["--steps", "8", "--batch-size", "10", "--out", str(tmp_path), "--quiet",
            "--no-progress"]
    assert cli.main(mnist.Config, lambda c: mnist.run(c, data=(black, grey)), None, argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [l for l in err if "warning: loss became nan at step 1:" in l] and len(err) == 1
    assert cli.main(mnist.Config, lambda c: mnist.run(c, data=(grey, grey)), None, argv) == 0
    assert capsys.readouterr().err == ""


def test_non_finite_loss_names_the_first_bad_step():
    import numpy as np

    from jaxnets import train

    assert train.non_finite_loss(np.array([1.0, 2.0]), 1) is None
    assert train.non_finite_loss(np.array([1.0, np.inf, np.nan]), 11).startswith(
        "loss became inf at step 12:")


def test_full_disk_while_writing_the_outputs_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    from experiments import mnist

    def run(config):
        cli.write_json(os.path.join(config.options.out, "metrics.json"), {"ok": 1})
        raise OSError(errno.ENOSPC, "No space left on device",
                      os.path.join(config.options.out, "loss_curve.png"))

    assert cli.main(mnist.Config, run, None, ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "loss_curve.png: No space left on device" in err[0], err

    def bug(config):
        raise FileNotFoundError(2, "a bug, not the disk")

    with pytest.raises(FileNotFoundError):   # other OS errors stay tracebacks
        cli.main(mnist.Config, bug, None, ["--out", str(tmp_path)])


def test_output_piped_into_head_still_writes_the_files(tmp_path):
    """`python -m experiments.thermometer | head -1`: the reader goes away after one line; the
    run still writes metrics.json and its plots, with no traceback and exit status 0."""
    import subprocess
    import sys

    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "experiments.thermometer", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()                      # what head does after its line
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert first and proc.returncode == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert (out / "metrics.json").is_file() and (out / "loss_curve.png").is_file()


@pytest.mark.slow  # three subprocesses
def test_damaged_compile_cache_entry_is_one_line_and_the_same_result(tmp_path):
    """Bytes flipped inside a compile cache entry: the run compiles that program again and gives
    the same numbers, and says so in one line naming the folder to delete (JAX's own warning is
    two lines with its source path, every run, since it never writes over the entry)."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE",
                        "JAXNETS_COMPILE_CACHE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "home")

    def run(out):
        p = subprocess.run([sys.executable, "-m", "experiments.mnist", "--dataset",
                            "fashion_mnist", "--steps", "20", "--quiet", "--out", str(out)],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        return [line for line in p.stderr.splitlines() if line], json.load(
            open(out / "metrics.json"))

    err, first = run(tmp_path / "a")
    assert not err, err
    folder = tmp_path / "home" / "jaxnets" / "xla"
    entry = max(folder.glob("jit_run_steps-*-cache"), key=lambda p: p.stat().st_size)
    data = bytearray(entry.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    entry.write_bytes(bytes(data))
    for out in ("b", "c"):   # said again on the next run: the entry is still damaged
        err, again = run(tmp_path / out)
        assert len(err) == 1 and "compile cache entry is damaged" in err[0], err
        assert str(folder) in err[0] and "delete" in err[0], err
        assert again["losses"] == first["losses"]
        assert again["test_accuracy"] == first["test_accuracy"]


# --- 6. messages that send the user the right way (issue 23 s6) ------------------------------


def _cache_env(monkeypatch, **env):
    """The compile cache's environment, as a user without the suite's settings has it."""
    for name in ("JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME", "JAXNETS_COMPILE_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _run_seeing_the_cache(tmp_path, argv=()):
    """cli.main of mnist with a run that records JAX's cache settings: (exit, stderr lines,
    settings)."""
    import jax

    from experiments import mnist

    seen = {}

    def run(config):
        seen.update(enabled=jax.config.jax_enable_compilation_cache,
                    folder=jax.config.jax_compilation_cache_dir)

    code = cli.main(mnist.Config, run, None, ["--out", str(tmp_path / "o"), *argv])
    return code, seen


def test_cache_folder_that_is_the_users_file(tmp_path, monkeypatch, capsys):
    """Issue 23: JAX_COMPILATION_CACHE_DIR naming a file: each program was said to be a damaged
    entry, and the advice was to delete the user's file. Now: one line, the cache off for the
    run (JAX told too: it reads that variable itself), the file untouched."""
    import jax

    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    _cache_env(monkeypatch, JAX_COMPILATION_CACHE_DIR=str(notes))
    before = jax.config.jax_enable_compilation_cache
    code, seen = _run_seeing_the_cache(tmp_path)
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert code == 0 and seen["enabled"] is False
    assert len(err) == 1 and "compile cache off for this run: $JAX_COMPILATION_CACHE_DIR (" \
        f"{notes}) is not a folder; point JAX_COMPILATION_CACHE_DIR at a writable folder" \
        in err[0], err
    assert "delete" not in err[0]
    assert notes.read_text() == "precious"
    assert jax.config.jax_enable_compilation_cache == before     # restored after the run


def test_cache_folder_that_cannot_be_created(tmp_path, monkeypatch, capsys):
    """Issue 23: HOME read-only (here: its cache folder under a file, which any user can make)
    said 'delete ~/.cache/jaxnets/xla', a folder that does not exist."""
    (tmp_path / "file").write_text("x")
    _cache_env(monkeypatch, XDG_CACHE_HOME=str(tmp_path / "file" / "cache"))
    code, seen = _run_seeing_the_cache(tmp_path)
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert code == 0 and seen["enabled"] is False
    assert len(err) == 1 and f"{tmp_path / 'file' / 'cache' / 'jaxnets' / 'xla'} cannot be " \
        "created (Not a directory)" in err[0] and "delete" not in err[0], err


def test_cache_folder_on_a_read_only_file_system(tmp_path, monkeypatch, capsys):
    """The issue's case itself: HOME on a read-only file system (a read-only tmpfs; root
    cannot write there either)."""
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(home)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        _cache_env(monkeypatch, HOME=str(home))
        code, _ = _run_seeing_the_cache(tmp_path)
    finally:
        subprocess.run(["umount", str(home)], check=False)
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert code == 0
    assert len(err) == 1 and "cannot be created (Read-only file system)" in err[0], err


def test_no_compile_cache_also_tells_jax(tmp_path, monkeypatch):
    """JAX reads JAX_COMPILATION_CACHE_DIR on its own: --no-compile-cache (or
    JAXNETS_COMPILE_CACHE=0) used to leave it caching there."""
    _cache_env(monkeypatch, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
    assert _run_seeing_the_cache(tmp_path, ["--no-compile-cache"])[1]["enabled"] is False
    monkeypatch.setenv("JAXNETS_COMPILE_CACHE", "0")
    assert _run_seeing_the_cache(tmp_path)[1]["enabled"] is False
    monkeypatch.delenv("JAXNETS_COMPILE_CACHE")
    assert _run_seeing_the_cache(tmp_path) == (0, {"enabled": True,
                                                   "folder": str(tmp_path / "cache")})


@pytest.mark.parametrize("what,deletes", [
    ("'jit_run_steps': XlaRuntimeError: INVALID_ARGUMENT: bad entry", True),
    ("'jit__split_seed': NotADirectoryError: [Errno 20] Not a directory: '/x'", False),
    ("'jit__split_seed': PermissionError: [Errno 13] Permission denied: '/x'", False)])
def test_damaged_entry_advice_names_only_a_real_cache_folder(what, deletes, tmp_path,
                                                            monkeypatch, capsys):
    from experiments import mnist

    _cache_env(monkeypatch, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    cli._show_warning(mnist.Config, f"{cli._CACHE_READ_ERROR} {what}", UserWarning, "x.py", 1)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (f"delete {tmp_path / 'cache'}" in err) == deletes, err
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "missing"))
    cli._show_warning(mnist.Config, f"{cli._CACHE_READ_ERROR} {what}", UserWarning, "x.py", 1)
    assert "delete" not in capsys.readouterr().err   # no such folder: never 'delete it'


# a lock file whose pid is alive but is not the run that wrote it


def _lock_words(path):
    return Path(path).read_text().split()


def test_a_lock_records_pid_host_boot_and_start_time(tmp_path):
    import socket

    from jaxnets import checkpoint

    path = checkpoint.lock_folder(str(tmp_path))
    pid, host, boot, start = _lock_words(path)
    assert int(pid) == os.getpid() and host == socket.gethostname()
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert start == checkpoint._start_time(os.getpid()) != "-"
    checkpoint.unlock_folder(path)


def test_start_time_is_when_the_process_started():
    """The known answer: a process started now has a start time (clock ticks since boot, plus
    the boot time in /proc/stat) of about now."""
    import subprocess
    import sys
    import time

    from jaxnets import checkpoint

    with open("/proc/stat") as f:
        boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    started = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ticks = int(checkpoint._start_time(child.pid))
    finally:
        child.kill()
        child.wait()
    assert abs(boot + ticks / os.sysconf("SC_CLK_TCK") - started) < 5
    assert checkpoint._start_time(child.pid) == "-"      # gone


@pytest.mark.parametrize("stale", ["other_start", "other_boot", "dead_pid"])
def test_a_lock_of_a_process_that_has_ended_is_taken_over(stale, tmp_path):
    """pid 1 is alive, but it did not write this lock (another start time: the pid was reused,
    or the lock is from before a reboot): the lock is stale."""
    import subprocess
    import sys

    from jaxnets import checkpoint

    path = checkpoint.lock_folder(str(tmp_path))
    words = _lock_words(path)
    if stale == "other_start":
        words[0], words[3] = "1", str(int(checkpoint._start_time(1)) + 12345)
    elif stale == "other_boot":
        words[0], words[2] = "1", "00000000-0000-0000-0000-000000000000"
    else:
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        words[0] = gone.stdout.strip()
    Path(path).write_text(" ".join(words) + "\n")
    again = checkpoint.lock_folder(str(tmp_path))
    assert int(_lock_words(again)[0]) == os.getpid()
    checkpoint.unlock_folder(again)


def test_a_live_holder_is_refused_with_the_way_out(tmp_path, capsys):
    """A lock naming a live process that cannot be told apart (an older jaxnets' 'pid host'
    lock): refused, and the message says which file to delete if no run is using it."""
    import socket

    lock = tmp_path / "o" / cli.OUT_LOCK
    lock.parent.mkdir()
    lock.write_text(f"1 {socket.gethostname()}\n")
    assert _main_without_run("mnist", ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use by another run (process 1" in err
    assert f"if no run of ours is using it, delete {lock})" in err


def test_a_live_holder_of_this_version_is_refused(tmp_path):
    """The real holder (its start time matches): still refused."""
    import subprocess
    import sys

    from jaxnets import checkpoint
    from jaxnets.errors import CheckpointError

    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "o")],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CheckpointError, match=f"process {holder.pid} "):
            checkpoint.lock_folder(str(tmp_path / "o"), cli.OUT_LOCK)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


# temporaries of a writer killed mid-write

_KILLED_WRITER = """
import os, signal, sys
from jaxnets import atomic
with atomic.replacing(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"half a file")
    os.kill(os.getpid(), signal.SIGKILL)
"""

_SLOW_WRITER = """
import sys, time
from jaxnets import atomic
with atomic.replacing(sys.argv[1]) as tmp:
    open(tmp, "wb").write(b"being written")
    print("writing", flush=True)
    time.sleep(120)
"""


def _killed_write(path):
    import signal
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path)], cwd=ROOT, check=False)
    assert p.returncode == -signal.SIGKILL
    left = [n for n in os.listdir(path.parent) if n != path.name]
    assert len(left) == 1 and left[0].startswith(f".{path.name}.")
    assert left[0].endswith(".jaxnets-tmp")
    return left[0]


def test_sigkill_during_a_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    """Issue 23: SIGKILL during a write left .loss_curve.png.<random>.tmp for good."""
    from jaxnets import atomic

    target = tmp_path / "loss_curve.png"
    _killed_write(target)
    (tmp_path / "elsewhere").mkdir()
    other = _killed_write(tmp_path / "elsewhere" / "metrics.json")
    os.rename(tmp_path / "elsewhere" / other, tmp_path / other)
    with atomic.replacing(str(target)) as tmp:
        Path(tmp).write_text("whole")
    # a write clears its own file's leftovers only (a folder's: remove_stale, by the CLI)
    assert sorted(os.listdir(tmp_path)) == sorted([other, "elsewhere", "loss_curve.png"])
    assert target.read_text() == "whole"
    assert atomic.remove_stale(str(tmp_path)) == [other]


def test_the_next_run_removes_the_temporaries_of_a_killed_one(tmp_path):
    """Through the CLI: the output folder's stale temporaries go when a run takes the folder,
    whichever files that run writes."""
    from experiments import mnist

    out = tmp_path / "o"
    out.mkdir()
    _killed_write(out / "loss_curve.png")
    (out / ".notes.txt.tmp").write_text("not ours: kept")
    assert cli.main(mnist.Config, lambda c: None, None, ["--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == [".notes.txt.tmp"]


def test_a_temporary_being_written_is_not_removed(tmp_path):
    """Another process's write in progress holds its temporary's lock: it stays, and the
    writer's rename still works."""
    import subprocess
    import sys

    from jaxnets import atomic

    target = tmp_path / "metrics.json"
    writer = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert atomic.remove_stale(str(tmp_path)) == []
        assert len(os.listdir(tmp_path)) == 1
        with atomic.replacing(str(target)) as tmp:    # another write of the same file
            Path(tmp).write_text("{}")
        assert len(os.listdir(tmp_path)) == 2         # the writer's temporary is still there
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert atomic.remove_stale(str(tmp_path)) != []   # now it is stale
    assert os.listdir(tmp_path) == ["metrics.json"]


# a run that fails before writing anything leaves no folder behind


@pytest.mark.parametrize("exists", [False, True])
def test_a_run_that_fails_while_loading_leaves_no_empty_out(exists, tmp_path, capsys):
    from experiments import mnist
    from jaxnets.errors import DataError

    out = tmp_path / "new" / "run"
    if exists:
        out.mkdir(parents=True)

    def run(config):
        assert os.path.isdir(config.options.out)
        raise DataError("bad data")

    assert cli.main(mnist.Config, run, None, ["--out", str(out)]) == 2
    if exists:
        assert out.is_dir() and os.listdir(out) == []     # not ours to remove
    else:
        assert not (tmp_path / "new").exists()            # both folders it made


def test_a_run_that_wrote_keeps_its_out(tmp_path):
    from experiments import mnist

    out = tmp_path / "run"

    def run(config):
        cli.write_json(os.path.join(config.options.out, "metrics.json"), {})

    assert cli.main(mnist.Config, run, None, ["--out", str(out)]) == 0
    assert os.listdir(out) == ["metrics.json"]


def test_failed_load_through_the_real_experiment(tmp_path, capsys):
    """mnist with a data folder that holds no dataset: one line, no output folder made."""
    from experiments import mnist

    (tmp_path / "empty").mkdir()
    out = tmp_path / "o" / "run"
    assert mnist.main(["--data-dir", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "--data-dir" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

"""The experiments' command line: flags generated from each Config, errors naming flags,
answers without jax, the compile cache, the reporter."""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import experiments
from experiments import cli
from jaxnets.errors import CheckpointError, ConfigError
from jaxnets.options import TrainOptions

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = [*experiments.EXPERIMENTS, "report"]


def _module(name):
    return importlib.import_module(f"experiments.{name}")


def _bad_value(config_cls) -> tuple[list[str], str]:
    """A command line argparse rejects, and the start of its error: a word for the first
    number, else a name that is not one of the choices."""
    for f, _ in cli.flag_fields(config_cls):
        kind = cli._field_type(f)[0]
        if kind in (int, float):
            return [cli.flag(f.name), "0.5x"], f"{cli.flag(f.name)}: invalid {kind.__name__} value"
    for f, _ in cli.flag_fields(config_cls):
        if f.metadata.get("choices"):
            return [cli.flag(f.name), "nope"], f"{cli.flag(f.name)}: invalid choice: 'nope'"
    raise AssertionError(f"{config_cls}: no field to give a bad value")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_field_has_a_flag_and_every_flag_a_field(name):
    mod = _module(name)
    p = cli.parser(mod.Config, mod.__doc__)
    dests = {a.dest for a in p._actions if a.dest != "help"}
    run_options = cli.default_options(mod.Config)
    fields = {f.name for f in dataclasses.fields(mod.Config)} - {"options"}
    fields |= {f.name for f in dataclasses.fields(run_options)}  # flattened into flags
    assert dests == fields | {f.name for f in dataclasses.fields(cli.Common)}
    options = {a.dest: a.option_strings for a in p._actions}
    for f, default in cli.flag_fields(mod.Config):
        negated = default is True  # a bool that is on by default: --no-<name>
        assert options[f.name] == [cli.flag(("no_" if negated else "") + f.name)], f.name
        assert f.metadata.get("help"), f"{name}: {f.name} has no help text"
    assert run_options.out == f"runs/{name}"  # each experiment writes into its own folder
    # The defaults are the Config's: parsing nothing gives Config().
    config, common = cli.parse(mod.Config, mod.__doc__, [])
    assert config == mod.Config() and common == cli.Common()
    assert mod.__doc__.splitlines()[0] in p.format_help()


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_a_bad_value_names_the_flag(name, capsys):
    mod = _module(name)
    argv, message = _bad_value(mod.Config)
    assert mod.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"python -m experiments.{name}: error: {message}")


def _field(config_cls, flag):
    return next(f for f in dataclasses.fields(config_cls) if cli.flag(f.name) == flag)


@pytest.mark.parametrize("argv, message", [
    (["--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["--lr", "nan"], "--lr: must be a finite number > 0, got nan"),
    (["--devices", "3"], "--batch-size: 100 must be a multiple of the 3 devices"),
    (["--resume"], "--resume: needs --checkpoint-dir (the folder to resume from)"),
    (["--coordinator", "h:1"], ("--coordinator: multi-host needs --num-processes and "
                                "--process-id with the coordinator (all three, or none)")),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
     "--process-id: must be in 0 .. 1, got 2"),
    (["--optimizer", "rmsprop"], "--optimizer: invalid choice: 'rmsprop'"),
])
def test_config_checks_name_the_flag(argv, message, capsys):
    from experiments import mnist

    assert mnist.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m experiments.mnist: error: " + message)


def test_config_errors_carry_the_field_name():
    from experiments import mnist, resnet_step

    with pytest.raises(ConfigError) as e:
        mnist.Config(batch_size=0)
    assert e.value.param == "batch_size" and str(e.value).startswith("batch_size: ")
    with pytest.raises(ConfigError) as e:
        mnist.Config(dataset="imagenet")  # a field's choices hold outside argparse too
    assert e.value.param == "dataset"
    with pytest.raises(ConfigError) as e:
        resnet_step.Config(export="x.pth")
    assert e.value.param == "export"


def test_flag_is_the_one_mapping():
    assert cli.flag("batch_size") == "--batch-size" and cli.flag("lr") == "--lr"
    assert cli.describe(CheckpointError("/x: not a folder", param="checkpoint_dir")) == \
        "--checkpoint-dir: /x: not a folder"
    assert cli.describe(ConfigError("plain")) == "plain"


@dataclasses.dataclass(frozen=True)
class Toy:
    steps: int = cli.arg(3, "steps")
    options: TrainOptions = TrainOptions(out=tempfile.mkdtemp(prefix="jaxnets-toy-"))


def test_library_errors_read_with_flag_names(capsys):
    def run(config):
        raise CheckpointError(f"{config.options.checkpoint_dir}: exists and is not a folder",
                              param="checkpoint_dir")

    assert cli.main(Toy, run, "toy", ["--checkpoint-dir", "f", "--no-compile-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"python -m {__name__}: error: --checkpoint-dir: f: exists and is not a "
                    "folder")]


def test_multi_host_initialize_runs_after_parsing_before_run(monkeypatch):
    from jaxnets import parallel

    calls = []
    monkeypatch.setattr(parallel, "initialize", lambda *a: calls.append(("initialize", *a)))
    argv = ["--coordinator", "h:1", "--num-processes", "2", "--process-id", "1",
            "--no-compile-cache", "--quiet"]
    assert cli.main(Toy, lambda c: calls.append("run"), "toy", argv) == 0
    assert calls == [("initialize", "h:1", 2, 1), "run"]
    calls.clear()
    cli.parse(Toy, "toy", argv)  # parsing alone never initializes
    assert calls == []


def test_reporter_quiet_keeps_results(capsys):
    for quiet in (False, True):
        r = cli.Reporter(quiet)
        r.say("narrative")
        r.compare([("accuracy", "70%", "71%")])
        r.wrote("a.json", "b.png")
        r.notice("on Fashion-MNIST")
        out, err = capsys.readouterr()
        assert ("narrative" in out) is not quiet
        assert "accuracy  70%       71%" in out and "wrote a.json, b.png" in out
        assert err == "NOTICE: on Fashion-MNIST\n"


def test_lenet_conv_impl_is_the_models_default_and_lists_the_choices():
    from experiments import lenet
    from jaxnets import layers
    from jaxnets.models import LeNet

    field = _field(lenet.Config, "--conv-impl")
    assert field.default == LeNet.conv_impl
    assert field.metadata["choices"] == layers.CONV_IMPLS


def test_the_list_of_experiments_is_every_module_but_the_harness():
    from experiments import report

    modules = {p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "__init__"}
    assert set(experiments.EXPERIMENTS) == modules - experiments.HARNESS
    assert {"mnist", "cifar10", "tensors"} <= set(experiments.EXPERIMENTS)
    assert cli.parser(report.Config, "").parse_args(["--only", "lenet_nnx"]).only == ["lenet_nnx"]


def test_jaxnets_is_lazy_with_the_same_names():
    code = ("import sys, jaxnets\n"
            "assert 'jax' not in sys.modules and 'numpy' not in sys.modules\n"
            "from experiments import cli\n"
            "assert 'jax' not in sys.modules and 'numpy' not in sys.modules\n"
            "for n in jaxnets.__all__: getattr(jaxnets, n)\n"
            "assert jaxnets.fit is jaxnets.train.fit\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _without_jax(tmp_path) -> dict:
    """An environment where `import jax` (and numpy) fails."""
    for name in ("jax", "numpy"):
        pkg = tmp_path / "fake" / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"raise ImportError('{name} imported too early')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), str(ROOT),
                                         env.get("PYTHONPATH", "")])
    return env


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_help_and_flag_errors_answer_without_jax(name, tmp_path):
    env = _without_jax(tmp_path)
    mod = f"experiments.{name}"
    done = subprocess.run([sys.executable, "-m", mod, "--help"], check=False, env=env,
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and f"usage: python -m {mod}" in done.stdout, done.stderr
    argv, message = _bad_value(_module(name).Config)
    done = subprocess.run([sys.executable, "-m", mod, *argv], check=False, env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith(
        f"python -m {mod}: error: {message}"), done.stderr
    if argv[1] != "0.5x":
        return
    # a Config check answers early too
    done = subprocess.run([sys.executable, "-m", mod, argv[0], "0"], check=False, env=env,
                          cwd=tmp_path, capture_output=True, text=True)
    if name not in ("tensors", "autograd", "report"):  # their first number (--seed, --seeds)
        # takes 0
        assert done.returncode == 2 and f"error: {argv[0]}: must be" in done.stderr, done.stderr
    else:  # a valid command line goes on to import jax: here, the fake one fails
        assert done.returncode == 1 and "imported too early" in done.stderr


@pytest.mark.slow
def test_compile_cache_second_run_loads_programs(tmp_path):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("JAXNETS_COMPILE_CACHE", None)
    argv = [sys.executable, "-m", "experiments.thermometer", "--epochs", "3", "--norm-epochs",
            "3", "--adam-epochs", "3", "--out", str(tmp_path / "out")]

    def cache_line(argv, env):
        done = subprocess.run(argv, check=False, env=env, cwd=ROOT, capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if line.startswith("compile cache")]

    def counts(line):  # "compile cache: 51 loaded, 0 compiled and saved (DIR)"
        words = line.replace(",", "").split()
        return int(words[2]), int(words[4])

    first = cache_line(argv, env)
    assert len(first) == 1 and counts(first[0])[1] > 0, first
    assert os.listdir(tmp_path / "cache")
    second = cache_line(argv, env)
    assert counts(second[0])[0] > 0 and counts(second[0])[1] == 0, second
    assert cache_line(argv + ["--no-compile-cache"], env) == ["compile cache: off"]
    assert cache_line(argv, dict(env, JAXNETS_COMPILE_CACHE="0")) == ["compile cache: off"]


@pytest.mark.slow
def test_two_commands_at_once_share_the_per_user_cache_cleanly(tmp_path):
    """Two commands started together on an empty per-user cache: both finish, neither warns
    about a cache entry (an unbounded JAX cache writes entries in place, so the other process
    could read one half written), and the folder is the bounded, locked kind. Then a folder of
    unbounded entries, as JAX leaves it, in $JAX_COMPILATION_CACHE_DIR: used as it is, no
    warning."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_COMPILATION_CACHE_MAX_SIZE",
                        "JAXNETS_COMPILE_CACHE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "home")

    def start(out, env):
        return subprocess.Popen(
            [sys.executable, "-m", "experiments.mnist", "--dataset", "fashion_mnist",
             "--steps", "11", "--batch-size", "17", "--no-progress", "--out", str(out)],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    runs = [start(tmp_path / f"out{i}", env) for i in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        assert "cache" not in err.lower(), err
        assert "compile cache: " in out
    folder = tmp_path / "home" / "jaxnets" / "xla"
    names = os.listdir(folder)
    assert ".lockfile" in names and any(n.endswith("-atime") for n in names), names

    unbounded = dict(env, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "theirs"))
    for _ in range(2):   # the second run adds nothing; a first run into an unbounded folder
        run = start(tmp_path / "out3", unbounded)
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0 and "cache" not in err.lower(), err
    assert not any(n.endswith("-atime") for n in os.listdir(tmp_path / "theirs"))


def test_cache_dir_default_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("JAXNETS_COMPILE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cli.cache_dir() == os.path.join(str(tmp_path), "jaxnets", "xla")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
    assert cli.cache_dir() == "/elsewhere"
    monkeypatch.setenv("JAXNETS_COMPILE_CACHE", "0")
    assert cli.cache_dir() is None


def test_generated_help_reads_like_the_docstring():
    from experiments import mnist

    text = cli.parser(mnist.Config, mnist.__doc__).format_help()
    assert textwrap.dedent(mnist.__doc__).strip().splitlines()[2].strip() in text
    assert "--steps STEPS" in text and "(default 2000)" in text
    assert "--no-progress" in text and "--no-compile-cache" in text
    assert "checkpoints:" in text and "devices and hosts:" in text
    # the experiment's own flags first, the run options in their own groups after them
    flags = [text.index(f"\n  {flag}") for flag in ("--steps", "--out", "--checkpoint-dir",
                                                     "--devices")]
    assert flags[0] < text.index("\nrun options:") < flags[1] < flags[2] < flags[3]
    assert text.index("\nrun options:") < text.index("\n  --no-compile-cache")

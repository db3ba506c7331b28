"""experiments.mnist (seed 000): the CLI, its outputs, bad input, and parity with the seed's
own PyTorch code from the same initial weights and the same batch indices."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_idx_dir

from experiments import mnist
from jaxnets import train
from jaxnets.options import TrainOptions
from reference import seeds as ref


@pytest.mark.slow
def test_run_writes_metrics_and_plot(tmp_path, fashion):
    cfg = mnist.Config(dataset="fashion_mnist", optimizer="adam", steps=60,
                       options=TrainOptions(out=str(tmp_path), progress=False))
    m = mnist.run(cfg, data=fashion)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for k in ("dataset", "optimizer", "steps", "test_accuracy", "final_loss", "losses",
              "compile_seconds", "train_seconds"):
        assert k in saved, k
    assert saved["dataset"] == "fashion_mnist" and len(saved["losses"]) == 60
    assert saved["final_loss"] == pytest.approx(np.mean(m["losses"][-50:]))
    assert 0.3 < saved["test_accuracy"] <= 1.0  # 60 Adam steps already learn something
    assert os.path.getsize(tmp_path / "loss_curve.png") > 1000


@pytest.mark.slow
def test_same_seed_same_run(tmp_path, fashion):
    def run(seed, out):
        options = TrainOptions(out=str(tmp_path / out), progress=False)
        return mnist.run(mnist.Config(dataset="fashion_mnist", steps=30, seed=seed,
                                      options=options), data=fashion)

    a, b, c = run(3, "a"), run(3, "b"), run(4, "c")
    np.testing.assert_array_equal(a["losses"], b["losses"])
    assert not np.array_equal(a["losses"], c["losses"])


def test_tensorboard_events_hold_the_losses_and_accuracy(tmp_path, fashion):
    """--tensorboard writes every step's loss and the test accuracy; the run is unchanged."""
    from test_tensorboard import _read

    base = {"dataset": "fashion_mnist", "steps": 30}
    plain = mnist.run(mnist.Config(**base, options=TrainOptions(out=str(tmp_path / "a"),
                                                                 progress=False)), data=fashion)
    m = mnist.run(mnist.Config(**base, options=TrainOptions(
        out=str(tmp_path / "b"), progress=False, tensorboard=str(tmp_path / "tb"))), data=fashion)
    np.testing.assert_array_equal(m["losses"], plain["losses"])
    acc = _read(str(tmp_path / "tb"))
    loss_events = acc.Scalars("train/loss")
    assert [e.step for e in loss_events] == list(range(1, 31))
    np.testing.assert_array_equal([e.value for e in loss_events],
                                  np.asarray(m["losses"], np.float32))
    (accuracy,) = acc.Scalars("test/accuracy")
    assert (accuracy.step, accuracy.value) == (30, np.float32(m["test_accuracy"]))


def test_prints_the_seeds_first_snippet_and_where_the_losses_are(tmp_path, fashion, capsys):
    """Seed 000 starts with `x = torch.randn(784); print(nn(x, w1, w2))` on the untrained
    weights, and prints its whole loss list: the run prints the first, says where the second is."""
    import torch

    cfg = mnist.Config(dataset="fashion_mnist", steps=20,
                       options=TrainOptions(out=str(tmp_path), progress=False))
    keys = train.split_keys(cfg.seed)
    state = mnist.init_state(cfg, keys.init)
    mnist.run(cfg, data=fashion, state=state)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "x = randn(784); nn(x, w1, w2) before training:"
    end = next(i for i, ln in enumerate(lines) if ln.endswith("]"))  # the array may wrap
    printed = np.array(" ".join(lines[1:end + 1]).strip("[] ").split(","), dtype=np.float32)
    x = torch.tensor(np.asarray(jax.random.normal(jax.random.fold_in(keys.init, 1), (784,))))
    w1, w2 = (torch.tensor(np.asarray(state.params[k])) for k in ("w1", "w2"))
    want = (x @ w1).clamp(min=0) @ w2   # the seed's nn: relu(x @ w1) @ w2
    np.testing.assert_allclose(printed, want.numpy(), rtol=1e-4, atol=1e-3)
    assert np.abs(printed).max() > 50   # randn weights: values in the hundreds, as the seed's
    where = next(ln for ln in lines if ln.startswith("the loss of every step"))
    assert "(20 values" in where and str(tmp_path / "metrics.json") in where and '"losses"' in where


def test_cli_runs_on_a_data_dir(tmp_path, capsys):
    d = make_idx_dir(str(tmp_path / "data"), n_train=300, n_test=50, gz=True)
    out = tmp_path / "out"
    code = mnist.main(["--data-dir", d, "--steps", "5", "--batch-size", "10", "--out", str(out),
                       "--no-progress", "--zero-grad"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "about 70%" in printed and "--zero-grad" in printed
    assert json.loads((out / "metrics.json").read_text())["zero_grad"] is True


@pytest.mark.slow
def test_falls_back_to_local_fashion_mnist_with_a_notice(tmp_path, capsys, monkeypatch):
    # No MNIST anywhere (empty tfds dir, no network): the default command still runs, on the
    # locally installed Fashion-MNIST, and says so.
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("JAXNETS_DATA_MIRROR", "http://127.0.0.1:9/")  # closed port: fails fast
    code = mnist.main(["--steps", "3", "--out", str(tmp_path / "o"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0
    assert "NOTICE: MNIST is not available" in captured.err
    assert "tutorial's figures are for MNIST" in captured.err
    # Short lines in a command-line user's terms: flags and environment, no library parameters.
    assert max(map(len, captured.err.splitlines())) <= 160
    assert "mirror=" not in captured.err and "--data-dir DIR" in captured.err
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["dataset"] == "fashion_mnist"


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["--batch-size", "0"], "must be at least 1"),
    (["--batch-size", "-3"], "must be at least 1"),
    (["--steps", "0"], "must be at least 1"),
    (["--lr", "0"], "must be a finite number > 0"),
    (["--lr=-1e-3"], "must be a finite number > 0"),
    (["--lr", "abc"], "--lr: invalid float value: 'abc'"),
])
def test_bad_flags_one_line_exit_2(argv, message, capsys):
    assert mnist.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and argv[0].split("=")[0] in err[0]


def test_bad_data_one_line_exit_2(tmp_path, capsys):
    code = mnist.main(["--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no mnist train files" in err[0]
    d = make_idx_dir(str(tmp_path / "bad"))
    with open(os.path.join(d, "train-images-idx3-ubyte"), "r+b") as f:
        f.write(b"\x01\x02")
    code = mnist.main(["--data-dir", d, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bad magic number" in err[0]
    assert not os.path.exists(tmp_path / "o" / "metrics.json")


# ---------------------------------------------------------------- parity with the seed's PyTorch
@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_parity_with_seed_000_pytorch(optimizer, fashion, tmp_path):
    train_set, test_set = fashion
    cfg = mnist.Config(dataset="fashion_mnist", optimizer=optimizer, steps=2000,
                       options=TrainOptions(out=str(tmp_path), progress=False))
    keys = train.split_keys(cfg.seed)
    state = mnist.init_state(cfg, keys.init)
    w1, w2 = (np.asarray(state.params[k]) for k in ("w1", "w2"))
    idx, _ = mnist.sampler(cfg, len(train_set), keys.data).indices(0, cfg.steps)
    ours = mnist.run(cfg, data=fashion, state=state)
    torch_losses, tw1, tw2 = ref.seed000_train(train_set.images, train_set.labels, idx, w1, w2,
                                       optimizer, cfg.lr)
    rel = np.abs(ours["losses"][:100] - torch_losses[:100]) / np.abs(torch_losses[:100])
    assert rel.max() < 1e-4, rel.max()
    torch_accs = [ref.seed000_accuracy(tw1, tw2, test_set.images, test_set.labels)]
    if optimizer == "sgd":
        # The seed's never-zeroed SGD is chaotic in float32: torch itself, started from w1
        # perturbed by 1e-7 relative noise (below float32 rounding of the matmuls), ends at
        # 24.2% or ~26.4% on Fashion-MNIST (two basins; the losses agree to 1e-5 through step
        # 500). One torch run cannot pin our final accuracy to a point, so compare with a small
        # ensemble of such torch runs: ours must be within one point of one of them.
        rng = np.random.default_rng(0)
        for _ in range(2):
            noisy = (w1 * (1 + 1e-7 * rng.standard_normal(w1.shape))).astype(np.float32)
            _, a1, a2 = ref.seed000_train(train_set.images, train_set.labels, idx, noisy, w2,
                                           optimizer, cfg.lr)
            torch_accs.append(ref.seed000_accuracy(a1, a2, test_set.images, test_set.labels))
    gap = min(abs(ours["test_accuracy"] - a) for a in torch_accs)
    assert gap <= 0.01, (ours["test_accuracy"], torch_accs)


def test_init_is_torch_randn_distribution():
    state = mnist.init_state(mnist.Config(), jax.random.key(0))
    w1 = np.asarray(state.params["w1"])
    assert w1.shape == (784, 200) and abs(w1.mean()) < 0.01 and abs(w1.std() - 1) < 0.01
    assert "bias" not in str(jax.tree_util.tree_structure(state.params))
    assert isinstance(state, train.TrainState) and state.step.dtype == jnp.int32


def test_benchmark_matmul_floor_lists_the_steps_own_matmuls():
    """benchmarks' matmul floor (the argument for the SGD speed target) times
    workloads._MNIST_MATMULS: those must be exactly the dots of one seed-000 training step."""
    from benchmarks import workloads

    state = mnist.init_state(mnist.Config(), jax.random.key(0))
    # the experiment's (and benchmark's) loop
    run_steps = train.make_run_steps(mnist.train_step(state.apply_fn), unroll=mnist.UNROLL)
    data = {"image": jnp.zeros((100, 784), jnp.uint8), "label": jnp.zeros((100,), jnp.int32)}
    idx, mask = jnp.arange(100, dtype=jnp.int32)[None], jnp.ones((1, 100), bool)
    jaxpr = jax.make_jaxpr(run_steps)(state, data, idx, mask, jax.random.key(1))

    def dots(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "dot_general":
                (lc, rc), _ = eqn.params["dimension_numbers"]
                a, b = (v.aval.shape for v in eqn.invars)
                yield (int(np.prod([d for i, d in enumerate(a) if i not in lc])),
                       int(np.prod([a[i] for i in lc])),
                       int(np.prod([d for i, d in enumerate(b) if i not in rc])))
            for p in eqn.params.values():     # pjit / custom_jvp bodies
                if hasattr(p, "jaxpr"):
                    yield from dots(p.jaxpr)

    def canon(m, k, n):   # a product and its transpose are the same work
        return (min(m, n), k, max(m, n))

    found = sorted(canon(*d) for d in dots(jaxpr.jaxpr))
    listed = sorted(canon(m, k, n) for m, k, n, _, _ in workloads._MNIST_MATMULS)
    assert found == listed


def test_the_hidden_size_is_the_experiments_setting():
    """The seed's 200 hidden units are the default of the Config and of SeedMLP; a learner
    changes them from the experiment (--hidden), not in the library."""
    import jax

    from jaxnets.models import SeedMLP

    state = mnist.init_state(mnist.Config(hidden=50), jax.random.key(0))
    assert state.params["w1"].shape == (784, 50) and state.params["w2"].shape == (50, 10)
    assert mnist.Config().hidden == SeedMLP.hidden == 200

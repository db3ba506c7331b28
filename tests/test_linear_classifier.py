"""Seed 004's linear classifier: same weights and batch order in PyTorch give the same losses."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from experiments import linear_classifier as E
from jaxnets import optim, torch_io
from jaxnets.errors import ConfigError
from jaxnets.models import LinearClassifier
from jaxnets.options import TrainOptions
from reference import seeds

N_TRAIN, N_TEST, EPOCHS, BATCH = 1000, 500, 3, 64  # 16 steps an epoch, the last one of 40


TorchLinearClassifier = seeds.LinearClassifier  # the seed's model, verbatim


def _subset(ds, n):
    return dataclasses.replace(ds, images=ds.images[:n], labels=ds.labels[:n])


def _torch_inputs(images: np.ndarray) -> torch.Tensor:
    """ToTensor() + Normalize((0.5,), (0.5,)) on uint8 NHWC -> float NCHW."""
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


@pytest.fixture(scope="module")
def both(fashion, tmp_path_factory):
    train_set, test_set = _subset(fashion[0], N_TRAIN), _subset(fashion[1], N_TEST)
    torch.manual_seed(0)
    ref = TorchLinearClassifier()
    shapes = jax.eval_shape(LinearClassifier().init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    params = torch_io.from_state_dict(sd, template)["params"]
    out = str(tmp_path_factory.mktemp("linear"))
    config = E.Config(epochs=EPOCHS, batch_size=BATCH,
                      options=TrainOptions(out=out, progress=False))
    metrics = E.run(config, (train_set, test_set), params)

    # PyTorch: the same weights, the same batches (incl. the short last one), SGD momentum 0.9
    x, y = _torch_inputs(train_set.images), torch.tensor(train_set.labels, dtype=torch.long)
    sampler = E.make_sampler(config, N_TRAIN)
    idx, mask = sampler.indices(0, EPOCHS * sampler.steps_per_epoch)
    batches = [(x[b], y[b]) for b in (torch.tensor(i[m], dtype=torch.long)
                                      for i, m in zip(idx, mask))]
    losses = seeds.blitz_train(ref, batches, epochs=1, lr=0.001, momentum=0.9)
    with torch.no_grad():
        logits = ref(_torch_inputs(test_set.images)).numpy()
    torch_acc = float((logits.argmax(1) == test_set.labels).mean())
    return metrics, config, np.asarray(losses), torch_acc, mask


@pytest.mark.slow
def test_loss_trajectory_matches_torch(both):
    metrics, _, torch_losses, _, mask = both
    assert mask[-1].sum() == N_TRAIN % BATCH  # the short last batch is really in there
    ours = np.asarray(metrics["losses"])
    assert ours.shape == torch_losses.shape == (EPOCHS * 16,)
    np.testing.assert_allclose(ours, torch_losses, rtol=1e-4)
    assert ours[-16:].mean() < 0.7 * ours[:16].mean()  # it learns


def test_test_accuracy_matches_torch(both):
    metrics, _, _, torch_acc, _ = both
    assert abs(metrics["test_accuracy"] - torch_acc) <= 1.0 / N_TEST  # at most one argmax tie
    assert metrics["test_accuracy"] > 0.6


def test_reports_and_files(both):
    metrics, config, *_ = both
    assert [e["epoch"] for e in metrics["per_epoch"]] == [1, 2, 3]
    assert metrics["per_epoch"][-1]["loss"] < metrics["per_epoch"][0]["loss"]
    assert next(iter(metrics["per_class_accuracy"])) == "T-shirt/top"
    cm = np.asarray(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == N_TEST
    np.testing.assert_allclose(np.trace(cm) / N_TEST, metrics["test_accuracy"])
    with open(os.path.join(config.options.out, "metrics.json")) as f:
        assert json.load(f)["epochs"] == EPOCHS
    for name in ("confusion_matrix.png", "loss_curve.png"):
        assert os.path.getsize(os.path.join(config.options.out, name)) > 1000


def test_reshape_keeps_the_batch_axis():
    model = LinearClassifier()
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    for n in (1, 40, 64):
        out = jax.eval_shape(model.apply, params, jnp.zeros((n, 28, 28, 1)))
        assert out.shape == (n, 10)


def test_bad_config():
    with pytest.raises(ConfigError, match="momentum"):
        E.Config(momentum=1.0)
    with pytest.raises(ConfigError, match="dataset"):
        E.Config(dataset="cifar10")


def test_cli_missing_data_is_one_line(tmp_path, capsys):
    code = E.main(["--dataset", "mnist", "--data-dir", str(tmp_path / "none"), "--no-progress",
                   "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--data-dir" in err


@pytest.mark.slow
def test_checkpoint_resume_equals_uninterrupted_run(tmp_path, fashion):
    """--checkpoint-dir / --resume: 1 epoch, then resume to 3, equals 3 epochs in one go."""
    import dataclasses as dc

    import jaxnets.data as D
    from experiments import cli
    from experiments import linear_classifier as lc

    train_set, test_set = fashion
    small = (dc.replace(train_set, images=train_set.images[:500], labels=train_set.labels[:500]),
             dc.replace(test_set, images=test_set.images[:200], labels=test_set.labels[:200]))
    assert isinstance(small[0], D.Dataset)
    def options(out, **kw):
        return TrainOptions(out=str(tmp_path / out), progress=False, **kw)

    full = lc.run(lc.Config(epochs=3, batch_size=64, options=options("full")), data=small)
    ckdir = str(tmp_path / "ck")
    lc.run(lc.Config(epochs=1, batch_size=64, options=options("a", checkpoint_dir=ckdir)),
           data=small)
    resumed = lc.run(lc.Config(epochs=3, batch_size=64,
                               options=options("b", checkpoint_dir=ckdir, resume=True)),
                     data=small)
    np.testing.assert_array_equal(resumed["losses"], full["losses"])
    assert resumed["test_accuracy"] == full["test_accuracy"]
    # Every history metrics.json carries is restored: per_epoch holds epochs 1-3, as in one go.
    assert [e["epoch"] for e in resumed["per_epoch"]] == [1, 2, 3]
    differ = {"compile_seconds", "train_seconds", "plots"}
    assert cli.to_jsonable({k: v for k, v in resumed.items() if k not in differ}) == \
        cli.to_jsonable({k: v for k, v in full.items() if k not in differ})


@pytest.mark.parametrize("name, reference", [
    ("sgd", lambda: optim.sgd(1e-3, momentum=0.9)), ("adam", lambda: optim.adam(1e-3))])
def test_optimizer_flag_builds_that_rule(name, reference):
    """--optimizer picks the rule through optim.by_name (each rule's torch parity: test_optim)."""
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    grads = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    tx, ref = E.make_optimizer(E.Config(optimizer=name)), reference()
    s, r = tx.init(params), ref.init(params)
    for _ in range(3):
        u, s = tx.update(grads, s, params)
        v, r = ref.update(grads, r, params)
        np.testing.assert_array_equal(u["w"], v["w"])


def test_adam_takes_no_momentum():
    with pytest.raises(ConfigError, match="momentum"):
        E.Config(optimizer="adam", momentum=0.5)


def test_tensorboard_events_hold_the_run(tmp_path, fashion):
    """--tensorboard: every step's loss, each epoch's test accuracy, the confusion matrix."""
    from PIL import Image
    from test_tensorboard import _decode, _read

    from jaxnets import plots

    small = (_subset(fashion[0], 500), _subset(fashion[1], 200))
    m = E.run(E.Config(epochs=2, options=TrainOptions(
        out=str(tmp_path / "out"), progress=False, tensorboard=str(tmp_path / "tb"))), data=small)
    acc = _read(str(tmp_path / "tb"))
    loss_events = acc.Scalars("train/loss")
    assert [e.step for e in loss_events] == list(range(1, 17))  # 2 epochs of 8 batches
    np.testing.assert_array_equal([e.value for e in loss_events],
                                  np.asarray(m["losses"], np.float32))
    assert [(e.step, e.value) for e in acc.Scalars("test/accuracy")] == [
        (8 * e["epoch"], np.float32(e["test_accuracy"])) for e in m["per_epoch"]]
    (cm_event,) = acc.Images("test/confusion_matrix")
    png = plots.confusion_matrix(np.asarray(m["confusion_matrix"]), fashion[0].class_names,
                                 str(tmp_path / "cm.png"))
    assert cm_event.step == 16
    np.testing.assert_array_equal(_decode(cm_event), np.asarray(Image.open(png).convert("RGB")))

"""The CIFAR-10 experiment end to end on small data in CIFAR-10's real binary format."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pytest
import torch
from loopback import serve
from safetensors.torch import load_file

from experiments import cifar10
from jaxnets import data as D
from jaxnets import torch_io, train
from jaxnets.data import cifar
from jaxnets.errors import ConfigError
from jaxnets.options import TrainOptions
from reference import seeds as ref

# 5 training files x 40 images, 1 test file x 40: 50 steps of 4 per epoch.
N_FILE, N_TEST, STEPS_PER_EPOCH = 40, 40, 50


Net = ref.tutorial_net  # the tutorial's CIFAR-10 network, verbatim


# One well-separated colour per class (RGB cube corners, grey, orange).
COLOURS = np.array([(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
                    (255, 0, 255), (0, 255, 255), (255, 255, 255), (128, 128, 128), (255, 128, 0)])


def make_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images a LeNet can learn in a few steps: each class has its own colour, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    noise = rng.integers(-40, 41, (n, 32, 32, 3))
    images = np.clip(64 + COLOURS[labels][:, None, None, :] // 2 + noise, 0, 255).astype(np.uint8)
    return images, labels


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory) -> str:
    """A cifar-10-batches-bin folder written in the real binary record format."""
    root = tmp_path_factory.mktemp("cifar")
    d = root / "cifar-10-batches-bin"
    d.mkdir()
    for i in range(1, 6):
        cifar.write_batch(str(d / f"data_batch_{i}.bin"), *make_images(N_FILE, i))
    cifar.write_batch(str(d / "test_batch.bin"), *make_images(N_TEST, 99))
    return str(root)


def config(cifar_dir: str, out: str, **kw) -> cifar10.Config:
    """The test run's Config; `kw` may name run options (checkpoint_dir, ...) among its fields."""
    # lr 0.01 instead of 0.001 so 150 steps on this small set learn something measurable.
    options = {k: kw.pop(k) for k in list(kw) if k in TrainOptions.__dataclass_fields__}
    kw = {"data_dir": cifar_dir, "epochs": 3, "lr": 0.01, "print_every": 20, **kw}
    return cifar10.Config(**kw, options=TrainOptions(out=out, progress=False, **options))


def run_captured(cfg: cifar10.Config) -> tuple[dict, list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics = cifar10.run(cfg)
    return metrics, out.getvalue().splitlines()


@pytest.fixture(scope="module")
def full_run(cifar_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run"))
    metrics, lines = run_captured(config(cifar_dir, out,
                                         tensorboard=os.path.join(out, "tensorboard")))
    return out, metrics, lines


def torch_inputs(images: np.ndarray) -> torch.Tensor:
    """transforms.ToTensor + Normalize(0.5, 0.5) the PyTorch way: NCHW floats."""
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() / 255.0
    return (x - 0.5) / 0.5


@pytest.mark.slow
def test_full_pipeline_prints_and_files(full_run, cifar_dir):
    out, metrics, lines = full_run
    test = D.load("cifar10", "test", cifar_dir)
    classes = cifar.CLASS_NAMES
    assert metrics["parameters"] == 62006 and "62,006 parameters" in lines[0]
    assert "3 epochs; training on " in lines[0]  # seed 001's "training on a GPU": which device
    # The tutorial's running-loss prints: `i % 20 == 19` within each epoch of 50 batches.
    prints = [ln for ln in lines if ln.startswith("[") and "loss:" in ln]
    ends = [(e, i) for e in (1, 2, 3) for i in (20, 40)]
    assert [ln.split("]")[0] for ln in prints] == [f"[{e}, {i:5d}" for e, i in ends]
    losses = np.asarray(metrics["losses"], np.float32)
    assert losses.shape == (3 * STEPS_PER_EPOCH,)
    expect = []
    for e, i in ends:
        last = (e - 1) * STEPS_PER_EPOCH + i - 1          # the global step of `i % 20 == 19`
        running = 0.0
        for x in losses[last - 19 : last + 1]:
            running += float(x)
        expect.append(f"[{e}, {i:5d}] loss: {running / 20:.3f}")
    assert prints == expect
    assert lines.index("Finished Training") > lines.index(prints[-1])
    gt = "GroundTruth:  " + " ".join(f"{classes[j]:5s}" for j in test.labels[:4])
    assert gt in lines
    pred_line = next(ln for ln in lines if ln.startswith("Predicted: "))
    assert pred_line.split()[1:] == metrics["predicted"]
    assert (f"Accuracy of the network on the {N_TEST} test images: "
            f"{100 * metrics['correct'] // N_TEST} %") in lines
    assert sum(ln.startswith("Accuracy for class: ") for ln in lines) == 10
    # It learned: well above chance on held-out images, running loss falling.
    assert metrics["test_accuracy"] >= 0.4
    assert metrics["running_losses"][-1][2] < 1.5 and metrics["running_losses"][0][2] > 2.0
    for name in ("train_images.png", "test_images.png", "loss_curve.png"):
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["correct"] == metrics["correct"]


@pytest.mark.slow
def test_saved_file_is_what_was_tested_and_torch_agrees(full_run, cifar_dir):
    """cifar_net.safetensors loads into the tutorial's Net; its predictions are the printed ones."""
    out, metrics, _ = full_run
    net = Net()
    net.load_state_dict(load_file(os.path.join(out, "cifar_net.safetensors")))  # strict
    test = D.load("cifar10", "test", cifar_dir)
    with torch.no_grad():
        predicted = net(torch_inputs(test.images)).argmax(1).numpy()
    assert int((predicted == test.labels).sum()) == metrics["correct"]
    assert [cifar.CLASS_NAMES[j] for j in predicted[:4]] == metrics["predicted"]


def test_weights_option_tests_a_saved_model_without_training(full_run, cifar_dir, tmp_path):
    out, metrics, _ = full_run
    again, lines = run_captured(config(cifar_dir, str(tmp_path),
                                       weights=os.path.join(out, "cifar_net.safetensors")))
    assert "Finished Training" not in lines and not again["trained"]
    # A test-only run says what it tests, not the training header (no batch, epochs, optimizer).
    assert lines[0].startswith("[cifar10] testing ") and "epoch" not in lines[0]
    assert not os.path.exists(tmp_path / "train_images.png")
    assert again["correct"] == metrics["correct"] and again["predicted"] == metrics["predicted"]
    assert not os.path.exists(tmp_path / "cifar_net.safetensors")


def test_training_matches_pytorch_step_by_step(full_run, cifar_dir):
    """Same initial weights, same batches: the tutorial's own PyTorch loop gives the same losses
    and the same trained weights as the run above."""
    out, metrics, _ = full_run
    cfg = config(cifar_dir, out)
    train_set = D.load("cifar10", "train", cifar_dir)
    keys = train.split_keys(cfg.seed)    # the experiment's split: init, data, train
    net = Net()
    initial = torch_io.to_state_dict({"params": cifar10.init_state(cfg, keys.init).params})
    net.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in initial.items()})
    sampler = D.EpochSampler(len(train_set), cfg.batch_size, keys.data)
    steps = cfg.epochs * STEPS_PER_EPOCH
    idx, _ = sampler.indices(0, steps)   # the shuffled loader's batches, epoch by epoch

    batches = [(torch_inputs(train_set.images[idx[i]]),
                torch.from_numpy(train_set.labels[idx[i]].astype(np.int64))) for i in range(steps)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch-4 LeNet: threads only contend (30x slower on 2 busy cores)
    try:  # the tutorial's loop, over all epochs' batches in the sampler's order
        torch_losses = ref.blitz_train(net, batches, epochs=1, lr=cfg.lr, momentum=0.9)
    finally:
        torch.set_num_threads(threads)
    # float32 rounding differs (XLA vs oneDNN convolutions) and grows slowly over 150 steps.
    np.testing.assert_allclose(metrics["losses"][:30], torch_losses[:30], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(metrics["losses"], torch_losses, rtol=2e-3, atol=2e-4)
    ours = load_file(os.path.join(out, "cifar_net.safetensors"))
    for k, v in net.state_dict().items():
        np.testing.assert_allclose(ours[k].numpy(), v.numpy(), rtol=1e-3, atol=1e-4, err_msg=k)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted(full_run, cifar_dir, tmp_path, capsys):
    """Epoch 1 with checkpoints, then --resume for 3 epochs: same weights, losses and prints."""
    out, metrics, lines = full_run
    ckpt = str(tmp_path / "ckpt")
    first, _ = run_captured(config(cifar_dir, str(tmp_path / "a"), epochs=1, checkpoint_dir=ckpt,
                                   checkpoint_every=25))
    assert first["resumed_step"] == 0
    second, second_lines = run_captured(config(cifar_dir, str(tmp_path / "b"), checkpoint_dir=ckpt,
                                               checkpoint_every=25, resume=True))
    assert second["resumed_step"] == STEPS_PER_EPOCH
    assert any("resumed from" in ln for ln in second_lines)
    a = load_file(os.path.join(out, "cifar_net.safetensors"))
    b = load_file(str(tmp_path / "b" / "cifar_net.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(second["losses"], metrics["losses"])
    prints = [ln for ln in lines if ln.startswith(("[2,", "[3,"))]
    assert prints and prints == [ln for ln in second_lines if " loss: " in ln]
    # metrics.json equals the uninterrupted run's (timing, places and the resume step aside):
    # running_losses holds every print, those before the resume too.
    differ = {"compile_seconds", "train_seconds", "resumed_step", "weights", "plots"}
    with open(os.path.join(out, "metrics.json")) as f:
        whole = json.load(f)
    with open(tmp_path / "b" / "metrics.json") as f:
        got = json.load(f)
    assert len(got["running_losses"]) == len(whole["running_losses"]) == 6
    assert {k: v for k, v in got.items() if k not in differ} == {
        k: v for k, v in whole.items() if k not in differ}

    # From the command line: a used folder without --resume, or other settings, is one line on
    # stderr and exit 2, and the checkpoints stay as they were.
    before = sorted(os.listdir(ckpt))
    argv = ["--data-dir", cifar_dir, "--epochs", "3", "--print-every", "20", "--no-progress",
            "--checkpoint-dir", ckpt, "--checkpoint-every", "25", "--out", str(tmp_path / "c")]
    assert cifar10.main(argv + ["--lr", "0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds checkpoints (latest step 150); resume" in err[0]
    assert cifar10.main(argv + ["--resume", "--lr", "0.02"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings (lr 0.01 -> 0.02)" in err[0]
    assert sorted(os.listdir(ckpt)) == before


def test_errors_are_one_line_and_exit_2(full_run, cifar_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cifar10.main(["--data-dir", str(empty), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0] and "binary" in err[0]

    # A truncated batch file: DataError naming the file.
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(1, 6):
        cifar.write_batch(str(bad / f"data_batch_{i}.bin"), *make_images(2, i))
    cifar.write_batch(str(bad / "test_batch.bin"), *make_images(2, 9))
    with open(bad / "data_batch_3.bin", "r+b") as f:
        f.truncate(3000)
    assert cifar10.main(["--data-dir", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data_batch_3.bin" in err[0] and "truncated" in err[0]

    # --weights of another model (seed 001's 1-channel LeNet): a shape mismatch, named.
    mono = {k: v.numpy() for k, v in load_file(os.path.join(full_run[0],
                                                            "cifar_net.safetensors")).items()}
    mono["conv1.weight"] = mono["conv1.weight"][:, :1]
    path = torch_io.save(str(tmp_path / "mono.safetensors"), mono)
    assert cifar10.main(["--data-dir", cifar_dir, "--weights", path, "--no-progress",
                         "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'conv1.weight' has shape (6, 1, 5, 5)" in err[0]

    assert cifar10.main(["--data-dir", cifar_dir, "--epochs", "0"]) == 2  # Config's check
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epochs: must be at least 1" in err[0]


def test_config_checks():
    with pytest.raises(ConfigError, match="momentum"):
        cifar10.Config(momentum=1.5)
    with pytest.raises(ConfigError, match="resume: needs checkpoint_dir") as info:
        cifar10.Config(options=TrainOptions(out="x", resume=True))
    assert info.value.param == "resume"
    assert dataclasses.asdict(cifar10.Config())["batch_size"] == 4


def test_runs_through_the_tfds_download_path(tmp_path, monkeypatch, capsys):
    """No --data-dir: the experiment downloads cifar-10-binary.tar.gz through tensorflow-datasets
    (here from a loopback mirror, with the mirror's checksums), then reads the tfds cache."""
    batches = tmp_path / "build" / "cifar-10-batches-bin"
    batches.mkdir(parents=True)
    for i in range(1, 6):
        cifar.write_batch(str(batches / f"data_batch_{i}.bin"), *make_images(8, i))
    test_images, test_labels = make_images(8, 99)
    cifar.write_batch(str(batches / "test_batch.bin"), test_images, test_labels)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / cifar.ARCHIVE, "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-bin")
    blob = (mirror / cifar.ARCHIVE).read_bytes()
    (tmp_path / "checksums.tsv").write_text(
        f"{cifar.ARCHIVE}\t{len(blob)}\t{hashlib.sha256(blob).hexdigest()}\n")
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setenv("JAXNETS_DATA_CHECKSUMS", str(tmp_path / "checksums.tsv"))
    argv = ["--epochs", "1", "--no-progress", "--out", str(tmp_path / "out")]
    with serve(str(mirror)) as url:
        monkeypatch.setenv("JAXNETS_DATA_MIRROR", url)
        assert cifar10.main(argv) == 0
    printed = capsys.readouterr().out
    assert "40 train / 8 test images from tfds download" in printed
    ground_truth = " ".join(f"{cifar.CLASS_NAMES[j]:5s}" for j in test_labels[:4])
    assert f"GroundTruth:  {ground_truth}" in printed.splitlines()
    assert "Accuracy of the network on the 8 test images: " in printed
    # The mirror is gone: a second run reads the prepared tfds cache.
    monkeypatch.setenv("JAXNETS_DATA_MIRROR", "http://127.0.0.1:9")
    assert cifar10.main(argv + ["--weights", str(tmp_path / "out" / "cifar_net.safetensors")]) == 0
    assert "from tfds cache" in capsys.readouterr().out


def test_optimizer_flag_builds_that_rule(tmp_path):
    """--optimizer adam: torch.optim.Adam's rule (optim.adam) instead of SGD with momentum."""
    import jax
    import jax.numpy as jnp

    from jaxnets import optim

    for name, ref_tx in (("sgd", optim.sgd(1e-3, momentum=0.9)), ("adam", optim.adam(1e-3))):
        state = cifar10.init_state(cifar10.Config(optimizer=name,
                                                  options=TrainOptions(out=str(tmp_path))),
                                   jax.random.key(0))
        grads = jax.tree.map(jnp.ones_like, state.params)
        s, r = state.tx.init(state.params), ref_tx.init(state.params)
        for _ in range(3):
            ours, s = state.tx.update(grads, s, state.params)
            want, r = ref_tx.update(grads, r, state.params)
            jax.tree.map(np.testing.assert_array_equal, ours, want)
    with pytest.raises(ConfigError, match="momentum"):
        cifar10.Config(optimizer="adam", momentum=0.5)


def test_tensorboard_events_hold_the_run(full_run, cifar_dir):
    """--tensorboard: the losses, test accuracy, shown training images and confusion matrix."""
    from PIL import Image
    from test_tensorboard import _decode, _read

    from jaxnets import metrics as M
    from jaxnets import plots

    out, metrics, _ = full_run
    acc = _read(os.path.join(out, "tensorboard"))
    losses = np.asarray(metrics["losses"], np.float32)
    loss_events = acc.Scalars("train/loss")
    assert [e.step for e in loss_events] == list(range(1, len(losses) + 1))
    np.testing.assert_array_equal([e.value for e in loss_events], losses)
    (accuracy,) = acc.Scalars("test/accuracy")
    assert (accuracy.step, accuracy.value) == (len(losses), np.float32(metrics["test_accuracy"]))
    (grid,) = acc.Images("train/images")
    train_set = D.load("cifar10", "train", cifar_dir)
    sampler = D.EpochSampler(len(train_set), 4, train.split_keys(0).data)
    first = sampler.epoch_batches(0)[0][0][:4]
    shown = np.round(np.clip(cifar10.unnormalize(train_set.images[first]), 0, 1) * 255)
    np.testing.assert_array_equal(_decode(grid), plots.make_grid(shown.astype(np.uint8)))
    # The confusion matrix of the saved network's predictions, computed by PyTorch.
    net = Net()
    net.load_state_dict(load_file(os.path.join(out, "cifar_net.safetensors")))
    test = D.load("cifar10", "test", cifar_dir)
    with torch.no_grad():
        predicted = net(torch_inputs(test.images)).argmax(1).numpy()
    cm = M.confusion_matrix(test.labels, predicted, 10)
    png = plots.confusion_matrix(cm, cifar.CLASS_NAMES, os.path.join(out, "cm_check.png"))
    (cm_event,) = acc.Images("test/confusion_matrix")
    assert cm_event.step == len(losses)
    np.testing.assert_array_equal(_decode(cm_event), np.asarray(Image.open(png).convert("RGB")))


def test_device_choice(cifar_dir, tmp_path, capsys):
    """--device cpu trains there and says so; an absent platform is a one-line error."""
    import jax

    code = cifar10.main(["--data-dir", cifar_dir, "--device", "cpu", "--epochs", "1",
                         "--out", str(tmp_path / "cpu"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and f"training on cpu ({jax.devices('cpu')[0]})" in out.splitlines()[0]
    absent = next(p for p in ("tpu", "gpu") if p not in {d.platform for d in jax.devices()})
    code = cifar10.main(["--data-dir", cifar_dir, "--device", absent, "--out",
                         str(tmp_path / "absent")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"--device: no {absent} here" in err
    assert not os.path.exists(tmp_path / "absent" / "metrics.json")


def test_a_wider_net_from_the_experiment_not_the_library(cifar_dir, tmp_path):
    """The tutorial's widths are defaults of the Config (and of models.LeNet); a learner widens
    the network with --conv-features / --fc-features. Its state_dict has the wider shapes."""
    metrics, _ = run_captured(config(cifar_dir, str(tmp_path), epochs=1, conv_features=(8, 20),
                                     fc_features=(150, 90), quiet=True))
    sd = load_file(os.path.join(str(tmp_path), "cifar_net.safetensors"))
    assert tuple(sd["conv1.weight"].shape) == (8, 3, 5, 5)
    assert tuple(sd["fc1.weight"].shape) == (150, 20 * 5 * 5)
    assert tuple(sd["fc2.weight"].shape) == (90, 150)
    assert metrics["parameters"] == sum(v.numel() for v in sd.values())
    assert cifar10.Config().conv_features == (6, 16) and cifar10.Config().fc_features == (120, 84)
    with pytest.raises(ConfigError, match="conv_features: takes two widths"):
        cifar10.Config(conv_features=(6,))

"""Seed 001, "训练分类器": the 60-minute blitz CIFAR-10 classifier, step by step.

    python -m experiments.cifar10                               # CIFAR-10 via tensorflow-datasets
    python -m experiments.cifar10 --data-dir DIR                # local cifar-10-batches-bin (or .tar.gz)
    python -m experiments.cifar10 --dataset fake_cifar10        # FakeData: the pipeline, no CIFAR-10
    python -m experiments.cifar10 --weights runs/cifar10/cifar_net.safetensors   # test only
    python -m experiments.cifar10 --optimizer adam              # Adam instead of SGD + momentum
    python -m experiments.cifar10 --device gpu                  # the blitz's "training on a GPU"
    python -m experiments.cifar10 --tensorboard runs/tb/cifar10 # also TensorBoard events

The recipe: ToTensor + Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), batch 4 in a shuffled order,
the 3-channel LeNet (62,006 parameters, PyTorch's init), CrossEntropyLoss, SGD lr 0.001
momentum 0.9, 2 epochs, the running loss printed every 2000 mini-batches, "Finished Training";
then the model is saved (PyTorch state_dict layout, safetensors: `cifar_net.safetensors`),
loaded back into a fresh network, and that network predicts the first 4 test images and the
whole test set (accuracy, then per class). The blitz tutorial's published run prints losses
near 2.2 at [1, 2000] falling to about 1.3 by [2, 12000] and 54 % accuracy; the seed says
anything above 10 % already beats guessing.

The saved file is a PyTorch state_dict: the tutorial's own `Net().load_state_dict(
safetensors.torch.load_file(PATH))` accepts it, and --weights reads one back (a .pth from
PyTorch too, read with weights_only). CIFAR-10's binary version is read directly; the pickled
Python version is never unpickled. Writes metrics.json, cifar_net.safetensors,
train_images.png, test_images.png and loss_curve.png into --out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import NamedTuple

from experiments import cli
from jaxnets import optim
from jaxnets.options import TrainOptions


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str = cli.arg("cifar10", "dataset (fake_cifar10: FakeData, seeded random images of "
                                      "CIFAR-10's shape: the whole pipeline without CIFAR-10)",
                           choices=("cifar10", "fake_cifar10"))
    data_dir: str | None = cli.arg(None, "folder with CIFAR-10's binary version "
                                         "(cifar-10-batches-bin or cifar-10-binary.tar.gz); "
                                         "default: the tensorflow-datasets cache or download",
                                   may_differ=True)
    epochs: int = cli.arg(2, "epochs", may_differ=True)
    batch_size: int = cli.arg(4, "batch size")
    # Added for the optimizer choice: the tutorial's SGD with momentum, or Adam (no momentum).
    optimizer: str = cli.arg("sgd", "sgd: the tutorial's SGD with momentum; adam: "
                                    "torch.optim.Adam(lr)", choices=optim.CHOICES)
    lr: float = cli.arg(1e-3, "learning rate")
    momentum: float = cli.arg(0.9, "SGD momentum, in [0, 1)")
    seed: int = cli.seed()
    conv_features: tuple[int, ...] = cli.arg((6, 16), "conv1's and conv2's output channels (the "
                                                      "tutorial's Net: 6 16)", metavar="N")
    fc_features: tuple[int, ...] = cli.arg((120, 84), "fc1's and fc2's outputs (the tutorial's "
                                                      "Net: 120 84)", metavar="N")
    print_every: int = cli.arg(2000, "mini-batches per running-loss print (the tutorial's "
                                     "`if i % 2000 == 1999`)", may_differ=True)
    weights: str | None = cli.arg(None, "skip training: test this state_dict (.safetensors, or "
                                        "a PyTorch .pth)")
    # Added for seed 001's "training on a GPU": the device that trains and tests.
    device: str = cli.arg("auto", "the device to train and test on: auto (JAX's default: a GPU "
                                  "or TPU when there is one), or cpu, gpu, tpu",
                          choices=("auto", "cpu", "gpu", "tpu"))
    options: TrainOptions = TrainOptions(out="runs/cifar10")

    def __post_init__(self):
        cli.check_fields(self)
        cli.check_positive(self, "epochs", "batch_size", "lr", "print_every")
        cli.check(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        cli.check_optimizer_takes(self, "momentum")
        cli.check_fake_data(self)
        for name in ("conv_features", "fc_features"):
            widths = getattr(self, name)
            cli.check(len(widths) == 2 and min(widths) >= 1, name,
                      f"takes two widths of at least 1, got {' '.join(map(str, widths))}")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import aot, checkpoint, data, models, plots, train
from jaxnets.errors import ConfigError
from jaxnets.metrics import confusion_matrix, per_class_accuracy, predictions
from jaxnets.models import LeNet

MEAN = STD = (0.5, 0.5, 0.5)
PARAMETERS = 62_006
# What seed 001 itself states: it prints no output; it says an accuracy above 10 % already
# beats guessing.
TUTORIAL: dict[str, str] = {"accuracy": "above 10 % (better than chance)"}
BLITZ = ("the upstream PyTorch 60-minute blitz, 'Training a Classifier' "
         "(pytorch.org/tutorials/beginner/blitz/cifar10_tutorial.html), its published output")
REFERENCE: dict[str, tuple[str, str]] = {
    "running loss, first print": ("about 2.2 at [1, 2000]", BLITZ),
    "running loss, last print": ("about 1.3 at [2, 12000]", BLITZ),
    "accuracy": ("54 %", BLITZ),
}


# The tutorial's transform, applied inside the jitted step to uint8 NHWC images.
preprocess = data.to_tensor_normalize(MEAN, STD)


def unnormalize(images: np.ndarray) -> np.ndarray:
    """The tutorial's imshow: `img / 2 + 0.5` on normalized images, for display."""
    return np.asarray(preprocess(images)) / 2 + 0.5


def network(config: Config) -> LeNet:
    """`Net()`: the tutorial's LeNet for 3-channel images, with the Config's widths."""
    return LeNet(classes=10, conv_features=tuple(config.conv_features),
                 fc_features=tuple(config.fc_features))


MODEL = network(Config())  # the tutorial's own Net


@aot.once(static_argnums=(0,))
def init_params(model: LeNet, key: jax.Array) -> dict:
    """`Net()`'s freshly initialised parameters (PyTorch's init). One program (run eagerly, the
    initialisers' dozens of small ops would each compile, which takes seconds), compiled once
    for a quick compile (jaxnets.aot)."""
    return model.init(key, jnp.zeros((1, 32, 32, 3)))["params"]


def train_step(apply_fn):
    """The tutorial's training step: cross-entropy on `preprocess`ed images (one step per loop
    iteration); the benchmark times the same."""
    return train.make_train_step(train.classification_loss(apply_fn, preprocess))


def init_state(config: Config, key: jax.Array) -> train.TrainState:
    """`net = Net()` and `optim.SGD(net.parameters(), lr, momentum)` (PyTorch's SGD rule), or
    Adam with --optimizer adam (Adam takes no momentum)."""
    tx = optim.from_settings(config.optimizer, config.lr, momentum=config.momentum)
    model = network(config)
    return train.TrainState.create(apply_fn=model.apply, params=init_params(model, key), tx=tx)


def pick_device(config: Config) -> jax.Device:
    """Seed 001's `device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")`,
    made explicit: the first device of the chosen platform, or JAX's default for auto.

    Raises:
      ConfigError naming `device` when that platform is absent, or when a data-parallel run
      (devices > 1, which uses the default platform's devices) asks for another platform.
    """
    if config.device == "auto":
        return jax.devices()[0]
    try:
        device = jax.devices(config.device)[0]
    except RuntimeError:  # jax: "Unknown backend: 'gpu' requested, but no platforms ..."
        present = sorted({d.platform for d in jax.devices()})
        raise ConfigError(f"no {config.device} here (JAX sees: {', '.join(present)}); choose "
                          "auto or one of those", param="device") from None
    if config.options.devices != 1 and device.platform != jax.default_backend():
        raise ConfigError(f"{config.device} is not the default platform "
                          f"({jax.default_backend()}), which data-parallel training uses; "
                          "leave it on auto with devices > 1", param="device")
    return device


def device_text(device: jax.Device) -> str:
    """'cpu (cpu:0)', 'gpu (cuda:0, NVIDIA H200)': the platform, the device and its kind."""
    kind = "" if device.device_kind == device.platform else f", {device.device_kind}"
    return f"{device.platform} ({device}{kind})"


def running_losses(losses: np.ndarray, steps_per_epoch: int, every: int, start: int = 0,
                   stop: int | None = None) -> list[tuple[int, int, float]]:
    """The tutorial's prints as (epoch + 1, i + 1, running_loss / every), for the windows that
    end at global steps start..stop-1.

    `running_loss` is reset at each epoch and after each print, and accumulates `loss.item()` (a
    Python float, i.e. double) one mini-batch at a time: summed here the same way.
    """
    stop = len(losses) if stop is None else stop
    out = []
    for t in range(start, stop):
        epoch, i = divmod(t, steps_per_epoch)
        if i % every == every - 1:
            running = 0.0
            for x in losses[t - every + 1 : t + 1]:
                running += float(x)
            out.append((epoch + 1, i + 1, running / every))
    return out


def load_data(config: Config) -> tuple[data.Dataset, data.Dataset]:
    """torchvision.datasets.CIFAR10(train=True/False) through the data layer."""
    return (data.load(config.dataset, "train", config.data_dir),
            data.load(config.dataset, "test", config.data_dir))


def show_training_images(config: Config, train_set: data.Dataset, sampler: data.EpochSampler,
                         report: cli.Reporter) -> tuple[np.ndarray, str]:
    """"Show some training images": the first batch of the shuffled loader, as a PNG grid and
    its labels printed. Returns (the images as shown, in [0, 1]; the PNG's path)."""
    first = sampler.epoch_batches(0)[0][0][: min(config.batch_size, len(train_set))]
    shown = unnormalize(train_set.images[first])
    classes = train_set.class_names
    path = plots.image_grid(shown, os.path.join(config.options.out, "train_images.png"),
                            labels=[classes[j] for j in train_set.labels[first]])
    report.say(" ".join(f"{classes[j]:5s}" for j in train_set.labels[first]))
    return shown, path


def train_network(config: Config, state: train.TrainState, train_set: data.Dataset,
                  sampler: data.EpochSampler, keys: train.Keys, report: cli.Reporter):
    """The tutorial's loop: `config.epochs` passes, the running loss printed every
    `print_every` mini-batches, then "Finished Training". Returns (state, History)."""
    spe = sampler.steps_per_epoch

    def on_chunk(state, history):
        for epoch, i, value in running_losses(history.metrics["loss"], spe,
                                              config.print_every, history.chunk_start):
            history.log("running_losses", [epoch, i, value])
            report.say(f"[{epoch}, {i:5d}] loss: {value:.3f}", flush=True)  # seen when piped

    state, history = train.run_training(
        state, train_step(state.apply_fn),
        {"image": train_set.images, "label": train_set.labels}, sampler,
        config.epochs * spe, keys, config.options, config=config, name="experiments.cifar10",
        chunk_size=config.print_every, on_chunk=on_chunk, report=report.say)
    report.say("Finished Training")
    return state, history


class Trained(NamedTuple):
    """What the training half of the tutorial leaves for its testing half."""

    weights: str                   # the state_dict file to test
    history: train.History | None  # None with --weights: nothing trained
    shown: np.ndarray | None       # the training images shown
    plots: list[str]


def train_and_save(config: Config, state: train.TrainState, data_sets: tuple, keys: train.Keys,
                   device: jax.Device, report: cli.Reporter) -> Trained:
    """Show some training images, train the network, save it (`torch.save(net.state_dict(),
    PATH)`, as safetensors)."""
    train_set, test_set = data_sets
    report.say(f"[cifar10] {len(train_set)} train / {len(test_set)} test images from "
               f"{train_set.source}; LeNet with {models.count_params(state.params):,} "
               f"parameters; {cli.training_summary(config)}; training on {device_text(device)}")
    sampler = data.EpochSampler(len(train_set), config.batch_size, keys.data)
    shown, grid = show_training_images(config, train_set, sampler, report)
    state, history = train_network(config, state, train_set, sampler, keys, report)
    # PATH = './cifar_net.pth'; torch.save(net.state_dict(), PATH): safetensors.
    weights = checkpoint.export_state_dict(
        os.path.join(config.options.out, "cifar_net.safetensors"), {"params": state.params})
    return Trained(weights, history, shown, [grid])


def test_network(config: Config, weights: str, test_set: data.Dataset,
                 report: cli.Reporter) -> dict:
    """Load `weights` into a fresh Net and test it as the tutorial does: the first 4 test images
    (shown, ground truth, predicted), the accuracy on the whole test set, then per class."""
    classes = test_set.class_names
    # "dataiter = iter(testloader)": the first 4 test images (testloader is not shuffled).
    head = np.arange(min(4, len(test_set)))
    truth = [classes[j] for j in test_set.labels[head]]
    report.say("GroundTruth: ", " ".join(f"{name:5s}" for name in truth))
    # net = Net(); net.load_state_dict(torch.load(PATH, weights_only=True))
    fresh = init_state(config, jax.random.key(config.seed + 1))
    variables = checkpoint.import_state_dict(weights, {"params": fresh.params})
    net = fresh.replace(params=variables["params"])
    evaluation = train.evaluate(net, test_set.images, test_set.labels, preprocess)
    predicted = predictions(evaluation["logits"])
    guessed = [classes[predicted[j]] for j in head]
    report.say("Predicted: ", " ".join(f"{name:5s}" for name in guessed))
    grid = plots.image_grid(unnormalize(test_set.images[head]),
                            os.path.join(config.options.out, "test_images.png"),
                            labels={"GroundTruth": truth, "Predicted": guessed})
    correct, total = int((predicted == test_set.labels).sum()), len(test_set)
    report.say(f"Accuracy of the network on the {total} test images: {100 * correct // total} %")
    cm = confusion_matrix(test_set.labels, predicted, len(classes))
    per_class = per_class_accuracy(cm)
    for name, acc in zip(classes, per_class):
        # (the tutorial divides by the class's count; a class absent from a small test set
        # would be a ZeroDivisionError there)
        shown = f"{100 * acc:.1f} %" if np.isfinite(acc) else "n/a (no test images)"
        report.say(f"Accuracy for class: {name:5s} is {shown}")
    return {"ground_truth": truth, "predicted": guessed, "correct": correct, "total": total,
            "per_class": per_class, "confusion_matrix": cm, "grid": grid}


def write_tensorboard(logdir: str, trained: Trained, tested: dict, class_names) -> None:
    """TensorBoard events in `logdir`: the training images shown (step 0), the loss of every
    step, the test accuracy and the confusion matrix (at the last step; step 0 with --weights,
    which shows no training images)."""
    from jaxnets import tensorboard  # tensorboardX only when asked for

    losses = trained.history.metrics["loss"] if trained.history is not None else []
    with tensorboard.Writer(logdir) as tb:
        if trained.shown is not None:
            tb.image_grid("train/images", trained.shown, step=0)
        tb.scalars("train/loss", losses)
        tb.scalar("test/accuracy", tested["correct"] / tested["total"], len(losses))
        tb.confusion_matrix("test/confusion_matrix", tested["confusion_matrix"], class_names,
                            len(losses))


def report_results(config: Config, report: cli.Reporter, train_set: data.Dataset, n_params: int,
                   trained: Trained, tested: dict) -> dict:
    """metrics.json, the loss plot, and the tutorial's figures next to ours."""
    history, out = trained.history, config.options.out
    losses = history.metrics["loss"] if history is not None else []
    prints = history.logs.get("running_losses", []) if history is not None else []
    plot_paths = [*trained.plots, tested["grid"]]
    if len(losses):
        plot_paths.append(plots.loss_curve(
            losses, os.path.join(out, "loss_curve.png"), xlabel="mini-batch", ylabel="loss",
            title=f"{train_set.name}: LeNet training loss ({cli.training_summary(config)})",
            # (each loss of batch 4 alone is noise; the mean over the tutorial's print
            # interval is the trend its printed running losses show)
            smooth=config.print_every))
    correct, total = tested["correct"], tested["total"]
    metrics = {
        "experiment": "cifar10", "dataset": train_set.name, "data_source": train_set.source,
        "epochs": config.epochs, "batch_size": config.batch_size, "lr": config.lr,
        "momentum": config.momentum, "optimizer": config.optimizer, "seed": config.seed,
        "parameters": n_params, "weights": trained.weights, "trained": config.weights is None,
        "resumed_step": history.resumed_step if history is not None else 0,
        "running_losses": prints, "losses": losses,
        "ground_truth": tested["ground_truth"], "predicted": tested["predicted"],
        "correct": correct, "total": total, "test_accuracy": correct / total,
        "per_class_accuracy": {n: float(a) if np.isfinite(a) else None
                               for n, a in zip(train_set.class_names, tested["per_class"])},
        "compile_seconds": history.compile_seconds if history is not None else None,
        "train_seconds": history.train_seconds if history is not None else None,
        "plots": plot_paths,
    }
    cli.write_json(os.path.join(out, "metrics.json"), metrics)

    def printed(at: int) -> str:
        return f"{prints[at][2]:.3f} at [{prints[at][0]}, {prints[at][1]}]" if prints else "-"

    upstream = {k: f"- (upstream blitz: {v})" for k, (v, _) in REFERENCE.items()}
    report.compare([
        ("running loss, first print", upstream["running loss, first print"], printed(0)),
        ("running loss, last print", upstream["running loss, last print"], printed(-1)),
        (f"accuracy on the {total} test images",
         f"{TUTORIAL['accuracy']} (upstream blitz: {REFERENCE['accuracy'][0]})",
         f"{100 * correct // total} %"),
        ("compile / train seconds", "-", f"{history.compile_seconds:.2f} / "
                                         f"{history.train_seconds:.2f}" if history else "-"),
    ])
    report.wrote(os.path.join(out, "metrics.json"),
                 *([trained.weights] if config.weights is None else []), *plot_paths)
    return metrics


def run(config: Config, data: tuple[data.Dataset, data.Dataset] | None = None) -> dict:
    """Train (or load --weights), save, reload, test; returns the metrics in metrics.json.

    Args:
      config: the run's settings.
      data: (train, test) CIFAR-10-shaped datasets; loaded through the data layer when None.
    """
    report = cli.Reporter(config.options.quiet)
    device = pick_device(config)
    with jax.default_device(device):  # the data, the state and every step live there
        train_set, test_set = load_data(config) if data is None else data
        os.makedirs(config.options.out, exist_ok=True)
        keys = train.split_keys(config.seed)
        state = init_state(config, keys.init)   # net = Net(); optimizer = optim.SGD(...)
        if config.weights is None:
            trained = train_and_save(config, state, (train_set, test_set), keys, device, report)
        else:
            trained = Trained(config.weights, None, None, [])
            report.say(f"[cifar10] testing {config.weights} on {len(test_set)} test images "
                       f"from {test_set.source}, on {device_text(device)}")
        tested = test_network(config, trained.weights, test_set, report)
    if config.options.tensorboard:
        write_tensorboard(config.options.tensorboard, trained, tested, test_set.class_names)
    return report_results(config, report, train_set, models.count_params(state.params), trained,
                          tested)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

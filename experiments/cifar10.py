"""Seed 001, "训练分类器": the 60-minute blitz CIFAR-10 classifier, step by step.

    python -m experiments.cifar10                               # CIFAR-10 via tensorflow-datasets
    python -m experiments.cifar10 --data-dir DIR                # local cifar-10-batches-bin (or .tar.gz)
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

from experiments import cli


@dataclasses.dataclass(frozen=True)
class Config:
    data_dir: str | None = cli.arg(None, "folder with CIFAR-10's binary version "
                                         "(cifar-10-batches-bin or cifar-10-binary.tar.gz); "
                                         "default: the tensorflow-datasets cache or download")
    epochs: int = cli.arg(2, "epochs")
    batch_size: int = cli.arg(4, "batch size")
    lr: float = cli.arg(1e-3, "learning rate")
    momentum: float = cli.arg(0.9, "SGD momentum, in [0, 1)")
    seed: int = cli.seed()
    print_every: int = cli.arg(2000, "mini-batches per running-loss print (the tutorial's "
                                     "`if i % 2000 == 1999`)")
    weights: str | None = cli.arg(None, "skip training: test this state_dict (.safetensors, or "
                                        "a PyTorch .pth)")
    out: str = cli.out("cifar10")
    progress: bool = cli.progress()
    checkpoint_dir: str | None = cli.checkpoint_dir()
    resume: bool = cli.resume()
    checkpoint_every: int = cli.checkpoint_every(2000)
    devices: int = cli.devices()
    keep_checkpoints: int = cli.keep_checkpoints()
    quiet: bool = cli.quiet()
    coordinator: str | None = cli.coordinator()
    num_processes: int | None = cli.num_processes()
    process_id: int | None = cli.process_id()
    # Added for the optimizer choice: the tutorial's SGD with momentum, or Adam (no momentum).
    optimizer: str = cli.arg("sgd", "sgd: the tutorial's SGD with momentum; adam: "
                                    "torch.optim.Adam(lr)", choices=("sgd", "adam"))
    # Added for TensorBoard: events beside metrics.json (they change no result).
    tensorboard: str | None = cli.arg(None, "also write TensorBoard events into this folder "
                                            "(loss, test accuracy, training images, "
                                            "confusion matrix)", metavar="DIR")
    # Added for seed 001's "training on a GPU": the device that trains and tests.
    device: str = cli.arg("auto", "the device to train and test on: auto (JAX's default: a GPU "
                                  "or TPU when there is one), or cpu, gpu, tpu",
                          choices=("auto", "cpu", "gpu", "tpu"))

    def __post_init__(self):
        cli.check_fields(self)
        cli.check_positive(self, "epochs", "batch_size", "lr", "print_every")
        cli.check(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        cli.check(self.optimizer == "sgd" or self.momentum == _default(self, "momentum"),
                  "momentum", "applies to --optimizer sgd only (Adam takes no momentum)")
        cli.check_devices(self)
        cli.check_checkpoint(self)


def _default(config, name: str):
    """A Config field's declared default."""
    return type(config).__dataclass_fields__[name].default


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import aot, checkpoint, models, optim, plots, train
from jaxnets import data as D
from jaxnets import metrics as M
from jaxnets.errors import ConfigError
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
preprocess = D.to_tensor_normalize(MEAN, STD)


def unnormalize(images: np.ndarray) -> np.ndarray:
    """The tutorial's imshow: `img / 2 + 0.5` on normalized images, for display."""
    return np.asarray(preprocess(images)) / 2 + 0.5


MODEL = LeNet(classes=10)


@aot.once
def init_params(key: jax.Array) -> dict:
    """`Net()`'s freshly initialised parameters (PyTorch's init). One program (run eagerly, the
    initialisers' dozens of small ops would each compile, which takes seconds), compiled once
    for a quick compile (jaxnets.aot)."""
    return MODEL.init(key, jnp.zeros((1, 32, 32, 3)))["params"]


def train_step(apply_fn):
    """The tutorial's training step: cross-entropy on `preprocess`ed images (one step per loop
    iteration); the benchmark times the same."""
    return train.make_train_step(train.classification_loss(apply_fn, preprocess))


# Settings that may change on resume without changing the result.
MAY_DIFFER = cli.RUN_OPTIONS + ("tensorboard", "epochs", "print_every")


def init_state(config: Config, key: jax.Array) -> train.TrainState:
    """`net = Net()` and `optim.SGD(net.parameters(), lr, momentum)` (PyTorch's SGD rule), or
    Adam with --optimizer adam (Adam takes no momentum)."""
    tx = (optim.by_name("adam", config.lr) if config.optimizer == "adam" else
          optim.by_name("sgd", config.lr, momentum=config.momentum))
    return train.TrainState.create(apply_fn=MODEL.apply, params=init_params(key), tx=tx)


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
    if config.devices != 1 and device.platform != jax.default_backend():
        raise ConfigError(f"{config.device} is not the default platform "
                          f"({jax.default_backend()}), which data-parallel training uses; "
                          "leave it on auto with devices > 1", param="device")
    return device


def device_text(device: jax.Device) -> str:
    """'cpu (cpu:0)', 'gpu (cuda:0, NVIDIA H200)': the platform, the device and its kind."""
    kind = "" if device.device_kind == device.platform else f", {device.device_kind}"
    return f"{device.platform} ({device}{kind})"


def optimizer_text(config: Config) -> str:
    """The optimizer as the header names it."""
    if config.optimizer == "adam":
        return f"Adam lr {config.lr}"
    return f"SGD lr {config.lr} momentum {config.momentum}"


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


def load_data(config: Config) -> tuple[D.Dataset, D.Dataset]:
    """torchvision.datasets.CIFAR10(train=True/False) through the data layer."""
    return (D.load("cifar10", "train", config.data_dir),
            D.load("cifar10", "test", config.data_dir))


def show_training_images(config: Config, train_set: D.Dataset, sampler: D.EpochSampler,
                         report: cli.Reporter) -> tuple[np.ndarray, str]:
    """"Show some training images": the first batch of the shuffled loader, as a PNG grid and
    its labels printed. Returns (the images as shown, in [0, 1]; the PNG's path)."""
    first = sampler.epoch_batches(0)[0][0][: min(config.batch_size, len(train_set))]
    shown = unnormalize(train_set.images[first])
    classes = train_set.class_names
    path = plots.image_grid(shown, os.path.join(config.out, "train_images.png"),
                            labels=[classes[j] for j in train_set.labels[first]])
    report.say(" ".join(f"{classes[j]:5s}" for j in train_set.labels[first]))
    return shown, path


def train_network(config: Config, state: train.TrainState, train_set: D.Dataset,
                  sampler: D.EpochSampler, keys: train.Keys, report: cli.Reporter):
    """The tutorial's loop: `config.epochs` passes, the running loss printed every
    `print_every` mini-batches, then "Finished Training". Returns (state, History)."""
    spe = sampler.steps_per_epoch

    def on_chunk(state, history):
        for epoch, i, value in running_losses(history.metrics["loss"], spe,
                                              config.print_every, history.chunk_start):
            history.log("running_losses", [epoch, i, value])
            report.say(f"[{epoch}, {i:5d}] loss: {value:.3f}", flush=True)  # seen when piped

    ckpt = checkpoint.Checkpoints(config.checkpoint_dir, every=config.checkpoint_every,
                                  keep=config.keep_checkpoints, resume=config.resume,
                                  config=dataclasses.asdict(config), may_differ=MAY_DIFFER,
                                  name="experiments.cifar10")
    state, history = train.run_training(
        state, train_step(state.apply_fn),
        {"image": train_set.images, "label": train_set.labels}, sampler,
        config.epochs * spe, keys, checkpoints=ckpt, chunk_size=config.print_every,
        devices=config.devices, progress=config.progress and not config.quiet,
        desc="cifar10", on_chunk=on_chunk, report=report.say)
    report.say("Finished Training")
    return state, history


def test_network(config: Config, weights: str, test_set: D.Dataset,
                 report: cli.Reporter) -> dict:
    """Load `weights` into a fresh Net and test it as the tutorial does: the first 4 test images
    (shown, ground truth, predicted), the accuracy on the whole test set, then per class."""
    classes = test_set.class_names
    # "dataiter = iter(testloader)": the first 4 test images (testloader is not shuffled).
    head = np.arange(min(4, len(test_set)))
    grid = plots.image_grid(unnormalize(test_set.images[head]),
                            os.path.join(config.out, "test_images.png"),
                            labels=[classes[j] for j in test_set.labels[head]])
    report.say("GroundTruth: ", " ".join(f"{classes[test_set.labels[j]]:5s}" for j in head))
    # net = Net(); net.load_state_dict(torch.load(PATH, weights_only=True))
    fresh = init_state(config, jax.random.key(config.seed + 1))
    variables = checkpoint.import_state_dict(weights, {"params": fresh.params})
    net = fresh.replace(params=variables["params"])
    evaluation = train.evaluate(net, test_set.images, test_set.labels, preprocess)
    predicted = M.predictions(evaluation["logits"])
    report.say("Predicted: ", " ".join(f"{classes[predicted[j]]:5s}" for j in head))
    correct, total = int((predicted == test_set.labels).sum()), len(test_set)
    report.say(f"Accuracy of the network on the {total} test images: {100 * correct // total} %")
    cm = M.confusion_matrix(test_set.labels, predicted, len(classes))
    per_class = M.per_class_accuracy(cm)
    for name, acc in zip(classes, per_class):
        # (the tutorial divides by the class's count; a class absent from a small test set
        # would be a ZeroDivisionError there)
        shown = f"{100 * acc:.1f} %" if np.isfinite(acc) else "n/a (no test images)"
        report.say(f"Accuracy for class: {name:5s} is {shown}")
    return {"ground_truth": [classes[j] for j in test_set.labels[head]],
            "predicted": [classes[predicted[j]] for j in head], "correct": correct,
            "total": total, "per_class": per_class, "confusion_matrix": cm, "grid": grid}


def write_tensorboard(logdir: str, history, images: np.ndarray | None, accuracy: float, cm,
                      class_names) -> None:
    """TensorBoard events in `logdir`: the training images shown (step 0), the loss of every
    step, the test accuracy and the confusion matrix (at the last step; step 0 with --weights,
    which shows no training images)."""
    from jaxnets import tensorboard  # tensorboardX only when asked for

    losses = history.metrics["loss"] if history is not None else []
    with tensorboard.Writer(logdir) as tb:
        if images is not None:
            tb.image_grid("train/images", images, step=0)
        tb.scalars("train/loss", losses)
        tb.scalar("test/accuracy", accuracy, len(losses))
        tb.confusion_matrix("test/confusion_matrix", cm, class_names, len(losses))


def report_results(config: Config, report: cli.Reporter, train_set: D.Dataset, n_params: int,
                   weights: str, history, tested: dict, plot_paths: list[str]) -> dict:
    """metrics.json, the loss plot, and the tutorial's figures next to ours."""
    losses = history.metrics["loss"] if history is not None else []
    prints = history.logs.get("running_losses", []) if history is not None else []
    if len(losses):
        plot_paths.append(plots.loss_curve(losses, os.path.join(config.out, "loss_curve.png"),
                                           title="CIFAR-10 LeNet training loss",
                                           xlabel="mini-batch", ylabel="loss"))
    correct, total = tested["correct"], tested["total"]
    metrics = {
        "experiment": "cifar10", "data_source": train_set.source, "epochs": config.epochs,
        "batch_size": config.batch_size, "lr": config.lr, "momentum": config.momentum,
        "optimizer": config.optimizer, "seed": config.seed, "parameters": n_params,
        "weights": weights, "trained": config.weights is None,
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
    cli.write_json(os.path.join(config.out, "metrics.json"), metrics)

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
    report.wrote(os.path.join(config.out, "metrics.json"),
                 *([weights] if config.weights is None else []), *plot_paths)
    return metrics


def run(config: Config, data: tuple[D.Dataset, D.Dataset] | None = None) -> dict:
    """Train (or load --weights), save, reload, test; returns the metrics in metrics.json.

    Args:
      config: the run's settings.
      data: (train, test) CIFAR-10-shaped datasets; loaded through the data layer when None.
    """
    report = cli.Reporter(config.quiet)
    device = pick_device(config)
    with jax.default_device(device):  # the data, the state and every step live there
        train_set, test_set = load_data(config) if data is None else data
        os.makedirs(config.out, exist_ok=True)
        keys = train.split_keys(config.seed)
        state = init_state(config, keys.init)   # net = Net(); optimizer = optim.SGD(...)
        n_params = models.count_params(state.params)
        shown = history = None
        plot_paths = []
        if config.weights is None:
            report.say(f"[cifar10] {len(train_set)} train / {len(test_set)} test images from "
                       f"{train_set.source}; LeNet with {n_params:,} parameters; batch "
                       f"{config.batch_size}, {optimizer_text(config)}, "
                       f"{cli.plural(config.epochs, 'epoch')}; training on {device_text(device)}")
            sampler = D.EpochSampler(len(train_set), config.batch_size, keys.data)
            shown, grid_train = show_training_images(config, train_set, sampler, report)
            plot_paths.append(grid_train)
            state, history = train_network(config, state, train_set, sampler, keys, report)
            # PATH = './cifar_net.pth'; torch.save(net.state_dict(), PATH): safetensors.
            weights = checkpoint.export_state_dict(
                os.path.join(config.out, "cifar_net.safetensors"), {"params": state.params})
        else:
            weights = config.weights
            report.say(f"[cifar10] testing {weights} on {len(test_set)} test images from "
                       f"{test_set.source}, on {device_text(device)}")
        tested = test_network(config, weights, test_set, report)
    plot_paths.append(tested["grid"])
    if config.tensorboard:
        write_tensorboard(config.tensorboard, history, shown, tested["correct"] / tested["total"],
                          tested["confusion_matrix"], test_set.class_names)
    return report_results(config, report, train_set, n_params, weights, history, tested,
                          plot_paths)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

"""Seed 000: classify MNIST with a 784-200-10 MLP, hand-written SGD, then Adam.

    python -m experiments.mnist                      # the seed's SGD (gradients never zeroed)
    python -m experiments.mnist --optimizer adam     # the seed's Adam version
    python -m experiments.mnist --zero-grad          # textbook SGD instead of the seed's quirk
    python -m experiments.mnist --devices 4          # data parallel over 4 devices (see jaxnets.parallel)
    python -m experiments.mnist --tensorboard runs/tb/mnist   # also TensorBoard events

The recipe: w1 = randn(784, 200), w2 = randn(200, 10), no biases, `relu(x @ w1) @ w2`,
CrossEntropyLoss, lr 1e-3, 2000 iterations of 100 training images drawn with replacement, each
batch divided by its own maximum. The tutorial reports about 70% accuracy for SGD and above 95%
for Adam on MNIST.

The seed's SGD loop never zeroes `.grad`: PyTorch accumulates each backward pass into it, so
step t subtracts lr * (sum of all gradients so far). That is reproduced by default and said so
in the output; --zero-grad gives the textbook update.

Without MNIST (no internet, nothing cached) it runs on Fashion-MNIST if that is installed
locally (Debian's dataset-fashion-mnist), with a notice: the tutorial's figures are for MNIST.
It first prints the seed's first snippet, the untrained network on one random vector. Writes
metrics.json (with the loss of every step, the list the seed prints) and loss_curve.png into
--out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import NamedTuple

from experiments import cli
from jaxnets import optim
from jaxnets.options import TrainOptions

# What seed 000 itself states (it prints no accuracy): "about 70%" on MNIST for its SGD loop,
# "above 95%" with a better optimizer (its Adam version).
TUTORIAL: dict[str, str] = {"test accuracy, SGD (MNIST)": "about 70%",
                            "test accuracy, Adam (MNIST)": "above 95%"}
# No figure from elsewhere: the seed's results are for MNIST and nobody publishes this
# network's Fashion-MNIST accuracy.
REFERENCE: dict[str, tuple[str, str]] = {}
# The same, by --optimizer (experiments.report reads these).
TUTORIAL_ACCURACY = {"sgd": TUTORIAL["test accuracy, SGD (MNIST)"],
                     "adam": TUTORIAL["test accuracy, Adam (MNIST)"]}
TUTORIAL_NUMBERS = {"sgd": 0.70, "adam": 0.95}


@dataclasses.dataclass(frozen=True)
class Config:
    dataset: str | None = cli.arg(None, "dataset (default: mnist, falling back to a local "
                                        "Fashion-MNIST with a notice when MNIST is unavailable; "
                                        "fake_mnist: FakeData, seeded random images of MNIST's "
                                        "shape)", choices=("mnist", "fashion_mnist", "fake_mnist"))
    data_dir: str | None = cli.arg(None, "folder with the IDX files (raw or .gz)",
                                   may_differ=True)
    optimizer: str = cli.arg("sgd", "sgd: the seed's hand-written update; adam: the seed's Adam "
                                    "version", choices=optim.CHOICES)
    zero_grad: bool = cli.arg(False, "sgd only: zero the gradient each step (textbook SGD; the "
                                     "seed does not)")
    steps: int = cli.arg(2000, "iterations", may_differ=True)
    batch_size: int = cli.arg(100, "batch size")
    lr: float = cli.arg(1e-3, "learning rate")
    hidden: int = cli.arg(200, "hidden units (the seed's w1 = torch.randn(784, 200))")
    seed: int = cli.seed()
    options: TrainOptions = TrainOptions(out="runs/mnist")

    def __post_init__(self):
        cli.check_fields(self)
        cli.check_positive(self, "steps", "batch_size", "lr", "hidden")
        cli.check_fake_data(self)


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import aot, data, plots, train
from jaxnets.data.tfds_source import MIRROR_ENV
from jaxnets.errors import DataUnavailable
from jaxnets.models import SeedMLP


def preprocess(images: jax.Array) -> jax.Array:
    """Seed 000: `x = train_data[rid].float().flatten(start_dim=1); x /= x.max()`."""
    return data.divide_by_batch_max(data.flatten(images))


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """The optimizer chosen by name. The seed's SGD never zeroes `.grad`, so each step subtracts
    lr * (the sum of all gradients so far): SGD with momentum 1 (`optim.seed_sgd`, the same
    bits); --zero-grad zeroes it, momentum 0. Adam takes no momentum."""
    return optim.from_settings(config.optimizer, config.lr, momentum=seed_momentum(config))


def seed_momentum(config: Config) -> float:
    """SGD's momentum: 1 for the seed's never-zeroed `.grad`, 0 with --zero-grad."""
    return 0.0 if config.zero_grad else 1.0


def load_data(config: Config) -> tuple[data.Dataset, data.Dataset, str | None]:
    """Train and test splits, and a notice when falling back from MNIST to Fashion-MNIST."""
    try:
        return (data.load(config.dataset or "mnist", "train", config.data_dir),
                data.load(config.dataset or "mnist", "test", config.data_dir), None)
    except DataUnavailable as e:
        # Only the default (no --dataset) falls back; an explicit --dataset mnist does not.
        if not (config.dataset is None and config.data_dir is None):
            raise
        try:
            train_set = data.load("fashion_mnist", "train", download=False)
            test_set = data.load("fashion_mnist", "test", download=False)
        except DataUnavailable:
            raise e from None
        return train_set, test_set, fallback_notice(e, train_set.source)


def fallback_notice(e: DataUnavailable, source: str) -> str:
    """Short lines for a command-line user: why MNIST is missing, what runs instead, and how to
    get MNIST (the library's message lists every way, with its parameter names)."""
    why = e.message.split("; ")[0].removeprefix("mnist: ")  # what failed; the rest: the ways
    return (f"MNIST is not available, so this runs on Fashion-MNIST ({source}) instead.\n"
            f"  Why: {why}.\n"
            "  The tutorial's figures are for MNIST; Fashion-MNIST is a harder dataset.\n"
            "  To get MNIST: run once with internet (tensorflow-datasets caches it), or pass\n"
            f"  {cli.flag('data_dir')} DIR holding its IDX files, or set ${MIRROR_ENV} to a "
            "mirror's base URL.")


# Four steps per loop iteration: a step of this MLP takes ~0.5 ms on CPU, and unrolling 4
# measured ~10% faster (benchmarks/, interleaved runs).
UNROLL = 4


def train_step(apply_fn):
    """Seed 000's training step: cross-entropy on `preprocess`ed images. The compiled loop is
    `train.make_run_steps(train_step(apply_fn), unroll=UNROLL)`; the benchmark times the same."""
    return train.make_train_step(train.classification_loss(apply_fn, preprocess))


def sampler(config: Config, n: int, data_key: jax.Array) -> data.ReplacementSampler:
    """Seed 000's batches: `np.random.randint(0, n, size=batch_size)` each step, as a pure
    function of (data_key, step)."""
    return data.ReplacementSampler(n, config.batch_size, data_key)


def init_state(config: Config, key: jax.Array, num_features: int = 784) -> train.TrainState:
    model, tx = SeedMLP(hidden=config.hidden), make_optimizer(config)

    # One compiled program: op by op, Flax's init (draws, scaling, the forward pass) and the
    # optimizer's zeros compiled 14 small programs (~2.5 s of a cold start). `aot.once`: it runs
    # once, so it is compiled for a quick compile (the same bits; see jaxnets.aot).
    @aot.once
    def init(key):
        params = model.init(key, jnp.zeros((1, num_features)))["params"]
        return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    return init(key)


class Start(NamedTuple):
    """Where a run starts: its keys, its initial state, its batches."""

    keys: train.Keys
    state: train.TrainState
    sampler: data.ReplacementSampler


def start(config: Config, train_set: data.Dataset,
          state: train.TrainState | None = None) -> Start:
    """The run's start, from its seed: `w1 = torch.randn(784, 200); w2 = torch.randn(200, 10)`
    and the optimizer (or the given `state`), and the batches. The report gives PyTorch the
    same start from here."""
    keys = train.split_keys(config.seed)
    if state is None:
        state = init_state(config, keys.init, int(np.prod(train_set.images.shape[1:])))
    return Start(keys, state, sampler(config, len(train_set), keys.data))


def first_snippet(state: train.TrainState, init_key: jax.Array) -> str:
    """Seed 000's first snippet, `x = torch.randn(784); print(nn(x, w1, w2))`: the untrained
    network on one random vector (the seed prints 10 values in the hundreds: randn weights).
    x gets a key of its own, derived from the init key (init used `init_key` itself)."""

    @jax.jit  # one program (op by op: six)
    def nn_on_randn(params, init_key):
        x = jax.random.normal(jax.random.fold_in(init_key, 1), params["w1"].shape[:1])
        return state.apply_fn({"params": params}, x)

    out = nn_on_randn(state.params, init_key)
    values = np.array2string(np.asarray(out), precision=4, separator=", ", max_line_width=96)
    return f"x = randn(784); nn(x, w1, w2) before training:\n{values}"


def rule(config: Config) -> str:
    """The optimizer as the header and the plot name it, the seed's quirk said plainly."""
    text = optim.label(config.optimizer, config.lr, momentum=seed_momentum(config))
    if not optim.takes(config.optimizer, "momentum"):
        return text
    return text + (" (.grad zeroed each step, --zero-grad)" if config.zero_grad else
                   " (.grad never zeroed, as the seed wrote it)")


def header(config: Config, train_set: data.Dataset, test_set: data.Dataset) -> str:
    """The run's first line: the data, the update rule (the seed's quirk said plainly), the
    steps."""
    quirk = ("" if config.zero_grad or not optim.takes(config.optimizer, "momentum") else
             ": each step subtracts lr * (sum of all gradients so far); --zero-grad for "
             "textbook SGD")
    return (f"[mnist] {train_set.name} ({len(train_set)} train / {len(test_set)} test, from "
            f"{train_set.source}); optimizer: {rule(config)}{quirk}; "
            f"{cli.plural(config.steps, 'step')} of {config.batch_size}")


def train_network(config: Config, begin: Start, train_set: data.Dataset,
                  report: cli.Reporter):
    """Seed 000's loop: `steps` updates on batches drawn with replacement. Returns (state,
    History)."""
    return train.run_training(
        begin.state, train_step(begin.state.apply_fn),
        {"image": train_set.images, "label": train_set.labels}, begin.sampler, config.steps,
        begin.keys, config.options, config=config, name="experiments.mnist",
        chunk_size=min(config.steps, 1000), unroll=UNROLL, report=report.say)


def write_tensorboard(logdir: str, losses, accuracy: float, step: int) -> None:
    """The loss of every step and the test accuracy, as TensorBoard events in `logdir`."""
    from jaxnets import tensorboard  # tensorboardX only when asked for

    with tensorboard.Writer(logdir) as tb:
        tb.scalars("train/loss", losses)
        tb.scalar("test/accuracy", accuracy, step)


def why_the_loss_is_high(test: dict, labels: np.ndarray) -> str:
    """One line: why a final loss of ~4 goes with ~78% accuracy. The seed's torch.randn weights
    make logits in the tens and hundreds, so a wrong answer costs ~20 nats of cross-entropy
    and a right one almost none: the mean is about (1 - accuracy) x the cost of a wrong one."""
    logits = np.asarray(test["logits"], np.float64)
    top = logits.max(1, keepdims=True)
    costs = (top[:, 0] + np.log(np.exp(logits - top).sum(1))) - logits[np.arange(len(labels)),
                                                                        labels]
    right = logits.argmax(1) == labels
    return (f"why the loss stays high: randn weights make the logits large (median |logit| "
            f"{np.median(np.abs(logits)):.0f}), so on the test set a wrong answer costs "
            f"{costs[~right].mean() if (~right).any() else 0:.1f} and a right one "
            f"{costs[right].mean() if right.any() else 0:.3f} (cross-entropy)")


def report_results(config: Config, report: cli.Reporter, train_set: data.Dataset, history,
                   accuracy: float, notice: str | None) -> dict:
    """metrics.json, the loss plot, TensorBoard events if asked, and the tutorial's figure next
    to ours."""
    losses = history.metrics["loss"]    # all steps, also those before a resume
    final_loss = float(np.mean(losses[-50:]))
    tutorial = TUTORIAL_ACCURACY.get(config.optimizer, "-")  # (the seed has SGD and Adam runs)
    metrics = {
        "experiment": "mnist", "dataset": train_set.name, "data_source": train_set.source,
        "optimizer": config.optimizer, "zero_grad": config.zero_grad, "steps": config.steps,
        "batch_size": config.batch_size, "lr": config.lr, "seed": config.seed,
        "test_accuracy": accuracy, "final_loss": final_loss, "losses": losses,
        "compile_seconds": history.compile_seconds, "train_seconds": history.train_seconds,
        "tutorial_accuracy": tutorial, "notice": notice,
    }
    out = config.options.out
    if config.options.tensorboard:
        write_tensorboard(config.options.tensorboard, losses, accuracy, config.steps)
    os.makedirs(out, exist_ok=True)
    # A log axis: the loss starts in the hundreds (randn weights) and ends near 1-5, which a
    # linear axis flattens into its bottom line.
    plot = plots.loss_curve(losses, os.path.join(out, "loss_curve.png"), logy=True,
                            title=f"Classifying {train_set.name} using a neural network\n"
                                  f"{rule(config)}, {cli.plural(config.steps, 'step')} of "
                                  f"{config.batch_size}", xlabel="time (step)",
                            ylabel="Loss (log scale)")
    metrics["plots"] = [plot]
    path = cli.write_json(os.path.join(out, "metrics.json"), metrics)
    # The seed prints its whole loss list; ours is in metrics.json.
    report.say(f"the loss of every step ({len(losses):,} values, the list the seed prints): "
               f'{path}, "losses"')
    figure = "test accuracy" + ("" if train_set.name == "mnist" else
                                f" (ours on {train_set.name}, tutorial's on mnist)")
    report.compare([
        (figure, tutorial, f"{100 * accuracy:.2f}%"),
        ("final loss (mean of last 50 steps)", "-", f"{final_loss:.4f}"),
        ("compile / train seconds", "-",
         f"{history.compile_seconds:.2f} / {history.train_seconds:.2f}"),
    ])
    report.wrote(path, plot)
    return metrics


def run(config: Config, data: tuple[data.Dataset, data.Dataset] | None = None,
        state: train.TrainState | None = None) -> dict:
    """Train and evaluate; returns the metrics written to metrics.json.

    Args:
      config: the run's settings.
      data: (train, test) datasets; loaded through the data layer when None.
      state: a starting state (tests pass PyTorch's initial weights); built from the seed if None.
    """
    report = cli.Reporter(config.options.quiet)
    train_set, test_set, notice = load_data(config) if data is None else (*data, None)
    if notice:
        report.notice(notice)
    begin = start(config, train_set, state)  # w1 = torch.randn(784, 200); w2 = ...; optimizer
    report.say(first_snippet(begin.state, begin.keys.init))  # x = torch.randn(784); nn(x, w1, w2)
    report.say(header(config, train_set, test_set))
    state, history = train_network(config, begin, train_set, report)
    test = train.evaluate(state, test_set.images, test_set.labels, preprocess)
    report.say(why_the_loss_is_high(test, test_set.labels))
    return report_results(config, report, train_set, history, test["accuracy"], notice)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

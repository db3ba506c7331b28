"""Run every experiment and write the reproduction table: the tutorials' figures next to ours.

    python -m experiments.report --quick     # every experiment, quick settings (< 3 min, 2 CPUs)
    python -m experiments.report             # the tutorials' own settings
    python -m experiments.report --seeds 10  # also seed 000 over 10 seeds, jaxnets vs PyTorch

Every experiment in `experiments.EXPERIMENTS` runs through its own `run`; an experiment this
report has no figures for is listed as run. --quick shortens only mnist (500 of 2000 steps),
linear_classifier (3 of 20 epochs) and cifar10 (1 of 2 epochs); their figures are marked as
quick-mode figures. --seeds N runs seed 000 (SGD as
written and Adam) N times with jaxnets and with the seed's own PyTorch code and reports mean +- sd,
range and a Mann-Whitney U test: the tutorial's run is random, one seed is one draw.

Writes REPRODUCTION.md and reproduction.json into --out (default runs/report), one row per
figure a tutorial prints or claims: the experiment, the tutorial's figure, ours, PyTorch's
(measured here, from the same start, when torch is installed), the dataset, and a status:
`matches`, `differs` (with the reason), or `not run` (needs data, and how to get it).
Experiments whose data is missing are reported as such, not dropped. Each experiment's own
output goes to <out>/<name>/log.txt next to its metrics.json and plots, which the report links.
With --seeds, the distributions also go to seed_study.json (docs/reproduction/seed_study.json is
the committed one: the seed 000 lesson checks its runs against it, the README quotes it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from experiments import EXPERIMENTS, cli
from jaxnets.options import RunOptions, TrainOptions


@dataclasses.dataclass(frozen=True)
class Config:
    quick: bool = cli.arg(False, "quick settings (< 3 minutes on 2 CPUs): fewer steps for mnist, "
                                 "linear_classifier and cifar10, said so in the report")
    options: RunOptions = RunOptions(out="runs/report")
    data_dir: str | None = cli.arg(None, "folder with MNIST's IDX files, if you have them "
                                         "(otherwise the usual search order)")
    cifar_data_dir: str | None = cli.arg(None, "folder with CIFAR-10's binary version, if you "
                                               "have it")
    torch: bool = cli.arg(True, "do not measure PyTorch's figures even if torch is installed")
    only: tuple[str, ...] = cli.arg((), "run only these experiments", choices=EXPERIMENTS,
                                    metavar="NAME")
    seeds: int = cli.arg(0, "also run seed 000 (SGD and Adam) over N seeds, jaxnets and the "
                            "seed's PyTorch code, and report mean +- sd, range and a "
                            "Mann-Whitney U test", metavar="N")

    def __post_init__(self):
        cli.check_fields(self)
        cli.check(self.seeds >= 0, "seeds", f"must be 0 or more, got {self.seeds}")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import numpy as np

from jaxnets.errors import DataUnavailable

Row = dict[str, Any]
STATUS_MATCH, STATUS_DIFF, STATUS_NOT_RUN = "matches", "differs", "not run"
STATUS_RAN = "ran"  # an experiment without figures compared here: it ran, its metrics.json says


def row(experiment: str, figure: str, tutorial: str, ours: str, status: str, *,
        pytorch: str = "-", reference: str = "-", dataset: str = "-", note: str = "",
        deterministic: bool = True, quick: bool = False) -> Row:
    """One line of the reproduction table. `deterministic`: the jaxnets and PyTorch cells are the
    same on every run on CPU (a fresh report must reproduce them); `quick`: computed with fewer
    steps than the tutorial's (--quick)."""
    return {"experiment": experiment, "figure": figure, "tutorial": tutorial, "ours": ours,
            "pytorch": pytorch, "reference": reference, "dataset": dataset, "status": status,
            "note": note, "deterministic": deterministic, "quick": quick}


def close(a: float, b: float, rtol: float = 1e-4, atol: float = 0.0) -> bool:
    return bool(np.isclose(float(a), float(b), rtol=rtol, atol=atol))


def fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, (list, tuple)) or np.ndim(v) > 0:  # lists, numpy and jax arrays
        return "[" + ", ".join(fmt(x, digits) for x in np.asarray(v).tolist()) + "]"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}"
    return str(v)


def torch_available(config: Config) -> bool:
    """Whether to measure PyTorch's figures: asked for, torch installed, and the seeds' PyTorch
    code (reference/, in a checkout of the repository) at hand."""
    if not config.torch:
        return False
    try:
        import reference.seeds  # noqa: F401  (imports torch)
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------ the experiments
def run_experiment(name: str, out: str, **settings) -> dict:
    """`experiments.<name>.run` on its Config with `settings` (the rest its defaults), writing
    into `out`, without progress bars; returns its metrics."""
    module = importlib.import_module(f"experiments.{name}")
    options = dataclasses.replace(cli.default_options(module.Config), out=out, progress=False)
    return module.run(module.Config(**settings, options=options))


# Each figure's tutorial cell is what the seed itself prints or states, read from the module's
# TUTORIAL where it declares the figure; figures from elsewhere go to the reference cell with
# their source (module REFERENCE, else the text here). The PyTorch cell is measured here with
# the seed's torch code, or names the test that checks it; never a literal.
def tutorial(module, key: str, fallback: str) -> str:
    """The seed's own figure `key`: module.TUTORIAL[key] when the module declares it."""
    value = getattr(module, "TUTORIAL", {}).get(key, fallback)
    return value if isinstance(value, str) else fmt(value)


def published(module, key: str, fallback: tuple[str, str]) -> str:
    """A figure from outside the seed, `value (source)`: module.REFERENCE[key] when declared."""
    value, source = getattr(module, "REFERENCE", {}).get(key, fallback)
    return f"{value if isinstance(value, str) else fmt(value)} ({source})"


def tested(test: str) -> str:
    """The PyTorch cell of a figure that a parity test checks instead of the report."""
    return f"= torch ({test})"


BOOK = "Deep Learning with PyTorch, ch. 5; the seed elides it with '...'"


def _tensors(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import tensors

    s = m = run_experiment("tensors", out)  # {section: values}
    pytorch = tested("tests/test_tensors.py::test_tensor_infers_dtypes_like_torch")
    if torch_available(config):
        import torch

        pytorch = fmt(torch.tensor([[1, 2], [3, 4]]).tolist())
    rows = [
        row("tensors", "torch.tensor([[1, 2], [3, 4]])",
            tutorial(tensors, "tensor", "tensor([[1, 2], [3, 4]])"),
            fmt(s["tensor"]["x_data"]), STATUS_MATCH, pytorch=pytorch,
            note="dtype int64 in torch, int32 in JAX (x64 off by default; documented mapping)"),
        row("tensors", "snippets with a JAX counterpart", "seeds 001-004 tensor sections",
            f"{len(s)} sections", STATUS_MATCH, pytorch=tested("tests/test_tensors.py")),
    ]
    return m, rows


def _autograd(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import autograd

    s = m = run_experiment("autograd", out)  # {section: values}
    grad = np.asarray(s["backward"]["grad"])
    torch_grad = tested("tests/test_autograd.py::test_out_mean_and_its_gradient_is_4_5")
    torch_variable = tested("tests/test_autograd.py::test_variable_gradients_are_2_1_1")
    if torch_available(config):
        import torch

        # Seed 002's snippets, verbatim (torch code the reference module does not hold).
        x = torch.ones(2, 2, requires_grad=True)
        y = x + 2
        z = y * y * 3
        out_ = z.mean()
        out_.backward()
        torch_grad = fmt(x.grad.ravel()[:1].numpy(), 1) + " everywhere"
        x = torch.tensor([1.0], requires_grad=True)
        w = torch.tensor([2.0], requires_grad=True)
        b = torch.tensor([3.0], requires_grad=True)
        (w * x + b).backward()
        torch_variable = ", ".join(fmt(float(t.grad[0]), 1) for t in (x, w, b))
    rows = [row("autograd", "x.grad after out.backward() (out = mean(3(x+2)^2))",
                tutorial(autograd, "backward_grad", "4.5 everywhere"),
                fmt(grad.ravel()[:1], 1) + " everywhere",
                STATUS_MATCH if np.allclose(grad, 4.5) else STATUS_DIFF, pytorch=torch_grad)]
    variable = s.get("variable", {})
    if variable:
        got = [variable.get(k) for k in ("x_grad", "w_grad", "b_grad")]
        ok = all(g is not None for g in got) and np.allclose(
            [np.ravel(g)[0] for g in got], [2, 1, 1])
        rows.append(row("autograd", "Variable y = w*x + b: x.grad, w.grad, b.grad",
                        "- (not printed; 2, 1, 1 by hand)",
                        ", ".join(fmt(np.ravel(g)[0], 1) for g in got if g is not None),
                        STATUS_MATCH if ok else STATUS_DIFF, pytorch=torch_variable))
    vjp = s["vjp"]
    rows.append(row("autograd", "y.backward(v): x.grad == J^T v", "- (random x, not printed)",
                    f"vjp {fmt(vjp['x_grad'], 4)} == J^T v {fmt(vjp['jt_v'], 4)}",
                    STATUS_MATCH if np.allclose(vjp["x_grad"], vjp["jt_v"]) else STATUS_DIFF,
                    pytorch=tested("tests/test_autograd.py::"
                                   "test_backward_v_on_the_doubling_loop_is_a_vjp")))
    return m, rows


def _thermometer(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import thermometer
    from jaxnets.thermometer import T_C, T_U

    m = run_experiment("thermometer", out)
    loop = m["loop"]
    torch_losses = torch_params = torch_grad = torch_norm = None
    if torch_available(config):
        import torch

        from reference import seeds

        params, losses, _, grads = seeds.thermometer_loop(100, 1e-4, [1.0, 0.0], T_U, T_C)
        torch_params, torch_losses, torch_grad = params.numpy(), losses.numpy(), grads[0].numpy()
        torch_norm = seeds.thermometer_loop(5000, 1e-2, [1.0, 0.0],
                                          0.1 * torch.tensor(T_U), T_C)[0].numpy()
    tut = {int(k.split()[1]): float(v) for k, v in thermometer.TUTORIAL.items()
           if k.startswith("epoch ") and k.endswith(" loss")}

    def measured(value, fallback: str) -> str:
        return fallback if value is None else fmt(value)

    test = "tests/test_thermometer.py::"
    rows = [row("thermometer", "initial loss", "1763.8846", fmt(m["initial_loss"]),
                STATUS_MATCH if close(m["initial_loss"], 1763.8846, 1e-6) else STATUS_DIFF,
                pytorch=measured(None if torch_losses is None else torch_losses[0],
                                 tested(test + "test_data_model_and_initial_loss"))),
            row("thermometer", "grad_fn at [1, 0]", "[4517.2969, 82.6000]", fmt(m["grad_fn"]),
                STATUS_MATCH if np.allclose(m["grad_fn"], [4517.2969, 82.6], rtol=1e-6)
                else STATUS_DIFF,
                pytorch=measured(torch_grad, tested(
                    test + "test_hand_gradient_equals_autograd_and_torch_backward")))]
    def torch_version() -> str:
        import torch

        return torch.__version__.split("+")[0].rsplit(".", 1)[0]   # 2.13.0 -> 2.13

    def ulp_gap(value, book: float) -> int:
        """value - book in float32 ulps (both positive here): how many float32 numbers apart."""
        as_int = np.array([value, book], np.float32).view(np.int32).astype(np.int64)
        return int(as_int[0] - as_int[1])

    for epoch, value in tut.items():
        e = int(epoch)
        ours = loop["loss"][e - 1]
        # The book prints %f, which tells these float32 losses apart: a match is the same digits;
        # a loss a few ulps away is a different float32 number, said with its gap and why.
        same = f"{ours:.6f}" == f"{value:.6f}"
        why = ""
        if not same and close(ours, value, 1e-6):
            torch_gap = "" if torch_losses is None else (
                f" (PyTorch {torch_version()}: {ulp_gap(torch_losses[e - 1], value):+d})")
            why = (f"{ulp_gap(ours, value):+d} float32 ulp{torch_gap}: summation order; the "
                   "book's digits are float32 sums taken left to right, XLA and today's PyTorch "
                   "add in other orders (docs/lessons/11_thermometer.md)")
        elif not same:
            why = f"{ulp_gap(ours, value):+d} float32 ulp: more than float32 rounding"
        rows.append(row("thermometer", f"training_loop epoch {e} loss", f"{value:.6f}",
                        f"{ours:.6f}", STATUS_MATCH if same else STATUS_DIFF,
                        pytorch=(f"{torch_losses[e - 1]:.6f}" if torch_losses is not None
                                 else tested(test + "test_training_loop_matches_torch")),
                        note=why))
    rows.append(row("thermometer", "params after 100 epochs", "[0.2327, -0.0438]",
                    fmt(loop["params"]),
                    STATUS_MATCH if np.allclose(loop["params"], [0.2327, -0.0438], atol=5e-5)
                    else STATUS_DIFF,
                    pytorch=measured(torch_params,
                                     tested(test + "test_training_loop_matches_torch"))))
    optim_test = tested(test + "test_optax_sgd_and_adam_through_train_match_torch_optim")
    reference_names = {"normalized": "normalised: params", "sgd": "optax SGD: params",
                       "adam": "Adam: params"}  # experiments.thermometer.REFERENCE's names
    for key, label, book, pytorch in (
            ("normalized", "t_un = 0.1 t_u, 5000 epochs, lr 1e-2", [5.3671, -17.3012],
             measured(torch_norm,
                      tested(test + "test_normalised_input_5000_epochs_matches_torch"))),
            ("sgd", "optax SGD on t_un", [5.3671, -17.3012], optim_test),
            ("adam", "Adam lr 1e-1, 2000 epochs on t_u", [0.5367, -17.3021], optim_test)):
        got = m[key]["params"]
        rows.append(row("thermometer", label + ": params", "- (elided)", fmt(got),
                        STATUS_MATCH if np.allclose(got, book, atol=5e-4) else STATUS_DIFF,
                        pytorch=pytorch,
                        reference=published(thermometer, reference_names[key], (fmt(book), BOOK))))
    return m, rows


def _two_layer(config: Config, out: str) -> tuple[dict, list[Row]]:

    m = run_experiment("two_layer", out)
    same_start = ("manual_fixed", "autograd", "module", "sequential")
    worst = max(m["max_rel_diff_from_autograd"][k] for k in same_start)
    grads = m["hand_written_grad_rel_diff"]
    rows = [row("two_layer", "per-epoch losses, 20 epochs", "random (torch.randn data)",
                f"{', '.join(same_start)} agree: max rel. diff {worst:.1e}",
                STATUS_MATCH if worst < 1e-5 else STATUS_DIFF,
                pytorch=tested("tests/test_two_layer.py::"
                               "test_losses_match_the_seeds_pytorch_code")),
            row("two_layer", "hand-written gradient == autograd", "implied",
                f"seed's backward: rel. diff {grads['seed_backward']:.2f}; fixed backward: "
                f"{grads['fixed_backward']:.1e}", STATUS_DIFF,
                pytorch=tested("tests/test_two_layer.py::test_hand_written_gradients"),
                note="the seed clamps the gradient values (grad_h.clamp_(min=0)) instead of "
                     "masking by h > 0; reproduced as written, the fixed version equals jax.grad")]
    return m, rows


def _lenet(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import lenet

    m = run_experiment("lenet", out)
    test = "tests/test_lenet.py::"
    torch_count = tested(test + "test_structure_and_parameter_list")
    torch_shape = torch_count
    if torch_available(config):
        from reference import seeds

        params = list(seeds.tutorial_net(1).parameters())
        torch_count, torch_shape = str(len(params)), f"torch.Size({list(params[0].size())})"
    # seed 001 shows this code without its output: the printed values are the upstream blitz's
    rows = [row("lenet", "len(list(net.parameters()))", "- (not printed)",
                str(m["num_param_arrays"]),
                STATUS_MATCH if m["num_param_arrays"] == 10 else STATUS_DIFF, pytorch=torch_count,
                reference=published(lenet, "len(params)", ("10", "upstream blitz"))),
            row("lenet", "params[0].size() (conv1.weight)", "- (not printed)",
                fmt(m["conv1_weight_shape"]),
                STATUS_MATCH if list(m["conv1_weight_shape"]) == [6, 1, 5, 5] else STATUS_DIFF,
                pytorch=torch_shape,
                reference=published(lenet, "params[0].size()",
                                    ("torch.Size([6, 1, 5, 5])", "upstream blitz"))),
            row("lenet", "manual f -= lr * grad vs optim.SGD", "same weights",
                f"max |diff| {m['manual_vs_optax_max_abs_diff']:.1e}",
                STATUS_MATCH if m["manual_vs_optax_max_abs_diff"] < 1e-6 else STATUS_DIFF,
                pytorch=tested(test + "test_sgd_steps_match_torch"))]
    return m, rows


# --quick trains seed 000 for a quarter of its 2000 steps (issue: the quick report must finish in
# under 3 minutes on 2 shared cores); its accuracies are marked as quick-mode figures.
QUICK_MNIST_STEPS = 500


def mnist_steps(config: Config) -> int:
    """Seed 000's steps in this report: the tutorial's 2000, or QUICK_MNIST_STEPS with --quick."""
    from experiments import mnist

    return QUICK_MNIST_STEPS if config.quick else mnist.Config.steps


def _mnist(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import mnist

    rows, metrics = [], {}
    steps = mnist_steps(config)
    for optimizer in mnist.TUTORIAL_ACCURACY:  # the seed's two versions: its SGD, its Adam
        m = run_experiment("mnist", os.path.join(out, optimizer), optimizer=optimizer,
                           data_dir=config.data_dir, steps=steps)
        metrics[optimizer] = m
        torch_acc = tested("tests/test_mnist.py")
        if torch_available(config):
            torch_acc = f"{100 * torch_mnist(m, config.data_dir, optimizer, steps):.2f}%"
        target = mnist.TUTORIAL_NUMBERS[optimizer]
        acc = m["test_accuracy"]
        notes = []
        if config.quick:
            notes.append(f"quick mode: {steps} of the seed's {mnist.Config.steps} steps")
        if m["dataset"] != "mnist":
            status = STATUS_DIFF
            notes.append(f"ran on {m['dataset']}: MNIST is not available offline (pass "
                         "--data-dir or run with internet); the tutorial's figure is for MNIST")
        else:
            above = mnist.TUTORIAL_ACCURACY[optimizer].startswith("above")  # else "about"
            ok = acc >= target if above else abs(acc - target) <= 0.1
            status = STATUS_MATCH if ok else STATUS_DIFF
            if not ok:
                notes.append("see metrics.json")
        notes.append("one seed of a random run: see the distributions over seeds "
                     "(--seeds N)")
        rows.append(row("mnist", MNIST_FIGURES[optimizer],
                        tutorial(mnist, optimizer, mnist.TUTORIAL_ACCURACY[optimizer]),
                        f"{100 * acc:.2f}%", status, pytorch=torch_acc, dataset=m["dataset"],
                        note="; ".join(notes), quick=config.quick))
    return metrics, rows


MNIST_FIGURES = {"sgd": "test accuracy, SGD as written (.grad never zeroed)",
                 "adam": "test accuracy, Adam"}


def torch_mnist(metrics: dict, data_dir: str | None, optimizer: str, steps: int) -> float:
    """The seed's PyTorch loop from the same start as the jaxnets run that gave `metrics`
    (`mnist.start`: its initial weights and batches): PyTorch's test accuracy."""
    from experiments import mnist
    from reference import seeds

    cfg = mnist.Config(optimizer=optimizer, data_dir=data_dir, steps=steps,
                       dataset=metrics["dataset"])
    train_set, test_set, _ = mnist.load_data(cfg)
    begin = mnist.start(cfg, train_set)
    idx, _ = begin.sampler.indices(0, cfg.steps)
    _, w1, w2 = seeds.seed000_train(train_set.images, train_set.labels, idx,
                                    *(np.asarray(begin.state.params[k]) for k in ("w1", "w2")),
                                    optimizer, cfg.lr)
    return seeds.seed000_accuracy(w1, w2, test_set.images, test_set.labels)


def _linear_classifier(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import linear_classifier as lc

    epochs = 3 if config.quick else 20
    m = run_experiment("linear_classifier", out, epochs=epochs)
    acc = m["test_accuracy"]
    status = STATUS_MATCH if abs(acc - 0.84) <= 0.01 else STATUS_DIFF
    note = ("compared with the reference: the seed prints no accuracy; "
            + (f"quick mode: {epochs} of the report's 20 epochs" if config.quick else
               "" if status == STATUS_MATCH else "see metrics.json")).rstrip("; ")
    return m, [row("linear_classifier", "test accuracy (Fashion-MNIST logistic regression)",
                   tutorial(lc, "test_accuracy", "- (not printed)"), f"{100 * acc:.2f}%", status,
                   dataset=m.get("dataset", "-"),
                   pytorch=tested("tests/test_linear_classifier.py::"
                                  "test_test_accuracy_matches_torch"),
                   reference=published(lc, "test_accuracy", (
                       "about 84%", ("zalandoresearch/fashion-mnist benchmark: "
                                    "LogisticRegression 84.2%"))),
                   note=note, quick=config.quick)]


def _cifar10(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import cifar10

    epochs = 1 if config.quick else cifar10.Config.epochs
    m = run_experiment("cifar10", out, data_dir=config.cifar_data_dir, epochs=epochs)
    acc = m["test_accuracy"]
    note = f"quick mode: {epochs} of the tutorial's 2 epochs" if config.quick else ""
    return m, [row("cifar10", "accuracy on the 10000 test images",
                   tutorial(cifar10, "accuracy_claim", "> 10% (beats chance)"),
                   f"{100 * acc:.2f}%", STATUS_MATCH if acc > 0.10 else STATUS_DIFF,
                   dataset="cifar10", pytorch=tested("tests/test_cifar10.py"),
                   reference=published(cifar10, "accuracy", (
                       "about 54%", "the upstream PyTorch blitz tutorial's run")),
                   note=note, quick=config.quick)]


def _resnet_step(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import resnet_step

    m = run_experiment("resnet_step", out)
    test = "tests/test_resnet.py::"
    return m, [
        row("resnet_step", "resnet18 parameters", "- (not printed)", f"{m['num_params']:,}",
            STATUS_MATCH if m["num_params"] == 11689512 else STATUS_DIFF,
            pytorch=tested(test + "test_state_dict_keys_shapes_and_param_count_match_torchvision"),
            reference=published(resnet_step, "num_params",
                                ("11,689,512", "torchvision ResNet18_Weights.DEFAULT num_params"))),
        row("resnet_step", "loss before / after one SGD step", "not printed",
            f"{m['loss_before']:.4f} / {m['loss_after']:.4f}", STATUS_MATCH,
            pytorch=tested(test + "test_logits_grads_and_running_stats_match_pytorch"),
            note="random weights and inputs (pretrained weights need --weights)"),
    ]


# ------------------------------------------------------------------ distributions over seeds
def mann_whitney(a, b) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test of samples a and b: (U of a, p-value).

    scipy's exact/asymptotic test when scipy is installed; otherwise the normal approximation
    with tie and continuity corrections (scipy's `method="asymptotic"`), which for 10+10 samples
    is within about 0.01 of the exact p-value."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    try:
        from scipy.stats import mannwhitneyu
    except ImportError:
        pass
    else:
        r = mannwhitneyu(a, b, alternative="two-sided")
        return float(r.statistic), float(r.pvalue)
    from math import erfc, sqrt

    n1, n2 = len(a), len(b)
    both = np.concatenate([a, b])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts          # rank of each distinct value, ties averaged
    ranks = (first + (counts + 1) / 2)[inverse]
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    sd = sqrt(n1 * n2 / 12 * ((n + 1) - float((counts ** 3 - counts).sum()) / (n * (n - 1))))
    if sd == 0:
        return u, 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / sd
    return u, min(1.0, erfc(max(z, 0.0) / sqrt(2)))


def summary(values) -> dict:
    """Mean, sample standard deviation, min and max of a list of figures."""
    v = np.asarray(values, float)
    return {"n": len(v), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "values": v.tolist()}


def fmt_summary(s: dict, unit: str = "%") -> str:
    """`mean +- sd% (min-max), n`, the form the README quotes."""
    return (f"{s['mean']:.2f} +- {s['sd']:.2f}{unit} ({s['min']:.2f}-{s['max']:.2f}), "
            f"n = {s['n']}")


def seed_study(config: Config) -> dict:
    """Seed 000's test accuracy over `config.seeds` seeds, jaxnets (`experiments.mnist`,
    --seed 0..N-1) against the seed's own PyTorch code (torch seeds 0..N-1): per optimizer the
    two summaries and a Mann-Whitney U test. A single seed is one draw: the tutorial's run is
    random (unseeded torch.randn and np.random), so only distributions can be compared. The
    runs' own files go to a temporary folder: the report keeps each seed's accuracy."""
    import tempfile

    from experiments import mnist

    base = mnist.Config(data_dir=config.data_dir, steps=mnist_steps(config))
    train_set, test_set, notice = mnist.load_data(base)
    study = {"seeds": config.seeds, "steps": base.steps, "dataset": train_set.name,
             "notice": notice, "figures": {}}
    for optimizer in mnist.TUTORIAL_ACCURACY:  # the seed's two versions: its SGD, its Adam
        ours, theirs = [], []
        for seed in range(config.seeds):
            out = tempfile.mkdtemp(prefix=f"report-{optimizer}-seed{seed}-")
            cfg = dataclasses.replace(base, optimizer=optimizer, seed=seed,
                                      options=TrainOptions(out=out, progress=False))
            quiet = io.StringIO()
            with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
                ours.append(100 * mnist.run(cfg, data=(train_set, test_set))["test_accuracy"])
            shutil.rmtree(out, ignore_errors=True)
            if torch_available(config):
                from reference import seeds

                theirs.append(100 * seeds.seed000_seeded(
                    train_set.images, train_set.labels, test_set.images, test_set.labels,
                    optimizer, seed, base.steps, base.batch_size, base.lr))
            print(f"[report] seeds: mnist {optimizer} seed {seed}: jaxnets {ours[-1]:.2f}%"
                  + (f", PyTorch {theirs[-1]:.2f}%" if theirs else ""))
        fig = {"jaxnets": summary(ours)}
        if theirs:
            fig["pytorch"] = summary(theirs)
            fig["u"], fig["p"] = mann_whitney(ours, theirs)
        study["figures"][f"mnist/{optimizer}"] = fig
    return study


def seed_study_lines(study: dict) -> list[str]:
    """The markdown section (also printed) for a seed study."""
    label = {"mnist/sgd": "seed 000 test accuracy, SGD as written (.grad never zeroed)",
             "mnist/adam": "seed 000 test accuracy, Adam"}
    lines = [f"## Distributions over {study['seeds']} seeds", "",
             (f"The tutorial's runs are random (unseeded `torch.randn`, `np.random.randint`), so "
              f"one seed is one draw. Each figure: jaxnets `experiments.mnist --seed s` and the "
              f"seed's own PyTorch code (`torch.manual_seed(s)`), s = 0..{study['seeds'] - 1}, "
              f"{study['steps']} steps on {study['dataset']}; mean +- sample sd (min-max), and "
              "a two-sided Mann-Whitney U test of 'same distribution'."), "",
             "| figure | jaxnets | PyTorch (the seed's code) | Mann-Whitney U, p |",
             "|---|---|---|---|"]
    for key, fig in study["figures"].items():
        torch_cell = fmt_summary(fig["pytorch"]) if "pytorch" in fig else "- (torch not run)"
        test = f"U = {fig['u']:.1f}, p = {fig['p']:.2f}" if "p" in fig else "-"
        lines.append(f"| {label.get(key, key)} | {fmt_summary(fig['jaxnets'])} | {torch_cell} "
                     f"| {test} |")
    return lines + [""]


def _ran(name: str) -> Callable[[Config, str], tuple[dict, list[Row]]]:
    """The runner of an experiment without figures compared here: its run, one row saying so."""

    def ran(config: Config, out: str) -> tuple[dict, list[Row]]:
        m = run_experiment(name, out)
        return m, [row(name, "runs", "-", "ran (its figures: metrics.json)", STATUS_RAN,
                       dataset=m.get("dataset", "-") if isinstance(m, dict) else "-")]

    return ran


# The experiments whose figures this report compares with their tutorial's; any other in
# experiments.EXPERIMENTS runs too, as `_ran`.
FIGURES: dict[str, Callable[[Config, str], tuple[dict, list[Row]]]] = {
    "tensors": _tensors, "autograd": _autograd, "thermometer": _thermometer,
    "two_layer": _two_layer, "lenet": _lenet, "mnist": _mnist,
    "linear_classifier": _linear_classifier, "cifar10": _cifar10, "resnet_step": _resnet_step,
}
# What --quick shortens; every other experiment runs the tutorial's settings in both modes.
QUICK_CHANGES = {"mnist": f"{QUICK_MNIST_STEPS} of seed 000's 2000 steps",
                 "linear_classifier": "3 of 20 epochs", "cifar10": "1 of the tutorial's 2 epochs"}
DATA_NEEDED = {"mnist": "mnist", "linear_classifier": "fashion_mnist", "cifar10": "cifar10"}


def run_one(name: str, config: Config) -> tuple[list[Row], dict]:
    """Run one experiment with its output captured to <out>/<name>/log.txt."""
    from jaxnets.data import how_to_get

    out = os.path.join(config.options.out, name)
    os.makedirs(out, exist_ok=True)
    buffer = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            metrics, rows = FIGURES.get(name, _ran(name))(config, out)
        info = {"seconds": time.perf_counter() - t0, "ok": True}
    except DataUnavailable as e:
        data = DATA_NEEDED.get(name, name)
        rows = [row(name, "all figures", "-", "-", STATUS_NOT_RUN, dataset=data,
                    note=f"needs {data}: {how_to_get(data)} ({str(e).split(';')[0]})",
                    deterministic=False)]  # depends on the machine's data and network
        metrics, info = {}, {"seconds": time.perf_counter() - t0, "ok": False}
    finally:
        with open(os.path.join(out, "log.txt"), "w") as f:
            f.write(buffer.getvalue())
    plots = metrics.get("plots", []) if isinstance(metrics, dict) else []
    for sub in (metrics.values() if isinstance(metrics, dict) else []):
        if isinstance(sub, dict):
            plots += sub.get("plots", [])
    info["plots"] = [os.path.relpath(p, config.options.out) for p in plots if isinstance(p, str)]
    info["metrics"] = sorted(os.path.relpath(os.path.join(d, "metrics.json"), config.options.out)
                             for d, _, files in os.walk(out) if "metrics.json" in files)
    return rows, info


def markdown(rows: list[Row], runs: dict[str, dict], config: Config,
             study: dict | None = None) -> str:
    """The REPRODUCTION.md text."""
    mode = "quick" if config.quick else "full (the tutorials' settings)"
    flags = ((" --quick" if config.quick else "")
             + (f" --seeds {config.seeds}" if config.seeds else ""))
    lines = ["# Reproduction report", "",
             (f"Generated by `python -m experiments.report{flags}` ({mode}). Each row is a figure "
              "a tutorial prints or claims. *tutorial*: what the seed itself prints or states; "
              "*PyTorch*: measured here with the seed's own torch code (from the same start "
              "where the run is random), or `= torch (test)`: the parity test that checks it; "
              "*reference*: a figure from outside the seed, with its source."), ""]
    quick = [f"{r['experiment']}: {r['figure']}" for r in rows if r.get("quick")]
    if quick:
        lines += [("**Quick mode**: these figures come from fewer steps than the tutorial's "
                   "(their status says how many) and are marked *(quick)*: "
                   + "; ".join(quick) + ". Run without --quick for the tutorial's settings."), ""]
    lines += [("| experiment | figure | tutorial | jaxnets | PyTorch | reference (source) "
               "| dataset | status |"), "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        status = r["status"] + (f": {r['note']}" if r["note"] else "")
        ours = r["ours"] + (" *(quick)*" if r.get("quick") else "")
        cells = [r["experiment"], r["figure"], r["tutorial"], ours, r["pytorch"],
                 r.get("reference", "-"), r["dataset"], status]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Runs", "", "| experiment | seconds | output | plots |", "|---|---|---|---|"]
    for name, info in runs.items():
        plots = ", ".join(f"[{os.path.basename(p)}]({p})" for p in info["plots"]) or "-"
        output = ", ".join([f"[{os.path.dirname(m)}/metrics.json]({m})" for m in info["metrics"]]
                           + [f"[log]({name}/log.txt)"])
        lines.append(f"| {name} | {info['seconds']:.1f} | {output} | {plots} |")
    if study:
        lines += ["", *seed_study_lines(study)]
    counts = {s: sum(r["status"] == s for r in rows) for s in
              (STATUS_MATCH, STATUS_DIFF, STATUS_NOT_RUN, STATUS_RAN)}
    lines += ["", (f"{counts[STATUS_MATCH]} figures match, {counts[STATUS_DIFF]} differ (reasons "
                  f"above), {counts[STATUS_NOT_RUN]} experiment(s) not run for lack of data"
                  + (f", {counts[STATUS_RAN]} ran with no figure compared here"
                     if counts[STATUS_RAN] else "") + "."), ""]
    return "\n".join(lines)


def run(config: Config) -> dict:
    """Run the experiments, write REPRODUCTION.md and reproduction.json; return the report."""
    from tqdm import tqdm  # (tqdm.auto warns in a notebook without ipywidgets)

    names = config.only or EXPERIMENTS
    rows: list[Row] = []
    runs: dict[str, dict] = {}
    say = cli.Reporter(config.options.quiet).say
    bar = tqdm(names, desc="report", leave=False,
               disable=None if config.options.progress and not config.options.quiet else True)
    for name in bar:
        bar.set_postfix_str(name)
        r, info = run_one(name, config)
        rows += r
        runs[name] = info
        with tqdm.external_write_mode():
            state = "ok" if info["ok"] else "not run (data missing)"
            say(f"[report] {name}: {state} in {info['seconds']:.1f}s")
    report = {"quick": config.quick, "rows": rows, "runs": runs}
    if config.seeds:
        t0 = time.perf_counter()
        report["seed_study"] = seed_study(config)
        report["seed_study"]["seconds"] = time.perf_counter() - t0
        print("\n".join(seed_study_lines(report["seed_study"])))
    os.makedirs(config.options.out, exist_ok=True)
    path_md = os.path.join(config.options.out, "REPRODUCTION.md")
    with open(path_md, "w") as f:
        f.write(markdown(rows, runs, config, report.get("seed_study")))
    written = [path_md, cli.write_json(os.path.join(config.options.out, "reproduction.json"),
                                       report)]
    if config.seeds:  # (on its own too: the seed 000 lesson checks its runs against it)
        written.append(cli.write_json(os.path.join(config.options.out, "seed_study.json"),
                                      report["seed_study"]))
    cli.Reporter(config.options.quiet).wrote(*written)
    return report



def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

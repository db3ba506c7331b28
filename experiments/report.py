"""Run every experiment and write the reproduction table: the tutorials' figures next to ours.

    python -m experiments.report --quick     # every experiment, quick settings (< 5 min, 2 CPUs)
    python -m experiments.report             # the tutorials' own settings

Writes REPRODUCTION.md and reproduction.json into --out (default runs/report), one row per
figure a tutorial prints or claims: the experiment, the tutorial's figure, ours, PyTorch's
(measured here, from the same start, when torch is installed), the dataset, and a status:
`matches`, `differs` (with the reason), or `not run` (needs data, and how to get it).
Experiments whose data is missing are reported as such, not dropped. Each experiment's own
output goes to <out>/<name>/log.txt next to its metrics.json and plots, which the report links.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from experiments import cli

# The experiments in the order they run (EXPERIMENTS below maps each to its runner).
NAMES = ("tensors", "autograd", "thermometer", "two_layer", "lenet", "mnist",
         "linear_classifier", "cifar10", "resnet_step")


@dataclasses.dataclass(frozen=True)
class Config:
    quick: bool = cli.arg(False, "quick settings (< 5 minutes on 2 CPUs)")
    out: str = cli.out("report")
    data_dir: str | None = cli.arg(None, "folder with MNIST's IDX files, if you have them "
                                         "(otherwise the usual search order)")
    cifar_data_dir: str | None = cli.arg(None, "folder with CIFAR-10's binary version, if you "
                                               "have it")
    torch: bool = cli.arg(True, "do not measure PyTorch's figures even if torch is installed")
    only: tuple[str, ...] = cli.arg((), "run only these experiments", choices=NAMES,
                                    metavar="NAME")
    progress: bool = cli.progress()
    quiet: bool = cli.quiet()

    def __post_init__(self):
        cli.check_fields(self)


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import numpy as np

from jaxnets.errors import DataUnavailable

Row = dict[str, Any]
STATUS_MATCH, STATUS_DIFF, STATUS_NOT_RUN = "matches", "differs", "not run"


def row(experiment: str, figure: str, tutorial: str, ours: str, status: str, *,
        pytorch: str = "-", dataset: str = "-", note: str = "") -> Row:
    """One line of the reproduction table."""
    return {"experiment": experiment, "figure": figure, "tutorial": tutorial, "ours": ours,
            "pytorch": pytorch, "dataset": dataset, "status": status, "note": note}


def close(a: float, b: float, rtol: float = 1e-4, atol: float = 0.0) -> bool:
    return bool(np.isclose(float(a), float(b), rtol=rtol, atol=atol))


def fmt(v: Any, digits: int = 4) -> str:
    if isinstance(v, (list, tuple)) or np.ndim(v) > 0:  # lists, numpy and jax arrays
        return "[" + ", ".join(fmt(x, digits) for x in np.asarray(v).tolist()) + "]"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}f}"
    return str(v)


def torch_available(config: Config) -> bool:
    if not config.torch:
        return False
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------ the experiments
def _tensors(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import tensors

    s = m = tensors.run(tensors.Config(out=out))  # {section: values}
    rows = [
        row("tensors", "torch.tensor([[1, 2], [3, 4]])", "tensor([[1, 2], [3, 4]])",
            fmt(s["tensor"]["x_data"]), STATUS_MATCH,
            note="dtype int64 in torch, int32 in JAX (x64 off by default; documented mapping)"),
        row("tensors", "snippets with a JAX counterpart", "seeds 001-004 tensor sections",
            f"{len(s)} sections", STATUS_MATCH, note="each compared with torch in "
            "tests/test_tensors.py"),
    ]
    return m, rows


def _autograd(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import autograd

    s = m = autograd.run(autograd.Config(out=out))  # {section: values}
    grad = np.asarray(s["backward"]["grad"])
    rows = [row("autograd", "x.grad after out.backward() (out = mean(3(x+2)^2))", "4.5 everywhere",
                fmt(grad.ravel()[:1], 1) + " everywhere",
                STATUS_MATCH if np.allclose(grad, 4.5) else STATUS_DIFF, pytorch="4.5")]
    variable = s.get("variable", {})
    if variable:
        got = [variable.get(k) for k in ("x_grad", "w_grad", "b_grad")]
        ok = all(g is not None for g in got) and np.allclose(
            [np.ravel(g)[0] for g in got], [2, 1, 1])
        rows.append(row("autograd", "Variable y = w*x + b: x.grad, w.grad, b.grad", "2, 1, 1",
                        ", ".join(fmt(np.ravel(g)[0], 1) for g in got if g is not None),
                        STATUS_MATCH if ok else STATUS_DIFF))
    vjp = s["vjp"]
    rows.append(row("autograd", "y.backward(v): x.grad == J^T v", "v * 2^k (random x)",
                    f"vjp {fmt(vjp['x_grad'], 4)} == J^T v {fmt(vjp['jt_v'], 4)}",
                    STATUS_MATCH if np.allclose(vjp["x_grad"], vjp["jt_v"]) else STATUS_DIFF))
    return m, rows


def _thermometer(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import thermometer
    from jaxnets import thermometer as T

    m = thermometer.run(thermometer.Config(out=out))
    loop = m["loop"]
    torch_losses = torch_params = None
    if torch_available(config):
        from experiments import pytorch_reference as ref

        params, losses, _, _ = ref.thermometer_loop(100, 1e-4, [1.0, 0.0], T.T_U, T.T_C)
        torch_params, torch_losses = params.numpy(), losses.numpy()
    tut = {int(k.split()[1]): float(v) for k, v in thermometer.TUTORIAL.items()
           if k.startswith("epoch ") and k.endswith(" loss")}
    rows = [row("thermometer", "initial loss", "1763.8846", fmt(m["initial_loss"]),
                STATUS_MATCH if close(m["initial_loss"], 1763.8846, 1e-6) else STATUS_DIFF,
                pytorch=fmt(torch_losses[0]) if torch_losses is not None else "-"),
            row("thermometer", "grad_fn at [1, 0]", "[4517.2969, 82.6000]", fmt(m["grad_fn"]),
                STATUS_MATCH if np.allclose(m["grad_fn"], [4517.2969, 82.6], rtol=1e-6)
                else STATUS_DIFF)]
    for epoch, value in tut.items():
        e = int(epoch)
        ours = loop["loss"][e - 1]
        rows.append(row("thermometer", f"training_loop epoch {e} loss", f"{value:.6f}",
                        f"{ours:.6f}",
                        STATUS_MATCH if close(ours, value, 1e-6) else STATUS_DIFF,
                        pytorch=f"{torch_losses[e - 1]:.6f}" if torch_losses is not None else "-",
                        note="" if close(ours, value, 1e-6) else
                        "float32 summation order (1 ulp); PyTorch 2.13 differs from the book too"))
    rows.append(row("thermometer", "params after 100 epochs", "[0.2327, -0.0438]",
                    fmt(loop["params"]),
                    STATUS_MATCH if np.allclose(loop["params"], [0.2327, -0.0438], atol=5e-5)
                    else STATUS_DIFF,
                    pytorch=fmt(torch_params) if torch_params is not None else "-"))
    for key, label, book in (("normalized", "t_un = 0.1 t_u, 5000 epochs, lr 1e-2",
                              [5.3671, -17.3012]),
                             ("sgd", "optax SGD on t_un", [5.3671, -17.3012]),
                             ("adam", "Adam lr 1e-1, 2000 epochs on t_u", [0.5367, -17.3021])):
        got = m[key]["params"]
        rows.append(row("thermometer", label + ": params", fmt(book) + " (book)", fmt(got),
                        STATUS_MATCH if np.allclose(got, book, atol=5e-4) else STATUS_DIFF,
                        note="the book's ch. 5 figure; the blog seed elides it"))
    return m, rows


def _two_layer(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import two_layer

    m = two_layer.run(two_layer.Config(out=out))
    same_start = ("manual_fixed", "autograd", "module", "sequential")
    worst = max(m["max_rel_diff_from_autograd"][k] for k in same_start)
    grads = m["hand_written_grad_rel_diff"]
    rows = [row("two_layer", "per-epoch losses, 20 epochs", "random (torch.randn data)",
                f"{', '.join(same_start)} agree: max rel. diff {worst:.1e}",
                STATUS_MATCH if worst < 1e-5 else STATUS_DIFF,
                pytorch="equal to the seed's torch code from the same x, y, w1, w2 "
                        "(tests/test_two_layer.py)"),
            row("two_layer", "hand-written gradient == autograd", "implied",
                f"seed's backward: rel. diff {grads['seed_backward']:.2f}; fixed backward: "
                f"{grads['fixed_backward']:.1e}", STATUS_DIFF,
                note="the seed clamps the gradient values (grad_h.clamp_(min=0)) instead of "
                     "masking by h > 0; reproduced as written, the fixed version equals jax.grad")]
    return m, rows


def _lenet(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import lenet

    m = lenet.run(lenet.Config(out=out))
    rows = [row("lenet", "len(list(net.parameters()))", "10", str(m["num_param_arrays"]),
                STATUS_MATCH if m["num_param_arrays"] == 10 else STATUS_DIFF),
            row("lenet", "params[0].size() (conv1.weight)", "torch.Size([6, 1, 5, 5])",
                fmt(m["conv1_weight_shape"]),
                STATUS_MATCH if list(m["conv1_weight_shape"]) == [6, 1, 5, 5] else STATUS_DIFF),
            row("lenet", "manual f -= lr * grad vs optim.SGD", "same weights",
                f"max |diff| {m['manual_vs_optax_max_abs_diff']:.1e}",
                STATUS_MATCH if m["manual_vs_optax_max_abs_diff"] < 1e-6 else STATUS_DIFF,
                pytorch="outputs, loss, gradients equal on the same weights "
                        "(tests/test_lenet.py)")]
    return m, rows


def _mnist(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import mnist
    from jaxnets import train

    rows, metrics = [], {}
    for optimizer in ("sgd", "adam"):
        cfg = mnist.Config(optimizer=optimizer, data_dir=config.data_dir,
                           out=os.path.join(out, optimizer), progress=False)
        train_set, test_set, notice = mnist.load_data(cfg)
        keys = train.split_keys(cfg.seed)
        state = mnist.init_state(cfg, keys.init)
        m = mnist.run(cfg, data=(train_set, test_set), state=state)
        m["notice"] = notice
        metrics[optimizer] = m
        torch_acc = "-"
        if torch_available(config):
            from experiments import pytorch_reference as ref

            idx, _ = mnist.sampler(cfg, len(train_set), keys.data).indices(0, cfg.steps)
            _, w1, w2 = ref.seed000_train(
                train_set.images, train_set.labels, idx,
                *(np.asarray(state.params[k]) for k in ("w1", "w2")), optimizer, cfg.lr)
            torch_acc = f"{100 * ref.seed000_accuracy(w1, w2, test_set.images, test_set.labels):.2f}%"
        target = mnist.TUTORIAL_NUMBERS[optimizer]
        acc = m["test_accuracy"]
        if train_set.name != "mnist":
            status = STATUS_DIFF
            note = (f"ran on {train_set.name}: MNIST is not available offline (pass --data-dir or "
                    "run with internet); the tutorial's figure is for MNIST")
        else:
            ok = acc >= target if optimizer == "adam" else abs(acc - target) <= 0.1
            status, note = (STATUS_MATCH, "") if ok else (STATUS_DIFF, "see metrics.json")
        label = ("test accuracy, SGD as written (.grad never zeroed)" if optimizer == "sgd"
                 else "test accuracy, Adam")
        rows.append(row("mnist", label, mnist.TUTORIAL_ACCURACY[optimizer], f"{100 * acc:.2f}%",
                        status, pytorch=torch_acc, dataset=train_set.name, note=note))
    return metrics, rows


def _linear_classifier(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import linear_classifier as lc

    cfg = lc.Config(out=out, epochs=3 if config.quick else 20, progress=False)
    m = lc.run(cfg)
    acc = m["test_accuracy"]
    status = STATUS_MATCH if abs(acc - 0.84) <= 0.01 else STATUS_DIFF
    note = "" if status == STATUS_MATCH else (
        f"--quick trains {cfg.epochs} epochs; the full report trains 20" if config.quick else
        "see metrics.json")
    return m, [row("linear_classifier", "test accuracy (Fashion-MNIST logistic regression)",
                   "about 84%", f"{100 * acc:.2f}%", status, dataset=m.get("dataset", "-"),
                   pytorch="same trajectory from the same start (tests/test_linear_classifier.py)",
                   note=note)]


def _cifar10(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import cifar10

    cfg = cifar10.Config(data_dir=config.cifar_data_dir, epochs=1 if config.quick else 2,
                         out=out, progress=False)
    m = cifar10.run(cfg)
    acc = m["test_accuracy"]
    note = f"--quick trains {cfg.epochs} epoch" if config.quick else ""
    return m, [row("cifar10", "accuracy on the 10000 test images", "> 10% (blitz run: ~54%)",
                   f"{100 * acc:.2f}%", STATUS_MATCH if acc > 0.10 else STATUS_DIFF,
                   dataset="cifar10", note=note)]


def _resnet_step(config: Config, out: str) -> tuple[dict, list[Row]]:
    from experiments import resnet_step

    m = resnet_step.run(resnet_step.Config(out=out))
    return m, [
        row("resnet_step", "resnet18 parameters", "11,689,512 (torchvision)",
            f"{m['num_params']:,}", STATUS_MATCH if m["num_params"] == 11689512 else STATUS_DIFF),
        row("resnet_step", "loss before / after one SGD step", "not printed",
            f"{m['loss_before']:.4f} / {m['loss_after']:.4f}", STATUS_MATCH,
            pytorch="logits, gradients, post-step weights equal (tests/test_resnet.py)",
            note="random weights and inputs (pretrained weights need --weights)"),
    ]


EXPERIMENTS: dict[str, Callable[[Config, str], tuple[dict, list[Row]]]] = {
    "tensors": _tensors, "autograd": _autograd, "thermometer": _thermometer,
    "two_layer": _two_layer, "lenet": _lenet, "mnist": _mnist,
    "linear_classifier": _linear_classifier, "cifar10": _cifar10, "resnet_step": _resnet_step,
}
DATA_NEEDED = {"mnist": "mnist", "linear_classifier": "fashion_mnist", "cifar10": "cifar10"}


def run_one(name: str, config: Config) -> tuple[list[Row], dict]:
    """Run one experiment with its output captured to <out>/<name>/log.txt."""
    from jaxnets.data import how_to_get

    out = os.path.join(config.out, name)
    os.makedirs(out, exist_ok=True)
    buffer = io.StringIO()
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            metrics, rows = EXPERIMENTS[name](config, out)
        info = {"seconds": time.perf_counter() - t0, "ok": True}
    except DataUnavailable as e:
        data = DATA_NEEDED.get(name, name)
        rows = [row(name, "all figures", "-", "-", STATUS_NOT_RUN, dataset=data,
                    note=f"needs {data}: {how_to_get(data)} ({str(e).split(';')[0]})")]
        metrics, info = {}, {"seconds": time.perf_counter() - t0, "ok": False}
    finally:
        with open(os.path.join(out, "log.txt"), "w") as f:
            f.write(buffer.getvalue())
    plots = metrics.get("plots", []) if isinstance(metrics, dict) else []
    for sub in (metrics.values() if isinstance(metrics, dict) else []):
        if isinstance(sub, dict):
            plots += sub.get("plots", [])
    info["plots"] = [os.path.relpath(p, config.out) for p in plots if isinstance(p, str)]
    info["metrics"] = sorted(os.path.relpath(os.path.join(d, "metrics.json"), config.out)
                             for d, _, files in os.walk(out) if "metrics.json" in files)
    return rows, info


def markdown(rows: list[Row], runs: dict[str, dict], config: Config) -> str:
    """The REPRODUCTION.md text."""
    mode = "quick" if config.quick else "full (the tutorials' settings)"
    lines = ["# Reproduction report", "",
             (f"Generated by `python -m experiments.report{' --quick' if config.quick else ''}` "
             f"({mode}). Each row is a figure a tutorial prints or claims; *PyTorch* is measured "
             "here from the same start when torch is installed, or names the parity test that "
             "checks it."), "",
             "| experiment | figure | tutorial | jaxnets | PyTorch | dataset | status |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        status = r["status"] + (f": {r['note']}" if r["note"] else "")
        cells = [r["experiment"], r["figure"], r["tutorial"], r["ours"], r["pytorch"],
                 r["dataset"], status]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", "## Runs", "", "| experiment | seconds | output | plots |", "|---|---|---|---|"]
    for name, info in runs.items():
        plots = ", ".join(f"[{os.path.basename(p)}]({p})" for p in info["plots"]) or "-"
        output = ", ".join([f"[{os.path.dirname(m)}/metrics.json]({m})" for m in info["metrics"]]
                           + [f"[log]({name}/log.txt)"])
        lines.append(f"| {name} | {info['seconds']:.1f} | {output} | {plots} |")
    counts = {s: sum(r["status"] == s for r in rows) for s in
              (STATUS_MATCH, STATUS_DIFF, STATUS_NOT_RUN)}
    lines += ["", (f"{counts[STATUS_MATCH]} figures match, {counts[STATUS_DIFF]} differ (reasons "
                  f"above), {counts[STATUS_NOT_RUN]} experiments not run for lack of data."), ""]
    return "\n".join(lines)


def run(config: Config) -> dict:
    """Run the experiments, write REPRODUCTION.md and reproduction.json; return the report."""
    from tqdm.auto import tqdm

    names = config.only or NAMES
    rows: list[Row] = []
    runs: dict[str, dict] = {}
    say = cli.Reporter(config.quiet).say
    bar = tqdm(names, desc="report", leave=False,
               disable=None if config.progress and not config.quiet else True)
    for name in bar:
        bar.set_postfix_str(name)
        r, info = run_one(name, config)
        rows += r
        runs[name] = info
        with tqdm.external_write_mode():
            state = "ok" if info["ok"] else "not run (data missing)"
            say(f"[report] {name}: {state} in {info['seconds']:.1f}s")
    report = {"quick": config.quick, "rows": rows, "runs": runs}
    os.makedirs(config.out, exist_ok=True)
    path_md = os.path.join(config.out, "REPRODUCTION.md")
    with open(path_md, "w") as f:
        f.write(markdown(rows, runs, config))
    cli.write_json(os.path.join(config.out, "reproduction.json"), report)
    cli.Reporter(config.quiet).wrote(path_md, os.path.join(config.out, "reproduction.json"))
    return report


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

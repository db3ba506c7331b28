"""Seed 003 ("Deep Learning with PyTorch", ch. 5): calibrate a thermometer, t_c = w * t_u + b.

    python -m experiments.thermometer
    python -m experiments.thermometer --epochs 5000 --norm-epochs 10000

The seed's path through the chapter, on its 11 (t_c, t_u) readings, all float32 like torch:
the model and mean-squared loss (initial loss 1763.8846), the finite-difference rate of change,
the hand-derived `grad_fn`, and `training_loop(n_epochs=100, learning_rate=1e-4,
params=[1.0, 0.0])`, printing the seed's lines: epoch 1 loss 1763.884644 with grad
[4517.2969, 82.6000], epoch 2 323.090546, epoch 3 78.929634, ..., epoch 100 loss 29.022669 with
params [0.2327, -0.0438]. Then the autograd gradient (equal to the hand-derived one) and the
book's continuation, which the seed elides: the normalised input t_un = 0.1 * t_u for 5000
epochs at lr 1e-2 (params [5.3671, -17.3012]), the same fit with optax SGD, and Adam at lr 1e-1
for 2000 epochs on the raw t_u (params [0.5367, -17.3021]).

The many-epoch loops each run as one jitted lax.scan; the optax fits go through jaxnets.train.
Writes metrics.json, fit.png (the data and the fitted line) and loss_curve.png into --out.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from experiments import cli
from jaxnets.options import RunOptions, settings


@dataclasses.dataclass(frozen=True)
class Config:
    epochs: int = cli.arg(100, "epochs of the seed's training_loop")
    lr: float = cli.arg(1e-4, "its learning rate")
    norm_epochs: int = cli.arg(5000, "epochs on the normalised t_un, hand loop and optax SGD")
    norm_lr: float = cli.arg(1e-2, "their learning rate")
    adam_epochs: int = cli.arg(2000, "epochs of Adam on the raw t_u")
    adam_lr: float = cli.arg(1e-1, "Adam's learning rate")
    delta: float = cli.arg(0.1, "finite-difference step")
    options: RunOptions = RunOptions(out="runs/thermometer")

    def __post_init__(self):
        cli.check_positive(self, "epochs", "norm_epochs", "adam_epochs", "lr", "norm_lr",
                           "adam_lr", "delta")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import optim, plots
from jaxnets import thermometer as thermo

# What the seed itself prints: Out[6], Out[18] (epochs 1, 2, 3, 10, 11, 99, 100 of the
# 100-epoch training_loop, each with its Params and Grad lines, then the returned params) and
# the autograd Out[7]. Values are the seed's text; `figure_value` reads them as numbers.
TUTORIAL: dict[str, str] = {
    "initial loss": "1763.8846",
    **{f"epoch {epoch} {what}": value for epoch, loss, params, grad in (
        (1, "1763.884644", "[0.5483, -0.0083]", "[4517.2969, 82.6000]"),
        (2, "323.090546", "[0.3623, -0.0118]", "[1859.5493, 35.7843]"),
        (3, "78.929634", "[0.2858, -0.0135]", "[765.4667, 16.5122]"),
        (10, "29.105242", "[0.2324, -0.0166]", "[1.4803, 3.0544]"),
        (11, "29.104168", "[0.2323, -0.0169]", "[0.5781, 3.0384]"),
        (99, "29.023582", "[0.2327, -0.0435]", "[-0.0533, 3.0226]"),
        (100, "29.022669", "[0.2327, -0.0438]", "[-0.0532, 3.0226]"))
       for what, value in (("loss", loss), ("params", params), ("grad", grad))},
    "autograd grad at [1, 0]": "[4517.2969, 82.6000]",
}

# The book's continuation, which the seed elides ("..."): the authors' notebooks.
_BOOK = "Deep Learning with PyTorch, ch. 5, github.com/deep-learning-with-pytorch/dlwpt-code"
_NORMALISED = f"{_BOOK} p1ch5/1_parameter_estimation.ipynb In[21]"
_OPTIMIZERS = f"{_BOOK} p1ch5/3_optimizers.ipynb"
REFERENCE: dict[str, tuple[str, str]] = {
    "normalised: epoch 5000 loss": ("2.927648", _NORMALISED),
    "normalised: params": ("[5.3671, -17.3012]", _NORMALISED),
    "optax SGD: epoch 5000 loss": ("2.927647", f"{_OPTIMIZERS} In[10] (optim.SGD)"),
    "optax SGD: params": ("[5.3671, -17.3012]", f"{_OPTIMIZERS} In[10] (optim.SGD)"),
    "Adam: epoch 2000 loss": ("2.927646", f"{_OPTIMIZERS} In[11] (optim.Adam, lr 1e-1)"),
    "Adam: params": ("[0.5367, -17.3021]", f"{_OPTIMIZERS} In[11] (optim.Adam, lr 1e-1)"),
}


def figure_value(text: str) -> np.ndarray:
    """A TUTORIAL/REFERENCE value ("29.022669", "[0.2327, -0.0438]") as float64 numbers."""
    return np.asarray(json.loads(text), np.float64)


def fmt(v) -> str:
    """A params/grad pair the way torch prints it to 4 decimals."""
    return "[" + ", ".join(f"{x:.4f}" for x in np.asarray(v, np.float64)) + "]"


def epoch_lines(history: thermo.History, print_params: bool = True) -> list[str]:
    """The book's training_loop prints: epochs 1, 2, 3, 10, 11, 99, 100, 4000, 5000, with '...'."""
    n = len(history.loss)
    lines = []
    for epoch in range(1, n + 1):
        if epoch in thermo.PRINTED_EPOCHS:
            lines.append(f"Epoch {epoch}, Loss {float(history.loss[epoch - 1]):f}")
            if print_params:
                lines.append(f"    Params: {fmt(history.params[epoch - 1])}")
                lines.append(f"    Grad:   {fmt(history.grad[epoch - 1])}")
        if epoch in (4, 12, 101):
            lines.append("...")
    return lines


def fit_plot(t_u, t_c, params, scale: float, path: str) -> str:
    """The book's figure 5.9: the readings and the fitted line t_p = model(scale * t_u, *params)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    t_u, t_c = np.asarray(t_u), np.asarray(t_c)
    line_u = np.linspace(t_u.min() - 5, t_u.max() + 5, 50)
    ax.plot(line_u, params[0] * scale * line_u + params[1], label="fit")
    ax.plot(t_u, t_c, "o", label="data")
    ax.set(xlabel="Temperature (°Fahrenheit)", ylabel="Temperature (°Celsius)",
           title=f"t_c = {params[0] * scale:.4f} * t_u {'-' if params[1] < 0 else '+'} "
                 f"{abs(params[1]):.4f}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def first_look(t_u, t_c, say) -> dict:
    """In[5]-In[6]: the model at w = 1, b = 0 and its loss; In[14]: grad_fn there."""
    w, b = jnp.ones(()), jnp.zeros(())
    t_p = thermo.model(t_u, w, b)
    loss = float(thermo.loss_fn(t_p, t_c))
    say(f"t_p = model(t_u, w=1, b=0) = {np.array2string(np.asarray(t_p), precision=4)}")
    say(f"loss_fn(t_p, t_c) = {loss:.4f}    (tutorial: tensor({TUTORIAL['initial loss']}))")
    return {"initial_loss": loss, "grad_fn": thermo.grad_fn(t_u, t_c, t_p, w, b)}


def finite_difference_step(t_u, t_c, delta: float, say) -> dict:
    """In[8]-In[10]: rates of change by central differences and one step at lr 1e-2.

    In[10] takes d loss/d b at the w that In[9] has just updated, so b's rate is measured at
    (w1, 0), not at (1, 0): that is the rate the printed b = 46.0000 comes from.
    """
    p0 = jnp.array([1.0, 0.0])
    rate = thermo.rate_of_change(p0, t_u, t_c, delta)
    w1 = jnp.ones(()) - 1e-2 * rate[0]
    rate_b = thermo.rate_of_change(jnp.array([w1, 0.0]), t_u, t_c, delta)[1]
    b1 = jnp.zeros(()) - 1e-2 * rate_b
    say(f"finite differences, delta {delta}:\n"
        f"  In[8]-[9]: d loss/d w at (w=1, b=0) = {float(rate[0]):.4f} -> "
        f"w = 1 - 1e-2 * that = {float(w1):.4f}\n"
        f"  In[10]:    d loss/d b at (w={float(w1):.4f}, b=0) = {float(rate_b):.4f} -> "
        f"b = 0 - 1e-2 * that = {float(b1):.4f}\n"
        f"  (d loss/d b at (1, 0), before In[9]'s update, is {float(rate[1]):.4f})")
    return {"rate_of_change": rate, "one_step_w_b": [w1, b1], "rate_of_change_b_at_w1": rate_b}


def seed_training_loop(config: Config, t_u, t_c, say) -> tuple:
    """In[15]-In[18]: training_loop(100, 1e-4, [1.0, 0.0], t_u, t_c), printed as the seed does."""
    say(f"\ntraining_loop(n_epochs={config.epochs}, learning_rate={config.lr:g}, "
        "params=[1.0, 0.0], t_u, t_c)")
    # Typo note: the seed's training_loop has `return params` inside the for loop (it would stop
    # after one epoch); its printed output is the book's intended loop, reproduced here.
    params, history = thermo.training_loop(config.epochs, config.lr, jnp.array([1.0, 0.0]),
                                           t_u, t_c)
    for line in epoch_lines(history):
        say(line)
    say(fmt(params))
    return params, history


def autograd_gradient(t_u, t_c, hand, say) -> jax.Array:
    """The autograd section's In[5]-In[7]: params.grad after loss.backward(), i.e. jax.grad."""
    auto = thermo.autograd_grad(jnp.array([1.0, 0.0]), t_u, t_c)
    say(f"\nautograd: jax.grad of loss_fn(model(t_u, *params), t_c) at [1, 0] = {fmt(auto)}"
        f"  (grad_fn: {fmt(hand)})")
    return auto


def book_fits(config: Config, t_u, t_c, say) -> dict:
    """The book's continuation: t_un = 0.1 * t_u by hand, then with optax SGD; Adam on t_u."""
    p0, t_un = jnp.array([1.0, 0.0]), 0.1 * t_u
    say(f"\nnormalised input t_un = 0.1 * t_u: training_loop(n_epochs={config.norm_epochs}, "
        f"learning_rate={config.norm_lr:g}, params=[1.0, 0.0], t_un, t_c, print_params=False)")
    norm_params, norm_history = thermo.training_loop(config.norm_epochs, config.norm_lr, p0,
                                                     t_un, t_c)
    for line in epoch_lines(norm_history, print_params=False):
        say(line)
    say(fmt(norm_params))
    sgd_params, sgd_losses = thermo.fit_optax(optax.sgd(config.norm_lr), config.norm_epochs, p0,
                                              t_un, t_c)
    adam_params, adam_losses = thermo.fit_optax(optim.adam(config.adam_lr), config.adam_epochs,
                                                p0, t_u, t_c)
    for name, lr, losses, fitted, data in (
            ("optax.sgd", config.norm_lr, sgd_losses, sgd_params, "t_un"),
            ("optax.adam", config.adam_lr, adam_losses, adam_params, "t_u")):
        say(f"\n{name}({lr:g}) via jaxnets.train, {cli.plural(len(losses), 'epoch')} on {data}:")
        for epoch in range(500, len(losses) + 1, 500):
            say(f"Epoch {epoch}, Loss {float(losses[epoch - 1]):f}")
        say(fmt(fitted))

    def fit(params, losses, inputs):
        return {"params": params, "final_loss": float(thermo.params_loss(params, inputs, t_c)),
                "loss": losses}

    return {"normalized": fit(norm_params, norm_history.loss, t_un),
            "sgd": fit(sgd_params, sgd_losses, t_un), "adam": fit(adam_params, adam_losses, t_u)}


def write_plots(config: Config, t_u, t_c, history, fits: dict) -> list[str]:
    """fit.png (the book's figure 5.9) and loss_curve.png: one panel per run (100, 5000 and
    2000 epochs do not share an x axis; the hand loop and optax SGD on t_un coincide)."""
    epochs = cli.plural
    panels = {
        f"seed's training_loop: t_u, lr {config.lr:g}, {epochs(config.epochs, 'epoch')}":
            {"training_loop": history.loss},
        f"normalised t_un, lr {config.norm_lr:g}, {epochs(config.norm_epochs, 'epoch')}":
            {"training_loop (by hand)": fits["normalized"]["loss"],
             "optax.sgd (dashed; equal to float32 rounding)": fits["sgd"]["loss"]},
        f"Adam on t_u, lr {config.adam_lr:g}, {epochs(config.adam_epochs, 'epoch')}":
            {"optax.adam": fits["adam"]["loss"]},
    }
    return [fit_plot(t_u, t_c, np.asarray(fits["normalized"]["params"]), 0.1,
                     os.path.join(config.options.out, "fit.png")),
            plots.loss_panels(panels, os.path.join(config.options.out, "loss_curve.png"),
                              title="thermometer fits: loss before each epoch's update",
                              xlabel="epoch", logy=True)]


def float32_gap(ours: float, book: str) -> str:
    """ours - book in float32 ulps of the book's value and absolutely."""
    diff = ours - float(book)
    ulps = diff / float(np.spacing(np.float32(float(book))))
    return f"{ours:f}  ({ulps:+.1f} ulp, {diff:+.1e})"


def comparison_rows(config: Config, metrics: dict) -> list[tuple[str, str, str]]:
    """The printed table: every TUTORIAL figure this run computed, then the book's REFERENCE
    figures when the run used the book's settings (losses with their float32 distance)."""
    loop = metrics["loop"]
    ours = {"initial loss": f"{metrics['initial_loss']:.4f}",
            "autograd grad at [1, 0]": fmt(metrics["autograd_grad"])}
    for epoch in range(1, config.epochs + 1):
        ours[f"epoch {epoch} loss"] = f"{float(loop['loss'][epoch - 1]):f}"
        ours[f"epoch {epoch} params"] = fmt(loop["params_history"][epoch - 1])
        ours[f"epoch {epoch} grad"] = fmt(loop["grad"][epoch - 1])
    rows = [(name, value, ours[name]) for name, value in TUTORIAL.items() if name in ours]
    runs = {"normalised": ("normalized", config.norm_epochs == 5000 and config.norm_lr == 1e-2),
            "optax SGD": ("sgd", config.norm_epochs == 5000 and config.norm_lr == 1e-2),
            "Adam": ("adam", config.adam_epochs == 2000 and config.adam_lr == 1e-1)}
    for name, (value, source) in REFERENCE.items():
        run_name, figure = name.split(": ")
        key, book_settings = runs[run_name]
        if not book_settings:
            continue
        if figure == "params":
            got = fmt(metrics[key]["params"])
        else:
            got = float32_gap(float(metrics[key]["loss"][-1]), value)
        rows.append((f"{name} (book)", value, got))
    return rows


def run(config: Config) -> dict:
    """Run the chapter's steps in its order; returns the metrics written to metrics.json.

    Args:
      config: the run's settings.

    Returns:
      metrics.json's content (arrays as jax/numpy arrays).
    """
    report = cli.Reporter(config.options.quiet)
    say = report.say
    t_c, t_u = thermo.data()
    say("[thermometer] seed 003: t_c = w * t_u + b on 11 readings, float32")
    first = first_look(t_u, t_c, say)
    step = finite_difference_step(t_u, t_c, config.delta, say)
    say(f"grad_fn(t_u, t_c, t_p, w, b) = {fmt(first['grad_fn'])}")
    params, history = seed_training_loop(config, t_u, t_c, say)
    auto = autograd_gradient(t_u, t_c, first["grad_fn"], say)
    fits = book_fits(config, t_u, t_c, say)

    metrics = {
        "experiment": "thermometer", "config": settings(config),
        "initial_loss": first["initial_loss"], "rate_of_change": step["rate_of_change"],
        "one_step_w_b": step["one_step_w_b"], "grad_fn": first["grad_fn"], "autograd_grad": auto,
        "loop": {"params": params, "loss": history.loss, "params_history": history.params,
                 "grad": history.grad},
        **fits, "tutorial": TUTORIAL, "reference": REFERENCE,
        "rate_of_change_b_at_w1": step["rate_of_change_b_at_w1"],
    }
    os.makedirs(config.options.out, exist_ok=True)
    metrics["plots"] = write_plots(config, t_u, t_c, history, fits)
    cli.write_json(os.path.join(config.options.out, "metrics.json"), metrics)
    say("")
    report.compare(comparison_rows(config, metrics),
                   title="seed 003 vs. jaxnets (float32; the seed and the book print 6 "
                         "decimals, half a unit of which is 2 ulps near 2.93)")
    report.say(f"(book): {_BOOK}")
    report.wrote(os.path.join(config.options.out, "metrics.json"), *metrics["plots"])
    return metrics


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

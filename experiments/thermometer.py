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
import os
import sys

from experiments import cli


@dataclasses.dataclass(frozen=True)
class Config:
    epochs: int = cli.arg(100, "epochs of the seed's training_loop")
    lr: float = cli.arg(1e-4, "its learning rate")
    norm_epochs: int = cli.arg(5000, "epochs on the normalised t_un, hand loop and optax SGD")
    norm_lr: float = cli.arg(1e-2, "their learning rate")
    adam_epochs: int = cli.arg(2000, "epochs of Adam on the raw t_u")
    adam_lr: float = cli.arg(1e-1, "Adam's learning rate")
    delta: float = cli.arg(0.1, "finite-difference step")
    out: str = cli.out("thermometer")
    progress: bool = cli.progress()
    quiet: bool = cli.quiet()

    def __post_init__(self):
        cli.check_positive(self, "epochs", "norm_epochs", "adam_epochs", "lr", "norm_lr",
                           "adam_lr", "delta")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import optim, plots
from jaxnets import thermometer as thermo

# What the seed prints (Out[6], Out[18], the autograd In[7]); the book's continuation (elided in
# the seed with "...") for the normalised and optimizer fits.
TUTORIAL = {
    "initial_loss": 1763.8846,
    "epoch_loss": {1: 1763.884644, 2: 323.090546, 3: 78.929634, 10: 29.105242, 11: 29.104168,
                   99: 29.023582, 100: 29.022669},
    "epoch_params": {1: [0.5483, -0.0083], 2: [0.3623, -0.0118], 3: [0.2858, -0.0135],
                     10: [0.2324, -0.0166], 11: [0.2323, -0.0169], 99: [0.2327, -0.0435],
                     100: [0.2327, -0.0438]},
    "epoch_grad": {1: [4517.2969, 82.6000], 2: [1859.5493, 35.7843], 3: [765.4667, 16.5122],
                   10: [1.4803, 3.0544], 11: [0.5781, 3.0384], 99: [-0.0533, 3.0226],
                   100: [-0.0532, 3.0226]},
    "autograd_grad": [4517.2969, 82.6000],
    "normalized_params": [5.3671, -17.3012],
    "sgd_params": [5.3671, -17.3012],
    "adam_params": [0.5367, -17.3021],
}


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
           title=f"t_c = {params[0] * scale:.4f} * t_u {params[1]:+.4f}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def run(config: Config) -> dict:
    """Run the chapter's steps; returns the metrics written to metrics.json."""
    report = cli.Reporter(config.quiet)
    say = report.say
    t_c, t_u = thermo.data()
    w, b = jnp.ones(()), jnp.zeros(())
    p0 = jnp.array([1.0, 0.0])
    say("[thermometer] seed 003: t_c = w * t_u + b on 11 readings, float32")

    t_p = thermo.model(t_u, w, b)
    initial_loss = float(thermo.loss_fn(t_p, t_c))
    say(f"t_p = model(t_u, w=1, b=0) = {np.array2string(np.asarray(t_p), precision=4)}")
    say(f"loss_fn(t_p, t_c) = {initial_loss:.4f}    (tutorial: tensor(1763.8846))")

    rate = thermo.rate_of_change(p0, t_u, t_c, config.delta)
    w1 = w - 1e-2 * rate[0]
    rate_b = thermo.rate_of_change(jnp.array([w1, b]), t_u, t_c, config.delta)[1]
    b1 = b - 1e-2 * rate_b
    say(f"finite differences (delta {config.delta}): d loss/d w = {float(rate[0]):.4f}, "
        f"d loss/d b = {float(rate[1]):.4f}; one step at lr 1e-2 (In[9], In[10]): "
        f"w = {float(w1):.4f}, b = {float(b1):.4f}")
    hand = thermo.grad_fn(t_u, t_c, t_p, w, b)
    auto = thermo.autograd_grad(p0, t_u, t_c)
    say(f"grad_fn(t_u, t_c, t_p, w, b) = {fmt(hand)}")

    say(f"\ntraining_loop(n_epochs={config.epochs}, learning_rate={config.lr:g}, "
        "params=[1.0, 0.0], t_u, t_c)")
    # Typo note: the seed's training_loop has `return params` inside the for loop (it would stop
    # after one epoch); its printed output is the book's intended loop, reproduced here.
    params, history = thermo.training_loop(config.epochs, config.lr, p0, t_u, t_c)
    for line in epoch_lines(history):
        say(line)
    say(fmt(params))

    say(f"\nautograd: jax.grad of loss_fn(model(t_u, *params), t_c) at [1, 0] = {fmt(auto)}"
        f"  (grad_fn: {fmt(hand)})")

    t_un = 0.1 * t_u
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
        say(f"\n{name}({lr:g}) via jaxnets.train, {len(losses)} epochs on {data}:")
        for epoch in range(500, len(losses) + 1, 500):
            say(f"Epoch {epoch}, Loss {float(losses[epoch - 1]):f}")
        say(fmt(fitted))

    def loss_at(p, u):
        return float(thermo.params_loss(p, u, t_c))

    metrics = {
        "experiment": "thermometer", "config": dataclasses.asdict(config),
        "initial_loss": initial_loss, "rate_of_change": rate, "one_step_w_b": [w1, b1],
        "grad_fn": hand, "autograd_grad": auto,
        "loop": {"params": params, "loss": history.loss, "params_history": history.params,
                 "grad": history.grad},
        "normalized": {"params": norm_params, "final_loss": loss_at(norm_params, t_un),
                       "loss": norm_history.loss},
        "sgd": {"params": sgd_params, "final_loss": loss_at(sgd_params, t_un),
                "loss": sgd_losses},
        "adam": {"params": adam_params, "final_loss": loss_at(adam_params, t_u),
                 "loss": adam_losses},
        "tutorial": TUTORIAL,
    }
    os.makedirs(config.out, exist_ok=True)
    metrics["plots"] = [
        fit_plot(t_u, t_c, np.asarray(norm_params), 0.1, os.path.join(config.out, "fit.png")),
        plots.loss_curve({"training_loop (t_u, lr 1e-4)": history.loss,
                          "normalised (t_un, lr 1e-2)": norm_history.loss,
                          "optax.sgd (t_un)": sgd_losses, "optax.adam (t_u, lr 1e-1)": adam_losses},
                         os.path.join(config.out, "loss_curve.png"), title="thermometer fits",
                         xlabel="epoch", logy=True),
    ]
    cli.write_json(os.path.join(config.out, "metrics.json"), metrics)

    rows = [("initial loss", "1763.8846", f"{initial_loss:.4f}")]
    for epoch, value in TUTORIAL["epoch_loss"].items():
        if epoch <= config.epochs:
            rows.append((f"epoch {epoch} loss", f"{value:f}",
                            f"{float(history.loss[epoch - 1]):f}"))
    if config.epochs >= 100:
        rows.append(("epoch 100 params", fmt(TUTORIAL["epoch_params"][100]),
                        fmt(history.params[99])))
    rows.append(("epoch 1 grad", fmt(TUTORIAL["epoch_grad"][1]), fmt(history.grad[0])))
    rows.append(("autograd grad at [1, 0]", fmt(TUTORIAL["autograd_grad"]), fmt(auto)))
    book = "(book) "
    if config.norm_epochs == 5000 and config.norm_lr == 1e-2:
        rows.append(("normalised 5000 epochs params", book + fmt(TUTORIAL["normalized_params"]),
                        fmt(norm_params)))
        rows.append(("optax SGD params", book + fmt(TUTORIAL["sgd_params"]), fmt(sgd_params)))
    if config.adam_epochs == 2000 and config.adam_lr == 1e-1:
        rows.append(("Adam params", book + fmt(TUTORIAL["adam_params"]), fmt(adam_params)))
    say("")
    report.compare(rows, title="seed 003 vs. jaxnets (float32; the last digit may differ: "
                               "summation order)")
    report.wrote(os.path.join(config.out, "metrics.json"), *metrics["plots"])
    return metrics


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

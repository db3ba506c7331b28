"""Seed 002: a two-layer network four ways (hand-written backprop, autograd, a module, Sequential).

    python -m experiments.two_layer
    python -m experiments.two_layer --epochs 50 --out runs/two_layer

The recipe: batch 100, x = randn(100, 1000), y = randn(100, 10), w1 = randn(1000, 100),
w2 = randn(100, 10), no biases, y_pred = relu(x @ w1) @ w2, loss = sum of squared errors,
20 epochs of full-batch gradient descent with lr 1e-6, printing `Epoch:{}, Loss:{:.4f}`.
The tutorial prints no loss values (each of its versions draws fresh random tensors), only
`print(model)` for the Sequential version; ours are printed next to that structure.

Every version starts from the same x, y, w1, w2 (drawn from --seed) and trains through
jaxnets.train:
- `manual`: the seed's hand-written backward pass, plugged in as the loss's custom VJP. The seed
  writes the ReLU backward as `grad_h.clamp_(min=0)`, which clamps the *gradient values* instead
  of zeroing the gradient where the pre-activation was negative; that is reproduced (so it
  follows a different trajectory) and said so. `manual_fixed` is the correct rule
  (`grad_h[h < 0] = 0`); its gradients equal `jax.grad`'s and its losses equal the others'.
- `autograd`: `jax.value_and_grad` of the same loss (the seed's Variable/backward version).
- `module`: a Flax module applied with w1, w2 as its parameters (the seed's Model.forward
  takes them as arguments; `model.apply({'params': ...}, x)` is exactly that).
- `sequential`: `Sequential(Linear, ReLU, Linear)` has biases; to start from the same point its
  kernels are w1, w2 and its biases zero *and frozen* (a trained bias would make it a different
  model). `sequential_torch_init` is the same Sequential from PyTorch's default init instead,
  all parameters trained (its own, different, trajectory).
Writes metrics.json and loss_curves.png into --out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable

from experiments import cli
from jaxnets.options import RunOptions


@dataclasses.dataclass(frozen=True)
class Config:
    batch_n: int = cli.arg(100, "batch size")
    input_data: int = cli.arg(1000, "D_in")
    hidden_layer: int = cli.arg(100, "H")
    output_data: int = cli.arg(10, "D_out")
    epochs: int = cli.arg(20, "epochs")
    lr: float = cli.arg(1e-6, "learning rate")
    seed: int = cli.seed()
    options: RunOptions = RunOptions(out="runs/two_layer")

    def __post_init__(self):
        cli.check_positive(self, "batch_n", "input_data", "hidden_layer", "output_data", "epochs",
                           "lr")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import aot, data, losses, optim, plots, train
from jaxnets.models import TwoLayerRaw, torch_repr, two_layer_sequential

VERSIONS = ("manual", "manual_fixed", "autograd", "module", "sequential",
            "sequential_torch_init")
SAME_START = ("manual_fixed", "autograd", "module", "sequential")  # must agree exactly

# What seed 002 states: its settings and `print(model)`'s Sequential; it prints no loss values
# here (each of its versions draws fresh torch.randn tensors, so they would not compare).
TUTORIAL: dict[str, str] = {
    "print(model)": "Sequential(Linear(1000, 100), ReLU(), Linear(100, 10))",
    "batch_n, input_data, hidden_layer, output_data": "100, 1000, 100, 10",
    "epoch_n, learning_rate": "20, 1e-06",
    "loss values": "not printed (random data)",
}
REFERENCE: dict[str, tuple[str, str]] = {}  # no figures from elsewhere


def make_data(config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """The seed's x, y, w1, w2: four torch.randn tensors (here jax.random.normal, one key each)."""
    n, d_in, h, d_out = config.batch_n, config.input_data, config.hidden_layer, config.output_data

    # One compiled program (op by op: the split, its unstacking and three shapes of normal
    # compiled one each); `aot.once`: run once, a quick compile with the same bits.
    @aot.once
    def draw(key):
        kx, ky, k1, k2 = jax.random.split(key, 4)
        return {"x": jax.random.normal(kx, (n, d_in)), "y": jax.random.normal(ky, (n, d_out)),
                "w1": jax.random.normal(k1, (d_in, h)), "w2": jax.random.normal(k2, (h, d_out))}

    return draw(key)


def hand_written(x, y, w1, w2, fixed: bool = False):
    """The seed's forward and hand-written backward: (loss, grad_w1, grad_w2).

    fixed=False is the seed's `grad_h.clamp_(min=0)` (not ReLU's derivative); fixed=True masks
    by the pre-activation, the correct backward.
    """
    h = x @ w1
    h1 = jnp.maximum(h, 0)                     # h1.clamp(min=0)
    y_pred = h1 @ w2
    loss = jnp.sum((y_pred - y) ** 2)
    grad_y_pred = 2 * (y_pred - y)
    grad_w2 = h1.T @ grad_y_pred
    grad_h = grad_y_pred @ w2.T
    grad_h = jnp.where(h > 0, grad_h, 0) if fixed else jnp.maximum(grad_h, 0)
    grad_w1 = x.T @ grad_h
    return loss, grad_w1, grad_w2


def hand_written_loss(fixed: bool) -> Callable:
    """sse(relu(x @ w1) @ w2, y) whose gradient is the hand-written one (a custom VJP), so the
    manual version trains through the same loop as the others."""

    @jax.custom_vjp
    def loss(w1, w2, x, y):
        return hand_written(x, y, w1, w2, fixed)[0]

    def fwd(w1, w2, x, y):
        value, g1, g2 = hand_written(x, y, w1, w2, fixed)
        return value, (g1, g2, x, y)

    def bwd(res, ct):
        g1, g2, x, y = res
        return ct * g1, ct * g2, jnp.zeros_like(x), jnp.zeros_like(y)

    loss.defvjp(fwd, bwd)
    return loss


def _loss_fn(version: str, apply_fn: Callable | None) -> train.LossFn:
    """train.LossFn for one version; the batch is {'x', 'y'} (the whole 100 examples)."""

    def loss_fn(params, model_state, batch, key):
        del key
        x, y = batch["x"], batch["y"]
        if version in ("manual", "manual_fixed"):
            value = hand_written_loss(version == "manual_fixed")(params["w1"], params["w2"], x, y)
        elif version == "autograd":
            value = losses.sse(jnp.maximum(x @ params["w1"], 0) @ params["w2"], y)
        else:
            value = losses.sse(apply_fn({"params": params}, x), y)
        return value, ({}, model_state)

    return loss_fn


def initial_state(version: str, config: Config, start: dict, key: jax.Array
                  ) -> train.TrainState:
    """The version's model, starting parameters and optimizer (`w -= lr * w.grad`)."""
    sgd = optim.sgd(config.lr)
    h, d_out = config.hidden_layer, config.output_data
    if version in ("manual", "manual_fixed", "autograd"):
        return train.TrainState.create(
            apply_fn=None, params={"w1": start["w1"], "w2": start["w2"]}, tx=sgd)
    if version == "module":
        model = TwoLayerRaw(h, d_out)
        return train.TrainState.create(
            apply_fn=model.apply, params={"w1": start["w1"], "w2": start["w2"]}, tx=sgd)
    model = two_layer_sequential(h, d_out)
    if version == "sequential_torch_init":
        # One compiled program (op by op, PyTorch's default init compiled 15 small ones).
        return aot.once(lambda key, x: train.TrainState.create(
            apply_fn=model.apply, params=model.init(key, x)["params"], tx=sgd))(key, start["x"][:1])
    params = {"layers_0": {"kernel": start["w1"], "bias": jnp.zeros(h)},
              "layers_2": {"kernel": start["w2"], "bias": jnp.zeros(d_out)}}
    # Biases frozen at zero (their updates set to zero) so the model equals relu(x@w1)@w2.
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if path[-1].key == "bias" else "train", params)
    tx = optax.multi_transform({"train": sgd, "frozen": optax.set_to_zero()}, labels)
    return train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def make_run_steps(version: str, apply_fn):
    """One version's compiled training loop (`train.make_run_steps`); the benchmark times the
    same one."""
    return train.make_run_steps(train.make_train_step(_loss_fn(version, apply_fn)))


def full_batch_sampler(config: Config) -> data.EpochSampler:
    """One full batch per epoch, in order."""
    return data.EpochSampler(config.batch_n, config.batch_n)


def train_version(version: str, config: Config, start: dict, key: jax.Array) -> np.ndarray:
    """Run one version for config.epochs full-batch steps; per-epoch losses (before each update,
    as the seed prints them)."""
    state = initial_state(version, config, start, key)
    run_steps = make_run_steps(version, state.apply_fn)
    data = {"x": start["x"], "y": start["y"]}
    sampler = full_batch_sampler(config)
    _, result = train.fit(state, run_steps, data, sampler, config.epochs, key,
                          chunk_size=config.epochs, progress=False, desc=version)
    return result.metrics["loss"]


def gradient_check(start: dict) -> dict[str, float]:
    """Max relative difference of each hand-written gradient from jax.grad at the start."""

    def loss(w1, w2):
        return losses.sse(jnp.maximum(start["x"] @ w1, 0) @ w2, start["y"])

    auto = jax.grad(loss, argnums=(0, 1))(start["w1"], start["w2"])
    out = {}
    for name, fixed in (("seed_backward", False), ("fixed_backward", True)):
        _, g1, g2 = hand_written(start["x"], start["y"], start["w1"], start["w2"], fixed)
        out[name] = max(float(jnp.max(jnp.abs(g - a)) / jnp.max(jnp.abs(a)))
                        for g, a in ((g1, auto[0]), (g2, auto[1])))
    return out


def train_versions(config: Config, start: dict, key: jax.Array, say) -> dict[str, np.ndarray]:
    """Each version in the seed's order, printing `Epoch:{}, Loss:{:.4f}` as the seed does."""
    curves = {}
    for version in VERSIONS:
        curves[version] = train_version(version, config, start, key)
        say(f"[{version}]")
        for epoch, value in enumerate(curves[version]):
            say(f"Epoch:{epoch}, Loss:{value:.4f}")
    return curves


def write_plot(config: Config, curves: dict, rel: dict) -> str:
    """loss_curves.png: the same-start versions are one line (they are equal), the seed's
    clamp_ backward and the PyTorch-init Sequential each their own."""
    same = max(rel[v] for v in SAME_START)
    lines = {"manual (the seed's clamp_ backward)": curves["manual"],
             f"{', '.join(SAME_START)} (max rel. diff {same:.1e})": curves["autograd"],
             "sequential, PyTorch init": curves["sequential_torch_init"]}
    return plots.loss_curve(lines, os.path.join(config.options.out, "loss_curves.png"),
                            title=f"Seed 002's two-layer net: sum of squared errors (lr "
                                  f"{config.lr:g}, {cli.plural(config.epochs, 'epoch')} of "
                                  f"{config.batch_n})",
                            xlabel="epoch (numbered from 0, as the seed prints)", ylabel="loss",
                            logy=True, first=0)


def comparison_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """TUTORIAL's figures next to ours, then what only we measure."""
    curves, rel = metrics["losses"], metrics["max_rel_diff_from_autograd"]
    grads = metrics["hand_written_grad_rel_diff"]
    shapes = metrics["shapes"]
    ours = {"print(model)": "identical (above)",
            "batch_n, input_data, hidden_layer, output_data":
                ", ".join(str(shapes[k]) for k in ("batch_n", "input_data", "hidden_layer",
                                                   "output_data")),
            "epoch_n, learning_rate": f"{metrics['epochs']}, {metrics['lr']:g}",
            "loss values": f"autograd's final loss {curves['autograd'][-1]:.4f}"}
    same = max(rel[v] for v in SAME_START)
    return [(name, value, ours[name]) for name, value in TUTORIAL.items()] + [
        ("same-start versions agree", "-", f"max rel. diff {same:.1e} ({', '.join(SAME_START)})"),
        ("seed's hand-written backward", "-",
         (f"grad differs from jax.grad by {grads['seed_backward']:.2f} (rel.): clamp_(min=0) on "
          f"the gradient; final loss {curves['manual'][-1]:.4f}")),
        ("fixed hand-written backward", "-",
         f"grad equals jax.grad to {grads['fixed_backward']:.1e} (rel.)"),
        ("Sequential, PyTorch init", "-", f"final loss {curves['sequential_torch_init'][-1]:.4f}"),
    ]


def run(config: Config, data: dict | None = None) -> dict:
    """Train all versions from one start; returns the metrics written to metrics.json.

    Args:
      config: the run's settings.
      data: {'x', 'y', 'w1', 'w2'} to start from (tests pass PyTorch's); drawn from the seed if None.
    """
    report = cli.Reporter(config.options.quiet)
    say = report.say
    data_key, init_key = jax.random.split(jax.random.key(config.seed))
    start = make_data(config, data_key) if data is None else {
        k: jnp.asarray(np.asarray(v), jnp.float32) for k, v in data.items()}
    structure = torch_repr(two_layer_sequential(config.hidden_layer, config.output_data),
                           start["x"][:1])
    curves = train_versions(config, start, init_key, say)
    reference = curves["autograd"]
    rel = {v: float(np.max(np.abs(curves[v] - reference) / np.abs(reference))) for v in VERSIONS}
    metrics = {
        "experiment": "two_layer", "seed": config.seed, "epochs": config.epochs, "lr": config.lr,
        "shapes": {"batch_n": config.batch_n, "input_data": config.input_data,
                   "hidden_layer": config.hidden_layer, "output_data": config.output_data},
        "losses": curves, "max_rel_diff_from_autograd": rel,
        "hand_written_grad_rel_diff": gradient_check(start), "sequential_structure": structure,
    }
    os.makedirs(config.options.out, exist_ok=True)
    metrics["plots"] = [write_plot(config, curves, rel)]
    cli.write_json(os.path.join(config.options.out, "metrics.json"), metrics)
    say("print(model) for the Sequential version:")
    say(structure)
    report.compare(comparison_rows(metrics))
    report.wrote(os.path.join(config.options.out, "metrics.json"), metrics["plots"][0])
    return metrics


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

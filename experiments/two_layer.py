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

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import cli
from jaxnets import data as D
from jaxnets import losses, optim, plots, train
from jaxnets.models import TwoLayerRaw, torch_repr, two_layer_sequential

VERSIONS = ("manual", "manual_fixed", "autograd", "module", "sequential",
            "sequential_torch_init")
SAME_START = ("manual_fixed", "autograd", "module", "sequential")  # must agree exactly


@dataclasses.dataclass(frozen=True)
class Config:
    batch_n: int = 100
    input_data: int = 1000
    hidden_layer: int = 100
    output_data: int = 10
    epochs: int = 20
    lr: float = 1e-6
    seed: int = 0
    out: str = "runs/two_layer"
    progress: bool = True

    def __post_init__(self):
        for name in ("batch_n", "input_data", "hidden_layer", "output_data", "epochs"):
            value = getattr(self, name)
            cli.check(value >= 1, f"--{name.replace('_', '-')} must be at least 1, got {value}")
        cli.check(self.lr > 0, f"--lr must be > 0, got {self.lr}")


def make_data(config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """The seed's x, y, w1, w2: four torch.randn tensors (here jax.random.normal, one key each)."""
    kx, ky, k1, k2 = jax.random.split(key, 4)
    n, d_in, h, d_out = config.batch_n, config.input_data, config.hidden_layer, config.output_data
    return {"x": jax.random.normal(kx, (n, d_in)), "y": jax.random.normal(ky, (n, d_out)),
            "w1": jax.random.normal(k1, (d_in, h)), "w2": jax.random.normal(k2, (h, d_out))}


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
        return train.TrainState.create(None, {"w1": start["w1"], "w2": start["w2"]}, sgd)
    if version == "module":
        model = TwoLayerRaw(h, d_out)
        return train.TrainState.create(model.apply, {"w1": start["w1"], "w2": start["w2"]}, sgd)
    model = two_layer_sequential(h, d_out)
    if version == "sequential_torch_init":
        params = model.init(key, start["x"][:1])["params"]
        return train.TrainState.create(model.apply, params, sgd)
    params = {"layers_0": {"kernel": start["w1"], "bias": jnp.zeros(h)},
              "layers_2": {"kernel": start["w2"], "bias": jnp.zeros(d_out)}}
    # Biases frozen at zero (their updates set to zero) so the model equals relu(x@w1)@w2.
    labels = jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if path[-1].key == "bias" else "train", params)
    tx = optax.multi_transform({"train": sgd, "frozen": optax.set_to_zero()}, labels)
    return train.TrainState.create(model.apply, params, tx)


def make_run_steps(version: str, apply_fn):
    """One version's compiled training loop (`train.make_run_steps`); the benchmark times the
    same one."""
    return train.make_run_steps(train.make_train_step(_loss_fn(version, apply_fn)))


def full_batch_sampler(config: Config) -> D.EpochSampler:
    """One full batch per epoch, in order."""
    return D.EpochSampler(config.batch_n, config.batch_n)


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


def run(config: Config, data: dict | None = None) -> dict:
    """Train all versions from one start; returns the metrics written to metrics.json.

    Args:
      config: the run's settings.
      data: {'x', 'y', 'w1', 'w2'} to start from (tests pass PyTorch's); drawn from the seed if None.
    """
    say = print if config.progress else (lambda *a, **k: None)
    data_key, init_key = jax.random.split(jax.random.key(config.seed))
    start = make_data(config, data_key) if data is None else {
        k: jnp.asarray(np.asarray(v), jnp.float32) for k, v in data.items()}
    structure = torch_repr(two_layer_sequential(config.hidden_layer, config.output_data),
                           start["x"][:1])
    curves = {v: train_version(v, config, start, init_key) for v in VERSIONS}
    for version, curve in curves.items():
        say(f"[{version}]")
        for epoch, value in enumerate(curve):
            say(f"Epoch:{epoch}, Loss:{value:.4f}")
    reference = curves["autograd"]
    rel = {v: float(np.max(np.abs(curves[v] - reference) / np.abs(reference))) for v in VERSIONS}
    grads = gradient_check(start)
    metrics = {
        "experiment": "two_layer", "seed": config.seed, "epochs": config.epochs, "lr": config.lr,
        "shapes": {"batch_n": config.batch_n, "input_data": config.input_data,
                   "hidden_layer": config.hidden_layer, "output_data": config.output_data},
        "losses": curves, "max_rel_diff_from_autograd": rel,
        "hand_written_grad_rel_diff": grads, "sequential_structure": structure,
    }
    os.makedirs(config.out, exist_ok=True)
    plot = plots.loss_curve(curves, os.path.join(config.out, "loss_curves.png"),
                            title="Seed 002's two-layer net: sum of squared errors",
                            xlabel="epoch", ylabel="loss", logy=True)
    metrics["plots"] = [plot]
    cli.write_json(os.path.join(config.out, "metrics.json"), metrics)
    say("print(model) for the Sequential version:")
    say(structure)
    same = max(rel[v] for v in SAME_START)
    say(cli.comparison([
        ("print(model)", "Sequential(0: Linear, 1: ReLU, 2: Linear)", "identical (above)"),
        ("final loss, autograd", "- (not printed)", f"{reference[-1]:.4f}"),
        ("same-start versions agree", "-", f"max rel. diff {same:.1e} ({', '.join(SAME_START)})"),
        ("seed's hand-written backward", "-",
         (f"grad differs from jax.grad by {grads['seed_backward']:.2f} (rel.): clamp_(min=0) on "
         f"the gradient; final loss {curves['manual'][-1]:.4f}")),
        ("fixed hand-written backward", "-",
         f"grad equals jax.grad to {grads['fixed_backward']:.1e} (rel.)"),
        ("Sequential, PyTorch init", "-", f"final loss {curves['sequential_torch_init'][-1]:.4f}"),
    ]))
    say(f"wrote {os.path.join(config.out, 'metrics.json')} and {plot}")
    return metrics


def build_parser():
    p = cli.parser("two_layer", __doc__)
    p.add_argument("--epochs", type=cli.positive_int, default=20, help="epochs (20)")
    p.add_argument("--lr", type=cli.positive_float, default=1e-6, help="learning rate (1e-6)")
    p.add_argument("--batch-n", type=cli.positive_int, default=100, help="batch size (100)")
    p.add_argument("--input-data", type=cli.positive_int, default=1000, help="D_in (1000)")
    p.add_argument("--hidden-layer", type=cli.positive_int, default=100, help="H (100)")
    p.add_argument("--output-data", type=cli.positive_int, default=10, help="D_out (10)")
    cli.add_seed(p)
    cli.add_out(p, "runs/two_layer")
    p.add_argument("--no-progress", action="store_true", help="print nothing")
    return p


def to_config(args) -> Config:
    return Config(batch_n=args.batch_n, input_data=args.input_data,
                  hidden_layer=args.hidden_layer, output_data=args.output_data,
                  epochs=args.epochs, lr=args.lr, seed=args.seed, out=args.out,
                  progress=not args.no_progress)


def main(argv=None) -> int:
    return cli.main(build_parser(), to_config, run, argv)


if __name__ == "__main__":
    sys.exit(main())

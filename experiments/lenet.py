"""Seed 001's neural-network section (and seed 002's `Net`): LeNet on one random 1x32x32 input.

    python -m experiments.lenet
    python -m experiments.lenet --channels 3 --out runs/lenet3     # the CIFAR-10 variant

What the tutorial does, step by step, and what we print next to it:
1. `print(net)`: the structure (ours in PyTorch's format, then Flax's own tabulate).
2. `params = list(net.parameters())`: 10 arrays, conv1's weight `torch.Size([6, 1, 5, 5])`
   (we list every array in PyTorch's layout with its size; 61,706 parameters in all).
3. `out = net(torch.randn(1, 1, 32, 32))`: a random input's 10 outputs.
4. `out.backward(torch.randn(1, 10))`: a vector-Jacobian product, here `jax.vjp`.
5. `nn.MSELoss()(output, target)` against a random target.
6. conv1.bias.grad before and after `loss.backward()`: JAX keeps no `.grad` buffers, a
   gradient exists once `jax.grad` returns it; "before" is shown as PyTorch >= 2.0 prints it
   (`None`: zero_grad() sets .grad to None; older releases printed zeros).
7. The manual rule `f.data.sub_(f.grad.data * learning_rate)` (lr 0.01) and an optax SGD step
   from the same weights and gradients give the same weights; then the tutorial's
   `optimizer.step()` block runs once (optim.sgd, PyTorch's SGD semantics).
The tutorial's numbers come from torch.randn and cannot be reproduced across frameworks; the
parity test loads the same weights and input into a PyTorch Net and compares everything.
Writes metrics.json into --out.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from experiments import cli
from jaxnets.options import RunOptions


@dataclasses.dataclass(frozen=True)
class Config:
    channels: int = cli.arg(1, "input channels (1: seed 001/002's Net, 3: the CIFAR-10 Net)")
    lr: float = cli.arg(0.01, "learning rate")
    seed: int = cli.seed()
    # layers.CONV_IMPLS and models.LeNet's default, written out so --help needs no jax
    # (tests/test_cli.py checks they agree).
    conv_impl: str = cli.arg("auto", "the convolutions' implementation (layers.conv2d): auto = "
                                     "matmul forms on CPU, lax.conv elsewhere",
                             choices=("auto", "lax", "patches", "banded"))
    options: RunOptions = RunOptions(out="runs/lenet")

    def __post_init__(self):
        cli.check_fields(self)
        cli.check_positive(self, "channels", "lr")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets import aot, losses, optim, torch_io
from jaxnets.models import LeNet, torch_repr

# What seed 001 itself states (it prints no outputs): "the expected input size of this network
# (LeNet) is 32x32", forward's comment that flattening gives an (N, 400) tensor, lr 0.01.
TUTORIAL: dict[str, str] = {"expected input size": "32x32", "flatten -> fc1 input": "(N, 400)",
                            "learning_rate": "0.01"}
# The printed outputs of the upstream tutorial the seed translates (the seed shows the code only).
_UPSTREAM = ("PyTorch 60-minute blitz, beginner_source/blitz/neural_networks_tutorial.py "
             "(pytorch.org/tutorials), its printed output")
REFERENCE: dict[str, tuple[str, str]] = {
    "len(params)": ("10", _UPSTREAM),
    "params[0].size()": ("torch.Size([6, 1, 5, 5])", _UPSTREAM),
    "conv1.bias.grad before backward": ("None", _UPSTREAM + " with PyTorch >= 2.0 (zero_grad "
                                        "sets None; older releases printed zeros)"),
}


def make_start(config: Config, model: LeNet, key: jax.Array) -> dict:
    """Initial parameters (PyTorch's init), the random input, target and backward vector."""
    k_init, k_in, k_v, k_t = jax.random.split(key, 4)
    x = jax.random.normal(k_in, (1, 32, 32, config.channels))  # torch.randn(1, C, 32, 32), NHWC
    return {"params": aot.once(model.init)(k_init, x)["params"], "input": x,
            "v": jax.random.normal(k_v, (1, 10)),                 # out.backward(torch.randn(1, 10))
            "target": jax.random.normal(k_t, (10,)).reshape(1, -1)}  # randn(10).view(1, -1)


def torch_layout(tree) -> dict[str, np.ndarray]:
    """A params-shaped tree (weights or their gradients) as a PyTorch state_dict, in PyTorch's
    order (each module's weight before its bias; jax.tree.map sorts dict keys, bias first)."""
    sd = torch_io.to_state_dict({"params": tree})
    modules = list(dict.fromkeys(k.rsplit(".", 1)[0] for k in sd))
    return dict(sorted(sd.items(), key=lambda kv: (modules.index(kv[0].rsplit(".", 1)[0]),
                                                   kv[0].endswith(".bias"))))


def print_structure(model: LeNet, x: jax.Array, config: Config, say) -> str:
    """1. `print(net)`: PyTorch's format, then Flax's own tabulate (traces the model again)."""
    structure = torch_repr(model, x, name="Net")
    say(structure)
    if not config.options.quiet:
        print(model.tabulate(jax.random.key(0), x, compute_flops=False, depth=1,
                             console_kwargs={"width": 100, "color_system": None,
                                             "force_terminal": False}))
    return structure


def parameter_list(params, say) -> dict[str, np.ndarray]:
    """2. `params = list(net.parameters()); print(len(params)); print(params[0].size())`, then
    every array in PyTorch's layout with its size."""
    sd = torch_layout(params)
    say(len(sd))
    say(f"torch.Size({list(sd['conv1.weight'].shape)})  # conv1's .weight")
    for name, value in sd.items():
        say(f"  {name:<14} {tuple(value.shape)!s:<16} {value.size:>7,}")
    say(f"  {'total':<14} {'':<16} {sum(a.size for a in sd.values()):>7,}")
    return sd


def make_forward_backward(model: LeNet):
    """Steps 3-6 as one compiled program (eager conv ops would each compile on their own):
    out = net(input), out.backward(v) (a VJP), loss = MSELoss(out, target), loss.backward()."""

    def apply(p, inputs):
        return model.apply({"params": p}, inputs)

    @jax.jit
    def forward_backward(p, x, v, target):
        out, vjp = jax.vjp(lambda q: apply(q, x), p)   # out = net(input)
        (vjp_grads,) = vjp(v)                            # out.backward(v)
        loss, grads = jax.value_and_grad(lambda q: losses.mse(apply(q, x), target))(p)
        return out, vjp_grads, loss, grads               # loss.backward() -> grads

    return forward_backward


def print_backward(out, vjp_grads, loss, grads, say) -> None:
    """3-6: the output, out.backward(v)'s conv1.bias gradient, the loss, and conv1.bias.grad
    before and after loss.backward()."""
    say(f"out = {np.array2string(np.asarray(out), precision=4)}")
    say(f"out.backward(v): conv1.bias.grad = {np.asarray(vjp_grads['conv1']['bias'])}")
    say(f"loss = {float(loss):.4f}")
    say("conv1.bias.grad before backward\nNone  (no gradient until jax.grad returns one)")
    say(f"conv1.bias.grad after backward\n{np.array2string(np.asarray(grads['conv1']['bias']))}")


def update_weights(config: Config, forward_backward, start: dict, grads, say) -> dict:
    """7. `f.data.sub_(f.grad.data * learning_rate)` next to an optax SGD step from the same
    weights and gradients; then the tutorial's optimizer block once, from the manually updated
    weights (its order): zero_grad(); output = net(input); loss = criterion(output, target);
    backward(); step()."""
    params, x, v, target = start["params"], start["input"], start["v"], start["target"]
    manual = jax.tree.map(lambda f, g: f - g * config.lr, params, grads)
    tx = optim.sgd(config.lr)
    updates, _ = tx.update(grads, tx.init(params), params)
    via_optax = optax.apply_updates(params, updates)
    manual_vs_optax = max(float(jnp.max(jnp.abs(a - b)))
                          for a, b in zip(jax.tree.leaves(manual), jax.tree.leaves(via_optax)))
    say(f"manual f -= lr * grad vs optax SGD step: max |difference| = {manual_vs_optax:.1e}")
    _, _, loss_before, step_grads = forward_backward(manual, x, v, target)
    updates, _ = tx.update(step_grads, tx.init(manual), manual)
    stepped = optax.apply_updates(manual, updates)
    loss_after = float(forward_backward(stepped, x, v, target)[2])
    say(f"optimizer.step(): loss {float(loss_before):.4f} -> {loss_after:.4f}")
    return {"manual_vs_optax_max_abs_diff": manual_vs_optax,
            "optimizer_step_loss_before": float(loss_before),
            "optimizer_step_loss_after": loss_after}


def comparison_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """What the seed states, then the upstream tutorial's printed figures (REFERENCE)."""
    rows = [("expected input size", TUTORIAL["expected input size"],
             "32x32 (other sizes: ConfigError)"),
            ("flatten -> fc1 input", TUTORIAL["flatten -> fc1 input"],
             f"(N, {metrics['param_counts']['fc1.weight'] // 120})"),
            ("learning_rate", TUTORIAL["learning_rate"], f"{metrics['lr']:g}")]
    ours = {"len(params)": str(metrics["num_param_arrays"]),
            "params[0].size()": f"torch.Size({metrics['conv1_weight_shape']})",
            "conv1.bias.grad before backward": "None (no jax.grad yet)"}
    rows += [(name, f"{value} (upstream)", ours[name]) for name, (value, _) in REFERENCE.items()]
    return rows + [
        ("parameters (not printed by the tutorial)", "-", f"{metrics['total_params']:,}"),
        ("out, loss, grads", "random (torch.randn)",
         "random; equal to PyTorch's on the same weights (tests/test_lenet.py)"),
        ("manual rule == optim step", "-",
         f"max |diff| {metrics['manual_vs_optax_max_abs_diff']:.1e}")]


def run(config: Config, start: dict | None = None) -> dict:
    """Walk through the tutorial's steps; returns the metrics written to metrics.json.

    Args:
      config: the run's settings.
      start: {'params', 'input' (NHWC), 'v', 'target'}; tests pass PyTorch's. Drawn if None.
    """
    report = cli.Reporter(config.options.quiet)
    say = report.say
    model = LeNet(classes=10, conv_impl=config.conv_impl)
    start = start or make_start(config, model, jax.random.key(config.seed))
    params, x, v, target = start["params"], start["input"], start["v"], start["target"]
    structure = print_structure(model, x, config, say)
    sd = parameter_list(params, say)
    forward_backward = make_forward_backward(model)
    out, vjp_grads, loss, grads = forward_backward(params, x, v, target)
    print_backward(out, vjp_grads, loss, grads, say)
    updated = update_weights(config, forward_backward, start, grads, say)

    metrics = {
        "experiment": "lenet", "seed": config.seed, "channels": config.channels, "lr": config.lr,
        "structure": structure, "num_param_arrays": len(sd),
        "conv1_weight_shape": list(sd["conv1.weight"].shape),
        "param_counts": {k: int(a.size) for k, a in sd.items()},
        "total_params": sum(a.size for a in sd.values()),
        "output": np.asarray(out)[0], "vjp_conv1_bias_grad": np.asarray(vjp_grads["conv1"]["bias"]),
        "mse_loss": float(loss), "conv1_bias_grad_before": None,
        "conv1_bias_grad_after": np.asarray(grads["conv1"]["bias"]), **updated,
    }
    os.makedirs(config.options.out, exist_ok=True)
    cli.write_json(os.path.join(config.options.out, "metrics.json"), metrics)
    report.compare(comparison_rows(metrics))
    report.wrote(os.path.join(config.options.out, "metrics.json"))
    return metrics


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

"""The blitz LeNet as a Flax NNX module beside the Linen one: same file, same outputs, same step.

    python -m experiments.lenet_nnx
    python -m experiments.lenet_nnx --channels 3 --out runs/lenet_nnx3    # the CIFAR-10 Net

Flax's "From PyTorch to JAX and Flax" guide teaches NNX (modules that hold their parameters,
like torch.nn.Module); jaxnets is written in Linen (stateless modules, `apply(variables, x)`).
This walks from one to the other:
1. the Linen LeNet's PyTorch-initialised weights, written as a PyTorch state_dict
   (`linen_lenet.safetensors` in --out; `torch.load_state_dict` takes the same file);
2. the NNX LeNet (jaxnets.nnx_lenet) built and loaded from that file;
3. `nnx.split` -> (graphdef, State) and `nnx.merge` inside `apply(state, x)`: the pure function;
4. outputs and cross-entropy gradients of both models on one random batch: equal;
5. one jitted SGD step (lr 0.001, momentum 0.9, the blitz CIFAR-10 optimizer) through
   jaxnets.train.make_train_step for each: equal losses and updated weights.
The tutorial prints no figure for this (NNX postdates it). Writes metrics.json into --out.
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
    batch_size: int = cli.arg(4, "batch size (the blitz CIFAR-10 batch size)")
    lr: float = cli.arg(0.001, "learning rate (the blitz CIFAR-10 optimizer: SGD(lr=0.001, "
                               "momentum=0.9))")
    momentum: float = cli.arg(0.9, "SGD momentum")
    seed: int = cli.seed()
    options: RunOptions = RunOptions(out="runs/lenet_nnx")

    def __post_init__(self):
        cli.check_positive(self, "channels", "batch_size", "lr")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxnets import checkpoint, nnx_lenet, optim, train
from jaxnets.models import LeNet

TUTORIAL: dict[str, str] = {}


def _max_diff(a, b) -> float:
    """Largest absolute difference between two params trees of the same structure."""
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a),
                                                              jax.tree.leaves(b)))


def linen_to_file(config: Config, key: jax.Array, images: jax.Array):
    """1. The Linen model and its weights as a PyTorch state_dict file: (model, params, path)."""
    linen = LeNet(classes=10, conv_impl="lax")   # lax.conv, the convolution nnx.Conv runs
    linen_params = jax.jit(linen.init)(key, images)["params"]
    os.makedirs(config.options.out, exist_ok=True)
    weights = checkpoint.export_state_dict(
        os.path.join(config.options.out, "linen_lenet.safetensors"), {"params": linen_params})
    return linen, linen_params, weights


def outputs_and_gradients(linen_fn, linen_params, nnx_fn, state, batch, key):
    """4. Outputs and gradients of the cross-entropy loss, both models, the same batch: (Linen's
    outputs, the outputs' largest difference, NNX's gradient State, Linen's gradients)."""
    out_linen = jax.jit(linen_fn)({"params": linen_params}, batch["image"])
    out_nnx = jax.jit(nnx_fn)({"params": state}, batch["image"])
    output_diff = float(jnp.max(jnp.abs(out_linen - out_nnx)))
    loss_linen = train.classification_loss(linen_fn)
    loss_nnx = train.classification_loss(nnx_fn)
    g_linen = jax.jit(jax.grad(lambda p: loss_linen(p, {}, batch, key)[0]))(linen_params)
    g_nnx = jax.jit(jax.grad(lambda s: loss_nnx(s, {}, batch, key)[0]))(state)
    return out_linen, output_diff, g_nnx, g_linen


def sgd_steps(config: Config, linen_fn, linen_params, nnx_fn, state, batch, key):
    """5. One jitted SGD step of each through the same train step: (Linen's state and metrics,
    NNX's state and metrics)."""
    tx = optim.sgd(config.lr, momentum=config.momentum)
    step_linen = jax.jit(train.make_train_step(train.classification_loss(linen_fn)))
    step_nnx = jax.jit(train.make_train_step(train.classification_loss(nnx_fn)))
    s_linen, m_linen = step_linen(train.TrainState.create(
        apply_fn=linen_fn, params=linen_params, tx=tx), batch, key)
    s_nnx, m_nnx = step_nnx(train.TrainState.create(
        apply_fn=nnx_fn, params=state, tx=tx), batch, key)
    return (s_linen, m_linen), (s_nnx, m_nnx)


def run(config: Config) -> dict:
    """Linen LeNet -> safetensors -> NNX LeNet -> pure function; compare outputs and a step.

    Args:
      config: the run's settings.
    Returns:
      the metrics written to metrics.json (the largest differences between the two models).
    """
    report = cli.Reporter(config.options.quiet)
    k_init, k_image, k_label, k_nnx = jax.random.split(jax.random.key(config.seed), 4)
    batch = {"image": jax.random.normal(k_image, (config.batch_size, 32, 32, config.channels)),
             "label": jax.random.randint(k_label, (config.batch_size,), 0, 10)}
    linen, linen_params, weights = linen_to_file(config, k_init, batch["image"])
    report.say(f"1. Linen LeNet's weights -> {weights}")
    # 2. The NNX model: built (its own random init), then loaded from the same file.
    model = nnx_lenet.LeNet(config.channels, 10, rngs=nnx.Rngs(params=k_nnx))
    nnx_lenet.load_state_dict_file(model, weights)
    report.say(f"2. nnx LeNet loaded from {weights}: "
               f"{sum(a.size for a in nnx_lenet.to_state_dict(model).values()):,} parameters")
    # 3. nnx.split/merge: the pure function and its parameter pytree.
    apply, graphdef, state = nnx_lenet.pure_apply(model)
    report.say("3. graphdef, state = nnx.split(model); apply = lambda s, x: "
               "nnx.merge(graphdef, s)(x)")
    linen_fn = linen.apply

    def nnx_fn(variables, x):      # the {'params': ...} calling convention of jaxnets.train
        return apply(variables["params"], x)

    key = jax.random.key(0)    # classification_loss draws nothing; make_train_step passes a key
    out_linen, output_diff, g_nnx, g_linen = outputs_and_gradients(
        linen_fn, linen_params, nnx_fn, state, batch, key)
    grad_diff = _max_diff(g_linen, nnx_lenet.params_tree(nnx.merge(graphdef, g_nnx)))
    report.say(f"4. outputs max |Linen - NNX| = {output_diff:.1e}; gradients {grad_diff:.1e}")
    (s_linen, m_linen), (s_nnx, m_nnx) = sgd_steps(config, linen_fn, linen_params, nnx_fn,
                                                    state, batch, key)
    stepped_nnx = nnx_lenet.params_tree(nnx.merge(graphdef, s_nnx.params))
    step_diff = _max_diff(s_linen.params, stepped_nnx)
    nnx.update(model, s_nnx.params)   # the object holds the trained weights again
    report.say(f"5. SGD step: loss Linen {float(m_linen['loss']):.6f}, NNX "
               f"{float(m_nnx['loss']):.6f}; updated weights max |diff| = {step_diff:.1e}")
    metrics = {
        "experiment": "lenet_nnx", "seed": config.seed, "channels": config.channels,
        "batch_size": config.batch_size, "lr": config.lr, "momentum": config.momentum,
        "weights": weights, "output_linen": np.asarray(out_linen),
        "output_max_abs_diff": output_diff, "grad_max_abs_diff": grad_diff,
        "loss_linen": float(m_linen["loss"]), "loss_nnx": float(m_nnx["loss"]),
        "step_params_max_abs_diff": step_diff,
    }
    return report_results(config, report, metrics)


def report_results(config: Config, report: cli.Reporter, metrics: dict) -> dict:
    """metrics.json, and the differences between the two models."""
    cli.write_json(os.path.join(config.options.out, "metrics.json"), metrics)
    report.compare([
        ("outputs, Linen vs NNX (max |diff|)", "-", f"{metrics['output_max_abs_diff']:.1e}"),
        ("gradients, Linen vs NNX (max |diff|)", "-", f"{metrics['grad_max_abs_diff']:.1e}"),
        ("weights after one SGD step (max |diff|)", "-",
         f"{metrics['step_params_max_abs_diff']:.1e}"),
    ])
    report.wrote(os.path.join(config.options.out, "metrics.json"))
    return metrics


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

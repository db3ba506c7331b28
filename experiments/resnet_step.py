"""Seed 001 (autograd section): one training step of ResNet18 on a random image.

    python -m experiments.resnet_step                          # torchvision init, --seed 0
    python -m experiments.resnet_step --weights resnet18-f37072fd.pth   # pretrained (needs torch)
    python -m experiments.resnet_step --weights r18.safetensors --export after.safetensors

The seed's code:
    model = resnet18(weights=ResNet18_Weights.DEFAULT)
    data = torch.rand(1, 3, 64, 64); labels = torch.rand(1, 1000)
    prediction = model(data); loss = (prediction - labels).sum(); loss.backward()
    optim = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9); optim.step()
The tutorial prints nothing ("one simple training step is done"); we print the loss before the
step and after it (a second training-mode forward with the updated weights, what calling
`model(data)` again would give: the model is still in training mode).

The model is in training mode as in the seed: BatchNorm normalises with the batch's statistics
and updates its running statistics with PyTorch's momentum (0.1, unbiased variance). Data and
labels are drawn with JAX keys from --seed, in NHWC ([1, 64, 64, 3]); their values differ from
torch.rand's (different generators), so the losses differ from a PyTorch run's; the parity
test feeds the same arrays to both and matches PyTorch to 1e-4.

Pretrained weights: torchvision downloads ResNet18_Weights.DEFAULT (IMAGENET1K_V1) from
https://download.pytorch.org/models/resnet18-f37072fd.pth. This code never downloads: fetch
that file where there is internet and pass it with --weights (.pth needs torch; a .safetensors
state_dict does not). Without --weights the model starts from torchvision's random init.
Writes metrics.json into --out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from experiments import cli


def final_feature_size(size: int) -> int:
    """Side of layer4's feature map for a size x size input (conv1, maxpool, 3 stride-2 stages)."""
    for _ in range(5):  # each is floor((s + 2p - k) / 2) + 1, which here is floor((s - 1) / 2) + 1
        size = (size - 1) // 2 + 1
    return size


@dataclasses.dataclass(frozen=True)
class Config:
    size: int = cli.arg(64, "image side (torch.rand(1, 3, 64, 64))")
    batch_size: int = cli.arg(1, "batch size")
    num_classes: int = cli.arg(1000, "fc outputs and label width (labels = torch.rand(1, 1000))")
    lr: float = cli.arg(1e-2, "learning rate")
    momentum: float = cli.arg(0.9, "SGD momentum")
    seed: int = cli.seed()
    weights: str | None = cli.arg(None, "torchvision resnet18 state_dict to start from (.pth via "
                                        "torch.load(weights_only=True), or .safetensors without "
                                        "torch)")
    pretrained: bool = cli.arg(False, "torchvision's ResNet18_Weights.DEFAULT: cannot be "
                                      "downloaded here, pass the file with --weights")
    export: str | None = cli.arg(None, "write the state_dict after the step to this "
                                       ".safetensors file")
    out: str = cli.out("resnet_step")
    progress: bool = cli.progress()
    quiet: bool = cli.quiet()

    def __post_init__(self):
        cli.check_positive(self, "size", "batch_size", "num_classes", "lr")
        cli.check(self.momentum >= 0, "momentum", f"must be >= 0, got {self.momentum}")
        side = final_feature_size(self.size)
        cli.check(self.batch_size * side * side > 1, "size",
                  f"{self.size} with {cli.flag('batch_size')} {self.batch_size} leaves layer4 one "
                  "value per channel, and training-mode BatchNorm needs more (PyTorch raises "
                  f"too); use {cli.flag('size')} 33 or more, or {cli.flag('batch_size')} 2")
        cli.check(self.export is None or self.export.endswith(".safetensors"), "export",
                  f"{self.export}: the file name must end in .safetensors")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp

from jaxnets import optim, resnet, torch_io, train
from jaxnets.errors import CheckpointError

PRETRAINED_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def run_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(init, data, step) keys: one key from --seed, split by purpose."""
    init_key, data_key, step_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, data_key, step_key


def make_batch(config: Config) -> dict[str, jax.Array]:
    """torch.rand(N, 3, H, W) and torch.rand(N, classes) for --seed, as NHWC uniform [0, 1)."""
    image_key, label_key = jax.random.split(run_keys(config.seed)[1])
    return {"image": jax.random.uniform(image_key, (config.batch_size, config.size, config.size, 3)),
            "label": jax.random.uniform(label_key, (config.batch_size, config.num_classes))}


def make_loss_fn(model: resnet.ResNet18):
    """The seed's `loss = (model(data) - labels).sum()` in training mode, for train.make_train_step.

    Returns the new BatchNorm running statistics as the model state (what PyTorch's forward
    writes into the module's buffers).
    """

    def loss_fn(params, model_state, batch, key):
        del key  # no dropout in ResNet18
        logits, new_state = model.apply({"params": params, **model_state}, batch["image"],
                                        train=True, mutable=["batch_stats"])
        return jnp.sum(logits - batch["label"]), ({}, dict(new_state))

    return loss_fn


def load_weights(config: Config) -> tuple[dict, int]:
    """The --weights file as Flax variables and its BatchNorm counter; CheckpointError (one
    line) if it is not a resnet18 with --num-classes outputs."""
    state_dict = torch_io.load(config.weights)
    variables = resnet.resnet18_from_state_dict(state_dict, config.num_classes,
                                                source=config.weights)
    return variables, resnet.num_batches_tracked(state_dict)


def run(config: Config) -> dict:
    """One SGD step as in the seed; returns the metrics written to metrics.json."""
    if config.pretrained and config.weights is None:
        raise CheckpointError(
            "--pretrained: torchvision would download ResNet18_Weights.DEFAULT from "
            f"{PRETRAINED_URL}, and downloads are impossible here (no internet); fetch that "
            "file elsewhere and pass --weights resnet18-f37072fd.pth (or a .safetensors export)")
    report = cli.Reporter(config.quiet)
    say = report.say
    init_key, _, step_key = run_keys(config.seed)
    model = resnet.ResNet18(config.num_classes)
    if config.weights is not None:
        variables, batches_tracked = load_weights(config)
        source = config.weights
    else:
        variables = resnet.init_variables(init_key, config.num_classes,
                                          (config.size, config.size, 3))
        batches_tracked = 0
        source = f"torchvision's random init (--seed {config.seed})"
    batch = make_batch(config)
    # torch.optim.SGD(lr=1e-2, momentum=0.9): optim.sgd keeps PyTorch's momentum buffer rule.
    tx = optim.sgd(config.lr, momentum=config.momentum)
    state = train.TrainState.create(model.apply, variables["params"], tx,
                                    {"batch_stats": variables["batch_stats"]})
    num_params = resnet.count_params(state.params)
    say(f"[resnet_step] ResNet18 ({num_params:,} parameters) from {source}; input "
        f"rand{(config.batch_size, config.size, config.size, 3)} NHWC, labels "
        f"rand{(config.batch_size, config.num_classes)}; loss = (prediction - labels).sum(); "
        f"SGD lr {config.lr} momentum {config.momentum}; BatchNorm in training mode")

    loss_fn = make_loss_fn(model)
    t0 = time.perf_counter()
    step = jax.jit(train.make_train_step(loss_fn)).lower(state, batch, step_key).compile()
    compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, step_metrics = step(state, batch, step_key)
    loss_before = float(step_metrics["loss"])  # blocks until the step is done
    step_seconds = time.perf_counter() - t0
    # The loss after the step: a second training-mode forward with the updated weights, as
    # `model(data)` would be in the seed. The compiled step computes exactly that loss before
    # it updates anything, so it is run once more on the new state and only its loss is kept
    # (its update and running statistics are dropped): no second compile (~5 s on CPU).
    loss_after = float(step(state, batch, step_key)[1]["loss"])

    metrics = {
        "experiment": "resnet_step", "weights": config.weights, "seed": config.seed,
        "input_shape_nhwc": [config.batch_size, config.size, config.size, 3],
        "num_classes": config.num_classes, "lr": config.lr, "momentum": config.momentum,
        "batchnorm_mode": "train", "num_params": num_params,
        "loss_before": loss_before, "loss_after": loss_after,
        "compile_seconds": compile_seconds, "step_seconds": step_seconds, "export": None,
    }
    if config.export is not None:
        # one training-mode forward: PyTorch's num_batches_tracked goes up by 1
        state_dict = resnet.resnet18_to_state_dict({"params": state.params, **state.model_state},
                                                   num_batches_tracked=batches_tracked + 1)
        metrics["export"] = torch_io.save(config.export, state_dict,
                                          {"format": "pt", "source": "jaxnets resnet_step"})
    os.makedirs(config.out, exist_ok=True)
    path = cli.write_json(os.path.join(config.out, "metrics.json"), metrics)
    say(f"loss before the step: {loss_before:.6f}")
    say(f"loss after the step:  {loss_after:.6f}  (training-mode BatchNorm, same data)")
    report.compare([
        ("parameters", "11,689,512 (resnet18)", f"{num_params:,}"),
        ("loss before / after", "not printed", f"{loss_before:.4f} / {loss_after:.4f}"),
        ("compile / step seconds", "-", f"{compile_seconds:.2f} / {step_seconds:.3f}"),
    ])
    if metrics["export"]:
        say(f"exported the state_dict after the step to {metrics['export']} (torchvision keys; "
            "load with safetensors.torch.load_file + model.load_state_dict)")
    report.wrote(path)
    return metrics


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

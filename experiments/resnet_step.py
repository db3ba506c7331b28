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

Pretrained weights: --pretrained downloads torchvision's ResNet18_Weights.DEFAULT
(IMAGENET1K_V1, https://download.pytorch.org/models/resnet18-f37072fd.pth) once into torch.hub's
cache ($TORCH_HOME/hub/checkpoints, where torchvision keeps it too), checks that its sha256
starts with f37072fd, and reads it with torch (weights_only=True). Offline, fetch that file
elsewhere and pass it with --weights (.pth needs torch; a .safetensors state_dict does not).
Without either the model starts from torchvision's random init.
Writes metrics.json into --out.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from experiments import cli
from jaxnets.options import RunOptions


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
    pretrained: bool = cli.arg(False, "start from torchvision's ResNet18_Weights.DEFAULT, "
                                      "downloaded once into torch.hub's cache (offline: pass "
                                      "the file with --weights)")
    export: str | None = cli.arg(None, "write the state_dict after the step to this "
                                       ".safetensors file")
    options: RunOptions = RunOptions(out="runs/resnet_step")

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

from jaxnets import models, optim, resnet, torch_io, train
from jaxnets.errors import CheckpointError

# What the seed states: it prints nothing ("one simple training step is done"); resnet18's
# size is torchvision's (the seed builds the model, it does not print the count).
TUTORIAL: dict[str, str] = {"loss before / after": "not printed"}
REFERENCE: dict[str, tuple[str, str]] = {
    "parameters": ("11,689,512", ("torchvision resnet18: sum(p.numel() for p in "
                                  "model.parameters()), checked by tests/test_resnet.py")),
}


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


def starting_weights(config: Config, init_key: jax.Array) -> tuple[dict, int, str]:
    """`resnet18(weights=...)`: (Flax variables, BatchNorm counter, where they came from).

    --weights FILE is read (CheckpointError, one line, if it is not a resnet18 with
    --num-classes outputs); --pretrained downloads torchvision's file once into torch.hub's
    cache; otherwise torchvision's random init from --seed.
    """
    path = config.weights
    if path is None and config.pretrained:
        try:
            path = resnet.fetch_pretrained(resnet.PRETRAINED_URL)
        except CheckpointError as e:
            raise CheckpointError(f"--pretrained: {e} (--weights FILE)") from e
    if path is None:
        variables = resnet.init_variables(init_key, config.num_classes,
                                          (config.size, config.size, 3))
        return variables, 0, f"torchvision's random init (--seed {config.seed})"
    state_dict = torch_io.load(path)
    variables = resnet.resnet18_from_state_dict(state_dict, config.num_classes, source=path)
    return variables, resnet.num_batches_tracked(state_dict), path


def one_step(loss_fn, state: train.TrainState, batch: dict, key: jax.Array) -> tuple:
    """loss.backward(); optim.step(), compiled and run once, and the loss after it.

    Returns (new state, {'loss_before', 'loss_after', 'compile_seconds', 'step_seconds'}).
    """
    t0 = time.perf_counter()
    step = jax.jit(train.make_train_step(loss_fn)).lower(state, batch, key).compile()
    compile_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, step_metrics = step(state, batch, key)
    loss_before = float(step_metrics["loss"])  # blocks until the step is done
    step_seconds = time.perf_counter() - t0
    # The loss after the step: a second training-mode forward with the updated weights, as
    # `model(data)` would be in the seed. The compiled step computes exactly that loss before
    # it updates anything, so it is run once more on the new state and only its loss is kept
    # (its update and running statistics are dropped): no second compile (~5 s on CPU).
    loss_after = float(step(state, batch, key)[1]["loss"])
    return state, {"loss_before": loss_before, "loss_after": loss_after,
                   "compile_seconds": compile_seconds, "step_seconds": step_seconds}


def export(config: Config, state: train.TrainState, batches_tracked: int) -> str:
    """The state_dict after the step, in torchvision's names and layouts, as safetensors."""
    # one training-mode forward: PyTorch's num_batches_tracked goes up by 1
    state_dict = resnet.resnet18_to_state_dict({"params": state.params, **state.model_state},
                                               num_batches_tracked=batches_tracked + 1)
    return torch_io.save(config.export, state_dict, {"format": "pt",
                                                     "source": "jaxnets resnet_step"})


def run(config: Config) -> dict:
    """One SGD step as in the seed.

    Args:
      config: the run's settings.

    Returns:
      the metrics written to metrics.json.
    """
    report = cli.Reporter(config.options.quiet)
    say = report.say
    init_key, _, step_key = run_keys(config.seed)
    model = resnet.ResNet18(config.num_classes)
    variables, batches_tracked, source = starting_weights(config, init_key)
    batch = make_batch(config)  # data = torch.rand(1, 3, 64, 64); labels = torch.rand(1, 1000)
    # torch.optim.SGD(lr=1e-2, momentum=0.9): optim.sgd keeps PyTorch's momentum buffer rule.
    tx = optim.sgd(config.lr, momentum=config.momentum)
    state = train.TrainState.create(
        apply_fn=model.apply, params=variables["params"], tx=tx,
        model_state={"batch_stats": variables["batch_stats"]})
    num_params = models.count_params(state.params)
    say(f"[resnet_step] ResNet18 ({num_params:,} parameters) from {source}; input "
        f"rand{(config.batch_size, config.size, config.size, 3)} NHWC, labels "
        f"rand{(config.batch_size, config.num_classes)}; loss = (prediction - labels).sum(); "
        f"SGD lr {config.lr} momentum {config.momentum}; BatchNorm in training mode")
    state, step = one_step(make_loss_fn(model), state, batch, step_key)

    metrics = {
        "experiment": "resnet_step", "weights": config.weights, "seed": config.seed,
        "input_shape_nhwc": [config.batch_size, config.size, config.size, 3],
        "num_classes": config.num_classes, "lr": config.lr, "momentum": config.momentum,
        "batchnorm_mode": "train", "num_params": num_params, **step,
        "export": export(config, state, batches_tracked) if config.export else None,
    }
    os.makedirs(config.options.out, exist_ok=True)
    path = cli.write_json(os.path.join(config.options.out, "metrics.json"), metrics)
    say(f"loss before the step: {step['loss_before']:.6f}")
    say(f"loss after the step:  {step['loss_after']:.6f}  (training-mode BatchNorm, same data)")
    report.compare([
        ("parameters", f"{REFERENCE['parameters'][0]} (torchvision)", f"{num_params:,}"),
        ("loss before / after", TUTORIAL["loss before / after"],
         f"{step['loss_before']:.4f} / {step['loss_after']:.4f}"),
        ("compile / step seconds", "-",
         f"{step['compile_seconds']:.2f} / {step['step_seconds']:.3f}"),
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

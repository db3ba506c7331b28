"""Seed 002: a user-defined `Dataset` (`__len__`/`__getitem__`) fed to `DataLoader(myDataset, 32)`.

    python -m experiments.custom_dataset                        # example files made from --seed
    python -m experiments.custom_dataset --csv-file X.csv --txt-file Y.txt --shuffle

The seed defines `myDataset(Dataset)` reading a CSV file (pandas) and a text file, returns
`(csv_data[idx], txt_data[idx])` from `__getitem__`, and wraps it in
`DataLoader(myDataset, batch_size=32)` because plain indexing gives no batches, no shuffling.
It prints nothing; it states the batch size, 32.

Here `MyDataset` reads the same two kinds of file (numpy instead of pandas: one row of numbers
per line) and its `__getitem__` takes an array of indices and returns a dict, the protocol of
`jaxnets.data.IndexableDataset` (DataLoader's batched `__getitems__`). `jaxnets.data.batches`
is the DataLoader: the same batches, the last one short (a test compares them with torch's
DataLoader). The same dataset then feeds the same training loop as every experiment: it is
materialized once onto the device and `train.fit` gathers each batch there, in the sampler's
order. The model and loss are seed 002's: `Sequential(Linear(1000, 100), ReLU, Linear(100, 10))`,
sum of squared errors, plain SGD at lr 1e-6, 20 epochs; without files, the CSV holds x =
randn(100, 1000) and the text file y = randn(100, 10), the seed's two-layer data.
Writes metrics.json and the example files into --out.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from experiments import cli
from jaxnets.options import RunOptions


@dataclasses.dataclass(frozen=True)
class Config:
    csv_file: str | None = cli.arg(None, "examples, one comma-separated row per line (default: "
                                         "example files made from --seed)")
    txt_file: str | None = cli.arg(None, "targets, one space-separated row per line, as many as "
                                         "--csv-file")
    batch_size: int = cli.arg(32, "batch size (the seed's DataLoader(myDataset, batch_size=32))")
    shuffle: bool = cli.arg(False, "a new order each epoch (DataLoader's default: off)")
    epochs: int = cli.arg(20, "epochs (seed 002's epoch_n)")
    lr: float = cli.arg(1e-6, "learning rate (seed 002's learning_rate)")
    examples: int = cli.arg(100, "rows of the example files (seed 002's batch_n)")
    seed: int = cli.seed()
    options: RunOptions = RunOptions(out="runs/custom_dataset")  # (also the example files')

    def __post_init__(self):
        given, other = (("csv_file", "txt_file") if self.csv_file is not None
                        else ("txt_file", "csv_file"))
        cli.check((self.csv_file is None) == (self.txt_file is None), given,
                  f"needs {cli.flag(other)} too: the two files go together (give neither for "
                  "example files)")
        cli.check_positive(self, "batch_size", "epochs", "examples", "lr")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets import data, losses, optim, train
from jaxnets.errors import DataError
from jaxnets.models import two_layer_sequential

TUTORIAL: dict[str, str] = {"DataLoader batch_size": "32"}
REFERENCE: dict[str, tuple[str, str]] = {}


class MyDataset:
    """The seed's myDataset: rows of a CSV file and the matching lines of a text file."""

    def __init__(self, csv_file: str, txt_file: str):
        self.csv_data = _read_rows(csv_file, ",")
        self.txt_data = _read_rows(txt_file, None)
        if len(self.csv_data) != len(self.txt_data):
            raise DataError(f"{txt_file}: {len(self.txt_data)} lines but {csv_file} has "
                            f"{len(self.csv_data)} rows; each example needs one of each")

    def __len__(self) -> int:
        return len(self.csv_data)

    def __getitem__(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        # The seed returns the tuple (csv_data[idx], txt_data[idx]) for one idx; a batch of
        # indices and a dict (the training loop's batch) are jaxnets' protocol.
        return {"x": self.csv_data[idx], "y": self.txt_data[idx]}


def _read_rows(path: str, delimiter: str | None) -> np.ndarray:
    """A text file of numbers as float32[lines, columns] (`data.read_rows`: a regular file of a
    size this machine can parse, not empty, all numbers finite); a bad file is a one-line
    DataError."""
    return data.read_rows(path, delimiter)


def write_example_files(config: Config, key: jax.Array) -> tuple[str, str]:
    """Seed 002's x = randn(100, 1000) as a CSV file and y = randn(100, 10) as a text file."""
    kx, ky = jax.random.split(key)
    x = np.asarray(jax.random.normal(kx, (config.examples, 1000)))
    y = np.asarray(jax.random.normal(ky, (config.examples, 10)))
    out = config.options.out
    os.makedirs(out, exist_ok=True)
    csv_file, txt_file = (os.path.join(out, f) for f in ("example.csv", "example.txt"))
    np.savetxt(csv_file, x, fmt="%.9g", delimiter=",")  # 9 digits: float32 reads back exactly
    np.savetxt(txt_file, y, fmt="%.9g")
    return csv_file, txt_file


def sse_loss(apply_fn) -> train.LossFn:
    """Seed 002's `(y_pred - y).pow(2).sum()` over the batch's real rows (the short last batch
    is padded to the batch size; its padded rows count 0)."""

    def loss_fn(params, model_state, batch, key):
        del key
        pred = apply_fn({"params": params}, batch["x"])
        return losses.mse(pred, batch["y"], "sum", weights=batch["mask"]), ({}, model_state)

    return loss_fn


def sampler(config: Config, n: int, key: jax.Array) -> data.EpochSampler:
    """DataLoader(dataset, batch_size, shuffle): epoch passes, the last batch short."""
    return data.EpochSampler(n, config.batch_size, key if config.shuffle else None)


def run(config: Config, dataset: data.IndexableDataset | None = None) -> dict:
    """Read the dataset, print its batches, train seed 002's Sequential on it.

    Args:
      config: the run's settings.
      dataset: any IndexableDataset with 'x' and 'y' (default: MyDataset of config's files).

    Returns:
      The metrics written to metrics.json.
    """
    report = cli.Reporter(config.options.quiet)
    files_key, data_key, init_key, train_key = jax.random.split(jax.random.key(config.seed), 4)
    if dataset is None:
        files = ((config.csv_file, config.txt_file) if config.csv_file is not None
                 else write_example_files(config, files_key))
        dataset = MyDataset(*files)
    order = sampler(config, len(dataset), data_key)
    report.say(f"[custom_dataset] {len(dataset)} examples; "
               f"dataiter = batches(dataset, EpochSampler({len(dataset)}, {config.batch_size}"
               f"{', key' if config.shuffle else ''}))  # DataLoader(myDataset, batch_size="
               f"{config.batch_size}{', shuffle=True' if config.shuffle else ''})")
    shapes = []
    for step, batch in enumerate(data.batches(dataset, order)):
        shapes.append({k: list(v.shape) for k, v in batch.items()})
        report.say(f"  batch {step}: "
                   + ", ".join(f"{k} {tuple(v)}" for k, v in shapes[-1].items()))

    host = data.materialize(dataset)
    model = two_layer_sequential(100, host["y"].shape[1])
    params = model.init(init_key, jnp.zeros((1, host["x"].shape[1])))["params"]
    state = train.TrainState.create(apply_fn=model.apply, params=params,
                                    tx=optim.sgd(config.lr))
    run_steps = train.make_run_steps(train.make_train_step(sse_loss(model.apply)))
    steps = config.epochs * order.steps_per_epoch
    _, history = train.fit(state, run_steps, data.to_device(host), order, steps, train_key,
                          chunk_size=steps, progress=False, desc="custom_dataset")
    per_epoch = history.metrics["loss"].reshape(config.epochs, -1).sum(axis=1)
    for epoch in (0, config.epochs - 1):
        report.say(f"  Epoch:{epoch}, Loss:{per_epoch[epoch]:.4f}  (sum over the epoch's batches)")
    metrics = {"experiment": "custom_dataset", "examples": len(dataset),
               "batch_size": config.batch_size, "shuffle": config.shuffle, "batch_shapes": shapes,
               "epochs": config.epochs, "lr": config.lr, "seed": config.seed,
               "epoch_losses": per_epoch.tolist()}
    path = cli.write_json(os.path.join(config.options.out, "metrics.json"), metrics)
    ours = f"{config.batch_size} ({len(shapes)} batches, the last {shapes[-1]['x'][0]})"
    report.compare([("DataLoader batch_size", TUTORIAL["DataLoader batch_size"], ours)])
    report.wrote(path)
    return metrics


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())

"""How a run goes, apart from what it computes: where it writes, what it prints, checkpoints,
devices, hosts. Declared once here; every experiment's Config holds one as its `options` field.

    mnist.run(mnist.Config(steps=300, options=TrainOptions(out="/tmp/m", quiet=True)))

`RunOptions` is what every run has (its output folder, how much it prints); `TrainOptions` adds
what a training run through `jaxnets.train.run_training` has (TensorBoard events, checkpoints,
data parallel devices, several hosts). The driver takes a `TrainOptions` whole. Each field's
`help` is what the experiments' command line says for its flag (experiments.cli makes one flag
per field and puts them after the experiment's own); a check that fails raises ConfigError
naming the field. This module imports neither jax nor numpy: a command line answers --help
before jax loads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from jaxnets.errors import ConfigError

# A field's metadata key: True when the field may change between a checkpoint and the run that
# resumes it without changing the result (where outputs go, how much is printed, a longer run).
MAY_DIFFER = "may_differ"


def _field(default: Any, help: str, *, group: str = "run options", may_differ: bool = True,
           metavar: str | None = None) -> Any:
    return dataclasses.field(default=default, metadata={
        "help": help, "group": group, MAY_DIFFER: may_differ, "metavar": metavar})


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Where a run writes and what it prints."""

    out: str = dataclasses.field(metadata={  # (no default: each experiment has its own folder)
        "help": "folder for metrics.json and plots", "group": "run options", MAY_DIFFER: True})
    quiet: bool = _field(False, "print only the results (the comparison table, the files "
                                "written) and errors")
    progress: bool = _field(True, "no progress bars (everything else is printed)")

    def __post_init__(self):
        if not isinstance(self.out, str) or not self.out:
            raise ConfigError(f"must name a folder, got {self.out!r}", param="out")

    @property
    def show_progress(self) -> bool:
        """Progress bars are shown: asked for, and not quiet."""
        return self.progress and not self.quiet


CHECKPOINTS, DEVICES = "run options: checkpoints", "run options: devices and hosts"


@dataclasses.dataclass(frozen=True)
class TrainOptions(RunOptions):
    """A training run's options: `RunOptions`, TensorBoard, checkpoints, devices, hosts."""

    tensorboard: str | None = _field(None, "also write TensorBoard events (the loss, the test "
                                           "accuracy, the run's figures) into this folder",
                                     metavar="DIR")
    checkpoint_dir: str | None = _field(None, "save orbax checkpoints (params, optimizer state, "
                                              "step, PRNG key, settings) into this folder",
                                        group=CHECKPOINTS)
    resume: bool = _field(False, "continue from the latest checkpoint in the checkpoint folder "
                                 "(starts from step 0 if there is none); the result equals an "
                                 "uninterrupted run", group=CHECKPOINTS)
    checkpoint_every: int | None = _field(None, "steps between checkpoints (default: one at each "
                                                "of the run's reports: every epoch, every running "
                                                "loss printed, or every 1000 steps); the last "
                                                "step is always saved", group=CHECKPOINTS)
    keep_checkpoints: int = _field(3, "how many of the latest checkpoints to keep",
                                   group=CHECKPOINTS)
    # (the only option a resumed run must keep: the device count changes summation order)
    devices: int = _field(1, "train data parallel on N devices: the batch is split over them, "
                             "the parameters replicated; the batch size must divide by N",
                          group=DEVICES, may_differ=False, metavar="N")
    coordinator: str | None = _field(None, "multi-host: process 0's address for "
                                           "jax.distributed.initialize (run the same command on "
                                           "every host with its process id)", group=DEVICES,
                                     metavar="HOST:PORT")
    num_processes: int | None = _field(None, "multi-host: number of processes (hosts)",
                                       group=DEVICES)
    process_id: int | None = _field(None, "multi-host: this process's index, from 0, below the "
                                          "number of processes", group=DEVICES)

    def __post_init__(self):
        super().__post_init__()
        _check(not self.resume or self.checkpoint_dir is not None, "resume",
               "needs checkpoint_dir (the folder to resume from)")
        _check(self.checkpoint_every is None or self.checkpoint_every >= 1, "checkpoint_every",
               f"must be at least 1, got {self.checkpoint_every}")
        _check(self.keep_checkpoints >= 1, "keep_checkpoints",
               f"must be at least 1, got {self.keep_checkpoints}")
        _check(self.devices >= 1, "devices", f"must be at least 1, got {self.devices}")
        multi = (self.coordinator, self.num_processes, self.process_id)
        if any(v is not None for v in multi):
            _check(all(v is not None for v in multi), "coordinator",
                   "multi-host needs num_processes and process_id with the coordinator (all "
                   "three, or none)")
            _check(self.num_processes >= 1, "num_processes",
                   f"must be at least 1, got {self.num_processes}")
            _check(0 <= self.process_id < self.num_processes, "process_id",
                   f"must be in 0 .. {self.num_processes - 1}, got {self.process_id}")

    def check_batch_size(self, batch_size: int) -> None:
        """ConfigError (batch_size) unless the batch splits evenly over the devices."""
        _check(batch_size % self.devices == 0, "batch_size",
               f"{batch_size} must be a multiple of the {self.devices} devices (each device takes "
               "an equal share of the batch)")


def _check(condition: bool, param: str, message: str) -> None:
    if not condition:
        raise ConfigError(message, param=param)


def settings(config: Any) -> dict[str, Any]:
    """A Config's fields as one flat dict, its `options` fields included (what a checkpoint
    saves of the run, and what a resumed run is compared with)."""
    if not dataclasses.is_dataclass(config):
        return dict(config or {})
    flat = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, RunOptions):
            flat.update(dataclasses.asdict(value))
        else:
            flat[f.name] = value
    return flat


def may_differ(config: Any) -> set[str]:
    """The names in `settings(config)` whose fields are marked MAY_DIFFER (in its options, and
    in the Config itself: e.g. the number of steps, which a longer resumed run changes)."""
    if not dataclasses.is_dataclass(config):
        return set()
    names = set()
    for f in _fields(config):
        if f.metadata.get(MAY_DIFFER):
            names.add(f.name)
    return names


def _fields(config: Any) -> Iterable[dataclasses.Field]:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        yield from (dataclasses.fields(value) if isinstance(value, RunOptions) else (f,))

"""Data parallel training: a 1-D device mesh, the batch sharded over it, everything else replicated.

The training step is unchanged: `train.run_training(..., devices=N)` builds the mesh, puts the
state, the data set and the key on every device of it (replicated) and shards each step's batch
indices over the 'data' axis, so every device gathers and trains on its slice of the batch; XLA (GSPMD) inserts
the all-reduce that sums the gradient over the devices. The results equal single-device
training up to float summation order (tests/test_parallel.py checks 1e-6 on 8 devices).

    state, history = train.run_training(state, train_step, data, sampler, steps, keys,
                                        devices=8)   # the first 8 devices, axis 'data'
    # by hand: mesh = parallel.make_mesh(8); run_steps = train.make_run_steps(train_step, mesh)
    #          train.fit(state, run_steps, data, sampler, steps, key, mesh=mesh)

On one machine `make_mesh(N)` uses N local devices (GPUs, TPU cores, or CPU devices faked with
`XLA_FLAGS=--xla_force_host_platform_device_count=N`). On several machines, start one process per
host and call `initialize` first (it wraps `jax.distributed.initialize`); the mesh then spans the
devices of all hosts and each process feeds its own devices' shards of the same global arrays:

    # on every host h = 0 .. H-1 (same command, same seed, same data files):
    python -m experiments.mnist --devices 16 \\
        --coordinator host0.example:1234 --num-processes 2 --process-id h

The batch size must be a multiple of the mesh size (a clear ConfigError otherwise).
The experiments take these as Config fields (devices; coordinator, num_processes and process_id
on several hosts); experiments.cli turns them into flags and these errors' parameters into those
flags.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxnets.errors import ConfigError

AXIS = "data"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Multi-host setup: `jax.distributed.initialize` (before any other jax call). With no
    arguments it auto-detects supported clusters (SLURM, Open MPI, Cloud TPU, ...)."""
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)


def make_mesh(num_devices: int | None = None, devices=None) -> Mesh:
    """A 1-D mesh named 'data' over the first `num_devices` devices (all when None)."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices) if num_devices is None else num_devices
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"the device count must be a positive integer, got {num_devices!r}",
                          param="devices")
    if n > len(devices):
        raise ConfigError(
            f"{n} devices asked for, more than jax sees ({len(devices)}: "
            f"{devices[0].platform}); on CPU, XLA_FLAGS=--xla_force_host_platform_device_count={n} "
            "(set before jax is imported) fakes that many, and several hosts need `initialize` "
            "(coordinator address, number of processes, process id)", param="devices")
    return Mesh(np.array(devices[:n]), (AXIS,))


def replicated(mesh: Mesh | None) -> NamedSharding | None:
    """Every device holds the whole array (parameters, optimizer state, the data set); None for
    no mesh, i.e. jax's default single device."""
    return None if mesh is None else NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Split `batch_axis` over the mesh (a batch; axis 1 of [steps, batch] index arrays)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """A batch must split evenly over the devices."""
    if batch_size % mesh.size:
        raise ConfigError(f"batch size {batch_size} is not divisible by the {mesh.size} devices "
                          f"of the mesh; use a batch size that is a multiple of {mesh.size} "
                          "or a device count that divides it", param="batch_size")


def _put(value: Any, sharding: NamedSharding) -> jax.Array:
    """Place one array (host or device) with `sharding`; on several hosts every process passes
    the same global value and supplies the shards of its own devices."""
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
        impl = jax.random.key_impl(value)
        return jax.random.wrap_key_data(_put(jax.random.key_data(value), sharding), impl=impl)
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return value
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array leaf of `tree` (a TrainState, a data set dict, a key) on every device."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda v: _put(v, sharding), tree)


def shard_batch(tree: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
    """Every array leaf of `tree` split over the mesh along `batch_axis`."""
    sharding = batch_sharding(mesh, batch_axis)
    return jax.tree.map(lambda v: _put(v, sharding), tree)


def constrain_batch(batch: Any, mesh: Mesh) -> Any:
    """Inside jit: keep a gathered batch split over the mesh along its leading axis."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(lambda v: jax.lax.with_sharding_constraint(v, sharding), batch)


def constrain_replicated(tree: Any, mesh: Mesh) -> Any:
    """Inside jit: keep `tree` (the training state) whole on every device."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda v: jax.lax.with_sharding_constraint(v, sharding), tree)

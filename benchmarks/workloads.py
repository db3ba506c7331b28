"""The benchmark workloads: each is the same work for the tutorial's PyTorch code and jaxnets.

The jaxnets side goes through the experiments' own building blocks and the one training loop
(`train.run_training`, `train.fit`, or the experiment's jitted loop), exactly as the
experiment's `run` does, minus the evaluation/plots/JSON around it. A side's builder returns
`prepare()`, which makes a fresh model state (untimed) and returns the timed `run()`.

Data comes from .npy files the driver writes once (`write_data`), so both sides train on the
same bytes: Fashion-MNIST when installed (MNIST's format and shape), else random uint8 images
of MNIST's shape; random uint8 images of CIFAR-10's shape for the LeNet (timing only needs the
shape: the tutorial's own accuracy run is `python -m experiments.cifar10`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from benchmarks.measure import best_seconds
from jaxnets.options import TrainOptions

# The matmuls one training step of the dense workloads does, as (m, k, n, a transposed,
# b transposed) for [m, k] @ [k, n]: forward, weight gradients, and input gradients of every
# layer but the first. `matmul_floor` times exactly these (`--matmuls-only` in the worker).
_MNIST_MATMULS = (
    (100, 784, 200, False, False),   # h = x @ w1
    (100, 200, 10, False, False),    # logits = relu(h) @ w2
    (200, 100, 10, True, False),     # dw2 = relu(h)^T @ dlogits
    (100, 10, 200, False, True),     # dh = dlogits @ w2^T
    (784, 100, 200, True, False),    # dw1 = x^T @ dh
)
_TWO_LAYER_MATMULS = (
    (100, 1000, 100, False, False), (100, 100, 10, False, False), (100, 100, 10, True, False),
    (100, 10, 100, False, True), (1000, 100, 100, True, False),
)


def _macs(matmuls) -> int:
    return sum(m * k * n for m, k, n, _, _ in matmuls)


# Multiply-accumulates of the matmuls/convolutions one training step needs (forward, weight
# gradients, and input gradients of every layer but the first); FLOPs = 2 x MACs.
_MNIST_MACS = _macs(_MNIST_MATMULS)
_LENET_MACS_PER_IMAGE = (2 * (28 * 28 * 6 * 75 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84
                              + 84 * 10)
                         + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10)
_TWO_LAYER_MACS = _macs(_TWO_LAYER_MATMULS)

_LENET_NOTE = ("Convolutions run as matmuls (`jaxnets.layers.conv2d_banded`), where PyTorch's "
               "oneDNN convolves directly")
_LENET_B4_NOTE = (
    "Profiled on one thread (not measured by this script): a batch-4 step is ~90 XLA ops; the "
    "largest are conv1's weight-gradient matmul (~90 us, a transposed-operand dot XLA runs "
    "outside YNN), conv2's input gradient fused with the pool and ReLU gradients (~85 us), "
    "conv1's forward matmul (~50 us) and strip build (~55 us), then many 5-30 us ones. Measured "
    "no faster: fused optimizer updates (optax.flatten), a one-hot cross-entropy, slice- or "
    "mask-based pool gradients, conv1 as patches, conv2 as banded, XLA's convolution for "
    "conv2's input gradient, XLA flags (incl. oneDNN, XNNPACK off, Eigen single-threaded), "
    "conv2's col2im split from the pool gradient by a custom VJP (XLA fuses it back), fc1's "
    "input gradient as a multiply-reduce; conv1's strips in channel-first layout were 5% faster "
    "on one thread but slower on two and at batch 128. YNNPACK's convolution path "
    "(--xla_cpu_experimental_ynn_fusion_type=individual_convolution) takes no f32 convolution "
    "in this jaxlib")


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    title: str
    steps: int                 # the tutorial's number of steps
    quick_steps: int           # --quick
    examples_per_step: int
    flop_per_step: float | None  # dense workloads only
    target: float | None       # the target speedup (steady state), if any
    data: str                  # which data files it reads
    matmuls: tuple = ()        # one step's matmul shapes (dense workloads), see _MNIST_MATMULS
    miss_note: str = ""        # what is known about it, for RESULTS.md when it misses its target


WORKLOADS = {w.name: w for w in [
    Workload("mnist_sgd", "seed 000 MNIST MLP, SGD as written (grad never zeroed), "
             "2000 steps x 100", 2000, 400, 100, 2.0 * _MNIST_MACS, 3.0, "mnist", _MNIST_MATMULS),
    Workload("mnist_adam", "seed 000 MNIST MLP, Adam, 2000 steps x 100", 2000, 400, 100,
             2.0 * _MNIST_MACS, 3.0, "mnist", _MNIST_MATMULS),
    Workload("lenet_b4", "seed 001 CIFAR-10 LeNet, SGD momentum, batch 4, 2 epochs "
             "(25,000 steps)", 25000, 2500, 4, 2.0 * 4 * _LENET_MACS_PER_IMAGE, 3.0, "cifar",
             miss_note=_LENET_B4_NOTE),
    Workload("lenet_b128", "seed 001 CIFAR-10 LeNet, batch 128, 2 epochs (782 steps)", 782, 80,
             128, 2.0 * 128 * _LENET_MACS_PER_IMAGE, 1.0, "cifar", miss_note=_LENET_NOTE),
    Workload("thermometer", "seed 003 thermometer, hand-derived gradient, 5000 epochs "
             "(t_un = 0.1 t_u)", 5000, 5000, 11, None, None, "none"),
    Workload("thermometer_sgd", "seed 003 thermometer, optimizer SGD, 5000 epochs", 5000, 5000,
             11, None, None, "none"),
    Workload("two_layer", "seed 002 two-layer net (autograd version), 20 epochs x 100", 20, 20,
             100, 2.0 * _TWO_LAYER_MACS, None, "two_layer", _TWO_LAYER_MATMULS),
    Workload("two_layer_long", "seed 002 two-layer net, same step, 2000 epochs (throughput)",
             2000, 400, 100, 2.0 * _TWO_LAYER_MACS, None, "two_layer", _TWO_LAYER_MATMULS),
]}


# --- data ---------------------------------------------------------------------------------------

def write_data(directory: str, names: set[str], seed: int = 0) -> str:
    """Write the data sets `names` needs into `directory` (once); returns a description."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    notes = []
    if "mnist" in names:
        source = "random uint8 images of MNIST's shape"
        from jaxnets import data
        from jaxnets.errors import JaxnetsError

        try:
            ds = data.load("fashion_mnist", "train", download=False)
            images, labels = np.asarray(ds.images), np.asarray(ds.labels, np.int32)
            source = f"Fashion-MNIST from {ds.source}"
        except JaxnetsError:  # not installed: timing only needs the shape
            images = rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8)
            labels = rng.integers(0, 10, 60000).astype(np.int32)
        np.save(os.path.join(directory, "mnist_images.npy"), images)
        np.save(os.path.join(directory, "mnist_labels.npy"), labels)
        notes.append(f"MNIST workloads: {source}")
    if "cifar" in names:
        np.save(os.path.join(directory, "cifar_images.npy"),
                rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8))
        np.save(os.path.join(directory, "cifar_labels.npy"),
                rng.integers(0, 10, 50000).astype(np.int32))
        notes.append("LeNet workloads: random uint8 images of CIFAR-10's shape (50,000 x 32x32x3)")
    if "two_layer" in names:
        for key, shape in (("x", (100, 1000)), ("y", (100, 10)), ("w1", (1000, 100)),
                           ("w2", (100, 10))):
            np.save(os.path.join(directory, f"two_layer_{key}.npy"),
                    rng.standard_normal(shape, dtype=np.float32))
    return "; ".join(notes)


def _load(directory: str, name: str) -> np.ndarray:
    return np.load(os.path.join(directory, f"{name}.npy"), allow_pickle=False)


# --- PyTorch side -------------------------------------------------------------------------------

def torch_prepare(name: str, steps: int, directory: str) -> Callable:
    from reference import seeds

    if name in ("mnist_sgd", "mnist_adam"):
        return seeds.timed_seed000(_load(directory, "mnist_images"), _load(directory, "mnist_labels"), steps,
                       name.split("_")[1])
    if name in ("lenet_b4", "lenet_b128"):
        images = _load(directory, "cifar_images")
        # ToTensor (uint8 HWC -> float CHW in [0, 1]) + Normalize(0.5, 0.5), done once up front.
        nchw = ((images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0) - 0.5) / 0.5
        return seeds.timed_blitz(nchw, _load(directory, "cifar_labels"), steps,
                         WORKLOADS[name].examples_per_step)
    if name in ("thermometer", "thermometer_sgd"):
        from jaxnets import thermometer as thermo  # (the book's 11 points; numpy lists)

        timed = seeds.timed_thermometer if name == "thermometer" else seeds.timed_thermometer_sgd
        return timed(thermo.T_U, thermo.T_C, steps)
    if name in ("two_layer", "two_layer_long"):
        return seeds.timed_two_layer(*(_load(directory, f"two_layer_{k}") for k in ("x", "y", "w1", "w2")),
                           epochs=steps)
    raise KeyError(name)


def torch_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best sgemm rate of torch (MKL/oneDNN) on n x n float32 matrices."""
    return 2 * n ** 3 / best_seconds(sgemm(n), repeats) / 1e9


def torch_matmul_floor(matmuls_, steps: int, repeats: int = 3) -> float:
    """Best seconds for torch.mm (MKL/oneDNN) to do `matmuls_` (one step's shapes) `steps` times,
    nothing else (`matmuls`)."""
    return best_seconds(matmuls(matmuls_, steps), repeats)


def sgemm(n: int = 2048) -> Callable[[], object]:
    """One n x n float32 torch matmul (MKL/oneDNN) as a callable, for the peak-rate timing."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    return lambda: a @ b


def matmuls(shapes, steps: int) -> Callable[[], None]:
    """A callable doing torch.mm over `shapes` (one step's (m, k, n, transpose_a, transpose_b),
    see benchmarks.workloads) `steps` times, into preallocated outputs, nothing else (the Python
    loop's few microseconds per call included, as in the tutorial's eager step)."""
    import torch

    ops = []
    for m, k, n, ta, tb in shapes:
        a = torch.randn(k, m).t() if ta else torch.randn(m, k)
        b = torch.randn(n, k).t() if tb else torch.randn(k, n)
        ops.append((a, b, torch.empty(m, n)))

    def once():
        for _ in range(steps):
            for a, b, out in ops:
                torch.mm(a, b, out=out)

    return once


# --- jaxnets side -------------------------------------------------------------------------------

def _fit_runner(make_state: Callable, run_steps, data, sampler, steps: int, key,
                chunk_size: int) -> Callable:
    """prepare() for a `train.fit` run (experiments that build their own loop): a fresh copy of
    one initial state each time. Copies, not new states: the optimizer is a static field of
    TrainState, and a new optax object per run would make every run compile again."""
    import jax
    import jax.numpy as jnp

    from jaxnets import train

    initial = make_state()

    def prepare():
        state = jax.tree.map(jnp.copy, initial)

        def run():
            return train.fit(state, run_steps, data, sampler, steps, key, chunk_size=chunk_size,
                             progress=False)

        return run

    return prepare


def _driver_runner(initial, train_step, images, labels, sampler, steps: int, keys,
                   chunk_size: int, unroll: int = 1) -> Callable:
    """prepare() for `train.run_training`, the driver the training experiments call (without
    checkpoints): a fresh copy of one initial state each time, the data on the device once, and
    the same train_step object, so the compiled loop is reused across runs."""
    import jax
    import jax.numpy as jnp

    from jaxnets import data, train

    device_data = data.to_device({"image": images, "label": labels})

    def prepare():
        state = jax.tree.map(jnp.copy, initial)

        def run():
            return train.run_training(state, train_step, device_data, sampler, steps, keys,
                                      TrainOptions(out=os.curdir, progress=False),
                                      chunk_size=chunk_size, unroll=unroll)

        return run

    return prepare


def jax_prepare(name: str, steps: int, directory: str, devices: int = 1) -> Callable:
    import jax
    import jax.numpy as jnp

    from jaxnets import data, train

    if name in ("mnist_sgd", "mnist_adam"):
        # experiments.mnist.run's training path.
        from experiments import mnist

        config = mnist.Config(optimizer=name.split("_")[1], steps=steps)
        images, labels = _load(directory, "mnist_images"), _load(directory, "mnist_labels")
        begin = mnist.start(config, data.Dataset("mnist", "train", images, labels, (), directory))
        return _driver_runner(begin.state, mnist.train_step(begin.state.apply_fn), images,
                              labels, begin.sampler, steps, begin.keys, min(steps, 1000),
                              mnist.UNROLL)
    if name in ("lenet_b4", "lenet_b128"):
        # experiments.cifar10.run's training path (LeNet, PyTorch's SGD, in-graph Normalize).
        from experiments import cifar10

        config = cifar10.Config(batch_size=WORKLOADS[name].examples_per_step)
        images, labels = _load(directory, "cifar_images"), _load(directory, "cifar_labels")
        keys = train.split_keys(config.seed)
        state = cifar10.init_state(config, keys.init)
        sampler = data.EpochSampler(len(images), config.batch_size, keys.data)
        return _driver_runner(state, cifar10.train_step(state.apply_fn), images, labels, sampler,
                              steps, keys, config.print_every)
    if name == "thermometer":
        from experiments import thermometer
        from jaxnets import thermometer as thermo

        config = thermometer.Config()
        t_c, t_u = thermo.data()
        t_un = 0.1 * t_u
        p0 = jnp.array([1.0, 0.0])

        def prepare():
            def run():
                return jax.block_until_ready(
                    thermo.training_loop(steps, config.norm_lr, p0, t_un, t_c))
            return run

        return prepare
    if name == "thermometer_sgd":
        # jaxnets.thermometer.fit_optax, with its TrainState made once outside the timed run.
        import optax

        from experiments import thermometer
        from jaxnets import thermometer as thermo

        config = thermometer.Config()
        t_c, t_u = thermo.data()
        inputs = thermo.full_batches(steps, 0.1 * t_u, t_c)
        initial = train.TrainState.create(apply_fn=thermo.model, params=jnp.array([1.0, 0.0]),
                                          tx=optax.sgd(config.norm_lr))

        def prepare():
            state = jax.tree.map(jnp.copy, initial)

            def run():
                return jax.block_until_ready(thermo.run_epochs(state, *inputs))
            return run

        return prepare
    if name in ("two_layer", "two_layer_long"):
        # experiments.two_layer.train_version('autograd', ...).
        from experiments import two_layer

        config = two_layer.Config(epochs=steps)
        start = {k: jnp.asarray(_load(directory, f"two_layer_{k}")) for k in ("x", "y", "w1", "w2")}
        key = jax.random.key(config.seed)
        state = two_layer.initial_state("autograd", config, start, key)
        run_steps = two_layer.make_run_steps("autograd", state.apply_fn)
        arrays = {"x": start["x"], "y": start["y"]}
        sampler = two_layer.full_batch_sampler(config)
        return _fit_runner(lambda: two_layer.initial_state("autograd", config, start, key), run_steps,
                           arrays, sampler, steps, key, steps)
    raise KeyError(name)


def jax_matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best XLA:CPU sgemm rate on n x n float32 matrices."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n))
    b = jax.random.normal(jax.random.key(1), (n, n))
    f = jax.jit(jnp.matmul)
    return 2 * n ** 3 / best_seconds(lambda: f(a, b).block_until_ready(), repeats) / 1e9


def jax_matmul_floor(matmuls, steps: int, repeats: int = 3) -> float:
    """Best seconds for XLA:CPU to do `matmuls` (one step's shapes) `steps` times in one jitted
    loop, nothing else: the A operand cycles through 8 different arrays (indexed by the loop
    counter, so no product is loop-invariant) and each product overwrites its loop-carried
    output."""
    import jax
    import jax.numpy as jnp

    keys = iter(jax.random.split(jax.random.key(0), 2 * len(matmuls)))
    pools = [jax.random.normal(next(keys), (8, k, m) if ta else (8, m, k)) for m, k, n, ta, _
             in matmuls]
    bs = [jax.random.normal(next(keys), (n, k) if tb else (k, n)) for m, k, n, _, tb in matmuls]
    flags = [(ta, tb) for _, _, _, ta, tb in matmuls]

    @jax.jit
    def loop(pools, bs):
        def body(i, outs):
            new = []
            for pool, b, (ta, tb) in zip(pools, bs, flags):
                a = jax.lax.dynamic_index_in_dim(pool, i % 8, keepdims=False)
                new.append((a.T if ta else a) @ (b.T if tb else b))
            return tuple(new)
        outs = tuple(jnp.zeros((m, n)) for m, _, n, _, _ in matmuls)
        return jax.lax.fori_loop(0, steps, body, outs)

    return best_seconds(lambda: jax.block_until_ready(loop(pools, bs)), repeats)

"""The tutorials' own PyTorch training code (seeds 000-003), as timed by the benchmarks.

Each function is the seed's loop with its data passed in instead of downloaded; each returns a
callable that runs the whole loop (model built outside it, so only training is timed). What
differs from the seeds, and why:
- seed 000 draws batch indices with `np.random.randint` (global state); here
  `np.random.default_rng(seed).integers`, the same cost without global state.
- seed 001 loads CIFAR-10 through torchvision (PIL images, ToTensor + Normalize in 2 worker
  processes). There is no CPU torchvision here, so the images arrive already normalized, as a
  TensorDataset with `num_workers=0`: that leaves out the per-image transform work, so it can
  only make PyTorch faster than the tutorial's own pipeline.
- the seeds' `print` calls still format their strings (and so still call `.item()`/`float()`),
  but write them to a null sink instead of the terminal.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn, optim

from benchmarks.measure import best_seconds
from experiments import pytorch_reference as ref

_SINK = io.StringIO()


def _print(*args) -> None:
    _SINK.write(" ".join(str(a) for a in args))
    _SINK.seek(0)
    _SINK.truncate()


# --- seed 000: MNIST with a 784-200-10 MLP --------------------------------------------------------

def mnist(images: np.ndarray, labels: np.ndarray, steps: int, optimizer: str,
          batch_size: int = 100, lr: float = 1e-3, seed: int = 0):
    """Seed 000's loop (`experiments.pytorch_reference.seed000_loop`): SGD as written (`.grad`
    never zeroed) or its Adam version, batch indices drawn each step as the seed does."""
    train_data = torch.from_numpy(images.reshape(len(images), 28, 28))   # uint8, like .train_data
    train_labels = torch.from_numpy(labels.astype(np.int64))

    def prepare():
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        w1 = torch.randn(784, 200, requires_grad=True)
        w2 = torch.randn(200, 10, requires_grad=True)

        def run():
            return ref.seed000_loop(
                train_data, train_labels, w1, w2, steps,
                lambda i: rng.integers(0, train_data.shape[0], size=batch_size), optimizer, lr)

        return run

    return prepare


# --- seed 001: the blitz CIFAR-10 classifier --------------------------------------------------------

Net = ref.tutorial_net  # seed 001's CIFAR-10 `Net`, verbatim (experiments.pytorch_reference)


def cifar10(images_nchw: np.ndarray, labels: np.ndarray, steps: int, batch_size: int,
            epochs: int = 2, seed: int = 0):
    """Seed 001's training loop (stops after `steps` mini-batches; 2 epochs when steps covers
    them). `images_nchw` are float32, already ToTensor + Normalize'd."""
    trainset = torch.utils.data.TensorDataset(torch.from_numpy(images_nchw),
                                              torch.from_numpy(labels.astype(np.int64)))

    def prepare():
        torch.manual_seed(seed)
        trainloader = torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True,
                                                  num_workers=0)
        net = Net()
        criterion = nn.CrossEntropyLoss()
        optimizer = optim.SGD(net.parameters(), lr=0.001, momentum=0.9)

        def run():
            done = 0
            for epoch in range(epochs):
                running_loss = 0.0
                for i, data in enumerate(trainloader, 0):
                    if done == steps:
                        return
                    inputs, labels = data
                    optimizer.zero_grad()
                    outputs = net(inputs)
                    loss = criterion(outputs, labels)
                    loss.backward()
                    optimizer.step()
                    running_loss += loss.item()
                    if i % 2000 == 1999:
                        _print(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 2000:.3f}")
                        running_loss = 0.0
                    done += 1

        return run

    return prepare


# --- seed 002: the two-layer network (the autograd version) ---------------------------------------

def two_layer(x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray, epochs: int,
              learning_rate: float = 1e-6):
    """Seed 002's Variable/backward version (`w.data -= lr * w.grad.data; w.grad.data.zero_()`)."""
    from torch.autograd import Variable

    def prepare():
        xv = Variable(torch.from_numpy(x), requires_grad=False)
        yv = Variable(torch.from_numpy(y), requires_grad=False)
        w1v, w2v = torch.from_numpy(w1.copy()), torch.from_numpy(w2.copy())

        def report(epoch, loss):
            _print("Epoch:{},Loss:{:.4f}".format(epoch, loss))  # noqa: UP032 (seed)

        def run():
            ref.two_layer_autograd(xv, yv, w1v, w2v, epochs, learning_rate, report)

        return run

    return prepare


# --- seed 003: the thermometer ----------------------------------------------------------------------

T_C = [0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0]
T_U = [35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4]


# Seed 003's functions, verbatim, from the one PyTorch reference (the optimizer version below).
model, loss_fn = ref.thermo_model, ref.thermo_loss_fn


def thermometer(n_epochs: int, learning_rate: float = 1e-2):
    """The book's `training_loop` with the hand-derived gradient
    (`experiments.pytorch_reference.thermometer_training_loop`), on t_un = 0.1 * t_u (its
    5000-epoch run), printing every epoch as the book does."""
    t_c = torch.tensor(T_C)
    t_un = 0.1 * torch.tensor(T_U)

    def report(epoch, params, loss, grad):
        _print("Epoch %d, Loss %f" % (epoch, float(loss)))  # noqa: UP031 (the book)

    def prepare():
        def run():
            return ref.thermometer_training_loop(n_epochs, learning_rate,
                                                 torch.tensor([1.0, 0.0]), t_un, t_c, report)

        return run

    return prepare


def thermometer_sgd(n_epochs: int, learning_rate: float = 1e-2):
    """The book's optimizer version: `optim.SGD([params])`, zero_grad/backward/step, printing
    every 500 epochs."""
    t_c = torch.tensor(T_C)
    t_un = 0.1 * torch.tensor(T_U)

    def prepare():
        params = torch.tensor([1.0, 0.0], requires_grad=True)
        optimizer = optim.SGD([params], lr=learning_rate)

        def run():
            for epoch in range(1, n_epochs + 1):
                t_p = model(t_un, *params)
                loss = loss_fn(t_p, t_c)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if epoch % 500 == 0:
                    _print("Epoch %d, Loss %f" % (epoch, float(loss)))  # noqa: UP031 (the book)
            return params

        return run

    return prepare


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best sgemm rate of torch (MKL/oneDNN) on n x n float32 matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, repeats) / 1e9


def matmul_floor(matmuls, steps: int, repeats: int = 3) -> float:
    """Best seconds for torch.mm (MKL/oneDNN) to do `matmuls` (one step's shapes, see
    benchmarks.workloads) `steps` times, into preallocated outputs, nothing else (the Python
    loop's few microseconds per call included, as in the tutorial's eager step)."""
    ops = []
    for m, k, n, ta, tb in matmuls:
        a = torch.randn(k, m).t() if ta else torch.randn(m, k)
        b = torch.randn(n, k).t() if tb else torch.randn(k, n)
        ops.append((a, b, torch.empty(m, n)))

    def once():
        for _ in range(steps):
            for a, b, out in ops:
                torch.mm(a, b, out=out)

    return best_seconds(once, repeats)

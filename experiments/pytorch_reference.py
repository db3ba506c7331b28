"""The tutorials' own PyTorch code, as functions that start from given weights and batch order.

Parity tests, the reproduction report and the benchmarks run these next to jaxnets: the loops
are the seeds' code (comments mark the only changes: injected initial weights and batch indices,
so both frameworks see the same start and the same data). Needs torch (the `dev` extra).
"""

from __future__ import annotations

import numpy as np


def seed000_loop(train_data, train_labels, w1, w2, steps: int, batch_indices, optimizer: str = "sgd",
                 lr: float = 1e-3) -> list:
    """Seed 000's training loop, as written, on torch tensors: `train_data` uint8 [N, 28, 28],
    `train_labels` int64 [N], `w1`/`w2` leaf tensors with requires_grad. `batch_indices(i)`
    gives step i's indices (the seed calls `np.random.randint` there). Returns the seed's `res`:
    one loss tensor per step. The benchmark times this; the parity tests call `seed000_train`."""
    import torch

    def nn(x, w1, w2):
        l1 = x @ w1
        l1 = torch.relu(l1)
        l2 = l1 @ w2
        return l2

    lossfn = torch.nn.CrossEntropyLoss()
    optim = torch.optim.Adam(params=[w1, w2], lr=lr) if optimizer == "adam" else None
    res = []
    for i in range(steps):
        rid = batch_indices(i)
        x = train_data[rid].float().flatten(start_dim=1)
        x /= x.max()
        pred = nn(x, w1, w2)
        target = train_labels[rid]
        loss = lossfn(pred, target)
        loss.backward()
        if optim is None:
            with torch.no_grad():  # the seed never zeroes .grad: it accumulates
                w1 -= lr * w1.grad
                w2 -= lr * w2.grad
        else:
            optim.step()
            optim.zero_grad()
        res.append(loss)
    return res


def seed000_train(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, w1_init: np.ndarray,
                  w2_init: np.ndarray, optimizer: str = "sgd", lr: float = 1e-3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`seed000_loop` from given weights (changed from the seed's torch.randn) and given batch
    indices idx[steps, B] (changed from np.random). Returns (losses, w1, w2) as numpy."""
    import torch

    train_data = torch.from_numpy(np.array(images[..., 0]))  # a writable copy for torch
    train_labels = torch.from_numpy(np.array(labels).astype(np.int64))
    w1 = torch.tensor(w1_init, requires_grad=True)
    w2 = torch.tensor(w2_init, requires_grad=True)
    res = seed000_loop(train_data, train_labels, w1, w2, len(idx),
                       lambda i: torch.from_numpy(idx[i].astype(np.int64)), optimizer, lr)
    return (np.array([loss.item() for loss in res]), w1.detach().numpy(),
            w2.detach().numpy())


def seed000_accuracy(w1: np.ndarray, w2: np.ndarray, images: np.ndarray, labels: np.ndarray,
                     batch_size: int = 1000) -> float:
    """Test accuracy of seed 000's net, each batch divided by its max as jaxnets evaluates."""
    x = images.reshape(len(images), -1).astype(np.float32)
    correct = 0
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size] / x[s:s + batch_size].max()
        correct += int(((np.maximum(xb @ w1, 0) @ w2).argmax(1) == labels[s:s + batch_size]).sum())
    return correct / len(x)


def two_layer_autograd(x, y, w1, w2, epochs: int = 20, learning_rate: float = 1e-6,
                       report=None) -> list[float]:
    """Seed 002's Variable/backward two-layer net (Variable is a no-op wrapper in modern torch)
    from torch tensors x, y, w1, w2 (w1, w2 are cloned). `report(epoch, loss)` is called where
    the seed prints. Returns the per-epoch losses."""
    w1 = w1.clone().requires_grad_(True)
    w2 = w2.clone().requires_grad_(True)
    out = []
    for epoch in range(epochs):
        y_pred = x.mm(w1).clamp(min=0).mm(w2)
        loss = (y_pred - y).pow(2).sum()
        if report is not None:
            report(epoch, loss)
        out.append(loss.item())
        loss.backward()
        w1.data -= learning_rate * w1.grad.data
        w2.data -= learning_rate * w2.grad.data
        w1.grad.data.zero_()
        w2.grad.data.zero_()
    return out


# Seed 003's functions, verbatim; they take torch tensors.
def thermo_model(t_u, w, b):
    return w * t_u + b


def thermo_loss_fn(t_p, t_c):
    squared_diffs = (t_p - t_c) ** 2
    return squared_diffs.mean()


def thermo_dloss_fn(t_p, t_c):
    dsq_diffs = 2 * (t_p - t_c) / t_p.size(0)
    return dsq_diffs


def thermo_dmodel_dw(t_u, w, b):
    return t_u


def thermo_dmodel_db(t_u, w, b):
    return 1.0


def thermo_grad_fn(t_u, t_c, t_p, w, b):
    """The book's In[14], built from its hand-derived dloss_fn, dmodel_dw and dmodel_db."""
    import torch

    dloss_dtp = thermo_dloss_fn(t_p, t_c)
    dloss_dw = dloss_dtp * thermo_dmodel_dw(t_u, w, b)
    dloss_db = dloss_dtp * thermo_dmodel_db(t_u, w, b)
    return torch.stack([dloss_dw.sum(), dloss_db.sum()])


def thermometer_training_loop(n_epochs: int, learning_rate: float, params, t_u, t_c,
                              on_epoch=None):
    """Seed 003's training_loop with its hand-derived grad_fn (the book's intended indentation),
    on torch tensors. `on_epoch(epoch, params, loss, grad)` is called where the book prints.
    Returns the final params. The benchmark times this; tests use `thermometer_loop`."""
    for epoch in range(1, n_epochs + 1):
        w, b = params
        t_p = thermo_model(t_u, w, b)
        loss = thermo_loss_fn(t_p, t_c)
        grad = thermo_grad_fn(t_u, t_c, t_p, w, b)
        params = params - learning_rate * grad
        if on_epoch is not None:
            on_epoch(epoch, params, loss, grad)
    return params


def thermometer_loop(n_epochs: int, learning_rate: float, params, t_u, t_c):
    """`thermometer_training_loop` on anything tensor-like, recording every epoch.

    Returns torch tensors (params, losses[n], params after each epoch [n, 2], grads [n, 2]).
    """
    import torch

    t_u, t_c, params = torch.as_tensor(t_u), torch.as_tensor(t_c), torch.as_tensor(params)
    losses, history, grads = [], [], []

    def record(epoch, params, loss, grad):
        losses.append(loss)
        history.append(params)
        grads.append(grad)

    params = thermometer_training_loop(n_epochs, learning_rate, params, t_u, t_c, record)
    return params, torch.stack(losses), torch.stack(history), torch.stack(grads)


def tutorial_net(in_channels: int = 3):
    """A fresh instance of the blitz tutorial's `Net` (seed 001), verbatim but for in_channels
    (3 for CIFAR-10; 1 for the neural-network section's 32x32 LeNet)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, 6, 5)
            self.pool = nn.MaxPool2d(2, 2)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, x):
            x = self.pool(F.relu(self.conv1(x)))
            x = self.pool(F.relu(self.conv2(x)))
            x = torch.flatten(x, 1)  # flatten all dimensions except batch
            x = F.relu(self.fc1(x))
            x = F.relu(self.fc2(x))
            x = self.fc3(x)
            return x

    return Net()

"""The tutorials' own PyTorch code, as functions that start from given weights and batch order.

Parity tests, the reproduction report and the benchmarks run these next to jaxnets: the loops
are the seeds' code (comments mark the only changes: injected initial weights and batch indices,
so both frameworks see the same start and the same data). Needs torch (the `dev` extra).
"""

from __future__ import annotations

import numpy as np


def seed000_train(images: np.ndarray, labels: np.ndarray, idx: np.ndarray, w1_init: np.ndarray,
                  w2_init: np.ndarray, optimizer: str = "sgd", lr: float = 1e-3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seed 000's MNIST loop (SGD without zero_grad, or Adam). Returns (losses, w1, w2)."""
    import torch

    def nn(x, w1, w2):
        l1 = x @ w1
        l1 = torch.relu(l1)
        l2 = l1 @ w2
        return l2

    train_data = torch.from_numpy(np.ascontiguousarray(images[..., 0]))
    train_labels = torch.from_numpy(np.array(labels))
    w1 = torch.tensor(w1_init, requires_grad=True)  # changed: given weights, not torch.randn
    w2 = torch.tensor(w2_init, requires_grad=True)
    lossfn = torch.nn.CrossEntropyLoss()
    optim = torch.optim.Adam(params=[w1, w2], lr=lr) if optimizer == "adam" else None
    res = []
    for i in range(len(idx)):
        rid = torch.from_numpy(idx[i].astype(np.int64))  # changed: given indices, not np.random
        x = train_data[rid].float().flatten(start_dim=1)
        x /= x.max()
        pred = nn(x, w1, w2)
        target = train_labels[rid].long()
        loss = lossfn(pred, target)
        loss.backward()
        if optim is None:
            with torch.no_grad():  # the seed never zeroes .grad: it accumulates
                w1 -= lr * w1.grad
                w2 -= lr * w2.grad
        else:
            optim.step()
            optim.zero_grad()
        res.append(loss.item())
    return np.array(res), w1.detach().numpy(), w2.detach().numpy()


def seed000_accuracy(w1: np.ndarray, w2: np.ndarray, images: np.ndarray, labels: np.ndarray,
                     batch_size: int = 1000) -> float:
    """Test accuracy of seed 000's net, each batch divided by its max as jaxnets evaluates."""
    x = images.reshape(len(images), -1).astype(np.float32)
    correct = 0
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size] / x[s:s + batch_size].max()
        correct += int(((np.maximum(xb @ w1, 0) @ w2).argmax(1) == labels[s:s + batch_size]).sum())
    return correct / len(x)


def thermometer_loop(n_epochs: int, learning_rate: float, params, t_u, t_c
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Seed 003's training_loop with its hand-derived grad_fn. Returns (params, losses)."""
    import torch

    t_u, t_c = torch.tensor(t_u), torch.tensor(t_c)
    params = torch.tensor(params)

    def model(t_u, w, b):
        return w * t_u + b

    def loss_fn(t_p, t_c):
        squared_diffs = (t_p - t_c) ** 2
        return squared_diffs.mean()

    def grad_fn(t_u, t_c, t_p, w, b):
        dloss_dtp = 2 * (t_p - t_c) / t_p.size(0)
        return torch.stack([(dloss_dtp * t_u).sum(), (dloss_dtp * 1.0).sum()])

    losses = []
    for _ in range(1, n_epochs + 1):
        w, b = params
        t_p = model(t_u, w, b)
        loss = loss_fn(t_p, t_c)
        grad = grad_fn(t_u, t_c, t_p, w, b)
        params = params - learning_rate * grad
        losses.append(float(loss))
    return params.numpy(), np.array(losses)

"""The tutorials' own PyTorch code, as functions that start from given weights and batch order.

Parity tests, the reproduction report (`--seeds`) and the benchmarks run these next to jaxnets:
the loops are the seeds' code (comments mark the only changes: injected initial weights and
batch indices, so both frameworks see the same start and the same data). It imports torch (the
`dev` extra) and nothing of jaxnets: import it only where torch is wanted.

What the benchmarks' versions (`timed_*`, each returning a `prepare() -> run` pair so only
training is timed) change from the seeds, and why:
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

import gzip
import io
import os
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim

FASHION = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist


def read_fashion(name: str, folder: str = FASHION) -> np.ndarray:
    """Fashion-MNIST's gzipped IDX file `name` ('train-images', 't10k-labels', ...) as numpy:
    what the scripts read where the seeds use torchvision's datasets (not installed here)."""
    ndim = 3 if "images" in name else 1
    with gzip.open(os.path.join(folder, f"{name}-idx{ndim}-ubyte.gz")) as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def seed000_loop(train_data, train_labels, w1, w2, steps: int, batch_indices, optimizer: str = "sgd",
                 lr: float = 1e-3) -> list:
    """Seed 000's training loop, as written, on torch tensors: `train_data` uint8 [N, 28, 28],
    `train_labels` int64 [N], `w1`/`w2` leaf tensors with requires_grad. `batch_indices(i)`
    gives step i's indices (the seed calls `np.random.randint` there). Returns the seed's `res`:
    one loss tensor per step. The benchmark times this; the parity tests call `seed000_train`."""
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


def seed000_seeded(images: np.ndarray, labels: np.ndarray, test_images: np.ndarray,
                   test_labels: np.ndarray, optimizer: str, seed: int, steps: int,
                   batch_size: int = 100, lr: float = 1e-3) -> float:
    """Seed 000 as written: torch.randn weights and np.random.randint batches, both seeded with
    `seed` (which the seed leaves unseeded), then `seed000_loop`. Returns the test accuracy
    (`seed000_accuracy`)."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    n = len(images)
    w1 = torch.randn(784, 200, requires_grad=True)
    w2 = torch.randn(200, 10, requires_grad=True)
    train_data = torch.from_numpy(np.array(images[..., 0]))
    train_labels = torch.from_numpy(np.asarray(labels).astype(np.int64))
    seed000_loop(train_data, train_labels, w1, w2, steps,
                 lambda i: torch.from_numpy(rng.randint(0, n, size=batch_size)), optimizer, lr)
    return seed000_accuracy(w1.detach().numpy(), w2.detach().numpy(), test_images, test_labels)


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
    t_u, t_c, params = torch.as_tensor(t_u), torch.as_tensor(t_c), torch.as_tensor(params)
    losses, history, grads = [], [], []

    def record(epoch, params, loss, grad):
        losses.append(loss)
        history.append(params)
        grads.append(grad)

    params = thermometer_training_loop(n_epochs, learning_rate, params, t_u, t_c, record)
    return params, torch.stack(losses), torch.stack(history), torch.stack(grads)


def neural_networks_net(in_channels: int = 1):
    """A fresh instance of the `Net` of seed 001's neural-network section (LeNet on 1x32x32,
    pooling as F.max_pool2d calls), verbatim but for in_channels and its comments."""

    class Net(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, 6, 5)
            self.conv2 = nn.Conv2d(6, 16, 5)
            self.fc1 = nn.Linear(16 * 5 * 5, 120)
            self.fc2 = nn.Linear(120, 84)
            self.fc3 = nn.Linear(84, 10)

        def forward(self, input):
            c1 = F.relu(self.conv1(input))
            s2 = F.max_pool2d(c1, (2, 2))
            c3 = F.relu(self.conv2(s2))
            s4 = F.max_pool2d(c3, 2)
            s4 = torch.flatten(s4, 1)
            f5 = F.relu(self.fc1(s4))
            f6 = F.relu(self.fc2(f5))
            output = self.fc3(f6)
            return output

    return Net()


def neural_networks_walkthrough(net, input, v, target, learning_rate: float = 0.01) -> dict:
    """Seed 001's neural-network section on `net`, in its order: forward, `out.backward(v)`
    (the seed draws v = torch.randn(1, 10)), MSELoss against target, zero_grad + backward, one
    hand-written `f.data.sub_(f.grad.data * learning_rate)`, then one `optim.SGD` step. Returns
    what it prints (numpy): structure, output, conv1 bias grads, loss, every grad, and the loss
    before/after the SGD step."""
    ref = {"structure": str(net)}
    net.zero_grad()
    out = net(input)
    ref["output"] = out.detach().numpy()[0]
    out.backward(v)
    ref["vjp_conv1_bias_grad"] = net.conv1.bias.grad.numpy().copy()
    criterion = nn.MSELoss()
    loss = criterion(net(input), target)
    ref["mse_loss"] = loss.item()
    net.zero_grad()
    ref["conv1_bias_grad_before"] = net.conv1.bias.grad  # None since PyTorch 2.0
    loss.backward()
    ref["grads"] = {k: p.grad.numpy().copy() for k, p in net.named_parameters()}
    for f in net.parameters():
        f.data.sub_(f.grad.data * learning_rate)
    optimizer = optim.SGD(net.parameters(), lr=0.01)
    optimizer.zero_grad()
    loss = criterion(net(input), target)
    ref["optimizer_step_loss_before"] = loss.item()
    loss.backward()
    optimizer.step()
    ref["optimizer_step_loss_after"] = criterion(net(input), target).item()
    return ref


def tutorial_net(in_channels: int = 3):
    """A fresh instance of the blitz tutorial's `Net` (seed 001), verbatim but for in_channels
    (3 for CIFAR-10; 1 for the neural-network section's 32x32 LeNet)."""
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


class LinearClassifier(nn.Module):
    """Seed 004's model, verbatim (its comments shortened)."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, num_classes)  # fc1: first fully-connected layer

    def forward(self, x):
        out = x.reshape(x.size(0), -1)
        out = self.fc1(out)
        return out


class ResNetBasicBlock(nn.Module):
    """torchvision's BasicBlock (conv3x3-bn-relu-conv3x3-bn, plus identity or downsample)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18 typed out (no CPU torchvision here): same module names,
    same init, so its state_dict is torchvision's."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's ResNet.__init__
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [ResNetBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [ResNetBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18_seed_step(model, data, labels, lr: float = 1e-2, momentum: float = 0.9):
    """Seed 001's autograd-section step on `model` (its resnet18): forward, the summed loss,
    backward, one SGD step. Returns (prediction, loss) from before the step."""
    prediction = model(data)  # forward pass
    loss = (prediction - labels).sum()
    loss.backward()  # backward pass
    optim = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    optim.step()  # gradient descent
    return prediction, loss


def blitz_train(net, trainloader: Iterable, epochs: int = 2, lr: float = 0.001,
                momentum: float = 0.9, criterion=None, steps: int | None = None,
                report: Callable[[str], object] = print) -> list[float]:
    """The blitz tutorial's training loop (seed 001), verbatim but for its arguments.

    `trainloader` is iterated once per epoch (a DataLoader reshuffles; a list of (inputs,
    labels) replays). `criterion` defaults to the tutorial's nn.CrossEntropyLoss(); any
    `criterion(outputs, labels) -> loss` works (seed 002's summed squared error). Stops after
    `steps` mini-batches when given (the benchmarks' shortened runs). `report` gets the
    tutorial's every-2000-mini-batches line. Returns every step's `loss.item()`.
    """
    criterion = nn.CrossEntropyLoss() if criterion is None else criterion
    optimizer = optim.SGD(net.parameters(), lr=lr, momentum=momentum)
    losses = []
    for epoch in range(epochs):  # loop over the dataset multiple times
        running_loss = 0.0
        for i, data in enumerate(trainloader, 0):
            if len(losses) == steps:
                return losses
            # get the inputs; data is a list of [inputs, labels]
            inputs, labels = data

            # zero the parameter gradients
            optimizer.zero_grad()

            # forward + backward + optimize
            outputs = net(inputs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()

            # print statistics
            running_loss += loss.item()
            losses.append(loss.item())
            if i % 2000 == 1999:    # print every 2000 mini-batches
                report(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / 2000:.3f}")
                running_loss = 0.0
    return losses


def thermometer_optimizer_loop(n_epochs: int, optimizer, params, t_u, t_c, on_epoch=None):
    """Seed 003's optimizer version of training_loop: zero_grad / backward / step on `params`
    (a leaf tensor with requires_grad that `optimizer` updates). `on_epoch(epoch, params, loss)`
    is called where the book prints (every 500 epochs). Returns params."""
    for epoch in range(1, n_epochs + 1):
        t_p = thermo_model(t_u, *params)
        loss = thermo_loss_fn(t_p, t_c)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        if on_epoch is not None:
            on_epoch(epoch, params, loss)
    return params


def thermometer_optimizer_fit(optimizer_cls, lr: float, n_epochs: int, t_u, t_c
                              ) -> tuple[np.ndarray, np.ndarray]:
    """`thermometer_optimizer_loop` from params [1.0, 0.0] with `optimizer_cls([params], lr=lr)`
    (torch.optim.SGD or Adam). Returns (params, per-epoch float32 losses) as numpy."""
    params = torch.tensor([1.0, 0.0], requires_grad=True)
    losses = []
    thermometer_optimizer_loop(n_epochs, optimizer_cls([params], lr=lr), params,
                               torch.as_tensor(t_u), torch.as_tensor(t_c),
                               lambda epoch, params, loss: losses.append(loss.item()))
    return params.detach().numpy(), np.array(losses, np.float32)


# --- the benchmarks' runs: prepare() builds the model untimed, the returned run() trains ---------

_SINK = io.StringIO()


def _print(*args) -> None:
    """The seeds' print, formatted as they do, written to a null sink."""
    _SINK.write(" ".join(str(a) for a in args))
    _SINK.seek(0)
    _SINK.truncate()


def timed_seed000(images: np.ndarray, labels: np.ndarray, steps: int, optimizer: str,
                  batch_size: int = 100, lr: float = 1e-3, seed: int = 0):
    """Seed 000's loop (`seed000_loop`): SGD as written (`.grad` never zeroed) or its Adam
    version, batch indices drawn each step as the seed does."""
    train_data = torch.from_numpy(images.reshape(len(images), 28, 28))   # uint8, like .train_data
    train_labels = torch.from_numpy(labels.astype(np.int64))

    def prepare():
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        w1 = torch.randn(784, 200, requires_grad=True)
        w2 = torch.randn(200, 10, requires_grad=True)

        def run():
            return seed000_loop(
                train_data, train_labels, w1, w2, steps,
                lambda i: rng.integers(0, train_data.shape[0], size=batch_size), optimizer, lr)

        return run

    return prepare


def timed_blitz(images_nchw: np.ndarray, labels: np.ndarray, steps: int, batch_size: int,
                epochs: int = 2, seed: int = 0):
    """Seed 001's training loop (`blitz_train`, stopped after `steps` mini-batches; 2 epochs
    when steps covers them). `images_nchw` are float32, already ToTensor + Normalize'd."""
    trainset = torch.utils.data.TensorDataset(torch.from_numpy(images_nchw),
                                              torch.from_numpy(labels.astype(np.int64)))

    def prepare():
        torch.manual_seed(seed)
        trainloader = torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True,
                                                  num_workers=0)
        net = tutorial_net()

        def run():
            blitz_train(net, trainloader, epochs, steps=steps, report=_print)

        return run

    return prepare


def timed_two_layer(x: np.ndarray, y: np.ndarray, w1: np.ndarray, w2: np.ndarray, epochs: int,
                    learning_rate: float = 1e-6):
    """Seed 002's Variable/backward version (`two_layer_autograd`)."""
    from torch.autograd import Variable

    def prepare():
        xv = Variable(torch.from_numpy(x), requires_grad=False)
        yv = Variable(torch.from_numpy(y), requires_grad=False)
        w1v, w2v = torch.from_numpy(w1.copy()), torch.from_numpy(w2.copy())

        def report(epoch, loss):
            _print("Epoch:{},Loss:{:.4f}".format(epoch, loss))  # noqa: UP032 (seed)

        def run():
            two_layer_autograd(xv, yv, w1v, w2v, epochs, learning_rate, report)

        return run

    return prepare


def timed_thermometer(t_u, t_c, n_epochs: int, learning_rate: float = 1e-2):
    """The book's `training_loop` with the hand-derived gradient (`thermometer_training_loop`),
    on t_un = 0.1 * t_u (its 5000-epoch run), printing every epoch as the book does."""
    t_c = torch.tensor(t_c)
    t_un = 0.1 * torch.tensor(t_u)

    def report(epoch, params, loss, grad):
        _print("Epoch %d, Loss %f" % (epoch, float(loss)))  # noqa: UP031 (the book)

    def prepare():
        def run():
            return thermometer_training_loop(n_epochs, learning_rate, torch.tensor([1.0, 0.0]),
                                             t_un, t_c, report)

        return run

    return prepare


def timed_thermometer_sgd(t_u, t_c, n_epochs: int, learning_rate: float = 1e-2):
    """The book's optimizer version (`thermometer_optimizer_loop` with `optim.SGD([params])`),
    printing every 500 epochs."""
    t_c = torch.tensor(t_c)
    t_un = 0.1 * torch.tensor(t_u)

    def report(epoch, params, loss):
        if epoch % 500 == 0:
            _print("Epoch %d, Loss %f" % (epoch, float(loss)))  # noqa: UP031 (the book)

    def prepare():
        params = torch.tensor([1.0, 0.0], requires_grad=True)
        optimizer = optim.SGD([params], lr=learning_rate)

        def run():
            return thermometer_optimizer_loop(n_epochs, optimizer, params, t_un, t_c, report)

        return run

    return prepare

"""Seed 004's PyTorch notebook (a 784 -> 10 linear classifier on Fashion-MNIST), run as a script:
the end-to-end baseline for `python -m experiments.linear_classifier`.

    python -m reference.seed004 --epochs 20 --out /tmp/seed004

The seed's pieces verbatim (the model, `torch.manual_seed(0)`, `nn.CrossEntropyLoss()`,
`optim.SGD(lr=0.001, momentum=0.9)`, ToTensor + Normalize((0.5,), (0.5,)), shuffled batches,
`optimizer.zero_grad`, per-epoch loss, `accuracy = correct / total`, a confusion matrix), in the
loop the notebook runs, with what experiments.linear_classifier does and reports: batch 64, 20
epochs, per-epoch loss, train and test accuracy, the test accuracy, the confusion matrix and
the loss plot as PNGs. Adapted (`# adapted`): torchvision is not installed here, so the IDX
files are read with numpy and normalized once into a TensorDataset (no per-image PIL
transform: that can only make PyTorch faster than the notebook).
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")  # adapted: no display
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn, optim
from torch.utils.data import DataLoader, TensorDataset

from reference.seeds import LinearClassifier, read_fashion


def dataset(prefix):  # adapted: ToTensor() + Normalize((0.5,), (0.5,)) on the whole split
    images = read_fashion(f"{prefix}-images")
    labels = read_fashion(f"{prefix}-labels")
    x = (torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1) - 0.5) / 0.5
    return TensorDataset(x, torch.from_numpy(labels.astype(np.int64)))


def evaluate(model, loader):
    correct, total, predicted_all = 0, 0, []
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images)
            _, predicted = torch.max(outputs.data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
            predicted_all.append(predicted)
    return correct / total, torch.cat(predicted_all)


parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--out", default="runs/torch_seed004")
args = parser.parse_args()

trainset, testset = dataset("train"), dataset("t10k")
trainloader = DataLoader(trainset, batch_size=64, shuffle=True)
testloader = DataLoader(testset, batch_size=1000, shuffle=False)
classes = np.arange(0, 10)

torch.manual_seed(0)
model = LinearClassifier()
criterion = nn.CrossEntropyLoss()
# Stochastic gradient descent
optimizer = optim.SGD(model.parameters(), lr=0.001, momentum=0.9)

losses = []
for epoch in range(args.epochs):
    running_loss, correct, total = 0.0, 0, 0
    for images, labels in trainloader:
        outputs = model(images)
        loss = criterion(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        running_loss += loss.item() * labels.size(0)
        total += labels.size(0)
        correct += (outputs.argmax(1) == labels).sum().item()
    test_accuracy, _ = evaluate(model, testloader)
    print(f"Epoch [{epoch + 1}/{args.epochs}], Loss: {running_loss / total:.4f}, "
          f"Train accuracy: {100 * correct / total:.2f}%, Test accuracy: {100 * test_accuracy:.2f}%")

accuracy, predicted = evaluate(model, testloader)
truth = testset.tensors[1]
cm = np.zeros((len(classes), len(classes)), np.int64)
np.add.at(cm, (truth.numpy(), predicted.numpy()), 1)
os.makedirs(args.out, exist_ok=True)
fig, ax = plt.subplots()
ax.imshow(cm)
ax.set_xticks(classes)
ax.set_yticks(classes)
fig.savefig(os.path.join(args.out, "confusion_matrix.png"))
plt.figure(figsize=(10, 5))
plt.plot(np.arange(len(losses)), losses)
plt.xlabel("step")
plt.ylabel("Loss")
plt.savefig(os.path.join(args.out, "loss_curve.png"))
print(f"test accuracy {100 * accuracy:.2f}%")

"""Seed 000's PyTorch script (MNIST MLP, SGD or Adam), run as a script: the end-to-end baseline.

    python -m reference.seed000 --optimizer adam --out /tmp/seed000

The seed's code (benchmarks/end_to_end.py times it against
`python -m experiments.mnist --dataset fashion_mnist`): its training loop is
`reference.seeds.seed000_loop`, called with the seed's `np.random.randint` batches and its
`torch.randn` weights. Changes, each marked `# adapted`:
- data: torchvision is not installed here, so Fashion-MNIST's IDX files are read with numpy
  into the tensors the seed reads from `mnist_data.train_data` / `.train_labels`;
- outputs: the test accuracy (which the seed states in its text but does not compute) and the
  loss plot saved as a PNG instead of `plt.show()`; the losses are turned into floats for the
  plot (matplotlib cannot convert tensors that require grad); `print(res)` (2000 tensor
  reprs) is left out, as jaxnets does not print the losses either.
"""
# coding=utf-8
import argparse
import os

import matplotlib

matplotlib.use("Agg")  # adapted: no display
import matplotlib.pyplot as plt
import numpy as np
import torch

from reference.seeds import read_fashion, seed000_loop


def draw(res, path):
    x = np.arange(0, 2000)
    y = res
    plt.figure(figsize=(20, 10))
    plt.plot(x, y)
    plt.title('Classifying MNIST using a neural network', fontsize=10)
    plt.xlabel('time')
    plt.ylabel('Loss')
    plt.savefig(path)  # adapted: plt.show()


parser = argparse.ArgumentParser()
parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
parser.add_argument("--out", default="runs/torch_seed000")
args = parser.parse_args()

# adapted: mnist_data = TV.datasets.MNIST("MNIST", train=True, download=False)
train_data = torch.from_numpy(read_fashion("train-images").copy())
train_labels = torch.from_numpy(read_fashion("train-labels").astype(np.int64))
lr = 0.001  # 学习率 （learning rate）
# 进行优化需要的迭代次数
epochs = 2000
batch_size = 100
# 权重（参数）矩阵，带有梯度跟踪
w1 = torch.randn(784, 200, requires_grad=True)
w2 = torch.randn(200, 10, requires_grad=True)
# 获取一组随机索引值 (each step: the seed's np.random.randint)
res = seed000_loop(train_data, train_labels, w1, w2, epochs,
                   lambda i: np.random.randint(0, train_data.shape[0], size=batch_size),
                   args.optimizer, lr)

# adapted: the test accuracy the seed's text states (about 70% SGD, above 95% Adam on MNIST)
test_data = torch.from_numpy(read_fashion("t10k-images").copy())
test_labels = torch.from_numpy(read_fashion("t10k-labels").astype(np.int64))
with torch.no_grad():
    x = test_data.float().flatten(start_dim=1)
    x /= x.max()
    accuracy = (torch.relu(x @ w1) @ w2).argmax(1).eq(test_labels).float().mean().item()
os.makedirs(args.out, exist_ok=True)
draw([loss.item() for loss in res], os.path.join(args.out, "loss_curve.png"))  # adapted
print(f"test accuracy {100 * accuracy:.2f}%")

"""Seed 000's PyTorch script (MNIST MLP, SGD or Adam), run as a script: the end-to-end baseline.

    python benchmarks/torch_seed000.py --optimizer adam --out /tmp/seed000

The seed's code, near verbatim (benchmarks/end_to_end.py times it against
`python -m experiments.mnist --dataset fashion_mnist`). Changes, each marked `# adapted`:
- data: torchvision is not installed here, so Fashion-MNIST's IDX files are read with numpy
  into the tensors the seed reads from `mnist_data.train_data` / `.train_labels`;
- outputs: the test accuracy (which the seed states in its text but does not compute) and the
  loss plot saved as a PNG instead of `plt.show()`; the losses are turned into floats for the
  plot (matplotlib cannot convert tensors that require grad); `print(res)` (2000 tensor
  reprs) is left out, as jaxnets does not print the losses either.
"""
# coding=utf-8
import argparse
import gzip
import os

import matplotlib

matplotlib.use("Agg")  # adapted: no display
import matplotlib.pyplot as plt
import numpy as np
import torch

FASHION = "/usr/share/datasets/fashion-mnist"


def read_idx(path):  # adapted: the data loading
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def draw(res, path):
    x = np.arange(0, 2000)
    y = res
    plt.figure(figsize=(20, 10))
    plt.plot(x, y)
    plt.title('Classifying MNIST using a neural network', fontsize=10)
    plt.xlabel('time')
    plt.ylabel('Loss')
    plt.savefig(path)  # adapted: plt.show()


def nn(x, w1, w2):
    l1 = x @ w1  # 矩阵乘法
    l1 = torch.relu(l1)  # 非线性激活函数
    l2 = l1 @ w2
    return l2


parser = argparse.ArgumentParser()
parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
parser.add_argument("--out", default="runs/torch_seed000")
args = parser.parse_args()

# adapted: mnist_data = TV.datasets.MNIST("MNIST", train=True, download=False)
train_data = torch.from_numpy(read_idx(os.path.join(FASHION, "train-images-idx3-ubyte.gz")).copy())
train_labels = torch.from_numpy(
    read_idx(os.path.join(FASHION, "train-labels-idx1-ubyte.gz")).astype(np.int64))
lr = 0.001  # 学习率 （learning rate）
# 进行优化需要的迭代次数
epochs = 2000
batch_size = 100
lossfn = torch.nn.CrossEntropyLoss()  # 建立一个损失函数
# 权重（参数）矩阵，带有梯度跟踪
w1 = torch.randn(784, 200, requires_grad=True)
w2 = torch.randn(200, 10, requires_grad=True)
optim = torch.optim.Adam(params=[w1, w2], lr=lr) if args.optimizer == "adam" else None
res = []
for i in range(epochs):
    # 获取一组随机索引值
    rid = np.random.randint(0, train_data.shape[0], size=batch_size)
    # 对数据进行细分并使之变平, 将28 x 28个图像转换成784个向量
    x = train_data[rid].float().flatten(start_dim=1)
    # 将向量归一化为0到1之间
    x /= x.max()
    # 利用神经网络进行预测
    pred = nn(x, w1, w2)
    # 获取实值图像标签
    target = train_labels[rid]
    # 计算损失
    loss = lossfn(pred, target)
    # 反向传播算法(Backpropagates)
    loss.backward()
    if optim is not None:
        # 更新参数
        optim.step()
        # 重置梯度
        optim.zero_grad()
    else:
        # 在这个块不计算梯度
        with torch.no_grad():
            # 参数矩阵上的梯度下降
            w1 -= lr * w1.grad
            w2 -= lr * w2.grad
    res.append(loss)

# adapted: the test accuracy the seed's text states (about 70% SGD, above 95% Adam on MNIST)
test_data = torch.from_numpy(read_idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")).copy())
test_labels = torch.from_numpy(
    read_idx(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
with torch.no_grad():
    x = test_data.float().flatten(start_dim=1)
    x /= x.max()
    accuracy = (nn(x, w1, w2).argmax(1) == test_labels).float().mean().item()
os.makedirs(args.out, exist_ok=True)
draw([loss.item() for loss in res], os.path.join(args.out, "loss_curve.png"))  # adapted
print(f"test accuracy {100 * accuracy:.2f}%")

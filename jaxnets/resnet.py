"""ResNet18 with torchvision's architecture, initialisation and state_dict names, in Flax Linen.

Layout is NHWC inside (convert a PyTorch NCHW batch with `x.transpose(0, 2, 3, 1)`). Modules
are named as torchvision names them, with `_` where Flax names cannot hold a dot (`layer1_0`,
`downsample_0`); `torch_rename` maps those to torchvision's keys (`layer1.0.conv1.weight`,
`layer2.0.downsample.1.running_mean`, `fc.weight`), so `jaxnets.torch_io` exchanges
state_dicts with `torchvision.models.resnet18()` unchanged.

Where PyTorch and Flax defaults differ, PyTorch wins (each place says so):
- BatchNorm: PyTorch's momentum 0.1 means running = 0.9 * running + 0.1 * batch (Flax's
  `momentum` is the weight of the *old* value); the running variance takes the unbiased batch
  variance while normalisation uses the biased one; eps 1e-5.
- Padding: symmetric `padding=p` on each side (convs pad with zeros, max-pool with -inf).
- Init (torchvision's `ResNet.__init__`): kaiming_normal_(mode='fan_out', nonlinearity='relu')
  for convs (an untruncated normal), BatchNorm weight 1 / bias 0,
  fc keeps torch.nn.Linear's default.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)
from jaxnets import aot, layers, torch_io
from jaxnets.errors import CheckpointError, ConfigError

# kaiming_normal_(mode='fan_out', nonlinearity='relu'): std = sqrt(2 / fan_out), fan_out =
# out_channels * kh * kw (Flax's fan_out of an HWIO kernel is the same product). torch draws an
# untruncated normal, which is jax's "normal" (not "truncated_normal", Flax's usual choice).
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

NUM_PARAMS_RESNET18 = 11_689_512  # torchvision resnet18(num_classes=1000), parameters only


class BatchNorm2d(nn.Module):
    """torch.nn.BatchNorm2d on NHWC: `scale`/`bias` params, `mean`/`var` in 'batch_stats'."""

    momentum: float = 0.1   # PyTorch's meaning: weight of the *new* batch statistic
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        if train:
            n = x.size // features
            if n < 2:
                # torch raises the same ValueError: the unbiased variance needs 2 values.
                raise ConfigError(f"BatchNorm2d {self.name}: training mode needs more than 1 "
                                  f"value per channel, got input shape {tuple(x.shape)}; use a "
                                  "bigger batch or image, or train=False")
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axes)
            var = jnp.mean(jnp.square(x - mean), axes)  # biased: what normalisation uses
            if not self.is_initializing():
                # PyTorch: running = (1 - m) * running + m * batch, with the *unbiased* var.
                m = self.momentum
                running_mean.value = (1 - m) * running_mean.value + m * mean
                running_var.value = (1 - m) * running_var.value + m * var * (n / (n - 1))
        else:
            mean, var = running_mean.value, running_var.value
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class Conv(nn.Module):
    """Bias-free torch.nn.Conv2d as ResNet uses it, with torchvision's kaiming fan_out init."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param("kernel", kaiming_normal_fan_out,
                            (k, k, x.shape[-1], self.features))
        # layers.conv2d pads p on each side like PyTorch (not Flax's 'SAME').
        return layers.conv2d(x, kernel.astype(x.dtype), (self.stride,) * 2, (self.padding,) * 2)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: conv3x3-bn-relu-conv3x3-bn, plus identity or downsample."""

    planes: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        identity = x
        out = Conv(self.planes, 3, self.stride, 1, name="conv1")(x)
        out = nn.relu(BatchNorm2d(name="bn1")(out, train))
        out = Conv(self.planes, 3, 1, 1, name="conv2")(out)
        out = BatchNorm2d(name="bn2")(out, train)
        if self.stride != 1 or x.shape[-1] != self.planes:
            # torchvision: downsample = Sequential(conv1x1(stride), BatchNorm2d) -> .0 / .1
            identity = Conv(self.planes, 1, self.stride, 0, name="downsample_0")(x)
            identity = BatchNorm2d(name="downsample_1")(identity, train)
        return nn.relu(out + identity)


class ResNet18(nn.Module):
    """torchvision.models.resnet18: NHWC images [N, H, W, 3] -> logits [N, num_classes].

    `train=True` is PyTorch's `model.train()` (batch statistics, running statistics updated:
    call with `mutable=['batch_stats']`); `train=False` is `model.eval()`. A PyTorch module
    starts in training mode, so the tutorial's step uses `train=True`.
    """

    num_classes: int = 1000
    layers: tuple[int, ...] = (2, 2, 2, 2)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != 3:
            hint = (" (that looks like NCHW: pass x.transpose(0, 2, 3, 1))"
                    if x.ndim == 4 and x.shape[1] == 3 else "")
            raise ConfigError(f"ResNet18 input must be NHWC images [N, H, W, 3], got shape "
                              f"{tuple(x.shape)}{hint}")
        x = Conv(64, 7, 2, 3, name="conv1")(x)
        x = nn.relu(BatchNorm2d(name="bn1")(x, train))
        x = layers.max_pool2d(x, 3, 2, 1)
        for i, blocks in enumerate(self.layers):
            planes = 64 * 2**i
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                x = BasicBlock(planes, stride, name=f"layer{i + 1}_{j}")(x, train)
        x = jnp.mean(x, axis=(1, 2))  # AdaptiveAvgPool2d((1, 1)) + flatten
        return layers.Linear(self.num_classes, name="fc")(x)  # torch.nn.Linear default init


_INDEXED = re.compile(r"^(layer\d+|downsample)_(\d+)$")


def torch_rename(prefix: str) -> str:
    """Flax module path -> torchvision prefix: `layer2_0.downsample_1` -> `layer2.0.downsample.1`."""
    return ".".join(_INDEXED.sub(r"\1.\2", part) for part in prefix.split("."))


def init_variables(key: jax.Array, num_classes: int = 1000,
                   image_shape: tuple[int, int, int] = (64, 64, 3)) -> dict:
    """A fresh model's {'params', 'batch_stats'} with torchvision's initialisation."""
    model = ResNet18(num_classes)
    return dict(aot.once(model.init)(key, jnp.zeros((1, *image_shape), jnp.float32)))


def _template(num_classes: int) -> dict:
    """Zero-filled variables of the right shapes, without running an init."""
    shapes = jax.eval_shape(ResNet18(num_classes).init, jax.random.key(0),
                            jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), dict(shapes))


def resnet18_from_state_dict(state_dict: Mapping[str, Any], num_classes: int = 1000,
                             source: str = "state_dict") -> dict:
    """A torchvision resnet18 state_dict -> Flax {'params', 'batch_stats'} (jnp arrays).

    Raises CheckpointError (naming `source` and the key) for a missing or unexpected key or a
    wrong shape, i.e. a file that is not a resnet18 with `num_classes` outputs.
    """
    variables = torch_io.from_state_dict(state_dict, _template(num_classes), torch_rename,
                                         strict=True, source=source)
    return jax.tree.map(jnp.asarray, variables)


def resnet18_to_state_dict(variables: Mapping[str, Any], num_batches_tracked: int = 0
                           ) -> dict[str, np.ndarray]:
    """Flax {'params', 'batch_stats'} -> torchvision resnet18 state_dict (numpy, OIHW).

    `num_batches_tracked` fills every BatchNorm's counter (PyTorch counts training-mode
    forwards; with momentum 0.1 it only informs, the running statistics do not use it).
    """
    state_dict = torch_io.to_state_dict(variables, torch_rename)
    for key in state_dict:
        if key.endswith(".num_batches_tracked"):
            state_dict[key] = np.asarray(num_batches_tracked, np.int64)
    return state_dict


def num_batches_tracked(state_dict: Mapping[str, Any]) -> int:
    """The BatchNorm counter of a torchvision state_dict (0 when absent, as in old files).

    Also reads the shape-[1] counter that exports before the 0-d fix in `torch_io` wrote.
    """
    value = np.asarray(state_dict.get("bn1.num_batches_tracked", 0))
    if value.size != 1:
        raise CheckpointError(f"bn1.num_batches_tracked has shape {value.shape}, expected a "
                              "scalar; the file is not a torchvision resnet18 state_dict")
    return int(value.reshape(()))


# torchvision's ResNet18_Weights.IMAGENET1K_V1 (= DEFAULT), torchvision/models/resnet.py. The
# name's "-f37072fd" is the start of the file's sha256, which torch.hub checks (check_hash).
PRETRAINED_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


def torch_hub_checkpoints() -> str:
    """torch.hub's download folder ($TORCH_HOME/hub/checkpoints, by default under
    ~/.cache/torch), so a file torchvision already downloaded is found and not fetched again."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return os.path.join(torch_home, "hub", "checkpoints")


def fetch_pretrained(url: str = PRETRAINED_URL, cache_dir: str | None = None,
                     timeout: float = 30.0, deadline: float = 900.0) -> str:
    """The file at `url` in `cache_dir`, downloaded once and checked like torch.hub does it.

    Args:
      url: ends in `<name>-<hex>.<ext>`; `<hex>` must start the file's sha256.
      cache_dir: where the file is kept (default: torch.hub's folder, `torch_hub_checkpoints`).
      timeout: seconds any one connect or read may wait.
      deadline: seconds the whole download may take.

    Returns:
      The cached file's path.

    Raises CheckpointError (one line, naming the URL) when the download fails or times out, or
    the file's sha256 does not start with the name's hash; nothing is left in the cache then.
    """
    name = url.rsplit("/", 1)[-1]
    match = re.search(r"-([a-f0-9]+)\.", name)
    cache_dir = cache_dir or torch_hub_checkpoints()
    path = os.path.join(cache_dir, name)
    if os.path.isfile(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".partial", dir=cache_dir)
    digest = hashlib.sha256()
    start = time.monotonic()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                if time.monotonic() - start > deadline:
                    raise TimeoutError(f"not finished after {deadline:.0f} s")
                digest.update(chunk)
                out.write(chunk)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise CheckpointError(f"{url}: the downloaded file's sha256 {digest.hexdigest()[:16]}"
                                  f"... does not start with {match.group(1)}; the download is "
                                  "damaged or not the published file, try again")
        os.replace(tmp, path)
        return path
    except (OSError, TimeoutError) as e:  # URLError, refused, DNS, socket timeouts, disk full
        if isinstance(e, urllib.error.HTTPError):
            reason = f"HTTP {e.code} {e.reason}"
        else:  # URLError wraps the socket's error
            reason = getattr(e, "reason", None) or e
            reason = getattr(reason, "strerror", None) or reason
        raise CheckpointError(f"could not download {url} ({reason}); download it where there "
                              "is internet and pass the file instead") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

"""torch.nn.Linear and torch.nn.Conv2d as Flax modules: PyTorch's init, padding and shapes.

Layout is NHWC with HWIO kernels (Flax/XLA's native layout); `jaxnets.torch_io` converts to
PyTorch's [out, in] / OIHW at the boundary. `torch_init=False` gives Flax's default init.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jaxnets import init
from jaxnets.errors import ConfigError


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class Linear(nn.Module):
    """y = x @ kernel + bias, kernel [in, out] (PyTorch stores weight = kernel.T)."""

    features: int
    use_bias: bool = True
    torch_init: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kinit = init.torch_kernel_init if self.torch_init else init.flax_kernel_init
        kernel = self.param("kernel", kinit, (fan_in, self.features))
        y = x @ kernel
        if self.use_bias:
            binit = init.torch_bias_init(fan_in) if self.torch_init else init.flax_bias_init
            y = y + self.param("bias", binit, (self.features,))
        return y


CONV_IMPLS = ("auto", "lax", "patches", "banded")


def conv_impl(impl: str = "auto") -> str:
    """The convolution implementation `impl` stands for on the current default backend.

    'auto' is a matmul formulation on CPU, where XLA's own convolution is slow (many times
    PyTorch's oneDNN, more so inside `lax.scan`: benchmarks/NOTES.md), and 'lax' elsewhere
    (cuDNN and TPU convolutions are the fast path there). Which matmul formulation
    depends on the size of the work, so on CPU `conv2d` resolves 'auto' per call (see
    `_auto_matmul_impl`); this function returns 'auto' for that case.
    """
    if impl not in CONV_IMPLS:
        raise ConfigError(f"conv implementation must be one of {', '.join(CONV_IMPLS)}, "
                          f"got {impl!r}")
    if impl == "auto" and jax.default_backend() != "cpu":
        return "lax"
    return impl


def _auto_matmul_impl(x_shape, kernel_shape, stride) -> str:
    """'banded' for stride-1 convolutions with few input channels or a large patch matrix,
    else 'patches': a large patch matrix (25x conv1's input at LeNet's batch 128) makes
    `conv2d_patches` memory-bound, while small ones are bound by per-op costs, where the
    fewer ops of patches win unless the input has few channels (the measurements:
    benchmarks/NOTES.md).
    """
    kh, kw, cin, _ = kernel_shape
    n, h, w, _ = x_shape
    ho, wo = (h - kh) // stride[0] + 1, (w - kw) // stride[1] + 1
    if tuple(stride) == (1, 1) and (cin <= 4 or kh * kw * cin * n * ho * wo > _SMALL_PATCHES):
        return "banded"
    return "patches"


def conv2d(x: jax.Array, kernel: jax.Array, stride=(1, 1), padding=(0, 0),
           impl: str = "auto") -> jax.Array:
    """NHWC x HWIO convolution with PyTorch's symmetric zero padding (`padding=p` pads p on
    each side; Flax's 'SAME'/'VALID' strings are not the same thing for even kernels).

    `impl`: 'lax' (`lax.conv_general_dilated`), 'patches' (`conv2d_patches`), 'banded'
    (`conv2d_banded`), both equal to 'lax' up to float summation order, or 'auto' (see
    `conv_impl`).
    """
    impl = conv_impl(impl)
    ph, pw = padding
    if impl == "auto":
        padded = (x.shape[0], x.shape[1] + 2 * ph, x.shape[2] + 2 * pw, x.shape[3])
        impl = _auto_matmul_impl(padded, kernel.shape, stride)
    if impl == "patches":
        return conv2d_patches(x, kernel, stride, padding)
    if impl == "banded":
        return conv2d_banded(x, kernel, stride, padding)
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=stride, padding=((ph, ph), (pw, pw)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


# Patch matrices up to this many elements are built in two stages (see conv2d_patches).
_SMALL_PATCHES = 1 << 20


def conv2d_patches(x: jax.Array, kernel: jax.Array, stride=(1, 1), padding=(0, 0)) -> jax.Array:
    """`conv2d` as one matrix product over image patches (im2col), channels first inside.

    The patches are built as P^T [kh*kw*C, N*Ho*Wo] from kh*kw strided slices of the input in
    [C, N, H, W] layout (each slice copies whole rows, which XLA:CPU does at memory speed; the
    NHWC order would interleave C=3 channels), and y^T [O, N*Ho*Wo] = K^T [O, kh*kw*C] @ P^T
    is a single large matmul. Its gradient is two matmuls plus the sum of the shifted slices.
    On CPU this is several times quicker than XLA's convolution, whose weight gradient is the
    slowest part (benchmarks/NOTES.md); the numbers agree to float rounding.
    """
    kh, kw, cin, cout = kernel.shape
    sh, sw = stride
    ph, pw = padding
    xt = jnp.transpose(x, (3, 0, 1, 2))                          # [C, N, H, W]
    if ph or pw:
        xt = jnp.pad(xt, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    _, n, h, w = xt.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: input {x.shape[1:3]} (padded {h}x{w}) is smaller than the "
                         f"kernel {kh}x{kw}")
    hs = [slice(i, i + (ho - 1) * sh + 1, sh) for i in range(kh)]
    ws = [slice(j, j + (wo - 1) * sw + 1, sw) for j in range(kw)]
    if kh * kw * cin * n * ho * wo <= _SMALL_PATCHES:
        # Small: per-op overhead dominates, so 2 x 5 slices (along W, then H) beat 25.
        xw = jnp.stack([xt[:, :, :, w_] for w_ in ws], 0)               # [kw, C, N, H, Wo]
        patches = jnp.stack([xw[:, :, :, h_] for h_ in hs], 0)          # [kh, kw, C, N, Ho, Wo]
    else:
        # Large: one pass of kh*kw row-copying slices (no intermediate array to write and read).
        patches = jnp.stack([xt[:, :, h_, w_] for h_ in hs for w_ in ws], 0)
    patches_t = patches.reshape(kh * kw * cin, n * ho * wo)             # rows ordered (i, j, c)
    kernel_t = kernel.reshape(kh * kw * cin, cout).T                     # HWIO rows: (i, j, c)
    y_t = (kernel_t @ patches_t).reshape(cout, n, ho, wo)
    return jnp.transpose(y_t, (1, 2, 3, 0))


def _band_selector(kw: int, tile: int) -> np.ndarray:
    """E[j, q, v] = 1 where v = q + j: kernel column j feeds output column q from input v."""
    e = np.zeros((kw, tile, tile + kw - 1), np.float32)
    for j in range(kw):
        e[j, np.arange(tile), np.arange(tile) + j] = 1.0
    return e


def conv2d_banded(x: jax.Array, kernel: jax.Array, stride=(1, 1), padding=(0, 0),
                  tile: int | None = None) -> jax.Array:
    """`conv2d` (stride 1) as one matmul against a banded (Toeplitz) form of the kernel.

    The output width is cut into tiles of `tile` columns (default kw - 1). Output tile t of
    row r needs input rows r..r+kh-1, columns t*tile .. t*tile+tile+kw-2, all channels: a
    strip of kh * (tile + kw - 1) * C numbers that, unlike im2col's patches, overlaps its
    neighbours only by kw - 1 columns. Each strip row times the banded matrix
    B[(i, v, c), (q, o)] = K[i, v - q, c, o] (zero off the band) gives the tile's
    tile * O outputs, so the whole convolution is [N*Ho*tiles, kh*(tile+kw-1)*C] @ B.
    That does (tile + kw - 1) / kw times the direct FLOPs (1.6x for 5x5 kernels) but builds a
    strip matrix ~kw/1.6 times smaller than the patch matrix, which is what bounds a
    3-channel conv1 on CPU. Gradients: two matmuls, plus the band's sum back onto K (autodiff).
    Stride > 1 falls back to `conv2d_patches`. A non-finite input value also reaches its
    zero band entries (0 * inf = nan), where lax.conv would give inf; inputs here are images.
    """
    if tuple(stride) != (1, 1):
        return conv2d_patches(x, kernel, stride, padding)
    kh, kw, cin, cout = kernel.shape
    ph, pw = padding
    if ph or pw:
        x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    n, h, w, _ = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: input {x.shape[1:3]} (padded {h}x{w}) is smaller than the "
                         f"kernel {kh}x{kw}")
    tile = min(wo, max(1, kw - 1) if tile is None else tile)
    tiles = -(-wo // tile)
    span = tile + kw - 1
    if tiles * tile + kw - 1 > w:                  # the last tile runs past the right edge
        x = jnp.pad(x, ((0, 0), (0, 0), (0, tiles * tile + kw - 1 - w), (0, 0)))
    strips = jnp.stack([x[:, :, t * tile:t * tile + span] for t in range(tiles)], 2)
    strips = strips.reshape(n, h, tiles, span * cin)                    # [N, H, tiles, (v, c)]
    rows = jnp.concatenate([strips[:, i:i + ho] for i in range(kh)], -1)  # (i, v, c) order
    band = jnp.einsum("ijco,jqv->ivcqo", kernel, _band_selector(kw, tile).astype(kernel.dtype))
    y = rows.reshape(n * ho * tiles, kh * span * cin) @ band.reshape(kh * span * cin,
                                                                     tile * cout)
    y = y.reshape(n, ho, tiles * tile, cout)
    return y[:, :, :wo] if tiles * tile != wo else y


class Conv2d(nn.Module):
    """torch.nn.Conv2d(in, out, kernel_size, stride, padding, bias) on NHWC input."""

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: int | Sequence[int] = 0
    use_bias: bool = True
    torch_init: bool = True
    impl: str = "auto"              # 'auto', 'lax', 'patches' or 'banded': see `conv2d`

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        cin = x.shape[-1]
        fan_in = cin * kh * kw
        kinit = init.torch_kernel_init if self.torch_init else init.flax_kernel_init
        kernel = self.param("kernel", kinit, (kh, kw, cin, self.features))
        y = conv2d(x, kernel.astype(x.dtype), _pair(self.stride), _pair(self.padding),
                   self.impl)
        if self.use_bias:
            binit = init.torch_bias_init(fan_in) if self.torch_init else init.flax_bias_init
            y = y + self.param("bias", binit, (self.features,))
        return y


def max_pool2d(x: jax.Array, size: int = 2, stride: int | None = None,
               padding: int = 0) -> jax.Array:
    """F.max_pool2d(x, size, stride, padding) on NHWC (stride defaults to size; floor mode).

    Non-overlapping windows (stride == size, no padding: the tutorials' pools) are computed as
    a max over a reshape, with PyTorch's gradient: all of it to the first maximum of each window
    in row-major order (`lax.reduce_window`'s gradient, a select-and-scatter, does the same but
    is several times slower on CPU). Other pools (ResNet's 3x3 stride 2 padding 1) use
    `lax.reduce_window`, which pads with its init value -inf (never picked), as PyTorch does.
    """
    stride = size if stride is None else stride
    n, h, w, c = x.shape
    ho, wo = (h - size) // stride + 1, (w - size) // stride + 1
    if stride != size or padding or ho < 1 or wo < 1:
        return nn.max_pool(x, (size, size), strides=(stride, stride),
                           padding=((padding, padding), (padding, padding)))
    return _window_max(x[:, : ho * size, : wo * size].reshape(n, ho, size, wo, size, c))


@jax.custom_jvp
def _window_max(x: jax.Array) -> jax.Array:
    """Max of [N, Ho, k, Wo, k, C] over the window axes 2 and 4."""
    return jnp.max(x, axis=(2, 4))


@_window_max.defjvp
def _window_max_jvp(primals, tangents):
    # The tangent of each window's first maximum in row-major order (NaN counts as the maximum,
    # as in PyTorch): linear in the tangent, so reverse mode sends the whole cotangent to that
    # one position. Written as a masked sum over the window axes so that its transpose is a
    # broadcast-and-select XLA keeps in one cheap fusion.
    (x,), (dx,) = primals, tangents
    out = jnp.max(x, axis=(2, 4))
    top = jnp.expand_dims(out, (2, 4))
    hit = (x == top) | (jnp.isnan(x) & jnp.isnan(top))
    k = x.shape[2]
    pos = (jax.lax.broadcasted_iota(jnp.int32, x.shape, 2) * k
           + jax.lax.broadcasted_iota(jnp.int32, x.shape, 4))
    first = jnp.min(jnp.where(hit, pos, k * k), axis=(2, 4), keepdims=True)
    return out, jnp.sum(jnp.where(pos == first, dx, 0), axis=(2, 4))


def flatten_nchw(x: jax.Array) -> jax.Array:
    """torch.flatten(x, 1) as PyTorch sees it: NHWC -> NCHW order, then flatten, so a Linear
    after a conv stack has PyTorch's weight layout (loadable from/into a state_dict)."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)

"""The patches and banded convolutions equal lax.conv (values and gradients); max_pool2d equals
PyTorch's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxnets import layers as L
from jaxnets.errors import ConfigError


def _lax(x, k, stride, padding):
    return L.conv2d(x, k, stride, padding, impl="lax")


def _patches(x, k, stride, padding):
    return L.conv2d(x, k, stride, padding, impl="patches")


def _banded(x, k, stride, padding):
    return L.conv2d(x, k, stride, padding, impl="banded")


def _banded_tile(tile):
    return lambda x, k, stride, padding: L.conv2d_banded(x, k, stride, padding, tile=tile)


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((2, 32, 32, 3), (5, 5, 3, 6), (1, 1), (0, 0)),     # LeNet conv1 (CIFAR-10)
    ((2, 14, 14, 6), (5, 5, 6, 16), (1, 1), (0, 0)),    # LeNet conv2
    ((2, 17, 15, 4), (3, 3, 4, 8), (2, 2), (1, 1)),     # ResNet-style strided, padded, odd sizes
    ((2, 9, 11, 5), (1, 1, 5, 7), (2, 1), (0, 0)),      # 1x1 downsample, unequal strides
    ((2, 8, 10, 2), (3, 5, 2, 4), (1, 2), (2, 1)),      # non-square kernel and padding
])
@pytest.mark.slow
@pytest.mark.parametrize("small_patches", [0, 1 << 40])   # one-stage / two-stage patch build
def test_matmul_convs_equal_lax_values_and_gradients(shape, kernel, stride, padding,
                                                    small_patches, monkeypatch):
    monkeypatch.setattr(L, "_SMALL_PATCHES", small_patches)
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, shape)
    k = jax.random.normal(kk, kernel) / np.sqrt(np.prod(kernel[:3]))

    @jax.jit  # one compile per implementation (op-by-op eager mode compiles every primitive)
    def both(x, k):
        out = {}
        impls = (("lax", _lax), ("patches", _patches), ("banded", _banded),
                 ("banded tile 1", _banded_tile(1)), ("banded tile 3", _banded_tile(3)),
                 ("banded one tile", _banded_tile(1000)), ("auto", L.conv2d))
        for name, conv in impls:
            y, vjp = jax.vjp(lambda x, k, conv=conv: conv(x, k, stride, padding), x, k)
            g = jax.random.normal(kg, y.shape)  # a random cotangent, not just ones
            out[name] = (y, *vjp(g))
        return out

    out = both(x, k)
    y_lax, gx_lax, gk_lax = out.pop("lax")
    for name, (y, gx, gk) in out.items():
        assert y.shape == y_lax.shape, name
        np.testing.assert_allclose(y, y_lax, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(gx, gx_lax, rtol=1e-5, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(gk, gk_lax, rtol=1e-5, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("impl,stride,padding", [
    ("patches", (2, 1), (1, 2)), ("banded", (1, 1), (1, 2)), ("banded", (2, 1), (1, 2))])
def test_matmul_convs_match_pytorch_conv2d(impl, stride, padding):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 12, 10)).astype(np.float32)     # NCHW
    w = rng.normal(size=(6, 3, 5, 3)).astype(np.float32)       # OIHW
    theirs = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), stride=stride, padding=padding)
    ours = L.conv2d(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(w.transpose(2, 3, 1, 0)),
                    stride, padding, impl=impl)
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_conv2d_module_impls_agree_and_auto_picks_by_size_on_cpu():
    x = jax.random.normal(jax.random.key(2), (2, 10, 10, 3))
    mods = {impl: L.Conv2d(4, 3, padding=1, impl=impl) for impl in L.CONV_IMPLS}
    params = mods["lax"].init(jax.random.key(3), x)
    outs = {impl: m.apply(params, x) for impl, m in mods.items()}
    for impl in ("patches", "banded"):
        np.testing.assert_allclose(outs[impl], outs["lax"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outs["auto"], outs["banded"])    # 3 input channels
    assert jax.default_backend() == "cpu" and L.conv_impl("auto") == "auto"
    assert L.conv_impl("lax") == "lax"
    # LeNet's convolutions: banded for the 3-channel conv1, and for conv2 at batch 128 (large
    # patch matrices are what bound the step there), patches for conv2 at batch 4.
    assert L._auto_matmul_impl((4, 32, 32, 3), (5, 5, 3, 6), (1, 1)) == "banded"
    assert L._auto_matmul_impl((4, 14, 14, 6), (5, 5, 6, 16), (1, 1)) == "patches"
    assert L._auto_matmul_impl((128, 32, 32, 3), (5, 5, 3, 6), (1, 1)) == "banded"
    assert L._auto_matmul_impl((128, 14, 14, 6), (5, 5, 6, 16), (1, 1)) == "banded"
    assert L._auto_matmul_impl((128, 32, 32, 3), (3, 3, 3, 6), (2, 2)) == "patches"
    assert L._auto_matmul_impl((4, 10, 10, 8), (3, 3, 8, 8), (1, 1)) == "patches"


@pytest.mark.slow
def test_unknown_impl_is_a_config_error():
    with pytest.raises(ConfigError, match="conv implementation must be one of"):
        L.conv2d(jnp.zeros((1, 5, 5, 1)), jnp.zeros((3, 3, 1, 1)), impl="im2col")
    from jaxnets.models import LeNet  # the model's conv_impl field reaches the same check

    with pytest.raises(ConfigError, match="conv implementation must be one of"):
        LeNet(conv_impl="im2col").init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


@pytest.mark.parametrize("impl", ["patches", "banded"])
def test_kernel_larger_than_input_is_a_clear_error(impl):
    with pytest.raises(ValueError, match="smaller than the kernel"):
        L.conv2d(jnp.zeros((1, 3, 3, 1)), jnp.zeros((5, 5, 1, 1)), impl=impl)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["patches", "banded"])
def test_matmul_convs_under_jit_and_scan(impl):
    x = jax.random.normal(jax.random.key(4), (3, 2, 9, 9, 2))
    k = jax.random.normal(jax.random.key(5), (3, 3, 2, 4))

    def run(impl):
        def body(c, xi):
            return c + jnp.sum(L.conv2d(xi, k, (1, 1), (1, 1), impl) ** 2), None
        return jax.jit(lambda x: jax.lax.scan(body, 0.0, x)[0])(x)

    np.testing.assert_allclose(run(impl), run("lax"), rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 6, 7, 3), (1, 5, 5, 2)])
def test_max_pool2d_values_and_gradient_match_pytorch_with_ties_and_nan(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape).astype(np.float32)     # small integers: many tied maxima
    x[0, 0, 0, 0] = np.nan
    out_shape = (shape[0], shape[1] // 2, shape[2] // 2, shape[3])
    g = rng.normal(size=out_shape).astype(np.float32)

    ours, vjp = jax.vjp(lambda x: L.max_pool2d(x, 2), jnp.asarray(x))
    (gx,) = vjp(jnp.asarray(g))

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).requires_grad_()
    theirs = F.max_pool2d(xt, 2)
    (theirs * torch.from_numpy(g.transpose(0, 3, 1, 2))).sum().backward()
    np.testing.assert_array_equal(np.asarray(ours), theirs.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(gx), xt.grad.numpy().transpose(0, 2, 3, 1))


def test_max_pool2d_overlapping_windows_use_reduce_window():
    x = jax.random.normal(jax.random.key(6), (1, 7, 7, 2))
    theirs = F.max_pool2d(torch.from_numpy(np.array(x).transpose(0, 3, 1, 2)), 3, 2)
    np.testing.assert_array_equal(np.asarray(L.max_pool2d(x, 3, 2)),
                                  theirs.numpy().transpose(0, 2, 3, 1))


def test_max_pool2d_forward_mode():
    x = jax.random.normal(jax.random.key(7), (1, 4, 4, 1))
    t = jax.random.normal(jax.random.key(8), x.shape)
    _, dy = jax.jvp(lambda x: L.max_pool2d(x, 2), (x,), (t,))
    # the tangent of each window's (unique) maximum
    xw = np.asarray(x).reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(2, 2, 4)
    tw = np.asarray(t).reshape(2, 2, 2, 2).transpose(0, 2, 1, 3).reshape(2, 2, 4)
    expected = np.take_along_axis(tw, xw.argmax(-1)[..., None], -1)[..., 0]
    np.testing.assert_array_equal(np.asarray(dy)[0, :, :, 0], expected)

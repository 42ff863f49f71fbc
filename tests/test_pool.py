"""Pooling and nearest upsampling: forward (values and PyTorch's indices) and backward vs the
float64 NumPy reference, finite differences, edge windows, and the errors the spec names."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, randn

import fastlayers as fl
from fastlayers import reference as R

# (shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_CASES = [
    pytest.param((2, 3, 7, 9), 3, 2, 1, 1, False, id="3x3s2p1-odd"),
    pytest.param((2, 3, 8, 8), 3, 2, 1, 1, True, id="ceil-window-starts-in-padding"),
    pytest.param((1, 2, 6, 5), (2, 3), (3, 2), (1, 1), (2, 1), True, id="asym-dilated-ceil"),
    pytest.param((2, 2, 1, 1), 1, 1, 0, 1, False, id="1x1-image"),
    pytest.param((1, 2, 1, 1), 2, 1, 1, 1, False, id="1x1-image-padded"),
    pytest.param((2, 2, 5, 6), (7, 8), 1, (1, 1), 1, False, id="kernel-equals-padded-input"),
    pytest.param((2, 3, 11, 10), 2, 3, 0, 1, True, id="stride-gt-kernel-ceil"),
    pytest.param((2, 2, 9, 9), 3, None, 1, 2, True, id="default-stride-dilated"),
    pytest.param((3, 4, 33, 35), 3, 1, 1, 1, False, id="stride1-larger"),
]


@pytest.mark.parametrize("shape,k,s,p,d,ceil", MAX_CASES)
def test_max_pool2d(rng, shape, k, s, p, d, ceil):
    x = randn(rng, *shape)
    y, idx = fl.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(f64(x), k, s, p, d, ceil, return_indices=True)
    assert idx.dtype == np.int64 and y.dtype == np.float32
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(fl.max_pool2d(x, k, s, p, d, ceil), y)
    g = randn(rng, *y.shape)
    gx = fl.max_pool2d_backward(g, x, idx, k, s, p, d, ceil)
    assert_close(gx, R.max_pool2d_backward(f64(g), f64(x), idx_ref, k, s, p, d, ceil))


def test_max_pool2d_ties_and_nan(rng):
    # After a ReLU, windows of equal values are common: the first maximum in row-major window
    # order wins (PyTorch's rule), and a NaN beats every number.
    x = np.zeros((1, 2, 6, 7), np.float32)
    x[0, 1, 2, 3] = np.nan
    x[0, 0, ::2, ::3] = 1.0
    y, idx = fl.max_pool2d(x, 3, 2, 1, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(y, y_ref)  # NaN positions compare equal in assert_array_equal
    assert np.isnan(y[0, 1]).sum() == 2  # the two windows (rows 1-3; cols 1-3 and 3-5) holding it


def test_max_pool2d_finite_differences(rng):
    x = randn(rng, 2, 3, 7, 6)

    def grads(g, x):
        _, idx = fl.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
        return (fl.max_pool2d_backward(g, x, idx, 3, 2, 1, ceil_mode=True),)

    check_directional(lambda x: fl.max_pool2d(x, 3, 2, 1, ceil_mode=True), [x], grads, rng, eps=1e-4)


# (shape, kernel_size, stride, padding, ceil_mode)
AVG_CASES = [
    pytest.param((2, 3, 7, 9), 3, 2, 1, False, id="3x3s2p1"),
    pytest.param((2, 3, 8, 8), 3, 2, 1, True, id="ceil-window-starts-in-padding"),
    pytest.param((1, 2, 6, 5), (2, 3), (3, 2), (1, 1), True, id="asym-ceil"),
    pytest.param((2, 2, 1, 1), 2, 2, 1, True, id="1x1-image"),
    pytest.param((2, 3, 11, 10), 2, 3, 0, True, id="stride-gt-kernel"),
    pytest.param((2, 2, 5, 6), (7, 8), 1, (1, 1), False, id="kernel-equals-padded-input"),
]


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("shape,k,s,p,ceil", AVG_CASES)
def test_avg_pool2d(rng, shape, k, s, p, ceil, count_include_pad):
    x = randn(rng, *shape)
    y = fl.avg_pool2d(x, k, s, p, ceil, count_include_pad)
    assert_close(y, R.avg_pool2d(f64(x), k, s, p, ceil, count_include_pad))
    g = randn(rng, *y.shape)
    assert_close(fl.avg_pool2d_backward(g, x, k, s, p, ceil, count_include_pad),
                 R.avg_pool2d_backward(f64(g), f64(x), k, s, p, ceil, count_include_pad))


def test_avg_pool2d_finite_differences(rng):
    x = randn(rng, 2, 3, 7, 6)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    check_directional(lambda x: fl.avg_pool2d(x, **kw), [x], lambda g, x: (fl.avg_pool2d_backward(g, x, **kw),), rng)


@pytest.mark.parametrize("out", [1, (3, 2), (5, 7), (9, 11), (7, 1), (None, 4)])
def test_adaptive_pools(rng, out):
    x = randn(rng, 2, 3, 7, 9)
    full = (7, 4) if out == (None, 4) else out  # None keeps that input size
    y = fl.adaptive_avg_pool2d(x, out)
    assert_close(y, R.adaptive_avg_pool2d(f64(x), full))
    g = randn(rng, *y.shape)
    assert_close(fl.adaptive_avg_pool2d_backward(g, x, out), R.adaptive_avg_pool2d_backward(f64(g), f64(x), full))
    ym, idx = fl.adaptive_max_pool2d(x, out, return_indices=True)
    ym_ref, idx_ref = R.adaptive_max_pool2d(f64(x), full, return_indices=True)
    np.testing.assert_array_equal(ym, ym_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    assert_close(fl.adaptive_max_pool2d_backward(g, x, idx, out), R.adaptive_max_pool2d_backward(f64(g), f64(x), idx_ref, full))


def test_global_pooling_is_output_size_1(rng):
    x = randn(rng, 3, 5, 6, 4)
    assert_close(fl.adaptive_avg_pool2d(x, 1), f64(x).mean(axis=(2, 3), keepdims=True))
    np.testing.assert_array_equal(fl.adaptive_max_pool2d(x, 1), x.max(axis=(2, 3), keepdims=True))


def test_adaptive_finite_differences(rng):
    x = randn(rng, 2, 2, 7, 5)
    check_directional(lambda x: fl.adaptive_avg_pool2d(x, (3, 2)), [x],
                      lambda g, x: (fl.adaptive_avg_pool2d_backward(g, x, (3, 2)),), rng)


@pytest.mark.parametrize("scale", [1, 2, (2, 3), (3, 1)])
def test_upsample_nearest2d(rng, scale):
    x = randn(rng, 2, 3, 5, 4)
    y = fl.upsample_nearest2d(x, scale)
    np.testing.assert_array_equal(y, R.upsample_nearest2d(x, scale))
    g = randn(rng, *y.shape)
    assert_close(fl.upsample_nearest2d_backward(g, x, scale), R.upsample_nearest2d_backward(f64(g), f64(x), scale))


def test_upsample_finite_differences(rng):
    x = randn(rng, 1, 2, 3, 4)
    check_directional(lambda x: fl.upsample_nearest2d(x, (2, 3)), [x],
                      lambda g, x: (fl.upsample_nearest2d_backward(g, x, (2, 3)),), rng)


def test_noncontiguous_and_3d(rng):
    x = randn(rng, 9, 8, 3, 2).transpose(3, 2, 1, 0)  # (2, 3, 8, 9)
    assert not x.flags.c_contiguous
    y, idx = fl.max_pool2d(x, 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(idx, R.max_pool2d(f64(x), 3, 2, 1, return_indices=True)[1])
    g = randn(rng, *y.shape[::-1]).transpose(3, 2, 1, 0)
    assert_close(fl.max_pool2d_backward(g, x, idx[..., ::1], 3, 2, 1), R.max_pool2d_backward(f64(g), f64(x), idx, 3, 2, 1))
    assert_close(fl.avg_pool2d(x, 2), R.avg_pool2d(f64(x), 2))
    assert_close(fl.adaptive_avg_pool2d(x, 3), R.adaptive_avg_pool2d(f64(x), 3))
    np.testing.assert_array_equal(fl.upsample_nearest2d(x, 2), R.upsample_nearest2d(x, 2))
    # (C, H, W) input: the batch dimension is optional, as in PyTorch.
    y3, idx3 = fl.max_pool2d(x[0], 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(y3, y[0])
    np.testing.assert_array_equal(idx3, idx[0])
    assert fl.max_pool2d_backward(g[0], x[0], idx3, 3, 2, 1).shape == x[0].shape


def test_zero_batch():
    x = np.zeros((0, 3, 6, 6), np.float32)
    y, idx = fl.max_pool2d(x, 2, return_indices=True)
    assert y.shape == idx.shape == (0, 3, 3, 3)
    assert fl.max_pool2d_backward(y, x, idx, 2).shape == x.shape
    assert fl.avg_pool2d(x, 3, 1, 1).shape == (0, 3, 6, 6)
    assert fl.avg_pool2d_backward(np.zeros((0, 3, 6, 6), np.float32), x, 3, 1, 1).shape == x.shape
    assert fl.adaptive_avg_pool2d(x, 2).shape == (0, 3, 2, 2)
    assert fl.adaptive_max_pool2d(x, 2).shape == (0, 3, 2, 2)
    assert fl.upsample_nearest2d(x, 2).shape == (0, 3, 12, 12)
    assert fl.upsample_nearest2d_backward(np.zeros((0, 3, 12, 12), np.float32), x, 2).shape == x.shape


@pytest.mark.torch
def test_pools_match_torch(rng):
    import torch
    import torch.nn.functional as TF

    x = np.maximum(randn(rng, 2, 3, 13, 12), 0)  # ReLU'd: many tied zeros
    tx = torch.from_numpy(x)
    y, idx = fl.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    ty, tidx = TF.max_pool2d(tx, 3, 2, 1, ceil_mode=True, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    ym, idxm = fl.adaptive_max_pool2d(x, (4, 5), return_indices=True)
    tym, tidxm = TF.adaptive_max_pool2d(tx, (4, 5), return_indices=True)
    np.testing.assert_array_equal(idxm, tidxm.numpy())
    np.testing.assert_allclose(fl.avg_pool2d(x, 3, 2, 1, True, False), TF.avg_pool2d(tx, 3, 2, 1, True, False).numpy(),
                               rtol=1e-6, atol=1e-6)


# ---- errors ---------------------------------------------------------------------------------

def test_pool_errors(rng):
    x = randn(rng, 1, 2, 5, 5)
    with pytest.raises(ValueError, match=r"padding: 2 must be >= 0 and at most half the kernel size \(kernel_size=3\)"):
        fl.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="padding: .* at most half the kernel size"):
        fl.avg_pool2d(x, (2, 4), padding=(1, 3))
    with pytest.raises(ValueError, match="padding: .* must be >= 0"):
        fl.avg_pool2d(x, 3, padding=-1)
    with pytest.raises(ValueError, match="stride: must be positive"):
        fl.max_pool2d(x, 3, stride=0)
    with pytest.raises(ValueError, match="stride: must be positive"):
        fl.avg_pool2d(x, 3, stride=(2, -1))
    with pytest.raises(ValueError, match="kernel_size: must be positive"):
        fl.max_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"max_pool2d: output size 0x0 <= 0 for x shape \(1, 2, 5, 5\)"):
        fl.max_pool2d(x, 7)
    with pytest.raises(ValueError, match=r"avg_pool2d: output size .* <= 0 for x shape \(1, 2, 5, 5\)"):
        fl.avg_pool2d(x, (2, 8), padding=(0, 1))
    with pytest.raises(ValueError, match="output_size: must be positive"):
        fl.adaptive_avg_pool2d(x, (0, 2))
    with pytest.raises(ValueError, match="scale_factor: must be positive"):
        fl.upsample_nearest2d(x, 0)
    with pytest.raises(TypeError, match="scale_factor: expected an int or a pair"):
        fl.upsample_nearest2d(x, 1.5)
    with pytest.raises(TypeError, match="x: dtype float64 is not supported"):
        fl.max_pool2d(x.astype(np.float64), 2)
    with pytest.raises(ValueError, match=r"x: expected a 3-D or 4-D array, got shape \(5, 5\)"):
        fl.avg_pool2d(x[0, 0], 2)
    y, idx = fl.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(ValueError, match=r"grad_out: shape \(1, 2, 3, 3\) does not match the forward output shape \(1, 2, 2, 2\)"):
        fl.max_pool2d_backward(randn(rng, 1, 2, 3, 3), x, idx, 2)
    with pytest.raises(ValueError, match=r"indices: shape \(1, 2, 2, 1\) does not match"):
        fl.max_pool2d_backward(y, x, idx[..., :1], 2)
    bad = idx.copy()
    bad[0, 1, 1, 1] = 25
    with pytest.raises(ValueError, match=r"indices: an index lies outside \[0, H\*W\) = \[0, 25\)"):
        fl.max_pool2d_backward(y, x, bad, 2)
    with pytest.raises(TypeError, match="indices: expected an integer dtype"):
        fl.max_pool2d_backward(y, x, idx.astype(np.float32), 2)


@pytest.mark.parametrize("op", ["max", "avg"])
def test_huge_kernels_answer_at_once(op, rng):
    """Kernels of 2^32 x 2^40 taps over an 8 x 3 map (ceil_mode gives one window): the loops
    stop at the input's edge, so this returns immediately (found by tools/fuzz_args.py as a hang)."""
    x = randn(rng, 1, 2, 8, 3)
    k = (2**32, 2**40)
    fn = fl.max_pool2d if op == "max" else fl.avg_pool2d
    kwargs = {} if op == "max" else {"count_include_pad": False}
    y = fn(x, k, ceil_mode=True, **kwargs)
    expected = x.max(axis=(2, 3), keepdims=True) if op == "max" else x.mean(axis=(2, 3), keepdims=True)
    assert_close(y, expected.astype(np.float64))
    # and padded so that the first window starts 2^31 - 1 rows above the input
    p = (2**31 - 1, 0)
    y = fn(x, (2**32, 3), stride=(2**32, 3), padding=p, ceil_mode=True, **kwargs)
    assert y.shape == (1, 2, 1, 1)
    assert_close(y, expected.astype(np.float64))

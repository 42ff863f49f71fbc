"""conv2d and conv_transpose2d: forward and backward vs the float64 NumPy reference, finite
differences, the tiling/threading paths of the C++ driver, edge shapes and every error the
spec names."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, numeric_grad, randn

import fastlayers as fl
from fastlayers import reference as R

# (N, C, H, W, K, R, S, stride, padding, dilation, groups, bias)
CONV_CASES = [
    pytest.param(2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, True, id="3x3-odd"),
    pytest.param(1, 4, 6, 5, 6, 3, 2, (2, 1), (1, 0), (1, 2), 2, True, id="asym-groups2-dilated"),
    pytest.param(2, 3, 1, 1, 4, 1, 1, 1, 0, 1, 1, True, id="1x1-image-1x1-kernel"),
    pytest.param(1, 2, 1, 1, 3, 3, 3, 1, 1, 1, 1, False, id="1x1-image-padded"),
    pytest.param(2, 3, 5, 4, 2, 7, 6, 1, 1, 1, 1, True, id="kernel-equals-padded-input"),
    pytest.param(2, 2, 9, 8, 3, 2, 2, 3, 0, 1, 1, True, id="stride-gt-kernel"),
    pytest.param(2, 6, 7, 7, 6, 3, 3, 1, 1, 1, 6, True, id="depthwise"),
    pytest.param(2, 4, 9, 8, 8, 3, 3, 2, 1, 1, 4, True, id="depthwise-mult2-stride2"),
    pytest.param(1, 3, 8, 9, 3, 5, 3, (1, 2), (2, 0), (2, 1), 3, False, id="depthwise-dilated"),
    pytest.param(2, 4, 12, 13, 4, 7, 7, 1, 3, 1, 4, True, id="depthwise-7x7"),
    pytest.param(1, 2, 10, 11, 4, 9, 9, 1, 4, 1, 2, True, id="depthwise-9x9-mult2"),
    pytest.param(1, 2, 66, 3, 2, 65, 1, 1, 0, 1, 2, True, id="depthwise-65-tall"),
    pytest.param(2, 3, 11, 12, 3, 3, 3, 2, 1, 1, 3, True, id="depthwise-stride2"),
    pytest.param(2, 6, 5, 6, 9, 3, 3, 1, 1, 1, 3, True, id="groups3"),
    pytest.param(2, 8, 6, 7, 4, 1, 1, 1, 0, 1, 1, True, id="pointwise"),
    pytest.param(2, 20, 7, 9, 100, 1, 1, 1, 0, 1, 1, True, id="pointwise-wide-packed"),
    pytest.param(2, 8, 6, 7, 4, 1, 1, 2, 0, 1, 2, False, id="pointwise-stride2-groups2"),
    pytest.param(2, 3, 6, 7, 4, 4, 3, 1, "same", 1, 1, True, id="same-even-kernel"),
    pytest.param(1, 2, 7, 6, 3, 3, 2, 1, "same", (2, 3), 1, True, id="same-dilated"),
    pytest.param(2, 3, 6, 7, 4, 3, 3, 2, "valid", 1, 1, True, id="valid"),
    pytest.param(3, 32, 33, 31, 16, 3, 3, 1, 1, 1, 1, True, id="row-tiles"),
    pytest.param(9, 16, 5, 5, 24, 3, 3, 1, 1, 1, 1, True, id="multi-image-tiles"),
    pytest.param(2, 600, 25, 23, 8, 1, 1, 1, 0, 1, 1, True, id="pointwise-row-tiles"),
    pytest.param(1, 48, 9, 9, 64, 3, 3, 1, 1, 1, 1, True, id="batch1-threaded-gemm"),
    # Stride 1 on wide maps takes the direct (padded-width, no im2col) kernel.
    pytest.param(1, 8, 30, 29, 7, 3, 3, 1, 1, 1, 1, True, id="direct-batch1"),
    # Batch 1 with more weights than image: the threads split the weight rows (with 2 threads).
    pytest.param(1, 48, 20, 20, 63, 3, 3, 1, 1, 1, 1, True, id="direct-batch1-row-split"),
    pytest.param(3, 6, 21, 27, 10, 5, 5, 1, 2, 1, 2, True, id="direct-5x5-groups2"),
    pytest.param(2, 4, 19, 25, 5, 3, 4, 1, "same", (2, 1), 1, True, id="direct-same-even-dilated"),
    pytest.param(2, 5, 23, 24, 13, 3, 3, 1, (0, 2), 1, 1, False, id="direct-asym-padding"),
    # Padded rows share their zeros (right padding = next row's left padding): padding wider
    # than the kernel reach (OW = W + 3 > W + pw), dilation reaching past the shared zeros.
    pytest.param(2, 3, 9, 30, 4, 2, 2, 1, (1, 2), 1, 1, True, id="direct-padding-wider-than-kernel"),
    pytest.param(1, 4, 12, 33, 5, 3, 3, 1, (2, 3), (1, 2), 1, True, id="direct-shared-padding-dilated"),
    # Strides > 1 on wide maps: the direct kernel on phase planes (stem-like 7x7 stride 2,
    # 5x5 stride 2 with dilation 3 (taps in both phases), different row and column strides).
    pytest.param(2, 3, 40, 70, 10, 7, 7, 2, 3, 1, 1, True, id="direct-stride2-stem"),
    pytest.param(1, 4, 12, 120, 6, 5, 5, 2, 2, 3, 2, True, id="direct-stride2-dilated-groups2"),
    pytest.param(2, 5, 21, 40, 7, 3, 3, (2, 1), 1, 1, 1, False, id="direct-stride-2x1"),
    # Batch 1 on small maps (forward_few: the image's columns packed by all threads, weights
    # read in place): several K blocks of 256 taps (bias on the last), an M edge (13 = 2*6+1
    # rows), 1 column past a 16-column panel (7x7), two groups, three images, and a column
    # matrix over the 4 MiB pack budget (two column tiles).
    pytest.param(1, 40, 7, 7, 13, 3, 3, 1, 1, 1, 1, True, id="few-kblocks-medge-7x7"),
    pytest.param(1, 64, 7, 7, 32, 3, 3, 1, 1, 1, 2, True, id="few-groups2-7x7"),
    pytest.param(1, 64, 14, 14, 32, 3, 3, 1, 1, 1, 2, True, id="direct-batch1-groups2-14x14"),
    pytest.param(3, 12, 6, 5, 7, 3, 3, 1, 1, 1, 1, True, id="few-three-images"),
    pytest.param(1, 72, 90, 90, 8, 3, 3, 2, 1, 1, 1, True, id="few-two-column-tiles"),
    # Depthwise, stride 1 with OW == W: the flat path (masked row ends), 3x3, 5x5 dilated,
    # an even kernel with asymmetric "same" padding, 1-column images, a general 4x2 kernel.
    pytest.param(2, 5, 14, 14, 5, 3, 3, 1, 1, 1, 5, True, id="depthwise-flat-14x14"),
    pytest.param(1, 3, 9, 11, 3, 5, 5, 1, "same", 2, 3, False, id="depthwise-flat-5x5-dilated"),
    pytest.param(2, 4, 6, 7, 8, 4, 4, 1, "same", 1, 4, True, id="depthwise-flat-even-same"),
    pytest.param(1, 3, 9, 1, 3, 3, 3, 1, 1, 1, 3, True, id="depthwise-flat-1-column"),
    pytest.param(1, 2, 5, 8, 4, 4, 3, 1, (1, 1), 1, 2, True, id="depthwise-flat-4x3-mult2"),
]


def _conv_inputs(rng, n, c, h, w, k, kh, kw, groups, bias):
    x = randn(rng, n, c, h, w)
    weight = randn(rng, k, c // groups, kh, kw)
    b = randn(rng, k) if bias else None
    return x, weight, b


@pytest.mark.parametrize("n,c,h,w,k,kh,kw,stride,padding,dilation,groups,bias", CONV_CASES)
def test_conv2d_forward_backward(rng, n, c, h, w, k, kh, kw, stride, padding, dilation, groups, bias):
    x, weight, b = _conv_inputs(rng, n, c, h, w, k, kh, kw, groups, bias)
    args = (stride, padding, dilation, groups)
    y = fl.conv2d(x, weight, b, *args)
    assert y.flags.c_contiguous
    assert_close(y, R.conv2d(*f64(x, weight), f64(b), *args))
    g = randn(rng, *y.shape)
    grads = fl.conv2d_backward(g, x, weight, b, *args)
    expected = R.conv2d_backward(f64(g), *f64(x, weight), f64(b), *args)
    for name, got, want in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected):
        if want is None:
            assert got is None
        else:
            assert_close(got, want, name=name)


@pytest.mark.parametrize("case", [
    dict(stride=1, padding=1, dilation=1, groups=1),
    dict(stride=2, padding=(0, 1), dilation=(1, 2), groups=2),
    dict(stride=1, padding="same", dilation=1, groups=4),
])
def test_conv2d_finite_differences(rng, case):
    x, weight, b = _conv_inputs(rng, 2, 4, 6, 5, 4, 3, 2, case["groups"], True)
    check_directional(lambda x, w, b: fl.conv2d(x, w, b, **case), [x, weight, b],
                      lambda g, x, w, b: fl.conv2d_backward(g, x, w, b, **case), rng)


def test_conv2d_reference_backward_matches_numeric(rng):
    x, weight, b = f64(*_conv_inputs(rng, 1, 2, 4, 3, 2, 2, 2, 1, True))
    g = rng.standard_normal(R.conv2d(x, weight, b, 2, 1).shape)
    gx, gw, gb = R.conv2d_backward(g, x, weight, b, 2, 1)
    np.testing.assert_allclose(gx, numeric_grad(lambda v: np.sum(R.conv2d(v, weight, b, 2, 1) * g), x), atol=1e-6)
    np.testing.assert_allclose(gw, numeric_grad(lambda v: np.sum(R.conv2d(x, v, b, 2, 1) * g), weight), atol=1e-6)
    np.testing.assert_allclose(gb, numeric_grad(lambda v: np.sum(R.conv2d(x, weight, v, 2, 1) * g), b), atol=1e-6)


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_conv2d_every_available_isa(rng, isa):
    """Each ISA's kernels in turn (set_isa clamps to what the CPU has), one shape per forward
    path, with a bias and more than one K block of 256 taps: batch 1 (gathered and run-packed
    columns, narrow last panel), the direct kernel (stride 1, phase planes), pointwise,
    multi-image tiles, depthwise (flat and padded planes)."""
    from fastlayers import _core

    cases = [
        (1, 40, 7, 7, 13, 3, 3, 1, 1, 1, 1),      # batch 1, gathered, 49 = 3*16 + 1 columns
        (1, 36, 20, 21, 14, 3, 3, 1, 1, 1, 1),    # batch 1, direct
        (1, 40, 30, 37, 9, 3, 3, 2, 1, 1, 1),     # batch 1, run-packed (OW = 19)
        (2, 30, 12, 60, 10, 7, 7, 2, 3, 1, 1),    # phase planes
        (2, 300, 5, 6, 20, 1, 1, 1, 0, 1, 1),     # pointwise
        (9, 30, 5, 5, 12, 3, 3, 1, 1, 1, 1),      # multi-image tiles
        (2, 6, 9, 11, 6, 3, 3, 1, 1, 1, 6),       # depthwise, flat
        (2, 6, 9, 11, 6, 3, 3, 2, 1, 1, 6),       # depthwise, stride 2
    ]
    before = _core.cpu_isa()
    try:
        used = _core.set_isa(isa)
        for n, c, h, w, k, kh, kw, stride, padding, dilation, groups in cases:
            x, weight, b = _conv_inputs(rng, n, c, h, w, k, kh, kw, groups, True)
            args = (stride, padding, dilation, groups)
            name = f"isa {used}, x {x.shape}, weight {weight.shape}"
            assert_close(fl.conv2d(x, weight, b, *args), R.conv2d(*f64(x, weight, b), *args), name=name)
    finally:
        _core.set_isa(before)


def test_depthwise_flat_edges_do_not_leak_inf():
    # The flat depthwise path reads across row ends and masks the wrapped lanes: an Inf in
    # the column next to a row end must not reach the outputs of the other row (0 * Inf).
    x = np.zeros((1, 2, 6, 9), np.float32)
    x[:, :, :, 0] = np.inf
    weight = np.ones((2, 1, 3, 3), np.float32)
    y = fl.conv2d(x, weight, None, 1, 1, 1, 2)
    want = R.conv2d(f64(x), f64(weight), None, 1, 1, 1, 2)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(want))
    assert np.isfinite(y[:, :, :, 2:]).all()


def test_conv2d_noncontiguous(rng):
    x = randn(rng, 5, 7, 4, 2).transpose(3, 2, 0, 1)[:, :, ::2]  # (2, 4, 3, 7), strided view
    weight = randn(rng, 3, 3, 4, 5).transpose(3, 2, 1, 0)  # (5, 4, 3, 3)
    b = randn(rng, 10)[::2]
    assert not x.flags.c_contiguous and not weight.flags.c_contiguous
    y = fl.conv2d(x, weight, b, 1, 1)
    assert_close(y, R.conv2d(*f64(x, weight, b), 1, 1))
    g = randn(rng, *y.shape[::-1]).transpose(3, 2, 1, 0)
    for got, want in zip(fl.conv2d_backward(g, x, weight, b, 1, 1), R.conv2d_backward(*f64(g, x, weight, b), 1, 1)):
        assert_close(got, want)


def test_conv2d_zero_batch(rng):
    x = np.zeros((0, 3, 5, 5), np.float32)
    weight, b = randn(rng, 4, 3, 3, 3), randn(rng, 4)
    y = fl.conv2d(x, weight, b, padding=1)
    assert y.shape == (0, 4, 5, 5) and y.dtype == np.float32
    gx, gw, gb = fl.conv2d_backward(y, x, weight, b, padding=1)
    assert gx.shape == x.shape
    np.testing.assert_array_equal(gw, np.zeros_like(weight))
    np.testing.assert_array_equal(gb, np.zeros_like(b))


def test_conv2d_threads_agree(rng):
    x, weight, b = _conv_inputs(rng, 4, 8, 12, 11, 8, 3, 3, 1, True)
    old = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        one = [fl.conv2d(x, weight, b, 1, 1), *fl.conv2d_backward(np.ones((4, 8, 12, 11), np.float32), x, weight, b, 1, 1)]
        fl.set_num_threads(3)
        three = [fl.conv2d(x, weight, b, 1, 1), *fl.conv2d_backward(np.ones((4, 8, 12, 11), np.float32), x, weight, b, 1, 1)]
    finally:
        fl.set_num_threads(old)
    for a, c in zip(one, three):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,c,h,w,k", [
    # Batch 1 splits the column packing and the weight rows over the threads (forward_few):
    # uneven splits of 4 column panels and 11 row panels (3.5 MFLOP: 3 threads).
    pytest.param(1, 48, 7, 9, 64, id="batch1-forward-few"),
    # Winograd: the transforms split by channels, the 16 GEMMs over the threads.
    pytest.param(2, 32, 15, 14, 32, id="winograd"),
])
def test_conv2d_threads_agree_per_path(rng, n, c, h, w, k):
    """1, 2 and 3 threads agree, and match the reference."""
    x, weight, b = _conv_inputs(rng, n, c, h, w, k, 3, 3, 1, True)
    old = fl.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            fl.set_num_threads(t)
            outs.append(fl.conv2d(x, weight, b, 1, 1))
    finally:
        fl.set_num_threads(old)
    for y in outs[1:]:
        np.testing.assert_allclose(y, outs[0], rtol=1e-5, atol=1e-5)
    assert_close(outs[0], R.conv2d(*f64(x, weight, b), 1, 1))


# (N, C_in, H, W, C_out, R, S, stride, padding, output_padding, groups, dilation, bias)
TRANSPOSE_CASES = [
    pytest.param(2, 4, 5, 4, 6, 3, 2, (2, 3), (1, 0), (1, 2), 2, 1, True, id="asym-groups2-outpad"),
    pytest.param(1, 3, 3, 3, 3, 3, 3, 1, 2, 0, 3, 2, True, id="depthwise-dilated"),
    pytest.param(2, 3, 4, 4, 2, 4, 4, 2, 1, 0, 1, 1, False, id="dcgan-4x4-s2"),
    pytest.param(2, 2, 1, 1, 3, 4, 4, 1, 0, 0, 1, 1, True, id="1x1-image"),
    pytest.param(2, 5, 4, 3, 4, 1, 1, 1, 0, 0, 1, 1, True, id="pointwise"),
    pytest.param(1, 2, 3, 5, 3, 2, 2, 3, 0, 2, 1, 1, True, id="stride-gt-kernel-outpad"),
    pytest.param(3, 16, 9, 9, 8, 3, 3, 2, 1, 1, 1, 1, True, id="batched"),
]


@pytest.mark.parametrize("n,ci,h,w,co,kh,kw,stride,padding,output_padding,groups,dilation,bias", TRANSPOSE_CASES)
def test_conv_transpose2d_forward_backward(rng, n, ci, h, w, co, kh, kw, stride, padding, output_padding, groups,
                                           dilation, bias):
    x = randn(rng, n, ci, h, w)
    weight = randn(rng, ci, co // groups, kh, kw)
    b = randn(rng, co) if bias else None
    args = (stride, padding, output_padding, groups, dilation)
    y = fl.conv_transpose2d(x, weight, b, *args)
    assert_close(y, R.conv_transpose2d(*f64(x, weight), f64(b), *args))
    g = randn(rng, *y.shape)
    grads = fl.conv_transpose2d_backward(g, x, weight, b, *args)
    expected = R.conv_transpose2d_backward(f64(g), *f64(x, weight), f64(b), *args)
    for name, got, want in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected):
        if want is None:
            assert got is None
        else:
            assert_close(got, want, name=name)


def test_conv_transpose2d_finite_differences(rng):
    x, weight, b = randn(rng, 2, 4, 3, 4), randn(rng, 4, 3, 3, 2), randn(rng, 6)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    check_directional(lambda x, w, b: fl.conv_transpose2d(x, w, b, **kw), [x, weight, b],
                      lambda g, x, w, b: fl.conv_transpose2d_backward(g, x, w, b, **kw), rng)


def test_conv_transpose2d_reference_backward_matches_numeric(rng):
    x, weight = f64(randn(rng, 1, 2, 3, 2), randn(rng, 2, 2, 2, 3))
    kw = dict(stride=2, padding=1, output_padding=1, dilation=1)
    g = rng.standard_normal(R.conv_transpose2d(x, weight, **kw).shape)
    gx, gw, _ = R.conv_transpose2d_backward(g, x, weight, **kw)
    np.testing.assert_allclose(gx, numeric_grad(lambda v: np.sum(R.conv_transpose2d(v, weight, **kw) * g), x), atol=1e-6)
    np.testing.assert_allclose(gw, numeric_grad(lambda v: np.sum(R.conv_transpose2d(x, v, **kw) * g), weight), atol=1e-6)


def test_conv_transpose2d_zero_batch_and_noncontiguous(rng):
    weight = randn(rng, 3, 2, 3, 3)
    y = fl.conv_transpose2d(np.zeros((0, 3, 4, 4), np.float32), weight, stride=2)
    assert y.shape == (0, 2, 9, 9)
    gx, gw, gb = fl.conv_transpose2d_backward(y, np.zeros((0, 3, 4, 4), np.float32), weight, stride=2)
    assert gx.shape == (0, 3, 4, 4) and gb is None
    np.testing.assert_array_equal(gw, 0)
    x = randn(rng, 4, 4, 3, 2).transpose(3, 2, 1, 0)  # (2, 3, 4, 4)
    assert_close(fl.conv_transpose2d(x, weight, stride=2), R.conv_transpose2d(*f64(x, weight), stride=2))


@pytest.mark.torch
def test_conv_matches_torch(rng):
    import torch
    import torch.nn.functional as TF

    x, weight, b = _conv_inputs(rng, 2, 6, 9, 8, 4, 3, 4, 2, True)
    y = fl.conv2d(x, weight, b, 1, "same", 2, 2)
    ty = TF.conv2d(*map(torch.from_numpy, (x, weight, b)), 1, "same", 2, 2)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-4, atol=1e-4)
    wt = randn(rng, 6, 2, 3, 3)
    y = fl.conv_transpose2d(x, wt, None, 2, 1, 1, 3, 1)
    ty = TF.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(wt), None, 2, 1, 1, 3, 1)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.torch
def test_conv_backward_matches_torch(rng):
    import torch

    x, weight, b = _conv_inputs(rng, 2, 6, 9, 31, 6, 3, 3, 3, True)
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, weight, b))
    ty = torch.nn.functional.conv2d(tx, tw, tb, 1, 1, 1, 3)
    g = randn(rng, *ty.shape)
    ty.backward(torch.from_numpy(g))
    for got, want in zip(fl.conv2d_backward(g, x, weight, b, 1, 1, 1, 3), (tx.grad, tw.grad, tb.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


# ---- errors ---------------------------------------------------------------------------------

def test_conv2d_errors(rng):
    x, w = randn(rng, 1, 6, 5, 5), randn(rng, 4, 3, 3, 3)
    with pytest.raises(ValueError, match=r"groups: input channels C=6 .*\(1, 6, 5, 5\).*groups=4"):
        fl.conv2d(x, randn(rng, 4, 1, 3, 3), groups=4)
    with pytest.raises(ValueError, match=r"groups: output channels K=3 .*\(3, 3, 3, 3\).*groups=2"):
        fl.conv2d(x, randn(rng, 3, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"weight: shape \(4, 3, 3, 3\) expects 3 input channels .*C=6"):
        fl.conv2d(x, w)
    with pytest.raises(ValueError, match=r"weight: kernel 7x7 .*larger than the padded input 5x5"):
        fl.conv2d(x, randn(rng, 2, 6, 7, 7))
    with pytest.raises(ValueError, match=r"weight: kernel 3x3 \(dilated to 5x5\) is larger than the padded input 4x4"):
        fl.conv2d(randn(rng, 1, 6, 4, 4), randn(rng, 2, 6, 3, 3), dilation=2)
    with pytest.raises(ValueError, match="stride: must be positive"):
        fl.conv2d(x, w, stride=0, groups=2)
    with pytest.raises(ValueError, match="stride: must be positive"):
        fl.conv2d(x, w, stride=(1, -1), groups=2)
    with pytest.raises(ValueError, match="dilation: must be positive"):
        fl.conv2d(x, w, dilation=0, groups=2)
    with pytest.raises(ValueError, match="padding: must be >= 0"):
        fl.conv2d(x, w, padding=-1, groups=2)
    with pytest.raises(ValueError, match="padding: 'same' requires stride 1"):
        fl.conv2d(x, w, stride=2, padding="same", groups=2)
    with pytest.raises(ValueError, match="padding: expected an int, a pair, 'same' or 'valid'"):
        fl.conv2d(x, w, padding="full", groups=2)
    with pytest.raises(ValueError, match="groups: must be >= 1"):
        fl.conv2d(x, w, groups=0)
    with pytest.raises(ValueError, match=r"bias: shape \(3,\) does not match the 4"):
        fl.conv2d(x, w, randn(rng, 3), groups=2)
    with pytest.raises(ValueError, match=r"x: expected a 4-D array, got shape \(6, 5, 5\)"):
        fl.conv2d(x[0], w, groups=2)
    with pytest.raises(ValueError, match=r"x: channels and spatial sizes must be >= 1"):
        fl.conv2d(np.zeros((1, 6, 0, 5), np.float32), w, groups=2)
    with pytest.raises(TypeError, match="x: dtype float64 is not supported.*astype"):
        fl.conv2d(x.astype(np.float64), w, groups=2)
    with pytest.raises(TypeError, match="stride: expected an int or a pair"):
        fl.conv2d(x, w, stride=1.5, groups=2)
    with pytest.raises(ValueError, match=r"grad_out: shape \(1, 4, 4, 4\) does not match conv2d's output shape \(1, 4, 3, 3\)"):
        fl.conv2d_backward(randn(rng, 1, 4, 4, 4), x, w, groups=2)


def test_conv_transpose2d_errors(rng):
    x = randn(rng, 1, 4, 3, 3)
    with pytest.raises(ValueError, match=r"weight: shape \(3, 2, 3, 3\) expects 3 input channels .*C=4"):
        fl.conv_transpose2d(x, randn(rng, 3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"groups: input channels C=4 .*groups=3"):
        fl.conv_transpose2d(x, randn(rng, 4, 2, 3, 3), groups=3)
    with pytest.raises(ValueError, match=r"padding: output size -1x-1 <= 0"):
        fl.conv_transpose2d(x, randn(rng, 4, 2, 1, 1), padding=2)
    with pytest.raises(ValueError, match="output_padding: .* must be smaller than stride or dilation"):
        fl.conv_transpose2d(x, randn(rng, 4, 2, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="stride: must be positive"):
        fl.conv_transpose2d(x, randn(rng, 4, 2, 3, 3), stride=0)
    with pytest.raises(ValueError, match="padding: conv_transpose2d takes an int or a pair"):
        fl.conv_transpose2d(x, randn(rng, 4, 2, 3, 3), padding="same")
    with pytest.raises(ValueError, match=r"bias: shape \(4,\) does not match the 2"):
        fl.conv_transpose2d(x, randn(rng, 4, 2, 3, 3), randn(rng, 4))
    with pytest.raises(ValueError, match=r"grad_out: shape .* does not match conv_transpose2d's output shape \(1, 2, 5, 5\)"):
        fl.conv_transpose2d_backward(randn(rng, 1, 2, 4, 4), x, randn(rng, 4, 2, 3, 3))


@pytest.mark.parametrize("batch", [1, 4])
def test_conv_transpose2d_inf_weight_reaches_only_its_outputs(rng, batch):
    """An Inf weight: conv_transpose2d scatters x * w, so only the outputs that weight reaches
    are non-finite; the stride-1 route through the forward (direct) kernels would multiply
    the padding's zeros by it (0 * Inf = NaN everywhere along the border), so it is not taken."""
    x = randn(rng, batch, 3, 10, 12)
    weight = randn(rng, 3, 4, 3, 3)
    weight[1, 2, 0, 0] = np.inf
    got = fl.conv_transpose2d(x, weight)
    with np.errstate(invalid="ignore"):
        want = R.conv_transpose2d(*f64(x, weight))
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
    finite = np.isfinite(want)
    assert finite.sum() > got.size // 2  # the Inf reaches channel 2 only
    assert_close(np.where(finite, got, 0), np.where(finite, want, 0))


# Winograd F(2x2, 3x3) (csrc/conv/winograd.cpp): 3x3, stride 1, dilation 1, one group, >= 32
# channels in and out, >= 196 outputs per image. Odd output sizes cut the last row and
# column of 2x2 tiles; every padding; batches 1 and 3; an image in two bands of tile rows;
# both builds of the transforms. The
# tolerance is the suite's usual one (assert_close: 1e-4 relative): the transforms only add
# and subtract up to 4 terms and halve exactly (measured: <= 5e-7 of max|y| over 80 random
# shapes).
WINOGRAD_CASES = [
    pytest.param(1, 32, 14, 14, 32, 1, True, id="14x14-padding1"),
    pytest.param(3, 33, 15, 17, 40, 1, False, id="odd-sizes-batch3"),
    pytest.param(1, 48, 16, 19, 35, 0, True, id="valid-odd-width"),
    pytest.param(2, 32, 13, 20, 32, 2, True, id="padding2-wider-than-reach"),
    pytest.param(1, 40, 18, 15, 33, (0, 1), True, id="asymmetric-padding"),
    pytest.param(1, 32, 20, 21, 32, "same", True, id="same"),
    # 50 x 49 = 2450 tiles of 32 channels: V and M over 4 MiB, so two bands of tile rows.
    pytest.param(1, 32, 99, 97, 32, 1, True, id="two-bands"),
]


def _is_winograd(x, weight, y, padding):
    from fastlayers import _core

    ph, pw = (1, 1) if padding == "same" else (padding, padding) if isinstance(padding, int) else padding
    return _core.conv2d_forward_is_winograd(x, weight, y, 1, 1, ph, pw, 1, 1, 1)


@pytest.mark.parametrize("isa", ["generic", "avx2"])
@pytest.mark.parametrize("n,c,h,w,k,padding,bias", WINOGRAD_CASES)
def test_conv2d_winograd_forward_backward(rng, n, c, h, w, k, padding, bias, isa):
    from fastlayers import _core

    x, weight, b = _conv_inputs(rng, n, c, h, w, k, 3, 3, 1, bias)
    before = _core.cpu_isa()
    try:
        _core.set_isa(isa)
        y = fl.conv2d(x, weight, b, 1, padding)
        assert _is_winograd(x, weight, y, padding)
        assert_close(y, R.conv2d(*f64(x, weight), f64(b), 1, padding))
        # The data gradient of a stride-1 conv runs as a forward conv of grad_out (Winograd too).
        g = randn(rng, *y.shape)
        grads = fl.conv2d_backward(g, x, weight, b, 1, padding)
        expected = R.conv2d_backward(f64(g), *f64(x, weight), f64(b), 1, padding)
        for name, got, want in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected):
            if want is not None:
                assert_close(got, want, name=name)
    finally:
        _core.set_isa(before)


def test_conv2d_winograd_finite_differences(rng):
    x, weight, b = _conv_inputs(rng, 2, 32, 15, 14, 32, 3, 3, 1, True)
    assert _is_winograd(x, weight, np.empty((2, 32, 15, 14), np.float32), 1)
    check_directional(lambda x, w, b: fl.conv2d(x, w, b, 1, 1), [x, weight, b],
                      lambda g, x, w, b: fl.conv2d_backward(g, x, w, b, 1, 1), rng)


@pytest.mark.parametrize("where", ["input-inf", "input-nan", "weight-nan"])
def test_conv2d_winograd_non_finite_reaches_only_its_outputs(rng, where):
    """The transforms mix the 16 inputs of a tile, so one Inf would turn the tile's other
    outputs into NaN (Inf - Inf) where the direct sum leaves them finite: such a call is
    computed again the direct way, and the non-finite outputs are exactly the reference's."""
    x, weight, _ = _conv_inputs(rng, 1, 40, 20, 21, 36, 3, 3, 1, False)
    if where == "input-inf":
        x[0, 3, 7, 8] = np.inf
    elif where == "input-nan":
        x[0, 5, 0, 20] = np.nan
    else:
        weight[4, 2, 1, 1] = np.nan
    y = fl.conv2d(x, weight, None, 1, 1)
    assert _is_winograd(x, weight, y, 1)
    with np.errstate(invalid="ignore"):
        want = R.conv2d(*f64(x, weight), None, 1, 1)
    np.testing.assert_array_equal(np.isfinite(y), np.isfinite(want))
    finite = np.isfinite(want)
    assert finite.sum() > 0
    assert_close(np.where(finite, y, 0), np.where(finite, want, 0))


def test_conv_transpose2d_through_winograd(rng):
    # conv_transpose2d with stride 1 runs as a forward conv with flipped weights (Winograd here).
    x, weight, b = randn(rng, 2, 32, 14, 15), randn(rng, 32, 34, 3, 3), randn(rng, 34)
    assert_close(fl.conv_transpose2d(x, weight, b, 1, 1), R.conv_transpose2d(*f64(x, weight, b), 1, 1))

"""CUDA convolution and recurrent kernels (issue 8: csrc/conv/conv.cu, csrc/rnn/rnn.cu,
python/fastlayers/_cuda_conv_rnn.py) against the float64 NumPy references on host copies.

The parametrizations are the CPU tests' own (tests/test_conv.py CONV_CASES and TRANSPOSE_CASES,
tests/test_rnn.py SEQ_CASES), run on CuPy arrays through the public functions, plus shapes
that reach the GPU kernels' own paths: several 128x128 tiles, float4 loads and stores, the
split-K weight gradient, the batch chunks of the depthwise kernels, the 8- and 32-row batch
blocks of the recurrent step kernel. Every test is marked `gpu` (skipped without a GPU, CuPy
and a CUDA build) and imports CuPy in its body only.

Tolerances: conftest.assert_close (rtol 1e-4 against float64, atol 1e-5 of the largest
magnitude) everywhere, the same as the CPU tests.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import assert_close, f64, randn
from test_conv import CONV_CASES, TRANSPOSE_CASES
from test_rnn import SEQ_CASES, make_params, p64, states

import fastlayers as fl
from fastlayers import _core
from fastlayers import reference as R

pytestmark = pytest.mark.gpu


@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if os.environ.get("FASTLAYERS_NO_CUPY_POOL") == "1":
        cupy.cuda.set_allocator(None)  # under compute-sanitizer: one allocation per array
    else:
        # Poison the pool so that an element a kernel forgets to write reads back as NaN.
        junk = cupy.full(1 << 24, np.nan, dtype=np.float32)
        del junk
    yield cupy
    cupy.cuda.get_current_stream().synchronize()


def _host(a):
    import cupy

    return None if a is None else cupy.asnumpy(a)


def _dev(cp, *arrays):
    out = tuple(None if a is None else cp.asarray(a) for a in arrays)
    return out if len(out) > 1 else out[0]


def _is_device(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _check(got, want, name):
    if want is None:
        assert got is None, f"{name}: expected None"
        return
    assert _is_device(got), f"{name}: expected a CuPy array, got {type(got).__name__}"
    assert got.flags.c_contiguous, f"{name}: not C-contiguous"
    assert_close(_host(got), want, name=name)


def _tree(got, want, name):
    if isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{name}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            _tree(g, w, f"{name}[{i}]")
    else:
        _check(got, want, name)


# ---- conv2d ----------------------------------------------------------------------------------
# Beyond the CPU cases: several tiles in M and N, float4 paths (OH*OW % 4 == 0, C*R*S % 4 == 0),
# the split-K weight gradient (n*OH*OW >> 1024), stride 2 on the data gradient, depthwise with
# the batch split of its weight gradient.
GPU_CONV_CASES = [
    pytest.param(4, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1, True, id="resnet-3x3-64"),
    pytest.param(2, 32, 16, 16, 130, 3, 3, 2, 1, 1, 1, False, id="3x3-stride2-k130"),
    pytest.param(3, 132, 7, 7, 20, 1, 1, 1, 0, 1, 1, True, id="1x1-c132-odd-plane"),
    pytest.param(8, 16, 32, 32, 24, 3, 3, 1, 1, 1, 1, True, id="split-k-weight-grad"),
    pytest.param(16, 48, 12, 12, 48, 3, 3, 1, 1, 1, 48, True, id="depthwise-batch-split"),
    pytest.param(2, 24, 13, 11, 48, 5, 5, 2, 2, 1, 24, True, id="depthwise-mult2-5x5-s2"),
    pytest.param(2, 8, 10, 10, 16, 3, 3, 1, 2, 2, 4, True, id="groups4-dilated"),
]


@pytest.mark.parametrize("n,c,h,w,k,kh,kw,stride,padding,dilation,groups,bias", CONV_CASES + GPU_CONV_CASES)
def test_conv2d(cp, rng, n, c, h, w, k, kh, kw, stride, padding, dilation, groups, bias):
    x = randn(rng, n, c, h, w)
    weight = randn(rng, k, c // groups, kh, kw)
    b = randn(rng, k) if bias else None
    args = (stride, padding, dilation, groups)
    dx, dw, db = _dev(cp, x, weight, b)
    y = fl.conv2d(dx, dw, db, *args)
    _check(y, R.conv2d(*f64(x, weight), f64(b), *args), "y")
    g = randn(rng, *y.shape)
    grads = fl.conv2d_backward(cp.asarray(g), dx, dw, db, *args)
    expected = R.conv2d_backward(f64(g), *f64(x, weight), f64(b), *args)
    for name, got, want in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected):
        _check(got, want, name)


def test_conv2d_depthwise_takes_its_kernel():
    if not hasattr(_core, "cuda_conv2d_path"):
        pytest.skip("no CUDA build")
    dims = lambda c, k, groups: [2, c, 8, 8, k, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, groups]  # noqa: E731
    assert _core.cuda_conv2d_path(dims(6, 6, 6)) == 1
    assert _core.cuda_conv2d_path(dims(6, 12, 6)) == 1
    assert _core.cuda_conv2d_path(dims(6, 6, 3)) == 0
    assert _core.cuda_conv2d_path(dims(1, 4, 1)) == 0


@pytest.mark.parametrize("n,c,h,w,k,padding,bias", [
    (2, 3, 7, 9, 5, 1, True), (1, 16, 8, 8, 32, 1, False), (3, 8, 5, 6, 4, 0, True), (2, 4, 6, 7, 6, 2, True),
    (2, 5, 6, 7, 3, "same", True), (4, 64, 14, 14, 64, 1, True),
])
def test_conv2d_winograd(cp, rng, monkeypatch, n, c, h, w, k, padding, bias):
    """The opt-in Winograd F(2x2, 3x3) forward (FASTLAYERS_CUDA_CONV_ALGO=winograd): odd output
    sizes (partial 2x2 tiles), padding 0/1/2 and 'same'."""
    monkeypatch.setenv("FASTLAYERS_CUDA_CONV_ALGO", "winograd")
    if hasattr(_core, "cuda_conv2d_path"):
        assert _core.cuda_conv2d_path([n, c, h, w, k, h, w, 3, 3, 1, 1, 1, 1, 1, 1, 1]) == 2
    x, weight = randn(rng, n, c, h, w), randn(rng, k, c, 3, 3)
    b = randn(rng, k) if bias else None
    y = fl.conv2d(*_dev(cp, x, weight, b), 1, padding)
    _check(y, R.conv2d(*f64(x, weight), f64(b), 1, padding), "y")


def test_conv2d_noncontiguous_and_zero_batch(cp, rng):
    x = randn(rng, 2, 6, 9, 10)
    weight = randn(rng, 4, 3, 3, 3)
    b = randn(rng, 4)
    xt = cp.asarray(x.transpose(0, 1, 3, 2).copy()).transpose(0, 1, 3, 2)  # a non-contiguous view
    wt = cp.asarray(weight[:, :, ::-1].copy())[:, :, ::-1]
    assert not xt.flags.c_contiguous and not wt.flags.c_contiguous
    y = fl.conv2d(xt, wt, cp.asarray(b), 1, 1, 1, 2)
    _check(y, R.conv2d(*f64(x, weight), f64(b), 1, 1, 1, 2), "y")
    g = randn(rng, *y.shape)
    gs = fl.conv2d_backward(cp.asarray(g), xt, wt, cp.asarray(b), 1, 1, 1, 2)
    for name, got, want in zip("xwb", gs, R.conv2d_backward(f64(g), *f64(x, weight), f64(b), 1, 1, 1, 2)):
        _check(got, want, name)
    # empty batch: empty output, zero weight and bias gradients
    x0 = cp.zeros((0, 6, 9, 10), np.float32)
    y0 = fl.conv2d(x0, wt, None, 1, 1, 1, 2)
    assert y0.shape == (0, 4, 9, 10)
    gx0, gw0, gb0 = fl.conv2d_backward(cp.zeros(y0.shape, np.float32), x0, wt, cp.asarray(b), 1, 1, 1, 2)
    assert gx0.shape == x0.shape
    assert float(cp.abs(gw0).max()) == 0.0 and float(cp.abs(gb0).max()) == 0.0


def test_conv2d_errors_match_the_cpu_path(cp, rng):
    x = cp.asarray(randn(rng, 1, 4, 5, 5))
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        fl.conv2d(x, cp.asarray(randn(rng, 3, 1, 3, 3)), groups=3)
    with pytest.raises(TypeError, match="different kinds"):
        fl.conv2d(x, randn(rng, 2, 4, 3, 3))
    with pytest.raises(TypeError, match="float64"):
        fl.conv2d(x.astype(np.float64), cp.asarray(randn(rng, 2, 4, 3, 3)))
    with pytest.raises(ValueError, match="grad_out"):
        fl.conv2d_backward(cp.zeros((1, 2, 4, 4), np.float32), x, cp.asarray(randn(rng, 2, 4, 3, 3)))


# ---- conv_transpose2d --------------------------------------------------------------------------
GPU_TRANSPOSE_CASES = [
    pytest.param(4, 64, 8, 8, 32, 4, 4, 2, 1, 0, 1, 1, True, id="dcgan-64-4x4-s2"),
    pytest.param(2, 16, 7, 7, 16, 3, 3, 2, 1, 1, 16, 1, True, id="depthwise-s2-outpad"),
    pytest.param(1, 3, 4, 5, 4, 3, 3, 1, 0, 1, 1, 2, False, id="outpad-ge-stride-dilated"),
]


@pytest.mark.parametrize("n,ci,h,w,co,kh,kw,stride,padding,output_padding,groups,dilation,bias",
                         TRANSPOSE_CASES + GPU_TRANSPOSE_CASES)
def test_conv_transpose2d(cp, rng, n, ci, h, w, co, kh, kw, stride, padding, output_padding, groups, dilation, bias):
    x = randn(rng, n, ci, h, w)
    weight = randn(rng, ci, co // groups, kh, kw)
    b = randn(rng, co) if bias else None
    args = (stride, padding, output_padding, groups, dilation)
    dx, dw, db = _dev(cp, x, weight, b)
    y = fl.conv_transpose2d(dx, dw, db, *args)
    _check(y, R.conv_transpose2d(*f64(x, weight), f64(b), *args), "y")
    g = randn(rng, *y.shape)
    grads = fl.conv_transpose2d_backward(cp.asarray(g), dx, dw, db, *args)
    expected = R.conv_transpose2d_backward(f64(g), *f64(x, weight), f64(b), *args)
    for name, got, want in zip(("grad_x", "grad_weight", "grad_bias"), grads, expected):
        _check(got, want, name)


# ---- LSTM / RNN --------------------------------------------------------------------------------
# Beyond the CPU cases: H % 4 == 0 (float4 loads), B > 8 (several batch blocks), H large enough
# that the step kernel takes its 32-row batch blocks (pick_bpt: >= one block per SM), multi-layer
# bidirectional batch-first with a ragged H.
GPU_SEQ_CASES = [
    (4, 9, 16, 32, 1, False, False, True),
    (3, 33, 12, 1100, 1, False, False, True),
    (5, 6, 8, 21, 3, True, True, True),
]


def _to_dev_params(cp, params):
    return [tuple(None if a is None else cp.asarray(a) for a in p) for p in params]


@pytest.mark.parametrize("T,B,I,H,L,bi,bf,given", SEQ_CASES + GPU_SEQ_CASES)
def test_lstm(cp, rng, T, B, I, H, L, bi, bf, given):
    dirs = 2 if bi else 1
    params = make_params(rng, 4, I, H, L, dirs)
    x = randn(rng, *((B, T, I) if bf else (T, B, I)))
    h0, c0 = states(rng, given, L * dirs, B, H), states(rng, given, L * dirs, B, H)
    kw = {"num_layers": L, "bidirectional": bi, "batch_first": bf}
    dparams = _to_dev_params(cp, params)
    dx, dh0, dc0 = _dev(cp, x, h0, c0)
    out, (h_n, c_n), reserve = fl.lstm(dx, dparams, dh0, dc0, training=True, **kw)
    r_out, (r_h, r_c), r_res = R.lstm(f64(x), p64(params), f64(h0), f64(c0), training=True, **kw)
    _tree([out, h_n, c_n], [r_out, r_h, r_c], "lstm forward")
    inf_out, (_, inf_c) = fl.lstm(dx, dparams, dh0, dc0, **kw)  # inference: c carried in c_n, no reserve
    np.testing.assert_array_equal(_host(inf_out), _host(out))
    np.testing.assert_array_equal(_host(inf_c), _host(c_n))

    g_out, g_h, g_c = randn(rng, *out.shape), randn(rng, *h_n.shape), randn(rng, *c_n.shape)
    grads = fl.lstm_backward(*_dev(cp, g_out, g_h, g_c), dx, dparams, reserve, dh0, dc0, **kw)
    r_grads = R.lstm_backward(*f64(g_out, g_h, g_c, x), p64(params), r_res, f64(h0), f64(c0), **kw)
    _tree(list(grads), list(r_grads), "lstm backward")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T,B,I,H,L,bi,bf,given", SEQ_CASES[:6] + GPU_SEQ_CASES[:1])
def test_rnn(cp, rng, T, B, I, H, L, bi, bf, given, nonlinearity):
    dirs = 2 if bi else 1
    params = make_params(rng, 1, I, H, L, dirs)
    x = randn(rng, *((B, T, I) if bf else (T, B, I)))
    h0 = states(rng, given, L * dirs, B, H)
    kw = {"nonlinearity": nonlinearity, "num_layers": L, "bidirectional": bi, "batch_first": bf}
    dparams = _to_dev_params(cp, params)
    dx, dh0 = _dev(cp, x, h0)
    out, h_n, reserve = fl.rnn(dx, dparams, dh0, training=True, **kw)
    r_out, r_h, r_res = R.rnn(f64(x), p64(params), f64(h0), training=True, **kw)
    _tree([out, h_n], [r_out, r_h], "rnn forward")
    np.testing.assert_array_equal(_host(fl.rnn(dx, dparams, dh0, **kw)[0]), _host(out))
    g_out, g_h = randn(rng, *out.shape), randn(rng, *h_n.shape)
    grads = fl.rnn_backward(*_dev(cp, g_out, g_h), dx, dparams, reserve, dh0, **kw)
    r_grads = R.rnn_backward(*f64(g_out, g_h, x), p64(params), r_res, f64(h0), **kw)
    _tree(list(grads), list(r_grads), "rnn backward")


def test_lstm_no_bias_one_bias_and_none_states(cp, rng):
    T, B, I, H = 4, 3, 5, 6
    params = [p[:2] for p in make_params(rng, 4, I, H, 2, 1)]
    x = randn(rng, T, B, I)
    dparams = _to_dev_params(cp, params)
    out, _, reserve = fl.lstm(cp.asarray(x), dparams, num_layers=2, training=True)
    r_out, _, r_res = R.lstm(f64(x), p64(params), num_layers=2, training=True)
    _check(out, r_out, "out")
    g = randn(rng, *out.shape)
    gx, gp, gh0, gc0 = fl.lstm_backward(cp.asarray(g), None, None, cp.asarray(x), dparams, reserve, num_layers=2)
    r_gx, r_gp, _, _ = R.lstm_backward(f64(g), None, None, f64(x), p64(params), r_res, num_layers=2)
    assert gh0 is None and gc0 is None
    assert all(len(p) == 2 for p in gp)
    _tree([gx, gp], [r_gx, r_gp], "no-bias grads")
    params1 = [(p[0], p[1], None, randn(rng, 4 * H)) for p in params]
    d1 = _to_dev_params(cp, params1)
    out, _, reserve = fl.lstm(cp.asarray(x), d1, num_layers=2, training=True)
    r_out, _, r_res = R.lstm(f64(x), p64(params1), num_layers=2, training=True)
    _check(out, r_out, "one-bias out")
    _, gp, _, _ = fl.lstm_backward(cp.asarray(g), None, None, cp.asarray(x), d1, reserve, num_layers=2)
    _, r_gp, _, _ = R.lstm_backward(f64(g), None, None, f64(x), p64(params1), r_res, num_layers=2)
    _tree(gp, r_gp, "one-bias grads")


def test_cells(cp, rng):
    B, I, H = 5, 7, 19
    x, hx, cx = randn(rng, B, I), randn(rng, B, H), randn(rng, B, H)
    w = make_params(rng, 4, I, H)[0]
    d = _dev(cp, x, hx, cx, *w)
    h, c = fl.lstm_cell(*d)
    _tree([h, c], list(R.lstm_cell(*f64(x, hx, cx, *w))), "lstm_cell")
    gh, gc = randn(rng, B, H), randn(rng, B, H)
    _tree(list(fl.lstm_cell_backward(*_dev(cp, gh, gc), *d)),
          list(R.lstm_cell_backward(*f64(gh, gc, x, hx, cx, *w))), "lstm_cell_backward")
    _tree(list(fl.lstm_cell_backward(cp.asarray(gh), None, *d[:5])),
          list(R.lstm_cell_backward(f64(gh), None, *f64(x, hx, cx, *w[:2]))), "lstm_cell_backward no c")
    w = make_params(rng, 1, I, H)[0]
    d = _dev(cp, x, hx, *w)
    for nl in ("tanh", "relu"):
        _check(fl.rnn_cell(*d, nonlinearity=nl), R.rnn_cell(*f64(x, hx, *w), nonlinearity=nl), f"rnn_cell {nl}")
        _tree(list(fl.rnn_cell_backward(cp.asarray(gh), *d, nonlinearity=nl)),
              list(R.rnn_cell_backward(*f64(gh, x, hx, *w), nonlinearity=nl)), f"rnn_cell_backward {nl}")


def test_lstm_empty_batch_and_empty_sequence(cp, rng):
    I, H = 4, 6
    params = _to_dev_params(cp, make_params(rng, 4, I, H, 1, 2))
    x = cp.zeros((5, 0, I), np.float32)
    out, (h, c), res = fl.lstm(x, params, bidirectional=True, training=True)
    assert out.shape == (5, 0, 2 * H) and h.shape == (2, 0, H) and c.shape == (2, 0, H)
    gx, gp, _, _ = fl.lstm_backward(cp.zeros(out.shape, np.float32), None, None, x, params, res, bidirectional=True)
    assert gx.shape == x.shape
    assert all(float(cp.abs(a).max()) == 0.0 for p in gp for a in p)
    x = cp.zeros((0, 3, I), np.float32)
    h0, c0 = _dev(cp, randn(rng, 2, 3, H), randn(rng, 2, 3, H))
    out, (h, c) = fl.lstm(x, params, h0, c0, bidirectional=True)
    assert out.shape == (0, 3, 2 * H)
    np.testing.assert_array_equal(_host(h), _host(h0))
    np.testing.assert_array_equal(_host(c), _host(c0))
    out, h = fl.rnn(x, _to_dev_params(cp, make_params(rng, 1, I, H)), None)
    assert out.shape == (0, 3, H) and float(cp.abs(h).max()) == 0.0


def test_lstm_noncontiguous_and_errors(cp, rng):
    T, B, I, H = 5, 3, 4, 8
    params = make_params(rng, 4, I, H)
    x = randn(rng, B, I, T).transpose(2, 0, 1)
    xd = cp.asarray(randn(rng, B, I, T)).transpose(2, 0, 1)
    xd[...] = cp.asarray(x)
    assert not xd.flags.c_contiguous
    out, (h, c) = fl.lstm(xd, _to_dev_params(cp, params))
    r_out, (r_h, r_c) = R.lstm(f64(x), p64(params))
    _tree([out, h, c], [r_out, r_h, r_c], "non-contiguous")
    with pytest.raises(ValueError, match="w_ih"):
        fl.lstm(xd, _to_dev_params(cp, make_params(rng, 4, I + 1, H)))
    with pytest.raises(TypeError, match="different kinds"):
        fl.lstm(xd, params)
    _, _, res = fl.rnn(xd, _to_dev_params(cp, make_params(rng, 1, I, H)), training=True)
    with pytest.raises(ValueError, match="reserve"):
        fl.lstm_backward(out, None, None, xd, _to_dev_params(cp, params), res)


@pytest.mark.parametrize("variant", [{"FASTLAYERS_CUDA_RNN_BPT": "2"}, {"FASTLAYERS_CUDA_RNN_BPT": "8"},
                                     {"FASTLAYERS_CUDA_RNN_PDL": "1"}], ids=["bpt2", "bpt8", "pdl"])
@pytest.mark.parametrize("H", [12, 13])
def test_lstm_step_kernel_variants(cp, rng, monkeypatch, variant, H):
    """Both batch blockings of the step kernel (32-row blocks are otherwise only reached at
    large H) and programmatic dependent launch, forward and backward, float4 and scalar k."""
    for k, v in variant.items():
        monkeypatch.setenv(k, v)
    T, B, I, L = 4, 37, 8, 2
    params = make_params(rng, 4, I, H, L, 2)
    x = randn(rng, T, B, I)
    h0, c0 = states(rng, True, 2 * L, B, H), states(rng, True, 2 * L, B, H)
    kw = {"num_layers": L, "bidirectional": True}
    dparams = _to_dev_params(cp, params)
    dx, dh0, dc0 = _dev(cp, x, h0, c0)
    out, (h_n, c_n), reserve = fl.lstm(dx, dparams, dh0, dc0, training=True, **kw)
    r_out, (r_h, r_c), r_res = R.lstm(f64(x), p64(params), f64(h0), f64(c0), training=True, **kw)
    _tree([out, h_n, c_n], [r_out, r_h, r_c], "forward")
    g_out, g_h, g_c = randn(rng, *out.shape), randn(rng, *h_n.shape), randn(rng, *c_n.shape)
    grads = fl.lstm_backward(*_dev(cp, g_out, g_h, g_c), dx, dparams, reserve, dh0, dc0, **kw)
    r_grads = R.lstm_backward(*f64(g_out, g_h, g_c, x), p64(params), r_res, f64(h0), f64(c0), **kw)
    _tree(list(grads), list(r_grads), "backward")

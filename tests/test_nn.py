"""fastlayers.nn: every layer's forward vs a float64 NumPy-reference composition and its backward
(input and parameter gradients) vs float64 central finite differences of that composition; the
Module machinery (names, state dicts, errors, train/eval, devices); a small model trained with SGD
step by step against the same model run through the reference; PyTorch parity (torch marker)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close, f64, numeric_grad, randn

import fastlayers as fl
from fastlayers import nn
from fastlayers import reference as R



def _first(r):
    return r[0] if isinstance(r, tuple) else r


# -- generic layer check --------------------------------------------------------------------
def _as_tuple(v):
    return v if isinstance(v, tuple) else (v,)


def check_layer(layer, inputs, ref, rng, forward=None, backward=None, grad_inputs=None, rtol=1e-4):
    """layer's outputs vs ref(params64, *inputs64); its input/parameter gradients vs float64 central
    differences of L = sum_i <ref(...)_i, g_i>.

    forward(layer, *inputs) -> tuple of outputs (default: (layer(*inputs),));
    backward(layer, grads) -> tuple of input gradients (default: (layer.backward(grads[0]),));
    grad_inputs: indices of the inputs to differentiate (default: all float inputs)."""
    forward = forward or (lambda m, *xs: _as_tuple(m(*xs)))
    backward = backward or (lambda m, gs: _as_tuple(m.backward(gs[0])))
    params = dict(layer.named_parameters())
    p64 = {k: f64(p.data) for k, p in params.items()}
    x64 = [f64(x) if x.dtype == np.float32 else x for x in inputs]
    outs = forward(layer, *inputs)
    refs = _as_tuple(ref(p64, *x64))
    assert len(outs) == len(refs)
    for i, (o, r) in enumerate(zip(outs, refs)):
        assert_close(o, r, rtol=rtol, name=f"output {i}")
    gs = tuple(randn(rng, *o.shape) for o in outs)
    layer.zero_grad()
    gx = backward(layer, gs)

    def loss(p, xs):
        return sum(float(np.sum(r * f64(g))) for r, g in zip(_as_tuple(ref(p, *xs)), gs))

    if grad_inputs is None:
        grad_inputs = [i for i, x in enumerate(inputs) if x.dtype == np.float32]
    for i in grad_inputs:
        def f(xi, i=i):
            xs = list(x64)
            xs[i] = xi
            return loss(p64, xs)

        assert_close(gx[i], numeric_grad(f, x64[i]), rtol=rtol, name=f"grad of input {i}")
    for k, p in params.items():
        def f(v, k=k):
            q = dict(p64)
            q[k] = v
            return loss(q, x64)

        assert p.grad is not None, f"{k}: no gradient accumulated"
        assert_close(p.grad, numeric_grad(f, p64[k]), rtol=rtol, name=f"grad of {k}")
    return outs, gx


# -- simple layers --------------------------------------------------------------------------
@pytest.mark.parametrize("shape,bias", [((3, 7), True), ((2, 3, 7), False), ((1, 7), True), ((0, 7), True)])
def test_linear(rng, shape, bias):
    m = nn.Linear(7, 5, bias=bias)
    check_layer(m, [randn(rng, *shape)], lambda p, x: R.linear(x, p["weight"], p.get("bias")), rng)


@pytest.mark.parametrize("cls,kw,name", [
    (nn.ReLU, {}, "relu"), (nn.LeakyReLU, {"negative_slope": 0.2}, "leaky_relu"), (nn.Sigmoid, {}, "sigmoid"),
    (nn.Tanh, {}, "tanh"), (nn.GELU, {}, "gelu"), (nn.GELU, {"approximate": "tanh"}, "gelu"),
])
def test_activations(rng, cls, kw, name):
    x = randn(rng, 4, 9)
    x[np.abs(x) < 1e-2] = 0.5  # keep relu's kink away from the finite-difference steps
    check_layer(cls(**kw), [x], lambda p, x_: getattr(fl.reference, name)(x_, **kw), rng)


@pytest.mark.parametrize("cls,name", [(nn.Softmax, "softmax"), (nn.LogSoftmax, "log_softmax")])
@pytest.mark.parametrize("dim", [-1, 1, 0])
def test_softmax(rng, cls, name, dim):
    check_layer(cls(dim=dim), [randn(rng, 3, 5, 2)], lambda p, x: getattr(fl.reference, name)(x, axis=dim), rng)


@pytest.mark.parametrize("start,end,shape,out", [(1, -1, (2, 3, 4, 5), (2, 60)), (0, 1, (2, 3, 4), (6, 4)),
                                                 (2, 3, (2, 3, 4, 5), (2, 3, 20))])
def test_flatten(rng, start, end, shape, out):
    outs, _ = check_layer(nn.Flatten(start, end), [randn(rng, *shape)], lambda p, x: x.reshape(out), rng)
    assert outs[0].shape == out


# -- conv / pool ----------------------------------------------------------------------------
CONV = [
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=1, groups=1, bias=True, hw=(6, 5)),
    dict(cin=4, cout=6, k=(3, 2), stride=2, padding=0, dilation=1, groups=2, bias=False, hw=(7, 6)),
    dict(cin=4, cout=4, k=3, stride=1, padding="same", dilation=2, groups=4, bias=True, hw=(6, 6)),
    dict(cin=2, cout=3, k=1, stride=1, padding=0, dilation=1, groups=1, bias=True, hw=(1, 1)),
]


@pytest.mark.parametrize("c", CONV)
def test_conv2d(rng, c):
    m = nn.Conv2d(c["cin"], c["cout"], c["k"], c["stride"], c["padding"], c["dilation"], c["groups"], c["bias"])
    args = (c["stride"], c["padding"], c["dilation"], c["groups"])
    check_layer(m, [randn(rng, 2, c["cin"], *c["hw"])], lambda p, x: R.conv2d(x, p["weight"], p.get("bias"), *args),
                rng)


@pytest.mark.parametrize("cin,cout,k,stride,padding,out_pad,groups,bias", [
    (3, 4, 3, 2, 1, 1, 1, True), (4, 6, 2, 2, 0, 0, 2, False), (2, 2, 3, 1, 0, 0, 1, True),
])
def test_conv_transpose2d(rng, cin, cout, k, stride, padding, out_pad, groups, bias):
    m = nn.ConvTranspose2d(cin, cout, k, stride, padding, out_pad, groups, bias)
    assert m.weight.shape == (cin, cout // groups, k, k)
    args = (stride, padding, out_pad, groups, 1)
    outs, _ = check_layer(m, [randn(rng, 2, cin, 4, 3)],
                          lambda p, x: R.conv_transpose2d(x, p["weight"], p.get("bias"), *args), rng)
    assert outs[0].shape[2] == (4 - 1) * stride - 2 * padding + k + out_pad


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(3, 2), stride=(1, 2), ceil_mode=True)])
def test_max_pool(rng, kw):
    m = nn.MaxPool2d(**kw)
    full = dict(stride=None, padding=0, dilation=1, ceil_mode=False) | kw
    check_layer(m, [randn(rng, 2, 3, 7, 6)], lambda p, x: R.max_pool2d(x, **full), rng)
    y, idx = nn.MaxPool2d(return_indices=True, **kw)(randn(rng, 2, 3, 7, 6))
    assert idx.dtype == np.int64 and idx.shape == y.shape


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)])
def test_avg_pool(rng, kw):
    full = dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True) | kw
    check_layer(nn.AvgPool2d(**kw), [randn(rng, 2, 3, 7, 6)], lambda p, x: R.avg_pool2d(x, **full), rng)


@pytest.mark.parametrize("size", [1, (2, 3), 4])
def test_adaptive_avg_pool(rng, size):
    check_layer(nn.AdaptiveAvgPool2d(size), [randn(rng, 2, 3, 7, 6)],
                lambda p, x: R.adaptive_avg_pool2d(x, size), rng)


@pytest.mark.parametrize("kw,factor", [(dict(scale_factor=2), 2), (dict(scale_factor=(1, 3)), (1, 3)),
                                       (dict(size=(6, 4)), (2, 2))])
def test_upsample(rng, kw, factor):
    outs, _ = check_layer(nn.Upsample(**kw), [randn(rng, 2, 3, 3, 2)],
                          lambda p, x: R.upsample_nearest2d(x, factor), rng)
    f = (factor, factor) if isinstance(factor, int) else factor
    assert outs[0].shape == (2, 3, 3 * f[0], 2 * f[1])


def test_upsample_errors():
    with pytest.raises(ValueError, match="only 'nearest'"):
        nn.Upsample(scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="exactly one"):
        nn.Upsample()
    with pytest.raises(ValueError, match="integer factors"):
        nn.Upsample(scale_factor=1.5)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="integer multiple"):
        nn.Upsample(size=5)(np.zeros((1, 1, 2, 2), np.float32))


# -- norm, dropout, embedding ----------------------------------------------------------------
def _bn_ref(x, p, training, rm, rv, momentum=0.1, eps=1e-5):
    return R.batch_norm(x, rm.copy(), rv.copy(), p.get("weight"), p.get("bias"), training=training,
                           momentum=momentum, eps=eps)


@pytest.mark.parametrize("cls,shape", [(nn.BatchNorm2d, (4, 3, 3, 2)), (nn.BatchNorm1d, (6, 3)),
                                       (nn.BatchNorm1d, (3, 3, 4))])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_train(rng, cls, shape, affine):
    m = cls(3, affine=affine)
    if affine:
        m.weight.data[:] = randn(rng, 3) + 1.0
        m.bias.data[:] = randn(rng, 3)
    x = randn(rng, *shape, scale=2.0) + 1.0
    rm0, rv0 = np.zeros(3), np.ones(3)
    check_layer(m, [x], lambda p, x_: _bn_ref(x_.reshape(x_.shape + (1,) * (4 - x_.ndim)) if x_.ndim == 3 else x_,
                                              p, True, rm0, rv0).reshape(x_.shape), rng, rtol=2e-4)
    # rtol 2e-4: the batch-norm input gradient is a difference of three O(1) terms per element.
    # Each forward of check_layer updated the running statistics once, as the reference does.
    rm, rv = np.zeros(3), np.ones(3)
    R.batch_norm(f64(x).reshape(x.shape + (1,) * (4 - x.ndim)), rm, rv, None, None, training=True)
    assert_close(m.running_mean, rm, name="running_mean")
    assert_close(m.running_var, rv, name="running_var")
    assert int(m.num_batches_tracked) == 1


def test_batch_norm_eval_and_momentum(rng):
    m = nn.BatchNorm2d(3, momentum=None)
    x1, x2 = randn(rng, 4, 3, 2, 2), randn(rng, 5, 3, 2, 2) * 3
    m(x1)
    m(x2)  # momentum=None: cumulative average of the two batches
    rm, rv = np.zeros(3), np.ones(3)
    R.batch_norm(f64(x1), rm, rv, None, None, training=True, momentum=1.0)
    rm2, rv2 = rm.copy(), rv.copy()
    R.batch_norm(f64(x2), rm2, rv2, None, None, training=True, momentum=0.5)
    assert_close(m.running_mean, rm2)
    assert_close(m.running_var, rv2)
    m.eval()
    m.weight.data[:] = randn(rng, 3)
    rmf, rvf = f64(m.running_mean, m.running_var)
    check_layer(m, [randn(rng, 2, 3, 2, 2)], lambda p, x: _bn_ref(x, p, False, rmf, rvf), rng)
    assert int(m.num_batches_tracked) == 2


def test_batch_norm_no_running_stats(rng):
    m = nn.BatchNorm2d(3, track_running_stats=False).eval()
    assert "running_mean" not in m.state_dict()
    check_layer(m, [randn(rng, 4, 3, 2, 2)], lambda p, x: _bn_ref(x, p, True, np.zeros(3), np.ones(3)), rng,
                rtol=2e-4)  # see test_batch_norm_train


def test_batch_norm_shape_errors():
    with pytest.raises(ValueError, match="expected num_features=3"):
        nn.BatchNorm2d(3)(np.zeros((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="4-D"):
        nn.BatchNorm2d(3)(np.zeros((2, 3), np.float32))


@pytest.mark.parametrize("shape,ns", [((4, 6), 6), ((2, 3, 4), (3, 4)), ((2, 3, 5), [5])])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(rng, shape, ns, affine):
    m = nn.LayerNorm(ns, elementwise_affine=affine)
    if affine:
        m.weight.data[...] = randn(rng, *m.weight.shape) + 1
        m.bias.data[...] = randn(rng, *m.bias.shape)
    norm = (ns,) if isinstance(ns, int) else tuple(ns)
    check_layer(m, [randn(rng, *shape, scale=2.0)],
                lambda p, x: R.layer_norm(x, norm, p.get("weight"), p.get("bias")), rng, rtol=2e-4)
    # rtol 2e-4: as batch norm, the input gradient subtracts two row means from each element.


def test_layer_norm_without_bias():
    m = nn.LayerNorm(4, bias=False)
    assert [n for n, _ in m.named_parameters()] == ["weight"]


def test_dropout(rng):
    fl.manual_seed(3)
    m = nn.Dropout(0.25)
    x = randn(rng, 200, 50) + 5.0  # nonzero everywhere, so zeros in y are dropped elements
    y = m(x)
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80  # 10^4 Bernoulli(0.75) draws: std of the mean 0.004
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-6)
    g = randn(rng, 200, 50)
    gx = m.backward(g)
    np.testing.assert_allclose(gx[kept], g[kept] / 0.75, rtol=1e-6)
    assert np.all(gx[~kept] == 0)
    fl.manual_seed(3)
    np.testing.assert_array_equal(nn.Dropout(0.25)(x), y)  # the seed fixes the mask
    m.eval()
    assert m(x) is x and m.backward(g) is g
    assert nn.Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.5)


@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding(rng, padding_idx):
    m = nn.Embedding(6, 4, padding_idx=padding_idx)
    if padding_idx is not None:
        assert np.all(m.weight.data[padding_idx] == 0)
    idx = np.array([[0, 2, 5], [2, 2, 1]], np.int64)
    y = m(idx)
    assert_close(y, R.embedding(idx, f64(m.weight.data)))
    g = randn(rng, 2, 3, 4)
    assert m.backward(g) is None
    want = np.zeros((6, 4))
    for (i, j), v in np.ndenumerate(idx):
        want[v] += g[i, j]
    if padding_idx is not None:
        want[padding_idx] = 0
    assert_close(m.weight.grad, want)


# -- recurrent --------------------------------------------------------------------------------
def _rnn_params(p, num_layers, bidirectional, bias=True):
    out = []
    for layer in range(num_layers):
        for d in range(2 if bidirectional else 1):
            s = f"_l{layer}" + ("_reverse" if d else "")
            out.append((p[f"weight_ih{s}"], p[f"weight_hh{s}"], p.get(f"bias_ih{s}"), p.get(f"bias_hh{s}")))
    return out


@pytest.mark.parametrize("num_layers,bidirectional,batch_first,bias", [
    (1, False, False, True), (2, True, True, True), (2, False, False, False), (1, True, False, True),
])
def test_lstm(rng, num_layers, bidirectional, batch_first, bias):
    I, H, T, B = 3, 4, 5, 2
    D = 2 if bidirectional else 1
    m = nn.LSTM(I, H, num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    x = randn(rng, *((B, T, I) if batch_first else (T, B, I)))
    h0, c0 = randn(rng, num_layers * D, B, H), randn(rng, num_layers * D, B, H)

    def ref(p, x_, h_, c_):
        out, (hn, cn) = R.lstm(x_, _rnn_params(p, num_layers, bidirectional, bias), h_, c_,
                                  num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
        return out, hn, cn

    def forward(mod, x_, h_, c_):
        out, (hn, cn) = mod(x_, (h_, c_))
        return out, hn, cn

    def backward(mod, gs):
        gx = mod.backward(*gs)
        return (gx,) + tuple(mod.grad_hx)

    check_layer(m, [x, h0, c0], ref, rng, forward=forward, backward=backward)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True)])
def test_rnn(rng, nonlinearity, num_layers, bidirectional):
    I, H, T, B = 3, 4, 4, 2
    m = nn.RNN(I, H, num_layers=num_layers, nonlinearity=nonlinearity, bidirectional=bidirectional)
    x = randn(rng, T, B, I)

    def ref(p, x_):
        return R.rnn(x_, _rnn_params(p, num_layers, bidirectional), None, nonlinearity=nonlinearity,
                        num_layers=num_layers, bidirectional=bidirectional)

    check_layer(m, [x], ref, rng, forward=lambda mod, x_: mod(x_), backward=lambda mod, gs: (mod.backward(*gs),))


def test_lstm_defaults_and_names():
    m = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    names = [n for n, _ in m.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l0_reverse"]
    assert m.weight_ih_l1.shape == (16, 8) and m.weight_hh_l1_reverse.shape == (16, 4)
    assert all(np.abs(p.data).max() <= 0.5 for p in m.parameters())  # U(-1/sqrt(H), 1/sqrt(H))
    out, (hn, cn) = m(np.zeros((5, 2, 3), np.float32))  # h0 = c0 = 0 by default
    assert out.shape == (5, 2, 8) and hn.shape == cn.shape == (4, 2, 4)
    m.eval()
    m(np.zeros((5, 2, 3), np.float32))
    with pytest.raises(RuntimeError, match="training mode"):
        m.backward(np.zeros((5, 2, 8), np.float32))
    with pytest.raises(ValueError, match="input_size=3"):
        m(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match="not supported"):
        nn.LSTM(3, 4, num_layers=2, dropout=0.5)


# -- attention --------------------------------------------------------------------------------
def _mha_ref(p, q, k, v, H, batch_first, mask=None):
    """PyTorch's MHA math in float64; mask in sdpa's convention (True = may attend) or additive."""
    if not batch_first:
        q, k, v = (t.transpose(1, 0, 2) for t in (q, k, v))
    B, L, E = q.shape
    S = k.shape[1]
    W, b = p["in_proj_weight"], p.get("in_proj_bias")
    bs = [None] * 3 if b is None else [b[:E], b[E:2 * E], b[2 * E:]]
    qp, kp, vp = (R.linear(t, W[i * E:(i + 1) * E], bs[i]) for i, t in enumerate((q, k, v)))
    d = E // H

    def heads(t, T):
        return t.reshape(B, T, H, d).transpose(0, 2, 1, 3)

    o = R.scaled_dot_product_attention(heads(qp, L), heads(kp, S), heads(vp, S), attn_mask=mask)
    y = R.linear(o.transpose(0, 2, 1, 3).reshape(B, L, E), p["out_proj.weight"], p.get("out_proj.bias"))
    return y if batch_first else y.transpose(1, 0, 2)


def _random_biases(m, rng):
    for n, p in m.named_parameters():
        if "bias" in n:
            p.data[...] = randn(rng, *p.shape, scale=0.5)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [False, True])
def test_mha_self_attention(rng, batch_first, need_weights):
    E, H, B, L = 8, 2, 2, 5
    m = nn.MultiheadAttention(E, H, batch_first=batch_first)
    _random_biases(m, rng)
    x = randn(rng, *((B, L, E) if batch_first else (L, B, E)))
    kpm = np.zeros((B, L), bool)
    kpm[1, 3:] = True  # padded keys of the second sequence
    am = np.triu(np.ones((L, L), bool), 1)  # causal: True = not allowed, PyTorch's convention
    allowed = ~am[None, None] & ~kpm[:, None, None, :]

    def forward(mod, x_):
        y, w = mod(x_, x_, x_, key_padding_mask=kpm, attn_mask=am, need_weights=need_weights)
        if need_weights:
            assert w.shape == (B, L, L)
            np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
            assert np.all(w[~allowed.any(1)] == 0)
        else:
            assert w is None
        return y

    def backward(mod, gs):
        gq, gk, gv = mod.backward(gs[0])
        assert gk is None and gv is None
        return (gq,)

    check_layer(m, [x], lambda p, x_: _mha_ref(p, x_, x_, x_, H, batch_first, allowed), rng,
                forward=lambda mod, x_: (forward(mod, x_),), backward=backward)


@pytest.mark.parametrize("float_mask", [False, True])
def test_mha_cross_attention(rng, float_mask):
    E, H, B, L, S = 6, 3, 2, 3, 4
    m = nn.MultiheadAttention(E, H, batch_first=True)
    _random_biases(m, rng)
    q, k, v = randn(rng, B, L, E), randn(rng, B, S, E), randn(rng, B, S, E)
    am = randn(rng, B * H, L, S) if float_mask else None
    sd_mask = None if am is None else f64(am).reshape(B, H, L, S)
    check_layer(m, [q, k, v], lambda p, *t: _mha_ref(p, *t, H, True, sd_mask), rng,
                forward=lambda mod, *t: (mod(*t, attn_mask=am, need_weights=False)[0],),
                backward=lambda mod, gs: mod.backward(gs[0]))


def test_mha_fused_and_explicit_paths_agree(rng):
    m = nn.MultiheadAttention(8, 4, batch_first=True)
    x = randn(rng, 3, 6, 8)
    kpm = np.zeros((3, 6), bool)
    kpm[0, 2:] = True
    y1, _ = m(x, x, x, key_padding_mask=kpm, need_weights=False)
    g = randn(rng, *y1.shape)
    m.zero_grad()
    g1 = m.backward(g)[0]
    w1 = m.in_proj_weight.grad.copy()
    y2, _ = m(x, x, x, key_padding_mask=kpm, need_weights=True, average_attn_weights=False)
    m.zero_grad()
    g2 = m.backward(g)[0]
    np.testing.assert_allclose(y1, y2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w1, m.in_proj_weight.grad, rtol=1e-4, atol=1e-5)


def test_mha_init_and_errors():
    m = nn.MultiheadAttention(8, 2)
    assert [n for n, _ in m.named_parameters()] == ["in_proj_weight", "in_proj_bias", "out_proj.weight",
                                                    "out_proj.bias"]
    assert np.all(m.in_proj_bias.data == 0) and np.all(m.out_proj.bias.data == 0)
    assert np.abs(m.in_proj_weight.data).max() <= math.sqrt(6 / (8 + 24))
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(7, 2)
    x = np.zeros((3, 2, 8), np.float32)
    with pytest.raises(ValueError, match="key_padding_mask"):
        m(x, x, x, key_padding_mask=np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="attn_mask"):
        m(x, x, x, attn_mask=np.zeros((3, 4), bool))


def _ln(x, p, name):
    return R.layer_norm(x, (x.shape[-1],), p[name + ".weight"], p[name + ".bias"])


def _encoder_ref(p, x, H, norm_first, activation, batch_first, mask):
    def sa(t):
        return _mha_ref({k[len("self_attn."):]: v for k, v in p.items() if k.startswith("self_attn.")},
                        t, t, t, H, batch_first, mask)

    act = getattr(fl.reference, activation)

    def ff(t):
        return R.linear(act(R.linear(t, p["linear1.weight"], p["linear1.bias"])), p["linear2.weight"],
                           p["linear2.bias"])

    if norm_first:
        x = x + sa(_ln(x, p, "norm1"))
        return x + ff(_ln(x, p, "norm2"))
    x = _ln(x + sa(x), p, "norm1")
    return _ln(x + ff(x), p, "norm2")


@pytest.mark.parametrize("norm_first,activation,batch_first", [(False, "relu", True), (True, "gelu", False),
                                                               (True, "relu", True)])
def test_transformer_encoder_layer(rng, norm_first, activation, batch_first):
    E, H, B, L = 8, 2, 2, 4
    m = nn.TransformerEncoderLayer(E, H, dim_feedforward=12, dropout=0.0, activation=activation,
                                   batch_first=batch_first, norm_first=norm_first)
    _random_biases(m, rng)
    for n, p in m.named_parameters():
        if n.startswith("norm") and n.endswith("weight"):
            p.data[...] = 1 + randn(rng, *p.shape, scale=0.3)
    x = randn(rng, *((B, L, E) if batch_first else (L, B, E)))
    kpm = np.zeros((B, L), bool)
    kpm[0, -1] = True
    allowed = ~kpm[:, None, None, :]
    check_layer(m, [x], lambda p, x_: _encoder_ref(p, x_, H, norm_first, activation, batch_first, allowed), rng,
                forward=lambda mod, x_: (mod(x_, src_key_padding_mask=kpm),), rtol=2e-4)
    # rtol 2e-4: two layer norms' input gradients (see test_layer_norm) in sequence.


def test_transformer_encoder_layer_dropout_train_vs_eval(rng):
    m = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.3, batch_first=True)
    x = randn(rng, 2, 5, 8)
    fl.manual_seed(1)
    y1 = m(x)
    fl.manual_seed(1)
    np.testing.assert_array_equal(m(x), y1)  # dropout masks come from fl.manual_seed
    g = m.backward(randn(rng, *y1.shape))
    assert g.shape == x.shape and np.isfinite(g).all()
    m.eval()
    m0 = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    m0.load_state_dict(m.state_dict())
    np.testing.assert_allclose(m(x), m0(x), rtol=1e-6)
    assert not np.allclose(y1, m(x))


# -- containers -------------------------------------------------------------------------------
def test_sequential_and_names(rng):
    m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(m) == 3 and isinstance(m[1], nn.Tanh) and len(m[:2]) == 2

    def ref(p, x):
        return R.linear(np.tanh(R.linear(x, p["0.weight"], p["0.bias"])), p["2.weight"], p["2.bias"])

    check_layer(m, [randn(rng, 4, 5)], ref, rng)


@pytest.mark.parametrize("with_shortcut", [False, True])
def test_residual(rng, with_shortcut):
    body = nn.Sequential(nn.Conv2d(3, 3 if not with_shortcut else 4, 3, padding=1), nn.ReLU())
    shortcut = nn.Conv2d(3, 4, 1) if with_shortcut else None
    m = nn.Residual(body, shortcut)
    x = randn(rng, 2, 3, 4, 4)

    def ref(p, x_):
        y = R.relu(R.conv2d(x_, p["body.0.weight"], p["body.0.bias"], 1, 1))
        return y + (R.conv2d(x_, p["shortcut.weight"], p["shortcut.bias"]) if with_shortcut else x_)

    check_layer(m, [x], ref, rng)
    with pytest.raises(ValueError, match="shortcut"):
        nn.Residual(nn.Conv2d(3, 4, 1))(x)


def test_parallel(rng):
    m = nn.Parallel(nn.Conv2d(3, 2, 1), nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()),
                    nn.MaxPool2d(3, stride=1, padding=1))
    x = randn(rng, 2, 3, 5, 5)

    def ref(p, x_):
        a = R.conv2d(x_, p["0.weight"], p["0.bias"])
        b = R.relu(R.conv2d(x_, p["1.0.weight"], p["1.0.bias"], 1, 1))
        c = R.max_pool2d(x_, 3, 1, 1)
        return np.concatenate([a, b, c], axis=1)

    outs, _ = check_layer(m, [x], ref, rng)
    assert outs[0].shape == (2, 9, 5, 5)
    m2 = nn.Parallel(nn.Linear(4, 2), nn.Linear(4, 3), axis=-1)
    check_layer(m2, [randn(rng, 3, 4)], lambda p, x_: np.concatenate(
        [R.linear(x_, p["0.weight"], p["0.bias"]), R.linear(x_, p["1.weight"], p["1.bias"])], -1), rng)


# -- losses -----------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("cls,name", [(nn.MSELoss, "mse_loss"), (nn.BCELoss, "binary_cross_entropy"),
                                      (nn.BCEWithLogitsLoss, "binary_cross_entropy_with_logits")])
def test_elementwise_losses(rng, cls, name, reduction):
    pred = randn(rng, 4, 3)
    if cls is nn.BCELoss:
        pred = (1 / (1 + np.exp(-pred))).astype(np.float32)
    target = rng.random((4, 3)).astype(np.float32)
    crit = cls(reduction=reduction)
    loss = crit(pred, target)
    want = getattr(R, name)(f64(pred), f64(target), reduction=reduction)
    if reduction == "none":
        assert_close(loss, want)
        g = randn(rng, 4, 3)
        got = crit.backward(g)
        num = numeric_grad(lambda p_: np.sum(getattr(R, name)(p_, f64(target), reduction="none") * f64(g)), f64(pred))
    else:
        assert isinstance(loss, float)
        assert abs(loss - float(want)) <= 1e-5 * max(1.0, abs(float(want)))
        got = crit.backward()
        num = numeric_grad(lambda p_: float(getattr(R, name)(p_, f64(target), reduction=reduction)), f64(pred))
    assert_close(got, num)


@pytest.mark.parametrize("shape,smoothing,reduction", [((5, 4), 0.0, "mean"), ((5, 4), 0.1, "sum"),
                                                      ((2, 4, 3), 0.0, "mean"), ((5, 4), 0.2, "none")])
def test_cross_entropy_loss(rng, shape, smoothing, reduction):
    logits = randn(rng, *shape, scale=2.0)
    target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    target.reshape(-1)[1] = -100  # ignored
    crit = nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction)
    loss = crit(logits, target)

    def ref(z, red):
        return R.cross_entropy(z, target, reduction=red, label_smoothing=smoothing)

    if reduction == "none":
        assert_close(loss, ref(f64(logits), "none"))
        g = randn(rng, *target.shape)
        got = crit.backward(g)
        num = numeric_grad(lambda z: np.sum(ref(z, "none") * f64(g)), f64(logits))
    else:
        assert abs(loss - float(ref(f64(logits), reduction))) <= 1e-5 * max(1.0, abs(loss))
        got = crit.backward()
        num = numeric_grad(lambda z: float(ref(z, reduction)), f64(logits))
    assert_close(got, num)


def test_loss_errors():
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="not supported"):
        nn.CrossEntropyLoss(weight=np.ones(3, np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.MSELoss().backward()


# -- Module machinery -------------------------------------------------------------------------
def _small_cnn():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(12, 4))


def test_state_dict_names_and_round_trip(rng):
    fl.manual_seed(0)
    m = _small_cnn()
    sd = m.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                        "1.num_batches_tracked", "5.weight", "5.bias"]
    assert sd["1.num_batches_tracked"].dtype == np.int64
    x = randn(rng, 2, 1, 4, 4)
    m(x)  # updates running stats: the state dict is a copy, unaffected
    assert int(sd["1.num_batches_tracked"]) == 0
    m2 = _small_cnn()
    m2.load_state_dict(m.state_dict())
    m.eval()
    m2.eval()
    np.testing.assert_array_equal(m(x), m2(x))
    sd2 = m2.state_dict()
    sd2["0.weight"][...] = 7  # load_state_dict copies: the model does not alias the dict
    assert not np.any(m2[0].weight.data == 7)


def test_load_state_dict_errors():
    m = _small_cnn()
    sd = m.state_dict()
    bad = dict(sd)
    bad["5.weight"] = np.zeros((4, 13), np.float32)
    with pytest.raises(ValueError, match=r"'5.weight' has shape \(4, 13\).*expects \(4, 12\)"):
        m.load_state_dict(bad)
    missing = dict(sd)
    del missing["0.bias"]
    with pytest.raises(KeyError, match=r"missing keys: \['0.bias'\]"):
        m.load_state_dict(missing)
    extra = dict(sd, extra=np.zeros(1, np.float32))
    with pytest.raises(KeyError, match=r"unexpected keys: \['extra'\]"):
        m.load_state_dict(extra)
    before = m[0].weight.data.copy()
    bad["0.weight"] = np.ones_like(before)
    with pytest.raises(ValueError):
        m.load_state_dict(bad)
    np.testing.assert_array_equal(m[0].weight.data, before)  # a failed load changes nothing
    res = m.load_state_dict(dict(missing, extra=np.zeros(1)), strict=False)
    assert res.missing_keys == ["0.bias"] and res.unexpected_keys == ["extra"]


def test_train_eval_zero_grad_and_accumulation(rng):
    m = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    assert all(mod.training for mod in m.modules())
    m.eval()
    assert not any(mod.training for mod in m.modules())
    x, g = randn(rng, 5, 3), randn(rng, 5, 2)
    m(x)
    m.backward(g)
    first = m[0].weight.grad.copy()
    m(x)
    m.backward(g)
    np.testing.assert_allclose(m[0].weight.grad, 2 * first, rtol=1e-6)  # gradients accumulate
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.train()
    assert m[1].training


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Linear(2, 3).backward(np.zeros((1, 3), np.float32))


def test_initialisation_follows_pytorch_and_seed():
    fl.manual_seed(123)
    a = nn.Linear(50, 40)
    fl.manual_seed(123)
    b = nn.Linear(50, 40)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    bound = 1 / math.sqrt(50)
    w = a.weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound  # U(-b, b) reaches near b in 2000 draws
    assert abs(w.std() - bound / math.sqrt(3)) < 0.1 * bound  # std of U(-b, b) is b/sqrt(3)
    c = nn.Conv2d(4, 6, 3, groups=2)
    assert np.abs(c.weight.data).max() <= 1 / math.sqrt(2 * 9)
    t = nn.ConvTranspose2d(4, 6, 3, groups=2)
    assert t.weight.shape == (4, 3, 3, 3) and np.abs(t.weight.data).max() <= 1 / math.sqrt(3 * 9)
    assert a.weight.data.dtype == np.float32


def test_to_device():
    m = nn.Linear(2, 3)
    assert m.to("cpu") is m
    with pytest.raises(ValueError, match="device"):
        m.to("tpu")
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="CuPy"):
            m.to("cuda")


@pytest.mark.gpu
def test_to_cuda_round_trip():
    import cupy

    m = _small_cnn()
    sd = m.state_dict()
    m.to("cuda")
    assert isinstance(m[0].weight.data, cupy.ndarray) and isinstance(m[1].running_mean, cupy.ndarray)
    m.to("cpu")
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, sd[k])


# -- training vs the reference, step by step ----------------------------------------------------
def test_sgd_training_matches_reference(rng):
    """Conv -> BatchNorm -> ReLU -> MaxPool -> Linear -> CrossEntropy, three SGD steps, against the
    same model written with fastlayers.reference functions in float64."""
    from fastlayers import optim

    fl.manual_seed(5)
    m = _small_cnn()
    p = {k: f64(v) for k, v in m.state_dict().items()}
    opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    vel = {}
    for step in range(3):
        x = randn(rng, 6, 1, 4, 4)
        y = rng.integers(0, 4, 6)
        loss = crit(m(x), y)
        opt.zero_grad()
        m.backward(crit.backward())
        opt.step()

        # the same step in float64 with the reference functions
        x64 = f64(x)
        z1 = R.conv2d(x64, p["0.weight"], p["0.bias"], 1, 1)
        z2, (mu, inv) = R.batch_norm(z1, p["1.running_mean"], p["1.running_var"], p["1.weight"], p["1.bias"],
                                        training=True, return_stats=True)
        z3 = R.relu(z2)
        z4, idx = R.max_pool2d(z3, 2, return_indices=True)
        z5 = z4.reshape(6, -1)
        z6 = R.linear(z5, p["5.weight"], p["5.bias"])
        ref_loss = float(R.cross_entropy(z6, y))
        assert abs(loss - ref_loss) <= 1e-4 * max(1.0, abs(ref_loss)), f"step {step}: loss {loss} vs {ref_loss}"
        g6 = _first(R.cross_entropy_backward(np.asarray(1.0), z6, y))
        g5, gw5, gb5 = R.linear_backward(g6, z5, p["5.weight"], p["5.bias"])
        g3 = _first(R.max_pool2d_backward(g5.reshape(z4.shape), z3, idx, 2))
        g2 = R.relu_backward(g3, z2)
        g1, gw1, gb1 = R.batch_norm_backward(g2, z1, p["1.weight"], mu, inv, training=True)
        _, gw0, gb0 = R.conv2d_backward(g1, x64, p["0.weight"], p["0.bias"], 1, 1)
        grads = {"0.weight": gw0, "0.bias": gb0, "1.weight": gw1, "1.bias": gb1, "5.weight": gw5, "5.bias": gb5}
        for k, g in grads.items():
            vel[k] = g if k not in vel else 0.9 * vel[k] + g
            p[k] = p[k] - 0.1 * vel[k]
        sd = m.state_dict()
        p["1.num_batches_tracked"] = p["1.num_batches_tracked"] + 1
        for k in p:
            if sd[k].dtype == np.float32:
                # 2e-4: three steps of float32 rounding in forward, backward and update compound.
                assert_close(sd[k], p[k], rtol=2e-4, atol_scale=2e-5, name=f"step {step}: {k}")
            else:
                np.testing.assert_array_equal(sd[k], p[k])


# -- PyTorch parity ---------------------------------------------------------------------------
def _torch_sd(tm):
    return {k: v.detach().numpy() for k, v in tm.state_dict().items()}


def _t(x):
    import torch

    return torch.tensor(x)


@pytest.mark.torch
def test_torch_linear_conv_batchnorm(rng):
    import torch

    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, stride=2), torch.nn.BatchNorm2d(4),
                             torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(36, 5))
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                      nn.Linear(36, 5))
    x = randn(rng, 3, 2, 6, 6)
    tm(_t(x))  # one training step of running statistics on the torch side
    m.load_state_dict(_torch_sd(tm))
    for mode in ("train", "eval"):
        getattr(tm, mode)()
        getattr(m, mode)()
        xt = _t(x).requires_grad_(True)
        yt = tm(xt)
        y = m(x)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
        g = randn(rng, *y.shape)
        tm.zero_grad()
        yt.backward(_t(g))
        m.zero_grad()
        gx = m.backward(g)
        np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(m[0].weight.grad, tm[0].weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    for k, v in _torch_sd(tm).items():
        np.testing.assert_allclose(m.state_dict()[k], v, rtol=1e-5, atol=1e-6)


@pytest.mark.torch
def test_torch_lstm(rng):
    import torch

    tm = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    m = nn.LSTM(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    m.load_state_dict(_torch_sd(tm))
    x = randn(rng, 2, 6, 3)
    yt, (ht, ct) = tm(_t(x))
    y, (h, c) = m(x)
    for a, b in ((y, yt), (h, ht), (c, ct)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("batch_first", [True, False])
def test_torch_mha(rng, batch_first):
    import torch

    tm = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first).eval()
    m = nn.MultiheadAttention(8, 2, batch_first=batch_first).eval()
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(torch.randn(p.shape) * 0.1)  # nonzero biases
    m.load_state_dict(_torch_sd(tm))
    x = randn(rng, *((2, 5, 8) if batch_first else (5, 2, 8)))
    kpm = np.zeros((2, 5), bool)
    kpm[1, 3:] = True
    am = np.triu(np.ones((5, 5), bool), 1)
    yt, wt = tm(_t(x), _t(x), _t(x), key_padding_mask=_t(kpm), attn_mask=_t(am))
    y, w = m(x, x, x, key_padding_mask=kpm, attn_mask=am)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w, wt.detach().numpy(), rtol=1e-4, atol=1e-6)
    y2, _ = m(x, x, x, key_padding_mask=kpm, attn_mask=am, need_weights=False)
    np.testing.assert_allclose(y2, yt.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_torch_transformer_encoder_layer(rng, norm_first, activation):
    import torch

    tm = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, activation=activation, batch_first=True,
                                          norm_first=norm_first).eval()
    m = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, activation=activation, batch_first=True,
                                   norm_first=norm_first).eval()
    with torch.no_grad():
        for p in tm.parameters():
            p.add_(torch.randn(p.shape) * 0.1)
    m.load_state_dict(_torch_sd(tm))
    x = randn(rng, 2, 5, 8)
    kpm = np.zeros((2, 5), bool)
    kpm[0, 4] = True
    with torch.no_grad():
        yt = tm(_t(x), src_key_padding_mask=_t(kpm))
    np.testing.assert_allclose(m(x, src_key_padding_mask=kpm), yt.numpy(), rtol=1e-4, atol=1e-5)


def _same_as_torch(m, tm, x, rng, first=False):
    """m (fastlayers) and tm (torch, same weights) agree on the output, grad x and every
    parameter's gradient for a random grad_out; first: the modules return (y, state)."""
    xt = _t(x).requires_grad_(True)
    yt, y = tm(xt), m(x)
    if first:
        yt, y = yt[0], y[0]
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = randn(rng, *y.shape)
    yt.backward(_t(g))
    np.testing.assert_allclose(m.backward(g), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    tgrads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[k], rtol=1e-4, atol=1e-4, err_msg=k)


@pytest.mark.torch
@pytest.mark.parametrize("make", [
    lambda M: M.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
    lambda M: M.Conv2d(4, 4, 3, padding=1, groups=4),
    lambda M: M.LayerNorm((3, 5)),
    lambda M: M.BatchNorm1d(3),
    lambda M: M.Sequential(M.MaxPool2d(3, stride=2, padding=1), M.AvgPool2d(2), M.Upsample(scale_factor=2)),
    lambda M: M.Sequential(M.AdaptiveAvgPool2d((2, 3)), M.GELU(), M.Softmax(dim=1)),
], ids=["conv_transpose", "depthwise", "layer_norm", "batch_norm1d", "pools", "adaptive_gelu_softmax"])
def test_torch_layers_forward_backward(rng, make):
    """Same state dict -> same outputs and the same input/parameter gradients as torch."""
    import torch

    tm, m = make(torch.nn), make(nn)
    m.load_state_dict(_torch_sd(tm))
    shape = (2, 4, 6, 6)
    if isinstance(tm, torch.nn.LayerNorm):
        shape = (2, 4, 3, 5)
    elif isinstance(tm, torch.nn.BatchNorm1d):
        shape = (5, 3, 4)
    x = randn(rng, *shape)
    _same_as_torch(m, tm, x, rng)


@pytest.mark.torch
@pytest.mark.parametrize("cls", ["LSTM", "RNN"])
def test_torch_recurrent_gradients(rng, cls):
    import torch

    tm = getattr(torch.nn, cls)(3, 5, num_layers=2, bidirectional=True)
    m = getattr(nn, cls)(3, 5, num_layers=2, bidirectional=True)
    m.load_state_dict(_torch_sd(tm))
    x = randn(rng, 6, 2, 3)
    _same_as_torch(m, tm, x, rng, first=True)


@pytest.mark.torch
def test_torch_transformer_gradients(rng):
    import torch

    tm = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    m = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    m.load_state_dict(_torch_sd(tm))
    x = randn(rng, 2, 5, 8)
    _same_as_torch(m, tm, x, rng)


# -- whole models: kernels vs the same modules running on fastlayers.reference ------------------
class _SeqHead(nn.Module):
    """A recurrent or attention body over (B, T, I) with a linear head on the mean over time."""

    def __init__(self, body, width):
        super().__init__()
        self.body = body
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = self.body(x)
        h = h[0] if isinstance(h, tuple) else h
        self._t = h.shape[1]
        return self.head(np.ascontiguousarray(h.mean(axis=1)))

    def backward(self, g):
        g = self.head.backward(g)
        g = np.ascontiguousarray(np.repeat(g[:, None, :] / self._t, self._t, axis=1))
        return self.body.backward(g)


MODELS = {
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.AvgPool2d(2), nn.Flatten(),
                                  nn.Linear(16, 3)), (6, 1, 8, 8)),
    "inception_residual": (lambda: nn.Sequential(
        nn.Parallel(nn.Conv2d(1, 2, 1), nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.GELU())),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))), nn.Tanh(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)), (6, 1, 6, 6)),
    "autoencoder": (lambda: nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.LeakyReLU(0.1),
                                          nn.ConvTranspose2d(3, 1, 3, stride=2, padding=1, output_padding=1),
                                          nn.Upsample(scale_factor=1), nn.Sigmoid()), (4, 1, 6, 6)),
    "bilstm": (lambda: _SeqHead(nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True), 10), (3, 5, 4)),
    "rnn": (lambda: _SeqHead(nn.RNN(4, 5, batch_first=True), 5), (3, 5, 4)),
    "transformer": (lambda: _SeqHead(nn.Sequential(
        nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)),
        8), (3, 5, 8)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_model_training_matches_reference_kernels(rng, monkeypatch, name):
    """Three SGD steps of a whole model on the kernels, then again with every
    fastlayers.functional name swapped for fastlayers.reference's: same losses, same weights."""
    from fastlayers import functional as F
    from fastlayers import optim

    build, shape = MODELS[name]
    xs = [randn(rng, *shape) for _ in range(3)]
    autoencoder = name == "autoencoder"
    ys = [x if autoencoder else rng.integers(0, 3, shape[0]) for x in xs]

    def train():
        fl.manual_seed(7)
        m = build()
        crit = nn.MSELoss() if autoencoder else nn.CrossEntropyLoss()
        opt = optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        losses, states = [], []
        for x, y in zip(xs, ys):
            losses.append(crit(m(x), y))
            opt.zero_grad()
            m.backward(crit.backward())
            opt.step()
            states.append(m.state_dict())
        return losses, states

    got = train()
    with monkeypatch.context() as mp:
        for fn in R.__all__:
            if callable(getattr(F, fn, None)):
                mp.setattr(F, fn, getattr(R, fn))
        assert F.linear is R.linear and F.conv2d is R.conv2d and F.lstm is R.lstm
        want = train()
    for step in range(3):
        # Both runs are float32 with different summation orders; three momentum steps compound
        # the ~1e-6 relative differences, hence 1e-3.
        assert abs(got[0][step] - want[0][step]) <= 1e-4 * max(1.0, abs(want[0][step])), f"step {step} loss"
        for k, v in want[1][step].items():
            np.testing.assert_allclose(got[1][step][k], v, rtol=1e-3, atol=1e-5, err_msg=f"step {step}: {k}")

"""Batch norm and layer norm vs the float64 reference: forward (training and eval, running
stats updated in place), backward vs reference and finite differences, every ISA, errors."""

import fastlayers as fl
import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, numeric_grad, randn
from fastlayers import _core
from fastlayers import reference as R


def _term_floor(g, scale):
    """grad_x = scale * (g - mean(g) - xhat * mean(g xhat)) cancels to ~0 when a channel or row
    holds 1-2 values (M = 2: xhat = +-1), so its float32 error is relative to the terms
    |g| * |scale|, not to the (tiny) result: 1e-5 of them."""
    return max(1e-6, 1e-5 * float(np.abs(g).max(initial=0)) * float(np.abs(scale).max(initial=0)))


BN_SHAPES = [(2, 3), (7, 5), (33, 1), (4, 3, 5, 7), (2, 1, 1, 1), (3, 17, 1, 1), (5, 4, 9), (16, 8, 33, 31),
             (1, 2, 2, 2), (0, 3), (0, 3, 4, 4)]


def _bn_inputs(rng, shape, affine=True, offset=0.0):
    c = shape[1]
    x = randn(rng, *shape, scale=2.0) + np.float32(offset)
    w = randn(rng, c) if affine else None
    b = randn(rng, c) if affine else None
    rm, rv = randn(rng, c), np.abs(randn(rng, c)) + np.float32(0.5)
    return x, w, b, rm, rv


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_forward_backward(rng, shape, training, affine):
    x, w, b, rm, rv = _bn_inputs(rng, shape, affine, offset=3.0)
    rm64, rv64 = f64(rm, rv)
    y, (mean, invstd) = fl.batch_norm(x, rm, rv, w, b, training=training, momentum=0.3, eps=1e-4,
                                      return_stats=True)
    yr, (mr, ir) = R.batch_norm(f64(x), rm64, rv64, *f64(w, b), training=training, momentum=0.3, eps=1e-4,
                                return_stats=True)
    assert y.shape == shape and y.dtype == np.float32
    assert_close(y, yr, name="y")
    assert_close(rm, rm64, name="running_mean")
    assert_close(rv, rv64, name="running_var")
    assert_close(mean, mr, name="mean")
    assert_close(invstd, ir, name="invstd")
    g = randn(rng, *shape)
    got = fl.batch_norm_backward(g, x, w, mean, invstd, training=training)
    want = R.batch_norm_backward(*f64(g, x, w), mr, ir, training=training)
    floor = _term_floor(g, invstd if w is None else w * invstd)
    for name, a, e in zip(("grad_x", "grad_weight", "grad_bias"), got, want):
        if e is None:
            assert a is None, name
        else:
            assert_close(a, e, atol_floor=floor if name == "grad_x" else 1e-6, name=name)


def test_batch_norm_shifted_data_keeps_precision(rng):
    # Mean 1000, std 1: an unshifted sum of squares would lose ~6 digits of the variance.
    x = randn(rng, 64, 4, 8, 8) + np.float32(1000.0)
    y, (_, invstd) = fl.batch_norm(x, None, None, training=True, return_stats=True)
    yr, (_, ir) = R.batch_norm(f64(x), None, None, training=True, return_stats=True)
    assert_close(invstd, ir, name="invstd")
    # y inherits x's float32 rounding (ulp(1000) = 6e-5 against a std of 1).
    assert_close(y, yr, rtol=1e-3, atol_scale=1e-4, name="y")


def test_batch_norm_running_stats_none_and_views(rng):
    x, w, b, _, _ = _bn_inputs(rng, (6, 4, 3, 3))
    y1 = fl.batch_norm(x, None, None, w, b, training=True)
    assert_close(y1, R.batch_norm(f64(x), None, None, *f64(w, b), training=True))
    # Non-contiguous input and non-contiguous running stats are updated in place through the view.
    big_m, big_v = np.zeros(8, np.float32), np.ones(8, np.float32)
    xs = randn(rng, 6, 8, 5, 6)[:, ::2, ::2, 1:]
    rm64, rv64 = f64(big_m[::2], big_v[::2])
    y = fl.batch_norm(xs, big_m[::2], big_v[::2], training=True)
    assert_close(y, R.batch_norm(f64(xs), rm64, rv64, training=True))
    assert_close(big_m[::2], rm64)
    assert_close(big_v[::2], rv64)
    assert (big_m[1::2] == 0).all() and (big_v[1::2] == 1).all()


def test_batch_norm_eval_accepts_read_only_stats(rng):
    x, w, b, rm, rv = _bn_inputs(rng, (4, 3, 2))
    rm.flags.writeable = False
    rv.flags.writeable = False
    assert_close(fl.batch_norm(x, rm, rv, w, b), R.batch_norm(*f64(x, rm, rv, w, b)))


def test_batch_norm_empty_batch_leaves_running_stats(rng):
    rm, rv = randn(rng, 3), np.ones(3, np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    y = fl.batch_norm(np.zeros((0, 3, 2, 2), np.float32), rm, rv, training=True)
    assert y.shape == (0, 3, 2, 2)
    assert (rm == rm0).all() and (rv == rv0).all()
    gx, gw, gb = fl.batch_norm_backward(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32),
                                        np.ones(3, np.float32), rm, rv, training=True)
    assert gx.shape == (0, 3) and (gw == 0).all() and (gb == 0).all()


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients_vs_finite_differences(rng, training):
    x, w, b, rm, rv = _bn_inputs(rng, (3, 2, 2, 3))
    x64, w64, b64, g64 = f64(x, w, b, randn(rng, 3, 2, 2, 3))
    rm64, rv64 = f64(rm, rv)

    def loss(x_, w_, b_):
        return np.sum(R.batch_norm(x_, rm64.copy(), rv64.copy(), w_, b_, training=training) * g64)

    _, (mr, ir) = R.batch_norm(x64, rm64.copy(), rv64.copy(), w64, b64, training=training, return_stats=True)
    gx, gw, gb = R.batch_norm_backward(g64, x64, w64, mr, ir, training=training)
    assert np.allclose(gx, numeric_grad(lambda v: loss(v, w64, b64), x64), atol=1e-6)
    assert np.allclose(gw, numeric_grad(lambda v: loss(x64, v, b64), w64), atol=1e-6)
    assert np.allclose(gb, numeric_grad(lambda v: loss(x64, w64, v), b64), atol=1e-6)

    x, w, b, rm, rv = _bn_inputs(rng, (4, 3, 5))

    def fwd(x_, w_, b_):
        return fl.batch_norm(x_, rm.copy(), rv.copy(), w_, b_, training=training)

    def bwd(go, x_, w_, b_):
        _, (m, i) = fl.batch_norm(x_, rm.copy(), rv.copy(), w_, b_, training=training, return_stats=True)
        return fl.batch_norm_backward(go, x_, w_, m, i, training=training)

    check_directional(fwd, [x, w, b], bwd, rng)


def test_batch_norm_has_bias_flag(rng):
    x, w, _, rm, rv = _bn_inputs(rng, (5, 3))
    _, (m, i) = fl.batch_norm(x, rm, rv, w, None, training=True, return_stats=True)
    g = randn(rng, 5, 3)
    assert fl.batch_norm_backward(g, x, w, m, i, has_bias=False)[2] is None
    assert fl.batch_norm_backward(g, x, None, m, i)[1:] == (None, None)
    gb = fl.batch_norm_backward(g, x, None, m, i, has_bias=True)[2]
    assert_close(gb, f64(g).sum(0))
    # The forward's own keywords pass through (the API's backward convention) without effect.
    for a_, b_ in zip(fl.batch_norm_backward(g, x, w, m, i, True, 0.3, 1e-3), fl.batch_norm_backward(g, x, w, m, i)):
        np.testing.assert_array_equal(a_, b_)


LN_CASES = [((3, 7), 7), ((1, 1), 1), ((2, 5, 33), 33), ((4, 3, 5), (3, 5)), ((4, 1025), (1025,)), ((0, 8), 8),
            ((6,), 6), ((2, 3, 4, 5), (3, 4, 5)), ((300, 16), 16)]


@pytest.mark.parametrize("shape,ns", LN_CASES)
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm_forward_backward(rng, shape, ns, affine):
    nst = (ns,) if isinstance(ns, int) else ns
    x = randn(rng, *shape, scale=3.0) + np.float32(5.0)
    w = randn(rng, *nst) if affine != "none" else None
    b = randn(rng, *nst) if affine == "both" else None
    y, (mean, rstd) = fl.layer_norm(x, ns, w, b, eps=1e-5, return_stats=True)
    yr, (mr, rr) = R.layer_norm(f64(x), ns, *f64(w, b), eps=1e-5, return_stats=True)
    assert y.shape == shape and mean.shape == shape[: len(shape) - len(nst)]
    assert_close(y, yr, name="y")
    if x.size:
        assert_close(mean, mr, name="mean")
        assert_close(rstd, rr, name="rstd")
    g = randn(rng, *shape)
    want = R.layer_norm_backward(*f64(g, x), ns, *f64(w, b), eps=1e-5)
    floor = _term_floor(g, rstd * (1 if w is None else np.abs(w).max()))
    for kw in ({}, {"mean": mean, "rstd": rstd}):
        got = fl.layer_norm_backward(g, x, ns, w, b, eps=1e-5, **kw)
        for name, a, e in zip(("grad_x", "grad_weight", "grad_bias"), got, want):
            if e is None:
                assert a is None, name
            else:
                assert_close(a, e, atol_floor=floor if name == "grad_x" else 1e-6, name=name)


def test_layer_norm_non_contiguous(rng):
    x = randn(rng, 10, 40)[::2, ::3]
    w = randn(rng, 28)[::2]
    assert_close(fl.layer_norm(x, 14, w), R.layer_norm(f64(x), 14, f64(w)))


def test_layer_norm_gradients_vs_finite_differences(rng):
    x64, w64, b64, g64 = f64(randn(rng, 3, 6), randn(rng, 6), randn(rng, 6), randn(rng, 3, 6))

    def loss(x_, w_, b_):
        return np.sum(R.layer_norm(x_, 6, w_, b_) * g64)

    gx, gw, gb = R.layer_norm_backward(g64, x64, 6, w64, b64)
    assert np.allclose(gx, numeric_grad(lambda v: loss(v, w64, b64), x64), atol=1e-6)
    assert np.allclose(gw, numeric_grad(lambda v: loss(x64, v, b64), w64), atol=1e-6)
    assert np.allclose(gb, numeric_grad(lambda v: loss(x64, w64, v), b64), atol=1e-6)
    check_directional(lambda x_, w_, b_: fl.layer_norm(x_, 24, w_, b_),
                      [randn(rng, 5, 24), randn(rng, 24), randn(rng, 24)],
                      lambda go, x_, w_, b_: fl.layer_norm_backward(go, x_, 24, w_, b_), rng)


_ISAS = ["generic", "avx2", "avx512"]
AVAILABLE_ISAS = _ISAS[: _ISAS.index(_core.detected_isa()) + 1]  # what this CPU can run

@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_every_isa_gives_the_same_results(rng, isa):
    before = _core.cpu_isa()
    try:
        _core.set_isa(isa)
        x, w, b, rm, rv = _bn_inputs(rng, (5, 6, 7, 9))
        y, (m, i) = fl.batch_norm(x, rm.copy(), rv.copy(), w, b, training=True, return_stats=True)
        assert_close(y, R.batch_norm(f64(x), None, None, *f64(w, b), training=True))
        g = randn(rng, 5, 6, 7, 9)
        for a, e in zip(fl.batch_norm_backward(g, x, w, m, i), R.batch_norm_backward(*f64(g, x, w, m, i))):
            assert_close(a, e)
        x2 = x.reshape(35, 54)
        assert_close(fl.batch_norm(x2, None, None, training=True), R.batch_norm(f64(x2), None, None, training=True))
        assert_close(fl.layer_norm(x, (7, 9), w[0] * np.ones((7, 9), np.float32)),
                     R.layer_norm(f64(x), (7, 9), w[0] * np.ones((7, 9))))
        for a, e in zip(fl.layer_norm_backward(g, x, (7, 9)),
                        R.layer_norm_backward(*f64(g, x), (7, 9))):
            if e is not None:
                assert_close(a, e)
    finally:
        _core.set_isa(before)


def test_norm_errors(rng):
    x = randn(rng, 4, 3)
    c3 = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="x: expected at least 2 dimensions"):
        fl.batch_norm(randn(rng, 5), c3, c3)
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\)"):
        fl.batch_norm(x, c3, c3, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"running_var: expected shape \(3,\)"):
        fl.batch_norm(x, c3, np.ones((3, 1), np.float32))
    with pytest.raises(ValueError, match="running_mean: required when training=False"):
        fl.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fl.batch_norm(randn(rng, 1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="read-only"):
        ro = np.ones(3, np.float32)
        ro.flags.writeable = False
        fl.batch_norm(x, ro, c3.copy(), training=True)
    with pytest.raises(TypeError, match="x: dtype float64"):
        fl.batch_norm(x.astype(np.float64), c3, c3)
    with pytest.raises(TypeError, match="momentum"):
        fl.batch_norm(x, c3, c3, momentum="0.1")
    with pytest.raises(ValueError, match="eps"):
        fl.batch_norm(x, c3, c3, eps=-1.0)
    with pytest.raises(ValueError, match="grad_out: shape"):
        fl.batch_norm_backward(randn(rng, 4, 4), x, None, c3, c3)
    with pytest.raises(ValueError, match=r"invstd: expected shape \(3,\)"):
        fl.batch_norm_backward(x, x, None, c3, np.ones(2, np.float32))
    with pytest.raises(ValueError, match="normalized_shape"):
        fl.layer_norm(x, 4)
    with pytest.raises(ValueError, match="normalized_shape"):
        fl.layer_norm(x, (2, 4, 3))
    with pytest.raises(TypeError, match="normalized_shape"):
        fl.layer_norm(x, None)
    with pytest.raises(ValueError, match=r"weight: expected shape \(3,\)"):
        fl.layer_norm(x, 3, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="mean, rstd: pass both"):
        fl.layer_norm_backward(x, x, 3, mean=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"rstd: expected shape \(4,\)"):
        fl.layer_norm_backward(x, x, 3, mean=np.zeros(4, np.float32), rstd=np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="x: dtype float64"):
        fl.layer_norm(x.astype(np.float64), 3)


@pytest.mark.torch
@pytest.mark.parametrize("training", [True, False])
def test_norm_vs_torch(rng, training):
    import torch
    import torch.nn.functional as TF

    x, w, b, rm, rv = _bn_inputs(rng, (6, 5, 4, 3))
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    tx = torch.from_numpy(x).requires_grad_()
    tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
    ty = TF.batch_norm(tx, trm, trv, tw, tb, training=training, momentum=0.2, eps=1e-3)
    y, (m, i) = fl.batch_norm(x, rm, rv, w, b, training=training, momentum=0.2, eps=1e-3, return_stats=True)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-5, atol=1e-6)
    g = randn(rng, 6, 5, 4, 3)
    ty.backward(torch.from_numpy(g))
    for a, t in zip(fl.batch_norm_backward(g, x, w, m, i, training=training), (tx, tw, tb)):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-4, atol=1e-4)

    x = randn(rng, 3, 4, 10)
    w, b = randn(rng, 4, 10), randn(rng, 4, 10)
    tx, tw, tb = (torch.from_numpy(v).requires_grad_() for v in (x, w, b))
    ty = TF.layer_norm(tx, (4, 10), tw, tb)
    np.testing.assert_allclose(fl.layer_norm(x, (4, 10), w, b), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = randn(rng, 3, 4, 10)
    ty.backward(torch.from_numpy(g))
    for a, t in zip(fl.layer_norm_backward(g, x, (4, 10), w, b), (tx, tw, tb)):
        np.testing.assert_allclose(a, t.grad.numpy(), rtol=1e-4, atol=1e-4)

"""Losses vs the float64 reference over shapes, reductions, smoothing and ignored targets;
gradients vs reference and finite differences; PyTorch's conventions; every error path."""

import math

import fastlayers as fl
import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, numeric_grad, randn
from fastlayers import _core
from fastlayers import reference as R

POINTWISE = ["mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"]
SHAPES = [(1,), (7,), (3, 5), (2, 3, 17), (100_003,), (0, 4)]
REDUCTIONS = ["mean", "sum", "none"]


def _pred_target(rng, name, shape):
    x = randn(rng, *shape, scale=2.0)
    t = randn(rng, *shape)
    if name == "binary_cross_entropy":
        # Probabilities kept 0.05 from the ends: the finite-difference step (1e-3) must stay
        # inside [0, 1] and well above the 1/x curvature scale. The ends: test_bce_edges_*.
        x = rng.uniform(0.05, 0.95, shape).astype(np.float32)
    if name != "mse_loss":
        t = rng.uniform(0, 1, shape).astype(np.float32)
    return x, t


def _grad_out(rng, reduction, shape):
    return randn(rng, *shape) if reduction == "none" else np.float32(rng.standard_normal())


@pytest.mark.parametrize("name", POINTWISE)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_pointwise_losses(rng, name, shape, reduction):
    x, t = _pred_target(rng, name, shape)
    f, fb = getattr(fl, name), getattr(fl, name + "_backward")
    rf, rfb = getattr(R, name), getattr(R, name + "_backward")
    y = f(x, t, reduction)
    assert y.dtype == np.float32 and y.shape == (shape if reduction == "none" else ())
    if reduction == "mean" and x.size == 0:
        assert math.isnan(float(y))
    else:
        assert_close(y, rf(*f64(x, t), reduction), name="loss")
    g = _grad_out(rng, reduction, shape)
    assert_close(fb(g, x, t, reduction), rfb(f64(g), *f64(x, t), reduction), name="grad")


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_gradients_vs_finite_differences(rng, name):
    x, t = _pred_target(rng, name, (3, 4))
    x64, t64 = f64(x, t)
    for reduction in REDUCTIONS:
        g = f64(_grad_out(rng, reduction, (3, 4)))
        want = numeric_grad(lambda v, red=reduction, g=g: np.sum(getattr(R, name)(v, t64, red) * g), x64)
        assert np.allclose(getattr(R, name + "_backward")(g, x64, t64, reduction), want, atol=1e-6)
    check_directional(lambda v: getattr(fl, name)(v, t, "none"), [x],
                      lambda go, v: (getattr(fl, name + "_backward")(go, v, t, "none"),), rng)


def test_bce_edges_match_pytorch_clamp():
    x = np.array([0.0, 1.0, 0.0, 1.0, 0.5], np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.3], np.float32)
    y = fl.binary_cross_entropy(x, t, "none")
    assert np.isfinite(y).all()
    assert y[0] == 100 and y[1] == 100 and y[2] == 0 and y[3] == 0
    assert_close(y, R.binary_cross_entropy(*f64(x, t), "none"))
    assert np.isfinite(fl.binary_cross_entropy_backward(1.0, x, t)).all()


def test_bce_with_logits_is_stable():
    x = np.array([1e4, -1e4, 88.0, -88.0, 0.0, 1e30, -1e30], np.float32)
    t = np.array([0.0, 1.0, 0.5, 0.5, 1.0, 0.0, 1.0], np.float32)
    y = fl.binary_cross_entropy_with_logits(x, t, "none")
    assert np.isfinite(y).all()
    assert_close(y, R.binary_cross_entropy_with_logits(*f64(x, t), "none"))
    g = fl.binary_cross_entropy_with_logits_backward(np.ones(7, np.float32), x, t, "none")
    assert_close(g, R.binary_cross_entropy_with_logits_backward(np.ones(7), *f64(x, t), "none"))


CE_SHAPES = [(1, 1), (5, 7), (64, 1000), (0, 5), (3, 4, 5), (2, 3, 4, 5), (2, 3, 300), (4, 2, 1, 1), (1, 10, 0)]


def _ce_inputs(rng, shape, ignore=True, dtype=np.int64):
    z = randn(rng, *shape, scale=3.0)
    tshape = (shape[0],) + shape[2:]
    t = rng.integers(0, shape[1], tshape).astype(dtype)
    if ignore and t.size > 2:
        t.reshape(-1)[:: max(1, t.size // 3)] = -100 if np.issubdtype(dtype, np.signedinteger) else 0
    return z, t


@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy(rng, shape, reduction, smoothing):
    z, t = _ce_inputs(rng, shape)
    y = fl.cross_entropy(z, t, reduction, smoothing)
    want = R.cross_entropy(f64(z), t, reduction, smoothing)
    if reduction == "mean" and not (t != -100).any():
        assert math.isnan(float(y))
    else:
        assert_close(y, want, name="loss")
    g = _grad_out(rng, reduction, t.shape)
    assert_close(fl.cross_entropy_backward(g, z, t, reduction, smoothing),
                 R.cross_entropy_backward(f64(g), f64(z), t, reduction, smoothing), name="grad")


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.uint32, np.int64, np.uint64])
def test_cross_entropy_any_integer_target(rng, dtype):
    z, t = _ce_inputs(rng, (9, 6), ignore=False, dtype=dtype)
    assert_close(fl.cross_entropy(z, t), R.cross_entropy(f64(z), t.astype(np.int64)))


def test_cross_entropy_ignore_index_in_range_and_all_ignored(rng):
    z, t = _ce_inputs(rng, (8, 5), ignore=False)
    t[:3] = 2
    for red in REDUCTIONS:
        assert_close(fl.cross_entropy(z, t, red, 0.1, ignore_index=2), R.cross_entropy(f64(z), t, red, 0.1, 2))
        g = _grad_out(rng, red, t.shape)
        assert_close(fl.cross_entropy_backward(g, z, t, red, 0.1, 2),
                     R.cross_entropy_backward(f64(g), f64(z), t, red, 0.1, 2))
    t[:] = -100
    assert math.isnan(float(fl.cross_entropy(z, t)))
    assert float(fl.cross_entropy(z, t, "sum")) == 0
    assert (fl.cross_entropy_backward(1.0, z, t) == 0).all()


def test_cross_entropy_extreme_and_non_contiguous(rng):
    z = np.array([[1e4, -1e4, 0.0], [1e30, -1e30, 0.0], [-1e30, -1e30, 5.0]], np.float32)
    t = np.array([1, 1, 2])
    y = fl.cross_entropy(z, t, "none")
    assert np.isfinite(y).all()
    assert_close(y, R.cross_entropy(f64(z), t, "none"))
    assert np.isfinite(fl.cross_entropy_backward(1.0, z, t)).all()
    zz = randn(rng, 10, 30, 4)[::2, ::3, 1:]
    tt = rng.integers(0, 10, (5, 3))
    assert_close(fl.cross_entropy(zz, tt, "none"), R.cross_entropy(f64(zz), tt, "none"))
    assert_close(fl.cross_entropy_backward(1.0, zz, tt), R.cross_entropy_backward(1.0, f64(zz), tt))


def test_cross_entropy_gradients_vs_finite_differences(rng):
    z, t = _ce_inputs(rng, (4, 5, 3))
    z64 = f64(z)
    for red in REDUCTIONS:
        g = f64(_grad_out(rng, red, t.shape))
        want = numeric_grad(lambda v, red=red, g=g: np.sum(R.cross_entropy(v, t, red, 0.15) * g), z64)
        assert np.allclose(R.cross_entropy_backward(g, z64, t, red, 0.15), want, atol=1e-6)
    check_directional(lambda v: fl.cross_entropy(v, t, "none", 0.15), [z],
                      lambda go, v: (fl.cross_entropy_backward(go, v, t, "none", 0.15),), rng)


_ISAS = ["generic", "avx2", "avx512"]
AVAILABLE_ISAS = _ISAS[: _ISAS.index(_core.detected_isa()) + 1]  # what this CPU can run

@pytest.mark.parametrize("isa", AVAILABLE_ISAS)
def test_cross_entropy_every_isa(rng, isa):
    before = _core.cpu_isa()
    try:
        _core.set_isa(isa)
        for shape in [(33, 257), (3, 7, 45)]:
            z, t = _ce_inputs(rng, shape)
            assert_close(fl.cross_entropy(z, t, "none", 0.1), R.cross_entropy(f64(z), t, "none", 0.1))
            assert_close(fl.cross_entropy_backward(1.0, z, t, "sum", 0.1),
                         R.cross_entropy_backward(1.0, f64(z), t, "sum", 0.1))
    finally:
        _core.set_isa(before)


def test_loss_errors(rng):
    x, t = randn(rng, 4, 3), randn(rng, 4, 3)
    with pytest.raises(ValueError, match=r"target: shape \(4, 2\) differs from input shape \(4, 3\)"):
        fl.mse_loss(x, t[:, :2])
    with pytest.raises(ValueError, match="reduction: expected"):
        fl.mse_loss(x, t, "avg")
    with pytest.raises(TypeError, match="input: dtype float64"):
        fl.mse_loss(x.astype(np.float64), t)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        fl.binary_cross_entropy(x, np.abs(t) % 1)
    with pytest.raises(ValueError, match="grad_out: the loss was reduced to a scalar"):
        fl.mse_loss_backward(x, x, t, "mean")
    with pytest.raises(ValueError, match="grad_out: shape"):
        fl.mse_loss_backward(x[:2], x, t, "none")
    z, tt = _ce_inputs(rng, (4, 3), ignore=False)
    with pytest.raises(ValueError, match=r"target: class index 3 at flat position 1 is out of range \[0, 3\)"):
        fl.cross_entropy(z, np.array([0, 3, 1, 1]))
    with pytest.raises(ValueError, match="target: class index -1"):
        fl.cross_entropy_backward(1.0, z, np.array([0, -1, 1, 1]))
    with pytest.raises(ValueError, match=r"target: expected shape \(4,\)"):
        fl.cross_entropy(z, tt[:3])
    with pytest.raises(TypeError, match="target: expected an integer dtype"):
        fl.cross_entropy(z, tt.astype(np.float32))
    with pytest.raises(ValueError, match="input: expected at least 2 dimensions"):
        fl.cross_entropy(z[0], tt[0])
    with pytest.raises(ValueError, match="label_smoothing"):
        fl.cross_entropy(z, tt, label_smoothing=1.5)
    with pytest.raises(TypeError, match="ignore_index"):
        fl.cross_entropy(z, tt, ignore_index=1.0)
    with pytest.raises(ValueError, match="at least one class"):
        fl.cross_entropy(np.zeros((2, 0), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="grad_out: shape"):
        fl.cross_entropy_backward(np.ones(3, np.float32), z, tt, "none")


@pytest.mark.torch
def test_losses_vs_torch(rng):
    import torch
    import torch.nn.functional as TF

    x, t = randn(rng, 6, 5), randn(rng, 6, 5)
    p = (1 / (1 + np.exp(-x))).astype(np.float32)
    tb = rng.uniform(0, 1, (6, 5)).astype(np.float32)
    cases = [("mse_loss", TF.mse_loss, x, t), ("binary_cross_entropy", TF.binary_cross_entropy, p, tb),
             ("binary_cross_entropy_with_logits", TF.binary_cross_entropy_with_logits, x, tb)]
    for name, tf, a, b in cases:
        for red in REDUCTIONS:
            ta = torch.from_numpy(a.copy()).requires_grad_()
            ty = tf(ta, torch.from_numpy(b), reduction=red)
            np.testing.assert_allclose(getattr(fl, name)(a, b, red), ty.detach().numpy(), rtol=1e-5, atol=1e-6)
            g = _grad_out(rng, red, a.shape)
            ty.backward(torch.from_numpy(np.asarray(g, np.float32)))
            np.testing.assert_allclose(getattr(fl, name + "_backward")(g, a, b, red), ta.grad.numpy(), rtol=1e-5,
                                       atol=1e-6)
    for shape in [(7, 5), (3, 4, 2, 5)]:
        z, tt = _ce_inputs(rng, shape)
        for red in REDUCTIONS:
            for smoothing in (0.0, 0.3):
                tz = torch.from_numpy(z.copy()).requires_grad_()
                ty = TF.cross_entropy(tz, torch.from_numpy(tt), reduction=red, label_smoothing=smoothing)
                np.testing.assert_allclose(fl.cross_entropy(z, tt, red, smoothing), ty.detach().numpy(), rtol=1e-5,
                                           atol=1e-5)
                g = _grad_out(rng, red, tt.shape)
                ty.backward(torch.from_numpy(np.asarray(g, np.float32)))
                np.testing.assert_allclose(fl.cross_entropy_backward(g, z, tt, red, smoothing), tz.grad.numpy(),
                                           rtol=1e-5, atol=1e-6)

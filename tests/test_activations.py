"""Activations and softmax vs the float64 reference; gradients vs reference and FD; IEEE cases."""

import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, numeric_grad, randn

import fastlayers as fl
from fastlayers import reference as R

UNARY = [
    ("relu", {}), ("leaky_relu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("sigmoid", {}),
    ("tanh", {}), ("gelu", {}), ("gelu", {"approximate": "tanh"}),
]
SHAPES = [(1,), (7,), (3, 5), (2, 3, 17), (100_003,), (0, 4)]


@pytest.mark.parametrize("name,kw", UNARY)
@pytest.mark.parametrize("shape", SHAPES)
def test_unary_forward_backward(rng, name, kw, shape):
    x = randn(rng, *shape, scale=3.0)
    f, fb = getattr(fl, name), getattr(fl, name + "_backward")
    rf, rfb = getattr(R, name), getattr(R, name + "_backward")
    y = f(x, **kw)
    assert_close(y, rf(f64(x), **kw))
    g = randn(rng, *shape)
    assert_close(fb(g, x, **kw), rfb(*f64(g, x), **kw))
    if name in ("sigmoid", "tanh"):
        assert_close(fb(g, x, y=y), rfb(*f64(g, x), **kw))


@pytest.mark.parametrize("name,kw", [u for u in UNARY if u[0] != "relu" and u[0] != "leaky_relu"])
def test_unary_gradients_vs_finite_differences(rng, name, kw):
    x = f64(randn(rng, 9))
    g = f64(randn(rng, 9))
    want = numeric_grad(lambda x_: np.sum(getattr(R, name)(x_, **kw) * g), x)
    assert np.allclose(getattr(R, name + "_backward")(g, x, **kw), want, atol=1e-7)
    check_directional(lambda x_: getattr(fl, name)(x_, **kw), [randn(rng, 50)],
                      lambda go, x_: (getattr(fl, name + "_backward")(go, x_, **kw),), rng)


def test_non_contiguous_input(rng):
    x = randn(rng, 20, 30)[::3, ::2]
    for name, kw in UNARY:
        assert_close(getattr(fl, name)(x, **kw), getattr(R, name)(f64(x), **kw))
    assert_close(fl.softmax(x, axis=0), R.softmax(f64(x), axis=0))


def test_ieee_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30], np.float32)
    assert np.isnan(fl.relu(x)[0]) and fl.relu(x)[1] == np.inf and fl.relu(x)[2] == 0
    s = fl.sigmoid(x)
    assert np.isnan(s[0]) and s[1] == 1 and s[2] == 0 and s[5] == 1 and s[6] == 0
    t = fl.tanh(x)
    assert np.isnan(t[0]) and t[1] == 1 and t[2] == -1
    gl = fl.gelu(x)
    assert np.isnan(gl[0]) and gl[1] == np.inf and gl[5] == np.float32(1e30) and gl[6] == 0


@pytest.mark.parametrize("shape,axis", [((1,), 0), ((5,), -1), ((3, 7), -1), ((3, 7), 0), ((2, 5, 3), 1),
                                        ((4, 1000), -1), ((0, 5), -1), ((3, 0), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax(rng, shape, axis, log):
    x = randn(rng, *shape, scale=5.0)
    f, fb = (fl.log_softmax, fl.log_softmax_backward) if log else (fl.softmax, fl.softmax_backward)
    rf, rfb = (R.log_softmax, R.log_softmax_backward) if log else (R.softmax, R.softmax_backward)
    if x.size == 0:
        assert f(x, axis).shape == shape
        return
    y = f(x, axis)
    assert_close(y, rf(f64(x), axis))
    g = randn(rng, *shape)
    assert_close(fb(g, x, axis), rfb(*f64(g, x), axis))
    assert_close(fb(g, x, axis, y=y), rfb(*f64(g, x), axis))


def test_softmax_extreme_logits():
    x = np.array([[1e30, -1e30, 0.0], [1e4, 1e4 - 1, -1e4], [-1e30, -1e30, -1e30]], np.float32)
    y = fl.softmax(x)
    assert np.isfinite(y).all()
    assert_close(y, R.softmax(f64(x)))
    ly = fl.log_softmax(x)
    assert np.isfinite(ly[1]).all()
    assert_close(ly[1], R.log_softmax(f64(x))[1])


def test_softmax_gradient_fd(rng):
    x, g = f64(randn(rng, 3, 6)), f64(randn(rng, 3, 6))
    for rf, rfb in ((R.softmax, R.softmax_backward), (R.log_softmax, R.log_softmax_backward)):
        assert np.allclose(rfb(g, x, 1), numeric_grad(lambda x_: np.sum(rf(x_, 1) * g), x), atol=1e-7)
    check_directional(lambda x_: fl.log_softmax(x_), [randn(rng, 4, 9)],
                      lambda go, x_: (fl.log_softmax_backward(go, x_),), rng)


def test_errors(rng):
    x = randn(rng, 3, 4)
    with pytest.raises(TypeError, match="x: dtype float64"):
        fl.relu(x.astype(np.float64))
    with pytest.raises(ValueError, match="grad_out: shape"):
        fl.relu_backward(randn(rng, 4, 3), x)
    with pytest.raises(ValueError, match="approximate"):
        fl.gelu(x, approximate="fast")
    with pytest.raises(ValueError, match="axis"):
        fl.softmax(x, axis=2)
    with pytest.raises(TypeError, match="axis"):
        fl.softmax(x, axis=1.0)

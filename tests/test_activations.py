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


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_available_isa_path(rng, isa):
    """Each ISA's elementwise kernels in turn (set_isa clamps to what the CPU has): sizes around
    the vector widths exercise the masked tails, softmax runs along the contiguous axis and
    across it (inner > 1, column groups with tails), and the IEEE cases hold on every path."""
    from fastlayers import _core

    before = _core.cpu_isa()
    try:
        used = _core.set_isa(isa)
        for n in (1, 7, 8, 9, 15, 16, 17, 33, 1000):
            x, g = randn(rng, n, scale=4.0), randn(rng, n)
            for name, kw in UNARY:
                f, fb = getattr(fl, name), getattr(fl, name + "_backward")
                rf, rfb = getattr(R, name), getattr(R, name + "_backward")
                y = f(x, **kw)
                assert_close(y, rf(f64(x), **kw), name=f"{name} isa {used} n {n}")
                assert_close(fb(g, x, **kw), rfb(*f64(g, x), **kw), name=f"{name}_backward isa {used} n {n}")
                if name in ("sigmoid", "tanh"):
                    assert_close(fb(g, x, y=y), rfb(*f64(g, x), **kw), name=f"{name}_backward(y) isa {used}")
        for shape, axis in (((5, 37), -1), ((3, 37, 70), 1), ((37, 9), 0), ((2, 3, 130), 0)):
            x, g = randn(rng, *shape, scale=5.0), randn(rng, *shape)
            for f, fb, rf, rfb in ((fl.softmax, fl.softmax_backward, R.softmax, R.softmax_backward),
                                   (fl.log_softmax, fl.log_softmax_backward, R.log_softmax, R.log_softmax_backward)):
                y = f(x, axis)
                assert_close(y, rf(f64(x), axis), name=f"{f.__name__} {shape} axis {axis} isa {used}")
                assert_close(fb(g, x, axis, y=y), rfb(*f64(g, x), axis), name=f"{fb.__name__} isa {used}")
        test_ieee_special_values()
        test_softmax_extreme_logits()
        # A NaN poisons its own softmax row only, along either axis.
        x = randn(rng, 4, 19)
        x[1, 5] = np.nan
        assert np.isnan(fl.softmax(x)[1]).all() and np.isfinite(fl.softmax(x)[[0, 2, 3]]).all()
        assert np.isnan(fl.softmax(x, axis=0)[:, 5]).all() and np.isfinite(np.delete(fl.softmax(x, axis=0), 5, 1)).all()
    finally:
        _core.set_isa(before)


def test_simd_math_accuracy_over_a_dense_range():
    """The SIMD exp/tanh/erfc approximations over 2e5 points in [-20, 20] and huge |x|: within
    the shared tolerance everywhere (rtol 1e-4 and an atol of 1e-5 x max|y|, so tails whose
    values underflow to ~1e-38 are only held to that floor)."""
    x = np.concatenate([np.linspace(-20, 20, 200_001, dtype=np.float32),
                        np.float32(10.0) ** np.linspace(-30, 30, 301, dtype=np.float32) * np.float32(-1),
                        np.float32(10.0) ** np.linspace(-30, 30, 301, dtype=np.float32)]).astype(np.float32)
    for name, kw in UNARY:
        if name in ("relu", "leaky_relu"):
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # the float64 reference at |x| = 1e30
            want = getattr(R, name)(f64(x), **kw)
        assert_close(getattr(fl, name)(x, **kw), want, name=name)


def test_large_arrays_use_streaming_stores(rng):
    """Above 48 MiB of output the unary kernels write with non-temporal stores (after an
    aligned head); an odd offset view exercises the unaligned head and tail."""
    x = randn(rng, (48 << 18) + 11)[3:]
    y = fl.relu(x)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(fl.leaky_relu(x, 0.5), np.where(x >= 0, x, x * np.float32(0.5)))

"""Elementwise activations and softmax, forward and backward."""

from __future__ import annotations

from .. import _core, _cuda
from .._arrays import backend, check_array, contiguous, cuda_stream, dev_ptr, empty, normalize_axis

__all__ = [
    "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax",
    "relu_backward", "leaky_relu_backward", "sigmoid_backward", "tanh_backward",
    "gelu_backward", "softmax_backward", "log_softmax_backward",
]

# Codes shared with csrc/elementwise/elementwise.h (UnaryOp).
_RELU, _LEAKY, _SIGMOID, _TANH, _GELU, _GELU_TANH = range(6)


def _gelu_code(approximate) -> int:
    if approximate == "none":
        return _GELU
    if approximate == "tanh":
        return _GELU_TANH
    raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")


def _unary(code: int, x, slope: float = 0.0):
    kind = backend(x=x)
    check_array(x, "x")
    x = contiguous(x)
    y = empty(x.shape, x)
    if kind == "cuda":
        _core.cuda_unary(code, dev_ptr(x), dev_ptr(y), x.size, slope, cuda_stream())
    else:
        _core.unary(code, x, y, slope)
    return y


def _check_same_shape(grad_out, x, gname="grad_out", xname="x"):
    if tuple(grad_out.shape) != tuple(x.shape):
        raise ValueError(f"{gname}: shape {tuple(grad_out.shape)} differs from {xname} shape {tuple(x.shape)}")


def _unary_backward(code: int, grad_out, x, y=None, slope: float = 0.0):
    kind = backend(grad_out=grad_out, x=x, y=y)
    check_array(grad_out, "grad_out")
    check_array(x, "x")
    _check_same_shape(grad_out, x)
    if y is not None:
        check_array(y, "y")
        _check_same_shape(y, x, "y")
        y = contiguous(y)
    g, x = contiguous(grad_out), contiguous(x)
    dx = empty(x.shape, x)
    if kind == "cuda":
        _core.cuda_unary_backward(code, dev_ptr(g), dev_ptr(x), dev_ptr(dx), x.size, slope, cuda_stream())
    else:
        _core.unary_backward(code, g, x, y, dx, slope)
    return dx


def relu(x):
    """max(x, 0); NaN stays NaN."""
    return _unary(_RELU, x)


def leaky_relu(x, negative_slope=0.01):
    return _unary(_LEAKY, x, float(negative_slope))


def sigmoid(x):
    return _unary(_SIGMOID, x)


def tanh(x):
    return _unary(_TANH, x)


def gelu(x, approximate="none"):
    """GELU: x * Phi(x) (approximate='none') or the tanh approximation ('tanh')."""
    return _unary(_gelu_code(approximate), x)


def relu_backward(grad_out, x):
    return _unary_backward(_RELU, grad_out, x)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    return _unary_backward(_LEAKY, grad_out, x, slope=float(negative_slope))


def sigmoid_backward(grad_out, x, *, y=None):
    """Gradient of sigmoid; pass the forward output y to skip recomputing it."""
    return _unary_backward(_SIGMOID, grad_out, x, y)


def tanh_backward(grad_out, x, *, y=None):
    """Gradient of tanh; pass the forward output y to skip recomputing it."""
    return _unary_backward(_TANH, grad_out, x, y)


def gelu_backward(grad_out, x, approximate="none"):
    return _unary_backward(_gelu_code(approximate), grad_out, x)


def _softmax_dims(x, axis):
    ax = normalize_axis(axis, x.ndim)
    shape = tuple(x.shape) or (1,)
    outer = 1
    for s in shape[:ax]:
        outer *= s
    inner = 1
    for s in shape[ax + 1:]:
        inner *= s
    return outer, shape[ax], inner


def _softmax(x, axis, log):
    kind = backend(x=x)
    check_array(x, "x")
    outer, n, inner = _softmax_dims(x, axis)
    if kind == "cuda":
        return _cuda.log_softmax(x, axis) if log else _cuda.softmax(x, axis)
    x = contiguous(x)
    y = empty(x.shape, x)
    _core.softmax(x, y, outer, n, inner, log)
    return y


def _softmax_backward(grad_out, x, axis, y, log):
    kind = backend(grad_out=grad_out, x=x, y=y)
    check_array(grad_out, "grad_out")
    check_array(x, "x")
    _check_same_shape(grad_out, x)
    if y is None:
        y = _softmax(x, axis, log)
    else:
        check_array(y, "y")
        _check_same_shape(y, x, "y")
    outer, n, inner = _softmax_dims(x, axis)
    if kind == "cuda":
        back = _cuda.log_softmax_backward if log else _cuda.softmax_backward
        return back(grad_out, x, axis, y=y)
    g, y = contiguous(grad_out), contiguous(y)
    dx = empty(x.shape, x)
    _core.softmax_backward(g, y, dx, outer, n, inner, log)
    return dx


def softmax(x, axis=-1):
    """exp(x - max) / sum, along axis; stable for any finite input."""
    return _softmax(x, axis, False)


def log_softmax(x, axis=-1):
    return _softmax(x, axis, True)


def softmax_backward(grad_out, x, axis=-1, *, y=None):
    """Gradient of softmax; pass the forward output y to skip recomputing it."""
    return _softmax_backward(grad_out, x, axis, y, False)


def log_softmax_backward(grad_out, x, axis=-1, *, y=None):
    """Gradient of log_softmax; pass the forward output y to skip recomputing it."""
    return _softmax_backward(grad_out, x, axis, y, True)

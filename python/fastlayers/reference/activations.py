"""NumPy reference for the activations and softmax."""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax",
    "relu_backward", "leaky_relu_backward", "sigmoid_backward", "tanh_backward",
    "gelu_backward", "softmax_backward", "log_softmax_backward",
]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def relu(x):
    return np.where((x > 0) | np.isnan(x), x, np.zeros_like(x))


def leaky_relu(x, negative_slope=0.01):
    return np.where(x >= 0, x, x * negative_slope).astype(x.dtype)


def sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(x.dtype)


def tanh(x):
    return np.tanh(x)


def _phi(x):
    """Standard normal CDF."""
    return 0.5 * (1.0 + _erf(np.asarray(x, np.float64) / math.sqrt(2.0)))


def gelu(x, approximate="none"):
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x64 + 0.044715 * x64**3)))
    else:
        y = x64 * _phi(x64)
    return y.astype(x.dtype)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def relu_backward(grad_out, x):
    return grad_out * (x > 0)


def leaky_relu_backward(grad_out, x, negative_slope=0.01):
    return grad_out * np.where(x >= 0, 1.0, negative_slope).astype(x.dtype)


def sigmoid_backward(grad_out, x, *, y=None):
    s = sigmoid(x) if y is None else y
    return grad_out * s * (1 - s)


def tanh_backward(grad_out, x, *, y=None):
    t = np.tanh(x) if y is None else y
    return grad_out * (1 - t * t)


def gelu_backward(grad_out, x, approximate="none"):
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        c = math.sqrt(2.0 / math.pi)
        t = np.tanh(c * (x64 + 0.044715 * x64**3))
        d = 0.5 * (1 + t) + 0.5 * x64 * (1 - t * t) * c * (1 + 3 * 0.044715 * x64**2)
    else:
        d = _phi(x64) + x64 * np.exp(-0.5 * x64 * x64) / math.sqrt(2 * math.pi)
    return (grad_out * d).astype(x.dtype)


def softmax_backward(grad_out, x, axis=-1, *, y=None):
    s = softmax(x, axis) if y is None else y
    return s * (grad_out - (grad_out * s).sum(axis=axis, keepdims=True))


def log_softmax_backward(grad_out, x, axis=-1, *, y=None):
    s = np.exp(log_softmax(x, axis) if y is None else y)
    return grad_out - s * grad_out.sum(axis=axis, keepdims=True)

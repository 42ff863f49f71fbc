"""Elementwise activations and Softmax."""

from __future__ import annotations

from . import _kernels as K
from .module import Module

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax"]


class _Act(Module):
    _fn = ""
    _keep_y = False  # backward from the output (sigmoid, tanh) instead of recomputing it

    def _kw(self):
        return {}

    def forward(self, x):
        y = K.activation(self._fn, x, **self._kw())
        self._x = x
        self._y = y if self._keep_y else None
        return y

    def backward(self, grad_out):
        self._need_cache("_x")
        return K.activation_backward(self._fn, grad_out, self._x, self._y, **self._kw())


class ReLU(_Act):
    _fn = "relu"

    def __init__(self, inplace=False):
        super().__init__()
        self._x = None


class LeakyReLU(_Act):
    _fn = "leaky_relu"

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self._x = None

    def _kw(self):
        return {"negative_slope": self.negative_slope}

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(_Act):
    _fn = "sigmoid"
    _keep_y = True

    def __init__(self):
        super().__init__()
        self._x = None


class Tanh(_Act):
    _fn = "tanh"
    _keep_y = True

    def __init__(self):
        super().__init__()
        self._x = None


class GELU(_Act):
    _fn = "gelu"

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self._x = None

    def _kw(self):
        return {"approximate": self.approximate}


class Softmax(Module):
    _log = False

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = -1 if dim is None else int(dim)
        self._x = self._y = None

    def forward(self, x):
        self._x = x
        self._y = (K.F.log_softmax if self._log else K.F.softmax)(x, self.dim)
        return self._y

    def backward(self, grad_out):
        self._need_cache("_x")
        back = K.F.log_softmax_backward if self._log else K.F.softmax_backward
        return K._first(back(grad_out, self._x, self.dim, y=self._y))

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    _log = True

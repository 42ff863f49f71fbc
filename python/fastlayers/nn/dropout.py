"""Dropout."""

from __future__ import annotations

from . import _kernels as K
from .module import Module

__all__ = ["Dropout"]


class Dropout(Module):
    """Zeroes each element with probability p in training and scales the rest by 1/(1-p); the
    identity in eval mode or with p = 0. Masks are drawn from fl.manual_seed's generator."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p: dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self._mask = None
        self._active = False

    def forward(self, x):
        self._active = self.training and self.p > 0.0
        if not self._active:
            self._mask = None
            return x
        y, self._mask = K.dropout(x, self.p)
        return y

    def backward(self, grad_out):
        if not self._active:
            return grad_out
        return K.dropout_backward(grad_out, self._mask, self.p)

    def extra_repr(self):
        return f"p={self.p}"

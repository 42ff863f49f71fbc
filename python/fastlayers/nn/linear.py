"""Linear and Flatten."""

from __future__ import annotations

from . import _kernels as K
from . import init
from .module import Module, Parameter

__all__ = ["Linear", "Flatten", "Identity"]


class Linear(Module):
    """y = x @ weight.T + bias; x (..., in_features). weight (out, in) ~ U(+-1/sqrt(in)) as PyTorch."""

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        shape = (self.out_features, self.in_features)
        self.weight = Parameter(init.kaiming_uniform(shape, a=5**0.5))
        self.bias = Parameter(init.bias_uniform((self.out_features,), self.in_features)) if bias else None
        self._x = None

    def forward(self, x):
        self._x = x
        return K.linear(x, self.weight.data, None if self.bias is None else self.bias.data)

    def backward(self, grad_out):
        self._need_cache("_x")
        b = self.bias
        gx, gw, gb = K.linear_backward(grad_out, self._x, self.weight.data, None if b is None else b.data)
        self.weight.accumulate(gw)
        if b is not None:
            b.accumulate(gb)
        return gx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one (default: all but the batch dim)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self._shape = None

    def forward(self, x):
        self._shape = x.shape
        nd = x.ndim
        s = self.start_dim % nd if nd else 0
        e = self.end_dim % nd if nd else 0
        if s > e:
            raise ValueError(f"Flatten: start_dim {self.start_dim} is after end_dim {self.end_dim} for shape {x.shape}")
        mid = 1
        for d in x.shape[s:e + 1]:
            mid *= d
        return x.reshape(tuple(x.shape[:s]) + (mid,) + tuple(x.shape[e + 1:]))

    def backward(self, grad_out):
        self._need_cache("_shape")
        return grad_out.reshape(self._shape)


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out

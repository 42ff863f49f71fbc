"""BatchNorm1d/2d and LayerNorm."""

from __future__ import annotations

import numpy as np

from . import _kernels as K
from . import init
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Module):
    _ranks = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(init.ones((c,))) if affine else None
        self.bias = Parameter(init.zeros((c,))) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", init.zeros((c,)))
            self.register_buffer("running_var", init.ones((c,)))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._cache = None

    def _check(self, x):
        if x.ndim not in self._ranks:
            raise ValueError(f"{type(self).__name__}: expected a {' or '.join(f'{r}-D' for r in self._ranks)} "
                             f"input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: input has {x.shape[1]} channels (shape {tuple(x.shape)}), "
                             f"expected num_features={self.num_features}")

    def forward(self, x):
        self._check(x)
        shape = x.shape
        if x.ndim == 3:  # (N, C, L) runs as (N, C, L, 1)
            x = x.reshape(shape + (1,))
        w = None if self.weight is None else self.weight.data
        b = None if self.bias is None else self.bias.data
        use_batch = self.training or not self.track_running_stats
        if use_batch and self.track_running_stats:
            self.num_batches_tracked = self.num_batches_tracked + 1
            mom = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        else:
            mom = 0.0
        # Without tracked statistics the running buffers are None: the kernel then keeps nothing.
        y, mean, invstd = K.batch_norm(x, self.running_mean, self.running_var, w, b, use_batch, float(mom), self.eps)
        self._cache = (use_batch, x, mean, invstd)
        return y.reshape(shape)

    def backward(self, grad_out):
        self._need_cache("_cache")
        use_batch, x, mean, invstd = self._cache
        w = None if self.weight is None else self.weight.data
        b = None if self.bias is None else self.bias.data
        gx, gw, gb = K.batch_norm_backward(grad_out.reshape(x.shape), x, mean, invstd, w, b, use_batch)
        if self.weight is not None:
            self.weight.accumulate(gw)
            self.bias.accumulate(gb)
        return gx.reshape(grad_out.shape)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Over (N, C) or (N, C, L) inputs."""

    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Over (N, C, H, W) inputs."""

    _ranks = (4,)


class LayerNorm(Module):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True):
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = Parameter(init.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = Parameter(init.zeros(self.normalized_shape)) if (elementwise_affine and bias) else None
        self._x = None

    def _wb(self):
        return (None if self.weight is None else self.weight.data, None if self.bias is None else self.bias.data)

    def forward(self, x):
        y, self._stats = K.layer_norm(x, self.normalized_shape, *self._wb(), self.eps)
        self._x = x
        return y

    def backward(self, grad_out):
        self._need_cache("_x")
        gx, gw, gb = K.layer_norm_backward(grad_out, self._x, self.normalized_shape, *self._wb(), self.eps,
                                           self._stats)
        if self.weight is not None:
            self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

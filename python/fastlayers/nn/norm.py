"""BatchNorm1d/2d and LayerNorm."""

from __future__ import annotations

import numpy as np

from . import _kernels as K
from . import init
from .module import Module, Parameter, _xp

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
        if use_batch:
            xp = _xp(x)
            if self.track_running_stats:
                rm, rv = self.running_mean, self.running_var
                self.num_batches_tracked = self.num_batches_tracked + 1
                mom = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            else:  # stats of this batch only: scratch running buffers nobody keeps
                rm, rv = xp.zeros(self.num_features, np.float32), xp.ones(self.num_features, np.float32)
                mom = 0.0
            y, mean, invstd = K.batch_norm_train(x, rm, rv, w, b, float(mom), self.eps)
            self._cache = ("batch", x, mean, invstd)
        else:
            y = K.batch_norm_eval(x, self.running_mean, self.running_var, w, b, self.eps)
            self._cache = ("running", x, None, None)
        return y.reshape(shape)

    def backward(self, grad_out):
        self._need_cache("_cache")
        mode, x, mean, invstd = self._cache
        g = grad_out.reshape(x.shape)
        w = None if self.weight is None else self.weight.data
        b = None if self.bias is None else self.bias.data
        if mode == "batch":
            gx, gw, gb = K.batch_norm_backward(g, x, mean, invstd, w, b, self.eps)
        else:
            # Eval mode is a fixed per-channel affine map: y = (x - mu) * s * w + b, s = 1/sqrt(var+eps).
            xp = _xp(x)
            bshape = (1, -1) + (1,) * (x.ndim - 2)
            s = (1.0 / xp.sqrt(self.running_var.astype(np.float64) + self.eps)).astype(np.float32)
            axes = (0,) + tuple(range(2, x.ndim))
            scale = s if w is None else s * w
            gx = xp.ascontiguousarray(g * scale.reshape(bshape), dtype=np.float32)
            xhat = (x - self.running_mean.reshape(bshape)) * s.reshape(bshape)
            gw = None if w is None else (g * xhat).sum(axis=axes, dtype=np.float32)
            gb = None if b is None else g.sum(axis=axes, dtype=np.float32)
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
        self._x = x
        return K.layer_norm(x, self.normalized_shape, *self._wb(), self.eps)

    def backward(self, grad_out):
        self._need_cache("_x")
        gx, gw, gb = K.layer_norm_backward(grad_out, self._x, self.normalized_shape, *self._wb(), self.eps)
        if self.weight is not None:
            self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

"""NumPy reference for the norm kernels (same names and signatures as functional/_norm.py)."""

from __future__ import annotations

import numpy as np

__all__ = ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward"]


def _bshape(x):
    return (1, -1) + (1,) * (x.ndim - 2)


def _axes(x):
    return (0,) + tuple(range(2, x.ndim))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    shp = _bshape(x)
    if training:
        m = x.size // x.shape[1] if x.shape[1] else 0
        mean = x.mean(axis=_axes(x)) if m else np.zeros(x.shape[1], x.dtype)
        var = x.var(axis=_axes(x)) if m else np.zeros(x.shape[1], x.dtype)
        if m:
            if running_mean is not None:
                running_mean[...] = (1 - momentum) * running_mean + momentum * mean
            if running_var is not None:
                running_var[...] = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    else:
        mean, var = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean.reshape(shp)) * invstd.reshape(shp)
    if weight is not None:
        y = y * weight.reshape(shp)
    if bias is not None:
        y = y + bias.reshape(shp)
    return (y, (mean, invstd)) if return_stats else y


def batch_norm_backward(grad_out, x, weight, mean, invstd, training=True, momentum=0.1, eps=1e-5, *, has_bias=None):
    shp, ax = _bshape(x), _axes(x)
    xhat = (x - mean.reshape(shp)) * invstd.reshape(shp)
    w = np.ones_like(mean) if weight is None else weight
    gxhat = grad_out * w.reshape(shp)
    if training and x.size:
        gx = invstd.reshape(shp) * (gxhat - gxhat.mean(axis=ax, keepdims=True)
                                    - xhat * (gxhat * xhat).mean(axis=ax, keepdims=True))
    else:
        gx = gxhat * invstd.reshape(shp)
    if has_bias is None:
        has_bias = weight is not None
    gw = (grad_out * xhat).sum(axis=ax) if weight is not None else None
    gb = grad_out.sum(axis=ax) if has_bias else None
    return gx, gw, gb


def _ns(normalized_shape):
    return (int(normalized_shape),) if np.ndim(normalized_shape) == 0 else tuple(int(v) for v in normalized_shape)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, return_stats=False):
    ax = tuple(range(x.ndim - len(_ns(normalized_shape)), x.ndim))
    mean = x.mean(axis=ax, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(axis=ax, keepdims=True) + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return (y, (mean.reshape(mean.shape[: x.ndim - len(ax)]), rstd.reshape(rstd.shape[: x.ndim - len(ax)]))) \
        if return_stats else y


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, mean=None, rstd=None):
    k = len(_ns(normalized_shape))
    ax = tuple(range(x.ndim - k, x.ndim))
    if mean is None:
        _, (mean, rstd) = layer_norm(x, normalized_shape, None, None, eps, return_stats=True)
    mean = mean.reshape(mean.shape + (1,) * k)
    rstd = rstd.reshape(rstd.shape + (1,) * k)
    xhat = (x - mean) * rstd
    gxhat = grad_out * weight if weight is not None else grad_out
    gx = rstd * (gxhat - gxhat.mean(axis=ax, keepdims=True) - xhat * (gxhat * xhat).mean(axis=ax, keepdims=True))
    lead = tuple(range(x.ndim - k))
    gw = (grad_out * xhat).sum(axis=lead) if weight is not None else None
    gb = grad_out.sum(axis=lead) if bias is not None else None
    return gx, gw, gb

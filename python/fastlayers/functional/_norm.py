"""Batch norm and layer norm, forward and backward (see API.md).

batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
           momentum=0.1, eps=1e-5, return_stats=False)
    x is (N, C) or (N, C, *spatial) (N, C, H, W for BatchNorm2d; (N, C, L) also works).
    training=True normalises with the batch statistics (biased variance) and, when they are
    not None, updates running_mean/running_var in place with the batch mean and the unbiased
    variance: r = (1 - momentum) * r + momentum * batch (PyTorch's rule). training=False uses
    the running statistics (both required). return_stats=True returns (y, (mean, invstd)),
    the per-channel statistics actually used (in eval mode: running_mean and
    1/sqrt(running_var + eps)), which batch_norm_backward takes.

batch_norm_backward(grad_out, x, weight, mean, invstd, training=True, momentum=0.1, eps=1e-5,
                    *, has_bias=None)
    -> (grad_x, grad_weight, grad_bias). weight None -> grad_weight None; grad_bias is None
    when has_bias is False (default: has_bias = weight is not None, PyTorch's affine flag).
    mean/invstd: the pair batch_norm(..., return_stats=True) returned. training=False: they
    were constants, grad_x = grad_out * weight * invstd. momentum and eps are batch_norm's own
    keywords, accepted so that a call can pass the forward's arguments through; they do not
    change the result (invstd already holds eps).

layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, return_stats=False)
    normalises over the trailing dims given by normalized_shape (int or tuple);
    return_stats=True returns (y, (mean, rstd)), each of shape x.shape[:-len(normalized_shape)].

layer_norm_backward(grad_out, x, normalized_shape, weight=None, bias=None, eps=1e-5, *,
                    mean=None, rstd=None)
    -> (grad_x, grad_weight, grad_bias) (None where weight/bias was None). mean/rstd from
    layer_norm(..., return_stats=True) skip recomputing them."""

from __future__ import annotations

import math

import numpy as np

from .. import _core
from .._arrays import backend, check_array, contiguous, empty

__all__ = ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward"]


def _cpu_only(op, **arrays):
    if backend(**arrays) == "cuda":
        raise NotImplementedError(f"{op}: no CUDA kernel yet; move the arrays to the CPU (cupy.asnumpy)")


def _channel_vec(v, name, c):
    if v is None:
        return None
    check_array(v, name)
    if tuple(v.shape) != (c,):
        raise ValueError(f"{name}: expected shape ({c},) (one value per channel), got {tuple(v.shape)}")
    return contiguous(v)


def _float(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    return v


def _bn_dims(x):
    check_array(x, "x", min_ndim=2)
    n, c = int(x.shape[0]), int(x.shape[1])
    s = int(np.prod(x.shape[2:], dtype=np.int64)) if x.ndim > 2 else 1
    return n, c, s


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """Batch normalisation over (N, C, *spatial); see the module docstring."""
    _cpu_only("batch_norm", x=x, running_mean=running_mean, running_var=running_var, weight=weight, bias=bias)
    n, c, s = _bn_dims(x)
    momentum, eps = _float(momentum, "momentum"), _float(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps: expected >= 0, got {eps}")
    weight = _channel_vec(weight, "weight", c)
    bias = _channel_vec(bias, "bias", c)
    stats = {}
    for name, r in (("running_mean", running_mean), ("running_var", running_var)):
        if r is None:
            if not training:
                raise ValueError(f"{name}: required when training=False (eval mode normalises with it)")
            stats[name] = None
            continue
        check_array(r, name)
        if tuple(r.shape) != (c,):
            raise ValueError(f"{name}: expected shape ({c},) (one value per channel), got {tuple(r.shape)}")
        if training and not r.flags.writeable:
            raise ValueError(f"{name}: is read-only, but training=True updates it in place")
        stats[name] = r
    if training and n * s == 1:
        raise ValueError(f"x: expected more than 1 value per channel when training, got input shape {tuple(x.shape)}")
    x = contiguous(x)
    y = empty(x.shape, x)
    mean, invstd = np.empty(c, np.float32), np.empty(c, np.float32)
    # The kernel updates the running stats in place; a non-contiguous view goes through a copy.
    work = {k: (v if v is None or v.flags.c_contiguous or not training else np.ascontiguousarray(v))
            for k, v in stats.items()}
    if not training:  # read only there, but the binding takes writeable arrays: copy read-only ones
        work = {k: contiguous(v) if v.flags.writeable else v.copy() for k, v in work.items()}
    _core.batch_norm(x, y, n, c, s, weight, bias, work["running_mean"], work["running_var"], mean, invstd,
                     bool(training), momentum, eps)
    if training:
        for k, v in stats.items():
            if v is not None and work[k] is not v:
                v[...] = work[k]
    return (y, (mean, invstd)) if return_stats else y


def batch_norm_backward(grad_out, x, weight, mean, invstd, training=True, momentum=0.1, eps=1e-5, *, has_bias=None):
    """Gradients of batch_norm: (grad_x, grad_weight, grad_bias); see the module docstring."""
    _cpu_only("batch_norm_backward", grad_out=grad_out, x=x, weight=weight, mean=mean, invstd=invstd)
    n, c, s = _bn_dims(x)
    check_array(grad_out, "grad_out")
    if tuple(grad_out.shape) != tuple(x.shape):
        raise ValueError(f"grad_out: shape {tuple(grad_out.shape)} differs from x shape {tuple(x.shape)}")
    weight = _channel_vec(weight, "weight", c)
    if mean is None or invstd is None:
        raise ValueError("mean, invstd: required (from batch_norm(..., return_stats=True))")
    mean = _channel_vec(mean, "mean", c)
    invstd = _channel_vec(invstd, "invstd", c)
    if has_bias is None:
        has_bias = weight is not None
    g, x = contiguous(grad_out), contiguous(x)
    gx = empty(x.shape, x)
    gw = np.empty(c, np.float32) if weight is not None else None
    gb = np.empty(c, np.float32) if has_bias else None
    _core.batch_norm_backward(g, x, weight, mean, invstd, gx, gw, gb, n, c, s, bool(training))
    return gx, gw, gb


def _ln_dims(x, normalized_shape):
    check_array(x, "x", min_ndim=1)
    if isinstance(normalized_shape, (int, np.integer)) and not isinstance(normalized_shape, bool):
        ns = (int(normalized_shape),)
    else:
        try:
            ns = tuple(int(v) for v in normalized_shape)
        except TypeError:
            raise TypeError(f"normalized_shape: expected an int or a tuple of ints, got {normalized_shape!r}") from None
    if not ns or len(ns) > x.ndim or tuple(x.shape[x.ndim - len(ns):]) != ns:
        raise ValueError(f"normalized_shape: {ns} does not match the trailing dimensions of x shape {tuple(x.shape)}")
    d = int(np.prod(ns, dtype=np.int64))
    return ns, tuple(x.shape[: x.ndim - len(ns)]), d


def _ln_param(v, name, ns):
    if v is None:
        return None
    check_array(v, name)
    if tuple(v.shape) != ns:
        raise ValueError(f"{name}: expected shape {ns} (normalized_shape), got {tuple(v.shape)}")
    return contiguous(v)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, return_stats=False):
    """Layer normalisation over the trailing normalized_shape dims; see the module docstring."""
    _cpu_only("layer_norm", x=x, weight=weight, bias=bias)
    ns, lead, d = _ln_dims(x, normalized_shape)
    eps = _float(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps: expected >= 0, got {eps}")
    weight, bias = _ln_param(weight, "weight", ns), _ln_param(bias, "bias", ns)
    x = contiguous(x)
    y = empty(x.shape, x)
    rows = int(np.prod(lead, dtype=np.int64))
    mean, rstd = np.zeros(lead, np.float32), np.zeros(lead, np.float32)
    if rows and d:
        _core.layer_norm(x, weight, bias, y, mean, rstd, rows, d, eps)
    return (y, (mean, rstd)) if return_stats else y


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, mean=None, rstd=None):
    """Gradients of layer_norm: (grad_x, grad_weight, grad_bias); see the module docstring."""
    _cpu_only("layer_norm_backward", grad_out=grad_out, x=x, weight=weight, bias=bias, mean=mean, rstd=rstd)
    ns, lead, d = _ln_dims(x, normalized_shape)
    check_array(grad_out, "grad_out")
    if tuple(grad_out.shape) != tuple(x.shape):
        raise ValueError(f"grad_out: shape {tuple(grad_out.shape)} differs from x shape {tuple(x.shape)}")
    weight, bias = _ln_param(weight, "weight", ns), _ln_param(bias, "bias", ns)
    if (mean is None) != (rstd is None):
        raise ValueError("mean, rstd: pass both (from layer_norm(..., return_stats=True)) or neither")
    if mean is None:
        _, (mean, rstd) = layer_norm(x, ns, None, None, eps, return_stats=True)
    for name, v in (("mean", mean), ("rstd", rstd)):
        check_array(v, name)
        if tuple(v.shape) != lead:
            raise ValueError(f"{name}: expected shape {lead} (x shape without normalized_shape), got {tuple(v.shape)}")
    mean, rstd = contiguous(mean), contiguous(rstd)
    g, x = contiguous(grad_out), contiguous(x)
    rows = int(np.prod(lead, dtype=np.int64))
    gx = empty(x.shape, x)
    gw = np.zeros(ns, np.float32) if weight is not None else None
    gb = np.zeros(ns, np.float32) if bias is not None else None
    if rows and d:
        _core.layer_norm_backward(g, x, weight, mean, rstd, gx, gw, gb, rows, d)
    return gx, gw, gb

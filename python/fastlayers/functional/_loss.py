"""Losses, forward and backward (see API.md).

Forward: ``reduction="mean"`` or ``"sum"`` returns a 0-d float32 array (sums accumulate in
double); ``"none"`` returns the per-element (per-position for cross_entropy) losses. A mean
over nothing (an empty batch, or every target ignored) is NaN, as in PyTorch.

Backward: ``<loss>_backward(grad_out, input, target, <the loss's keyword arguments>)`` returns
the gradient with respect to ``input`` (the prediction or the logits) as one array: targets
are data, not parameters. ``grad_out`` has the unreduced shape for ``reduction="none"`` and is
a scalar (a number or a one-element array) otherwise.

- ``mse_loss(input, target, reduction="mean")``: (input - target)^2.
- ``binary_cross_entropy(input, target, reduction="mean")``: input are probabilities in
  [0, 1] (ValueError otherwise); log terms clamped at -100 as PyTorch, so 0 and 1 are finite.
- ``binary_cross_entropy_with_logits(input, target, reduction="mean")``: stable for any
  finite logit: max(x, 0) - x t + log1p(exp(-|x|)).
- ``cross_entropy(input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100)``:
  input logits (N, C) or (N, C, d1, ...), target class indices (N) or (N, d1, ...) of any
  integer dtype; positions whose target is ignore_index contribute nothing and are not
  counted by the mean; any other target outside [0, C) is a ValueError naming it."""

from __future__ import annotations

import math

import numpy as np

from .. import _core, _cuda
from .._arrays import backend, check_array, check_int_array, contiguous, empty, xp_of

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_backward",
    "cross_entropy",
    "cross_entropy_backward",
    "mse_loss",
    "mse_loss_backward",
]

# Codes shared with csrc/loss/loss.h (PointwiseLoss).
_MSE, _BCE, _BCE_LOGITS = range(3)
_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")


def _scalar_grad(grad_out):
    """grad_out of a reduced loss: a number or a one-element float array."""
    if isinstance(grad_out, bool):
        raise TypeError("grad_out: expected a number or a one-element float32 array, got bool")
    if isinstance(grad_out, (int, float, np.integer, np.floating)) and not isinstance(grad_out, np.ndarray):
        return float(grad_out)
    check_array(grad_out, "grad_out", accepted=("float32", "float64"))
    if grad_out.size != 1:
        raise ValueError(f"grad_out: the loss was reduced to a scalar, so grad_out must be a scalar; "
                         f"got shape {tuple(grad_out.shape)}")
    return float(grad_out.reshape(()))


def _reduce(total, count, reduction):
    if reduction == "sum":
        return np.array(total, dtype=np.float32)
    return np.array(total / count if count else math.nan, dtype=np.float32)


def _pointwise(code, op, input, target, reduction):
    kind = backend(input=input, target=target)
    check_array(input, "input")
    check_array(target, "target")
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"target: shape {tuple(target.shape)} differs from input shape {tuple(input.shape)}")
    _check_reduction(reduction)
    if kind == "cuda":
        return getattr(_cuda, op)(input, target, reduction)
    # reshape: keep a 0-d input 0-d (ascontiguousarray makes it 1-d)
    x, t = contiguous(input).reshape(input.shape), contiguous(target).reshape(input.shape)
    out = empty(x.shape, x) if reduction == "none" else None
    total = _core.pointwise_loss(code, x, t, out)
    return out if reduction == "none" else _reduce(total, x.size, reduction)


def _pointwise_backward(code, op, grad_out, input, target, reduction):
    kind = backend(grad_out=grad_out if hasattr(grad_out, "shape") else None, input=input, target=target)
    check_array(input, "input")
    check_array(target, "target")
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"target: shape {tuple(target.shape)} differs from input shape {tuple(input.shape)}")
    _check_reduction(reduction)
    # reshape: keep a 0-d input 0-d (ascontiguousarray makes it 1-d)
    x, t = contiguous(input).reshape(input.shape), contiguous(target).reshape(input.shape)
    g, gscale = None, 0.0
    if reduction == "none":
        check_array(grad_out, "grad_out")
        if tuple(grad_out.shape) != tuple(x.shape):
            raise ValueError(f"grad_out: shape {tuple(grad_out.shape)} differs from input shape {tuple(x.shape)} "
                             f"(reduction='none' takes the unreduced gradient)")
        g = contiguous(grad_out).reshape(x.shape)
    else:
        gscale = _scalar_grad(grad_out)
        if kind == "cuda":  # (the kernel applies the mean's 1/n itself)
            return getattr(_cuda, op)(gscale, input, target, reduction)
        if reduction == "mean" and x.size:
            gscale /= x.size
    if kind == "cuda":
        return getattr(_cuda, op)(g, input, target, reduction)
    gx = empty(x.shape, x)
    _core.pointwise_loss_backward(code, x, t, g, gscale, gx)
    return gx


def mse_loss(input, target, reduction="mean"):
    """Mean squared error (input - target)^2, reduced."""
    return _pointwise(_MSE, "mse_loss", input, target, reduction)


def mse_loss_backward(grad_out, input, target, reduction="mean"):
    return _pointwise_backward(_MSE, "mse_loss_backward", grad_out, input, target, reduction)


def binary_cross_entropy(input, target, reduction="mean"):
    """-(t log x + (1 - t) log(1 - x)) with the logs clamped at -100; x in [0, 1]."""
    return _pointwise(_BCE, "binary_cross_entropy", input, target, reduction)


def binary_cross_entropy_backward(grad_out, input, target, reduction="mean"):
    """(x - t) / max(x (1 - x), 1e-12) times grad_out, as PyTorch."""
    return _pointwise_backward(_BCE, "binary_cross_entropy_backward", grad_out, input, target, reduction)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    """BCE of sigmoid(input), computed stably from the logits."""
    return _pointwise(_BCE_LOGITS, "binary_cross_entropy_with_logits", input, target, reduction)


def binary_cross_entropy_with_logits_backward(grad_out, input, target, reduction="mean"):
    return _pointwise_backward(_BCE_LOGITS, "binary_cross_entropy_with_logits_backward", grad_out, input, target,
                               reduction)


def _ce_args(input, target, reduction, label_smoothing, ignore_index):
    check_array(input, "input", min_ndim=2)
    check_int_array(target, "target")
    want = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != want:
        raise ValueError(f"target: expected shape {want} (input shape {tuple(input.shape)} without the class axis), "
                         f"got {tuple(target.shape)}")
    if input.shape[1] == 0:
        raise ValueError(f"input: needs at least one class, got shape {tuple(input.shape)}")
    _check_reduction(reduction)
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float, np.integer, np.floating)):
        raise TypeError(f"label_smoothing: expected a number, got {type(label_smoothing).__name__}")
    if not 0.0 <= float(label_smoothing) <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index: expected an int, got {type(ignore_index).__name__}")
    n, c = int(input.shape[0]), int(input.shape[1])
    s = int(np.prod(input.shape[2:], dtype=np.int64)) if input.ndim > 2 else 1
    t = xp_of(target).ascontiguousarray(target, dtype=np.int64)
    return contiguous(input), t, n, c, s, float(label_smoothing), int(ignore_index)


def cross_entropy(input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    """Softmax cross-entropy of logits (N, C, d...) against class indices (N, d...)."""
    kind = backend(input=input, target=target)
    x, t, n, c, s, eps, ign = _ce_args(input, target, reduction, label_smoothing, ignore_index)
    if kind == "cuda":
        return _cuda.cross_entropy(x, t, reduction, eps, ign)
    out = np.empty(t.shape, np.float32) if reduction == "none" else None
    total, count = _core.cross_entropy(x, t, n, c, s, eps, ign, out)
    return out if reduction == "none" else _reduce(total, count, reduction)


def cross_entropy_backward(grad_out, input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    """Gradient of cross_entropy w.r.t. the logits: grad * (softmax - smoothed one-hot)."""
    kind = backend(grad_out=grad_out if hasattr(grad_out, "shape") else None, input=input, target=target)
    x, t, n, c, s, eps, ign = _ce_args(input, target, reduction, label_smoothing, ignore_index)
    g, gscale = None, 0.0
    if reduction == "none":
        check_array(grad_out, "grad_out")
        if tuple(grad_out.shape) != tuple(t.shape):
            raise ValueError(f"grad_out: shape {tuple(grad_out.shape)} differs from the per-position loss shape "
                             f"{tuple(t.shape)} (reduction='none' takes the unreduced gradient)")
        g = contiguous(grad_out)
    else:
        gscale = _scalar_grad(grad_out)
        if kind == "cuda":  # (the kernel counts the non-ignored targets itself)
            return _cuda.cross_entropy_backward(gscale, x, t, reduction, eps, ign)
        if reduction == "mean":
            count = int(np.count_nonzero(t != ign))
            gscale = gscale / count if count else 0.0
    if kind == "cuda":
        return _cuda.cross_entropy_backward(g, x, t, reduction, eps, ign)
    grad = empty(x.shape, x)
    _core.cross_entropy_backward(x, t, n, c, s, eps, ign, g, gscale, grad)
    return grad

"""NumPy reference for the loss kernels (same names and signatures as functional/_loss.py)."""

from __future__ import annotations

import numpy as np

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


def _reduce(loss, reduction, count=None):
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    n = loss.size if count is None else count
    return total / n if n else np.array(np.nan, loss.dtype)


def _grad_scale(grad_out, reduction, n):
    if reduction == "none":
        return grad_out
    g = float(np.asarray(grad_out).reshape(()))
    return g / n if reduction == "mean" and n else g


def mse_loss(input, target, reduction="mean"):
    return _reduce((input - target) ** 2, reduction)


def mse_loss_backward(grad_out, input, target, reduction="mean"):
    return _grad_scale(grad_out, reduction, input.size) * 2 * (input - target)


def binary_cross_entropy(input, target, reduction="mean"):
    with np.errstate(divide="ignore"):
        lx = np.maximum(np.log(input), -100)
        l1x = np.maximum(np.log1p(-input), -100)
    return _reduce((target - 1) * l1x - target * lx, reduction)


def binary_cross_entropy_backward(grad_out, input, target, reduction="mean"):
    return _grad_scale(grad_out, reduction, input.size) * (input - target) / np.maximum((1 - input) * input, 1e-12)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    x = input
    return _reduce(np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x))), reduction)


def binary_cross_entropy_with_logits_backward(grad_out, input, target, reduction="mean"):
    e = np.exp(-np.abs(input))  # stable sigmoid: never exp of a large positive number
    s = np.where(input >= 0, 1 / (1 + e), e / (1 + e))
    return _grad_scale(grad_out, reduction, input.size) * (s - target)


def _log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))


def cross_entropy(input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    c = input.shape[1]
    keep = target != ignore_index
    t = np.where(keep, target, 0).astype(np.int64)
    logp = _log_softmax(input)
    nll = -np.take_along_axis(logp, t[:, None], axis=1)[:, 0]
    smooth = -logp.sum(axis=1) / c
    loss = np.where(keep, (1 - label_smoothing) * nll + label_smoothing * smooth, 0).astype(input.dtype)
    return _reduce(loss, reduction, int(keep.sum()))


def cross_entropy_backward(grad_out, input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    c = input.shape[1]
    keep = target != ignore_index
    t = np.where(keep, target, 0).astype(np.int64)
    p = np.exp(_log_softmax(input))
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, t[:, None], 1.0, axis=1)
    d = p - (1 - label_smoothing) * onehot - label_smoothing / c
    g = _grad_scale(grad_out, reduction, int(keep.sum()))
    g = np.where(keep, g, 0)
    return d * np.expand_dims(g, 1)

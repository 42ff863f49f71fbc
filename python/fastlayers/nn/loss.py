"""Losses as modules: loss = crit(pred, target) returns a float; crit.backward() returns dL/dpred."""

from __future__ import annotations

import numpy as np

from . import _kernels as K
from .module import Module

__all__ = ["MSELoss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    _fn = ""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction: expected one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def _kw(self):
        return {"reduction": self.reduction}

    def forward(self, pred, target):
        out = K.loss(self._fn, pred, target, **self._kw())
        self._cache = (pred, target, out)
        if self.reduction == "none":
            return out
        return float(out)

    def backward(self, grad_out=None):
        """dL/dpred; grad_out (default 1) is the gradient of the loss itself (an array shaped like
        the loss for reduction='none')."""
        self._need_cache("_cache")
        pred, target, out = self._cache
        if grad_out is None:
            grad_out = K.ones_like_loss(out, pred)
        else:
            grad_out = np.asarray(grad_out, np.float32) if np.isscalar(grad_out) else grad_out
        return K.loss_backward(self._fn, grad_out, pred, target, **self._kw())


class MSELoss(_Loss):
    _fn = "mse_loss"


class BCELoss(_Loss):
    """On probabilities in [0, 1]."""

    _fn = "binary_cross_entropy"

    def __init__(self, weight=None, reduction="mean"):
        if weight is not None:
            raise ValueError("weight: per-element weights are not supported")
        super().__init__(reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + BCE in one stable step, on logits."""

    _fn = "binary_cross_entropy_with_logits"

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        if weight is not None or pos_weight is not None:
            raise ValueError("weight / pos_weight are not supported")
        super().__init__(reduction)


class CrossEntropyLoss(_Loss):
    """logits (N, C) or (N, C, d...) and integer class targets."""

    _fn = "cross_entropy"

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        if weight is not None:
            raise ValueError("weight: class weights are not supported")
        super().__init__(reduction)
        self.ignore_index, self.label_smoothing = int(ignore_index), float(label_smoothing)

    def _kw(self):
        return {"reduction": self.reduction, "label_smoothing": self.label_smoothing,
                "ignore_index": self.ignore_index}

"""Dropout and embedding, forward and backward (see API.md).

dropout(x, p=0.5, training=True, seed=None) -> (y, mask)
    Zeroes each element with probability p and scales the kept ones by 1/(1 - p) (p = 1:
    all zeros). mask is a bool array of x's shape (True = kept). The draw is counter-based:
    the same seed gives the same mask for any thread count. seed=None draws one from
    fastlayers' generator (fl.manual_seed makes runs repeatable). training=False (or p = 0
    in eval) is the identity: (a copy of x, None).
dropout_backward(grad_out, mask, p=0.5, training=True) -> grad_x
    grad_out * mask / (1 - p); training=False: a copy of grad_out (mask may be None).

embedding(indices, weight, padding_idx=None) -> weight[indices], shape indices.shape + (D,)
    indices: any integer dtype and shape; an index outside [0, V) is a ValueError naming it
    (negative indices are errors, as in PyTorch, not counted from the end). padding_idx only
    matters to the backward.
embedding_backward(grad_out, indices, weight, padding_idx=None) -> (grad_weight,)
    The scatter-add of grad_out's rows into a zero (V, D) array; the padding_idx row stays 0."""

from __future__ import annotations

import numpy as np

from .. import _core, _cuda, _random
from .._arrays import backend, check_array, check_int_array, contiguous, empty, xp_of

__all__ = ["dropout", "dropout_backward", "embedding", "embedding_backward"]


def _check_p(p):
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"p: expected a number, got {type(p).__name__}")
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: dropout probability has to be between 0 and 1, got {p}")
    return p


def _scale(p):
    return np.float32(0.0) if p == 1.0 else np.float32(1.0) / np.float32(1.0 - p)


def dropout(x, p=0.5, training=True, seed=None):
    """(x * mask / (1 - p), mask) with mask ~ Bernoulli(1 - p); see the module docstring."""
    kind = backend(x=x)
    check_array(x, "x")
    p = _check_p(p)
    x = contiguous(x).reshape(x.shape)  # reshape: keep a 0-d x 0-d
    if not training:
        return x.copy(), None
    if seed is None:
        seed = int(_random.generator().integers(0, 2**63))
    elif isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    if kind == "cuda":
        return _cuda.dropout(x, p, training, seed)
    y = empty(x.shape, x)
    mask = np.empty(x.shape, np.bool_)
    if x.size:
        _core.dropout(x, y, mask, 1.0 - p, float(_scale(p)), int(seed) % 2**64)
    return y, mask


def dropout_backward(grad_out, mask, p=0.5, training=True):
    """grad_out * mask / (1 - p) (a copy of grad_out when not training)."""
    kind = backend(grad_out=grad_out, mask=mask)
    check_array(grad_out, "grad_out")
    p = _check_p(p)
    g = contiguous(grad_out).reshape(grad_out.shape)
    if not training:
        return g.copy()
    if mask is None:
        raise ValueError("mask: required when training=True (the mask returned by dropout)")
    if (kind == "cpu" and not isinstance(mask, np.ndarray)) or mask.dtype != np.bool_:
        raise TypeError(f"mask: expected the bool array returned by dropout, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if tuple(mask.shape) != tuple(g.shape):
        raise ValueError(f"mask: shape {tuple(mask.shape)} differs from grad_out shape {tuple(g.shape)}")
    if kind == "cuda":
        return _cuda.dropout_backward(grad_out, mask, p, training)
    gx = empty(g.shape, g)
    if g.size:
        _core.dropout_backward(g, np.ascontiguousarray(mask).reshape(mask.shape), gx, float(_scale(p)))
    return gx


def _check_embedding(indices, weight, padding_idx):
    check_int_array(indices, "indices")
    check_array(weight, "weight", ndim=2)
    v = int(weight.shape[0])
    if padding_idx is not None:
        if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
            raise TypeError(f"padding_idx: expected an int or None, got {type(padding_idx).__name__}")
        if not -v <= padding_idx < v:
            raise ValueError(f"padding_idx: {padding_idx} is out of range for weight with {v} rows")
        padding_idx = int(padding_idx) % v
    if indices.dtype == np.uint64 and indices.size and int(indices.max()) >= 2**63:
        bad = int(indices.max())
        raise ValueError(f"indices: index {bad} is out of range for weight with {v} rows (valid: 0 to {v - 1})")
    # asarray keeps 0-d (ascontiguousarray would not)
    return xp_of(indices).asarray(indices, dtype=np.int64, order="C"), padding_idx


def embedding(indices, weight, padding_idx=None):
    """weight[indices]: rows of weight (V, D) gathered into indices.shape + (D,)."""
    kind = backend(indices=indices, weight=weight)
    idx, _ = _check_embedding(indices, weight, padding_idx)
    if kind == "cuda":
        return _cuda.embedding(idx, weight, padding_idx)
    v, d = (int(s) for s in weight.shape)
    w = contiguous(weight)
    out = empty(tuple(idx.shape) + (d,), w)
    if idx.size:
        _core.embedding(idx, w, out, v, d)
    return out


def embedding_backward(grad_out, indices, weight, padding_idx=None):
    """(grad_weight,): grad_out's rows scatter-added into the rows indices point at."""
    kind = backend(grad_out=grad_out, indices=indices, weight=weight)
    idx, padding_idx = _check_embedding(indices, weight, padding_idx)
    check_array(grad_out, "grad_out")
    v, d = (int(s) for s in weight.shape)
    want = tuple(idx.shape) + (d,)
    if tuple(grad_out.shape) != want:
        raise ValueError(f"grad_out: expected shape {want} (indices shape + (embedding_dim,)), "
                         f"got {tuple(grad_out.shape)}")
    if kind == "cuda":
        return _cuda.embedding_backward(grad_out, idx, weight, padding_idx)
    gw = np.empty((v, d), np.float32)
    _core.embedding_backward(contiguous(grad_out), idx, gw, v, d)
    if padding_idx is not None:
        gw[padding_idx] = 0
    return (gw,)



"""NumPy reference for dropout and embedding (same names and signatures as functional/_misc.py).

The reference dropout draws its mask with NumPy (seeded by `seed`), so its masks differ from
the kernel's; tests compare the kernel's y with x * mask / (1 - p) for the kernel's own mask."""

from __future__ import annotations

import numpy as np

__all__ = ["dropout", "dropout_backward", "embedding", "embedding_backward"]


def dropout(x, p=0.5, training=True, seed=None):
    if not training:
        return x.copy(), None
    mask = np.random.default_rng(seed).random(x.shape) >= p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return np.where(mask, x * scale, 0).astype(x.dtype), mask


def dropout_backward(grad_out, mask, p=0.5, training=True):
    if not training:
        return grad_out.copy()
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return np.where(mask, grad_out * scale, 0).astype(grad_out.dtype)


def embedding(indices, weight, padding_idx=None):
    idx = np.asarray(indices)
    if idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise ValueError(f"indices: out of range for weight with {weight.shape[0]} rows")
    return weight[idx.astype(np.int64)]


def embedding_backward(grad_out, indices, weight, padding_idx=None):
    gw = np.zeros(weight.shape, grad_out.dtype)
    d = weight.shape[1]
    np.add.at(gw, np.asarray(indices, np.int64).reshape(-1), grad_out.reshape(-1, d))
    if padding_idx is not None:
        gw[padding_idx] = 0
    return (gw,)

"""NumPy reference for the attention kernels: the plain softmax(Q K^T * scale + mask) V.

Shapes: q (..., Hq, L, E), k (..., Hk, S, E), v (..., Hk, S, Ev) (2-D inputs are one head).
PyTorch's semantics: a bool mask keeps True entries (True = may attend), a float mask is
added to the scores; both broadcast to (..., Hq, L, S). is_causal is top-left aligned
(query i sees keys j <= i, torch's tril(L, S)) and combines with a mask (both apply).
enable_gqa repeats each k/v head Hq/Hk times. Deviation from torch, fixed by API.md: a
query row with nothing to attend to gives zeros (torch gives NaN) and zero gradients; its
log-sum-exp is -inf.

Written for clarity, not speed: it materialises the (..., Hq, L, S) scores. dtype-generic
(the tests pass float64 for the truth)."""

from __future__ import annotations

import numpy as np

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]


def _heads(x):
    return x[None] if x.ndim == 2 else x


def _expand_kv(x, hq, enable_gqa):
    hk = x.shape[-3]
    if hk == hq:
        return x
    if not enable_gqa or hk == 0 or hq % hk:
        raise ValueError(f"q has {hq} heads and k/v have {hk}: needs enable_gqa=True and Hq a multiple of Hk")
    return np.repeat(x, hq // hk, axis=-3)


def _scores(q, k, attn_mask, is_causal, scale):
    """Masked, scaled scores (..., Hq, L, S), -inf where a key may not be attended."""
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / np.sqrt(E) if scale is None else scale
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * q.dtype.type(scale)
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        if m.dtype == np.bool_:
            s = np.where(m, s, -np.inf)
        else:
            s = s + m.astype(s.dtype)
    if is_causal:
        s = np.where(np.tril(np.ones((L, S), dtype=bool)), s, -np.inf)
    return s, scale


def _softmax(s):
    """Row softmax and log-sum-exp; rows of -inf give p = 0 and lse = -inf."""
    mx = s.max(axis=-1, keepdims=True) if s.shape[-1] else np.full(s.shape[:-1] + (1,), -np.inf, s.dtype)
    empty = ~np.isfinite(mx)
    shift = np.where(empty, 0, mx)
    e = np.exp(s - shift)
    tot = e.sum(axis=-1, keepdims=True)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1), 0)
    with np.errstate(divide="ignore"):
        lse = np.where(tot > 0, shift + np.log(np.where(tot > 0, tot, 1)), -np.inf)
    return p, lse[..., 0]


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
                                 return_lse=False):
    """softmax(q k^T * scale + mask) v; with return_lse also the row log-sum-exp (..., Hq, L)."""
    two_d = q.ndim == 2
    q3, k3, v3 = _heads(q), _heads(k), _heads(v)
    hq = q3.shape[-3]
    k3, v3 = _expand_kv(k3, hq, enable_gqa), _expand_kv(v3, hq, enable_gqa)
    s, _ = _scores(q3, k3, attn_mask, is_causal, scale)
    p, lse = _softmax(s)
    out = np.matmul(p, v3).astype(q.dtype, copy=False)
    lse = lse.astype(q.dtype, copy=False)
    if two_d:
        out, lse = out[0], lse[0]
    return (out, lse) if return_lse else out


def _sum_groups(g, hk):
    """Sum the gradient of repeated k/v heads back onto each of the hk heads."""
    hq = g.shape[-3]
    if hq == hk:
        return g
    return g.reshape(g.shape[:-3] + (hk, hq // hk) + g.shape[-2:]).sum(axis=-3)


def scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False, scale=None,
                                          enable_gqa=False):
    """Gradients (grad_q, grad_k, grad_v). The reference recomputes the probabilities from
    q, k, v (out and lse are accepted for the signature; the truth does not depend on them):
    dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = dS K * scale,
    dK = dS^T Q * scale, with k/v-head gradients summed over the query heads sharing them."""
    two_d = q.ndim == 2
    q3, k3, v3, g3 = _heads(q), _heads(k), _heads(v), _heads(grad_out)
    hq, hk = q3.shape[-3], k3.shape[-3]
    ke, ve = _expand_kv(k3, hq, enable_gqa), _expand_kv(v3, hq, enable_gqa)
    s, sc = _scores(q3, ke, attn_mask, is_causal, scale)
    p, _ = _softmax(s)
    dv = np.matmul(np.swapaxes(p, -1, -2), g3)
    dp = np.matmul(g3, np.swapaxes(ve, -1, -2))
    ds = p * (dp - np.sum(p * dp, axis=-1, keepdims=True))
    dq = np.matmul(ds, ke) * sc
    dk = np.matmul(np.swapaxes(ds, -1, -2), q3) * sc
    dk, dv = _sum_groups(dk, hk), _sum_groups(dv, hk)
    res = tuple(x.astype(q.dtype, copy=False) for x in (dq, dk, dv))
    if two_d:
        res = tuple(x[0] for x in res)
    return res

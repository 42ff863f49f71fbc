"""Fused scaled-dot-product attention (flash-style, O(L) memory), forward and backward.

q (..., Hq, L, E), k (..., Hk, S, E), v (..., Hk, S, Ev); 2-D inputs (L, E) are one head.
The leading (batch) dimensions of q, k and v must be equal. Masks: bool (True = may attend)
or additive float32, broadcastable to (..., Hq, L, S); they are passed to the kernel as a
broadcast view (per-head offsets + row/column strides), never materialised. is_causal is
top-left aligned (query i sees keys j <= i, as torch) and may be combined with a mask: both
apply (torch raises for that combination; we support it). A query row with nothing to attend
to gives zeros and lse = -inf (torch gives NaN), and zero gradients."""

from __future__ import annotations


import numpy as np

from .. import _core, _cuda_attention
from .._arrays import backend, check_array, check_dtype
from .._attention_dims import AttentionDims

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]


def _as_heads(x):
    return x[None] if x.ndim == 2 else x


def _regular(x):
    """x itself when its strides are whole elements (any view of a float32/bool array), else a copy."""
    return x if all(s % x.itemsize == 0 for s in x.strides) else np.ascontiguousarray(x)


def _offsets(x, nlead):
    """Element offsets (int64, C order) of the matrices x[i0, ..., i_{nlead-1}]."""
    off = np.zeros((), np.int64)
    for d in range(nlead):
        shape = [1] * nlead
        shape[d] = x.shape[d]
        off = off + (np.arange(x.shape[d], dtype=np.int64) * (x.strides[d] // x.itemsize)).reshape(shape)
    return np.ascontiguousarray(np.broadcast_to(off, x.shape[:nlead]).reshape(-1))


class _Dims(AttentionDims):
    """Checked sizes of one CPU call (checks in _attention_dims.py, shared with CUDA)."""

    def _set_mask(self, attn_mask):
        self.mask = np.broadcast_to(attn_mask, self.full)  # a view: strides carry the broadcast

    def core_args(self, q, k, v):
        """The views and offsets the binding takes for q, k, v and the mask."""
        nl = len(self.lead) + 1
        q3, k3, v3 = _regular(_as_heads(q)), _regular(_as_heads(k)), _regular(_as_heads(v))
        mask = mask_off = None
        if self.mask is not None:
            mask = _regular(self.mask)
            mask_off = _offsets(mask, nl)
        return (q3, _offsets(q3, nl), k3, _offsets(k3, nl), v3, _offsets(v3, nl), mask, mask_off, self.group,
                self.causal, self.scale)


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
                                 return_lse=False):
    """softmax(q k^T * scale + mask) v without materialising the L x S scores.

    q (..., Hq, L, E), k (..., Hk, S, E), v (..., Hk, S, Ev) -> out (..., Hq, L, Ev); with
    return_lse=True also the row log-sum-exp (..., Hq, L) for the backward (-inf for a row
    with nothing to attend to, whose output is zeros). scale defaults to 1/sqrt(E)."""
    if backend(q=q, k=k, v=v, attn_mask=attn_mask) == "cuda":
        return _cuda_attention.scaled_dot_product_attention(q, k, v, attn_mask, is_causal, scale, enable_gqa,
                                                            return_lse)
    d = _Dims("scaled_dot_product_attention", q, k, v, attn_mask, is_causal, scale, enable_gqa)
    head_shape = d.lead + ((d.hq,) if not d.two_d else ())
    out = np.empty(head_shape + (d.L, d.Ev), np.float32)
    lse = np.empty(head_shape + (d.L,), np.float32) if return_lse else None
    if d.nbh and d.L:
        _core.attention_forward(*d.core_args(q, k, v), out, lse)
    return (out, lse) if return_lse else out


def scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False, scale=None,
                                          enable_gqa=False):
    """Gradients (grad_q, grad_k, grad_v) of scaled_dot_product_attention, recomputing the
    probabilities tile by tile from lse (FlashAttention-2); out and lse are the forward's
    results (return_lse=True). k/v gradients are summed over the query heads sharing them."""
    if backend(grad_out=grad_out, q=q, k=k, v=v, out=out, lse=lse, attn_mask=attn_mask) == "cuda":
        return _cuda_attention.scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, attn_mask,
                                                                     is_causal, scale, enable_gqa)
    fn = "scaled_dot_product_attention_backward"
    d = _Dims(fn, q, k, v, attn_mask, is_causal, scale, enable_gqa)
    check_array(grad_out, "grad_out")
    check_array(out, "out")
    check_array(lse, "lse")
    head_shape = d.lead + ((d.hq,) if not d.two_d else ())
    want = head_shape + (d.L, d.Ev)
    for name, x in (("grad_out", grad_out), ("out", out)):
        if tuple(x.shape) != want:
            raise ValueError(f"{name}: shape {tuple(x.shape)}, expected {want} (the shape of the attention output)")
    if tuple(lse.shape) != head_shape + (d.L,):
        raise ValueError(f"lse: shape {tuple(lse.shape)}, expected {head_shape + (d.L,)} (return_lse=True gives it)")
    check_dtype(lse, "lse")
    grad_q = np.empty(q.shape, np.float32)
    grad_k = np.empty(k.shape, np.float32)
    grad_v = np.empty(v.shape, np.float32)
    if d.nbh == 0 or d.L == 0:
        grad_q.fill(0)
        grad_k.fill(0)
        grad_v.fill(0)
        return grad_q, grad_k, grad_v
    args = d.core_args(q, k, v)
    _core.attention_backward(np.ascontiguousarray(grad_out), *args[:6], np.ascontiguousarray(out),
                             np.ascontiguousarray(lse), *args[6:], grad_q, grad_k, grad_v)
    return grad_q, grad_k, grad_v

"""MultiheadAttention (PyTorch's packed in-projection) and TransformerEncoderLayer."""

from __future__ import annotations

import math

import numpy as np

from . import _kernels as K
from . import init
from .activation import GELU, ReLU
from .dropout import Dropout
from .linear import Linear
from .module import Module, Parameter, _xp
from .norm import LayerNorm

__all__ = ["MultiheadAttention", "TransformerEncoderLayer"]

_MASKED = -1e30  # finite stand-in for -inf on the explicit path, so softmax never sees inf - inf


def _c(x):
    return _xp(x).ascontiguousarray(x)


class MultiheadAttention(Module):
    """PyTorch's MultiheadAttention: in_proj_weight (3E, E) = [W_q; W_k; W_v] (xavier-uniform),
    in_proj_bias (3E,) and out_proj.bias zero, out_proj.weight as Linear.

    forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False) -> (output, weights or None). Masks follow PyTorch:
    a bool attn_mask / key_padding_mask marks with True what may NOT be attended; float masks are
    added to the scores. With need_weights=False and no active dropout the fused
    scaled_dot_product_attention kernel runs (no L x S matrix); otherwise an explicit
    matmul/softmax/dropout path does. A query that may attend to nothing gets zeros (PyTorch: NaN).

    backward(grad_out) -> (grad_query, grad_key, grad_value); when query, key and value were the
    same array (self-attention), grad_query holds the whole input gradient and the other two are
    None."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False):
        super().__init__()
        embed_dim, num_heads = int(embed_dim), int(num_heads)
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn:
            raise ValueError("add_bias_kv / add_zero_attn are not supported")
        if (kdim not in (None, embed_dim)) or (vdim not in (None, embed_dim)):
            raise ValueError("kdim/vdim different from embed_dim are not supported")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        self.in_proj_weight = Parameter(init.xavier_uniform((3 * embed_dim, embed_dim)))
        self.in_proj_bias = Parameter(init.zeros((3 * embed_dim,))) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        if bias:
            self.out_proj.bias.data[...] = 0.0
        self._cache = None

    # -- masks -----------------------------------------------------------------------------
    def _mask(self, attn_mask, key_padding_mask, is_causal, B, L, S, xp):
        """One mask for (B, H, L, S) in sdpa's convention (bool: True = may attend), or None."""
        H = self.num_heads
        parts = []
        if attn_mask is None and is_causal:
            attn_mask = xp.triu(xp.ones((L, S), dtype=bool), 1)
        if attn_mask is not None:
            if attn_mask.ndim == 2:
                if tuple(attn_mask.shape) != (L, S):
                    raise ValueError(f"attn_mask: expected shape {(L, S)} or {(B * H, L, S)}, "
                                     f"got {tuple(attn_mask.shape)}")
                parts.append(attn_mask.reshape(1, 1, L, S))
            elif attn_mask.ndim == 3 and tuple(attn_mask.shape) == (B * H, L, S):
                parts.append(attn_mask.reshape(B, H, L, S))
            else:
                raise ValueError(f"attn_mask: expected shape {(L, S)} or {(B * H, L, S)}, got {tuple(attn_mask.shape)}")
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (B, S):
                raise ValueError(f"key_padding_mask: expected shape {(B, S)}, got {tuple(key_padding_mask.shape)}")
            parts.append(key_padding_mask.reshape(B, 1, 1, S))
        if not parts:
            return None
        if all(p.dtype == bool for p in parts):
            allowed = ~parts[0]
            for p in parts[1:]:
                allowed = allowed & ~p
            return _c(allowed)
        total = None
        for p in parts:
            f = xp.where(p, -np.inf, 0.0).astype(np.float32) if p.dtype == bool else p.astype(np.float32)
            total = f if total is None else total + f
        return _c(total)

    # -- forward / backward ----------------------------------------------------------------
    def _heads(self, t, B, T):
        return _c(t.reshape(B, T, self.num_heads, self.head_dim).transpose(0, 2, 1, 3))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        E = self.embed_dim
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.ndim != 3 or t.shape[2] != E:
                raise ValueError(f"{name}: expected a 3-D array with last dimension embed_dim={E}, "
                                 f"got shape {tuple(t.shape)}")
        self_attn = query is key and key is value
        xp = _xp(query)
        if not self.batch_first:
            query, key, value = (_c(t.transpose(1, 0, 2)) for t in (query, key, value))
        B, L, _ = query.shape
        S = key.shape[1]
        if key.shape[0] != B or value.shape[:2] != key.shape[:2]:
            raise ValueError(f"key/value: batch and length must agree with query: query {tuple(query.shape)}, "
                             f"key {tuple(key.shape)}, value {tuple(value.shape)} (batch-first view)")
        W = self.in_proj_weight.data
        b = None if self.in_proj_bias is None else self.in_proj_bias.data
        bs = [None] * 3 if b is None else [b[:E], b[E:2 * E], b[2 * E:]]
        if self_attn:
            qkv = K.linear(query, W, b)
            q, k, v = qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
        else:
            q = K.linear(query, W[:E], bs[0])
            k = K.linear(key, W[E:2 * E], bs[1])
            v = K.linear(value, W[2 * E:], bs[2])
        qh, kh, vh = self._heads(q, B, L), self._heads(k, B, S), self._heads(v, B, S)
        mask = self._mask(attn_mask, key_padding_mask, is_causal, B, L, S, xp)
        scale = 1.0 / math.sqrt(self.head_dim)
        drop = self.training and self.dropout > 0.0
        weights = None
        if need_weights or drop:
            scores = K.matmul(qh, kh.transpose(0, 1, 3, 2))
            scores *= scale
            if mask is None:
                row_any = None
            else:
                allowed = mask if mask.dtype == bool else xp.isfinite(mask)
                if mask.dtype != bool:
                    scores += xp.where(allowed, mask, 0.0).astype(np.float32)
                scores = xp.where(allowed, scores, np.float32(_MASKED)).astype(np.float32)
                row_any = allowed.any(axis=-1, keepdims=True)
            p = K.softmax(_c(scores), -1)
            if row_any is not None:
                p = p * row_any
            pd, dmask = K.dropout(p, self.dropout) if drop else (p, None)
            out = K.matmul(pd, vh)
            self._cache = ("explicit", qh, kh, vh, scores, p, pd, dmask, row_any)
            if need_weights:
                weights = pd.mean(axis=1) if average_attn_weights else pd
        else:
            out, lse = K.sdpa(qh, kh, vh, mask, scale)
            self._cache = ("fused", qh, kh, vh, out, lse, mask, scale)
        merged = _c(out.transpose(0, 2, 1, 3).reshape(B, L, E))
        y = self.out_proj(merged)
        if not self.batch_first:
            y = _c(y.transpose(1, 0, 2))
        self._inputs = (query, key, value, self_attn, B, L, S)
        return y, weights

    def backward(self, grad_out):
        self._need_cache("_cache")
        query, key, value, self_attn, B, L, S = self._inputs
        E = self.embed_dim
        if not self.batch_first:
            grad_out = _c(grad_out.transpose(1, 0, 2))
        g_merged = self.out_proj.backward(_c(grad_out))
        g_oh = self._heads(g_merged, B, L)
        kind = self._cache[0]
        if kind == "fused":
            _, qh, kh, vh, out, lse, mask, scale = self._cache
            gq, gk, gv = K.sdpa_backward(g_oh, qh, kh, vh, out, lse, mask, scale)
        else:
            _, qh, kh, vh, scores, p, pd, dmask, row_any = self._cache
            g_pd, gv = K.matmul_backward(g_oh, pd, vh)
            g_p = K.dropout_backward(g_pd, dmask, self.dropout) if dmask is not None else g_pd
            if row_any is not None:
                g_p = g_p * row_any
            g_s = K.softmax_backward(_c(g_p), scores, p, -1)
            g_s *= 1.0 / math.sqrt(self.head_dim)
            gq, gkT = K.matmul_backward(g_s, qh, kh.transpose(0, 1, 3, 2))
            gk = gkT.transpose(0, 1, 3, 2)

        def merge(t, T):
            return _c(t.transpose(0, 2, 1, 3).reshape(B, T, E))

        gq, gk, gv = merge(gq, L), merge(gk, S), merge(gv, S)
        W = self.in_proj_weight.data
        b = None if self.in_proj_bias is None else self.in_proj_bias.data
        xp = _xp(W)
        if self_attn:
            g_qkv = xp.concatenate([gq, gk, gv], axis=-1)
            gx, gW, gb = K.linear_backward(g_qkv, query, W, b)
            grads = (gx, None, None)
        else:
            outs = [K.linear_backward(g, x, W[i * E:(i + 1) * E], None if b is None else b[i * E:(i + 1) * E])
                    for i, (g, x) in enumerate(((gq, query), (gk, key), (gv, value)))]
            gW = xp.concatenate([o[1] for o in outs], axis=0)
            gb = None if b is None else xp.concatenate([o[2] for o in outs], axis=0)
            grads = tuple(o[0] for o in outs)
        self.in_proj_weight.accumulate(gW)
        if self.in_proj_bias is not None:
            self.in_proj_bias.accumulate(gb)
        if not self.batch_first:
            grads = tuple(None if g is None else _c(g.transpose(1, 0, 2)) for g in grads)
        return grads

    def extra_repr(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"


class TransformerEncoderLayer(Module):
    """PyTorch's TransformerEncoderLayer (self_attn, linear1, dropout, linear2, norm1, norm2,
    dropout1, dropout2): post-norm by default, pre-norm with norm_first=True; activation 'relu' or
    'gelu'. backward(grad_out) -> grad_src."""

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation: expected 'relu' or 'gelu', got {activation!r}")
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = ReLU() if activation == "relu" else GELU()
        self.batch_first = bool(batch_first)

    def _sa(self, x, src_mask, src_key_padding_mask, is_causal):
        y, _ = self.self_attn(x, x, x, attn_mask=src_mask, key_padding_mask=src_key_padding_mask,
                              need_weights=False, is_causal=is_causal)
        return self.dropout1(y)

    def _sa_backward(self, g):
        return self.self_attn.backward(self.dropout1.backward(g))[0]

    def _ff(self, x):
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _ff_backward(self, g):
        g = self.linear2.backward(self.dropout2.backward(g))
        return self.linear1.backward(self.activation.backward(self.dropout.backward(g)))

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff(self.norm2(x))
        x = self.norm1(x + self._sa(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff(x))

    def backward(self, grad_out):
        if self.norm_first:
            g = grad_out + self.norm2.backward(self._ff_backward(grad_out))
            return g + self.norm1.backward(self._sa_backward(g))
        g = self.norm2.backward(grad_out)
        g = g + self._ff_backward(g)
        g = self.norm1.backward(g)
        return g + self._sa_backward(g)

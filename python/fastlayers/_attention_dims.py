"""The argument checks of scaled_dot_product_attention shared by the CPU path
(functional/_attention.py) and the CUDA path (_cuda_attention.py): one set of messages.

Each backend subclasses AttentionDims, names the dtypes it takes for q/k/v (`ACCEPTED`) and
turns the checked mask into what its kernels read (`_set_mask`)."""

from __future__ import annotations

import math

import numpy as np

from ._arrays import check_array


class AttentionDims:
    """Checked sizes of one attention call: lead (batch dims), hq, hk, group, L, S, E, Ev,
    scale, causal, full (the mask's broadcast target (..., Hq, L, S)), nbh."""

    ACCEPTED: tuple = ("float32",)

    def __init__(self, fn, q, k, v, attn_mask, is_causal, scale, enable_gqa):
        for name, x in (("q", q), ("k", k), ("v", v)):
            check_array(x, name, min_ndim=2, accepted=self.ACCEPTED)
        sq, sk, sv = tuple(q.shape), tuple(k.shape), tuple(v.shape)
        if not (q.ndim == k.ndim == v.ndim):
            raise ValueError(f"{fn}: q {sq}, k {sk} and v {sv} must have the same number of dimensions")
        if sq[:-3] != sk[:-3] or sq[:-3] != sv[:-3]:
            raise ValueError(f"{fn}: the batch dimensions of q {sq}, k {sk} and v {sv} must be equal")
        if sk[:-1] != sv[:-1]:
            raise ValueError(f"{fn}: k {sk} and v {sv} must agree in every dimension but the last (heads, S)")
        if sq[-1] != sk[-1]:
            raise ValueError(f"{fn}: q {sq} and k {sk} must have the same feature dimension E ({sq[-1]} != {sk[-1]})")
        if sq[-1] == 0:
            raise ValueError(f"{fn}: q {sq} has feature dimension E = 0; attention needs E >= 1")
        self.shapes = (sq, sk, sv)
        self.two_d = q.ndim == 2
        self.lead = sq[:-3]
        self.hq = sq[-3] if q.ndim > 2 else 1
        self.hk = sk[-3] if k.ndim > 2 else 1
        self.L, self.E = sq[-2], sq[-1]
        self.S, self.Ev = sk[-2], sv[-1]
        if self.hq != self.hk:
            if not enable_gqa:
                raise ValueError(
                    f"{fn}: q has {self.hq} heads (shape {sq}) but k/v have {self.hk} (shape {sk}); "
                    f"pass enable_gqa=True for grouped-query attention"
                )
            if self.hk == 0 or self.hq % self.hk:
                raise ValueError(
                    f"{fn}: with enable_gqa the number of q heads ({self.hq}) must be a multiple of the number "
                    f"of k/v heads ({self.hk})"
                )
        self.group = self.hq // self.hk if self.hk else 1
        if scale is None:
            self.scale = 1.0 / math.sqrt(self.E)
        else:
            if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
                raise TypeError(f"scale: expected a float or None, got {scale!r}")
            self.scale = float(scale)
            if not math.isfinite(self.scale):
                raise ValueError(f"scale: must be finite, got {scale!r}")
        self.causal = bool(is_causal)
        self.full = self.lead + (self.hq, self.L, self.S)
        self.mask = None
        if attn_mask is not None:
            check_array(attn_mask, "attn_mask", accepted=("bool", "float32"))
            try:
                if np.broadcast_shapes(tuple(attn_mask.shape), self.full) != self.full:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"attn_mask: shape {tuple(attn_mask.shape)} does not broadcast to (..., Hq, L, S) = {self.full}"
                ) from None
            self._set_mask(attn_mask)
        self.nbh = int(np.prod(self.lead, dtype=np.int64)) * self.hq

    def _set_mask(self, attn_mask):
        """Keep the mask as this backend's kernels read it (shape already checked)."""
        raise NotImplementedError

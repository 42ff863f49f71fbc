"""CuPy-side dispatch of the CUDA attention kernels (csrc/attention/attention_cuda.h).

`fastlayers.functional.scaled_dot_product_attention[_backward]` hand CuPy arrays here. The
checks and their messages are the CPU path's (functional/_attention.py), with one planned
difference (API.md): q, k, v (and grad_out, out) may also be float16 or bfloat16, all of one
dtype; results come back in that dtype, lse in float32. Masks stay bool or float32.

Path (decided here, passed to the kernels):
  flash    float16/bfloat16 with E == Ev in {32, 64, 96, 128, 256}: tensor cores
           (FlashAttention-2); q/k/v whose rows are not 16-byte aligned with unit column
           stride are copied contiguous first
  generic  everything else (float32, other head dims up to 512): CUDA cores, float32
           arithmetic, any strides
`PATH` ("flash" / "generic" / None = automatic) lets the tests and the benchmark force one.

Every matrix stack crosses as (pointer, device int64 offsets per (batch, head), row stride,
column stride) in elements, so broadcast masks and strided heads need no copy. CuPy is
imported lazily: importing fastlayers never needs it.
"""

from __future__ import annotations


import numpy as np

from . import _core
from ._arrays import F32_F16_BF16, check_array, require_cuda
from ._attention_dims import AttentionDims

__all__ = ["scaled_dot_product_attention", "scaled_dot_product_attention_backward"]

_DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
_FLASH_HEADS = (32, 64, 96, 128, 256)
GENERIC_MAX_HEAD = 512  # csrc/attention/attention_cuda.h kAttnGenericMaxHead
PATH = None  # None (automatic), "flash" or "generic"


def _cp():
    import cupy

    return cupy


def _ptr(a) -> int:
    return 0 if a is None else int(a.data.ptr)


def _stream() -> int:
    return _cp().cuda.get_current_stream().ptr


class _Dims(AttentionDims):
    """Checked sizes of one call: the CPU path's checks (_attention_dims.py), with half dtypes
    accepted, all of one dtype, and head dims bounded by the generic kernels."""

    ACCEPTED = F32_F16_BF16

    def __init__(self, fn, q, k, v, attn_mask, is_causal, scale, enable_gqa):
        self.mask_kind = 0
        super().__init__(fn, q, k, v, attn_mask, is_causal, scale, enable_gqa)
        self.dtype = _same_dtype(q=q, k=k, v=v)
        sq, _, sv = self.shapes
        if max(self.E, self.Ev) > GENERIC_MAX_HEAD and self.nbh and self.L:
            raise ValueError(f"{fn}: head dimensions above {GENERIC_MAX_HEAD} are not supported on CUDA "
                             f"(q {sq}, v {sv})")
        self.head_shape = self.lead + ((self.hq,) if not self.two_d else ())
        self.dims = [self.nbh, self.group, self.L, self.S, self.E, self.Ev]

    def _set_mask(self, attn_mask):
        self.mask = _cp().broadcast_to(attn_mask, self.full)
        self.mask_kind = 1 if str(attn_mask.dtype) == "bool" else 2

    def path(self):
        # (S == 0: nothing to read, the generic kernels write the zeros and -inf lse)
        flash_ok = self.dtype != "float32" and self.E == self.Ev and self.E in _FLASH_HEADS and self.S > 0
        if PATH == "generic" or not flash_ok:
            return 0
        return 1

    def operands(self, q, k, v, flash):
        nl = len(self.lead) + 1
        heads = [x[None] if self.two_d else x for x in (q, k, v)]
        out = [_mats(x, nl, flash) for x in heads]
        mask = _mats(self.mask, nl, False) if self.mask is not None else (0, 0, 0, 1, None)
        return out, mask


def _same_dtype(**arrays):
    dts = {n: str(a.dtype) for n, a in arrays.items() if a is not None}
    if len(set(dts.values())) > 1:
        desc = ", ".join(f"{n}={d}" for n, d in dts.items())
        raise TypeError(f"arrays of different dtypes in one call ({desc}); cast them to one of "
                        f"{', '.join(_DTYPES)}")
    return next(iter(dts.values()))


def _mats(x, nlead, flash):
    """(ptr, offsets ptr, rs, cs, keep-alive) for the matrices x[i0, .., i_{nlead-1}] (rows,
    cols). flash: rows must start 16-byte aligned with unit column stride, else x is copied."""
    cp = _cp()
    isz = x.itemsize
    st = tuple(int(s) for s in x.strides)
    if any(s % isz for s in st) or (flash and not _flash_aligned(x)):
        x = cp.ascontiguousarray(x)
        if flash and not _flash_aligned(x):  # contiguous, but starting off a 16-byte boundary
            x = x.copy()
        st = tuple(int(s) for s in x.strides)
    est = [s // isz for s in st]
    off = np.zeros((), np.int64)
    for d in range(nlead):
        shape = [1] * nlead
        shape[d] = int(x.shape[d])
        off = off + (np.arange(int(x.shape[d]), dtype=np.int64) * est[d]).reshape(shape)
    off = np.ascontiguousarray(np.broadcast_to(off, tuple(int(s) for s in x.shape[:nlead])).reshape(-1))
    off_dev = cp.asarray(off)
    return (_ptr(x), _ptr(off_dev), est[-2], est[-1], (x, off_dev))


def _flash_aligned(x):
    isz = x.itemsize
    st = [int(s) for s in x.strides]
    if x.ndim and int(x.shape[-1]) > 1 and st[-1] != isz:
        return False
    return _ptr(x) % 16 == 0 and all(s % 16 == 0 for s in st[:-1])


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
                                 return_lse=False):
    require_cuda()
    cp = _cp()
    d = _Dims("scaled_dot_product_attention", q, k, v, attn_mask, is_causal, scale, enable_gqa)
    out = cp.empty(d.head_shape + (d.L, d.Ev), dtype=d.dtype)
    lse = cp.empty(d.head_shape + (d.L,), dtype=np.float32) if return_lse else None
    if d.nbh and d.L:
        path = d.path()
        (mq, mk, mv), mm = d.operands(q, k, v, path == 1)
        _core.cuda_attention_forward(_DTYPES[d.dtype], path, d.dims, mq[:4], mk[:4], mv[:4], d.mask_kind, mm[:4],
                                     d.causal, d.scale, _ptr(out), _ptr(lse), _stream())
    return (out, lse) if return_lse else out


def scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False, scale=None,
                                          enable_gqa=False):
    require_cuda()
    cp = _cp()
    fn = "scaled_dot_product_attention_backward"
    d = _Dims(fn, q, k, v, attn_mask, is_causal, scale, enable_gqa)
    check_array(grad_out, "grad_out", accepted=F32_F16_BF16)
    check_array(out, "out", accepted=F32_F16_BF16)
    check_array(lse, "lse")
    want = d.head_shape + (d.L, d.Ev)
    for name, x in (("grad_out", grad_out), ("out", out)):
        if tuple(x.shape) != want:
            raise ValueError(f"{name}: shape {tuple(x.shape)}, expected {want} (the shape of the attention output)")
    if tuple(lse.shape) != d.head_shape + (d.L,):
        raise ValueError(f"lse: shape {tuple(lse.shape)}, expected {d.head_shape + (d.L,)} (return_lse=True gives it)")
    _same_dtype(q=q, grad_out=grad_out, out=out)
    grad_q = cp.empty(q.shape, dtype=d.dtype)
    grad_k = cp.empty(k.shape, dtype=d.dtype)
    grad_v = cp.empty(v.shape, dtype=d.dtype)
    if d.nbh == 0 or d.L == 0:
        grad_q.fill(0)
        grad_k.fill(0)
        grad_v.fill(0)
        return grad_q, grad_k, grad_v
    path = d.path()
    (mq, mk, mv), mm = d.operands(q, k, v, path == 1)
    g = cp.ascontiguousarray(grad_out)
    if path == 1 and _ptr(g) % 16:  # the flash kernels copy dO rows with 16-byte cp.async
        g = g.copy()
    o = cp.ascontiguousarray(out)
    ls = cp.ascontiguousarray(lse)
    work = cp.empty(int(_core.cuda_attention_workspace(path, d.dims)), dtype=np.float32)
    _core.cuda_attention_backward(_DTYPES[d.dtype], path, d.dims, mq[:4], mk[:4], mv[:4], d.mask_kind, mm[:4],
                                  d.causal, d.scale, _ptr(g), _ptr(o), _ptr(ls), _ptr(grad_q), _ptr(grad_k),
                                  _ptr(grad_v), _ptr(work), _stream())
    return grad_q, grad_k, grad_v

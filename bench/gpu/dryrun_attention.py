"""Dry-run stand-ins of the CUDA attention bindings (issue 9), installed by dryrun_plugin.setup().

    PYTHONPATH=python:bench/gpu python -m pytest -p dryrun_plugin tests/test_cuda_attention.py -m gpu

Each `_core.cuda_attention_*` is replaced by a NumPy version of its contract that reads q, k,
v and the mask through the very (pointer, device offsets, row stride, column stride) tuples,
sizes and flags python/fastlayers/_cuda_attention.py passes, computes with the float64
reference and writes the outputs through their pointers. It also asserts what the kernels
assume: the flash path only for half dtypes with E == Ev in {32, 64, 96, 128, 256}, unit
column strides and 16-byte aligned rows; the workspace size; lse handed back to the backward
equal to the forward's. What it cannot check: the kernels themselves (none runs here; see
emulate_flash_fragments.py for their index math).
"""
from __future__ import annotations

import ctypes

import numpy as np

_DT = {0: np.float32, 1: np.float16}
FLASH_HEADS = (32, 64, 96, 128, 256)


def _sview(ptr, shape, strides, dtype):
    """A NumPy view of device (here: host) memory at ptr, element strides, negative ones too."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if any(s == 0 for s in shape):
        return np.empty(shape, dtype)
    assert ptr, "null pointer for a non-empty array"
    lo = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
    hi = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
    n = hi - lo + 1
    buf = (ctypes.c_char * (n * dtype.itemsize)).from_address(ptr + lo * dtype.itemsize)
    base = np.frombuffer(buf, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base[-lo:], shape, [s * dtype.itemsize for s in strides])


def _stack(m, count, rows, cols, dtype):
    """The matrices of an (ptr, offsets ptr, rs, cs) tuple as a list of (rows, cols) views."""
    ptr, offp, rs, cs = m
    off = _sview(offp, (count,), (1,), np.int64) if count else np.zeros(0, np.int64)
    isz = np.dtype(dtype).itemsize
    return [_sview(ptr + int(o) * isz, (rows, cols), (rs, cs), dtype) for o in off], off


def _check_flash(dtype, dims, mats):
    nbh, group, L, S, E, Ev = dims
    assert dtype in (1, 2) and E == Ev and E in FLASH_HEADS, f"flash path with dtype {dtype}, E={E}, Ev={Ev}"
    for (ptr, _, rs, cs), off in mats:
        assert cs == 1 and rs % 8 == 0 and ptr % 16 == 0 and all(int(o) % 8 == 0 for o in off), \
            "flash path with rows that are not 16-byte aligned"


def _inputs(dtype, path, dims, q, k, v, mask_kind, mask):
    nbh, group, L, S, E, Ev = dims
    dt = _DT[dtype]
    Q, qo = _stack(q, nbh, L, E, dt)
    K, ko = _stack(k, nbh // group, S, E, dt)
    V, vo = _stack(v, nbh // group, S, Ev, dt)
    if path == 1:
        _check_flash(dtype, dims, [(q, qo), (k, ko), (v, vo)])
    M = [None] * nbh
    if mask_kind:
        M, _ = _stack(mask, nbh, L, S, np.bool_ if mask_kind == 1 else np.float32)
    return Q, K, V, M


def _f64(x):
    return None if x is None else np.asarray(x, np.float64) if x.dtype != np.bool_ else np.array(x)


def install(core):
    from fastlayers import reference as R

    def cuda_attention_forward(dtype, path, dims, q, k, v, mask_kind, mask, causal, scale, out, lse, stream):
        nbh, group, L, S, E, Ev = dims
        Q, K, V, M = _inputs(dtype, path, dims, q, k, v, mask_kind, mask)
        O = _sview(out, (nbh, L, Ev), (L * Ev, Ev, 1), _DT[dtype])
        LS = _sview(lse, (nbh, L), (L, 1), np.float32) if lse else None
        for bh in range(nbh):
            with np.errstate(invalid="ignore", over="ignore"):
                o, ls = R.scaled_dot_product_attention(_f64(Q[bh]), _f64(K[bh // group]), _f64(V[bh // group]),
                                                       attn_mask=_f64(M[bh]), is_causal=causal, scale=scale,
                                                       return_lse=True)
            O[bh] = o
            if LS is not None:
                LS[bh] = ls

    def cuda_attention_backward(dtype, path, dims, q, k, v, mask_kind, mask, causal, scale, dout, o, lse, dq, dk,
                                dv, workspace, stream):
        nbh, group, L, S, E, Ev = dims
        Q, K, V, M = _inputs(dtype, path, dims, q, k, v, mask_kind, mask)
        assert path != 1 or dout % 16 == 0, "flash backward with a grad_out not 16-byte aligned"
        dt = _DT[dtype]
        G = _sview(dout, (nbh, L, Ev), (L * Ev, Ev, 1), dt)
        LS = _sview(lse, (nbh, L), (L, 1), np.float32)
        ws = cuda_attention_workspace(path, dims)
        W = _sview(workspace, (ws,), (1,), np.float32)
        W[...] = np.nan  # the kernels own it: nothing may depend on its old contents
        DQ = _sview(dq, (nbh, L, E), (L * E, E, 1), dt)
        DK = _sview(dk, (nbh // group, S, E), (S * E, E, 1), dt)
        DV = _sview(dv, (nbh // group, S, Ev), (S * Ev, Ev, 1), dt)
        for kvh in range(nbh // group):
            hs = range(kvh * group, (kvh + 1) * group)
            q3 = np.stack([_f64(Q[h]) for h in hs])
            m3 = None if not mask_kind else np.stack([_f64(M[h]) for h in hs])
            with np.errstate(invalid="ignore", over="ignore"):
                out, ls = R.scaled_dot_product_attention(q3, _f64(K[kvh])[None], _f64(V[kvh])[None], attn_mask=m3,
                                                         is_causal=causal, scale=scale, enable_gqa=True,
                                                         return_lse=True)
                # the lse the caller hands back must be the forward's
                given = LS[kvh * group:(kvh + 1) * group].astype(np.float64)
                assert np.array_equal(np.isneginf(given), np.isneginf(ls)), "lse: empty rows differ from the forward's"
                fin = np.isfinite(ls)
                assert np.allclose(given[fin], ls[fin], rtol=1e-3, atol=1e-3), "lse is not the forward's"
                gq, gk, gv = R.scaled_dot_product_attention_backward(
                    _f64(G[kvh * group:(kvh + 1) * group]), q3, _f64(K[kvh])[None], _f64(V[kvh])[None], out, ls,
                    attn_mask=m3, is_causal=causal, scale=scale, enable_gqa=True)
            DQ[kvh * group:(kvh + 1) * group] = gq
            DK[kvh] = gk[0]
            DV[kvh] = gv[0]

    def cuda_attention_workspace(path, dims):
        nbh, group, L, S, E, Ev = dims
        return nbh * L * (1 + E if path == 1 else 1)

    def cuda_attention_flash_supported(dtype, E, Ev):
        return dtype in (1, 2) and E == Ev and E in FLASH_HEADS

    for name, fn in list(locals().items()):
        if name.startswith("cuda_attention"):
            setattr(core, name, fn)

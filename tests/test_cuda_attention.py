"""CUDA attention (csrc/attention/*.cu, python/fastlayers/_cuda_attention.py) against the float64
NumPy reference, on CuPy arrays: the CPU attention tests' parametrizations (tests/test_attention.py)
in float32 (generic kernels), float16 and bfloat16 (flash kernels on tensor cores where the head
dim allows, the generic kernels elsewhere), both paths forced on the same inputs, and the CPU
path's errors for CuPy inputs. Every GPU test is marked `gpu` (skipped without a GPU, CuPy and a
CUDA build) and imports CuPy inside its body.

Tolerances
- float32: conftest.assert_close (rtol 1e-4 against float64), the CPU tests' floors for the
  gradients (the dS = P (dP - delta) cancellation).
- float16 / bfloat16: the truth is the float64 reference on the same rounded inputs; judged by
  the norm-wise relative error ||x - ref|| / ||ref||. Forward: P is rounded to the input dtype
  before P V (relative u per element, u = 2^-11 float16, 2^-8 bfloat16) and the output once
  more: about 1.5 u; HALF_TOL["out"] = 6 u. Gradients: dS^T is rounded before dK = dS^T Q and
  dQ = dS K, and its rows sum to ~0 (sum_j P (dP - delta) = 0), so the rounding error is
  relative to |P| |dP| rather than to dS: a few u of ||grad||; HALF_TOL["grad"] = 25 u. lse is
  float32 from float32 accumulations of exact half products: 1e-3 absolute + 1e-3 relative.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import assert_close, f64, randn
from fastlayers import functional as F
from fastlayers import reference as R

U = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
HALF_TOL = {dt: {"out": 6 * u, "grad": 25 * u} for dt, u in U.items()}
FLASH_HEADS = (32, 64, 96, 128, 256)


@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if os.environ.get("FASTLAYERS_NO_CUPY_POOL") == "1":
        cupy.cuda.set_allocator(None)  # under compute-sanitizer: one allocation per array
    else:
        junk = cupy.full(1 << 24, np.nan, dtype=np.float32)  # poison the pool: unwritten outputs read NaN
        del junk
    yield cupy
    cupy.cuda.get_current_stream().synchronize()


@pytest.fixture
def path():
    """Force a kernel path for one test (restored afterwards)."""
    from fastlayers import _cuda_attention

    old = _cuda_attention.PATH
    yield lambda p: setattr(_cuda_attention, "PATH", p)
    _cuda_attention.PATH = old


def _host(a):
    import cupy

    return cupy.asnumpy(a)


def _dtypes(cp):
    out = ["float32", "float16"]
    try:
        cp.zeros(1, dtype=np.float32).astype("bfloat16")
        out.append("bfloat16")
    except Exception:  # this CuPy has no bfloat16
        pass
    return out


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.linalg.norm(b.ravel()) or 1.0
    return float(np.linalg.norm((a - b).ravel()) / den)


def _qkv(rng, lead, hq, hk, L, S, E, Ev, scale=1.0):
    return (randn(rng, *lead, hq, L, E, scale=scale), randn(rng, *lead, hk, S, E, scale=scale),
            randn(rng, *lead, hk, S, Ev))


def _check(cp, q, k, v, dtype="float32", grads=True, rng=None, **kw):
    """Forward (out, lse) and backward on the device vs the float64 reference of the same
    (rounded) inputs. Returns the host output."""
    dev = [cp.asarray(x).astype(dtype) for x in (q, k, v)]
    kwd = dict(kw)
    if kw.get("attn_mask") is not None:
        kwd["attn_mask"] = cp.asarray(kw["attn_mask"])
    out, lse = F.scaled_dot_product_attention(*dev, return_lse=True, **kwd)
    assert str(out.dtype) == dtype and str(lse.dtype) == "float32" and out.flags.c_contiguous
    q64, k64, v64 = (_host(x.astype(np.float32)).astype(np.float64) for x in dev)
    rout, rlse = R.scaled_dot_product_attention(q64, k64, v64, return_lse=True, **kw)
    o, ls = _host(out.astype(np.float32)), _host(lse)
    assert o.shape == rout.shape and ls.shape == rlse.shape
    np.testing.assert_array_equal(np.isneginf(ls), np.isneginf(rlse))
    fin = np.isfinite(rlse)
    assert np.isfinite(o).all()
    if dtype == "float32":
        assert_close(o, rout, name="out")
        assert_close(np.where(fin, ls, 0), np.where(fin, rlse, 0), name="lse")
    else:
        assert _rel(o, rout) <= HALF_TOL[dtype]["out"], ("out", dtype, _rel(o, rout))
        np.testing.assert_allclose(ls[fin], rlse[fin], rtol=1e-3, atol=1e-3, err_msg="lse")
    if not grads:
        return o
    g = randn(rng, *rout.shape)
    gd = cp.asarray(g).astype(dtype)
    got = F.scaled_dot_product_attention_backward(gd, *dev, out, lse, **kwd)
    g64 = _host(gd.astype(np.float32)).astype(np.float64)
    want = R.scaled_dot_product_attention_backward(g64, q64, k64, v64, rout, rlse, **kw)
    floor = 1e-5 * max(float(np.abs(w).max()) if w.size else 0.0 for w in want)  # as tests/test_attention.py
    for name, a, w, x in zip(("grad_q", "grad_k", "grad_v"), got, want, dev):
        assert a.shape == x.shape and str(a.dtype) == dtype and a.flags.c_contiguous, name
        a = _host(a.astype(np.float32))
        assert np.isfinite(a).all(), name
        if dtype == "float32":
            assert_close(a, w, name=name, atol_floor=max(floor, 1e-6))
        else:
            # (a gradient that is ~0 everywhere, e.g. grad_k with S = 1, is judged against the
            # largest of the three)
            den = max(np.linalg.norm(w.ravel()), 1e-3 * max(np.linalg.norm(x.ravel()) for x in want))
            err = float(np.linalg.norm((a - w).ravel()) / (den or 1.0))
            assert err <= HALF_TOL[dtype]["grad"], (name, dtype, err)
    return o


# ---- the CPU tests' parametrizations ---------------------------------------------------------
SHAPES = [  # tests/test_attention.py SHAPES
    ((), 1, 1, 1, 1, 16, 16),
    ((2,), 3, 3, 1, 37, 17, 17),
    ((2,), 2, 2, 37, 1, 59, 59),
    ((1,), 2, 2, 130, 97, 100, 33),
    ((), 1, 1, 70, 65, 256, 256),
    ((2, 2), 2, 2, 33, 70, 16, 24),
    ((2,), 6, 2, 45, 101, 32, 20),
    ((), 4, 1, 200, 193, 64, 64),
    ((2,), 4, 2, 300, 250, 100, 72),
]
# The flash kernels' head dims (E == Ev), ragged lengths across the 64/128-row tiles, GQA.
FLASH_SHAPES = [
    ((2,), 2, 2, 1, 1, 32, 32),
    ((1,), 4, 2, 133, 137, 32, 32),
    ((2,), 2, 1, 129, 200, 64, 64),
    ((1,), 3, 3, 65, 300, 96, 96),
    ((1,), 4, 1, 257, 129, 128, 128),
    ((1,), 2, 2, 70, 97, 256, 256),
    ((), 2, 2, 40, 33, 128, 128),
]


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES + FLASH_SHAPES, ids=lambda s: "x".join(map(str, s[0] + s[1:])))
def test_vs_reference(cp, rng, shape, causal):
    lead, hq, hk, L, S, E, Ev = shape
    q, k, v = _qkv(rng, lead, hq, hk, L, S, E, Ev)
    for dt in _dtypes(cp):
        _check(cp, q, k, v, dt, rng=rng, is_causal=causal, enable_gqa=hq != hk)


@pytest.mark.gpu
@pytest.mark.parametrize("E", FLASH_HEADS)
def test_flash_and_generic_paths_agree(cp, rng, path, E):
    """The same half inputs through both kernels (flash forced off with PATH='generic')."""
    q, k, v = _qkv(rng, (2,), 4, 2, 150, 170, E, E)
    mask = rng.random((150, 170)) < 0.8
    for dt in _dtypes(cp)[1:]:
        for causal in (False, True):
            kw = dict(attn_mask=mask, is_causal=causal, enable_gqa=True)
            path("flash")
            a = _check(cp, q, k, v, dt, rng=rng, **kw)
            path("generic")
            b = _check(cp, q, k, v, dt, rng=rng, **kw)
            assert _rel(a, b) <= 2 * HALF_TOL[dt]["out"]


@pytest.mark.gpu
@pytest.mark.parametrize("E", [64, 128])
@pytest.mark.parametrize("cfg_var", ["FASTLAYERS_CUDA_ATTN_FWD_CFG", "FASTLAYERS_CUDA_ATTN_BWD_CFG"])
def test_alternative_tile_config(cp, rng, monkeypatch, cfg_var, E):
    """The alternative flash tiles: the forward's (FASTLAYERS_CUDA_ATTN_FWD_CFG=1) and the
    8-warp backward with 128 keys per block (FASTLAYERS_CUDA_ATTN_BWD_CFG=1)."""
    monkeypatch.setenv(cfg_var, "1")
    q, k, v = _qkv(rng, (2,), 4, 2, 150, 300, E, E)
    mask = rng.random((150, 300)) < 0.8
    for dt in _dtypes(cp)[1:]:
        for causal in (False, True):
            _check(cp, q, k, v, dt, rng=rng, attn_mask=mask if causal else None, is_causal=causal, enable_gqa=True)


@pytest.mark.gpu
def test_two_d_inputs_and_scale(cp, rng):
    q, k, v = randn(rng, 19, 24), randn(rng, 23, 24), randn(rng, 23, 7)
    out = _check(cp, q, k, v, rng=rng, scale=0.3)
    assert out.shape == (19, 7)
    q, k, v = randn(rng, 19, 64), randn(rng, 23, 64), randn(rng, 23, 64)
    for dt in _dtypes(cp)[1:]:
        assert _check(cp, q, k, v, dt, rng=rng, scale=0.3).shape == (19, 64)


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L,S", [(100, 37), (37, 100), (96, 96), (1, 50), (50, 1), (300, 130), (130, 300)])
def test_causal_top_left(cp, rng, L, S, causal):
    for E in (40, 64):  # generic, then flash for the half dtypes
        q, k, v = _qkv(rng, (2,), 2, 2, L, S, E, E)
        for dt in _dtypes(cp):
            _check(cp, q, k, v, dt, rng=rng, is_causal=causal)


MASK_SHAPES = [(9,), (1,), (7, 9), (1, 9), (7, 1), (3, 7, 9), (3, 1, 1), (2, 1, 7, 9), (2, 3, 1, 9),
               (2, 1, 1, 9), (1, 1, 1, 1), (2, 3, 7, 9)]


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("mshape", MASK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mask_broadcast(cp, rng, mshape, kind):
    if kind == "bool":
        mask = rng.random(mshape) < 0.7
    else:
        mask = randn(rng, *mshape)
        mask[rng.random(mshape) < 0.3] = -np.inf
    grads = mshape in ((7, 9), (2, 3, 1, 9), (2, 3, 7, 9))
    for E, Ev in ((20, 12), (32, 32)):
        q, k, v = _qkv(rng, (2,), 3, 3, 7, 9, E, Ev)
        for dt in _dtypes(cp):
            _check(cp, q, k, v, dt, rng=rng, attn_mask=mask, grads=grads)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("E", [33, 64])
def test_mask_with_causal_and_gqa_large(cp, rng, kind, E):
    q, k, v = _qkv(rng, (1,), 4, 2, 150, 130, E, E)
    mshape = (1, 1, 150, 130)
    mask = rng.random(mshape) < 0.8 if kind == "bool" else np.where(rng.random(mshape) < 0.2, -np.inf,
                                                                     randn(rng, *mshape)).astype(np.float32)
    for dt in _dtypes(cp):
        _check(cp, q, k, v, dt, rng=rng, attn_mask=mask, is_causal=True, enable_gqa=True)


@pytest.mark.gpu
@pytest.mark.parametrize("E,Ev", [(16, 8), (64, 64)])
def test_rows_with_nothing_to_attend(cp, rng, E, Ev):
    q, k, v = _qkv(rng, (2,), 2, 2, 10, 20, E, Ev)
    mask = rng.random((2, 2, 10, 20)) < 0.5
    mask[0, 1, 3] = False
    mask[1, :, 7] = False
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    for m in (mask, fmask):
        for dt in _dtypes(cp):
            dev = [cp.asarray(x).astype(dt) for x in (q, k, v)]
            out, lse = F.scaled_dot_product_attention(*dev, attn_mask=cp.asarray(m), return_lse=True)
            o, ls = _host(out.astype(np.float32)), _host(lse)
            assert np.isfinite(o).all()
            assert (o[0, 1, 3] == 0).all() and (o[1, :, 7] == 0).all()
            assert np.isneginf(ls[0, 1, 3]) and np.isneginf(ls[1, :, 7]).all()
            g = cp.asarray(randn(rng, *out.shape)).astype(dt)
            gq, gk, gv = F.scaled_dot_product_attention_backward(g, *dev, out, lse, attn_mask=cp.asarray(m))
            gq = _host(gq.astype(np.float32))
            assert (gq[0, 1, 3] == 0).all() and (gq[1, :, 7] == 0).all()
            _check(cp, q, k, v, dt, rng=rng, attn_mask=m)


@pytest.mark.gpu
def test_empty_keys(cp, rng):
    for E, Ev in ((8, 3), (64, 64)):
        q, k, v = _qkv(rng, (2,), 2, 2, 5, 0, E, Ev)
        for dt in _dtypes(cp):
            dev = [cp.asarray(x).astype(dt) for x in (q, k, v)]
            out, lse = F.scaled_dot_product_attention(*dev, return_lse=True)
            assert out.shape == (2, 2, 5, Ev) and (_host(out.astype(np.float32)) == 0).all()
            assert np.isneginf(_host(lse)).all()
            g = cp.asarray(randn(rng, *out.shape)).astype(dt)
            gq, gk, gv = F.scaled_dot_product_attention_backward(g, *dev, out, lse)
            assert (_host(gq.astype(np.float32)) == 0).all() and gk.shape == k.shape and gv.shape == v.shape


@pytest.mark.gpu
def test_extreme_logits(cp, rng):
    # tests/test_attention.py test_extreme_logits, float32 (generic kernels): scores ~1e4 must
    # not overflow; the bound is 8 roundings of the largest score (see there).
    q, k, v = _qkv(rng, (1,), 2, 2, 40, 50, 32, 16, scale=20.0)
    cases = [((q, k, v), dict(scale=2.0)),
             ((q / 20, k / 20, v), dict(attn_mask=np.full((40, 50), 1e4, np.float32)))]
    for (a, b, c), kw in cases:
        smax = float(np.abs(np.einsum("bhle,bhse->bhls", *f64(a, b))).max()) * kw.get("scale", 1 / np.sqrt(32))
        smax += 1e4 if "attn_mask" in kw else 0.0
        tol = 8 * smax * 2.0**-24
        kwd = {n: (cp.asarray(x) if isinstance(x, np.ndarray) else x) for n, x in kw.items()}
        out, lse = F.scaled_dot_product_attention(cp.asarray(a), cp.asarray(b), cp.asarray(c), return_lse=True, **kwd)
        truth, tlse = R.scaled_dot_product_attention(*f64(a, b, c), return_lse=True, **kw)
        out, lse = _host(out), _host(lse)
        assert np.isfinite(out).all() and np.isfinite(lse).all()
        assert np.abs(out - truth).max() <= tol * np.abs(truth).max()
        assert np.abs(lse - tlse).max() <= tol
    # half: scores ~1e3 in float32 accumulation, still finite everywhere
    a64 = cp.asarray(randn(rng, 1, 2, 40, 64, scale=8.0)).astype("float16")
    out, lse = F.scaled_dot_product_attention(a64, a64, a64, return_lse=True)
    assert np.isfinite(_host(out.astype(np.float32))).all() and np.isfinite(_host(lse)).all()


@pytest.mark.gpu
def test_non_contiguous(cp, rng):
    # q from a (B, L, H, E) array (heads strided), k/v slices with steps, a negative-stride mask.
    for E in (40, 64):
        base = randn(rng, 2, 31, 3, E)
        kb = randn(rng, 2, 3, 60, 2 * E)
        vb = randn(rng, 2, 3, E, 30)
        mask = (rng.random((31, 30)) < 0.8)
        for dt in _dtypes(cp):
            qd = cp.asarray(base).astype(dt).transpose(0, 2, 1, 3)
            kd = cp.asarray(kb).astype(dt)[:, :, ::2, ::2]
            vd = cp.asarray(vb).astype(dt).transpose(0, 1, 3, 2)
            md = cp.asarray(mask)[::-1]
            assert not (qd.flags.c_contiguous or kd.flags.c_contiguous or vd.flags.c_contiguous)
            out, lse = F.scaled_dot_product_attention(qd, kd, vd, attn_mask=md, is_causal=True, return_lse=True)
            h = [_host(x.astype(np.float32)).astype(np.float64) for x in (qd, kd, vd)]
            ref, rlse = R.scaled_dot_product_attention(*h, attn_mask=mask[::-1], is_causal=True, return_lse=True)
            o = _host(out.astype(np.float32))
            if dt == "float32":
                assert_close(o, ref)
            else:
                assert _rel(o, ref) <= HALF_TOL[dt]["out"]
            g = cp.asarray(randn(rng, *out.shape)).astype(dt)
            got = F.scaled_dot_product_attention_backward(g, qd, kd, vd, out, lse, attn_mask=md, is_causal=True)
            want = R.scaled_dot_product_attention_backward(_host(g.astype(np.float32)).astype(np.float64), *h, ref,
                                                           rlse, attn_mask=mask[::-1], is_causal=True)
            for a, w in zip(got, want):
                a = _host(a.astype(np.float32))
                if dt == "float32":
                    assert_close(a, w, atol_floor=1e-5 * max(np.abs(x).max() for x in want))
                else:
                    assert _rel(a, w) <= HALF_TOL[dt]["grad"]


@pytest.mark.gpu
def test_unaligned_views(cp, rng):
    """Contiguous views that start off a 16-byte boundary (q, k, v and grad_out one element
    into a buffer): the flash path copies them before its 16-byte cp.async loads."""
    for dt in _dtypes(cp)[1:]:
        bufs = [cp.asarray(randn(rng, 2 * 40 * 64 + 1)).astype(dt) for _ in range(4)]
        q, k, v, g = (b[1:].reshape(2, 40, 64) for b in bufs)
        assert all(x.flags.c_contiguous and x.data.ptr % 16 for x in (q, k, v, g))
        out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
        h = [_host(x.astype(np.float32)).astype(np.float64) for x in (q, k, v, g)]
        ref, rlse = R.scaled_dot_product_attention(*h[:3], is_causal=True, return_lse=True)
        assert _rel(_host(out.astype(np.float32)), ref) <= HALF_TOL[dt]["out"]
        got = F.scaled_dot_product_attention_backward(g, q, k, v, out, lse, is_causal=True)
        want = R.scaled_dot_product_attention_backward(h[3], *h[:3], ref, rlse, is_causal=True)
        for a, w in zip(got, want):
            assert _rel(_host(a.astype(np.float32)), w) <= HALF_TOL[dt]["grad"]


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(0, 2, 5, 8), (2, 0, 5, 8), (2, 2, 0, 8), (2, 2, 0, 32)])
def test_zero_size(cp, rng, shape):
    for dt in _dtypes(cp):
        q = cp.asarray(randn(rng, *shape)).astype(dt)
        k = cp.asarray(randn(rng, shape[0], shape[1], 6, shape[3])).astype(dt)
        v = cp.asarray(randn(rng, shape[0], shape[1], 6, 4)).astype(dt)
        out, lse = F.scaled_dot_product_attention(q, k, v, return_lse=True)
        assert out.shape == shape[:-1] + (4,) and lse.shape == shape[:-1]
        gq, gk, gv = F.scaled_dot_product_attention_backward(cp.zeros_like(out), q, k, v, out, lse)
        assert gq.shape == q.shape and gk.shape == k.shape and gv.shape == v.shape
        assert not _host(gk.astype(np.float32)).any() and not _host(gv.astype(np.float32)).any()


@pytest.mark.gpu
def test_causal_with_mask_combines(cp, rng):
    q, k, v = _qkv(rng, (1,), 2, 2, 12, 12, 8, 8)
    mask = rng.random((12, 12)) < 0.7
    dq, dk, dv = (cp.asarray(x) for x in (q, k, v))
    a = F.scaled_dot_product_attention(dq, dk, dv, attn_mask=cp.asarray(mask), is_causal=True)
    b = F.scaled_dot_product_attention(dq, dk, dv, attn_mask=cp.asarray(mask & np.tril(np.ones((12, 12), bool))))
    np.testing.assert_allclose(_host(a), _host(b), rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
def test_long_sequence_workspace_is_linear(cp, rng):
    """L = S = 8192 with one head: the backward's workspace is (1 + E) floats per query row, and
    no L x S buffer is ever allocated (CuPy's pool would show ~256 MB for one)."""
    if not hasattr(cp, "get_default_memory_pool"):
        pytest.skip("needs CuPy's memory pool (not in the dry run)")
    L = 8192
    dt = _dtypes(cp)[-1]
    q, k, v = (cp.asarray(randn(rng, 1, 1, L, 64)).astype(dt) for _ in range(3))
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    before = pool.total_bytes()
    out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
    g = F.scaled_dot_product_attention_backward(out, q, k, v, out, lse, is_causal=True)
    cp.cuda.get_current_stream().synchronize()
    assert np.isfinite(_host(out[0, 0, -5:].astype(np.float32))).all()
    total = pool.total_bytes() - before
    assert total < 64 * L * 64 * 4, total  # ~16 L*E-sized buffers; an L x S float32 buffer alone is 256 MB
    del g


# ---- errors: the CPU path's, for CuPy inputs --------------------------------------------------
def _error_of(call, *makers):
    try:
        call(*makers)
    except Exception as e:
        return type(e), str(e)
    return None, None


ERROR_CASES = [  # tests/test_attention.py test_errors, as (id, call(a, i))
    ("E", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((2, 4, 6, 7)), a((2, 4, 6, 3)))),
    ("kv", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((2, 4, 6, 8)), a((2, 4, 5, 3)))),
    ("batch", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((3, 4, 6, 8)), a((3, 4, 6, 3)))),
    ("ndim", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((4, 6, 8)), a((4, 6, 3)))),
    ("mask-shape", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((2, 4, 6, 8)), a((2, 4, 6, 3)),
                                                            attn_mask=a((5, 7), "bool"))),
    ("mask-heads", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((2, 4, 6, 8)), a((2, 4, 6, 3)),
                                                            attn_mask=a((3, 5, 6), "bool"))),
    ("gqa-flag", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((2, 2, 6, 8)), a((2, 2, 6, 3)))),
    ("gqa-multiple", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 8)), a((2, 3, 6, 8)), a((2, 3, 6, 3)),
                                                              enable_gqa=True)),
    ("E0", lambda a: F.scaled_dot_product_attention(a((2, 4, 5, 0)), a((2, 4, 6, 0)), a((2, 4, 6, 3)))),
    ("scale-inf", lambda a: F.scaled_dot_product_attention(a((2, 5, 8)), a((2, 6, 8)), a((2, 6, 3)),
                                                           scale=float("inf"))),
    ("scale-type", lambda a: F.scaled_dot_product_attention(a((2, 5, 8)), a((2, 6, 8)), a((2, 6, 3)), scale="x")),
    ("q-float64", lambda a: F.scaled_dot_product_attention(a((2, 5, 8), "float64"), a((2, 6, 8)), a((2, 6, 3)))),
    ("mask-int", lambda a: F.scaled_dot_product_attention(a((2, 5, 8)), a((2, 6, 8)), a((2, 6, 3)),
                                                          attn_mask=a((5, 6), "int64"))),
    ("mask-float16", lambda a: F.scaled_dot_product_attention(a((2, 5, 8)), a((2, 6, 8)), a((2, 6, 3)),
                                                              attn_mask=a((5, 6), "float16"))),
    ("bwd-grad", lambda a: F.scaled_dot_product_attention_backward(a((2, 5, 2)), a((2, 5, 8)), a((2, 6, 8)),
                                                                   a((2, 6, 3)), a((2, 5, 3)), a((2, 5)))),
    ("bwd-out", lambda a: F.scaled_dot_product_attention_backward(a((2, 5, 3)), a((2, 5, 8)), a((2, 6, 8)),
                                                                  a((2, 6, 3)), a((2, 4, 3)), a((2, 5)))),
    ("bwd-lse", lambda a: F.scaled_dot_product_attention_backward(a((2, 5, 3)), a((2, 5, 8)), a((2, 6, 8)),
                                                                  a((2, 6, 3)), a((2, 5, 3)), a((2, 3)))),
    ("bwd-lse-float64", lambda a: F.scaled_dot_product_attention_backward(
        a((2, 5, 3)), a((2, 5, 8)), a((2, 6, 8)), a((2, 6, 3)), a((2, 5, 3)), a((2, 5), "float64"))),
]


@pytest.mark.gpu
@pytest.mark.parametrize("name,case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_cupy_inputs_get_the_numpy_errors(cp, name, case):
    """Same exception type and message for CuPy inputs as for NumPy ones; the one planned
    difference: q/k/v (and grad_out/out) list the half dtypes they accept on CUDA."""
    def maker(xp):
        return lambda shape, dtype="float32": xp.asarray(np.full(shape, 0.5, dtype=dtype))

    cpu = _error_of(case, maker(np))
    assert cpu[0] is not None and issubclass(cpu[0], (TypeError, ValueError)), cpu
    if name in ("q-float64",):
        cpu = (cpu[0], cpu[1].replace("(accepted: float32)", "(accepted: float32, float16, bfloat16)"))
    assert _error_of(case, maker(cp)) == cpu


@pytest.mark.gpu
def test_half_dtype_rules(cp, rng):
    """q, k, v (and grad_out, out) of one dtype; results in it, lse float32; masks bool or float32."""
    q = cp.asarray(randn(rng, 2, 5, 32))
    for dt in _dtypes(cp)[1:]:
        qh = q.astype(dt)
        out, lse = F.scaled_dot_product_attention(qh, qh, qh, attn_mask=cp.zeros((5, 5), dtype=np.float32),
                                                  return_lse=True)
        assert str(out.dtype) == dt and str(lse.dtype) == "float32"
        with pytest.raises(TypeError, match="different dtypes"):
            F.scaled_dot_product_attention(qh, q, q)
        with pytest.raises(TypeError, match="different dtypes"):
            F.scaled_dot_product_attention_backward(out.astype(np.float32), qh, qh, qh, out, lse)
        with pytest.raises(TypeError, match=f"attn_mask: dtype {dt} is not supported"):
            F.scaled_dot_product_attention(qh, qh, qh, attn_mask=cp.zeros((5, 5), dtype=dt))


@pytest.mark.gpu
def test_mixed_numpy_and_cupy_is_type_error(cp, rng):
    q = randn(rng, 2, 5, 8)
    with pytest.raises(TypeError, match="different kinds"):
        F.scaled_dot_product_attention(cp.asarray(q), q, q)
    with pytest.raises(TypeError, match="different kinds"):
        F.scaled_dot_product_attention(cp.asarray(q), cp.asarray(q), cp.asarray(q), attn_mask=np.ones((5, 5), bool))


@pytest.mark.gpu
@pytest.mark.torch
def test_vs_torch_cuda(cp, rng):
    """bfloat16/float16 against PyTorch CUDA's own scaled_dot_product_attention (FlashAttention):
    both are half-precision results of the same inputs; their distance is within the sum of
    both errors against the float64 truth."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch without CUDA")
    for dt in _dtypes(cp)[1:]:
        for causal in (False, True):
            q, k, v = (cp.asarray(randn(rng, 2, 4, 200, 64)).astype(dt) for _ in range(3))
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            tq, tk, tv = (torch.from_dlpack(x) for x in (q, k, v))
            ref = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)
            assert _rel(_host(out.astype(np.float32)), ref.float().cpu().numpy()) <= 2 * HALF_TOL[dt]["out"]

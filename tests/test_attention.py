"""Fused scaled-dot-product attention: the kernel vs the float64 NumPy reference (forward, lse,
backward), finite differences, masks of every broadcast shape, causal (top-left aligned) with
L != S, GQA, empty rows, extreme logits, non-contiguous and empty inputs, and the errors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, numeric_grad, randn

import fastlayers as fl
from fastlayers import reference as R


def _qkv(rng, lead, hq, hk, L, S, E, Ev, scale=1.0):
    return (randn(rng, *lead, hq, L, E, scale=scale), randn(rng, *lead, hk, S, E, scale=scale),
            randn(rng, *lead, hk, S, Ev))


def _check(q, k, v, grads=True, rng=None, **kw):
    """Forward (out, lse) and backward of the kernel vs the float64 reference."""
    out, lse = fl.scaled_dot_product_attention(q, k, v, return_lse=True, **kw)
    rout, rlse = R.scaled_dot_product_attention(*f64(q, k, v), return_lse=True, **kw)
    assert out.flags.c_contiguous and lse.dtype == np.float32
    assert_close(out, rout, name="out")
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(rlse))
    fin = np.isfinite(rlse)
    assert_close(np.where(fin, lse, 0), np.where(fin, rlse, 0), name="lse")
    if not grads:
        return out
    g = randn(rng, *out.shape)
    got = fl.scaled_dot_product_attention_backward(g, q, k, v, out, lse, **kw)
    want = R.scaled_dot_product_attention_backward(*f64(g, q, k, v, rout, rlse), **kw)
    # grad_q and grad_k both come from dS = P * (dP - D): a cancellation whose float32 error is
    # relative to the size of the gradients, not to each one (with S = 1, dS and grad_k are 0
    # exactly and the kernel's are ~1e-7). The absolute floor is 1e-5 of the largest gradient.
    floor = 1e-5 * max(float(np.abs(w).max()) if w.size else 0.0 for w in want)
    for name, a, b, x in zip(("grad_q", "grad_k", "grad_v"), got, want, (q, k, v)):
        assert a.shape == x.shape and a.flags.c_contiguous
        assert np.isfinite(a).all(), name
        assert_close(a, b, name=name, atol_floor=max(floor, 1e-6))
    return out


# (lead, Hq, Hk, L, S, E, Ev): L=1, S=1, odd lengths, head dims 16..256 that are not multiples
# of the SIMD width, L != S, Ev != E, several leading dims, GQA.
SHAPES = [
    ((), 1, 1, 1, 1, 16, 16),
    ((2,), 3, 3, 1, 37, 17, 17),
    ((2,), 2, 2, 37, 1, 59, 59),
    ((1,), 2, 2, 130, 97, 100, 33),
    ((), 1, 1, 70, 65, 256, 256),
    ((2, 2), 2, 2, 33, 70, 16, 24),
    ((2,), 6, 2, 45, 101, 32, 20),
    ((), 4, 1, 200, 193, 64, 64),
    ((2,), 4, 2, 300, 250, 100, 72),  # several query blocks per head: the per-thread K/V head cache
]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[0] + s[1:])))
def test_vs_reference(rng, shape, causal):
    lead, hq, hk, L, S, E, Ev = shape
    q, k, v = _qkv(rng, lead, hq, hk, L, S, E, Ev)
    _check(q, k, v, rng=rng, is_causal=causal, enable_gqa=hq != hk)


def test_two_d_inputs_and_scale(rng):
    q, k, v = randn(rng, 19, 24), randn(rng, 23, 24), randn(rng, 23, 7)
    out = _check(q, k, v, rng=rng, scale=0.3)
    assert out.shape == (19, 7)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("L,S", [(100, 37), (37, 100), (96, 96), (1, 50), (50, 1)])
def test_causal_top_left(rng, L, S, causal):
    # torch's is_causal is tril(ones(L, S)): query i sees keys j <= i, whatever L and S are;
    # with L > S the first rows are fine and, with S = 1, every row still sees key 0.
    q, k, v = _qkv(rng, (2,), 2, 2, L, S, 40, 40)
    _check(q, k, v, rng=rng, is_causal=causal)


MASK_SHAPES = [(9,), (1,), (7, 9), (1, 9), (7, 1), (3, 7, 9), (3, 1, 1), (2, 1, 7, 9), (2, 3, 1, 9),
               (2, 1, 1, 9), (1, 1, 1, 1), (2, 3, 7, 9)]


@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("mshape", MASK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mask_broadcast(rng, mshape, kind):
    q, k, v = _qkv(rng, (2,), 3, 3, 7, 9, 20, 12)
    if kind == "bool":
        mask = rng.random(mshape) < 0.7
    else:
        mask = randn(rng, *mshape)
        mask[rng.random(mshape) < 0.3] = -np.inf
    _check(q, k, v, rng=rng, attn_mask=mask, grads=mshape in ((7, 9), (2, 3, 1, 9), (2, 3, 7, 9)))


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_mask_with_causal_and_gqa_large(rng, kind):
    # Larger than one tile in both directions, so masks meet the tiling, the causal diagonal
    # and grouped heads together.
    q, k, v = _qkv(rng, (1,), 4, 2, 150, 130, 33, 33)
    mshape = (1, 1, 150, 130)
    mask = rng.random(mshape) < 0.8 if kind == "bool" else np.where(rng.random(mshape) < 0.2, -np.inf,
                                                                     randn(rng, *mshape)).astype(np.float32)
    _check(q, k, v, rng=rng, attn_mask=mask, is_causal=True, enable_gqa=True)


def test_rows_with_nothing_to_attend(rng):
    q, k, v = _qkv(rng, (2,), 2, 2, 10, 20, 16, 8)
    mask = rng.random((2, 2, 10, 20)) < 0.5
    mask[0, 1, 3] = False
    mask[1, :, 7] = False
    fmask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    for m in (mask, fmask):
        out, lse = fl.scaled_dot_product_attention(q, k, v, attn_mask=m, return_lse=True)
        assert np.isfinite(out).all()
        assert (out[0, 1, 3] == 0).all() and (out[1, :, 7] == 0).all()
        assert np.isneginf(lse[0, 1, 3]) and np.isneginf(lse[1, :, 7]).all()
        g = randn(rng, *out.shape)
        gq, gk, gv = fl.scaled_dot_product_attention_backward(g, q, k, v, out, lse, attn_mask=m)
        assert (gq[0, 1, 3] == 0).all() and (gq[1, :, 7] == 0).all()
        _check(q, k, v, rng=rng, attn_mask=m)


def test_empty_keys(rng):
    q, k, v = _qkv(rng, (2,), 2, 2, 5, 0, 8, 3)
    out, lse = fl.scaled_dot_product_attention(q, k, v, return_lse=True)
    assert out.shape == (2, 2, 5, 3) and (out == 0).all() and np.isneginf(lse).all()
    g = randn(rng, *out.shape)
    gq, gk, gv = fl.scaled_dot_product_attention_backward(g, q, k, v, out, lse)
    assert (gq == 0).all() and gk.shape == k.shape and gv.shape == v.shape


def _err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max())


def test_extreme_logits(rng):
    # Scores of magnitude ~1e4: exp would overflow without the running max. A float32 score
    # that large is rounded to ~1e4 * 2^-24 (more with a length-E dot product), and that
    # absolute error in a score is a relative error in its probability, so no float32 code
    # meets 1e-4 on near-tied rows. The bound: 8 roundings of the largest score, relative to
    # the largest output / gradient (of all three gradients: grad_q of a one-hot row is ~0
    # and carries the error of dS = P * (dP - D)). The backward also recomputes P from lse,
    # itself ~1e4. What must hold exactly: everything finite, nothing overflowing.
    q, k, v = _qkv(rng, (1,), 2, 2, 40, 50, 32, 16, scale=20.0)
    cases = [((q, k, v), dict(scale=2.0)),
             ((q / 20, k / 20, v), dict(attn_mask=np.full((40, 50), 1e4, np.float32)))]  # offset of 1e4
    for (a, b, c), kw in cases:
        smax = float(np.abs(np.einsum("bhle,bhse->bhls", *f64(a, b))).max()) * kw.get("scale", 1 / np.sqrt(32))
        smax += 1e4 if "attn_mask" in kw else 0.0
        assert smax > 1e4
        tol = 8 * smax * 2.0**-24
        out, lse = fl.scaled_dot_product_attention(a, b, c, return_lse=True, **kw)
        truth, tlse = R.scaled_dot_product_attention(*f64(a, b, c), return_lse=True, **kw)
        assert np.isfinite(out).all() and np.isfinite(lse).all()
        assert _err(out, truth) <= tol * np.abs(truth).max()
        assert _err(lse, tlse) <= tol
        g = randn(rng, *out.shape)
        got = fl.scaled_dot_product_attention_backward(g, a, b, c, out, lse, **kw)
        want = R.scaled_dot_product_attention_backward(*f64(g, a, b, c, out, lse), **kw)
        gmax = max(float(np.abs(w).max()) for w in want)
        for name, x, w in zip(("grad_q", "grad_k", "grad_v"), got, want):
            assert np.isfinite(x).all(), name
            assert _err(x, w) <= tol * gmax, name


def test_non_contiguous(rng):
    # q from a (B, L, H, E) array (heads strided), k/v slices with steps, a negative-stride mask.
    base = randn(rng, 2, 31, 3, 40)
    q = base.transpose(0, 2, 1, 3)[..., :33]
    k = randn(rng, 2, 3, 60, 66)[:, :, ::2, ::2]
    v = np.asfortranarray(randn(rng, 2, 3, 30, 9))
    mask = (rng.random((31, 30)) < 0.8)[::-1]
    assert not (q.flags.c_contiguous or k.flags.c_contiguous or v.flags.c_contiguous)
    _check(q, k, v, rng=rng, attn_mask=mask, is_causal=True)


@pytest.mark.parametrize("growth", [0.0, 0.5, 25.0, -25.0])
@pytest.mark.parametrize("strided", [False, True])
def test_running_max_over_key_tiles(rng, growth, strided):
    # Several 192-key tiles with no mask: after the first tile the forward computes P in the
    # S kernel against the running max m, which it moves only when a score passes m + 8 (log2
    # units), redoing that tile in two passes. Scores ramp along the keys by `growth` * ~9
    # log2 units in all (+25: every tile passes the bound, so each is redone and O rescaled;
    # +0.5: the max grows by ~4.5, m lags behind it and nothing is rescaled; -25: the first
    # tile holds the max and later probabilities underflow). Strided k/v take the tile copy.
    # At +-25 the scores reach ~160 (without the redo, P = 2^(S - m) would overflow at +25):
    # float32 rounding of such scores is a relative error in P, so the forward is held to
    # test_extreme_logits' bound (8 roundings of the largest score) instead of 1e-4.
    L, S, E, Ev = 37, 700, 40, 24
    ramp = np.linspace(0.0, 1.0, S, dtype=np.float32)[:, None]
    q = (np.float32(abs(growth)) + randn(rng, 2, L, E) * np.float32(0.3)).astype(np.float32)
    k = (np.sign(growth) * ramp + randn(rng, 2, S, E) * np.float32(0.3)).astype(np.float32)
    v = randn(rng, 2, S, Ev)
    if strided:
        k = np.ascontiguousarray(np.repeat(k, 2, axis=-1))[..., ::2]
        v = np.asfortranarray(v)
        assert k.strides[-1] == 8 and v.strides[-1] != 4
    if abs(growth) < 1:
        _check(q, k, v, rng=rng)
        return
    smax = float(np.abs(np.einsum("ble,bse->bls", *f64(q, k))).max()) / np.sqrt(E)
    assert smax > 128
    tol = 8 * smax * 2.0**-24
    out, lse = fl.scaled_dot_product_attention(q, k, v, return_lse=True)
    truth, tlse = R.scaled_dot_product_attention(*f64(q, k, v), return_lse=True)
    assert np.isfinite(out).all() and np.isfinite(lse).all()
    assert _err(out, truth) <= tol * np.abs(truth).max()
    assert _err(lse, tlse) <= tol


@pytest.mark.parametrize("shape", [(0, 2, 5, 8), (2, 0, 5, 8), (2, 2, 0, 8)])
def test_zero_size(rng, shape):
    q = randn(rng, *shape)
    k = randn(rng, shape[0], shape[1], 6, 8)
    v = randn(rng, shape[0], shape[1], 6, 4)
    out, lse = fl.scaled_dot_product_attention(q, k, v, return_lse=True)
    assert out.shape == shape[:-1] + (4,) and lse.shape == shape[:-1]
    gq, gk, gv = fl.scaled_dot_product_attention_backward(np.zeros_like(out), q, k, v, out, lse)
    assert gq.shape == q.shape and gk.shape == k.shape and gv.shape == v.shape
    assert not gk.any() and not gv.any()


def test_backward_finite_differences(rng):
    # The float32 kernel along random directions (conftest.check_directional), with a mask,
    # causal and GQA all on.
    q, k, v = _qkv(rng, (1,), 4, 2, 13, 11, 9, 5)
    mask = randn(rng, 13, 11)
    kw = dict(attn_mask=mask, is_causal=True, enable_gqa=True)

    def fwd(q, k, v):
        return fl.scaled_dot_product_attention(q, k, v, **kw)

    def grad(g, q, k, v):
        out, lse = fl.scaled_dot_product_attention(q, k, v, return_lse=True, **kw)
        return fl.scaled_dot_product_attention_backward(g, q, k, v, out, lse, **kw)

    check_directional(fwd, [q, k, v], grad, rng)


def test_reference_backward_finite_differences(rng):
    # The reference's own backward vs float64 central differences, elementwise.
    q, k, v = f64(*_qkv(rng, (), 2, 1, 4, 5, 3, 2))
    mask = rng.random((4, 5)) < 0.8
    mask[:, 0] = True
    kw = dict(attn_mask=mask, is_causal=False, enable_gqa=True)
    g = rng.standard_normal((2, 4, 2))
    out, lse = R.scaled_dot_product_attention(q, k, v, return_lse=True, **kw)
    grads = R.scaled_dot_product_attention_backward(g, q, k, v, out, lse, **kw)
    args = [q, k, v]
    for i in range(3):
        def f(x, i=i):
            a = list(args)
            a[i] = x
            return float(np.sum(R.scaled_dot_product_attention(*a, **kw) * g))

        np.testing.assert_allclose(grads[i], numeric_grad(f, args[i]), rtol=1e-6, atol=1e-8)


@pytest.mark.torch
@pytest.mark.parametrize("case", ["plain", "causal", "bool_mask", "float_mask", "gqa"])
def test_vs_torch(rng, case):
    import torch
    import torch.nn.functional as TF

    q, k, v = _qkv(rng, (2,), 4, 4 if case != "gqa" else 2, 50, 70, 24, 24)
    kw = {}
    if case == "causal":
        kw["is_causal"] = True
    elif case == "bool_mask":
        kw["attn_mask"] = rng.random((2, 1, 50, 70)) < 0.7
        kw["attn_mask"][..., 0] = True
    elif case == "float_mask":
        kw["attn_mask"] = randn(rng, 50, 70)
    elif case == "gqa":
        kw["enable_gqa"] = True
    out = fl.scaled_dot_product_attention(q, k, v, **kw)
    tkw = {n: (torch.from_numpy(x) if isinstance(x, np.ndarray) else x) for n, x in kw.items()}
    ref = TF.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), **tkw).numpy()
    # float32 vs float32 with different summation orders: 1e-5 absolute on O(1) outputs.
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_errors(rng):
    q, k, v = _qkv(rng, (2,), 4, 4, 5, 6, 8, 3)
    sdpa = fl.scaled_dot_product_attention
    with pytest.raises(ValueError, match="same feature dimension E"):
        sdpa(q, randn(rng, 2, 4, 6, 7), v)
    with pytest.raises(ValueError, match=r"agree in every dimension but the last"):
        sdpa(q, k, randn(rng, 2, 4, 5, 3))
    with pytest.raises(ValueError, match="batch dimensions"):
        sdpa(q, randn(rng, 3, 4, 6, 8), randn(rng, 3, 4, 6, 3))
    with pytest.raises(ValueError, match="same number of dimensions"):
        sdpa(q, k[0], v[0])
    with pytest.raises(ValueError, match="does not broadcast"):
        sdpa(q, k, v, attn_mask=np.ones((5, 7), bool))
    with pytest.raises(ValueError, match="does not broadcast"):
        sdpa(q, k, v, attn_mask=np.ones((3, 5, 6), bool))
    k2, v2 = randn(rng, 2, 2, 6, 8), randn(rng, 2, 2, 6, 3)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        sdpa(q, k2, v2)
    k3, v3 = randn(rng, 2, 3, 6, 8), randn(rng, 2, 3, 6, 3)
    with pytest.raises(ValueError, match="must be a multiple"):
        sdpa(q, k3, v3, enable_gqa=True)
    with pytest.raises(ValueError, match="E >= 1"):
        sdpa(q[..., :0], k[..., :0], v)
    with pytest.raises(ValueError, match="scale: must be finite"):
        sdpa(q, k, v, scale=float("inf"))
    with pytest.raises(TypeError, match="q: dtype float64"):
        sdpa(q.astype(np.float64), k, v)
    with pytest.raises(TypeError, match="attn_mask: dtype int64"):
        sdpa(q, k, v, attn_mask=np.ones((5, 6), np.int64))
    with pytest.raises(TypeError, match="expected a numpy.ndarray"):
        sdpa(q.tolist(), k, v)
    out, lse = sdpa(q, k, v, return_lse=True)
    bwd = fl.scaled_dot_product_attention_backward
    with pytest.raises(ValueError, match="grad_out: shape"):
        bwd(out[..., :2], q, k, v, out, lse)
    with pytest.raises(ValueError, match="lse: shape"):
        bwd(out, q, k, v, out, lse[..., :3])
    with pytest.raises(TypeError, match="lse: dtype float64"):
        bwd(out, q, k, v, out, lse.astype(np.float64))


def test_causal_with_mask_combines(rng):
    # Supported (torch raises): both the causal triangle and the mask apply.
    q, k, v = _qkv(rng, (1,), 2, 2, 12, 12, 8, 8)
    mask = rng.random((12, 12)) < 0.7
    a = fl.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=True)
    b = fl.scaled_dot_product_attention(q, k, v, attn_mask=mask & np.tril(np.ones((12, 12), bool)))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

"""CUDA kernels (python/fastlayers/_cuda.py, csrc/**/*.cu) against float64 truths on host copies.

Every GPU test is marked `gpu` (conftest skips them without a GPU, CuPy and a CUDA build) and
imports CuPy inside its body, never at module import. The truths: fastlayers.reference for
GEMM and the activations; PyTorch float64 on the CPU (forward and autograd) for the families
whose references are written elsewhere (norm, loss, pool, embedding) — PyTorch's semantics
are the contract there, and it is installed on the GPU machines.

The tests at the top always run: they check the CPU-side plumbing (build flags, info(), the
errors a CuPy-like array gets on a machine without a GPU).

Tolerances: float32 kernels use conftest.assert_close (rtol 1e-4 against float64); the
half-precision GEMM is judged by the norm-wise relative error, see HALF_TOL.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import shutil
import types

import numpy as np
import pytest
from conftest import assert_close, f64, randn

import fastlayers as fl
from fastlayers import _core
from fastlayers import functional as F
from fastlayers import reference as R

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Norm-wise relative error ||out - ref|| / ||ref|| of half-precision GEMMs against float64
# products of the same (rounded) inputs. Float32 accumulation leaves only the final rounding of
# the output: unit roundoff 2^-11 = 4.9e-4 (float16) and 2^-8 = 3.9e-3 (bfloat16) per element,
# about half that in the norm; the bounds leave a factor ~4 of headroom.
HALF_TOL = {"float16": 2e-3, "bfloat16": 1e-2}


# ---- always run: CPU-side plumbing ------------------------------------------------------------
def _cmake_cuda_setting():
    cache = ROOT / "build" / "dev" / "CMakeCache.txt"
    if cache.exists():
        for line in cache.read_text(errors="replace").splitlines():
            if line.startswith("FASTLAYERS_CUDA:"):
                return line.split("=", 1)[1].strip()
    return None


def test_cuda_built_when_nvcc_is_present():
    if shutil.which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"):
        pytest.skip("no nvcc on this machine: a CPU-only build is expected")
    if _cmake_cuda_setting() == "OFF":
        pytest.skip("this checkout was configured with -DFASTLAYERS_CUDA=OFF")
    assert _core.cuda_built is True


def test_cuda_bindings_exist_when_built():
    names = [
        "cuda_unary", "cuda_unary_backward", "cuda_gemm", "cuda_softmax", "cuda_softmax_backward",
        "cuda_layer_norm", "cuda_layer_norm_backward", "cuda_batch_norm", "cuda_batch_norm_backward",
        "cuda_point_loss", "cuda_point_loss_backward", "cuda_cross_entropy", "cuda_cross_entropy_backward",
        "cuda_max_pool2d", "cuda_max_pool2d_backward", "cuda_avg_pool2d", "cuda_avg_pool2d_backward",
        "cuda_adaptive_avg_pool2d", "cuda_adaptive_avg_pool2d_backward", "cuda_adaptive_max_pool2d",
        "cuda_upsample_nearest2d", "cuda_upsample_nearest2d_backward", "cuda_dropout", "cuda_dropout_backward",
        "cuda_embedding", "cuda_embedding_backward",
    ]
    present = [n for n in names if hasattr(_core, n)]
    if _core.cuda_built:
        assert present == names
    else:
        assert present == []


def test_info_reports_cuda_state():
    info = fl.info()
    assert info["cuda_built"] is bool(_core.cuda_built)
    assert info["cuda_available"] is (_core.cuda_device_count() > 0)
    assert len(info["cuda_devices"]) == _core.cuda_device_count()
    if not info["cuda_available"]:
        assert info["cuda_devices"] == []


def test_cuda_module_imports_without_cupy():
    from fastlayers import _cuda

    for name in _cuda.__all__:
        assert callable(getattr(_cuda, name)), name


class _FakeCupyArray:
    """Looks like a cupy.ndarray to fastlayers' backend check (module name and the CUDA array
    interface) without CuPy or a GPU."""

    __module__ = "cupy._core.core"

    def __init__(self, shape=(4,), dtype="float32"):
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.size = int(np.prod(shape))
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f4", "data": (0, False), "version": 3}


class _OtherDeviceArray:
    __cuda_array_interface__ = {"shape": (4,), "typestr": "<f4", "data": (0, False), "version": 3}


def test_cupy_array_without_gpu_is_runtime_error():
    if _core.cuda_built and _core.cuda_device_count() > 0:
        pytest.skip("a GPU is present: the CuPy path runs instead")
    expected = "no CUDA GPU" if _core.cuda_built else "no CUDA kernels"
    with pytest.raises(RuntimeError, match=expected):
        fl.relu(_FakeCupyArray())
    with pytest.raises(RuntimeError, match=expected):
        fl.gelu_backward(_FakeCupyArray(), _FakeCupyArray())
    from fastlayers import _cuda

    with pytest.raises(RuntimeError, match=expected):
        _cuda.gemm(_FakeCupyArray((2, 2)), _FakeCupyArray((2, 2)))


def test_foreign_cuda_array_is_type_error():
    with pytest.raises(TypeError, match="expected a numpy.ndarray"):
        fl.relu(_OtherDeviceArray())


def test_mixed_numpy_and_cupy_is_type_error():
    with pytest.raises(TypeError, match="different kinds"):
        fl.relu_backward(np.ones(4, np.float32), _FakeCupyArray())


# ---- GPU helpers ------------------------------------------------------------------------------
@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if os.environ.get("FASTLAYERS_NO_CUPY_POOL") == "1":
        # Under compute-sanitizer: every array its own cudaMalloc, so an out-of-bounds access
        # leaves its allocation instead of landing silently inside a pooled chunk.
        cupy.cuda.set_allocator(None)
    else:
        # Poison the memory pool: outputs come from cupy.empty, which reuses freed blocks, so an
        # element a kernel forgets to write reads back as NaN instead of a plausible old value.
        junk = cupy.full(1 << 24, np.nan, dtype=np.float32)
        del junk
    yield cupy
    cupy.cuda.get_current_stream().synchronize()


def _torch():
    return pytest.importorskip("torch")


def _host(a):
    import cupy

    return cupy.asnumpy(a)


def _rel_err(out, ref):
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    den = np.linalg.norm(ref.ravel()) or 1.0
    return float(np.linalg.norm((out - ref).ravel()) / den)


def _half_dtypes(cp):
    out = ["float16"]
    try:
        cp.zeros(1, dtype=np.float32).astype("bfloat16")
        out.append("bfloat16")
    except Exception:  # noqa: BLE001 - this CuPy has no bfloat16
        pass
    return out


def _t64(a):
    """A float64 CPU torch tensor of a host or device array, requiring grad."""
    torch = _torch()
    return torch.tensor(np.asarray(_host(a) if not isinstance(a, np.ndarray) else a, np.float64), requires_grad=True)


# ---- GEMM -------------------------------------------------------------------------------------
GEMM_SHAPES = [  # (m, n, k): 1s, odd, across the 128x128 tile and the k-tiles of 8 / 32
    (1, 1, 1), (1, 17, 3), (17, 1, 3), (7, 13, 5), (64, 64, 64), (129, 65, 257), (128, 128, 8),
    (300, 200, 17), (97, 255, 129), (256, 384, 96),
]


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_f32(cp, rng, m, n, k, trans_a, trans_b):
    a = randn(rng, *((k, m) if trans_a else (m, k)))
    b = randn(rng, *((n, k) if trans_b else (k, n)))
    out = F.gemm(cp.asarray(a), cp.asarray(b), trans_a=trans_a, trans_b=trans_b)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (m, n)
    assert_close(_host(out), R.gemm(*f64(a, b), trans_a=trans_a, trans_b=trans_b))


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (5, 0, 3), (5, 3, 0)])
def test_gemm_empty(cp, rng, m, n, k):
    out = F.gemm(cp.asarray(randn(rng, m, k)), cp.asarray(randn(rng, k, n)))
    assert out.shape == (m, n)
    assert np.all(_host(out) == 0)


@pytest.mark.gpu
@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (0.0, 3.0)])
def test_gemm_alpha_beta_broadcast_c(cp, rng, alpha, beta):
    a, b, c = randn(rng, 33, 20), randn(rng, 20, 45), randn(rng, 45)
    out = F.gemm(cp.asarray(a), cp.asarray(b), cp.asarray(c), alpha=alpha, beta=beta)
    assert_close(_host(out), R.gemm(*f64(a, b, c), alpha=alpha, beta=beta))


@pytest.mark.gpu
def test_gemm_strided_views(cp, rng):
    a = randn(rng, 90, 70)
    b = randn(rng, 60, 80)
    av, bv = a[::2, 3:50], b[5:52, ::3]  # odd leading dimensions, unit and non-unit strides
    out = F.gemm(cp.asarray(a)[::2, 3:50], cp.asarray(b)[5:52, ::3])
    assert_close(_host(out), f64(av) @ f64(bv))
    out = F.gemm(cp.asarray(a)[1:48, 2:62].T, cp.asarray(b)[:60, 1:].T, trans_a=True, trans_b=True)
    assert_close(_host(out), f64(a[1:48, 2:62]) @ f64(b[:60, 1:]))


@pytest.mark.gpu
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (33, 47, 29), (64, 64, 64), (100, 72, 88), (257, 129, 200),
                                   (256, 512, 128), (130, 260, 1000)])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_half(cp, rng, m, n, k, trans_a, trans_b):
    for dt in _half_dtypes(cp):
        a = cp.asarray(randn(rng, *((k, m) if trans_a else (m, k)))).astype(dt)
        b = cp.asarray(randn(rng, *((n, k) if trans_b else (k, n)))).astype(dt)
        out = F.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
        assert str(out.dtype) == dt and out.shape == (m, n)
        a64, b64 = (_host(v.astype(np.float32)).astype(np.float64) for v in (a, b))
        ref = (a64.T if trans_a else a64) @ (b64.T if trans_b else b64)
        got = _host(out.astype(np.float32))
        assert np.isfinite(got).all(), dt
        assert _rel_err(got, ref) <= HALF_TOL[dt], (dt, _rel_err(got, ref))


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", [0, 1])
def test_gemm_half_both_tile_configs(cp, rng, cfg):
    """Both tensor-core tile shapes (the benchmark picks one with FASTLAYERS_CUDA_GEMM_CFG)."""
    from fastlayers import _cuda

    m, n, k = 300, 520, 264
    for dt in _half_dtypes(cp):
        a = cp.asarray(randn(rng, m, k)).astype(dt)
        b = cp.asarray(randn(rng, k, n)).astype(dt)
        out = cp.empty((m, n), dtype=dt)
        ptr = _cuda._ptr  # arr.data.ptr
        _core.cuda_gemm({"float16": 1, "bfloat16": 2}[dt], m, n, k, ptr(a), k, False, ptr(b), n, False,
                        ptr(out), n, 1.0, 0.0, 0, 0, 0, 1, 0, 0, 0, cp.cuda.get_current_stream().ptr, cfg)
        ref = _host(a.astype(np.float32)).astype(np.float64) @ _host(b.astype(np.float32)).astype(np.float64)
        assert _rel_err(_host(out.astype(np.float32)), ref) <= HALF_TOL[dt]


@pytest.mark.gpu
@pytest.mark.parametrize("ashape,bshape", [((3, 17, 33), (3, 33, 9)), ((2, 1, 5, 7), (3, 7, 4)), ((5, 7), (4, 7, 3)),
                                           ((4, 6, 8), (8, 5)), ((7,), (7,)), ((7,), (2, 7, 3)), ((2, 3, 7), (7,))])
def test_matmul(cp, rng, ashape, bshape):
    a, b = randn(rng, *ashape), randn(rng, *bshape)
    out = F.matmul(cp.asarray(a), cp.asarray(b))
    ref = R.matmul(*f64(a, b))
    assert out.shape == np.shape(ref)
    assert_close(_host(out), ref)
    g = randn(rng, *np.shape(ref))
    ga, gb = F.matmul_backward(cp.asarray(g), cp.asarray(a), cp.asarray(b))
    ra, rb = R.matmul_backward(*f64(g, a, b))
    assert_close(_host(ga), ra, name="grad_a")
    assert_close(_host(gb), rb, name="grad_b")


@pytest.mark.gpu
def test_matmul_half_batched(cp, rng):
    for dt in _half_dtypes(cp):
        a = cp.asarray(randn(rng, 4, 65, 40)).astype(dt)
        b = cp.asarray(randn(rng, 4, 40, 72)).astype(dt)
        out = F.matmul(a, b)
        ref = _host(a.astype(np.float32)).astype(np.float64) @ _host(b.astype(np.float32)).astype(np.float64)
        assert _rel_err(_host(out.astype(np.float32)), ref) <= HALF_TOL[dt]


@pytest.mark.gpu
@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh", "tanh", "sigmoid"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_and_backward(cp, rng, activation, with_bias):
    x, w = randn(rng, 3, 37, 50), randn(rng, 29, 50, scale=0.3)
    bias = randn(rng, 29) if with_bias else None
    cb = None if bias is None else cp.asarray(bias)
    y = F.linear(cp.asarray(x), cp.asarray(w), cb, activation)
    assert_close(_host(y), R.linear(*f64(x, w, bias), activation))
    g = randn(rng, 3, 37, 29)
    grads = F.linear_backward(cp.asarray(g), cp.asarray(x), cp.asarray(w), cb, activation)
    refs = R.linear_backward(*f64(g, x, w, bias), activation)
    for got, ref, name in zip(grads, refs, ("grad_x", "grad_weight", "grad_bias")):
        if ref is None:
            assert got is None
        else:
            assert_close(_host(got), ref, name=name)
    if activation in ("relu", "tanh", "sigmoid"):  # the y= shortcut gives the same gradients
        grads_y = F.linear_backward(cp.asarray(g), cp.asarray(x), cp.asarray(w), cb, activation, y=y)
        for got, ref in zip(grads_y, refs):
            if ref is not None:
                assert_close(_host(got), ref)


@pytest.mark.gpu
def test_linear_half(cp, rng):
    for dt in _half_dtypes(cp):
        x = cp.asarray(randn(rng, 70, 96)).astype(dt)
        w = cp.asarray(randn(rng, 48, 96, scale=0.2)).astype(dt)
        b = cp.asarray(randn(rng, 48)).astype(dt)
        y = F.linear(x, w, b, "relu")
        assert str(y.dtype) == dt
        f = [_host(v.astype(np.float32)).astype(np.float64) for v in (x, w, b)]
        ref = np.maximum(f[0] @ f[1].T + f[2], 0)
        assert _rel_err(_host(y.astype(np.float32)), ref) <= HALF_TOL[dt]


@pytest.mark.gpu
def test_gemm_backward(cp, rng):
    a, b, c, g = randn(rng, 20, 13), randn(rng, 31, 20), randn(rng, 1, 31), randn(rng, 13, 31)
    got = F.gemm_backward(cp.asarray(g), cp.asarray(a), cp.asarray(b), cp.asarray(c), alpha=0.5, beta=2.0,
                              trans_a=True, trans_b=True)
    ref = R.gemm_backward(*f64(g, a, b, c), alpha=0.5, beta=2.0, trans_a=True, trans_b=True)
    for x, r in zip(got, ref):
        assert_close(_host(x), r)


# ---- elementwise, softmax ---------------------------------------------------------------------
ACTS = [("relu", {}), ("leaky_relu", {"negative_slope": 0.2}), ("sigmoid", {}), ("tanh", {}),
        ("gelu", {"approximate": "none"}), ("gelu", {"approximate": "tanh"})]


@pytest.mark.gpu
@pytest.mark.parametrize("name,kw", ACTS)
@pytest.mark.parametrize("n", [1, 3, 1027, (1 << 18) + 3])
def test_activations(cp, rng, name, kw, n):
    x = randn(rng, n, scale=3.0)
    g = randn(rng, n)
    for offset in (0, 1):  # offset 1: a view 4 bytes off alignment takes the scalar path
        xs, gs = x[offset:], g[offset:]
        dx_ = cp.asarray(x)[offset:]
        dg_ = cp.asarray(g)[offset:]
        y = getattr(fl, name)(dx_, **kw)
        assert_close(_host(y), getattr(R, name)(f64(xs), **kw), name=f"{name} forward")
        dx = getattr(fl, name + "_backward")(dg_, dx_, **kw)
        assert_close(_host(dx), getattr(R, name + "_backward")(*f64(gs, xs), **kw), name=f"{name} backward")


@pytest.mark.gpu
def test_activation_nan_and_extremes(cp):
    x = np.array([np.nan, -np.inf, np.inf, -1e30, 1e30, 0.0, -0.0, 1e-30, -20.0, 20.0], np.float32)
    for name in ("relu", "sigmoid", "tanh", "gelu"):
        if name == "gelu":  # -inf * Phi(-inf) is 0 * inf: leave the infinities out
            x = x[np.isfinite(x) | np.isnan(x)]
        got = _host(getattr(fl, name)(cp.asarray(x)))
        with np.errstate(over="ignore", invalid="ignore"):  # the reference's exp(1e30)
            ref = getattr(R, name)(x.astype(np.float64))
        # rtol 1e-5, not 1e-6: the build's fast exp (ex2.approx) is good to 2 + 1.16|x| ulp, ~25 ulp
        # = 1.5e-6 relative at x = -20 (sigmoid's e^x / (1 + e^x) branch)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-30, equal_nan=True, err_msg=name)


@pytest.mark.gpu
@pytest.mark.parametrize("shape,axis", [((5, 1), -1), ((4, 7), -1), ((3, 1000), -1), ((2, 3000), -1),
                                        ((6, 33, 5), 1), ((2, 3, 4, 5), 0), ((0, 5), -1), ((5,), 0)])
@pytest.mark.parametrize("log", [False, True])
def test_softmax(cp, rng, shape, axis, log):
    x = randn(rng, *shape, scale=4.0)
    g = randn(rng, *shape)
    f = F.log_softmax if log else F.softmax
    fb = F.log_softmax_backward if log else F.softmax_backward
    rf = R.log_softmax if log else R.softmax
    rb = R.log_softmax_backward if log else R.softmax_backward
    y = f(cp.asarray(x), axis)
    assert_close(_host(y), rf(f64(x), axis))
    dx = fb(cp.asarray(g), cp.asarray(x), axis)
    assert_close(_host(dx), rb(*f64(g, x), axis))


@pytest.mark.gpu
def test_softmax_large_and_masked_inputs(cp):
    x = np.array([[1e4, -1e4, 0.0, 3e4], [-np.inf, 0.0, 1.0, -np.inf]], np.float32)
    y = _host(F.softmax(cp.asarray(x)))
    assert np.isfinite(y).all()
    assert_close(y, R.softmax(x.astype(np.float64)))


# ---- normalisation ----------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("shape,ns", [((4, 10), (10,)), ((3, 5, 7), (5, 7)), ((2, 1500), (1500,)), ((9, 1), (1,)),
                                      ((0, 8), (8,))])
@pytest.mark.parametrize("affine", [False, True])
def test_layer_norm(cp, rng, shape, ns, affine):
    torch = _torch()
    x = randn(rng, *shape, scale=2.0) + 3.0
    w = randn(rng, *ns) if affine else None
    b = randn(rng, *ns) if affine else None
    g = randn(rng, *shape)
    dev = [None if v is None else cp.asarray(v) for v in (x, w, b, g)]
    y = F.layer_norm(dev[0], ns, dev[1], dev[2], 1e-5)
    tx, tw, tb = _t64(x), None if w is None else _t64(w), None if b is None else _t64(b)
    ty = torch.nn.functional.layer_norm(tx, ns, tw, tb, 1e-5)
    assert_close(_host(y), ty.detach().numpy())
    dx, dw, db = F.layer_norm_backward(dev[3], dev[0], ns, dev[1], dev[2], 1e-5)
    if x.size:
        ty.backward(torch.tensor(g, dtype=torch.float64))
        assert_close(_host(dx), tx.grad.numpy(), name="grad_x")
        if affine:
            assert_close(_host(dw), tw.grad.numpy(), name="grad_weight")
            assert_close(_host(db), tb.grad.numpy(), name="grad_bias")
    assert (dw is None) == (not affine) and (db is None) == (not affine)


@pytest.mark.gpu
# (two values per channel would make grad_x exactly 0 in exact arithmetic, xhat = +-1, leaving
# only float32 noise to compare: three is the smallest well-conditioned case)
@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 7), (3, 16, 1, 1), (64, 3, 9, 9)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(cp, rng, shape, training):
    torch = _torch()
    c = shape[1]
    x = randn(rng, *shape, scale=2.0) + 1.5
    w, b = randn(rng, c), randn(rng, c)
    rm, rv = randn(rng, c), np.abs(randn(rng, c)) + 0.5
    g = randn(rng, *shape)
    trm, trv = torch.tensor(rm, dtype=torch.float64), torch.tensor(rv, dtype=torch.float64)
    drm, drv = cp.asarray(rm.copy()), cp.asarray(rv.copy())
    y, (mean, invstd) = F.batch_norm(cp.asarray(x), drm, drv, cp.asarray(w), cp.asarray(b), training, 0.1, 1e-5,
                                       return_stats=True)
    tx, tw, tb = _t64(x), _t64(w), _t64(b)
    ty = torch.nn.functional.batch_norm(tx, trm, trv, tw, tb, training, 0.1, 1e-5)
    assert_close(_host(y), ty.detach().numpy())
    assert_close(_host(drm), trm.numpy(), name="running_mean")
    assert_close(_host(drv), trv.numpy(), name="running_var")
    ty.backward(torch.tensor(g, dtype=torch.float64))
    dx, dw, db = F.batch_norm_backward(cp.asarray(g), cp.asarray(x), cp.asarray(w), mean, invstd, training)
    assert_close(_host(dx), tx.grad.numpy(), name="grad_x")
    assert_close(_host(dw), tw.grad.numpy(), name="grad_weight")
    assert_close(_host(db), tb.grad.numpy(), name="grad_bias")


@pytest.mark.gpu
def test_batch_norm_one_value_per_channel_is_value_error(cp):
    x = cp.ones((1, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(x, cp.zeros(4, np.float32), cp.ones(4, np.float32), training=True)


# ---- dropout, embedding -----------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("p", [0.0, 0.3, 0.9, 1.0])
def test_dropout(cp, rng, p):
    n = (1 << 20) + 5
    x = randn(rng, n)
    y, mask = F.dropout(cp.asarray(x), p, True, seed=1234)
    yh = _host(y)
    mh = _host(mask)
    assert mh.dtype == np.bool_ and mh.shape == x.shape
    kept = mh.mean()
    # Binomial(n, 1-p): standard deviation sqrt(p(1-p)/n) < 5e-4; 6 sigma
    assert abs(kept - (1.0 - p)) < 3e-3
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    np.testing.assert_allclose(yh, np.where(mh, x * np.float32(scale), 0.0), rtol=1e-6, atol=0)
    y2, m2 = F.dropout(cp.asarray(x), p, True, seed=1234)
    np.testing.assert_array_equal(_host(m2), mh)  # same seed, same mask
    g = randn(rng, n)
    dx = F.dropout_backward(cp.asarray(g), mask, p, True)
    np.testing.assert_allclose(_host(dx), np.where(mh, g * np.float32(scale), 0.0), rtol=1e-6, atol=0)


@pytest.mark.gpu
def test_dropout_eval_is_identity(cp, rng):
    x = randn(rng, 100)
    y, mask = F.dropout(cp.asarray(x), 0.5, training=False)
    assert mask is None
    np.testing.assert_array_equal(_host(y), x)


@pytest.mark.gpu
@pytest.mark.parametrize("idx_shape,num,dim", [((7,), 10, 3), ((4, 5), 50, 64), ((0,), 5, 4), ((300,), 3, 129)])
@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32, np.uint8])
def test_embedding(cp, rng, idx_shape, num, dim, idx_dtype):
    w = randn(rng, num, dim)
    idx = rng.integers(0, num, size=idx_shape).astype(idx_dtype)
    y = F.embedding(cp.asarray(idx), cp.asarray(w))
    np.testing.assert_array_equal(_host(y), w[idx])
    g = randn(rng, *idx_shape, dim)
    (dw,) = F.embedding_backward(cp.asarray(g), cp.asarray(idx), cp.asarray(w))
    ref = np.zeros((num, dim))
    np.add.at(ref, idx.astype(np.int64).reshape(-1), g.reshape(-1, dim).astype(np.float64))
    assert_close(_host(dw), ref)


@pytest.mark.gpu
@pytest.mark.parametrize("bad", [-1, 10])
def test_embedding_out_of_range_is_value_error(cp, bad):
    with pytest.raises(ValueError, match="out of range"):
        F.embedding(cp.asarray(np.array([0, bad])), cp.zeros((10, 3), np.float32))


# ---- losses -----------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(1,), (7, 3), (2, 3, 50, 41)])
def test_point_losses(cp, rng, name, reduction, shape):
    torch = _torch()
    if name == "binary_cross_entropy":
        x = rng.uniform(0.02, 0.98, size=shape).astype(np.float32)
        t = rng.uniform(0, 1, size=shape).astype(np.float32)
    else:
        x, t = randn(rng, *shape, scale=2.0), randn(rng, *shape) if name == "mse_loss" else \
            rng.uniform(0, 1, size=shape).astype(np.float32)
    out = getattr(F, name)(cp.asarray(x), cp.asarray(t), reduction)
    tx = _t64(x)
    ty = getattr(torch.nn.functional, name)(tx, torch.tensor(t, dtype=torch.float64), reduction=reduction)
    assert_close(_host(out), ty.detach().numpy())
    g = randn(rng, *shape) if reduction == "none" else np.float32(0.7)
    dx = getattr(F, name + "_backward")(cp.asarray(g) if reduction == "none" else 0.7, cp.asarray(x),
                                               cp.asarray(t), reduction)
    ty.backward(torch.tensor(np.asarray(g, np.float64)))
    assert_close(_host(dx), tx.grad.numpy(), name="grad_input")


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(5, 3), (64, 1000), (1, 1), (4, 7, 3, 5), (2, 11, 17)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing,ignore", [(0.0, -100), (0.1, -100), (0.0, 1), (0.2, 0)])
def test_cross_entropy(cp, rng, shape, reduction, smoothing, ignore):
    torch = _torch()
    n, c = shape[:2]
    logits = randn(rng, *shape, scale=3.0)
    target = rng.integers(0, c, size=(n,) + shape[2:])
    if ignore == -100 and target.size > 1:
        target.reshape(-1)[0] = -100  # one ignored position with the default ignore_index
    out = F.cross_entropy(cp.asarray(logits), cp.asarray(target), reduction, smoothing, ignore)
    tl = _t64(logits)
    ty = torch.nn.functional.cross_entropy(tl, torch.tensor(target), reduction=reduction, label_smoothing=smoothing,
                                           ignore_index=ignore)
    ref = ty.detach().numpy()
    got = _host(out)
    if np.isnan(ref).any():  # every target ignored: PyTorch's mean is 0/0
        assert np.isnan(got).all()
        return
    assert_close(got, ref)
    g = randn(rng, *target.shape) if reduction == "none" else np.float32(1.3)
    dx = F.cross_entropy_backward(cp.asarray(g) if reduction == "none" else 1.3, cp.asarray(logits),
                                         cp.asarray(target), reduction, smoothing, ignore)
    ty.backward(torch.tensor(np.asarray(g, np.float64)))
    assert_close(_host(dx), tl.grad.numpy(), name="grad_logits")


@pytest.mark.gpu
def test_cross_entropy_bad_target_is_value_error(cp):
    with pytest.raises(ValueError, match="out of range"):
        F.cross_entropy(cp.zeros((2, 3), np.float32), cp.asarray(np.array([0, 3])))


# ---- pooling ----------------------------------------------------------------------------------
POOL_CASES = [  # (shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 3, 8, 8), 2, None, 0, 1, False), ((1, 2, 9, 7), 3, 2, 1, 1, False), ((1, 2, 9, 7), 3, 2, 1, 1, True),
    ((2, 1, 10, 11), (3, 2), (2, 1), (1, 0), (2, 1), False), ((1, 1, 5, 5), 5, 1, 2, 1, True),
    ((3, 4, 13, 13), 3, 3, 0, 1, True), ((2, 2, 1, 1), 1, 1, 0, 1, False), ((1, 3, 31, 17), (4, 3), (3, 2), 1, 1, True),
]


@pytest.mark.gpu
@pytest.mark.parametrize("shape,k,s,p,d,ceil", POOL_CASES)
def test_max_pool2d(cp, rng, shape, k, s, p, d, ceil):
    torch = _torch()
    x = randn(rng, *shape)
    y, idx = F.max_pool2d(cp.asarray(x), k, s, p, d, ceil, return_indices=True)
    tx = _t64(x)
    ty, tidx = torch.nn.functional.max_pool2d(tx, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(_host(y), ty.detach().numpy().astype(np.float32))
    np.testing.assert_array_equal(_host(idx), tidx.numpy())
    g = randn(rng, *ty.shape)
    dx = F.max_pool2d_backward(cp.asarray(g), cp.asarray(x), idx, k, s, p, d, ceil)
    ty.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(_host(dx), tx.grad.numpy())


@pytest.mark.gpu
@pytest.mark.parametrize("shape,k,s,p,d,ceil", [c for c in POOL_CASES if c[4] == 1])
@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool2d(cp, rng, shape, k, s, p, d, ceil, include_pad):
    torch = _torch()
    x = randn(rng, *shape)
    y = F.avg_pool2d(cp.asarray(x), k, s, p, ceil, include_pad)
    tx = _t64(x)
    ty = torch.nn.functional.avg_pool2d(tx, k, s, p, ceil, include_pad)
    assert_close(_host(y), ty.detach().numpy())
    g = randn(rng, *ty.shape)
    dx = F.avg_pool2d_backward(cp.asarray(g), cp.asarray(x), k, s, p, ceil, include_pad)
    ty.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(_host(dx), tx.grad.numpy())


@pytest.mark.gpu
@pytest.mark.parametrize("shape,out", [((2, 3, 8, 8), 1), ((1, 2, 10, 7), (3, 4)), ((2, 2, 5, 5), 7),
                                       ((1, 1, 13, 9), (5, 2))])
def test_adaptive_pools(cp, rng, shape, out):
    torch = _torch()
    x = randn(rng, *shape)
    tx = _t64(x)
    y = F.adaptive_avg_pool2d(cp.asarray(x), out)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, out)
    assert_close(_host(y), ty.detach().numpy())
    g = randn(rng, *ty.shape)
    dx = F.adaptive_avg_pool2d_backward(cp.asarray(g), cp.asarray(x), out)
    ty.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(_host(dx), tx.grad.numpy(), name="adaptive_avg grad")

    tx2 = _t64(x)
    ym, idx = F.adaptive_max_pool2d(cp.asarray(x), out, return_indices=True)
    tym, tidx = torch.nn.functional.adaptive_max_pool2d(tx2, out, return_indices=True)
    np.testing.assert_array_equal(_host(ym), tym.detach().numpy().astype(np.float32))
    np.testing.assert_array_equal(_host(idx), tidx.numpy())
    dxm = F.adaptive_max_pool2d_backward(cp.asarray(g), cp.asarray(x), idx, out)
    tym.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(_host(dxm), tx2.grad.numpy(), name="adaptive_max grad")


@pytest.mark.gpu
@pytest.mark.parametrize("shape,scale", [((2, 3, 4, 5), 2), ((1, 1, 3, 3), (1, 3)), ((2, 2, 7, 1), (3, 2))])
def test_upsample_nearest2d(cp, rng, shape, scale):
    torch = _torch()
    x = randn(rng, *shape)
    y = F.upsample_nearest2d(cp.asarray(x), scale)
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    np.testing.assert_array_equal(_host(y), np.repeat(np.repeat(x, sh, axis=2), sw, axis=3))
    g = randn(rng, *y.shape)
    dx = F.upsample_nearest2d_backward(cp.asarray(g), cp.asarray(x), scale)
    tx = _t64(x)
    ty = torch.nn.functional.interpolate(tx, scale_factor=(float(sh), float(sw)), mode="nearest")
    ty.backward(torch.tensor(g, dtype=torch.float64))
    assert_close(_host(dx), tx.grad.numpy())


@pytest.mark.gpu
def test_pool_nan_propagates(cp):
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    y = _host(F.max_pool2d(cp.asarray(x), 2))
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 0, 1, 1])


@pytest.mark.gpu
def test_kernels_run_on_the_current_stream(cp, rng):
    """Work is queued on CuPy's current stream: results read after that stream's sync."""
    s = cp.cuda.Stream(non_blocking=True)
    a, b = randn(rng, 200, 300), randn(rng, 300, 100)
    with s:
        da, db = cp.asarray(a), cp.asarray(b)
        out = F.gemm(da, db)
        y = fl.relu(out)
    s.synchronize()
    assert_close(_host(y), np.maximum(f64(a) @ f64(b), 0))


# ---- validation: a CuPy input gets the very error a NumPy input gets -------------------------
def _error_of(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the point is to compare whatever is raised
        return type(e), str(e)
    return None, None


# (id, call): call(a, i) makes the bad call; a(shape, dtype="float32") builds a float array and
# i(values) an int64 array on the device under test (NumPy or CuPy).
VALIDATION_CASES = [
    ("gemm-float64", lambda a, i: F.gemm(a((2, 3), "float64"), a((3, 2)))),
    ("gemm-int", lambda a, i: F.gemm(a((2, 3)), i([[1, 2], [3, 4], [5, 6]]))),
    ("gemm-rank", lambda a, i: F.gemm(a((2, 3, 1)), a((3, 2)))),
    ("gemm-inner", lambda a, i: F.gemm(a((2, 3)), a((4, 2)))),
    ("gemm-inner-trans", lambda a, i: F.gemm(a((2, 3)), a((4, 2)), trans_a=True)),
    ("gemm-c-broadcast", lambda a, i: F.gemm(a((2, 3)), a((3, 4)), a((3,)), beta=1.0)),
    ("gemm-c-rank", lambda a, i: F.gemm(a((2, 3)), a((3, 4)), a((1, 2, 4)), beta=1.0)),
    ("gemm-c-dtype", lambda a, i: F.gemm(a((2, 3)), a((3, 4)), a((4,), "float64"), beta=1.0)),
    ("gemm_backward-grad", lambda a, i: F.gemm_backward(a((3, 3)), a((2, 3)), a((3, 4)))),
    ("gemm_backward-rank", lambda a, i: F.gemm_backward(a((2,)), a((2, 3)), a((3, 4)))),
    ("matmul-inner", lambda a, i: F.matmul(a((2, 3)), a((4, 5)))),
    ("matmul-batch", lambda a, i: F.matmul(a((2, 2, 3)), a((3, 3, 4)))),
    ("matmul-0d", lambda a, i: F.matmul(a(()), a((3,)))),
    ("matmul-float64", lambda a, i: F.matmul(a((2, 3)), a((3, 4), "float64"))),
    ("matmul_backward-grad", lambda a, i: F.matmul_backward(a((2, 5)), a((2, 3)), a((3, 4)))),
    ("linear-features", lambda a, i: F.linear(a((2, 3)), a((4, 5)))),
    ("linear-weight-rank", lambda a, i: F.linear(a((2, 3)), a((3,)))),
    ("linear-bias", lambda a, i: F.linear(a((2, 3)), a((4, 3)), a((5,)))),
    ("linear-activation", lambda a, i: F.linear(a((2, 3)), a((4, 3)), None, "swish")),
    ("linear-int", lambda a, i: F.linear(i([[1, 2, 3]]), a((4, 3)))),
    ("linear_backward-grad", lambda a, i: F.linear_backward(a((2, 5)), a((2, 3)), a((4, 3)))),
    ("linear_backward-y", lambda a, i: F.linear_backward(a((2, 4)), a((2, 3)), a((4, 3)), None, "relu",
                                                         y=a((2, 5)))),
    ("relu-float16", lambda a, i: F.relu(a((4,), "float16"))),
    ("relu-float64", lambda a, i: F.relu(a((4,), "float64"))),
    ("relu_backward-shape", lambda a, i: F.relu_backward(a((4,)), a((5,)))),
    ("gelu-approximate", lambda a, i: F.gelu(a((4,)), approximate="fast")),
    ("softmax-axis", lambda a, i: F.softmax(a((2, 3)), axis=2)),
    ("softmax-axis-type", lambda a, i: F.softmax(a((2, 3)), axis=1.5)),
    ("softmax-float16", lambda a, i: F.softmax(a((2, 3), "float16"))),
    ("log_softmax-float64", lambda a, i: F.log_softmax(a((2, 3), "float64"))),
    ("softmax_backward-shape", lambda a, i: F.softmax_backward(a((2, 4)), a((2, 3)))),
    ("softmax_backward-y", lambda a, i: F.softmax_backward(a((2, 3)), a((2, 3)), y=a((3, 2)))),
    ("log_softmax_backward-axis", lambda a, i: F.log_softmax_backward(a((2, 3)), a((2, 3)), axis=-3)),
    ("layer_norm-shape", lambda a, i: F.layer_norm(a((2, 3)), (4,))),
    ("layer_norm-shape-type", lambda a, i: F.layer_norm(a((2, 3)), 1.5)),
    ("layer_norm-weight", lambda a, i: F.layer_norm(a((2, 3)), 3, a((4,)))),
    ("layer_norm-eps", lambda a, i: F.layer_norm(a((2, 3)), 3, eps=-1.0)),
    ("layer_norm-eps-type", lambda a, i: F.layer_norm(a((2, 3)), 3, eps="small")),
    ("layer_norm-float64", lambda a, i: F.layer_norm(a((2, 3), "float64"), 3)),
    ("layer_norm_backward-grad", lambda a, i: F.layer_norm_backward(a((2, 4)), a((2, 3)), 3)),
    ("layer_norm_backward-mean-only", lambda a, i: F.layer_norm_backward(a((2, 3)), a((2, 3)), 3, mean=a((2,)))),
    ("layer_norm_backward-rstd-shape", lambda a, i: F.layer_norm_backward(a((2, 3)), a((2, 3)), 3, mean=a((2,)),
                                                                          rstd=a((3,)))),
    ("batch_norm-rank", lambda a, i: F.batch_norm(a((4,)), a((4,)), a((4,)))),
    ("batch_norm-weight", lambda a, i: F.batch_norm(a((2, 3)), a((3,)), a((3,)), a((4,)))),
    ("batch_norm-running-shape", lambda a, i: F.batch_norm(a((2, 3)), a((2,)), a((3,)))),
    ("batch_norm-eval-no-stats", lambda a, i: F.batch_norm(a((2, 3)), None, None)),
    ("batch_norm-one-value", lambda a, i: F.batch_norm(a((1, 3)), None, None, training=True)),
    ("batch_norm-momentum", lambda a, i: F.batch_norm(a((2, 3)), None, None, training=True, momentum="x")),
    ("batch_norm-eps", lambda a, i: F.batch_norm(a((2, 3)), None, None, training=True, eps=-1.0)),
    ("batch_norm-float64", lambda a, i: F.batch_norm(a((2, 3), "float64"), None, None, training=True)),
    ("batch_norm_backward-grad", lambda a, i: F.batch_norm_backward(a((2, 4)), a((2, 3)), None, a((3,)), a((3,)))),
    ("batch_norm_backward-no-stats", lambda a, i: F.batch_norm_backward(a((2, 3)), a((2, 3)), None, None, None)),
    ("batch_norm_backward-invstd", lambda a, i: F.batch_norm_backward(a((2, 3)), a((2, 3)), None, a((3,)),
                                                                      a((2,)))),
    ("dropout-p", lambda a, i: F.dropout(a((4,)), 1.5)),
    ("dropout-p-type", lambda a, i: F.dropout(a((4,)), "half")),
    ("dropout-seed", lambda a, i: F.dropout(a((4,)), 0.5, seed=1.5)),
    ("dropout-float64", lambda a, i: F.dropout(a((4,), "float64"))),
    ("dropout_backward-no-mask", lambda a, i: F.dropout_backward(a((4,)), None, 0.5)),
    ("dropout_backward-mask-dtype", lambda a, i: F.dropout_backward(a((4,)), a((4,)), 0.5)),
    ("dropout_backward-mask-shape", lambda a, i: F.dropout_backward(a((4,)), a((5,), "bool"), 0.5)),
    ("embedding-float-indices", lambda a, i: F.embedding(a((3,)), a((5, 2)))),
    ("embedding-weight-rank", lambda a, i: F.embedding(i([0, 1]), a((5,)))),
    ("embedding-range", lambda a, i: F.embedding(i([0, 5]), a((5, 2)))),
    ("embedding-negative", lambda a, i: F.embedding(i([-1, 0]), a((5, 2)))),
    ("embedding-padding", lambda a, i: F.embedding(i([0, 1]), a((5, 2)), padding_idx=7)),
    ("embedding_backward-grad", lambda a, i: F.embedding_backward(a((2, 3)), i([0, 1]), a((5, 2)))),
    ("mse_loss-target-shape", lambda a, i: F.mse_loss(a((2, 3)), a((3, 2)))),
    ("mse_loss-reduction", lambda a, i: F.mse_loss(a((2, 3)), a((2, 3)), "avg")),
    ("mse_loss-float64", lambda a, i: F.mse_loss(a((2, 3), "float64"), a((2, 3)))),
    ("mse_loss_backward-grad", lambda a, i: F.mse_loss_backward(a((3, 2)), a((2, 3)), a((2, 3)), "none")),
    ("mse_loss_backward-scalar", lambda a, i: F.mse_loss_backward(a((2,)), a((2, 3)), a((2, 3)), "mean")),
    ("mse_loss_backward-bool", lambda a, i: F.mse_loss_backward(True, a((2, 3)), a((2, 3)), "sum")),
    ("binary_cross_entropy-range", lambda a, i: F.binary_cross_entropy(a((2, 3)) + 1, a((2, 3)))),
    ("bce_with_logits-target", lambda a, i: F.binary_cross_entropy_with_logits(a((2, 3)), a((2,)))),
    ("cross_entropy-rank", lambda a, i: F.cross_entropy(a((3,)), i([0]))),
    ("cross_entropy-target-float", lambda a, i: F.cross_entropy(a((2, 3)), a((2,)))),
    ("cross_entropy-target-shape", lambda a, i: F.cross_entropy(a((2, 3)), i([0, 1, 2]))),
    ("cross_entropy-no-class", lambda a, i: F.cross_entropy(a((2, 0)), i([0, 0]))),
    ("cross_entropy-target-range", lambda a, i: F.cross_entropy(a((2, 3)), i([0, 3]))),
    ("cross_entropy-smoothing", lambda a, i: F.cross_entropy(a((2, 3)), i([0, 1]), label_smoothing=2.0)),
    ("cross_entropy-ignore-type", lambda a, i: F.cross_entropy(a((2, 3)), i([0, 1]), ignore_index=1.5)),
    ("cross_entropy_backward-grad", lambda a, i: F.cross_entropy_backward(a((3,)), a((2, 3)), i([0, 1]), "none")),
    ("max_pool2d-rank", lambda a, i: F.max_pool2d(a((4, 4)), 2)),
    ("max_pool2d-kernel", lambda a, i: F.max_pool2d(a((1, 1, 4, 4)), 0)),
    ("max_pool2d-kernel-type", lambda a, i: F.max_pool2d(a((1, 1, 4, 4)), 2.5)),
    ("max_pool2d-padding", lambda a, i: F.max_pool2d(a((1, 1, 4, 4)), 2, padding=2)),
    ("max_pool2d-too-small", lambda a, i: F.max_pool2d(a((1, 1, 3, 3)), 5, padding=2, dilation=2)),
    ("max_pool2d-float64", lambda a, i: F.max_pool2d(a((1, 1, 4, 4), "float64"), 2)),
    ("max_pool2d_backward-grad", lambda a, i: F.max_pool2d_backward(a((1, 1, 3, 2)), a((1, 1, 4, 4)),
                                                                    i(np.zeros((1, 1, 2, 2))), 2)),
    ("max_pool2d_backward-indices", lambda a, i: F.max_pool2d_backward(a((1, 1, 2, 2)), a((1, 1, 4, 4)),
                                                                       i(np.zeros((1, 1, 2, 3))), 2)),
    ("max_pool2d_backward-indices-float", lambda a, i: F.max_pool2d_backward(a((1, 1, 2, 2)), a((1, 1, 4, 4)),
                                                                             a((1, 1, 2, 2)), 2)),
    ("avg_pool2d-stride", lambda a, i: F.avg_pool2d(a((1, 1, 4, 4)), 2, stride=-1)),
    ("avg_pool2d_backward-grad", lambda a, i: F.avg_pool2d_backward(a((1, 2, 2)), a((1, 1, 4, 4)), 2)),
    ("adaptive_avg_pool2d-size", lambda a, i: F.adaptive_avg_pool2d(a((1, 1, 4, 4)), 0)),
    ("adaptive_avg_pool2d-empty-plane", lambda a, i: F.adaptive_avg_pool2d(a((1, 1, 0, 4)), 2)),
    ("adaptive_max_pool2d_backward-indices", lambda a, i: F.adaptive_max_pool2d_backward(
        a((1, 1, 2, 2)), a((1, 1, 4, 4)), i(np.zeros((1, 1, 2, 1))), 2)),
    ("upsample_nearest2d-scale", lambda a, i: F.upsample_nearest2d(a((1, 1, 2, 2)), 0)),
    ("upsample_nearest2d-scale-float", lambda a, i: F.upsample_nearest2d(a((1, 1, 2, 2)), 1.5)),
    ("upsample_nearest2d_backward-grad", lambda a, i: F.upsample_nearest2d_backward(a((1, 1, 3, 4)),
                                                                                    a((1, 1, 2, 2)), 2)),
]


@pytest.mark.gpu
@pytest.mark.parametrize("name,case", VALIDATION_CASES, ids=[c[0] for c in VALIDATION_CASES])
def test_cupy_inputs_get_the_numpy_errors(cp, name, case):
    """Same exception type and message for CuPy inputs as for NumPy ones (the functional layer
    validates before it dispatches). The one planned difference: gemm/matmul/linear list the
    half dtypes they accept on CUDA (API.md)."""
    def makers(xp):
        return (lambda shape, dtype="float32": xp.asarray(np.full(shape, 0.5, dtype=dtype)),
                lambda values: xp.asarray(np.asarray(values, dtype=np.int64)))

    cpu = _error_of(case, *makers(np))
    assert cpu[0] is not None and issubclass(cpu[0], (TypeError, ValueError)), cpu
    if name.split("-")[0] in ("gemm", "gemm_backward", "matmul", "matmul_backward", "linear", "linear_backward"):
        cpu = (cpu[0], cpu[1].replace("(accepted: float32)", "(accepted: float32, float16, bfloat16)"))
    assert _error_of(case, *makers(cp)) == cpu


@pytest.mark.gpu
def test_mixed_numpy_and_cupy_arguments_are_type_errors(cp):
    a = np.ones((2, 2), np.float32)
    for call in (lambda: F.gemm(a, cp.asarray(a)), lambda: F.linear(cp.asarray(a), a),
                 lambda: F.layer_norm(cp.asarray(a), 2, a[0]), lambda: F.mse_loss(a, cp.asarray(a)),
                 lambda: F.max_pool2d_backward(cp.asarray(a[None, None]), a[None, None],
                                               cp.asarray(np.zeros((1, 1, 2, 2), np.int64)), 1)):
        with pytest.raises(TypeError, match="different kinds"):
            call()


@pytest.mark.gpu
def test_half_precision_only_where_the_api_accepts_it(cp, rng):
    """float16 (and bfloat16 where CuPy has it) run on the tensor cores for gemm/matmul/linear;
    every other op takes float32 only, and mixed half/float32 operands are a TypeError."""
    for dt in _half_dtypes(cp):
        a = cp.asarray(randn(rng, 8, 16)).astype(dt)
        b = cp.asarray(randn(rng, 16, 4)).astype(dt)
        assert str(F.gemm(a, b).dtype) == dt
        assert str(F.matmul(a, b).dtype) == dt
        assert str(F.linear(a, b.T).dtype) == dt
        with pytest.raises(TypeError, match="different dtypes"):
            F.matmul(a, b.astype(np.float32))
        with pytest.raises(TypeError, match="different dtypes"):
            F.gemm(a, b, cp.zeros(4, dtype=np.float32), beta=1.0)
        for fn in (F.relu, F.softmax, lambda x: F.layer_norm(x, 16), lambda x: F.mse_loss(x, x)):
            with pytest.raises(TypeError, match=f"dtype {dt} is not supported"):
                fn(a)


@pytest.mark.gpu
def test_ops_without_cuda_kernels_name_themselves(cp, rng):
    # (conv/rnn have CUDA kernels since issue 8, attention since issue 9; the optimizers not yet)
    from fastlayers import nn, optim

    p = nn.Parameter(cp.asarray(randn(rng, 3, 2)))
    p.grad = cp.ones_like(p.data)
    with pytest.raises(NotImplementedError, match="optimizer step"):
        optim.SGD([p], lr=0.1).step()


@pytest.mark.gpu
def test_results_are_device_arrays(cp, rng):
    """CuPy in, CuPy out (C-contiguous float32), for a sample of every family."""
    x4 = cp.asarray(randn(rng, 2, 3, 6, 6))
    x2 = cp.asarray(randn(rng, 5, 7))
    outs = [F.matmul(x2, x2.T), F.linear(x2, x2), F.softmax(x2), F.layer_norm(x2, 7),
            F.batch_norm(x4, None, None, training=True), F.dropout(x2, 0.5, seed=3)[0],
            F.embedding(cp.asarray(np.array([1, 2])), x2), F.mse_loss(x2, x2), F.max_pool2d(x4, 2),
            F.adaptive_avg_pool2d(x4, 2), F.upsample_nearest2d(x4, 2),
            F.max_pool2d_backward(cp.ones((2, 3, 3, 3), dtype=np.float32), x4,
                                  F.max_pool2d(x4, 2, return_indices=True)[1], 2)]
    for y in outs:
        assert isinstance(y, cp.ndarray) and y.dtype == np.float32 and y.flags.c_contiguous


def _same_structure(dev, cpu, name):
    """dev (CuPy results) against cpu (NumPy results of the same call): same nesting, None in
    the same places, same shapes and dtypes, values close."""
    if cpu is None:
        assert dev is None, name
    elif isinstance(cpu, tuple):
        assert isinstance(dev, tuple) and len(dev) == len(cpu), name
        for i, (d, c) in enumerate(zip(dev, cpu)):
            _same_structure(d, c, f"{name}[{i}]")
    else:
        d = _host(dev)
        assert d.shape == cpu.shape and d.dtype == cpu.dtype, (name, d.shape, cpu.shape, d.dtype, cpu.dtype)
        if cpu.dtype == np.float32:
            assert_close(d, cpu.astype(np.float64), name=name)  # float32 vs float32 kernels: rtol 1e-4
        else:
            np.testing.assert_array_equal(d, cpu, err_msg=name)


# (id, call(xp, data)): calls whose CUDA signature or return convention was adapted to the
# functional (CPU) one; data holds float32 NumPy inputs, moved to the device for the CuPy run.
SIGNATURE_CASES = [
    ("layer_norm-stats", lambda d: F.layer_norm(d["x"], 7, d["w7"], d["b7"], return_stats=True)),
    ("layer_norm_backward-stats", lambda d: F.layer_norm_backward(
        d["g"], d["x"], (7,), d["w7"], None, 1e-5, mean=F.layer_norm(d["x"], 7, return_stats=True)[1][0],
        rstd=F.layer_norm(d["x"], 7, return_stats=True)[1][1])),
    ("batch_norm-train-stats", lambda d: F.batch_norm(d["x"], None, None, d["w5"], d["b5"], training=True,
                                                      return_stats=True)),
    ("batch_norm-eval-stats", lambda d: F.batch_norm(d["x"], d["rm5"], d["rv5"], d["w5"], None, return_stats=True)),
    ("batch_norm_backward-has_bias", lambda d: F.batch_norm_backward(d["g"], d["x"], d["w5"], d["m5"], d["i5"],
                                                                     True)),
    ("batch_norm_backward-no-bias", lambda d: F.batch_norm_backward(d["g"], d["x"], d["w5"], d["m5"], d["i5"],
                                                                    True, has_bias=False)),
    ("batch_norm_backward-no-weight", lambda d: F.batch_norm_backward(d["g"], d["x"], None, d["m5"], d["i5"],
                                                                      False, 0.1, 1e-5, has_bias=True)),
    ("dropout-p0", lambda d: F.dropout(d["x"], 0.0, True, seed=5)),
    ("dropout-eval", lambda d: F.dropout(d["x"], 0.5, False)),
    ("dropout_backward-eval", lambda d: F.dropout_backward(d["g"], None, 0.5, False)),
    ("embedding_backward-padding", lambda d: F.embedding_backward(d["ge"], d["idx"], d["w7"][None].repeat(5, 0),
                                                                  padding_idx=-2)),
    ("mse_loss_backward-mean", lambda d: F.mse_loss_backward(0.5, d["x"], d["g"])),
    ("cross_entropy_backward-sum", lambda d: F.cross_entropy_backward(2.0, d["x"][:, :, 0], d["t"], "sum",
                                                                      0.1, 1)),
    ("max_pool2d_backward-3d", lambda d: F.max_pool2d_backward(
        d["p"], d["x"], F.max_pool2d(d["x"], 2, return_indices=True)[1], 2, return_indices=True)),
    ("adaptive_max_pool2d_backward-3d", lambda d: F.adaptive_max_pool2d_backward(
        d["p"], d["x"], F.adaptive_max_pool2d(d["x"], (None, 3), return_indices=True)[1], (None, 3))),
    ("adaptive_avg_pool2d-none", lambda d: F.adaptive_avg_pool2d(d["x"], (2, None))),
    ("upsample_nearest2d-float-scale", lambda d: F.upsample_nearest2d(d["x"], 2.0)),
]


@pytest.mark.gpu
@pytest.mark.parametrize("name,call", SIGNATURE_CASES, ids=[c[0] for c in SIGNATURE_CASES])
def test_cuda_results_match_the_cpu_functions(cp, rng, name, call):
    """The same public call on NumPy and on CuPy arrays: same structure (tuples, None), shapes,
    dtypes, and values (both float32 kernels, so rtol 1e-4 against each other)."""
    base = {"x": randn(rng, 4, 5, 7), "g": randn(rng, 4, 5, 7), "p": randn(rng, 4, 2, 3), "w7": randn(rng, 7),
            "b7": randn(rng, 7), "w5": randn(rng, 5), "b5": randn(rng, 5), "rm5": randn(rng, 5),
            "rv5": np.abs(randn(rng, 5)) + 0.5, "m5": randn(rng, 5), "i5": np.abs(randn(rng, 5)) + 0.5,
            "idx": np.array([[0, 3], [3, 1], [1, 1]], np.int64), "ge": randn(rng, 3, 2, 7),
            "t": np.array([0, 1, 4, 2], np.int64)}
    if name == "max_pool2d_backward-3d":
        base["p"] = randn(rng, 4, 2, 3)
    elif name.startswith("adaptive_max"):
        base["p"] = randn(rng, 4, 5, 3)
    cpu = call({k: v.copy() for k, v in base.items()})
    dev = call({k: cp.asarray(v) for k, v in base.items()})
    _same_structure(dev, cpu, name)


# ---- always run: the CuPy-side plumbing against NumPy stand-ins -------------------------------
# _cuda.py's own logic (operand strides and transposes, batch strides and broadcasting, output
# shapes, the pooling output sizes) checked on the CPU: CuPy is replaced by NumPy and the
# _core.cuda_gemm / cuda_unary_backward bindings by NumPy versions of their contracts that read
# the very pointers, leading dimensions and batch strides the real kernels would get.
def _np_view(ptr, shape, strides, dtype):
    dtype = np.dtype(dtype)
    if any(s == 0 for s in shape):
        return np.empty(shape, dtype)
    extent = 1 + sum((s - 1) * st for s, st in zip(shape, strides))
    buf = (ctypes.c_char * (extent * dtype.itemsize)).from_address(ptr)
    base = np.frombuffer(buf, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, shape, [st * dtype.itemsize for st in strides])


_ACT_REF = {0: lambda z: z, 1: lambda z: R.relu(z), 2: lambda z: R.gelu(z), 3: lambda z: R.gelu(z, "tanh"),
            4: lambda z: R.tanh(z), 5: lambda z: R.sigmoid(z)}


def _mock_gemm(dtype, m, n, k, a, lda, ta, b, ldb, tb, c, ldc, alpha, beta, row_bias, col_bias, act, batch,
               stride_a, stride_b, stride_c, stream, config=-1):
    dt = {0: np.float32, 1: np.float16}[dtype]
    isz = np.dtype(dt).itemsize
    assert lda >= (m if ta else k) or (k if ta else m) <= 1
    assert ldb >= (k if tb else n) or (n if tb else k) <= 1
    for i in range(batch):
        A = _np_view(a + i * stride_a * isz, (m, k), (1, lda) if ta else (lda, 1), dt).astype(np.float64)
        B = _np_view(b + i * stride_b * isz, (k, n), (1, ldb) if tb else (ldb, 1), dt).astype(np.float64)
        C = _np_view(c + i * stride_c * isz, (m, n), (ldc, 1), dt)
        z = alpha * (A @ B)
        if beta != 0.0:
            z = z + beta * C.astype(np.float64)
        if row_bias:
            z = z + _np_view(row_bias, (m, 1), (1, 1), dt).astype(np.float64)
        if col_bias:
            z = z + _np_view(col_bias, (n,), (1,), dt).astype(np.float64)
        C[...] = _ACT_REF[act](z)


def _mock_unary_backward(op, g, x, dx, n, slope, stream):
    names = {0: "relu", 2: "sigmoid", 3: "tanh", 4: "gelu", 5: "gelu_tanh"}
    G, X, D = (_np_view(p, (n,), (1,), np.float32) for p in (g, x, dx))
    name = names[op]
    if name == "gelu_tanh":
        D[...] = R.gelu_backward(G.astype(np.float64), X.astype(np.float64), "tanh")
    else:
        D[...] = getattr(R, name + "_backward")(G.astype(np.float64), X.astype(np.float64))


@pytest.fixture
def np_cuda(monkeypatch):
    from fastlayers import _cuda

    shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.cuda = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=0))
    monkeypatch.setattr(_cuda, "_cp", lambda: shim)
    monkeypatch.setattr(_cuda, "_ptr", lambda a: 0 if a is None else int(a.__array_interface__["data"][0]))
    monkeypatch.setattr(_cuda, "require_cuda", lambda: None)
    monkeypatch.setattr(_cuda, "_core", types.SimpleNamespace(cuda_gemm=_mock_gemm,
                                                              cuda_unary_backward=_mock_unary_backward))
    return _cuda


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_plumbing_gemm_views_and_transposes(np_cuda, rng, trans_a, trans_b):
    big_a, big_b = randn(rng, 40, 50), randn(rng, 60, 70)
    for a, b in [(big_a[:13, :17], big_b[:17, :11]), (big_a[::2, 1:18], big_b[3:20, ::3]),
                 (big_a[:1, :17], big_b[:17, :1]), (big_a[:13, :0], big_b[:0, :11])]:
        a_in = a.T if trans_a else a  # op(a_in) = a
        b_in = b.T if trans_b else b
        out = np_cuda.gemm(a_in, b_in, trans_a=trans_a, trans_b=trans_b)
        assert out.flags.c_contiguous and out.shape == (a.shape[0], b.shape[1])
        assert_close(out, f64(a) @ f64(b))
    c = randn(rng, 11)
    out = np_cuda.gemm(big_a[:13, :17], big_b[:17, :11], c, alpha=0.5, beta=2.0)
    assert_close(out, 0.5 * (f64(big_a[:13, :17]) @ f64(big_b[:17, :11])) + 2.0 * f64(c))


@pytest.mark.parametrize("ashape,bshape", [((3, 17, 33), (3, 33, 9)), ((2, 1, 5, 7), (3, 7, 4)), ((5, 7), (4, 7, 3)),
                                           ((4, 6, 8), (8, 5)), ((7,), (7,)), ((7,), (2, 7, 3)), ((2, 3, 7), (7,)),
                                           ((1, 4, 5), (3, 5, 2))])
def test_plumbing_matmul_batches(np_cuda, rng, ashape, bshape):
    a, b = randn(rng, *ashape), randn(rng, *bshape)
    out = np_cuda.matmul(a, b)
    ref = R.matmul(*f64(a, b))
    assert np.shape(out) == np.shape(ref)
    assert_close(out, ref)
    g = randn(rng, *np.shape(ref))
    ga, gb = np_cuda.matmul_backward(g, a, b)
    ra, rb = R.matmul_backward(*f64(g, a, b))
    assert_close(ga, ra, name="grad_a")
    assert_close(gb, rb, name="grad_b")


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh", "tanh", "sigmoid"])
def test_plumbing_linear(np_cuda, rng, activation):
    x, w, bias = randn(rng, 2, 5, 8), randn(rng, 6, 8), randn(rng, 6)
    y = np_cuda.linear(x, w, bias, activation)
    assert_close(y, R.linear(*f64(x, w, bias), activation))
    g = randn(rng, 2, 5, 6)
    got = np_cuda.linear_backward(g, x, w, bias, activation)
    ref = R.linear_backward(*f64(g, x, w, bias), activation)
    for gv, rv in zip(got, ref):
        assert_close(gv, rv)
    if activation in ("relu", "tanh", "sigmoid"):
        for gv, rv in zip(np_cuda.linear_backward(g, x, w, bias, activation, y=y), ref):
            assert_close(gv, rv)
    assert np_cuda.linear(np.zeros((0, 8), np.float32), w).shape == (0, 6)


def test_plumbing_gemm_backward(np_cuda, rng):
    a, b, c, g = randn(rng, 20, 13), randn(rng, 31, 20), randn(rng, 1, 31), randn(rng, 13, 31)
    got = np_cuda.gemm_backward(g, a, b, c, alpha=0.5, beta=2.0, trans_a=True, trans_b=True)
    ref = R.gemm_backward(*f64(g, a, b, c), alpha=0.5, beta=2.0, trans_a=True, trans_b=True)
    for x, r in zip(got, ref):
        assert_close(x, r)


@pytest.mark.torch
@pytest.mark.parametrize("shape,k,s,p,d,ceil", POOL_CASES + [((1, 1, 6, 6), 3, 2, 1, 1, True),
                                                             ((1, 1, 7, 7), 2, 3, 1, 2, True)])
def test_plumbing_pool_output_sizes(shape, k, s, p, d, ceil):
    import torch

    from fastlayers import _cuda

    x = np.zeros(shape, np.float32)
    dims = _cuda._pool_params(x, k, s, p, d, ceil)
    ref = torch.nn.functional.max_pool2d(torch.zeros(shape), k, s, p, d, ceil).shape
    assert (dims[4], dims[5]) == tuple(ref[2:])
    if d == 1:
        ref = torch.nn.functional.avg_pool2d(torch.zeros(shape), k, s, p, ceil).shape
        assert (dims[4], dims[5]) == tuple(ref[2:])


def test_plumbing_pool_bad_padding_is_value_error():
    from fastlayers import _cuda

    with pytest.raises(ValueError, match="at most half"):
        _cuda._pool_params(np.zeros((1, 1, 8, 8), np.float32), 2, 2, 2, 1, False)

"""Shared test machinery: fresh seeds, tolerances against a float64 truth, finite differences,
and the gpu/torch markers.

Seeds: every run draws a new base seed (printed in the header; rerun a failure with
FASTLAYERS_TEST_SEED=<seed>). Each test gets its own generator derived from the base seed and
its node id, so one test's draws do not shift another's.

Tolerances (float32 kernels vs the float64 NumPy reference): the default is rtol=1e-4 and an
atol scaled by the magnitude of the result (1e-5 x max|ref|, floor 1e-6), i.e. relative to the
whole result rather than to each (possibly cancelled) entry. A reduction of length K in float32
carries an error of about sqrt(K) * 6e-8 of its magnitude, so K up to ~10^5 stays inside it. Any
test that needs more says why next to its number."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

BASE_SEED = int(os.environ.get("FASTLAYERS_TEST_SEED", np.random.SeedSequence().entropy % (2**32)))


def pytest_report_header(config):
    return f"fastlayers test seed: {BASE_SEED} (set FASTLAYERS_TEST_SEED to replay)"


@pytest.fixture
def rng(request):
    digest = hashlib.sha256(request.node.nodeid.encode()).digest()
    return np.random.default_rng([BASE_SEED, int.from_bytes(digest[:4], "little")])


def randn(rng, *shape, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=np.float32)


def f64(*arrays):
    """float64 copies, for computing the truth with fastlayers.reference."""
    out = tuple(None if a is None else np.asarray(a, dtype=np.float64) for a in arrays)
    return out if len(out) > 1 else out[0]


def assert_close(actual, expected, rtol=1e-4, atol_scale=1e-5, atol_floor=1e-6, name="result"):
    """actual (float32 kernel output) vs expected (float64 truth), see the module docstring."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    assert actual.dtype == np.float32, f"{name}: dtype {actual.dtype}, expected float32"
    finite = np.isfinite(expected)
    scale = float(np.abs(expected[finite]).max()) if finite.any() else 0.0
    atol = max(atol_floor, atol_scale * scale)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=name)


def numeric_grad(f, x, eps=1e-6):
    """Central finite differences of the scalar function f at float64 array x (elementwise)."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        hi = f(x)
        flat[i] = old - eps
        lo = f(x)
        flat[i] = old
        gflat[i] = (hi - lo) / (2 * eps)
    return g


def check_directional(forward, inputs, grad_fn, rng, eps=1e-3, rtol=2e-2):
    """Finite-difference check of a float32 kernel's backward, along random directions.

    forward(*inputs) -> output; grad_fn(grad_out, *inputs) -> gradients (tuple, one per input,
    None to skip). Compares <grad_i, d_i> with (L(x + eps d) - L(x - eps d)) / (2 eps) where
    L = sum(forward(...) * grad_out), evaluating L in float64 from float32 outputs. float32
    forward passes round at ~6e-8 relative, so the quotient carries ~6e-8 * |L| / eps of noise:
    with eps=1e-3 that is ~1e-4 |L|; rtol=2e-2 of the directional derivative covers it for the
    O(1) data these tests use. The exact check is the reference comparison; this one guards
    the reference's own backward against a shared mistake."""
    inputs = [np.asarray(x, np.float32) for x in inputs]
    out = forward(*inputs)
    grad_out = rng.standard_normal(np.shape(out)).astype(np.float32)
    grads = grad_fn(grad_out, *inputs)
    for i, g in enumerate(grads):
        if g is None:
            continue
        d = rng.standard_normal(inputs[i].shape).astype(np.float32)
        plus = list(inputs)
        minus = list(inputs)
        plus[i] = (inputs[i].astype(np.float64) + eps * d).astype(np.float32)
        minus[i] = (inputs[i].astype(np.float64) - eps * d).astype(np.float32)
        step = (plus[i].astype(np.float64) - minus[i].astype(np.float64))  # the step actually taken
        lp = float(np.sum(np.asarray(forward(*plus), np.float64) * grad_out))
        lm = float(np.sum(np.asarray(forward(*minus), np.float64) * grad_out))
        fd = lp - lm
        an = float(np.sum(np.asarray(g, np.float64) * step))
        scale = max(abs(an), abs(fd), 1e-3 * np.sqrt(grad_out.size))
        assert abs(fd - an) <= rtol * scale, f"input {i}: finite difference {fd:.6g} vs analytic {an:.6g}"


def _have_gpu() -> bool:
    try:
        import cupy  # noqa: F401

        import fastlayers

        return bool(fastlayers.info()["cuda_available"])
    except Exception:
        return False


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401

        return True
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    gpu = _have_gpu() if any("gpu" in i.keywords for i in items) else True
    torch_ok = _have_torch() if any("torch" in i.keywords for i in items) else True
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU, CuPy and a CUDA build of fastlayers")
    skip_torch = pytest.mark.skip(reason="needs PyTorch (pip install torch==2.13.0)")
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(skip_gpu)
        if "torch" in item.keywords and not torch_ok:
            item.add_marker(skip_torch)

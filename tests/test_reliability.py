"""Reliability: concurrency, leaks, numerical robustness, over every kernel that exists.

Concurrency: 6 Python threads call a mix of kernels at once (the kernels release the GIL)
while a 7th flips fl.set_num_threads between 1 and 4. Each result is compared with serial runs
of the same call made beforehand at every thread count: a kernel whose serial results agree
bit for bit across thread counts is "deterministic" and must match bit for bit under
concurrency too; the others (whose reduction order depends on the thread count) must match
within rtol 1e-5 of the serial result. Which kernels fell in which class is printed.

Leaks: 10**5 small calls and 10**2 large calls; resident memory (/proc/self/statm) and
tracemalloc's traced total must stay flat within the bounds below, and sys.getrefcount of every
input is unchanged after valid and invalid calls.

Robustness: NaN/Inf poured into each kernel's inputs give the NaN/Inf pattern of the float64
reference (IEEE propagation), each call under a timeout (a hang fails the test instead of
blocking the run); softmax/log_softmax/attention/cross_entropy stay finite and right for
logits up to +-1e30; LSTM gates saturate to exact 0/1 with |h| <= 1 and no NaN."""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import tracemalloc

import numpy as np
import pytest
import test_properties as tp
from conftest import assert_close

import fastlayers as fl
from fastlayers import reference as R

PAGE = os.sysconf("SC_PAGE_SIZE")
# Under ASan (tools/sanitize.sh) freed memory sits in its quarantine (256 MiB) before reuse,
# so RSS grows without a leak: only tracemalloc and refcounts are checked there.
UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _report(request, text):
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + text)


def _rand(seed, *shape, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---- a table of medium-sized calls (large enough to go parallel) ------------------------------
def _medium_cases():
    r = lambda *s: _rand(len(s) * 7919 + sum(s), *s)  # noqa: E731 - deterministic inputs
    cases = {
        "gemm": ((r(160, 130), r(130, 150)), {}),
        "linear": ((r(64, 200), r(96, 200), r(96)), {"activation": "gelu"}),
        "matmul": ((r(6, 40, 30), r(6, 30, 50)), {}),
        "relu": ((r(70_000),), {}),
        "gelu": ((r(70_000),), {}),
        "softmax": ((r(128, 300),), {}),
        "log_softmax": ((r(300, 128),), {"axis": 0}),
        "conv2d": ((r(2, 8, 20, 20), r(16, 8, 3, 3), r(16)), {"padding": 1}),
        "conv_transpose2d": ((r(2, 8, 10, 10), r(8, 4, 3, 3)), {"stride": 2}),
        "max_pool2d": ((r(2, 8, 24, 24), 3), {"stride": 2}),
        "avg_pool2d": ((r(2, 8, 24, 24), 2), {}),
        "adaptive_avg_pool2d": ((r(2, 8, 17, 17), 5), {}),
        "layer_norm": ((r(64, 256), (256,)), {}),
        "batch_norm": ((r(16, 8, 10, 10), np.zeros(8, np.float32), np.ones(8, np.float32)), {}),
        "lstm": ((r(12, 4, 16), [(r(128, 16) * 0.2, r(128, 32) * 0.2, r(128), r(128))]), {}),
        "scaled_dot_product_attention": ((r(2, 2, 64, 16), r(2, 2, 80, 16), r(2, 2, 80, 16)), {"is_causal": True}),
        "cross_entropy": ((r(256, 40), np.arange(256) % 40), {}),
        "mse_loss": ((r(50_000), r(50_000)), {}),
        "dropout": ((r(60_000),), {"p": 0.3, "seed": 7}),  # counter-based: same mask for any thread count
        "embedding": ((np.arange(3000) % 500, r(500, 64)), {}),
    }
    return cases


def _first(out):
    while isinstance(out, tuple):
        out = out[0]
    return np.asarray(out)


def test_concurrent_mixed_kernels_with_thread_count_changes(request):
    cases = _medium_cases()
    before = fl.get_num_threads()
    counts = [1, 2, 3, 4]
    serial = {}
    try:
        for n in counts:
            fl.set_num_threads(n)
            for name, (args, kw) in cases.items():
                serial[name, n] = _first(getattr(fl, name)(*args, **kw))
        deterministic = {name for name in cases
                         if all(np.array_equal(serial[name, n], serial[name, 1], equal_nan=True) for n in counts)}
        fl.set_num_threads(before)
        errors, stop = [], threading.Event()
        names = sorted(cases)

        def worker(seed):
            rr = random.Random(seed)
            try:
                for _ in range(4):
                    for name in rr.sample(names, len(names)):
                        args, kw = cases[name]
                        got = _first(getattr(fl, name)(*args, **kw))
                        want = serial[name, 1]
                        if name in deterministic:
                            if not np.array_equal(got, want, equal_nan=True):
                                errors.append(f"{name}: differs from the serial result under concurrency")
                        elif not np.allclose(got, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max(initial=0))):
                            errors.append(f"{name}: max diff {np.abs(got - want).max()} vs serial")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"{type(e).__name__}: {e}")

        def flipper():
            rr = random.Random(1)
            while not stop.is_set():
                fl.set_num_threads(rr.choice(counts))
                stop.wait(0.0005)

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        flip = threading.Thread(target=flipper)
        flip.start()
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=600)
        stop.set()
        flip.join()
        assert not any(t.is_alive() for t in workers), "a worker thread hung"
        assert not errors, "\n".join(errors[:20])
    finally:
        fl.set_num_threads(before)
    _report(request, f"concurrency: {len(cases)} kernels x 6 threads x 4 rounds; bit-identical to serial: "
                     f"{', '.join(sorted(deterministic))}; thread-count dependent (rtol 1e-5): "
                     f"{', '.join(sorted(set(cases) - deterministic)) or 'none'}")


# ---- leaks ------------------------------------------------------------------------------------
def _small_calls():
    x, a, b, w, bias = _rand(1, 8), _rand(2, 4, 5), _rand(3, 5, 3), _rand(4, 3, 5), _rand(5, 3)
    img, kern = _rand(6, 1, 2, 5, 5), _rand(7, 2, 2, 3, 3)
    calls = [
        ("relu", (x,), {}), ("gelu", (x,), {}), ("softmax", (a,), {}), ("gemm", (a, b), {}),
        ("linear", (a, w, bias), {"activation": "relu"}), ("matmul", (a, b), {}),
        ("conv2d", (img, kern), {"padding": 1}), ("max_pool2d", (img, 2), {"return_indices": True}),
        ("layer_norm", (a, (5,)), {}), ("cross_entropy", (a, np.array([0, 1, 2, 3])), {}),
        ("scaled_dot_product_attention", (_rand(8, 1, 3, 4), _rand(9, 1, 5, 4), _rand(10, 1, 5, 4)), {}),
        ("lstm_cell", (_rand(11, 2, 3), _rand(12, 2, 4), _rand(13, 2, 4), _rand(14, 16, 3), _rand(15, 16, 4)), {}),
        ("relu_backward", (x, x), {}), ("softmax_backward", (a, a), {}),
        ("dropout", (x,), {"p": 0.5, "seed": 3}), ("embedding", (np.array([[0, 2], [1, 1]]), a), {}),
    ]
    return [(getattr(fl, n), args, kw) for n, args, kw in calls]


def _run(calls, n):
    for i in range(n):
        f, args, kw = calls[i % len(calls)]
        f(*args, **kw)


RSS_SMALL_BOUND = 4 << 20  # 4 MiB over 10**5 calls: catches a leak of >= 42 bytes per call
TRACED_SMALL_BOUND = 256 << 10  # Python-side objects (NumPy registers its buffers with tracemalloc)


def test_no_leak_small_calls(request):
    calls = _small_calls()
    _run(calls, 2000)  # warm up: thread pools, caches, first-touch of allocator arenas
    gc.collect()
    tracemalloc.start()
    try:
        traced0, rss0 = tracemalloc.get_traced_memory()[0], _rss()
        _run(calls, 100_000)
        gc.collect()
        traced1, rss1 = tracemalloc.get_traced_memory()[0], _rss()
    finally:
        tracemalloc.stop()
    _report(request, f"leaks, 10^5 small calls over {len(calls)} kernels: RSS {rss0 / 2**20:.1f} -> "
                     f"{rss1 / 2**20:.1f} MiB, tracemalloc {traced0 / 1024:.0f} -> {traced1 / 1024:.0f} KiB")
    assert UNDER_ASAN or rss1 - rss0 < RSS_SMALL_BOUND, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"
    assert traced1 - traced0 < TRACED_SMALL_BOUND, f"traced memory grew by {(traced1 - traced0) / 1024:.0f} KiB"


RSS_LARGE_BOUND = 48 << 20  # each call allocates 4-16 MiB; 100 leaked outputs would be >= 400 MiB


def test_no_leak_large_calls(request):
    big = _rand(20, 2048, 2048)  # 16 MiB
    calls = [(getattr(fl, n), args, kw) for n, args, kw in [
        ("relu", (big,), {}), ("softmax", (big,), {}), ("gemm", (_rand(21, 512, 256), _rand(22, 256, 1024)), {}),
        ("conv2d", (_rand(23, 4, 8, 64, 64), _rand(24, 16, 8, 3, 3)), {"padding": 1}),
        ("layer_norm", (big, (2048,)), {}),
        ("scaled_dot_product_attention", (_rand(25, 4, 512, 64), _rand(26, 4, 512, 64), _rand(27, 4, 512, 64)), {}),
    ]]
    _run(calls, 2 * len(calls))
    gc.collect()
    tracemalloc.start()
    try:
        traced0, rss0 = tracemalloc.get_traced_memory()[0], _rss()
        _run(calls, 100)
        gc.collect()
        traced1, rss1 = tracemalloc.get_traced_memory()[0], _rss()
    finally:
        tracemalloc.stop()
    _report(request, f"leaks, 10^2 large calls over {len(calls)} kernels: RSS {rss0 / 2**20:.1f} -> "
                     f"{rss1 / 2**20:.1f} MiB, tracemalloc {traced0 / 2**20:.1f} -> {traced1 / 2**20:.1f} MiB")
    assert UNDER_ASAN or rss1 - rss0 < RSS_LARGE_BOUND, f"RSS grew by {(rss1 - rss0) / 2**20:.1f} MiB"
    assert traced1 - traced0 < 1 << 20, f"traced memory grew by {(traced1 - traced0) / 2**20:.1f} MiB"


def _leaves(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _leaves(o)


@pytest.mark.parametrize("name", sorted(tp.KERNELS))
def test_refcounts_unchanged(name):
    """sys.getrefcount of every input array, after 5 valid calls and 5 invalid ones."""
    g = tp.RandomGen(random.Random(hash(name) % 2**32))
    args, kw = tp.KERNELS[name](g)
    leaves = list(_leaves(args))
    before = [sys.getrefcount(a) for a in leaves]
    f = getattr(fl, name)
    for _ in range(5):
        out = f(*args, **kw)
    del out
    bad = tuple(a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a for a in args)
    for _ in range(5):
        try:
            f(*bad, **kw)
        except (TypeError, ValueError):
            pass
    del bad  # it shares the non-float inputs
    gc.collect()
    after = [sys.getrefcount(a) for a in leaves]
    assert after == before, f"{name}: input refcounts {before} -> {after}"


# ---- numerical robustness -----------------------------------------------------------------------
def _with_timeout(fn, seconds=60):
    """Run fn in a daemon thread; a hang fails the test instead of blocking the run."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"call did not return within {seconds}s"
    if "error" in box:
        raise box["error"]
    return box["value"]


FORWARD = [n for n in sorted(tp.KERNELS) if not n.endswith("_backward") and n not in tp.NO_REFERENCE]
# Kernels that refuse non-finite input with a ValueError (as PyTorch does), with the reason.
REFUSES_NONFINITE = {
    "binary_cross_entropy": "input must be a probability in [0, 1]; NaN/Inf is refused like PyTorch's check",
}
# Kernels where only "finite stays finite, non-finite stays non-finite" is required, because
# the kernel legitimately evaluates a different (equivalent for finite input) expression than
# the reference; positions where the reference is NaN may hold anything. The reasons:
RELAXED_NONFINITE = {
    "conv2d": "padding taps are skipped, not multiplied: an Inf weight gives +-Inf at the border "
              "where the reference's zero-padded im2col gives 0*Inf = NaN",
    "conv_transpose2d": "same as conv2d (taps outside the output are skipped)",
    "scaled_dot_product_attention": "masked/causal keys are skipped, so an Inf in a masked key or "
                                    "value does not reach the row (the reference multiplies it by p = 0: NaN)",
    "batch_norm": "REPORTED: folds weight*invstd and bias - mean*scale, so an Inf weight with a zero mean "
                  "gives 0*Inf = NaN where the reference gives Inf; an Inf in a training batch gives -Inf/NaN "
                  "where the reference's NaN statistics give NaN",
}


def _poison_one(g, args, value):
    arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype == np.float32 and a.size]
    if not arrays:
        return None
    i = g.choice(arrays)
    a = np.array(args[i])
    a.reshape(-1)[g.int(0, a.size - 1)] = value
    return args[:i] + (a,) + args[i + 1:]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", FORWARD)
def test_nonfinite_inputs_propagate_like_ieee(name, value):
    """One NaN/Inf in an input: the output's NaN and Inf positions are the reference's."""
    rr = random.Random(f"{name}{value}")
    checked = 0
    for _ in range(6):
        g = tp.RandomGen(rr)
        args, kw = tp.KERNELS[name](g)
        bad = _poison_one(g, tuple(args), value)
        if bad is None:
            continue
        with np.errstate(all="ignore"):
            want = _first(getattr(R, name)(*tp.to_f64(tp.copy_args(bad)), **kw))
        try:
            got = _with_timeout(lambda: _first(getattr(fl, name)(*tp.copy_args(bad), **kw)))
        except ValueError:
            if name in REFUSES_NONFINITE:
                checked += 1
                continue
            raise
        assert got.shape == want.shape
        if name in RELAXED_NONFINITE:
            free = np.isnan(want)
            np.testing.assert_array_equal(np.isfinite(got)[~free], np.isfinite(want)[~free],
                                          err_msg=f"{name}: finite positions")
            checked += 1
            continue
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{name}: NaN positions")
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{name}: +inf positions")
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{name}: -inf positions")
        checked += 1
    assert checked, f"{name}: none of the 6 drawn calls had a float input to poison"


@pytest.mark.parametrize("log", [False, True])
def test_softmax_stable_for_huge_logits(log):
    rng = np.random.default_rng(0)
    x = (rng.choice([-1.0, 1.0], (16, 33)) * 10.0 ** rng.uniform(0, 30, (16, 33))).astype(np.float32)
    x[0, :] = 1e30
    x[1, :] = -1e30
    x[2, 0], x[2, 1:] = 1e30, -1e30
    f, rf = (fl.log_softmax, R.log_softmax) if log else (fl.softmax, R.softmax)
    for axis in (-1, 0):
        y = _with_timeout(lambda: f(x, axis=axis))
        assert np.isfinite(y).all()
        assert_close(y, rf(x.astype(np.float64), axis=axis))


def test_attention_stable_for_huge_logits():
    rng = np.random.default_rng(1)
    q = (rng.standard_normal((2, 3, 7, 8)) * 1e15).astype(np.float32)
    k = (rng.standard_normal((2, 3, 9, 8)) * 1e15).astype(np.float32)  # scores ~ +-1e30
    v = rng.standard_normal((2, 3, 9, 5)).astype(np.float32)
    for kw in ({}, {"is_causal": True}, {"attn_mask": rng.random((7, 9)) < 0.5}):
        out, lse = _with_timeout(lambda: fl.scaled_dot_product_attention(q, k, v, return_lse=True, **kw))
        assert np.isfinite(out).all()
        want, want_lse = R.scaled_dot_product_attention(*tp.to_f64((q, k, v)), return_lse=True, **kw)
        # softmax at +-1e30 is a hard argmax: ties aside, the reference's own rounding of
        # q.k (1e30 scale, float64) decides the winner exactly like ours.
        assert_close(out, want)
        finite = np.isfinite(want_lse)
        assert_close(lse[finite], want_lse[finite], name="lse")


def test_cross_entropy_stable_for_huge_logits():
    rng = np.random.default_rng(2)
    x = (rng.choice([-1.0, 1.0], (8, 5)) * 10.0 ** rng.uniform(0, 30, (8, 5))).astype(np.float32)
    t = rng.integers(0, 5, 8)
    for red in ("none", "mean"):
        y = fl.cross_entropy(x, t, reduction=red)
        assert np.isfinite(y).all()
        assert_close(np.asarray(y, np.float32), R.cross_entropy(x.astype(np.float64), t, reduction=red))


def test_lstm_gates_saturate_cleanly():
    rng = np.random.default_rng(3)
    T, B, I, H = 6, 3, 4, 5
    x = (rng.standard_normal((T, B, I)) * 1e4).astype(np.float32)
    w = [((rng.standard_normal((4 * H, I)) * 1e4).astype(np.float32),
          (rng.standard_normal((4 * H, H)) * 1e4).astype(np.float32),
          (rng.standard_normal(4 * H) * 1e4).astype(np.float32), np.zeros(4 * H, np.float32))]
    out, (h, c) = _with_timeout(lambda: fl.lstm(x, w))
    assert np.isfinite(out).all() and np.isfinite(c).all()
    assert np.abs(out).max() <= 1.0 and np.abs(c).max() <= T  # |c_t| <= |c_{t-1}| + 1
    want, (wh, wc) = R.lstm(tp.to_f64(x), tp.to_f64(w))
    # Gates at +-1e4..1e8 saturate to exactly 0 or 1 in both precisions; what is left is
    # tanh(c) rounding, so the usual tolerance holds.
    assert_close(out, want)
    assert_close(c, wc)
    h1, c1 = fl.lstm_cell(x[0], h[0], c[0], *w[0])
    assert np.isfinite(h1).all() and np.isfinite(c1).all() and np.abs(h1).max() <= 1.0
    # +-inf pre-activations: sigmoid(+-inf) = 1/0, tanh(+-inf) = +-1 -- still no NaN from the gates
    xi = np.full((1, B, I), np.inf, np.float32)
    wi = [(np.ones((4 * H, I), np.float32), np.zeros((4 * H, H), np.float32), None, None)]
    out, (h, c) = fl.lstm(xi, wi)
    assert not np.isnan(out).any() and not np.isnan(c).any()


@pytest.mark.parametrize("value", [2**63, -(2**63), (1, 2**64), 2**62])
@pytest.mark.parametrize("call", ["conv2d", "max_pool2d", "avg_pool2d", "conv_transpose2d"])
def test_integer_arguments_beyond_int64_are_value_errors(call, value):
    """pybind11 would answer such ints with "incompatible function arguments"; the argument's
    name must be in the error instead."""
    x = np.ones((1, 1, 5, 5), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    fn = getattr(fl, call)
    args = (x, w) if "conv" in call else (x, 3)
    with pytest.raises(ValueError, match=r"stride: .*out of range"):
        fn(*args, stride=value)

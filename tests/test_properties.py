"""Property-based tests (hypothesis) over every kernel of fastlayers.functional.

One table, KERNELS, maps a kernel name to a generator of random *valid* calls (shapes, strides
including non-contiguous, reversed, permuted and zero-stride views, and parameters); the
tests check
  * valid calls against fastlayers.reference in float64 (assert_close from conftest),
  * random invalid calls (wrong dtype, list instead of array, per-kernel shape/parameter
    mistakes) raise TypeError/ValueError naming the argument, never anything else,
  * index-overflow cases (OVERFLOW): sizes beyond 2**31 reached through parameters or
    zero-stride views must raise (ValueError/TypeError/MemoryError) or give the right answer,
    never wrap around. They run in a subprocess with a 4 GiB address-space limit so that a
    kernel that legitimately allocates a huge output gets a MemoryError instead of eating the
    machine (and so that a crash is a failed test, not a dead test run).

Adding a kernel = adding one entry to KERNELS (and to INVALID / OVERFLOW if it has its own
mistakes or size parameters). Entries whose function is not (yet) in fastlayers.functional
are skipped. Examples per kernel: FASTLAYERS_HYPOTHESIS_EXAMPLES (default 12 valid, and as
many invalid); the number actually run per kernel is printed at the end of the module.
Hypothesis is not derandomized: every run explores new examples (failures print the
reproducing example and are replayed from .hypothesis/ on the next run)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import warnings
from collections import Counter

import numpy as np
import pytest
from conftest import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastlayers as fl
from fastlayers import reference as R

# When a hypothesis test fails, its pytest plugin imports libcst, whose import emits a
# DeprecationWarning (mypy_extensions.TypedDict); with filterwarnings=error that turns the
# failure report into an INTERNALERROR. Import it once here, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import libcst.metadata.type_inference_provider  # noqa: F401
    except Exception:
        pass

N_EXAMPLES = int(os.environ.get("FASTLAYERS_HYPOTHESIS_EXAMPLES", "12"))
SETTINGS = settings(
    deadline=None,
    max_examples=N_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
RUN_COUNTS: Counter = Counter()


# ---- drawing helpers -----------------------------------------------------------------------
class Gen:
    """Every random choice goes through int/bool/choice/float/perm, so tools/fuzz_args.py can
    drive the same generators from a seeded random.Random (RandomGen there).

    Hypothesis draws for the structure (shapes, flags, layouts) + a NumPy generator, seeded by
    hypothesis, for the values (fast, and shrinking still works on the structure)."""

    def __init__(self, data):
        self.data = data
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))

    def int(self, lo, hi):
        return self.data.draw(st.integers(lo, hi))

    def bool(self):
        return self.data.draw(st.booleans())

    def choice(self, seq):
        return self.data.draw(st.sampled_from(list(seq)))

    def float(self, lo, hi):
        return self.data.draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False))

    def perm(self, n):
        return self.data.draw(st.permutations(range(n)))

    def dims(self, n, lo=1, hi=5):
        return tuple(self.int(lo, hi) for _ in range(n))

    def arr(self, shape, scale=1.0, layout=True, writable=False, positive=False, unit=False):
        """float32 array of `shape` in a random memory layout: C-contiguous, every-other
        element (step 2), reversed (negative strides), permuted axes, or a zero-stride
        broadcast view (read-only, so only when not `writable`)."""
        shape = tuple(int(s) for s in shape)

        def values(shp):
            if unit:
                v = self.rng.uniform(0.02, 0.98, shp)
            else:
                v = self.rng.standard_normal(shp) * scale
                if positive:
                    v = np.abs(v) + 0.5
            return v.astype(np.float32)

        modes = ["c"]
        if layout:
            modes += ["step", "rev", "perm"] + ([] if writable or not shape else ["bcast"])
        mode = self.choice(modes)
        if mode == "c":
            return values(shape)
        if mode == "step":
            big = values(tuple(2 * s for s in shape))
            return big[tuple(slice(None, None, 2) for _ in shape)]
        if mode == "rev":
            return values(shape)[tuple(slice(None, None, -1) for _ in shape)]
        if mode == "perm":
            perm = self.perm(len(shape))
            inv = np.argsort(perm)
            return values(tuple(shape[p] for p in perm)).transpose(inv)
        ax = self.int(0, len(shape) - 1)  # bcast: one axis (or the whole array) repeated
        small = list(shape)
        small[ax] = 1 if shape[ax] else 0
        return np.broadcast_to(values(tuple(small)), shape)

    def ints(self, shape, lo, hi, dtype=None):
        dtype = dtype or self.choice([np.int64, np.int32, np.int16, np.uint8])
        hi = min(hi, np.iinfo(dtype).max + 1)
        return self.rng.integers(lo, hi, shape).astype(dtype)


class RandomGen(Gen):
    """Gen driven by a seeded random.Random instead of hypothesis (the fuzzer and the
    reliability tests draw configurations from the same table)."""

    def __init__(self, r):
        self.r = r
        self.rng = np.random.default_rng(r.getrandbits(32))

    def int(self, lo, hi):
        return self.r.randint(lo, hi)

    def bool(self):
        return self.r.random() < 0.5

    def choice(self, seq):
        return self.r.choice(list(seq))

    def float(self, lo, hi):
        return self.r.uniform(lo, hi)

    def perm(self, n):
        p = list(range(n))
        self.r.shuffle(p)
        return p


def _pair_or_int(g, lo, hi):
    return g.int(lo, hi) if g.bool() else (g.int(lo, hi), g.int(lo, hi))


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---- valid configurations, one entry per kernel ----------------------------------------------
# Each maps Gen -> (args, kwargs). Backward entries are built from the forward ones below.
def _unary(extra=None):
    def make(g):
        x = g.arr(g.dims(g.int(0, 4), 0, 6), scale=3.0)
        return (x,), (extra(g) if extra else {})

    return make


def _softmax(g):
    shape = g.dims(g.int(1, 4), 1, 6)
    return (g.arr(shape, scale=5.0),), {"axis": g.int(-len(shape), len(shape) - 1)}


def _gemm(g):
    m, n, k = g.int(0, 9), g.int(0, 9), g.int(0, 9)
    ta, tb = g.bool(), g.bool()
    a = g.arr((k, m) if ta else (m, k))
    b = g.arr((n, k) if tb else (k, n))
    kw = {"trans_a": ta, "trans_b": tb, "alpha": g.float(-2, 2)}
    c = None
    if g.bool():
        c = g.arr(g.choice([(m, n), (n,), (m, 1), (1, n)]))
        kw["beta"] = g.float(-2, 2)
    return (a, b, c), kw


def _matmul(g):
    ra, rb = g.int(1, 4), g.int(1, 4)
    m, n, k = g.int(1, 6), g.int(1, 6), g.int(0, 6)
    nb = max(ra, rb) - 2
    batch = g.dims(max(nb, 0), 1, 3)

    def bshape(r):
        full = batch[len(batch) - (r - 2):] if r > 2 else ()
        return tuple(1 if g.int(0, 3) == 0 else s for s in full)

    a = g.arr((k,) if ra == 1 else bshape(ra) + (m, k))
    b = g.arr((k,) if rb == 1 else bshape(rb) + (k, n))
    return (a, b), {}


ACTS = [None, "relu", "gelu", "tanh", "sigmoid"]


def _linear(g):
    n_in, n_out = g.int(1, 9), g.int(1, 9)
    x = g.arr(g.dims(g.int(0, 2), 0, 4) + (n_in,))
    w = g.arr((n_out, n_in))
    b = g.arr((n_out,)) if g.bool() else None
    return (x, w, b), {"activation": g.choice(ACTS)}


def _conv2d(g):
    groups = g.int(1, 3)
    cin, cout = groups * g.int(1, 2), groups * g.int(1, 2)
    kh, kw = g.int(1, 3), g.int(1, 3)
    stride, dilation = _pair_or_int(g, 1, 3), _pair_or_int(g, 1, 2)
    dh, dw = _pair(dilation)
    if g.int(0, 3) == 0:
        padding = g.choice(["valid", "same"] if stride in (1, (1, 1)) else ["valid"])
    else:
        padding = _pair_or_int(g, 0, 2)
    if padding == "same" or padding == "valid":
        ph = pw = 0
    else:
        ph, pw = _pair(padding)
    h = g.int(max(1, dh * (kh - 1) + 1 - 2 * ph), 9)
    w = g.int(max(1, dw * (kw - 1) + 1 - 2 * pw), 9)
    x = g.arr((g.int(0, 2), cin, h, w))
    weight = g.arr((cout, cin // groups, kh, kw), scale=0.5)
    bias = g.arr((cout,)) if g.bool() else None
    return (x, weight, bias), {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _conv_transpose2d(g):
    groups = g.int(1, 3)
    cin, cout = groups * g.int(1, 2), groups * g.int(1, 2)
    kh, kw = g.int(1, 3), g.int(1, 3)
    stride, dilation = _pair_or_int(g, 1, 3), _pair_or_int(g, 1, 2)
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    padding = _pair_or_int(g, 0, 2)
    ph, pw = _pair(padding)
    # output_padding must be smaller than stride or dilation (PyTorch's rule).
    op = (g.int(0, max(sh, dh) - 1), g.int(0, max(sw, dw) - 1))
    h, w = g.int(1, 6), g.int(1, 6)
    if (h - 1) * sh - 2 * ph + dh * (kh - 1) + op[0] + 1 < 1 or (w - 1) * sw - 2 * pw + dw * (kw - 1) + op[1] + 1 < 1:
        padding, op = 0, 0
    x = g.arr((g.int(0, 2), cin, h, w))
    weight = g.arr((cin, cout // groups, kh, kw), scale=0.5)
    bias = g.arr((cout,)) if g.bool() else None
    return (x, weight, bias), {"stride": stride, "padding": padding, "output_padding": op, "groups": groups,
                               "dilation": dilation}


def _pool_common(g, dilation_ok, min_n=0):
    k = _pair_or_int(g, 1, 3)
    kh, kw = _pair(k)
    stride = None if g.int(0, 2) == 0 else _pair_or_int(g, 1, 3)
    d = _pair_or_int(g, 1, 2) if dilation_ok else 1
    dh, dw = _pair(d)
    # With dilation a window can fall entirely into the padding (its taps skip the input);
    # max_pool2d refuses that (ValueError) where PyTorch returns -inf: keep such cases out.
    padding = (g.int(0, kh // 2) if dh == 1 else 0, g.int(0, kw // 2) if dw == 1 else 0)
    h = g.int(max(1, dh * (kh - 1) + 1 - 2 * padding[0]), 8)
    w = g.int(max(1, dw * (kw - 1) + 1 - 2 * padding[1]), 8)
    x = g.arr((g.int(min_n, 2), g.int(1, 3), h, w), scale=3.0)
    return x, k, stride, padding, d


def _max_pool2d(g, min_n=0):
    x, k, stride, padding, d = _pool_common(g, True, min_n)
    return (x, k), {"stride": stride, "padding": padding, "dilation": d, "ceil_mode": g.bool(),
                    "return_indices": g.bool()}


def _avg_pool2d(g):
    x, k, stride, padding, _ = _pool_common(g, False)
    return (x, k), {"stride": stride, "padding": padding, "ceil_mode": g.bool(),
                    "count_include_pad": g.bool()}


def _adaptive(g, max_pool, min_n=0):
    x = g.arr((g.int(min_n, 2), g.int(1, 3), g.int(1, 9), g.int(1, 9)))
    kw = {"return_indices": g.bool()} if max_pool else {}
    return (x, _pair_or_int(g, 1, 5)), kw


def _upsample(g):
    return (g.arr((g.int(0, 2), g.int(1, 3), g.int(1, 5), g.int(1, 5))), _pair_or_int(g, 1, 3)), {}


def _batch_norm(g):
    c = g.int(1, 4)
    training = g.bool()
    shape = (g.int(2, 4), c) + (g.dims(2, 1, 4) if g.bool() else ())
    x = g.arr(shape)
    rm = g.arr((c,), layout=False, writable=True)
    rv = g.arr((c,), layout=False, writable=True, positive=True)
    w = g.arr((c,)) if g.bool() else None
    b = g.arr((c,)) if g.bool() else None
    return (x, rm, rv, w, b), {"training": training, "momentum": g.float(0.0, 1.0), "eps": g.float(1e-5, 1e-2),
                               "return_stats": training and g.bool()}


def _layer_norm(g):
    shape = g.dims(g.int(1, 4), 1, 6)
    nd = g.int(1, len(shape))
    ns = shape[len(shape) - nd:]
    w = g.arr(ns) if g.bool() else None
    b = g.arr(ns) if g.bool() else None
    return (g.arr(shape), ns, w, b), {"eps": g.float(1e-6, 1e-2)}


def _embedding(g):
    num, dim = g.int(1, 8), g.int(1, 6)
    idx = g.ints(g.dims(g.int(0, 3), 0, 4), 0, num)
    kw = {"padding_idx": g.int(-num, num - 1)} if g.int(0, 3) == 0 else {}
    return (idx, g.arr((num, dim))), kw


def _dropout(g):
    x = g.arr(g.dims(g.int(0, 3), 0, 6))
    return (x,), {"p": g.choice([0.0, 0.1, 0.5, 0.9, 1.0]), "training": g.int(0, 3) > 0, "seed": g.int(0, 2**40)}


def _dropout_backward(g):
    (x,), kw = _dropout(g)
    _, mask = fl.dropout(x, **kw)
    kw.pop("seed")
    return (g.arr(x.shape), mask), kw


def _rnn_weights(g, gates, i, h, bias=True):
    s = 1.0 / np.sqrt(h)
    w_ih, w_hh = g.arr((gates * h, i), scale=s), g.arr((gates * h, h), scale=s)
    b_ih = g.arr((gates * h,), scale=s) if bias else None
    b_hh = g.arr((gates * h,), scale=s) if bias else None
    return w_ih, w_hh, b_ih, b_hh


def _lstm_cell(g):
    b, i, h = g.int(0, 4), g.int(1, 5), g.int(1, 5)
    w = _rnn_weights(g, 4, i, h, g.bool())
    return (g.arr((b, i)), g.arr((b, h)), g.arr((b, h))) + w, {}


def _rnn_cell(g):
    b, i, h = g.int(0, 4), g.int(1, 5), g.int(1, 5)
    w = _rnn_weights(g, 1, i, h, g.bool())
    return (g.arr((b, i)), g.arr((b, h))) + w, {"nonlinearity": g.choice(["tanh", "relu"])}


def _seq(g, gates, lstm):
    t, b, i, h = g.int(0, 4), g.int(0, 3), g.int(1, 4), g.int(1, 4)
    layers, bidir, bf = g.int(1, 2), g.bool(), g.bool()
    nd = 2 if bidir else 1
    params = [
        _rnn_weights(g, gates, i if layer == 0 else h * nd, h)
        for layer in range(layers) for _ in range(nd)
    ]
    x = g.arr((b, t, i) if bf else (t, b, i))
    h0 = g.arr((layers * nd, b, h)) if g.bool() else None
    kw = {"num_layers": layers, "bidirectional": bidir, "batch_first": bf}
    if lstm:
        c0 = g.arr((layers * nd, b, h)) if h0 is not None else None
        return (x, params, h0, c0), kw
    kw["nonlinearity"] = g.choice(["tanh", "relu"])
    return (x, params, h0), kw


def _sdpa(g):
    batch = g.dims(g.int(0, 2), 1, 2)
    hk = g.int(1, 2)
    gqa = g.bool()
    hq = hk * (g.int(1, 2) if gqa else 1)
    l, s, e, ev = g.int(0, 5), g.int(1, 5), g.int(1, 6), g.int(1, 6)
    q, k, v = g.arr(batch + (hq, l, e)), g.arr(batch + (hk, s, e)), g.arr(batch + (hk, s, ev))
    mask = None
    causal = g.bool()
    if not causal and g.bool():
        mshape = tuple(d if g.bool() else 1 for d in batch + (hq, l, s))
        mask = g.rng.random(mshape) < 0.7 if g.bool() else g.arr(mshape)
    scale = g.float(0.1, 2.0) if g.bool() else None
    return (q, k, v, mask), {"is_causal": causal, "scale": scale, "enable_gqa": gqa, "return_lse": g.bool()}


REDUCTIONS = ["mean", "sum", "none"]


def _mse(g):
    shape = g.dims(g.int(1, 3), 1, 5)
    return (g.arr(shape), g.arr(shape)), {"reduction": g.choice(REDUCTIONS)}


def _bce(g):
    shape = g.dims(g.int(1, 3), 1, 5)
    return (g.arr(shape, unit=True), g.arr(shape, unit=True)), {"reduction": g.choice(REDUCTIONS)}


def _bce_logits(g):
    shape = g.dims(g.int(1, 3), 1, 5)
    return (g.arr(shape, scale=3.0), g.arr(shape, unit=True)), {"reduction": g.choice(REDUCTIONS)}


def _cross_entropy(g):
    n, c = g.int(1, 5), g.int(1, 6)
    extra = g.dims(g.int(0, 2), 1, 3)
    logits = g.arr((n, c) + extra, scale=3.0)
    target = g.ints((n,) + extra, 0, c)
    if g.bool():  # some ignored positions (not all, so "mean" stays defined)
        target = target.astype(np.int64)
        target.reshape(-1)[1::3] = -100
    return (logits, target), {"reduction": g.choice(REDUCTIONS), "label_smoothing": g.choice([0.0, 0.1, 0.5])}


KERNELS = {
    "gemm": _gemm, "matmul": _matmul, "linear": _linear,
    "relu": _unary(), "leaky_relu": _unary(lambda g: {"negative_slope": g.float(-1, 1)}),
    "sigmoid": _unary(), "tanh": _unary(), "gelu": _unary(lambda g: {"approximate": g.choice(["none", "tanh"])}),
    "softmax": _softmax, "log_softmax": _softmax,
    "conv2d": _conv2d, "conv_transpose2d": _conv_transpose2d,
    "max_pool2d": _max_pool2d, "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": lambda g: _adaptive(g, False), "adaptive_max_pool2d": lambda g: _adaptive(g, True),
    "upsample_nearest2d": _upsample,
    "batch_norm": _batch_norm, "layer_norm": _layer_norm, "embedding": _embedding,
    "lstm_cell": _lstm_cell, "rnn_cell": _rnn_cell,
    "lstm": lambda g: _seq(g, 4, True), "rnn": lambda g: _seq(g, 1, False),
    "scaled_dot_product_attention": _sdpa,
    "mse_loss": _mse, "binary_cross_entropy": _bce, "binary_cross_entropy_with_logits": _bce_logits,
    "cross_entropy": _cross_entropy, "dropout": _dropout,
}
# Random kernels: no reference to match (test_dropout_properties checks their properties).
NO_REFERENCE = {"dropout"}
# Looser tolerances (float32 kernel vs float64 truth), each with its reason.
RTOL = {
    # Recurrences compound float32 rounding through T steps and layers; log-sum-exp in
    # attention/cross-entropy carries an extra ~1e-6 x |logit| term.
    "lstm": 1e-3, "rnn": 1e-3, "lstm_backward": 1e-3, "rnn_backward": 1e-3,
}


# ---- backward: grad_out + the forward's arguments ---------------------------------------------
def _forward_out(name, args, kw):
    out = getattr(fl, name)(*args, **kw)
    return out


def _backward_of(fname):
    """f_backward(grad_out, *f's args, **f's kwargs) for kernels whose backward needs nothing
    else; grad_out has the forward output's shape (the first output for tuple results)."""

    def make(g):
        args, kw = KERNELS[fname](g)
        out = _forward_out(fname, args, kw)
        shape = np.shape(out[0] if isinstance(out, tuple) else out)
        return (g.arr(shape),) + tuple(args), kw

    return make


def _max_pool_backward(g):
    args, kw = _max_pool2d(g, min_n=1)  # N >= 1: KNOWN reference bug, see REFERENCE_ISSUES
    kw = dict(kw, return_indices=True)
    y, idx = fl.max_pool2d(*args, **kw)
    kw.pop("return_indices")
    return (g.arr(y.shape), args[0], idx) + tuple(args[1:]), kw


def _adaptive_max_backward(g):
    (x, size), _ = _adaptive(g, True, min_n=1)  # N >= 1: KNOWN reference bug, see REFERENCE_ISSUES
    y, idx = fl.adaptive_max_pool2d(x, size, return_indices=True)
    return (g.arr(y.shape), x, idx, size), {}


def _batch_norm_backward(g):
    (x, rm, rv, w, b), kw = _batch_norm(g)
    _, (mean, invstd) = fl.batch_norm(x, rm, rv, w, b, training=kw["training"], eps=kw["eps"], return_stats=True)
    return (g.arr(x.shape), x, w, mean, invstd, kw["training"]), {"has_bias": b is not None}


def _lstm_cell_backward(g):
    args, kw = _lstm_cell(g)
    h, c = fl.lstm_cell(*args)
    return (g.arr(h.shape), g.arr(c.shape)) + args, kw


def _seq_backward(lstm):
    def make(g):
        args, kw = _seq(g, 4 if lstm else 1, lstm)
        res = (fl.lstm if lstm else fl.rnn)(*args, **kw, training=True)
        out, hn, reserve = res[0], (res[1][0] if lstm else res[1]), res[2]
        grads = (g.arr(out.shape), g.arr(hn.shape)) + ((g.arr(hn.shape),) if lstm else ())
        return grads + (args[0], args[1], reserve) + tuple(args[2:]), kw

    return make


def _sdpa_backward(g):
    args, kw = _sdpa(g)
    kw = dict(kw, return_lse=True)
    out, lse = fl.scaled_dot_product_attention(*args, **kw)
    kw.pop("return_lse")
    return (g.arr(out.shape), args[0], args[1], args[2], out, lse, args[3]), kw


def _ref_seq_reserve(lstm):
    """The reference backward needs the reference forward's own reserve."""
    def fix(args64, kw):
        i = 5 if lstm else 4
        x, params = args64[i - 2], args64[i - 1]
        states = args64[i + 1:]
        ref = (R.lstm if lstm else R.rnn)(x, params, *states, **kw, training=True)
        return args64[:i] + (ref[2],) + args64[i + 1:]

    return fix


def _absmax(a):
    return float(np.abs(np.asarray(a, np.float64)).max(initial=0.0)) if a is not None else 1.0


def _norm_backward_floor(args, kw, axes_of):
    """Normalisation gradients are differences of terms of size rstd*|g|*|w|; float32 rounds
    those terms at ~6e-8, so a true gradient of 0 (e.g. one normalised element) comes out as
    ~1e-7 of them. The floor is 1e-5 of the term size, not of the (possibly zero) result."""
    g, x, w = args[0], np.asarray(args[1], np.float64), args[2] if len(args) > 2 else None
    var = x.var(axis=axes_of(x, args), keepdims=True) if x.size else np.zeros(1)
    rstd = float((1.0 / np.sqrt(var + kw.get("eps", 1e-5))).max(initial=1.0))
    return 1e-5 * _absmax(g) * max(1.0, _absmax(w)) * rstd


def _ln_floor(args, kw):
    ns = args[2]
    nd = 1 if isinstance(ns, int) else len(ns)
    w = args[3]
    return _norm_backward_floor((args[0], args[1], w), {"eps": kw.get("eps", 1e-5)},
                                lambda x, a: tuple(range(x.ndim - nd, x.ndim)))


def _bn_floor(args, kw):
    g, x, w, mean, invstd = args[:5]
    return 1e-5 * _absmax(g) * max(1.0, _absmax(w)) * _absmax(invstd)


def _sdpa_floor(args, kw):
    """dS = P * (dP - rowsum(P dP)): a difference of terms of size |dO||V|Ev; a true
    gradient of 0 (one key, or a uniform row) comes out as float32 rounding of those terms."""
    g, q, k, v = args[:4]
    e, ev = q.shape[-1], v.shape[-1]
    scale = kw.get("scale") or 1.0 / np.sqrt(max(e, 1))
    return 1e-5 * _absmax(g) * _absmax(v) * ev * max(_absmax(q), _absmax(k), 1.0) * e * scale


def _bn_forward_floor(args, kw):
    """Training normalises by batch statistics: the float32 mean is off by a few ulps of |x|,
    and that error is multiplied by invstd <= 1/sqrt(eps) (large for a near-constant channel,
    whose true output is 0). The bound is 4 ulps of max|x| times that factor."""
    if not kw.get("training"):
        return 0.0
    x, w = args[0], args[3]
    return 4 * 6e-8 * _absmax(x) / np.sqrt(kw.get("eps", 1e-5)) * max(1.0, _absmax(w) if w is not None else 1.0)


ATOL_FLOOR = {"batch_norm": _bn_forward_floor, "layer_norm_backward": _ln_floor, "batch_norm_backward": _bn_floor,
              "scaled_dot_product_attention_backward": _sdpa_floor}

REF_FIX = {"lstm_backward": _ref_seq_reserve(True), "rnn_backward": _ref_seq_reserve(False)}

AUTO_BACKWARD = [
    "gemm", "matmul", "linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax",
    "conv2d", "conv_transpose2d", "avg_pool2d", "adaptive_avg_pool2d", "upsample_nearest2d", "layer_norm",
    "embedding", "rnn_cell", "mse_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "cross_entropy",
]
for _f in AUTO_BACKWARD:
    KERNELS[_f + "_backward"] = _backward_of(_f)
KERNELS.update({
    "max_pool2d_backward": _max_pool_backward, "adaptive_max_pool2d_backward": _adaptive_max_backward,
    "batch_norm_backward": _batch_norm_backward, "lstm_cell_backward": _lstm_cell_backward,
    "lstm_backward": _seq_backward(True), "rnn_backward": _seq_backward(False),
    "scaled_dot_product_attention_backward": _sdpa_backward, "dropout_backward": _dropout_backward,
})


# ---- comparison ---------------------------------------------------------------------------------
def to_f64(obj):
    """float32 arrays -> float64 copies (recursively through lists/tuples); the rest as is."""
    if isinstance(obj, np.ndarray) and obj.dtype == np.float32:
        return obj.astype(np.float64)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_f64(o) for o in obj)
    return obj


def copy_args(obj):
    if isinstance(obj, np.ndarray):
        return obj.copy() if obj.flags.writeable else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_args(o) for o in obj)
    return obj


def compare(actual, expected, name, rtol=1e-4, atol_floor=1e-6):
    if expected is None:
        assert actual is None, f"{name}: expected None, got {type(actual).__name__}"
        return
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected), (
            f"{name}: expected a sequence of {len(expected)}, got {type(actual).__name__}")
        for i, (a, e) in enumerate(zip(actual, expected)):
            compare(a, e, f"{name}[{i}]", rtol, atol_floor)
        return
    if not isinstance(expected, (np.ndarray, np.generic, float, int)):
        return  # opaque objects (e.g. the recurrent `reserve`)
    e = np.asarray(expected)
    a = np.asarray(actual)
    if e.dtype.kind in "iub":
        np.testing.assert_array_equal(a, e, err_msg=name)
        return
    if a.ndim == 0 and a.dtype != np.float32:  # a Python float from a reduction
        a = a.astype(np.float32)
    assert_close(a, e, rtol=rtol, atol_floor=max(atol_floor, 1e-6), name=name)


def _require_kernel(name):
    """Every table entry names a kernel that exists: a missing one is a failure, not a skip."""
    assert name in fl.functional.__all__ and hasattr(R, name), f"{name}: no kernel or reference"


# ---- valid configurations vs the reference ----------------------------------------------------
@pytest.mark.parametrize("name", sorted(set(KERNELS) - NO_REFERENCE))  # random ones: test_<name>_properties
@SETTINGS
@given(data=st.data())
def test_valid_matches_reference(name, data):
    _require_kernel(name)
    g = Gen(data)
    args, kw = KERNELS[name](g)
    RUN_COUNTS[name, "valid"] += 1
    ref_args = to_f64(copy_args(args))
    if name in REF_FIX:
        ref_args = REF_FIX[name](ref_args, kw)
    with np.errstate(all="ignore"):
        want = getattr(R, name)(*ref_args, **kw)
    mine_args = copy_args(args)
    got = getattr(fl, name)(*mine_args, **kw)
    floor = ATOL_FLOOR[name](args, kw) if name in ATOL_FLOOR else 1e-6
    compare(got, want, name, RTOL.get(name, 1e-4), floor)
    if name == "batch_norm" and kw["training"]:  # running stats updated in place, like the reference
        ref_args = to_f64(copy_args(args))
        getattr(R, name)(*ref_args, **kw)
        compare(mine_args[1], ref_args[1], "running_mean")
        compare(mine_args[2], ref_args[2], "running_var")


def test_dropout_properties():
    """dropout is random: no reference to match; check the properties instead."""
    _require_kernel("dropout")

    @SETTINGS
    @given(data=st.data())
    def run(data):
        g = Gen(data)
        x = g.arr(g.dims(g.int(1, 3), 0, 6))
        p = g.choice([0.0, 0.1, 0.5, 0.9])
        seed = g.int(0, 2**31 - 1)
        RUN_COUNTS["dropout", "valid"] += 1
        y, mask = fl.dropout(x, p=p, training=True, seed=seed)
        y2, _ = fl.dropout(x, p=p, training=True, seed=seed)
        np.testing.assert_array_equal(y, y2)  # same seed, same result
        kept = np.asarray(mask) != 0
        np.testing.assert_allclose(y[kept], (x[kept] / (1 - p)).astype(np.float32), rtol=1e-6)
        assert (y[~kept] == 0).all()
        if p == 0.0:
            assert kept.all()
        y3, _ = fl.dropout(x, p=p, training=False)
        np.testing.assert_array_equal(y3, x)

    run()


def test_matmul_k0_batched():
    a, b = np.ones((2, 3, 0), np.float32), np.ones((0, 4), np.float32)
    np.testing.assert_array_equal(fl.matmul(a, b), np.zeros((2, 3, 4), np.float32))


# Reference (oracle) issues found by these tests, worked around above:
REFERENCE_ISSUES = {
    "max_pool2d_backward / adaptive_max_pool2d_backward": "reference/pool.py _scatter_indices: "
    "grad_out.reshape(n * c, -1) fails for an empty batch (N = 0)",
}


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "gelu", "leaky_relu", "softmax", "log_softmax"])
def test_zero_dim_shape_kept(name):
    _require_kernel(name)
    x = np.array(0.5, np.float32)
    assert getattr(fl, name)(x).shape == ()


# ---- invalid configurations ---------------------------------------------------------------------
def _arg_names(fn, n):
    params = list(inspect.signature(fn).parameters)
    return params[:n]


def _array_slots(args):
    return [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]


def _mut_dtype(g, name, args, kw):
    """A float32 argument in another dtype (or an index array in float32) -> TypeError naming it."""
    slots = _array_slots(args)
    if not slots:
        return None
    i = g.choice(slots)
    a = args[i]
    argname = _arg_names(getattr(fl, name), len(args))[i]
    if a.dtype.kind in "iu":
        bad = a.astype(g.choice([np.float32, np.float64]))
    elif a.dtype.kind == "b" or argname == "attn_mask":  # masks: bool or float32
        bad = a.astype(g.choice([np.float64, np.int32, np.complex64]))
    else:
        bad = a.astype(g.choice([np.float64, np.int32, np.float16, np.int64, np.bool_, np.complex64]))
    return args[:i] + (bad,) + args[i + 1:], kw, TypeError, argname


def _mut_not_array(g, name, args, kw):
    """A list, tuple, string or scalar where an array is expected -> TypeError."""
    slots = _array_slots(args)
    if not slots:
        return None
    i = g.choice(slots)
    bad = g.choice([args[i].tolist(), "x", 3, 2.5, (1, 2), {}, object()])
    if isinstance(bad, list) and not bad:
        bad = [[]]
    argname = _arg_names(getattr(fl, name), len(args))[i]
    return args[:i] + (bad,) + args[i + 1:], kw, TypeError, argname


def _with(args, i, v):
    return args[:i] + (v,) + args[i + 1:]


def _bad_kw(key, values, exc=ValueError):
    def mut(g, name, args, kw):
        return args, dict(kw, **{key: g.choice(values)}), exc, key

    return mut


def _extra_dim(i, argname):
    def mut(g, name, args, kw):
        a = args[i]
        if not isinstance(a, np.ndarray):
            return None
        return _with(args, i, a[None] if g.bool() else a[..., None]), kw, ValueError, argname

    return mut


def _shrink(i, axis, argname):
    """Drop one element along an axis of argument i -> mismatched size."""
    def mut(g, name, args, kw):
        a = args[i]
        if not isinstance(a, np.ndarray) or a.ndim <= abs(axis) - (axis < 0) or a.shape[axis] == 0:
            return None
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(1, None) if a.shape[axis] > 1 else slice(0, 0)
        b = a[tuple(sl)]
        if a.shape[axis] == 1:  # grow instead of making it empty
            b = np.concatenate([a, a], axis=axis)
        return _with(args, i, b), kw, ValueError, argname

    return mut


INVALID = {
    "gemm": [lambda g, name, args, kw: _shrink(1, 1 if kw["trans_b"] else 0, "gemm")(g, name, args, kw)],
    "matmul": [_shrink(1, -2, "matmul")],
    "linear": [_shrink(1, 1, "linear"), _extra_dim(1, "weight"), _bad_kw("activation", ["elu", "RELU"])],
    "leaky_relu": [],
    "gelu": [_bad_kw("approximate", ["fast", None, 1])],
    "softmax": [_bad_kw("axis", [7, -9]), _bad_kw("axis", [1.0, None, "0"], TypeError)],
    "log_softmax": [_bad_kw("axis", [7, -9]), _bad_kw("axis", [1.0, None, "0"], TypeError)],
    "conv2d": [_shrink(1, 1, "weight"), _extra_dim(0, "x"), _bad_kw("stride", [0, -1, -(2**31), (1, 0), (-1, 2), (1, 2, 3), "2", 1.5, None, True], (TypeError, ValueError)),
               _bad_kw("dilation", [0, -2], ValueError), _bad_kw("groups", [0, -1, 7], ValueError),
               _bad_kw("padding", [-1, "full", (0, -1)], ValueError)],
    "conv_transpose2d": [_extra_dim(0, "x"), _bad_kw("stride", [0, -1], ValueError),
                         _bad_kw("groups", [0, -1, 7], ValueError), _bad_kw("output_padding", [-1, 5], ValueError)],
    "max_pool2d": [_extra_dim(0, "x"), _bad_kw("stride", [0, -1], ValueError), _bad_kw("padding", [-1, 9], ValueError),
                   _bad_kw("dilation", [0, -1], ValueError)],
    "avg_pool2d": [_extra_dim(0, "x"), _bad_kw("stride", [0, -1], ValueError), _bad_kw("padding", [-1, 9], ValueError)],
    "adaptive_avg_pool2d": [_extra_dim(0, "x")],
    "adaptive_max_pool2d": [_extra_dim(0, "x")],
    "upsample_nearest2d": [_extra_dim(0, "x")],
    "batch_norm": [_shrink(1, 0, "running_mean"), _bad_kw("eps", [-1.0], ValueError)],
    "layer_norm": [_shrink(2, -1, "weight")],
    "embedding": [_extra_dim(1, "weight"), _bad_kw("padding_idx", [99, -99], ValueError),
                  _bad_kw("padding_idx", [1.0, "0"], TypeError)],
    "dropout": [_bad_kw("p", [-0.1, 1.5, float("nan")], ValueError), _bad_kw("p", ["0.5", None], TypeError),
                # the seed is only looked at when training (eval is the identity)
                lambda g, n, a, kw: _bad_kw("seed", [1.5, "1"], TypeError)(g, n, a, kw) if kw["training"] else None],
    "lstm_cell": [_shrink(3, 0, "w_ih"), _shrink(1, 1, "hx")],
    "rnn_cell": [_shrink(2, 0, "w_ih"), _bad_kw("nonlinearity", ["sigmoid", None])],
    "scaled_dot_product_attention": [_shrink(1, -1, "k"), _shrink(2, -2, "v")],
    "mse_loss": [_bad_kw("reduction", ["avg", None, "SUM"]), _shrink(1, 0, "target")],
    "binary_cross_entropy": [_bad_kw("reduction", ["avg", None])],
    "binary_cross_entropy_with_logits": [_bad_kw("reduction", ["avg", None])],
    "cross_entropy": [_bad_kw("reduction", ["avg", None]), _bad_kw("label_smoothing", [-0.1, 1.5], ValueError)],
}
GENERIC_INVALID = [_mut_dtype, _mut_not_array]


@pytest.mark.parametrize("name", sorted(KERNELS))
@SETTINGS
@given(data=st.data())
def test_invalid_raises(name, data):
    _require_kernel(name)
    g = Gen(data)
    args, kw = KERNELS[name](g)
    muts = GENERIC_INVALID + INVALID.get(name, [])
    mutated = g.choice(muts)(g, name, args, kw)
    if mutated is None:
        return
    bad_args, bad_kw, exc, argname = mutated
    RUN_COUNTS[name, "invalid"] += 1
    with pytest.raises(exc) as info:
        getattr(fl, name)(*bad_args, **bad_kw)
    if exc is TypeError and argname:
        # API.md: a TypeError names the argument.
        assert argname in str(info.value), f"{name}: {info.value!r} does not name {argname!r}"


# ---- index overflow (run in a subprocess with a memory limit) ---------------------------------
def _ovf_upsample():
    return fl.upsample_nearest2d(np.ones((1, 1, 2, 2), np.float32), (2**16, 2**16))


def _ovf_upsample_huge():
    return fl.upsample_nearest2d(np.ones((1, 1, 2, 2), np.float32), 2**40)


def _ovf_adaptive():
    return fl.adaptive_avg_pool2d(np.ones((1, 1, 3, 3), np.float32), (2**31 + 1, 2))


def _ovf_conv_t_stride():
    return fl.conv_transpose2d(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 1, 1), np.float32),
                               stride=(2**31, 2))


def _ovf_conv_padding():
    return fl.conv2d(np.ones((1, 1, 2, 2), np.float32), np.ones((1, 1, 1, 1), np.float32), padding=2**31)


def _ovf_conv_dilation():
    return fl.conv2d(np.ones((1, 1, 4, 4), np.float32), np.ones((1, 1, 2, 2), np.float32), dilation=2**62)


def _ovf_pool_stride():
    """A stride far beyond the input: one output per window start inside the input."""
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    y = fl.max_pool2d(x, 2, stride=2**62, ceil_mode=True)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 5.0, y
    y = fl.avg_pool2d(x, 2, stride=2**62, ceil_mode=True)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == 2.5, y
    return "ok"


def _ovf_pool_kernel():
    return fl.max_pool2d(np.ones((1, 1, 4, 4), np.float32), 2**31 + 3)


def _ovf_relu_bcast():
    """2**32 elements through a zero-stride view: the output is legitimately 16 GiB."""
    return fl.relu(np.broadcast_to(np.float32(1), (2**16, 2**16)))


def _ovf_softmax_bcast():
    return fl.softmax(np.broadcast_to(np.float32(1), (2**31 + 5,)))


def _ovf_matmul_batch():
    return fl.matmul(np.broadcast_to(np.float32(1), (2**20, 1, 1, 1)), np.broadcast_to(np.float32(1), (1, 2**12, 1, 1)))


def _ovf_gemm_empty_huge_k():
    """m = 0 with k beyond 2**31 (zero-stride views): an empty result, at once."""
    k = 2**31 + 8
    out = fl.gemm(np.broadcast_to(np.float32(1), (0, k)), np.broadcast_to(np.float32(1), (k, 3)))
    assert out.shape == (0, 3)
    return "ok"


def _ovf_embedding():
    w = np.ones((10, 4), np.float32)
    for bad in (np.array([2**40]), np.array([2**31 + 1], np.int64), np.array([-1]), np.array([2**64 - 1], np.uint64)):
        try:
            fl.embedding(bad, w)
        except (ValueError, IndexError):
            continue
        raise AssertionError(f"embedding accepted out-of-range index {bad}")
    return "ok"


def _ovf_cross_entropy():
    try:
        fl.cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 2**40]))
    except ValueError:
        return "ok"
    raise AssertionError("cross_entropy accepted target 2**40 with 3 classes")


def _ovf_layer_norm():
    return fl.layer_norm(np.ones((2, 3), np.float32), (2**40,))


def _ovf_lstm_len():
    w = (np.ones((4, 1), np.float32), np.ones((4, 1), np.float32), None, None)
    return fl.lstm(np.broadcast_to(np.float32(1), (2**31 + 1, 1, 1)), [w])


OVERFLOW = {  # name: (kernel it needs, function)
    "upsample_2^32": ("upsample_nearest2d", _ovf_upsample),
    "upsample_2^40": ("upsample_nearest2d", _ovf_upsample_huge),
    "adaptive_avg_2^31": ("adaptive_avg_pool2d", _ovf_adaptive),
    "conv_transpose_stride_2^31": ("conv_transpose2d", _ovf_conv_t_stride),
    "conv_padding_2^31": ("conv2d", _ovf_conv_padding),
    "conv_dilation_2^62": ("conv2d", _ovf_conv_dilation),
    "pool_stride_2^62": ("max_pool2d", _ovf_pool_stride),
    "pool_kernel_2^31": ("max_pool2d", _ovf_pool_kernel),
    "relu_bcast_2^32": ("relu", _ovf_relu_bcast),
    "softmax_bcast_2^31": ("softmax", _ovf_softmax_bcast),
    "matmul_batch_2^32": ("matmul", _ovf_matmul_batch),
    "gemm_empty_k_2^31": ("gemm", _ovf_gemm_empty_huge_k),
    "embedding_index_2^40": ("embedding", _ovf_embedding),
    "cross_entropy_target_2^40": ("cross_entropy", _ovf_cross_entropy),
    "layer_norm_shape_2^40": ("layer_norm", _ovf_layer_norm),
    "lstm_T_2^31": ("lstm", _ovf_lstm_len),
}
# Acceptable outcomes: the right answer ("ok"), or a clean refusal. MemoryError means the
# sizes were computed exactly (no wrap) and the allocation was refused.
OVERFLOW_OK = ("ok", "ValueError", "TypeError", "MemoryError", "OverflowError")
MEM_LIMIT = 4 << 30

_CHILD = textwrap.dedent("""
    import os, resource, sys
    sys.path.insert(0, {tests!r})
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):
        # ASan reserves terabytes of shadow address space: no RLIMIT_AS under it
        # (tools/sanitize.sh caps allocations with max_allocation_size_mb instead).
        resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    import test_properties as tp
    try:
        r = tp.OVERFLOW[{name!r}][1]()
        print("RESULT", "ok" if r == "ok" else "ok-shape " + str(getattr(r, "shape", r)))
    except Exception as e:
        print("RESULT", type(e).__name__, str(e)[:300])
""")


@pytest.mark.parametrize("case", sorted(OVERFLOW))
def test_index_overflow(case):
    _require_kernel(OVERFLOW[case][0])
    code = _CHILD.format(tests=os.path.dirname(__file__), limit=MEM_LIMIT, name=case)
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:  # reports to stderr, to tell a refused allocation from an error
        env["ASAN_OPTIONS"] += ":log_path=stderr"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT")]
    asan_oom = "allocation-size-too-big" in p.stderr or "out-of-memory" in p.stderr or "exceeds maximum" in p.stderr
    if not lines and asan_oom:
        return  # under ASan a C++ operator new over the cap aborts instead of throwing bad_alloc
    assert p.returncode == 0 and lines, f"{case}: child died (rc {p.returncode})\n{p.stderr[-3000:]}"
    outcome = lines[-1].split()[1]
    RUN_COUNTS[case, "overflow:" + outcome] += 1
    assert outcome in OVERFLOW_OK, f"{case}: {lines[-1]}"
    if outcome == "ok-shape":
        # Only "ok" cases check their own values; a shape returned here means a kernel that
        # should have refused an absurd size returned something instead.
        raise AssertionError(f"{case}: returned {lines[-1]} where a refusal or checked answer was expected")


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    if not RUN_COUNTS:
        return
    per = Counter()
    for (name, kind), n in RUN_COUNTS.items():
        per[kind] += n
    lines = [f"hypothesis examples run (max_examples={N_EXAMPLES}): "
             + ", ".join(f"{k}={v}" for k, v in sorted(per.items()))]
    kernels = sorted({n for n, k in RUN_COUNTS if not k.startswith("overflow")})
    lines.append("  per kernel (valid/invalid): " + ", ".join(
        f"{n} {RUN_COUNTS[n, 'valid']}/{RUN_COUNTS[n, 'invalid']}" for n in kernels))
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))

"""gemm, matmul, linear vs the float64 NumPy reference; gradients vs reference and FD."""

import threading

import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, numeric_grad, randn

import fastlayers as fl
from fastlayers import reference as R

SHAPES = [  # (m, n, k): 1x1, skinny, tall, odd, across block edges (kc=256, mc=144, nc=3072)
    (1, 1, 1), (1, 17, 3), (17, 1, 3), (3, 5, 1), (7, 13, 5), (6, 16, 256), (97, 33, 257),
    (145, 17, 600), (1, 1000, 64), (1000, 1, 64), (64, 3100, 20), (300, 200, 129),
]


@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_reference(rng, m, n, k, trans_a, trans_b):
    a = randn(rng, *((k, m) if trans_a else (m, k)))
    b = randn(rng, *((n, k) if trans_b else (k, n)))
    out = fl.gemm(a, b, trans_a=trans_a, trans_b=trans_b)
    assert out.flags.c_contiguous
    assert_close(out, R.gemm(*f64(a, b), trans_a=trans_a, trans_b=trans_b))


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.5, 1.0), (-2.0, 0.25), (0.0, 3.0)])
def test_gemm_alpha_beta_and_broadcast_c(rng, alpha, beta):
    a, b = randn(rng, 37, 19), randn(rng, 19, 23)
    for c in (randn(rng, 37, 23), randn(rng, 23), randn(rng, 37, 1)):
        out = fl.gemm(a, b, c, alpha=alpha, beta=beta)
        assert_close(out, R.gemm(*f64(a, b, c), alpha=alpha, beta=beta))
        assert c.shape != out.shape or not np.shares_memory(c, out)


def test_gemm_beta_zero_ignores_nan_in_c(rng):
    a, b = randn(rng, 8, 9), randn(rng, 9, 10)
    c = np.full((8, 10), np.nan, np.float32)
    assert np.isfinite(fl.gemm(a, b, c, beta=0.0)).all()


def test_gemm_non_contiguous_and_negative_strides(rng):
    big_a, big_b = randn(rng, 80, 90), randn(rng, 70, 60)
    a = big_a[::2, 5:75:3]      # (40, 24), strided rows and columns
    b = big_b[::-3, ::2][:24]   # negative row stride
    assert_close(fl.gemm(a, b), R.gemm(*f64(a, b)))
    a_bc = np.broadcast_to(randn(rng, 1, 24), (40, 24))  # zero stride
    assert_close(fl.gemm(a_bc, b), R.gemm(*f64(a_bc, b)))


@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (5, 0, 3), (5, 3, 0), (0, 0, 0)])
def test_gemm_zero_size(rng, m, n, k):
    a, b = randn(rng, m, k), randn(rng, k, n)
    out = fl.gemm(a, b)
    assert out.shape == (m, n)
    assert_close(out, R.gemm(*f64(a, b)))


def test_gemm_large_square(rng):
    a, b = randn(rng, 1031, 1029), randn(rng, 1029, 1033)
    assert_close(fl.gemm(a, b), R.gemm(*f64(a, b)))


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_available_micro_kernel(rng, isa):
    """Each ISA's micro-kernel in turn (set_isa clamps to what the CPU has)."""
    from fastlayers import _core

    before = _core.cpu_isa()
    try:
        used = _core.set_isa(isa)
        for m, n, k in [(1, 1, 1), (13, 35, 7), (150, 70, 300)]:
            a, b = randn(rng, m, k), randn(rng, k, n)
            assert_close(fl.gemm(a, b), R.gemm(*f64(a, b)), name=f"isa {used}")
            x, w, bias = randn(rng, m, k), randn(rng, n, k), randn(rng, n)
            assert_close(fl.linear(x, w, bias, "gelu"), R.linear(*f64(x, w, bias), "gelu"), name=f"isa {used}")
    finally:
        _core.set_isa(before)


def test_gemm_backward(rng):
    for trans_a in (False, True):
        for trans_b in (False, True):
            a = randn(rng, *((6, 5) if trans_a else (5, 6)))
            b = randn(rng, *((4, 6) if trans_b else (6, 4)))
            c = randn(rng, 4)
            g = randn(rng, 5, 4)
            kw = dict(alpha=0.7, beta=1.3, trans_a=trans_a, trans_b=trans_b)
            got = fl.gemm_backward(g, a, b, c, **kw)
            want = R.gemm_backward(*f64(g, a, b, c), **kw)
            for x, y in zip(got, want):
                assert_close(x, y)
            check_directional(lambda a_, b_, c_: fl.gemm(a_, b_, c_, **kw), [a, b, c],
                              lambda go, a_, b_, c_: fl.gemm_backward(go, a_, b_, c_, **kw), rng)


MATMUL_SHAPES = [
    ((5,), (5,)), ((3, 5), (5,)), ((5,), (5, 4)), ((2, 3, 5), (5, 4)), ((2, 3, 5), (2, 5, 4)),
    ((1, 3, 5), (4, 5, 2)), ((2, 1, 3, 5), (1, 4, 5, 6)), ((7, 5), (3, 5, 2)), ((0, 3, 5), (5, 2)),
]


@pytest.mark.parametrize("sa,sb", MATMUL_SHAPES)
def test_matmul_matches_numpy_semantics(rng, sa, sb):
    a, b = randn(rng, *sa), randn(rng, *sb)
    out = fl.matmul(a, b)
    want = R.matmul(*f64(a, b))
    assert out.shape == want.shape
    assert_close(out, want)
    g = randn(rng, *want.shape)
    ga, gb = fl.matmul_backward(g, a, b)
    wa, wb = R.matmul_backward(*f64(g, a, b))
    assert_close(ga, wa)
    assert_close(gb, wb)


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh", "tanh", "sigmoid"])
@pytest.mark.parametrize("xshape", [(1, 7), (33, 50), (2, 3, 19), (19,), (0, 7)])
def test_linear_forward_backward(rng, activation, xshape):
    n_in = xshape[-1]
    x, w, b = randn(rng, *xshape), randn(rng, 11, n_in, scale=0.3), randn(rng, 11)
    for bias in (b, None):
        y = fl.linear(x, w, bias, activation)
        assert_close(y, R.linear(*f64(x, w, bias), activation))
        g = randn(rng, *y.shape)
        got = fl.linear_backward(g, x, w, bias, activation)
        want = R.linear_backward(*f64(g, x, w, bias), activation)
        for name, p, q in zip(("grad_x", "grad_w", "grad_b"), got, want):
            assert (p is None) == (q is None)
            if p is not None:
                assert_close(p, q, name=name)
        if activation in ("relu", "tanh", "sigmoid"):  # the y= shortcut gives the same result
            got_y = fl.linear_backward(g, x, w, bias, activation, y=y)
            for p, q in zip(got_y, got):
                if p is not None:
                    np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


def test_linear_reference_backward_vs_finite_differences(rng):
    x, w, b = f64(randn(rng, 3, 4), randn(rng, 5, 4), randn(rng, 5))
    g = f64(randn(rng, 3, 5))
    gx, gw, gb = R.linear_backward(g, x, w, b, "gelu")
    assert np.allclose(gx, numeric_grad(lambda x_: np.sum(R.linear(x_, w, b, "gelu") * g), x), atol=1e-7)
    assert np.allclose(gw, numeric_grad(lambda w_: np.sum(R.linear(x, w_, b, "gelu") * g), w), atol=1e-7)
    assert np.allclose(gb, numeric_grad(lambda b_: np.sum(R.linear(x, w, b_, "gelu") * g), b), atol=1e-7)
    check_directional(lambda x_, w_, b_: fl.linear(x_, w_, b_, "tanh"), [randn(rng, 6, 4), randn(rng, 3, 4), randn(rng, 3)],
                      lambda go, x_, w_, b_: fl.linear_backward(go, x_, w_, b_, "tanh"), rng)


def test_errors_name_the_argument(rng):
    a = randn(rng, 3, 4)
    with pytest.raises(ValueError, match=r"inner dimensions.*\(3, 4\).*\(5, 2\)"):
        fl.gemm(a, randn(rng, 5, 2))
    with pytest.raises(TypeError, match=r"a: dtype float64 .*astype\(numpy.float32\)"):
        fl.gemm(a.astype(np.float64), randn(rng, 4, 2))
    with pytest.raises(TypeError, match="b: dtype int32"):
        fl.gemm(a, np.ones((4, 2), np.int32))
    with pytest.raises(TypeError, match="a: expected a numpy.ndarray"):
        fl.gemm([[1.0]], randn(rng, 1, 1))
    with pytest.raises(ValueError, match="a: expected a 2-D array"):
        fl.gemm(randn(rng, 2, 3, 4), randn(rng, 4, 2))
    with pytest.raises(ValueError, match="c: shape"):
        fl.gemm(a, randn(rng, 4, 2), randn(rng, 5), beta=1.0)
    with pytest.raises(ValueError, match="x has 4 input features"):
        fl.linear(a, randn(rng, 6, 5))
    with pytest.raises(ValueError, match="bias: shape"):
        fl.linear(a, randn(rng, 6, 4), randn(rng, 5))
    with pytest.raises(ValueError, match="activation"):
        fl.linear(a, randn(rng, 6, 4), None, "swish")
    with pytest.raises(ValueError, match="do not align"):
        fl.matmul(randn(rng, 2, 3), randn(rng, 4, 2))
    with pytest.raises(ValueError, match="batch dimensions"):
        fl.matmul(randn(rng, 2, 2, 3), randn(rng, 3, 3, 2))
    with pytest.raises(ValueError, match="grad_out"):
        fl.linear_backward(randn(rng, 3, 5), a, randn(rng, 6, 4))
    # c that does not broadcast to the result (found by tools/fuzz_args.py: an IndexError before)
    for c_shape in [(1, 1, 1, 4, 2, 4), (3,), (2, 1)]:
        with pytest.raises(ValueError, match=r"c: shape .* does not broadcast to the result shape \(3, 2\)"):
            fl.gemm_backward(randn(rng, 3, 2), a, randn(rng, 4, 2), randn(rng, *c_shape), beta=0.5)


def test_threads_setting_and_concurrent_calls(rng):
    a, b = randn(rng, 300, 200), randn(rng, 200, 250)
    want = fl.gemm(a, b)
    before = fl.get_num_threads()
    try:
        for n in (1, 2, 3):
            fl.set_num_threads(n)
            assert fl.get_num_threads() == n
            np.testing.assert_array_equal(fl.gemm(a, b), want) if n == before else assert_close(fl.gemm(a, b), R.gemm(*f64(a, b)))
        with pytest.raises(ValueError):
            fl.set_num_threads(0)
    finally:
        fl.set_num_threads(before)
    results, errors = [None] * 8, []

    def work(i):
        try:
            results[i] = fl.gemm(a, b)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, want)


# Paths chosen inside run_gemm (csrc/gemm/gemm_cpu.cpp), each with odd strides and 1-3 threads:
#  - M <= 4 with unit-stride B columns: the streaming small-M kernel (epilogue applied after);
#  - n <= 64 or A within 384 KiB: A read in place (strided micro-kernel), B panels packed per thread;
#  - otherwise packed A and B, shared or per-thread B blocks depending on the thread grid.
#  - rows not a multiple of the 6-row tile: tiles of 6, 5 and 4 rows (A in place or packed);
#  - one A block per thread and B beyond 512 KiB: B packed 4 panels at a time just before use;
#  - n == 1: a GEMV (rows of A contiguous), one dot product split over k across threads
#    (m == 1, k >= 512 Ki with 2+ threads), or A column-major as one row of a transposed GEMM.
PATH_SHAPES = [(1, 5000, 37), (2, 33, 300), (3, 17, 1), (4, 1100, 600), (5, 40, 7),  # small M and just above
               (300, 40, 50), (600, 64, 700), (130, 65, 600),                          # narrow N: A in place
               (100, 100, 100), (37, 300, 290), (200, 800, 300),                      # small / packed
               (8, 700, 300), (37, 300, 600), (200, 100, 600), (13, 2100, 520),        # short tiles, streamed B
               (7, 1, 1000), (1, 1, 3), (1000, 1, 64), (5, 1, 70_000)]                 # n == 1: GEMV


def _strided(rng, rows, cols, kind):
    if kind == "contig":
        return randn(rng, rows, cols)
    if kind == "transposed":
        return randn(rng, cols, rows).T
    if kind == "sliced":  # unit column stride, row stride > cols
        return randn(rng, rows, cols + 7)[:, 3:3 + cols]
    return randn(rng, 2 * rows, 3 * cols)[::-2, ::3]  # negative row stride, column stride 3


@pytest.mark.parametrize("m,n,k", PATH_SHAPES)
def test_gemm_internal_paths_strides_and_threads(rng, m, n, k):
    before = fl.get_num_threads()
    try:
        for kinds in (("contig", "contig"), ("sliced", "sliced"), ("transposed", "transposed"), ("neg", "contig"),
                      ("contig", "neg")):
            a, b = _strided(rng, m, k, kinds[0]), _strided(rng, k, n, kinds[1])
            want = R.gemm(*f64(a, b))
            for threads in (1, 2, 3):
                fl.set_num_threads(threads)
                assert_close(fl.gemm(a, b), want, name=f"{kinds} threads={threads}")
    finally:
        fl.set_num_threads(before)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 13])
@pytest.mark.parametrize("act", [0, 1, 2, 3, 4, 5])
def test_gemm_epilogue_on_every_path(rng, m, act):
    """alpha, beta, row and column bias and each activation through _core.gemm directly, with
    a row-major B (small-M path for m <= 4) and a transposed B (micro-kernel path)."""
    from fastlayers import _core

    names = [None, "relu", "gelu", "gelu_tanh", "tanh", "sigmoid"]
    for n, k in ((37, 19), (70, 300), (600, 300)):  # (600, 300), m >= 5: B streamed in chunks
        a = randn(rng, m, k)
        for b in (randn(rng, k, n), randn(rng, n, k).T):
            c0, rb, cb = randn(rng, m, n), randn(rng, m), randn(rng, n)
            out = c0.copy()
            _core.gemm(a, b, out, 0.5, 1.5, rb, cb, act)
            z = 0.5 * f64(a) @ f64(b) + 1.5 * f64(c0) + f64(rb)[:, None] + f64(cb)[None, :]
            want = z if act == 0 else getattr(R, "gelu" if names[act] == "gelu_tanh" else names[act])(
                z, **({"approximate": "tanh"} if names[act] == "gelu_tanh" else {}))
            assert_close(out, want, name=f"act {names[act]} m={m} n={n} b strides {b.strides}")


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "tanh", "sigmoid"])
@pytest.mark.parametrize("rows", [1, 3, 50, 300])
def test_fused_epilogue_matches_separate_activation(rng, activation, rows):
    """linear(..., activation) (epilogue in the micro-kernel's registers, or after the small-M
    kernel) and activation(linear(...)) (the elementwise kernel) run the same vector code."""
    x, w, b = randn(rng, rows, 45), randn(rng, 70, 45), randn(rng, 70)
    z = fl.linear(x, w, b)
    act = {"gelu_tanh": lambda v: fl.gelu(v, approximate="tanh")}.get(activation, getattr(fl, activation, None))
    np.testing.assert_array_equal(fl.linear(x, w, b, activation), act(z))
    # The small-M kernel takes row-major B: the same claim through gemm's epilogue there.
    from fastlayers import _core

    if rows <= 4:
        code = {"relu": 1, "gelu": 2, "gelu_tanh": 3, "tanh": 4, "sigmoid": 5}[activation]
        bt = np.ascontiguousarray(w.T)
        out1, out2 = np.empty((rows, 70), np.float32), np.empty((rows, 70), np.float32)
        _core.gemm(x, bt, out1, 1.0, 0.0, None, b, code)
        _core.gemm(x, bt, out2, 1.0, 0.0, None, b, 0)
        np.testing.assert_array_equal(out1, act(out2))


def test_gemm_fast_path_keeps_errors(rng):
    """The Python fast path (plain float32 ndarrays) falls back to the full checks otherwise."""
    a = randn(rng, 3, 4)
    with pytest.raises(ValueError, match="inner dimensions"):
        fl.gemm(a, randn(rng, 3, 4))
    with pytest.raises(TypeError, match="float64"):
        fl.gemm(a, randn(rng, 4, 2).astype(np.float64))
    with pytest.raises(ValueError, match="x has 4 input features"):
        fl.linear(a, randn(rng, 6, 5), randn(rng, 6), "relu")
    with pytest.raises(ValueError, match="bias: expected a 1-D array"):
        fl.linear(a, randn(rng, 6, 4), randn(rng, 2, 3))


def test_gemm_column_split_across_column_blocks(rng):
    """Threads splitting the columns (few rows) pack their own B panels without barriers; with
    n > nc = 3072 and several k blocks a thread may run ahead into the next column block while
    another still computes, so each must pack into a buffer of its own (regression: a shared
    double buffer corrupted columns >= 3072 of 64 x 4096 x 4096 with 2 threads)."""
    before = fl.get_num_threads()
    try:
        for m, n, k in ((64, 4096, 2048), (40, 3200, 600), (600, 3300, 600)):
            a, b = randn(rng, m, k), randn(rng, k, n)
            want = R.gemm(*f64(a, b))
            for threads in (2, 3):
                fl.set_num_threads(threads)
                for _ in range(2):
                    assert_close(fl.gemm(a, b), want, name=f"{(m, n, k)} threads={threads}")
    finally:
        fl.set_num_threads(before)


def test_gemm_skinny_m_large_b_column_blocks(rng):
    """Few rows against a B beyond 16 MiB (pack_ahead: the micro-kernels pack the next B block):
    each thread packs its own columns [c0, c1) in equal blocks of up to 4096 columns starting at
    c0 (n = 9001: 3 blocks of 3008 columns, the last ragged; 2 and 3 threads: blocks starting
    mid-matrix), B sliced (row stride > n) or with a negative row stride, k in several k blocks,
    with alpha, beta and the fused bias + ReLU on the last k block (whose kernels pack nothing,
    so the next column block is packed the plain way). With 2+ threads pack_ahead needs 32+ rows
    per thread (m = 40); fewer take the plain pack."""
    from fastlayers import _core
    before = fl.get_num_threads()
    try:
        for m, n, k, neg in ((10, 9001, 500, False), (16, 4500, 1000, False), (23, 4100, 1100, True),
                             (40, 4100, 1100, False)):  # 40 rows: pack_ahead with 2 and 3 threads too
            a = randn(rng, m, k)
            b = randn(rng, 2 * k, n)[::-2] if neg else randn(rng, k, n + 5)[:, 2:2 + n]
            c0, bias = randn(rng, m, n), randn(rng, n)
            want = R.gemm(*f64(a, b))
            want_epi = np.maximum(0.5 * want + 2.0 * c0.astype(np.float64) + bias.astype(np.float64), 0.0)
            for threads in (1, 2, 3):
                fl.set_num_threads(threads)
                assert_close(fl.gemm(a, b), want, name=f"{(m, n, k)} threads={threads}")
                out = c0.copy()
                _core.gemm(a, b, out, 0.5, 2.0, None, bias, 1)  # act 1: relu
                assert_close(out, want_epi, name=f"{(m, n, k)} epilogue threads={threads}")
    finally:
        fl.set_num_threads(before)


@pytest.mark.parametrize("m", [1, 4, 5, 13])
@pytest.mark.parametrize("act", [0, 1, 5])
def test_gemm_epilogue_gemv(rng, m, act):
    """n == 1 (the GEMV and dot-product routes), A row-major or column-major, with alpha, beta,
    both biases and an activation: the epilogue runs after the dot products."""
    from fastlayers import _core

    names = [None, "relu", "gelu", "gelu_tanh", "tanh", "sigmoid"]
    k = 333
    for a in (randn(rng, m, k), randn(rng, k, m).T):
        b = randn(rng, k, 1)
        c0, rb, cb = randn(rng, m, 1), randn(rng, m), randn(rng, 1)
        out = c0.copy()
        _core.gemm(a, b, out, 0.5, 1.5, rb, cb, act)
        z = 0.5 * f64(a) @ f64(b) + 1.5 * f64(c0) + f64(rb)[:, None] + f64(cb)[None, :]
        want = z if act == 0 else getattr(R, names[act])(z)
        assert_close(out, want, name=f"act {names[act]} m={m} a strides {a.strides}")


def test_gemm_short_row_tiles_every_remainder(rng):
    """m = 7..20 covers each way of dealing rows into tiles of 6, 5 and 4 (and the ragged
    fallback, m = 7), with A read in place (small k) and packed (k = 1100), plus an epilogue."""
    for m in range(7, 21):
        for k in (50, 1100):
            a, b, bias = randn(rng, m, k), randn(rng, k, 70), randn(rng, 70)
            assert_close(fl.gemm(a, b), R.gemm(*f64(a, b)), name=f"m={m} k={k}")
            x, w = a, b.T.copy()
            assert_close(fl.linear(x, w, bias, "relu"), R.linear(*f64(x, w, bias), "relu"), name=f"m={m} k={k}")


def test_gemm_long_dot_product_split_across_threads(rng):
    """m = n = 1 with a long k: a SIMD dot product, k split across threads. Positive inputs
    (no cancellation) are held to the usual 1e-4; for signed inputs the sum cancels to
    ~sqrt(k) while float32 rounding scales with sum |a_i b_i| (~k), so the tolerance is
    relative to that sum (any float32 summation order errs by ~1e-7 * it per term)."""
    before = fl.get_num_threads()
    try:
        for k in (600_001, 1_048_576 + 17):
            pos_a, pos_b = np.abs(randn(rng, 1, k)), np.abs(randn(rng, k, 1))
            a, b = randn(rng, 1, k), randn(rng, k, 1)
            for threads in (1, 2, 3):
                fl.set_num_threads(threads)
                assert_close(fl.gemm(pos_a, pos_b), R.gemm(*f64(pos_a, pos_b)), name=f"k={k} threads={threads}")
                bound = (np.abs(f64(a)) @ np.abs(f64(b))).item()
                np.testing.assert_allclose(fl.gemm(a, b), R.gemm(*f64(a, b)), rtol=0, atol=1e-6 * bound,
                                           err_msg=f"k={k} threads={threads}")
                # Strided views take the general routes; same answer.
                a2, b2 = randn(rng, 2, k)[:1, :], randn(rng, k, 3)[:, 1:2]
                np.testing.assert_allclose(fl.gemm(a2, b2), R.gemm(*f64(a2, b2)), rtol=0,
                                           atol=1e-6 * (np.abs(f64(a2)) @ np.abs(f64(b2))).item())
    finally:
        fl.set_num_threads(before)

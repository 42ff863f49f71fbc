"""LSTM / RNN cells and sequences vs the float64 NumPy reference (forward and backward through
time), finite differences, input handling and errors; PyTorch's nn.LSTM under the torch marker."""

import numpy as np
import pytest
from conftest import assert_close, check_directional, f64, numeric_grad, randn

import fastlayers as fl
from fastlayers import _core
from fastlayers import reference as R


def make_params(rng, G, I, H, num_layers=1, dirs=1, bias=True):
    """PyTorch-like weights, a little larger than its 1/sqrt(H) init so the gates are not all ~linear."""
    scale = 1.5 / np.sqrt(H)
    params = []
    for layer in range(num_layers):
        for _ in range(dirs):
            n_in = I if layer == 0 else dirs * H
            w = (randn(rng, G * H, n_in, scale=scale), randn(rng, G * H, H, scale=scale))
            b = (randn(rng, G * H, scale=scale), randn(rng, G * H, scale=scale)) if bias else (None, None)
            params.append(w + b)
    return params


def p64(params):
    return [tuple(f64(a) if a is not None else None for a in p) for p in params]


def states(rng, given, n, B, H):
    return randn(rng, n, B, H) if given else None


def close_tree(actual, expected, name):
    if expected is None:
        assert actual is None, f"{name}: expected None"
        return
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{name}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            close_tree(a, e, f"{name}[{i}]")
        return
    assert actual.flags.c_contiguous, f"{name}: not C-contiguous"
    assert_close(actual, expected, name=name)


# (T, B, I, H, num_layers, bidirectional, batch_first, initial states given)
SEQ_CASES = [
    (5, 3, 4, 8, 1, False, False, True),
    (6, 4, 5, 13, 1, True, False, False),  # H not a multiple of the SIMD width
    (4, 2, 3, 17, 2, False, True, True),
    (5, 3, 7, 11, 2, True, True, True),
    (1, 1, 3, 9, 2, True, False, False),  # T = 1, B = 1
    (7, 1, 6, 33, 1, False, False, True),  # B = 1: the GEMV path
    (3, 53, 5, 6, 1, True, False, True),  # B past the 48-row block
    (3, 5, 9, 70, 1, False, False, True),  # several tiles, one partial
]


@pytest.mark.parametrize("T,B,I,H,L,bi,bf,given", SEQ_CASES)
def test_lstm_forward_backward_vs_reference(rng, T, B, I, H, L, bi, bf, given):
    dirs = 2 if bi else 1
    params = make_params(rng, 4, I, H, L, dirs)
    x = randn(rng, *((B, T, I) if bf else (T, B, I)))
    h0, c0 = states(rng, given, L * dirs, B, H), states(rng, given, L * dirs, B, H)
    kw = {"num_layers": L, "bidirectional": bi, "batch_first": bf}
    out, (h_n, c_n), reserve = fl.lstm(x, params, h0, c0, training=True, **kw)
    r_out, (r_h, r_c), r_res = R.lstm(f64(x), p64(params), f64(h0), f64(c0), training=True, **kw)
    close_tree([out, h_n, c_n], [r_out, r_h, r_c], "lstm forward")
    inf_out, (_inf_h, inf_c) = fl.lstm(x, params, h0, c0, **kw)  # the inference path (no reserve)
    np.testing.assert_array_equal(inf_out, out)
    np.testing.assert_array_equal(inf_c, c_n)

    g_out, g_h, g_c = randn(rng, *out.shape), randn(rng, *h_n.shape), randn(rng, *c_n.shape)
    grads = fl.lstm_backward(g_out, g_h, g_c, x, params, reserve, h0, c0, **kw)
    r_grads = R.lstm_backward(*f64(g_out, g_h, g_c, x), p64(params), r_res, f64(h0), f64(c0), **kw)
    close_tree(list(grads), list(r_grads), "lstm backward")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T,B,I,H,L,bi,bf,given", SEQ_CASES[:6])
def test_rnn_forward_backward_vs_reference(rng, T, B, I, H, L, bi, bf, given, nonlinearity):
    dirs = 2 if bi else 1
    params = make_params(rng, 1, I, H, L, dirs)
    x = randn(rng, *((B, T, I) if bf else (T, B, I)))
    h0 = states(rng, given, L * dirs, B, H)
    kw = {"nonlinearity": nonlinearity, "num_layers": L, "bidirectional": bi, "batch_first": bf}
    out, h_n, reserve = fl.rnn(x, params, h0, training=True, **kw)
    r_out, r_h, r_res = R.rnn(f64(x), p64(params), f64(h0), training=True, **kw)
    close_tree([out, h_n], [r_out, r_h], "rnn forward")
    np.testing.assert_array_equal(fl.rnn(x, params, h0, **kw)[0], out)

    g_out, g_h = randn(rng, *out.shape), randn(rng, *h_n.shape)
    grads = fl.rnn_backward(g_out, g_h, x, params, reserve, h0, **kw)
    r_grads = R.rnn_backward(*f64(g_out, g_h, x), p64(params), r_res, f64(h0), **kw)
    close_tree(list(grads), list(r_grads), "rnn backward")


def test_no_bias_and_none_state_gradients(rng):
    T, B, I, H = 4, 3, 5, 6
    params = [p[:2] for p in make_params(rng, 4, I, H, 2, 1)]  # (w_ih, w_hh): bias=False
    x = randn(rng, T, B, I)
    out, (_h_n, _c_n), reserve = fl.lstm(x, params, num_layers=2, training=True)
    r_out, _, r_res = R.lstm(f64(x), p64(params), num_layers=2, training=True)
    assert_close(out, r_out)
    g = randn(rng, *out.shape)
    gx, gp, gh0, gc0 = fl.lstm_backward(g, None, None, x, params, reserve, num_layers=2)
    r_gx, r_gp, _, _ = R.lstm_backward(f64(g), None, None, f64(x), p64(params), r_res, num_layers=2)
    assert gh0 is None and gc0 is None
    assert all(len(p) == 2 for p in gp)
    close_tree([gx, gp], [r_gx, r_gp], "no-bias grads")
    # Only one of the two biases.
    params1 = [(p[0], p[1], None, randn(rng, 4 * H)) for p in params]
    out, _, reserve = fl.lstm(x, params1, num_layers=2, training=True)
    r_out, _, r_res = R.lstm(f64(x), p64(params1), num_layers=2, training=True)
    assert_close(out, r_out)
    _, gp, _, _ = fl.lstm_backward(g, None, None, x, params1, reserve, num_layers=2)
    _, r_gp, _, _ = R.lstm_backward(f64(g), None, None, f64(x), p64(params1), r_res, num_layers=2)
    close_tree(gp, r_gp, "one-bias grads")


def test_cells_vs_reference(rng):
    B, I, H = 5, 7, 19
    x, hx, cx = randn(rng, B, I), randn(rng, B, H), randn(rng, B, H)
    w_ih, w_hh, b_ih, b_hh = make_params(rng, 4, I, H)[0]
    h, c = fl.lstm_cell(x, hx, cx, w_ih, w_hh, b_ih, b_hh)
    close_tree([h, c], list(R.lstm_cell(*f64(x, hx, cx, w_ih, w_hh, b_ih, b_hh))), "lstm_cell")
    gh, gc = randn(rng, B, H), randn(rng, B, H)
    close_tree(list(fl.lstm_cell_backward(gh, gc, x, hx, cx, w_ih, w_hh, b_ih, b_hh)),
               list(R.lstm_cell_backward(*f64(gh, gc, x, hx, cx, w_ih, w_hh, b_ih, b_hh))), "lstm_cell_backward")
    close_tree(list(fl.lstm_cell_backward(gh, None, x, hx, cx, w_ih, w_hh)),
               list(R.lstm_cell_backward(f64(gh), None, *f64(x, hx, cx, w_ih, w_hh))), "lstm_cell_backward no c")
    w_ih, w_hh, b_ih, b_hh = make_params(rng, 1, I, H)[0]
    for nl in ("tanh", "relu"):
        h = fl.rnn_cell(x, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity=nl)
        assert_close(h, R.rnn_cell(*f64(x, hx, w_ih, w_hh, b_ih, b_hh), nonlinearity=nl))
        close_tree(list(fl.rnn_cell_backward(gh, x, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity=nl)),
                   list(R.rnn_cell_backward(*f64(gh, x, hx, w_ih, w_hh, b_ih, b_hh), nonlinearity=nl)),
                   f"rnn_cell_backward {nl}")


def test_lstm_gradients_finite_differences(rng):
    """The float32 kernel's backward along random directions (2 layers, bidirectional)."""
    T, B, I, H, L = 4, 2, 3, 5, 2
    params = make_params(rng, 4, I, H, L, 2)
    x, h0, c0 = randn(rng, T, B, I), randn(rng, 2 * L, B, H), randn(rng, 2 * L, B, H)
    flat = [x, h0, c0] + [a for p in params for a in p]

    def unflat(arrs):
        ps = [tuple(arrs[3 + 4 * k:7 + 4 * k]) for k in range(len(params))]
        return arrs[0], arrs[1], arrs[2], ps

    def forward(*arrs):
        x_, h_, c_, ps = unflat(arrs)
        out, (h_n, c_n) = fl.lstm(x_, ps, h_, c_, num_layers=L, bidirectional=True)
        return np.concatenate([out.ravel(), h_n.ravel(), c_n.ravel()])

    def grad_fn(g, *arrs):
        x_, h_, c_, ps = unflat(arrs)
        out, (h_n, c_n), res = fl.lstm(x_, ps, h_, c_, num_layers=L, bidirectional=True, training=True)
        n1, n2 = out.size, out.size + h_n.size
        g_out, g_h, g_c = g[:n1].reshape(out.shape), g[n1:n2].reshape(h_n.shape), g[n2:].reshape(c_n.shape)
        gx, gp, gh, gc = fl.lstm_backward(g_out, g_h, g_c, x_, ps, res, h_, c_, num_layers=L, bidirectional=True)
        return [gx, gh, gc] + [a for p in gp for a in p]

    check_directional(forward, flat, grad_fn, rng)


def test_rnn_gradients_finite_differences(rng):
    T, B, I, H = 5, 3, 4, 6
    params = make_params(rng, 1, I, H, 1, 2)
    x, h0 = randn(rng, T, B, I), randn(rng, 2, B, H)
    flat = [x, h0] + [a for p in params for a in p]

    def forward(*arrs):
        ps = [tuple(arrs[2 + 4 * k:6 + 4 * k]) for k in range(2)]
        return fl.rnn(arrs[0], ps, arrs[1], bidirectional=True)[0]

    def grad_fn(g, *arrs):
        ps = [tuple(arrs[2 + 4 * k:6 + 4 * k]) for k in range(2)]
        _, _, res = fl.rnn(arrs[0], ps, arrs[1], bidirectional=True, training=True)
        gx, gp, gh = fl.rnn_backward(g, None, arrs[0], ps, res, arrs[1], bidirectional=True)
        return [gx, gh] + [a for p in gp for a in p]

    check_directional(forward, flat, grad_fn, rng)


def test_reference_backward_vs_numeric_grad(rng):
    """The reference's own backward against float64 central differences (all inputs)."""
    T, B, I, H, L = 3, 2, 3, 4, 2
    params = p64(make_params(rng, 4, I, H, L, 2))
    x, h0, c0 = f64(randn(rng, B, T, I), randn(rng, 2 * L, B, H), randn(rng, 2 * L, B, H))
    kw = {"num_layers": L, "bidirectional": True, "batch_first": True}
    out, (h_n, c_n), res = R.lstm(x, params, h0, c0, training=True, **kw)
    g_out, g_h, g_c = f64(randn(rng, *out.shape), randn(rng, *h_n.shape), randn(rng, *c_n.shape))

    def loss(x_=x, h_=h0, c_=c0, ps=params):
        o, (hn, cn) = R.lstm(x_, ps, h_, c_, **kw)
        return float(np.sum(o * g_out) + np.sum(hn * g_h) + np.sum(cn * g_c))

    gx, gp, gh, gc = R.lstm_backward(g_out, g_h, g_c, x, params, res, h0, c0, **kw)
    np.testing.assert_allclose(gx, numeric_grad(lambda v: loss(x_=v), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gh, numeric_grad(lambda v: loss(h_=v), h0), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gc, numeric_grad(lambda v: loss(c_=v), c0), rtol=1e-6, atol=1e-8)
    for k in (0, 3):  # layer 0 forward, layer 1 reverse
        for j in range(4):
            def lw(v, k=k, j=j):
                ps = list(params)
                ps[k] = tuple(v if i == j else a for i, a in enumerate(params[k]))
                return loss(ps=ps)

            np.testing.assert_allclose(gp[k][j], numeric_grad(lw, params[k][j]), rtol=1e-6, atol=1e-8)


def test_noncontiguous_inputs(rng):
    T, B, I, H = 5, 3, 4, 10
    params = make_params(rng, 4, I, H)
    x = randn(rng, B, I, T).transpose(2, 0, 1)  # (T, B, I) view
    w_ih = randn(rng, I, 4 * H).T  # (4H, I) view
    ps = [(w_ih,) + params[0][1:]]
    h0 = randn(rng, B, 1, H).transpose(1, 0, 2)
    out, (h, c) = fl.lstm(x, ps, h0)
    r_out, (r_h, r_c) = R.lstm(f64(x), p64(ps), f64(h0))
    close_tree([out, h, c], [r_out, r_h, r_c], "non-contiguous")


def test_empty_batch_and_empty_sequence(rng):
    I, H = 4, 6
    params = make_params(rng, 4, I, H, 1, 2)
    x = np.zeros((5, 0, I), np.float32)
    out, (h, c), res = fl.lstm(x, params, bidirectional=True, training=True)
    assert out.shape == (5, 0, 2 * H) and h.shape == (2, 0, H) and c.shape == (2, 0, H)
    gx, gp, _, _ = fl.lstm_backward(np.zeros(out.shape, np.float32), None, None, x, params, res,
                                    bidirectional=True)
    assert gx.shape == x.shape
    assert all(np.all(a == 0) for p in gp for a in p)
    # T = 0: no steps, the final states are the initial ones.
    x = np.zeros((0, 3, I), np.float32)
    h0, c0 = randn(rng, 2, 3, H), randn(rng, 2, 3, H)
    out, (h, c) = fl.lstm(x, params, h0, c0, bidirectional=True)
    assert out.shape == (0, 3, 2 * H)
    np.testing.assert_array_equal(h, h0)
    np.testing.assert_array_equal(c, c0)
    out, h = fl.rnn(x, make_params(rng, 1, I, H), None)
    assert out.shape == (0, 3, H) and np.all(h == 0)


def test_long_sequence_large_inputs_stay_finite(rng):
    """T = 2000 with inputs ~100: every gate saturates, nothing overflows into inf/NaN."""
    T, B, I, H = 2000, 2, 8, 24
    x = randn(rng, T, B, I, scale=100.0)
    params = make_params(rng, 4, I, H, 2, 2)
    out, (_, c), res = fl.lstm(x, params, num_layers=2, bidirectional=True, training=True)
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1.0)
    assert np.all(np.isfinite(c))
    grads = fl.lstm_backward(randn(rng, *out.shape), None, None, x, params, res, num_layers=2, bidirectional=True)
    assert np.all(np.isfinite(grads[0]))
    assert all(np.all(np.isfinite(a)) for p in grads[1] for a in p)
    out, _h = fl.rnn(x, make_params(rng, 1, I, H), nonlinearity="tanh")
    assert np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1.0)


def test_nan_propagates(rng):
    T, B, I, H = 3, 2, 4, 9
    x = randn(rng, T, B, I)
    x[1, 0, 2] = np.nan
    out, _ = fl.lstm(x, make_params(rng, 4, I, H))
    assert np.all(np.isnan(out[1:, 0])) and np.all(np.isfinite(out[:, 1])) and np.all(np.isfinite(out[0]))


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_available_isa(rng, isa):
    """Each ISA's step kernels in turn (set_isa clamps to what the CPU has)."""
    before = _core.cpu_isa()
    try:
        used = _core.set_isa(isa)
        T, B, I, H = 4, 5, 6, 37
        params = make_params(rng, 4, I, H, 1, 2)
        x, h0, c0 = randn(rng, T, B, I), randn(rng, 2, B, H), randn(rng, 2, B, H)
        out, (h, c), res = fl.lstm(x, params, h0, c0, bidirectional=True, training=True)
        r_out, (r_h, r_c), r_res = R.lstm(f64(x), p64(params), f64(h0), f64(c0), bidirectional=True, training=True)
        close_tree([out, h, c], [r_out, r_h, r_c], f"isa {used}")
        g = randn(rng, *out.shape)
        close_tree(list(fl.lstm_backward(g, None, None, x, params, res, h0, c0, bidirectional=True)),
                   list(R.lstm_backward(f64(g), None, None, f64(x), p64(params), r_res, f64(h0), f64(c0),
                                        bidirectional=True)), f"isa {used} backward")
        rp = make_params(rng, 1, I, H)
        out, h, res = fl.rnn(x[:, :1], rp, None, nonlinearity="relu", training=True)
        assert_close(out, R.rnn(f64(x[:, :1]), p64(rp), None, nonlinearity="relu")[0], name=f"isa {used} rnn")
    finally:
        _core.set_isa(before)


def test_threads_agree(rng):
    """One thread and the default team give the same numbers (each unit's math is per-thread)."""
    T, B, I, H = 6, 4, 5, 40
    params = make_params(rng, 4, I, H, 2, 2)
    x = randn(rng, T, B, I)
    n = fl.get_num_threads()
    try:
        fl.set_num_threads(1)
        one = fl.lstm(x, params, num_layers=2, bidirectional=True)[0]
        fl.set_num_threads(max(2, n))
        many = fl.lstm(x, params, num_layers=2, bidirectional=True)[0]
    finally:
        fl.set_num_threads(n)
    np.testing.assert_array_equal(one, many)


# ---- errors ----

def _lstm_setup(rng, L=1, bi=False, H=6, I=4, B=3, T=5):
    return randn(rng, T, B, I), make_params(rng, 4, I, H, L, 2 if bi else 1)


def test_errors_parameter_counts_and_shapes(rng):
    x, params = _lstm_setup(rng, L=2, bi=True)
    with pytest.raises(ValueError, match=r"params: expected num_layers \* directions = 2 \* 2 = 4 entries.*got 3"):
        fl.lstm(x, params[:3], num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"params: expected .* = 1 \* 1 = 1 entries.*got 4"):
        fl.lstm(x, params)
    with pytest.raises(ValueError, match=r"params\[1\] \(layer 0 reverse\).*got 3 entries"):
        fl.lstm(x, [params[0], params[1][:3]] + params[2:], num_layers=2, bidirectional=True)
    bad = list(params)
    bad[0] = (randn(rng, 24, 5),) + params[0][1:]
    with pytest.raises(ValueError, match=r"params\[0\] \(layer 0\) w_ih: expected shape \(24, 4\).*got \(24, 5\)"):
        fl.lstm(x, bad, num_layers=2, bidirectional=True)
    bad = list(params)
    bad[2] = (randn(rng, 24, 6),) + params[2][1:]  # layer 1 input must be dirs*H = 12
    with pytest.raises(ValueError, match=r"params\[2\] \(layer 1\) w_ih: expected shape \(24, 12\).*got \(24, 6\)"):
        fl.lstm(x, bad, num_layers=2, bidirectional=True)
    bad = list(params)
    bad[1] = (params[1][0], randn(rng, 24, 7)) + params[1][2:]
    with pytest.raises(ValueError, match=r"params\[1\] .*w_hh: expected shape .*got \(24, 7\)"):
        fl.lstm(x, bad, num_layers=2, bidirectional=True)
    bad = list(params)
    bad[0] = params[0][:3] + (randn(rng, 23),)
    with pytest.raises(ValueError, match=r"params\[0\] \(layer 0\) b_hh: expected shape \(24,\).*got \(23,\)"):
        fl.lstm(x, bad, num_layers=2, bidirectional=True)
    # The RNN wants H rows, not 4H.
    with pytest.raises(ValueError, match=r"w_hh: expected shape \(hidden_size, hidden_size\).*got \(24, 6\)"):
        fl.rnn(x, [params[0]])
    with pytest.raises(TypeError, match="params: expected a list"):
        fl.lstm(x, params[0][0])


def test_errors_hidden_size_mismatch(rng):
    x, params = _lstm_setup(rng, L=2, H=6)
    other = make_params(rng, 4, 6, 8)[0]  # layer 1 with H=8 taking the H=6 output
    with pytest.raises(ValueError, match=r"params\[1\] \(layer 1\) w_hh: hidden size 8 .*does not match hidden size 6"):
        fl.lstm(x, [params[0], other], num_layers=2)


def test_errors_state_shapes(rng):
    x, params = _lstm_setup(rng, L=2, bi=True)
    good = np.zeros((4, 3, 6), np.float32)
    with pytest.raises(ValueError, match=r"h0: expected shape .* = \(4, 3, 6\), got \(2, 3, 6\)"):
        fl.lstm(x, params, good[:2], good, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"c0: expected shape .* = \(4, 3, 6\), got \(4, 3, 5\)"):
        fl.lstm(x, params, good, good[..., :5], num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"h0: expected a 3-D array, got shape \(3, 6\)"):
        fl.lstm(x, params, good[0], num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"hx: expected shape \(batch, hidden_size\) = \(3, 6\).*got \(3, 5\)"):
        p = params[0]
        fl.lstm_cell(x[0], good[0, :, :5], good[0], p[0], p[1])
    with pytest.raises(ValueError, match=r"cx: expected shape"):
        p = params[0]
        fl.lstm_cell(x[0], good[0], good[0, :2], p[0], p[1])
    with pytest.raises(ValueError, match=r"x: expected a 3-D array"):
        fl.lstm(x[0], params, num_layers=2, bidirectional=True)


def test_errors_dtype_args_and_backward_inputs(rng):
    x, params = _lstm_setup(rng)
    with pytest.raises(TypeError, match=r"x: dtype float64 .*astype\(numpy.float32\)"):
        fl.lstm(x.astype(np.float64), params)
    with pytest.raises(TypeError, match=r"w_hh: dtype float64"):
        fl.lstm(x, [(params[0][0], params[0][1].astype(np.float64)) + params[0][2:]])
    with pytest.raises(ValueError, match="nonlinearity: expected 'tanh' or 'relu'"):
        fl.rnn(x, make_params(rng, 1, 4, 6), nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="num_layers: expected >= 1"):
        fl.lstm(x, [], num_layers=0)
    with pytest.raises(TypeError, match="num_layers: expected an int"):
        fl.lstm(x, params, num_layers=1.0)
    out, _, reserve = fl.lstm(x, params, training=True)
    with pytest.raises(ValueError, match=r"grad_output: expected the output's shape \(5, 3, 6\), got \(5, 3, 5\)"):
        fl.lstm_backward(out[..., :5], None, None, x, params, reserve)
    with pytest.raises(TypeError, match="reserve: expected the RNNReserve"):
        fl.lstm_backward(out, None, None, x, params, None)
    with pytest.raises(ValueError, match=r"reserve: it was made by a forward with RNNReserve\(lstm, T=5"):
        fl.lstm_backward(out[:4], None, None, x[:4], params, reserve)
    _, _, rres = fl.rnn(x, make_params(rng, 1, 4, 6), training=True)
    with pytest.raises(ValueError, match=r"reserve: it was made by a forward with RNNReserve\(tanh"):
        fl.lstm_backward(out, None, None, x, params, rres)
    with pytest.raises(ValueError, match=r"grad_h_n: expected shape .* = \(1, 3, 6\), got \(2, 3, 6\)"):
        fl.lstm_backward(out, np.zeros((2, 3, 6), np.float32), None, x, params, reserve)
    with pytest.raises(ValueError, match=r"grad_c_n: expected a 3-D array, got shape \(3, 6\)"):
        fl.lstm_backward(out, None, np.zeros((3, 6), np.float32), x, params, reserve)


# ---- PyTorch ----

@pytest.mark.torch
@pytest.mark.parametrize("kind", ["lstm", "rnn_relu"])
def test_matches_torch_with_its_weights(rng, kind):
    import torch

    T, B, I, H, L = 6, 3, 5, 11, 2
    torch.manual_seed(int(rng.integers(1 << 30)))
    if kind == "lstm":
        m = torch.nn.LSTM(I, H, num_layers=L, bidirectional=True, batch_first=True)
    else:
        m = torch.nn.RNN(I, H, num_layers=L, bidirectional=True, batch_first=True, nonlinearity="relu")
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    params = []
    for layer in range(L):
        for sfx in ("", "_reverse"):
            params.append(tuple(sd[f"{n}_l{layer}{sfx}"] for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
    x = randn(rng, B, T, I)
    h0 = randn(rng, 2 * L, B, H)
    tx = torch.from_numpy(x).requires_grad_()
    th0 = torch.from_numpy(h0).requires_grad_()
    kw = {"num_layers": L, "bidirectional": True, "batch_first": True}
    if kind == "lstm":
        c0 = randn(rng, 2 * L, B, H)
        tc0 = torch.from_numpy(c0).requires_grad_()
        t_out, (t_h, t_c) = m(tx, (th0, tc0))
        out, (h, c), res = fl.lstm(x, params, h0, c0, training=True, **kw)
        np.testing.assert_allclose(c, t_c.detach().numpy(), rtol=1e-4, atol=1e-5)
    else:
        t_out, t_h = m(tx, th0)
        out, h, res = fl.rnn(x, params, h0, nonlinearity="relu", training=True, **kw)
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h, t_h.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = randn(rng, *out.shape)
    t_out.backward(torch.from_numpy(g))
    if kind == "lstm":
        gx, gp, gh, gc = fl.lstm_backward(g, None, None, x, params, res, h0, c0, **kw)
        np.testing.assert_allclose(gc, tc0.grad.numpy(), rtol=1e-4, atol=1e-5)
    else:
        gx, gp, gh = fl.rnn_backward(g, None, x, params, res, h0, nonlinearity="relu", **kw)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gh, th0.grad.numpy(), rtol=1e-4, atol=1e-5)
    tw = m.weight_hh_l1_reverse.grad.numpy()
    np.testing.assert_allclose(gp[3][1], tw, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(tw).max())))

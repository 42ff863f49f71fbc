"""NumPy reference for the rnn kernels: LSTM and Elman RNN cells and whole sequences
(stacked, bidirectional), forward and backward through time. Written for clarity, not
speed; dtype-generic (pass float64 for the truth).

Conventions (PyTorch's): gates stacked i, f, g, o in w_ih (4H, I), w_hh (4H, H), b_ih and
b_hh (4H,); params is a list of (w_ih, w_hh, b_ih, b_hh) in the order layer 0 forward,
layer 0 reverse, layer 1 forward, ...; biases may be None. Sequences are (T, B, I), or
(B, T, I) with batch_first=True; states (num_layers * dirs, B, H).

The reserve returned by lstm/rnn(training=True) here is a plain dict (per layer: its input
and, per direction, the hidden and cell states in processing order); the backward
recomputes each cell's gates from those states."""

from __future__ import annotations

import numpy as np

__all__ = [
    "lstm",
    "lstm_backward",
    "lstm_cell",
    "lstm_cell_backward",
    "rnn",
    "rnn_backward",
    "rnn_cell",
    "rnn_cell_backward",
]


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # exact identity, no overflow for any x


def _act(x, nonlinearity):
    return np.tanh(x) if nonlinearity == "tanh" else np.maximum(x, 0)


def _pre(x, hx, w_ih, w_hh, b_ih, b_hh):
    z = x @ w_ih.T + hx @ w_hh.T
    if b_ih is not None:
        z = z + b_ih
    if b_hh is not None:
        z = z + b_hh
    return z


def lstm_cell(x, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: x (B, I), hx and cx (B, H) -> (h, c)."""
    z = _pre(x, hx, w_ih, w_hh, b_ih, b_hh)
    zi, zf, zg, zo = np.split(z, 4, axis=-1)
    i, f, g, o = _sigmoid(zi), _sigmoid(zf), np.tanh(zg), _sigmoid(zo)
    c = f * cx + i * g
    h = o * np.tanh(c)
    return h, c


def lstm_cell_backward(grad_h, grad_c, x, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None):
    """Gradients (grad_x, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of
    lstm_cell given the gradients of its outputs h and c (grad_c may be None: zero)."""
    z = _pre(x, hx, w_ih, w_hh, b_ih, b_hh)
    zi, zf, zg, zo = np.split(z, 4, axis=-1)
    i, f, g, o = _sigmoid(zi), _sigmoid(zf), np.tanh(zg), _sigmoid(zo)
    c = f * cx + i * g
    tc = np.tanh(c)
    dc = grad_h * o * (1 - tc * tc)
    if grad_c is not None:
        dc = dc + grad_c
    do = grad_h * tc
    di, df, dg = dc * g, dc * cx, dc * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=-1)
    db = dz.sum(axis=0)
    return (
        dz @ w_ih,
        dz @ w_hh,
        dc * f,
        dz.T @ x,
        dz.T @ hx,
        None if b_ih is None else db,
        None if b_hh is None else db.copy(),
    )


def rnn_cell(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One Elman RNN step: h = act(x @ w_ih.T + b_ih + hx @ w_hh.T + b_hh)."""
    return _act(_pre(x, hx, w_ih, w_hh, b_ih, b_hh), nonlinearity)


def rnn_cell_backward(grad_h, x, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """Gradients (grad_x, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of rnn_cell."""
    h = rnn_cell(x, hx, w_ih, w_hh, b_ih, b_hh, nonlinearity)
    dz = grad_h * (1 - h * h) if nonlinearity == "tanh" else grad_h * (h > 0)
    db = dz.sum(axis=0)
    return (
        dz @ w_ih,
        dz @ w_hh,
        dz.T @ x,
        dz.T @ hx,
        None if b_ih is None else db,
        None if b_hh is None else db.copy(),
    )


def _unpack(p):
    p = tuple(p)
    return p if len(p) == 4 else p + (None, None)


def _run(x, params, states, num_layers, bidirectional, batch_first, cell):
    """Shared forward driver. states: list of per-(layer, dir) initial state tuples.
    Returns output (T, B, dirs*H), the final states, and the reserve."""
    dirs = 2 if bidirectional else 1
    seq = np.swapaxes(x, 0, 1) if batch_first else x
    T = seq.shape[0]
    finals = []
    reserve = {"inputs": [], "states": []}
    inp = seq
    for layer in range(num_layers):
        outs = []
        reserve["inputs"].append(inp)
        for d in range(dirs):
            k = layer * dirs + d
            w = _unpack(params[k])
            st = states[k]
            hist = [st]
            order = range(T) if d == 0 else range(T - 1, -1, -1)
            ys = [None] * T
            for t in order:
                st = cell(inp[t], st, w)
                hist.append(st)
                ys[t] = st[0]
            outs.append(np.stack(ys) if T else np.zeros((0,) + st[0].shape, st[0].dtype))
            finals.append(st)
            reserve["states"].append(hist)
        inp = np.concatenate(outs, axis=-1)
    out = np.swapaxes(inp, 0, 1) if batch_first else inp
    return out, finals, reserve


def _init_state(x, params, h0, num_layers, dirs, batch_first):
    """h0, or zeros of shape (num_layers * dirs, B, H)."""
    if h0 is not None:
        return h0
    B = x.shape[0] if batch_first else x.shape[1]
    H = params[0][1].shape[1]
    return np.zeros((num_layers * dirs, B, H), dtype=x.dtype)


def lstm(x, params, h0=None, c0=None, *, num_layers=1, bidirectional=False, batch_first=False, training=False):
    """Stacked (bidirectional) LSTM over a sequence. Returns (output, (h_n, c_n)) and, with
    training=True, a reserve for lstm_backward as the third element."""
    dirs = 2 if bidirectional else 1
    h0 = _init_state(x, params, h0, num_layers, dirs, batch_first)
    c0 = np.zeros_like(h0) if c0 is None else c0
    states = [(h0[k], c0[k]) for k in range(num_layers * dirs)]

    def cell(xt, st, w):
        return lstm_cell(xt, st[0], st[1], *w)

    out, finals, reserve = _run(x, params, states, num_layers, bidirectional, batch_first, cell)
    h_n = np.stack([s[0] for s in finals])
    c_n = np.stack([s[1] for s in finals])
    if training:
        return out, (h_n, c_n), reserve
    return out, (h_n, c_n)


def rnn(x, params, h0=None, *, nonlinearity="tanh", num_layers=1, bidirectional=False, batch_first=False,
        training=False):
    """Stacked (bidirectional) Elman RNN. Returns (output, h_n) (+ reserve when training)."""
    dirs = 2 if bidirectional else 1
    h0 = _init_state(x, params, h0, num_layers, dirs, batch_first)
    states = [(h0[k],) for k in range(num_layers * dirs)]

    def cell(xt, st, w):
        return (rnn_cell(xt, st[0], *w, nonlinearity=nonlinearity),)

    out, finals, reserve = _run(x, params, states, num_layers, bidirectional, batch_first, cell)
    h_n = np.stack([s[0] for s in finals])
    if training:
        return out, h_n, reserve
    return out, h_n


def _backward(grad_output, grad_finals, params, reserve, num_layers, bidirectional, batch_first, cell_back,
              n_state):
    """Shared backward through time. grad_finals: per-(layer, dir) list of state gradients
    (arrays or None). cell_back(grad_state, inp_t, st_prev, w) -> (dx, dstate_prev, dweights)."""
    dirs = 2 if bidirectional else 1
    dy = np.swapaxes(grad_output, 0, 1) if batch_first else grad_output
    T = dy.shape[0]
    grad_params = [None] * len(params)
    grad_states = [None] * len(params)
    for layer in range(num_layers - 1, -1, -1):
        inp = reserve["inputs"][layer]
        dinp = np.zeros(inp.shape, dtype=dy.dtype)
        for d in range(dirs):
            k = layer * dirs + d
            w = _unpack(params[k])
            H = w[1].shape[1]
            hist = reserve["states"][k]
            ds = [np.zeros_like(s) if g is None else g for s, g in zip(hist[-1], grad_finals[k])]
            dw = [None if a is None else np.zeros(a.shape, dtype=dy.dtype) for a in w]
            order = list(range(T)) if d == 0 else list(range(T - 1, -1, -1))
            for step in range(T - 1, -1, -1):  # processing order, reversed
                t = order[step]
                ds[0] = ds[0] + dy[t][:, d * H:(d + 1) * H]
                dx, ds, dws = cell_back(ds, inp[t], hist[step], w)
                dinp[t] += dx
                for a, b in zip(dw, dws):
                    if a is not None:
                        a += b
            grad_params[k] = tuple(dw) if len(tuple(params[k])) == 4 else tuple(dw[:2])
            grad_states[k] = ds
        dy = dinp
    grad_x = np.swapaxes(dy, 0, 1) if batch_first else dy
    return grad_x, grad_params, [np.stack([s[j] for s in grad_states]) for j in range(n_state)]


def lstm_backward(grad_output, grad_h_n, grad_c_n, x, params, reserve, h0=None, c0=None, *, num_layers=1,
                  bidirectional=False, batch_first=False):
    """Gradients of lstm: (grad_x, grad_params, grad_h0, grad_c0). grad_h_n / grad_c_n may
    be None (zero); grad_params has params' nesting (None for absent biases); grad_h0 /
    grad_c0 are None when h0 / c0 were None."""
    n = len(params)

    def split(g):
        return [None] * n if g is None else [g[k] for k in range(n)]

    gh, gc = split(grad_h_n), split(grad_c_n)

    def cell_back(ds, xt, st, w):
        dx, dh, dc, *dws = lstm_cell_backward(ds[0], ds[1], xt, st[0], st[1], *w)
        return dx, [dh, dc], dws

    grad_x, grad_params, (dh0, dc0) = _backward(grad_output, [(a, b) for a, b in zip(gh, gc)], params, reserve,
                                                num_layers, bidirectional, batch_first, cell_back, 2)
    return grad_x, grad_params, None if h0 is None else dh0, None if c0 is None else dc0


def rnn_backward(grad_output, grad_h_n, x, params, reserve, h0=None, *, nonlinearity="tanh", num_layers=1,
                 bidirectional=False, batch_first=False):
    """Gradients of rnn: (grad_x, grad_params, grad_h0); grad_h0 is None when h0 was None."""
    n = len(params)
    gh = [None] * n if grad_h_n is None else [grad_h_n[k] for k in range(n)]

    def cell_back(ds, xt, st, w):
        dx, dh, *dws = rnn_cell_backward(ds[0], xt, st[0], *w, nonlinearity=nonlinearity)
        return dx, [dh], dws

    grad_x, grad_params, (dh0,) = _backward(grad_output, [(a,) for a in gh], params, reserve, num_layers,
                                            bidirectional, batch_first, cell_back, 1)
    return grad_x, grad_params, None if h0 is None else dh0

"""Recurrent kernels: LSTM and Elman RNN cells and whole sequences (stacked, bidirectional),
forward and backward through time.

Conventions are PyTorch's: gates stacked i, f, g, o in w_ih (4H, I), w_hh (4H, H), b_ih and
b_hh (4H,) (the RNN: H instead of 4H); ``params`` lists (w_ih, w_hh, b_ih, b_hh) per layer
and direction in the order layer 0 forward, layer 0 reverse, layer 1 forward, ... (an entry
may be (w_ih, w_hh) or have None biases, as bias=False in PyTorch); the output of a
bidirectional layer concatenates the forward and reverse hidden states; h_n / c_n have shape
(num_layers * dirs, B, H) in the same order as params.

Backward signatures (API.md's rule: gradient of the outputs, what the backward needs, then
the forward's own keyword arguments):

    lstm_backward(grad_output, grad_h_n, grad_c_n, x, params, reserve, h0=None, c0=None, *,
                  num_layers=1, bidirectional=False, batch_first=False)
        -> (grad_x, grad_params, grad_h0, grad_c0)
    rnn_backward(grad_output, grad_h_n, x, params, reserve, h0=None, *, nonlinearity="tanh",
                 num_layers=1, bidirectional=False, batch_first=False)
        -> (grad_x, grad_params, grad_h0)

grad_h_n / grad_c_n may be None (zero). x, params, h0 and c0 must be the ones the forward
ran with; ``reserve`` is what it returned with training=True. grad_params has the nesting of
params (a list of tuples of the same length, None for absent biases); grad_h0 / grad_c0 are
None when h0 / c0 were None. The cells' backwards follow the same pattern:
lstm_cell_backward(grad_h, grad_c, x, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None) ->
(grad_x, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) and
rnn_cell_backward(grad_h, x, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh") ->
(grad_x, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh).
"""

from __future__ import annotations

import numpy as np

from .. import _core, _cuda_conv_rnn
from .._arrays import backend, check_array, contiguous

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

_MODE = {"lstm": 0, "tanh": 1, "relu": 2}
_F32 = np.float32


class RNNReserve:
    """What lstm / rnn with training=True keep for the backward through time.

    outputs[l]: layer l's output sequence (T, B, dirs*H), time-major (the next layer's input);
    gates[k] / cells[k] (LSTM, per layer and direction k): the activated gates i, f, g, o
    (T*B, 4H) and the cell states (T*B, H) of every step. Treat it as opaque."""

    __slots__ = ("cells", "gates", "kind", "outputs", "shape")

    def __init__(self, kind, shape, outputs, gates, cells):
        self.kind = kind  # "lstm", "tanh" or "relu"
        self.shape = shape  # (T, B, H, num_layers, dirs)
        self.outputs = outputs
        self.gates = gates
        self.cells = cells

    def __repr__(self):
        T, B, H, L, D = self.shape
        return f"RNNReserve({self.kind}, T={T}, B={B}, H={H}, num_layers={L}, directions={D})"


def _shape(a):
    return tuple(a.shape)


def _on_cuda(name, arrays, params=None):
    """True for CuPy arrays (kinds checked across every argument, the weights included): the
    sequence functions then hand the call to _cuda_conv_rnn.py; the cells run through them."""
    if params is not None and isinstance(params, (list, tuple)):
        names = ("w_ih", "w_hh", "b_ih", "b_hh")
        for k, p in enumerate(params):
            if isinstance(p, (list, tuple)):
                arrays.update({f"params[{k}].{names[j]}": a for j, a in enumerate(p[:4])})
    return backend(**arrays) == "cuda"


def _check_int(v, name, minimum):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {v!r}")
    if v < minimum:
        raise ValueError(f"{name}: expected >= {minimum}, got {v}")
    return int(v)


def _check_nonlinearity(nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"nonlinearity: expected 'tanh' or 'relu', got {nonlinearity!r}")


def _entry(p, k, what):
    """Split params[k] into (w_ih, w_hh, b_ih, b_hh)."""
    if not isinstance(p, (tuple, list)) or len(p) not in (2, 4):
        n = len(p) if isinstance(p, (tuple, list)) else type(p).__name__
        raise ValueError(f"params[{k}] ({what}): expected a tuple (w_ih, w_hh, b_ih, b_hh) or (w_ih, w_hh), got {n}"
                         + (" entries" if isinstance(n, int) else ""))
    p = tuple(p)
    return p if len(p) == 4 else p + (None, None)


def _check_weights(w_ih, w_hh, b_ih, b_hh, G, I, where):
    """Validate one layer's weights for input size I (None: any); returns H."""
    check_array(w_hh, f"{where}w_hh", ndim=2)
    check_array(w_ih, f"{where}w_ih", ndim=2)
    H = w_hh.shape[1]
    gates = "4*hidden_size (gates i, f, g, o)" if G == 4 else "hidden_size"
    if H == 0 or w_hh.shape[0] != G * H:
        raise ValueError(f"{where}w_hh: expected shape ({gates}, hidden_size) = ({G}*H, H), got {_shape(w_hh)}")
    if w_ih.shape[0] != G * H or (I is not None and w_ih.shape[1] != I):
        exp = (G * H, I if I is not None else "input_size")
        raise ValueError(f"{where}w_ih: expected shape {exp} (hidden_size {H} from w_hh {_shape(w_hh)}), "
                         f"got {_shape(w_ih)}")
    for b, bn in ((b_ih, "b_ih"), (b_hh, "b_hh")):
        if b is not None:
            check_array(b, f"{where}{bn}", ndim=1)
            if b.shape[0] != G * H:
                raise ValueError(f"{where}{bn}: expected shape ({G * H},) for hidden_size {H}, got {_shape(b)}")
    return H


def _check_params(params, G, I, num_layers, dirs):
    """Validate the list of per-(layer, direction) weights; returns (H, entries)."""
    if not isinstance(params, (list, tuple)):
        raise TypeError(f"params: expected a list of (w_ih, w_hh, b_ih, b_hh) tuples, got {type(params).__name__}")
    n = num_layers * dirs
    if len(params) != n:
        raise ValueError(f"params: expected num_layers * directions = {num_layers} * {dirs} = {n} entries "
                         f"(layer 0 forward{', layer 0 reverse' if dirs == 2 else ''}, ...), got {len(params)}")
    entries = []
    H = None
    for k, p in enumerate(params):
        layer, d = divmod(k, dirs)
        what = f"layer {layer}{' reverse' if d else ''}"
        e = _entry(p, k, what)
        Hk = _check_weights(*e, G, I if layer == 0 else dirs * H, f"params[{k}] ({what}) ")
        if H is not None and Hk != H:
            raise ValueError(f"params[{k}] ({what}) w_hh: hidden size {Hk} (shape {_shape(e[1])}) does not match "
                             f"hidden size {H} of params[0] (w_hh shape {_shape(entries[0][1])})")
        H = Hk
        entries.append(e)
    return H, entries


def _check_state(s, name, shape):
    if s is None:
        return None
    check_array(s, name, ndim=3)
    if _shape(s) != shape:
        raise ValueError(f"{name}: expected shape (num_layers * directions, batch, hidden_size) = {shape}, "
                         f"got {_shape(s)}")
    return contiguous(s)


def _prepare(kind, x, params, states, num_layers, bidirectional, batch_first):
    """Shared validation of the sequence functions. Returns (seq (T, B, I) contiguous, H,
    entries, dirs, checked states)."""
    num_layers = _check_int(num_layers, "num_layers", 1)
    dirs = 2 if bidirectional else 1
    check_array(x, "x", ndim=3)
    G = 4 if kind == "lstm" else 1
    H, entries = _check_params(params, G, x.shape[2], num_layers, dirs)
    B = x.shape[0] if batch_first else x.shape[1]
    shape = (num_layers * dirs, B, H)
    states = [_check_state(s, n, shape) for n, s in states]
    seq = x.swapaxes(0, 1) if batch_first else x  # (the method: NumPy and CuPy arrays alike)
    entries = [tuple(None if a is None else contiguous(a) for a in e) for e in entries]
    return contiguous(seq), H, entries, dirs, states


def _forward(kind, x, params, h0, c0, num_layers, bidirectional, batch_first, training):
    lstm_ = kind == "lstm"
    seq, H, entries, dirs, (h0, c0) = _prepare(kind, x, params, [("h0", h0), ("c0", c0)], num_layers,
                                               bidirectional, batch_first)
    T, B, _ = seq.shape
    G = 4 if lstm_ else 1
    n = num_layers * dirs
    h_n = np.empty((n, B, H), _F32)
    c_n = np.empty((n, B, H), _F32) if lstm_ else None
    outputs, gates, cells = [], [], []
    inp = seq
    for layer in range(num_layers):
        y = np.empty((T, B, dirs * H), _F32)
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh, b_ih, b_hh = entries[k]
            g = np.empty((T * B, G * H), _F32) if training and lstm_ else None
            cs = np.empty((T * B, H), _F32) if training and lstm_ else None
            _core.rnn_layer_forward(_MODE[kind], inp, w_ih, w_hh, b_ih, b_hh, None if h0 is None else h0[k],
                                    None if c0 is None else c0[k], y, d * H, h_n[k], None if c_n is None else c_n[k],
                                    g, cs, d == 1)
            gates.append(g)
            cells.append(cs)
        outputs.append(y)
        inp = y
    out = np.ascontiguousarray(np.swapaxes(inp, 0, 1)) if batch_first else inp
    reserve = RNNReserve(kind, (T, B, H, num_layers, dirs), outputs, gates, cells) if training else None
    return out, h_n, c_n, reserve


def _check_reserve(reserve, kind, T, B, H, num_layers, dirs):
    if not isinstance(reserve, RNNReserve):
        raise TypeError(f"reserve: expected the RNNReserve returned by the forward with training=True, "
                        f"got {type(reserve).__name__}")
    if reserve.kind != kind or reserve.shape != (T, B, H, num_layers, dirs):
        raise ValueError(f"reserve: it was made by a forward with {reserve!r}, but this backward has "
                         f"{kind}, T={T}, B={B}, H={H}, num_layers={num_layers}, directions={dirs}")


def _backward(kind, grad_output, grad_h_n, grad_c_n, x, params, reserve, h0, c0, num_layers, bidirectional,
              batch_first):
    lstm_ = kind == "lstm"
    seq, H, entries, dirs, (h0, c0, gh, gc) = _prepare(
        kind, x, params, [("h0", h0), ("c0", c0), ("grad_h_n", grad_h_n), ("grad_c_n", grad_c_n)], num_layers,
        bidirectional, batch_first)
    T, B, _ = seq.shape
    _check_reserve(reserve, kind, T, B, H, num_layers, dirs)
    check_array(grad_output, "grad_output", ndim=3)
    expected = (B, T, dirs * H) if batch_first else (T, B, dirs * H)
    if _shape(grad_output) != expected:
        raise ValueError(f"grad_output: expected the output's shape {expected}, got {_shape(grad_output)}")
    dy = contiguous(np.swapaxes(grad_output, 0, 1) if batch_first else grad_output)
    G = 4 if lstm_ else 1
    n = num_layers * dirs
    dh0 = np.empty((n, B, H), _F32)
    dc0 = np.empty((n, B, H), _F32) if lstm_ else None
    grads = [None] * n
    for layer in range(num_layers - 1, -1, -1):
        inp = seq if layer == 0 else reserve.outputs[layer - 1]
        y = reserve.outputs[layer]
        dx = np.empty(inp.shape, _F32)
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh, b_ih, b_hh = entries[k]
            dw_ih = np.empty(w_ih.shape, _F32)
            dw_hh = np.empty(w_hh.shape, _F32)
            db = np.empty((G * H,), _F32) if (b_ih is not None or b_hh is not None) else None
            _core.rnn_layer_backward(
                _MODE[kind], inp, w_ih, w_hh, None if h0 is None else h0[k], None if c0 is None else c0[k], y,
                d * H, reserve.gates[k], reserve.cells[k], dy, None if gh is None else gh[k],
                None if gc is None else gc[k], dx, d == 1, dw_ih, dw_hh, db, dh0[k], None if dc0 is None else dc0[k],
                d == 1)
            g = (dw_ih, dw_hh, None if b_ih is None else db,
                 None if b_hh is None else (db.copy() if b_ih is not None else db))
            grads[k] = g if len(tuple(params[k])) == 4 else g[:2]
        dy = dx
    grad_x = np.ascontiguousarray(np.swapaxes(dy, 0, 1)) if batch_first else dy
    return grad_x, grads, dh0, dc0


def lstm(x, params, h0=None, c0=None, *, num_layers=1, bidirectional=False, batch_first=False, training=False):
    """Stacked, optionally bidirectional LSTM over a whole sequence.

    x: (T, B, I), or (B, T, I) with batch_first; params: num_layers * dirs tuples
    (w_ih (4H, I_l), w_hh (4H, H), b_ih (4H,), b_hh (4H,)) with I_0 = I and I_l = dirs*H after;
    h0, c0: (num_layers * dirs, B, H) or None (zeros).
    Returns (output, (h_n, c_n)); output (T, B, dirs*H) (batch-first when batch_first). With
    training=True returns (output, (h_n, c_n), reserve) for lstm_backward."""
    if _on_cuda("lstm", {"x": x, "h0": h0, "c0": c0}, params):
        return _cuda_conv_rnn.lstm(x, params, h0, c0, num_layers=num_layers, bidirectional=bidirectional,
                                   batch_first=batch_first, training=training)
    out, h_n, c_n, reserve = _forward("lstm", x, params, h0, c0, num_layers, bidirectional, batch_first, training)
    return (out, (h_n, c_n), reserve) if training else (out, (h_n, c_n))


def rnn(x, params, h0=None, *, nonlinearity="tanh", num_layers=1, bidirectional=False, batch_first=False,
        training=False):
    """Stacked, optionally bidirectional Elman RNN: h_t = act(x_t w_ih^T + b_ih + h_{t-1} w_hh^T + b_hh)
    with act tanh or relu; shapes as lstm's with H instead of 4H. Returns (output, h_n)
    (+ reserve with training=True)."""
    if _on_cuda("rnn", {"x": x, "h0": h0}, params):
        return _cuda_conv_rnn.rnn(x, params, h0, nonlinearity=nonlinearity, num_layers=num_layers,
                                  bidirectional=bidirectional, batch_first=batch_first, training=training)
    _check_nonlinearity(nonlinearity)
    out, h_n, _, reserve = _forward(nonlinearity, x, params, h0, None, num_layers, bidirectional, batch_first,
                                    training)
    return (out, h_n, reserve) if training else (out, h_n)


def lstm_backward(grad_output, grad_h_n, grad_c_n, x, params, reserve, h0=None, c0=None, *, num_layers=1,
                  bidirectional=False, batch_first=False):
    """Gradients of lstm: (grad_x, grad_params, grad_h0, grad_c0); see the module docstring."""
    if _on_cuda("lstm_backward", {"grad_output": grad_output, "grad_h_n": grad_h_n, "grad_c_n": grad_c_n, "x": x,
                                  "h0": h0, "c0": c0}, params):
        return _cuda_conv_rnn.lstm_backward(grad_output, grad_h_n, grad_c_n, x, params, reserve, h0, c0,
                                            num_layers=num_layers, bidirectional=bidirectional,
                                            batch_first=batch_first)
    grad_x, grads, dh0, dc0 = _backward("lstm", grad_output, grad_h_n, grad_c_n, x, params, reserve, h0, c0,
                                        num_layers, bidirectional, batch_first)
    return grad_x, grads, None if h0 is None else dh0, None if c0 is None else dc0


def rnn_backward(grad_output, grad_h_n, x, params, reserve, h0=None, *, nonlinearity="tanh", num_layers=1,
                 bidirectional=False, batch_first=False):
    """Gradients of rnn: (grad_x, grad_params, grad_h0); see the module docstring."""
    if _on_cuda("rnn_backward", {"grad_output": grad_output, "grad_h_n": grad_h_n, "x": x, "h0": h0}, params):
        return _cuda_conv_rnn.rnn_backward(grad_output, grad_h_n, x, params, reserve, h0, nonlinearity=nonlinearity,
                                           num_layers=num_layers, bidirectional=bidirectional,
                                           batch_first=batch_first)
    _check_nonlinearity(nonlinearity)
    grad_x, grads, dh0, _ = _backward(nonlinearity, grad_output, grad_h_n, None, x, params, reserve, h0, None,
                                      num_layers, bidirectional, batch_first)
    return grad_x, grads, None if h0 is None else dh0


# ---- cells: a sequence of length 1 through the same kernels ----

def _check_cell(x, hx, cx, w_ih, w_hh, b_ih, b_hh, G):
    check_array(x, "x", ndim=2)
    H = _check_weights(w_ih, w_hh, b_ih, b_hh, G, x.shape[1], "")
    B = x.shape[0]
    for s, name in ((hx, "hx"), (cx, "cx")):
        if s is None and name == "cx" and G == 1:
            continue
        check_array(s, name, ndim=2)
        if _shape(s) != (B, H):
            raise ValueError(f"{name}: expected shape (batch, hidden_size) = {(B, H)} (x {_shape(x)}, w_hh "
                             f"{_shape(w_hh)}), got {_shape(s)}")
    return B, H


def _cell_params(w_ih, w_hh, b_ih, b_hh):
    return [(w_ih, w_hh, b_ih, b_hh)]


def lstm_cell(x, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: x (B, I), hx and cx (B, H) -> (h, c), each (B, H)."""
    _on_cuda("lstm_cell", {"x": x, "hx": hx, "cx": cx, "w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh})
    _check_cell(x, hx, cx, w_ih, w_hh, b_ih, b_hh, 4)
    out, (_, c) = lstm(x[None], _cell_params(w_ih, w_hh, b_ih, b_hh), hx[None], cx[None])
    return out[0], c[0]


def lstm_cell_backward(grad_h, grad_c, x, hx, cx, w_ih, w_hh, b_ih=None, b_hh=None):
    """Gradients (grad_x, grad_hx, grad_cx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of
    lstm_cell from the gradients of h and c (grad_c may be None: zero)."""
    _on_cuda("lstm_cell_backward", {"grad_h": grad_h, "grad_c": grad_c, "x": x, "hx": hx, "cx": cx, "w_ih": w_ih, "w_hh": w_hh})
    B, H = _check_cell(x, hx, cx, w_ih, w_hh, b_ih, b_hh, 4)
    for g, name in ((grad_h, "grad_h"), (grad_c, "grad_c")):
        if g is not None:
            check_array(g, name, ndim=2)
            if _shape(g) != (B, H):
                raise ValueError(f"{name}: expected the output's shape {(B, H)}, got {_shape(g)}")
    params = _cell_params(w_ih, w_hh, b_ih, b_hh)
    _, _, reserve = lstm(x[None], params, hx[None], cx[None], training=True)
    dx, grads, dh, dc = lstm_backward(grad_h[None], None, None if grad_c is None else grad_c[None], x[None], params,
                                      reserve, hx[None], cx[None])
    return (dx[0], dh[0], dc[0]) + tuple(grads[0])


def rnn_cell(x, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One Elman RNN step: act(x @ w_ih.T + b_ih + hx @ w_hh.T + b_hh), act tanh or relu."""
    _on_cuda("rnn_cell", {"x": x, "hx": hx, "w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh})
    _check_nonlinearity(nonlinearity)
    _check_cell(x, hx, None, w_ih, w_hh, b_ih, b_hh, 1)
    out, _ = rnn(x[None], _cell_params(w_ih, w_hh, b_ih, b_hh), hx[None], nonlinearity=nonlinearity)
    return out[0]


def rnn_cell_backward(grad_h, x, hx, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """Gradients (grad_x, grad_hx, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) of rnn_cell."""
    _on_cuda("rnn_cell_backward", {"grad_h": grad_h, "x": x, "hx": hx, "w_ih": w_ih, "w_hh": w_hh})
    _check_nonlinearity(nonlinearity)
    B, H = _check_cell(x, hx, None, w_ih, w_hh, b_ih, b_hh, 1)
    check_array(grad_h, "grad_h", ndim=2)
    if _shape(grad_h) != (B, H):
        raise ValueError(f"grad_h: expected the output's shape {(B, H)}, got {_shape(grad_h)}")
    params = _cell_params(w_ih, w_hh, b_ih, b_hh)
    _, _, reserve = rnn(x[None], params, hx[None], nonlinearity=nonlinearity, training=True)
    dx, grads, dh = rnn_backward(grad_h[None], None, x[None], params, reserve, hx[None], nonlinearity=nonlinearity)
    return (dx[0], dh[0]) + tuple(grads[0])

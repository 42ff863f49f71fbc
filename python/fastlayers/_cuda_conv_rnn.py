"""CuPy-side dispatch of the CUDA convolution and recurrent kernels (csrc/conv/conv.cu,
csrc/rnn/rnn.cu).

The public functions in fastlayers.functional (_conv.py, _rnn.py) send CuPy arrays here with
their arguments untouched; these functions validate them with the very helpers the CPU path
uses (so errors read the same), allocate outputs and workspaces with CuPy, call
`_core.cuda_*` with device pointers on CuPy's current stream and return CuPy arrays. Layouts,
signatures and return conventions are the functional ones (docs/API.md).

conv_transpose2d is conv2d's adjoint, as on the CPU: its forward is conv2d's data gradient with
x in the role of grad_out, its backward conv2d's forward (grad_x) and weight gradient.
The recurrent reserve is the CPU's RNNReserve holding CuPy arrays (same layout).

CuPy is imported lazily: importing fastlayers never needs it.
"""

from __future__ import annotations

import numpy as np

from . import _core
from ._arrays import check_array, contiguous, require_cuda

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "lstm", "lstm_backward", "rnn", "rnn_backward",
]

_F32 = np.float32
_MODE = {"lstm": 0, "tanh": 1, "relu": 2}  # csrc/rnn/rnn_cuda.h


def _cp():
    import cupy

    return cupy


def _stream() -> int:
    return _cp().cuda.get_current_stream().ptr


def _ptr(a) -> int:
    return 0 if a is None else int(a.data.ptr)


def _conv_mod():
    from .functional import _conv

    return _conv


def _rnn_mod():
    from .functional import _rnn

    return _rnn


# ---- convolution -----------------------------------------------------------------------------
def _dims(n, c, h, w, k, oh, ow, kh, kw, s, p, d, groups):
    return [int(v) for v in (n, c, h, w, k, oh, ow, kh, kw, s[0], s[1], p[0], p[1], d[0], d[1], groups)]


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    require_cuda()
    cp = _cp()
    x, weight, bias, s, p, d, groups, (oh, ow) = _conv_mod()._conv_setup(x, weight, bias, stride, padding, dilation,
                                                                          groups)
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    y = cp.empty((n, k, oh, ow), _F32)
    if y.size:
        _core.cuda_conv2d_forward(_ptr(x), _ptr(weight), _ptr(bias), _ptr(y),
                                  _dims(n, c, h, w, k, oh, ow, kh, kw, s, p, d, groups), _stream())
    return y


def conv2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    require_cuda()
    cp = _cp()
    x, weight, bias, s, p, d, groups, (oh, ow) = _conv_mod()._conv_setup(x, weight, bias, stride, padding, dilation,
                                                                          groups)
    check_array(grad_out, "grad_out", ndim=4)
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    expected = (n, k, oh, ow)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"grad_out: shape {tuple(grad_out.shape)} does not match conv2d's output shape {expected}")
    g = contiguous(grad_out)
    dims = _dims(n, c, h, w, k, oh, ow, kh, kw, s, p, d, groups)
    grad_x = cp.empty(x.shape, _F32)
    grad_w = cp.empty(weight.shape, _F32)
    grad_b = None if bias is None else cp.empty(bias.shape, _F32)
    if grad_x.size:
        _core.cuda_conv2d_backward_data(_ptr(g), _ptr(weight), 0, _ptr(grad_x), dims, _stream())
    _core.cuda_conv2d_backward_weight(_ptr(g), _ptr(x), _ptr(grad_w), _ptr(grad_b), dims, _stream())
    return grad_x, grad_w, grad_b


def _transpose_dims(x, weight, c_out, oh, ow, s, p, d, groups):
    # The convolution whose adjoint this is: input (n, c_out, oh, ow), output (n, c_in, h, w).
    n, c_in, h, w = x.shape
    _, _, kh, kw = weight.shape
    return _dims(n, c_out, oh, ow, c_in, h, w, kh, kw, s, p, d, groups)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    require_cuda()
    cp = _cp()
    x, weight, bias, s, p, d, groups, (c_out, oh, ow) = _conv_mod()._transpose_setup(
        x, weight, bias, stride, padding, output_padding, groups, dilation)
    y = cp.empty((x.shape[0], c_out, oh, ow), _F32)
    if y.size:
        _core.cuda_conv2d_backward_data(_ptr(x), _ptr(weight), _ptr(bias), _ptr(y),
                                        _transpose_dims(x, weight, c_out, oh, ow, s, p, d, groups), _stream())
    return y


def conv_transpose2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1):
    require_cuda()
    cp = _cp()
    x, weight, bias, s, p, d, groups, (c_out, oh, ow) = _conv_mod()._transpose_setup(
        x, weight, bias, stride, padding, output_padding, groups, dilation)
    check_array(grad_out, "grad_out", ndim=4)
    expected = (x.shape[0], c_out, oh, ow)
    if tuple(grad_out.shape) != expected:
        raise ValueError(f"grad_out: shape {tuple(grad_out.shape)} does not match conv_transpose2d's output shape "
                         f"{expected}")
    g = contiguous(grad_out)
    dims = _transpose_dims(x, weight, c_out, oh, ow, s, p, d, groups)
    grad_x = cp.empty(x.shape, _F32)
    grad_w = cp.empty(weight.shape, _F32)
    if grad_x.size:
        _core.cuda_conv2d_forward(_ptr(g), _ptr(weight), 0, _ptr(grad_x), dims, _stream())
    _core.cuda_conv2d_backward_weight(_ptr(x), _ptr(g), _ptr(grad_w), 0, dims, _stream())
    grad_b = None
    if bias is not None:
        grad_b = cp.empty(bias.shape, _F32)
        _core.cuda_channel_sum(_ptr(g), _ptr(grad_b), int(g.shape[0]), int(c_out), int(oh) * int(ow), _stream())
    return grad_x, grad_w, grad_b


# ---- recurrent ---------------------------------------------------------------------------------
def _forward(kind, x, params, h0, c0, num_layers, bidirectional, batch_first, training):
    R_ = _rnn_mod()
    cp = _cp()
    lstm_ = kind == "lstm"
    seq, H, entries, dirs, (h0, c0) = R_._prepare(kind, x, params, [("h0", h0), ("c0", c0)], num_layers,
                                                  bidirectional, batch_first)
    T, B, _ = (int(v) for v in seq.shape)
    G = 4 if lstm_ else 1
    n = num_layers * dirs
    h_n = cp.empty((n, B, H), _F32)
    c_n = cp.empty((n, B, H), _F32) if lstm_ else None
    work = cp.empty((T * B, G * H), _F32)
    outputs, gates, cells = [], [], []
    inp = seq
    for layer in range(num_layers):
        y = cp.empty((T, B, dirs * H), _F32)
        n_in = int(inp.shape[2])
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh, b_ih, b_hh = entries[k]
            g = cp.empty((T * B, G * H), _F32) if training and lstm_ else None
            cs = cp.empty((T * B, H), _F32) if training and lstm_ else None
            _core.cuda_rnn_layer_forward(
                _MODE[kind], T, B, n_in, H, _ptr(inp), _ptr(w_ih), _ptr(w_hh), _ptr(b_ih), _ptr(b_hh),
                _ptr(None if h0 is None else h0[k]), _ptr(None if c0 is None else c0[k]), _ptr(y), dirs * H, d * H,
                _ptr(h_n[k]), _ptr(None if c_n is None else c_n[k]), _ptr(g), _ptr(cs), _ptr(work), d == 1,
                _stream())
            gates.append(g)
            cells.append(cs)
        outputs.append(y)
        inp = y
    out = cp.ascontiguousarray(inp.swapaxes(0, 1)) if batch_first else inp
    reserve = R_.RNNReserve(kind, (T, B, H, num_layers, dirs), outputs, gates, cells) if training else None
    return out, h_n, c_n, reserve


def _backward(kind, grad_output, grad_h_n, grad_c_n, x, params, reserve, h0, c0, num_layers, bidirectional,
              batch_first):
    R_ = _rnn_mod()
    cp = _cp()
    lstm_ = kind == "lstm"
    seq, H, entries, dirs, (h0, c0, gh, gc) = R_._prepare(
        kind, x, params, [("h0", h0), ("c0", c0), ("grad_h_n", grad_h_n), ("grad_c_n", grad_c_n)], num_layers,
        bidirectional, batch_first)
    T, B, _ = (int(v) for v in seq.shape)
    R_._check_reserve(reserve, kind, T, B, H, num_layers, dirs)
    check_array(grad_output, "grad_output", ndim=3)
    expected = (B, T, dirs * H) if batch_first else (T, B, dirs * H)
    if tuple(grad_output.shape) != expected:
        raise ValueError(f"grad_output: expected the output's shape {expected}, got {tuple(grad_output.shape)}")
    dy = contiguous(grad_output.swapaxes(0, 1) if batch_first else grad_output)
    G = 4 if lstm_ else 1
    n = num_layers * dirs
    dh0 = cp.empty((n, B, H), _F32)
    dc0 = cp.empty((n, B, H), _F32) if lstm_ else None
    work_dg = cp.empty((T * B, G * H), _F32)
    work_wt = cp.empty((H, G * H), _F32)
    work_dc = cp.empty((B, H), _F32) if lstm_ else None
    grads = [None] * n
    for layer in range(num_layers - 1, -1, -1):
        inp = seq if layer == 0 else reserve.outputs[layer - 1]
        y = reserve.outputs[layer]
        dx = cp.empty(inp.shape, _F32)
        n_in = int(inp.shape[2])
        for d in range(dirs):
            k = layer * dirs + d
            w_ih, w_hh, b_ih, b_hh = entries[k]
            dw_ih = cp.empty(w_ih.shape, _F32)
            dw_hh = cp.empty(w_hh.shape, _F32)
            db = cp.empty((G * H,), _F32) if (b_ih is not None or b_hh is not None) else None
            _core.cuda_rnn_layer_backward(
                _MODE[kind], T, B, n_in, H, _ptr(inp), _ptr(w_ih), _ptr(w_hh), _ptr(None if h0 is None else h0[k]),
                _ptr(None if c0 is None else c0[k]), _ptr(y), dirs * H, d * H, _ptr(reserve.gates[k]),
                _ptr(reserve.cells[k]), _ptr(dy), _ptr(None if gh is None else gh[k]),
                _ptr(None if gc is None else gc[k]), _ptr(dx), d == 1, _ptr(dw_ih), _ptr(dw_hh), _ptr(db),
                _ptr(dh0[k]), _ptr(None if dc0 is None else dc0[k]), _ptr(work_dg), _ptr(work_wt),
                _ptr(work_dc), d == 1, _stream())
            g = (dw_ih, dw_hh, None if b_ih is None else db,
                 None if b_hh is None else (db.copy() if b_ih is not None else db))
            grads[k] = g if len(tuple(params[k])) == 4 else g[:2]
        dy = dx
    grad_x = cp.ascontiguousarray(dy.swapaxes(0, 1)) if batch_first else dy
    return grad_x, grads, dh0, dc0


def lstm(x, params, h0=None, c0=None, *, num_layers=1, bidirectional=False, batch_first=False, training=False):
    require_cuda()
    out, h_n, c_n, reserve = _forward("lstm", x, params, h0, c0, num_layers, bidirectional, batch_first, training)
    return (out, (h_n, c_n), reserve) if training else (out, (h_n, c_n))


def rnn(x, params, h0=None, *, nonlinearity="tanh", num_layers=1, bidirectional=False, batch_first=False,
        training=False):
    require_cuda()
    _rnn_mod()._check_nonlinearity(nonlinearity)
    out, h_n, _, reserve = _forward(nonlinearity, x, params, h0, None, num_layers, bidirectional, batch_first,
                                    training)
    return (out, h_n, reserve) if training else (out, h_n)


def lstm_backward(grad_output, grad_h_n, grad_c_n, x, params, reserve, h0=None, c0=None, *, num_layers=1,
                  bidirectional=False, batch_first=False):
    require_cuda()
    grad_x, grads, dh0, dc0 = _backward("lstm", grad_output, grad_h_n, grad_c_n, x, params, reserve, h0, c0,
                                        num_layers, bidirectional, batch_first)
    return grad_x, grads, None if h0 is None else dh0, None if c0 is None else dc0


def rnn_backward(grad_output, grad_h_n, x, params, reserve, h0=None, *, nonlinearity="tanh", num_layers=1,
                 bidirectional=False, batch_first=False):
    require_cuda()
    _rnn_mod()._check_nonlinearity(nonlinearity)
    grad_x, grads, dh0, _ = _backward(nonlinearity, grad_output, grad_h_n, None, x, params, reserve, h0, None,
                                      num_layers, bidirectional, batch_first)
    return grad_x, grads, None if h0 is None else dh0

"""TEMPORARY stand-ins used only by the nn tests while the kernel branches are unmerged.

While conv/pool (issue 3), lstm/rnn (issue 4), attention (issue 5), norm/dropout/embedding/
losses and fastlayers.optim (branch nnk) are not in this tree, `install()` fills each name that
fastlayers.functional lacks with fastlayers.reference's function of the same name when that
exists, else with the plain-NumPy one below (same API.md signatures; the backward signatures are
the ones nn/_kernels.py assumes). `ref(name)` gives the oracle: fastlayers.reference's function
when there is one, else the one below. Once every branch is merged nothing here is used and the
file can go.
"""

from __future__ import annotations

import math
import sys
import types

import numpy as np

KERNELS = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "upsample_nearest2d", "upsample_nearest2d_backward",
    "batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward", "dropout", "dropout_backward",
    "embedding", "embedding_backward", "lstm", "lstm_backward", "rnn", "rnn_backward",
    "scaled_dot_product_attention", "scaled_dot_product_attention_backward",
    "mse_loss", "mse_loss_backward", "binary_cross_entropy", "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "cross_entropy", "cross_entropy_backward",
]


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


# -- conv -----------------------------------------------------------------------------------
def _conv_pads(padding, kernel, dilation):
    """(top, bottom, left, right)."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        th, tw = dilation[0] * (kernel[0] - 1), dilation[1] * (kernel[1] - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


def _out_size(n, k, s, pa, pb, d):
    return (n + pa + pb - d * (k - 1) - 1) // s + 1


def _cols(x, kernel, stride, pads, dilation):
    """x (N, C, H, W) -> (N, C, kh, kw, Ho, Wo) windows."""
    N, C, H, W = x.shape
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    Ho = _out_size(H, kh, sh, pads[0], pads[1], dh)
    Wo = _out_size(W, kw, sw, pads[2], pads[3], dw)
    cols = np.zeros((N, C, kh, kw, Ho, Wo), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw]
    return cols, Ho, Wo


def _uncols(gcols, x_shape, kernel, stride, pads, dilation):
    N, C, H, W = x_shape
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    Ho, Wo = gcols.shape[-2:]
    gxp = np.zeros((N, C, H + pads[0] + pads[1], W + pads[2] + pads[3]), gcols.dtype)
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw] += gcols[:, :, i, j]
    return gxp[:, :, pads[0]:pads[0] + H, pads[2]:pads[2] + W]


def _conv_core(x, w, stride, pads, dilation, groups):
    N, C = x.shape[:2]
    K, Cg, kh, kw = w.shape
    cols, Ho, Wo = _cols(x, (kh, kw), stride, pads, dilation)
    G = groups
    c = cols.reshape(N, G, Cg * kh * kw, Ho * Wo)
    wg = w.reshape(G, K // G, Cg * kh * kw)
    out = np.einsum("gkc,ngcp->ngkp", wg, c).reshape(N, K, Ho, Wo)
    return out, c


def _conv_grad_input(g, w, x_shape, stride, pads, dilation, groups):
    N = g.shape[0]
    K, Cg, kh, kw = w.shape
    G = groups
    Ho, Wo = g.shape[-2:]
    gg = g.reshape(N, G, K // G, Ho * Wo)
    wg = w.reshape(G, K // G, Cg * kh * kw)
    gc = np.einsum("gkc,ngkp->ngcp", wg, gg).reshape(N, G * Cg, kh, kw, Ho, Wo)
    return _uncols(gc, x_shape, (kh, kw), stride, pads, dilation)


def _conv_grad_weight(g, x, w_shape, stride, pads, dilation, groups):
    N = g.shape[0]
    K, Cg, kh, kw = w_shape
    G = groups
    cols, Ho, Wo = _cols(x, (kh, kw), stride, pads, dilation)
    c = cols.reshape(N, G, Cg * kh * kw, Ho * Wo)
    gg = g.reshape(N, G, K // G, Ho * Wo)
    return np.einsum("ngkp,ngcp->gkc", gg, c).reshape(w_shape)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    d = _pair(dilation)
    pads = _conv_pads(padding, weight.shape[2:], d)
    out, _ = _conv_core(x, weight, _pair(stride), pads, d, groups)
    if bias is not None:
        out = out + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out, dtype=x.dtype)


def conv2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    d, s = _pair(dilation), _pair(stride)
    pads = _conv_pads(padding, weight.shape[2:], d)
    gx = _conv_grad_input(grad_out, weight, x.shape, s, pads, d, groups)
    gw = _conv_grad_weight(grad_out, x, weight.shape, s, pads, d, groups)
    gb = None if bias is None else grad_out.sum(axis=(0, 2, 3))
    return np.ascontiguousarray(gx), np.ascontiguousarray(gw), gb


def _convt_shape(x, weight, stride, padding, output_padding, groups, dilation):
    N, _, H, W = x.shape
    (sh, sw), (ph, pw), (oh, ow), (dh, dw) = map(_pair, (stride, padding, output_padding, dilation))
    kh, kw = weight.shape[2:]
    Ho = (H - 1) * sh - 2 * ph + dh * (kh - 1) + oh + 1
    Wo = (W - 1) * sw - 2 * pw + dw * (kw - 1) + ow + 1
    return (N, weight.shape[1] * groups, Ho, Wo)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    shape = _convt_shape(x, weight, stride, padding, output_padding, groups, dilation)
    ph, pw = _pair(padding)
    y = _conv_grad_input(x, weight, shape, _pair(stride), (ph, ph, pw, pw), _pair(dilation), groups)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(y, dtype=x.dtype)


def conv_transpose2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1):
    ph, pw = _pair(padding)
    pads, s, d = (ph, ph, pw, pw), _pair(stride), _pair(dilation)
    gx, _ = _conv_core(grad_out, weight, s, pads, d, groups)
    gw = _conv_grad_weight(x, grad_out, weight.shape, s, pads, d, groups)
    gb = None if bias is None else grad_out.sum(axis=(0, 2, 3))
    return np.ascontiguousarray(gx), np.ascontiguousarray(gw), gb


# -- pooling --------------------------------------------------------------------------------
def _pool_out(n, k, s, p, d, ceil_mode):
    eff = d * (k - 1) + 1
    if ceil_mode:
        o = -(-(n + 2 * p - eff) // s) + 1
        if (o - 1) * s >= n + p:  # the last window must start inside the input or left padding
            o -= 1
    else:
        o = (n + 2 * p - eff) // s + 1
    return o


def _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode, fill):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    N, C, H, W = x.shape
    Ho = _pool_out(H, kh, sh, ph, dh, ceil_mode)
    Wo = _pool_out(W, kw, sw, pw, dw, ceil_mode)
    extra_h = max(0, (Ho - 1) * sh + dh * (kh - 1) + 1 - (H + 2 * ph))
    extra_w = max(0, (Wo - 1) * sw + dw * (kw - 1) + 1 - (W + 2 * pw))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)), constant_values=fill)
    win = np.empty((N, C, kh * kw, Ho, Wo), x.dtype)
    rows = np.empty((kh * kw, Ho, Wo), np.int64)
    colsi = np.empty((kh * kw, Ho, Wo), np.int64)
    for i in range(kh):
        for j in range(kw):
            win[:, :, i * kw + j] = xp[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw]
            rows[i * kw + j] = (np.arange(Ho) * sh + i * dh - ph)[:, None]
            colsi[i * kw + j] = (np.arange(Wo) * sw + j * dw - pw)[None, :]
    return win, rows, colsi, (Ho, Wo)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    win, rows, cols, _ = _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode, -np.inf)
    arg = win.argmax(axis=2)
    y = np.take_along_axis(win, arg[:, :, None], axis=2)[:, :, 0]
    r = np.take_along_axis(np.broadcast_to(rows, win.shape), arg[:, :, None], axis=2)[:, :, 0]
    c = np.take_along_axis(np.broadcast_to(cols, win.shape), arg[:, :, None], axis=2)[:, :, 0]
    idx = (r * x.shape[3] + c).astype(np.int64)
    y = np.ascontiguousarray(y)
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, x, indices, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    N, C, H, W = x.shape
    gx = np.zeros((N * C, H * W), grad_out.dtype)
    flat_idx = indices.reshape(N * C, -1)
    np.add.at(gx, (np.arange(N * C)[:, None], flat_idx), grad_out.reshape(N * C, -1))
    return gx.reshape(x.shape)


def _avg_divisor(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """Per output position, how many elements PyTorch divides by (windows clipped to input+padding;
    without count_include_pad, to the input)."""
    H, W = x_shape[2:]
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)

    def counts(n, k, s, p):
        o = _pool_out(n, k, s, p, 1, ceil_mode)
        out = []
        for i in range(o):
            a = i * s - p
            b = min(a + k, n + p)
            if not count_include_pad:
                a, b = max(a, 0), min(b, n)
            out.append(b - a)
        return np.array(out, np.float64)

    return counts(H, kh, sh, ph)[:, None] * counts(W, kw, sw, pw)[None, :]


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    win, *_ = _pool_windows(x, kernel_size, stride, padding, 1, ceil_mode, 0.0)
    div = _avg_divisor(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    return np.ascontiguousarray(win.sum(axis=2) / div, dtype=x.dtype)


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    N, C, H, W = x.shape
    div = _avg_divisor(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    g = grad_out / div
    Ho, Wo = g.shape[-2:]
    gxp = np.zeros((N, C, H + 2 * ph + sh * Ho + kh, W + 2 * pw + sw * Wo + kw), grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i:i + sh * (Ho - 1) + 1:sh, j:j + sw * (Wo - 1) + 1:sw] += g
    return np.ascontiguousarray(gxp[:, :, ph:ph + H, pw:pw + W])


def _adaptive_bins(n, o):
    return [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]


def adaptive_avg_pool2d(x, output_size):
    oh, ow = _pair(output_size)
    N, C, H, W = x.shape
    y = np.empty((N, C, oh, ow), x.dtype)
    for i, (a, b) in enumerate(_adaptive_bins(H, oh)):
        for j, (c, d) in enumerate(_adaptive_bins(W, ow)):
            y[:, :, i, j] = x[:, :, a:b, c:d].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(grad_out, x, output_size):
    oh, ow = _pair(output_size)
    H, W = x.shape[2:]
    gx = np.zeros(x.shape, grad_out.dtype)
    for i, (a, b) in enumerate(_adaptive_bins(H, oh)):
        for j, (c, d) in enumerate(_adaptive_bins(W, ow)):
            gx[:, :, a:b, c:d] += grad_out[:, :, i:i + 1, j:j + 1] / ((b - a) * (d - c))
    return gx


def upsample_nearest2d(x, scale_factor):
    fh, fw = _pair(scale_factor)
    return np.ascontiguousarray(np.repeat(np.repeat(x, fh, axis=2), fw, axis=3))


def upsample_nearest2d_backward(grad_out, x, scale_factor):
    fh, fw = _pair(scale_factor)
    N, C, H, W = x.shape
    return np.ascontiguousarray(grad_out.reshape(N, C, H, fh, W, fw).sum(axis=(3, 5)))


# -- norms, dropout, embedding --------------------------------------------------------------
def _bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    axes = _bn_axes(x)
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        n = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean.astype(running_mean.dtype)
            running_var *= 1 - momentum
            running_var += momentum * (var * n / max(n - 1, 1)).astype(running_var.dtype)
    else:
        mean, var = running_mean, running_var
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean.reshape(bshape)) * invstd.reshape(bshape)
    if weight is not None:
        y = y * weight.reshape(bshape)
    if bias is not None:
        y = y + bias.reshape(bshape)
    y = np.ascontiguousarray(y, dtype=x.dtype)
    return (y, mean.astype(x.dtype), invstd.astype(x.dtype)) if return_stats else y


def batch_norm_backward(grad_out, x, mean, invstd, weight=None, bias=None, training=True, eps=1e-5):
    axes = _bn_axes(x)
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    n = x.size // x.shape[1]
    xhat = (x - mean.reshape(bshape)) * invstd.reshape(bshape)
    gb = grad_out.sum(axis=axes)
    gw = (grad_out * xhat).sum(axis=axes)
    w = np.ones_like(invstd) if weight is None else weight
    gx = (w * invstd).reshape(bshape) / n * (n * grad_out - gb.reshape(bshape) - xhat * gw.reshape(bshape))
    return (np.ascontiguousarray(gx, dtype=x.dtype), None if weight is None else gw,
            None if bias is None else gb)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    axes = tuple(range(x.ndim - len(tuple(normalized_shape)), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return np.ascontiguousarray(y, dtype=x.dtype)


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, bias=None, eps=1e-5):
    k = len(tuple(normalized_shape))
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    n = int(np.prod(x.shape[x.ndim - k:]))
    mean = x.mean(axis=axes, keepdims=True)
    invstd = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    xhat = (x - mean) * invstd
    gw = None if weight is None else (grad_out * xhat).sum(axis=lead)
    gb = None if bias is None else grad_out.sum(axis=lead)
    gxhat = grad_out if weight is None else grad_out * weight
    gx = invstd / n * (n * gxhat - gxhat.sum(axis=axes, keepdims=True)
                       - xhat * (gxhat * xhat).sum(axis=axes, keepdims=True))
    return np.ascontiguousarray(gx, dtype=x.dtype), gw, gb


def dropout(x, p=0.5, training=True, seed=None):
    if not training or p == 0:
        return x.copy(), None
    keep = np.random.default_rng(seed).random(x.shape) >= p
    mask = (keep / (1.0 - p) if p < 1 else np.zeros(x.shape)).astype(x.dtype)
    return x * mask, mask


def dropout_backward(grad_out, mask, p=0.5, training=True):
    return grad_out if mask is None else grad_out * mask


def embedding(indices, weight):
    return np.ascontiguousarray(weight[indices])


def embedding_backward(grad_out, indices, weight):
    gw = np.zeros(weight.shape, grad_out.dtype)
    np.add.at(gw, indices.reshape(-1), grad_out.reshape(-1, weight.shape[1]))
    return gw


# -- recurrent ------------------------------------------------------------------------------
def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _cell_forward(kind, x_t, h, c, w_ih, w_hh, b_ih, b_hh, nonlinearity):
    z = x_t @ w_ih.T + h @ w_hh.T
    if b_ih is not None:
        z = z + b_ih
    if b_hh is not None:
        z = z + b_hh
    if kind == "lstm":
        H = h.shape[1]
        i, f, g, o = _sig(z[:, :H]), _sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), _sig(z[:, 3 * H:])
        c_new = f * c + i * g
        return o * np.tanh(c_new), c_new, (i, f, g, o, c_new)
    hn = np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0)
    return hn, None, (hn,)


def _direction(kind, x, w, h, c, reverse, nonlinearity):
    T = x.shape[0]
    out = np.empty((T, x.shape[1], h.shape[1]), x.dtype)
    cache = []
    for t in (reversed(range(T)) if reverse else range(T)):
        hn, cn, saved = _cell_forward(kind, x[t], h, c, *w, nonlinearity)
        cache.append((t, h, c, saved))
        h, c = hn, cn
        out[t] = h
    return out, h, c, cache


def _direction_backward(kind, g_out, g_h, g_c, x, w, cache, nonlinearity):
    w_ih, w_hh, b_ih, b_hh = w
    gx = np.zeros(x.shape, g_out.dtype)
    gw_ih, gw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    gb = np.zeros(w_ih.shape[0], g_out.dtype)
    dh = g_h.copy()
    dc = None if g_c is None else g_c.copy()
    for t, h_prev, c_prev, saved in reversed(cache):
        dh = dh + g_out[t]
        if kind == "lstm":
            i, f, g, o, c_new = saved
            tc = np.tanh(c_new)
            do = dh * tc
            dcc = dc + dh * o * (1 - tc * tc)
            dz = np.concatenate([dcc * g * i * (1 - i), dcc * c_prev * f * (1 - f), dcc * i * (1 - g * g),
                                 do * o * (1 - o)], axis=1)
            dc = dcc * f
        else:
            (hn,) = saved
            dz = dh * ((1 - hn * hn) if nonlinearity == "tanh" else (hn > 0))
        gx[t] = dz @ w_ih
        gw_ih += dz.T @ x[t]
        gw_hh += dz.T @ h_prev
        gb += dz.sum(axis=0)
        dh = dz @ w_hh
    return gx, (gw_ih, gw_hh, None if b_ih is None else gb.copy(), None if b_hh is None else gb.copy()), dh, dc


def _rnn_forward(kind, x, params, h0, c0, nonlinearity, num_layers, bidirectional, batch_first, training):
    if batch_first:
        x = x.transpose(1, 0, 2)
    D = 2 if bidirectional else 1
    T, B = x.shape[:2]
    H = params[0][1].shape[1]
    dt = x.dtype
    h0 = np.zeros((num_layers * D, B, H), dt) if h0 is None else h0
    c0 = np.zeros((num_layers * D, B, H), dt) if (kind == "lstm" and c0 is None) else c0
    hn, cn, reserve = [], [], []
    inp = x
    for layer in range(num_layers):
        outs, caches = [], []
        for d in range(D):
            k = layer * D + d
            out, h, c, cache = _direction(kind, inp, params[k], h0[k], None if c0 is None else c0[k], d == 1,
                                          nonlinearity)
            outs.append(out)
            caches.append(cache)
            hn.append(h)
            cn.append(c)
        reserve.append((inp, caches))
        inp = np.concatenate(outs, axis=2) if D == 2 else outs[0]
    output = inp.transpose(1, 0, 2) if batch_first else inp
    output = np.ascontiguousarray(output)
    hn = np.stack(hn)
    cn = np.stack(cn) if kind == "lstm" else None
    res = {"layers": reserve, "h0": h0, "c0": c0}
    return output, hn, cn, res


def _rnn_backward(kind, g_output, g_hn, g_cn, params, reserve, nonlinearity, num_layers, bidirectional, batch_first):
    D = 2 if bidirectional else 1
    g = g_output.transpose(1, 0, 2) if batch_first else g_output
    H = params[0][1].shape[1]
    B = g.shape[1]
    zeros = np.zeros((num_layers * D, B, H), g.dtype)
    g_hn = zeros if g_hn is None else g_hn
    g_cn = zeros if (kind == "lstm" and g_cn is None) else g_cn
    gparams = [None] * len(params)
    gh0, gc0 = np.zeros_like(zeros), np.zeros_like(zeros)
    for layer in reversed(range(num_layers)):
        inp, caches = reserve["layers"][layer]
        g_in = np.zeros(inp.shape, g.dtype)
        for d in range(D):
            k = layer * D + d
            gx, gp, dh, dc = _direction_backward(kind, g[..., d * H:(d + 1) * H], g_hn[k],
                                                 None if g_cn is None else g_cn[k], inp, params[k], caches[d],
                                                 nonlinearity)
            g_in += gx
            gparams[k] = gp
            gh0[k] = dh
            if dc is not None:
                gc0[k] = dc
        g = g_in
    gx = g.transpose(1, 0, 2) if batch_first else g
    return np.ascontiguousarray(gx), gparams, gh0, gc0


def lstm(x, params, h0=None, c0=None, *, num_layers=1, bidirectional=False, batch_first=False, training=False):
    out, hn, cn, res = _rnn_forward("lstm", x, params, h0, c0, None, num_layers, bidirectional, batch_first, training)
    return (out, (hn, cn), res) if training else (out, (hn, cn))


def lstm_backward(grad_output, grad_h_n, grad_c_n, x, params, h0, c0, reserve, *, num_layers=1,
                  bidirectional=False, batch_first=False):
    return _rnn_backward("lstm", grad_output, grad_h_n, grad_c_n, params, reserve, None, num_layers,
                         bidirectional, batch_first)


def rnn(x, params, h0=None, *, nonlinearity="tanh", num_layers=1, bidirectional=False, batch_first=False,
        training=False):
    out, hn, _, res = _rnn_forward("rnn", x, params, h0, None, nonlinearity, num_layers, bidirectional,
                                   batch_first, training)
    return (out, hn, res) if training else (out, hn)


def rnn_backward(grad_output, grad_h_n, x, params, h0, reserve, *, nonlinearity="tanh", num_layers=1,
                 bidirectional=False, batch_first=False):
    gx, gp, gh0, _ = _rnn_backward("rnn", grad_output, grad_h_n, None, params, reserve, nonlinearity, num_layers,
                                   bidirectional, batch_first)
    return gx, gp, gh0


# -- attention ------------------------------------------------------------------------------
def _scores(q, k, attn_mask, is_causal, scale):
    s = (q @ np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]) if scale is None else scale)
    L, S = s.shape[-2:]
    if is_causal:
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    if attn_mask is not None:
        s = np.where(attn_mask, s, -np.inf) if attn_mask.dtype == bool else s + attn_mask
    return s


def _probs(s):
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    tot = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = np.where(tot > 0, np.log(np.where(tot > 0, tot, 1.0)) + m, -np.inf)
    p = np.where(tot > 0, e / np.where(tot > 0, tot, 1.0), 0.0)
    return p, lse[..., 0]


def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None, enable_gqa=False,
                                 return_lse=False):
    p, lse = _probs(_scores(q, k, attn_mask, is_causal, scale))
    out = np.ascontiguousarray((p @ v).astype(q.dtype))
    return (out, lse.astype(q.dtype)) if return_lse else out


def scaled_dot_product_attention_backward(grad_out, q, k, v, out, lse, attn_mask=None, is_causal=False, scale=None,
                                          enable_gqa=False):
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    p, _ = _probs(_scores(q, k, attn_mask, is_causal, scale))
    gv = np.swapaxes(p, -1, -2) @ grad_out
    dp = grad_out @ np.swapaxes(v, -1, -2)
    ds = p * (dp - (grad_out * out).sum(axis=-1, keepdims=True))
    gq = (ds @ k) * sc
    gk = (np.swapaxes(ds, -1, -2) @ q) * sc
    return gq.astype(q.dtype), gk.astype(q.dtype), gv.astype(q.dtype)


# -- losses ---------------------------------------------------------------------------------
def _reduce(e, reduction):
    if reduction == "none":
        return e
    return np.asarray(e.mean() if reduction == "mean" else e.sum(), dtype=e.dtype)


def _scale(grad_out, shape, reduction, n):
    g = np.asarray(grad_out)
    return g / n if reduction == "mean" else (g if reduction == "sum" else g.reshape(shape))


def mse_loss(input, target, reduction="mean"):
    return _reduce((input - target) ** 2, reduction)


def mse_loss_backward(grad_out, input, target, reduction="mean"):
    g = 2 * (input - target) * _scale(grad_out, input.shape, reduction, input.size)
    return g.astype(input.dtype), (-g).astype(input.dtype)


def binary_cross_entropy(input, target, reduction="mean"):
    with np.errstate(divide="ignore"):
        lp = np.maximum(np.log(input), -100)
        l1p = np.maximum(np.log(1 - input), -100)
    return _reduce(-(target * lp + (1 - target) * l1p), reduction)


def binary_cross_entropy_backward(grad_out, input, target, reduction="mean"):
    g = _scale(grad_out, input.shape, reduction, input.size) * (input - target) / np.maximum(input * (1 - input), 1e-12)
    return g.astype(input.dtype), None


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    e = np.maximum(input, 0) - input * target + np.log1p(np.exp(-np.abs(input)))
    return _reduce(e, reduction)


def binary_cross_entropy_with_logits_backward(grad_out, input, target, reduction="mean"):
    g = _scale(grad_out, input.shape, reduction, input.size) * (_sig(input) - target)
    return g.astype(input.dtype), None


def _ce_rows(logits, target):
    C = logits.shape[1]
    z = np.moveaxis(logits, 1, -1).reshape(-1, C)
    return z, target.reshape(-1)


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    z, t = _ce_rows(logits, target)
    C = z.shape[1]
    m = z.max(axis=1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    valid = t != ignore_index
    ts = np.where(valid, t, 0)
    nll = -logp[np.arange(len(t)), ts]
    e = (1 - label_smoothing) * nll - label_smoothing * logp.mean(axis=1)
    e = np.where(valid, e, 0.0).astype(logits.dtype)
    if reduction == "none":
        return e.reshape(target.shape)
    if reduction == "sum":
        return np.asarray(e.sum(), logits.dtype)
    return np.asarray(e.sum() / max(valid.sum(), 1), logits.dtype)


def cross_entropy_backward(grad_out, logits, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    z, t = _ce_rows(logits, target)
    C = z.shape[1]
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    valid = t != ignore_index
    onehot = np.zeros_like(p)
    onehot[np.arange(len(t)), np.where(valid, t, 0)] = 1.0
    g = p - (1 - label_smoothing) * onehot - label_smoothing / C
    g *= valid[:, None]
    if reduction == "none":
        g *= np.asarray(grad_out).reshape(-1, 1)
    elif reduction == "mean":
        g *= np.asarray(grad_out) / max(valid.sum(), 1)
    else:
        g *= np.asarray(grad_out)
    shape = (logits.shape[0],) + logits.shape[2:] + (C,)
    g = np.moveaxis(g.reshape(shape), -1, 1)
    return np.ascontiguousarray(g, dtype=logits.dtype), None


# -- optim (API.md: optim.SGD / optim.Adam, PyTorch's update rules) -------------------------
class _Opt:
    def __init__(self, params):
        self.params = list(params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None


class SGD(_Opt):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.buf = [None] * len(self.params)

    def step(self):
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                if self.buf[i] is None:
                    self.buf[i] = np.array(g, copy=True)
                else:
                    self.buf[i] = self.momentum * self.buf[i] + (1 - self.dampening) * g
                g = g + self.momentum * self.buf[i] if self.nesterov else self.buf[i]
            p.data -= np.float32(self.lr) * g


class Adam(_Opt):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.m = [None] * len(self.params)
        self.v = [None] * len(self.params)
        self.t = 0

    def step(self):
        self.t += 1
        b1, b2 = self.betas
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.m[i] is None:
                self.m[i] = np.zeros_like(p.data)
                self.v[i] = np.zeros_like(p.data)
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            mh = self.m[i] / (1 - b1**self.t)
            vh = self.v[i] / (1 - b2**self.t)
            p.data -= (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(np.float32)


# -- installation -----------------------------------------------------------------------------
def ref(name):
    """The oracle for name: fastlayers.reference's function, or this file's stand-in."""
    from fastlayers import reference as R

    f = getattr(R, name, None)
    # (reference/<family>.py modules share some names, e.g. reference.rnn, until they fill in)
    return f if callable(f) and not isinstance(f, types.ModuleType) else globals()[name]


def missing_kernels():
    from fastlayers import functional as F

    return [n for n in KERNELS if not callable(getattr(F, n, None)) or isinstance(getattr(F, n), types.ModuleType)]


def install(monkeypatch=None):
    """Fill the kernels fastlayers.functional lacks (and fastlayers.optim if absent); returns the
    names filled. With a pytest monkeypatch, everything is undone after the test."""
    import importlib.util

    import fastlayers
    from fastlayers import functional as F

    def put(obj, name, value):
        if monkeypatch is None:
            setattr(obj, name, value)
        else:
            monkeypatch.setattr(obj, name, value, raising=False)

    filled = missing_kernels()
    for n in filled:
        put(F, n, ref(n))
    if importlib.util.find_spec("fastlayers.optim") is None:
        mod = types.ModuleType("fastlayers.optim")
        mod.SGD, mod.Adam = SGD, Adam
        if monkeypatch is None:
            sys.modules["fastlayers.optim"] = mod
        else:
            monkeypatch.setitem(sys.modules, "fastlayers.optim", mod)
        put(fastlayers, "optim", mod)
        filled.append("optim")
    return filled

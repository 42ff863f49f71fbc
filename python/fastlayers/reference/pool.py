"""NumPy reference for pooling and nearest upsampling, forward and backward.

Plain loops over output positions (vectorised over the (N, C) planes), with PyTorch's window
rules written out: max pooling scans each window row by row and keeps the first maximum (a
NaN wins), its indices are flat offsets within the (n, c) plane; avg_pool2d divides by the
window clipped to the padded input (count_include_pad) or to the input. Dtype-generic."""

from __future__ import annotations

import numpy as np

__all__ = [
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "upsample_nearest2d",
    "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_backward", "upsample_nearest2d_backward",
]


def _pair(v):
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def pool_output_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length: ceil_mode may add a last window only if it starts
    inside the input or its left padding."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _max_windows(x_shape, kernel_size, stride, padding, dilation, ceil_mode):
    (kh, kw), (ph, pw), (dh, dw) = _pair(kernel_size), _pair(padding), _pair(dilation)
    sh, sw = _pair(kernel_size if stride is None else stride)
    h, w = x_shape[2:]
    oh = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    ow = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    rows = [[i * sh - ph + a * dh for a in range(kh) if 0 <= i * sh - ph + a * dh < h] for i in range(oh)]
    cols = [[j * sw - pw + b * dw for b in range(kw) if 0 <= j * sw - pw + b * dw < w] for j in range(ow)]
    return oh, ow, rows, cols


def _argmax_planes(x, rows_of, cols_of, oh, ow):
    """Max and flat in-plane index over the windows rows_of[i] x cols_of[j], row-major scan,
    first maximum kept, NaN wins (PyTorch's rule)."""
    n, c, h, w = x.shape
    y = np.empty((n, c, oh, ow), x.dtype)
    idx = np.empty((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            best = np.full((n, c), -np.inf, x.dtype)
            arg = np.full((n, c), rows_of[i][0] * w + cols_of[j][0], np.int64)
            for r in rows_of[i]:
                for q in cols_of[j]:
                    v = x[:, :, r, q]
                    take = (v > best) | np.isnan(v)
                    best = np.where(take, v, best)
                    arg = np.where(take, r * w + q, arg)
            y[:, :, i, j] = best
            idx[:, :, i, j] = arg
    return y, idx


def _scatter_indices(grad_out, x_shape, indices):
    n, c, h, w = x_shape
    gx = np.zeros((n * c, h * w), grad_out.dtype)
    g = grad_out.reshape(n * c, -1)
    ix = indices.reshape(n * c, -1)
    for p in range(n * c):
        np.add.at(gx[p], ix[p], g[p])
    return gx.reshape(x_shape)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    oh, ow, rows, cols = _max_windows(x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    y, idx = _argmax_planes(x, rows, cols, oh, ow)
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, x, indices, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        return_indices=False):
    """grad_x: grad_out summed into the positions the forward's indices name."""
    return _scatter_indices(grad_out, x.shape, indices)


def _avg_windows(size, k, s, p, ceil_mode, count_include_pad):
    out = pool_output_size(size, k, s, p, 1, ceil_mode)
    spans, counts = [], []
    for i in range(out):
        start = i * s - p
        end = min(start + k, size + p)
        padded = end - start
        start, end = max(start, 0), min(end, size)
        spans.append((start, end))
        counts.append(padded if count_include_pad else end - start)
    return out, spans, counts


def _avg_setup(x_shape, kernel_size, stride, padding, ceil_mode, count_include_pad):
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    h, w = x_shape[2:]
    oh, rspans, rcounts = _avg_windows(h, kh, sh, ph, ceil_mode, count_include_pad)
    ow, cspans, ccounts = _avg_windows(w, kw, sw, pw, ceil_mode, count_include_pad)
    return oh, ow, rspans, cspans, rcounts, ccounts


def _divisor(i, j, rspans, cspans, rcounts, ccounts, count_include_pad):
    if count_include_pad:
        return rcounts[i] * ccounts[j]
    (r0, r1), (c0, c1) = rspans[i], cspans[j]
    return (r1 - r0) * (c1 - c0)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    oh, ow, rs, cs, rc, cc = _avg_setup(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    y = np.zeros(x.shape[:2] + (oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            (r0, r1), (c0, c1) = rs[i], cs[j]
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3)) / _divisor(i, j, rs, cs, rc, cc, count_include_pad)
    return y


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    oh, ow, rs, cs, rc, cc = _avg_setup(x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad)
    gx = np.zeros(x.shape, grad_out.dtype)
    for i in range(oh):
        for j in range(ow):
            (r0, r1), (c0, c1) = rs[i], cs[j]
            div = _divisor(i, j, rs, cs, rc, cc, count_include_pad)
            gx[:, :, r0:r1, c0:c1] += (grad_out[:, :, i, j] / div)[:, :, None, None]
    return gx


def _adaptive_spans(size, out):
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    oh, ow = _pair(output_size)
    rs, cs = _adaptive_spans(x.shape[2], oh), _adaptive_spans(x.shape[3], ow)
    y = np.empty(x.shape[:2] + (oh, ow), x.dtype)
    for i, (r0, r1) in enumerate(rs):
        for j, (c0, c1) in enumerate(cs):
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].mean(axis=(2, 3))
    return y


def adaptive_avg_pool2d_backward(grad_out, x, output_size):
    oh, ow = _pair(output_size)
    rs, cs = _adaptive_spans(x.shape[2], oh), _adaptive_spans(x.shape[3], ow)
    gx = np.zeros(x.shape, grad_out.dtype)
    for i, (r0, r1) in enumerate(rs):
        for j, (c0, c1) in enumerate(cs):
            gx[:, :, r0:r1, c0:c1] += (grad_out[:, :, i, j] / ((r1 - r0) * (c1 - c0)))[:, :, None, None]
    return gx


def adaptive_max_pool2d(x, output_size, return_indices=False):
    oh, ow = _pair(output_size)
    rows = [list(range(a, b)) for a, b in _adaptive_spans(x.shape[2], oh)]
    cols = [list(range(a, b)) for a, b in _adaptive_spans(x.shape[3], ow)]
    y, idx = _argmax_planes(x, rows, cols, oh, ow)
    return (y, idx) if return_indices else y


def adaptive_max_pool2d_backward(grad_out, x, indices, output_size, return_indices=False):
    return _scatter_indices(grad_out, x.shape, indices)


def upsample_nearest2d(x, scale_factor):
    sh, sw = _pair(scale_factor)
    return np.repeat(np.repeat(x, sh, axis=2), sw, axis=3)


def upsample_nearest2d_backward(grad_out, x, scale_factor):
    sh, sw = _pair(scale_factor)
    n, c, h, w = x.shape
    return grad_out.reshape(n, c, h, sh, w, sw).sum(axis=(3, 5))


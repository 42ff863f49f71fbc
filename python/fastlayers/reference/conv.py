"""NumPy reference for conv2d and conv_transpose2d, forward and backward.

Written around an explicit im2col: `_im2col` gathers, for every kernel tap (kh, kw), the
strided window of the padded input into cols[n, c, kh, kw, oh, ow]; a convolution is then one
einsum per group, and `_col2im` (the adjoint of `_im2col`) scatters columns back. The
transposed convolution is the adjoint of conv2d: its forward is conv2d's data gradient and its
data gradient is conv2d's forward, so both share these three helpers. Dtype-generic (pass
float64 for the truth); clear rather than fast."""

from __future__ import annotations

import numpy as np

__all__ = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward"]


def _pair(v):
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _conv_padding(padding, kernel, dilation):
    """(top, bottom, left, right) for conv2d's padding argument; "same" puts the odd extra
    row/column on the bottom/right, as PyTorch does."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return tuple(out)
    ph, pw = _pair(padding)
    return ph, ph, pw, pw


def _im2col(xp, kh, kw, stride, dilation, oh, ow):
    """cols[n, c, i, j, y, x] = xp[n, c, i*dh + y*sh, j*dw + x*sw] from a padded input."""
    n, c = xp.shape[:2]
    (sh, sw), (dh, dw) = stride, dilation
    cols = np.zeros((n, c, kh, kw, oh, ow), xp.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            cols[:, :, i, j] = xp[:, :, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw][:, :, :oh, :ow]
    return cols


def _col2im(cols, hp, wp, stride, dilation):
    """The adjoint of _im2col: sum columns back into a padded (n, c, hp, wp) image."""
    n, c, kh, kw, oh, ow = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.zeros((n, c, hp, wp), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            xp[:, :, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    return xp


def _grouped_matmul(w, cols, groups):
    """y[n, g*kg + k, y, x] = sum_{c, i, j} w[g*kg + k, c, i, j] * cols[n, g*cg + c, i, j, y, x]."""
    k_out = w.shape[0]
    n, c, kh, kw, oh, ow = cols.shape
    kg, cg = k_out // groups, c // groups
    wg = w.reshape(groups, kg, cg, kh, kw)
    cg_cols = cols.reshape(n, groups, cg, kh, kw, oh, ow)
    y = np.einsum("gkcij,ngcijyx->ngkyx", wg, cg_cols)
    return y.reshape(n, k_out, oh, ow)


def _grouped_matmul_t(w, gy, groups):
    """The adjoint in cols: gcols[n, g*cg + c, i, j, y, x] = sum_k w[g*kg + k, c, i, j] gy[n, g*kg + k, y, x]."""
    k_out, cg, kh, kw = w.shape
    n, _, oh, ow = gy.shape
    kg = k_out // groups
    wg = w.reshape(groups, kg, cg, kh, kw)
    gyg = gy.reshape(n, groups, kg, oh, ow)
    gcols = np.einsum("gkcij,ngkyx->ngcijyx", wg, gyg)
    return gcols.reshape(n, groups * cg, kh, kw, oh, ow)


def _grouped_weight_grad(gy, cols, groups):
    """gw[g*kg + k, c, i, j] = sum_{n, y, x} gy[n, g*kg + k, y, x] cols[n, g*cg + c, i, j, y, x]."""
    n, k_out, oh, ow = gy.shape
    _, c, kh, kw = cols.shape[:4]
    kg, cg = k_out // groups, c // groups
    gw = np.einsum("ngkyx,ngcijyx->gkcij", gy.reshape(n, groups, kg, oh, ow),
                   cols.reshape(n, groups, cg, kh, kw, oh, ow))
    return gw.reshape(k_out, cg, kh, kw)


def _conv_geometry(x_shape, w_shape, stride, padding, dilation):
    (kh, kw), s, d = w_shape[2:], _pair(stride), _pair(dilation)
    pt, pb, pl, pr = _conv_padding(padding, (kh, kw), d)
    h, w = x_shape[2:]
    oh = (h + pt + pb - d[0] * (kh - 1) - 1) // s[0] + 1
    ow = (w + pl + pr - d[1] * (kw - 1) - 1) // s[1] + 1
    return s, d, (pt, pb, pl, pr), oh, ow


def _pad(x, pads):
    pt, pb, pl, pr = pads
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """x: (N, C, H, W), weight: (K, C/groups, R, S), bias: (K,) -> (N, K, OH, OW)."""
    s, d, pads, oh, ow = _conv_geometry(x.shape, weight.shape, stride, padding, dilation)
    cols = _im2col(_pad(x, pads), weight.shape[2], weight.shape[3], s, d, oh, ow)
    y = _grouped_matmul(weight, cols, groups)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


def conv2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_weight, grad_bias); grad_bias is None when bias is None."""
    s, d, pads, oh, ow = _conv_geometry(x.shape, weight.shape, stride, padding, dilation)
    pt, pb, pl, pr = pads
    h, w = x.shape[2:]
    cols = _im2col(_pad(x, pads), weight.shape[2], weight.shape[3], s, d, oh, ow)
    grad_w = _grouped_weight_grad(grad_out, cols, groups)
    gxp = _col2im(_grouped_matmul_t(weight, grad_out, groups), h + pt + pb, w + pl + pr, s, d)
    grad_x = gxp[:, :, pt:pt + h, pl:pl + w]
    grad_b = None if bias is None else grad_out.sum(axis=(0, 2, 3))
    return grad_x, grad_w, grad_b


def _transpose_geometry(x_shape, w_shape, stride, padding, output_padding, dilation):
    (kh, kw), s, p, op, d = w_shape[2:], _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
    h, w = x_shape[2:]
    oh = (h - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1
    ow = (w - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1
    return s, p, d, oh, ow


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """x: (N, C_in, H, W), weight: (C_in, C_out/groups, R, S) -> (N, C_out, OH, OW) with
    OH = (H - 1)*stride - 2*padding + dilation*(R - 1) + output_padding + 1.

    The adjoint of conv2d (weight read as a conv2d weight mapping C_out channels to C_in):
    columns w^T x, scattered by col2im into the padded output, then cropped."""
    s, p, d, oh, ow = _transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation)
    h, w = x.shape[2:]
    gcols = _grouped_matmul_t(weight, x, groups)
    # The padded canvas must hold every scattered tap and the cropped window.
    hp = max(oh + 2 * p[0], (h - 1) * s[0] + d[0] * (weight.shape[2] - 1) + 1)
    wp = max(ow + 2 * p[1], (w - 1) * s[1] + d[1] * (weight.shape[3] - 1) + 1)
    y = _col2im(gcols, hp, wp, s, d)[:, :, p[0]:p[0] + oh, p[1]:p[1] + ow]
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1):
    """(grad_x, grad_weight, grad_bias): grad_x is conv2d(grad_out, weight) restricted to x's
    H x W, grad_weight conv2d's weight gradient with the roles of input and output swapped."""
    s, p, d, oh, ow = _transpose_geometry(x.shape, weight.shape, stride, padding, output_padding, dilation)
    h, w = x.shape[2:]
    kh, kw = weight.shape[2:]
    # Pad the bottom/right generously so every tap of the H x W grid exists (zeros beyond).
    extra_h = max(0, (h - 1) * s[0] + d[0] * (kh - 1) + 1 - (oh + p[0]))
    extra_w = max(0, (w - 1) * s[1] + d[1] * (kw - 1) + 1 - (ow + p[1]))
    gp = _pad(grad_out, (p[0], extra_h, p[1], extra_w))
    cols = _im2col(gp, kh, kw, s, d, h, w)
    grad_x = _grouped_matmul(weight, cols, groups)
    grad_w = _grouped_weight_grad(x, cols, groups)
    grad_b = None if bias is None else grad_out.sum(axis=(0, 2, 3))
    return grad_x, grad_w, grad_b

"""conv2d and conv_transpose2d (NCHW float32), forward and backward.

conv2d runs chunked im2col + the GEMM engine (depthwise: direct SIMD loops); the transposed
convolution is conv2d's adjoint and reuses the same three C++ passes (forward, data
gradient, weight gradient) with the roles of input and output swapped."""

from __future__ import annotations

import numpy as np

from .. import _core, _cuda_conv_rnn
from .._arrays import backend, check_array, contiguous, pair

__all__ = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward"]


def _on_cuda(**arrays):
    """True for CuPy arrays (the CUDA kernels, _cuda_conv_rnn.py, take the call)."""
    return backend(**arrays) == "cuda"


def _positive_pair(v, name):
    a, b = pair(v, name)
    if a <= 0 or b <= 0:
        raise ValueError(f"{name}: must be positive, got {v!r}")
    return a, b


def _nonneg_pair(v, name):
    a, b = pair(v, name)
    if a < 0 or b < 0:
        raise ValueError(f"{name}: must be >= 0, got {v!r}")
    return a, b


def _groups(groups):
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups: expected an int, got {groups!r}")
    if groups < 1:
        raise ValueError(f"groups: must be >= 1, got {groups}")
    return int(groups)


def _shape(a):
    return tuple(a.shape)


def _check_spatial(x, name):
    if x.shape[1] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{name}: channels and spatial sizes must be >= 1, got shape {_shape(x)}")


def _check_bias(bias, n, what):
    if bias is None:
        return None
    check_array(bias, "bias", ndim=1)
    if bias.shape[0] != n:
        raise ValueError(f"bias: shape {_shape(bias)} does not match the {n} {what}")
    return contiguous(bias)


def _conv_setup(x, weight, bias, stride, padding, dilation, groups):
    """Validate conv2d's arguments; returns (x, weight, bias, (sh, sw), (pt, pl), (dh, dw), groups, (oh, ow))."""
    check_array(x, "x", ndim=4)
    check_array(weight, "weight", ndim=4)
    _check_spatial(x, "x")
    groups = _groups(groups)
    s = _positive_pair(stride, "stride")
    d = _positive_pair(dilation, "dilation")
    n, c, h, w = x.shape
    k, cg, kh, kw = weight.shape
    if k < 1 or kh < 1 or kw < 1:
        raise ValueError(f"weight: shape {_shape(weight)} has a zero-size dimension")
    if c % groups:
        raise ValueError(f"groups: input channels C={c} (x shape {_shape(x)}) are not divisible by groups={groups}")
    if k % groups:
        raise ValueError(
            f"groups: output channels K={k} (weight shape {_shape(weight)}) are not divisible by groups={groups}"
        )
    if cg * groups != c:
        raise ValueError(
            f"weight: shape {_shape(weight)} expects {cg * groups} input channels ({cg} per group x {groups} groups), "
            f"but x has C={c} (shape {_shape(x)})"
        )
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0, 0, 0, 0)
        elif padding == "same":
            if s != (1, 1):
                raise ValueError(f"padding: 'same' requires stride 1, got stride={stride!r}")
            th, tw = d[0] * (kh - 1), d[1] * (kw - 1)
            pads = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        else:
            raise ValueError(f"padding: expected an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _nonneg_pair(padding, "padding")
        pads = (ph, ph, pw, pw)
    hp, wp = h + pads[0] + pads[1], w + pads[2] + pads[3]
    eh, ew = d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1
    if eh > hp or ew > wp:
        raise ValueError(
            f"weight: kernel {kh}x{kw} (dilated to {eh}x{ew}) is larger than the padded input {hp}x{wp} "
            f"(x shape {_shape(x)}, padding {padding!r})"
        )
    oh, ow = (hp - eh) // s[0] + 1, (wp - ew) // s[1] + 1
    bias = _check_bias(bias, k, "output channels of weight")
    return contiguous(x), contiguous(weight), bias, s, (pads[0], pads[2]), d, groups, (oh, ow)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """x: (N, C, H, W), weight: (K, C/groups, R, S), bias: (K,) -> (N, K, OH, OW).

    padding: int, pair, "valid" or "same" (stride 1 only; an odd total puts the extra row and
    column on the bottom/right, as PyTorch)."""
    if _on_cuda(x=x, weight=weight, bias=bias):
        return _cuda_conv_rnn.conv2d(x, weight, bias, stride, padding, dilation, groups)
    x, weight, bias, s, p, d, groups, (oh, ow) = _conv_setup(x, weight, bias, stride, padding, dilation, groups)
    y = np.empty((x.shape[0], weight.shape[0], oh, ow), np.float32)
    if y.size:
        _core.conv2d_forward(x, weight, bias, y, s[0], s[1], p[0], p[1], d[0], d[1], groups)
    return y


def conv2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Gradients (grad_x, grad_weight, grad_bias) of conv2d; grad_bias is None without a bias."""
    if _on_cuda(grad_out=grad_out, x=x, weight=weight, bias=bias):
        return _cuda_conv_rnn.conv2d_backward(grad_out, x, weight, bias, stride, padding, dilation, groups)
    x, weight, bias, s, p, d, groups, (oh, ow) = _conv_setup(x, weight, bias, stride, padding, dilation, groups)
    check_array(grad_out, "grad_out", ndim=4)
    expected = (x.shape[0], weight.shape[0], oh, ow)
    if _shape(grad_out) != expected:
        raise ValueError(f"grad_out: shape {_shape(grad_out)} does not match conv2d's output shape {expected}")
    g = contiguous(grad_out)
    grad_x = np.empty(x.shape, np.float32)
    grad_w = np.empty(weight.shape, np.float32)
    grad_b = None if bias is None else np.empty(bias.shape, np.float32)
    kh, kw = weight.shape[2:]
    if x.shape[0]:
        _core.conv2d_backward_data(g, weight, None, grad_x, s[0], s[1], p[0], p[1], d[0], d[1], groups)
    _core.conv2d_backward_weight(g, x, grad_w, grad_b, kh, kw, s[0], s[1], p[0], p[1], d[0], d[1], groups)
    return grad_x, grad_w, grad_b


def _transpose_setup(x, weight, bias, stride, padding, output_padding, groups, dilation):
    check_array(x, "x", ndim=4)
    check_array(weight, "weight", ndim=4)
    _check_spatial(x, "x")
    groups = _groups(groups)
    s = _positive_pair(stride, "stride")
    d = _positive_pair(dilation, "dilation")
    if isinstance(padding, str):
        raise ValueError(f"padding: conv_transpose2d takes an int or a pair, got {padding!r}")
    p = _nonneg_pair(padding, "padding")
    op = _nonneg_pair(output_padding, "output_padding")
    n, c_in, h, w = x.shape
    wc, cog, kh, kw = weight.shape
    if cog < 1 or kh < 1 or kw < 1:
        raise ValueError(f"weight: shape {_shape(weight)} has a zero-size dimension")
    if c_in % groups:
        raise ValueError(f"groups: input channels C={c_in} (x shape {_shape(x)}) are not divisible by groups={groups}")
    if wc != c_in:
        raise ValueError(
            f"weight: shape {_shape(weight)} expects {wc} input channels (transposed-conv weights are "
            f"(C_in, C_out/groups, R, S)), but x has C={c_in} (shape {_shape(x)})"
        )
    for i, axis in enumerate("hw"):
        if op[i] >= max(s[i], d[i]):
            raise ValueError(
                f"output_padding: {output_padding!r} must be smaller than stride or dilation "
                f"(stride={stride!r}, dilation={dilation!r})"
            )
    oh = (h - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1
    ow = (w - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(
            f"padding: output size {oh}x{ow} <= 0 for x shape {_shape(x)}, kernel {kh}x{kw}, stride {s}, "
            f"padding {p}, dilation {d}, output_padding {op}"
        )
    c_out = cog * groups
    bias = _check_bias(bias, c_out, "output channels (weight.shape[1] * groups)")
    return contiguous(x), contiguous(weight), bias, s, p, d, groups, (c_out, oh, ow)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """x: (N, C_in, H, W), weight: (C_in, C_out/groups, R, S), bias: (C_out,) -> (N, C_out, OH, OW),
    OH = (H - 1)*stride - 2*padding + dilation*(R - 1) + output_padding + 1."""
    if _on_cuda(x=x, weight=weight, bias=bias):
        return _cuda_conv_rnn.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)
    x, weight, bias, s, p, d, groups, (c_out, oh, ow) = _transpose_setup(
        x, weight, bias, stride, padding, output_padding, groups, dilation)
    y = np.empty((x.shape[0], c_out, oh, ow), np.float32)
    if y.size:
        # conv2d's data gradient with x as grad_out: conv geometry C = C_out, H = OH, K = C_in.
        _core.conv2d_backward_data(x, weight, bias, y, s[0], s[1], p[0], p[1], d[0], d[1], groups)
    return y


def conv_transpose2d_backward(grad_out, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                              dilation=1):
    """Gradients (grad_x, grad_weight, grad_bias) of conv_transpose2d; grad_bias is None without a bias."""
    if _on_cuda(grad_out=grad_out, x=x, weight=weight, bias=bias):
        return _cuda_conv_rnn.conv_transpose2d_backward(grad_out, x, weight, bias, stride, padding, output_padding,
                                                        groups, dilation)
    x, weight, bias, s, p, d, groups, (c_out, oh, ow) = _transpose_setup(
        x, weight, bias, stride, padding, output_padding, groups, dilation)
    check_array(grad_out, "grad_out", ndim=4)
    expected = (x.shape[0], c_out, oh, ow)
    if _shape(grad_out) != expected:
        raise ValueError(f"grad_out: shape {_shape(grad_out)} does not match conv_transpose2d's output shape {expected}")
    g = contiguous(grad_out)
    grad_x = np.empty(x.shape, np.float32)
    grad_w = np.empty(weight.shape, np.float32)
    kh, kw = weight.shape[2:]
    if x.shape[0]:
        # conv2d forward of grad_out gives grad_x; conv2d's weight gradient with x as grad_out.
        _core.conv2d_forward(g, weight, None, grad_x, s[0], s[1], p[0], p[1], d[0], d[1], groups)
    _core.conv2d_backward_weight(x, g, grad_w, None, kh, kw, s[0], s[1], p[0], p[1], d[0], d[1], groups)
    grad_b = None
    if bias is not None:
        grad_b = g.sum(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    return grad_x, grad_w, grad_b

"""Pooling (max, average, adaptive) and nearest upsampling on NCHW float32, forward and backward.

Inputs are (N, C, H, W) or (C, H, W). Each single-input op's backward returns the input
gradient itself (an array, like relu_backward), not a 1-tuple. Max pooling follows PyTorch
exactly: windows scanned row by row, the first maximum kept (a NaN wins), indices are int64
flat offsets ih * W + iw within each (n, c) plane."""

from __future__ import annotations

import numpy as np

from .. import _core
from .._arrays import backend, check_array, check_int_array, contiguous, pair

__all__ = [
    "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "upsample_nearest2d",
    "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_backward", "upsample_nearest2d_backward",
]


def _cpu_only(name, **arrays):
    if backend(**arrays) == "cuda":
        raise NotImplementedError(f"{name}: no CUDA kernel for this op yet; pass NumPy arrays (cupy.asnumpy)")


def _shape(a):
    return tuple(a.shape)


def _as4d(x, name="x"):
    """(x as a contiguous 4-D array, whether a batch dimension was added)."""
    check_array(x, name, ndim=(3, 4))
    if x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name}: spatial sizes must be >= 1, got shape {_shape(x)}")
    x4 = x[None] if x.ndim == 3 else x
    return contiguous(x4), x.ndim == 3


def _out(y, squeeze):
    return y[0] if squeeze else y


def _positive_pair(v, name):
    a, b = pair(v, name)
    if a <= 0 or b <= 0:
        raise ValueError(f"{name}: must be positive, got {v!r}")
    return a, b


def pool_output_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length (ceil_mode drops a last window starting in the right padding)."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _window(x, kernel_size, stride, padding, dilation, ceil_mode, op):
    """Validated (k, s, p, d, (oh, ow)) of a max/avg pooling window over x (4-D)."""
    k = _positive_pair(kernel_size, "kernel_size")
    s = k if stride is None else _positive_pair(stride, "stride")
    p = pair(padding, "padding")
    d = _positive_pair(dilation, "dilation")
    for i in range(2):
        if p[i] < 0 or p[i] > k[i] // 2:
            raise ValueError(
                f"padding: {padding!r} must be >= 0 and at most half the kernel size (kernel_size={kernel_size!r})"
            )
    h, w = x.shape[2:]
    oh = pool_output_size(h, k[0], s[0], p[0], d[0], bool(ceil_mode))
    ow = pool_output_size(w, k[1], s[1], p[1], d[1], bool(ceil_mode))
    if oh <= 0 or ow <= 0:
        raise ValueError(
            f"{op}: output size {oh}x{ow} <= 0 for x shape {_shape(x)}, kernel_size {k}, stride {s}, "
            f"padding {p}, dilation {d}; the kernel is larger than the padded input"
        )
    return k, s, p, d, (oh, ow)


def _check_grad(grad_out, expected):
    check_array(grad_out, "grad_out", ndim=len(expected))
    if _shape(grad_out) != tuple(expected):
        raise ValueError(f"grad_out: shape {_shape(grad_out)} does not match the forward output shape {tuple(expected)}")
    return contiguous(grad_out)


def _check_indices(indices, expected):
    check_int_array(indices, "indices")
    if _shape(indices) != tuple(expected):
        raise ValueError(f"indices: shape {_shape(indices)} does not match the forward output shape {tuple(expected)}")
    return np.ascontiguousarray(indices, dtype=np.int64)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling; stride defaults to kernel_size. With return_indices, also the int64 flat
    in-plane offsets of the maxima (PyTorch's layout)."""
    _cpu_only("max_pool2d", x=x)
    x4, sq = _as4d(x)
    k, s, p, d, (oh, ow) = _window(x4, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    y = np.empty(x4.shape[:2] + (oh, ow), np.float32)
    idx = np.empty(y.shape, np.int64) if return_indices else None
    if y.size:
        _core.max_pool2d_forward(x4, y, idx, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    if return_indices:
        return _out(y, sq), _out(idx, sq)
    return _out(y, sq)


def max_pool2d_backward(grad_out, x, indices, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        return_indices=False):
    """grad_x of max_pool2d: grad_out summed into the positions the forward's indices name."""
    _cpu_only("max_pool2d_backward", grad_out=grad_out, x=x, indices=indices)
    x4, sq = _as4d(x)
    _, _, _, _, (oh, ow) = _window(x4, kernel_size, stride, padding, dilation, ceil_mode, "max_pool2d")
    out_shape = x.shape[:-2] + (oh, ow)
    g = _check_grad(grad_out, out_shape).reshape(x4.shape[:2] + (oh, ow))
    ix = _check_indices(indices, out_shape).reshape(g.shape)
    gx = np.empty(x4.shape, np.float32)
    if gx.size:
        _core.max_pool2d_backward(g, ix, gx)
    return _out(gx, sq)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling; count_include_pad divides by the window clipped to the padded input."""
    _cpu_only("avg_pool2d", x=x)
    x4, sq = _as4d(x)
    k, s, p, _, (oh, ow) = _window(x4, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    y = np.empty(x4.shape[:2] + (oh, ow), np.float32)
    if y.size:
        _core.avg_pool2d_forward(x4, y, k[0], k[1], s[0], s[1], p[0], p[1], bool(count_include_pad))
    return _out(y, sq)


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """grad_x of avg_pool2d."""
    _cpu_only("avg_pool2d_backward", grad_out=grad_out, x=x)
    x4, sq = _as4d(x)
    k, s, p, _, (oh, ow) = _window(x4, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    g = _check_grad(grad_out, x.shape[:-2] + (oh, ow)).reshape(x4.shape[:2] + (oh, ow))
    gx = np.empty(x4.shape, np.float32)
    if gx.size:
        _core.avg_pool2d_backward(g, gx, k[0], k[1], s[0], s[1], p[0], p[1], bool(count_include_pad))
    return _out(gx, sq)


def _adaptive_size(x, output_size):
    """(oh, ow) from an int, a pair, or a pair with None (= keep that input size)."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        oh, ow = (x.shape[2] if output_size[0] is None else output_size[0],
                  x.shape[3] if output_size[1] is None else output_size[1])
        oh, ow = pair((oh, ow), "output_size")
    else:
        oh, ow = pair(output_size, "output_size")
    if oh <= 0 or ow <= 0:
        raise ValueError(f"output_size: must be positive, got {output_size!r}")
    return oh, ow


def adaptive_avg_pool2d(x, output_size):
    """Average over the windows [floor(i*H/OH), ceil((i+1)*H/OH)); output_size=1 is global pooling."""
    _cpu_only("adaptive_avg_pool2d", x=x)
    x4, sq = _as4d(x)
    oh, ow = _adaptive_size(x4, output_size)
    y = np.empty(x4.shape[:2] + (oh, ow), np.float32)
    if y.size:
        _core.adaptive_avg_pool2d_forward(x4, y)
    return _out(y, sq)


def adaptive_avg_pool2d_backward(grad_out, x, output_size):
    """grad_x of adaptive_avg_pool2d."""
    _cpu_only("adaptive_avg_pool2d_backward", grad_out=grad_out, x=x)
    x4, sq = _as4d(x)
    oh, ow = _adaptive_size(x4, output_size)
    g = _check_grad(grad_out, x.shape[:-2] + (oh, ow)).reshape(x4.shape[:2] + (oh, ow))
    gx = np.empty(x4.shape, np.float32)
    if gx.size:
        _core.adaptive_avg_pool2d_backward(g, gx)
    return _out(gx, sq)


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """Max over the adaptive windows; indices as max_pool2d's."""
    _cpu_only("adaptive_max_pool2d", x=x)
    x4, sq = _as4d(x)
    oh, ow = _adaptive_size(x4, output_size)
    y = np.empty(x4.shape[:2] + (oh, ow), np.float32)
    idx = np.empty(y.shape, np.int64) if return_indices else None
    if y.size:
        _core.adaptive_max_pool2d_forward(x4, y, idx)
    if return_indices:
        return _out(y, sq), _out(idx, sq)
    return _out(y, sq)


def adaptive_max_pool2d_backward(grad_out, x, indices, output_size, return_indices=False):
    """grad_x of adaptive_max_pool2d (indices from the forward with return_indices=True)."""
    _cpu_only("adaptive_max_pool2d_backward", grad_out=grad_out, x=x, indices=indices)
    x4, sq = _as4d(x)
    oh, ow = _adaptive_size(x4, output_size)
    out_shape = x.shape[:-2] + (oh, ow)
    g = _check_grad(grad_out, out_shape).reshape(x4.shape[:2] + (oh, ow))
    ix = _check_indices(indices, out_shape).reshape(g.shape)
    gx = np.empty(x4.shape, np.float32)
    if gx.size:
        _core.max_pool2d_backward(g, ix, gx)
    return _out(gx, sq)


def _scale(scale_factor):
    if isinstance(scale_factor, (float, np.floating)) and float(scale_factor).is_integer():
        scale_factor = int(scale_factor)
    if isinstance(scale_factor, (tuple, list)):
        scale_factor = tuple(int(v) if isinstance(v, (float, np.floating)) and float(v).is_integer() else v
                             for v in scale_factor)
    return _positive_pair(scale_factor, "scale_factor")


def upsample_nearest2d(x, scale_factor):
    """Nearest-neighbour upsampling by an integer factor (or pair): y[.., i, j] = x[.., i // sh, j // sw]."""
    _cpu_only("upsample_nearest2d", x=x)
    x4, sq = _as4d(x)
    sh, sw = _scale(scale_factor)
    y = np.empty(x4.shape[:2] + (x4.shape[2] * sh, x4.shape[3] * sw), np.float32)
    if y.size:
        _core.upsample_nearest2d_forward(x4, y)
    return _out(y, sq)


def upsample_nearest2d_backward(grad_out, x, scale_factor):
    """grad_x of upsample_nearest2d: each sh x sw block of grad_out summed."""
    _cpu_only("upsample_nearest2d_backward", grad_out=grad_out, x=x)
    x4, sq = _as4d(x)
    sh, sw = _scale(scale_factor)
    out_shape = x.shape[:-2] + (x.shape[-2] * sh, x.shape[-1] * sw)
    g = _check_grad(grad_out, out_shape).reshape(x4.shape[:2] + out_shape[-2:])
    gx = np.empty(x4.shape, np.float32)
    if gx.size:
        _core.upsample_nearest2d_backward(g, gx)
    return _out(gx, sq)

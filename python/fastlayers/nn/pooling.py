"""Pooling and nearest upsampling."""

from __future__ import annotations

from . import _kernels as K
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Upsample"]


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = kernel_size if stride is None else stride
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)
        self._x = self._idx = None

    def _args(self):
        return self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode

    def forward(self, x):
        y, idx = K.max_pool2d(x, *self._args())
        self._x, self._idx = x, idx
        return (y, idx) if self.return_indices else y

    def backward(self, grad_out):
        self._need_cache("_x")
        return K.max_pool2d_backward(grad_out, self._x, self._idx, *self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.padding = kernel_size, padding
        self.stride = kernel_size if stride is None else stride
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self._x = None

    def _args(self):
        return self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad

    def forward(self, x):
        self._x = x
        return K.avg_pool2d(x, *self._args())

    def backward(self, grad_out):
        self._need_cache("_x")
        return K.avg_pool2d_backward(grad_out, self._x, *self._args())


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size
        self._x = None

    def forward(self, x):
        self._x = x
        return K.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad_out):
        self._need_cache("_x")
        return K.adaptive_avg_pool2d_backward(grad_out, self._x, self.output_size)


class Upsample(Module):
    """Nearest-neighbour upsampling by an integer scale_factor (or pair); size= must be an integer
    multiple of the input size."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"mode: only 'nearest' is supported, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self._x = None
        self._sf = None

    def _factor(self, x):
        if self.scale_factor is not None:
            sf = self.scale_factor
            sf = (sf, sf) if not isinstance(sf, (tuple, list)) else tuple(sf)
            if any(float(s) != int(s) for s in sf):
                raise ValueError(f"scale_factor: only integer factors are supported, got {self.scale_factor!r}")
            return int(sf[0]), int(sf[1])
        size = (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)
        h, w = x.shape[-2:]
        if h == 0 or w == 0 or size[0] % h or size[1] % w:
            raise ValueError(f"size: {size} is not an integer multiple of the input size {(h, w)}")
        return size[0] // h, size[1] // w

    def forward(self, x):
        self._x, self._sf = x, self._factor(x)
        return K.upsample_nearest2d(x, self._sf)

    def backward(self, grad_out):
        self._need_cache("_x")
        return K.upsample_nearest2d_backward(grad_out, self._x, self._sf)

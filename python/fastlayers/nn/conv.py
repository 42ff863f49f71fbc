"""Conv2d and ConvTranspose2d (NCHW)."""

from __future__ import annotations

from .._arrays import pair
from . import _kernels as K
from . import init
from .module import Module, Parameter

__all__ = ["Conv2d", "ConvTranspose2d"]


def _check_groups(in_channels, out_channels, groups):
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups: {groups} must divide in_channels ({in_channels}) and out_channels ({out_channels})"
        )


class Conv2d(Module):
    """PyTorch's Conv2d arguments (padding_mode 'zeros' only); weight (C_out, C_in/groups, kH, kW)
    and bias ~ U(+-1/sqrt(fan_in)), fan_in = C_in/groups * kH * kW."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros"):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode: only 'zeros' is supported, got {padding_mode!r}")
        _check_groups(in_channels, out_channels, groups)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        fan_in = init.fans(shape)[0]
        self.weight = Parameter(init.kaiming_uniform(shape, a=5**0.5))
        self.bias = Parameter(init.bias_uniform((self.out_channels,), fan_in)) if bias else None
        self._x = None

    def _args(self):
        return self.stride, self.padding, self.dilation, self.groups

    def forward(self, x):
        self._x = x
        return K.conv2d(x, self.weight.data, None if self.bias is None else self.bias.data, *self._args())

    def backward(self, grad_out):
        self._need_cache("_x")
        b = None if self.bias is None else self.bias.data
        gx, gw, gb = K.conv2d_backward(grad_out, self._x, self.weight.data, b, *self._args())
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, groups={self.groups}")


class ConvTranspose2d(Module):
    """PyTorch's ConvTranspose2d; weight (C_in, C_out/groups, kH, kW). PyTorch initialises it with
    fan_in = weight.shape[1] * kH * kW (= C_out/groups * kH * kW), and so does this."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros"):
        super().__init__()
        if padding_mode != "zeros":
            raise ValueError(f"padding_mode: only 'zeros' is supported, got {padding_mode!r}")
        _check_groups(in_channels, out_channels, groups)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.output_padding = pair(output_padding, "output_padding")
        self.dilation = pair(dilation, "dilation")
        shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        fan_in = init.fans(shape)[0]
        self.weight = Parameter(init.kaiming_uniform(shape, a=5**0.5))
        self.bias = Parameter(init.bias_uniform((self.out_channels,), fan_in)) if bias else None
        self._x = None

    def _args(self):
        return self.stride, self.padding, self.output_padding, self.groups, self.dilation

    def forward(self, x):
        self._x = x
        b = None if self.bias is None else self.bias.data
        return K.conv_transpose2d(x, self.weight.data, b, *self._args())

    def backward(self, grad_out):
        self._need_cache("_x")
        b = None if self.bias is None else self.bias.data
        gx, gw, gb = K.conv_transpose2d_backward(grad_out, self._x, self.weight.data, b, *self._args())
        self.weight.accumulate(gw)
        if self.bias is not None:
            self.bias.accumulate(gb)
        return gx

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}")

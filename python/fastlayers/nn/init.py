"""PyTorch's default initialisations, drawn from the generator fl.manual_seed seeds.

Each function returns a new float32 array (NumPy; modules move it later with .to())."""

from __future__ import annotations

import math

import numpy as np

from .. import _random

__all__ = ["fans", "uniform", "normal", "zeros", "ones", "kaiming_uniform", "xavier_uniform", "bias_uniform"]


def fans(shape):
    """(fan_in, fan_out) as torch.nn.init._calculate_fan_in_and_fan_out: dim 1 is fan-in,
    dim 0 fan-out, both times the receptive field (product of dims 2...)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fans: need at least 2 dimensions, got shape {shape}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform(shape, low, high):
    return _random.generator().uniform(low, high, size=shape).astype(np.float32)


def normal(shape, mean=0.0, std=1.0):
    return (mean + std * _random.generator().standard_normal(size=shape)).astype(np.float32)


def zeros(shape):
    return np.zeros(shape, np.float32)


def ones(shape):
    return np.ones(shape, np.float32)


def kaiming_uniform(shape, a=0.0, fan_in=None, nonlinearity="leaky_relu"):
    """torch.nn.init.kaiming_uniform_ (mode fan_in): U(-b, b), b = gain * sqrt(3 / fan_in).
    With a = sqrt(5) (the Linear/Conv default) b = 1 / sqrt(fan_in)."""
    if fan_in is None:
        fan_in = fans(shape)[0]
    if nonlinearity == "leaky_relu":
        gain = math.sqrt(2.0 / (1 + a * a))
    elif nonlinearity == "relu":
        gain = math.sqrt(2.0)
    else:
        gain = 1.0
    bound = gain * math.sqrt(3.0 / fan_in) if fan_in > 0 else 0.0
    return uniform(shape, -bound, bound)


def xavier_uniform(shape, gain=1.0):
    """torch.nn.init.xavier_uniform_: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, -bound, bound)


def bias_uniform(shape, fan_in):
    """The Linear/Conv bias default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return uniform(shape, -bound, bound)

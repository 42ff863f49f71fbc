"""Every call the layers make into fastlayers.functional, one small helper each.

Names are looked up on the functional module at call time (never bound at import), so tests
can swap a kernel for its reference. The backward signatures API.md leaves open (batch norm,
layer norm, lstm/rnn, attention, losses, dropout, embedding) are encoded here only.
"""

from __future__ import annotations

import numpy as np

from .. import _random
from .. import functional as F


def _first(r):
    """Single-input backwards may return the gradient or a 1-tuple of it."""
    return r[0] if isinstance(r, (tuple, list)) else r


def _seed():
    return int(_random.generator().integers(0, 2**31 - 1))


# -- linear / activations (pinned: exist in the foundation) ---------------------------------
def linear(x, w, b, activation=None):
    return F.linear(x, w, b, activation)


def linear_backward(g, x, w, b, activation=None):
    return F.linear_backward(g, x, w, b, activation)


def activation(name, x, **kw):
    return getattr(F, name)(x, **kw)


def activation_backward(name, g, x, y=None, **kw):
    fn = getattr(F, name + "_backward")
    if y is not None:
        return _first(fn(g, x, y=y, **kw))
    return _first(fn(g, x, **kw))


# -- conv / pool / upsample ---------------------------------------------------------------
def conv2d(x, w, b, stride, padding, dilation, groups):
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


def conv2d_backward(g, x, w, b, stride, padding, dilation, groups):
    return F.conv2d_backward(g, x, w, b, stride, padding, dilation, groups)


def conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation):
    return F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)


def conv_transpose2d_backward(g, x, w, b, stride, padding, output_padding, groups, dilation):
    return F.conv_transpose2d_backward(g, x, w, b, stride, padding, output_padding, groups, dilation)


def max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode):
    return F.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)


def max_pool2d_backward(g, x, indices, kernel_size, stride, padding, dilation, ceil_mode):
    return _first(F.max_pool2d_backward(g, x, indices, kernel_size, stride, padding, dilation, ceil_mode))


def avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    return F.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad)


def avg_pool2d_backward(g, x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    return _first(F.avg_pool2d_backward(g, x, kernel_size, stride, padding, ceil_mode, count_include_pad))


def adaptive_avg_pool2d(x, output_size):
    return F.adaptive_avg_pool2d(x, output_size)


def adaptive_avg_pool2d_backward(g, x, output_size):
    return _first(F.adaptive_avg_pool2d_backward(g, x, output_size))


def upsample_nearest2d(x, scale_factor):
    return F.upsample_nearest2d(x, scale_factor)


def upsample_nearest2d_backward(g, x, scale_factor):
    return _first(F.upsample_nearest2d_backward(g, x, scale_factor))


# -- normalisation, dropout, embedding ------------------------------------------------------
def batch_norm(x, running_mean, running_var, w, b, training, momentum, eps):
    """Returns (y, mean, invstd), the statistics used (the batch's when training, in which case
    the running ones, when not None, are updated in place)."""
    y, (mean, invstd) = F.batch_norm(x, running_mean, running_var, w, b, training=training, momentum=momentum,
                                     eps=eps, return_stats=True)
    return y, mean, invstd


def batch_norm_backward(g, x, mean, invstd, w, b, training):
    """(grad_x, grad_weight, grad_bias); training=False: the statistics were constants."""
    return F.batch_norm_backward(g, x, w, mean, invstd, training, has_bias=b is not None)


def layer_norm(x, normalized_shape, w, b, eps):
    """Returns (y, (mean, rstd))."""
    return F.layer_norm(x, normalized_shape, w, b, eps, return_stats=True)


def layer_norm_backward(g, x, normalized_shape, w, b, eps, stats):
    mean, rstd = stats
    return F.layer_norm_backward(g, x, normalized_shape, w, b, eps, mean=mean, rstd=rstd)


def dropout(x, p):
    """Training-mode dropout seeded from fl.manual_seed's generator: returns (y, mask)."""
    return F.dropout(x, p, True, _seed())


def dropout_backward(g, mask, p):
    return _first(F.dropout_backward(g, mask, p, True))


def embedding(indices, w):
    return F.embedding(indices, w)


def embedding_backward(g, indices, w, padding_idx):
    """grad_weight (the padding_idx row zero)."""
    return _first(F.embedding_backward(g, indices, w, padding_idx))


# -- recurrent ------------------------------------------------------------------------------
def lstm_train(x, params, h0, c0, num_layers, bidirectional, batch_first):
    out, (hn, cn), reserve = F.lstm(x, params, h0, c0, num_layers=num_layers, bidirectional=bidirectional,
                                    batch_first=batch_first, training=True)
    return out, hn, cn, reserve


def lstm_eval(x, params, h0, c0, num_layers, bidirectional, batch_first):
    out, (hn, cn) = F.lstm(x, params, h0, c0, num_layers=num_layers, bidirectional=bidirectional,
                           batch_first=batch_first, training=False)
    return out, hn, cn


def lstm_backward(g_out, g_hn, g_cn, x, params, h0, c0, reserve, num_layers, bidirectional, batch_first):
    """(grad_x, grad_params [(gw_ih, gw_hh, gb_ih, gb_hh) per layer/direction], grad_h0, grad_c0);
    grad_h_n / grad_c_n may be None (zero); grad_h0/grad_c0 are None when h0/c0 were."""
    return F.lstm_backward(g_out, g_hn, g_cn, x, params, reserve, h0, c0, num_layers=num_layers,
                           bidirectional=bidirectional, batch_first=batch_first)


def rnn_train(x, params, h0, nonlinearity, num_layers, bidirectional, batch_first):
    out, hn, reserve = F.rnn(x, params, h0, nonlinearity=nonlinearity, num_layers=num_layers,
                             bidirectional=bidirectional, batch_first=batch_first, training=True)
    return out, hn, reserve


def rnn_eval(x, params, h0, nonlinearity, num_layers, bidirectional, batch_first):
    out, hn = F.rnn(x, params, h0, nonlinearity=nonlinearity, num_layers=num_layers,
                    bidirectional=bidirectional, batch_first=batch_first, training=False)
    return out, hn


def rnn_backward(g_out, g_hn, x, params, h0, reserve, nonlinearity, num_layers, bidirectional, batch_first):
    """(grad_x, grad_params, grad_h0)."""
    return F.rnn_backward(g_out, g_hn, x, params, reserve, h0, nonlinearity=nonlinearity,
                          num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)


# -- attention ------------------------------------------------------------------------------
def sdpa(q, k, v, attn_mask, scale):
    """Fused attention forward: returns (out, lse)."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale, return_lse=True)


def sdpa_backward(g, q, k, v, out, lse, attn_mask, scale):
    """(grad_q, grad_k, grad_v)."""
    gq, gk, gv = F.scaled_dot_product_attention_backward(g, q, k, v, out, lse, attn_mask=attn_mask, scale=scale)
    return gq, gk, gv


def matmul(a, b):
    return F.matmul(a, b)


def matmul_backward(g, a, b):
    return F.matmul_backward(g, a, b)


def softmax(x, axis=-1):
    return F.softmax(x, axis)


def softmax_backward(g, x, y, axis=-1):
    return _first(F.softmax_backward(g, x, axis, y=y))


# -- losses ---------------------------------------------------------------------------------
def loss(name, pred, target, **kw):
    return getattr(F, name)(pred, target, **kw)


def loss_backward(name, grad_out, pred, target, **kw):
    """dL/dinput; grad_out is a 0-d float32 array for reductions 'mean'/'sum', else unreduced."""
    return _first(getattr(F, name + "_backward")(grad_out, pred, target, **kw))


def ones_like_loss(value, like):
    """The seed gradient dL/dL for a loss output."""
    xp = np
    if type(like).__module__.split(".", 1)[0] == "cupy":
        import cupy as xp
    return xp.ones(np.shape(value), dtype=np.float32)

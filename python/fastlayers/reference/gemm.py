"""NumPy reference for gemm, matmul and linear."""

from __future__ import annotations

import numpy as np

from .activations import gelu, gelu_backward, relu, relu_backward, sigmoid, sigmoid_backward, tanh, tanh_backward

__all__ = ["gemm", "matmul", "linear", "gemm_backward", "matmul_backward", "linear_backward"]


def gemm(a, b, c=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    oa = a.T if trans_a else a
    ob = b.T if trans_b else b
    out = alpha * (oa @ ob)
    if c is not None and beta != 0.0:
        out = out + beta * c
    return out


def gemm_backward(grad_out, a, b, c=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    oa = a.T if trans_a else a
    ob = b.T if trans_b else b
    d_oa = alpha * grad_out @ ob.T
    d_ob = alpha * oa.T @ grad_out
    grad_c = None
    if c is not None:
        grad_c = beta * grad_out
        while grad_c.ndim > c.ndim:
            grad_c = grad_c.sum(axis=0)
        for i, s in enumerate(c.shape):
            if s == 1:
                grad_c = grad_c.sum(axis=i, keepdims=True)
    return (d_oa.T if trans_a else d_oa), (d_ob.T if trans_b else d_ob), grad_c


def matmul(a, b):
    return np.matmul(a, b)


def _unbroadcast(g, shape):
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, s in enumerate(shape):
        if s == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def matmul_backward(grad_out, a, b):
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g = np.asarray(grad_out)
    if a.ndim == 1:
        g = np.expand_dims(g, -2 if b.ndim > 1 else 0)
    if b.ndim == 1:
        g = np.expand_dims(g, -1)
    ga = _unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
    gb = _unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
    return ga, gb


_ACT = {
    None: (lambda z: z, lambda g, z: g),
    "relu": (relu, relu_backward),
    "gelu": (gelu, gelu_backward),
    "gelu_tanh": (lambda z: gelu(z, "tanh"), lambda g, z: gelu_backward(g, z, "tanh")),
    "tanh": (tanh, tanh_backward),
    "sigmoid": (sigmoid, sigmoid_backward),
}


def linear(x, weight, bias=None, activation=None):
    z = x @ weight.T
    if bias is not None:
        z = z + bias
    return _ACT[activation][0](z)


def linear_backward(grad_out, x, weight, bias=None, activation=None, *, y=None):
    z = x @ weight.T
    if bias is not None:
        z = z + bias
    g = _ACT[activation][1](grad_out, z)
    rows = x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])
    g2 = g.reshape(int(np.prod(g.shape[:-1])), weight.shape[0])
    grad_x = (g2 @ weight).reshape(x.shape)
    grad_w = g2.T @ rows
    grad_b = None if bias is None else g2.sum(axis=0)
    return grad_x, grad_w, grad_b

"""GEMM, matmul and linear (with fused bias + activation), forward and backward."""

from __future__ import annotations

import numpy as np

from .. import _core, _cuda
from .._arrays import F32, F32_F16_BF16, backend, check_array
from ._activations import _check_same_shape, gelu_backward, relu_backward, sigmoid_backward, tanh_backward

__all__ = ["gemm", "matmul", "linear", "gemm_backward", "matmul_backward", "linear_backward"]

# Codes shared with csrc/gemm/gemm.h (Activation).
_ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "tanh": 4, "sigmoid": 5}


_F32 = np.dtype(np.float32)


def _plain(*arrays):
    """True when every array is a float32 numpy.ndarray: the fast path that skips the generic
    checks (a few microseconds each, as much as a 64^3 GEMM). Anything else takes the full
    checks, which raise the documented errors."""
    for x in arrays:
        if type(x) is not np.ndarray or x.dtype != _F32:
            return False
    return True


def _accepted(kind):
    """float16/bfloat16 run on the CUDA tensor cores; the CPU kernels are float32 only."""
    return F32_F16_BF16 if kind == "cuda" else F32


def _shape(x):
    return tuple(x.shape)


def gemm(a, b, c=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """alpha * op(a) @ op(b) + beta * c, with op(x) = x.T when trans_x. 2-D arrays of any strides.

    c (optional) broadcasts to the result's shape; without c, beta is ignored."""
    if c is None and _plain(a, b) and a.ndim == 2 and b.ndim == 2:
        oa = a.T if trans_a else a
        ob = b.T if trans_b else b
        if oa.shape[1] == ob.shape[0]:
            out = np.empty((oa.shape[0], ob.shape[1]), np.float32)
            _core.gemm(oa, ob, out, float(alpha))
            return out
    kind = backend(a=a, b=b, c=c)
    check_array(a, "a", ndim=2, accepted=_accepted(kind))
    check_array(b, "b", ndim=2, accepted=_accepted(kind))
    oa = a.T if trans_a else a
    ob = b.T if trans_b else b
    (m, k), (k2, n) = oa.shape, ob.shape
    if k != k2:
        raise ValueError(
            f"gemm: op(a) has shape {(m, k)} and op(b) has shape {(k2, n)}; their inner dimensions must match "
            f"(a {_shape(a)}, trans_a={trans_a}; b {_shape(b)}, trans_b={trans_b})"
        )
    if c is not None and beta != 0.0:
        check_array(c, "c", accepted=_accepted(kind))
        try:
            if kind == "cuda" and np.broadcast_shapes(_shape(c), (m, n)) != (m, n):
                raise ValueError  # (the shape test of broadcast_to, which cannot read device memory)
            out = None if kind == "cuda" else np.array(np.broadcast_to(c, (m, n)), dtype=np.float32, order="C")
        except ValueError:
            raise ValueError(f"c: shape {_shape(c)} does not broadcast to the result shape {(m, n)}") from None
        beta = float(beta)
    else:
        if c is not None:
            check_array(c, "c", accepted=_accepted(kind))
        out = None if kind == "cuda" else np.empty((m, n), np.float32)
        beta = 0.0
    if kind == "cuda":
        return _cuda.gemm(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b)
    _core.gemm(oa, ob, out, float(alpha), beta)
    return out


def _rows(x, width):
    """x viewed as (rows, width); unlike reshape(-1, width) this also works when a size is 0."""
    return x.reshape(int(np.prod(x.shape[:-1], dtype=np.int64)), width)


def _sum_to_shape(g, shape):
    """Sum a broadcast gradient back down to `shape`."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    return np.ascontiguousarray(g.sum(axis=axes, dtype=np.float32).reshape(shape))


def gemm_backward(grad_out, a, b, c=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """Gradients (grad_a, grad_b, grad_c) of gemm; grad_c is None when c is None."""
    kind = backend(grad_out=grad_out, a=a, b=b, c=c)
    check_array(grad_out, "grad_out", ndim=2, accepted=_accepted(kind))
    check_array(a, "a", ndim=2, accepted=_accepted(kind))
    check_array(b, "b", ndim=2, accepted=_accepted(kind))
    oa = a.T if trans_a else a
    ob = b.T if trans_b else b
    if oa.shape[1] != ob.shape[0] or _shape(grad_out) != (oa.shape[0], ob.shape[1]):
        raise ValueError(
            f"gemm_backward: grad_out {_shape(grad_out)} does not match op(a) {_shape(oa)} @ op(b) {_shape(ob)}"
        )
    if c is not None:
        check_array(c, "c", accepted=_accepted(kind))
        out_shape = (oa.shape[0], ob.shape[1])
        try:
            if np.broadcast_shapes(_shape(c), out_shape) != out_shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"c: shape {_shape(c)} does not broadcast to the result shape {out_shape}") from None
    if kind == "cuda":
        return _cuda.gemm_backward(grad_out, a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b)
    g = grad_out
    grad_a = gemm(ob, g, alpha=alpha, trans_a=False, trans_b=True) if trans_a else gemm(g, ob, alpha=alpha, trans_b=True)
    grad_b = gemm(g, oa, alpha=alpha, trans_a=True) if trans_b else gemm(oa, g, alpha=alpha, trans_a=True)
    grad_c = None
    if c is not None:
        grad_c = _sum_to_shape(np.float32(beta) * g, c.shape)
    return grad_a, grad_b, grad_c


def _batched(a3, b3, out3):
    _core.gemm_batched(a3, b3, out3)


def matmul(a, b):
    """NumPy's ``a @ b``: 1-D operands are promoted and the added dimension removed, batch
    dimensions broadcast."""
    kind = backend(a=a, b=b)
    check_array(a, "a", min_ndim=1, accepted=_accepted(kind))
    check_array(b, "b", min_ndim=1, accepted=_accepted(kind))
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    m, k = a2.shape[-2:]
    k2, n = b2.shape[-2:]
    if k != k2:
        raise ValueError(f"matmul: a {_shape(a)} and b {_shape(b)} do not align: {k} != {k2} in the contracted dimension")
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of a {_shape(a)} and b {_shape(b)} do not broadcast") from None
    if kind == "cuda":
        return _cuda.matmul(a, b)
    out = np.empty(batch + (m, n), np.float32)
    if b2.ndim == 2 and out.size:
        # (..., m, k) @ (k, n): one big GEMM over all rows of a when they are evenly strided.
        rows = _rows(a2, k) if a2.ndim > 2 else a2
        _core.gemm(rows, b2, _rows(out, n))
    elif out.size:
        nb = int(np.prod(batch))
        a3 = np.broadcast_to(a2, batch + (m, k)).reshape(nb, m, k)
        b3 = np.broadcast_to(b2, batch + (k, n)).reshape(nb, k, n)
        _batched(a3, b3, out.reshape(nb, m, n))
    elif k == 0:
        out[...] = 0
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out if out.flags.c_contiguous else out.copy()  # (ascontiguousarray would make 0-d 1-d)


def matmul_backward(grad_out, a, b):
    """Gradients (grad_a, grad_b) of matmul, summed over broadcast batch dimensions."""
    kind = backend(grad_out=grad_out, a=a, b=b)
    check_array(grad_out, "grad_out", accepted=_accepted(kind))
    check_array(a, "a", min_ndim=1, accepted=_accepted(kind))
    check_array(b, "b", min_ndim=1, accepted=_accepted(kind))
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    expected = matmul_shape(a, b)
    if _shape(grad_out) != expected:
        raise ValueError(f"matmul_backward: grad_out has shape {_shape(grad_out)}, expected {expected}")
    if kind == "cuda":
        return _cuda.matmul_backward(grad_out, a, b)
    g = np.asarray(grad_out)
    if a.ndim == 1:
        g = np.expand_dims(g, -2 if b.ndim > 1 else 0)
    if b.ndim == 1:
        g = np.expand_dims(g, -1)
    grad_a = _sum_to_shape(matmul(g, np.swapaxes(b2, -1, -2)), a2.shape)
    grad_b = _sum_to_shape(matmul(np.swapaxes(a2, -1, -2), g), b2.shape)
    return grad_a.reshape(a.shape).copy(), grad_b.reshape(b.shape).copy()


def matmul_shape(a, b):
    a2 = (1,) + _shape(a) if a.ndim == 1 else _shape(a)
    b2 = _shape(b) + (1,) if b.ndim == 1 else _shape(b)
    shape = np.broadcast_shapes(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if a.ndim == 1:
        shape = shape[:-2] + shape[-1:]
    if b.ndim == 1:
        shape = shape[:-1]
    return shape


def _check_linear(x, weight, bias, activation, accepted=F32):
    check_array(x, "x", min_ndim=1, accepted=accepted)
    check_array(weight, "weight", ndim=2, accepted=accepted)
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"linear: x has {x.shape[-1]} input features (shape {_shape(x)}) but weight expects "
            f"{weight.shape[1]} (shape {_shape(weight)})"
        )
    if bias is not None:
        check_array(bias, "bias", ndim=1, accepted=accepted)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"bias: shape {_shape(bias)} does not match weight's {weight.shape[0]} output features")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {list(_ACTIVATIONS)}, got {activation!r}")


def linear(x, weight, bias=None, activation=None):
    """act(x @ weight.T + bias) with the bias and activation fused into the GEMM epilogue.
    x: (..., in), weight: (out, in), bias: (out,)."""
    fast = (_plain(x, weight) if bias is None else _plain(x, weight, bias)) and x.ndim >= 1 and weight.ndim == 2 \
        and x.shape[-1] == weight.shape[1] and activation in _ACTIVATIONS \
        and (bias is None or (bias.ndim == 1 and bias.shape[0] == weight.shape[0]))
    if not fast:
        kind = backend(x=x, weight=weight, bias=bias)
        _check_linear(x, weight, bias, activation, _accepted(kind))
        if kind == "cuda":
            return _cuda.linear(x, weight, bias, activation)
    n_out, n_in = weight.shape
    rows = _rows(x, n_in)
    out = np.empty(rows.shape[:1] + (n_out,), np.float32)
    if out.size:
        b = None if bias is None else np.ascontiguousarray(bias)
        _core.gemm(rows, weight.T, out, 1.0, 0.0, None, b, _ACTIVATIONS[activation])
    return out.reshape(x.shape[:-1] + (n_out,))


def linear_backward(grad_out, x, weight, bias=None, activation=None, *, y=None):
    """Gradients (grad_x, grad_weight, grad_bias) of linear; grad_bias is None without a bias.

    With an activation, pass the forward output y when activation is relu, tanh or sigmoid to
    skip recomputing the pre-activation; gelu always recomputes it."""
    kind = backend(grad_out=grad_out, x=x, weight=weight, bias=bias, y=y)
    _check_linear(x, weight, bias, activation, _accepted(kind))
    check_array(grad_out, "grad_out", accepted=_accepted(kind))
    n_out, n_in = weight.shape
    expected = _shape(x)[:-1] + (n_out,)
    if _shape(grad_out) != expected:
        raise ValueError(f"linear_backward: grad_out has shape {_shape(grad_out)}, expected {expected}")
    if y is not None:
        check_array(y, "y", accepted=_accepted(kind))
        _check_same_shape(y, grad_out, "y", "grad_out")
    if kind == "cuda":
        return _cuda.linear_backward(grad_out, x, weight, bias, activation, y=y)
    rows = _rows(x, n_in)
    g = _rows(grad_out, n_out)
    if activation is not None:
        if y is not None and activation in ("tanh", "sigmoid"):
            back = tanh_backward if activation == "tanh" else sigmoid_backward
            g = back(np.ascontiguousarray(g), np.ascontiguousarray(y.reshape(g.shape)), y=np.ascontiguousarray(y.reshape(g.shape)))
        elif y is not None and activation == "relu":
            g = relu_backward(np.ascontiguousarray(g), np.ascontiguousarray(y.reshape(g.shape)))
        else:
            z = linear(rows, weight, bias)
            if activation == "relu":
                g = relu_backward(np.ascontiguousarray(g), z)
            elif activation in ("gelu", "gelu_tanh"):
                g = gelu_backward(np.ascontiguousarray(g), z, approximate="tanh" if activation == "gelu_tanh" else "none")
            else:
                back = tanh_backward if activation == "tanh" else sigmoid_backward
                g = back(np.ascontiguousarray(g), z)
    grad_x = np.empty(rows.shape, np.float32)
    grad_w = np.empty(weight.shape, np.float32)
    if grad_x.size:
        _core.gemm(g, weight, grad_x)
    if grad_w.size:
        _core.gemm(g.T, rows, grad_w)
    grad_b = None if bias is None else g.sum(axis=0, dtype=np.float32)
    return grad_x.reshape(x.shape), grad_w, grad_b

"""CuPy-side dispatch of the CUDA kernels.

Each public function here has the signature (and the return convention) of its
`fastlayers.functional` counterpart, which validates the arguments exactly as for NumPy
inputs (kinds, dtypes, ranks, shapes, parameters) and then calls it for CuPy arrays. It
expects those already-validated arguments: it makes the inputs contiguous, allocates the
outputs with CuPy, calls `_core.cuda_<op>` with device pointers (`arr.data.ptr`) on CuPy's
current stream, and returns CuPy arrays. float32 everywhere; gemm/matmul/linear also take float16 and bfloat16 (tensor
cores, float32 accumulation, result in the inputs' dtype).

CuPy is imported lazily, inside the functions: importing fastlayers never needs it.
"""

from __future__ import annotations

import math

import numpy as np

from . import _core
from ._arrays import pair, require_cuda

__all__ = [
    "gemm", "matmul", "linear", "gemm_backward", "matmul_backward", "linear_backward",
    "softmax", "log_softmax", "softmax_backward", "log_softmax_backward",
    "layer_norm", "layer_norm_backward", "batch_norm", "batch_norm_backward",
    "dropout", "dropout_backward", "embedding", "embedding_backward",
    "mse_loss", "mse_loss_backward", "binary_cross_entropy", "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "cross_entropy", "cross_entropy_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
    "upsample_nearest2d", "upsample_nearest2d_backward",
]

# Codes shared with csrc/gemm/gemm.h (Activation) and csrc/gemm/gemm_cuda.h (DType).
_ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "tanh": 4, "sigmoid": 5}
_DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
_MSE, _BCE, _BCE_LOGITS = range(3)  # csrc/loss/loss_cuda.h (PointLoss)
# csrc/elementwise/elementwise.h (UnaryOp)
_UNARY = {"relu": 0, "tanh": 3, "sigmoid": 2, "gelu": 4, "gelu_tanh": 5}


def _cp():
    import cupy

    return cupy


def _stream() -> int:
    return _cp().cuda.get_current_stream().ptr


def _ptr(a) -> int:
    return 0 if a is None else int(a.data.ptr)


def _c(a):
    """C-contiguous (a no-op for arrays that already are)."""
    return None if a is None else _cp().ascontiguousarray(a)


def _f32c(a):
    return None if a is None else _cp().ascontiguousarray(a, dtype=np.float32)


def _prod(shape) -> int:
    return int(math.prod(int(s) for s in shape))


def _same_dtype(**arrays):
    dts = {n: str(a.dtype) for n, a in arrays.items() if a is not None}
    if len(set(dts.values())) > 1:
        desc = ", ".join(f"{n}={d}" for n, d in dts.items())
        raise TypeError(f"arrays of different dtypes in one call ({desc}); cast them to one of "
                        f"{', '.join(_DTYPES)}")
    dt = next(iter(dts.values()))
    if dt not in _DTYPES:
        raise TypeError(f"dtype {dt} is not supported on CUDA (accepted: {', '.join(_DTYPES)})")
    return dt


def _reduction(reduction) -> int:
    try:
        return _REDUCTIONS[reduction]
    except (KeyError, TypeError):
        raise ValueError(f"reduction: expected 'none', 'mean' or 'sum', got {reduction!r}") from None


# ---- GEMM ------------------------------------------------------------------------------------
def _operand(x):
    """A 2-D view op(X) (rows, cols) as (array, ld, trans) for the kernel's row-major layouts:
    trans=False: element (i, j) at i*ld + j; trans=True: at j*ld + i. Views and transposes
    pass as they are; anything else (negative or odd strides) is copied."""
    rows, cols = (int(s) for s in x.shape)
    isz = x.itemsize
    s0, s1 = (int(s) for s in x.strides)
    if (s1 == isz or cols <= 1) and s0 >= 0 and s0 % isz == 0:
        ld = s0 // isz if rows > 1 else cols
        if rows <= 1 or ld >= cols:
            return x, ld, False
    if (s0 == isz or rows <= 1) and s1 >= 0 and s1 % isz == 0:
        ld = s1 // isz if cols > 1 else rows
        if cols <= 1 or ld >= rows:
            return x, ld, True
    x = _c(x)
    return x, cols, False


def _run_gemm(oa, ob, out, alpha=1.0, beta=0.0, col_bias=None, row_bias=None, act=0):
    """out (m, n), C-contiguous = act(alpha * oa @ ob + beta * out + biases)."""
    m, k = (int(s) for s in oa.shape)
    n = int(ob.shape[1])
    if m == 0 or n == 0:
        return out
    a, lda, ta = _operand(oa)
    b, ldb, tb = _operand(ob)
    _core.cuda_gemm(_DTYPES[str(out.dtype)], m, n, k, _ptr(a), lda, ta, _ptr(b), ldb, tb, _ptr(out), n,
                    float(alpha), float(beta), _ptr(row_bias), _ptr(col_bias), int(act), 1, 0, 0, 0, _stream())
    return out


def gemm(a, b, c=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    require_cuda()
    cp = _cp()
    dt = _same_dtype(a=a, b=b, c=c if beta != 0.0 else None)
    oa = a.T if trans_a else a
    ob = b.T if trans_b else b
    m, n = int(oa.shape[0]), int(ob.shape[1])
    if c is not None and beta != 0.0:
        out = cp.array(cp.broadcast_to(c, (m, n)), dtype=dt, order="C")
    else:
        out = cp.empty((m, n), dtype=dt)
        beta = 0.0
    return _run_gemm(oa, ob, out, alpha, beta)


def _sum_to_shape(g, shape):
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    return _cp().ascontiguousarray(g.sum(axis=axes, dtype=np.float32).astype(g.dtype).reshape(shape))


def gemm_backward(grad_out, a, b, c=None, *, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
    """(grad_a, grad_b, grad_c); grad_c is None when c is None."""
    require_cuda()
    oa = a.T if trans_a else a
    ob = b.T if trans_b else b
    g = grad_out
    grad_a = gemm(ob, g, alpha=alpha, trans_b=True) if trans_a else gemm(g, ob, alpha=alpha, trans_b=True)
    grad_b = gemm(g, oa, alpha=alpha, trans_a=True) if trans_b else gemm(oa, g, alpha=alpha, trans_a=True)
    grad_c = None
    if c is not None:
        grad_c = _sum_to_shape((g.astype(np.float32) * np.float32(beta)).astype(g.dtype), c.shape)
    return grad_a, grad_b, grad_c


def _batched_operand(x2, batch, rows, cols):
    """(array, batch stride) with x2 broadcast to batch + (rows, cols), C-contiguous."""
    cp = _cp()
    xb = tuple(x2.shape[:-2])
    if _prod(xb) == 1:
        return _c(x2).reshape(rows, cols), 0
    if xb == tuple(batch):
        return _c(x2), rows * cols
    return _c(cp.broadcast_to(x2, tuple(batch) + (rows, cols))), rows * cols


def matmul(a, b):
    """NumPy's a @ b (1-D promotion, broadcast batch dimensions)."""
    require_cuda()
    cp = _cp()
    dt = _same_dtype(a=a, b=b)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    m, k = (int(s) for s in a2.shape[-2:])
    n = int(b2.shape[-1])
    batch = tuple(np.broadcast_shapes(tuple(a2.shape[:-2]), tuple(b2.shape[:-2])))
    out = cp.empty(batch + (m, n), dtype=dt)
    if out.size:
        if b2.ndim == 2:
            rows = a2 if a2.ndim == 2 else _c(a2).reshape(-1, k)
            if a2.ndim > 2 and tuple(a2.shape[:-2]) != batch:  # (cannot happen: b has no batch dims)
                rows = _c(cp.broadcast_to(a2, batch + (m, k))).reshape(-1, k)
            _run_gemm(rows, b2, out.reshape(-1, n))
        else:
            nb = _prod(batch)
            a3, sa = _batched_operand(a2, batch, m, k)
            b3, sb = _batched_operand(b2, batch, k, n)
            _core.cuda_gemm(_DTYPES[dt], m, n, k, _ptr(a3), k, False, _ptr(b3), n, False, _ptr(out), n, 1.0, 0.0,
                            0, 0, 0, nb, sa, sb, m * n, _stream())
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return _c(out) if out.ndim else out.copy()


def matmul_backward(grad_out, a, b):
    """(grad_a, grad_b), summed over broadcast batch dimensions."""
    require_cuda()
    cp = _cp()
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g = grad_out
    if a.ndim == 1:
        g = cp.expand_dims(g, -2 if b.ndim > 1 else 0)
    if b.ndim == 1:
        g = cp.expand_dims(g, -1)
    grad_a = _sum_to_shape(matmul(g, cp.swapaxes(b2, -1, -2)), a2.shape)
    grad_b = _sum_to_shape(matmul(cp.swapaxes(a2, -1, -2), g), b2.shape)
    return _c(grad_a.reshape(a.shape)).copy(), _c(grad_b.reshape(b.shape)).copy()


def linear(x, weight, bias=None, activation=None):
    """act(x @ weight.T + bias), bias and activation fused into the GEMM epilogue."""
    require_cuda()
    cp = _cp()
    dt = _same_dtype(x=x, weight=weight, bias=bias)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {list(_ACTIVATIONS)}, got {activation!r}")
    n_out, n_in = (int(s) for s in weight.shape)
    rows = x.reshape(-1, n_in) if x.size else cp.empty((_prod(x.shape[:-1]), n_in), dtype=dt)
    out = cp.empty((int(rows.shape[0]), n_out), dtype=dt)
    if out.size:
        _run_gemm(rows, weight.T, out, col_bias=_c(bias), act=_ACTIVATIONS[activation])
    return out.reshape(tuple(x.shape[:-1]) + (n_out,))


def _activation_grad(g, z, activation):
    """g * act'(z) for the pre-activation z (float32 kernels; half is computed in float32)."""
    cp = _cp()
    g32, z32 = _f32c(g), _f32c(z)
    dz = cp.empty(z32.shape, dtype=np.float32)
    if dz.size:
        _core.cuda_unary_backward(_UNARY[activation], _ptr(g32), _ptr(z32), _ptr(dz), dz.size, 0.0, _stream())
    return dz.astype(g.dtype, copy=False)


def linear_backward(grad_out, x, weight, bias=None, activation=None, *, y=None):
    """(grad_x, grad_weight, grad_bias); grad_bias is None without a bias. With relu, tanh or
    sigmoid the forward output y (when given) supplies the derivative; otherwise the
    pre-activation is recomputed."""
    require_cuda()
    cp = _cp()
    dt = _same_dtype(grad_out=grad_out, x=x, weight=weight, bias=bias)
    n_out, n_in = (int(s) for s in weight.shape)
    rows = _c(x).reshape(-1, n_in)
    g = _c(grad_out).reshape(-1, n_out)
    if activation is not None:
        if y is not None and activation in ("relu", "tanh", "sigmoid"):
            y2 = _c(y).reshape(g.shape).astype(np.float32)
            g32 = g.astype(np.float32)
            if activation == "relu":
                g = (g32 * (y2 > 0)).astype(dt)
            elif activation == "tanh":
                g = (g32 * (1.0 - y2 * y2)).astype(dt)
            else:
                g = (g32 * (y2 * (1.0 - y2))).astype(dt)
        else:
            z = linear(rows, weight, bias)
            g = _activation_grad(g, z, activation)
    grad_x = cp.empty(rows.shape, dtype=dt)
    grad_w = cp.empty(weight.shape, dtype=dt)
    if grad_x.size:
        _run_gemm(g, weight, grad_x)
    if grad_w.size:
        if rows.shape[0]:
            _run_gemm(g.T, rows, grad_w)
        else:
            grad_w[...] = 0
    grad_b = None if bias is None else g.sum(axis=0, dtype=np.float32).astype(dt)
    return grad_x.reshape(x.shape), grad_w, grad_b


# ---- softmax ---------------------------------------------------------------------------------
def _softmax_dims(x, axis):
    nd = max(x.ndim, 1)
    ax = int(axis) % nd
    shape = tuple(x.shape) or (1,)
    return _prod(shape[:ax]), int(shape[ax]), _prod(shape[ax + 1:])


def _softmax(x, axis, log):
    require_cuda()
    cp = _cp()
    outer, n, inner = _softmax_dims(x, axis)
    x = _c(x)
    y = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_softmax(_ptr(x), _ptr(y), outer, n, inner, log, _stream())
    return y


def _softmax_backward(grad_out, x, axis, y, log):
    require_cuda()
    cp = _cp()
    if y is None:
        y = _softmax(x, axis, log)
    outer, n, inner = _softmax_dims(x, axis)
    g, y = _c(grad_out), _c(y)
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_softmax_backward(_ptr(g), _ptr(y), _ptr(dx), outer, n, inner, log, _stream())
    return dx


def softmax(x, axis=-1):
    return _softmax(x, axis, False)


def log_softmax(x, axis=-1):
    return _softmax(x, axis, True)


def softmax_backward(grad_out, x, axis=-1, *, y=None):
    return _softmax_backward(grad_out, x, axis, y, False)


def log_softmax_backward(grad_out, x, axis=-1, *, y=None):
    return _softmax_backward(grad_out, x, axis, y, True)


# ---- normalisation ---------------------------------------------------------------------------
def _norm_shape(x, normalized_shape):
    ns = (int(normalized_shape),) if isinstance(normalized_shape, (int, np.integer)) else tuple(
        int(s) for s in normalized_shape)
    if len(ns) > x.ndim or tuple(x.shape[x.ndim - len(ns):]) != ns:
        raise ValueError(f"normalized_shape: {ns} does not match the trailing dimensions of x {tuple(x.shape)}")
    cols = _prod(ns)
    rows = _prod(x.shape[:x.ndim - len(ns)])
    return ns, rows, cols


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, return_stats=False):
    """y, or (y, (mean, rstd)) with return_stats, each of shape x.shape[:-len(normalized_shape)]."""
    require_cuda()
    cp = _cp()
    ns, rows, cols = _norm_shape(x, normalized_shape)
    x, w, b = _c(x), _c(weight), _c(bias)
    y = cp.empty(x.shape, dtype=np.float32)
    lead = tuple(x.shape[:x.ndim - len(ns)])
    mean = cp.zeros(lead, dtype=np.float32) if return_stats else None
    rstd = cp.zeros(lead, dtype=np.float32) if return_stats else None
    _core.cuda_layer_norm(_ptr(x), _ptr(w), _ptr(b), _ptr(y), _ptr(mean), _ptr(rstd), rows, cols, float(eps),
                          _stream())
    return (y, (mean, rstd)) if return_stats else y


def layer_norm_backward(grad_out, x, normalized_shape, weight=None, bias=None, eps=1e-5, *, mean=None, rstd=None):
    """(grad_x, grad_weight, grad_bias), None where weight / bias is None. mean/rstd (the
    forward's return_stats) are accepted for the functional signature; the kernel recomputes
    them from x (one extra read of x, fused into the backward pass)."""
    require_cuda()
    cp = _cp()
    _, rows, cols = _norm_shape(x, normalized_shape)
    g, x, w = _c(grad_out), _c(x), _c(weight)
    dx = cp.empty(x.shape, dtype=np.float32)
    dw = None if weight is None else cp.empty(weight.shape, dtype=np.float32)
    db = None if bias is None else cp.empty(bias.shape, dtype=np.float32)
    stats = cp.empty((2, max(rows, 1)), dtype=np.float32)
    _core.cuda_layer_norm_backward(_ptr(g), _ptr(x), _ptr(w), _ptr(dx), _ptr(dw), _ptr(db), _ptr(stats), rows, cols,
                                   float(eps), _stream())
    return dx, dw, db


def _bn_dims(x):
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, H, W), got shape {tuple(x.shape)}")
    return int(x.shape[0]), int(x.shape[1]), _prod(x.shape[2:])


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """y, or (y, mean, invstd) with return_stats: the batch statistics in training, the running
    ones (invstd = 1/sqrt(running_var + eps)) in eval. Training updates the running statistics
    in place (PyTorch's momentum convention, unbiased running variance)."""
    require_cuda()
    cp = _cp()
    n, c, hw = _bn_dims(x)
    use_batch = training or running_mean is None or running_var is None
    if use_batch and n * hw <= 1 and c:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got x {tuple(x.shape)}")
    x, w, b = _c(x), _c(weight), _c(bias)
    y = cp.empty(x.shape, dtype=np.float32)
    if use_batch:
        mean = cp.empty((c,), dtype=np.float32)
        invstd = cp.empty((c,), dtype=np.float32)
        upd = training and running_mean is not None and running_var is not None
        rm = _c(running_mean) if upd else None
        rv = _c(running_var) if upd else None
        _core.cuda_batch_norm(_ptr(x), _ptr(w), _ptr(b), _ptr(y), _ptr(mean), _ptr(invstd), _ptr(rm), _ptr(rv), n, c,
                              hw, True, float(momentum), float(eps), _stream())
        if upd:  # a non-contiguous running buffer was updated through a copy
            if rm is not running_mean:
                running_mean[...] = rm
            if rv is not running_var:
                running_var[...] = rv
    else:
        rm, rv = _c(running_mean), _c(running_var)
        _core.cuda_batch_norm(_ptr(x), _ptr(w), _ptr(b), _ptr(y), 0, 0, _ptr(rm), _ptr(rv), n, c, hw, False, 0.0,
                              float(eps), _stream())
        if return_stats:
            mean = rm.copy()
            invstd = (1.0 / cp.sqrt(rv.astype(np.float32) + np.float32(eps))).astype(np.float32)
    return (y, (mean, invstd)) if return_stats else y


def batch_norm_backward(grad_out, x, weight, mean, invstd, training=True, momentum=0.1, eps=1e-5, *, has_bias=None):
    """(grad_x, grad_weight, grad_bias): grad_weight None when weight is None, grad_bias None
    unless has_bias (default: weight is not None). mean/invstd: the pair
    batch_norm(..., return_stats=True) returned (batch statistics in training; in eval the
    running mean and 1/sqrt(running_var + eps)). momentum/eps do not change the result."""
    require_cuda()
    cp = _cp()
    n, c, hw = _bn_dims(x)
    g, x, w, mean, invstd = _c(grad_out), _c(x), _c(weight), _c(mean), _c(invstd)
    dx = cp.empty(x.shape, dtype=np.float32)
    sums = cp.empty((2, c), dtype=np.float32)
    _core.cuda_batch_norm_backward(_ptr(g), _ptr(x), _ptr(w), _ptr(mean), _ptr(invstd), _ptr(dx), _ptr(sums), n, c,
                                   hw, bool(training), _stream())
    dw = None if weight is None else sums[1].copy()
    if has_bias is None:
        has_bias = weight is not None
    db = sums[0].copy() if has_bias else None
    return dx, dw, db


# ---- dropout, embedding ----------------------------------------------------------------------
def dropout(x, p=0.5, training=True, seed=None):
    """(y, mask): mask is a bool array (True = kept), y = x * mask / (1 - p). Identity (a copy,
    mask None) when not training or p == 0. seed=None draws one from fl.manual_seed's generator."""
    require_cuda()
    cp = _cp()
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p: dropout probability must be in [0, 1], got {p}")
    if not training:
        return _c(x).copy(), None
    if seed is None:
        from . import _random

        seed = int(_random.generator().integers(0, 2**63 - 1))
    x = _c(x)
    y = cp.empty(x.shape, dtype=np.float32)
    mask = cp.empty(x.shape, dtype=cp.bool_)
    _core.cuda_dropout(_ptr(x), _ptr(y), _ptr(mask), x.size, p, int(seed) & (2**64 - 1), _stream())
    return y, mask


def dropout_backward(grad_out, mask, p=0.5, training=True):
    """grad_out * mask / (1 - p) (one array, as the CPU function); a copy when not training."""
    require_cuda()
    cp = _cp()
    p = float(p)
    if not training:
        return _c(grad_out).copy()
    g = _c(grad_out)
    m = _c(mask).astype(cp.bool_, copy=False)
    dx = cp.empty(g.shape, dtype=np.float32)
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0
    _core.cuda_dropout_backward(_ptr(g), _ptr(m), _ptr(dx), g.size, scale, _stream())
    return dx


def _indices(indices, limit, name):
    """int64, C-contiguous; ValueError when an entry lies outside [0, limit)."""
    idx = _cp().ascontiguousarray(indices, dtype=np.int64)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= limit:
            pos = int(_cp().flatnonzero((idx < 0) | (idx >= limit))[0])
            raise ValueError(f"{name}: index {int(idx.ravel()[pos])} at flat position {pos} is out of range for "
                             f"weight with {limit} rows (valid: 0 to {limit - 1})")
    return idx


def embedding(indices, weight, padding_idx=None):
    """weight[indices]; padding_idx only matters to the backward."""
    require_cuda()
    cp = _cp()
    num, dim = (int(s) for s in weight.shape)
    idx = _indices(indices, num, "indices")
    w = _c(weight)
    y = cp.empty(tuple(idx.shape) + (dim,), dtype=np.float32)
    _core.cuda_embedding(_ptr(idx), _ptr(w), _ptr(y), idx.size, num, dim, _stream())
    return y


def embedding_backward(grad_out, indices, weight, padding_idx=None):
    """(grad_weight,): rows of grad_out summed into the rows their indices name; the
    padding_idx row stays 0."""
    require_cuda()
    cp = _cp()
    num, dim = (int(s) for s in weight.shape)
    idx = _indices(indices, num, "indices")
    g = _c(grad_out)
    dw = cp.empty((num, dim), dtype=np.float32)
    _core.cuda_embedding_backward(_ptr(g), _ptr(idx), _ptr(dw), idx.size, num, dim, _stream())
    if padding_idx is not None and num:
        dw[int(padding_idx) % num] = 0
    return (dw,)


# ---- losses ----------------------------------------------------------------------------------
def _point_loss(kind, input, target, reduction):
    require_cuda()
    cp = _cp()
    red = _reduction(reduction)
    x, t = _c(input), _c(target)
    # The CPU kernel's check (NaN counts as outside), done here with one reduction pass: the
    # kernel itself has no way to raise.
    if kind == _BCE and x.size and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("input: binary_cross_entropy expects probabilities in [0, 1]; got a value outside it "
                         "(use binary_cross_entropy_with_logits for raw scores)")
    if red == 0:
        out = cp.empty(x.shape, dtype=np.float32)
        elem = out
    else:
        out = cp.empty((), dtype=np.float32)
        elem = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_point_loss(kind, _ptr(x), _ptr(t), _ptr(out), _ptr(elem), x.size, red, _stream())
    return out


def _grad_arg(grad_out, red, shape):
    cp = _cp()
    if red == 0:
        return _f32c(grad_out)
    return cp.asarray(grad_out, dtype=np.float32).reshape(1)


def _point_loss_backward(kind, grad_out, input, target, reduction):
    require_cuda()
    cp = _cp()
    red = _reduction(reduction)
    x, t = _c(input), _c(target)
    g = _grad_arg(grad_out, red, x.shape)
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_point_loss_backward(kind, _ptr(g), _ptr(x), _ptr(t), _ptr(dx), x.size, red, _stream())
    return dx


def mse_loss(input, target, reduction="mean"):
    return _point_loss(_MSE, input, target, reduction)


def mse_loss_backward(grad_out, input, target, reduction="mean"):
    """grad_input."""
    return _point_loss_backward(_MSE, grad_out, input, target, reduction)


def binary_cross_entropy(input, target, reduction="mean"):
    return _point_loss(_BCE, input, target, reduction)


def binary_cross_entropy_backward(grad_out, input, target, reduction="mean"):
    """grad_input."""
    return _point_loss_backward(_BCE, grad_out, input, target, reduction)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    return _point_loss(_BCE_LOGITS, input, target, reduction)


def binary_cross_entropy_with_logits_backward(grad_out, input, target, reduction="mean"):
    """grad_input."""
    return _point_loss_backward(_BCE_LOGITS, grad_out, input, target, reduction)


def _ce_prep(logits, target, ignore_index):
    cp = _cp()
    if logits.ndim < 2:
        raise ValueError(f"logits: expected (N, C) or (N, C, d...), got shape {tuple(logits.shape)}")
    n, c = int(logits.shape[0]), int(logits.shape[1])
    d = _prod(logits.shape[2:])
    want = (n,) + tuple(logits.shape[2:])
    if tuple(target.shape) != want:
        raise ValueError(f"target: expected shape {want} for logits {tuple(logits.shape)}, got {tuple(target.shape)}")
    t = cp.ascontiguousarray(target, dtype=np.int64)
    valid = t != int(ignore_index)
    if t.size and bool(cp.any(valid & ((t < 0) | (t >= c)))):
        pos = int(cp.flatnonzero(valid & ((t < 0) | (t >= c)))[0])
        raise ValueError(f"target: class index {int(t.ravel()[pos])} at flat position {pos} is out of range "
                         f"[0, {c}) (and is not ignore_index={int(ignore_index)})")
    count = valid.sum(dtype=np.float32).reshape(1)
    return _c(logits), t, count, n, c, d


def cross_entropy(input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    require_cuda()
    cp = _cp()
    red = _reduction(reduction)
    x, t, count, n, c, d = _ce_prep(input, target, ignore_index)
    if red == 0:
        out = cp.empty(t.shape, dtype=np.float32)
        elem = out
    else:
        out = cp.empty((), dtype=np.float32)
        elem = cp.empty(t.shape, dtype=np.float32)
    _core.cuda_cross_entropy(_ptr(x), _ptr(t), _ptr(out), _ptr(elem), _ptr(count), n, c, d, red,
                             float(label_smoothing), int(ignore_index), _stream())
    return out


def cross_entropy_backward(grad_out, input, target, reduction="mean", label_smoothing=0.0, ignore_index=-100):
    """grad_input (the logits' gradient)."""
    require_cuda()
    cp = _cp()
    red = _reduction(reduction)
    x, t, count, n, c, d = _ce_prep(input, target, ignore_index)
    g = _grad_arg(grad_out, red, t.shape)
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_cross_entropy_backward(_ptr(g), _ptr(x), _ptr(t), _ptr(count), _ptr(dx), n, c, d, red,
                                      float(label_smoothing), int(ignore_index), _stream())
    return dx


# ---- pooling ---------------------------------------------------------------------------------
def _pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape."""
    num = size + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _nchw(x):
    """x as 4-D (a 3-D (C, H, W) input gets a batch of 1) and whether to drop it again."""
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"x: expected (N, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    return x, False


def _pool_params(x, kernel_size, stride, padding, dilation, ceil_mode):
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(stride if stride is not None and stride != () else (kh, kw), "stride")
    ph, pw = pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    if min(kh, kw, sh, sw, dh, dw) < 1 or min(ph, pw) < 0:
        raise ValueError(f"pool: kernel_size {(kh, kw)}, stride {(sh, sw)}, dilation {(dh, dw)} must be >= 1 and "
                         f"padding {(ph, pw)} >= 0")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"padding: {(ph, pw)} should be at most half of kernel_size {(kh, kw)}")
    n, c, h, w = (int(s) for s in x.shape)
    oh = _pool_out(h, kh, sh, ph, dh, ceil_mode)
    ow = _pool_out(w, kw, sw, pw, dw, ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(f"pool: output size {(oh, ow)} is too small for input {tuple(x.shape)}")
    return [n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw]


def _unbatch(y, squeeze):
    return y[0] if squeeze else y


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _pool_params(x, kernel_size, stride, padding, dilation, ceil_mode)
    x = _c(x)
    y = cp.empty(tuple(dims[:2]) + (dims[4], dims[5]), dtype=np.float32)
    idx = cp.empty(y.shape, dtype=np.int64) if return_indices else None
    _core.cuda_max_pool2d(_ptr(x), _ptr(y), _ptr(idx), dims, _stream())
    if return_indices:
        return _unbatch(y, sq), _unbatch(idx, sq)
    return _unbatch(y, sq)


def max_pool2d_backward(grad_out, x, indices, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                        return_indices=False):
    """grad_x."""
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _pool_params(x, kernel_size, stride, padding, dilation, ceil_mode)
    g = _c(grad_out).reshape(tuple(dims[:2]) + (dims[4], dims[5]))
    idx = cp.ascontiguousarray(indices, dtype=np.int64).reshape(g.shape)
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_max_pool2d_backward(_ptr(g), _ptr(idx), _ptr(dx), dims, _stream())
    return _unbatch(dx, sq)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _pool_params(x, kernel_size, stride, padding, 1, ceil_mode)
    x = _c(x)
    y = cp.empty(tuple(dims[:2]) + (dims[4], dims[5]), dtype=np.float32)
    _core.cuda_avg_pool2d(_ptr(x), _ptr(y), dims, bool(count_include_pad), _stream())
    return _unbatch(y, sq)


def avg_pool2d_backward(grad_out, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """grad_x."""
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _pool_params(x, kernel_size, stride, padding, 1, ceil_mode)
    g = _c(grad_out).reshape(tuple(dims[:2]) + (dims[4], dims[5]))
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_avg_pool2d_backward(_ptr(g), _ptr(dx), dims, bool(count_include_pad), _stream())
    return _unbatch(dx, sq)


def _adaptive_dims(x, output_size):
    oh, ow = pair(output_size, "output_size")
    if oh < 0 or ow < 0:
        raise ValueError(f"output_size: expected sizes >= 0, got {(oh, ow)}")
    n, c, h, w = (int(s) for s in x.shape)
    if (h == 0 or w == 0) and n * c and oh * ow:
        raise ValueError(f"x: adaptive pooling of an empty plane, shape {tuple(x.shape)}")
    return [n, c, h, w, oh, ow, 1, 1, 1, 1, 0, 0, 1, 1]


def adaptive_avg_pool2d(x, output_size):
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _adaptive_dims(x, output_size)
    x = _c(x)
    y = cp.empty(tuple(dims[:2]) + (dims[4], dims[5]), dtype=np.float32)
    _core.cuda_adaptive_avg_pool2d(_ptr(x), _ptr(y), dims, _stream())
    return _unbatch(y, sq)


def adaptive_avg_pool2d_backward(grad_out, x, output_size):
    """grad_x."""
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _adaptive_dims(x, output_size)
    g = _c(grad_out).reshape(tuple(dims[:2]) + (dims[4], dims[5]))
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_adaptive_avg_pool2d_backward(_ptr(g), _ptr(dx), dims, _stream())
    return _unbatch(dx, sq)


def adaptive_max_pool2d(x, output_size, return_indices=False):
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _adaptive_dims(x, output_size)
    x = _c(x)
    y = cp.empty(tuple(dims[:2]) + (dims[4], dims[5]), dtype=np.float32)
    idx = cp.empty(y.shape, dtype=np.int64) if return_indices else None
    _core.cuda_adaptive_max_pool2d(_ptr(x), _ptr(y), _ptr(idx), dims, _stream())
    if return_indices:
        return _unbatch(y, sq), _unbatch(idx, sq)
    return _unbatch(y, sq)


def adaptive_max_pool2d_backward(grad_out, x, indices, output_size, return_indices=False):
    """grad_x."""
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _adaptive_dims(x, output_size)
    g = _c(grad_out).reshape(tuple(dims[:2]) + (dims[4], dims[5]))
    idx = cp.ascontiguousarray(indices, dtype=np.int64).reshape(g.shape)
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_max_pool2d_backward(_ptr(g), _ptr(idx), _ptr(dx), dims, _stream())
    return _unbatch(dx, sq)


def _upsample_dims(x, scale_factor):
    sh, sw = pair(scale_factor, "scale_factor")
    if sh < 1 or sw < 1:
        raise ValueError(f"scale_factor: expected integers >= 1, got {(sh, sw)}")
    n, c, h, w = (int(s) for s in x.shape)
    return [n, c, h, w, h * sh, w * sw, 1, 1, sh, sw, 0, 0, 1, 1]


def upsample_nearest2d(x, scale_factor):
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _upsample_dims(x, scale_factor)
    x = _c(x)
    y = cp.empty(tuple(dims[:2]) + (dims[4], dims[5]), dtype=np.float32)
    _core.cuda_upsample_nearest2d(_ptr(x), _ptr(y), dims, _stream())
    return _unbatch(y, sq)


def upsample_nearest2d_backward(grad_out, x, scale_factor):
    """grad_x."""
    require_cuda()
    cp = _cp()
    x, sq = _nchw(x)
    dims = _upsample_dims(x, scale_factor)
    g = _c(grad_out).reshape(tuple(dims[:2]) + (dims[4], dims[5]))
    dx = cp.empty(x.shape, dtype=np.float32)
    _core.cuda_upsample_nearest2d_backward(_ptr(g), _ptr(dx), dims, _stream())
    return _unbatch(dx, sq)

"""Dry run of tests/test_cuda.py on a machine without a GPU (a pytest plugin).

    PYTHONPATH=python:bench/gpu python -m pytest -p dryrun_plugin tests/test_cuda.py -m gpu

A stand-in `cupy` module backed by NumPy is put in sys.modules and every `_core.cuda_*`
binding is replaced by a NumPy/PyTorch version of its contract that reads and writes through
the very pointers, sizes, strides and flags python/fastlayers/_cuda.py passes. What this
checks: the CuPy-side glue (argument order, output shapes and dtypes, strides, batching) and
the GPU tests' own code, so that the GPU session only has the kernels left to find wrong.
What it does not check: the CUDA kernels (none runs). Needs PyTorch (CPU).
"""
from __future__ import annotations

import ctypes
import sys
import types

import numpy as np


def _view(ptr, shape, strides=None, dtype=np.float32):
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if strides is None:
        strides, acc = [], 1
        for s in reversed(shape):
            strides.insert(0, acc)
            acc *= s
    if any(s == 0 for s in shape):
        return np.empty(shape, dtype)
    assert ptr, "null pointer for a non-empty array"
    extent = 1 + sum((s - 1) * st for s, st in zip(shape, strides))
    buf = (ctypes.c_char * (extent * dtype.itemsize)).from_address(ptr)
    return np.lib.stride_tricks.as_strided(np.frombuffer(buf, dtype=dtype), shape,
                                           [st * dtype.itemsize for st in strides])


def _t(a):
    import torch

    return torch.tensor(np.asarray(a, np.float64), requires_grad=True)


class _MemoryPointer:
    """cupy.cuda.MemoryPointer's .ptr and the one copy the benchmark uses."""

    def __init__(self, ptr):
        self.ptr = ptr

    def copy_from_device_async(self, src, size, stream=None):
        ctypes.memmove(self.ptr, src.ptr, size)


class FakeDeviceArray(np.ndarray):
    """A stand-in cupy.ndarray: a NumPy array that fastlayers sees as a device array
    (`type(x).__module__` is "cupy", it has __cuda_array_interface__ and .data.ptr), so the
    public functions take their CUDA branch. Like a real CuPy array it refuses NumPy
    functions called on it from fastlayers' own code (CuPy raises TypeError on implicit
    conversion): a NumPy-only call left on a CUDA path fails here too."""

    __module__ = "cupy"

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.__array_interface__["data"][0], False),
                "strides": self.strides, "version": 3}

    @property
    def data(self):
        return _MemoryPointer(int(self.__array_interface__["data"][0]))

    def get(self):
        return np.array(self.view(np.ndarray))

    def __array_function__(self, func, types_, args, kwargs):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.split(".", 1)[0] == "fastlayers":
            raise TypeError(f"numpy.{func.__name__} called on a (fake) cupy.ndarray from {caller}: CuPy does not "
                            f"allow implicit conversion to a NumPy array")
        return super().__array_function__(func, types_, args, kwargs)

    def __repr__(self):
        return "fake_cupy." + repr(self.view(np.ndarray))

    __str__ = __repr__


def _to_np(v):
    if isinstance(v, FakeDeviceArray):
        return v.view(np.ndarray)
    if isinstance(v, (list, tuple)):
        return type(v)(_to_np(e) for e in v)
    return v


def _to_dev(v):
    if isinstance(v, np.ndarray) and not isinstance(v, FakeDeviceArray):
        return v.view(FakeDeviceArray)
    if isinstance(v, tuple):
        return tuple(_to_dev(e) for e in v)
    return v


def _device_fn(fn):
    def wrapped(*args, **kwargs):
        return _to_dev(fn(*_to_np(args), **{k: _to_np(v) for k, v in kwargs.items()}))

    wrapped.__name__ = getattr(fn, "__name__", "fn")
    return wrapped


def _make_fake_cupy():
    cp = types.ModuleType("cupy")
    for k in dir(np):
        if not k.startswith("__"):
            v = getattr(np, k)
            # array-making functions return device arrays (ufuncs keep the kind of their inputs)
            if callable(v) and not isinstance(v, (type, np.ufunc)):
                v = _device_fn(v)
            setattr(cp, k, v)
    cp.ndarray = FakeDeviceArray
    cp.__version__ = "0-dryrun"
    cp.asnumpy = lambda a: np.array(_to_np(a)) if isinstance(a, FakeDeviceArray) else np.asarray(a)

    class _Stream:
        ptr = 0

        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def synchronize(self):
            pass

    class _Event:
        def __init__(self, *a, **k):
            self.t = None

        def record(self, stream=None):
            import time

            self.t = time.perf_counter()

        def synchronize(self):
            pass

    cp.cuda = types.SimpleNamespace(get_current_stream=lambda: _Stream(), Stream=_Stream,
                                    set_allocator=lambda *a: None, Event=_Event,
                                    get_elapsed_time=lambda s, e: (e.t - s.t) * 1e3,
                                    runtime=types.SimpleNamespace(driverGetVersion=lambda: 0,
                                                                  runtimeGetVersion=lambda: 0))
    return cp


def _mocks():
    from fastlayers import reference as R

    act = {0: lambda z: z, 1: R.relu, 2: R.gelu, 3: lambda z: R.gelu(z, "tanh"), 4: R.tanh, 5: R.sigmoid}
    dts = {0: np.float32, 1: np.float16}
    m = {}

    def cuda_gemm(dtype, M, N, K, a, lda, ta, b, ldb, tb, c, ldc, alpha, beta, rb, cb, act_code, batch, sa, sb, sc,
                  stream, config=-1):
        dt = dts[dtype]
        isz = np.dtype(dt).itemsize
        for i in range(batch):
            A = _view(a + i * sa * isz, (M, K), (1, lda) if ta else (lda, 1), dt).astype(np.float64)
            B = _view(b + i * sb * isz, (K, N), (1, ldb) if tb else (ldb, 1), dt).astype(np.float64)
            C = _view(c + i * sc * isz, (M, N), (ldc, 1), dt)
            z = alpha * (A @ B)
            if beta != 0.0:
                z = z + beta * C.astype(np.float64)
            if rb:
                z = z + _view(rb, (M, 1), (1, 1), dt).astype(np.float64)
            if cb:
                z = z + _view(cb, (N,), (1,), dt).astype(np.float64)
            C[...] = act[act_code](z)

    names = {0: "relu", 1: "leaky_relu", 2: "sigmoid", 3: "tanh", 4: "gelu", 5: "gelu_tanh"}

    def cuda_unary(op, x, y, n, slope, s):
        X = _view(x, (n,)).astype(np.float64)
        name = names[op]
        with np.errstate(over="ignore", invalid="ignore"):  # the reference's exp(1e30), as the kernel's inf
            out = (R.gelu(X, "tanh") if name == "gelu_tanh" else R.leaky_relu(X, slope) if name == "leaky_relu"
                   else getattr(R, name)(X))
        _view(y, (n,))[...] = out

    def cuda_unary_backward(op, g, x, dx, n, slope, s):
        G, X = _view(g, (n,)).astype(np.float64), _view(x, (n,)).astype(np.float64)
        name = names[op]
        if name == "gelu_tanh":
            out = R.gelu_backward(G, X, "tanh")
        elif name == "leaky_relu":
            out = R.leaky_relu_backward(G, X, slope)
        else:
            out = getattr(R, name + "_backward")(G, X)
        _view(dx, (n,))[...] = out

    def cuda_softmax(x, y, outer, ln, inner, log, s):
        X = _view(x, (outer, ln, inner)).astype(np.float64)
        _view(y, (outer, ln, inner))[...] = (R.log_softmax if log else R.softmax)(X, 1)

    def cuda_softmax_backward(g, y, dx, outer, ln, inner, log, s):
        G = _view(g, (outer, ln, inner)).astype(np.float64)
        Y = _view(y, (outer, ln, inner)).astype(np.float64)
        if log:
            out = G - np.exp(Y) * G.sum(1, keepdims=True)
        else:
            out = Y * (G - (G * Y).sum(1, keepdims=True))
        _view(dx, (outer, ln, inner))[...] = out

    def _ln_stats(X, eps):
        mu = X.mean(1, keepdims=True)
        rstd = 1.0 / np.sqrt(((X - mu) ** 2).mean(1, keepdims=True) + eps)
        return mu, rstd

    def cuda_layer_norm(x, w, b, y, mean, rstd, rows, cols, eps, s):
        X = _view(x, (rows, cols)).astype(np.float64)
        mu, rs = _ln_stats(X, eps)
        out = (X - mu) * rs
        if w:
            out = out * _view(w, (cols,))
        if b:
            out = out + _view(b, (cols,))
        _view(y, (rows, cols))[...] = out
        if mean:  # (the kernel writes the statistics when given somewhere to put them)
            _view(mean, (rows,))[...] = mu.reshape(rows)
        if rstd:
            _view(rstd, (rows,))[...] = rs.reshape(rows)

    def cuda_layer_norm_backward(g, x, w, dx, dw, db, stats, rows, cols, eps, s):
        X = _view(x, (rows, cols)).astype(np.float64)
        G = _view(g, (rows, cols)).astype(np.float64)
        mu, rs = _ln_stats(X, eps) if rows else (np.zeros((0, 1)), np.zeros((0, 1)))
        xh = (X - mu) * rs
        gw = G * (_view(w, (cols,)) if w else 1.0)
        _view(dx, (rows, cols))[...] = rs * (gw - gw.mean(1, keepdims=True) - xh * (gw * xh).mean(1, keepdims=True))
        if dw:
            _view(dw, (cols,))[...] = (G * xh).sum(0)
        if db:
            _view(db, (cols,))[...] = G.sum(0)

    def cuda_batch_norm(x, w, b, y, mean, invstd, rm, rv, n, c, hw, training, momentum, eps, s):
        X = _view(x, (n, c, hw)).astype(np.float64)
        if training:
            mu = X.mean((0, 2))
            var = X.var((0, 2))
            _view(mean, (c,))[...] = mu
            _view(invstd, (c,))[...] = 1 / np.sqrt(var + eps)
            cnt = n * hw
            if rm:
                RM = _view(rm, (c,))
                RM[...] = (1 - momentum) * RM + momentum * mu
            if rv:
                RV = _view(rv, (c,))
                RV[...] = (1 - momentum) * RV + momentum * var * cnt / max(cnt - 1, 1)
            is_ = 1 / np.sqrt(var + eps)
        else:
            mu = _view(rm, (c,)).astype(np.float64)
            is_ = 1 / np.sqrt(_view(rv, (c,)).astype(np.float64) + eps)
        out = (X - mu[None, :, None]) * is_[None, :, None]
        if w:
            out = out * _view(w, (c,))[None, :, None]
        if b:
            out = out + _view(b, (c,))[None, :, None]
        _view(y, (n, c, hw))[...] = out

    def cuda_batch_norm_backward(g, x, w, mean, invstd, dx, sums, n, c, hw, training, s):
        X = _view(x, (n, c, hw)).astype(np.float64)
        G = _view(g, (n, c, hw)).astype(np.float64)
        mu = _view(mean, (c,))[None, :, None].astype(np.float64)
        is_ = _view(invstd, (c,))[None, :, None].astype(np.float64)
        xh = (X - mu) * is_
        sg, sgx = G.sum((0, 2)), (G * xh).sum((0, 2))
        S = _view(sums, (2, c))
        S[0], S[1] = sg, sgx
        scale = is_ * (_view(w, (c,))[None, :, None] if w else 1.0)
        cnt = n * hw
        if training:
            out = scale * (G - sg[None, :, None] / cnt - xh * sgx[None, :, None] / cnt)
        else:
            out = scale * G
        _view(dx, (n, c, hw))[...] = out

    def _pl(kind, X, T):
        if kind == 0:
            return (X - T) ** 2
        if kind == 1:
            return -(T * np.maximum(np.log(X), -100) + (1 - T) * np.maximum(np.log1p(-X), -100))
        return np.maximum(X, 0) - X * T + np.log1p(np.exp(-np.abs(X)))

    def _plg(kind, X, T):
        if kind == 0:
            return 2 * (X - T)
        if kind == 1:
            return (X - T) / np.maximum(X * (1 - X), 1e-12)
        return 1 / (1 + np.exp(-X)) - T

    def cuda_point_loss(kind, x, t, out, elem, n, red, s):
        L = _pl(kind, _view(x, (n,)).astype(np.float64), _view(t, (n,)).astype(np.float64))
        if red == 0:
            _view(out, (n,))[...] = L
        else:
            _view(out, (1,))[...] = L.mean() if red == 1 else L.sum()

    def cuda_point_loss_backward(kind, g, x, t, dx, n, red, s):
        gr = _plg(kind, _view(x, (n,)).astype(np.float64), _view(t, (n,)).astype(np.float64))
        G = _view(g, (n,)) if red == 0 else _view(g, (1,))[0] / (n if red == 1 else 1)
        _view(dx, (n,))[...] = G * gr

    def _ce(logits, target, count, n, c, d, eps, ignore):
        X = _view(logits, (n, c, d)).astype(np.float64)
        T = _view(target, (n, d), dtype=np.int64)
        mx = X.max(1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(X - mx).sum(1))
        valid = T != ignore
        tt = np.where(valid, T, 0)
        xy = np.take_along_axis(X, tt[:, None, :], 1)[:, 0]
        loss = np.where(valid, lse - (1 - eps) * xy - eps / c * X.sum(1), 0.0)
        return X, T, valid, tt, loss, lse

    def cuda_cross_entropy(logits, target, out, elem, count, n, c, d, red, eps, ignore, s):
        _, _, _, _, loss, _ = _ce(logits, target, count, n, c, d, eps, ignore)
        if red == 0:
            _view(out, (n, d))[...] = loss
        else:
            tot = loss.sum()
            if red == 1:
                cnt = float(_view(count, (1,))[0])
                tot = tot / cnt if cnt else np.nan
            _view(out, (1,))[...] = tot

    def cuda_cross_entropy_backward(g, logits, target, count, dx, n, c, d, red, eps, ignore, s):
        X, T, valid, tt, _, lse = _ce(logits, target, count, n, c, d, eps, ignore)
        p = np.exp(X - lse[:, None, :])
        onehot = np.zeros_like(X)
        np.put_along_axis(onehot, tt[:, None, :], 1.0, 1)
        grad = p - eps / c - (1 - eps) * onehot
        if red == 0:
            gs = _view(g, (n, d))[:, None, :]
        else:
            gs = _view(g, (1,))[0]
            if red == 1:
                gs = gs / float(_view(count, (1,))[0])
        _view(dx, (n, c, d))[...] = np.where(valid[:, None, :], gs * grad, 0.0)

    def _pool_torch(x, dims):
        import torch

        n, c, h, w = dims[:4]
        return _t(_view(x, (n, c, h, w))), torch

    def cuda_max_pool2d(x, y, idx, dims, s):
        n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw = dims
        tx, torch = _pool_torch(x, dims)
        # ceil_mode is implied by oh/ow: try both
        for ceil in (False, True):
            ty, ti = torch.nn.functional.max_pool2d(tx, (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil, True)
            if tuple(ty.shape[2:]) == (oh, ow):
                break
        _view(y, (n, c, oh, ow))[...] = ty.detach().numpy()
        if idx:
            _view(idx, (n, c, oh, ow), dtype=np.int64)[...] = ti.numpy()

    def cuda_max_pool2d_backward(g, idx, dx, dims, s):
        n, c, h, w, oh, ow = dims[:6]
        G = _view(g, (n * c, oh * ow)).astype(np.float64)
        I = _view(idx, (n * c, oh * ow), dtype=np.int64)
        out = np.zeros((n * c, h * w))
        for p_ in range(n * c):
            np.add.at(out[p_], I[p_], G[p_])
        _view(dx, (n * c, h * w))[...] = out

    def _avg(x, dims, cip):
        n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw = dims
        tx, torch = _pool_torch(x, dims)
        for ceil in (False, True):
            ty = torch.nn.functional.avg_pool2d(tx, (kh, kw), (sh, sw), (ph, pw), ceil, cip)
            if tuple(ty.shape[2:]) == (oh, ow):
                return tx, ty
        raise AssertionError("no ceil_mode gives the output size")

    def cuda_avg_pool2d(x, y, dims, cip, s):
        _, ty = _avg(x, dims, cip)
        _view(y, ty.shape)[...] = ty.detach().numpy()

    def cuda_avg_pool2d_backward(g, dx, dims, cip, s):
        import torch

        n, c, h, w, oh, ow = dims[:6]
        zeros = np.zeros((n, c, h, w), np.float32)
        tx, ty = _avg(zeros.__array_interface__["data"][0], dims, cip)
        ty.backward(torch.tensor(_view(g, (n, c, oh, ow)).astype(np.float64)))
        _view(dx, (n, c, h, w))[...] = tx.grad.numpy()

    def cuda_adaptive_avg_pool2d(x, y, dims, s):
        n, c, h, w, oh, ow = dims[:6]
        tx, torch = _pool_torch(x, dims)
        _view(y, (n, c, oh, ow))[...] = torch.nn.functional.adaptive_avg_pool2d(tx, (oh, ow)).detach().numpy()

    def cuda_adaptive_avg_pool2d_backward(g, dx, dims, s):
        import torch

        n, c, h, w, oh, ow = dims[:6]
        tx = _t(np.zeros((n, c, h, w)))
        ty = torch.nn.functional.adaptive_avg_pool2d(tx, (oh, ow))
        ty.backward(torch.tensor(_view(g, (n, c, oh, ow)).astype(np.float64)))
        _view(dx, (n, c, h, w))[...] = tx.grad.numpy()

    def cuda_adaptive_max_pool2d(x, y, idx, dims, s):
        n, c, h, w, oh, ow = dims[:6]
        tx, torch = _pool_torch(x, dims)
        ty, ti = torch.nn.functional.adaptive_max_pool2d(tx, (oh, ow), True)
        _view(y, (n, c, oh, ow))[...] = ty.detach().numpy()
        if idx:
            _view(idx, (n, c, oh, ow), dtype=np.int64)[...] = ti.numpy()

    def cuda_upsample_nearest2d(x, y, dims, s):
        n, c, h, w, oh, ow, _, _, sh, sw = dims[:10]
        X = _view(x, (n, c, h, w))
        _view(y, (n, c, oh, ow))[...] = np.repeat(np.repeat(X, sh, 2), sw, 3)

    def cuda_upsample_nearest2d_backward(g, dx, dims, s):
        n, c, h, w, oh, ow, _, _, sh, sw = dims[:10]
        G = _view(g, (n, c, h, sh, w, sw)).astype(np.float64)
        _view(dx, (n, c, h, w))[...] = G.sum((3, 5))

    def cuda_dropout(x, y, mask, n, p, seed, s):
        keep = np.random.default_rng(seed).random(n) >= p
        scale = 1 / (1 - p) if p < 1 else 0.0
        _view(y, (n,))[...] = np.where(keep, _view(x, (n,)) * np.float32(scale), 0)
        _view(mask, (n,), dtype=np.bool_)[...] = keep

    def cuda_dropout_backward(g, mask, dx, n, scale, s):
        _view(dx, (n,))[...] = np.where(_view(mask, (n,), dtype=np.bool_), _view(g, (n,)) * np.float32(scale), 0)

    def cuda_embedding(idx, w, y, n_idx, num, dim, s):
        I = _view(idx, (n_idx,), dtype=np.int64)
        _view(y, (n_idx, dim))[...] = _view(w, (num, dim))[I]

    def cuda_embedding_backward(g, idx, dw, n_idx, num, dim, s):
        out = np.zeros((num, dim))
        np.add.at(out, _view(idx, (n_idx,), dtype=np.int64), _view(g, (n_idx, dim)))
        _view(dw, (num, dim))[...] = out

    for k, v in list(locals().items()):
        if k.startswith("cuda_"):
            m[k] = v
    return m


def pytest_configure(config):
    setup()


def setup():
    """Install the stand-in cupy and the mocked bindings (also used by bench_cuda.py --dry-run)."""
    sys.modules["cupy"] = _make_fake_cupy()
    import fastlayers
    from fastlayers import _arrays, _core, _cuda

    for name, fn in _mocks().items():
        setattr(_core, name, fn)
    import dryrun_conv_rnn  # issue 8: the conv / recurrent bindings (and _cuda_conv_rnn's _ptr)

    dryrun_conv_rnn.install(_core)
    import dryrun_attention  # the attention stand-ins (issue 9), in their own file

    dryrun_attention.install(_core)
    _core.cuda_device_count = lambda: 1
    _core.cuda_device_name = lambda i: "dry run (NumPy)"
    _core.cuda_built = True
    _cuda._ptr = lambda a: 0 if a is None else int(np.asarray(a).__array_interface__["data"][0])
    # The stand-in arrays subclass numpy.ndarray, which _arrays._kind would call "cpu": look
    # at them first. NumPy arrays still take fastlayers' CPU path.
    cpu_kind = _arrays._kind
    _arrays._kind = lambda x: "cuda" if isinstance(x, FakeDeviceArray) else cpu_kind(x)
    del fastlayers

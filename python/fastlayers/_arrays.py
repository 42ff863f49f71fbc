"""Array plumbing: which backend runs a call, dtype/shape checks with clear errors, output
allocation. The only module that knows about array kinds (NumPy -> C++ CPU kernels,
CuPy -> CUDA kernels). Everything in `functional` goes through here."""

from __future__ import annotations

import numpy as np

from . import _core

F32 = ("float32",)
F32_F16_BF16 = ("float32", "float16", "bfloat16")


def is_cupy(x) -> bool:
    return type(x).__module__.split(".", 1)[0] == "cupy"


def _kind(x) -> str | None:
    if isinstance(x, (np.ndarray, np.generic)):  # numpy scalars act as 0-d arrays
        return "cpu"
    if is_cupy(x) and hasattr(x, "__cuda_array_interface__"):
        return "cuda"
    return None


def backend(**arrays) -> str:
    """'cpu' or 'cuda' for the given named arrays (None values are skipped).

    TypeError when an argument is not an array or kinds are mixed; RuntimeError for a CuPy
    array when this build or machine cannot run CUDA."""
    kinds = {}
    for name, x in arrays.items():
        if x is None:
            continue
        k = _kind(x)
        if k is None:
            raise TypeError(
                f"{name}: expected a numpy.ndarray (or cupy.ndarray), got {type(x).__name__}; "
                f"wrap it with numpy.asarray(..., dtype=numpy.float32)"
            )
        kinds[name] = k
    found = set(kinds.values())
    if len(found) > 1:
        desc = ", ".join(f"{n}={'cupy' if k == 'cuda' else 'numpy'}" for n, k in kinds.items())
        raise TypeError(f"arrays of different kinds in one call ({desc}); move them all to one device")
    kind = found.pop() if found else "cpu"
    if kind == "cuda":
        require_cuda()
    return kind


def require_cuda() -> None:
    if not _core.cuda_built:
        raise RuntimeError(
            "got a CuPy array, but this fastlayers build has no CUDA kernels "
            "(rebuild with nvcc on PATH or -DFASTLAYERS_CUDA=ON)"
        )
    if _core.cuda_device_count() == 0:
        raise RuntimeError("got a CuPy array, but no CUDA GPU/driver is available on this machine")


_F32_DTYPE = np.dtype(np.float32)


def check_dtype(x, name: str, accepted=F32) -> None:
    if x.dtype == _F32_DTYPE and "float32" in accepted:  # fast path: str(dtype) costs ~10 us in NumPy 2.4
        return
    dt = str(x.dtype)
    if dt in accepted:
        return
    hint = ""
    if dt == "float64" or dt.startswith("int") or dt == "bool":
        hint = f"; cast with {name}.astype(numpy.float32)"
    raise TypeError(f"{name}: dtype {dt} is not supported (accepted: {', '.join(accepted)}){hint}")


def check_array(x, name: str, *, ndim=None, min_ndim=None, accepted=F32):
    """Validate one array argument: kind, dtype and rank. Returns x."""
    if _kind(x) is None:
        raise TypeError(f"{name}: expected a numpy.ndarray (or cupy.ndarray), got {type(x).__name__}")
    check_dtype(x, name, accepted)
    if ndim is not None and x.ndim not in (ndim if isinstance(ndim, tuple) else (ndim,)):
        want = " or ".join(f"{d}-D" for d in (ndim if isinstance(ndim, tuple) else (ndim,)))
        raise ValueError(f"{name}: expected a {want} array, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions, got shape {tuple(x.shape)}")
    return x


def check_int_array(x, name: str):
    if _kind(x) is None:
        raise TypeError(f"{name}: expected an integer numpy.ndarray, got {type(x).__name__}")
    if x.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer dtype, got {x.dtype}")
    return x


def xp_of(x):
    """The array module (numpy or cupy) of x."""
    if is_cupy(x):
        import cupy

        return cupy
    return np


def contiguous(x):
    """x as a C-contiguous array of the same shape (0-d stays 0-d, unlike ascontiguousarray)."""
    x = xp_of(x).asarray(x)
    return x if x.flags.c_contiguous else x.copy(order="C")


def empty(shape, like, dtype=None):
    return xp_of(like).empty(shape, dtype=dtype or like.dtype)


def cuda_stream() -> int:
    import cupy

    return cupy.cuda.get_current_stream().ptr


def dev_ptr(x) -> int:
    return x.data.ptr


def pair(v, name: str) -> tuple[int, int]:
    """An int or a pair of ints, as PyTorch's stride/padding/kernel arguments."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {v!r}")
    if isinstance(v, (int, np.integer)):
        return _bounded(int(v), name), _bounded(int(v), name)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected an int or a pair of ints, got {v!r}") from None
    for e in (a, b):
        if isinstance(e, (bool, np.bool_)) or not isinstance(e, (int, np.integer)):
            raise TypeError(f"{name}: expected an int or a pair of ints, got {v!r}")
    return _bounded(int(a), name), _bounded(int(b), name)


# Sizes beyond 2**62 cannot be array extents on any machine, and the C++ kernels take int64:
# refuse them here with the argument's name instead of pybind11's "incompatible arguments".
_INT_LIMIT = 1 << 62


def _bounded(v: int, name: str) -> int:
    if not -_INT_LIMIT < v < _INT_LIMIT:
        raise ValueError(f"{name}: {v} is out of range (|value| must be below 2**62)")
    return v


def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{name}: expected an int, got {axis!r}")
    if not -max(ndim, 1) <= axis < max(ndim, 1):  # a 0-d array has one axis, as in torch
        raise ValueError(f"{name}: {axis} is out of range for an array of {ndim} dimensions")
    return int(axis) % max(ndim, 1)

"""fastlayers: neural-network layers on hand-written C++ (SIMD, OpenMP) and CUDA kernels.

    import fastlayers as fl
    y = fl.linear(x, w, b, activation="relu")      # kernels, also in fl.functional
    y_ref = fl.reference.linear(x, w, b, "relu")  # the same in plain NumPy

See README.md and API.md for the contract."""

from __future__ import annotations

from . import _core, functional, reference
from ._serialize import load, save
from .functional import *  # noqa: F401,F403

__version__ = "0.1.0"

__all__ = ["functional", "reference", "save", "load", "info", "set_num_threads", "get_num_threads", "manual_seed"]
__all__ += functional.__all__


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels (default: the machine's cores, or FASTLAYERS_NUM_THREADS)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n: expected an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n: expected a thread count >= 1, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    return _core.get_num_threads()


def info() -> dict:
    """Build and runtime facts: version, CPU ISA in use, threads, CUDA build and devices."""
    n_dev = _core.cuda_device_count()
    devices = [_core.cuda_device_name(i) for i in range(n_dev)] if n_dev else []
    return {
        "version": __version__,
        "cpu_isa": _core.cpu_isa(),
        "cpu_isa_detected": _core.detected_isa(),
        "num_threads": _core.get_num_threads(),
        "cuda_built": bool(_core.cuda_built),
        "cuda_available": n_dev > 0,
        "cuda_devices": devices,
    }


def manual_seed(seed: int) -> None:
    """Seed the generator used by layer initialisation and dropout (fastlayers.random)."""
    from . import _random

    _random.manual_seed(seed)

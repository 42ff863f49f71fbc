"""The two ceilings the benchmarks compare against, measured on this machine, this run."""

from __future__ import annotations

import time

import numpy as np

from fastlayers import _core


def fma_peak_gflops(threads: int) -> float:
    """Register-only FMA loop of the active ISA (csrc/gemm/peak.cpp), all `threads` busy."""
    return _core.fma_peak_gflops(threads)


def copy_bandwidth_gbs(nbytes: int = 256 << 20) -> float:
    """Large-array copy (read + write counted) through NumPy's memcpy: the memory roof."""
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * nbytes / best / 1e9

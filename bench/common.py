"""Benchmark machinery shared by every bench/ops_<family>.py module.

A family module defines ``cases(quick: bool) -> list[Case]``. Each Case names its op and
shape, its work (flops and/or bytes moved), and callables for fastlayers, the NumPy reference
and (optionally) PyTorch. run.py checks each implementation's result against fastlayers'
before timing ("check before timing"), then times all of them side by side in one process,
interleaved round by round (time_interleaved), keeping the best of the rounds (BLIS's habit:
the minimum is the least-disturbed run)."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Callable, Optional

import numpy as np


@dataclasses.dataclass
class Case:
    family: str
    op: str
    shape: str
    fastlayers: Callable[[], object]
    numpy: Optional[Callable[[], object]] = None
    torch: Optional[Callable[[], object]] = None
    flops: float = 0.0          # floating-point operations of one call (0: memory-bound op)
    bytes: float = 0.0          # bytes read + written by one call (for GB/s)
    check: bool = True          # compare numpy/torch results with fastlayers' before timing
    rtol: float = 1e-3          # float32 vs float32: different summation orders
    note: str = ""
    extra: dict = dataclasses.field(default_factory=dict)


SETTLE_SECONDS = 0.3
# Untimed calls before each timed turn of time_rounds, at least this long: after a pause
# the first ~0.5 ms of work runs slow (thread pool and idle vCPUs waking: 2-thread 256^3 GEMM,
# 20 calls, 122 GFLOP/s right after a 0.15 s sleep, 172 after), which one call does not cover.
WARM_SECONDS = 0.005


def time_rounds(fns: dict, min_time=0.2, repeat=7, max_calls=200, settle=0.12) -> dict:
    """Seconds per call of each callable in each of `repeat` rounds, timed in turns: a round
    runs every peer once (its own number of calls, ~min_time/repeat each), so a disturbance of
    the shared 2-core VM (a 10-25% swing that lasts seconds) lands on all peers alike instead
    of on whichever one was being timed then.

    Before each turn: a pause of `settle` seconds, because thread pools spin after a call
    (OpenBLAS's workers busy-wait ~0.1 s, libgomp's and torch's shorter) and a peer timed
    right after another library would share the two cores with those spinning threads (128^3
    GEMM right after NumPy's call: 47 us, after a pause 27 us); then WARM_SECONDS of untimed
    calls."""
    inner, warm = {}, {}
    for name, fn in fns.items():
        time.sleep(SETTLE_SECONDS)
        fn()  # warm-up (page faults, thread pools, caches)
        t0 = time.perf_counter()
        fn()
        one = max(time.perf_counter() - t0, 1e-7)
        inner[name] = int(min(max_calls, max(1, (min_time / repeat) / one)))
        warm[name] = int(min(max_calls, max(1, WARM_SECONDS / one)))
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            time.sleep(settle)
            for _ in range(warm[name]):  # untimed: wakes the thread pool and the idle cores
                fn()
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return times


def time_interleaved(fns: dict, **kw) -> dict:
    """Best seconds per call of each callable over time_rounds' rounds (BLIS's habit: the
    minimum is the least-disturbed run)."""
    return {name: min(ts) for name, ts in time_rounds(fns, **kw).items()}


def to_numpy(x):
    if isinstance(x, (tuple, list)):
        return [to_numpy(v) for v in x]
    if hasattr(x, "detach"):
        return x.detach().numpy()
    return np.asarray(x)


def results_match(ref, got, rtol) -> bool:
    ref, got = to_numpy(ref), to_numpy(got)
    if isinstance(ref, list):
        return len(ref) == len(got) and all(results_match(a, b, rtol) for a, b in zip(ref, got))
    if ref.shape != got.shape:
        return False
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    return bool(np.allclose(got, ref, rtol=rtol, atol=rtol * max(scale, 1e-6)))


def machine_info() -> dict:
    import fastlayers

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "fastlayers": fastlayers.info(),
    }
    try:
        cfg = np.show_config(mode="dicts")
        info["numpy_blas"] = cfg.get("Build Dependencies", {}).get("blas", {}).get("name", "?") + " " + str(
            cfg.get("Build Dependencies", {}).get("blas", {}).get("version", "")
        )
    except Exception:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except Exception:
        info["torch"] = None
    return info

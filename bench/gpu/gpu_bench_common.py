"""What the GPU benchmark scripts share (bench_cuda.py, bench_cuda_conv_rnn.py,
bench_cuda_attention.py): arguments and the dry-run switch, the CUDA-event timer, budgeted
sections that report a failure and go on, and the environment record for the JSON."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

import numpy as np

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


def parse_args(doc: str, budget: float, quick_help: str):
    """The common command line; with --dry-run, NumPy stand-ins replace CuPy and the kernels."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--budget", type=float, default=budget, help="seconds; later sections are skipped after it")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: NumPy stand-ins for CuPy and the kernels (checks this script, times nothing real)")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if args.dry_run:
        import dryrun_plugin

        dryrun_plugin.setup()
    return args


def make_timer(cp, default_reps: int, *, warmup: int = 3, flush_buf=None, sync=None):
    """timed(fn, reps=None, flush_l2=True) -> (median ms, raw ms list), timed with CUDA events
    on CuPy's stream. flush_buf: an array overwritten before each rep (evicts L2); sync: called
    after the warm-up (e.g. torch.cuda.synchronize when a peer runs on PyTorch's stream)."""

    def timed(fn, reps=None, flush_l2=True):
        reps = reps or default_reps
        for _ in range(warmup):
            fn()
        cp.cuda.get_current_stream().synchronize()
        if sync is not None:
            sync()
        ts = []
        for _ in range(reps):
            if flush_buf is not None and flush_l2:
                flush_buf.fill(0)
            s, e = cp.cuda.Event(), cp.cuda.Event()
            s.record()
            fn()
            e.record()
            e.synchronize()
            ts.append(cp.cuda.get_elapsed_time(s, e))
        return statistics.median(ts), ts

    return timed


def make_section(result: dict, deadline: float):
    """section(name, fn): runs fn unless the budget is spent; an exception is recorded in
    result["errors"] (with its trace) and the next section still runs."""

    def section(name, fn):
        if time.time() > deadline:
            result["errors"].append({"section": name, "error": "skipped: time budget spent"})
            log(f"skip {name}: budget spent")
            return
        log(f"section {name}")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report, go on
            result["errors"].append({"section": name, "error": f"{type(e).__name__}: {e}",
                                     "trace": traceback.format_exc()[-2000:]})
            log(f"section {name} failed: {type(e).__name__}: {e}")

    return section


def env_info(cp, torch, fl):
    env = dict(python=platform.python_version(), numpy=np.__version__, cupy=cp.__version__,
               torch=None if torch is None else torch.__version__)
    try:
        props = cp.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        env.update(gpu=name.decode() if isinstance(name, bytes) else str(name), sms=props["multiProcessorCount"],
                   l2_bytes=props.get("l2CacheSize"), cc=f"{props['major']}.{props['minor']}",
                   mem_bytes=props.get("totalGlobalMem"), clock_khz=props.get("clockRate"))
    except Exception as e:  # noqa: BLE001
        env["gpu_error"] = str(e)
    try:
        env["driver"] = cp.cuda.runtime.driverGetVersion()
        env["cuda_runtime"] = cp.cuda.runtime.runtimeGetVersion()
    except Exception as e:  # noqa: BLE001
        env["version_error"] = str(e)
    try:
        from fastlayers import _core

        env["fastlayers_cuda_runtime"] = _core.cuda_runtime_version()
        env["fastlayers_info"] = dict(fl.info())
    except Exception as e:  # noqa: BLE001
        env["fastlayers_error"] = str(e)
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit,"
                            "temperature.gpu", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = q.stdout.strip()
    except Exception as e:  # noqa: BLE001
        env["nvidia_smi_error"] = str(e)
    return env

"""GEMM rows, fastlayers vs NumPy (OpenBLAS) interleaved in one process: the robust check of
bench/run.py's gemm ratios on a shared 2-core VM (the lead's builds run on the other core).

    PYTHONPATH=python python bench/ab_gemm.py [--threads 1] [--rounds 7] [--json PATH]
        [--old path/to/old/_core*.so] [MxNxK ...]

Each round times every callable in turn (fastlayers, NumPy; with --old, this build and the old
one both through their raw _core.gemm), the order rotating between rounds; a callable's time
in a round is the mean over calls filling --min-time seconds; a row reports the best round of
each. With --threads 1 the
clock is the process CPU time (what a second busy core cannot inflate); with more threads
it is wall time (CPU time would add the threads up), so those rows are noisier.
Default rows: the skinny-M shapes of bench/ops_gemm.py that sat near 0.9x in session 2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

DEFAULT_SHAPES = ["16x4096x4096", "8x4096x4096", "64x2048x512", "32x4096x4096", "16x2048x512",
                  "8x2048x512", "32x2048x512", "64x4096x4096"]


def _parse():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("shapes", nargs="*", default=DEFAULT_SHAPES, help="MxNxK (C is M x N, inner size K)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.15, help="seconds of calls per callable and round")
    ap.add_argument("--old", default=None, help="another build's _core*.so to time alongside (old vs new)")
    ap.add_argument("--json", default=None, help="write the command, machine and raw timings here")
    return ap.parse_args()


def _load_core(path):
    # A second copy of the extension under another package name ("PyInit__core" is found
    # from the last name component), so two builds run side by side in one process.
    import importlib.machinery
    import importlib.util
    loader = importlib.machinery.ExtensionFileLoader("fl_old._core", path)
    spec = importlib.util.spec_from_file_location("fl_old._core", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def main() -> None:
    args = _parse()
    # Before NumPy loads OpenBLAS (it reads these at start-up).
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FASTLAYERS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import fastlayers as fl
    import numpy as np
    from fastlayers import _core as fl_core
    fl.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    old = _load_core(os.path.abspath(args.old)) if args.old else None
    if old is not None and hasattr(old, "set_num_threads"):
        old.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    rows = []
    for shape in args.shapes:
        m, n, k = (int(x) for x in shape.lower().split("x"))
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        fns = {"fastlayers": lambda a=a, b=b: fl.gemm(a, b), "numpy": lambda a=a, b=b: a @ b}
        if old is not None:
            # Both builds through their raw _core.gemm the same way (fl.gemm's Python checks cost
            # ~0.7 us, 9% of 64 x 64 x 64), so new/old compares the kernels alone.
            def raw(core, a=a, b=b):
                out = np.empty((a.shape[0], b.shape[1]), np.float32)
                core.gemm(a, b, out)
                return out
            fns["new_core"] = lambda: raw(fl_core)
            fns["old"] = lambda: raw(old)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)  # rounding grows with it
        for name, f in fns.items():
            err = (np.abs(f() - ref) / np.maximum(scale, 1e-30)).max()
            if err > 1e-5:
                sys.exit(f"{shape} {name}: relative error {err:.2e}")
        # Calls per measurement from one timed call (at least 2, so a cold first call is not all).
        t0 = clock()
        fns["numpy"]()
        calls = max(2, int(args.min_time / max(clock() - t0, 1e-6)))
        times = {name: [] for name in fns}
        names = list(fns)
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                f = fns[name]
                f()
                t0 = clock()
                for _ in range(calls):
                    f()
                times[name].append((clock() - t0) / calls)
        best = {name: min(ts) for name, ts in times.items()}
        gf = {name: 2.0 * m * n * k / t / 1e9 for name, t in best.items()}
        row = {"shape": shape, "m": m, "n": n, "k": k, "calls_per_round": calls,
               "gflops": {x: round(v, 2) for x, v in gf.items()},
               "ratio_vs_numpy": round(best["numpy"] / best["fastlayers"], 3),
               "seconds": times}
        if old is not None:
            row["ratio_new_vs_old"] = round(best["old"] / best["new_core"], 3)
        rows.append(row)
        extra = f"  new/old {row['ratio_new_vs_old']:.3f} (old {gf['old']:6.1f})" if old is not None else ""
        print(f"{shape:>14}: fastlayers {gf['fastlayers']:6.1f}  numpy {gf['numpy']:6.1f} GFLOP/s  "
              f"ratio {row['ratio_vs_numpy']:.3f}{extra}   (fl ms {[round(x * 1e3, 3) for x in times['fastlayers']]}, "
              f"np ms {[round(x * 1e3, 3) for x in times['numpy']]})", flush=True)
    if args.json:
        out = {"command": "python " + " ".join(sys.argv),
               "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
               "clock": "process CPU time" if args.threads == 1 else "wall time",
               "threads": args.threads, "rounds": args.rounds, "min_time": args.min_time,
               "machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "numpy": np.__version__, "fastlayers": fl.info()},
               "rows": rows}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()

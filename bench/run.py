"""fastlayers benchmarks: every kernel beside the NumPy reference (and PyTorch CPU when
installed), side by side in one process.

    python bench/run.py                      # everything, table on stdout
    python bench/run.py --quick              # fewer, smaller shapes
    python bench/run.py --ops gemm,conv      # families (module names bench/ops_<family>.py)
    python bench/run.py --json bench/results/cpu.json --plot bench/results/gemm.png
    python bench/run.py --threads 1          # fastlayers, NumPy/OpenBLAS and torch all on 1 thread

Columns: time and GFLOP/s (or GB/s for memory-bound ops) of fastlayers, NumPy and torch, the
ratios (>1 means fastlayers is faster) and fastlayers' % of the machine's FMA peak (measured
here by a register-only FMA loop) or of its copy bandwidth."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _limit_threads(n: int | None) -> None:
    # Must run before numpy/torch load their BLAS: OpenBLAS reads these at start-up.
    if n is None:
        return
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FASTLAYERS_NUM_THREADS"):
        os.environ[var] = str(n)


def families() -> list[str]:
    return sorted(p.stem[len("ops_"):] for p in HERE.glob("ops_*.py"))


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", default="all", help=f"comma list of families: {', '.join(families())} (default all)")
    ap.add_argument("--quick", action="store_true", help="fewer, smaller shapes")
    ap.add_argument("--threads", type=int, default=None, help="threads for every library (default: all cores)")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    ap.add_argument("--plot", default=None, help="write a GFLOP/s-vs-size plot of GEMM to this PNG")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer even when installed")
    ap.add_argument("--no-numpy", action="store_true", help="skip the NumPy reference (slow for some ops)")
    return ap.parse_args(argv)


def fmt_rate(sec, case):
    if sec is None:
        return "-"
    if case.flops:
        return f"{case.flops / sec / 1e9:8.1f}"
    if case.bytes:
        return f"{case.bytes / sec / 1e9:8.1f}"
    return "-"


def main(argv=None) -> int:
    args = parse_args(argv)
    _limit_threads(args.threads)
    import numpy as np  # noqa: F401  (after the thread variables)

    import fastlayers as fl
    from common import machine_info, results_match, time_interleaved
    import peak

    torch = None
    if not args.no_torch:
        try:
            import torch as _torch

            torch = _torch
            if args.threads:
                torch.set_num_threads(args.threads)
        except ImportError:
            print("(torch not installed: pip install torch==2.13.0 to add the PyTorch column)")
    if args.threads:
        fl.set_num_threads(args.threads)

    chosen = families() if args.ops == "all" else [s.strip() for s in args.ops.split(",") if s.strip()]
    unknown = set(chosen) - set(families())
    if unknown:
        print(f"unknown families: {sorted(unknown)}; known: {families()}", file=sys.stderr)
        return 2

    nthreads = fl.get_num_threads()
    fma_peak = peak.fma_peak_gflops(nthreads)
    copy_bw = peak.copy_bandwidth_gbs()
    mach = machine_info()
    print(f"# {mach['cpu']}, {mach['cores']} cores; fastlayers ISA {mach['fastlayers']['cpu_isa']}, "
          f"{nthreads} threads; FMA peak {fma_peak:.0f} GFLOP/s; copy bandwidth {copy_bw:.1f} GB/s; "
          f"numpy {mach['numpy']} ({mach.get('numpy_blas', '?')}); torch {mach['torch']}")
    header = (f"{'op':<22} {'shape':<34} {'fl ms':>9} {'fl rate':>8} {'np rate':>8} {'vs np':>7} "
              f"{'torch rate':>10} {'vs torch':>8} {'% peak':>7}")
    print(header)
    print("-" * len(header))

    rows = []
    for fam in chosen:
        mod = importlib.import_module(f"ops_{fam}")
        for case in mod.cases(args.quick, torch=torch):
            peers = {"fastlayers": case.fastlayers}
            if case.numpy is not None and not args.no_numpy:
                peers["numpy"] = case.numpy
            if case.torch is not None and torch is not None:
                peers["torch"] = case.torch
            ref_out = case.fastlayers()
            mismatch = []
            if case.check:
                for name, fn in peers.items():
                    if name != "fastlayers" and not results_match(fn(), ref_out, case.rtol):
                        mismatch.append(name)
            times = time_interleaved(peers)
            t_fl = times["fastlayers"]
            t_np, t_torch = times.get("numpy"), times.get("torch")
            pct = (100 * case.flops / t_fl / 1e9 / fma_peak) if case.flops else (
                100 * case.bytes / t_fl / 1e9 / copy_bw if case.bytes else None)
            row = {
                "family": case.family, "op": case.op, "shape": case.shape,
                "unit": "GFLOP/s" if case.flops else ("GB/s" if case.bytes else ""),
                "flops": case.flops, "bytes": case.bytes,
                "seconds": times,
                "rate": {k: (case.flops or case.bytes) / v / 1e9 if (case.flops or case.bytes) else None
                         for k, v in times.items()},
                "ratio_vs_numpy": (t_np / t_fl) if t_np else None,
                "ratio_vs_torch": (t_torch / t_fl) if t_torch else None,
                "percent_of_peak": pct,
                "mismatch": mismatch, "note": case.note, **case.extra,
            }
            rows.append(row)
            flag = "  MISMATCH:" + ",".join(mismatch) if mismatch else ""
            print(f"{case.op:<22} {case.shape:<34} {t_fl * 1e3:9.3f} {fmt_rate(t_fl, case)} "
                  f"{fmt_rate(t_np, case)} {(f'{t_np / t_fl:6.2f}x' if t_np else '-'):>7} "
                  f"{fmt_rate(t_torch, case):>10} {(f'{t_torch / t_fl:6.2f}x' if t_torch else '-'):>8} "
                  f"{(f'{pct:6.1f}%' if pct is not None else '-'):>7}{flag}", flush=True)

    if args.json:
        out = {
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": mach, "threads": nthreads,
            "fma_peak_gflops": fma_peak, "copy_bandwidth_gbs": copy_bw,
            "results": rows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    if args.plot:
        import plot

        try:
            plot.gemm_plot(rows, args.plot, fma_peak)
            print(f"wrote {args.plot}")
        except ImportError as e:  # the table and JSON are written; the plot needs the bench extra
            print(f"no plot: {e} (pip install '.[bench]' installs matplotlib)", file=sys.stderr)
    bad = [r for r in rows if r["mismatch"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

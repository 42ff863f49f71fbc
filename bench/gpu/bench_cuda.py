#!/usr/bin/env python3
"""GPU benchmark of fastlayers' CUDA kernels, side by side with cuBLAS (through CuPy) and
PyTorch CUDA in one process, on the same inputs.

    python bench/gpu/bench_cuda.py --json OUTDIR/cuda-gemm-<gpu>.json [--quick] [--budget 360]

Sections (each in its own try/except, each skipped once the time budget is spent):
  ceilings     device-to-device copy bandwidth (bytes read + written), cuBLAS fp32 (TF32 off)
               and bf16/fp16 matrix rates at 8192: the measured ceilings the ratios refer to
  gemm_f32     4096 and 8192 square: fastlayers vs cupy.matmul (cuBLAS, TF32 off) vs torch.mm
  gemm_half    float16 / bfloat16, 4096 and 8192, both tensor-core tile configs
  memory       elementwise (relu, gelu, their backward), max/avg pool, upsample, softmax,
               layer_norm: GB/s against the measured copy bandwidth
Timing: CUDA events around each call, warm-up first, the L2 flushed (a 512 MB write) before
every timed call, median of the repeats (raw timings kept in the JSON). Correctness is checked
before timing (relative error against the peer's result).
Targets (issue 7): fp32 GEMM >= 0.8x cuBLAS; half GEMM >= 0.6x cuBLAS; pooling/elementwise
>= 70% of copy bandwidth. The JSON records each against its target.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from gpu_bench_common import T0, env_info, log, make_section, make_timer, parse_args


def main():
    args = parse_args(__doc__, 360.0, "small sizes (a dry run)")

    import cupy as cp

    import fastlayers as fl
    from fastlayers import _core, _cuda

    try:
        import torch
    except Exception:  # noqa: BLE001
        torch = None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    os.environ.setdefault("CUPY_TF32", "0")  # cuBLAS through CuPy in true fp32

    result = {"env": env_info(cp, torch, fl), "ceilings": {}, "rows": [], "errors": [], "targets": []}
    deadline = T0 + args.budget
    flush_buf = cp.empty(1 << 27, dtype=np.float32)  # 512 MB > any L2 (50-60 MB on H100/H200)

    timed = make_timer(cp, args.reps, flush_buf=flush_buf)

    def rel_err(a, b):
        a = cp.asarray(a).astype(cp.float64)
        b = cp.asarray(b).astype(cp.float64)
        den = float(cp.linalg.norm(b.ravel())) or 1.0
        return float(cp.linalg.norm((a - b).ravel())) / den

    section = make_section(result, deadline)

    rng = np.random.default_rng(20261121)

    def randn(*shape, dtype="float32"):
        a = cp.asarray(rng.standard_normal(shape, dtype=np.float32))
        return a if dtype == "float32" else a.astype(dtype)

    half_dtypes = ["float16"]
    try:
        cp.zeros(1, np.float32).astype("bfloat16")
        half_dtypes.append("bfloat16")
    except Exception:  # noqa: BLE001
        result["errors"].append({"section": "setup", "error": "this CuPy has no bfloat16"})

    def tdt(name):
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]

    # ---- ceilings ---------------------------------------------------------------------------
    def ceilings():
        n = (1 << 16) if args.dry_run else ((1 << 24) if args.quick else (1 << 28))  # 1 GB each way
        src = randn(n)
        dst = cp.empty_like(src)
        ms, raw = timed(lambda: dst.__setitem__(Ellipsis, src), flush_l2=False)
        ms2, raw2 = timed(lambda: dst.data.copy_from_device_async(src.data, src.nbytes), flush_l2=False)
        bw = 2 * src.nbytes / (min(ms, ms2) * 1e-3) / 1e9
        result["ceilings"].update(copy_GBps=bw, copy_kernel_ms=ms, memcpy_ms=ms2, copy_raw=raw, memcpy_raw=raw2)
        log(f"copy bandwidth {bw:.0f} GB/s")
        del src, dst
        m = 512 if args.dry_run else (2048 if args.quick else 8192)
        for dt in ["float32"] + half_dtypes:
            a, b = randn(m, m, dtype=dt), randn(m, m, dtype=dt)
            try:
                ms, raw = timed(lambda: cp.matmul(a, b), reps=max(3, args.reps // 2))
                result["ceilings"][f"cublas_{dt}_{m}_TFLOPs"] = 2 * m**3 / (ms * 1e-3) / 1e12
            except Exception as e:  # noqa: BLE001
                result["errors"].append({"section": f"ceiling cublas {dt}", "error": f"{type(e).__name__}: {e}"})
            if torch is not None:
                try:
                    ta, tb = torch.from_dlpack(a), torch.from_dlpack(b)
                    msT, _ = timed(lambda: ta @ tb, reps=max(3, args.reps // 2))
                    result["ceilings"][f"torch_{dt}_{m}_TFLOPs"] = 2 * m**3 / (msT * 1e-3) / 1e12
                except Exception as e:  # noqa: BLE001
                    result["errors"].append({"section": f"ceiling torch {dt}", "error": f"{type(e).__name__}: {e}"})
            log(f"{dt} matmul {m}: cuBLAS {result['ceilings'].get(f'cublas_{dt}_{m}_TFLOPs', float('nan')):.1f}, "
                f"torch {result['ceilings'].get(f'torch_{dt}_{m}_TFLOPs', float('nan')):.1f} TFLOP/s")
            del a, b

    section("ceilings", ceilings)

    # ---- GEMM --------------------------------------------------------------------------------
    def gemm_rows(dt, sizes, configs):
        for n in sizes:
            if time.time() > deadline:
                result["errors"].append({"section": f"gemm {dt} {n}", "error": "skipped: time budget spent"})
                continue
            a, b = randn(n, n, dtype=dt), randn(n, n, dtype=dt)
            flops = 2 * n**3
            reps = max(3, args.reps // (2 if n >= 8192 else 1))
            ref = ms_cb = raw_cb = ms_t = raw_t = None
            try:  # cuBLAS through CuPy (bfloat16 may be missing in this CuPy)
                ref = cp.matmul(a, b)
                ms_cb, raw_cb = timed(lambda: cp.matmul(a, b), reps=reps)
            except Exception as e:  # noqa: BLE001
                result["errors"].append({"section": f"gemm {dt} {n} cublas", "error": f"{type(e).__name__}: {e}"})
            if torch is not None:
                try:
                    ta, tb = torch.from_dlpack(a), torch.from_dlpack(b)
                    ms_t, raw_t = timed(lambda: ta @ tb, reps=reps)
                    if ref is None:
                        ref = cp.asarray(ta @ tb)
                except Exception as e:  # noqa: BLE001
                    result["errors"].append({"section": f"gemm {dt} {n} torch", "error": f"{type(e).__name__}: {e}"})
            if ref is None:
                ref = cp.matmul(a.astype(cp.float32), b.astype(cp.float32))
            for cfg in configs:
                out = cp.empty((n, n), dtype=dt)
                code = {"float32": 0, "float16": 1, "bfloat16": 2}[dt]
                st = cp.cuda.get_current_stream().ptr

                def run(out=out, code=code, st=st, cfg=cfg):
                    _core.cuda_gemm(code, n, n, n, _cuda._ptr(a), n, False, _cuda._ptr(b), n, False, _cuda._ptr(out),
                                    n, 1.0, 0.0, 0, 0, 0, 1, 0, 0, 0, st, cfg)

                out.fill(np.nan)
                run()
                err = rel_err(out, ref)
                ms, raw = timed(run, reps=reps)
                peer_ms = ms_cb if ms_cb is not None else ms_t  # cuBLAS, else PyTorch (itself cuBLAS)
                row = dict(name=f"gemm {dt} {n}" + (f" cfg{cfg}" if dt != "float32" else ""), unit="TFLOP/s",
                           fl_ms=ms, cublas_ms=ms_cb, torch_ms=ms_t, fl_rate=flops / (ms * 1e-3) / 1e12,
                           cublas_rate=None if ms_cb is None else flops / (ms_cb * 1e-3) / 1e12,
                           torch_rate=None if ms_t is None else flops / (ms_t * 1e-3) / 1e12,
                           ratio_vs_cublas=None if peer_ms is None else peer_ms / ms,
                           ratio_vs_torch=None if ms_t is None else ms_t / ms,
                           peer="cupy" if ms_cb is not None else ("torch" if ms_t is not None else None),
                           rel_err_vs_cublas=err, raw_ms=raw, cublas_raw_ms=raw_cb, torch_raw_ms=raw_t)
                peak = (result["ceilings"].get(f"cublas_{dt}_8192_TFLOPs")
                        or result["ceilings"].get(f"torch_{dt}_8192_TFLOPs"))
                if dt != "float32":
                    best_half = max(result["ceilings"].get("cublas_bfloat16_8192_TFLOPs", 0) or 0,
                                    result["ceilings"].get("torch_bfloat16_8192_TFLOPs", 0) or 0)
                    if best_half:
                        row["pct_of_measured_peak"] = 100 * row["fl_rate"] / best_half
                elif peak:
                    row["pct_of_measured_peak"] = 100 * row["fl_rate"] / peak
                result["rows"].append(row)
                target = 0.8 if dt == "float32" else 0.6
                ratio = row["ratio_vs_cublas"]
                result["targets"].append(dict(name=row["name"], metric="ratio_vs_cublas", value=ratio, target=target,
                                              met=ratio is not None and ratio >= target,
                                              correct=err < (1e-4 if dt == "float32" else 2e-2)))
                log(f"{row['name']}: {row['fl_rate']:.1f} TFLOP/s, peer {row['peer']} "
                    f"{(flops / (peer_ms * 1e-3) / 1e12) if peer_ms else float('nan'):.1f} "
                    f"({(ratio or float('nan')):.2f}x), err {err:.1e}")
                del out
            del a, b, ref

    sizes = [256, 384] if args.dry_run else ([1024, 2048] if args.quick else [4096, 8192])
    section("gemm_f32", lambda: gemm_rows("float32", sizes, [0]))
    for dt in half_dtypes:
        section(f"gemm_{dt}", lambda dt=dt: gemm_rows(dt, sizes, [0, 1]))

    # linear with the fused epilogue, fp32
    def linear_row():
        m, k, n = (256, 128, 128) if args.dry_run else ((2048, 1024, 1024) if args.quick else (8192, 4096, 4096))
        x, w, bias = randn(m, k), randn(n, k), randn(n)
        ms, raw = timed(lambda: _cuda.linear(x, w, bias, "relu"))
        row = dict(name=f"linear+relu f32 {m}x{k}->{n}", unit="TFLOP/s", fl_ms=ms, raw_ms=raw,
                   fl_rate=2 * m * n * k / (ms * 1e-3) / 1e12)
        if torch is not None:
            tx, tw, tb = (torch.from_dlpack(v) for v in (x, w, bias))
            msT, rawT = timed(lambda: torch.relu(torch.nn.functional.linear(tx, tw, tb)))
            row.update(torch_ms=msT, torch_raw_ms=rawT, torch_rate=2 * m * n * k / (msT * 1e-3) / 1e12,
                       ratio_vs_torch=msT / ms,
                       rel_err_vs_torch=rel_err(_cuda.linear(x, w, bias, "relu"),
                                                cp.asarray(torch.relu(torch.nn.functional.linear(tx, tw, tb)))))
        result["rows"].append(row)
        log(f"{row['name']}: {row['fl_rate']:.1f} TFLOP/s")

    section("linear", linear_row)

    # ---- memory-bound kernels ------------------------------------------------------------------
    def mem_row(name, fn, nbytes, peer=None, target=True, check=None):
        out = fn()
        err = None
        if check is not None:
            err = rel_err(out, check())
        del out
        ms, raw = timed(fn)
        bw = nbytes / (ms * 1e-3) / 1e9
        copy_bw = result["ceilings"].get("copy_GBps")
        row = dict(name=name, unit="GB/s", fl_ms=ms, raw_ms=raw, fl_rate=bw, bytes=nbytes, rel_err=err,
                   pct_of_copy_bw=None if not copy_bw else 100 * bw / copy_bw)
        if peer is not None:
            msP, rawP = timed(peer)
            row.update(peer_ms=msP, peer_raw_ms=rawP, peer_rate=nbytes / (msP * 1e-3) / 1e9, ratio_vs_peer=msP / ms)
        result["rows"].append(row)
        if target and copy_bw:
            result["targets"].append(dict(name=name, metric="pct_of_copy_bw", value=row["pct_of_copy_bw"], target=70.0,
                                          met=row["pct_of_copy_bw"] >= 70.0))
        log(f"{name}: {bw:.0f} GB/s" + (f" ({row['pct_of_copy_bw']:.0f}% of copy)" if copy_bw else ""))

    def memory():
        n = (1 << 16) if args.dry_run else ((1 << 22) if args.quick else (1 << 28))
        x, g = randn(n), randn(n)
        tx = torch.from_dlpack(x) if torch is not None else None
        tg = torch.from_dlpack(g) if torch is not None else None
        mem_row(f"relu fwd n={n}", lambda: fl.relu(x), 8 * n, (lambda: torch.relu(tx)) if tx is not None else None,
                check=(lambda: cp.maximum(x, 0)))
        mem_row(f"gelu fwd n={n}", lambda: fl.gelu(x), 8 * n,
                (lambda: torch.nn.functional.gelu(tx)) if tx is not None else None)
        mem_row(f"relu bwd n={n}", lambda: fl.relu_backward(g, x), 12 * n,
                (lambda: torch.ops.aten.threshold_backward(tg, tx, 0)) if tx is not None else None,
                check=(lambda: g * (x > 0)))
        mem_row(f"gelu bwd n={n}", lambda: fl.gelu_backward(g, x), 12 * n)
        del x, g, tx, tg
        shape = (8, 64, 56, 56) if args.quick else (64, 64, 112, 112)
        xp = randn(*shape)
        txp = torch.from_dlpack(xp) if torch is not None else None
        N, C, H, W = shape
        oh = (H + 2 - 3) // 2 + 1
        mem_row(f"max_pool2d k3s2p1 {shape}", lambda: _cuda.max_pool2d(xp, 3, 2, 1), xp.nbytes + N * C * oh * oh * 4,
                (lambda: torch.nn.functional.max_pool2d(txp, 3, 2, 1)) if txp is not None else None,
                check=(lambda: cp.asarray(torch.nn.functional.max_pool2d(txp, 3, 2, 1))) if txp is not None else None)
        mem_row(f"max_pool2d k2s2 {shape}", lambda: _cuda.max_pool2d(xp, 2, 2), xp.nbytes + xp.nbytes // 4,
                (lambda: torch.nn.functional.max_pool2d(txp, 2, 2)) if txp is not None else None)
        mem_row(f"avg_pool2d k2s2 {shape}", lambda: _cuda.avg_pool2d(xp, 2, 2), xp.nbytes + xp.nbytes // 4,
                (lambda: torch.nn.functional.avg_pool2d(txp, 2, 2)) if txp is not None else None,
                check=(lambda: cp.asarray(torch.nn.functional.avg_pool2d(txp, 2, 2))) if txp is not None else None)
        y, idx = _cuda.max_pool2d(xp, 3, 2, 1, return_indices=True)
        gy = randn(*y.shape)
        mem_row(f"max_pool2d bwd k3s2p1 {shape}",
                lambda: _cuda.max_pool2d_backward(gy, xp, idx, 3, 2, 1),
                xp.nbytes + gy.nbytes + idx.nbytes + xp.nbytes, target=False)
        mem_row(f"adaptive_avg_pool2d 1 {shape}", lambda: _cuda.adaptive_avg_pool2d(xp, 1), xp.nbytes + N * C * 4,
                (lambda: torch.nn.functional.adaptive_avg_pool2d(txp, 1)) if txp is not None else None, target=False)
        us = (8, 64, 56, 56) if args.quick else (32, 64, 112, 112)
        xu = randn(*us)
        txu = torch.from_dlpack(xu) if torch is not None else None
        mem_row(f"upsample_nearest2d x2 {us}", lambda: _cuda.upsample_nearest2d(xu, 2), xu.nbytes * 5,
                (lambda: torch.nn.functional.interpolate(txu, scale_factor=2, mode="nearest"))
                if txu is not None else None)
        yu = _cuda.upsample_nearest2d(xu, 2)
        mem_row(f"upsample_nearest2d bwd x2 {us}", lambda: _cuda.upsample_nearest2d_backward(yu, xu, 2),
                xu.nbytes * 5)
        del xp, txp, y, idx, gy, xu, txu, yu
        rows, cols = (1024, 1024) if args.quick else (16384, 4096)
        xs = randn(rows, cols)
        txs = torch.from_dlpack(xs) if torch is not None else None
        mem_row(f"softmax {rows}x{cols}", lambda: _cuda.softmax(xs), 2 * xs.nbytes,
                (lambda: torch.softmax(txs, -1)) if txs is not None else None, target=False,
                check=(lambda: cp.asarray(torch.softmax(txs, -1))) if txs is not None else None)
        w, b = randn(cols), randn(cols)
        tw, tb = (torch.from_dlpack(v) for v in (w, b)) if torch is not None else (None, None)
        mem_row(f"layer_norm {rows}x{cols}", lambda: _cuda.layer_norm(xs, (cols,), w, b), 2 * xs.nbytes,
                (lambda: torch.nn.functional.layer_norm(txs, (cols,), tw, tb)) if txs is not None else None,
                target=False,
                check=(lambda: cp.asarray(torch.nn.functional.layer_norm(txs, (cols,), tw, tb)))
                if txs is not None else None)

    section("memory", memory)

    result["elapsed_s"] = time.time() - T0
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    # The short table last (the device tool returns the end of the output).
    print()
    print(f"{result['env'].get('gpu')}  driver {result['env'].get('driver')}  CUDA runtime "
          f"{result['env'].get('cuda_runtime')}  copy {result['ceilings'].get('copy_GBps', 0):.0f} GB/s")
    print(f"{'case':<44}{'fastlayers':>12}{'peer':>10}{'ratio':>8}  unit")
    for r in result["rows"]:
        peer = r.get("cublas_rate") or r.get("torch_rate") or r.get("peer_rate")
        ratio = r.get("ratio_vs_cublas") or r.get("ratio_vs_torch") or r.get("ratio_vs_peer")
        extra = f"  {r['pct_of_copy_bw']:.0f}% copy" if r.get("pct_of_copy_bw") else ""
        print(f"{r['name']:<44}{r['fl_rate']:>12.1f}{(peer or 0):>10.1f}{(ratio or 0):>8.2f}  {r['unit']}{extra}")
    met = sum(1 for t in result["targets"] if t["met"])
    print(f"targets met: {met}/{len(result['targets'])}; errors: {len(result['errors'])}")
    for e in result["errors"]:
        print(f"  error in {e['section']}: {e['error'][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

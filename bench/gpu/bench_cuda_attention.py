#!/usr/bin/env python3
"""GPU benchmark of fastlayers' CUDA attention (issue 9), side by side with PyTorch CUDA's
scaled_dot_product_attention (its FlashAttention backend) in one process, on the same inputs.

    python bench/gpu/bench_cuda_attention.py --json OUTDIR/cuda-attention-<gpu>.json [--quick] [--budget 300]
    python bench/gpu/bench_cuda_attention.py --dry-run --json /tmp/a.json       (no GPU: checks this script)

Sections (each in its own try/except, skipped once the time budget is spent):
  peak     cuBLAS (CuPy) / torch bf16 matmul 8192: the measured bf16 matrix peak the % refer to
  fwd      bfloat16 forward, B=4 H=16 L=S=4096, head dims 64 and 128, causal and not
  bwd      the same shapes, backward (fastlayers: from out and lse; torch: autograd.grad)
  long     L = S = 65536 (B=1, H=2, E=128, bf16, causal): forward + backward run, the CuPy pool's
           peak bytes against an L x S buffer (workspace linear in L)
  f32      the float32 (generic, CUDA-core) path on a small case, for the record
  direct_bf16  only when this CuPy has no bfloat16: the bf16 cases through the bindings on
           PyTorch tensors (the public API needs a CuPy dtype; the kernels take pointers)
FLOPs (FlashAttention's convention): forward 4 B H L S E, halved when causal; backward 2.5x
the forward. Timing: CUDA events, warm-up first, median of the repeats (raw kept). Correctness
is checked before timing (norm-wise relative error against PyTorch's result).
Targets (issue 9): forward >= 0.5x PyTorch, backward >= 0.4x, on every (E, causal) case.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from gpu_bench_common import T0, env_info, log, make_section, make_timer, parse_args


def main():
    args = parse_args(__doc__, 300.0, "smaller sizes")

    import cupy as cp
    import fastlayers as fl
    from fastlayers import functional as F

    try:
        import torch

        if not torch.cuda.is_available():
            torch = None
    except Exception:
        torch = None

    result = {"env": env_info(cp, torch, fl), "peak": {}, "rows": [], "errors": [], "targets": []}
    deadline = T0 + args.budget
    dry = args.dry_run

    timed = make_timer(cp, args.reps, warmup=2, sync=torch.cuda.synchronize if torch is not None else None)

    def rel_err(a, b):
        a = cp.asarray(a).astype(cp.float64)
        b = cp.asarray(b).astype(cp.float64)
        den = float(cp.linalg.norm(b.ravel())) or 1.0
        return float(cp.linalg.norm((a - b).ravel())) / den

    section = make_section(result, deadline)

    rng = np.random.default_rng(20261121)
    have_bf16 = True
    try:
        cp.zeros(1, np.float32).astype("bfloat16")
    except Exception:
        have_bf16 = False
    DT = "bfloat16" if have_bf16 else "float16"
    if not have_bf16:
        result["errors"].append({"section": "setup", "error": "this CuPy has no bfloat16: float16 measured instead"})

    def randn(*shape, dtype=DT):
        a = cp.asarray(rng.standard_normal(shape, dtype=np.float32))
        return a if dtype == "float32" else a.astype(dtype)

    def tview(x):
        return torch.from_dlpack(x)  # (DLPack carries bfloat16; the CUDA array interface may not)

    def sdpa_torch():
        """torch's SDPA restricted to its FlashAttention backend when it can say so."""
        fn = torch.nn.functional.scaled_dot_product_attention
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            def run(*a, **k):
                with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                    return fn(*a, **k)

            run(*(torch.zeros(1, 1, 16, 64, device="cuda", dtype=torch.bfloat16),) * 3)
            return run, "flash"
        except Exception:  # older torch: the default dispatch (flash for bf16 on sm80+)
            return fn, "default"

    # ---- measured bf16 matrix peak --------------------------------------------------------------
    def peak():
        m = 512 if dry else (4096 if args.quick else 8192)
        a, b = randn(m, m), randn(m, m)
        for name, fn in (("cublas", lambda: cp.matmul(a, b)),
                         ("torch", (lambda ta=tview(a), tb=tview(b): ta @ tb) if torch is not None else None)):
            if fn is None:
                continue
            try:
                ms, _ = timed(fn, reps=max(3, args.reps // 2))
                result["peak"][f"{name}_{DT}_{m}_TFLOPs"] = 2 * m**3 / (ms * 1e-3) / 1e12
            except Exception as e:
                result["errors"].append({"section": f"peak {name}", "error": f"{type(e).__name__}: {e}"})
        result["peak"]["bf16_peak_TFLOPs"] = max(result["peak"].values(), default=None)
        log(f"measured {DT} matmul peak: {result['peak']['bf16_peak_TFLOPs']}")

    section("peak", peak)

    B, H, L = (1, 2, 64) if dry else ((2, 16, 2048) if args.quick else (4, 16, 4096))
    cases = [(E, causal) for E in (64, 128) for causal in (False, True)]
    state = {}

    def flops_fwd(b, h, lq, s, e, causal):
        return 4 * b * h * lq * s * e * (0.5 if causal else 1.0)

    def add_row(name, kind, fl_ms, raw, flops, torch_ms=None, torch_raw=None, err=None, target=None):
        pk = result["peak"].get("bf16_peak_TFLOPs")
        rate = flops / (fl_ms * 1e-3) / 1e12
        row = dict(name=name, unit="TFLOP/s", fl_ms=fl_ms, raw_ms=raw, fl_rate=rate, flops=flops,
                   pct_of_measured_bf16_peak=None if not pk else 100 * rate / pk, rel_err_vs_torch=err)
        if torch_ms is not None:
            row.update(torch_ms=torch_ms, torch_raw_ms=torch_raw, torch_rate=flops / (torch_ms * 1e-3) / 1e12,
                       ratio_vs_torch=torch_ms / fl_ms)
        result["rows"].append(row)
        if target is not None:
            ratio = row.get("ratio_vs_torch")
            result["targets"].append(dict(name=name, metric="ratio_vs_torch", value=ratio, target=target,
                                          met=ratio is not None and ratio >= target,
                                          correct=err is None or err < 2e-2))
        log(f"{name}: {rate:.1f} TFLOP/s" + (f" ({row['pct_of_measured_bf16_peak']:.0f}% of peak)" if pk else "")
            + (f", torch {row['torch_rate']:.1f} ({row['ratio_vs_torch']:.2f}x)" if torch_ms else "")
            + (f", err {err:.1e}" if err is not None else ""))

    def fwd():
        tfn, backend = sdpa_torch() if torch is not None else (None, None)
        result["torch_backend"] = backend
        for E, causal in cases:
            if time.time() > deadline:
                result["errors"].append({"section": f"fwd E{E} causal{causal}", "error": "skipped: budget"})
                continue
            q, k, v = randn(B, H, L, E), randn(B, H, L, E), randn(B, H, L, E)
            run = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, return_lse=True)
            out, lse = run()
            ms, raw = timed(run)
            tms = traw = err = None
            if tfn is not None:
                tq, tk, tv = tview(q), tview(k), tview(v)
                ref = tfn(tq, tk, tv, is_causal=causal)
                err = rel_err(out, cp.asarray(ref.float()))
                tms, traw = timed(lambda: tfn(tq, tk, tv, is_causal=causal))
            state[(E, causal)] = (q, k, v, out, lse)
            add_row(f"attn fwd {DT} B{B} H{H} L=S={L} E{E}{' causal' if causal else ''}", "fwd", ms, raw,
                    flops_fwd(B, H, L, L, E, causal), tms, traw, err, target=0.5)
            # the alternative forward tiles (FASTLAYERS_CUDA_ATTN_FWD_CFG=1), for the record
            os.environ["FASTLAYERS_CUDA_ATTN_FWD_CFG"] = "1"
            try:
                out1, _ = run()
                err1 = None if tfn is None else rel_err(out1, cp.asarray(ref.float()))
                del out1
                ms1, raw1 = timed(run)
                add_row(f"attn fwd {DT} B{B} H{H} L=S={L} E{E}{' causal' if causal else ''} fwd-cfg1", "fwd", ms1,
                        raw1, flops_fwd(B, H, L, L, E, causal), tms, traw, err1)
            finally:
                del os.environ["FASTLAYERS_CUDA_ATTN_FWD_CFG"]

    section("fwd", fwd)

    def bwd():
        tfn = sdpa_torch()[0] if torch is not None else None
        for E, causal in cases:
            if (E, causal) not in state or time.time() > deadline:
                result["errors"].append({"section": f"bwd E{E} causal{causal}", "error": "skipped"})
                continue
            q, k, v, out, lse = state.pop((E, causal))
            g = randn(*out.shape)
            run = lambda: F.scaled_dot_product_attention_backward(g, q, k, v, out, lse, is_causal=causal)
            grads = run()
            ms, raw = timed(run)
            tms = traw = err = ref_grads = None
            if tfn is not None:
                tq, tk, tv = (tview(x).detach().requires_grad_(True) for x in (q, k, v))
                tout = tfn(tq, tk, tv, is_causal=causal)
                tg = tview(g)
                tgrads = torch.autograd.grad(tout, (tq, tk, tv), tg, retain_graph=True)
                ref_grads = [cp.asarray(b.float()) for b in tgrads]
                err = max(rel_err(a, b) for a, b in zip(grads, ref_grads))
                tms, traw = timed(lambda: torch.autograd.grad(tout, (tq, tk, tv), tg, retain_graph=True))
                del tout
            del grads
            add_row(f"attn bwd {DT} B{B} H{H} L=S={L} E{E}{' causal' if causal else ''}", "bwd", ms, raw,
                    2.5 * flops_fwd(B, H, L, L, E, causal), tms, traw, err, target=0.4)
            # the 8-warp backward (FASTLAYERS_CUDA_ATTN_BWD_CFG=1), for the record
            os.environ["FASTLAYERS_CUDA_ATTN_BWD_CFG"] = "1"
            try:
                g1 = run()
                err1 = None if ref_grads is None else max(rel_err(a, b) for a, b in zip(g1, ref_grads))
                del g1
                ms1, raw1 = timed(run)
                add_row(f"attn bwd {DT} B{B} H{H} L=S={L} E{E}{' causal' if causal else ''} bwd-cfg1", "bwd", ms1,
                        raw1, 2.5 * flops_fwd(B, H, L, L, E, causal), tms, traw, err1)
            finally:
                del os.environ["FASTLAYERS_CUDA_ATTN_BWD_CFG"]

    section("bwd", bwd)

    def direct_bf16():
        """CuPy without bfloat16: the same bf16 cases through the bindings themselves, on PyTorch
        tensors (the kernels take raw pointers; only the public API needs a CuPy dtype)."""
        import math

        import torch as tmod

        from fastlayers import _core

        tdev = "cuda" if torch is not None else "cpu"  # (cpu: the dry run's stand-ins read host memory)
        dt_t, code = (tmod.float16, 1) if dry else (tmod.bfloat16, 2)
        tfn = sdpa_torch()[0] if torch is not None else None
        nbh = B * H
        for E, causal in cases:
            if time.time() > deadline:
                result["errors"].append({"section": f"direct E{E} causal{causal}", "error": "skipped: budget"})
                continue
            offs = cp.arange(nbh, dtype=np.int64) * (L * E)
            dims = [nbh, 1, L, L, E, E]
            tq, tk, tv, tg = (tmod.randn(B, H, L, E, device=tdev).to(dt_t) for _ in range(4))
            out = tmod.empty_like(tq)
            lse = tmod.empty((B, H, L), dtype=tmod.float32, device=tdev)
            dq, dk, dv = (tmod.empty_like(tq) for _ in range(3))
            ws = tmod.empty(int(_core.cuda_attention_workspace(1, dims)), dtype=tmod.float32, device=tdev)
            sc = 1.0 / math.sqrt(E)

            def mats(t, offs=offs, E=E):
                return (t.data_ptr(), int(offs.data.ptr), E, 1)

            def fcall(tq=tq, tk=tk, tv=tv, out=out, lse=lse, dims=dims, sc=sc, causal=causal, mats=mats):
                _core.cuda_attention_forward(code, 1, dims, mats(tq), mats(tk), mats(tv), 0, (0, 0, 0, 1), causal,
                                             sc, out.data_ptr(), lse.data_ptr(), 0)

            def bcall(tq=tq, tk=tk, tv=tv, tg=tg, out=out, lse=lse, dims=dims, sc=sc, causal=causal, mats=mats,
                      dq=dq, dk=dk, dv=dv, ws=ws):
                _core.cuda_attention_backward(code, 1, dims, mats(tq), mats(tk), mats(tv), 0, (0, 0, 0, 1), causal,
                                              sc, tg.data_ptr(), out.data_ptr(), lse.data_ptr(), dq.data_ptr(),
                                              dk.data_ptr(), dv.data_ptr(), ws.data_ptr(), 0)

            fcall()
            ms, raw = timed(fcall)
            bcall()
            msb, rawb = timed(bcall)
            tms = traw = tmsb = trawb = err = errb = None
            if tfn is not None:
                rq, rk, rv = (x.detach().requires_grad_(True) for x in (tq, tk, tv))
                ref = tfn(rq, rk, rv, is_causal=causal)
                err = rel_err(cp.asarray(out.float()), cp.asarray(ref.detach().float()))
                tms, traw = timed(lambda tfn=tfn, tq=tq, tk=tk, tv=tv, causal=causal: tfn(tq, tk, tv, is_causal=causal))
                gr = tmod.autograd.grad(ref, (rq, rk, rv), tg, retain_graph=True)
                errb = max(rel_err(cp.asarray(a.float()), cp.asarray(b.float())) for a, b in zip((dq, dk, dv), gr))
                tmsb, trawb = timed(lambda ref=ref, rq=rq, rk=rk, rv=rv, tg=tg: tmod.autograd.grad(
                    ref, (rq, rk, rv), tg, retain_graph=True))
            name = f"B{B} H{H} L=S={L} E{E}{' causal' if causal else ''} (direct, torch tensors)"
            tname = "bfloat16" if not dry else "float16"
            add_row(f"attn fwd {tname} {name}", "fwd", ms, raw, flops_fwd(B, H, L, L, E, causal), tms, traw, err,
                    target=0.5)
            add_row(f"attn bwd {tname} {name}", "bwd", msb, rawb, 2.5 * flops_fwd(B, H, L, L, E, causal), tmsb,
                    trawb, errb, target=0.4)
        del offs

    if not have_bf16:
        section("direct_bf16", direct_bf16)

    def long():
        Ll = 256 if dry else 65536
        Hl, E = 2, 128
        pool = cp.get_default_memory_pool() if hasattr(cp, "get_default_memory_pool") else None
        q, k, v = randn(1, Hl, Ll, E), randn(1, Hl, Ll, E), randn(1, Hl, Ll, E)
        if pool is not None:
            pool.free_all_blocks()
        base = pool.total_bytes() if pool is not None else 0
        t = time.time()
        out, lse = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_lse=True)
        grads = F.scaled_dot_product_attention_backward(out, q, k, v, out, lse, is_causal=True)
        cp.cuda.get_current_stream().synchronize()
        wall = time.time() - t
        finite = bool(np.isfinite(cp.asnumpy(out[0, :, -3:].astype(np.float32))).all()) and all(
            bool(np.isfinite(cp.asnumpy(x[0, :, :3].astype(np.float32))).all()) for x in grads)
        peak_bytes = (pool.total_bytes() - base) if pool is not None else None
        lxs = Hl * Ll * Ll * 4
        row = dict(name=f"attn long {DT} B1 H{Hl} L=S={Ll} E{E} causal fwd+bwd", unit="s", wall_s=wall,
                   pool_bytes_beyond_inputs=peak_bytes, one_LxS_float32_bytes=lxs, finite=finite,
                   linear=None if peak_bytes is None else peak_bytes < lxs / 8)
        result["rows"].append(dict(row, fl_rate=wall))
        result["targets"].append(dict(name=row["name"], metric="pool bytes < L*S*4/8", value=peak_bytes, target=lxs / 8,
                                      met=bool(row["linear"]) and finite))
        log(f"{row['name']}: {wall:.2f}s, pool {peak_bytes} bytes (one L x S float32: {lxs}), finite={finite}")
        del q, k, v, out, lse, grads

    section("long", long)

    def f32():
        b, h, lq, E = (1, 2, 64, 64) if dry else (1, 8, 2048, 64)
        q, k, v = (randn(b, h, lq, E, dtype="float32") for _ in range(3))
        ms, raw = timed(lambda: F.scaled_dot_product_attention(q, k, v), reps=3)
        tms = traw = err = None
        if torch is not None:
            tq, tk, tv = tview(q), tview(k), tview(v)
            tfn = torch.nn.functional.scaled_dot_product_attention
            err = rel_err(F.scaled_dot_product_attention(q, k, v), cp.asarray(tfn(tq, tk, tv)))
            tms, traw = timed(lambda: tfn(tq, tk, tv), reps=3)
        add_row(f"attn fwd float32 (generic) B{b} H{h} L=S={lq} E{E}", "fwd", ms, raw,
                flops_fwd(b, h, lq, lq, E, False), tms, traw, err)

    section("f32", f32)

    result["elapsed_s"] = time.time() - T0
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    print()
    print(f"{result['env'].get('gpu')}  driver {result['env'].get('driver')}  CUDA runtime "
          f"{result['env'].get('cuda_runtime')}  torch backend {result.get('torch_backend')}  "
          f"measured {DT} peak {result['peak'].get('bf16_peak_TFLOPs')}")
    print(f"{'case':<52}{'fastlayers':>11}{'torch':>9}{'ratio':>7}{'%peak':>7}")
    for r in result["rows"]:
        if r.get("unit") != "TFLOP/s":
            print(f"{r['name']:<52}{r.get('wall_s', 0):>10.2f}s  pool {r.get('pool_bytes_beyond_inputs')} B")
            continue
        print(f"{r['name']:<52}{r['fl_rate']:>11.1f}{(r.get('torch_rate') or 0):>9.1f}"
              f"{(r.get('ratio_vs_torch') or 0):>7.2f}{(r.get('pct_of_measured_bf16_peak') or 0):>7.0f}")
    met = sum(1 for t in result["targets"] if t["met"])
    print(f"targets met: {met}/{len(result['targets'])}; errors: {len(result['errors'])}")
    for e in result["errors"]:
        print(f"  error in {e['section']}: {e['error'][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

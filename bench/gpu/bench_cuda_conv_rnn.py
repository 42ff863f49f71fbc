#!/usr/bin/env python3
"""GPU benchmark of fastlayers' CUDA convolution and recurrent kernels (issue 8), side by side
with PyTorch CUDA (cuDNN, TF32 off, cudnn.benchmark on so it picks its fastest algorithm) in one
process, on the same inputs.

    python bench/gpu/bench_cuda_conv_rnn.py --json OUTDIR/cuda-conv-rnn-<gpu>.json [--quick] [--budget 300]
    python bench/gpu/bench_cuda_conv_rnn.py --dry-run --quick --reps 2 --json /tmp/b.json   # no GPU

Sections (each in its own try/except, skipped once the time budget is spent):
  conv_resnet18   the ResNet-18 3x3 convolutions at batch 32 (56/28/14/7, stride 1, and the
                  three stride-2 ones): forward (target >= 0.5x cuDNN; the stride-1 ones also
                  through the opt-in Winograd path, "[winograd]" rows: FLOP/s there are the direct
                  convolution's FLOPs over the time), data and weight gradients
  depthwise       3x3 depthwise at batch 32 (MobileNetV2's planes): forward (target >= 0.8x cuDNN)
                  and the two gradients
  conv_transpose  DCGAN's 4x4 stride-2 layers: forward and backward
  lstm            T=100, B=32, I=H=512 forward (target >= 0.7x cuDNN), B=1 latency (target >=
                  1.0x), each also with the step kernel's variants (FASTLAYERS_CUDA_RNN_BPT=2|8,
                  FASTLAYERS_CUDA_RNN_PDL=1); training forward + backward; an Elman RNN (tanh)
Timing: CUDA events around each call (both libraries on the legacy default stream), warm-up
first, the L2 flushed before every timed call, median of the repeats (raw timings kept).
Results are checked against PyTorch's before timing (relative error in the JSON).
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from gpu_bench_common import T0, env_info, log, make_section, make_timer, parse_args


def main():
    args = parse_args(__doc__, 300.0, "fewer, smaller cases")

    import cupy as cp

    import fastlayers as fl

    torch = None
    try:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        # The dry run keeps PyTorch on the CPU (NumPy-backed stand-in arrays pass through DLPack),
        # so the peer code runs too; a GPU run without torch.cuda has no peer.
        if not torch.cuda.is_available() and not args.dry_run:
            torch = None
    except Exception:  # noqa: BLE001
        torch = None
    tdev = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"

    result = {"env": env_info(cp, torch, fl), "rows": [], "errors": [], "targets": [],
              "notes": {"torch_tf32": False, "cudnn_benchmark": True,
                        "rnn_bpt_env": os.environ.get("FASTLAYERS_CUDA_RNN_BPT")}}
    if tdev == "cuda":
        result["env"]["cudnn"] = torch.backends.cudnn.version()
    deadline = T0 + args.budget
    flush_buf = cp.empty(1 << 27 if not args.dry_run else 1 << 10, dtype=np.float32)  # 512 MB > any L2

    timed = make_timer(cp, args.reps, flush_buf=flush_buf,
                       sync=torch.cuda.synchronize if tdev == "cuda" else None)

    def rel_err(a, b):
        a = cp.asnumpy(cp.asarray(a)).astype(np.float64)
        b = np.asarray(b.detach().cpu().numpy() if hasattr(b, "detach") else cp.asnumpy(cp.asarray(b)), np.float64)
        return float(np.linalg.norm((a - b).ravel()) / (np.linalg.norm(b.ravel()) or 1.0))

    section = make_section(result, deadline)

    rng = np.random.default_rng(20261121)

    def randn(*shape, scale=1.0):
        return cp.asarray((rng.standard_normal(shape) * scale).astype(np.float32))

    def T(a):
        return torch.from_dlpack(a)

    def row(name, ours, peer=None, flops=None, check=None, target=None, unit="TFLOP/s"):
        """Time ours (and the peer), record speeds and the ratio peer_ms / ours_ms (> 1: faster)."""
        err = None
        if check is not None:
            err = check()
        ms, raw = timed(ours)
        r = dict(name=name, fl_ms=ms, raw_ms=raw, rel_err_vs_torch=err, unit=unit)
        if flops:
            r["fl_rate"] = flops / (ms * 1e-3) / 1e12
        if peer is not None:
            msP, rawP = timed(peer)
            r.update(torch_ms=msP, torch_raw_ms=rawP, ratio_vs_torch=msP / ms)
            if flops:
                r["torch_rate"] = flops / (msP * 1e-3) / 1e12
        result["rows"].append(r)
        if target is not None:
            ratio = r.get("ratio_vs_torch")
            result["targets"].append(dict(name=name, metric="ratio_vs_cudnn", value=ratio, target=target,
                                          met=ratio is not None and ratio >= target,
                                          correct=err is None or err < 1e-4))
        log(f"{name}: {ms:.3f} ms" + (f", cuDNN {r['torch_ms']:.3f} ms ({r['ratio_vs_torch']:.2f}x)" if peer else "")
            + (f", err {err:.1e}" if err is not None else ""))
        return r

    N = 2 if args.dry_run else 32

    # ---- ResNet-18 3x3 ----------------------------------------------------------------------------
    def conv_cases(cases, target_fwd, tag):
        for (c, hw, k, stride, groups) in cases:
            if time.time() > deadline:
                result["errors"].append({"section": f"{tag} {c}", "error": "skipped: time budget spent"})
                continue
            x = randn(N, c, hw, hw)
            w = randn(k, c // groups, 3, 3, scale=1.0 / np.sqrt(9 * c / groups))
            oh = (hw + 2 - 3) // stride + 1
            flops = 2 * N * k * oh * oh * (c // groups) * 9
            name = f"{tag} n{N} c{c} {hw}x{hw} k{k} s{stride}" + (f" g{groups}" if groups > 1 else "")
            ours = lambda: fl.conv2d(x, w, None, stride, 1, 1, groups)  # noqa: E731
            peer = check = None
            if torch is not None:
                tx, tw = T(x), T(w)
                peer = lambda: torch.nn.functional.conv2d(tx, tw, None, stride, 1, 1, groups)  # noqa: E731
                check = lambda: rel_err(ours(), peer())  # noqa: E731
            r = row(name + " fwd", ours, peer, flops, check, target_fwd)
            if torch is not None and tdev == "cuda":
                # cuDNN's own heuristic choice too (benchmark=True may pick Winograd/FFT for 3x3
                # stride 1, which do fewer FLOPs than any GEMM formulation): which one the ratio
                # is against explains a miss
                torch.backends.cudnn.benchmark = False
                try:
                    r["torch_heuristic_ms"], _ = timed(peer)
                finally:
                    torch.backends.cudnn.benchmark = True
            if stride == 1 and groups == 1:  # the opt-in Winograd F(2x2, 3x3) forward
                os.environ["FASTLAYERS_CUDA_CONV_ALGO"] = "winograd"
                try:
                    row(name + " fwd [winograd]", ours, peer, flops, check)
                finally:
                    os.environ.pop("FASTLAYERS_CUDA_CONV_ALGO", None)
            g = randn(N, k, oh, oh)
            ours_b = lambda: fl.conv2d_backward(g, x, w, None, stride, 1, 1, groups)  # noqa: E731
            peer_dx = peer_dw = None
            if torch is not None:
                tg = T(g)
                peer_dx = lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, stride, 1, 1, groups)  # noqa: E731
                peer_dw = lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tg, stride, 1, 1, groups)  # noqa: E731
                gx, gw, _ = ours_b()
                result["rows"].append(dict(name=name + " bwd check", rel_err_dx=rel_err(gx, peer_dx()),
                                           rel_err_dw=rel_err(gw, peer_dw()), unit="-"))
            # data and weight gradients separately, through the bindings the public call uses
            from fastlayers import _core, _cuda_conv_rnn as M

            dims = M._dims(N, c, hw, hw, k, oh, oh, 3, 3, (stride, stride), (1, 1), (1, 1), groups)
            gx = cp.empty(x.shape, np.float32)
            gw = cp.empty(w.shape, np.float32)
            st = cp.cuda.get_current_stream().ptr
            row(name + " dx", lambda: _core.cuda_conv2d_backward_data(M._ptr(g), M._ptr(w), 0, M._ptr(gx), dims, st),
                peer_dx, flops)
            row(name + " dw", lambda: _core.cuda_conv2d_backward_weight(M._ptr(g), M._ptr(x), M._ptr(gw), 0, dims, st),
                peer_dw, flops)
            del x, w, g, gx, gw

    resnet = [(64, 56, 64, 1, 1), (128, 28, 128, 1, 1), (256, 14, 256, 1, 1), (512, 7, 512, 1, 1),
              (64, 56, 128, 2, 1), (128, 28, 256, 2, 1), (256, 14, 512, 2, 1)]
    if args.quick:
        resnet = resnet[:4]
    if args.dry_run:
        resnet = [(8, 8, 8, 1, 1), (8, 8, 16, 2, 1)]
    section("conv_resnet18", lambda: conv_cases(resnet, 0.5, "conv3x3"))

    # ---- depthwise 3x3 ------------------------------------------------------------------------
    dw = [(96, 112, 96, 2, 96), (144, 56, 144, 1, 144), (192, 28, 192, 1, 192), (384, 14, 384, 1, 384),
          (576, 14, 576, 1, 576), (960, 7, 960, 1, 960)]
    if args.quick:
        dw = dw[1:4]
    if args.dry_run:
        dw = [(8, 8, 8, 1, 8)]
    section("depthwise", lambda: conv_cases(dw, 0.8, "dw3x3"))

    # ---- transposed convolution -----------------------------------------------------------------
    def conv_transpose():
        cases = [(512, 4, 256), (256, 8, 128), (128, 16, 64)] if not args.dry_run else [(8, 4, 4)]
        for ci, hw, co in cases:
            x = randn(N, ci, hw, hw)
            w = randn(ci, co, 4, 4, scale=1.0 / np.sqrt(16 * ci))
            flops = 2 * N * ci * hw * hw * co * 16
            name = f"convT4x4s2 n{N} {ci}->{co} {hw}->{2 * hw}"
            ours = lambda: fl.conv_transpose2d(x, w, None, 2, 1)  # noqa: E731
            peer = check = None
            if torch is not None:
                tx, tw = T(x), T(w)
                peer = lambda: torch.nn.functional.conv_transpose2d(tx, tw, None, 2, 1)  # noqa: E731
                check = lambda: rel_err(ours(), peer())  # noqa: E731
            row(name + " fwd", ours, peer, flops, check)
            g = randn(N, co, 2 * hw, 2 * hw)
            ours_b = lambda: fl.conv_transpose2d_backward(g, x, w, None, 2, 1)  # noqa: E731
            peer_b = None
            if torch is not None:
                txg, twg, tg = T(x).clone().requires_grad_(), T(w).clone().requires_grad_(), T(g)

                def peer_b():
                    return torch.autograd.grad(torch.nn.functional.conv_transpose2d(txg, twg, None, 2, 1), (txg, twg), tg)
            row(name + " bwd (dx+dw)", ours_b, peer_b, 2 * flops)

    section("conv_transpose", conv_transpose)

    # ---- LSTM / RNN -------------------------------------------------------------------------------
    def recurrent():
        Tn, I, H = (5, 16, 16) if args.dry_run else (100, 512, 512)
        for kind, B in (("lstm", 32), ("lstm", 1), ("rnn_tanh", 32)):
            G = 4 if kind == "lstm" else 1
            s = 1.0 / np.sqrt(H)
            params = [(randn(G * H, I, scale=s), randn(G * H, H, scale=s), randn(G * H, scale=s), randn(G * H, scale=s))]
            x = randn(Tn, B, I)
            flops = 2 * Tn * B * G * H * (I + H)
            name = f"{kind} T{Tn} B{B} I{I} H{H}"
            if kind == "lstm":
                ours = lambda: fl.lstm(x, params)  # noqa: E731
            else:
                ours = lambda: fl.rnn(x, params)  # noqa: E731
            peer = check = mod = None
            if torch is not None:
                mod = (torch.nn.LSTM if kind == "lstm" else torch.nn.RNN)(I, H).to(tdev)
                with torch.no_grad():
                    for tp, ap in zip((mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0, mod.bias_hh_l0), params[0]):
                        tp.copy_(T(ap))
                tx = T(x)

                def peer():
                    with torch.no_grad():
                        return mod(tx)

                check = lambda: rel_err(ours()[0], peer()[0])  # noqa: E731
            target = None if kind != "lstm" else (0.7 if B > 1 else 1.0)
            row(name + " fwd", ours, peer, flops, check, target)
            if kind == "lstm":
                # the step kernel's variants (environment read at every call): batch blocking
                # and programmatic dependent launch - which one should be the default
                variants = [("PDL", {"FASTLAYERS_CUDA_RNN_PDL": "1"})]
                if B > 1:
                    variants += [("BPT=2", {"FASTLAYERS_CUDA_RNN_BPT": "2"}), ("BPT=8", {"FASTLAYERS_CUDA_RNN_BPT": "8"})]
                for label, env in variants:
                    saved = {k: os.environ.get(k) for k in env}
                    os.environ.update(env)
                    try:
                        row(f"{name} fwd [{label}]", ours, None, flops, check)
                    finally:
                        for k, v in saved.items():
                            if v is None:
                                os.environ.pop(k, None)
                            else:
                                os.environ[k] = v
            if kind == "lstm" and B > 1:
                def ours_train():
                    out, (h, c), res = fl.lstm(x, params, training=True)
                    return fl.lstm_backward(g, None, None, x, params, res)

                g = randn(Tn, B, H)
                peer_train = None
                if torch is not None:
                    txr = T(x).clone().requires_grad_()
                    tg = T(g)

                    def peer_train():
                        out, _ = mod(txr)
                        return torch.autograd.grad(out, [txr] + list(mod.parameters()), tg)
                row(name + " fwd+bwd (training)", ours_train, peer_train, 3 * flops)

    section("recurrent", recurrent)

    result["elapsed_s"] = time.time() - T0
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=1, default=str)
    print()
    print(f"{result['env'].get('gpu')}  driver {result['env'].get('driver')}  CUDA runtime "
          f"{result['env'].get('cuda_runtime')}  cuDNN {result['env'].get('cudnn')}")
    print(f"{'case':<52}{'fl ms':>9}{'cuDNN ms':>10}{'ratio':>7}{'TFLOP/s':>9}")
    for r in result["rows"]:
        if "fl_ms" not in r:
            continue
        print(f"{r['name']:<52}{r['fl_ms']:>9.3f}{(r.get('torch_ms') or 0):>10.3f}{(r.get('ratio_vs_torch') or 0):>7.2f}"
              f"{(r.get('fl_rate') or 0):>9.1f}")
    met = sum(1 for t in result["targets"] if t["met"])
    print(f"targets met: {met}/{len(result['targets'])}; errors: {len(result['errors'])}")
    for t in result["targets"]:
        print(f"  {'MET ' if t['met'] else 'MISS'} {t['name']}: {t['value'] if t['value'] is None else round(t['value'], 3)}"
              f" (target {t['target']}, correct={t['correct']})")
    for e in result["errors"]:
        print(f"  error in {e['section']}: {e['error'][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

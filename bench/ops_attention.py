"""Attention benchmark cases: fused scaled-dot-product attention forward (full and causal) vs
torch.nn.functional.scaled_dot_product_attention and the NumPy reference; the backward vs
torch's forward + backward; and the memory of one L = S = 16384 head, measured in fresh
subprocesses (peak RSS beyond the inputs and outputs).

Issue 5 targets: forward >= 1.2x torch and >= 5x NumPy at B=4,H=8,L=512,E=64 and
B=1,H=8,L=4096,E=64; causal ~half the time of full; backward within 1.5x of torch's
forward+backward (ratio vs torch >= 1/1.5); extra memory at L = S = 16384 < 64 MiB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

import fastlayers as fl
from common import Case
from fastlayers import reference as R

HERE = os.path.dirname(os.path.abspath(__file__))

# Runs in a fresh interpreter: inputs allocated and touched, one small warm-up call (thread
# pool, lazy imports), then the peak RSS is reset (/proc/self/clear_refs = 5) and the call made;
# extra = peak RSS during the call - RSS before it - the bytes of the results it returns.
_MEM_SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    which, L, E, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        return 0

    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 1, L, E), dtype=np.float32) for _ in range(3))
    g = rng.standard_normal((1, 1, L, E), dtype=np.float32)
    if which == "fastlayers":
        import fastlayers as fl
        small = [x[:, :, :64] for x in (q, k, v)]
        o, l = fl.scaled_dot_product_attention(*small, return_lse=True)
        fl.scaled_dot_product_attention_backward(g[:, :, :64], *small, o, l)
        if mode == "forward":
            call = lambda: fl.scaled_dot_product_attention(q, k, v, return_lse=True)
        else:
            o, l = fl.scaled_dot_product_attention(q, k, v, return_lse=True)
            call = lambda: fl.scaled_dot_product_attention_backward(g, q, k, v, o, l)
    else:
        import torch
        import torch.nn.functional as F
        tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
        F.scaled_dot_product_attention(tq[:, :, :64], tk[:, :, :64], tv[:, :, :64])
        if mode == "forward":
            call = lambda: F.scaled_dot_product_attention(tq, tk, tv)
        else:
            rq, rk, rv = (x.clone().requires_grad_() for x in (tq, tk, tv))
            tg = torch.from_numpy(g)
            F.scaled_dot_product_attention(rq[:, :, :64], rk[:, :, :64], rv[:, :, :64]).backward(tg[:, :, :64])
            rq.grad = rk.grad = rv.grad = None
            call = lambda: F.scaled_dot_product_attention(rq, rk, rv).backward(tg)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    before = status("VmRSS")
    res = call()
    peak = status("VmHWM")
    if which != "fastlayers" and mode == "backward":
        res = (rq.grad, rk.grad, rv.grad)
    if not isinstance(res, (tuple, list)):
        res = (res,)
    result_bytes = sum(int(np.prod(r.shape)) * 4 for r in res)
    print(json.dumps({"peak_reset": reset, "rss_before": before, "peak": peak, "result_bytes": result_bytes,
                      "extra_bytes": peak - before - result_bytes}))
""")


def measure_memory(which: str, L: int = 16384, E: int = 64, mode: str = "forward") -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(HERE, "..", "python"), env.get("PYTHONPATH", "")])
    try:
        out = subprocess.run([sys.executable, "-c", _MEM_SCRIPT, which, str(L), str(E), mode], env=env,
                             capture_output=True, text=True, timeout=600, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    except Exception as e:  # report, do not abort the whole benchmark
        return {"error": repr(e)}


def _rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def _per_head(fn, q, k, v, **kw):
    """The NumPy reference one (batch, head) at a time: the same algorithm, but its L x S
    scores stay at one head's size (512 MiB at L = 4096 in float64 temporaries otherwise x8)."""
    B, H = q.shape[:2]
    return np.stack([np.stack([fn(q[b, h], k[b, h], v[b, h], **kw) for h in range(H)]) for b in range(B)])


def cases(quick: bool, torch=None) -> list[Case]:
    rng = np.random.default_rng(0)
    out: list[Case] = []
    shapes = [(4, 8, 512, 64), (1, 8, 4096, 64)]
    if quick:
        shapes = [(4, 8, 512, 64), (1, 8, 2048, 64)]
    F = torch.nn.functional if torch else None
    for B, H, L, E in shapes:
        q, k, v = _rand(rng, B, H, L, E), _rand(rng, B, H, L, E), _rand(rng, B, H, L, E)
        tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v)) if torch else (None,) * 3
        shape = f"B={B} H={H} L={L} E={E}"
        for causal in (False, True):
            pairs = L * (L + 1) / 2 if causal else L * L
            flops = 4.0 * B * H * pairs * E  # QK^T and PV, only the pairs a causal mask keeps
            tag = " causal" if causal else ""
            out.append(Case(
                "attention", "sdpa fwd" + tag, shape,
                lambda q=q, k=k, v=v, c=causal: fl.scaled_dot_product_attention(q, k, v, is_causal=c),
                numpy=lambda q=q, k=k, v=v, c=causal: _per_head(R.scaled_dot_product_attention, q, k, v, is_causal=c),
                torch=(lambda c=causal, tq=tq, tk=tk, tv=tv: F.scaled_dot_product_attention(tq, tk, tv, is_causal=c))
                if torch else None,
                flops=flops, extra={"B": B, "H": H, "L": L, "E": E, "causal": causal}))
        for causal in (False, True):
            pairs = L * (L + 1) / 2 if causal else L * L
            o, lse = fl.scaled_dot_product_attention(q, k, v, is_causal=causal, return_lse=True)
            g = _rand(rng, *o.shape)
            numpy = None
            if L <= 512:
                numpy = (lambda g=g, q=q, k=k, v=v, o=o, lse=lse, c=causal:
                         R.scaled_dot_product_attention_backward(g, q, k, v, o, lse, is_causal=c))
            tfn = None
            if torch:
                rq, rk, rv = (x.clone().requires_grad_() for x in (tq, tk, tv))
                tg = torch.from_numpy(g)

                def tfn(rq=rq, rk=rk, rv=rv, tg=tg, c=causal):
                    res = F.scaled_dot_product_attention(rq, rk, rv, is_causal=c)
                    return torch.autograd.grad(res, (rq, rk, rv), tg)
            out.append(Case(
                "attention", "sdpa bwd" + (" causal" if causal else ""), shape,
                lambda g=g, q=q, k=k, v=v, o=o, lse=lse, c=causal:
                fl.scaled_dot_product_attention_backward(g, q, k, v, o, lse, is_causal=c),
                numpy=numpy, torch=tfn,
                # 5 GEMM-shaped products (S, dP, dV, dK, dQ) of 2*L*S*E each
                flops=10.0 * B * H * pairs * E,
                note="torch column: forward + backward (autograd); fastlayers: backward only",
                extra={"B": B, "H": H, "L": L, "E": E, "causal": causal}))

    # Memory: one head, L = S = 16384, E = 64 (a materialised float32 score matrix would be 1 GiB).
    L, E = 16384, 64
    mem = {f"{w}_{m}": measure_memory(w, L, E, m)
           for w in (["fastlayers", "torch"] if torch else ["fastlayers"]) for m in ("forward", "backward")}
    extra_mib = {k: (v["extra_bytes"] / 2**20 if "extra_bytes" in v else None) for k, v in mem.items()}
    q, k, v = _rand(rng, 1, 1, L, E), _rand(rng, 1, 1, L, E), _rand(rng, 1, 1, L, E)
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v)) if torch else (None,) * 3
    out.append(Case(
        "attention", "sdpa fwd memory", f"H=1 L=S={L} E={E}",
        lambda: fl.scaled_dot_product_attention(q, k, v),
        torch=(lambda: F.scaled_dot_product_attention(tq, tk, tv)) if torch else None,
        flops=4.0 * L * L * E,
        note="extra memory (MiB) beyond inputs and outputs, peak RSS in a fresh process; "
             "target < 64 MiB; the L x S float32 scores alone would be 1024 MiB",
        extra={"extra_memory_mib": extra_mib, "memory_raw": mem, "scores_matrix_mib": L * L * 4 / 2**20,
               "target_mib": 64}))
    print(f"# attention extra memory at L=S={L}, E={E}, one head (MiB): "
          + ", ".join(f"{k}={v:.1f}" if v is not None else f"{k}=?" for k, v in extra_mib.items()))
    return out

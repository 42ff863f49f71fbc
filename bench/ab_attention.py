"""Attention forward, fastlayers vs PyTorch interleaved in one process (best of 5 rounds):
the robust check of the bench/run.py ratios on a noisy 2-core VM.

    PYTHONPATH=python python bench/ab_attention.py   (needs torch; prints one line a shape)
"""
import time
import numpy as np, torch
import fastlayers as fl
torch.set_num_threads(2); fl.set_num_threads(2)
rng = np.random.default_rng(0)
def best(fn, inner, rounds):
    b = 1e9
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(inner): fn()
        b = min(b, (time.perf_counter() - t0) / inner)
    return b
for (B, H, L, causal) in [(1, 8, 4096, True), (1, 8, 4096, False), (4, 8, 512, True), (4, 8, 512, False)]:
    q, k, v = (rng.standard_normal((B, H, L, 64), dtype=np.float32) for _ in range(3))
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
    fs = {"fl": lambda: fl.scaled_dot_product_attention(q, k, v, is_causal=causal),
          "torch": lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)}
    ts = {n: [] for n in fs}
    for r in range(5):
        for n, f in fs.items():
            time.sleep(0.3); ts[n].append(best(f, 1 if L > 1000 else 3, 2))
    fl_t, t_t = min(ts["fl"]), min(ts["torch"])
    flops = 4 * B * H * L * L * 64 * (0.5 if causal else 1)
    print(f"B{B} H{H} L{L} causal={causal}: fl {flops/fl_t/1e9:6.1f} GF/s  torch {flops/t_t/1e9:6.1f} GF/s  ratio {t_t/fl_t:.2f}  (all fl {[round(x*1e3,1) for x in ts['fl']]} ms, torch {[round(x*1e3,1) for x in ts['torch']]} ms)", flush=True)

"""GEMM-family benchmark cases: square sizes, skinny/tall shapes, transposes, batched matmul,
and linear with the fused bias + ReLU epilogue vs NumPy's x @ w.T + b then np.maximum."""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from common import Case


def _rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def cases(quick: bool, torch=None) -> list[Case]:
    rng = np.random.default_rng(0)
    out: list[Case] = []
    sizes = [128, 256, 512, 1024, 2048] if quick else [64, 128, 256, 512, 1024, 2048, 4096]
    for n in sizes:
        a, b = _rand(rng, n, n), _rand(rng, n, n)
        ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch else (None, None)
        out.append(Case("gemm", "gemm", f"{n}x{n}x{n}", lambda a=a, b=b: fl.gemm(a, b),
                        numpy=lambda a=a, b=b: a @ b,
                        torch=(lambda ta=ta, tb=tb: ta @ tb) if torch else None,
                        flops=2.0 * n**3, extra={"size": n}))
    shapes = [(4096, 64, 4096), (64, 4096, 4096), (4096, 4096, 64), (32, 2048, 512), (1, 4096, 4096),
              (1000, 10, 784), (513, 1025, 257),
              # skinny M (a few rows against a wide B: packing B must not dominate), then
              # n == 1: a GEMV and a long dot product (k split across threads)
              (8, 2048, 512), (16, 2048, 512), (64, 2048, 512), (8, 4096, 4096), (16, 4096, 4096),
              (32, 4096, 4096), (4096, 1, 4096), (1, 1, 1 << 22)]
    if quick:
        shapes = shapes[:2] + shapes[3:4] + [(8, 2048, 512), (1, 1, 1 << 22)]
    for m, n, k in shapes:
        a, b = _rand(rng, m, k), _rand(rng, k, n)
        ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch else (None, None)
        out.append(Case("gemm", "gemm", f"{m}x{n}x{k}", lambda a=a, b=b: fl.gemm(a, b),
                        numpy=lambda a=a, b=b: a @ b, torch=(lambda ta=ta, tb=tb: ta @ tb) if torch else None,
                        flops=2.0 * m * n * k))
    n = 1024
    a, b = _rand(rng, n, n), _rand(rng, n, n)
    out.append(Case("gemm", "gemm a.T @ b.T", f"{n}x{n}x{n}", lambda: fl.gemm(a, b, trans_a=True, trans_b=True),
                    numpy=lambda: a.T @ b.T, flops=2.0 * n**3))
    bm = _rand(rng, 64, 128, 64), _rand(rng, 64, 64, 128)
    out.append(Case("gemm", "matmul batched", "64x(128x64 @ 64x128)", lambda: fl.matmul(*bm),
                    numpy=lambda: np.matmul(*bm), flops=2.0 * 64 * 128 * 64 * 128))
    for rows, n_in, n_out in ([(256, 1024, 1024), (64, 784, 256)] if quick else
                              [(256, 1024, 1024), (64, 784, 256), (1024, 512, 2048), (32, 4096, 4096)]):
        x, w, bias = _rand(rng, rows, n_in), _rand(rng, n_out, n_in), _rand(rng, n_out)
        tx, tw, tbias = (torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)) if torch else (None,) * 3
        out.append(Case("gemm", "linear+relu", f"{rows}x{n_in}->{n_out}",
                        lambda x=x, w=w, bias=bias: fl.linear(x, w, bias, "relu"),
                        numpy=lambda x=x, w=w, bias=bias: np.maximum(x @ w.T + bias, 0),
                        torch=(lambda tx=tx, tw=tw, tb=tbias: torch.relu(torch.nn.functional.linear(tx, tw, tb)))
                        if torch else None,
                        flops=2.0 * rows * n_in * n_out))
    return out

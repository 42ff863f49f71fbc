"""Pooling benchmark cases: the ResNet stem max pool (3x3 stride 2 padding 1 on
32x64x112x112, with and without indices) and its backward, average / global pooling and
nearest upsampling, in GB/s (input read + outputs written) against the machine's copy
bandwidth, beside the NumPy reference and PyTorch CPU."""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from fastlayers import reference as R
from common import Case


def _rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def cases(quick: bool, torch=None) -> list[Case]:
    rng = np.random.default_rng(0)
    F = torch.nn.functional if torch else None
    out: list[Case] = []
    n = 8 if quick else 32
    x = _rand(rng, n, 64, 112, 112)
    tx = torch.from_numpy(x) if torch else None
    y_bytes = x.nbytes // 4
    shape = f"{n}x64x112x112 k3 s2 p1"
    out.append(Case("pool", "max_pool2d", shape, lambda: fl.max_pool2d(x, 3, 2, 1),
                    numpy=lambda: R.max_pool2d(x, 3, 2, 1),
                    torch=(lambda: F.max_pool2d(tx, 3, 2, 1)) if torch else None,
                    bytes=x.nbytes + y_bytes, extra={"batch": n}))
    out.append(Case("pool", "max_pool2d+indices", shape, lambda: fl.max_pool2d(x, 3, 2, 1, return_indices=True),
                    torch=(lambda: F.max_pool2d(tx, 3, 2, 1, return_indices=True)) if torch else None,
                    bytes=x.nbytes + 3 * y_bytes, note="indices are int64: 2x the output's bytes",
                    extra={"batch": n}))
    y, idx = fl.max_pool2d(x, 3, 2, 1, return_indices=True)
    g = _rand(rng, *y.shape)
    torch_bwd = None
    if torch:
        tg, tidx = torch.from_numpy(g), torch.from_numpy(idx)

        def torch_bwd():
            return torch.ops.aten.max_pool2d_with_indices_backward(tg, tx, [3, 3], [2, 2], [1, 1], [1, 1], False, tidx)

    out.append(Case("pool", "max_pool2d backward", shape, lambda: fl.max_pool2d_backward(g, x, idx, 3, 2, 1),
                    torch=torch_bwd, bytes=x.nbytes + 3 * y_bytes, extra={"batch": n}))

    xa = _rand(rng, 8, 256, 56, 56)
    txa = torch.from_numpy(xa) if torch else None
    out.append(Case("pool", "avg_pool2d", "8x256x56x56 k3 s1 p1", lambda: fl.avg_pool2d(xa, 3, 1, 1),
                    numpy=(lambda: R.avg_pool2d(xa, 3, 1, 1)) if not quick else None,
                    torch=(lambda: F.avg_pool2d(txa, 3, 1, 1)) if torch else None,
                    bytes=2 * xa.nbytes))
    out.append(Case("pool", "avg_pool2d", "8x256x56x56 k2 s2", lambda: fl.avg_pool2d(xa, 2),
                    numpy=lambda: R.avg_pool2d(xa, 2),
                    torch=(lambda: F.avg_pool2d(txa, 2)) if torch else None,
                    bytes=xa.nbytes * 1.25))
    xg = _rand(rng, 32, 512, 7, 7)
    txg = torch.from_numpy(xg) if torch else None
    out.append(Case("pool", "adaptive_avg_pool2d", "32x512x7x7 -> 1 (global)", lambda: fl.adaptive_avg_pool2d(xg, 1),
                    numpy=lambda: R.adaptive_avg_pool2d(xg, 1),
                    torch=(lambda: F.adaptive_avg_pool2d(txg, 1)) if torch else None,
                    bytes=xg.nbytes))
    out.append(Case("pool", "adaptive_max_pool2d", "8x256x56x56 -> 7", lambda: fl.adaptive_max_pool2d(xa, 7),
                    numpy=lambda: R.adaptive_max_pool2d(xa, 7),
                    torch=(lambda: F.adaptive_max_pool2d(txa, 7)) if torch else None,
                    bytes=xa.nbytes))
    xu = _rand(rng, 8, 64, 56, 56)
    txu = torch.from_numpy(xu) if torch else None
    out.append(Case("pool", "upsample_nearest2d", "8x64x56x56 x2", lambda: fl.upsample_nearest2d(xu, 2),
                    numpy=lambda: R.upsample_nearest2d(xu, 2),
                    torch=(lambda: F.interpolate(txu, scale_factor=2, mode="nearest")) if torch else None,
                    bytes=5 * xu.nbytes))
    return out

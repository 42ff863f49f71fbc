"""Elementwise activations and softmax: memory-bound, reported in GB/s against the copy roof."""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from fastlayers import reference as R
from common import Case


def cases(quick: bool, torch=None) -> list[Case]:
    rng = np.random.default_rng(0)
    n = 1 << (22 if quick else 24)
    x = rng.standard_normal(n, dtype=np.float32)
    tx = torch.from_numpy(x) if torch else None
    out = []
    for name, tfn in (("relu", "relu"), ("sigmoid", "sigmoid"), ("tanh", "tanh"), ("gelu", "gelu")):
        out.append(Case("activations", name, f"{n}", lambda f=getattr(fl, name): f(x),
                        numpy=lambda f=getattr(R, name): f(x),
                        torch=(lambda f=getattr(torch, tfn) if hasattr(torch, tfn) else getattr(torch.nn.functional, tfn): f(tx))
                        if torch else None,
                        bytes=8.0 * n, rtol=1e-4))
    s = rng.standard_normal((4096, 1024), dtype=np.float32)
    ts = torch.from_numpy(s) if torch else None
    out.append(Case("activations", "softmax", "4096x1024", lambda: fl.softmax(s), numpy=lambda: R.softmax(s),
                    torch=(lambda: torch.softmax(ts, -1)) if torch else None, bytes=8.0 * s.size, rtol=1e-4))
    return out

"""Norm, loss and the other layer kernels (batch_norm, layer_norm, cross_entropy, dropout,
embedding, a fused Adam step): memory-bound, reported in GB/s of the minimum traffic (each
input read once, each output written once; the kernels' own extra passes are their cost)."""

from __future__ import annotations

import fastlayers as fl
import numpy as np
from common import Case
from fastlayers import optim
from fastlayers import reference as R


class _P:
    def __init__(self, data, grad):
        self.data, self.grad = data, grad


def _numpy_adam(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """The Adam rule as NumPy expressions (the baseline the fused pass replaces)."""
    m += (1 - b1) * (g - m)
    v *= b2
    v += (1 - b2) * g * g
    p -= (lr / (1 - b1**t)) * m / (np.sqrt(v) / np.sqrt(1 - b2**t) + eps)


def cases(quick: bool, torch=None) -> list[Case]:
    rng = np.random.default_rng(0)
    out = []
    F = torch.nn.functional if torch else None

    # ---- batch norm, training: (N, C, H, W) and (N, C) ----
    for shape in ([(16, 64, 28, 28), (2048, 512)] if quick else [(32, 64, 56, 56), (8192, 1024)]):
        c = shape[1]
        x = rng.standard_normal(shape, dtype=np.float32)
        w, b = rng.standard_normal(c, dtype=np.float32), rng.standard_normal(c, dtype=np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        g = rng.standard_normal(shape, dtype=np.float32)
        _, (mean, invstd) = fl.batch_norm(x, rm.copy(), rv.copy(), w, b, training=True, return_stats=True)
        sname = "x".join(map(str, shape))
        if torch:
            tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
            trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
            tm, ti = torch.from_numpy(mean), torch.from_numpy(invstd)
        rm1, rv1, rm2, rv2 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
        out.append(Case("norm", "batch_norm train", sname,
                        lambda x=x, w=w, b=b, rm=rm1, rv=rv1: fl.batch_norm(x, rm, rv, w, b, training=True),
                        numpy=lambda x=x, w=w, b=b, rm=rm2, rv=rv2: R.batch_norm(x, rm, rv, w, b, training=True),
                        torch=(lambda tx=tx, tw=tw, tb=tb, trm=trm, trv=trv: F.batch_norm(tx, trm, trv, tw, tb, training=True))
                        if torch else None,
                        bytes=8.0 * x.size))
        out.append(Case("norm", "batch_norm_backward", sname,
                        lambda g=g, x=x, w=w, m=mean, i=invstd: fl.batch_norm_backward(g, x, w, m, i),
                        numpy=lambda g=g, x=x, w=w, m=mean, i=invstd: R.batch_norm_backward(g, x, w, m, i),
                        torch=(lambda tg=tg, tx=tx, tw=tw, tm=tm, ti=ti: torch.ops.aten.native_batch_norm_backward(
                            tg, tx, tw, None, None, tm, ti, True, 1e-5, [True, True, True])) if torch else None,
                        bytes=12.0 * x.size))

    # ---- layer norm ----
    for shape in ([(4096, 768)] if quick else [(8192, 768), (2048, 4096)]):
        d = shape[-1]
        x = rng.standard_normal(shape, dtype=np.float32)
        w, b = rng.standard_normal(d, dtype=np.float32), rng.standard_normal(d, dtype=np.float32)
        g = rng.standard_normal(shape, dtype=np.float32)
        _, (mean, rstd) = fl.layer_norm(x, d, w, b, return_stats=True)
        sname = "x".join(map(str, shape))
        if torch:
            tx, tw, tb, tg = (torch.from_numpy(a) for a in (x, w, b, g))
            tm, tr = torch.from_numpy(mean.reshape(-1, 1)), torch.from_numpy(rstd.reshape(-1, 1))
        out.append(Case("norm", "layer_norm", sname, lambda x=x, w=w, b=b, d=d: fl.layer_norm(x, d, w, b),
                        numpy=lambda x=x, w=w, b=b, d=d: R.layer_norm(x, d, w, b),
                        torch=(lambda tx=tx, tw=tw, tb=tb, d=d: F.layer_norm(tx, (d,), tw, tb)) if torch else None,
                        bytes=8.0 * x.size))
        out.append(Case("norm", "layer_norm_backward", sname,
                        lambda g=g, x=x, w=w, b=b, d=d, m=mean, r=rstd: fl.layer_norm_backward(g, x, d, w, b, mean=m, rstd=r),
                        numpy=lambda g=g, x=x, w=w, b=b, d=d, m=mean, r=rstd: R.layer_norm_backward(g, x, d, w, b, mean=m, rstd=r),
                        torch=(lambda tg=tg, tx=tx, tw=tw, tb=tb, d=d, tm=tm, tr=tr: torch.ops.aten.native_layer_norm_backward(
                            tg, tx, [d], tm, tr, tw, tb, [True, True, True])) if torch else None,
                        bytes=12.0 * x.size))

    # ---- cross entropy (N, C) and (N, C, H, W) ----
    for shape in ([(4096, 1000), (8, 21, 64, 64)] if quick else [(8192, 1000), (16, 21, 128, 128)]):
        z = rng.standard_normal(shape, dtype=np.float32) * 3
        t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
        sname = "x".join(map(str, shape))
        if torch:
            tz, tt = torch.from_numpy(z), torch.from_numpy(t)
            tzg = tz.clone().requires_grad_()
            tloss = F.cross_entropy(tzg, tt, label_smoothing=0.1)
        out.append(Case("loss", "cross_entropy", sname, lambda z=z, t=t: fl.cross_entropy(z, t, label_smoothing=0.1),
                        numpy=lambda z=z, t=t: R.cross_entropy(z, t, label_smoothing=0.1),
                        torch=(lambda tz=tz, tt=tt: F.cross_entropy(tz, tt, label_smoothing=0.1)) if torch else None,
                        bytes=4.0 * z.size))
        out.append(Case("loss", "cross_entropy_backward", sname,
                        lambda z=z, t=t: fl.cross_entropy_backward(1.0, z, t, label_smoothing=0.1),
                        numpy=lambda z=z, t=t: R.cross_entropy_backward(1.0, z, t, label_smoothing=0.1),
                        torch=(lambda tl=tloss, tzg=tzg: torch.autograd.grad(tl, tzg, retain_graph=True)[0])
                        if torch else None,
                        bytes=8.0 * z.size))

    # ---- dropout, embedding, fused Adam ----
    n = 1 << (22 if quick else 24)
    x = rng.standard_normal(n, dtype=np.float32)
    out.append(Case("misc", "dropout p=0.5", f"{n}", lambda: fl.dropout(x, 0.5, seed=1)[0],
                    numpy=lambda: R.dropout(x, 0.5, seed=1)[0],
                    torch=(lambda: F.dropout(torch.from_numpy(x), 0.5, training=True)) if torch else None,
                    bytes=9.0 * n, check=False, note="random masks differ between implementations"))
    v, d, m = 50_000, 512, 32 * 1024
    wt = rng.standard_normal((v, d), dtype=np.float32)
    idx = rng.integers(0, v, m)
    ge = rng.standard_normal((m, d), dtype=np.float32)
    out.append(Case("misc", "embedding", f"{m} of {v}x{d}", lambda: fl.embedding(idx, wt),
                    numpy=lambda: R.embedding(idx, wt),
                    torch=(lambda: F.embedding(torch.from_numpy(idx), torch.from_numpy(wt))) if torch else None,
                    bytes=8.0 * m * d))
    out.append(Case("misc", "embedding_backward", f"{m} of {v}x{d}", lambda: fl.embedding_backward(ge, idx, wt)[0],
                    numpy=lambda: R.embedding_backward(ge, idx, wt)[0],
                    torch=(lambda: torch.ops.aten.embedding_dense_backward(
                        torch.from_numpy(ge), torch.from_numpy(idx), v, -1, False)) if torch else None,
                    bytes=4.0 * (m * d + v * d)))
    p0 = rng.standard_normal(n, dtype=np.float32)
    gp = rng.standard_normal(n, dtype=np.float32) * 1e-2
    opt = optim.Adam([_P(p0.copy(), gp)], lr=1e-3)
    npst = [p0.copy(), np.zeros(n, np.float32), np.zeros(n, np.float32), [0]]

    def np_step():
        npst[3][0] += 1
        _numpy_adam(npst[0], gp, npst[1], npst[2], npst[3][0])

    tstep = None
    if torch:
        tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        tp.grad = torch.from_numpy(gp)
        topt = torch.optim.Adam([tp], lr=1e-3, foreach=False)
        tstep = topt.step
    out.append(Case("optim", "Adam step", f"{n}", opt.step, numpy=np_step, torch=tstep,
                    bytes=7.0 * 4 * n, check=False, note="in-place update; 4 arrays read, 3 written"))
    return out

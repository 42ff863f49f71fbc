"""Dry-run stand-ins for the CUDA convolution and recurrent bindings (issue 8), installed by
dryrun_plugin.setup() next to the part-1 ones.

    PYTHONPATH=python:bench/gpu python -m pytest -p dryrun_plugin tests/test_cuda_conv_rnn.py -m gpu

Each `cuda_*` stand-in implements the binding's contract in float64 NumPy through the very
pointers, sizes and flags python/fastlayers/_cuda_conv_rnn.py passes:
- convolution: the geometry's exact semantics (taps outside [0, H) x [0, W) are zeros, outputs
  are the given OH x OW, top/left padding only) as an im2col product and its adjoints;
- recurrent layers: the algorithm of csrc/rnn/rnn.cu step for step - the input projection GEMM,
  one "launch" per step (forward), the T + 1 backward launches in the same order with the same
  step/previous-step indexing (reverse direction included), the shifted dW_hh product plus the
  h0 term, the column sum and dx (+)= dG W_ih - so the dry run checks that bookkeeping against
  the reference, not only the Python glue.
What it does not check: the CUDA kernels themselves (tile loaders: bench/gpu/emulate_conv_igemm.cu).
"""
from __future__ import annotations

import numpy as np


def _v(ptr, shape, strides=None):
    from dryrun_plugin import _view

    return _view(ptr, shape, strides)


# ---- convolution -------------------------------------------------------------------------------
def _geom(dims):
    n, c, h, w, k, oh, ow, r, s, sh, sw, ph, pw, dh, dw, groups = (int(v) for v in dims)
    return dict(n=n, c=c, h=h, w=w, k=k, oh=oh, ow=ow, r=r, s=s, sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw, g=groups)


def _taps(G):
    """For each tap (r, s): the valid output rows/cols and the input rows/cols they read."""
    out = []
    oy, ox = np.arange(G["oh"]), np.arange(G["ow"])
    for r in range(G["r"]):
        iy = oy * G["sh"] - G["ph"] + r * G["dh"]
        my = (iy >= 0) & (iy < G["h"])
        for s in range(G["s"]):
            ix = ox * G["sw"] - G["pw"] + s * G["dw"]
            mx = (ix >= 0) & (ix < G["w"])
            out.append((r, s, oy[my], iy[my], ox[mx], ix[mx]))
    return out


def _im2col(X, G):
    """(n, C, R, S, OH, OW) float64."""
    cols = np.zeros((G["n"], G["c"], G["r"], G["s"], G["oh"], G["ow"]))
    for r, s, oy, iy, ox, ix in _taps(G):
        cols[:, :, r, s][:, :, oy[:, None], ox[None, :]] = X[:, :, iy[:, None], ix[None, :]]
    return cols


def _col2im(cols, G):
    X = np.zeros((G["n"], G["c"], G["h"], G["w"]))
    for r, s, oy, iy, ox, ix in _taps(G):
        np.add.at(X, (slice(None), slice(None), iy[:, None], ix[None, :]), cols[:, :, r, s][:, :, oy[:, None], ox[None, :]])
    return X


def _conv_mocks():
    def cuda_conv2d_forward(x, w, bias, y, dims, stream):
        G = _geom(dims)
        g, cg, kg = G["g"], G["c"] // G["g"], G["k"] // G["g"]
        X = _v(x, (G["n"], G["c"], G["h"], G["w"])).astype(np.float64)
        W = _v(w, (G["k"], cg, G["r"], G["s"])).astype(np.float64)
        cols = _im2col(X, G)
        out = np.empty((G["n"], G["k"], G["oh"], G["ow"]))
        for gi in range(g):
            out[:, gi * kg:(gi + 1) * kg] = np.einsum("ncrsyx,kcrs->nkyx", cols[:, gi * cg:(gi + 1) * cg],
                                                      W[gi * kg:(gi + 1) * kg])
        if bias:
            out += _v(bias, (G["k"],))[None, :, None, None]
        _v(y, out.shape)[...] = out

    def cuda_conv2d_backward_data(dy, w, bias, dx, dims, stream):
        G = _geom(dims)
        g, cg, kg = G["g"], G["c"] // G["g"], G["k"] // G["g"]
        D = _v(dy, (G["n"], G["k"], G["oh"], G["ow"])).astype(np.float64)
        W = _v(w, (G["k"], cg, G["r"], G["s"])).astype(np.float64)
        cols = np.empty((G["n"], G["c"], G["r"], G["s"], G["oh"], G["ow"]))
        for gi in range(g):
            cols[:, gi * cg:(gi + 1) * cg] = np.einsum("nkyx,kcrs->ncrsyx", D[:, gi * kg:(gi + 1) * kg],
                                                       W[gi * kg:(gi + 1) * kg])
        out = _col2im(cols, G)
        if bias:
            out += _v(bias, (G["c"],))[None, :, None, None]
        _v(dx, out.shape)[...] = out

    def cuda_conv2d_backward_weight(dy, x, dw, db, dims, stream):
        G = _geom(dims)
        g, cg, kg = G["g"], G["c"] // G["g"], G["k"] // G["g"]
        D = _v(dy, (G["n"], G["k"], G["oh"], G["ow"])).astype(np.float64)
        X = _v(x, (G["n"], G["c"], G["h"], G["w"])).astype(np.float64)
        cols = _im2col(X, G)
        out = np.empty((G["k"], cg, G["r"], G["s"]))
        for gi in range(g):
            out[gi * kg:(gi + 1) * kg] = np.einsum("nkyx,ncrsyx->kcrs", D[:, gi * kg:(gi + 1) * kg],
                                                   cols[:, gi * cg:(gi + 1) * cg])
        _v(dw, out.shape)[...] = out
        if db:
            _v(db, (G["k"],))[...] = D.sum((0, 2, 3))

    def cuda_channel_sum(t, out, n, c, hw, stream):
        _v(out, (c,))[...] = _v(t, (n, c, hw)).astype(np.float64).sum((0, 2))

    def cuda_conv2d_path(dims):
        import os

        G = _geom(dims)
        if (os.environ.get("FASTLAYERS_CUDA_CONV_ALGO") == "winograd" and G["r"] == G["s"] == 3
                and G["sh"] == G["sw"] == G["dh"] == G["dw"] == G["g"] == 1):
            return 2
        return 1 if G["g"] > 1 and G["g"] == G["c"] else 0

    return {k: v for k, v in locals().items() if k.startswith("cuda_")}


# ---- recurrent ---------------------------------------------------------------------------------
def _sig(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _rnn_mocks():
    def cuda_rnn_layer_forward(mode, T, B, I, H, x, w_ih, w_hh, b_ih, b_hh, h0, c0, y, ldy, y_col, h_n, c_n, gates,
                               cells, work, reverse, stream):
        assert mode in (0, 1, 2)
        if B == 0:
            return
        G = 4 if mode == 0 else 1
        GH = G * H
        H0 = _v(h0, (B, H)).astype(np.float64) if h0 else None
        C0 = _v(c0, (B, H)).astype(np.float64) if c0 else None
        if T == 0:
            _v(h_n, (B, H))[...] = H0 if H0 is not None else 0.0
            if mode == 0:
                _v(c_n, (B, H))[...] = C0 if C0 is not None else 0.0
            return
        X = _v(x, (T * B, I)).astype(np.float64)
        Wih = _v(w_ih, (GH, I)).astype(np.float64)
        Whh = _v(w_hh, (GH, H)).astype(np.float64)
        # 1. the projections GEMM (b_ih in its epilogue) into the workspace
        Work = _v(work, (T * B, GH))
        Work[...] = X @ Wih.T + (_v(b_ih, (GH,)) if b_ih else 0.0)
        bhh = _v(b_hh, (GH,)).astype(np.float64) if b_hh else 0.0
        Y = _v(y, (T, B, ldy))
        Cn = _v(c_n, (B, H)) if mode == 0 else None
        Gt = _v(gates, (T * B, 4 * H)) if gates else None
        Cs = _v(cells, (T * B, H)) if cells else None
        for step in range(T):  # 2. one launch per step
            t = T - 1 - step if reverse else step
            tp = t + 1 if reverse else t - 1
            hp = H0 if step == 0 else Y[tp, :, y_col:y_col + H].astype(np.float64)
            S = np.zeros((B, GH)) if hp is None else hp @ Whh.T
            pre = S + Work[t * B:(t + 1) * B].astype(np.float64) + bhh
            if mode == 0:
                i, f, gg, o = _sig(pre[:, :H]), _sig(pre[:, H:2 * H]), np.tanh(pre[:, 2 * H:3 * H]), _sig(pre[:, 3 * H:])
                if Cs is not None:
                    cp_ = C0 if step == 0 else Cs[tp * B:(tp + 1) * B].astype(np.float64)
                else:
                    cp_ = C0 if step == 0 else Cn.astype(np.float64)
                c = f * (0.0 if cp_ is None else cp_) + i * gg
                (Cs[t * B:(t + 1) * B] if Cs is not None else Cn)[...] = c
                Y[t, :, y_col:y_col + H] = o * np.tanh(c)
                if Gt is not None:
                    Gt[t * B:(t + 1) * B] = np.concatenate([i, f, gg, o], 1)
            else:
                Y[t, :, y_col:y_col + H] = np.tanh(pre) if mode == 1 else np.maximum(pre, 0.0)
        tl = 0 if reverse else T - 1
        _v(h_n, (B, H))[...] = Y[tl, :, y_col:y_col + H]
        if mode == 0 and Cs is not None:
            Cn[...] = Cs[tl * B:(tl + 1) * B]

    def cuda_rnn_layer_backward(mode, T, B, I, H, x, w_ih, w_hh, h0, c0, y, ldy, y_col, gates, cells, dy, dh_n, dc_n,
                                dx, accumulate_dx, dw_ih, dw_hh, db, dh0, dc0, work_dg, work_wt, work_dc, reverse,
                                stream):
        G = 4 if mode == 0 else 1
        GH = G * H
        Whh = _v(w_hh, (GH, H)).astype(np.float64)
        Wih = _v(w_ih, (GH, I)).astype(np.float64)
        DG = _v(work_dg, (T * B, GH)) if T * B else np.zeros((0, GH), np.float32)
        if B > 0:
            _v(work_wt, (H, GH))[...] = Whh.T  # the transpose kernel
            WT = _v(work_wt, (H, GH)).astype(np.float64)
            if mode == 0:
                DC = _v(work_dc, (B, H))
                DC[...] = _v(dc_n, (B, H)) if dc_n else 0.0
            Y = _v(y, (T, B, ldy)) if T else None
            DY = _v(dy, (T, B, ldy)) if T else None
            for j in range(T + 1):  # T + 1 launches
                if j > 0:
                    tprev = j - 1 if reverse else T - j
                    S = DG[tprev * B:(tprev + 1) * B].astype(np.float64) @ WT.T
                else:
                    S = np.zeros((B, H))
                if j == 0 and dh_n:
                    S = S + _v(dh_n, (B, H))
                if j == T:
                    _v(dh0, (B, H))[...] = S
                    if mode == 0 and dc0:
                        _v(dc0, (B, H))[...] = DC
                    continue
                t = j if reverse else T - 1 - j
                tp = t + 1 if reverse else t - 1
                first = j == T - 1
                dh = S + DY[t, :, y_col:y_col + H]
                if mode == 0:
                    gt = _v(gates, (T * B, 4 * H))[t * B:(t + 1) * B].astype(np.float64)
                    i, f, gg, o = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:]
                    Cs = _v(cells, (T * B, H))
                    c = Cs[t * B:(t + 1) * B].astype(np.float64)
                    if first:
                        cp_ = _v(c0, (B, H)).astype(np.float64) if c0 else 0.0
                    else:
                        cp_ = Cs[tp * B:(tp + 1) * B].astype(np.float64)
                    tc = np.tanh(c)
                    dcv = DC + dh * o * (1 - tc * tc)
                    DG[t * B:(t + 1) * B] = np.concatenate(
                        [dcv * gg * i * (1 - i), dcv * cp_ * f * (1 - f), dcv * i * (1 - gg * gg), dh * tc * o * (1 - o)], 1)
                    DC[...] = dcv * f
                else:
                    h = Y[t, :, y_col:y_col + H].astype(np.float64)
                    DG[t * B:(t + 1) * B] = dh * ((1 - h * h) if mode == 1 else (h > 0))
        D = DG.astype(np.float64)
        X = _v(x, (T * B, I)).astype(np.float64) if T * B else np.zeros((0, I))
        _v(dw_ih, (GH, I))[...] = D.T @ X
        dWhh = np.zeros((GH, H))
        if T > 1 and B > 0:
            Yf = _v(y, (T * B, ldy))[:, y_col:y_col + H].astype(np.float64)
            if reverse:
                dWhh += D[:(T - 1) * B].T @ Yf[B:]
            else:
                dWhh += D[B:].T @ Yf[:(T - 1) * B]
        if h0 and T > 0 and B > 0:
            tf = T - 1 if reverse else 0
            dWhh += D[tf * B:(tf + 1) * B].T @ _v(h0, (B, H)).astype(np.float64)
        _v(dw_hh, (GH, H))[...] = dWhh
        if db:
            _v(db, (GH,))[...] = D.sum(0)
        if T * B:
            DX = _v(dx, (T * B, I))
            DX[...] = (DX.astype(np.float64) if accumulate_dx else 0.0) + D @ Wih

    return {k: v for k, v in locals().items() if k.startswith("cuda_")}


def install(core):
    """Put the stand-ins on fastlayers._core and point _cuda_conv_rnn's pointer helper at the
    stand-in arrays (as dryrun_plugin does for _cuda)."""
    from fastlayers import _cuda_conv_rnn

    for name, fn in {**_conv_mocks(), **_rnn_mocks()}.items():
        setattr(core, name, fn)
    _cuda_conv_rnn._ptr = lambda a: 0 if a is None else int(np.asarray(a).__array_interface__["data"][0])

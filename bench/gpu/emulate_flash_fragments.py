#!/usr/bin/env python3
"""CPU-only check of the index math of the flash attention kernels (csrc/attention/attention_flash.cuh).

    python bench/gpu/emulate_flash_fragments.py [--quick]        (prints ALL OK)

A line-by-line NumPy port of flash_fwd_kernel and flash_bwd_kernel at warp level: every lane's
registers, the ldmatrix / mma.sync m16n8k16 fragment layouts of the PTX ISA manual (the same
emulation as emulate_tc_fragments.py, which checks them for the GEMM), the shared-memory tile
loaders (chunk -> row/column, zero fill past the edge), the quad reductions of the online
softmax, the accumulator -> A-operand re-packing of P and dS, the dS^T shared tile, the
causal tile skipping and the heads walk of the backward. Arithmetic is float64 and the packs
do not round, so the results must equal the float64 reference (fastlayers.reference) to
~1e-12: any index slip shows up as an O(1) error. Every configuration the launchers use is
run, on ragged sizes (L, S not multiples of the tiles), causal or not, with a mask that
leaves some rows empty, and GQA (two query heads per kv head) in the backward.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
from fastlayers import reference as R

LOG2E = 1.4426950408889634
LN2 = 0.69314718055994531
NEG = -np.inf


# ---- PTX fragment layouts ---------------------------------------------------------------
def ldmatrix(smem, addrs, trans):
    """x4: lane l supplies the row address of matrix l // 8 (row l % 8). regs[lane][j] =
    (e0, e1): non-trans -> row lane//4, cols 2(lane%4)+{0,1}; trans -> the transpose."""
    regs = [[None] * 4 for _ in range(32)]
    for j in range(4):
        M = np.array([smem[addrs[8 * j + r]: addrs[8 * j + r] + 8] for r in range(8)])
        assert M.shape == (8, 8), "ldmatrix row past the end of shared memory"
        for t in range(32):
            if not trans:
                regs[t][j] = (M[t // 4, 2 * (t % 4)], M[t // 4, 2 * (t % 4) + 1])
            else:
                regs[t][j] = (M[2 * (t % 4), t // 4], M[2 * (t % 4) + 1, t // 4])
    return regs


def mma(acc, a, b0, b1):
    """acc[lane][4] += A (16x16 from a[lane][4] pairs) @ B (16x8 from b0/b1[lane] pairs)."""
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for (r, c0, reg) in ((g, 2 * t, 0), (g + 8, 2 * t, 1), (g, 2 * t + 8, 2), (g + 8, 2 * t + 8, 3)):
            A[r, c0], A[r, c0 + 1] = a[lane][reg]
        B[2 * t, g], B[2 * t + 1, g] = b0[lane]
        B[2 * t + 8, g], B[2 * t + 9, g] = b1[lane]
    C = A @ B
    for lane in range(32):
        g, t = lane // 4, lane % 4
        acc[lane][0] += C[g, 2 * t]
        acc[lane][1] += C[g, 2 * t + 1]
        acc[lane][2] += C[g + 8, 2 * t]
        acc[lane][3] += C[g + 8, 2 * t + 1]


def col(regs, j):
    return [regs[lane][j] for lane in range(32)]


# ---- the kernel's addressing helpers (attention_kernels.cuh), verbatim -------------------
def frag_a_rowmajor(lane, ld, m0, k0):
    return (m0 + (lane & 15)) * ld + k0 + (lane >> 4) * 8


def frag_a_colmajor(lane, ld, m0, k0):
    return (k0 + (lane & 7) + (lane >> 4) * 8) * ld + m0 + ((lane >> 3) & 1) * 8


def frag_b_nmajor(lane, ld, k0, n0):
    return (n0 + (lane & 7) + (lane >> 4) * 8) * ld + k0 + ((lane >> 3) & 1) * 8


def frag_b_kmajor(lane, ld, k0, n0):
    return (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * ld + n0 + (lane >> 4) * 8


def addrs(fn, *args):
    return [fn(lane, *args) for lane in range(32)]


def load_rows(smem, base, G, rows, cols, ld, threads, row0, rows_lim):
    """load_rows_async: chunk c of thread tid + i * THREADS -> row c / (cols/8), col (c % (cols/8)) * 8."""
    per_row = cols // 8
    chunks = rows * per_row
    done = set()
    for tid in range(threads):
        for i in range((chunks + threads - 1) // threads):
            c = tid + i * threads
            if chunks % threads != 0 and c >= chunks:
                break
            r, cc = c // per_row, (c % per_row) * 8
            gr = row0 + r
            dst = base + r * ld + cc
            smem[dst:dst + 8] = G[gr, cc:cc + 8] if gr < rows_lim else 0.0
            done.add(c)
    assert len(done) == chunks


def pack(lo, hi):
    return (lo, hi)  # the kernel rounds to half here; the emulator keeps float64


# ---- forward -----------------------------------------------------------------------------
def flash_fwd(cfg, Q, K, V, maskf, causal, scale):
    """One head: out (L, E), lse (L,), by running every block and warp of flash_fwd_kernel."""
    E, WARPS, MT, BC, QREG = cfg
    THREADS, BR, LD = WARPS * 32, WARPS * 16 * MT, E + 8
    KS, NS, NO, KP = E // 16, BC // 8, E // 8, BC // 16
    L, S = Q.shape[0], K.shape[0]
    scale_log2 = scale * LOG2E
    out = np.full((L, E), np.nan)
    lse = np.full(L, np.nan)
    ntiles = (L + BR - 1) // BR
    for bx in range(ntiles):
        q0 = (ntiles - 1 - bx) * BR
        sQ = np.full(BR * LD, np.nan)
        sK = np.full(2 * BC * LD, np.nan)
        sV = np.full(2 * BC * LD, np.nan)
        kend = S
        if causal and q0 + BR < kend:
            kend = q0 + BR
        nkt = (kend + BC - 1) // BC
        load_rows(sQ, 0, Q, BR, E, LD, THREADS, q0, L)
        for warp in range(WARPS):
            wrow = warp * 16 * MT
            o = np.zeros((MT, NO, 32, 4))
            m = np.full((MT, 2, 32), NEG)
            lsum = np.zeros((MT, 2, 32))
            qf = [[ldmatrix(sQ, addrs(frag_a_rowmajor, LD, wrow + mt * 16, ks * 16), False) for ks in range(KS)]
                  for mt in range(MT)]
            for jt in range(nkt):
                k_base, k0 = (jt & 1) * BC * LD, jt * BC
                # (the kernel's double buffer: tile jt lands in stage jt & 1; the emulator runs the
                # warps one after the other, so each warp re-stages the tile it is on)
                load_rows(sK, k_base, K, BC, E, LD, THREADS, k0, S)
                load_rows(sV, k_base, V, BC, E, LD, THREADS, k0, S)
                s = np.zeros((MT, NS, 32, 4))
                for ks in range(KS):
                    for np_ in range(NS // 2):
                        r = ldmatrix(sK[k_base:], addrs(frag_b_nmajor, LD, ks * 16, np_ * 16), False)
                        for mt in range(MT):
                            mma(s[mt][2 * np_], qf[mt][ks], col(r, 0), col(r, 1))
                            mma(s[mt][2 * np_ + 1], qf[mt][ks], col(r, 2), col(r, 3))
                edge = k0 + BC > S or (causal and k0 + BC - 1 > q0 + wrow) or maskf is not None
                for mt in range(MT):
                    for h in range(2):
                        mx = np.full(32, NEG)
                        for lane in range(32):
                            g, t4 = lane >> 2, lane & 3
                            row = q0 + wrow + mt * 16 + g + h * 8
                            for n in range(NS):
                                for e in range(2):
                                    x = s[mt][n][lane][2 * h + e] * scale_log2
                                    if edge:
                                        c = k0 + n * 8 + 2 * t4 + e
                                        if c >= S or (causal and c > row) or row >= L:
                                            x = NEG
                                        elif maskf is not None:
                                            x += maskf[row, c] * LOG2E
                                    s[mt][n][lane][2 * h + e] = x
                                    mx[lane] = max(mx[lane], x)
                        mx = np.maximum(mx, mx[np.arange(32) ^ 1])  # __shfl_xor 1, 2
                        mx = np.maximum(mx, mx[np.arange(32) ^ 2])
                        m_old = m[mt][h].copy()
                        m_new = np.maximum(m_old, mx)
                        with np.errstate(invalid="ignore"):
                            alpha = np.where(m_old == NEG, 0.0, np.exp2(m_old - m_new))
                        m_use = np.where(m_new == NEG, 0.0, m_new)
                        for lane in range(32):
                            tot = 0.0
                            for n in range(NS):
                                for e in range(2):
                                    p = 2.0 ** (s[mt][n][lane][2 * h + e] - m_use[lane])
                                    s[mt][n][lane][2 * h + e] = p
                                    tot += p
                            lsum[mt][h][lane] = lsum[mt][h][lane] * alpha[lane] + tot
                            for n in range(NO):
                                o[mt][n][lane][2 * h] *= alpha[lane]
                                o[mt][n][lane][2 * h + 1] *= alpha[lane]
                        m[mt][h] = m_new
                v_base = (jt & 1) * BC * LD
                for kk in range(KP):
                    pa = [[[pack(s[mt][2 * kk][ln][0], s[mt][2 * kk][ln][1]),
                            pack(s[mt][2 * kk][ln][2], s[mt][2 * kk][ln][3]),
                            pack(s[mt][2 * kk + 1][ln][0], s[mt][2 * kk + 1][ln][1]),
                            pack(s[mt][2 * kk + 1][ln][2], s[mt][2 * kk + 1][ln][3])] for ln in range(32)]
                          for mt in range(MT)]
                    for np_ in range(NO // 2):
                        r = ldmatrix(sV[v_base:], addrs(frag_b_kmajor, LD, kk * 16, np_ * 16), True)
                        for mt in range(MT):
                            mma(o[mt][2 * np_], pa[mt], col(r, 0), col(r, 1))
                            mma(o[mt][2 * np_ + 1], pa[mt], col(r, 2), col(r, 3))
            for mt in range(MT):
                for h in range(2):
                    lt = lsum[mt][h].copy()
                    lt = lt + lt[np.arange(32) ^ 1]
                    lt = lt + lt[np.arange(32) ^ 2]
                    for lane in range(32):
                        g, t4 = lane >> 2, lane & 3
                        row = q0 + wrow + mt * 16 + g + h * 8
                        if row >= L:
                            continue
                        inv = 1.0 / lt[lane] if lt[lane] > 0 else 0.0
                        for n in range(NO):
                            out[row, n * 8 + 2 * t4] = o[mt][n][lane][2 * h] * inv
                            out[row, n * 8 + 2 * t4 + 1] = o[mt][n][lane][2 * h + 1] * inv
                        if t4 == 0:
                            lse[row] = (m[mt][h][lane] + math.log2(lt[lane])) * LN2 if lt[lane] > 0 else NEG
    return out, lse


# ---- backward ----------------------------------------------------------------------------
def flash_bwd(cfg, Qs, K, V, dOs, lses, maskfs, causal, scale, delta_s):
    """One kv head with len(Qs) query heads (GQA): (dQ per query head, dK, dV) from every
    block of flash_bwd_kernel (one call per pass for the two-pass configuration)."""
    E, BR, passes, WARPS = cfg
    BC, THREADS, LD, LDS = 16 * WARPS, 32 * WARPS, E + 8, BR + 8
    KS, NQ, KQ, NE = E // 16, BR // 8, BR // 16, E // 8
    WQM = BR // 16
    WQN = WARPS // WQM
    QCOLS = E // WQN
    NQE = QCOLS // 8
    group = len(Qs)
    L, S = Qs[0].shape[0], K.shape[0]
    scale_log2 = scale * LOG2E
    dq_acc = [np.zeros((L, E)) for _ in range(group)]
    dK = np.full((S, E), np.nan)
    dV = np.full((S, E), np.nan)
    for do_dv, do_dkq in passes:
        for bx in range((S + BC - 1) // BC):
            k0 = bx * BC
            sK = np.full(BC * LD, np.nan)
            sV = np.full(BC * LD, np.nan)
            load_rows(sK, 0, K, BC, E, LD, THREADS, k0, S)
            load_rows(sV, 0, V, BC, E, LD, THREADS, k0, S)
            nqt_all = (L + BR - 1) // BR
            qt_first = (k0 // BR if k0 // BR < nqt_all else nqt_all) if causal else 0
            nq = nqt_all - qt_first
            dk = np.zeros((WARPS, NE, 32, 4))
            dv = np.zeros((WARPS, NE, 32, 4))
            for step in range(nq * group):
                gi, q0 = step // nq, (qt_first + step % nq) * BR
                sQ = np.full(BR * LD, np.nan)
                sdO = np.full(BR * LD, np.nan)
                load_rows(sQ, 0, Qs[gi], BR, E, LD, THREADS, q0, L)
                load_rows(sdO, 0, dOs[gi], BR, E, LD, THREADS, q0, L)
                sL = np.zeros(BR)
                sD = np.zeros(BR)
                for i in range(BR):
                    row = q0 + i
                    lse2, dl = np.inf, 0.0
                    if row < L:
                        ls = lses[gi][row]
                        lse2 = np.inf if ls == NEG else ls * LOG2E
                        dl = delta_s[gi][row]
                    sL[i], sD[i] = lse2, dl
                sdS = np.full(BC * LDS, np.nan)
                ps = []
                for warp in range(WARPS):
                    kr0 = warp * 16
                    p = np.zeros((NQ, 32, 4))
                    for ks in range(KS):
                        af = ldmatrix(sK, addrs(frag_a_rowmajor, LD, kr0, ks * 16), False)
                        for np_ in range(NQ // 2):
                            r = ldmatrix(sQ, addrs(frag_b_nmajor, LD, ks * 16, np_ * 16), False)
                            mma(p[2 * np_], af, col(r, 0), col(r, 1))
                            mma(p[2 * np_ + 1], af, col(r, 2), col(r, 3))
                    edge = k0 + BC > S or q0 + BR > L or (causal and k0 + BC - 1 > q0) or maskfs is not None
                    for n in range(NQ):
                        for lane in range(32):
                            g, t4 = lane >> 2, lane & 3
                            for e in range(4):
                                qc = n * 8 + 2 * t4 + (e & 1)
                                x = p[n][lane][e] * scale_log2
                                if edge:
                                    key, qrow = k0 + kr0 + g + (e >> 1) * 8, q0 + qc
                                    if key >= S or qrow >= L or (causal and key > qrow):
                                        x = NEG
                                    elif maskfs is not None:
                                        x += maskfs[gi][qrow, key] * LOG2E
                                with np.errstate(invalid="ignore"):
                                    p[n][lane][e] = 2.0 ** (x - sL[qc]) if not (x == NEG and sL[qc] == np.inf) \
                                        else 0.0
                    if do_dv:
                        for kk in range(KQ):
                            pa = [[pack(p[2 * kk][ln][0], p[2 * kk][ln][1]), pack(p[2 * kk][ln][2], p[2 * kk][ln][3]),
                                   pack(p[2 * kk + 1][ln][0], p[2 * kk + 1][ln][1]),
                                   pack(p[2 * kk + 1][ln][2], p[2 * kk + 1][ln][3])] for ln in range(32)]
                            for np_ in range(NE // 2):
                                r = ldmatrix(sdO, addrs(frag_b_kmajor, LD, kk * 16, np_ * 16), True)
                                mma(dv[warp][2 * np_], pa, col(r, 0), col(r, 1))
                                mma(dv[warp][2 * np_ + 1], pa, col(r, 2), col(r, 3))
                    if do_dkq:
                        dp = np.zeros((NQ, 32, 4))
                        for ks in range(KS):
                            af = ldmatrix(sV, addrs(frag_a_rowmajor, LD, kr0, ks * 16), False)
                            for np_ in range(NQ // 2):
                                r = ldmatrix(sdO, addrs(frag_b_nmajor, LD, ks * 16, np_ * 16), False)
                                mma(dp[2 * np_], af, col(r, 0), col(r, 1))
                                mma(dp[2 * np_ + 1], af, col(r, 2), col(r, 3))
                        for n in range(NQ):
                            for lane in range(32):
                                for e in range(4):
                                    p[n][lane][e] *= dp[n][lane][e] - sD[n * 8 + 2 * (lane & 3) + (e & 1)]
                        for kk in range(KQ):
                            da = [[pack(p[2 * kk][ln][0], p[2 * kk][ln][1]), pack(p[2 * kk][ln][2], p[2 * kk][ln][3]),
                                   pack(p[2 * kk + 1][ln][0], p[2 * kk + 1][ln][1]),
                                   pack(p[2 * kk + 1][ln][2], p[2 * kk + 1][ln][3])] for ln in range(32)]
                            for ln in range(32):
                                g, t4 = ln >> 2, ln & 3
                                for (rr, cc, j) in ((g, 0, 0), (g + 8, 0, 1), (g, 8, 2), (g + 8, 8, 3)):
                                    base = (kr0 + rr) * LDS + kk * 16 + cc + 2 * t4
                                    sdS[base], sdS[base + 1] = da[ln][j]
                            for np_ in range(NE // 2):
                                r = ldmatrix(sQ, addrs(frag_b_kmajor, LD, kk * 16, np_ * 16), True)
                                mma(dk[warp][2 * np_], da, col(r, 0), col(r, 1))
                                mma(dk[warp][2 * np_ + 1], da, col(r, 2), col(r, 3))
                    ps.append(p)
                if do_dkq:  # after __syncthreads: dQ = dS K, warp -> (rows mq, cols nq0..)
                    for warp in range(WARPS):
                        mq, nq0 = (warp % WQM) * 16, (warp // WQM) * QCOLS
                        dqa = np.zeros((NQE, 32, 4))
                        for kk in range(BC // 16):
                            af = ldmatrix(sdS, addrs(frag_a_colmajor, LDS, mq, kk * 16), True)
                            for np_ in range(NQE // 2):
                                r = ldmatrix(sK, addrs(frag_b_kmajor, LD, kk * 16, nq0 + np_ * 16), True)
                                mma(dqa[2 * np_], af, col(r, 0), col(r, 1))
                                mma(dqa[2 * np_ + 1], af, col(r, 2), col(r, 3))
                        for h in range(2):
                            for lane in range(32):
                                g, t4 = lane >> 2, lane & 3
                                row = q0 + mq + g + h * 8
                                if row >= L:
                                    continue
                                for n in range(NQE):
                                    c = nq0 + n * 8 + 2 * t4
                                    dq_acc[gi][row, c] += dqa[n][lane][2 * h] * scale
                                    dq_acc[gi][row, c + 1] += dqa[n][lane][2 * h + 1] * scale
            for warp in range(WARPS):
                for h in range(2):
                    for lane in range(32):
                        g, t4 = lane >> 2, lane & 3
                        key = k0 + warp * 16 + g + h * 8
                        if key >= S:
                            continue
                        for n in range(NE):
                            c = n * 8 + 2 * t4
                            if do_dkq:
                                dK[key, c:c + 2] = dk[warp][n][lane][2 * h:2 * h + 2] * scale
                            if do_dv:
                                dV[key, c:c + 2] = dv[warp][n][lane][2 * h:2 * h + 2]
    return dq_acc, dK, dV


# The launchers' configurations (attention_flash.cuh flash_forward_t / flash_backward_t).
FWD_CFGS = [(32, 4, 2, 64, True), (64, 8, 1, 64, True), (96, 8, 1, 64, True), (128, 8, 1, 64, True),
            (256, 4, 1, 32, False),
            (64, 8, 1, 128, True), (128, 4, 2, 16, False)]  # (the last two: FASTLAYERS_CUDA_ATTN_FWD_CFG=1)
BWD_CFGS = [(32, 64, [(True, True)], 4), (64, 64, [(True, True)], 4), (96, 32, [(True, True)], 4),
            (128, 32, [(True, True)], 4), (256, 16, [(True, False), (False, True)], 4),
            (64, 64, [(True, True)], 8), (128, 32, [(True, True)], 8)]  # (the last two: ATTN_BWD_CFG=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one configuration each way")
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    ok = True
    fwd_cfgs = FWD_CFGS[:1] if args.quick else FWD_CFGS
    bwd_cfgs = BWD_CFGS[:1] if args.quick else BWD_CFGS
    for cfg in fwd_cfgs:
        E, WARPS, MT, BC, _ = cfg
        BR = WARPS * 16 * MT
        L, S = BR + 5, BC + 9 if E >= 128 else 2 * BC + 9
        for causal, with_mask in ((False, False), (True, True)):
            Q, K, V = (rng.standard_normal((n, E)) for n in (L, S, S))
            maskf = None
            if with_mask:
                maskf = rng.standard_normal((L, S))
                maskf[rng.random((L, S)) < 0.2] = -np.inf
                maskf[3] = -np.inf  # an empty row
            scale = 1 / math.sqrt(E)
            out, lse = flash_fwd(cfg, Q, K, V, maskf, causal, scale)
            ro, rl = R.scaled_dot_product_attention(Q, K, V, attn_mask=maskf, is_causal=causal, return_lse=True)
            err = float(np.abs(out - ro).max())
            fin = np.isfinite(rl)
            lerr = float(np.abs(lse[fin] - rl[fin]).max())
            good = err < 1e-9 and lerr < 1e-9 and np.array_equal(np.isneginf(lse), np.isneginf(rl))
            ok &= good
            print(f"fwd E={E:3d} warps={WARPS} MT={MT} BC={BC} L={L} S={S} causal={causal:d} mask={with_mask:d}: "
                  f"max|out err|={err:.1e} max|lse err|={lerr:.1e} {'OK' if good else 'MISMATCH'}", flush=True)
    for cfg in bwd_cfgs:
        E, BR, passes, WARPS = cfg
        L, S = 2 * BR + 3, 16 * WARPS + 9
        for causal, with_mask in ((False, False), (True, True)):
            group = 2
            Qs = [rng.standard_normal((L, E)) for _ in range(group)]
            K, V = rng.standard_normal((S, E)), rng.standard_normal((S, E))
            dOs = [rng.standard_normal((L, E)) for _ in range(group)]
            maskfs = None
            if with_mask:
                maskfs = []
                for _ in range(group):
                    mf = rng.standard_normal((L, S))
                    mf[rng.random((L, S)) < 0.2] = -np.inf
                    mf[2] = -np.inf
                    maskfs.append(mf)
            scale = 1 / math.sqrt(E)
            Q3 = np.stack(Qs)
            K3, V3 = K[None], V[None]
            M3 = np.stack(maskfs) if with_mask else None
            out, lse = R.scaled_dot_product_attention(Q3, K3, V3, attn_mask=M3, is_causal=causal, enable_gqa=True,
                                                      return_lse=True)
            dO3 = np.stack(dOs)
            delta = (dO3 * out).sum(-1)
            rq, rk, rv = R.scaled_dot_product_attention_backward(dO3, Q3, K3, V3, out, lse, attn_mask=M3,
                                                                 is_causal=causal, enable_gqa=True)
            dq, dk, dv = flash_bwd(cfg, Qs, K, V, dOs, list(lse), maskfs, causal, scale, list(delta))
            errs = (float(np.abs(np.stack(dq) - rq).max()), float(np.abs(dk - rk[0]).max()),
                    float(np.abs(dv - rv[0]).max()))
            good = max(errs) < 1e-9
            ok &= good
            print(f"bwd E={E:3d} BR={BR} warps={WARPS} passes={len(passes)} L={L} S={S} group=2 causal={causal:d} "
                  f"mask={with_mask:d}: max err dq/dk/dv = {errs[0]:.1e}/{errs[1]:.1e}/{errs[2]:.1e} "
                  f"{'OK' if good else 'MISMATCH'}", flush=True)
    print("ALL OK" if ok else "FAILURES")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

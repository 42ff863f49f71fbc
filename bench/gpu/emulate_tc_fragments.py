#!/usr/bin/env python3
# CPU-only check of the index math in csrc/gemm/gemm.cu (no GPU needed): the formulas below are
# copied from the kernel; ldmatrix/mma.sync fragment layouts follow the PTX ISA manual.
# Run: python bench/gpu/emulate_tc_fragments.py  (prints ALL OK)
# Emulate the tensor-core kernel's fragment addressing for one block tile (BK=32) and check
# acc == A_tile @ B_tile for every layout and both configs.
import numpy as np

def ldmatrix(smem, addrs, trans):
    # addrs: 32 lane addresses (element offsets); returns regs[lane][j] = (e0, e1)
    regs = [[None]*4 for _ in range(32)]
    for j in range(4):
        rows = [smem[addrs[8*j + r]: addrs[8*j + r] + 8] for r in range(8)]
        M = np.array(rows)  # M[stored_row][col]
        for t in range(32):
            if not trans:
                regs[t][j] = (M[t//4, 2*(t%4)], M[t//4, 2*(t%4)+1])
            else:
                regs[t][j] = (M[2*(t%4), t//4], M[2*(t%4)+1, t//4])
    return regs

def mma(acc, a, b):
    # acc[lane][4], a[lane][4 regs of pairs], b[lane][2 regs of pairs]
    A = np.zeros((16, 16)); B = np.zeros((16, 8))
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for (r, c0, reg) in ((g, 2*t, 0), (g+8, 2*t, 1), (g, 2*t+8, 2), (g+8, 2*t+8, 3)):
            A[r, c0], A[r, c0+1] = a[lane][reg]
        for (k0, reg) in ((2*t, 0), (2*t+8, 1)):
            B[k0, g], B[k0+1, g] = b[lane][reg]
    C = A @ B
    for lane in range(32):
        g, t = lane // 4, lane % 4
        acc[lane][0] += C[g, 2*t]; acc[lane][1] += C[g, 2*t+1]
        acc[lane][2] += C[g+8, 2*t]; acc[lane][3] += C[g+8, 2*t+1]

def run(BM, BN, WM, WN, TA, TB):
    BK = 32
    rng = np.random.default_rng(0)
    A = rng.integers(-4, 5, size=(BM, BK)).astype(float)   # op(A) tile m x k
    B = rng.integers(-4, 5, size=(BK, BN)).astype(float)   # op(B) tile k x n
    LDA = BM + 8 if TA else BK + 8
    LDB = BK + 8 if TB else BN + 8
    sA = np.full((BK if TA else BM) * LDA, np.nan)
    sB = np.full((BN if TB else BK) * LDB, np.nan)
    for i in range(BM):
        for k in range(BK):
            if TA: sA[k*LDA + i] = A[i, k]
            else: sA[i*LDA + k] = A[i, k]
    for k in range(BK):
        for j in range(BN):
            if TB: sB[j*LDB + k] = B[k, j]
            else: sB[k*LDB + j] = B[k, j]
    WARPS_N = BN // WN
    MT, NT = WM // 16, WN // 8
    C = np.full((BM, BN), np.nan)
    for warp in range((BM // WM) * WARPS_N):
        wm, wn = warp // WARPS_N, warp % WARPS_N
        acc = [[[[0.0]*4 for _ in range(32)] for _ in range(NT)] for _ in range(MT)]
        for ks in range(BK // 16):
            kc = ks * 16
            af = []
            for mt in range(MT):
                mr = wm*WM + mt*16
                if not TA:
                    addrs = [(mr + (l & 15))*LDA + kc + (l >> 4)*8 for l in range(32)]
                    af.append(ldmatrix(sA, addrs, False))
                else:
                    addrs = [(kc + (l & 7) + (l >> 4)*8)*LDA + mr + ((l >> 3) & 1)*8 for l in range(32)]
                    af.append(ldmatrix(sA, addrs, True))
            bfr = [None]*NT
            for np_ in range(NT // 2):
                nc = wn*WN + np_*16
                if TB:
                    addrs = [(nc + (l & 7) + (l >> 4)*8)*LDB + kc + ((l >> 3) & 1)*8 for l in range(32)]
                    r = ldmatrix(sB, addrs, False)
                else:
                    addrs = [(kc + (l & 7) + ((l >> 3) & 1)*8)*LDB + nc + (l >> 4)*8 for l in range(32)]
                    r = ldmatrix(sB, addrs, True)
                bfr[2*np_] = [[r[l][0], r[l][1]] for l in range(32)]
                bfr[2*np_+1] = [[r[l][2], r[l][3]] for l in range(32)]
            for mt in range(MT):
                for nt in range(NT):
                    mma(acc[mt][nt], af[mt], bfr[nt])
        for mt in range(MT):
            for nt in range(NT):
                for lane in range(32):
                    col = wn*WN + nt*8 + (lane & 3)*2
                    for h in range(2):
                        row = wm*WM + mt*16 + (lane >> 2) + h*8
                        C[row, col] = acc[mt][nt][lane][2*h]
                        C[row, col+1] = acc[mt][nt][lane][2*h+1]
    ok = np.array_equal(C, A @ B)
    print(BM, BN, WM, WN, "TA" if TA else "NA", "TB" if TB else "NB", "OK" if ok else "MISMATCH")
    return ok

allok = True
for cfg in [(128,128,64,32), (128,256,64,64)]:
    for TA in (False, True):
        for TB in (False, True):
            allok &= run(*cfg, TA, TB)
print("ALL OK" if allok else "FAILURES")

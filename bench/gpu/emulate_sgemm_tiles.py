#!/usr/bin/env python3
# CPU-only check of sgemm_kernel's loader predication, shared layout and thread-to-result
# mapping in csrc/gemm/gemm.cu (formulas copied from the kernel). Run: python bench/gpu/emulate_sgemm_tiles.py
# Emulate sgemm_kernel's loaders (with predication), shared layout and 8x8 compute mapping for
# one whole problem of odd size; compare with A@B.
import numpy as np
BM=BN=128; BK=8
def run(m, n, k, TA, TB, lda_pad=0, ldb_pad=0):
    rng = np.random.default_rng(1)
    opA = rng.integers(-3, 4, size=(m, k)).astype(float)
    opB = rng.integers(-3, 4, size=(k, n)).astype(float)
    # stored arrays
    if not TA: lda = k + lda_pad; Ast = np.zeros((m, lda)); Ast[:, :k] = opA
    else: lda = m + lda_pad; Ast = np.zeros((k, lda)); Ast[:, :m] = opA.T
    if not TB: ldb = n + ldb_pad; Bst = np.zeros((k, ldb)); Bst[:, :n] = opB
    else: ldb = k + ldb_pad; Bst = np.zeros((n, ldb)); Bst[:, :k] = opB.T
    Af, Bf = Ast.ravel(), Bst.ravel()
    C = np.full((m, n), np.nan)
    def rd(flat, idx):
        assert 0 <= idx < flat.size, "OOB read"
        return flat[idx]
    for tm in range((m + BM - 1)//BM):
        for tn in range((n + BN - 1)//BN):
            m0, n0 = tm*BM, tn*BN
            acc = np.zeros((256, 8, 8))
            for k0 in range(0, k, BK):
                As = np.full((BK, BM+4), np.nan); Bs = np.full((BK, BN+4), np.nan)
                for tid in range(256):
                    l_row, l_kq, l_kk, l_cq = tid >> 1, (tid & 1)*4, tid >> 5, (tid & 31)*4
                    # A
                    if not TA:
                        base = (m0 + l_row)*lda + l_kq; row_ok = m0 + l_row < m; ci = l_kq + k0; lim = k; src = base + k0
                    else:
                        base = l_kk*lda + (m0 + l_cq); row_ok = l_kk + k0 < k; ci = m0 + l_cq; lim = m; src = base + k0*lda
                    ra = [rd(Af, src+j) if (row_ok and ci + j < lim) else 0.0 for j in range(4)]
                    if not TA:
                        for j in range(4): As[l_kq+j, l_row] = ra[j]
                    else:
                        As[l_kk, l_cq:l_cq+4] = ra
                    # B
                    if not TB:
                        base = l_kk*ldb + (n0 + l_cq); row_ok = l_kk + k0 < k; ci = n0 + l_cq; lim = n; src = base + k0*ldb
                    else:
                        base = (n0 + l_row)*ldb + l_kq; row_ok = n0 + l_row < n; ci = l_kq + k0; lim = k; src = base + k0
                    rb = [rd(Bf, src+j) if (row_ok and ci + j < lim) else 0.0 for j in range(4)]
                    if not TB:
                        Bs[l_kk, l_cq:l_cq+4] = rb
                    else:
                        for j in range(4): Bs[l_kq+j, l_row] = rb[j]
                assert not np.isnan(As[:, :BM]).any() and not np.isnan(Bs[:, :BN]).any()
                for tid in range(256):
                    tx, ty = tid & 15, tid >> 4
                    af = np.concatenate([As[:, ty*4:ty*4+4], As[:, 64+ty*4:64+ty*4+4]], axis=1)  # (BK, 8)
                    bf = np.concatenate([Bs[:, tx*4:tx*4+4], Bs[:, 64+tx*4:64+tx*4+4]], axis=1)
                    acc[tid] += af.T @ bf
            for tid in range(256):
                tx, ty = tid & 15, tid >> 4
                for i in range(8):
                    row = m0 + (ty*4+i if i < 4 else 64+ty*4+i-4)
                    if row >= m: continue
                    for h in range(2):
                        col = n0 + h*64 + tx*4
                        for j in range(4):
                            if col + j < n: C[row, col+j] = acc[tid, i, h*4+j]
    ok = np.array_equal(C, opA @ opB)
    print(m, n, k, TA, TB, "OK" if ok else "MISMATCH"); return ok
ok = True
for TA in (False, True):
    for TB in (False, True):
        ok &= run(130, 131, 13, TA, TB, 3, 1)
        ok &= run(5, 7, 9, TA, TB)
print("ALL OK" if ok else "FAIL")

// The portable GEMM framework: cache blocking, packing and threading (BLIS's five loops).
//
//   for jc in N step nc          B block kc x nc lives in L3, packed once per (jc, pc)
//     for pc in K step kc        by the whole team, in NR-wide micro-panels
//       for ic in M step mc      each thread packs its own mc x kc A block (L2)
//         for jr in nc step NR   the B micro-panel stays in L1 across the ir loop
//           for ir in mc step MR micro-kernel: MR x NR tile in registers
//
// The epilogue (bias + activation) runs on each tile right after its last kc block, while
// the tile is still in L1, so linear(..., activation) costs no extra pass over C.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "core/parallel.h"
#include "elementwise/elementwise_isa.h"
#include "gemm/gemm.h"
#include "gemm/ukernel.h"

namespace fl {
namespace {

index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }
index_t ceil_div(index_t x, index_t m) { return (x + m - 1) / m; }

// A grow-only 64-byte-aligned scratch buffer, one per thread (OpenMP keeps its threads,
// so the buffers survive between calls and large GEMMs do not page-fault every time).
struct Scratch {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data;
  index_t size = 0;
  float* get(index_t n) {
    if (n > size) {
      const index_t bytes = round_up(n * static_cast<index_t>(sizeof(float)), 64);
      data.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!data) throw std::bad_alloc();
      size = n;
    }
    return data.get();
  }
};

float* thread_scratch_a(index_t n) {
  thread_local Scratch s;
  return s.get(n);
}
float* thread_scratch_b(index_t n) {
  thread_local Scratch s;
  return s.get(n);
}

// Pack rows [0, mc) x cols [0, kc) of A (strided) into MR-row micro-panels, zero-padded.
void pack_a(const float* a, index_t rs, index_t cs, index_t mc, index_t kc, int mr_tile, float* dst) {
  for (index_t i0 = 0; i0 < mc; i0 += mr_tile) {
    const int rows = static_cast<int>(std::min<index_t>(mr_tile, mc - i0));
    const float* src = a + i0 * rs;
    if (cs == 1) {
      for (index_t p = 0; p < kc; ++p) {
        for (int i = 0; i < rows; ++i) dst[p * mr_tile + i] = src[i * rs + p];
        for (int i = rows; i < mr_tile; ++i) dst[p * mr_tile + i] = 0.0f;
      }
    } else {
      for (index_t p = 0; p < kc; ++p) {
        const float* col = src + p * cs;
        for (int i = 0; i < rows; ++i) dst[p * mr_tile + i] = col[i * rs];
        for (int i = rows; i < mr_tile; ++i) dst[p * mr_tile + i] = 0.0f;
      }
    }
    dst += kc * mr_tile;
  }
}

// Pack one NR-column micro-panel of B (kc x cols, strided), zero-padded to NR.
void pack_b_panel(const float* b, index_t rs, index_t cs, index_t kc, int cols, int nr_tile, float* dst) {
  if (cs == 1 && cols == nr_tile) {
    for (index_t p = 0; p < kc; ++p) std::memcpy(dst + p * nr_tile, b + p * rs, sizeof(float) * nr_tile);
    return;
  }
  for (index_t p = 0; p < kc; ++p) {
    const float* row = b + p * rs;
    float* out = dst + p * nr_tile;
    for (int j = 0; j < cols; ++j) out[j] = row[j * cs];
    for (int j = cols; j < nr_tile; ++j) out[j] = 0.0f;
  }
}

// C = beta * C (k == 0 or alpha == 0): no product to compute, only scaling and epilogue.
void scale_c(const GemmParams& p) {
  for (index_t i = 0; i < p.m; ++i) {
    float* row = p.c + i * p.ldc;
    if (p.beta == 0.0f) {
      std::fill(row, row + p.n, 0.0f);
    } else if (p.beta != 1.0f) {
      for (index_t j = 0; j < p.n; ++j) row[j] *= p.beta;
    }
  }
  apply_epilogue(p.c, p.ldc, p.m, p.n, p.row_bias, p.col_bias, p.act);
}

int choose_threads(const GemmParams& p) {
  if (p.num_threads > 0) return omp_in_parallel() ? 1 : p.num_threads;
  // Below ~2 MFLOP per thread the fork/join and shared packing cost more than they save.
  return threads_for(p.m * p.n * p.k, index_t{1} << 20);
}

void gemm_blocked(const GemmParams& p, const Ukernel& uk, int nt) {
  const int MR = uk.mr, NR = uk.nr;
  const index_t KC = uk.kc, NC = round_up(uk.nc, NR);
  const index_t MC = round_up(std::min<index_t>(uk.mc, round_up(p.m, MR)), MR);
  const index_t ic_blocks = ceil_div(p.m, MC);

  float* b_pack = thread_scratch_b(KC * std::min<index_t>(NC, round_up(p.n, NR)));

#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float* a_pack = thread_scratch_a(MC * KC);
    const int T = omp_get_num_threads();
    for (index_t jc = 0; jc < p.n; jc += NC) {
      const index_t nc = std::min(NC, p.n - jc);
      const index_t jr_panels = ceil_div(nc, NR);
      // Split columns too when there are fewer row blocks than threads (skinny M).
      const index_t j_groups = std::min<index_t>(jr_panels, std::max<index_t>(1, ceil_div(T, ic_blocks)));
      for (index_t pc = 0; pc < p.k; pc += KC) {
        const index_t kc = std::min(KC, p.k - pc);
        const bool last_k = pc + kc == p.k;
        const float beta = pc == 0 ? p.beta : 1.0f;

#pragma omp for schedule(static)
        for (index_t jp = 0; jp < jr_panels; ++jp) {
          const index_t j0 = jp * NR;
          pack_b_panel(p.b + pc * p.b_rs + (jc + j0) * p.b_cs, p.b_rs, p.b_cs, kc,
                       static_cast<int>(std::min<index_t>(NR, nc - j0)), NR, b_pack + jp * kc * NR);
        }  // implicit barrier: B block ready

        index_t packed_ic = -1;
#pragma omp for schedule(static)
        for (index_t item = 0; item < ic_blocks * j_groups; ++item) {
          const index_t ib = item / j_groups, jg = item % j_groups;
          const index_t ic = ib * MC, mc = std::min(MC, p.m - ic);
          if (ib != packed_ic) {
            pack_a(p.a + ic * p.a_rs + pc * p.a_cs, p.a_rs, p.a_cs, mc, kc, MR, a_pack);
            packed_ic = ib;
          }
          const index_t jp_begin = jr_panels * jg / j_groups, jp_end = jr_panels * (jg + 1) / j_groups;
          for (index_t jp = jp_begin; jp < jp_end; ++jp) {
            const index_t j0 = jp * NR;
            const int nr = static_cast<int>(std::min<index_t>(NR, nc - j0));
            const float* bp = b_pack + jp * kc * NR;
            for (index_t i0 = 0; i0 < mc; i0 += MR) {
              const int mr = static_cast<int>(std::min<index_t>(MR, mc - i0));
              float* ct = p.c + (ic + i0) * p.ldc + jc + j0;
              uk.fn(kc, a_pack + i0 * kc, bp, ct, p.ldc, p.alpha, beta, mr, nr);
              if (last_k)
                apply_epilogue(ct, p.ldc, mr, nr, p.row_bias ? p.row_bias + ic + i0 : nullptr,
                               p.col_bias ? p.col_bias + jc + j0 : nullptr, p.act);
            }
          }
        }  // implicit barrier: B block free to be overwritten
      }
    }
  }
}

}  // namespace

void apply_epilogue(float* c, index_t ldc, index_t m, index_t n, const float* row_bias,
                    const float* col_bias, Activation act) {
  if (m <= 0 || n <= 0 || (!row_bias && !col_bias && act == Activation::none)) return;
  elementwise_for(active_isa()).epilogue(c, ldc, m, n, row_bias, col_bias, act);
}

void run_gemm(const GemmParams& p) {
  FL_CHECK(p.m >= 0 && p.n >= 0 && p.k >= 0, "gemm: negative size m=", p.m, " n=", p.n, " k=", p.k);
  if (p.m == 0 || p.n == 0) return;
  if (p.k == 0 || p.alpha == 0.0f) {
    scale_c(p);
    return;
  }
  gemm_blocked(p, ukernel_for(active_isa()), choose_threads(p));
}

void run_gemm_batched(const GemmParams& p, index_t batch, index_t a_bs, index_t b_bs, index_t c_bs) {
  if (batch <= 0) return;
  const index_t flops_each = p.m * p.n * p.k;
  const int nt = threads_for(batch * flops_each, index_t{1} << 20);
  // One GEMM big enough for all threads: run them one after another, each threaded.
  if (nt <= 1 || flops_each >= (index_t{1} << 22) * nt) {
    for (index_t i = 0; i < batch; ++i) {
      GemmParams q = p;
      q.a += i * a_bs;
      q.b += i * b_bs;
      q.c += i * c_bs;
      run_gemm(q);
    }
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (index_t i = 0; i < batch; ++i) {
    GemmParams q = p;
    q.a += i * a_bs;
    q.b += i * b_bs;
    q.c += i * c_bs;
    q.num_threads = 1;
    run_gemm(q);
  }
}

}  // namespace fl

// The Winograd F(2x2, 3x3) transforms (see winograd.cpp), included once per ISA with
// FL_WINO_NS (and FL_WINO_AVX2 for the AVX2 build): loops over contiguous arrays, the
// stride-2 tile columns split into even and odd arrays first. Under AVX2 the even/odd split,
// its inverse and the output combination are written with intrinsics (GCC left them scalar:
// 0.68x the direct conv at 1x64x56x56, 1.22x with them); the rest vectorizes as written.
#include <algorithm>

#include "conv/winograd.h"
#if defined(FL_WINO_AVX2)
#include <immintrin.h>
#endif

#if !defined(FL_WINO_NS)
#error "define FL_WINO_NS before including winograd_impl.h"
#endif

namespace fl {
namespace winograd {
namespace FL_WINO_NS {
namespace {

// e[j] = row[2j], o[j] = row[2j + 1], j < n (reads row[0, 2n)).
void deinterleave(const float* row, float* __restrict e, float* __restrict o, index_t n) {
  index_t j = 0;
#if defined(FL_WINO_AVX2)
  for (; j + 8 <= n; j += 8) {
    const __m256 a = _mm256_loadu_ps(row + 2 * j), b = _mm256_loadu_ps(row + 2 * j + 8);
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]; likewise the odd ones.
    const __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    const __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    _mm256_storeu_ps(e + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8)));
    _mm256_storeu_ps(o + j, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xD8)));
  }
#endif
  for (; j < n; ++j) {
    e[j] = row[2 * j];
    o[j] = row[2 * j + 1];
  }
}

// y[2j] = e[j], y[2j + 1] = o[j] for 2j + 1 < n, and y[n - 1] = e[n/2] when n is odd.
void interleave(const float* e, const float* o, float* __restrict y, index_t n) {
  index_t j = 0;
#if defined(FL_WINO_AVX2)
  for (; 2 * j + 16 <= n; j += 8) {
    const __m256 a = _mm256_loadu_ps(e + j), b = _mm256_loadu_ps(o + j);
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    _mm256_storeu_ps(y + 2 * j, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(y + 2 * j + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
#endif
  for (; 2 * j + 1 < n; ++j) {
    y[2 * j] = e[j];
    y[2 * j + 1] = o[j];
  }
  if (n % 2) y[n - 1] = e[n / 2];
}

// A^T M for the tw tiles of one row of tiles: even and odd output columns of its two output
// rows (+ b); q: position 0 of the row, es floats between positions. Returns whether every
// value is finite (v - v is 0, or NaN where v is not).
bool output_columns(const float* q, index_t es, float b, index_t tw, float* __restrict e0, float* __restrict o0,
                    float* __restrict e1, float* __restrict o1) {
  index_t tx = 0;
  bool finite = true;
#if defined(FL_WINO_AVX2)
  const __m256 vb = _mm256_set1_ps(b);
  __m256 chk = _mm256_setzero_ps();
  for (; tx + 8 <= tw; tx += 8) {
    __m256 s0[4], s1[4];
    for (int j = 0; j < 4; ++j) {
      const __m256 m0 = _mm256_loadu_ps(q + j * es + tx), m1 = _mm256_loadu_ps(q + (4 + j) * es + tx);
      const __m256 m2 = _mm256_loadu_ps(q + (8 + j) * es + tx), m3 = _mm256_loadu_ps(q + (12 + j) * es + tx);
      s0[j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
      s1[j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
    }
    const __m256 r[4] = {_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0[0], s0[1]), s0[2]), vb),
                         _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s0[1], s0[2]), s0[3]), vb),
                         _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s1[0], s1[1]), s1[2]), vb),
                         _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s1[1], s1[2]), s1[3]), vb)};
    _mm256_storeu_ps(e0 + tx, r[0]);
    _mm256_storeu_ps(o0 + tx, r[1]);
    _mm256_storeu_ps(e1 + tx, r[2]);
    _mm256_storeu_ps(o1 + tx, r[3]);
    for (int i = 0; i < 4; ++i) chk = _mm256_add_ps(chk, _mm256_sub_ps(r[i], r[i]));
  }
  finite = _mm256_movemask_ps(_mm256_cmp_ps(chk, chk, _CMP_UNORD_Q)) == 0;
#endif
  float chk1 = 0.0f;
  for (; tx < tw; ++tx) {
    float s0[4], s1[4];
    for (int j = 0; j < 4; ++j) {
      const float m0 = q[j * es + tx], m1 = q[(4 + j) * es + tx], m2 = q[(8 + j) * es + tx], m3 = q[(12 + j) * es + tx];
      s0[j] = m0 + m1 + m2;
      s1[j] = m1 - m2 - m3;
    }
    e0[tx] = s0[0] + s0[1] + s0[2] + b;
    o0[tx] = s0[1] - s0[2] - s0[3] + b;
    e1[tx] = s1[0] + s1[1] + s1[2] + b;
    o1[tx] = s1[1] - s1[2] - s1[3] + b;
    chk1 += (e0[tx] - e0[tx]) + (o0[tx] - o0[tx]) + (e1[tx] - e1[tx]) + (o1[tx] - o1[tx]);
  }
  return finite && chk1 == 0.0f;
}

// U[e][k][c] = (G g G^T)[e], G = [[1,0,0],[1/2,1/2,1/2],[1/2,-1/2,1/2],[0,0,1]]. The 9 taps
// of weight row k are first copied to 9 arrays over c, so every line below runs over c.
void weights(const ConvParams& p, const float* w, index_t k0, index_t k1, float* u, float* scratch) {
  const index_t C = p.c, K = p.k;
  float* __restrict g = scratch;  // g[r*C + c] = w[k][c][r]
  float* __restrict t = scratch + 9 * C;  // (G g)[i][j] over c: t[(i*3 + j)*C + c]
  for (index_t k = k0; k < k1; ++k) {
    const float* wk = w + k * C * 9;
    for (index_t c = 0; c < C; ++c)
      for (int r = 0; r < 9; ++r) g[r * C + c] = wk[c * 9 + r];
    for (int j = 0; j < 3; ++j) {
      const float* g0 = g + j * C;
      const float* g1 = g + (3 + j) * C;
      const float* g2 = g + (6 + j) * C;
      for (index_t c = 0; c < C; ++c) {
        t[(0 * 3 + j) * C + c] = g0[c];
        t[(1 * 3 + j) * C + c] = 0.5f * (g0[c] + g1[c] + g2[c]);
        t[(2 * 3 + j) * C + c] = 0.5f * (g0[c] - g1[c] + g2[c]);
        t[(3 * 3 + j) * C + c] = g2[c];
      }
    }
    for (int i = 0; i < 4; ++i) {
      const float* a0 = t + (i * 3 + 0) * C;
      const float* a1 = t + (i * 3 + 1) * C;
      const float* a2 = t + (i * 3 + 2) * C;
      float* __restrict u0 = u + ((i * 4 + 0) * K + k) * C;
      float* __restrict u1 = u + ((i * 4 + 1) * K + k) * C;
      float* __restrict u2 = u + ((i * 4 + 2) * K + k) * C;
      float* __restrict u3 = u + ((i * 4 + 3) * K + k) * C;
      for (index_t c = 0; c < C; ++c) {
        u0[c] = a0[c];
        u1[c] = 0.5f * (a0[c] + a1[c] + a2[c]);
        u2[c] = 0.5f * (a0[c] - a1[c] + a2[c]);
        u3[c] = a2[c];
      }
    }
  }
}

// V[e][c][t] = (B^T d B)[e] for the tiles of tile rows [ty0, ty1) (t counted from ty0),
// B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]; d the 4x4 input at rows 2*ty - ph +
// [0, 4), columns 2*tx - pw + [0, 4), zero outside the image.
// Per row of tiles: the 4 padded input rows, split into even and odd columns (E[j] =
// row[2j], O[j] = row[2j + 1], j <= tw), combined down the rows (B^T d), then across.
void input(const ConvParams& p, const Geometry& gm, const float* x, index_t c0, index_t c1, index_t ty0, index_t ty1,
           float* v, float* scratch) {
  const index_t C = p.c, T = (ty1 - ty0) * gm.tw, wt = gm.wt, tw = gm.tw, half = tw + 1;
  float* __restrict row = scratch;               // wt
  float* __restrict eo = scratch + wt;           // 4 rows x (E, O), half each
  float* __restrict te = scratch + wt + 8 * half;  // B^T d: 4 rows x (E, O)
  const index_t lo = std::min(wt, p.pw), hi = std::max(lo, std::min(wt, p.w + p.pw));
  for (index_t c = c0; c < c1; ++c) {
    const float* xc = x + c * p.h * p.w;
    for (index_t ty = ty0; ty < ty1; ++ty) {
      for (int i = 0; i < 4; ++i) {
        float* __restrict e = eo + 2 * i * half;
        float* __restrict o = e + half;
        const index_t ih = 2 * ty - p.ph + i;
        if (ih < 0 || ih >= p.h) {
          for (index_t j = 0; j < 2 * half; ++j) e[j] = 0.0f;  // e and o
          continue;
        }
        const float* src = xc + ih * p.w - p.pw;
        for (index_t j = 0; j < lo; ++j) row[j] = 0.0f;
        for (index_t j = lo; j < hi; ++j) row[j] = src[j];
        for (index_t j = hi; j < wt; ++j) row[j] = 0.0f;
        deinterleave(row, e, o, half);
      }
      for (index_t j = 0; j < 2 * half; ++j) {  // E and O of each row at once
        const float r0 = eo[j], r1 = eo[2 * half + j], r2 = eo[4 * half + j], r3 = eo[6 * half + j];
        te[j] = r0 - r2;
        te[2 * half + j] = r1 + r2;
        te[4 * half + j] = r2 - r1;
        te[6 * half + j] = r1 - r3;
      }
      for (int i = 0; i < 4; ++i) {  // (B^T d) B: tile tx reads columns 2*tx + [0, 4)
        const float* e = te + 2 * i * half;
        const float* o = e + half;
        float* __restrict d0 = v + ((i * 4 + 0) * C + c) * T + (ty - ty0) * tw;
        float* __restrict d1 = v + ((i * 4 + 1) * C + c) * T + (ty - ty0) * tw;
        float* __restrict d2 = v + ((i * 4 + 2) * C + c) * T + (ty - ty0) * tw;
        float* __restrict d3 = v + ((i * 4 + 3) * C + c) * T + (ty - ty0) * tw;
        for (index_t tx = 0; tx < tw; ++tx) {
          d0[tx] = e[tx] - e[tx + 1];
          d1[tx] = o[tx] + e[tx + 1];
          d2[tx] = e[tx + 1] - o[tx];
          d3[tx] = o[tx] - o[tx + 1];
        }
      }
    }
  }
}

// y = A^T M A (+ bias) for tile rows [ty0, ty1), A^T = [[1,1,1,0],[0,1,-1,-1]]: each row of
// tiles as even and odd output columns of its two output rows, then interleaved into y
// (cut at OH, OW). Returns whether every output computed is finite.
bool output(const ConvParams& p, const Geometry& gm, const float* m, const float* bias, index_t k0, index_t k1,
            index_t ty0, index_t ty1, float* y, float* scratch) {
  const index_t K = p.k, T = (ty1 - ty0) * gm.tw, tw = gm.tw;
  float* __restrict e0 = scratch;
  float* __restrict o0 = scratch + tw;
  float* __restrict e1 = scratch + 2 * tw;
  float* __restrict o1 = scratch + 3 * tw;
  bool finite = true;
  for (index_t k = k0; k < k1; ++k) {
    const float b = bias ? bias[k] : 0.0f;
    float* yk = y + k * p.oh * p.ow;
    for (index_t ty = ty0; ty < ty1; ++ty) {
      const float* q = m + k * T + (ty - ty0) * tw;
      finite &= output_columns(q, K * T, b, tw, e0, o0, e1, o1);
      interleave(e0, o0, yk + 2 * ty * p.ow, p.ow);
      if (2 * ty + 1 < p.oh) interleave(e1, o1, yk + (2 * ty + 1) * p.ow, p.ow);
    }
  }
  return finite;
}

}  // namespace
}  // namespace FL_WINO_NS
}  // namespace winograd
}  // namespace fl

// CUDA attention: host dispatch, the generic (CUDA-core, float32 arithmetic) kernels, and the
// backward's pre/post passes. The tensor-core kernels are in attention_flash.cuh.
//
// Generic kernels: one warp per row, lanes split the head dimension (lane l owns elements
// l, l+32, ... : CH per lane, E and Ev <= 32 * CH), dot products reduced with shuffles and
// broadcast from lane 0 (every lane then takes the same branch and the same softmax state).
//   forward   warp = query row: for each key, s = q.k (one reduction), online softmax
//             (rescaling the lane's slice of the output), masks read per (row, key)
//   backward  delta = rowsum(dO * O) (prep_delta_kernel); dq: warp = query row, for each key
//             P from lse, dP = dO.v, dS = P (dP - delta), dq += dS k; dk/dv: warp = key row of
//             a kv head, for each query head of its group and each query: the same terms,
//             dv += P dO, dk += dS q. Two kernels and no atomics: nothing of size L x S.
// Slow next to the flash kernels (two reductions per score) but exact in float32 and taking
// any head dimension up to 512, any strides: the float32 path and the fallback.
#include <cstdlib>
#include <cstring>

#include "attention/attention_flash.cuh"
#include "core/cuda_math.cuh"

namespace fl {
namespace cuda {
namespace attn {
namespace {

constexpr int kRowsPerBlock = 4;  // warps (rows) per block of the generic kernels
constexpr int kGenThreads = 32 * kRowsPerBlock;

__device__ __forceinline__ float bcast_sum(float v) { return __shfl_sync(0xffffffffu, warp_sum(v), 0); }

template <typename T>
__device__ __forceinline__ float ld(const DevMats& m, int64_t base, int64_t r, int64_t c) {
  return Num<T>::to_f(static_cast<const T*>(m.ptr)[base + r * m.rs + c * m.cs]);
}

template <typename T, int CH>
__global__ void __launch_bounds__(kGenThreads) fwd_generic_kernel(KArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t bh = a.bh0 + blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (i >= a.L) return;  // whole warps leave; no block-level synchronisation below
  const int64_t kvh = bh / a.group;
  const int64_t qo = a.q.off[bh], ko = a.k.off[kvh], vo = a.v.off[kvh];
  const int64_t moff = a.mask_kind ? a.mask.off[bh] : 0;
  float q[CH], acc[CH];
#pragma unroll
  for (int c = 0; c < CH; ++c) {
    const int64_t e = lane + 32 * c;
    q[c] = e < a.E ? ld<T>(a.q, qo, i, e) * a.scale_log2 : 0.0f;
    acc[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int64_t jend = a.causal ? (i + 1 < a.S ? i + 1 : a.S) : a.S;
  for (int64_t j = 0; j < jend; ++j) {
    float d = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; ++c) {
      const int64_t e = lane + 32 * c;
      if (e < a.E) d += q[c] * ld<T>(a.k, ko, j, e);
    }
    float s = bcast_sum(d);
    if (a.mask_kind) s += mask_log2(a, moff, i, j);
    if (s == -INFINITY) continue;  // the same on every lane
    const float m_new = fmaxf(m, s);
    const float alpha = m == -INFINITY ? 0.0f : ex2(m - m_new);
    const float p = ex2(s - m_new);
    l = l * alpha + p;
#pragma unroll
    for (int c = 0; c < CH; ++c) {
      const int64_t e = lane + 32 * c;
      if (e < a.Ev) acc[c] = acc[c] * alpha + p * ld<T>(a.v, vo, j, e);
    }
    m = m_new;
  }
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  T* out = static_cast<T*>(a.out) + (bh * a.L + i) * a.Ev;
#pragma unroll
  for (int c = 0; c < CH; ++c) {
    const int64_t e = lane + 32 * c;
    if (e < a.Ev) out[e] = Num<T>::from_f(acc[c] * inv);
  }
  if (a.lse && lane == 0) a.lse[bh * a.L + i] = l > 0.0f ? (m + __log2f(l)) * kLn2 : -INFINITY;
}

// delta[bh, i] = sum_e dO * O (float32), one warp per row; also clears the flash dq accumulator.
template <typename T, int CH>
__global__ void __launch_bounds__(kGenThreads) prep_delta_kernel(KArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);  // bh * L + i
  if (row >= a.nbh * a.L) return;
  const T* g = static_cast<const T*>(a.dout) + row * a.Ev;
  const T* o = static_cast<const T*>(a.o) + row * a.Ev;
  float d = 0.0f;
#pragma unroll
  for (int c = 0; c < CH; ++c) {
    const int64_t e = lane + 32 * c;
    if (e < a.Ev) d += Num<T>::to_f(g[e]) * Num<T>::to_f(o[e]);
  }
  d = warp_sum(d);
  if (lane == 0) a.delta[row] = d;
  if (a.dq_acc) {
    for (int64_t e = lane; e < a.E; e += 32) a.dq_acc[row * a.E + e] = 0.0f;
  }
}

template <typename T, int CH>
__global__ void __launch_bounds__(kGenThreads) dq_generic_kernel(KArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t bh = a.bh0 + blockIdx.y;
  const int64_t i = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (i >= a.L) return;
  const int64_t kvh = bh / a.group;
  const int64_t qo = a.q.off[bh], ko = a.k.off[kvh], vo = a.v.off[kvh];
  const int64_t moff = a.mask_kind ? a.mask.off[bh] : 0;
  const int64_t row = bh * a.L + i;
  const float lse = a.lse_in[row];
  const float lse2 = lse * kLog2e, delta = a.delta[row];
  const T* g = static_cast<const T*>(a.dout) + row * a.Ev;
  float q[CH], go[CH], dq[CH];
#pragma unroll
  for (int c = 0; c < CH; ++c) {
    const int64_t e = lane + 32 * c;
    q[c] = e < a.E ? ld<T>(a.q, qo, i, e) * a.scale_log2 : 0.0f;
    go[c] = e < a.Ev ? Num<T>::to_f(g[e]) : 0.0f;
    dq[c] = 0.0f;
  }
  const int64_t jend = lse == -INFINITY ? 0 : (a.causal ? (i + 1 < a.S ? i + 1 : a.S) : a.S);
  for (int64_t j = 0; j < jend; ++j) {
    float kv[CH];  // this key's row, loaded once
    float d = 0.0f, dpp = 0.0f;
#pragma unroll
    for (int c = 0; c < CH; ++c) {
      const int64_t e = lane + 32 * c;
      kv[c] = e < a.E ? ld<T>(a.k, ko, j, e) : 0.0f;
      d += q[c] * kv[c];
      if (e < a.Ev) dpp += go[c] * ld<T>(a.v, vo, j, e);
    }
    float s = bcast_sum(d);
    if (a.mask_kind) s += mask_log2(a, moff, i, j);
    if (s == -INFINITY) continue;
    const float p = ex2(s - lse2);
    const float ds = p * (bcast_sum(dpp) - delta);
#pragma unroll
    for (int c = 0; c < CH; ++c) dq[c] += ds * kv[c];
  }
  T* out = static_cast<T*>(a.dq) + row * a.E;
#pragma unroll
  for (int c = 0; c < CH; ++c) {
    const int64_t e = lane + 32 * c;
    if (e < a.E) out[e] = Num<T>::from_f(dq[c] * a.scale);
  }
}

template <typename T, int CH>
__global__ void __launch_bounds__(kGenThreads) dkv_generic_kernel(KArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t kvh = a.bh0 + blockIdx.y;
  const int64_t j = int64_t(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (j >= a.S) return;
  const int64_t ko = a.k.off[kvh], vo = a.v.off[kvh];
  float kr[CH], vr[CH], dk[CH], dv[CH];
#pragma unroll
  for (int c = 0; c < CH; ++c) {
    const int64_t e = lane + 32 * c;
    kr[c] = e < a.E ? ld<T>(a.k, ko, j, e) * a.scale_log2 : 0.0f;
    vr[c] = e < a.Ev ? ld<T>(a.v, vo, j, e) : 0.0f;
    dk[c] = dv[c] = 0.0f;
  }
  for (int64_t gi = 0; gi < a.group; ++gi) {
    const int64_t bh = kvh * a.group + gi;
    const int64_t qo = a.q.off[bh];
    const int64_t moff = a.mask_kind ? a.mask.off[bh] : 0;
    const T* gbase = static_cast<const T*>(a.dout) + bh * a.L * a.Ev;
    for (int64_t i = a.causal ? j : 0; i < a.L; ++i) {
      const int64_t row = bh * a.L + i;
      const float lse = a.lse_in[row];
      if (lse == -INFINITY) continue;
      const T* qrow = static_cast<const T*>(a.q.ptr) + qo + i * a.q.rs;
      const T* grow = gbase + i * a.Ev;
      float qv[CH], gv[CH];  // this query's row and its output gradient, loaded once
      float d = 0.0f, dpp = 0.0f;
#pragma unroll
      for (int c = 0; c < CH; ++c) {
        const int64_t e = lane + 32 * c;
        qv[c] = e < a.E ? Num<T>::to_f(qrow[e * a.q.cs]) : 0.0f;
        gv[c] = e < a.Ev ? Num<T>::to_f(grow[e]) : 0.0f;
        d += kr[c] * qv[c];
        dpp += vr[c] * gv[c];
      }
      float s = bcast_sum(d);
      if (a.mask_kind) s += mask_log2(a, moff, i, j);
      if (s == -INFINITY) continue;
      const float p = ex2(s - lse * kLog2e);
      const float ds = p * (bcast_sum(dpp) - a.delta[row]);
#pragma unroll
      for (int c = 0; c < CH; ++c) {
        dv[c] += p * gv[c];
        dk[c] += ds * qv[c];
      }
    }
  }
  T* gk = static_cast<T*>(a.dk) + (kvh * a.S + j) * a.E;
  T* gv = static_cast<T*>(a.dv) + (kvh * a.S + j) * a.Ev;
#pragma unroll
  for (int c = 0; c < CH; ++c) {
    const int64_t e = lane + 32 * c;
    if (e < a.E) gk[e] = Num<T>::from_f(dk[c] * a.scale);
    if (e < a.Ev) gv[e] = Num<T>::from_f(dv[c]);
  }
}

template <typename T>
__global__ void dq_convert_kernel(const float* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = Num<T>::from_f(src[i]);
}

// ---- host side --------------------------------------------------------------------------
KArgs make_args(const AttentionCudaParams& p) {
  KArgs a{};
  a.nbh = p.nbh; a.group = p.group; a.L = p.L; a.S = p.S; a.E = p.E; a.Ev = p.Ev;
  auto dm = [](const AttnMats& m) { return DevMats{m.ptr, m.off, m.rs, m.cs}; };
  a.q = dm(p.q); a.k = dm(p.k); a.v = dm(p.v); a.mask = dm(p.mask);
  a.mask_kind = p.mask_kind;
  a.causal = p.causal ? 1 : 0;
  a.scale = p.scale;
  a.scale_log2 = p.scale * kLog2e;
  a.out = p.out; a.lse = p.lse;
  a.dout = p.dout; a.o = p.o; a.lse_in = p.lse_in;
  a.dq = p.dq; a.dk = p.dk; a.dv = p.dv;
  return a;
}

int chunks_for(int64_t e) {  // per-lane elements of the generic kernels: 1, 2, 4, 8 or 16
  int c = 1;
  while (32 * c < e) c *= 2;
  return c;
}

// KERNEL<T, CH> over a (rows / 4, heads) grid, heads split at 65535.

#define FL_ATTN_GENERIC_LAUNCHER(NAME, KERNEL)                                                             \
  template <typename T>                                                                                    \
  void NAME(const KArgs& a, int ch, int64_t rows, int64_t heads, cudaStream_t s) {                         \
    const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;                                     \
    FL_CHECK(blocks < (int64_t(1) << 31), "attention: ", rows, " rows are too many for one launch");         \
    if (blocks == 0 || heads == 0) return;                                                                 \
    for (int64_t h0 = 0; h0 < heads; h0 += 65535) {                                                        \
      KArgs b = a;                                                                                         \
      b.bh0 = h0;                                                                                          \
      const dim3 grid(unsigned(blocks), unsigned(heads - h0 < 65535 ? heads - h0 : 65535));                \
      switch (ch) {                                                                                        \
        case 1: KERNEL<T, 1><<<grid, kGenThreads, 0, s>>>(b); break;                                       \
        case 2: KERNEL<T, 2><<<grid, kGenThreads, 0, s>>>(b); break;                                       \
        case 4: KERNEL<T, 4><<<grid, kGenThreads, 0, s>>>(b); break;                                       \
        case 8: KERNEL<T, 8><<<grid, kGenThreads, 0, s>>>(b); break;                                       \
        default: KERNEL<T, 16><<<grid, kGenThreads, 0, s>>>(b); break;                                     \
      }                                                                                                    \
      check_launch(#KERNEL);                                                                               \
    }                                                                                                      \
  }

FL_ATTN_GENERIC_LAUNCHER(launch_fwd_generic, fwd_generic_kernel)
FL_ATTN_GENERIC_LAUNCHER(launch_prep_delta, prep_delta_kernel)
FL_ATTN_GENERIC_LAUNCHER(launch_dq_generic, dq_generic_kernel)
FL_ATTN_GENERIC_LAUNCHER(launch_dkv_generic, dkv_generic_kernel)
#undef FL_ATTN_GENERIC_LAUNCHER

template <typename T>
void forward_t(const AttentionCudaParams& p, const KArgs& a, cudaStream_t s) {
  launch_fwd_generic<T>(a, chunks_for(p.E > p.Ev ? p.E : p.Ev), p.L, p.nbh, s);
}

// Workspace layout: the flash dq accumulator first (offset 0: the 8-byte alignment of the
// float2 atomics on sm_90 holds for any nbh * L), then delta (nbh * L floats).
void set_workspace(const AttentionCudaParams& p, KArgs& a) {
  const bool flash = p.path == AttnPath::flash;
  a.dq_acc = flash ? p.workspace : nullptr;
  a.delta = flash ? p.workspace + p.nbh * p.L * p.E : p.workspace;
}

template <typename T>
void backward_t(const AttentionCudaParams& p, KArgs a, cudaStream_t s) {
  const int ch = chunks_for(p.E > p.Ev ? p.E : p.Ev);
  set_workspace(p, a);
  launch_prep_delta<T>(a, ch, p.nbh * p.L, 1, s);
  if (p.path == AttnPath::generic) {
    launch_dq_generic<T>(a, ch, p.L, p.nbh, s);
    launch_dkv_generic<T>(a, ch, p.S, p.nbh / p.group, s);
  }
}

template <typename T>
void dq_convert(const AttentionCudaParams& p, const float* acc, cudaStream_t s) {
  const int64_t n = p.nbh * p.L * p.E;
  dq_convert_kernel<T><<<blocks_for(n, 256), 256, 0, s>>>(acc, static_cast<T*>(p.dq), n);
  check_launch("dq_convert_kernel");
}

void check_params(const AttentionCudaParams& p, const char* fn) {
  FL_CHECK(p.nbh >= 0 && p.L >= 0 && p.S >= 0 && p.E >= 1 && p.Ev >= 0 && p.group >= 1 && p.nbh % p.group == 0,
           fn, ": bad sizes (nbh=", p.nbh, ", group=", p.group, ", L=", p.L, ", S=", p.S, ", E=", p.E, ", Ev=", p.Ev,
           ")");
  FL_CHECK(p.dtype >= 0 && p.dtype <= 2, fn, ": bad dtype code ", p.dtype);
  FL_CHECK(p.mask_kind >= 0 && p.mask_kind <= 2, fn, ": bad mask kind ", p.mask_kind);
  FL_CHECK(p.E <= kAttnGenericMaxHead && p.Ev <= kAttnGenericMaxHead, fn,
           ": head dimensions above ", kAttnGenericMaxHead, " are not supported on CUDA (E=", p.E, ", Ev=", p.Ev, ")");
  if (p.path == AttnPath::flash)
    FL_CHECK(attention_flash_supported(p.dtype, p.E, p.Ev) && p.q.cs == 1 && p.k.cs == 1 && p.v.cs == 1 &&
                 p.q.rs % 8 == 0 && p.k.rs % 8 == 0 && p.v.rs % 8 == 0,
             fn, ": internal error, the flash path needs half inputs, E == Ev in {32, 64, 96, 128, 256} and "
             "aligned rows");
}

}  // namespace
}  // namespace attn

bool attention_flash_supported(int dtype, int64_t E, int64_t Ev) {
  return (dtype == 1 || dtype == 2) && E == Ev && (E == 32 || E == 64 || E == 96 || E == 128 || E == 256);
}

int64_t attention_backward_workspace(const AttentionCudaParams& p) {
  return p.nbh * p.L * (p.path == AttnPath::flash ? 1 + p.E : 1);
}

void attention_forward(const AttentionCudaParams& p, Stream stream) {
  attn::check_params(p, "attention_forward");
  if (p.nbh == 0 || p.L == 0) return;
  FL_CHECK(p.out && p.q.ptr && p.q.off && p.k.off && p.v.off, "attention_forward: null pointer");
  const auto s = static_cast<cudaStream_t>(stream);
  const attn::KArgs a = attn::make_args(p);
  if (p.path == AttnPath::flash) {
    if (p.dtype == 1) flash_forward_f16(a, p.E, s);
    else flash_forward_bf16(a, p.E, s);
    return;
  }
  switch (p.dtype) {
    case 0: attn::forward_t<float>(p, a, s); break;
    case 1: attn::forward_t<__half>(p, a, s); break;
    default: attn::forward_t<__nv_bfloat16>(p, a, s); break;
  }
}

void attention_backward(const AttentionCudaParams& p, Stream stream) {
  attn::check_params(p, "attention_backward");
  if (p.nbh == 0 || p.L == 0) return;  // (the caller zero-fills dk / dv)
  FL_CHECK(p.dout && p.o && p.lse_in && p.dq && p.workspace, "attention_backward: null pointer");
  FL_CHECK(p.S == 0 || (p.dk && p.dv), "attention_backward: null pointer");
  const auto s = static_cast<cudaStream_t>(stream);
  const attn::KArgs a = attn::make_args(p);
  switch (p.dtype) {
    case 0: attn::backward_t<float>(p, a, s); break;
    case 1: attn::backward_t<__half>(p, a, s); break;
    default: attn::backward_t<__nv_bfloat16>(p, a, s); break;
  }
  if (p.path == AttnPath::flash) {
    attn::KArgs b = a;
    attn::set_workspace(p, b);
    if (p.S > 0) {
      if (p.dtype == 1) flash_backward_f16(b, p.E, s);
      else flash_backward_bf16(b, p.E, s);
    }
    if (p.dtype == 1) attn::dq_convert<__half>(p, b.dq_acc, s);
    else attn::dq_convert<__nv_bfloat16>(p, b.dq_acc, s);
  }
}

}  // namespace cuda
}  // namespace fl

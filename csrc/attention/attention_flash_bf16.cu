// The flash attention kernels for __nv_bfloat16 (one translation unit per dtype: nvcc builds
// them in parallel and each stays around a minute).
#include "attention/attention_flash.cuh"

namespace fl {
namespace cuda {

void flash_forward_bf16(const attn::KArgs& a, int64_t E, cudaStream_t s) {
  attn::flash_forward_t<__nv_bfloat16>(a, E, s);
}
void flash_backward_bf16(const attn::KArgs& a, int64_t E, cudaStream_t s) {
  attn::flash_backward_t<__nv_bfloat16>(a, E, s);
}

}  // namespace cuda
}  // namespace fl

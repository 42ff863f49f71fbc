// The flash attention kernels for __half (one translation unit per dtype: nvcc builds them in
// parallel and each stays around a minute).
#include "attention/attention_flash.cuh"

namespace fl {
namespace cuda {

void flash_forward_f16(const attn::KArgs& a, int64_t E, cudaStream_t s) {
  attn::flash_forward_t<__half>(a, E, s);
}
void flash_backward_f16(const attn::KArgs& a, int64_t E, cudaStream_t s) {
  attn::flash_backward_t<__half>(a, E, s);
}

}  // namespace cuda
}  // namespace fl

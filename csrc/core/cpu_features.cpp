#include "core/cpu_features.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#if defined(FASTLAYERS_X86)
#include <cpuid.h>
#endif

namespace fl {
namespace {

#if defined(FASTLAYERS_X86)
unsigned long long read_xcr0() {
  unsigned int eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}

Isa probe_isa() {
  unsigned int eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Isa::generic;
  const bool osxsave = ecx & (1u << 27), fma = ecx & (1u << 12), avx = ecx & (1u << 28);
  if (!(osxsave && avx && fma)) return Isa::generic;
  const unsigned long long xcr0 = read_xcr0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;    // SSE and AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6;  // plus opmask and both zmm halves
  if (!os_ymm || __get_cpuid_max(0, nullptr) < 7) return Isa::generic;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  const bool avx2 = ebx & (1u << 5);
  const bool avx512f = ebx & (1u << 16), avx512dq = ebx & (1u << 17);
  const bool avx512bw = ebx & (1u << 30), avx512vl = ebx & (1u << 31);
  if (avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl) return Isa::avx512;
  if (avx2) return Isa::avx2;
  return Isa::generic;
}
#else
Isa probe_isa() { return Isa::generic; }
#endif

Isa clamp(Isa want) {
  const Isa best = detected_isa();
  return static_cast<int>(want) < static_cast<int>(best) ? want : best;
}

Isa initial_isa() {
  const char* env = std::getenv("FASTLAYERS_ISA");
  if (env == nullptr) return detected_isa();
  if (std::strcmp(env, "generic") == 0) return Isa::generic;
  if (std::strcmp(env, "avx2") == 0) return clamp(Isa::avx2);
  return detected_isa();
}

std::atomic<int>& active_slot() {
  static std::atomic<int> slot{static_cast<int>(initial_isa())};
  return slot;
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = probe_isa();
  return isa;
}

Isa active_isa() { return static_cast<Isa>(active_slot().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) { active_slot().store(static_cast<int>(clamp(isa))); }

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace fl

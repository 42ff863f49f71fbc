// Which SIMD instruction set this process may use, decided once by cpuid and the OS's
// XSAVE state (an AVX-512 CPU under an OS that does not save zmm registers must not use them).
#pragma once

namespace fl {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

// The best ISA the CPU and OS support, detected once.
Isa detected_isa();
// The ISA kernels use: detected_isa(), lowered by env FASTLAYERS_ISA=generic|avx2|avx512
// (never raised above what the CPU supports) or by set_isa().
Isa active_isa();
void set_isa(Isa isa);  // clamps to detected_isa()
const char* isa_name(Isa isa);

}  // namespace fl

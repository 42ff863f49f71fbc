// The norm row loops for the baseline ISA, and the choice of table by fl::active_isa().
#include "core/cpu_features.h"
#include "norm/norm_rows_impl.h"

namespace fl {

NormRowKernels norm_rows_generic() { return make_norm_rows(); }

// Each table is built on first use of its ISA only: building one runs code of that ISA (the
// compiler fills the struct with wide stores), which must not happen on a CPU without it.
const NormRowKernels& norm_row_kernels() {
#if defined(FASTLAYERS_X86)
  switch (active_isa()) {
    case Isa::avx512: {
      static const NormRowKernels t = norm_rows_avx512();
      return t;
    }
    case Isa::avx2: {
      static const NormRowKernels t = norm_rows_avx2();
      return t;
    }
    default: break;
  }
#endif
  static const NormRowKernels generic = norm_rows_generic();
  return generic;
}

}  // namespace fl

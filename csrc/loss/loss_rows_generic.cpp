// The cross-entropy loops for the baseline ISA, and the choice of table by fl::active_isa().
#include "core/cpu_features.h"
#include "loss/loss_rows_impl.h"

namespace fl {

LossRowKernels loss_rows_generic() { return make_loss_rows(); }

// A table is built on first use of its ISA only (building it runs code of that ISA).
const LossRowKernels& loss_row_kernels() {
#if defined(FASTLAYERS_X86)
  switch (active_isa()) {
    case Isa::avx512: {
      static const LossRowKernels t = loss_rows_avx512();
      return t;
    }
    case Isa::avx2: {
      static const LossRowKernels t = loss_rows_avx2();
      return t;
    }
    default: break;
  }
#endif
  static const LossRowKernels generic = loss_rows_generic();
  return generic;
}

}  // namespace fl

// The cross-entropy loops compiled with the avx512 flags (same source as the generic ones).
#if defined(FASTLAYERS_X86)
#include "loss/loss_rows_impl.h"

namespace fl {

LossRowKernels loss_rows_avx512() { return make_loss_rows(); }

}  // namespace fl
#endif

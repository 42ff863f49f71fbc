// The norm row loops compiled with the avx512 flags (same source as the generic ones).
#if defined(FASTLAYERS_X86)
#include "norm/norm_rows_impl.h"

namespace fl {

NormRowKernels norm_rows_avx512() { return make_norm_rows(); }

}  // namespace fl
#endif

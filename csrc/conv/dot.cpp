// Baseline build of the narrow-panel dot products (see dot.h).
#define FL_DOT_NS dot_generic
#include "conv/dot_impl.h"

// Winograd F(2x2, 3x3) conv2d forward for 3x3, stride 1, dilation 1, one group (winograd.cpp;
// the transforms, compiled per ISA, in winograd_impl.h).
#pragma once

#include "conv/conv.h"

namespace fl {

// Whether conv2d_forward takes this path for these sizes.
bool winograd_eligible(const ConvParams& p);

// y = conv(x, w) + bias on nt threads; p must be winograd_eligible. Returns false, with y
// undefined, when an output is not finite: the transforms add and subtract input values
// that the direct sum keeps apart, so one Inf or NaN would spread as NaN over its whole
// 4x4 tile (outputs it does not reach in the direct sum); the caller then computes y again
// the direct way.
bool winograd_forward(const ConvParams& p, const float* x, const float* w, const float* bias, float* y, int nt);

namespace winograd {

constexpr int kTile = 16;  // positions of a transformed 4x4 tile

struct Geometry {
  index_t th, tw;      // tile rows and columns of one image
  index_t band;        // tile rows a pass transforms (V and M hold band * tw tiles)
  index_t wt;         // floats of a padded row of tiles: 2*tw + 2
  index_t scratch;    // floats of per-thread scratch the transforms need
};

// U[e][k][c] for output channels [k0, k1); scratch: Geometry::scratch floats.
using WeightFn = void (*)(const ConvParams& p, const float* w, index_t k0, index_t k1, float* u, float* scratch);
// V[e][c][t] of one image's channels [c0, c1), tiles of tile rows [ty0, ty1).
using InputFn = void (*)(const ConvParams& p, const Geometry& gm, const float* x, index_t c0, index_t c1, index_t ty0,
                         index_t ty1, float* v, float* scratch);
// One image's y for output channels [k0, k1), tile rows [ty0, ty1), from M[e][k][t] (+ bias);
// false when a value is not finite.
using OutputFn = bool (*)(const ConvParams& p, const Geometry& gm, const float* m, const float* bias, index_t k0,
                          index_t k1, index_t ty0, index_t ty1, float* y, float* scratch);

struct Transforms {
  WeightFn weights;
  InputFn input;
  OutputFn output;
};

Transforms transforms_generic();
Transforms transforms_avx2();  // x86 builds only

}  // namespace winograd
}  // namespace fl

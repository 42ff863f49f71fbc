"""Convolution benchmark cases: the ResNet-18 3x3 layers at batch 8 and 1, 1x1 (bottleneck)
and depthwise 3x3 (MobileNet) layers, a ResNeXt grouped layer, the backward pass (data +
weight gradients) and a DCGAN transposed convolution, beside the NumPy reference (im2col +
einsum) and PyTorch CPU (oneDNN)."""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from fastlayers import _core
from fastlayers import reference as R
from common import Case

RESNET_3X3 = [(64, 56), (128, 28), (256, 14), (512, 7)]


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)


def _conv_case(rng, torch, n, c, h, k, r, stride=1, padding=1, groups=1, op="conv2d 3x3", numpy=True):
    x = _rand(rng, n, c, h, h)
    w = _rand(rng, k, c // groups, r, r, scale=(c // groups * r * r) ** -0.5)
    oh = (h + 2 * padding - r) // stride + 1
    flops = 2.0 * n * k * (c // groups) * r * r * oh * oh
    tx, tw = (torch.from_numpy(x), torch.from_numpy(w)) if torch else (None, None)
    winograd = _core.conv2d_forward_is_winograd(x, w, np.empty((n, k, oh, oh), np.float32), stride, stride, padding,
                                                padding, 1, 1, groups)
    return Case("conv", op, f"{n}x{c}x{h}x{h} -> {k}, s{stride}" + (f" g{groups}" if groups > 1 else ""),
                lambda: fl.conv2d(x, w, None, stride, padding, 1, groups),
                numpy=(lambda: R.conv2d(x, w, None, stride, padding, 1, groups)) if numpy else None,
                torch=(lambda: torch.nn.functional.conv2d(tx, tw, None, stride, padding, 1, groups)) if torch else None,
                flops=flops, extra={"batch": n, "algorithm": "winograd" if winograd else "direct/gemm"},
                note=WINOGRAD_NOTE if winograd else "")


# Shown beside the rows fastlayers computes by Winograd F(2x2, 3x3) (csrc/conv/winograd.cpp).
WINOGRAD_NOTE = ("Winograd F(2x2, 3x3): 2.25x fewer multiplications; GFLOP/s and % of peak count the direct "
                 "convolution's FLOPs (effective rate)")


def _backward_case(rng, torch, n, c, h):
    x, g = _rand(rng, n, c, h, h), _rand(rng, n, c, h, h)
    w = _rand(rng, c, c, 3, 3, scale=(9 * c) ** -0.5)
    flops = 2 * (2.0 * n * c * c * 9 * h * h)  # data gradient + weight gradient

    def fl_fn():
        gx, gw, _ = fl.conv2d_backward(g, x, w, None, 1, 1)
        return gx, gw

    torch_fn = None
    if torch:
        tx, tw, tg = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(g)

        def torch_fn():
            gx, gw, _ = torch.ops.aten.convolution_backward(tg, tx, tw, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                            [True, True, False])
            return gx, gw

    return Case("conv", "conv2d 3x3 backward", f"{n}x{c}x{h}x{h} -> {c}", fl_fn, torch=torch_fn, flops=flops,
                rtol=2e-3, note="data + weight gradients; NumPy reference skipped (minutes per call)",
                extra={"batch": n})


def cases(quick: bool, torch=None) -> list[Case]:
    rng = np.random.default_rng(0)
    out: list[Case] = []
    layers = RESNET_3X3[:2] if quick else RESNET_3X3
    for n in (8, 1):
        for c, h in layers:
            out.append(_conv_case(rng, torch, n, c, h, c, 3))
    out.append(_conv_case(rng, torch, 8, 3, 224, 64, 7, stride=2, padding=3, op="conv2d 7x7 stem"))
    for c, h, k in ([(256, 56, 64)] if quick else [(256, 56, 64), (64, 56, 256), (1024, 14, 256)]):
        out.append(_conv_case(rng, torch, 8, c, h, k, 1, padding=0, op="conv2d 1x1"))
    for c, h, s in ([(128, 56, 1)] if quick else [(128, 56, 1), (256, 56, 2), (512, 14, 1), (1024, 7, 1)]):
        out.append(_conv_case(rng, torch, 8, c, h, c, 3, stride=s, groups=c, op="conv2d depthwise 3x3"))
    out.append(_conv_case(rng, torch, 8, 256, 28, 256, 3, groups=32, op="conv2d grouped 3x3"))
    for c, h in layers:
        out.append(_backward_case(rng, torch, 8, c, h))

    # DCGAN generator layer: 4x4 stride 2 padding 1 transposed convolution, 256 -> 128 channels.
    x = _rand(rng, 8, 256, 16, 16)
    w = _rand(rng, 256, 128, 4, 4, scale=(256 * 16) ** -0.5)
    tx, tw = (torch.from_numpy(x), torch.from_numpy(w)) if torch else (None, None)
    out.append(Case("conv", "conv_transpose2d 4x4", "8x256x16x16 -> 128, s2",
                    lambda: fl.conv_transpose2d(x, w, None, 2, 1),
                    numpy=lambda: R.conv_transpose2d(x, w, None, 2, 1),
                    torch=(lambda: torch.nn.functional.conv_transpose2d(tx, tw, None, 2, 1)) if torch else None,
                    flops=2.0 * 8 * 256 * 128 * 16 * 16 * 16))
    return out

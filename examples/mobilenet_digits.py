"""A MobileNet-style CNN on the 8x8 digits: depthwise-separable convolutions (a 3x3 depthwise
convolution, groups = channels, then a 1x1 pointwise one), each with BatchNorm and ReLU.

    python examples/mobilenet_digits.py    # ~97% test accuracy
"""

from __future__ import annotations

from _common import accuracy, digits, seed_all, train_classifier

from fastlayers import nn, optim


def separable(c_in, c_out, stride=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(),
        nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
    )


def build():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),  # 16 x 8 x 8
        separable(16, 32),                                                          # 32 x 8 x 8
        separable(32, 64, stride=2),                                                # 64 x 4 x 4
        separable(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits(images=True)
    model = build()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=2 if quick else 15, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"MobileNet-style test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

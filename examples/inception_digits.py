"""An Inception-style network on the 8x8 digits: parallel 1x1, 3x3, 5x5 and pooling branches,
concatenated along the channels (nn.Parallel).

    python examples/inception_digits.py    # ~98% test accuracy
"""

from __future__ import annotations

from _common import accuracy, digits, seed_all, train_classifier

from fastlayers import nn, optim


def conv_bn(c_in, c_out, k, **kw):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, bias=False, **kw), nn.BatchNorm2d(c_out), nn.ReLU())


def inception(c_in, c1, c3r, c3, c5r, c5, cp):
    return nn.Parallel(
        conv_bn(c_in, c1, 1),
        nn.Sequential(conv_bn(c_in, c3r, 1), conv_bn(c3r, c3, 3, padding=1)),
        nn.Sequential(conv_bn(c_in, c5r, 1), conv_bn(c5r, c5, 5, padding=2)),
        nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn(c_in, cp, 1)),
    )  # out channels c1 + c3 + c5 + cp


def build():
    return nn.Sequential(
        conv_bn(1, 16, 3, padding=1),                       # 16 x 8 x 8
        inception(16, 8, 8, 16, 4, 8, 8),                   # 40 x 8 x 8
        nn.MaxPool2d(2),                                    # 40 x 4 x 4
        inception(40, 16, 16, 24, 4, 8, 8),                 # 56 x 4 x 4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(56, 10),
    )


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits(images=True)
    model = build()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=2 if quick else 12, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"Inception test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

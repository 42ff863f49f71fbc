"""A small ResNet on the 8x8 digits: residual blocks y = relu(body(x) + shortcut(x)), with a 1x1
strided convolution as the shortcut where the shape changes.

    python examples/resnet_digits.py       # ~98% test accuracy
"""

from __future__ import annotations

from _common import accuracy, digits, seed_all, train_classifier

from fastlayers import nn, optim


def block(c_in, c_out, stride=1):
    body = nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
    )
    shortcut = None
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
    return nn.Sequential(nn.Residual(body, shortcut), nn.ReLU())


def build():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),  # 16 x 8 x 8
        block(16, 16),
        block(16, 32, stride=2),                                                    # 32 x 4 x 4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits(images=True)
    model = build()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=2 if quick else 12, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"ResNet test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

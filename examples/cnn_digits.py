"""A small CNN with BatchNorm, MaxPool and Dropout on the 8x8 digits.

    conv3x3(16)-BN-ReLU-maxpool -> conv3x3(32)-BN-ReLU-maxpool -> dropout -> linear(10)

    python examples/cnn_digits.py          # >= 97% test accuracy
"""

from __future__ import annotations

from _common import accuracy, digits, seed_all, train_classifier

from fastlayers import nn, optim


def build():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),   # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),  # 32 x 2 x 2
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, 10),
    )


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits(images=True)
    model = build()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=3 if quick else 20, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"CNN test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

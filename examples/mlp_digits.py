"""A multilayer perceptron on scikit-learn's 8x8 digits (64 pixels -> 128 -> 10).

    python examples/mlp_digits.py          # >= 96% test accuracy
"""

from __future__ import annotations

from _common import accuracy, digits, seed_all, train_classifier

from fastlayers import nn, optim


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits()
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.Adam(model.parameters(), lr=2e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=3 if quick else 30, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"MLP test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

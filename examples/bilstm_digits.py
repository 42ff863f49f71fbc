"""A stacked (2-layer) bidirectional LSTM reading the digit rows as a sequence; the final states of
both directions go to a linear classifier.

    python examples/bilstm_digits.py       # ~97% test accuracy
"""

from __future__ import annotations

from _common import accuracy, digits, seed_all, train_classifier
from lstm_digits import RowLSTM

from fastlayers import optim


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits()
    model = RowLSTM(hidden=32, num_layers=2, bidirectional=True)
    opt = optim.Adam(model.parameters(), lr=5e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=3 if quick else 25, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"bidirectional 2-layer LSTM test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

"""An LSTM reading each 8x8 digit as a sequence of 8 rows of 8 pixels; the last hidden state
goes to a linear classifier.

    python examples/lstm_digits.py         # ~97% test accuracy
"""

from __future__ import annotations

import numpy as np
from _common import accuracy, digits, seed_all, train_classifier

from fastlayers import nn, optim


class RowLSTM(nn.Module):
    """(N, 64) pixels -> rows (N, 8, 8) -> LSTM -> h at the last step -> Linear."""

    def __init__(self, hidden=64, num_layers=1, bidirectional=False):
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional)
        d = 2 if bidirectional else 1
        self.head = nn.Linear(d * hidden, 10)
        self.hidden, self.d = hidden, d

    def forward(self, x):
        out, _ = self.lstm(x.reshape(-1, 8, 8))  # (N, T, d*H)
        self._out_shape = out.shape
        H = self.hidden
        # forward direction: its last step; reverse direction: its last step is t = 0
        feat = out[:, -1, :H] if self.d == 1 else np.concatenate([out[:, -1, :H], out[:, 0, H:]], axis=1)
        return self.head(np.ascontiguousarray(feat))

    def backward(self, grad_out):
        g_feat = self.head.backward(grad_out)
        H = self.hidden
        g_out = np.zeros(self._out_shape, np.float32)
        g_out[:, -1, :H] = g_feat[:, :H]
        if self.d == 2:
            g_out[:, 0, H:] = g_feat[:, H:]
        return self.lstm.backward(g_out).reshape(-1, 64)


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits()
    model = RowLSTM(hidden=64)
    opt = optim.Adam(model.parameters(), lr=5e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=3 if quick else 25, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"LSTM test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

"""A Transformer encoder classifier reading each 8x8 digit as 8 tokens (its rows): a linear token
embedding plus learned positions, two TransformerEncoderLayers, mean pooling, a linear head.

    python examples/transformer_digits.py  # ~97% test accuracy
"""

from __future__ import annotations

import numpy as np
from _common import accuracy, digits, seed_all, train_classifier

from fastlayers import nn, optim


class RowTransformer(nn.Module):
    def __init__(self, d_model=32, nhead=4, num_layers=2, dim_feedforward=64, dropout=0.1):
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        self.pos = nn.Parameter(nn.init.normal((8, d_model), std=0.02))
        self.encoder = nn.Sequential(*[
            nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True, norm_first=True)
            for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 10)

    def forward(self, x):
        tokens = self.embed(x.reshape(-1, 8, 8)) + self.pos.data  # (N, 8 tokens, d_model)
        h = self.norm(self.encoder(tokens))
        return self.head(np.ascontiguousarray(h.mean(axis=1)))

    def backward(self, grad_out):
        g = self.head.backward(grad_out)                                  # (N, d_model)
        g = np.ascontiguousarray(np.broadcast_to(g[:, None, :] / 8, (g.shape[0], 8, g.shape[1])))
        g = self.encoder.backward(self.norm.backward(g))
        self.pos.accumulate(g.sum(axis=0))
        return self.embed.backward(g).reshape(-1, 64)


def main(quick=False):
    seed_all(0)
    x_tr, y_tr, x_te, y_te = digits()
    model = RowTransformer()
    opt = optim.Adam(model.parameters(), lr=2e-3)
    train_classifier(model, opt, x_tr, y_tr, epochs=3 if quick else 25, batch_size=32)
    acc = accuracy(model, x_te, y_te)
    print(f"Transformer test accuracy: {acc:.4f}")
    return acc


if __name__ == "__main__":
    main()

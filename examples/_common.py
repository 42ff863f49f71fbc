"""Shared bits of the examples: the digits data, minibatches, a classifier training loop."""

from __future__ import annotations

import time

import numpy as np

import fastlayers as fl


def digits(images=False, test_fraction=0.25, seed=0):
    """scikit-learn's bundled 8x8 digits (1797 images, nothing downloaded), scaled to [0, 1] and
    split at random: (x_train, y_train, x_test, y_test). images=True gives (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    if images:
        x = x.reshape(-1, 1, 8, 8)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


def batches(n, batch_size, rng):
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def predict(model, x, batch_size=512):
    model.eval()
    out = np.concatenate([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train()
    return out


def accuracy(model, x, y):
    return float((predict(model, x).argmax(axis=1) == y).mean())


def train_classifier(model, opt, x, y, epochs, batch_size=64, seed=0, log=print):
    """Minibatch training with cross-entropy; returns the last epoch's mean loss."""
    from fastlayers import nn

    crit = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        total, count = 0.0, 0
        for idx in batches(len(y), batch_size, rng):
            loss = crit(model(x[idx]), y[idx])
            opt.zero_grad()
            model.backward(crit.backward())
            opt.step()
            total += loss * len(idx)
            count += len(idx)
        if log and (epoch == epochs - 1 or epoch % max(1, epochs // 5) == 0):
            log(f"epoch {epoch + 1:3d}/{epochs}  loss {total / count:.4f}  ({time.perf_counter() - t0:.1f} s)")
    return total / count


def seed_all(seed):
    fl.manual_seed(seed)
    return np.random.default_rng(seed)

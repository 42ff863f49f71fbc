"""A single neuron (Rosenblatt's perceptron, trained here with a logistic loss): it separates
linearly separable data perfectly and cannot learn XOR, whatever it is given.

    python examples/perceptron.py          # separable: 100% accuracy; XOR: at most 75%
"""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from fastlayers import nn, optim


def train_neuron(x, y, epochs, lr=0.5):
    neuron = nn.Linear(2, 1)
    crit = nn.BCEWithLogitsLoss()
    opt = optim.SGD(neuron.parameters(), lr=lr)
    t = y.reshape(-1, 1).astype(np.float32)
    for _ in range(epochs):
        crit(neuron(x), t)
        opt.zero_grad()
        neuron.backward(crit.backward())
        opt.step()
    return float(((neuron(x)[:, 0] > 0) == (y > 0.5)).mean())


def main(quick=False):
    fl.manual_seed(0)
    rng = np.random.default_rng(0)
    # Two Gaussian blobs on either side of the line x0 + x1 = 0, with a margin.
    n = 200
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.5, (n, 2)) + np.where(y[:, None] == 1, 1.5, -1.5)
    separable = train_neuron(x.astype(np.float32), y, epochs=50 if quick else 200)
    # XOR: (0,0)->0, (0,1)->1, (1,0)->1, (1,1)->0; no line puts 4 of 4 on the right side.
    xor_x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    xor_y = np.array([0, 1, 1, 0])
    xor = train_neuron(xor_x, xor_y, epochs=100 if quick else 1000)
    print(f"perceptron accuracy: separable data {separable:.3f}, XOR {xor:.2f} (a line gets at most 0.75)")
    return {"separable": separable, "xor": xor}


if __name__ == "__main__":
    main()

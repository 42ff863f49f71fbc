"""A convolutional autoencoder on the 8x8 digits: strided convolutions down to a 32 x 2 x 2 code,
transposed convolutions back up to 8x8, trained on the pixel MSE.

    python examples/autoencoder_digits.py  # test MSE ~4% of the mean-image baseline's
"""

from __future__ import annotations

import numpy as np
from _common import batches, digits, predict, seed_all

from fastlayers import nn, optim


def build():
    encoder = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),     # 16 x 4 x 4
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),    # 32 x 2 x 2: a 128-number code
    )
    decoder = nn.Sequential(
        nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # 16 x 4 x 4
        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),  # 1 x 8 x 8
    )
    return nn.Sequential(encoder, decoder)


def main(quick=False):
    rng = seed_all(0)
    x_tr, _, x_te, _ = digits(images=True)
    model = build()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    crit = nn.MSELoss()
    for _ in range(3 if quick else 30):
        for idx in batches(len(x_tr), 32, rng):
            crit(model(x_tr[idx]), x_tr[idx])
            opt.zero_grad()
            model.backward(crit.backward())
            opt.step()
    mse = float(np.mean((predict(model, x_te) - x_te) ** 2))
    baseline = float(np.mean((x_tr.mean(axis=0) - x_te) ** 2))
    print(f"autoencoder test MSE {mse:.4f} (mean-image baseline {baseline:.4f}, ratio {mse / baseline:.3f})")
    return {"mse": mse, "baseline": baseline, "ratio": mse / baseline}


if __name__ == "__main__":
    main()

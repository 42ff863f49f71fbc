"""A GAN on a 2-D mixture of 8 Gaussians on a ring: an MLP generator against an MLP
discriminator, trained with the non-saturating loss. The generator's gradient comes through the
discriminator's backward (its gradient w.r.t. its input).

    python examples/gan_mixture.py         # covers 7-8 of the 8 modes, ~85% of samples near a mode
"""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from fastlayers import nn, optim

CENTERS = np.array([[2 * np.cos(a), 2 * np.sin(a)] for a in np.arange(8) * np.pi / 4])
STD = 0.05
NOISE = 8


def sample_real(n, rng):
    return (CENTERS[rng.integers(0, 8, n)] + STD * rng.standard_normal((n, 2))).astype(np.float32)


def evaluate(gen, rng, n=2000):
    """(modes covered, fraction of samples within 4 std of a mode, mean distance to the nearest mode)."""
    gen.eval()
    x = gen(rng.standard_normal((n, NOISE)).astype(np.float32))
    gen.train()
    d = np.linalg.norm(x[:, None, :] - CENTERS[None], axis=2)
    nearest, dist = d.argmin(axis=1), d.min(axis=1)
    good = dist < 4 * STD
    modes = int(sum((good & (nearest == k)).sum() >= 0.02 * n for k in range(8)))
    return modes, float(good.mean()), float(dist.mean())


def main(quick=False):
    fl.manual_seed(0)
    rng = np.random.default_rng(0)
    gen = nn.Sequential(nn.Linear(NOISE, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 2))
    disc = nn.Sequential(nn.Linear(2, 128), nn.LeakyReLU(0.2), nn.Linear(128, 128), nn.LeakyReLU(0.2),
                         nn.Linear(128, 1))
    opt_g = optim.Adam(gen.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.999))
    crit = nn.BCEWithLogitsLoss()
    batch = 128
    ones, zeros = np.ones((batch, 1), np.float32), np.zeros((batch, 1), np.float32)
    start = evaluate(gen, rng)
    for step in range(400 if quick else 3000):
        fake = gen(rng.standard_normal((batch, NOISE)).astype(np.float32))
        # discriminator: real -> 1, fake -> 0
        opt_d.zero_grad()
        crit(disc(sample_real(batch, rng)), ones)
        disc.backward(crit.backward())
        crit(disc(fake), zeros)
        disc.backward(crit.backward())
        opt_d.step()
        # generator: make the (updated) discriminator say 1 on the fakes
        crit(disc(fake), ones)
        grad_fake = disc.backward(crit.backward())  # also fills disc's grads: cleared next step
        opt_g.zero_grad()
        gen.backward(grad_fake)
        opt_g.step()
    modes, good, dist = evaluate(gen, rng)
    print(f"GAN: {modes}/8 modes covered, {good:.2f} of samples within 4 std of a mode, mean distance to the "
          f"nearest mode {dist:.3f} (untrained generator: {start[2]:.3f})")
    return {"modes": modes, "good": good, "distance": dist, "start_distance": start[2]}


if __name__ == "__main__":
    main()

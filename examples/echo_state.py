"""An echo-state network: a fixed random recurrent reservoir (nn.RNN with its weights set, never
trained) driven by the chaotic Mackey-Glass series; only a linear ridge-regression readout is
fitted, to predict the series `horizon` steps ahead.

    python examples/echo_state.py          # test NRMSE ~0.003 at 10 steps ahead (persistence: ~1.2)
"""

from __future__ import annotations

import numpy as np

import fastlayers as fl
from fastlayers import nn


def mackey_glass(n, tau=17, beta=0.2, gamma=0.1, power=10, substeps=10, seed=0):
    """Euler integration of dx/dt = beta x(t - tau) / (1 + x(t - tau)^power) - gamma x(t), sampled at
    unit time steps (tau = 17: the chaotic regime)."""
    rng = np.random.default_rng(seed)
    dt = 1.0 / substeps
    lag = tau * substeps
    hist = list(1.2 + 0.1 * rng.standard_normal(lag + 1))
    out = []
    for i in range(n * substeps + 1000 * substeps):  # 1000 steps of transient discarded
        x, xl = hist[-1], hist[-lag - 1]
        hist.append(x + dt * (beta * xl / (1 + xl**power) - gamma * x))
        if len(hist) > lag + 2:
            hist.pop(0)
        if i >= 1000 * substeps and i % substeps == 0:
            out.append(hist[-1])
    return np.asarray(out[:n])


def reservoir(size, spectral_radius, input_scale, rng):
    """nn.RNN(1, size) with a sparse random recurrent matrix rescaled to the spectral radius."""
    esn = nn.RNN(1, size, nonlinearity="tanh").eval()
    w = rng.standard_normal((size, size)) * (rng.random((size, size)) < 0.1)
    w *= spectral_radius / np.abs(np.linalg.eigvals(w)).max()
    esn.load_state_dict({
        "weight_ih_l0": rng.uniform(-input_scale, input_scale, (size, 1)),
        "weight_hh_l0": w,
        "bias_ih_l0": rng.uniform(-0.2, 0.2, size),
        "bias_hh_l0": np.zeros(size),
    })
    return esn


def main(quick=False, horizon=10):
    fl.manual_seed(0)
    rng = np.random.default_rng(0)
    n_train, n_test, washout = (600, 300, 100) if quick else (2000, 1000, 100)
    series = mackey_glass(n_train + n_test + horizon)
    u = (series - series.mean()) / series.std()
    esn = reservoir(100 if quick else 300, 0.9, 0.5, rng)
    states, _ = esn(u[:n_train + n_test].reshape(-1, 1, 1).astype(np.float32))  # (T, 1, size)
    s = np.concatenate([states[:, 0, :].astype(np.float64), np.ones((n_train + n_test, 1))], axis=1)
    target = u[horizon:horizon + n_train + n_test]
    tr = slice(washout, n_train)
    te = slice(n_train, n_train + n_test)
    ridge = 1e-6
    a = s[tr]
    w_out = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ target[tr])
    pred = s[te] @ w_out
    nrmse = float(np.sqrt(np.mean((pred - target[te]) ** 2)) / target[te].std())
    persistence = float(np.sqrt(np.mean((u[te] - target[te]) ** 2)) / target[te].std())
    print(f"echo-state network, Mackey-Glass {horizon} steps ahead: test NRMSE {nrmse:.4f} "
          f"(persistence baseline {persistence:.3f})")
    return nrmse


if __name__ == "__main__":
    main()

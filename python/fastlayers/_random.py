"""The one random generator behind layer initialisation and dropout seeds (fl.manual_seed)."""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def manual_seed(seed: int) -> None:
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    _rng = np.random.default_rng(int(seed))


def generator() -> np.random.Generator:
    return _rng

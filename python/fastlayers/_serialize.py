"""fl.save / fl.load: a module's state dict as a .npz file (keys are PyTorch's names)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["save", "load"]


def _state(obj):
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"save: expected a Module or a state dict, got {type(obj).__name__}")


def _host(v):
    if type(v).__module__.split(".", 1)[0] == "cupy":
        return v.get()
    if hasattr(v, "detach") and hasattr(v, "cpu"):
        return v.detach().cpu().numpy()
    return np.asarray(v)


def save(obj, path):
    """Write obj's state dict (obj: a Module or a dict name -> array) to path as .npz (NumPy adds
    the .npz suffix when path is a name without it)."""
    state = {k: _host(v) for k, v in _state(obj).items()}
    np.savez(path, **state)


def _resolve(path):
    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if not os.path.exists(p) and os.path.exists(p + ".npz"):
            return p + ".npz"
        return p
    return path  # a file object


def load(module, path, strict=True):
    """Load a .npz written by save into module (load_state_dict semantics); returns module.
    With module=None, returns the state dict itself."""
    with np.load(_resolve(path), allow_pickle=False) as f:
        state = {k: f[k] for k in f.files}
    if module is None:
        return state
    module.load_state_dict(state, strict=strict)
    return module

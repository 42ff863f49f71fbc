"""Plain-NumPy versions of every kernel: the oracle of the tests and a baseline of the
benchmarks. Same names and signatures as fastlayers.functional; dtype-generic (pass float64
for the truth). Written for clarity, not speed."""

import importlib as _importlib

_FAMILIES = ("gemm", "activations", "conv", "pool", "rnn", "attention", "norm", "loss", "misc")

__all__: list = []
for _family in _FAMILIES:
    # Modules are imported by name: their functions (gemm, ...) shadow the module names here.
    _mod = _importlib.import_module(f"{__name__}.{_family}")
    globals().update({_name: getattr(_mod, _name) for _name in _mod.__all__})
    __all__ += _mod.__all__

"""NumPy reference for the rnn kernels."""

__all__: list[str] = []

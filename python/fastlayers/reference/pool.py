"""NumPy reference for the pool kernels."""

__all__: list[str] = []

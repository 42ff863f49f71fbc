"""NumPy reference for the norm kernels."""

__all__: list[str] = []

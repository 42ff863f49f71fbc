"""NumPy reference for the conv kernels."""

__all__: list[str] = []

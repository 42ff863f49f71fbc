"""NumPy reference for the loss kernels."""

__all__: list[str] = []

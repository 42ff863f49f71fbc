"""NumPy reference for the attention kernels."""

__all__: list[str] = []

"""rnn kernels (see API.md)."""

__all__: list[str] = []

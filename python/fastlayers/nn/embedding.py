"""Embedding."""

from __future__ import annotations

from . import _kernels as K
from . import init
from .module import Module, Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    """weight (num_embeddings, embedding_dim) ~ N(0, 1) as PyTorch; the padding_idx row starts at
    zero and gets no gradient."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"padding_idx: {padding_idx} is out of range for {num_embeddings} embeddings")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        w = init.normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            w[padding_idx] = 0.0
        self.weight = Parameter(w)
        self._idx = None

    def forward(self, indices):
        self._idx = indices
        return K.embedding(indices, self.weight.data)

    def backward(self, grad_out):
        """Accumulates the weight gradient; indices have no gradient (returns None)."""
        self._need_cache("_idx")
        self.weight.accumulate(K.embedding_backward(grad_out, self._idx, self.weight.data, self.padding_idx))
        return None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"

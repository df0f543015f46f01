"""Embedding: a learned vector per token id, as torch.nn.Embedding."""

from __future__ import annotations

from typing import Annotated

import torch
from torch import Tensor

from minidl_cli.nn.module import Module, Parameter, show_shape
from minidl_cli.registry import Range, register


@register("layer", "embedding")
class Embedding(Module):
    """A learned vector per token id, as torch.nn.Embedding.

    y[n, t] = W[x[n, t]]: row x of a (num_embeddings, embedding_dim) table, W ~ N(0, 1) as
    torch.nn.Embedding initialises it.

    Shape: (N, T) int64 ids in 0..num_embeddings-1 -> (N, T, embedding_dim); any (N, *) ids
    -> (N, *, embedding_dim). Raises TypeError for floating-point inputs (ids are integers)
    and IndexError for an id outside the table.
    """

    token_ids = "take"  # looks the ids up: floats come out
    inferred = {"num_embeddings": "vocabulary_size"}  # the data's vocabulary, not a shape
    # the vocabulary is the least table; a larger one stands (nanoGPT pads 50257 to 50304)
    inferred_minimum = {"num_embeddings": "vocabulary entries"}

    def __init__(self, num_embeddings: int, embedding_dim: Annotated[int, Range(ge=1)]):
        if num_embeddings is None:  # the builder found no vocabulary to read it off
            raise ValueError("embedding takes token ids, and no vocabulary was given to read "
                             "num_embeddings off (a text data set has one); set num_embeddings "
                             "to the number of ids, or remove it")
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(f"Embedding needs num_embeddings and embedding_dim >= 1, got "
                             f"{num_embeddings}, {embedding_dim}")
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(torch.randn(num_embeddings, embedding_dim))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*input_shape, self.embedding_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_floating_point():
            raise TypeError(f"embedding takes int64 token ids, got {x.dtype} values of shape "
                            f"{show_shape(tuple(x.shape[1:]))}; put it first, on a text data set")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_embeddings):
            bad = int(x.max()) if int(x.max()) >= self.num_embeddings else int(x.min())
            raise IndexError(f"embedding: token id {bad} outside 0..{self.num_embeddings - 1}")
        self._ids = x
        return self.weight.data[x]  # a gather of rows

    def backward(self, grad_output: Tensor) -> None:
        # dL/dW[v] = Σ over the positions holding id v of g: a scatter-add of rows.
        E = self.embedding_dim
        self.weight.grad.index_add_(0, self._ids.reshape(-1), grad_output.reshape(-1, E))
        return None  # ids are not differentiable: nothing flows further back

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.Embedding(self.num_embeddings, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"

"""Attention: GELU, a learned positional embedding and multi-head self-attention, each
backward written out as llm.c's `gelu_backward` and `attention_backward` write them
(Karpathy, llm.c, train_gpt2.c), in plain tensor operations.

Shapes are batch first: (N, T, E), E the embedding width.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from torch import Tensor
from torch.nn.functional import gelu

from minidl_cli.nn.linear import Linear
from minidl_cli.nn.module import Module, Parameter, same_shape, show_shape
from minidl_cli.registry import Range, register

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@register("layer", "gelu")
class GELU(Module):
    """Gaussian error linear unit (Hendrycks & Gimpel, 2016), as torch.nn.GELU.

        approximate="none":  y = x Φ(x),  Φ the standard normal CDF
        approximate="tanh":  y = ½ x (1 + tanh u),  u = √(2/π) (x + 0.044715 x³)  (GPT-2's)

    Shape: any -> same.
    """

    output_shape = same_shape

    def __init__(self, approximate: Literal["none", "tanh"] = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        self._input = x
        if self.approximate == "tanh":
            # ½ (1 + tanh u) = σ(2u): one sigmoid, where torch's CPU tanh costs six
            two_u = (x * x).mul_(2 * SQRT_2_OVER_PI * 0.044715).add_(2 * SQRT_2_OVER_PI).mul_(x)
            self._half_1_plus_tanh = s = two_u.sigmoid_()
            return x * s  # y = ½ x (1 + tanh u) = x σ(2u)
        return gelu(x)  # y = x Φ(x), one pass

    def backward(self, grad_output: Tensor) -> Tensor:
        x = self._input
        if self.approximate == "tanh":
            # dy/dx = ½ (1 + t) + ½ x (1 − t²) du/dx, t = tanh u, du/dx = √(2/π)(1 + 3·0.044715 x²);
            # with s = ½ (1 + t): ½ (1 − t²) = 2 s (1 − s), so dy/dx = s (1 + x (1 − s) 2 du/dx)
            s = self._half_1_plus_tanh
            two_du = (x * x).mul_(6 * SQRT_2_OVER_PI * 0.044715).add_(2 * SQRT_2_OVER_PI)
            slope = torch.rsub(s, 1).mul_(x).mul_(two_du).add_(1).mul_(s)
            return slope.mul_(grad_output)
        # y = x Φ(x): dy/dx = Φ(x) + x φ(x), φ(x) = e^(−x²/2) / √(2π)
        cdf = torch.erf(x * (1 / math.sqrt(2.0))).add_(1).mul_(0.5)
        x_pdf = (x * x).mul_(-0.5).exp_().mul_(x).mul_(1 / math.sqrt(2 * math.pi))
        return cdf.add_(x_pdf).mul_(grad_output)

    def torch_twin(self) -> torch.nn.Module:
        return torch.nn.GELU(self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


@register("layer", "positional_embedding")
class PositionalEmbedding(Module):
    """A learned vector per position, added to the input (GPT-2's wpe).

    y[n, t] = x[n, t] + W[t] for the first T positions, W of shape (max_len, E) drawn from
    N(0, 1) as nn.Embedding; max_len is inferred from the data's block size, and may be set
    larger (a table for longer contexts than these, as nanoGPT's block_size), not smaller.

    Shape: (N, T, E) -> (N, T, E) with T <= max_len. Raises ValueError when T > max_len.
    """

    inferred = {"max_len": 1, "embedding_dim": -1}  # the data's T, and E
    inferred_minimum = {"max_len": "positions"}  # T is the least max_len; a larger one stands

    def __init__(self, max_len: int, embedding_dim: int):
        if max_len < 1 or embedding_dim < 1:
            raise ValueError(f"PositionalEmbedding needs max_len and embedding_dim >= 1, got "
                             f"{max_len}, {embedding_dim}")
        self.max_len, self.embedding_dim = max_len, embedding_dim
        self.weight = Parameter(torch.randn(max_len, embedding_dim))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 2 or input_shape[1] != self.embedding_dim:
            raise ValueError(f"needs (N, T, {self.embedding_dim}), got {show_shape(input_shape)}")
        if input_shape[0] > self.max_len:
            raise ValueError(f"has max_len {self.max_len}, got sequences of {input_shape[0]}")
        return input_shape

    def forward(self, x: Tensor) -> Tensor:
        T = x.size(1)
        if T > self.max_len:
            raise ValueError(f"positional_embedding: sequences of {T} steps, "
                             f"max_len {self.max_len}")
        self._steps = T
        return x + self.weight.data[:T]

    def backward(self, grad_output: Tensor) -> Tensor:
        self.weight.grad[:self._steps] += grad_output.sum(0)  # dL/dW[t] = Σ_n g[n, t]
        return grad_output  # dL/dx = g: the sum passes the gradient through

    def torch_twin(self) -> torch.nn.Module:
        return PositionalEmbeddingTwin(self.max_len, self.embedding_dim)

    def extra_repr(self) -> str:
        return f"{self.max_len}, {self.embedding_dim}"


class PositionalEmbeddingTwin(torch.nn.Module):
    """torch.nn has no positional embedding: x + W[:T] in torch.nn, keys as minidl's."""

    def __init__(self, max_len: int, embedding_dim: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(max_len, embedding_dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight[:x.size(1)]


class SelfAttentionTwin(torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention(batch_first=True) attending x to itself, with the causal
    mask when asked: the same function as minidl's self_attention, the same keys."""

    def __init__(self, embed_dim: int, num_heads: int, causal: bool, bias: bool):
        super().__init__(embed_dim, num_heads, bias=bias, batch_first=True)
        self.causal = causal

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        T = x.size(1)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1) if self.causal else None
        return super().forward(x, x, x, attn_mask=mask, need_weights=False)[0]


@register("layer", "self_attention")
class SelfAttention(Module):
    """Multi-head scaled dot-product self-attention (Vaswani et al., 2017).

        [Q K V] = x W_inᵀ + b_in,   split into `num_heads` heads of d = E / num_heads
        S = Q Kᵀ / √d  (per head; with `causal`, S[t, s] = −∞ for s > t)
        P = softmax(S) along s,   C = P V,   y = C W_outᵀ + b_out  (heads side by side)

    Weights as torch.nn.MultiheadAttention: `in_proj_weight` (3E, E), `in_proj_bias` (3E,),
    `out_proj.weight` (E, E), `out_proj.bias` (E,), initialised as torch does
    (Xavier-uniform in_proj, out_proj as torch.nn.Linear, zero biases), so its twin with
    batch_first=True and the causal mask gives the same outputs.

    Shape: (N, T, E) -> (N, T, E). Raises ValueError when E is not a multiple of num_heads.
    """

    inferred = {"embed_dim": -1}  # E = input.shape[-1]

    def __init__(self, embed_dim: int, num_heads: Annotated[int, Range(ge=1)] = 1,
                 causal: bool = False, bias: bool = True):
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
            divisors = [h for h in range(1, embed_dim + 1) if embed_dim % h == 0]
            raise ValueError(f"num_heads {num_heads} must divide embed_dim {embed_dim} (each head "
                             f"takes embed_dim / num_heads features); use one of {divisors}")
        self.embed_dim, self.num_heads, self.causal = embed_dim, num_heads, causal
        E = embed_dim
        bound = math.sqrt(6.0 / (E + 3 * E))  # xavier_uniform_ of the (3E, E) in_proj_weight
        self.in_proj_weight = Parameter(torch.empty(3 * E, E).uniform_(-bound, bound))
        self.in_proj_bias = Parameter(torch.zeros(3 * E)) if bias else None
        self.out_proj = Linear(E, E, bias=bias)
        # torch.nn.Linear's default draw U(−1/√E, 1/√E); its bias zeroed, as torch does
        self.out_proj.weight.data.uniform_(-1 / math.sqrt(E), 1 / math.sqrt(E))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) == 1:  # (N, F): features, not a sequence
            raise ValueError(f"needs a sequence (N, T, E), got {show_shape(input_shape)}; "
                             "put an embedding first (token ids), or an unflatten "
                             f"({{type: unflatten, unflattened_size: [{input_shape[0]}, 1]}})")
        if len(input_shape) != 2 or input_shape[1] != self.embed_dim:
            raise ValueError(f"needs (N, T, {self.embed_dim}), got {show_shape(input_shape)}")
        return input_shape

    def _heads(self, t: Tensor) -> Tensor:
        """(N, T, E) -> (N, heads, T, d)."""
        N, T, _ = t.shape
        return t.reshape(N, T, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        N, T, E = x.shape
        self._input = x
        qkv = x.matmul(self.in_proj_weight.data.t())  # x W_inᵀ (+ b_in)
        if self.in_proj_bias is not None:
            qkv = qkv + self.in_proj_bias.data
        q, k, v = (self._heads(part) for part in qkv.split(E, dim=2))
        scale = 1.0 / math.sqrt(E // self.num_heads)
        scores = q.matmul(k.transpose(2, 3)) * scale  # S = Q Kᵀ / √d: (N, h, T, T)
        if self.causal:  # position t sees positions s ≤ t only
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        p = torch.softmax(scores, dim=-1)  # P = softmax(S) along s
        context = p.matmul(v)  # C = P V: (N, h, T, d)
        self._q, self._k, self._v, self._p, self._scale = q, k, v, p, scale
        merged = context.transpose(1, 2).reshape(N * T, E)  # heads side by side
        return self.out_proj.forward(merged).reshape(N, T, E)  # y = C W_outᵀ + b_out

    def backward(self, grad_output: Tensor) -> Tensor:
        N, T, E = grad_output.shape
        q, k, v, p = self._q, self._k, self._v, self._p
        d_context = self.out_proj.backward(grad_output.reshape(N * T, E))  # dL/dC = g W_out
        d_context = self._heads(d_context.reshape(N, T, E))
        d_v = p.transpose(2, 3).matmul(d_context)  # dL/dV = Pᵀ dC
        d_p = d_context.matmul(v.transpose(2, 3))  # dL/dP = dC Vᵀ
        # softmax backward: dL/dS = P ⊙ (dP − Σ_s dP ⊙ P); masked positions have P = 0
        d_scores = p * (d_p - (d_p * p).sum(-1, keepdim=True))
        d_scores = d_scores * self._scale  # S = Q Kᵀ · scale
        d_q = d_scores.matmul(k)  # dL/dQ = dS K
        d_k = d_scores.transpose(2, 3).matmul(q)  # dL/dK = dSᵀ Q
        d_qkv = torch.cat([t.transpose(1, 2).reshape(N, T, E) for t in (d_q, d_k, d_v)], 2)
        d_qkv2, x2 = d_qkv.reshape(N * T, 3 * E), self._input.reshape(N * T, E)
        self.in_proj_weight.grad.addmm_(d_qkv2.t(), x2)  # dL/dW_in = Σ d_qkvᵀ x
        if self.in_proj_bias is not None:
            self.in_proj_bias.grad.add_(d_qkv2.sum(0))  # dL/db_in = Σ d_qkv
        return d_qkv.matmul(self.in_proj_weight.data)  # dL/dx = d_qkv W_in

    def torch_twin(self) -> torch.nn.Module:
        return SelfAttentionTwin(self.embed_dim, self.num_heads, self.causal,
                                 self.in_proj_bias is not None)

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"causal={self.causal}, bias={self.in_proj_bias is not None}")

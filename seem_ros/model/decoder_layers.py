"""Building blocks of the SEEM decoder: attention, post-norm layers and the mask-embedding MLP.

All tensors are batch-first: (B, L, C). Parameter names follow the official checkpoint
(``self_attn`` / ``multihead_attn`` with ``in_proj_weight``, ``in_proj_bias``, ``out_proj``;
``linear1``, ``linear2``; ``norm``; ``layers.{i}``). Every layer is post-norm: ``x = LN(x + f(x))``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters and a boolean block mask.

    ``blocked`` (B, Lq, Lk) bool, True = query may not attend that key; the same mask is used by
    every head. A fully blocked row gets all-zero attention weights (the official softmax is
    followed by ``nan_to_num``), so its output is ``out_proj.bias``.
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """query (B, Lq, C), key/value (B, Lk, C) -> (B, Lq, C)."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        batch, len_q, dim = query.shape
        head_dim = dim // self.num_heads
        q = F.linear(query, w_q, b_q) * head_dim ** -0.5
        k = F.linear(key, w_k, b_k)
        v = F.linear(value, w_v, b_v)
        q, k, v = (t.unflatten(-1, (self.num_heads, head_dim)).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1)                       # (B, heads, Lq, Lk)
        if blocked is None:
            weights = scores.softmax(-1)
        else:
            blocked = blocked[:, None]
            weights = scores.masked_fill(blocked, float('-inf')).softmax(-1).masked_fill(blocked, 0.0)
        out = (weights.to(v.dtype) @ v).transpose(1, 2).reshape(batch, len_q, dim)
        return self.out_proj(out)


class SelfAttentionLayer(nn.Module):
    """``x = norm(x + self_attn(q=k=x+pos, v=x))``."""

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
        q = x + pos
        return self.norm(x + self.self_attn(q, q, x, blocked))


class CrossAttentionLayer(nn.Module):
    """``x = norm(x + multihead_attn(q=x+pos, k=memory+memory_pos, v=memory))``."""

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.multihead_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.norm(x + self.multihead_attn(x + pos, memory + memory_pos, memory, blocked))


class FFNLayer(nn.Module):
    """``x = norm(x + linear2(relu(linear1(x))))``."""

    def __init__(self, d_model: int, dim_feedforward: int):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (none after the last)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x

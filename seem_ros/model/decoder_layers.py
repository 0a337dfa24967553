"""Building blocks of the SEEM decoder: attention, post-norm layers and the mask-embedding MLP.

All tensors are batch-first: (B, L, C). Parameter names follow the official checkpoint
(``self_attn`` / ``multihead_attn`` with ``in_proj_weight``, ``in_proj_bias``, ``out_proj``;
``linear1``, ``linear2``; ``norm``; ``layers.{i}``). Every layer is post-norm: ``x = LN(x + f(x))``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _dense_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     blocked: Optional[torch.Tensor]) -> torch.Tensor:
    """Scaled dot-product attention; q (B, Lq, h, d), k/v (B, Lk, h, d), ``blocked`` (B or 1, Lq,
    Lk) bool (True = blocked) or None -> (B, Lq, h, d); fully blocked rows give zeros."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if blocked is None:
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
    # SDPA returns NaN for a row without any allowed key: let it see every key, then zero it
    empty = blocked.all(-1, keepdim=True)                                       # (B, Lq, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=(~blocked | empty)[:, None])
    return out.transpose(1, 2).masked_fill(empty[..., None], 0.0)


def _running_max(x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Inclusive running maximum of x (L, ...) along dim 0 within each run of equal ``group`` (L,)
    values (log-step scan: ceil(log2 L) elementwise steps)."""
    shift = 1
    while shift < len(x):
        same = (group[shift:] == group[:-shift]).view(-1, *[1] * (x.dim() - 1))
        x = torch.cat([x[:shift], torch.where(same, torch.maximum(x[shift:], x[:-shift]), x[shift:])])
        shift *= 2
    return x


def _segment_sums(x: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Sums of x (L, ...) over the consecutive runs of dim 0 ending at ``ends`` (G,) (increasing,
    inclusive; the first run starts at 0) -> (G, ...), as differences of prefix sums."""
    prefix = x.cumsum(0)[ends]
    return prefix - torch.cat([torch.zeros_like(prefix[:1]), prefix[:-1]])


def _grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_group: torch.Tensor,
                       key_valid: torch.Tensor) -> torch.Tensor:
    """Attention of G query groups over their own keys, O(K g) scores per head instead of O(K G g).

    q (B, G, g, h, d); k/v (B, K, h, d); key ``j`` is seen only by the g queries of group
    ``key_group[j]`` (K,) int64, and only where ``key_valid[j]`` (K,) bool. Returns (B, G, g, h, d);
    a group without valid keys gives zeros.

    The keys are sorted by group, each group followed by an end marker (a blocked key), so that a
    group's keys are one run of L = K + G positions: its softmax maximum is a running maximum and
    its sums are differences of prefix sums at the markers. Static shapes and no scatter
    reductions (TensorRT has them only as a plugin). The weights are normalized per group before
    the value sums, which keeps the prefix sums of order G and their differences precise.
    """
    groups, num_keys = q.shape[1], k.shape[1]
    marker = torch.arange(groups, device=key_group.device)
    order = torch.cat([2 * key_group, 2 * marker + 1]).argsort()                 # (L,)
    ends = order.argsort()[num_keys:]                                              # (G,) marker positions
    group = torch.cat([key_group, marker])[order]
    valid = torch.cat([key_valid, torch.zeros_like(key_valid[:groups])])[order]
    k, v = (F.pad(t, (0, 0, 0, 0, 0, groups)).transpose(0, 1)[order] for t in (k, v))   # (L, B, h, d)
    q = q.permute(1, 0, 3, 2, 4)                                                   # (G, B, h, g, d)
    scores = (q[group] @ k[..., None]).squeeze(-1) * q.shape[-1] ** -0.5           # (L, B, h, g)
    scores = scores.masked_fill(~valid[:, None, None, None], float('-inf'))
    peak = _running_max(scores.detach(), group)[ends].clamp(min=torch.finfo(scores.dtype).min)
    weights = (scores - peak[group]).exp()
    # a group's sum is >= 1 when it has a valid key (its maximum contributes exp(0)), else 0
    weights = weights / _segment_sums(weights, ends).clamp(min=1.0)[group]
    total = _segment_sums(weights, ends)                                           # (G, B, h, g)
    out = _segment_sums(weights[..., None] * v[:, :, :, None], ends)               # (G, B, h, g, d)
    out = out / torch.where(total > 0, total, torch.ones_like(total))[..., None]
    return out.permute(1, 0, 3, 2, 4)


class MultiheadAttention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters, dense or grouped.

    Dense: query (B, Lq, C), key/value (B, Lk, C), ``blocked`` (B or 1, Lq, Lk) bool (True = query
    may not attend that key; the same for every head) or None -> (B, Lq, C).

    Grouped (``key_group`` given): query (B, G, g, C) = G groups of g rows, key/value (B, K, C);
    key ``j`` is visible only to group ``key_group[j]`` (K,) int64 and only where ``key_valid[j]``
    (K,) bool -> (B, G, g, C). The cost is linear in the number of groups (see
    :func:`_grouped_attention`); one group is a dense call with a key mask.

    A fully blocked row gets all-zero attention weights (the official softmax is followed by
    ``nan_to_num``), so its output is ``out_proj.bias``.
    """

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                blocked: Optional[torch.Tensor] = None, key_group: Optional[torch.Tensor] = None,
                key_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        head_dim = query.shape[-1] // self.num_heads
        q, k, v = (F.linear(x, w, b).unflatten(-1, (self.num_heads, head_dim))
                   for x, w, b in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v)))
        if key_group is None:
            out = _dense_attention(q, k, v, blocked)
        elif key_valid is None:
            raise ValueError('key_group needs key_valid')
        elif q.shape[1] == 1:
            key_blocked = ~key_valid.expand(q.shape[0], q.shape[2], -1)
            out = _dense_attention(q[:, 0], k, v, key_blocked)[:, None]
        else:
            out = _grouped_attention(q, k, v, key_group, key_valid)
        return self.out_proj(out.flatten(-2))


class SelfAttentionLayer(nn.Module):
    """``x = norm(x + self_attn(q=k=x+pos, v=x))`` (dense), or grouped rows over given keys."""

    def __init__(self, d_model: int, nhead: int):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, blocked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x, pos (B, L, C); ``blocked`` (B, L, L) bool or None -> (B, L, C)."""
        q = x + pos
        return self.norm(x + self.self_attn(q, q, x, blocked))

    def grouped(self, x: torch.Tensor, pos: torch.Tensor, context: torch.Tensor, context_pos: torch.Tensor,
                key_group: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        """Query rows x, pos (B, G, g, C) over keys ``context + context_pos`` and values ``context``
        (B, K, C) (these include the query rows themselves where they see each other), visibility
        by ``key_group`` / ``key_valid`` (K,) as in :class:`MultiheadAttention` -> (B, G, g, C)."""
        attended = self.self_attn(x + pos, context + context_pos, context, key_group=key_group, key_valid=key_valid)
        return self.norm(x + attended)


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

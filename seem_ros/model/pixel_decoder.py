"""SEEM pixel decoder ``transformer_encoder_fpn`` (TransformerEncoderPixelDecoder), inference only.

Parameter names equal the checkpoint keys under ``sem_seg_head.pixel_decoder.``:
``adapter_{1,2,3}`` (1x1 lateral convs, no bias, GroupNorm child ``norm``), ``layer_{1..4}``
(3x3 output convs, no bias, GroupNorm + ReLU), ``mask_features`` (3x3 conv with bias),
``input_proj`` (1x1 conv with bias) and ``transformer.encoder.layers.{i}`` (post-norm encoder
layers with ``nn.MultiheadAttention`` ``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``).

Data flow: res5 -> ``input_proj`` -> transformer encoder (sine position added to queries and
keys) -> ``layer_4``; then FPN top-down over res4, res3, res2: ``adapter_k(res) +
nearest-upsample(previous)`` -> ``layer_k``; ``mask_features`` = 3x3 conv of the ``layer_1`` map.
GroupNorm uses 32 groups, eps 1e-5; LayerNorm eps 1e-5.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .position import sine_position_embedding


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by optional ``norm`` and ``activation`` (detectron2 semantics).

    ``norm`` is a child module (its parameters are ``<name>.norm.*`` in the state dict);
    ``activation`` is a plain callable applied last.
    """

    def __init__(self, *args, norm: Optional[nn.Module] = None,
                 activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class TransformerEncoderLayer(nn.Module):
    """Post-norm encoder layer: ``x = norm1(x + attn(x+pos, x+pos, x))``; ``x = norm2(x + ffn(x))``.

    Sequence-first layout: ``src`` and ``pos`` are (L, B, C). FFN = linear2(ReLU(linear1)).
    """

    def __init__(self, *, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = k = src + pos
        src = self.norm1(src + self.self_attn(q, k, value=src, need_weights=False)[0])
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerEncoderLayer` (key ``encoder.layers.{i}``), no final norm."""

    def __init__(self, *, num_layers: int, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerEncoderLayer(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward)
            for _ in range(num_layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(L, B, C) tokens and positions -> (L, B, C)."""
        for layer in self.layers:
            src = layer(src, pos)
        return src


class TransformerEncoderOnly(nn.Module):
    """Runs :class:`TransformerEncoder` on a feature map: (B, C, H, W) + pos (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, *, num_layers: int, d_model: int, nhead: int, dim_feedforward: int):
        super().__init__()
        self.encoder = TransformerEncoder(num_layers=num_layers, d_model=d_model, nhead=nhead,
                                          dim_feedforward=dim_feedforward)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = src.shape
        memory = self.encoder(src.flatten(2).permute(2, 0, 1), pos.flatten(2).permute(2, 0, 1))
        return memory.permute(1, 2, 0).reshape(batch, channels, height, width)


class TransformerEncoderPixelDecoder(nn.Module):
    """FPN pixel decoder with a transformer encoder on the coarsest level.

    The defaults are the values of every released Focal SEEM checkpoint.

    Args:
        in_channels: channels of res2, res3, res4, res5 (e.g. ``FocalNet.out_channels``).
        conv_dim: channels of every FPN map (official ``CONVS_DIM`` 512).
        mask_dim: channels of ``mask_features`` (official ``MASK_DIM`` 512).
        num_heads: encoder attention heads (8).
        dim_feedforward: encoder FFN width (2048).
        num_encoder_layers: encoder depth (6).
        norm_groups: GroupNorm groups (32).
    """

    num_feature_levels = 3

    def __init__(self, *, in_channels: Sequence[int], conv_dim: int = 512, mask_dim: int = 512,
                 num_heads: int = 8, dim_feedforward: int = 2048, num_encoder_layers: int = 6,
                 norm_groups: int = 32):
        super().__init__()

        def output_conv(in_dim):
            return Conv2d(in_dim, conv_dim, 3, padding=1, bias=False,
                          norm=nn.GroupNorm(norm_groups, conv_dim), activation=F.relu)

        # Registration order reproduces the official state_dict order.
        for level, channels in enumerate(in_channels[:-1], start=1):
            self.add_module(f'adapter_{level}', Conv2d(channels, conv_dim, 1, bias=False,
                                                       norm=nn.GroupNorm(norm_groups, conv_dim)))
            self.add_module(f'layer_{level}', output_conv(conv_dim))
        self.mask_features = Conv2d(conv_dim, mask_dim, 3, padding=1)
        self.input_proj = Conv2d(in_channels[-1], conv_dim, 1)
        self.transformer = TransformerEncoderOnly(num_layers=num_encoder_layers, d_model=conv_dim,
                                                  nhead=num_heads, dim_feedforward=dim_feedforward)
        self.add_module(f'layer_{len(in_channels)}', output_conv(conv_dim))
        self.num_levels = len(in_channels)
        self.conv_dim = conv_dim

    def forward(self, features: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """Decode backbone features.

        Args:
            features: ``res2..res{num_levels+1}`` maps (B, C_i, H_i, W_i), strides 4, 8, 16, 32.

        Returns:
            ``mask_features`` (B, mask_dim, H/4, W/4); ``transformer_encoder_features``
            (B, conv_dim, H/32, W/32), the encoder output before ``layer_4``; and the multi-scale
            list ``[1/32, 1/16, 1/8]`` (each (B, conv_dim, H_i, W_i)), coarsest first.
        """
        top = features[f'res{self.num_levels + 1}']
        pos = sine_position_embedding(top.shape[-2], top.shape[-1], self.conv_dim // 2,
                                      device=top.device).to(top.dtype)
        encoded = self.transformer(self.input_proj(top), pos.expand(top.shape[0], -1, -1, -1))
        y = getattr(self, f'layer_{self.num_levels}')(encoded)
        multi_scale = [y]
        for level in range(self.num_levels - 1, 0, -1):
            lateral = getattr(self, f'adapter_{level}')(features[f'res{level + 1}'])
            y = lateral + F.interpolate(y, size=lateral.shape[-2:], mode='nearest')
            y = getattr(self, f'layer_{level}')(y)
            if len(multi_scale) < self.num_feature_levels:
                multi_scale.append(y)
        return self.mask_features(y), encoded, multi_scale

    def forward_features(self, features: Dict[str, torch.Tensor]
                         ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor]]:
        """Official name of :meth:`forward`."""
        return self(features)

"""FocalNet backbones of SEEM: ``focal_dw`` (Focal-T) and ``focal`` (Focal-L).

Inference-only re-implementation (no dropout / drop-path) whose parameter names equal the
official checkpoint keys under ``backbone.``: ``patch_embed.{proj,norm}``,
``layers.{s}.blocks.{b}.{gamma_1,gamma_2,norm1,modulation.{f,h,proj,focal_layers.{l}.0},norm2,
mlp.{fc1,fc2}}`` (+ ``dw1``/``dw2`` for ``focal_dw``), ``layers.{s}.downsample.{proj,norm}`` and
``norm{0..3}``.

Conventions: the input is a normalized, padded float image (B, 3, H, W); the output is a dict
``res2..res5`` of (B, C_i, H_i, W_i) maps with strides 4, 8, 16, 32 and channels
``embed_dim * 2**i``. Inside a stage, tokens are kept channels-last (B, H, W, C). All LayerNorms
use eps 1e-5; GELU is the exact (erf) form.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def _conv_channels_last(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply ``conv`` to a channels-last (B, H, W, C) tensor; returns (B, H, W, C')."""
    return conv(x.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` on the last dimension."""

    def __init__(self, *, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FocalModulation(nn.Module):
    """Focal modulation with ``focal_level`` depthwise context levels plus a global level.

    ``f`` projects to query, context and ``focal_level + 1`` gates; level ``l`` is a depthwise
    ``(focal_window + 2l)``-square conv + GELU applied to the previous level's context. The gated
    sum (divided by ``focal_level + 1``, the official ``SCALING_MODULATOR``) is mixed by the
    1x1 conv ``h`` and multiplies the query before ``proj``. (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, *, dim: int, focal_level: int, focal_window: int, focal_factor: int = 2):
        super().__init__()
        self.focal_level = focal_level
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.act = nn.GELU()
        self.proj = nn.Linear(dim, dim)
        self.focal_layers = nn.ModuleList()
        for level in range(focal_level):
            kernel = focal_window + focal_factor * level
            self.focal_layers.append(nn.Sequential(
                nn.Conv2d(dim, dim, kernel, groups=dim, padding=kernel // 2, bias=False), nn.GELU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        x = self.f(x).permute(0, 3, 1, 2).contiguous()
        q, ctx, gates = torch.split(x, [dim, dim, self.focal_level + 1], 1)
        ctx_all = 0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)
            ctx_all = ctx_all + ctx * gates[:, level:level + 1]
        ctx_global = self.act(ctx.mean(2, keepdim=True).mean(3, keepdim=True))
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level:]
        ctx_all = ctx_all / (self.focal_level + 1)
        out = (q * self.h(ctx_all)).permute(0, 2, 3, 1).contiguous()
        return self.proj(out)


class FocalDWBlock(nn.Module):
    """``focal_dw`` block (Focal-T): depthwise 3x3 convs and post-LN on the residual stream.

    ``x += dw1(x)``; ``x = norm1(x + gamma_1 * modulation(x))``; ``x += dw2(x)``;
    ``x = norm2(x + gamma_2 * mlp(x))``. (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, *, dim: int, focal_level: int, focal_window: int, mlp_ratio: float):
        super().__init__()
        self.gamma_1 = nn.Parameter(torch.ones(dim))
        self.gamma_2 = nn.Parameter(torch.ones(dim))
        self.dw1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(dim=dim, focal_level=focal_level, focal_window=focal_window)
        self.dw2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + _conv_channels_last(self.dw1, x)
        x = self.norm1(x + self.gamma_1 * self.modulation(x))
        x = x + _conv_channels_last(self.dw2, x)
        return self.norm2(x + self.gamma_2 * self.mlp(x))


class FocalBlock(nn.Module):
    """``focal`` block (Focal-L): post-LN on the branch output, no depthwise convs.

    ``x = x + gamma_1 * norm1(modulation(x))``; ``x = x + gamma_2 * norm2(mlp(x))``.
    (B, H, W, C) -> (B, H, W, C).
    """

    def __init__(self, *, dim: int, focal_level: int, focal_window: int, mlp_ratio: float):
        super().__init__()
        self.gamma_1 = nn.Parameter(torch.ones(dim))
        self.gamma_2 = nn.Parameter(torch.ones(dim))
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(dim=dim, focal_level=focal_level, focal_window=focal_window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma_1 * self.norm1(self.modulation(x))
        return x + self.gamma_2 * self.norm2(self.mlp(x))


BLOCKS = {'focal_dw': FocalDWBlock, 'focal': FocalBlock}


class PatchEmbed(nn.Module):
    """Strided conv + LayerNorm; used as the stem (7x7/4) and as the stage downsample (3x3/2).

    The input is first zero-padded bottom/right to a multiple of ``patch_size`` (official
    behaviour). (B, C, H, W) -> channels-last (B, ceil(H/patch), ceil(W/patch), embed_dim).
    """

    def __init__(self, *, in_dim: int, embed_dim: int, patch_size: int, kernel_size: int, padding: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_dim, embed_dim, kernel_size, stride=patch_size, padding=padding)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = F.pad(x, (0, -width % self.patch_size, 0, -height % self.patch_size))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class FocalStage(nn.Module):
    """One stage: ``blocks`` then (except the last stage) a ``downsample`` PatchEmbed."""

    def __init__(self, *, block: str, dim: int, depth: int, focal_level: int, focal_window: int,
                 mlp_ratio: float, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            BLOCKS[block](dim=dim, focal_level=focal_level, focal_window=focal_window, mlp_ratio=mlp_ratio)
            for _ in range(depth))
        self.downsample = (PatchEmbed(in_dim=dim, embed_dim=2 * dim, patch_size=2, kernel_size=3, padding=1)
                           if downsample else None)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, H, W, C) -> (stage output (B, H, W, C), next stage input (B, H/2, W/2, 2C) or None)."""
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is None:
            return x, None
        return x, self.downsample(x.permute(0, 3, 1, 2))


@dataclass(frozen=True)
class FocalNetConfig:
    """Hyper-parameters of a FocalNet variant (official ``MODEL.BACKBONE.FOCAL`` values)."""

    block: str
    embed_dim: int
    depths: Tuple[int, ...]
    focal_levels: Tuple[int, ...]
    focal_windows: Tuple[int, ...]
    stem_padding: int
    mlp_ratio: float = 4.0


FOCAL_T = FocalNetConfig(block='focal_dw', embed_dim=96, depths=(2, 2, 6, 2), focal_levels=(3, 3, 3, 3),
                         focal_windows=(3, 3, 3, 3), stem_padding=3)
FOCAL_L = FocalNetConfig(block='focal', embed_dim=192, depths=(2, 2, 18, 2), focal_levels=(4, 4, 4, 4),
                         focal_windows=(3, 3, 3, 3), stem_padding=2)


class FocalNet(nn.Module):
    """FocalNet backbone returning ``{'res2': ..., 'res5': ...}`` (strides 4..32).

    Args:
        block: 'focal_dw' (Focal-T block) or 'focal' (Focal-L block).
        embed_dim: channels of stage 0; stage ``i`` has ``embed_dim * 2**i``.
        depths: blocks per stage.
        focal_levels: focal levels per stage.
        focal_windows: kernel size of the first focal level per stage.
        stem_padding: padding of the 7x7 stride-4 stem conv (3 for focal_dw, 2 for focal).
        mlp_ratio: MLP hidden size / channels.
    """

    def __init__(self, *, block: str, embed_dim: int, depths: Sequence[int], focal_levels: Sequence[int],
                 focal_windows: Sequence[int], stem_padding: int, mlp_ratio: float = 4.0):
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f'unknown FocalNet block {block!r}; expected one of {sorted(BLOCKS)}')
        self.out_channels = tuple(embed_dim * 2 ** i for i in range(len(depths)))
        self.patch_embed = PatchEmbed(in_dim=3, embed_dim=embed_dim, patch_size=4, kernel_size=7,
                                      padding=stem_padding)
        self.layers = nn.ModuleList(
            FocalStage(block=block, dim=dim, depth=depth, focal_level=level, focal_window=window,
                       mlp_ratio=mlp_ratio, downsample=i < len(depths) - 1)
            for i, (dim, depth, level, window) in enumerate(
                zip(self.out_channels, depths, focal_levels, focal_windows)))
        for i, dim in enumerate(self.out_channels):
            self.add_module(f'norm{i}', nn.LayerNorm(dim))

    @classmethod
    def from_config(cls, config: FocalNetConfig) -> 'FocalNet':
        """Build from a :class:`FocalNetConfig`."""
        return cls(block=config.block, embed_dim=config.embed_dim, depths=config.depths,
                   focal_levels=config.focal_levels, focal_windows=config.focal_windows,
                   stem_padding=config.stem_padding, mlp_ratio=config.mlp_ratio)

    @classmethod
    def focal_t(cls) -> 'FocalNet':
        """Focal-T (``focal_dw``) as in ``focalt_unicl_lang_v{0,1}.yaml``."""
        return cls.from_config(FOCAL_T)

    @classmethod
    def focal_l(cls) -> 'FocalNet':
        """Focal-L (``focal``) as in ``focall_unicl_lang_v{0,1}.yaml``."""
        return cls.from_config(FOCAL_L)

    def forward(self, image: torch.Tensor) -> Dict[str, torch.Tensor]:
        """(B, 3, H, W) normalized image -> {'res2'..'res5': (B, C_i, ceil(H/4/2**i), ...)}."""
        x = self.patch_embed(image)
        features = {}
        for i, stage in enumerate(self.layers):
            out, x = stage(x)
            features[f'res{i + 2}'] = getattr(self, f'norm{i}')(out).permute(0, 3, 1, 2).contiguous()
        return features

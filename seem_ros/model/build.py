"""Variant registry and builders: ``build_seem('focalt', version='v1', checkpoint=...)``.

``focalt`` and ``focall`` are the released Focal-T / Focal-L SEEM configurations (their
``state_dict`` equals the official manifests); ``tiny`` is the small configuration of the same
architecture used by the shipped demo model and fast tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from .backbone.focal import FOCAL_L, FOCAL_T, FocalNet, FocalNetConfig
from .checkpoint import (IGNORED_KEYS, CheckpointError, check_state_dict, load_checkpoint, read_state_dict,
                         save_checkpoint)
from .pixel_decoder import TransformerEncoderPixelDecoder
from .query_decoder import SeemDecoder
from .seem import SeemModel
from .synthetic import MANIFEST_VARIANTS, load_manifest, synthetic_tensor
from .text_encoder import LanguageEncoder


@dataclass(frozen=True)
class TextConfig:
    """Language-encoder hyper-parameters (official: CLIP-style 512 wide, 12 layers)."""

    width: int = 512
    layers: int = 12
    heads: int = 8
    context_length: int = 77
    vocab_size: int = 49408


@dataclass(frozen=True)
class SeemConfig:
    """Hyper-parameters of a SEEM variant (official values by default)."""

    backbone: FocalNetConfig
    text: TextConfig = field(default_factory=TextConfig)
    hidden_dim: int = 512
    heads: int = 8
    dim_feedforward: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 9
    num_queries: int = 101
    num_memories: int = 32
    norm_groups: int = 32
    num_classes: Optional[int] = 133


TINY_BACKBONE = FocalNetConfig(block='focal_dw', embed_dim=32, depths=(1, 1, 2, 1), focal_levels=(2, 2, 2, 2),
                               focal_windows=(3, 3, 3, 3), stem_padding=3)

VARIANTS: Dict[str, SeemConfig] = {
    'focalt': SeemConfig(FOCAL_T),
    'focall': SeemConfig(FOCAL_L),
    'tiny': SeemConfig(TINY_BACKBONE, text=TextConfig(width=64, layers=4, heads=4), hidden_dim=128, heads=4,
                       dim_feedforward=512, encoder_layers=2, decoder_layers=6, num_queries=32, num_memories=8,
                       norm_groups=32, num_classes=None),
}


def build_model(config: SeemConfig, *, version: str = 'v1') -> SeemModel:
    """Build an uninitialized-weights SEEM model of ``config`` in eval mode (decoder ``version`` v1/v0)."""
    backbone = FocalNet.from_config(config.backbone)
    pixel_decoder = TransformerEncoderPixelDecoder(
        in_channels=backbone.out_channels, conv_dim=config.hidden_dim, mask_dim=config.hidden_dim,
        num_heads=config.heads, dim_feedforward=config.dim_feedforward,
        num_encoder_layers=config.encoder_layers, norm_groups=config.norm_groups)
    text = config.text
    lang_encoder = LanguageEncoder(width=text.width, layers=text.layers, heads=text.heads,
                                   context_length=text.context_length, vocab_size=text.vocab_size,
                                   proj_dim=config.hidden_dim)
    predictor = SeemDecoder(lang_encoder=lang_encoder, version=version, hidden_dim=config.hidden_dim,
                            dim_proj=config.hidden_dim, mask_dim=config.hidden_dim,
                            num_queries=config.num_queries, nheads=config.heads,
                            dim_feedforward=config.dim_feedforward, dec_layers=config.decoder_layers,
                            num_memories=config.num_memories)
    return SeemModel(backbone=backbone, pixel_decoder=pixel_decoder, predictor=predictor,
                     num_classes=config.num_classes).eval()


def variant_config(variant: str) -> SeemConfig:
    """The registered :class:`SeemConfig` of ``variant``."""
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f'unknown SEEM variant {variant!r}; expected one of {sorted(VARIANTS)}') from None


def build_seem(variant: str = 'focalt', *, version: str = 'v1', checkpoint=None, device='cpu') -> SeemModel:
    """Build ``variant`` in eval mode and, when given, strictly load an official-format ``checkpoint``."""
    if version not in ('v1', 'v0'):
        raise ValueError(f'unknown decoder version {version!r}; expected v1 or v0')
    model = build_model(variant_config(variant), version=version)
    if checkpoint is not None:
        try:
            load_checkpoint(model, checkpoint)
        except CheckpointError:
            guess = matching_variant(read_state_dict(checkpoint))
            if guess is None or guess == variant:
                raise
            raise CheckpointError(f'{checkpoint} is not a {variant!r} checkpoint: it looks like `{guess}` '
                                  f'(use variant {guess})') from None
    return model.to(device).eval()


def _variant_shapes(name: str) -> Dict[str, tuple]:
    """Key -> shape of ``name``'s state dict: its official manifest when packaged (no model is
    built), else the model built on the CPU (the variants without a manifest are small; a meta
    build would first spend seconds setting up torch's meta initializers)."""
    if name in MANIFEST_VARIANTS:
        return {row.key: tuple(row.shape) for row in load_manifest(name) if row.key not in IGNORED_KEYS}
    return {key: tuple(value.shape) for key, value in build_model(VARIANTS[name]).state_dict().items()}


def matching_variant(state_dict) -> Optional[str]:
    """The registered variant whose keys and shapes are exactly those of ``state_dict``, or None."""
    for name in VARIANTS:
        expected = _variant_shapes(name)
        try:
            check_state_dict(expected, state_dict)
        except CheckpointError:
            continue
        return name
    return None


def synthetic_state_dict(variant: str, *, version: str = 'v1') -> Dict[str, torch.Tensor]:
    """The deterministic synthetic weights (reference weight rule) for every key of ``variant``."""
    with torch.device('meta'):
        model = build_model(variant_config(variant), version=version)
    return {key: synthetic_tensor(key, tuple(value.shape)) for key, value in model.state_dict().items()}


def write_synthetic_checkpoint(variant: str, path) -> None:
    """Write an official-format checkpoint of ``variant`` with the synthetic weight rule."""
    save_checkpoint(synthetic_state_dict(variant), path)


__all__ = ['SeemConfig', 'TextConfig', 'VARIANTS', 'build_model', 'build_seem', 'matching_variant',
           'variant_config', 'synthetic_state_dict', 'write_synthetic_checkpoint']

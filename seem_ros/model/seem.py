"""The SEEM model: backbone + pixel decoder + SEEM decoder (with its language encoder).

Attribute paths equal the official checkpoint keys: ``backbone.*``, ``sem_seg_head.pixel_decoder.*``,
``sem_seg_head.predictor.*`` (language encoder under ``sem_seg_head.predictor.lang_encoder.*``),
``criterion.empty_weight`` and ``dilation_kernel``, so official files load with a strict
``load_state_dict``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import nn

from .backbone.focal import FocalNet
from .pixel_decoder import TransformerEncoderPixelDecoder
from .query_decoder import SeemDecoder


@dataclass
class ImageFeatures:
    """Encoder output for one padded image batch.

    ``mask_features`` (B, C, Hp/4, Wp/4); ``multi_scale_features`` 3 maps (B, C, Hp/32..Hp/8);
    ``padded_size`` (Hp, Wp); ``valid_size`` (h, w) of the image inside the padding.
    """

    mask_features: torch.Tensor
    multi_scale_features: List[torch.Tensor]
    padded_size: tuple
    valid_size: tuple


class SemSegHead(nn.Module):
    """Container mirroring the official ``sem_seg_head`` (pixel decoder + predictor)."""

    def __init__(self, pixel_decoder: TransformerEncoderPixelDecoder, predictor: SeemDecoder):
        super().__init__()
        self.pixel_decoder = pixel_decoder
        self.predictor = predictor


class Criterion(nn.Module):
    """Holds the training criterion's ``empty_weight`` buffer (num_classes + 1; last = no object)."""

    def __init__(self, num_classes: int, eos_coef: float = 0.1):
        super().__init__()
        weight = torch.ones(num_classes + 1)
        weight[-1] = eos_coef
        self.register_buffer('empty_weight', weight)


class SeemModel(nn.Module):
    """SEEM with explicit sub-modules; see :mod:`seem_ros.model.build` for the variants."""

    def __init__(self, *, backbone: FocalNet, pixel_decoder: TransformerEncoderPixelDecoder,
                 predictor: SeemDecoder, num_classes: Optional[int] = 133, size_divisibility: int = 32):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = SemSegHead(pixel_decoder, predictor)
        if num_classes is not None:
            self.criterion = Criterion(num_classes)
        self.register_buffer('dilation_kernel', torch.ones(1, 1, 3, 3))
        self.size_divisibility = size_divisibility

    @property
    def decoder(self) -> SeemDecoder:
        return self.sem_seg_head.predictor

    @property
    def lang_encoder(self):
        return self.sem_seg_head.predictor.lang_encoder

    def encode_image(self, images: torch.Tensor, valid_size=None) -> ImageFeatures:
        """Backbone + pixel decoder on a normalized, padded (B, 3, Hp, Wp) batch."""
        mask_features, _, multi_scale = self.sem_seg_head.pixel_decoder.forward_features(self.backbone(images))
        padded = tuple(images.shape[-2:])
        return ImageFeatures(mask_features, list(multi_scale), padded, tuple(valid_size or padded))

"""Sine positional encoding shared by the pixel decoder and the SEEM decoder."""
import math

import torch


def sine_position_embedding(height, width, num_pos_feats=256, temperature=10000.0, *,
                            device=None, dtype=torch.float32):
    """DETR sine encoding of a ``height x width`` grid with no padding mask.

    Normalized cumulative coordinates ``cumsum / (last + eps) * 2*pi`` with eps 1e-6 and no
    -0.5 offset (the official ``PositionEmbeddingSine(normalize=True)``, checked against the
    reference pixel-decoder outputs), ``num_pos_feats`` features per axis,
    interleaved sin/cos. Returns a (1, 2*num_pos_feats, height, width) tensor, y features first.
    """
    ones = torch.ones(1, height, width, device=device, dtype=dtype)
    y_embed = ones.cumsum(1, dtype=dtype)
    x_embed = ones.cumsum(2, dtype=dtype)
    eps, scale = 1e-6, 2 * math.pi
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_pos_feats, device=device, dtype=dtype)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode='floor') / num_pos_feats)
    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)

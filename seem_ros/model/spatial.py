"""Visual-prompt (spatial) inputs of the SEEM decoder: prompt points, sampling and mean features.

Coordinates: a prompt pixel (y, x) of a mask at the padded image size (Hp, Wp) becomes the
normalized point ``p = (x / Wp, y / Hp)`` (integer pixel indices, no +0.5). Features are sampled
bilinearly with ``align_corners=True`` at ``p``, i.e. at feature coordinate ``x * (Wf - 1) / Wp``
(the official ``point_sample`` on ``2p - 1``).

Two equivalent ways to get prompt features:

* point sets (:func:`points_from_masks`, :func:`sample_points`): the official path. All pixels are
  used while a sign (positive / negative) has at most ``max_points`` pixels per image; above the
  budget a seeded subset is drawn. A point set can be padded to a fixed length with ``valid``.
* interpolation matrices (:func:`mask_mean_features`): the mean of the bilinear samples over all
  pixels of a mask, as two matmuls with fixed interpolation matrices; no ``nonzero``, fixed
  shapes. Equal to the point-set mean whenever every pixel is used.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


class PromptPoints(NamedTuple):
    """Sampled prompt pixels of one image, positives first (official order).

    coords: (N, 2) float, normalized ``(x / Wp, y / Hp)``.
    prompt: (N,) int64, index of the prompt (mask channel) the point belongs to.
    positive: (N,) bool, True for positive points, False for negative ones.
    valid: (N,) bool, False for padding entries (ignored everywhere).
    """

    coords: torch.Tensor
    prompt: torch.Tensor
    positive: torch.Tensor
    valid: torch.Tensor


class SpatialPrompts(NamedTuple):
    """Encoded visual prompts, ready for the decoder (``SeemDecoder.forward(spatial=...)``).

    Produced by ``SeemDecoder.encode_prompts`` / ``encode_prompt_points`` on the image that holds
    the prompts; reusing them on another image is the referring-image path.

    tokens: (3, N, C), the prompt tokens for decoder levels 0..2 (1/32, 1/16, 1/8), i.e.
        ``sample(src_level @ mask_sptial_embed[level]) + pn_indicator[0 or 1]``.
    token_prompt: (N,) int64, prompt index of each token (all 0 in v0, where prompts merge).
    token_valid: (N,) bool, False for padding tokens.
    pos_mean: (P, C) mean ``mask_features`` over each prompt's positive points (``pred_pspatials``);
        v1: P = number of prompts, an empty prompt gives -1; v0: P = 1, empty gives 0.
    neg_mean: (P, C) the same over negative points (``pred_nspatials``).
    prompt_valid: (P,) bool, False for padding prompt slots (their outputs are meaningless and
        they do not change the outputs of valid prompts).
    """

    tokens: torch.Tensor
    token_prompt: torch.Tensor
    token_valid: torch.Tensor
    pos_mean: torch.Tensor
    neg_mean: torch.Tensor
    prompt_valid: torch.Tensor


# Prompt points that the referring patches of one decoder pass may add to the image's own
# 2 x max_spatial_points (positive + negative budgets): a pass holds at most that many tokens, so
# that one fixed-shape graph (n_max = 2 x 512 + REFERENCE_POINTS) takes any p_max prompts. The
# patches of a pass split it, at most max_spatial_points each (one to four patches: the official
# 512 each).
REFERENCE_POINTS = 2048


def _select_points(mask: torch.Tensor, max_points: int, merged: bool,
                   generator: Optional[torch.Generator]) -> torch.Tensor:
    """(n, 3) int64 ``(prompt, y, x)`` rows of the set pixels of ``mask`` (P, Hp, Wp), in
    ``nonzero`` order, subsampled to ``max_points`` when there are more.

    v1 (``merged=False``): every prompt that has pixels gets the same total probability, drawn
    without replacement, then sorted back into ``nonzero`` order. v0 (``merged=True``): a uniform
    random subset (``randperm``).
    """
    rows = mask.nonzero()
    if len(rows) <= max_points:
        return rows
    if merged:
        return rows[torch.randperm(len(rows), generator=generator, device=rows.device)[:max_points]]
    ids, counts = rows[:, 0].unique(return_counts=True)
    per_prompt = torch.zeros(int(ids.max()) + 1, device=rows.device)
    per_prompt[ids] = 1.0 / (len(ids) * counts.float())
    pick = torch.multinomial(per_prompt[rows[:, 0]], max_points, replacement=False, generator=generator)
    return rows[pick.sort().values]


def points_from_masks(pos_masks: torch.Tensor, neg_masks: Optional[torch.Tensor], *, merged: bool = False,
                      max_points: int = 512, generator: Optional[torch.Generator] = None,
                      pad_to: Optional[int] = None) -> PromptPoints:
    """Prompt points of one image from per-prompt pixel masks.

    Args:
        pos_masks, neg_masks: (P, Hp, Wp) bool masks at the padded image size, one channel per
            prompt (both with the same P); ``neg_masks`` None = no negative pixels.
        merged: v0 semantics (prompt channels merged into one point set, uniform subsampling).
        max_points: budget per sign per image (the official ``MAX_SPATIAL_LEN`` 512). Within it
            the result is deterministic and equal to the official sampling.
        generator: random source for sets above the budget (seed it for reproducible results).
        pad_to: pad the point set to this length with invalid entries (fixed-shape use).
    """
    height, width = pos_masks.shape[-2:]
    if neg_masks is None:
        neg_masks = torch.zeros_like(pos_masks)
    parts = [(_select_points(m, max_points, merged, generator), sign)
             for m, sign in ((pos_masks, True), (neg_masks, False))]
    rows = torch.cat([r for r, _ in parts])
    positive = torch.cat([torch.full((len(r),), sign, dtype=torch.bool, device=rows.device) for r, sign in parts])
    coords = torch.stack([rows[:, 2] / width, rows[:, 1] / height], dim=-1)
    points = PromptPoints(coords, rows[:, 0], positive, torch.ones_like(positive))
    if pad_to is not None:
        points = pad_points(points, pad_to)
    return points


def pad_points(points: PromptPoints, length: int) -> PromptPoints:
    """Pad a point set to ``length`` entries with invalid points at (0, 0)."""
    extra = length - len(points.coords)
    if extra < 0:
        raise ValueError(f'{len(points.coords)} points do not fit in {length}')
    return PromptPoints(F.pad(points.coords, (0, 0, 0, extra)), F.pad(points.prompt, (0, extra)),
                        F.pad(points.positive, (0, extra)), F.pad(points.valid, (0, extra)))


def sample_points(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear ``align_corners=True`` samples of ``features`` (B, C, H, W) at ``coords`` (N, 2)
    normalized ``(x, y)`` in [0, 1] -> (B, N, C)."""
    grid = (2.0 * coords - 1.0).to(features.dtype)
    grid = grid[None, :, None, :].expand(features.shape[0], -1, -1, -1)
    return F.grid_sample(features, grid, mode='bilinear', align_corners=True)[..., 0].transpose(1, 2)


def interpolation_matrix(size: int, feature_size: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(size, feature_size) bilinear weights of pixel ``i`` (point ``i / size``) on a feature axis
    sampled with ``align_corners=True``: ``relu(1 - |i * (feature_size - 1) / size - j|)``."""
    pos = torch.arange(size, device=device, dtype=dtype) / size * (feature_size - 1)
    grid = torch.arange(feature_size, device=device, dtype=dtype)
    return (1.0 - (pos[:, None] - grid[None, :]).abs()).clamp(min=0.0)


def mask_mean_features(features: torch.Tensor, masks: torch.Tensor) -> tuple:
    """Mean bilinear sample of ``features`` over every pixel of each mask, with fixed shapes.

    ``features`` (B, C, Hf, Wf); ``masks`` (P, Hp, Wp) bool (or float pixel multiplicities) at the
    padded image size. Returns ``(mean (B, P, C), counts (P,))``; an empty mask gives a zero mean.
    Computed as ``sum_hw A[p, h, w] * features[:, :, h, w]`` with ``A = Wy^T M Wx / count``
    (interpolation matrices from :func:`interpolation_matrix`); no ``nonzero``.
    """
    dtype = torch.promote_types(features.dtype, torch.float32)   # at least float32 for the weights
    weights_y = interpolation_matrix(masks.shape[-2], features.shape[-2], device=features.device, dtype=dtype)
    weights_x = interpolation_matrix(masks.shape[-1], features.shape[-1], device=features.device, dtype=dtype)
    masks = masks.to(dtype)
    counts = masks.sum((-2, -1))
    area = weights_y.T @ masks @ weights_x / counts.clamp(min=1.0)[:, None, None]   # (P, Hf, Wf)
    return torch.einsum('phw,bchw->bpc', area.to(features.dtype), features), counts

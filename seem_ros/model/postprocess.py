"""Post-processing of SEEM outputs: mask resizing and semantic / panoptic / instance inference.

Conventions: ``mask_cls`` is (Q, K+1) class logits whose last column is "background" (no object);
mask logits are (Q, H, W) float. Resizes follow the official code: bilinear (align_corners=False)
from 1/4 to the padded input size, crop to the valid (resized) image, then either bicubic with
antialias (semantic/panoptic/instance, ``sem_seg_postprocess``) or bilinear (interactive masks)
to the output size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F


def resize_mask_logits(mask_logits, padded_size, valid_size, out_size, *, final_mode='bicubic'):
    """Resize low-resolution mask logits to the output image.

    Args:
        mask_logits: (N, h4, w4) or (B, N, h4, w4) float logits at 1/4 of the padded input.
        padded_size: (Hp, Wp) padded model input size.
        valid_size: (h, w) image size inside the padded input (before padding).
        out_size: (H, W) output size (the original image).
        final_mode: 'bicubic' (antialias, as ``sem_seg_postprocess``) or 'bilinear' (interactive masks).
    Returns:
        Logits of shape (..., H, W), same leading dims as ``mask_logits``.
    """
    squeeze = mask_logits.dim() == 3
    x = mask_logits[None] if squeeze else mask_logits
    x = F.interpolate(x, size=tuple(padded_size), mode='bilinear', align_corners=False)
    x = x[..., :valid_size[0], :valid_size[1]]
    if tuple(valid_size) != tuple(out_size) or final_mode == 'bicubic':
        antialias = final_mode == 'bicubic'
        x = F.interpolate(x, size=tuple(out_size), mode=final_mode, align_corners=False, antialias=antialias)
    return x[0] if squeeze else x


def semantic_inference(mask_cls, mask_logits):
    """Per-class score maps (K, H, W): sum over queries of softmax(cls)[:, :K] * sigmoid(mask)."""
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    return torch.einsum('qc,qhw->chw', probs, mask_logits.sigmoid())


@dataclass
class PanopticSegments:
    """Panoptic result: ``id_map`` (H, W) int32 (0 = void) and per segment (same order, ids 1..S):
    ``query_index``, ``category`` (index into the vocabulary), ``score``, ``is_thing``."""

    id_map: torch.Tensor
    query_index: list
    category: list
    score: list
    is_thing: list


def panoptic_inference(mask_cls, mask_logits, *, object_mask_threshold=0.8, overlap_threshold=0.8,
                       stuff_categories: Optional[Sequence[int]] = None) -> PanopticSegments:
    """Mask2Former panoptic merge.

    Queries whose best class is not background and whose score exceeds ``object_mask_threshold``
    compete per pixel by score * probability; a segment is dropped when its winning area inside its
    own mask (prob >= 0.5) is below ``overlap_threshold`` of that mask. Stuff categories of the same
    class merge into one segment; all categories are things unless listed in ``stuff_categories``.
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    probs = mask_logits.sigmoid()
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    keep_idx = keep.nonzero().flatten()
    h, w = probs.shape[-2:]
    id_map = torch.zeros((h, w), dtype=torch.int32, device=probs.device)
    result = PanopticSegments(id_map, [], [], [], [])
    if keep_idx.numel() == 0:
        return result
    cur_probs = probs[keep_idx]
    cur_scores = scores[keep_idx]
    winner = (cur_scores[:, None, None] * cur_probs).argmax(0)
    stuff = set(stuff_categories or ())
    stuff_segment: Dict[int, int] = {}
    for k, q in enumerate(keep_idx.tolist()):
        category = int(labels[q])
        own = cur_probs[k] >= 0.5
        won = winner == k
        mask = won & own
        mask_area, original_area = int(won.sum()), int(own.sum())
        if mask_area == 0 or original_area == 0 or not bool(mask.any()):
            continue
        if mask_area / original_area < overlap_threshold:
            continue
        if category in stuff and category in stuff_segment:
            id_map[mask] = stuff_segment[category]
            continue
        segment_id = len(result.query_index) + 1
        if category in stuff:
            stuff_segment[category] = segment_id
        id_map[mask] = segment_id
        result.query_index.append(q)
        result.category.append(category)
        result.score.append(float(cur_scores[k]))
        result.is_thing.append(category not in stuff)
    return result


def instance_inference(mask_cls, mask_logits, *, top_k=100, thing_categories: Optional[Sequence[int]] = None):
    """Top-k (query, class) pairs by softmax score, rescored by mean mask probability.

    Returns a dict: ``masks`` (N, H, W) bool (logit > 0), ``scores`` (N,), ``category`` (N,) long and
    ``query_index`` (N,) long. With ``thing_categories`` only those classes are kept.
    """
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]
    labels = torch.arange(num_classes, device=mask_cls.device).repeat(num_queries)
    top_scores, top_idx = scores.flatten().topk(min(top_k, scores.numel()), sorted=True)
    category = labels[top_idx]
    query_index = torch.div(top_idx, num_classes, rounding_mode='floor')
    if thing_categories is not None:
        keep = torch.isin(category, torch.as_tensor(list(thing_categories), device=category.device))
        top_scores, category, query_index = top_scores[keep], category[keep], query_index[keep]
    logits = mask_logits[query_index]
    masks = logits > 0
    mask_score = (logits.sigmoid().flatten(1) * masks.flatten(1)).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
    return {'masks': masks, 'scores': top_scores * mask_score, 'category': category, 'query_index': query_index}

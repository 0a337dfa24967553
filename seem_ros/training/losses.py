"""SEEM / X-Decoder training losses for one image's decoder outputs.

Every loss compares the decoder's mask logits at their own resolution (1/4 of the padded input)
with soft targets: the ground-truth masks area-averaged to that grid (:func:`downsample_masks`), so
a target is the fraction of each cell the object covers. Inference upsamples the logits bilinearly
and thresholds at 0, i.e. where the predicted coverage crosses one half.

* :func:`object_loss`: Mask2Former set loss of the object queries; Hungarian matching on
  ``class + mask BCE + dice`` costs, then class cross-entropy against the vocabulary (the last
  column is "background", down-weighted by ``eos_coef``) and BCE + dice on matched masks;
* :func:`grounding_loss`: each sentence is matched (Hungarian) to a grounding query; BCE + dice
  on its mask, and a symmetric contrastive term on the grounding scores (query -> sentence over
  the sentences, sentence -> query over the queries, which is how inference picks the query);
* :func:`spatial_loss`: each visual prompt owns 3 queries (v1); the best of the 3 masks gets
  BCE + dice and the selection logits ``mask_embed . prompt_mean`` learn to pick it;
* :func:`text_contrastive_loss` (not in SEEM, whose text encoder comes pretrained): class names
  embedded with two random prompt templates must identify each other. A text encoder trained from
  scratch otherwise maps all names to nearly the same vector (the template dominates), which
  leaves the class logits flat.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from seem_ros.model.postprocess import resize_mask_logits


@dataclass(frozen=True)
class LossWeights:
    """Loss weights (Mask2Former: class 2, mask BCE 5, dice 5)."""

    cls: float = 2.0
    bce: float = 5.0
    dice: float = 5.0
    grounding: float = 2.0
    select: float = 2.0
    text: float = 1.0
    eos_coef: float = 0.1


def downsample_masks(masks: torch.Tensor, padded_size, stride: int = 4) -> torch.Tensor:
    """(N, h, w) bool masks at the model input -> (N, Hp/stride, Wp/stride) float coverage of each
    cell of the padded input."""
    h, w = masks.shape[-2:]
    padded = F.pad(masks.float(), (0, padded_size[1] - w, 0, padded_size[0] - h))
    return F.avg_pool2d(padded[None], stride)[0]


def upsample(logits: torch.Tensor, padded_size, valid_size) -> torch.Tensor:
    """(..., N, h4, w4) low-resolution logits -> (..., N, h, w) at the model input (valid part),
    as inference resizes them."""
    return resize_mask_logits(logits, padded_size, valid_size, valid_size, final_mode='bilinear')


def bce_per_pair(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean BCE of every prediction (Q, h, w) against every soft target (N, h, w) -> (Q, N)."""
    x, t = logits.flatten(1), targets.flatten(1)
    pos = F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction='none')
    neg = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction='none')
    return (pos @ t.T + neg @ (1 - t).T) / x.shape[1]


def dice_per_pair(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss ``1 - (2|p t| + 1) / (|p| + |t| + 1)`` of every pair -> (Q, N)."""
    p, t = logits.flatten(1).sigmoid(), targets.flatten(1)
    return 1 - (2 * p @ t.T + 1) / (p.sum(1)[:, None] + t.sum(1)[None, :] + 1)


def mask_loss(logits: torch.Tensor, targets: torch.Tensor, weights: LossWeights) -> torch.Tensor:
    """Weighted BCE + dice of paired predictions (N, h, w) and soft targets (N, h, w) -> (N,)."""
    x, t = logits.flatten(1), targets.flatten(1)
    bce = F.binary_cross_entropy_with_logits(x, t, reduction='none').mean(1)
    p = x.sigmoid()
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return weights.bce * bce + weights.dice * dice


def hungarian(cost: torch.Tensor):
    """Minimum-cost assignment of a (Q, N) cost matrix -> (query indices, target indices) int64."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def object_loss(pred_logits: torch.Tensor, pred_masks: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                weights: LossWeights) -> torch.Tensor:
    """Set loss of the object queries of one image.

    Args:
        pred_logits: (Q, K+1) class logits (last column = background).
        pred_masks: (Q, h, w) mask logits.
        labels: (N,) int64 vocabulary index of each ground-truth object.
        masks: (N, h, w) ground-truth coverage (:func:`downsample_masks`).
    Returns the class loss over all Q queries plus the mask losses of the N matched ones, the
    mask part divided by N.
    """
    num_queries, num_columns = pred_logits.shape
    target = torch.full((num_queries,), num_columns - 1, dtype=torch.long)
    mask_term = pred_logits.new_zeros(())
    if len(labels):
        with torch.no_grad():
            cost = (-weights.cls * pred_logits.softmax(-1)[:, labels]
                    + weights.bce * bce_per_pair(pred_masks, masks) + weights.dice * dice_per_pair(pred_masks, masks))
        q, n = hungarian(cost)
        target[q] = labels[n]
        mask_term = mask_loss(pred_masks[q], masks[n], weights).sum() / len(labels)
    class_weight = torch.ones(num_columns, dtype=pred_logits.dtype)
    class_weight[-1] = weights.eos_coef
    return weights.cls * F.cross_entropy(pred_logits, target, weight=class_weight) + mask_term


def grounding_loss(scores: torch.Tensor, pred_masks: torch.Tensor, masks: torch.Tensor,
                   weights: LossWeights) -> torch.Tensor:
    """Loss of the grounding queries of one image for its S sentences.

    Args:
        scores: (Q, S) grounding scores (``SeemDecoder.grounding_scores``).
        pred_masks: (Q, h, w) grounding-query mask logits.
        masks: (S, h, w) coverage of the object each sentence refers to.
    """
    with torch.no_grad():
        cost = (-weights.grounding * scores.softmax(0)
                + weights.bce * bce_per_pair(pred_masks, masks) + weights.dice * dice_per_pair(pred_masks, masks))
    q, s = hungarian(cost)
    contrast = (F.cross_entropy(scores[:, s].T, q)              # sentence -> the query inference picks
                + F.cross_entropy(scores[q], s)) / 2            # query -> its sentence among the image's
    return weights.grounding * contrast + mask_loss(pred_masks[q], masks[s], weights).mean()


def spatial_loss(pred_masks: torch.Tensor, select_logits: torch.Tensor, masks: torch.Tensor,
                 weights: LossWeights) -> torch.Tensor:
    """Loss of the P visual prompts of one image (v1: 3 candidate queries per prompt).

    Args:
        pred_masks: (P, 3, h, w) candidate mask logits.
        select_logits: (P, 3) selection logits (``mask_embed . prompt_mean``) of the candidates.
        masks: (P, h, w) coverage of each prompt's object.
    Returns the mean over prompts of the best candidate's mask loss plus the selection
    cross-entropy towards that candidate.
    """
    num_prompts, candidates = pred_masks.shape[:2]
    per_candidate = mask_loss(pred_masks.flatten(0, 1), masks.repeat_interleave(candidates, 0),
                              weights).view(num_prompts, candidates)
    best = per_candidate.detach().argmin(1)
    chosen = per_candidate.gather(1, best[:, None]).squeeze(1)
    return (chosen + weights.select * F.cross_entropy(select_logits, best, reduction='none')).mean()


def select_logits(pred_smaskembs: torch.Tensor, pos_mean: torch.Tensor, candidates: int = 3) -> torch.Tensor:
    """(P, candidates) selection logits of v1 spatial queries: each prompt's own queries
    (``pred_smaskembs`` (3P, C)) against its positive mean feature (``pos_mean`` (P, C))."""
    embeds = pred_smaskembs.view(len(pos_mean), candidates, -1)
    return (embeds * pos_mean[:, None, :]).sum(-1)


def text_contrastive_loss(first: torch.Tensor, second: torch.Tensor, scale: torch.Tensor,
                          weights: LossWeights) -> torch.Tensor:
    """Symmetric InfoNCE between two (K, C) normalized embeddings of the same K names (row i of
    both is name i, each with its own template), logits ``scale * first @ second.T``."""
    logits = scale * first @ second.T
    target = torch.arange(len(first))
    return weights.text * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

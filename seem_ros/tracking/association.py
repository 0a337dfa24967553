"""Association building blocks: mask geometry, constant-velocity prediction, appearance, assignment.

Conventions: masks are (H, W) bool; boxes are XYXY pixels with exclusive x1/y1, all zeros for
an empty mask; images are (H, W, 3) uint8 RGB; appearance vectors are (D,) float32,
L2-normalized, compared by cosine similarity (their dot product).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

Box = Tuple[float, float, float, float]
"""XYXY pixels, x1/y1 exclusive."""

EMPTY_BOX: Box = (0.0, 0.0, 0.0, 0.0)

SHIFT_MIN_OVERLAP = 0.5
""":func:`mask_shift` moves a mask only when a move overlaps at least one pixel (overlaps are
pixel counts in float32: half a pixel tells 0 from 1)."""

SHIFT_NEAR_BEST = 0.98
""":func:`mask_shift` takes the shortest of the moves whose overlap is at least this fraction of the best."""


def mask_bbox(mask: np.ndarray) -> Box:
    """XYXY box of a bool mask (x1, y1 exclusive); zeros for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return EMPTY_BOX
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def mask_centroid(mask: np.ndarray, bbox: Box) -> np.ndarray:
    """(2,) float64 mean (x, y) of the pixel centres of a non-empty mask whose box is ``bbox``."""
    x0, y0, x1, y1 = (int(v) for v in bbox)
    ys, xs = np.nonzero(mask[y0:y1, x0:x1])
    return np.array([xs.mean() + x0 + 0.5, ys.mean() + y0 + 0.5])


def _box_area(box: Box) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray, box_a: Optional[Box] = None, box_b: Optional[Box] = None) -> float:
    """Intersection over union of two same-size bool masks (0 when both are empty).

    Passing the masks' boxes (:func:`mask_bbox`) restricts the work to their union box.
    """
    box_a = mask_bbox(a) if box_a is None else box_a
    box_b = mask_bbox(b) if box_b is None else box_b
    if not (_box_area(box_a) and _box_area(box_b)):
        return 0.0
    if box_a[0] >= box_b[2] or box_b[0] >= box_a[2] or box_a[1] >= box_b[3] or box_b[1] >= box_a[3]:
        return 0.0
    x0, y0 = int(min(box_a[0], box_b[0])), int(min(box_a[1], box_b[1]))
    x1, y1 = int(max(box_a[2], box_b[2])), int(max(box_a[3], box_b[3]))
    a, b = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def iou_matrix(masks_a: Sequence[Optional[np.ndarray]], boxes_a: Sequence[Box], masks_b: Sequence[Optional[np.ndarray]],
               boxes_b: Sequence[Box]) -> np.ndarray:
    """(len(a), len(b)) float64 pairwise :func:`mask_iou`; None masks give 0."""
    out = np.zeros((len(masks_a), len(masks_b)))
    for i, (ma, ba) in enumerate(zip(masks_a, boxes_a)):
        if ma is None:
            continue
        for j, (mb, bb) in enumerate(zip(masks_b, boxes_b)):
            if mb is not None:
                out[i, j] = mask_iou(ma, mb, ba, bb)
    return out


def overlap_fraction(a: np.ndarray, box_a: Box, b: np.ndarray, box_b: Box) -> float:
    """Fraction of mask ``a``'s pixels that also lie in mask ``b`` (0 when ``a`` is empty)."""
    if not _box_area(box_a) or not _box_area(box_b):
        return 0.0
    x0, y0 = int(max(box_a[0], box_b[0])), int(max(box_a[1], box_b[1]))
    x1, y1 = int(min(box_a[2], box_b[2])), int(min(box_a[3], box_b[3]))
    if x0 >= x1 or y0 >= y1:
        return 0.0
    inter = np.count_nonzero(a[y0:y1, x0:x1] & b[y0:y1, x0:x1])
    return inter / max(int(np.count_nonzero(a)), 1)


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``mask`` moved by (dx, dy) pixels (rounded), zero-filled; the input when the shift rounds to 0."""
    dx, dy = int(round(dx)), int(round(dy))
    if dx == 0 and dy == 0:
        return mask
    h, w = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) < w and abs(dy) < h:
        out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def mask_shift(prev: np.ndarray, prev_box: Box, cur: np.ndarray, reach: int) -> Tuple[int, int]:
    """The move (dx, dy) in whole pixels, each within +-``reach``, that lays ``prev`` (box
    ``prev_box``) onto ``cur`` with the most overlapping pixels. Among moves within 2 %
    (``SHIFT_NEAR_BEST``) of the best overlap the shortest wins, so a mask that only grows or
    shrinks does not move. (0, 0) when no move makes the masks overlap."""
    x0, y0, x1, y1 = (int(v) for v in prev_box)
    if x1 <= x0 or y1 <= y0:
        return 0, 0
    h, w = cur.shape
    r = max(int(reach), 0)
    region = np.zeros((y1 - y0 + 2 * r, x1 - x0 + 2 * r), np.float32)
    cy0, cy1, cx0, cx1 = max(y0 - r, 0), min(y1 + r, h), max(x0 - r, 0), min(x1 + r, w)
    if cy1 > cy0 and cx1 > cx0:
        region[cy0 - y0 + r:cy1 - y0 + r, cx0 - x0 + r:cx1 - x0 + r] = cur[cy0:cy1, cx0:cx1]
    overlap = cv2.matchTemplate(region, prev[y0:y1, x0:x1].astype(np.float32), cv2.TM_CCORR)
    best = float(overlap.max())
    if best < SHIFT_MIN_OVERLAP:
        return 0, 0
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    k = int(np.argmin(np.where(overlap >= SHIFT_NEAR_BEST * best, dx * dx + dy * dy, np.iinfo(np.int64).max)))
    return int(dx.flat[k]), int(dy.flat[k])


def shift_box(box: Box, dx: float, dy: float, size: Tuple[int, int]) -> Box:
    """``box`` moved by (dx, dy) pixels (rounded like :func:`shift_mask`), clipped to the (H, W) image."""
    dx, dy = round(dx), round(dy)
    h, w = size
    x0, y0 = min(max(box[0] + dx, 0.0), w), min(max(box[1] + dy, 0.0), h)
    x1, y1 = min(max(box[2] + dx, 0.0), w), min(max(box[3] + dy, 0.0), h)
    return (float(x0), float(y0), float(x1), float(y1)) if x1 > x0 and y1 > y0 else EMPTY_BOX


def colour_descriptor(image: np.ndarray, mask: np.ndarray, bins: int = 6) -> np.ndarray:
    """(bins**3,) float32 L2-normalized square root of the RGB histogram of ``image`` under ``mask``.

    The dot product of two descriptors is the Bhattacharyya coefficient of the two colour
    distributions (1 = identical). All zeros for an empty mask.
    """
    hist = cv2.calcHist([np.ascontiguousarray(image)], [0, 1, 2], mask.astype(np.uint8), [bins] * 3, [0, 256] * 3)
    total = float(hist.sum())
    if total <= 0:
        return np.zeros(bins ** 3, np.float32)
    return np.sqrt(hist.ravel() / total).astype(np.float32)


def appearance(image: np.ndarray, mask: np.ndarray, embedding: Optional[np.ndarray], colour_weight: float,
               bins: int = 6) -> np.ndarray:
    """Appearance vector of one object: query embedding and colour histogram in one unit vector.

    The vector is ``[sqrt(1 - w) * e, sqrt(w) * c]`` for the L2-normalized query embedding
    ``e`` (C,) and :func:`colour_descriptor` ``c``, so that the cosine similarity of two such
    vectors is ``(1 - w) * cos(e1, e2) + w * BC(c1, c2)`` with ``w = colour_weight``. Without an
    embedding (None) the vector is ``c`` alone; a tracker must use one layout for all objects.
    """
    colour = colour_descriptor(image, mask, bins)
    if embedding is None:
        return colour
    emb = np.asarray(embedding, np.float32).ravel()
    emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
    return np.concatenate([np.sqrt(1.0 - colour_weight) * emb, np.sqrt(colour_weight) * colour]).astype(np.float32)


def assign(score: np.ndarray, valid: np.ndarray, priority: Optional[np.ndarray] = None) -> List[Tuple[int, int]]:
    """Maximum-weight one-to-one matching of rows (tracks) to columns (detections).

    Args:
        score: (N, M) float, higher is better; negative values count as 0.
        valid: (N, M) bool, pairs that passed gating; only these can be matched.
        priority: (N, M) or (N,) non-negative int tier of each pair (or row), or None (all 0).
            Tiers are lexicographic: the matching has the most pairs of the highest tier
            possible, then of the next tier, and so on; the scores only decide among those.
    Returns:
        matched (row, column) pairs, solved with ``scipy.optimize.linear_sum_assignment``.
    """
    score = np.asarray(score, np.float64)
    valid = np.asarray(valid, bool)
    n, m = score.shape
    if n == 0 or m == 0 or not valid.any():
        return []
    weight = 1.0 + np.maximum(score, 0.0)
    if priority is not None:
        tier = np.broadcast_to(np.asarray(priority, np.int64).reshape(n, -1), (n, m))
        base = (min(n, m) + 1) * (weight[valid].max() + 1.0)
        weight = weight + np.where(tier > 0, base ** tier.astype(np.float64), 0.0)
    rows, cols = linear_sum_assignment(-np.where(valid, weight, 0.0))
    return [(int(r), int(c)) for r, c in zip(rows, cols) if valid[r, c]]

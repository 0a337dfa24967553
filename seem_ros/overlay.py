"""Debug drawings of instance masks: an overlay image and a label image (numpy/cv2 only)."""
from __future__ import annotations

import colorsys
from typing import Optional, Sequence

import cv2
import numpy as np


def id_color(track_id: int) -> tuple:
    """A bright RGB colour that is stable for ``track_id`` and differs between neighbouring ids."""
    hue = (int(track_id) * 0.61803398875) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def label_image(shape, masks: Sequence[np.ndarray], ids: Sequence[int],
                scores: Optional[Sequence[float]] = None) -> np.ndarray:
    """(H, W) uint16 image, pixel = id of the mask covering it, 0 = background.

    Where masks overlap the higher-scoring one wins (the later one when ``scores`` is None).
    """
    out = np.zeros(tuple(shape[:2]), np.uint16)
    order = range(len(ids)) if scores is None else np.argsort(np.asarray(scores, np.float64), kind='stable')
    for i in order:
        out[masks[i]] = ids[i]
    return out


def draw_overlay(image: np.ndarray, masks: Sequence[np.ndarray], ids: Sequence[int],
                 labels: Optional[Sequence[str]] = None, alpha: float = 0.5) -> np.ndarray:
    """Blend each mask in its id colour onto ``image`` and write ``id label`` at its top-left.

    Args:
        image: (H, W, 3) uint8 RGB, not modified.
        masks: (H, W) bool masks, one per id.
        ids: track ids (colour and text).
        labels: optional text per mask.
        alpha: mask opacity in [0, 1].
    Returns:
        (H, W, 3) uint8 RGB.
    """
    out = image.copy()
    h, w = out.shape[:2]
    scale = max(0.35, min(h, w) / 800)
    for i, (mask, track_id) in enumerate(zip(masks, ids)):
        mask = np.asarray(mask, bool)
        if not mask.any():
            continue
        color = np.array(id_color(track_id), np.float32)
        out[mask] = (out[mask] * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), 1)
        ys, xs = np.nonzero(mask)
        text = f'{track_id} {labels[i]}' if labels is not None and labels[i] else str(track_id)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        x = int(min(xs.min(), max(w - tw, 0)))
        y = int(max(ys.min(), th + 1))
        cv2.rectangle(out, (x, y - th - 2), (x + tw, y + 1), (0, 0, 0), -1)
        cv2.putText(out, text, (x, y - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in color), 1,
                    cv2.LINE_AA)
    return out

"""The prompts a tracker builds for an object: a re-prompt merged into a pending one, the visual
prompt of a predicted mask and the referring patch cut from a frame.

Conventions: images are (H, W, 3) uint8 RGB; masks (H, W) bool; points (x, y) pixels.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from ..prompts import ObjectPrompt, ReferencePatch
from .association import mask_bbox


def merge_prompts(base: ObjectPrompt, extra: ObjectPrompt) -> ObjectPrompt:
    """``base`` with the inputs of ``extra`` added (its text, name, masks and reference win when set)."""
    def join(a, b, shape, dtype):
        return np.concatenate([np.reshape(a, shape), np.reshape(b, shape)]).astype(dtype)

    return ObjectPrompt(
        text=extra.text or base.text,
        points=join(base.points, extra.points, (-1, 2), np.float32),
        point_labels=join(base.point_labels, extra.point_labels, -1, bool),
        boxes=join(base.boxes, extra.boxes, (-1, 4), np.float32),
        scribbles=tuple(base.scribbles) + tuple(extra.scribbles),
        polygons=tuple(base.polygons) + tuple(extra.polygons),
        mask=extra.mask if extra.mask is not None else base.mask,
        negative_mask=extra.negative_mask if extra.negative_mask is not None else base.negative_mask,
        reference=extra.reference or base.reference,
        name=extra.name or base.name)


def visual_prompt(mask: np.ndarray, kind: str, text: str, negative: Optional[np.ndarray]) -> ObjectPrompt:
    """A prompt for the object under the non-empty ``mask`` (see ``PromptedConfig.propagation``)."""
    if kind == 'mask':
        return ObjectPrompt(text=text, mask=mask, negative_mask=negative)
    box = np.array([mask_bbox(mask)], np.float32)
    if kind == 'box':
        return ObjectPrompt(text=text, boxes=box, negative_mask=negative)
    x0, y0, x1, y1 = (int(v) for v in box[0])
    crop = np.pad(mask[y0:y1, x0:x1], 1).astype(np.uint8)
    row, col = np.unravel_index(int(np.argmax(cv2.distanceTransform(crop, cv2.DIST_L2, 3))), crop.shape)
    point = np.array([[x0 + col - 0.5, y0 + row - 0.5]], np.float32)
    return ObjectPrompt(text=text, boxes=box, points=point, point_labels=np.ones(1, bool), negative_mask=negative)


def frame_reference(image: np.ndarray, mask: np.ndarray) -> ReferencePatch:
    """The object as a referring patch: the whole frame with the object's mask.

    The reference is encoded at the frame's own size, which every backend already runs (an
    exported graph has no other size), its mask is resized exactly as any prompt drawn on that
    frame, and the object keeps the scale and context it has in the frames it is searched in.
    """
    return ReferencePatch(image=image.copy(), mask=mask.copy())

"""Turn an :class:`~seem_ros.prompts.ObjectPrompt` into positive/negative pixel masks.

SEEM consumes every visual prompt as a per-object bool mask at the model input resolution:

* click: the clicked pixel ``(floor(y), floor(x))`` dilated by a 3x3 square (the official
  ``dilation_kernel``);
* box: the pixels whose centres lie inside the XYXY box (``mask[y0:y1, x0:x1]`` for integer boxes);
* scribble: a 1-pixel 8-connected polyline dilated by 3x3; polygon: filled;
* mask: used as is.

Coordinates are (x, y) pixels of the original image; ``scale`` maps them to the model input
(resized) image. Masks given at the original size are resized with nearest neighbour.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from .prompts import ObjectPrompt

_DILATE = np.ones((3, 3), np.uint8)


class PromptError(ValueError):
    """A prompt that cannot be rasterized (outside the image, wrong mask size, ...)."""


def _pixel(xy, scale, size):
    h, w = size
    x, y = float(xy[0]) * scale, float(xy[1]) * scale
    col, row = int(np.floor(x)), int(np.floor(y))
    if not (0 <= col < w and 0 <= row < h):
        raise PromptError(f'point ({xy[0]:g}, {xy[1]:g}) lies outside the {round(w / scale)}x{round(h / scale)} image')
    return row, col


def _resize_mask(mask, size, what):
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise PromptError(f'{what} must be a 2-D (H, W) array, got shape {mask.shape}')
    mask = mask.astype(bool)
    if mask.shape != tuple(size):
        mask = cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)
    return mask


def rasterize(prompt: ObjectPrompt, image_size: Tuple[int, int], input_size: Tuple[int, int]):
    """Rasterize the visual parts of ``prompt``.

    Args:
        prompt: the object's prompt; ``mask``/``negative_mask`` are (H, W) at ``image_size``.
        image_size: (H, W) of the original image the coordinates refer to.
        input_size: (h, w) of the resized model input (before padding).
    Returns:
        (positive, negative): two (h, w) bool arrays.
    Raises:
        PromptError: a point outside the image, or a mask of the wrong shape.
    """
    h, w = input_size
    scale = h / image_size[0]
    pos = np.zeros((h, w), np.uint8)
    neg = np.zeros((h, w), np.uint8)
    for xy, positive in zip(np.asarray(prompt.points, np.float64).reshape(-1, 2), np.asarray(prompt.point_labels)):
        row, col = _pixel(xy, scale, (h, w))
        (pos if positive else neg)[row, col] = 1
    for line in prompt.scribbles:
        pts = [_pixel(xy, scale, (h, w)) for xy in np.asarray(line, np.float64).reshape(-1, 2)]
        cols_rows = np.array([[c, r] for r, c in pts], np.int32).reshape(-1, 1, 2)
        cv2.polylines(pos, [cols_rows], False, 1, thickness=1, lineType=cv2.LINE_8)
    pos = cv2.dilate(pos, _DILATE)
    neg = cv2.dilate(neg, _DILATE)
    for x0, y0, x1, y1 in np.asarray(prompt.boxes, np.float64).reshape(-1, 4) * scale:
        if not (x1 > x0 and y1 > y0):
            raise PromptError(f'box ({x0 / scale:g}, {y0 / scale:g}, {x1 / scale:g}, {y1 / scale:g}) is empty')
        c0, c1 = max(int(np.ceil(x0 - 0.5)), 0), min(int(np.floor(x1 - 0.5)), w - 1)
        r0, r1 = max(int(np.ceil(y0 - 0.5)), 0), min(int(np.floor(y1 - 0.5)), h - 1)
        if c1 < c0 or r1 < r0:
            raise PromptError('box lies outside the image')
        pos[r0:r1 + 1, c0:c1 + 1] = 1
    for poly in prompt.polygons:
        pts = np.round(np.asarray(poly, np.float64).reshape(-1, 2) * scale - 0.5).astype(np.int32)
        cv2.fillPoly(pos, [pts.reshape(-1, 1, 2)], 1)
    pos = pos.astype(bool)
    neg = neg.astype(bool)
    if prompt.mask is not None:
        pos |= _resize_mask(prompt.mask, (h, w), 'mask prompt')
    if prompt.negative_mask is not None:
        neg |= _resize_mask(prompt.negative_mask, (h, w), 'negative mask')
    return pos, neg

"""Turn an :class:`~seem_ros.prompts.ObjectPrompt` into positive/negative pixel masks.

SEEM consumes every visual prompt as a per-object bool mask at the model input resolution. The
prompt is drawn on the image it belongs to, at that image's size, exactly as a user draws on the
original image in the official demo:

* click: the clicked pixel ``(floor(y), floor(x))`` dilated by a 3x3 square (the official
  ``dilation_kernel``);
* box: the pixels whose centres lie inside the XYXY box (``mask[y0:y1, x0:x1]`` for integer boxes);
* scribble: a 1-pixel 8-connected polyline dilated by 3x3; polygon: filled;
* mask: used as is (it must have the image's size).

The drawing (uint8, 0 or 255) is then resized to the model input as the demo resizes a drawn
mask: ``F.interpolate(mode='bilinear', align_corners=False)`` on the uint8 tensor, then ``> 0``
(each axis with its own scale). Coordinates are (x, y) pixels of the original image.
"""
from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .prompts import ObjectPrompt, PromptError

__all__ = ['draw', 'rasterize', 'resize_drawn']

_DILATE = np.ones((3, 3), np.uint8)
DRAWN = 255
"""Value of a drawn pixel (a drawn mask in the official demo is 0/255 uint8)."""


def _pixel(xy, size):
    h, w = size
    col, row = int(np.floor(float(xy[0]))), int(np.floor(float(xy[1])))
    if not (0 <= col < w and 0 <= row < h):
        raise PromptError(f'point ({float(xy[0]):g}, {float(xy[1]):g}) lies outside the {w}x{h} image')
    return row, col


def _mask(mask, size, what):
    mask = np.asarray(mask)
    if mask.shape != tuple(size):
        raise PromptError(f'{what} is {mask.shape[1::-1] if mask.ndim == 2 else mask.shape} '
                          f'but its image is {size[1]}x{size[0]}')
    return mask.astype(bool)


def draw(prompt: ObjectPrompt, image_size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Draw the visual parts of ``prompt`` at ``image_size`` (H, W) of the image they refer to.

    Returns:
        (positive, negative): two (H, W) uint8 arrays, :data:`DRAWN` on the prompt, 0 elsewhere.
    Raises:
        PromptError: a point outside the image, an empty box, or a mask of another size.
    """
    h, w = image_size
    pos: np.ndarray = np.zeros((h, w), np.uint8)
    neg: np.ndarray = np.zeros((h, w), np.uint8)
    for xy, positive in zip(np.asarray(prompt.points, np.float64).reshape(-1, 2), np.asarray(prompt.point_labels)):
        row, col = _pixel(xy, (h, w))
        (pos if positive else neg)[row, col] = DRAWN
    for line in prompt.scribbles:
        pixels = [_pixel(xy, (h, w)) for xy in np.asarray(line, np.float64).reshape(-1, 2)]
        cols_rows = np.array([[c, r] for r, c in pixels], np.int32).reshape(-1, 1, 2)
        cv2.polylines(pos, [cols_rows], False, DRAWN, thickness=1, lineType=cv2.LINE_8)
    pos = cv2.dilate(pos, _DILATE)
    neg = cv2.dilate(neg, _DILATE)
    for x0, y0, x1, y1 in np.asarray(prompt.boxes, np.float64).reshape(-1, 4):
        if not (x1 > x0 and y1 > y0):
            raise PromptError(f'box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is empty')
        c0, c1 = max(int(np.ceil(x0 - 0.5)), 0), min(int(np.floor(x1 - 0.5)), w - 1)
        r0, r1 = max(int(np.ceil(y0 - 0.5)), 0), min(int(np.floor(y1 - 0.5)), h - 1)
        if c1 < c0 or r1 < r0:
            raise PromptError(f'box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) covers no pixel centre of the {w}x{h} image')
        pos[r0:r1 + 1, c0:c1 + 1] = DRAWN
    for poly in prompt.polygons:
        pts = np.round(np.asarray(poly, np.float64).reshape(-1, 2) - 0.5).astype(np.int32)
        cv2.fillPoly(pos, [pts.reshape(-1, 1, 2)], DRAWN)
    if prompt.mask is not None:
        pos[_mask(prompt.mask, (h, w), 'mask prompt')] = DRAWN
    if prompt.negative_mask is not None:
        neg[_mask(prompt.negative_mask, (h, w), 'negative mask')] = DRAWN
    return pos, neg


def resize_drawn(drawn: np.ndarray, input_size: Tuple[int, int]) -> np.ndarray:
    """(h, w) bool model-input mask of an (H, W) uint8 drawing: bilinear (align_corners=False)
    on the uint8 tensor, then ``> 0``, as the official demo resizes a drawn prompt."""
    if drawn.shape == tuple(input_size):
        return drawn > 0
    tensor = torch.from_numpy(np.ascontiguousarray(drawn))[None, None]
    return (F.interpolate(tensor, size=tuple(input_size), mode='bilinear', align_corners=False)[0, 0] > 0).numpy()


def rasterize(prompt: ObjectPrompt, image_size: Tuple[int, int], input_size: Tuple[int, int]):
    """Positive and negative (h, w) bool masks of ``prompt`` at the model input.

    Args:
        prompt: the object's prompt, in pixels of its image; masks are (H, W) at ``image_size``.
        image_size: (H, W) of the image the prompt was drawn on.
        input_size: (h, w) of the resized model input (before padding).
    Raises:
        PromptError: see :func:`draw`; also when the resize leaves no positive pixel of a
            prompt that had some (a prompt too small for the model input).
    """
    pos, neg = draw(prompt, image_size)
    positive, negative = resize_drawn(pos, input_size), resize_drawn(neg, input_size)
    if pos.any() and not positive.any():
        raise PromptError(f'the prompt vanishes when its {image_size[1]}x{image_size[0]} image is resized '
                          f'to the model input {input_size[1]}x{input_size[0]}')
    return positive, negative

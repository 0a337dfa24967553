"""Prompt and result types shared by the predictor, the node and the CLIs (no torch, no ROS).

Conventions: pixel coordinates are (x, y) in the original image, x to the right, y down,
origin at the top-left pixel's corner; boxes are XYXY in pixels; masks are (H, W) bool at
the original image size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np


class PromptError(ValueError):
    """A prompt that cannot be used (outside its image, wrong mask size, empty, unknown id,
    table full); the message names the problem."""


@dataclass(frozen=True)
class ReferencePatch:
    """An object marked in another image: ``image`` (h, w, 3) uint8 RGB and ``mask`` (h, w) bool."""

    image: np.ndarray
    mask: np.ndarray


@dataclass(frozen=True)
class ObjectPrompt:
    """Any composition of prompts that together designate ONE object.

    Attributes:
        text: referring expression ("the red mug"); empty for none.
        points: (N, 2) float (x, y) pixel clicks.
        point_labels: (N,) bool, True = positive click, False = negative.
        boxes: (M, 4) float XYXY pixel boxes (filled rectangles, positive).
        scribbles: polylines, each (K, 2) float (x, y), rasterized as strokes (positive).
        polygons: closed polygons, each (K, 2) float (x, y), rasterized filled (positive).
        mask: (H, W) bool positive mask or None.
        negative_mask: (H, W) bool negative mask or None.
        reference: a referring patch from another image, or None.
        name: client-chosen name/label of the object.
    """

    text: str = ''
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scribbles: Sequence[np.ndarray] = ()
    polygons: Sequence[np.ndarray] = ()
    mask: Optional[np.ndarray] = None
    negative_mask: Optional[np.ndarray] = None
    reference: Optional[ReferencePatch] = None
    name: str = ''

    @property
    def has_visual(self) -> bool:
        """True when the prompt carries any spatial (pixel) input on the target image."""
        return bool(len(self.points) or len(self.boxes) or len(self.scribbles) or len(self.polygons)
                    or self.mask is not None or self.negative_mask is not None)

    @property
    def is_empty(self) -> bool:
        return not (self.text.strip() or self.has_visual or self.reference is not None)

    @property
    def default_label(self) -> str:
        """A label for an object nobody named: its text, else the kinds of its inputs
        ('click', 'box+click', 'mask', 'referring patch', ...)."""
        if self.text.strip():
            return self.text
        kinds = [('box', len(self.boxes)), ('click', np.asarray(self.point_labels).any()),
                 ('scribble', len(self.scribbles)), ('polygon', len(self.polygons)), ('mask', self.mask is not None),
                 ('referring patch', self.reference is not None)]
        return '+'.join(name for name, present in kinds if present) or 'object'


MAX_COORDINATE = 2 ** 31 - 1
"""Largest magnitude of a pixel coordinate (int32)."""


@dataclass(frozen=True)
class InputLimits:
    """Bounds on what one message may ask for; over a bound is a rejection naming the field.

    Attributes:
        max_image_pixels: most pixels of one image (camera frame, referring image, mask).
        max_aspect_ratio: largest long side / short side of one image.
        max_text_chars: longest text of one message.
        max_text_items: most comma-separated objects of one ``~/text`` message.
        max_prompt_points: most clicks of one prompt, and most points of one scribble or polygon.
    """

    max_image_pixels: int = 7680 * 4320
    max_aspect_ratio: float = 8.0
    max_text_chars: int = 4096
    max_text_items: int = 16
    max_prompt_points: int = 4096

    def check_image_size(self, width: int, height: int, what: str) -> None:
        """Raise ``ValueError`` naming ``what`` when a ``width`` x ``height`` image is over a bound."""
        if width * height > self.max_image_pixels:
            raise ValueError(f'{what} is {width}x{height} = {width * height} pixels, more than the limit '
                             f'{self.max_image_pixels} (limits.max_image_pixels)')
        if max(width, height) > self.max_aspect_ratio * max(min(width, height), 1):
            raise ValueError(f'{what} is {width}x{height}, an aspect ratio over {self.max_aspect_ratio:g} '
                             '(limits.max_aspect_ratio)')


def check_coordinates(values, field_name: str, per_row: int, limit: int) -> np.ndarray:
    """``values`` as (N, per_row) float32 pixel coordinates; raises :class:`PromptError` naming
    ``field_name`` for more than ``limit`` rows or a value that is not a finite int32."""
    array = np.asarray(values, np.float64).reshape(-1, per_row)
    if len(array) > limit:
        raise PromptError(f'{field_name}: {len(array)} entries, at most {limit} (limits.max_prompt_points)')
    bad = ~np.isfinite(array) | (np.abs(array) > MAX_COORDINATE)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise PromptError(f'{field_name}[{row}]: {array[row, col]:g} is not a finite int32 pixel coordinate')
    return array.astype(np.float32)


def check_boxes(values, field_name: str, limit: int) -> np.ndarray:
    """``values`` as (N, 4) float32 XYXY boxes: :func:`check_coordinates`, and min <= max."""
    boxes = check_coordinates(values, field_name, 4, limit)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if x0 > x1 or y0 > y1:
            raise PromptError(f'{field_name}[{i}]: min > max in ({x0:g}, {y0:g}, {x1:g}, {y1:g})')
    return boxes


def box_mask(box, size, field_name: str) -> np.ndarray:
    """(h, w) bool mask of the pixels of the XYXY ``box`` on an image of ``size`` (edges rounded,
    clipped to the image); raises :class:`PromptError` when the box is malformed or covers no pixel."""
    h, w = size
    (x0, y0, x1, y1), = check_boxes(np.asarray(box, np.float64).reshape(1, 4), field_name, 1)
    c0, c1 = int(np.clip(np.round(x0), 0, w)), int(np.clip(np.round(x1), 0, w))
    r0, r1 = int(np.clip(np.round(y0), 0, h)), int(np.clip(np.round(y1), 0, h))
    if c1 <= c0 or r1 <= r0:
        raise PromptError(f'{field_name} ({x0:g}, {y0:g}, {x1:g}, {y1:g}) covers no pixel of its {w}x{h} image')
    mask = np.zeros((h, w), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def _check_mask(mask, field_name: str, limits: InputLimits, *, nonempty: bool) -> None:
    mask = np.asarray(mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise PromptError(f'{field_name} must be a non-empty (H, W) mask, got shape {mask.shape}')
    try:
        limits.check_image_size(mask.shape[1], mask.shape[0], field_name)
    except ValueError as exc:
        raise PromptError(str(exc)) from None
    if nonempty and not mask.any():
        raise PromptError(f'{field_name} is empty (no nonzero pixel): it designates nothing')


def check_prompt(prompt: 'ObjectPrompt', limits: InputLimits = InputLimits()) -> None:
    """Check every field of ``prompt`` before it is accepted (node, bag replay, YAML prompts).

    Raises :class:`PromptError` naming the field: text over ``max_text_chars``, clicks or
    polyline points that are not finite int32 values or too many, points and labels of different
    lengths, boxes with min > max, a polygon under 3 points, an empty or oversized mask, a
    referring image that is not (h, w, 3) uint8 or whose mask differs in size or is empty.
    """
    if len(prompt.text) > limits.max_text_chars:
        raise PromptError(f'text of {len(prompt.text)} characters exceeds {limits.max_text_chars} '
                          '(limits.max_text_chars)')
    points = check_coordinates(prompt.points, 'points', 2, limits.max_prompt_points)
    if len(points) != len(np.asarray(prompt.point_labels).reshape(-1)):
        raise PromptError(f'{len(points)} points but {len(np.asarray(prompt.point_labels).reshape(-1))} point labels')
    check_boxes(prompt.boxes, 'boxes', limits.max_prompt_points)
    for kind, lines, minimum in (('scribbles', prompt.scribbles, 1), ('polygons', prompt.polygons, 3)):
        for i, line in enumerate(lines):
            xy = check_coordinates(line, f'{kind}[{i}]', 2, limits.max_prompt_points)
            if len(xy) < minimum:
                raise PromptError(f'{kind}[{i}] has {len(xy)} points, at least {minimum} needed')
    if prompt.mask is not None:
        _check_mask(prompt.mask, 'mask', limits, nonempty=True)
    if prompt.negative_mask is not None:
        _check_mask(prompt.negative_mask, 'negative_mask', limits, nonempty=False)
    ref = prompt.reference
    if ref is not None:
        image = np.asarray(ref.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise PromptError(f'reference image must be a non-empty (h, w, 3) uint8 image, got {image.shape} '
                              f'{image.dtype}')
        _check_mask(ref.mask, 'reference mask', limits, nonempty=True)
        if np.shape(ref.mask) != image.shape[:2]:
            raise PromptError(f'reference mask is {np.shape(ref.mask)[1::-1]} but its image is '
                              f'{image.shape[1]}x{image.shape[0]}')

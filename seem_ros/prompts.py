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

"""The compact, lossless instance-mask format of ``seem_ros/TrackedObject`` (numpy only, no ROS).

A mask is cropped to its tight bounding box and the crop is run-length encoded the way COCO's
uncompressed RLE does it: counts alternate background/object starting with background (a leading
0 when the crop starts with object), in column-major order, summing to ``width * height``. The
counts decode with ``pycocotools.mask.decode`` given ``size = [height, width]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rle_encode(mask: np.ndarray) -> np.ndarray:
    """COCO uncompressed RLE counts (uint32, column-major) of a (H, W) mask (nonzero = object)."""
    flat = np.asarray(mask, dtype=bool).ravel(order='F')
    if flat.size == 0:
        return np.zeros(0, np.uint32)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate(([0], counts))
    return counts.astype(np.uint32)


def rle_decode(counts, height: int, width: int) -> np.ndarray:
    """The (height, width) bool mask of COCO uncompressed RLE ``counts`` (column-major).

    Raises:
        ValueError: if the counts do not sum to ``height * width``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width:
        raise ValueError(f'RLE counts sum to {int(counts.sum())}, expected {height} * {width} = {height * width}')
    values = np.arange(counts.size) % 2 == 1
    return np.repeat(values, counts).reshape((width, height)).T


@dataclass(frozen=True)
class CompactMask:
    """A mask cropped to its tight box: offsets and size in pixels, RLE ``counts`` of the crop."""

    x_offset: int
    y_offset: int
    width: int
    height: int
    counts: np.ndarray

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> 'CompactMask':
        """Encode a full-image (H, W) mask (nonzero = object); an empty mask has size 0 x 0."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f'expected a (H, W) mask, got shape {mask.shape}')
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            return cls(0, 0, 0, 0, np.zeros(0, np.uint32))
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(int(x0), int(y0), int(x1 - x0), int(y1 - y0), rle_encode(mask[y0:y1, x0:x1]))

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """The tight box (x_min, y_min, x_max, y_max), max exclusive."""
        return self.x_offset, self.y_offset, self.x_offset + self.width, self.y_offset + self.height

    def crop(self) -> np.ndarray:
        """The (height, width) bool mask inside the box."""
        return rle_decode(self.counts, self.height, self.width)

    def to_mask(self, image_height: int, image_width: int) -> np.ndarray:
        """The full (image_height, image_width) bool mask.

        Raises:
            ValueError: if the box does not fit in the image or the counts do not match its size.
        """
        x0, y0, x1, y1 = self.bbox
        if x1 > image_width or y1 > image_height:
            raise ValueError(f'mask box {self.bbox} exceeds the {image_width}x{image_height} image')
        full = np.zeros((image_height, image_width), bool)
        full[y0:y1, x0:x1] = self.crop()
        return full

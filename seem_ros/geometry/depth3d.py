"""Objects in 3D from an aligned depth image (numpy/cv2 only, no ROS).

Conventions:

* 3D points are metres in the camera optical frame: x right, y down, z forward.
* Pixel ``(row, col)`` has its centre at ``(u, v) = (col, row)``; ``u = fx X / Z + cx`` (the
  OpenCV / ROS ``CameraInfo`` model, without distortion).
* "Aligned" depth shares the colour camera's optical centre, orientation and field of view; it may
  have another resolution. Both grids then cover the same image area, pixel edge to pixel edge,
  which fixes how intrinsics (:meth:`CameraIntrinsics.scaled_to`) and masks (:func:`mask_to_grid`)
  move between them.
* Depth in metres is float32 with NaN where invalid (:func:`depth_to_metres`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

DEPTH_ENCODINGS = {'16UC1': (np.uint16, 0.001), 'mono16': (np.uint16, 0.001), '32FC1': (np.float32, 1.0)}
"""Depth image encoding -> (pixel dtype, metres per stored unit): 16-bit millimetres, 32FC1 metres."""

EXTENT_PERCENTILES = (0.5, 99.5)
"""The extent of an object is the range between these percentiles of its points, per axis (it
reads a few per cent small on round shapes, whose extremes hold few points)."""

MAD_K = 3.0
"""Points farther from the median depth than ``MAD_K`` robust standard deviations are outliers..."""

MIN_BAND_M = 0.02
"""... but points within this many metres of the median depth are always kept."""


FOCAL_RANGE = (0.05, 1000.0)
"""Physical focal lengths, as fractions of the image width (fx) or height (fy): a field of view
between about 168 degrees and 0.06 degrees. Others are rejected as not a real camera."""
MIN_DEPTH = 0.01
"""Metres; nearer depth is invalid (no depth camera measures it: it is a zero or an encoding error)."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels (see module conventions)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self):
        if not (self.fx > 0 and self.fy > 0 and math.isfinite(self.fx) and math.isfinite(self.fy)):
            raise ValueError(f'focal lengths must be positive and finite, got fx={self.fx}, fy={self.fy}')
        if not (math.isfinite(self.cx) and math.isfinite(self.cy)):
            raise ValueError(f'principal point must be finite, got cx={self.cx}, cy={self.cy}')
        if self.width < 1 or self.height < 1:
            raise ValueError(f'image size must be positive, got {self.width}x{self.height}')
        low, high = FOCAL_RANGE
        if not (low * self.width <= self.fx <= high * self.width
                and low * self.height <= self.fy <= high * self.height):
            raise ValueError(f'focal lengths fx={self.fx:g}, fy={self.fy:g} are not physical for a {self.width}x'
                             f'{self.height} image (expected {low:g} to {high:g} times its width/height)')
        if not (-self.width <= self.cx <= 2 * self.width and -self.height <= self.cy <= 2 * self.height):
            raise ValueError(f'principal point ({self.cx:g}, {self.cy:g}) lies far outside the {self.width}x'
                             f'{self.height} image (does the CameraInfo size match its K?)')

    @classmethod
    def from_matrix(cls, matrix, width: int, height: int) -> 'CameraIntrinsics':
        """From ``CameraInfo.k`` (3x3, or 9 values row-major) or ``CameraInfo.p`` (3x4, or 12
        values) of an image of ``width`` x ``height``. Raises ``ValueError`` for an
        uncalibrated (zero) matrix or a bad size."""
        m = np.asarray(matrix, np.float64).reshape(3, -1)
        if m.shape[1] not in (3, 4):
            raise ValueError(f'expected a 3x3 K or 3x4 P matrix, got {np.size(matrix)} values')
        return cls(float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2]), int(width), int(height))

    def scaled_to(self, width: int, height: int) -> 'CameraIntrinsics':
        """The intrinsics of the same field of view sampled on a ``width`` x ``height`` grid.

        Pixel edges map onto pixel edges: ``u' + 0.5 = (u + 0.5) * width / self.width``, so
        ``fx' = fx * sx`` and ``cx' = (cx + 0.5) * sx - 0.5`` (likewise for y).
        """
        sx, sy = width / self.width, height / self.height
        return CameraIntrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
                                int(width), int(height))


@dataclass(frozen=True)
class ObjectGeometry:
    """One object in 3D (camera optical frame, metres).

    Attributes:
        centroid: (3,) float64 mean of the object's points; NaN when it has none.
        extent: (3,) float64 axis-aligned size (x, y, z): the range between
            :data:`EXTENT_PERCENTILES` of the points per axis; NaN when there are none.
        box_center: (3,) float64 centre of that range (the centre of the extent box).
        num_points: valid depth points used.
        valid: ``num_points >= min_points``; the estimate is still filled in when some points exist.
        points: (num_points, 3) float32 points when asked for, else None.
    """

    centroid: np.ndarray
    extent: np.ndarray
    box_center: np.ndarray
    num_points: int
    valid: bool
    points: Optional[np.ndarray] = None


DEPTH_BUFFER = 30
"""Depth images kept for pairing with colour images by stamp (about 1 s at 30 Hz)."""


def depth_to_metres(depth: np.ndarray, encoding: str, *, max_depth: float = math.inf) -> np.ndarray:
    """(H, W) float32 metres from a depth image's pixels; NaN where invalid.

    Args:
        depth: (H, W) uint16 millimetres for '16UC1' / 'mono16', float32 metres for '32FC1'.
        encoding: the image's encoding (see :data:`DEPTH_ENCODINGS`).
        max_depth: metres; farther depth is invalid.
    Invalid: NaN, +-inf, nearer than :data:`MIN_DEPTH` (0 and negative included), or beyond
    ``max_depth``. Returns a new array.
    Raises:
        ValueError: an unknown encoding, or pixels whose dtype does not match it.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"unsupported depth encoding '{encoding}' (supported: {', '.join(DEPTH_ENCODINGS)})")
    dtype, scale = DEPTH_ENCODINGS[encoding]
    depth = np.asarray(depth)
    if depth.dtype != dtype or depth.ndim != 2:
        raise ValueError(f"'{encoding}' depth must be a 2D {np.dtype(dtype)} array, got {depth.dtype} {depth.shape}")
    metres = depth.astype(np.float32) * np.float32(scale)
    with np.errstate(invalid='ignore'):
        metres[~(np.isfinite(metres) & (metres >= MIN_DEPTH) & (metres <= max_depth))] = np.nan
    return metres


def _grid_index(n_from: int, n_to: int) -> np.ndarray:
    """For each of ``n_to`` cells, the index of the ``n_from`` cell containing its centre."""
    return np.minimum(((np.arange(n_to) + 0.5) * (n_from / n_to)).astype(np.intp), n_from - 1)


def mask_to_grid(mask: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Resample a (H, W) mask onto an (h, w) grid of the same field of view (nearest).

    A target pixel takes the value of the source pixel that contains its centre, the mapping of
    :meth:`CameraIntrinsics.scaled_to`. Returns (h, w) bool (``mask`` itself when the shapes match).
    """
    mask = np.asarray(mask, bool)
    h, w = shape
    if mask.shape == (h, w):
        return mask
    return mask[_grid_index(mask.shape[0], h)[:, None], _grid_index(mask.shape[1], w)[None, :]]


def _empty(points: bool) -> ObjectGeometry:
    nan = np.full(3, np.nan)
    return ObjectGeometry(nan, nan.copy(), nan.copy(), 0, False, np.zeros((0, 3), np.float32) if points else None)


def object_geometry(mask: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics, *, erode_px: int = 2,
                    min_points: int = 20, return_points: bool = False) -> ObjectGeometry:
    """3D centroid and extent of one object from its mask on the depth grid.

    Robust to a mask that bleeds over the object's edge (onto the background or another object)
    and to flying pixels there: the object's depth is the median over the mask eroded by
    ``erode_px`` (not along the image border, which is no object edge), and the object's points
    are the mask's valid pixels whose depth lies within ``MAD_K`` robust standard deviations (and
    at least ``MIN_BAND_M``) of it. An object too thin to keep ``min_points`` valid pixels after
    erosion takes its depth statistics over the whole mask.

    Args:
        mask: (h, w) bool, on the depth grid (see :func:`mask_to_grid`).
        depth_m: (h, w) float32 metres, NaN where invalid (see :func:`depth_to_metres`).
        intrinsics: of the depth grid (``width`` = w, ``height`` = h).
        erode_px: erosion radius in depth pixels (0: none).
        min_points: fewest points for ``valid``.
        return_points: also return the points.
    Raises:
        ValueError: if the mask, depth and intrinsics sizes differ.
    """
    mask = np.asarray(mask, bool)
    h, w = depth_m.shape
    if mask.shape != (h, w) or (intrinsics.height, intrinsics.width) != (h, w):
        raise ValueError(f'mask {mask.shape}, depth {depth_m.shape} and intrinsics '
                         f'({intrinsics.height}, {intrinsics.width}) must have the same size')
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return _empty(return_points)
    r0, r1 = max(rows[0] - erode_px, 0), min(rows[-1] + 1 + erode_px, h)   # crop with room to erode
    c0, c1 = max(cols[0] - erode_px, 0), min(cols[-1] + 1 + erode_px, w)
    depth = depth_m[r0:r1, c0:c1]
    ys, xs = np.nonzero(mask[r0:r1, c0:c1] & np.isfinite(depth) & (depth > 0))
    z = depth[ys, xs].astype(np.float64)
    if z.size == 0:
        return _empty(return_points)
    core = z
    if erode_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
        eroded = cv2.erode(mask[r0:r1, c0:c1].view(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT,
                           borderValue=1).view(bool)[ys, xs]
        if np.count_nonzero(eroded) >= min_points:
            core = z[eroded]
    median = np.median(core)
    band = max(MAD_K * 1.4826 * np.median(np.abs(core - median)), MIN_BAND_M)
    keep = np.abs(z - median) <= band
    ys, xs, z = ys[keep], xs[keep], z[keep]
    points = np.stack([(xs + c0 - intrinsics.cx) * z / intrinsics.fx, (ys + r0 - intrinsics.cy) * z / intrinsics.fy,
                       z], axis=1)
    lo, hi = np.percentile(points, EXTENT_PERCENTILES, axis=0)
    return ObjectGeometry(points.mean(axis=0), hi - lo, (lo + hi) / 2, len(z), len(z) >= min_points,
                          points.astype(np.float32) if return_points else None)


def frame_geometry(masks: Sequence[np.ndarray], depth_m: np.ndarray, intrinsics: CameraIntrinsics, *,
                   erode_px: int = 2, min_points: int = 20, return_points: bool = False) -> List[ObjectGeometry]:
    """:func:`object_geometry` of every mask of one frame.

    Args:
        masks: (H, W) bool masks at the colour image's resolution (any size of the same field of
            view as the depth); each is resampled onto the depth grid with :func:`mask_to_grid`.
        depth_m: (h, w) float32 metres, NaN where invalid, aligned with the colour image.
        intrinsics: of the depth image or of the colour image (same field of view); scaled to the
            depth grid here.
    Returns one :class:`ObjectGeometry` per mask, in order.
    Raises:
        ValueError: a mask or the intrinsics with another aspect ratio than the depth (more than
            1 % apart): they cannot share its field of view, so the depth is not aligned.
    """
    h, w = depth_m.shape
    for height, width in {(intrinsics.height, intrinsics.width)} | {np.shape(m) for m in masks}:
        if abs(width * h / (height * w) - 1.0) > 0.01:
            raise ValueError(f'a {width}x{height} mask or intrinsics and a {w}x{h} depth image differ in aspect '
                             f'ratio: the depth must be aligned to the colour image (same field of view)')
    grid = intrinsics.scaled_to(w, h)
    return [object_geometry(mask_to_grid(mask, (h, w)), depth_m, grid, erode_px=erode_px, min_points=min_points,
                            return_points=return_points) for mask in masks]


def place_objects(masks: Sequence[Optional[np.ndarray]], depth_m: np.ndarray, k: Sequence[float],
                  info_size: Tuple[int, int], *, erode_px: int = 2, min_points: int = 20,
                  return_points: bool = False) -> List[Optional[ObjectGeometry]]:
    """:func:`frame_geometry` of the objects of one frame that are shown.

    Args:
        masks: per object its (H, W) bool mask, or None (not shown, e.g. LOST): its entry is None.
        depth_m: (h, w) float32 metres (:func:`depth_to_metres`).
        k: the row-major 3x3 intrinsic matrix of the depth (or colour) CameraInfo, of an image
            of ``info_size`` (width, height); (0, 0) = the depth image's size.
    Raises:
        ValueError: as :func:`frame_geometry` (aspect ratios differ) or :class:`CameraIntrinsics`.
    """
    width, height = info_size
    if not (width and height):
        height, width = depth_m.shape
    shown = [(i, m) for i, m in enumerate(masks) if m is not None and m.any()]
    geometries = frame_geometry([m for _, m in shown], depth_m, CameraIntrinsics.from_matrix(k, width, height),
                                erode_px=erode_px, min_points=min_points, return_points=return_points)
    out: List[Optional[ObjectGeometry]] = [None] * len(masks)
    for (i, _), geometry in zip(shown, geometries):
        out[i] = geometry
    return out


def nearest_by_stamp(buffer: Iterable[Tuple[int, object]], stamp_ns: int, slop_ns: int):
    """The item of ``(stamp_ns, item)`` pairs whose stamp is nearest to ``stamp_ns``, if that is
    within ``slop_ns`` (inclusive); else None (nothing close enough yet, or an empty buffer).
    On a tie the earlier stamp wins."""
    best = min(buffer, key=lambda entry: (abs(entry[0] - stamp_ns), entry[0]), default=None)
    return best[1] if best is not None and abs(best[0] - stamp_ns) <= slop_ns else None

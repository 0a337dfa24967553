"""Procedural scenes: flat coloured shapes moving in front of a textured plane (numpy/cv2 only).

Conventions:

* Images are (H, W, 3) uint8 RGB. Pixel ``(row, col)`` has its centre at pixel coordinate
  ``(u, v) = (col, row)`` for the camera model (OpenCV/ROS ``CameraInfo``: ``u = fx X / Z + cx``).
* Prompt points and boxes follow :mod:`seem_ros.prompts` (origin at the top-left pixel's
  corner): a click on pixel (row, col) is ``(col + 0.5, row + 0.5)``; a box is XYXY with an
  exclusive end, ``[col_min, row_min, col_max + 1, row_max + 1]``.
* 3D points are metres in the camera optical frame: x right, y down, z forward.

Each object is a flat, fronto-parallel shape of circumradius ``radius_m`` at depth ``z`` metres,
so its image radius is ``fx * radius_m / z`` pixels and nearer objects hide farther ones
(painter's order by depth). The background is a plane ``z = d / (1 + tilt * (v - cy) / fy)``
beyond every object. Object motion is a smooth keyframed trajectory; everything, sensor noise
included, is a pure function of (scenario, seed, frame index), so frames can be rendered in any
order and the same seed always gives the same frames.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from seem_ros.prompts import ObjectPrompt, ReferencePatch

PALETTE: Dict[str, Tuple[int, int, int]] = {
    'red': (215, 35, 35), 'green': (35, 165, 55), 'blue': (35, 75, 215), 'yellow': (235, 210, 35),
    'orange': (240, 125, 25), 'purple': (135, 55, 185), 'cyan': (35, 195, 205), 'pink': (240, 115, 175),
}
"""Object colour names -> RGB."""

SHAPES = ('ellipse', 'rectangle', 'triangle', 'star', 'ring', 'cross', 'hexagon')
"""Object classes; the class name of an object is its shape."""

BACKGROUNDS = ('gradient', 'tiles', 'noise', 'stripes')

SCENARIO_SECONDS = {'demo': 10.0, 'occlusion': 6.0, 'exit_reentry': 8.0, 'random': 8.0}
"""Scenario name -> default duration in seconds. Scripted events scale with the duration."""

PROMPT_KINDS = ('text', 'click', 'box', 'reference')
"""The scripted prompts, one per target object, in this order."""

REFERENCE_SEED_OFFSET = 1_000_003
"""A referring patch for a scene of seed ``s`` comes from the ``random`` scene of seed ``s + offset``."""

_COMPACT = ('rectangle', 'ellipse', 'hexagon')  # occluders: inradius >= 0.85 * radius (aspect >= 0.85)
_NOISE_LUT = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera without distortion; intrinsics in pixels (see module conventions)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def with_fov(cls, width: int, height: int, hfov_deg: float = 60.0) -> 'Camera':
        """Square pixels, principal point at the image centre, horizontal field of view ``hfov_deg``."""
        f = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @property
    def K(self) -> np.ndarray:
        """(3, 3) float64 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Trajectory:
    """Smooth keyframed motion: a cubic Hermite spline (Catmull-Rom tangents) through keys.

    ``times`` (K,) increasing seconds; ``keys`` (K, 4) rows ``(u, v, z, angle)``: the shape's
    centre as fractions of the image width and height (0..1 spans the frame, outside = off
    frame), its depth in metres and its in-plane rotation in radians. Held constant outside
    ``[times[0], times[-1]]``.
    """

    times: np.ndarray
    keys: np.ndarray

    def at(self, t: float) -> np.ndarray:
        """(4,) float64 ``(u, v, z, angle)`` at time ``t`` seconds."""
        times, keys = self.times, self.keys
        if len(times) == 1 or t <= times[0]:
            return keys[0].copy()
        if t >= times[-1]:
            return keys[-1].copy()
        i = int(np.searchsorted(times, t, side='right')) - 1
        h = times[i + 1] - times[i]
        s = (t - times[i]) / h
        s2, s3 = s * s, s * s * s
        return ((2 * s3 - 3 * s2 + 1) * keys[i] + (s3 - 2 * s2 + s) * h * self._tangent(i)
                + (-2 * s3 + 3 * s2) * keys[i + 1] + (s3 - s2) * h * self._tangent(i + 1))

    def _tangent(self, i: int) -> np.ndarray:
        lo, hi = max(i - 1, 0), min(i + 1, len(self.times) - 1)
        return (self.keys[hi] - self.keys[lo]) / (self.times[hi] - self.times[lo])


@dataclass(frozen=True)
class SceneObject:
    """One object: persistent ``id`` (>= 1, the value in id maps), class name ``shape`` (one of
    :data:`SHAPES`), ``colour`` (a :data:`PALETTE` name), circumradius ``radius_m`` metres,
    ``aspect`` (minor/major half-extent of an ellipse or rectangle, 1 otherwise), its motion and
    a referring ``sentence`` unique in its scene."""

    id: int
    shape: str
    colour: str
    radius_m: float
    aspect: float
    trajectory: Trajectory
    sentence: str = ''


@dataclass(frozen=True)
class Scene:
    """A scene to render: camera, ``n_frames`` frames at ``fps``, objects (in id order) and looks.

    ``background`` (H, W, 3) uint8 RGB texture of kind ``background_kind``; ``plane`` =
    ``(d, tilt)`` of the background depth (module docstring); ``noise_sigma`` std of the additive
    sensor noise in 8-bit levels; ``defocus_sigma`` px of a whole-frame Gaussian blur;
    ``exposure`` shutter time as a fraction of the frame period (motion-blur length);
    ``light`` (2,) image direction in which object shading brightens; ``prompt_plan`` rows
    ``(kind, object_id, fraction of the duration)`` for :func:`scripted_prompts`.
    """

    scenario: str
    seed: int
    camera: Camera
    fps: float
    n_frames: int
    objects: Tuple[SceneObject, ...]
    background: np.ndarray
    background_kind: str
    plane: Tuple[float, float]
    noise_sigma: float
    defocus_sigma: float
    exposure: float
    light: Tuple[float, float]
    prompt_plan: Tuple[Tuple[str, int, float], ...]

    def object(self, object_id: int) -> SceneObject:
        return self.objects[object_id - 1]


@dataclass(frozen=True)
class ObjectState:
    """Ground truth of one object in one frame.

    ``visible_px`` pixels of the id map carry this id; ``area_px`` is the area of the whole
    shape (unoccluded, not clipped by the frame), so ``visibility = visible_px / area_px``.
    ``bbox`` (4,) int XYXY exclusive of the visible pixels and ``centroid`` (3,) float64 mean 3D
    point of the visible pixels (optical frame, metres) are None when nothing is visible.
    ``depth_m`` plane depth, ``center_px`` (2,) shape centre (u, v), ``angle_rad``, ``radius_px``.
    """

    id: int
    visible_px: int
    area_px: int
    visibility: float
    bbox: Optional[np.ndarray]
    centroid: Optional[np.ndarray]
    depth_m: float
    center_px: np.ndarray
    angle_rad: float
    radius_px: float


@dataclass(frozen=True)
class RenderedFrame:
    """One rendered frame: ``rgb`` (H, W, 3) uint8 (blur and noise applied), ``depth`` (H, W)
    float32 metres (exact, aligned with ``rgb``), ``ids`` (H, W) uint16 instance id map (0 =
    background, occlusion respected, sharp at mid-exposure) and ``objects`` in id order."""

    index: int
    time_s: float
    rgb: np.ndarray
    depth: np.ndarray
    ids: np.ndarray
    objects: Tuple[ObjectState, ...]

    def mask(self, object_id: int) -> np.ndarray:
        """(H, W) bool visible mask of ``object_id``."""
        return self.ids == object_id


@dataclass(frozen=True)
class ScriptedPrompt:
    """A prompt sent at frame ``frame`` designating object ``object_id``.

    ``kind`` is one of :data:`PROMPT_KINDS`; ``prompt`` carries the text, the click (one positive
    point), the box or the referring patch. ``source`` (reference only) names the other scene the
    patch was cut from: ``{'scenario', 'seed', 'frame', 'object_id', 'box'}``.
    """

    frame: int
    kind: str
    object_id: int
    prompt: ObjectPrompt
    source: Optional[dict] = None


def depth_to_mm(depth: np.ndarray) -> np.ndarray:
    """(H, W) float32 metres -> (H, W) uint16 millimetres (rounded; 0 stays invalid)."""
    return np.rint(depth * 1000.0).astype(np.uint16)


# --------------------------------------------------------------------------- shapes

def _circle(n: int, rx: float, ry: float) -> np.ndarray:
    a = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([rx * np.cos(a), ry * np.sin(a)], 1)


def _regular(n: int, radii: Sequence[float]) -> np.ndarray:
    a = -np.pi / 2 + np.arange(n * len(radii)) * (2.0 * np.pi / (n * len(radii)))
    r = np.resize(np.asarray(radii, np.float64), len(a))
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _unit_contours(shape: str, aspect: float) -> List[np.ndarray]:
    """Contours (K, 2) of the shape with circumradius about 1, centred at 0 (even-odd filled)."""
    if shape == 'ellipse':
        return [_circle(64, 1.0, aspect)]
    if shape == 'rectangle':
        return [np.array([[-1, -aspect], [1, -aspect], [1, aspect], [-1, aspect]], np.float64)]
    if shape == 'triangle':
        return [_regular(3, [1.0])]
    if shape == 'star':
        return [_regular(5, [1.0, 0.45])]
    if shape == 'ring':
        return [_circle(64, 1.0, 1.0), _circle(64, 0.55, 0.55)]
    if shape == 'cross':
        w = 0.32
        return [np.array([[w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1],
                          [-w, 1], [-w, w], [-1, w], [-1, -w], [-w, -w], [-w, -1]], np.float64)]
    if shape == 'hexagon':
        return [_regular(6, [1.0])]
    raise ValueError(f'unknown shape {shape!r}; expected one of {SHAPES}')


# --------------------------------------------------------------------------- backgrounds

def _muted(rng: np.random.Generator) -> np.ndarray:
    """A desaturated RGB colour (float32, 0..255) so that palette objects stand out."""
    h, s, v = rng.random(), rng.uniform(0.03, 0.3), rng.uniform(0.3, 0.85)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32) * 255.0


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """(h, w) float32 value noise in [0, 1] with feature size ``cell`` pixels."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.random((gh, gw)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _background(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB procedural texture of ``kind`` (one of :data:`BACKGROUNDS`)."""
    c1, c2 = _muted(rng), _muted(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0.0, np.pi)
    along = xx * math.cos(a) + yy * math.sin(a)
    if kind == 'gradient':
        mix = (along - along.min()) / max(float(along.max() - along.min()), 1.0)
    elif kind == 'tiles':
        size = w * rng.uniform(0.05, 0.12)
        grout = max(1.0, size * 0.08)
        tx, ty = np.floor(xx / size), np.floor(yy / size)
        jitter = rng.uniform(-0.15, 0.15, (int(ty.max()) + 1, int(tx.max()) + 1)).astype(np.float32)
        mix = ((tx + ty) % 2) * 0.8 + 0.1 + jitter[ty.astype(int), tx.astype(int)]
        mix[(xx % size < grout) | (yy % size < grout)] = 0.5
    elif kind == 'noise':
        mix = 0.6 * _smooth_noise(rng, h, w, w / 6) + 0.4 * _smooth_noise(rng, h, w, w / 30)
    elif kind == 'stripes':
        period = w * rng.uniform(0.03, 0.1)
        mix = 0.5 + 0.5 * np.sin(along * (2.0 * np.pi / period))
    else:
        raise ValueError(f'unknown background {kind!r}; expected one of {BACKGROUNDS}')
    mix = mix + 0.15 * (_smooth_noise(rng, h, w, 3.0) - 0.5)   # fine grain on every kind
    img = c1 + np.clip(mix, 0.0, 1.0)[..., None] * (c2 - c1)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- scenarios

def _trajectory(duration: float, keys: Sequence[Sequence[float]]) -> Trajectory:
    """Keys ``(fraction of duration, u, v, z, angle)`` -> :class:`Trajectory`."""
    k = np.asarray(keys, np.float64)
    return Trajectory(times=k[:, 0] * duration, keys=k[:, 1:])


def _looks(rng: np.random.Generator, n: int, first_compact: bool = False,
           include: Sequence[Tuple[str, str]] = ()) -> List[Tuple[str, str, float]]:
    """``n`` distinct (shape, colour, aspect); ``include`` first, then a compact occluder if asked."""
    chosen = [(str(shape), str(colour)) for shape, colour in include]
    if first_compact and len(chosen) < n:
        chosen.append((str(rng.choice(_COMPACT)), str(rng.choice(list(PALETTE)))))
    while len(chosen) < n:   # mostly new shapes, sometimes a repeated shape in another colour
        unused = [s for s in SHAPES if s not in {c[0] for c in chosen}]
        shapes = unused if unused and rng.random() < 0.7 else SHAPES
        look = (str(rng.choice(shapes)), str(rng.choice(list(PALETTE))))
        if look not in chosen:
            chosen.append(look)
    out = []
    for i, (shape, colour) in enumerate(chosen):
        lo = 0.85 if first_compact and i == len(include) else 0.5
        out.append((shape, colour, float(rng.uniform(lo, 0.95)) if shape in ('ellipse', 'rectangle') else 1.0))
    return out


def _radius_m(cam: Camera, radius_frac: float, z: float) -> float:
    """Metric radius whose image radius is ``radius_frac`` of the image width at depth ``z``."""
    return radius_frac * cam.width * z / cam.fx


def _scripted(rng, cam, duration, plan):
    """Objects from ``plan`` rows ``(radius as width fraction at first key, keys)``.

    Keys are ``(fraction, u, v, z, turns)``; u, v get a small seeded jitter and the rotation a
    random sign; the first row is the compact occluder where the scenario needs one.
    """
    looks = _looks(rng, len(plan), first_compact=True)
    jitter = rng.uniform(-0.015, 0.015, (len(plan), 2))
    objects = []
    for i, ((radius_frac, keys), (shape, colour, aspect)) in enumerate(zip(plan, looks)):
        spin = 2.0 * np.pi * rng.choice([-1.0, 1.0])
        k = np.array(keys, np.float64)
        k[:, 1:3] += jitter[i]
        k[:, 4] *= spin
        objects.append(SceneObject(i + 1, shape, colour, _radius_m(cam, radius_frac, k[0, 3]), aspect,
                                   _trajectory(duration, k)))
    return objects


def _demo(rng, cam, duration):
    """Occluder A; B passes fully behind A (about 1 s); C leaves right for about 2.5 s and comes
    back; D approaches from 2 m to 0.8 m."""
    a = (0.14, [(0, 0.48, 0.55, 0.9, 0), (0.5, 0.52, 0.56, 0.92, 0.12), (1, 0.5, 0.55, 0.9, 0.25)])
    b = (0.05, [(0, 0.1, 0.55, 1.7, 0), (0.1, 0.14, 0.55, 1.7, 0.05), (0.6, 0.88, 0.55, 1.7, 0.3),
                (0.8, 0.82, 0.8, 1.5, 0.45), (1, 0.62, 0.84, 1.5, 0.6)])
    c = (0.05, [(0, 0.7, 0.2, 1.2, 0), (0.2, 0.85, 0.22, 1.2, 0.1), (0.32, 1.2, 0.25, 1.3, 0.2),
                (0.42, 1.25, 0.25, 1.3, 0.3), (0.5, 1.15, 0.2, 1.3, 0.35), (0.62, 0.8, 0.2, 1.2, 0.45),
                (0.8, 0.6, 0.18, 1.1, 0.55), (1, 0.7, 0.2, 1.1, 0.65)])
    d = (0.03, [(0, 0.18, 0.8, 2.0, 0), (0.5, 0.22, 0.79, 1.3, 0.6), (1, 0.25, 0.78, 0.8, 1.2)])
    return _scripted(rng, cam, duration, [a, b, c, d]), [2, 3, 1, 4]


def _occlusion(rng, cam, duration):
    """B passes fully behind occluder A (about 1 s hidden at 6 s); C crosses partly over D."""
    a = (0.14, [(0, 0.5, 0.5, 0.85, 0), (1, 0.5, 0.52, 0.85, 0.15)])
    b = (0.05, [(0, 0.08, 0.5, 1.6, 0), (0.05, 0.1, 0.5, 1.6, 0.02), (0.95, 0.9, 0.5, 1.6, 0.4),
                (1, 0.92, 0.5, 1.6, 0.42)])
    c = (0.05, [(0, 0.08, 0.12, 0.9, 0), (0.5, 0.2, 0.22, 0.9, 0.2), (1, 0.32, 0.12, 0.9, 0.4)])
    d = (0.045, [(0, 0.2, 0.18, 1.9, 0), (1, 0.22, 0.2, 1.8, -0.1)])
    e = (0.05, [(0, 0.85, 0.85, 1.2, 0), (0.5, 0.78, 0.8, 1.4, 0.3), (1, 0.82, 0.84, 1.2, 0.6)])
    return _scripted(rng, cam, duration, [a, b, c, d, e]), [2, 4, 1, 5]


def _exit_reentry(rng, cam, duration):
    """B leaves right and returns (about 3 s away); C leaves at the bottom and returns from the
    left (about 4 s away)."""
    a = (0.05, [(0, 0.75, 0.78, 1.0, 0), (0.5, 0.7, 0.75, 1.0, 0.2), (1, 0.75, 0.78, 1.0, 0.4)])
    b = (0.055, [(0, 0.6, 0.35, 1.1, 0), (0.3, 1.3, 0.4, 1.2, 0.3), (0.45, 1.3, 0.45, 1.3, 0.4),
                 (0.7, 0.6, 0.4, 1.3, 0.6), (1, 0.5, 0.35, 1.2, 0.8)])
    c = (0.05, [(0, 0.4, 0.7, 1.4, 0), (0.35, 0.3, 1.4, 1.4, -0.3), (0.5, -0.3, 1.0, 1.4, -0.45),
                (0.55, -0.3, 0.7, 1.4, -0.5), (0.75, 0.25, 0.65, 1.3, -0.7), (1, 0.35, 0.7, 1.3, -0.9)])
    d = (0.04, [(0, 0.2, 0.2, 1.4, 0), (0.5, 0.28, 0.25, 1.2, 0.25), (1, 0.2, 0.2, 1.4, 0.5)])
    return _scripted(rng, cam, duration, [a, b, c, d]), [2, 3, 1, 4]


def _random(rng, cam, duration, include=()):
    """3-6 objects on random smooth paths with depth changes; some keys lie off frame."""
    n = max(int(rng.integers(3, 7)), len(include))
    objects = []
    for i, (shape, colour, aspect) in enumerate(_looks(rng, n, include=include)):
        n_keys = max(2, int(duration / rng.uniform(1.0, 2.0)) + 2)
        times = np.linspace(0.0, duration, n_keys)
        keys = np.empty((n_keys, 4))
        keys[:, :2] = rng.uniform(0.1, 0.9, (n_keys, 2))
        keys[:, 2] = rng.uniform(0.6, 2.0, n_keys)
        keys[:, 3] = np.cumsum(rng.uniform(-1.5, 1.5, n_keys) * (times[1] - times[0]))
        if i < len(include):   # a target for a referring patch: start well visible
            keys[0, :3] = (rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65), rng.uniform(0.7, 1.3))
        off = np.flatnonzero(rng.random(n_keys - 1) < 0.15) + 1
        for j in off:    # leave the frame through a random side
            keys[j, int(rng.integers(2))] = rng.choice([-0.35, 1.35])
        radius = float(rng.uniform(0.04, 0.11))
        objects.append(SceneObject(i + 1, shape, colour, radius, aspect, Trajectory(times, keys)))
    return objects, [o.id for o in objects[:len(PROMPT_KINDS)]]


_BUILDERS = {'demo': _demo, 'occlusion': _occlusion, 'exit_reentry': _exit_reentry, 'random': _random}


def _sentences(objects: Sequence[SceneObject], cam: Camera, times: np.ndarray) -> List[SceneObject]:
    """Give each object "the [small|large] <colour> <shape>" (colour+shape is unique per scene);
    the size word is added when its mean image radius is well below/above the scene median."""
    mean_r = np.array([np.mean([cam.fx * o.radius_m / o.trajectory.at(t)[2] for t in times]) for o in objects])
    median = float(np.median(mean_r))
    out = []
    for o, r in zip(objects, mean_r):
        size = 'small ' if r < 0.7 * median else 'large ' if r > 1.4 * median else ''
        out.append(replace(o, sentence=f'the {size}{o.colour} {o.shape}'))
    return out


def build_scene(scenario: str = 'demo', seed: int = 0, *, width: int = 640, height: int = 480,
                fps: float = 15.0, frames: Optional[int] = None,
                include: Sequence[Tuple[str, str]] = ()) -> Scene:
    """Build a named scenario (see :data:`SCENARIO_SECONDS`).

    Args:
        scenario: 'demo', 'occlusion', 'exit_reentry' or 'random'.
        seed: every random choice (looks, jitter, background, noise) derives from it.
        width, height: image size in pixels; the camera has a 60 degree horizontal field of view.
        fps: frame rate; frame ``k`` is at ``k / fps`` seconds.
        frames: number of frames (default: the scenario's duration times ``fps``); scripted
            events happen at the same fractions of the duration whatever the count.
        include: (shape, colour) pairs that must appear as the first objects ('random' only).
    Raises:
        ValueError: an unknown scenario, a bad size, rate or frame count, or ``include`` with a
            scripted scenario.
    """
    if scenario not in _BUILDERS:
        raise ValueError(f'unknown scenario {scenario!r}; expected one of {tuple(_BUILDERS)}')
    if width < 32 or height < 32:
        raise ValueError(f'image size {width}x{height} is too small (at least 32x32)')
    if not fps > 0:
        raise ValueError(f'fps must be positive, got {fps}')
    n_frames = int(round(SCENARIO_SECONDS[scenario] * fps)) if frames is None else int(frames)
    if n_frames < 1:
        raise ValueError(f'frames must be at least 1, got {n_frames}')
    if include and scenario != 'random':
        raise ValueError('include is only supported by the random scenario')
    for shape, colour in include:
        if shape not in SHAPES or colour not in PALETTE:
            raise ValueError(f'include ({shape!r}, {colour!r}): expected a shape of {SHAPES} and a colour of '
                             f'{tuple(PALETTE)}')
    rng = np.random.default_rng([seed, list(_BUILDERS).index(scenario)])
    cam = Camera.with_fov(width, height)
    duration = max(n_frames - 1, 1) / fps
    if scenario == 'random':
        objects, targets = _random(rng, cam, duration, include)
    else:
        objects, targets = _BUILDERS[scenario](rng, cam, duration)
    objects = _sentences(objects, cam, np.arange(n_frames) / fps)
    kind = str(rng.choice(BACKGROUNDS))
    background = _background(rng, kind, height, width)
    light = rng.uniform(0.0, 2.0 * np.pi)
    plan = tuple((k, oid, 0.02 * (i + 1)) for i, (k, oid) in enumerate(zip(PROMPT_KINDS, targets)))
    return Scene(
        scenario=scenario, seed=int(seed), camera=cam, fps=float(fps), n_frames=n_frames,
        objects=tuple(objects), background=background, background_kind=kind,
        plane=(float(rng.uniform(2.6, 3.5)), float(rng.uniform(-0.3, 0.3))),
        noise_sigma=float(rng.uniform(1.0, 5.0)), defocus_sigma=float(rng.uniform(0.0, 0.8)) * width / 640,
        exposure=float(rng.uniform(0.3, 0.7)), light=(math.cos(light), math.sin(light)), prompt_plan=plan)


# --------------------------------------------------------------------------- rendering

def _pixel_state(scene: Scene, obj: SceneObject, t: float):
    """Centre (u, v) px, depth m, angle rad and image radius px of ``obj`` at time ``t``."""
    u, v, z, angle = obj.trajectory.at(t)
    cam = scene.camera
    return np.array([u * cam.width - 0.5, v * cam.height - 0.5]), float(z), float(angle), cam.fx * obj.radius_m / z


def _blur_kernel(d: np.ndarray) -> np.ndarray:
    """Normalised line kernel for a displacement ``d`` (2,) px over the exposure."""
    half = int(math.ceil(float(np.hypot(*d)) / 2.0))
    k = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    c = np.array([half, half], np.float64)
    p0, p1 = np.rint((c - d / 2) * 16).astype(int), np.rint((c + d / 2) * 16).astype(int)
    cv2.line(k, tuple(p0), tuple(p1), 1.0, 1, cv2.LINE_AA, 4)
    return k / k.sum()


def render_frame(scene: Scene, index: int) -> RenderedFrame:
    """Render frame ``index`` (0 <= index < n_frames) with its ground truth."""
    if not 0 <= index < scene.n_frames:
        raise IndexError(f'frame {index} outside 0..{scene.n_frames - 1}')
    cam = scene.camera
    h, w = cam.height, cam.width
    t = index / scene.fps
    half_exposure = 0.5 * scene.exposure / scene.fps
    d, tilt = scene.plane
    plane = (d / (1.0 + tilt * (np.arange(h, dtype=np.float64) - cam.cy) / cam.fy)).astype(np.float32)
    depth = np.repeat(plane[:, None], w, axis=1)
    ids = np.zeros((h, w), np.uint16)
    img: np.ndarray = scene.background.astype(np.float32)
    states = [(obj, *_pixel_state(scene, obj, t)) for obj in scene.objects]
    regions = {}
    areas = {}
    for obj, centre, z, angle, r in sorted(states, key=lambda s: (-s[2], s[0].id)):   # far to near
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]]) * r
        contours = [p @ rot.T + centre for p in _unit_contours(obj.shape, obj.aspect)]
        motion = _pixel_state(scene, obj, t + half_exposure)[0] - _pixel_state(scene, obj, t - half_exposure)[0]
        pad = int(math.ceil(float(np.hypot(*motion)) / 2.0)) + 2
        pts = np.concatenate(contours)
        x0, y0 = np.floor(pts.min(0)).astype(int) - pad
        x1, y1 = np.ceil(pts.max(0)).astype(int) + pad + 1
        alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(alpha, [np.rint((p - (x0, y0)) * 16).astype(np.int32) for p in contours], 255, cv2.LINE_AA, 4)
        hard = alpha >= 128
        areas[obj.id] = int(np.count_nonzero(hard))
        fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if fx0 >= fx1 or fy0 >= fy1:
            continue
        regions[obj.id] = (fx0, fy0, fx1, fy1)
        sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
        hard = hard[sub]
        ids[fy0:fy1, fx0:fx1][hard] = obj.id
        depth[fy0:fy1, fx0:fx1][hard] = z
        a: np.ndarray = alpha.astype(np.float32) * (1.0 / 255.0)
        if np.hypot(*motion) >= 1.0:
            a = cv2.filter2D(a, -1, _blur_kernel(motion), borderType=cv2.BORDER_CONSTANT)
        a = a[sub][..., None]
        xs = (np.arange(fx0, fx1, dtype=np.float32) - centre[0]) * (0.15 * scene.light[0] / r)
        ys = (np.arange(fy0, fy1, dtype=np.float32) - centre[1]) * (0.15 * scene.light[1] / r)
        shade = 1.0 + ys[:, None] + xs[None, :]
        layer = shade[..., None] * np.asarray(PALETTE[obj.colour], np.float32)
        patch = img[fy0:fy1, fx0:fx1]
        patch += a * (layer - patch)
    objects = []
    for obj, centre, z, angle, r in states:
        bbox = centroid = None
        visible = 0
        if obj.id in regions:
            fx0, fy0, fx1, fy1 = regions[obj.id]
            rows, cols = np.nonzero(ids[fy0:fy1, fx0:fx1] == obj.id)
            visible = len(rows)
            if visible:
                rows, cols = rows + fy0, cols + fx0
                bbox = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
                centroid = np.array([(cols.mean() - cam.cx) * z / cam.fx, (rows.mean() - cam.cy) * z / cam.fy, z])
        objects.append(ObjectState(obj.id, visible, areas[obj.id], visible / max(areas[obj.id], 1), bbox, centroid,
                                   z, centre, angle, r))
    if scene.defocus_sigma > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), scene.defocus_sigma)
    noise_rng = np.random.default_rng([scene.seed, index])
    noise = cv2.LUT(noise_rng.integers(0, 256, (h, w, 3), dtype=np.uint8), _NOISE_LUT * scene.noise_sigma)
    rgb = cv2.add(img, noise, dtype=cv2.CV_8U)
    return RenderedFrame(index, t, rgb, depth, ids, tuple(objects))


# --------------------------------------------------------------------------- prompts

def _prompt_frame(visibility: Dict[int, Tuple[ObjectState, ...]], scene: Scene, object_id: int, start: int) -> int:
    """The first frame from ``start`` where the object is >= 60 % visible, else its most visible one.

    ``visibility`` caches the ground truth of the frames rendered so far (frame -> objects).
    """
    def state(k: int) -> ObjectState:
        if k not in visibility:
            visibility[k] = render_frame(scene, k).objects
        return visibility[k][object_id - 1]

    for k in range(start, scene.n_frames):
        if state(k).visibility >= 0.6:
            return k
    return max(range(scene.n_frames), key=lambda k: (state(k).visible_px, -k))


def click_point(mask: np.ndarray) -> np.ndarray:
    """(2,) float32 (x, y) click at the pixel of ``mask`` farthest from its boundary (and the frame edge)."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([col + 0.5, row + 0.5], np.float32)


def reference_patch(scene: Scene, object_id: int) -> Tuple[ReferencePatch, dict]:
    """A referring patch for ``object_id``: the same shape and colour, cut from a different scene.

    The source is the 'random' scene of seed ``scene.seed + REFERENCE_SEED_OFFSET`` (2 s, same
    size and rate) whose object 1 has the target's looks; the patch is the frame where that
    object is most visible, its visible box grown by 25 % on each side. Returns the patch
    (``image`` (h, w, 3) uint8, ``mask`` (h, w) bool) and its source (:class:`ScriptedPrompt`).
    """
    obj = scene.object(object_id)
    cam = scene.camera
    other = build_scene('random', scene.seed + REFERENCE_SEED_OFFSET, width=cam.width, height=cam.height,
                        fps=scene.fps, frames=max(2, int(round(2 * scene.fps))), include=[(obj.shape, obj.colour)])
    best = max((render_frame(other, k) for k in range(other.n_frames)), key=lambda f: f.objects[0].visible_px)
    bbox = best.objects[0].bbox
    if bbox is None:
        raise ValueError(f'object {object_id} ({obj.shape}, {obj.colour}) is never visible in the reference scene')
    x0, y0, x1, y1 = bbox
    mx, my = (x1 - x0) // 4, (y1 - y0) // 4
    x0, y0, x1, y1 = max(x0 - mx, 0), max(y0 - my, 0), min(x1 + mx, cam.width), min(y1 + my, cam.height)
    patch = ReferencePatch(image=best.rgb[y0:y1, x0:x1].copy(), mask=best.mask(1)[y0:y1, x0:x1].copy())
    source = {'scenario': other.scenario, 'seed': other.seed, 'include': [[obj.shape, obj.colour]],
              'frames': other.n_frames, 'frame': best.index, 'object_id': 1,
              'box': [int(x0), int(y0), int(x1), int(y1)]}
    return patch, source


def scripted_prompts(scene: Scene) -> List[ScriptedPrompt]:
    """The scene's scripted prompts (``scene.prompt_plan``), sorted by frame.

    Each is sent at the first frame from its planned time where its object is >= 60 % visible:
    'text' = the object's sentence; 'click' = :func:`click_point` of its visible mask; 'box' =
    its visible bbox; 'reference' = :func:`reference_patch`.
    """
    visibility: Dict[int, Tuple[ObjectState, ...]] = {}
    out = []
    for kind, oid, fraction in scene.prompt_plan:
        f = render_frame(scene, _prompt_frame(visibility, scene, oid, int(round(fraction * (scene.n_frames - 1)))))
        source = None
        if kind == 'text':
            prompt = ObjectPrompt(text=scene.object(oid).sentence)
        elif kind == 'click':
            prompt = ObjectPrompt(points=click_point(f.mask(oid))[None], point_labels=np.ones(1, bool))
        elif kind == 'box':
            bbox = f.objects[oid - 1].bbox
            assert bbox is not None       # the prompt frame shows the object (_prompt_frame)
            prompt = ObjectPrompt(boxes=bbox.astype(np.float32)[None])
        else:
            patch, source = reference_patch(scene, oid)
            prompt = ObjectPrompt(reference=patch)
        out.append(ScriptedPrompt(f.index, kind, oid, prompt, source))
    return sorted(out, key=lambda p: p.frame)

"""One camera's ROS-free core, behind the node (:mod:`seem_ros.ros.seem_node`) and bag replay
(:mod:`seem_ros.replay.offline`): both are adapters that turn messages into calls of a
:class:`Session` and its outputs back into messages.

A session owns:

* the model and pipeline, loaded from the node's parameters (:func:`load_session`);
* frame intake: decoded camera images with their stamps (:meth:`Session.frame`);
* prompt intake: :class:`~seem_ros.prompts.ObjectPrompt` objects added, refined or re-prompted
  on the frame of their stamp (:meth:`Session.add_prompt`);
* depth pairing and 3D: aligned depth images and their CameraInfo (:meth:`Session.depth`,
  :meth:`Session.depth_info`), paired by stamp with each processed frame;
* the assembly of every output as plain data (:class:`SessionOutput`: objects, label image,
  overlay, and per object its 3D geometry for points and markers).

It is thread-safe: the node calls it from its input callbacks, its prompt callbacks and its
inference worker at once. Conventions: stamps are int nanoseconds; images (H, W, 3) uint8 RGB.
"""
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .geometry.depth3d import DEPTH_BUFFER, CameraIntrinsics, ObjectGeometry, depth_to_metres, place_objects
from .pipeline import Frame, FrameResult, IdPool, Pipeline, StampedBuffer, TrackOutput
from .prompts import ObjectPrompt


class LoadError(Exception):
    """The model named by the parameters cannot be loaded (the message says why)."""


@dataclass(frozen=True)
class DepthSettings:
    """The node's ``depth.*`` parameters: pairing tolerance (ms), farthest valid depth (m),
    mask erosion (px), fewest depth points for a position, and whether to keep each object's
    points (for ``~/points``)."""

    slop_ms: float = 50.0
    max_depth: float = 10.0
    erode_px: int = 2
    min_points: int = 20
    points: bool = False

    @classmethod
    def of(cls, params) -> 'DepthSettings':
        """The ``depth.*`` values of a :class:`~seem_ros.ros.params.SeemParams`."""
        return cls(params.depth__slop_ms, params.depth__max_depth, params.depth__erode_px, params.depth__min_points,
                   params.depth__publish_points)


@dataclass
class SessionOutput:
    """Every output of one processed frame, as plain data.

    result: the pipeline's :class:`~seem_ros.pipeline.FrameResult` (objects, label image,
        overlay, warnings). geometries: per object its 3D geometry (None for LOST objects), or
        None when the 3D fields are unset for the whole frame (no depth, or ``problem``).
    problem: why the 3D fields are unset ('' when they are set or depth is off); ``problem_is_error``
        tells a misconfiguration (depth that does not fit the image) from depth not there yet.
    """

    result: FrameResult
    geometries: Optional[List[Optional[ObjectGeometry]]] = None
    problem: str = ''
    problem_is_error: bool = False

    @property
    def placed(self) -> List[Tuple[TrackOutput, ObjectGeometry]]:
        """(object, geometry) of every object placed in 3D (for points and markers)."""
        return [(o, g) for o, g in zip(self.result.objects, self.geometries or ()) if g is not None]


def load_session(params, *, ids: Optional[IdPool] = None, overlay: Optional[bool] = None,
                 depth: Optional[bool] = None) -> 'Session':
    """The session of a :class:`~seem_ros.ros.params.SeemParams`: its checkpoint loaded on its
    backend, its pipeline and depth settings. ``overlay`` overrides ``publish.overlay``, ``depth``
    ``depth.enabled``; ``ids`` is the id pool to draw from (default: the pipeline's own).

    Raises:
        LoadError: the checkpoint is missing or does not load as the parameters say.
    """
    (session,) = load_sessions(params, 1, ids=ids, overlay=overlay, depth=depth)
    return session


def load_sessions(params, count: int, *, ids: Optional[IdPool] = None, overlay: Optional[bool] = None,
                  depth: Optional[bool] = None) -> List['Session']:
    """``count`` sessions (one per camera) over ONE loaded model and backend: each with its own
    pipeline (frames, prompts, tracks) and depth pairing, all drawing ids from ``ids`` so that ids
    are unique across them. Arguments as :func:`load_session`.

    Raises:
        LoadError: the checkpoint is missing or does not load as the parameters say.
    """
    from .predictor import SeemPredictor
    checkpoint = Path(params.model__checkpoint).expanduser()
    if not params.model__checkpoint or not checkpoint.is_file():
        raise LoadError(f"model.checkpoint: no such file '{params.model__checkpoint}'")
    try:
        predictor = SeemPredictor.from_checkpoint(str(checkpoint), **params.predictor_options())
    except Exception as exc:  # noqa: BLE001 - any loading problem is reported the same way
        raise LoadError(f"cannot load checkpoint '{checkpoint}' as {params.requested_model()}: "
                        f'{type(exc).__name__}: {exc}') from exc
    config = params.pipeline_config()
    if overlay is not None:
        config = replace(config, overlay=overlay)
    with_depth = params.depth__enabled if depth is None else depth
    ids = ids if ids is not None else IdPool()
    return [Session(Pipeline(predictor, config, ids, cameras=count), DepthSettings.of(params) if with_depth else None)
            for _ in range(count)]


class Session:
    """Frames, prompts and depth of one camera in, :class:`SessionOutput` out (module docstring).

    Args:
        pipeline: segmentation and tracking.
        depth: the depth settings, or None without 3D.
    """

    def __init__(self, pipeline: Pipeline, depth: Optional[DepthSettings] = None):
        self.pipeline = pipeline
        self.depth_settings = depth
        self._lock = threading.Lock()       # guards _depth, _depth_info, counts
        self._depth = StampedBuffer(DEPTH_BUFFER)
        self._depth_info: Optional[Tuple[Tuple[float, ...], int, int]] = None   # (K, width, height)
        self.counts: Counter = Counter()    # depth_paired, depth_missing, camera_info_missing

    # ------------------------------------------------------------------ intake
    def frame(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Frame:
        """A camera image in: kept for prompts stamped with it; returns the frame to process."""
        frame = Frame(rgb, stamp_ns, frame_id)
        self.pipeline.remember(frame)
        return frame

    def add_prompt(self, prompt: ObjectPrompt, *, stamp_ns: int = 0, object_id: int = 0,
                   refine: bool = False) -> Tuple[int, List[str]]:
        """Add an object, re-prompt ``object_id`` or refine it, on the frame of ``stamp_ns`` (0 = the
        newest). Returns (its id, warnings about how the prompt was fitted to the frame).

        Raises:
            PromptError: the prompt cannot be used (the message names the problem).
        """
        return self.pipeline.add_object(prompt, stamp_ns=stamp_ns or None, object_id=object_id, refine=refine)

    def depth(self, pixels: np.ndarray, encoding: str, stamp_ns: int) -> None:
        """An aligned depth image in: (H, W) pixels of ``encoding`` ('16UC1' mm, '32FC1' m, ...).

        Raises:
            ValueError: an unsupported encoding or pixels that do not match it (nothing kept).
        """
        settings = self.depth_settings or DepthSettings()
        metres = depth_to_metres(pixels, encoding, max_depth=settings.max_depth)
        with self._lock:
            self._depth.add(stamp_ns, metres)

    def depth_info(self, k: Sequence[float], width: int, height: int) -> None:
        """The depth image's CameraInfo (its K and size) in; the newest valid one is used.

        Raises:
            ValueError: physically impossible intrinsics (the last good ones are kept).
        """
        CameraIntrinsics.from_matrix(k, int(width), int(height))
        with self._lock:
            self._depth_info = (tuple(float(v) for v in k), int(width), int(height))

    def clear(self) -> None:
        """Forget buffered frames and depth (the node's deactivate)."""
        self.pipeline.clear_frames()
        with self._lock:
            self._depth.clear()
            self._depth_info = None

    # ------------------------------------------------------------------ processing
    def process(self, frame: Frame) -> SessionOutput:
        """Segment and track ``frame``, then place its objects in 3D (when depth is on)."""
        output = SessionOutput(self.pipeline.process(frame))
        if self.depth_settings is not None:
            self._place(output, self.depth_settings)
        return output

    def _place(self, output: SessionOutput, settings: DepthSettings) -> None:
        """Pair the depth image nearest the frame's stamp (within ``slop_ms``) and place the shown
        objects; else leave the 3D fields unset with the reason in ``output.problem``."""
        with self._lock:
            depth = self._depth.nearest(output.result.frame.stamp_ns, int(settings.slop_ms * 1e6))
            info = self._depth_info
            self.counts['depth_paired' if depth is not None else 'depth_missing'] += 1
            if info is None:
                self.counts['camera_info_missing'] += 1
        problems = []
        if depth is None:
            problems.append(f'no depth image within {settings.slop_ms:g} ms of the image')
        if info is None:
            problems.append('no depth/camera_info received')
        if depth is None or info is None:
            output.problem = f'3D fields unset: {" and ".join(problems)} (2D outputs are published)'
            return
        k, width, height = info
        try:
            output.geometries = place_objects(output.result.shown_masks(), depth, k, (width, height),
                                              erode_px=settings.erode_px, min_points=settings.min_points,
                                              return_points=settings.points)
        except ValueError as exc:
            output.problem, output.problem_is_error = f'3D fields unset: {exc}', True


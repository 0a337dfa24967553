"""The segmentation pipeline behind the node and bag replay (no ROS imports).

A :class:`Pipeline` owns a ring buffer of recent frames, the table of prompted objects and a
predictor (``set_image`` / ``predict`` / ``segment_everything``, see ``seem_ros.predictor``).
Prompts name the frame they refer to by stamp; they are applied to that frame while it is in
the ring buffer, otherwise to the newest frame (with a warning), and wait for the first frame
when none has arrived. :meth:`Pipeline.process` encodes a frame once, decodes every object in
one batch, optionally runs open-vocabulary panoptic segmentation, and returns a
:class:`FrameResult` with per-object masks and ids, a uint16 label image and an overlay.

Until the tracker lands, a prompted object is re-found on later frames by prompting with its
last mask (:func:`followup_prompt`), and everything-mode segments get ids from
:class:`SegmentIds`; both are small stand-ins meant to be replaced.
"""
from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .geometry.depth3d import CameraIntrinsics, nearest_by_stamp
from .overlay import draw_overlay, label_image
from .prompts import ObjectPrompt

MAX_ID = 65535  # ids are label-image pixels (uint16); 0 is background


class PromptError(ValueError):
    """A prompt that cannot be used (empty, wrong mask size, unknown id, table full)."""


class Mode(str, enum.Enum):
    """What is segmented on every frame."""

    PROMPTED = 'prompted'        # only the objects users asked for
    EVERYTHING = 'everything'    # open-vocabulary panoptic over the vocabulary
    BOTH = 'both'


class TrackState(enum.IntEnum):
    """Life of an object: NEW on the frame its prompt was applied to, then TRACKED or LOST."""

    NEW = 0
    TRACKED = 1
    LOST = 2


@dataclass(frozen=True)
class Frame:
    """One camera image and what was synchronized with it.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        stamp_ns: capture time in nanoseconds (the image header stamp).
        frame_id: the image's coordinate frame.
        depth: aligned depth (h, w) float32 in metres, NaN where invalid, or None.
        intrinsics: the camera intrinsics of ``image``, or None.
    """

    image: np.ndarray
    stamp_ns: int
    frame_id: str = ''
    depth: Optional[np.ndarray] = None
    intrinsics: Optional[CameraIntrinsics] = None

    @property
    def size(self) -> Tuple[int, int]:
        """(H, W)."""
        return self.image.shape[0], self.image.shape[1]


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline settings; invalid values raise ``ValueError``.

    Attributes:
        mode: prompted, everything or both; switchable at runtime.
        vocabulary: class names for everything mode.
        score_threshold: everything-mode segments scoring below are dropped.
        object_threshold: a prompted object scoring below (or with an empty mask) is LOST.
        max_objects: most prompted objects in the table, and most segments per frame.
        ring_size: frames kept for prompts that refer to an older frame.
        stamp_tolerance_ns: how far a prompt's stamp may be from the frame it picks.
        overlay: draw the overlay image.
        overlay_alpha: mask opacity in the overlay.
    """

    mode: Mode = Mode.PROMPTED
    vocabulary: Tuple[str, ...] = ()
    score_threshold: float = 0.5
    object_threshold: float = 0.0
    max_objects: int = 32
    ring_size: int = 30
    stamp_tolerance_ns: int = 10_000_000
    overlay: bool = False
    overlay_alpha: float = 0.5

    def __post_init__(self):
        object.__setattr__(self, 'mode', Mode(self.mode))
        object.__setattr__(self, 'vocabulary', tuple(v.strip() for v in self.vocabulary if v.strip()))
        if self.mode != Mode.PROMPTED and not self.vocabulary:
            raise ValueError(f"mode '{self.mode.value}' needs a non-empty vocabulary")
        for name in ('score_threshold', 'object_threshold', 'overlay_alpha'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'{name} must be in [0, 1], got {getattr(self, name)}')
        if not 1 <= self.max_objects <= 1000:
            raise ValueError(f'max_objects must be in [1, 1000], got {self.max_objects}')
        if self.ring_size < 1:
            raise ValueError(f'ring_size must be >= 1, got {self.ring_size}')
        if self.stamp_tolerance_ns < 0:
            raise ValueError(f'stamp tolerance must be >= 0, got {self.stamp_tolerance_ns} ns')


@dataclass(frozen=True)
class ObjectResult:
    """One object on one frame.

    Attributes:
        id: track id (label-image value), 1..65535.
        label: the prompt's name or text, or the everything-mode class.
        score: model confidence in [0, 1]; the last known one when LOST.
        state: NEW / TRACKED / LOST.
        mask: (H, W) bool, all False when LOST.
        bbox: XYXY pixels (x1, y1 exclusive) of the mask; the last known one when LOST.
        last_seen_ns: stamp of the newest frame the object was found in (0: never).
        prompt: the object's current prompt (None for everything-mode segments).
    """

    id: int
    label: str
    score: float
    state: TrackState
    mask: np.ndarray
    bbox: Tuple[float, float, float, float]
    last_seen_ns: int
    prompt: Optional[ObjectPrompt] = None


@dataclass
class FrameResult:
    """What :meth:`Pipeline.process` returns for a frame.

    Attributes:
        frame: the input frame (its stamp and frame id head every output).
        objects: prompted objects first (table order), then everything-mode segments.
        label_image: (H, W) uint16, pixel = object id, 0 = background.
        overlay: (H, W, 3) uint8 RGB with masks and ids drawn, or None.
        timings: stage -> milliseconds.
        warnings: problems that did not stop the frame (each names the object and the cause).
    """

    frame: Frame
    objects: List[ObjectResult]
    label_image: np.ndarray
    overlay: Optional[np.ndarray]
    timings: Dict[str, float]
    warnings: List[str] = field(default_factory=list)


class StampedBuffer:
    """Bounded buffer of items keyed by stamp, for frame lookup and depth synchronization."""

    def __init__(self, capacity: int):
        self._items: deque = deque(maxlen=capacity)

    def add(self, stamp_ns: int, item) -> None:
        """Append ``item`` (replacing an item with the same stamp); the oldest falls out when full."""
        if self._items and self._items[-1][0] == stamp_ns:
            self._items.pop()
        self._items.append((stamp_ns, item))

    def nearest(self, stamp_ns: int, tolerance_ns: int):
        """The item whose stamp is nearest to ``stamp_ns`` within ``tolerance_ns``, else None."""
        return nearest_by_stamp(self._items, stamp_ns, tolerance_ns)

    def newest(self):
        return self._items[-1][1] if self._items else None

    def span(self) -> Tuple[int, int]:
        """(oldest, newest) stamps; the buffer must not be empty."""
        return self._items[0][0], self._items[-1][0]

    def resize(self, capacity: int) -> None:
        """Keep at most ``capacity`` items from now on (the newest ones)."""
        self._items = deque(self._items, maxlen=capacity)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class IdAllocator:
    """Hands out ids 1..65535 in increasing order, wrapping around and skipping ids in use."""

    def __init__(self):
        self._next = 1

    def take(self, in_use) -> int:
        if len(in_use) >= MAX_ID:
            raise PromptError('all 65535 object ids are in use')
        while self._next in in_use:
            self._next = self._next % MAX_ID + 1
        taken = self._next
        self._next = self._next % MAX_ID + 1
        return taken


def mask_bbox(mask: np.ndarray) -> Tuple[float, float, float, float]:
    """XYXY pixel box of a bool mask (x1, y1 exclusive); zeros for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return 0.0, 0.0, 0.0, 0.0
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def fit_prompt(prompt: ObjectPrompt, size: Tuple[int, int]) -> Tuple[ObjectPrompt, List[str]]:
    """Check ``prompt`` against an (H, W) image before it is applied.

    Clicks outside the image are dropped, boxes, scribbles and polygons are clipped to it (each
    with a warning). Returns the fitted prompt and the warnings.

    Raises:
        PromptError: a mask of another size than the image (or a referring mask of another
            size than its image), or nothing left of the prompt.
    """
    h, w = size
    warnings = []
    points = np.asarray(prompt.points, np.float32).reshape(-1, 2)
    labels = np.asarray(prompt.point_labels, bool).reshape(-1)
    if len(points) != len(labels):
        raise PromptError(f'{len(points)} points but {len(labels)} point labels')
    inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
    for x, y in points[~inside]:
        warnings.append(f'click ({x:g}, {y:g}) lies outside the {w}x{h} image: dropped')
    boxes = np.asarray(prompt.boxes, np.float32).reshape(-1, 4)
    clipped = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    for box, was in zip(clipped, boxes):
        if not np.array_equal(box, was):
            warnings.append(f'box {tuple(float(v) for v in was)} exceeds the {w}x{h} image: clipped')
    for box in boxes[~keep]:
        warnings.append(f'box {tuple(float(v) for v in box)} has no area inside the {w}x{h} image: dropped')

    def clip_lines(lines, kind):
        out = []
        for line in lines:
            line = np.asarray(line, np.float32).reshape(-1, 2)
            fitted = np.clip(line, 0, [w - 1e-3, h - 1e-3]).astype(np.float32)
            if not np.array_equal(fitted, line):
                warnings.append(f'{kind} leaves the {w}x{h} image: clipped')
            out.append(fitted)
        return tuple(out)

    for name, mask in (('mask', prompt.mask), ('negative mask', prompt.negative_mask)):
        if mask is not None and np.shape(mask) != (h, w):
            raise PromptError(f'{name} is {np.shape(mask)[1::-1]} but the image is {w}x{h}')
    ref = prompt.reference
    if ref is not None and np.shape(ref.mask) != np.shape(ref.image)[:2]:
        raise PromptError(f'referring mask {np.shape(ref.mask)} does not match its image {np.shape(ref.image)[:2]}')
    fitted = replace(prompt, points=points[inside], point_labels=labels[inside], boxes=clipped[keep],
                     scribbles=clip_lines(prompt.scribbles, 'scribble'),
                     polygons=clip_lines(prompt.polygons, 'polygon'))
    positive = (fitted.text.strip() or fitted.point_labels.any() or len(fitted.boxes) or len(fitted.scribbles)
                or len(fitted.polygons) or fitted.mask is not None or fitted.reference is not None)
    if not positive:
        raise PromptError('nothing positive is left of the prompt' + (f' ({"; ".join(warnings)})' if warnings else ''))
    return fitted, warnings


@dataclass
class _Object:
    """A row of the object table (mutable; guarded by the pipeline lock)."""

    id: int
    prompt: ObjectPrompt
    frame: Optional[Frame]          # frame the prompt must be applied to; None = the next processed frame
    applied: bool = False           # the prompt has been applied on its frame
    state: TrackState = TrackState.NEW
    score: float = 0.0
    mask: Optional[np.ndarray] = None   # last non-empty mask
    bbox: Tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    last_seen_ns: int = 0

    @property
    def label(self) -> str:
        return self.prompt.name or self.prompt.text


def _text_only(prompt: ObjectPrompt) -> bool:
    return bool(prompt.text) and not prompt.has_visual and prompt.reference is None


def followup_prompt(prompt: ObjectPrompt, last_mask: Optional[np.ndarray], size: Tuple[int, int]) -> ObjectPrompt:
    """Prompt that re-finds an object on a later frame: its text plus its last non-empty mask.

    Text-only objects are re-grounded from their text; visual objects without a mask yet keep
    their original prompt. Stand-in for the tracker (issue #8).
    """
    if last_mask is None or _text_only(prompt):
        return prompt
    if last_mask.shape != tuple(size):
        last_mask = cv2.resize(last_mask.astype(np.uint8), size[::-1], interpolation=cv2.INTER_NEAREST).astype(bool)
    return ObjectPrompt(text=prompt.text, mask=last_mask, name=prompt.name)


def merge_prompts(base: ObjectPrompt, extra: ObjectPrompt) -> ObjectPrompt:
    """``base`` with the inputs of ``extra`` added (its text, name, masks and reference win when set)."""
    return ObjectPrompt(
        text=extra.text or base.text,
        points=np.concatenate([np.reshape(base.points, (-1, 2)), np.reshape(extra.points, (-1, 2))]).astype(np.float32),
        point_labels=np.concatenate([np.reshape(base.point_labels, -1), np.reshape(extra.point_labels, -1)]).astype(bool),
        boxes=np.concatenate([np.reshape(base.boxes, (-1, 4)), np.reshape(extra.boxes, (-1, 4))]).astype(np.float32),
        scribbles=tuple(base.scribbles) + tuple(extra.scribbles),
        polygons=tuple(base.polygons) + tuple(extra.polygons),
        mask=extra.mask if extra.mask is not None else base.mask,
        negative_mask=extra.negative_mask if extra.negative_mask is not None else base.negative_mask,
        reference=extra.reference or base.reference,
        name=extra.name or base.name)


class SegmentIds:
    """Per-frame ids for everything-mode segments: a segment keeps the id of the previous
    frame's segment with the same label and mask IoU >= ``min_iou``, else gets a new id.
    Stand-in for the tracker (issue #8)."""

    def __init__(self, min_iou: float = 0.5):
        self.min_iou = min_iou
        self._previous: List[Tuple[int, str, np.ndarray]] = []

    def assign(self, segments, new_id: Callable[[set], int], reserved: set) -> List[int]:
        """Ids for ``segments`` (objects with ``label`` and ``mask``), never one in ``reserved``."""
        ids: List[int] = []
        free = [p for p in self._previous if p[0] not in reserved]
        for seg in segments:
            best, best_iou = None, self.min_iou
            for prev in free:
                if prev[1] == seg.label and prev[2].shape == seg.mask.shape:
                    iou = mask_iou(prev[2], seg.mask)
                    if iou >= best_iou:
                        best, best_iou = prev, iou
            if best is not None:
                free.remove(best)
                ids.append(best[0])
            else:
                ids.append(new_id(reserved | set(ids) | {p[0] for p in free}))
        self._previous = [(i, s.label, s.mask) for i, s in zip(ids, segments)]
        return ids

    def clear(self) -> None:
        self._previous = []


@dataclass(frozen=True)
class ObjectInfo:
    """A row of :meth:`Pipeline.list_objects`: an object's id and current prompt."""

    id: int
    prompt: ObjectPrompt


class Pipeline:
    """Frames in, tracked instance masks out; thread-safe for prompts arriving during ``process``.

    Args:
        predictor: a ``SeemPredictor`` (or anything with the same three methods).
        config: :class:`PipelineConfig`.
        ids: id source; pass the previous pipeline's to never reuse an id within a process.
    """

    def __init__(self, predictor, config: PipelineConfig, ids: Optional[IdAllocator] = None):
        self.predictor = predictor
        self._config = config
        self._lock = threading.RLock()
        self._frames = StampedBuffer(config.ring_size)
        self._objects: Dict[int, _Object] = {}
        self._ids = ids or IdAllocator()
        self._segment_ids = SegmentIds()

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @config.setter
    def config(self, config: PipelineConfig) -> None:
        with self._lock:
            self._frames.resize(config.ring_size)
            if config.mode == Mode.PROMPTED:
                self._segment_ids.clear()
            self._config = config

    def remember(self, frame: Frame) -> None:
        """Put ``frame`` in the ring buffer so that prompts can refer to it (also done by ``process``)."""
        with self._lock:
            self._frames.add(frame.stamp_ns, frame)

    def clear_frames(self) -> None:
        """Forget buffered frames (e.g. on deactivate); objects stay."""
        with self._lock:
            self._frames.clear()

    def add_object(self, prompt: ObjectPrompt, *, stamp_ns: Optional[int] = None, object_id: int = 0,
                   refine: bool = False) -> Tuple[int, List[str]]:
        """Add an object (``object_id`` 0) or update object ``object_id``, keeping its id.

        An update replaces the object's prompt, or with ``refine`` adds the new inputs to what is
        known of the object (its text and last mask), e.g. corrective clicks. ``stamp_ns`` names
        the frame the prompt refers to (None: the newest frame); the prompt is applied on the next
        :meth:`process` call. A new text-only prompt equal to an existing object's returns that
        object's id. Returns ``(id, warnings)``.

        Raises:
            PromptError: empty prompt, unknown id, table full, or a prompt that does not fit the frame.
        """
        warnings: List[str] = []
        with self._lock:
            old = self._objects.get(object_id)
            if object_id and old is None:
                raise PromptError(f'no object with id {object_id}')
            frame = self._pick_frame(stamp_ns, warnings)
            if refine and old is not None:
                prompt = merge_prompts(followup_prompt(old.prompt, old.mask, frame.size) if frame else old.prompt,
                                       prompt)
            if prompt.is_empty:
                raise PromptError('the prompt is empty (no text, points, boxes, scribbles, polygons, mask or reference)')
            if old is None and _text_only(prompt):
                for obj in self._objects.values():
                    if _text_only(obj.prompt) and (obj.prompt.text, obj.prompt.name) == (prompt.text, prompt.name):
                        return obj.id, warnings + [f"'{prompt.text}' is already object {obj.id}"]
            if old is None and len(self._objects) >= self._config.max_objects:
                raise PromptError(f'the object table is full (max_objects={self._config.max_objects})')
            if frame is not None:
                prompt, fit_warnings = fit_prompt(prompt, frame.size)
                warnings += fit_warnings
            object_id = object_id or self._ids.take(self._objects.keys())
            self._objects[object_id] = _Object(object_id, prompt, frame)
            return object_id, warnings

    def _pick_frame(self, stamp_ns: Optional[int], warnings: List[str]) -> Optional[Frame]:
        if not len(self._frames):
            return None
        if stamp_ns is not None:
            frame = self._frames.nearest(stamp_ns, self._config.stamp_tolerance_ns)
            if frame is not None:
                return frame
            oldest, newest = self._frames.span()
            warnings.append(f'no buffered frame at stamp {stamp_ns * 1e-9:.3f} s (buffer holds '
                            f'{oldest * 1e-9:.3f}..{newest * 1e-9:.3f} s): applied to the newest frame')
        return self._frames.newest()

    def remove_object(self, object_id: int = 0, name: str = '') -> int:
        """Remove object ``object_id``, or when it is 0 the object named ``name``; returns its id.

        Raises:
            KeyError: no such object (the message names the id or name).
        """
        with self._lock:
            if not object_id:
                object_id = next((o.id for o in self._objects.values() if name and o.prompt.name == name), 0)
                if not object_id:
                    raise KeyError(f"no object named '{name}'")
            if object_id not in self._objects:
                raise KeyError(f'no object with id {object_id}')
            del self._objects[object_id]
            return object_id

    def reset(self) -> None:
        """Remove every object and forget everything-mode ids (frames stay buffered)."""
        with self._lock:
            self._objects.clear()
            self._segment_ids.clear()

    def list_objects(self) -> List[ObjectInfo]:
        with self._lock:
            return [ObjectInfo(o.id, o.prompt) for o in sorted(self._objects.values(), key=lambda o: o.id)]

    def process(self, frame: Frame) -> FrameResult:
        """Segment ``frame``: every prompted object (mode prompted/both) and the vocabulary (everything/both).

        Objects whose prompt refers to a newer frame wait for it; a prompt that cannot be applied
        removes its object, with a warning in the result.
        """
        t_start = time.perf_counter()
        timings: Dict[str, float] = {}
        warnings: List[str] = []
        with self._lock:
            self._frames.add(frame.stamp_ns, frame)
            config = self._config
            jobs = self._bind(frame, warnings) if config.mode != Mode.EVERYTHING else []

        # Prompts that refer to an older buffered frame are applied there first.
        older: Dict[int, List[_Job]] = {}
        for job in jobs:
            if job.frame is not None and job.frame.stamp_ns != frame.stamp_ns:
                older.setdefault(job.frame.stamp_ns, []).append(job)
        for group in older.values():
            t0 = time.perf_counter()
            self.predictor.set_image(group[0].frame.image)
            masks, _ = self._decode([j.prompt for j in group], [j.obj.id for j in group], warnings)
            for job, mask in zip(group, masks):
                job.frame = None
                if mask is None:
                    job.failed = True
                elif mask.any():
                    job.last_mask = mask
            timings['older_frames_ms'] = timings.get('older_frames_ms', 0.0) + (time.perf_counter() - t0) * 1e3
        if any(j.failed for j in jobs):
            with self._lock:
                for job in jobs:
                    if job.failed and self._objects.get(job.obj.id) is job.obj:
                        warnings.append(f'object {job.obj.id} removed: its prompt could not be applied')
                        del self._objects[job.obj.id]
            jobs = [j for j in jobs if not j.failed]

        if jobs or config.mode != Mode.PROMPTED:   # nothing to segment: skip the encoder
            t0 = time.perf_counter()
            self.predictor.set_image(frame.image)
            timings['encode_ms'] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        prompts = [j.prompt if j.frame is not None else followup_prompt(j.prompt, j.last_mask, frame.size)
                   for j in jobs]
        masks, scores = self._decode(prompts, [j.obj.id for j in jobs], warnings) if jobs else ([], [])
        timings['decode_ms'] = (time.perf_counter() - t0) * 1e3

        segments = []
        if config.mode != Mode.PROMPTED:
            t0 = time.perf_counter()
            segments = self.predictor.segment_everything(list(config.vocabulary)).segments
            timings['everything_ms'] = (time.perf_counter() - t0) * 1e3

        t0 = time.perf_counter()
        with self._lock:
            results = self._update(jobs, masks, scores, frame, config, warnings)
            prompted = [r.mask for r in results if r.state != TrackState.LOST]
            kept = sorted((s for s in segments if s.score >= config.score_threshold and s.mask.any()
                           and not any(mask_iou(s.mask, m) >= 0.5 for m in prompted)),
                          key=lambda s: -s.score)[:config.max_objects]
            ids = self._segment_ids.assign(kept, self._ids.take, set(self._objects))
        results += [ObjectResult(i, s.label, float(s.score), TrackState.TRACKED, s.mask, mask_bbox(s.mask),
                                 frame.stamp_ns) for i, s in zip(ids, kept)]
        shown = [r for r in results if r.state != TrackState.LOST]
        labels = label_image(frame.size, [r.mask for r in shown], [r.id for r in shown], [r.score for r in shown])
        overlay = (draw_overlay(frame.image, [r.mask for r in shown], [r.id for r in shown],
                                [r.label for r in shown], config.overlay_alpha) if config.overlay else None)
        timings['post_ms'] = (time.perf_counter() - t0) * 1e3
        timings['total_ms'] = (time.perf_counter() - t_start) * 1e3
        return FrameResult(frame, results, labels, overlay, timings, warnings)

    def _bind(self, frame: Frame, warnings: List[str]) -> List['_Job']:
        """Under the lock: bind waiting prompts to ``frame`` and snapshot the objects to decode."""
        jobs = []
        for obj in list(self._objects.values()):
            if not obj.applied and obj.frame is None:   # arrived before any frame
                try:
                    obj.prompt, fit_warnings = fit_prompt(obj.prompt, frame.size)
                except PromptError as exc:
                    warnings.append(f'object {obj.id} removed: {exc}')
                    del self._objects[obj.id]
                    continue
                warnings += [f'object {obj.id}: {w}' for w in fit_warnings]
                obj.frame = frame
            if obj.applied or obj.frame.stamp_ns <= frame.stamp_ns:
                jobs.append(_Job(obj, obj.prompt, None if obj.applied else obj.frame, obj.mask))
        return jobs

    def _update(self, jobs, masks, scores, frame: Frame, config: PipelineConfig,
                warnings: List[str]) -> List[ObjectResult]:
        """Under the lock: store the decoded masks in the table and make the objects' results."""
        results = []
        empty = np.zeros(frame.size, bool)
        for job, mask, score in zip(jobs, masks, scores):
            obj = job.obj
            if self._objects.get(obj.id) is not obj:   # removed or re-prompted meanwhile
                continue
            first = not obj.applied
            if mask is None and first:
                warnings.append(f'object {obj.id} removed: its prompt could not be applied')
                del self._objects[obj.id]
                continue
            found = mask is not None and bool(mask.any()) and score >= config.object_threshold
            obj.applied, obj.frame = True, None
            if found:
                obj.state = TrackState.NEW if first else TrackState.TRACKED
                obj.mask, obj.score, obj.bbox, obj.last_seen_ns = mask, float(score), mask_bbox(mask), frame.stamp_ns
            else:
                obj.state = TrackState.LOST
            results.append(ObjectResult(obj.id, obj.label, obj.score, obj.state, mask if found else empty,
                                        obj.bbox, obj.last_seen_ns, obj.prompt))
        return results

    def _decode(self, prompts: Sequence[ObjectPrompt], ids: Sequence[int], warnings: List[str]):
        """Masks and scores of ``prompts`` in one decoder pass. On a prompt error they are decoded
        one by one, so that one bad object cannot stop the others (it gets ``None`` and a warning)."""
        try:
            res = self.predictor.predict(list(prompts))
            return list(res.masks), [float(s) for s in res.confidence]
        except ValueError as exc:
            if len(prompts) == 1:
                warnings.append(f'object {ids[0]}: {exc}')
                return [None], [0.0]
        masks, scores = [], []
        for prompt, object_id in zip(prompts, ids):
            mask, score = self._decode([prompt], [object_id], warnings)
            masks += mask
            scores += score
        return masks, scores


@dataclass
class _Job:
    """One object to decode on a frame (snapshot taken under the lock)."""

    obj: _Object
    prompt: ObjectPrompt
    frame: Optional[Frame]              # frame the prompt must be applied to first; None = follow up
    last_mask: Optional[np.ndarray]
    failed: bool = False


class LatestFrameWorker:
    """Runs ``handle(item)`` on a background thread for the newest submitted item.

    An item submitted while ``handle`` is busy waits; a newer one replaces it, and the replaced
    one is counted in ``dropped``. Exceptions from ``handle`` go to ``on_error``; the worker
    keeps running.
    """

    def __init__(self, handle: Callable, on_error: Callable[[BaseException], None], name: str = 'seem-inference'):
        self._handle = handle
        self._on_error = on_error
        self._cond = threading.Condition()
        self._item = None
        self._stopping = False
        self.dropped = 0
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._item is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item, self._item = self._item, None
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 - reported, the worker must survive
                self._on_error(exc)
            with self._cond:
                self.processed += 1

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the running item (a waiting one is discarded) and join the thread."""
        with self._cond:
            self._stopping = True
            self._item = None
            self._cond.notify()
        self._thread.join(timeout)

"""The segmentation pipeline behind the node and bag replay (no ROS imports).

A :class:`Pipeline` owns a ring buffer of recent frames, a predictor (``set_image`` /
``predict`` / ``segment_everything``, see ``seem_ros.predictor``) and two trackers that share one
id pool (:mod:`seem_ros.tracking`): a :class:`~seem_ros.tracking.PromptedTracker` for the
objects users prompted and an :class:`~seem_ros.tracking.EverythingTracker` for
open-vocabulary panoptic segments. Prompts name the frame they refer to by stamp; they are
applied to that frame while it is in the ring buffer, otherwise to the newest frame (with a
warning), and wait for the first frame when none has arrived. :meth:`Pipeline.process`
encodes a frame once, lets the trackers find every object on it (all prompted objects in one
batched decoder pass), and returns a :class:`FrameResult` with each object's id, state (NEW,
TRACKED, LOST) and mask, a uint16 label image and an overlay.
"""
from __future__ import annotations

import enum
import threading
import time
import collections
from collections import Counter, deque
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple, TypeGuard

import numpy as np

from .geometry.depth3d import nearest_by_stamp
from .model.preprocess import resized_size
from .overlay import draw_overlay, label_image
from .prompts import ObjectPrompt, PromptError
from .rasterize import rasterize
from .tracking import (EverythingConfig, EverythingTracker, IdPool, PromptedConfig, PromptedTracker, TrackOutput,
                       TrackState, mask_iou, merge_prompts)

__all__ = ['Frame', 'FrameResult', 'IdPool', 'LatestFrameWorker', 'Mode', 'ObjectInfo', 'Pipeline', 'PipelineConfig',
           'StampedBuffer', 'TrackOutput', 'TrackState', 'fit_prompt']

EVERYTHING_OVERLAP_IOU = 0.5
"""An everything-mode segment overlapping a visible prompted object this much is that object."""

MIN_REFERENCE_CACHE = 8
"""Encoded referring patches the predictor keeps at least (else one per ``max_objects``)."""

_BEFORE_FIRST_FRAME_NS = 2**62
"""Creation stamp given to the tracker for an object prompted before any frame: it cannot time
out before it is first found (the first frame's stamp is not known yet)."""


class Mode(str, enum.Enum):
    """What is segmented on every frame."""

    PROMPTED = 'prompted'        # only the objects users asked for
    EVERYTHING = 'everything'    # open-vocabulary panoptic over the vocabulary
    BOTH = 'both'


@dataclass(frozen=True)
class Frame:
    """One camera image.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        stamp_ns: capture time in nanoseconds (the image header stamp).
        frame_id: the image's coordinate frame.
    """

    image: np.ndarray
    stamp_ns: int
    frame_id: str = ''

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
        max_objects: most prompted objects, and most everything-mode segments per frame.
        ring_size: frames kept for prompts that refer to an older frame.
        stamp_tolerance_ns: how far a prompt's stamp may be from the frame it picks.
        overlay: draw the overlay image.
        overlay_alpha: mask opacity in the overlay.
        prompted: settings of the prompted-object tracker (``min_confidence``: a result below
            is rejected, the object is LOST; ``lost_timeout_s``: a lost object is removed after).
        everything: settings of the everything-mode tracker (``min_score``: segments below
            are dropped; ``min_hits``, ``max_misses``: birth and death hysteresis).
    """

    mode: Mode = Mode.PROMPTED
    vocabulary: Tuple[str, ...] = ()
    max_objects: int = 32
    ring_size: int = 30
    stamp_tolerance_ns: int = 10_000_000
    overlay: bool = False
    overlay_alpha: float = 0.5
    prompted: PromptedConfig = PromptedConfig()
    everything: EverythingConfig = EverythingConfig()

    def __post_init__(self):
        object.__setattr__(self, 'mode', Mode(self.mode))
        object.__setattr__(self, 'vocabulary', tuple(v.strip() for v in self.vocabulary if v.strip()))
        if self.mode != Mode.PROMPTED and not self.vocabulary:
            raise ValueError(f"mode '{self.mode.value}' needs a non-empty vocabulary")
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ValueError(f'overlay_alpha must be in [0, 1], got {self.overlay_alpha}')
        if not 1 <= self.max_objects <= 1000:
            raise ValueError(f'max_objects must be in [1, 1000], got {self.max_objects}')
        if self.ring_size < 1:
            raise ValueError(f'ring_size must be >= 1, got {self.ring_size}')
        if self.stamp_tolerance_ns < 0:
            raise ValueError(f'stamp tolerance must be >= 0, got {self.stamp_tolerance_ns} ns')


@dataclass
class FrameResult:
    """What :meth:`Pipeline.process` returns for a frame.

    Attributes:
        frame: the input frame (its stamp and frame id head every output).
        objects: prompted objects first, then everything-mode tracks, each by id: id, state
            (NEW, TRACKED or LOST), label, score, mask (empty when LOST), box, last-seen stamp
            and the prompt of origin (None for everything mode).
        label_image: (H, W) uint16, pixel = object id, 0 = background (LOST objects absent).
        overlay: (H, W, 3) uint8 RGB with masks and ids drawn, or None.
        timings: stage -> milliseconds.
        warnings: problems that did not stop the frame (each names the object and the cause).
    """

    frame: Frame
    objects: List[TrackOutput]
    label_image: np.ndarray
    overlay: Optional[np.ndarray]
    timings: Dict[str, float]
    warnings: List[str] = field(default_factory=list)

    def shown_masks(self) -> List[Optional[np.ndarray]]:
        """Per object its (H, W) bool mask, or None when it is LOST (not shown)."""
        return [o.mask if o.state != TrackState.LOST else None for o in self.objects]


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


def fit_prompt(prompt: ObjectPrompt, size: Tuple[int, int], *, refine: bool = False,
               short_side: int = 0) -> Tuple[ObjectPrompt, List[str]]:
    """Check ``prompt`` against an (H, W) image before it is applied.

    Clicks outside the image are dropped, boxes, scribbles and polygons are clipped to it, and a
    scribble or polygon wholly outside it is dropped (each with a warning). With ``short_side``
    (the model input's, 0 = none), the fitted prompt is also drawn and resized as the model will
    see it, so that an accepted prompt is usable. Returns the fitted prompt and the warnings.

    Raises:
        PromptError: a mask of another size than the image (or a referring mask of another
            size than its image), nothing positive left of the prompt (with ``refine``, a
            correction of a known object: nothing left at all; negative clicks alone are fine),
            or a prompt that the resize to the model input erases.
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
            if not ((line[:, 0] >= 0) & (line[:, 0] < w) & (line[:, 1] >= 0) & (line[:, 1] < h)).any():
                warnings.append(f'{kind} lies wholly outside the {w}x{h} image: dropped')
                continue
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
    if not (positive or (refine and not fitted.is_empty)):
        raise PromptError(f'nothing {"" if refine else "positive "}is left of the prompt'
                          + (f' ({"; ".join(warnings)})' if warnings else ''))
    if short_side:
        if fitted.has_visual:
            rasterize(fitted, size, resized_size(h, w, short_side))
        if ref is not None:
            ref_h, ref_w = np.shape(ref.mask)
            rasterize(ObjectPrompt(mask=ref.mask), (ref_h, ref_w), resized_size(ref_h, ref_w, short_side))
    return fitted, warnings


def _text_only(prompt: Optional[ObjectPrompt]) -> TypeGuard[ObjectPrompt]:
    return prompt is not None and bool(prompt.text) and not prompt.has_visual and prompt.reference is None


@dataclass(frozen=True)
class ObjectInfo:
    """A row of :meth:`Pipeline.list_objects`: a prompted object's id and the prompt that created it."""

    id: int
    prompt: ObjectPrompt


@dataclass
class _Binding:
    """The frame a prompt that the tracker has not applied yet refers to. ``frame`` None: the
    prompt arrived before any frame; ``prompt`` is then what must be fitted to the first one."""

    frame: Optional[Frame]
    prompt: Optional[ObjectPrompt] = None


class Pipeline:
    """Frames in, tracked instance masks out; thread-safe for prompts arriving during ``process``.

    Args:
        predictor: a ``SeemPredictor`` (or anything with the same three methods and its
            ``short_side``, by which prompts are checked before they are accepted).
        config: :class:`PipelineConfig`.
        ids: id pool of both trackers; pass the previous pipeline's to never reuse an id
            within a process, and the same one to pipelines of several cameras.
        cameras: how many pipelines (cameras) share ``predictor`` and its cache of encoded
            referring patches.
    """

    def __init__(self, predictor, config: PipelineConfig, ids: Optional[IdPool] = None, cameras: int = 1):
        self.predictor = predictor
        self._cameras = cameras
        self._config = config
        self._lock = threading.RLock()              # frames, bindings, config
        self._process_lock = threading.Lock()       # one frame at a time
        self._frames = StampedBuffer(config.ring_size)
        self._ids = IdPool() if ids is None else ids
        self._prompted = PromptedTracker(predictor, config.prompted, self._ids)
        self._everything = EverythingTracker(config.everything, self._ids)
        self._bindings: Dict[int, _Binding] = {}
        self._reserve_references(config)

    def _reserve_references(self, config: PipelineConfig) -> None:
        """Room in the predictor's cache of encoded referring patches for one per object of every camera."""
        self.predictor.reference_cache_size = max(config.max_objects, MIN_REFERENCE_CACHE) * self._cameras

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @config.setter
    def config(self, config: PipelineConfig) -> None:
        with self._lock:
            self._frames.resize(config.ring_size)
            if config.mode == Mode.PROMPTED:
                self._everything.reset()
            self._prompted.config = config.prompted
            self._everything.config = config.everything
            self._reserve_references(config)
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
        """Add an object (``object_id`` 0) or re-prompt object ``object_id``, keeping its id.

        A re-prompt replaces the object's prompt (a new object under the same id), or with
        ``refine`` adds the new inputs to what is known of the object (its current mask and
        text), e.g. corrective clicks. ``stamp_ns`` names the frame the prompt refers to (None:
        the newest frame); the prompt is applied by the next :meth:`process` call, on that frame
        when it is older than the processed one. A new text-only prompt equal to an existing
        object's returns that object's id. A refinement that carries only a name renames the
        object (label and prompt name) and keeps its tracking state. Returns ``(id, warnings)``.

        Raises:
            PromptError: empty prompt, unknown id, table full, or a prompt that does not fit the frame.
        """
        warnings: List[str] = []
        if object_id and refine and prompt.is_empty and prompt.name:
            with self._lock:
                try:
                    self._prompted.rename(object_id, prompt.name)
                except KeyError:
                    raise PromptError(f'no object with id {object_id}') from None
            return object_id, warnings
        if prompt.is_empty:
            raise PromptError('the prompt is empty (no text, points, boxes, scribbles, polygons, mask or reference)')
        with self._lock:
            tracks = {t.id: t for t in self._prompted.tracks()}
            if object_id and object_id not in tracks:
                raise PromptError(f'no object with id {object_id}')
            if not object_id and _text_only(prompt):
                for t in tracks.values():
                    if _text_only(t.origin) and (t.origin.text, t.origin.name) == (prompt.text, prompt.name):
                        return t.id, [f"'{prompt.text}' is already object {t.id}"]
            if not object_id and len(tracks) >= self._config.max_objects:
                raise PromptError(f'the object table is full (max_objects={self._config.max_objects})')
            frame = self._pick_frame(stamp_ns, warnings)
            if frame is not None:
                prompt, fit_warnings = fit_prompt(prompt, frame.size, refine=bool(object_id) and refine,
                                                  short_side=self.predictor.short_side)
                warnings += fit_warnings
            try:
                if object_id:
                    self._prompted.prompt(object_id, prompt, refine=refine)
                else:
                    object_id = self._prompted.add(
                        prompt, stamp_ns=frame.stamp_ns if frame is not None else _BEFORE_FIRST_FRAME_NS)
            except RuntimeError as exc:   # every id in use
                raise PromptError(str(exc)) from exc
            if frame is None:             # fitted to the first frame in process()
                waiting = self._bindings.get(object_id)
                if refine and waiting is not None and waiting.prompt is not None:   # not yet fitted
                    prompt = merge_prompts(waiting.prompt, prompt)
                self._bindings[object_id] = _Binding(None, prompt)
            else:
                self._bindings[object_id] = _Binding(frame)
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
        """Remove prompted object ``object_id``, or when it is 0 the object named ``name``; returns its id.

        Raises:
            KeyError: no such object (the message names the id or name).
        """
        with self._lock:
            if not object_id:
                object_id = next((t.id for t in self._prompted.tracks()
                                  if name and t.origin is not None and t.origin.name == name), 0)
                if not object_id:
                    raise KeyError(f"no object named '{name}'")
            try:
                self._prompted.remove(object_id)
            except KeyError:
                raise KeyError(f'no object with id {object_id}') from None
            self._bindings.pop(object_id, None)
            return object_id

    def reset(self) -> None:
        """Remove every object, prompted and everything-mode (frames stay buffered)."""
        with self._lock:
            self._prompted.reset()
            self._everything.reset()
            self._bindings.clear()

    def list_objects(self) -> List[ObjectInfo]:
        """The prompted objects by id, each with the prompt that created it."""
        return [ObjectInfo(t.id, t.origin) for t in self._prompted.tracks() if t.origin is not None]

    def process(self, frame: Frame) -> FrameResult:
        """Segment ``frame``: every prompted object (mode prompted/both) and the vocabulary (everything/both).

        Prompts that refer to an older buffered frame are applied there first; a prompt that
        cannot be applied removes its object, with a warning in the result.
        """
        t_start = time.perf_counter()
        timings: Dict[str, float] = {}
        warnings: List[str] = []
        with self._process_lock:
            with self._lock:
                self._frames.add(frame.stamp_ns, frame)
                config = self._config
                older = self._bind(frame, warnings)
            prompted = config.mode != Mode.EVERYTHING
            if prompted and older:
                t0 = time.perf_counter()
                waiting = {t.id for t in self._prompted.tracks() if t.pending is not None}
                for stamp in sorted(older):
                    old, ids = older[stamp]
                    ids = [i for i in ids if i in waiting]
                    if ids:
                        self.predictor.set_image(old.image)
                        warnings += self._prompted.initialize(old.image, old.stamp_ns, ids).warnings
                timings['older_frames_ms'] = (time.perf_counter() - t0) * 1e3

            objects: List[TrackOutput] = []
            encode = config.mode != Mode.PROMPTED or (prompted and bool(self._prompted.tracks()))
            if encode:          # nothing to segment: skip the encoder
                t0 = time.perf_counter()
                self.predictor.set_image(frame.image)
                timings['encode_ms'] = (time.perf_counter() - t0) * 1e3
            if prompted and encode:
                t0 = time.perf_counter()
                out = self._prompted.update(frame.image, frame.stamp_ns)
                objects += out.tracks
                warnings += out.warnings
                timings['decode_ms'] = (time.perf_counter() - t0) * 1e3
            if config.mode != Mode.PROMPTED:
                t0 = time.perf_counter()
                segments = self.predictor.segment_everything(list(config.vocabulary)).segments
                timings['everything_ms'] = (time.perf_counter() - t0) * 1e3
                t0 = time.perf_counter()
                visible = [o.mask for o in objects if o.state != TrackState.LOST]
                kept = sorted((s for s in segments if s.score >= config.everything.min_score and s.mask.any()
                               and not any(mask_iou(s.mask, m) >= EVERYTHING_OVERLAP_IOU for m in visible)),
                              key=lambda s: -s.score)[:config.max_objects]
                objects += self._everything.update(frame.image, frame.stamp_ns, kept).tracks
                timings['track_everything_ms'] = (time.perf_counter() - t0) * 1e3

        t0 = time.perf_counter()
        shown = [o for o in objects if o.state != TrackState.LOST and o.id]
        labels = label_image(frame.size, [o.mask for o in shown], [o.id for o in shown], [o.score for o in shown])
        overlay = (draw_overlay(frame.image, [o.mask for o in shown], [o.id for o in shown],
                                [o.label for o in shown], config.overlay_alpha) if config.overlay else None)
        timings['post_ms'] = (time.perf_counter() - t0) * 1e3
        timings['total_ms'] = (time.perf_counter() - t_start) * 1e3
        return FrameResult(frame, objects, labels, overlay, timings, warnings)

    def _bind(self, frame: Frame, warnings: List[str]) -> Dict[int, Tuple[Frame, List[int]]]:
        """Under the lock: settle the frames of prompts not applied yet. Prompts that arrived
        before any frame are fitted to ``frame``; returns the ids whose prompt refers to an older
        buffered frame, by its stamp. The others are applied by this frame's tracker update."""
        older: Dict[int, Tuple[Frame, List[int]]] = {}
        for object_id, binding in list(self._bindings.items()):
            del self._bindings[object_id]
            if binding.frame is None:
                assert binding.prompt is not None    # a binding without a frame holds its prompt
                try:
                    fitted, fit_warnings = fit_prompt(binding.prompt, frame.size, short_side=self.predictor.short_side)
                except PromptError as exc:
                    warnings.append(f'object {object_id} removed: {exc}')
                    with suppress(KeyError):
                        self._prompted.remove(object_id)
                    continue
                if fit_warnings:
                    warnings += [f'object {object_id}: {w}' for w in fit_warnings]
                    with suppress(KeyError):
                        self._prompted.prompt(object_id, fitted, refine=False)
            elif binding.frame.stamp_ns < frame.stamp_ns:
                older.setdefault(binding.frame.stamp_ns, (binding.frame, []))[1].append(object_id)
        return older


class LatestFrameWorker:
    """Runs ``handle(item)`` on a background thread for the newest submitted item of each source.

    Items are submitted per ``source`` (e.g. a camera). An item submitted while ``handle`` is
    busy waits; a newer one of the same source replaces it, and the replaced one is counted in
    ``dropped`` (and ``dropped_by[source]``). Waiting sources are served round-robin, so that a
    fast source never starves a slow one. Exceptions from ``handle`` go to ``on_error``; the
    worker keeps running.
    """

    def __init__(self, handle: Callable, on_error: Callable[[BaseException], None], name: str = 'seem-inference'):
        self._handle = handle
        self._on_error = on_error
        self._cond = threading.Condition()
        self._items: 'collections.OrderedDict[str, object]' = collections.OrderedDict()   # in serving order
        self._stopping = False
        self.dropped = 0
        self.dropped_by: Counter = Counter()
        self.processed = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item, source: str = '') -> None:
        with self._cond:
            if source in self._items:
                self.dropped += 1
                self.dropped_by[source] += 1
            self._items[source] = item           # a waiting source keeps its turn
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                _, item = self._items.popitem(last=False)   # the source waiting longest
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 - reported, the worker must survive
                self._on_error(exc)
            with self._cond:
                self.processed += 1

    def stop(self) -> None:
        """Stop after the running item (a waiting one is discarded): returns once it is done, so
        that nothing it does (publishing, say) outlasts the call."""
        with self._cond:
            self._stopping = True
            self._items.clear()
            self._cond.notify()
        self._thread.join()

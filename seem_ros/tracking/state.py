"""Typed track state: lifecycle, ids, appearance memory and the per-frame output (no ROS, no torch).

Conventions: masks are (H, W) bool at the image size; boxes are XYXY pixels with exclusive
x1/y1 (as ``TrackedObject.bbox``; all zeros = none); stamps are int nanoseconds; positions and
velocities are the mask centroid (x, y) in pixels and pixels per second.
"""
from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Set, Tuple

import numpy as np
import torch

from ..prompts import ObjectPrompt, ReferencePatch
from .association import EMPTY_BOX, Box, mask_shift, shift_box, shift_mask

MAX_ID = 65535
"""Track ids are label-image pixels (uint16); 0 is background."""

VELOCITY_MAX_AREA_RATIO = 1.25
"""A match updates the velocity only when the mask's area changed by less than this factor either way."""


class TrackState(enum.IntEnum):
    """Life of a track; the values of NEW, TRACKED and LOST are those of ``TrackedObject.state``.

    NEW: the first frame of the track (everything mode: also a tentative track, not yet born).
    TRACKED: found in this frame. LOST: not found in this frame, kept for re-identification.
    REMOVED: gone for good (timed out or removed by the user); never published.
    """

    NEW = 0
    TRACKED = 1
    LOST = 2
    REMOVED = 3


class IdPool:
    """Track ids 1..65535 in increasing order; after 65535 it wraps around, skipping ids in use.

    Share one pool between the prompted and the everything tracker so that their ids never
    collide in the label image. Thread-safe: the two trackers run under different locks.
    """

    def __init__(self) -> None:
        self._next = 1
        self._in_use: Set[int] = set()
        self._lock = threading.Lock()

    def take(self) -> int:
        """A fresh id, marked in use. Raises RuntimeError when all 65535 ids are in use."""
        with self._lock:
            if len(self._in_use) >= MAX_ID:
                raise RuntimeError('all 65535 track ids are in use')
            while self._next in self._in_use:
                self._next = self._next % MAX_ID + 1
            taken = self._next
            self._in_use.add(taken)
            self._next = self._next % MAX_ID + 1
            return taken

    def release(self, track_id: int) -> None:
        """Return ``track_id`` to the pool (unknown ids are ignored)."""
        with self._lock:
            self._in_use.discard(track_id)

    def __contains__(self, track_id: int) -> bool:
        with self._lock:
            return track_id in self._in_use


class AppearanceBank:
    """Bounded memory of appearance vectors from confident frames.

    Vectors are (D,) float32, L2-normalized (see :func:`~seem_ros.tracking.association.appearance`).
    The first vector (the frame the object was prompted or born on) is pinned; the others are a
    FIFO of at most ``capacity - 1`` entries.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f'appearance bank capacity must be >= 1, got {capacity}')
        self.capacity = capacity
        self._pinned: Optional[np.ndarray] = None
        self._recent: Deque[np.ndarray] = deque(maxlen=capacity - 1)

    def add(self, vector: np.ndarray) -> None:
        vector = np.asarray(vector, np.float32)
        if self._pinned is None:
            self._pinned = vector
        elif self.capacity > 1:
            self._recent.append(vector)

    def similarity(self, vector: np.ndarray) -> float:
        """Highest cosine similarity of ``vector`` to the bank; 0 when empty or of another length."""
        entries = self.vectors()
        if not entries or entries[0].shape != np.shape(vector):
            return 0.0
        return float(np.max(np.stack(entries) @ np.asarray(vector, np.float32)))

    def vectors(self) -> List[np.ndarray]:
        return ([] if self._pinned is None else [self._pinned]) + list(self._recent)

    def clear(self) -> None:
        self._pinned = None
        self._recent.clear()

    def __len__(self) -> int:
        return len(self._recent) + (self._pinned is not None)


@dataclass
class Track:
    """One tracked object (mutable; owned by a tracker).

    Attributes:
        id: track id 1..65535; 0 for an everything-mode track not yet born.
        label: the prompt's name or text, or the everything-mode class with the most votes.
        state: see :class:`TrackState`.
        created_ns: stamp of the frame the track was created on (prompted: added).
        origin: the prompt that created the track (None for everything mode).
        age: frames processed since creation.
        hits: frames the object was found in; hit_streak: consecutive ones up to now.
        misses: consecutive frames it was not found in.
        first_seen_ns, last_seen_ns: stamps of the first and newest frame it was found in (0: never).
        score: confidence in [0, 1] of the newest match.
        mask: (H, W) bool of the newest match, None before the first.
        bbox: XYXY box of ``mask``.
        centroid: (2,) float64 centroid (x, y) of ``mask``; area: its pixel count.
        velocity: (2,) float64 centroid velocity in px/s (exponentially smoothed).
        bank: appearance memory.
        bank_ns: stamp of the newest bank entry.
        reference: the object cut from a confident frame (that frame's image and the object's mask),
            used as a referring-image prompt to find the object anywhere.
        reference_ns: stamp of the frame ``reference`` was cut from.
        logits: (Hp/4, Wp/4) float32 torch tensor on the backend's device, low-resolution mask
            logits of the newest match (``prev_mask`` memory of the next frame), None when unknown.
        logits_size: (H, W) of the image ``logits`` belong to.
        pending: a prompt to apply on the next frame (new object, refinement or replacement).
        pending_refine: True: ``pending`` refines the current object; False: it starts over.
        label_votes: everything mode: class name -> summed score of its matches.
    """

    id: int
    label: str
    state: TrackState
    created_ns: int
    origin: Optional[ObjectPrompt] = None
    age: int = 0
    hits: int = 0
    hit_streak: int = 0
    misses: int = 0
    first_seen_ns: int = 0
    last_seen_ns: int = 0
    score: float = 0.0
    mask: Optional[np.ndarray] = None
    bbox: Box = (0.0, 0.0, 0.0, 0.0)
    centroid: np.ndarray = field(default_factory=lambda: np.zeros(2))
    area: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    bank: AppearanceBank = field(default_factory=lambda: AppearanceBank(8))
    bank_ns: int = 0
    reference: Optional[ReferencePatch] = None
    reference_ns: int = 0
    logits: Optional[torch.Tensor] = None
    logits_size: Tuple[int, int] = (0, 0)
    pending: Optional[ObjectPrompt] = None
    pending_refine: bool = False
    label_votes: Dict[str, float] = field(default_factory=dict)

    @property
    def seen(self) -> bool:
        """True once the object has been found in a frame."""
        return self.hits > 0

    def observe(self, mask: np.ndarray, bbox: Box, centroid: np.ndarray, score: float, stamp_ns: int,
                smoothing: float) -> None:
        """Record a match on the frame at ``stamp_ns``.

        The velocity is updated when the previous match was on the previous frame
        (``misses == 0``) and the area changed by less than 25 % (``VELOCITY_MAX_AREA_RATIO``),
        from the displacement that lays the previous mask best onto the new one
        (:func:`mask_shift`, searched up to the centroid displacement: a mask that changes shape,
        e.g. at an occluder's edge or bleeding onto a neighbour, moves its centroid without the
        object), and reset to zero after a gap.
        ``smoothing`` in [0, 1] is the weight of the new displacement.
        """
        area = int(np.count_nonzero(mask))
        if self.misses:
            self.velocity = np.zeros(2)
        elif (self.seen and stamp_ns > self.last_seen_ns and self.mask is not None and self.mask.shape == mask.shape
              and 1 / VELOCITY_MAX_AREA_RATIO <= area / max(self.area, 1) <= VELOCITY_MAX_AREA_RATIO):
            reach = int(np.ceil(np.abs(centroid - self.centroid).max())) + 2
            shift = np.asarray(mask_shift(self.mask, self.bbox, mask, reach), float)
            step = shift / ((stamp_ns - self.last_seen_ns) * 1e-9)
            self.velocity = (1.0 - smoothing) * self.velocity + smoothing * step
        if not self.seen:
            self.first_seen_ns = stamp_ns
        self.mask, self.bbox, self.centroid, self.area, self.score = mask, bbox, centroid, area, float(score)
        self.last_seen_ns = stamp_ns
        self.hits += 1
        self.hit_streak += 1
        self.misses = 0

    def miss(self) -> None:
        """Record a frame the object was not found in."""
        self.misses += 1
        self.hit_streak = 0

    def predicted(self, stamp_ns: int, size: Tuple[int, int], horizon_s: float) -> Tuple[Optional[np.ndarray], Box]:
        """(mask, box) of the newest match moved by the velocity to ``stamp_ns``; (None, empty box)
        when that mask is unknown, not of the (H, W) ``size`` or older than ``horizon_s``."""
        dt = (stamp_ns - self.last_seen_ns) * 1e-9
        if self.mask is None or self.mask.shape != size or dt > horizon_s:
            return None, EMPTY_BOX
        dx, dy = self.velocity * max(dt, 0.0)
        box = shift_box(self.bbox, dx, dy, size)
        return (shift_mask(self.mask, dx, dy), box) if box != EMPTY_BOX else (None, EMPTY_BOX)

    def expired(self, stamp_ns: int, timeout_s: float) -> bool:
        """LOST for more than ``timeout_s`` at ``stamp_ns`` (since its newest match, or since its
        creation when never found)."""
        since = self.last_seen_ns if self.seen else self.created_ns
        return self.state == TrackState.LOST and (stamp_ns - since) * 1e-9 > timeout_s

    def output(self, size: Tuple[int, int], found: bool) -> TrackOutput:
        """This track on the current frame: the newest mask when ``found``, else all False of (H, W) ``size``."""
        mask = self.mask if found and self.mask is not None else np.zeros(size, bool)
        return TrackOutput(self.id, self.state, self.label, self.score, mask, self.bbox, self.last_seen_ns, self.origin)


@dataclass(frozen=True)
class TrackOutput:
    """One track on one frame, what the pipeline turns into a ``TrackedObject``.

    Attributes:
        id: track id 1..65535 (label-image value).
        state: NEW, TRACKED or LOST (everything mode also NEW for tentative tracks when asked).
        label: the prompt's name or text, or the everything-mode class.
        score: confidence in [0, 1]; the last known one when LOST.
        mask: (H, W) bool; all False when LOST.
        bbox: XYXY box of the mask; the last known one when LOST.
        last_seen_ns: stamp of the newest frame the object was found in (0: never).
        origin: the prompt that created the track (None for everything mode).
    """

    id: int
    state: TrackState
    label: str
    score: float
    mask: np.ndarray
    bbox: Box
    last_seen_ns: int
    origin: Optional[ObjectPrompt] = None


@dataclass
class FrameTracks:
    """What a tracker returns for one frame: ``tracks`` (published tracks, by id) and
    ``warnings`` (problems that did not stop the frame, each naming the track)."""

    tracks: List[TrackOutput]
    warnings: List[str] = field(default_factory=list)

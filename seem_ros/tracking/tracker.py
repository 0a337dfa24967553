"""Trackers that give segmented objects stable ids: prompted objects and everything-mode instances.

:class:`PromptedTracker` drives a predictor (``predict(prompts, prev_mask)`` as
:class:`seem_ros.predictor.SeemPredictor`) to find every prompted object again on each new
frame, with SEEM's own tools: the previous mask as a visual prompt plus ``prev_mask`` memory,
and a referring-image prompt cut from a confident earlier frame (SEEM's zero-shot video
segmentation). :class:`EverythingTracker` associates the segments of open-vocabulary panoptic
segmentation to tracks. Both solve conflicts with one assignment
(:func:`~seem_ros.tracking.association.assign`), keep lost tracks for re-identification by
appearance, and are thread-safe: prompts may be added or removed while a frame is processed.

Conventions: images are (H, W, 3) uint8 RGB; masks (H, W) bool; stamps int nanoseconds,
increasing from frame to frame; the caller has encoded the frame (``predictor.set_image``)
before calling ``update``, so one encoding serves both trackers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from ..prompts import ObjectPrompt, ReferencePatch
from .association import (EMPTY_BOX, Box, appearance, assign, iou_matrix, mask_bbox, mask_centroid, mask_iou,
                          overlap_fraction, shift_box, shift_mask)
from .state import AppearanceBank, FrameTracks, IdPool, Track, TrackOutput, TrackState

_KEEP, _MATCH, _TENTATIVE = 2, 1, 0   # assignment tiers: protected continuity, other matches, tentative tracks


_UNIT_FIELDS = {'min_iou', 'keep_iou', 'min_similarity', 'reid_similarity', 'colour_weight', 'velocity_smoothing',
                'bank_confidence', 'min_confidence', 'merge_iou', 'max_overlap', 'reference_confidence',
                'referred_similarity',
                'min_score'}


@dataclass(frozen=True)
class AssociationConfig:
    """Thresholds shared by both trackers; invalid values raise ``ValueError``.

    Attributes:
        min_iou: a continuity match needs this mask IoU with the motion-predicted mask.
        min_similarity: ... and this appearance similarity to the track's bank.
        keep_iou: a continuity match of a visible track with this IoU or more is protected: the
            assignment gives it priority over every other kind of match (re-identification
            never takes a visible object's id).
        reid_similarity: a match without continuity (re-identification) needs this similarity.
        iou_weight, appearance_weight: weights of IoU and similarity in the match score.
        colour_weight: share of the colour histogram in the appearance similarity (the rest is
            the query embedding; see :func:`~seem_ros.tracking.association.appearance`).
        min_area_px: masks with fewer pixels are ignored.
        lost_timeout_s: a track lost for longer is removed.
        motion_horizon_s: the constant-velocity prediction is used up to this long after the
            last match (prompted: the lost track is still prompted with its predicted mask);
            later only appearance can re-identify the track.
        velocity_smoothing: weight of the newest displacement in the velocity estimate.
        bank_size: appearance vectors kept per track (the first is pinned).
        bank_interval_s: at most one new bank entry per track per this interval.
        bank_confidence: a match enters the bank only with this confidence or more.
    """

    min_iou: float = 0.1
    min_similarity: float = 0.5
    keep_iou: float = 0.5
    reid_similarity: float = 0.75
    iou_weight: float = 1.0
    appearance_weight: float = 1.0
    colour_weight: float = 0.5
    min_area_px: int = 16
    lost_timeout_s: float = 5.0
    motion_horizon_s: float = 1.0
    velocity_smoothing: float = 0.5
    bank_size: int = 8
    bank_interval_s: float = 0.5
    bank_confidence: float = 0.6

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not value >= 0:
                raise ValueError(f'{f.name} must be >= 0, got {value}')
            if f.name in _UNIT_FIELDS and value > 1:
                raise ValueError(f'{f.name} must be in [0, 1], got {value}')
        if self.bank_size < 1:
            raise ValueError(f'bank_size must be >= 1, got {self.bank_size}')

    @classmethod
    def from_dict(cls, values: Dict[str, object]):
        """Build from a mapping (e.g. ROS parameters ``tracking.*``); unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown {cls.__name__} keys {unknown}; expected some of {sorted(known)}')
        return cls(**values)


@dataclass(frozen=True)
class PromptedConfig(AssociationConfig):
    """:class:`PromptedTracker` settings (see also :class:`AssociationConfig`).

    Attributes:
        min_confidence: a result with a lower confidence (mean mask probability) is rejected;
            also the bar for the first frame of a text or referring-patch object.
        merge_iou: results of different prompts overlapping this much are one candidate object.
        max_overlap: a re-identified mask may share at most this fraction of its pixels with
            the mask of a visible track (re-identification never takes a visible object's pixels).
        reference_confidence: a frame becomes the track's new reference (referring patch: the
            frame with the object's mask) only with this confidence, the re-identification
            similarity and the mask clear of the image border.
        referred_similarity: a lost track is also re-identified with this lower similarity when
            its own global prompt (reference or text) found the candidate with at least
            ``reference_confidence`` (e.g. an object still half hidden when it comes back).
        reference_interval_s: at most one new reference per track per this interval.
        propagation: how the predicted mask prompts the next frame: 'mask' (the mask itself),
            'box' (its box) or 'box+point' (its box and its innermost pixel as a click).
        global_when_tracked: also prompt visible tracks with their reference (found even after
            a jump too large for the propagation prompt, at the cost of a second, longer prompt
            per object); otherwise only lost tracks get it.
        use_prev_mask: pass the previous low-resolution mask logits as ``prev_mask`` memory.
        negative_others: give the other tracks' predicted masks as the negative mask of each
            propagation prompt.
    """

    lost_timeout_s: float = 30.0
    min_confidence: float = 0.5
    merge_iou: float = 0.6
    max_overlap: float = 0.5
    reference_confidence: float = 0.7
    referred_similarity: float = 0.65
    reference_interval_s: float = 2.0
    propagation: str = 'mask'
    global_when_tracked: bool = False
    use_prev_mask: bool = True
    negative_others: bool = False


    def __post_init__(self):
        super().__post_init__()
        if self.propagation not in PROPAGATION:
            raise ValueError(f'propagation must be one of {PROPAGATION}, got {self.propagation!r}')


PROPAGATION = ('mask', 'box', 'box+point')


@dataclass(frozen=True)
class EverythingConfig(AssociationConfig):
    """:class:`EverythingTracker` settings (see also :class:`AssociationConfig`).

    Attributes:
        min_score: segments scoring below are ignored.
        min_hits: consecutive matches before a tentative track is born (gets an id, NEW).
        max_misses: a lost track is removed after this many missed frames (or ``lost_timeout_s``).
        label_weight: score bonus of a match with the track's class.
        reid_same_label: re-identification needs the track's class.
        max_tracks: most tracks kept (tentative and lost included); the oldest lost go first.
        publish_tentative: also output tentative tracks (state NEW, id 0).
    """

    min_score: float = 0.5
    min_hits: int = 3
    max_misses: int = 75
    label_weight: float = 0.2
    reid_same_label: bool = True
    max_tracks: int = 100
    publish_tentative: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.min_hits < 1:
            raise ValueError(f'min_hits must be >= 1, got {self.min_hits}')
        if self.max_tracks < 1:
            raise ValueError(f'max_tracks must be >= 1, got {self.max_tracks}')


@dataclass
class _Candidate:
    """One predicted mask: from request ``request`` (prompted) or segment ``request`` (everything)."""

    request: int
    mask: np.ndarray
    bbox: Box
    centroid: np.ndarray
    score: float
    vector: Optional[np.ndarray]
    logits: Optional[torch.Tensor] = None
    label: str = ''


@dataclass
class _Request:
    """One prompt of one track on this frame. kind: 'init' (pending prompt), 'propagate'
    (predicted mask), 'global' (reference / text / origin)."""

    track: Track
    kind: str
    prompt: ObjectPrompt
    logits: Optional[torch.Tensor]
    pending: Optional[ObjectPrompt] = None


def merge_prompts(base: ObjectPrompt, extra: ObjectPrompt) -> ObjectPrompt:
    """``base`` with the inputs of ``extra`` added (its text, name, masks and reference win when set)."""
    def join(a, b, shape, dtype):
        return np.concatenate([np.reshape(a, shape), np.reshape(b, shape)]).astype(dtype)

    return ObjectPrompt(
        text=extra.text or base.text,
        points=join(base.points, extra.points, (-1, 2), np.float32),
        point_labels=join(base.point_labels, extra.point_labels, -1, bool),
        boxes=join(base.boxes, extra.boxes, (-1, 4), np.float32),
        scribbles=tuple(base.scribbles) + tuple(extra.scribbles),
        polygons=tuple(base.polygons) + tuple(extra.polygons),
        mask=extra.mask if extra.mask is not None else base.mask,
        negative_mask=extra.negative_mask if extra.negative_mask is not None else base.negative_mask,
        reference=extra.reference or base.reference,
        name=extra.name or base.name)


def _predicted(track: Track, stamp_ns: int, size: Tuple[int, int], horizon_s: float):
    """(mask, box) of ``track`` moved by its velocity to ``stamp_ns``; (None, empty) when its
    last mask is unknown, of another size or older than ``horizon_s``."""
    dt = (stamp_ns - track.last_seen_ns) * 1e-9
    if track.mask is None or track.mask.shape != size or dt > horizon_s:
        return None, EMPTY_BOX
    dx, dy = track.velocity * max(dt, 0.0)
    box = shift_box(track.bbox, dx, dy, size)
    return (shift_mask(track.mask, dx, dy), box) if box != EMPTY_BOX else (None, EMPTY_BOX)


def _expired(track: Track, stamp_ns: int, timeout_s: float) -> bool:
    since = track.last_seen_ns if track.seen else track.created_ns
    return track.state == TrackState.LOST and (stamp_ns - since) * 1e-9 > timeout_s


def _output(track: Track, size: Tuple[int, int], found: bool) -> TrackOutput:
    mask = track.mask if found else np.zeros(size, bool)
    return TrackOutput(track.id, track.state, track.label, track.score, mask, track.bbox, track.last_seen_ns,
                       track.origin)


def _update_bank(track: Track, vector: np.ndarray, similarity: float, score: float, stamp_ns: int,
                 config: AssociationConfig) -> None:
    if not len(track.bank) or (score >= config.bank_confidence and similarity >= config.min_similarity
                               and (stamp_ns - track.bank_ns) * 1e-9 >= config.bank_interval_s):
        track.bank.add(vector)
        track.bank_ns = stamp_ns


class PromptedTracker:
    """Tracks of prompted objects: each finds its object again on every frame.

    Per frame, every live track gets prompts, all decoded in ONE batched ``predict`` call:

    * *propagate* (found within the last ``motion_horizon_s``): its last mask moved by its
      velocity, as a visual prompt (``propagation``: the mask, its box, or its box and
      innermost point; with the object's text), plus its previous low-resolution logits as
      ``prev_mask`` memory;
    * *global*: its reference, the object cut from a confident earlier frame (or the prompt's
      own referring patch, or its text) as a referring prompt that finds it anywhere in the
      image (lost tracks always, visible ones when ``global_when_tracked``);
    * *init*: a new object's prompt, or a re-prompt (refinement: the new inputs plus the
      current mask and memory; replacement: the new prompt alone).

    Results of different prompts that overlap are merged into candidates; each track may take
    a candidate its own prompts produced if it passes the gates (continuity: IoU with the
    predicted mask and appearance similarity; or re-identification: appearance alone), and
    one assignment over all tracks and candidates decides: protected continuity matches of
    visible tracks first (``keep_iou``), tracks never found yet last. Any other match must not
    overlap a protected mask (nor a mask a visual prompt was just applied to); a new object's
    text or referring patch is such a match, it never takes a visible object. A track that is not
    matched is LOST, and removed after ``lost_timeout_s``.

    Args:
        predictor: has ``predict(prompts, prev_mask=None)`` returning ``masks`` (N, H, W) bool,
            ``confidence`` (N,), ``embeddings`` (N, C) and ``prev_mask`` (N, h, w) logits, with
            the frame already set (:class:`seem_ros.predictor.SeemPredictor`).
        config: :class:`PromptedConfig`.
        ids: the id pool shared with the :class:`EverythingTracker` (a new one by default).
    """

    def __init__(self, predictor, config: PromptedConfig = PromptedConfig(), ids: Optional[IdPool] = None):
        self.predictor = predictor
        self.config = config
        self.ids = IdPool() if ids is None else ids
        self._tracks: Dict[int, Track] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ user actions
    def add(self, prompt: ObjectPrompt, *, label: str = '', stamp_ns: int = 0) -> int:
        """Create a track for the object ``prompt`` designates; returns its id.

        The prompt is applied on the next :meth:`update` (or :meth:`initialize`) frame.
        ``label`` defaults to the prompt's name, else its text or input kinds
        (:attr:`~seem_ros.prompts.ObjectPrompt.default_label`); ``stamp_ns`` is the time the track is
        created at (for ``lost_timeout_s`` while it has never been found).

        Raises:
            ValueError: an empty prompt. RuntimeError: no free id.
        """
        if prompt.is_empty:
            raise ValueError('the prompt is empty (no text, pixels or referring patch)')
        with self._lock:
            track_id = self.ids.take()
            self._tracks[track_id] = Track(track_id, label or prompt.name or prompt.default_label, TrackState.NEW,
                                           stamp_ns, origin=prompt, bank=AppearanceBank(self.config.bank_size),
                                           pending=prompt)
            return track_id

    def prompt(self, track_id: int, prompt: ObjectPrompt, *, refine: bool = True) -> None:
        """Re-prompt track ``track_id`` on the next frame, keeping its id.

        ``refine``: the new inputs (e.g. corrective clicks) are added to what is known of the
        object (its current mask, memory and text); its appearance memory and reference restart
        from the refined mask. Otherwise the prompt replaces everything (a new object, same id).
        Re-prompts before the next frame accumulate.

        Raises:
            KeyError: no such track. ValueError: an empty prompt.
        """
        if prompt.is_empty:
            raise ValueError('the prompt is empty (no text, pixels or referring patch)')
        with self._lock:
            track = self._tracks.get(track_id)
            if track is None:
                raise KeyError(f'no track with id {track_id}')
            if refine and track.pending is not None:
                track.pending = merge_prompts(track.pending, prompt)
            elif refine:
                track.pending, track.pending_refine = prompt, track.seen
            else:
                self._tracks[track_id] = Track(track_id, prompt.name or prompt.text, TrackState.NEW, track.created_ns,
                                               origin=prompt, bank=AppearanceBank(self.config.bank_size),
                                               pending=prompt)

    def remove(self, track_id: int) -> None:
        """Remove track ``track_id`` now. Raises KeyError for an unknown id."""
        with self._lock:
            if track_id not in self._tracks:
                raise KeyError(f'no track with id {track_id}')
            self._drop(track_id)

    def reset(self) -> None:
        """Remove every track."""
        with self._lock:
            for track_id in list(self._tracks):
                self._drop(track_id)

    def tracks(self) -> List[Track]:
        """Snapshot of the live tracks, by id (the Track objects are the tracker's: read only)."""
        with self._lock:
            return [self._tracks[i] for i in sorted(self._tracks)]

    def _drop(self, track_id: int) -> None:
        self._tracks.pop(track_id).state = TrackState.REMOVED
        self.ids.release(track_id)

    # ------------------------------------------------------------------ frames
    def initialize(self, image: np.ndarray, stamp_ns: int, track_ids: Sequence[int]) -> FrameTracks:
        """Apply the pending prompts of ``track_ids`` on an earlier frame (the one they refer to).

        Call with the predictor set to ``image``, then :meth:`update` with the newest frame.
        Returns those tracks on ``image``.
        """
        return self._step(image, stamp_ns, set(track_ids))

    def update(self, image: np.ndarray, stamp_ns: int) -> FrameTracks:
        """Find every live track on ``image`` (already set on the predictor); returns all tracks.

        Tracks still waiting for their first frame are not returned. Removed tracks (timed out)
        disappear from the output.
        """
        return self._step(image, stamp_ns, None)

    def _step(self, image: np.ndarray, stamp_ns: int, only: Optional[set]) -> FrameTracks:
        size = image.shape[:2]
        warnings: List[str] = []
        with self._lock:
            if only is None:
                for track in list(self._tracks.values()):
                    if _expired(track, stamp_ns, self.config.lost_timeout_s):
                        self._drop(track.id)
            requests = self._requests(size, stamp_ns, only)
        results = self._predict(requests, warnings)
        with self._lock:
            live = {id(t) for t in self._tracks.values()}
            keep = [i for i, r in enumerate(requests) if id(r.track) in live
                    and (r.kind != 'init' or r.track.pending is r.pending)]
            requests = [requests[i] for i in keep]
            results = [results[i] for i in keep]
            self._apply(image, stamp_ns, requests, results, only, warnings)
            tracks = [t for t in self._tracks.values() if only is None or t.id in only]
            out = [_output(t, size, t.state in (TrackState.NEW, TrackState.TRACKED) and t.last_seen_ns == stamp_ns)
                   for t in sorted(tracks, key=lambda t: t.id) if t.age > 0]
            return FrameTracks(out, warnings)

    def _requests(self, size, stamp_ns: int, only: Optional[set]) -> List[_Request]:
        """Under the lock: the prompts of this frame (see the class docstring)."""
        cfg = self.config
        requests: List[_Request] = []
        propagate: List[Tuple[Track, np.ndarray]] = []
        for track in self._tracks.values():
            if track.pending is not None:
                if only is not None and track.id not in only:
                    continue
                prompt, logits = track.pending, None
                if track.pending_refine and track.misses == 0:   # refine what is visible now
                    mask = _predicted(track, stamp_ns, size, cfg.motion_horizon_s)[0]
                    prompt = merge_prompts(ObjectPrompt(text=track.origin.text if track.origin else '', mask=mask),
                                           prompt)
                    logits = track.logits if track.logits_size == size else None
                requests.append(_Request(track, 'init', prompt, logits, track.pending))
                continue
            if only is not None:
                continue
            mask = _predicted(track, stamp_ns, size, cfg.motion_horizon_s)[0]
            if mask is not None:
                propagate.append((track, mask))
            if mask is None or track.misses or cfg.global_when_tracked:
                prompt = self._global_prompt(track)
                if prompt is not None:
                    requests.append(_Request(track, 'global', prompt, None))
        union = None
        if cfg.negative_others and len(propagate) > 1:
            union = np.logical_or.reduce([m for _, m in propagate])
        for track, mask in propagate:
            negative = None
            if union is not None:
                negative = union & ~mask
                negative = negative if negative.any() else None
            text = track.origin.text if track.origin else ''
            logits = track.logits if track.logits_size == size else None
            requests.append(_Request(track, 'propagate', _visual_prompt(mask, cfg.propagation, text, negative), logits))
        return requests

    @staticmethod
    def _global_prompt(track: Track) -> Optional[ObjectPrompt]:
        """A prompt that finds the object anywhere: its reference (with its text), its text, or,
        while it has never been found, its original prompt."""
        origin = track.origin
        text = origin.text if origin else ''
        reference = track.reference or (origin.reference if origin else None)
        if reference is not None:
            return ObjectPrompt(text=text, reference=reference)
        if text:
            return ObjectPrompt(text=text)
        return origin if not track.seen else None

    def _predict(self, requests: List[_Request], warnings: List[str]) -> list:
        """One batched ``predict`` for all requests -> per request (mask, confidence, embedding,
        logits) or None. When the batch fails, each request is retried alone so that one
        object's prompt or reference cannot stop the others: a failing one gets None and a
        warning naming the track and the cause."""
        if not requests:
            return []
        prompts = [r.prompt for r in requests]
        rows = [r.logits for r in requests]
        prev = None
        if self.config.use_prev_mask and any(r is not None for r in rows):
            like = next(r for r in rows if r is not None)
            prev = torch.stack([r if r is not None and r.shape == like.shape else torch.zeros_like(like) for r in rows])
        try:
            res = self.predictor.predict(prompts, prev_mask=prev)
            return [(res.masks[i], float(res.confidence[i]), res.embeddings[i], res.prev_mask[i])
                    for i in range(len(prompts))]
        except Exception as exc:  # noqa: BLE001 - isolated below, per object
            if len(requests) == 1:
                req = requests[0]
                warnings.append(f'track {req.track.id} ({req.track.label}): {req.kind} prompt failed: '
                                f'{type(exc).__name__}: {exc}')
                return [None]
        return [self._predict([r], warnings)[0] for r in requests]

    def _apply(self, image, stamp_ns: int, requests: List[_Request], results: list, only: Optional[set],
               warnings: List[str]) -> None:
        """Under the lock: accept init results, associate the others, update every track."""
        cfg = self.config
        size = image.shape[:2]
        fixed: List[_Candidate] = []       # masks of visible objects, for the re-identification overlap check
        if only is not None:               # an earlier frame: the other visible tracks keep their objects
            fixed += [_Candidate(-1, t.mask, t.bbox, t.centroid, t.score, None) for t in self._tracks.values()
                      if t.id not in only and t.seen and t.misses == 0 and t.mask.shape == size]
        candidates: List[_Candidate] = []
        for k, (req, res) in enumerate(zip(requests, results)):
            if res is None:
                if req.kind == 'init' and not req.track.seen:
                    warnings.append(f'track {req.track.id} removed: its prompt could not be applied')
                    self._drop(req.track.id)
                elif req.kind == 'init':
                    warnings.append(f'track {req.track.id}: its re-prompt could not be applied; kept as it was')
                    req.track.pending = None
                continue
            mask, confidence, embedding, logits = res
            mask = np.asarray(mask, bool)
            bbox = mask_bbox(mask)
            area_ok = np.count_nonzero(mask) >= cfg.min_area_px
            if not area_ok or (req.kind != 'init' and confidence < cfg.min_confidence):
                if req.kind == 'init':
                    self._reject_init(req, confidence, warnings)
                continue
            cand = _Candidate(k, mask, bbox, mask_centroid(mask, bbox), confidence,
                              appearance(image, mask, embedding, cfg.colour_weight), logits)
            if req.kind != 'init':
                candidates.append(cand)
            elif not req.prompt.has_visual and confidence < cfg.min_confidence:
                self._reject_init(req, confidence, warnings)
            elif not req.prompt.has_visual and not req.track.seen:
                # Text or a referring patch says what, not where: like a lost track's search, the
                # answer must not take the object of a visible track, so it is associated.
                req.track.pending = None
                candidates.append(cand)
            else:
                self._accept_init(req, cand, image, stamp_ns)
                fixed.append(cand)
        matched = self._associate(image, stamp_ns, requests, candidates, fixed)
        for track in self._tracks.values():
            if track.pending is not None or (only is not None and track.id not in only):
                continue
            track.age += 1
            if track.id in matched or track.last_seen_ns == stamp_ns:
                continue
            track.miss()
            track.state = TrackState.LOST

    def _reject_init(self, req: _Request, confidence: float, warnings: List[str]) -> None:
        track = req.track
        track.pending = None
        if track.seen:
            warnings.append(f'track {track.id}: re-prompt found nothing (confidence {confidence:.2f}); kept as it was')
        else:
            track.state = TrackState.LOST
            warnings.append(f'track {track.id}: object not found on its first frame (confidence {confidence:.2f})')

    def _accept_init(self, req: _Request, cand: _Candidate, image, stamp_ns: int) -> None:
        track = req.track
        track.pending = None
        track.bank.clear()
        track.bank.add(cand.vector)
        track.bank_ns = stamp_ns
        track.observe(cand.mask, cand.bbox, cand.centroid, cand.score, stamp_ns, self.config.velocity_smoothing)
        track.state = TrackState.NEW if track.hits == 1 else TrackState.TRACKED
        track.logits, track.logits_size = cand.logits, image.shape[:2]
        track.reference = _frame_reference(image, cand.mask)
        track.reference_ns = stamp_ns

    def _associate(self, image, stamp_ns: int, requests: List[_Request], candidates: List[_Candidate],
                   fixed: List[_Candidate]) -> set:
        """Merge overlapping candidates, gate and assign them to tracks; returns matched track ids."""
        cfg = self.config
        size = image.shape[:2]
        if not candidates:
            return set()
        order = sorted(range(len(candidates)), key=lambda i: -candidates[i].score)
        clusters: List[List[int]] = []
        for i in order:
            c = candidates[i]
            for members in clusters:
                head = candidates[members[0]]
                if mask_iou(c.mask, head.mask, c.bbox, head.bbox) >= cfg.merge_iou:
                    members.append(i)
                    break
            else:
                clusters.append([i])
        tracks = list({id(requests[c.request].track): requests[c.request].track for c in candidates}.values())
        row = {id(t): r for r, t in enumerate(tracks)}
        predicted = [_predicted(t, stamp_ns, size, cfg.motion_horizon_s) for t in tracks]
        score = np.zeros((len(tracks), len(clusters)))
        valid = np.zeros_like(score, bool)
        tier = np.full(score.shape, _TENTATIVE)
        best: Dict[Tuple[int, int], Tuple[int, float]] = {}
        for k, members in enumerate(clusters):
            for i in members:
                c = candidates[i]
                r = row[id(requests[c.request].track)]
                t = tracks[r]
                pmask, pbox = predicted[r]
                iou = mask_iou(pmask, c.mask, pbox, c.bbox) if pmask is not None else 0.0
                if len(t.bank):
                    sim = t.bank.similarity(c.vector)
                    referred = (requests[c.request].kind == 'global' and c.score >= cfg.reference_confidence
                                and sim >= cfg.referred_similarity)
                    ok = (iou >= cfg.min_iou and sim >= cfg.min_similarity) or sim >= cfg.reid_similarity or referred
                else:   # never found yet: the confidence decides
                    sim, ok = c.score, c.score >= cfg.min_confidence
                s = cfg.iou_weight * iou + cfg.appearance_weight * sim
                if ok and (not valid[r, k] or s > score[r, k]):
                    valid[r, k], score[r, k] = True, s
                    keep = t.misses == 0 and t.seen and iou >= cfg.keep_iou and sim >= cfg.min_similarity
                    tier[r, k] = _KEEP if keep else _MATCH if t.seen else _TENTATIVE
                    best[r, k] = (i, sim)
        pairs = assign(score, valid, tier)
        kept = list(fixed) + [candidates[best[r, k][0]] for r, k in pairs if tier[r, k] == _KEEP]
        matched = set()
        for r, k in pairs:
            t = tracks[r]
            i, sim = best[r, k]
            c = candidates[i]
            if tier[r, k] != _KEEP and any(overlap_fraction(c.mask, c.bbox, v.mask, v.bbox) >= cfg.max_overlap
                                           for v in kept):
                continue
            first = not t.seen
            t.observe(c.mask, c.bbox, c.centroid, c.score, stamp_ns, cfg.velocity_smoothing)
            t.state = TrackState.NEW if first else TrackState.TRACKED
            t.logits, t.logits_size = c.logits, size
            _update_bank(t, c.vector, 1.0 if first else sim, c.score, stamp_ns, cfg)
            self._refresh_reference(t, c, image, sim if not first else 1.0, stamp_ns)
            matched.add(t.id)
        return matched

    def _refresh_reference(self, track: Track, cand: _Candidate, image, similarity: float, stamp_ns: int) -> None:
        cfg = self.config
        h, w = image.shape[:2]
        x0, y0, x1, y1 = cand.bbox
        if (cand.score >= cfg.reference_confidence and similarity >= cfg.reid_similarity
                and x0 > 0 and y0 > 0 and x1 < w and y1 < h
                and (track.reference is None or (stamp_ns - track.reference_ns) * 1e-9 >= cfg.reference_interval_s)):
            track.reference = _frame_reference(image, cand.mask)
            track.reference_ns = stamp_ns


def _visual_prompt(mask: np.ndarray, kind: str, text: str, negative: Optional[np.ndarray]) -> ObjectPrompt:
    """A prompt for the object under the non-empty ``mask`` (see ``PromptedConfig.propagation``)."""
    if kind == 'mask':
        return ObjectPrompt(text=text, mask=mask, negative_mask=negative)
    box = np.array([mask_bbox(mask)], np.float32)
    if kind == 'box':
        return ObjectPrompt(text=text, boxes=box, negative_mask=negative)
    x0, y0, x1, y1 = (int(v) for v in box[0])
    crop = np.pad(mask[y0:y1, x0:x1], 1).astype(np.uint8)
    row, col = np.unravel_index(int(np.argmax(cv2.distanceTransform(crop, cv2.DIST_L2, 3))), crop.shape)
    point = np.array([[x0 + col - 0.5, y0 + row - 0.5]], np.float32)
    return ObjectPrompt(text=text, boxes=box, points=point, point_labels=np.ones(1, bool), negative_mask=negative)


def _frame_reference(image: np.ndarray, mask: np.ndarray) -> ReferencePatch:
    """The object as a referring patch: the whole frame with the object's mask.

    The reference is encoded at the frame's own size, which every backend already runs (an
    exported graph has no other size), its mask is resized exactly as any prompt drawn on that
    frame, and the object keeps the scale and context it has in the frames it is searched in.
    """
    return ReferencePatch(image=image.copy(), mask=mask.copy())


class EverythingTracker:
    """Tracks of everything-mode segments, associated by mask IoU with motion prediction and
    appearance similarity in one assignment.

    A segment that no track takes starts a tentative track, born (id, NEW) after ``min_hits``
    consecutive matches and dropped at its first miss, so a one-frame false positive never
    gets an id; at birth it takes over the id of a lost track it resembles (late
    re-identification, for objects that come back looking too different for one frame's
    evidence). A born track that is not matched is LOST; while lost it can be re-identified
    by appearance (its class too when ``reid_same_label``) or, within ``motion_horizon_s``, by
    IoU with its predicted mask; it is removed after ``lost_timeout_s`` or ``max_misses``
    frames. Protected continuity matches (``keep_iou``) win every conflict; tentative tracks
    lose every conflict.

    Args:
        config: :class:`EverythingConfig`.
        ids: the id pool shared with the :class:`PromptedTracker` (a new one by default).
    """

    def __init__(self, config: EverythingConfig = EverythingConfig(), ids: Optional[IdPool] = None):
        self.config = config
        self.ids = IdPool() if ids is None else ids
        self._tracks: List[Track] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Remove every track."""
        with self._lock:
            for track in self._tracks:
                self._release(track)
            self._tracks = []

    def tracks(self) -> List[Track]:
        """Snapshot of the tracks (tentative ones with id 0); the Track objects are read only."""
        with self._lock:
            return list(self._tracks)

    def _release(self, track: Track) -> None:
        track.state = TrackState.REMOVED
        if track.id:
            self.ids.release(track.id)

    def update(self, image: np.ndarray, stamp_ns: int, segments: Sequence) -> FrameTracks:
        """Associate this frame's ``segments`` to the tracks.

        Args:
            image: (H, W, 3) uint8 RGB frame (for the colour appearance).
            stamp_ns: the frame's stamp.
            segments: objects with ``mask`` (H, W) bool, ``score`` in [0, 1], ``label`` str and
                ``embedding`` (C,) or None (e.g. :class:`seem_ros.predictor.Segment`); masks
                should not overlap (panoptic).
        Returns:
            the born tracks (and tentative ones when ``publish_tentative``), by id.
        """
        cfg = self.config
        size = image.shape[:2]
        dets = []
        for seg in segments:
            mask = np.asarray(seg.mask, bool)
            if seg.score < cfg.min_score or np.count_nonzero(mask) < cfg.min_area_px:
                continue
            bbox = mask_bbox(mask)
            dets.append(_Candidate(len(dets), mask, bbox, mask_centroid(mask, bbox), float(seg.score),
                                   appearance(image, mask, getattr(seg, 'embedding', None), cfg.colour_weight),
                                   label=seg.label))
        with self._lock:
            tracks = self._tracks
            visible = np.array([t.id and t.state != TrackState.LOST for t in tracks], bool)
            tentative = np.array([not t.id for t in tracks], bool)
            predicted = [_predicted(t, stamp_ns, size, cfg.motion_horizon_s) for t in tracks]
            iou = iou_matrix([p[0] for p in predicted], [p[1] for p in predicted], [d.mask for d in dets],
                             [d.bbox for d in dets])
            sim = np.array([[t.bank.similarity(d.vector) for d in dets] for t in tracks]).reshape(iou.shape)
            same = np.array([[d.label == t.label for d in dets] for t in tracks], bool).reshape(iou.shape)
            continuity = (iou >= cfg.min_iou) & (sim >= cfg.min_similarity)
            reid = (sim >= cfg.reid_similarity) & (same | (not cfg.reid_same_label)) & ~tentative[:, None]
            score = cfg.iou_weight * iou + cfg.appearance_weight * sim + cfg.label_weight * same
            tier = np.where(visible[:, None] & continuity & (iou >= cfg.keep_iou), _KEEP, _MATCH)
            tier[tentative] = _TENTATIVE
            pairs = assign(score, continuity | reid, tier)
            taken = set()
            for r, j in pairs:
                t, d = tracks[r], dets[j]
                taken.add(j)
                self._match(t, d, float(sim[r, j]), stamp_ns)
            kept = []
            matched = {r for r, _ in pairs}
            for r, t in enumerate(tracks):
                t.age += 1
                if r not in matched:
                    t.miss()
                    if not t.id:
                        t.state = TrackState.REMOVED
                        continue
                    t.state = TrackState.LOST
                    if t.misses > cfg.max_misses or _expired(t, stamp_ns, cfg.lost_timeout_s):
                        self._release(t)
                        continue
                kept.append(t)
            for j, d in enumerate(dets):
                if j not in taken and len(kept) < cfg.max_tracks:
                    t = Track(0, d.label, TrackState.NEW, stamp_ns, bank=AppearanceBank(cfg.bank_size), age=1)
                    self._match(t, d, 1.0, stamp_ns)
                    kept.append(t)
            self._tracks = self._bounded(self._births(kept))
            out = [_output(t, size, t.last_seen_ns == stamp_ns and t.misses == 0)
                   for t in sorted(self._tracks, key=lambda t: t.id)
                   if t.id or cfg.publish_tentative]
            return FrameTracks(out)

    def _match(self, track: Track, det: _Candidate, similarity: float, stamp_ns: int) -> None:
        cfg = self.config
        track.observe(det.mask, det.bbox, det.centroid, det.score, stamp_ns, cfg.velocity_smoothing)
        track.label_votes[det.label] = track.label_votes.get(det.label, 0.0) + det.score
        track.label = max(track.label_votes, key=track.label_votes.get)
        _update_bank(track, det.vector, similarity, det.score, stamp_ns, cfg)
        if track.id:
            track.state = TrackState.TRACKED

    def _births(self, tracks: List[Track]) -> List[Track]:
        """Tentative tracks with ``min_hits`` consecutive matches are born: each takes the id of
        the lost track it resembles (same class when ``reid_same_label``, mean appearance
        similarity of its matches >= ``min_similarity``; one assignment), which it replaces, or
        a new id (state NEW)."""
        cfg = self.config
        ready = [t for t in tracks if not t.id and t.hit_streak >= cfg.min_hits]
        if not ready:
            return tracks
        lost = [t for t in tracks if t.id and t.state == TrackState.LOST]
        sim = np.array([[np.mean([old.bank.similarity(v) for v in new.bank.vectors()]) for old in lost]
                        for new in ready]).reshape(len(ready), len(lost))
        same = np.array([[new.label == old.label or not cfg.reid_same_label for old in lost] for new in ready],
                        bool).reshape(sim.shape)
        heirs = dict(assign(sim, (sim >= cfg.min_similarity) & same))
        gone = set()
        for r, new in enumerate(ready):
            if r in heirs:
                old = lost[heirs[r]]
                gone.add(id(old))
                for v in new.bank.vectors():
                    old.bank.add(v)
                new.id, new.bank, new.created_ns, new.first_seen_ns = old.id, old.bank, old.created_ns, old.first_seen_ns
                new.hits += old.hits
                new.state = TrackState.TRACKED
            else:
                new.id = self.ids.take()
                new.state = TrackState.NEW
        return [t for t in tracks if id(t) not in gone]

    def _bounded(self, tracks: List[Track]) -> List[Track]:
        """At most ``max_tracks`` tracks: the lost ones seen longest ago are removed first."""
        excess = len(tracks) - self.config.max_tracks
        if excess <= 0:
            return tracks
        lost = sorted((t for t in tracks if t.state == TrackState.LOST), key=lambda t: t.last_seen_ns)[:excess]
        for t in lost:
            self._release(t)
        gone = {id(t) for t in lost}
        return [t for t in tracks if id(t) not in gone]

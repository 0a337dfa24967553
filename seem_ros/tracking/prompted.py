"""The tracker of prompted objects: each finds its object again on every frame.

:class:`PromptedTracker` drives a predictor (``predict(prompts, prev_mask)`` as
:class:`seem_ros.predictor.SeemPredictor`) with SEEM's own tools: the previous mask as a visual
prompt plus ``prev_mask`` memory, and a referring-image prompt cut from a confident earlier frame
(SEEM's zero-shot video segmentation). It solves conflicts with one assignment
(:func:`~seem_ros.tracking.association.assign`), keeps lost tracks for re-identification by
appearance, and is thread-safe: prompts may be added or removed while a frame is processed.

Conventions: images are (H, W, 3) uint8 RGB; masks (H, W) bool; stamps int nanoseconds,
increasing from frame to frame; the caller has encoded the frame (``predictor.set_image``)
before calling ``update``, so one encoding serves both trackers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..prompts import ObjectPrompt
from .association import Box, appearance, assign, mask_bbox, mask_centroid, mask_iou, overlap_fraction
from .config import PromptedConfig
from .matching import KEEP, MATCH, TENTATIVE, Candidate, update_bank
from .prompting import frame_reference, merge_prompts, visual_prompt
from .state import AppearanceBank, FrameTracks, IdPool, Track, TrackState


@dataclass
class _Request:
    """One prompt of one track on this frame. kind: 'init' (pending prompt), 'propagate'
    (predicted mask), 'global' (reference / text / origin)."""

    track: Track
    kind: str
    prompt: ObjectPrompt
    logits: Optional[torch.Tensor]
    pending: Optional[ObjectPrompt] = None


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

    def rename(self, track_id: int, name: str) -> None:
        """Give track ``track_id`` the client name ``name`` (its label and its prompt's name);
        the tracking state is kept. Raises KeyError for an unknown id."""
        with self._lock:
            track = self._tracks.get(track_id)
            if track is None:
                raise KeyError(f'no track with id {track_id}')
            track.label = name
            if track.origin is not None:
                track.origin = replace(track.origin, name=name)

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
                    if track.expired(stamp_ns, self.config.lost_timeout_s):
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
            out = [t.output(size, t.state in (TrackState.NEW, TrackState.TRACKED) and t.last_seen_ns == stamp_ns)
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
                    mask = track.predicted(stamp_ns, size, cfg.motion_horizon_s)[0]
                    prompt = merge_prompts(ObjectPrompt(text=track.origin.text if track.origin else '', mask=mask),
                                           prompt)
                    logits = track.logits if track.logits_size == size else None
                requests.append(_Request(track, 'init', prompt, logits, track.pending))
                continue
            if only is not None:
                continue
            mask = track.predicted(stamp_ns, size, cfg.motion_horizon_s)[0]
            if mask is not None:
                propagate.append((track, mask))
            if mask is None or track.misses or cfg.global_when_tracked:
                search = self._global_prompt(track)
                if search is not None:
                    requests.append(_Request(track, 'global', search, None))
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
            requests.append(_Request(track, 'propagate', visual_prompt(mask, cfg.propagation, text, negative), logits))
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
        fixed: List[Tuple[np.ndarray, Box]] = []   # (mask, bbox) of visible objects, for the re-identification
        if only is not None:                        # overlap check; an earlier frame: the other visible tracks
            fixed += [(t.mask, t.bbox) for t in self._tracks.values()   # keep their objects
                      if t.id not in only and t.seen and t.misses == 0 and t.mask is not None
                      and t.mask.shape == size]
        candidates: List[Candidate] = []
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
            cand = Candidate(k, mask, bbox, mask_centroid(mask, bbox), confidence,
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
                fixed.append((cand.mask, cand.bbox))
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

    def _accept_init(self, req: _Request, cand: Candidate, image, stamp_ns: int) -> None:
        track = req.track
        track.pending = None
        track.bank.clear()
        track.bank.add(cand.vector)
        track.bank_ns = stamp_ns
        track.observe(cand.mask, cand.bbox, cand.centroid, cand.score, stamp_ns, self.config.velocity_smoothing)
        track.state = TrackState.NEW if track.hits == 1 else TrackState.TRACKED
        track.logits, track.logits_size = cand.logits, image.shape[:2]
        track.reference = frame_reference(image, cand.mask)
        track.reference_ns = stamp_ns

    def _associate(self, image, stamp_ns: int, requests: List[_Request], candidates: List[Candidate],
                   fixed: List[Tuple[np.ndarray, Box]]) -> set:
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
        predicted = [t.predicted(stamp_ns, size, cfg.motion_horizon_s) for t in tracks]
        score = np.zeros((len(tracks), len(clusters)))
        valid = np.zeros_like(score, bool)
        tier = np.full(score.shape, TENTATIVE)
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
                    tier[r, k] = KEEP if keep else MATCH if t.seen else TENTATIVE
                    best[r, k] = (i, sim)
        pairs = assign(score, valid, tier)
        kept = list(fixed) + [(candidates[best[r, k][0]].mask, candidates[best[r, k][0]].bbox)
                              for r, k in pairs if tier[r, k] == KEEP]
        matched = set()
        for r, k in pairs:
            t = tracks[r]
            i, sim = best[r, k]
            c = candidates[i]
            if tier[r, k] != KEEP and any(overlap_fraction(c.mask, c.bbox, mask, bbox) >= cfg.max_overlap
                                           for mask, bbox in kept):
                continue
            first = not t.seen
            t.observe(c.mask, c.bbox, c.centroid, c.score, stamp_ns, cfg.velocity_smoothing)
            t.state = TrackState.NEW if first else TrackState.TRACKED
            t.logits, t.logits_size = c.logits, size
            update_bank(t, c.vector, 1.0 if first else sim, c.score, stamp_ns, cfg)
            self._refresh_reference(t, c, image, sim if not first else 1.0, stamp_ns)
            matched.add(t.id)
        return matched

    def _refresh_reference(self, track: Track, cand: Candidate, image, similarity: float, stamp_ns: int) -> None:
        cfg = self.config
        h, w = image.shape[:2]
        x0, y0, x1, y1 = cand.bbox
        if (cand.score >= cfg.reference_confidence and similarity >= cfg.reid_similarity
                and x0 > 0 and y0 > 0 and x1 < w and y1 < h
                and (track.reference is None or (stamp_ns - track.reference_ns) * 1e-9 >= cfg.reference_interval_s)):
            track.reference = frame_reference(image, cand.mask)
            track.reference_ns = stamp_ns

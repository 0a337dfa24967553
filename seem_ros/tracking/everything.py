"""The tracker of everything-mode segments: open-vocabulary panoptic instances get stable ids.

Conventions: images are (H, W, 3) uint8 RGB; masks (H, W) bool; stamps int nanoseconds,
increasing from frame to frame.
"""
from __future__ import annotations

import threading
from typing import List, Optional, Sequence

import numpy as np

from .association import appearance, assign, iou_matrix, mask_bbox, mask_centroid
from .config import EverythingConfig
from .matching import KEEP, MATCH, TENTATIVE, Candidate, update_bank
from .state import AppearanceBank, FrameTracks, IdPool, Track, TrackState


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
        dets: List[Candidate] = []
        for seg in segments:
            mask = np.asarray(seg.mask, bool)
            if seg.score < cfg.min_score or np.count_nonzero(mask) < cfg.min_area_px:
                continue
            bbox = mask_bbox(mask)
            dets.append(Candidate(len(dets), mask, bbox, mask_centroid(mask, bbox), float(seg.score),
                                   appearance(image, mask, getattr(seg, 'embedding', None), cfg.colour_weight),
                                   label=seg.label))
        with self._lock:
            tracks = self._tracks
            visible = np.array([t.id and t.state != TrackState.LOST for t in tracks], bool)
            tentative = np.array([not t.id for t in tracks], bool)
            predicted = [t.predicted(stamp_ns, size, cfg.motion_horizon_s) for t in tracks]
            iou = iou_matrix([p[0] for p in predicted], [p[1] for p in predicted], [d.mask for d in dets],
                             [d.bbox for d in dets])
            sim = np.array([[t.bank.similarity(d.vector) for d in dets] for t in tracks]).reshape(iou.shape)
            same = np.array([[d.label == t.label for d in dets] for t in tracks], bool).reshape(iou.shape)
            continuity = (iou >= cfg.min_iou) & (sim >= cfg.min_similarity)
            reid = (sim >= cfg.reid_similarity) & (same | (not cfg.reid_same_label)) & ~tentative[:, None]
            score = cfg.iou_weight * iou + cfg.appearance_weight * sim + cfg.label_weight * same
            tier = np.where(visible[:, None] & continuity & (iou >= cfg.keep_iou), KEEP, MATCH)
            tier[tentative] = TENTATIVE
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
                    if t.misses > cfg.max_misses or t.expired(stamp_ns, cfg.lost_timeout_s):
                        self._release(t)
                        continue
                kept.append(t)
            for j, d in enumerate(dets):
                if j not in taken and len(kept) < cfg.max_tracks:
                    t = Track(0, d.label, TrackState.NEW, stamp_ns, bank=AppearanceBank(cfg.bank_size), age=1)
                    self._match(t, d, 1.0, stamp_ns)
                    kept.append(t)
            self._tracks = self._bounded(self._births(kept))
            out = [t.output(size, t.last_seen_ns == stamp_ns and t.misses == 0)
                   for t in sorted(self._tracks, key=lambda t: t.id)
                   if t.id or cfg.publish_tentative]
            return FrameTracks(out)

    def _match(self, track: Track, det: Candidate, similarity: float, stamp_ns: int) -> None:
        cfg = self.config
        track.observe(det.mask, det.bbox, det.centroid, det.score, stamp_ns, cfg.velocity_smoothing)
        track.label_votes[det.label] = track.label_votes.get(det.label, 0.0) + det.score
        track.label = max(track.label_votes, key=track.label_votes.__getitem__)
        update_bank(track, det.vector, similarity, det.score, stamp_ns, cfg)
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
                new.id, new.bank = old.id, old.bank
                new.created_ns, new.first_seen_ns = old.created_ns, old.first_seen_ns
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

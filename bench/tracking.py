#!/usr/bin/env python3
"""Tracking benchmark (issue #8): do ids survive motion, occlusion and leaving the frame?

Runs on generated scenes (``seem_ros.scenes``) with held-out seeds
(:data:`seem_ros.training.data.EVAL_SEEDS`, 0..999; training scenes use other seeds).

Part 1, the trackers alone on ground truth, to measure association apart from segmentation:

* ``gt-everything``: :class:`EverythingTracker` on the ground-truth mask of every object, with
  injected noise: erosion/dilation, jitter, misses, class flips and false-positive blobs.
* ``gt-prompted``: :class:`PromptedTracker` on the scenes' scripted prompts (text, click, box,
  referring patch), driven by a simulated segmenter that answers each prompt from the ground
  truth with the same noise: a mask or click prompt gets the visible object under it (the
  occluder when the object is hidden, i.e. drift), a referring patch gets the visible object
  most similar in colour and shape (another object when the right one is hidden), text gets the
  object it names (a random one when it is hidden), and each answer's embedding is its shape's
  (a class-level embedding, as SEEM's).

Part 2, end to end with the shipped small model (``--checkpoint``): the scripted prompts through
:class:`PromptedTracker` (``e2e-prompted``), and everything mode with the shape names as the
vocabulary through :class:`EverythingTracker` (``e2e-everything``), on each of ``--e2e-backends``
(default torch and onnxruntime; the rows of a graph backend are suffixed with its name, e.g.
``e2e-prompted-onnxruntime``; its graphs come from the export cache of
:mod:`seem_ros.runtime.export_cache`, exported on first use). Skipped, with a message, when the
checkpoint is absent.

Metrics: HOTA, MOTA, IDF1 and ID switches from trackeval (HOTA, CLEAR, Identity; mask IoU),
J&F of prompted objects over the frames after their prompt (DAVIS protocol),
and per disappearance event (an object hidden or out of the frame, then visible again): whether
it got its old id back, whether another id came first (switch), and the re-acquisition delay in
frames. Prompted rows evaluate the prompted objects from their prompt frame on. Ground-truth
instances with fewer than ``--min-visible-px`` visible pixels are ignored (neither missed nor
false positives).

Usage::

    python bench/tracking.py [--seeds 0:25] [--e2e-seeds 0:3] [--checkpoint models/seem_tiny.pt]
                             [--e2e-backends torch,onnxruntime]
                             [--json bench/results/tracking.json]

Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with contextlib.redirect_stdout(io.StringIO()):   # trackeval prints about optional dataset readers
    from trackeval.metrics import CLEAR, HOTA, Identity  # noqa: E402

from tqdm import tqdm  # noqa: E402
from seem_ros.rasterize import rasterize  # noqa: E402
from seem_ros.scenes import SHAPES, build_scene, render_frame, scripted_prompts  # noqa: E402
from seem_ros.tracking import (EverythingConfig, EverythingTracker, IdPool, PromptedConfig,  # noqa: E402
                               PromptedTracker, colour_descriptor, mask_bbox, mask_iou)
from seem_ros.training.data import EVAL_SEEDS  # noqa: E402

SCENARIOS = ('occlusion', 'exit_reentry', 'random', 'demo')
PARTS = ('gt-everything', 'gt-prompted', 'e2e-prompted', 'e2e-everything')
TARGETS = {'IDF1': 0.95, 'occlusion_switches_2s': 0, 'reacquire_frames': 3}


# --------------------------------------------------------------------------- evaluation

@dataclass
class SequenceLog:
    """Per-frame ground truth and tracker output of one scene, reduced to what the metrics need."""

    name: str
    fps: float
    gt_ids: List[np.ndarray] = field(default_factory=list)
    tracker_ids: List[np.ndarray] = field(default_factory=list)
    similarity: List[np.ndarray] = field(default_factory=list)
    matched: List[Dict[int, int]] = field(default_factory=list)      # gt id -> track id (IoU >= 0.5)
    present: Dict[int, List[bool]] = field(default_factory=dict)     # gt id -> countable per frame
    inside: Dict[int, List[bool]] = field(default_factory=dict)      # gt id -> centre inside the image
    jf: Dict[int, list] = field(default_factory=dict)                # gt id -> [(present, {track: (J, F)})]

    def add(self, gt: Dict[int, np.ndarray], ignore: Sequence[np.ndarray], inside: Dict[int, bool],
            outputs: Sequence[tuple], keep_jf: Sequence[int] = ()) -> None:
        """One frame: countable ground truth (id -> mask), ignored ground-truth masks, whether each
        evaluated object's centre is in the image, the tracker's (id, mask) outputs, and the
        objects whose J&F against every output is recorded."""
        k = len(self.gt_ids)
        outputs = [(i, m, mask_bbox(m)) for i, m in outputs if m.any()]
        ignore = [(m, mask_bbox(m)) for m in ignore]
        outputs = [o for o in outputs if not any(mask_iou(o[1], m, o[2], b) >= 0.5 for m, b in ignore)]
        gt_items = [(g, m, mask_bbox(m)) for g, m in gt.items()]
        sim = np.array([[mask_iou(m, o[1], b, o[2]) for o in outputs] for _, m, b in gt_items]).reshape(
            len(gt_items), len(outputs))
        self.gt_ids.append(np.array([g for g, _, _ in gt_items], int))
        self.tracker_ids.append(np.array([o[0] for o in outputs], int))
        self.similarity.append(sim)
        rows, cols = linear_sum_assignment(-sim) if sim.size else ([], [])
        self.matched.append({gt_items[r][0]: outputs[c][0] for r, c in zip(rows, cols) if sim[r, c] >= 0.5})
        for g, flag in inside.items():
            self.present.setdefault(g, [False] * k).append(g in gt)
            self.inside.setdefault(g, [True] * k).append(flag)
        for g in keep_jf:
            self.jf.setdefault(g, []).append((g in gt, {i: j_and_f(gt.get(g), m) for i, m, _ in outputs}))


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels: the mask minus its erosion by a 3x3 cross."""
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)), borderValue=0)).astype(bool)


def j_and_f(gt: Optional[np.ndarray], pred: np.ndarray, bound_th: float = 0.008) -> tuple:
    """DAVIS region similarity J (IoU; 1 when both are empty) and boundary F-measure F (boundary
    pixels matched within ``ceil(bound_th * image diagonal)`` px, as davis2017-evaluation) of a
    predicted mask against the ground truth (None = the object is not visible)."""
    pred_box = mask_bbox(pred)
    if gt is None or not gt.any():
        return (1.0, 1.0) if pred_box[2] == 0 else (0.0, 0.0)
    gt_box = mask_bbox(gt)
    if pred_box[2] == 0:
        return 0.0, 0.0
    j = mask_iou(gt, pred, gt_box, pred_box)
    if j == 0.0:
        return 0.0, 0.0
    r = int(np.ceil(bound_th * np.hypot(*gt.shape)))
    h, w = gt.shape
    x0, y0 = int(max(min(gt_box[0], pred_box[0]) - r - 1, 0)), int(max(min(gt_box[1], pred_box[1]) - r - 1, 0))
    x1, y1 = int(min(max(gt_box[2], pred_box[2]) + r + 1, w)), int(min(max(gt_box[3], pred_box[3]) + r + 1, h))
    gb, pb = _boundary(gt[y0:y1, x0:x1]), _boundary(pred[y0:y1, x0:x1])
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    precision = np.count_nonzero(pb & cv2.dilate(gb.astype(np.uint8), disk).astype(bool)) / max(np.count_nonzero(pb), 1)
    recall = np.count_nonzero(gb & cv2.dilate(pb.astype(np.uint8), disk).astype(bool)) / max(np.count_nonzero(gb), 1)
    return j, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def _trackeval_data(seq: SequenceLog) -> dict:
    gt_map = {g: i for i, g in enumerate(sorted({int(g) for ids in seq.gt_ids for g in ids}))}
    tr_map = {t: i for i, t in enumerate(sorted({int(t) for ids in seq.tracker_ids for t in ids}))}
    return {
        'num_timesteps': len(seq.gt_ids), 'num_gt_ids': len(gt_map), 'num_tracker_ids': len(tr_map),
        'num_gt_dets': int(sum(len(g) for g in seq.gt_ids)),
        'num_tracker_dets': int(sum(len(t) for t in seq.tracker_ids)),
        'gt_ids': [np.array([gt_map[int(g)] for g in ids], int) for ids in seq.gt_ids],
        'tracker_ids': [np.array([tr_map[int(t)] for t in ids], int) for ids in seq.tracker_ids],
        'similarity_scores': seq.similarity,
    }


@dataclass
class Event:
    """An object visible, then not countable for ``gap`` frames, then visible again."""

    object_id: int
    kind: str              # 'occlusion' (centre stayed in the image) or 'exit'
    gap: int
    gap_s: float
    outcome: str           # 'kept' (old id back), 'switched' (another id first), 'missed' (no id)
    delay: Optional[int]   # frames from reappearance to the old id ('kept' only)


def disappearance_events(seq: SequenceLog) -> List[Event]:
    events = []
    for g, present in seq.present.items():
        frames = np.flatnonzero(present)
        for a, b in zip(frames[:-1], frames[1:]):
            if b - a < 2:
                continue
            before = next((seq.matched[f][g] for f in range(a, max(a - 5, -1), -1) if g in seq.matched[f]), None)
            if before is None:
                continue            # not tracked before it disappeared: nothing to keep
            kind = 'exit' if not all(seq.inside[g][a + 1:b]) else 'occlusion'
            end = b
            while end < len(present) and present[end]:
                end += 1
            ids = [seq.matched[f].get(g) for f in range(b, end)]
            first = next((i for i in ids if i is not None), None)
            delay = next((k for k, i in enumerate(ids) if i == before), None)
            outcome = 'kept' if first == before else 'switched' if first is not None else 'missed'
            events.append(Event(g, kind, int(b - a - 1), (b - a - 1) / seq.fps, outcome,
                                delay if outcome == 'kept' else None))
    return events


def summarize(seqs: Sequence[SequenceLog]) -> dict:
    """trackeval metrics over all sequences, J&F of prompted objects and disappearance events."""
    if not seqs:
        return {}
    data = {s.name: _trackeval_data(s) for s in seqs}
    quiet = {'PRINT_CONFIG': False}
    hota, clear, ident = HOTA(quiet), CLEAR(quiet), Identity(quiet)
    h = hota.combine_sequences({n: hota.eval_sequence(d) for n, d in data.items()})
    c = clear.combine_sequences({n: clear.eval_sequence(d) for n, d in data.items()})
    i = ident.combine_sequences({n: ident.eval_sequence(d) for n, d in data.items()})
    out = {'sequences': len(seqs), 'HOTA': float(np.mean(h['HOTA'])), 'DetA': float(np.mean(h['DetA'])),
           'AssA': float(np.mean(h['AssA'])), 'MOTA': float(c['MOTA']), 'IDF1': float(i['IDF1']),
           'IDSW': int(c['IDSW']), 'FP': int(c['CLR_FP']), 'FN': int(c['CLR_FN']),
           'GT_dets': int(c['CLR_TP'] + c['CLR_FN'])}
    jf = _j_and_f(seqs)
    if jf is not None:
        out.update(jf)
    events = [e for s in seqs for e in disappearance_events(s)]
    short_occ = [e for e in events if e.kind == 'occlusion' and e.gap_s <= 2.0]
    delays = [e.delay for e in events if e.delay is not None]
    out['events'] = {
        'total': len(events),
        'kept': sum(e.outcome == 'kept' for e in events),
        'switched': sum(e.outcome == 'switched' for e in events),
        'missed': sum(e.outcome == 'missed' for e in events),
        'occlusion_le_2s': len(short_occ),
        'occlusion_le_2s_switched': sum(e.outcome == 'switched' for e in short_occ),
        'occlusion_le_2s_not_kept': sum(e.outcome != 'kept' for e in short_occ),
        'exits': sum(e.kind == 'exit' for e in events),
        'exits_kept': sum(e.kind == 'exit' and e.outcome == 'kept' for e in events),
        'delay_mean': float(np.mean(delays)) if delays else None,
        'delay_p90': float(np.percentile(delays, 90)) if delays else None,
        'delay_max': int(max(delays)) if delays else None,
        'reacquired_within_3': sum(d <= 3 for d in delays),
    }
    return out


def _j_and_f(seqs: Sequence[SequenceLog]) -> Optional[dict]:
    """Mean J and F over the prompted objects, each over the frames after its prompt frame (the
    prompt frame is given, as in DAVIS), against the one track with the best mean J."""
    per_object = []
    for seq in seqs:
        for rows in seq.jf.values():
            rows = rows[1:]
            if not rows:
                continue
            absent = np.array([0.0 if present else 1.0 for present, _ in rows])
            scores = [np.array([row.get(t, (a, a)) for (_, row), a in zip(rows, absent)])
                      for t in sorted({t for _, row in rows for t in row})] or [np.stack([absent, absent], 1)]
            best = max(scores, key=lambda s: s[:, 0].mean())
            per_object.append(best.mean(axis=0))
    if not per_object:
        return None
    j, f = np.mean(per_object, axis=0)
    return {'J': float(j), 'F': float(f), 'J&F': float((j + f) / 2), 'prompted_objects': len(per_object)}


# --------------------------------------------------------------------------- ground truth with noise

@dataclass(frozen=True)
class Noise:
    """Injected segmentation errors: per-instance miss probability, morphological radius range
    (negative erodes), jitter std (px), class-flip probability, expected false positives per frame."""

    miss: float = 0.05
    morph: int = 2
    jitter: float = 1.0
    flip: float = 0.05
    false_positives: float = 0.1


def noisy_mask(mask: np.ndarray, rng: np.random.Generator, noise: Noise) -> np.ndarray:
    """``mask`` eroded or dilated by up to ``noise.morph`` px and shifted by Gaussian jitter."""
    x0, y0, x1, y1 = (int(v) for v in mask_bbox(mask))
    pad = noise.morph + 4 * int(np.ceil(noise.jitter)) + 2
    h, w = mask.shape
    x0, y0, x1, y1 = max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)
    crop = mask[y0:y1, x0:x1].astype(np.uint8)
    r = int(rng.integers(-noise.morph, noise.morph + 1))
    if r:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(r) + 1, 2 * abs(r) + 1))
        crop = cv2.dilate(crop, kernel) if r > 0 else cv2.erode(crop, kernel)
    dx, dy = np.rint(rng.normal(0.0, noise.jitter, 2)).astype(int)
    crop = cv2.warpAffine(crop, np.float32([[1, 0, dx], [0, 1, dy]]), (crop.shape[1], crop.shape[0]))
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = crop.astype(bool)
    return out


def false_positive(shape, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    mask = np.zeros(shape, np.uint8)
    axes = (int(rng.uniform(6, 30)), int(rng.uniform(6, 30)))
    cv2.ellipse(mask, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


def shape_embedding(shape: str, dim: int = 32) -> np.ndarray:
    """A fixed unit vector per shape name (the simulated segmenter's class-level embedding)."""
    v = np.random.default_rng(list(shape.encode())).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _patch_key(patch) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(patch.image).tobytes() + np.packbits(patch.mask).tobytes()).digest()


class SimulatedSegmenter:
    """Answers ``predict`` from the ground truth of the current frame (see the module docstring).

    A referring patch is recognised as the object it was cut from (:meth:`register` for patches
    from elsewhere, :meth:`learn` for the tracker's references when they are cut) with
    probability ``1 - confusion`` when that object is visible; otherwise the answer is the other
    visible object of the most similar colour, with a confidence that grows with that similarity.
    ``frame`` must be set to the :class:`~seem_ros.scenes.RenderedFrame` being tracked.
    """

    def __init__(self, scene, noise: Noise, rng: np.random.Generator, min_px: int, confusion: float = 0.05):
        self.scene, self.noise, self.rng, self.min_px, self.confusion = scene, noise, rng, min_px, confusion
        self.frame = None
        self._identity: Dict[bytes, int] = {}   # patch -> object id

    def register(self, patch, object_id: int) -> None:
        self._identity[_patch_key(patch)] = object_id

    def set_frame(self, frame) -> None:
        self.frame = frame

    def set_image(self, rgb) -> None:
        pass

    def predict(self, prompts, prev_mask=None):
        f = self.frame
        h, w = f.ids.shape
        visible = [o.id for o in f.objects if o.visible_px >= self.min_px]
        masks = np.zeros((len(prompts), h, w), bool)
        confidence = np.zeros(len(prompts), np.float32)
        embeddings = np.zeros((len(prompts), 32), np.float32)
        for k, p in enumerate(prompts):
            target, conf = self._target(p, visible)
            if target is None or self.rng.random() < self.noise.miss:
                continue
            masks[k] = noisy_mask(f.mask(target), self.rng, self.noise)
            confidence[k] = conf
            embeddings[k] = shape_embedding(self.scene.object(target).shape)
        return SimpleNamespace(masks=masks, confidence=confidence, embeddings=embeddings, scores=confidence,
                               prev_mask=np.zeros((len(prompts), (h + 3) // 4, (w + 3) // 4), np.float32))

    def _target(self, prompt, visible):
        f = self.frame
        if prompt.has_visual:
            positive, _ = rasterize(prompt, f.ids.shape, f.ids.shape)
            counts = np.bincount(f.ids[positive], minlength=len(f.objects) + 1)
            counts[[o.id for o in f.objects if o.id not in visible]] = 0
            counts[0] = 0
            return (int(np.argmax(counts)), float(self.rng.uniform(0.8, 0.95))) if counts.any() else (None, 0.0)
        if prompt.reference is not None:
            ref = prompt.reference
            wanted = self._identity.get(_patch_key(ref))
            if wanted in visible and self.rng.random() >= self.confusion:
                return wanted, float(self.rng.uniform(0.8, 0.95))
            colour = colour_descriptor(ref.image, ref.mask)
            others = [(float(colour @ colour_descriptor(f.rgb, f.mask(i))), i) for i in visible if i != wanted]
            if not others:
                return None, 0.0
            sim, target = max(others)
            return target, 0.3 + 0.6 * sim
        named = [i for i in visible if self.scene.object(i).sentence == prompt.text]
        if named:
            return named[0], float(self.rng.uniform(0.8, 0.95))
        return (int(self.rng.choice(visible)), 0.4) if visible else (None, 0.0)

    def learn(self, patches) -> None:
        """Recognise referring patches just cut from the current frame (the tracker's references)."""
        f = self.frame
        for patch in patches:
            key = _patch_key(patch)
            if key in self._identity:
                continue
            match = cv2.matchTemplate(f.rgb, np.ascontiguousarray(patch.image), cv2.TM_SQDIFF)
            best, _, (x, y), _ = cv2.minMaxLoc(match)
            if best < 0.5 * patch.image.size:     # an exact crop (up to the FFT's rounding)
                ids = f.ids[y:y + patch.mask.shape[0], x:x + patch.mask.shape[1]][patch.mask]
                self._identity[key] = int(np.bincount(ids).argmax())


def _gt(frame, objects: Sequence[int], min_px: int):
    gt = {o.id: frame.mask(o.id) for o in frame.objects if o.id in objects and o.visible_px >= min_px}
    ignore = [frame.mask(o.id) for o in frame.objects if o.id in objects and 0 < o.visible_px < min_px]
    h, w = frame.ids.shape
    inside = {o.id: bool(0 <= o.center_px[0] < w and 0 <= o.center_px[1] < h) for o in frame.objects
              if o.id in objects}
    return gt, ignore, inside


def _stamp(scene, k: int) -> int:
    return int(round(k / scene.fps * 1e9)) + 1


def run_gt_everything(scene, noise: Noise, rng, min_px: int, config: EverythingConfig) -> SequenceLog:
    log = SequenceLog(f'{scene.scenario}-{scene.seed}', scene.fps)
    tracker = EverythingTracker(config)
    everyone = [o.id for o in scene.objects]
    for k in range(scene.n_frames):
        f = render_frame(scene, k)
        segs = []
        for o in f.objects:
            if o.visible_px >= min_px and rng.random() >= noise.miss:
                label = scene.object(o.id).shape if rng.random() >= noise.flip else str(rng.choice(SHAPES))
                segs.append(SimpleNamespace(mask=noisy_mask(f.mask(o.id), rng, noise), score=float(rng.uniform(0.6, 1)),
                                            label=label, embedding=None))
        for _ in range(rng.poisson(noise.false_positives)):
            segs.append(SimpleNamespace(mask=false_positive(f.ids.shape, rng), score=float(rng.uniform(0.5, 0.9)),
                                        label=str(rng.choice(SHAPES)), embedding=None))
        out = tracker.update(f.rgb, _stamp(scene, k), segs)
        gt, ignore, inside = _gt(f, everyone, min_px)
        log.add(gt, ignore, inside, [(t.id, t.mask) for t in out.tracks])
    return log


def run_prompted(scene, predictor, config: PromptedConfig, min_px: int, *, set_frame=None,
                 vocabulary: Sequence[str] = (), everything: Optional[EverythingConfig] = None):
    """Scripted prompts through :class:`PromptedTracker` (and everything mode when ``everything``).

    ``set_frame(frame)`` feeds the frame to the predictor (default ``predictor.set_image(rgb)``).
    Returns the prompted log and the everything log (or None).
    """
    ids = IdPool()
    tracker = PromptedTracker(predictor, config, ids)
    ev_tracker = EverythingTracker(everything, ids) if everything is not None else None
    prompts = scripted_prompts(scene)
    targets: Dict[int, int] = {}      # gt object -> track id
    log = SequenceLog(f'{scene.scenario}-{scene.seed}', scene.fps)
    ev_log = SequenceLog(log.name, scene.fps) if ev_tracker else None
    everyone = [o.id for o in scene.objects]
    for k in range(scene.n_frames):
        f = render_frame(scene, k)
        stamp = _stamp(scene, k)
        for p in prompts:
            if p.frame == k:
                if p.kind == 'reference' and isinstance(predictor, SimulatedSegmenter):
                    predictor.register(p.prompt.reference, p.object_id)
                targets[p.object_id] = tracker.add(p.prompt, label=p.kind, stamp_ns=stamp)
        (set_frame or (lambda fr: predictor.set_image(fr.rgb)))(f)
        out = tracker.update(f.rgb, stamp)
        if isinstance(predictor, SimulatedSegmenter):
            predictor.learn([t.reference for t in tracker.tracks() if t.reference is not None])
        gt, ignore, inside = _gt(f, list(targets), min_px)
        log.add(gt, ignore, inside, [(t.id, t.mask) for t in out.tracks], keep_jf=list(targets))
        if ev_tracker is not None:
            prompted = [t.mask for t in out.tracks if t.mask.any()]
            segs = [s for s in predictor.segment_everything(list(vocabulary)).segments
                    if not any(mask_iou(s.mask, m) >= 0.5 for m in prompted)]
            ev_out = ev_tracker.update(f.rgb, stamp, segs)
            gt, ignore, inside = _gt(f, everyone, min_px)
            ev_log.add(gt, ignore, inside, [(t.id, t.mask) for t in ev_out.tracks])
    return log, ev_log


# --------------------------------------------------------------------------- report

def _fmt(value, spec: str = '{:.3f}') -> str:
    return '-' if value is None else spec.format(value)


def table(results: Dict[str, dict]) -> str:
    """The results as a Markdown table (one row per part)."""
    head = ['part', 'scenes', 'HOTA', 'MOTA', 'IDF1', 'ID sw.', 'J&F', 'occl. <= 2 s: id kept (switched)',
            'exits: id kept', 're-acq. delay mean / p90 / max', 're-acq. <= 3 frames']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for name, r in results.items():
        if not r:
            continue
        e = r['events']
        occ_kept = e['occlusion_le_2s'] - e['occlusion_le_2s_not_kept']
        row = [name, str(r['sequences']), _fmt(r['HOTA']), _fmt(r['MOTA']), _fmt(r['IDF1']), str(r['IDSW']),
               _fmt(r.get('J&F')), f"{occ_kept}/{e['occlusion_le_2s']} ({e['occlusion_le_2s_switched']})",
               f"{e['exits_kept']}/{e['exits']}",
               f"{_fmt(e['delay_mean'], '{:.1f}')} / {_fmt(e['delay_p90'], '{:.0f}')} / {_fmt(e['delay_max'], '{}')}",
               f"{e['reacquired_within_3']}/{e['kept']}"]
        lines.append('| ' + ' | '.join(row) + ' |')
    return '\n'.join(lines)


def _seed_range(text: str) -> range:
    lo, _, hi = text.partition(':')
    seeds = range(int(lo), int(hi)) if hi else range(int(lo), int(lo) + 1)
    if seeds.start < EVAL_SEEDS.start or seeds.stop > EVAL_SEEDS.stop:
        raise argparse.ArgumentTypeError(
            f'seeds must lie in the held-out range {EVAL_SEEDS.start}..{EVAL_SEEDS.stop - 1}')
    return seeds


def _override(text: str) -> tuple:
    key, sep, value = text.partition('=')
    if not sep:
        raise argparse.ArgumentTypeError(f'{text!r}: expected KEY=VALUE')
    return key, json.loads(value)


def e2e_predictor(args, backend: str):
    """The shipped model on ``backend`` (graph backends: the cached export of the camera size)."""
    from seem_ros.predictor import SeemPredictor, cached_export_for
    onnx_dir = None
    if not backend.startswith('torch'):
        onnx_dir = cached_export_for(args.checkpoint, args.height, args.width, variant=args.variant,
                                     short_side=args.short_side, log=lambda line: print(line, file=sys.stderr))
    return SeemPredictor.from_checkpoint(args.checkpoint, variant=args.variant, short_side=args.short_side,
                                         backend=backend, onnx_dir=onnx_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seeds', type=_seed_range, default=_seed_range('0:25'),
                        help='part 1 seeds per scenario, LO:HI (default 0:25)')
    parser.add_argument('--e2e-seeds', type=_seed_range, default=_seed_range('0:3'),
                        help='part 2 seeds per scenario, LO:HI (default 0:3)')
    parser.add_argument('--scenarios', default=','.join(SCENARIOS), help='comma list (default all)')
    parser.add_argument('--checkpoint', type=Path, default=Path('models/seem_tiny.pt'))
    parser.add_argument('--variant', default='tiny')
    parser.add_argument('--e2e-backends', default='torch,onnxruntime',
                        help='comma list of part 2 backends (default torch,onnxruntime)')
    parser.add_argument('--short-side', type=int, default=120, help='model input short side (part 2; default 120, '
                        'as training)')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--min-visible-px', type=int, default=100,
                        help='ground-truth instances with fewer visible pixels are ignored')
    parser.add_argument('--parts', default=','.join(PARTS),
                        help=f'comma list of parts to run (default all: {",".join(PARTS)})')
    parser.add_argument('--set', type=_override, action='append', default=[], metavar='KEY=VALUE',
                        help='override a tracker setting (JSON value) of PromptedConfig and/or EverythingConfig')
    parser.add_argument('--json', type=Path, default=Path('bench/results/tracking.json'))
    args = parser.parse_args(argv)
    prompted_keys = {f.name for f in dataclasses.fields(PromptedConfig)}
    everything_keys = {f.name for f in dataclasses.fields(EverythingConfig)}
    for key, _ in args.set:
        if key not in prompted_keys | everything_keys:
            parser.error(f'--set {key}: not a tracker setting')
    prompted = PromptedConfig(**{k: v for k, v in args.set if k in prompted_keys})
    everything = EverythingConfig(**{k: v for k, v in args.set if k in everything_keys})
    scenarios = [s for s in args.scenarios.split(',') if s]
    parts = set(args.parts.split(','))
    noise = Noise()
    results: Dict[str, dict] = {}
    timings: Dict[str, float] = {}
    scenes = lambda seeds: [build_scene(s, seed, width=args.width, height=args.height)  # noqa: E731
                            for s in scenarios for seed in seeds]

    if 'gt-everything' in parts:
        t0 = time.perf_counter()
        logs = []
        with tqdm(total=len(scenarios) * len(args.seeds), desc='gt-everything', unit='scenes', disable=None) as bar:
            for scene in scenes(args.seeds):
                rng = np.random.default_rng([scene.seed, SCENARIOS.index(scene.scenario), 1])
                logs.append(run_gt_everything(scene, noise, rng, args.min_visible_px, everything))
                bar.update()
        results['gt-everything'] = summarize(logs)
        timings['gt-everything'] = time.perf_counter() - t0

    if 'gt-prompted' in parts:
        t0 = time.perf_counter()
        logs = []
        with tqdm(total=len(scenarios) * len(args.seeds), desc='gt-prompted', unit='scenes', disable=None) as bar:
            for scene in scenes(args.seeds):
                rng = np.random.default_rng([scene.seed, SCENARIOS.index(scene.scenario), 2])
                sim = SimulatedSegmenter(scene, noise, rng, args.min_visible_px)
                logs.append(run_prompted(scene, sim, prompted, args.min_visible_px, set_frame=sim.set_frame)[0])
                bar.update()
        results['gt-prompted'] = summarize(logs)
        timings['gt-prompted'] = time.perf_counter() - t0

    e2e = [p for p in ('e2e-prompted', 'e2e-everything') if p in parts]
    if e2e and not args.checkpoint.is_file():
        print(f'part 2 (end to end) skipped: checkpoint {args.checkpoint} not found '
              f'(pass --checkpoint, or train and ship models/seem_tiny.pt first)', file=sys.stderr)
    elif e2e:
        for backend in [b.strip() for b in args.e2e_backends.split(',') if b.strip()]:
            suffix = '' if backend.startswith('torch') else f'-{backend.split("-")[0]}'
            predictor = e2e_predictor(args, backend)
            t0 = time.perf_counter()
            logs, ev_logs = [], []
            with tqdm(total=len(scenarios) * len(args.e2e_seeds), desc=f'e2e {backend}', unit='scenes',
                      disable=None) as bar:
                for scene in scenes(args.e2e_seeds):
                    log, ev_log = run_prompted(scene, predictor, prompted, args.min_visible_px, vocabulary=SHAPES,
                                               everything=everything if 'e2e-everything' in parts else None)
                    logs.append(log)
                    ev_logs.append(ev_log)
                    bar.update()
            if 'e2e-prompted' in parts:
                results[f'e2e-prompted{suffix}'] = summarize(logs)
            if 'e2e-everything' in parts:
                results[f'e2e-everything{suffix}'] = summarize(ev_logs)
            timings[f'e2e{suffix}'] = time.perf_counter() - t0

    print(table(results))
    print(f"targets: IDF1 >= {TARGETS['IDF1']}; {TARGETS['occlusion_switches_2s']} ID switches for occlusions "
          f"up to 2 s; re-acquisition within {TARGETS['reacquire_frames']} frames")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        'args': {k: (str(v) if isinstance(v, (Path, range)) else v) for k, v in vars(args).items()},
        'noise': dataclasses.asdict(noise), 'prompted_config': dataclasses.asdict(prompted),
        'everything_config': dataclasses.asdict(everything),
        'targets': TARGETS, 'results': results, 'seconds': timings}, indent=2))
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

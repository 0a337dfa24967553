#!/usr/bin/env python3
"""Segmentation quality of a SEEM checkpoint on held-out procedural scenes (issue #7).

The scenes use seeds that training never sees (:data:`seem_ros.training.data.EVAL_SEEDS`; the
training scenes start at ``TRAIN_SEED_BASE``). Scene ``i`` is seed ``--first-seed + i`` of the
scenario ``SCENARIOS[seed % 4]``, rendered at ``--width`` x ``--height``; one frame per scene, at
a seeded random index. Every object with at least ``--min-pixels`` visible pixels is a target.
Everything runs through :class:`~seem_ros.predictor.SeemPredictor`, the API the node uses, one
object per call:

* ``click@1``: one positive click at the target's point farthest from its boundary; IoU;
* ``click@3``: two more corrective clicks (:func:`~seem_ros.training.data.corrective_click`:
  the larger error region's innermost point, positive on a miss, negative on a spurious part),
  each round fed the previous ``prev_mask``; IoU after the third click;
* ``box``: the target's visible box; IoU;
* ``text``: the target's referring sentence ("the small red ring"); accuracy = share of
  targets segmented with IoU > 0.5;
* ``referring patch``: :func:`~seem_ros.scenes.reference_patch`, the same look cut from
  another scene; IoU;
* ``everything PQ``: ``segment_everything`` over the shape names; panoptic quality (Kirillov et
  al.) with the shapes as classes, averaged over the classes present; predicted segments that lie
  mostly (> 50 %) on objects below ``--min-pixels`` are ignored, like void regions.

mIoU values are means over targets. Prints a table and writes JSON.

Usage::

    python bench/quality.py [--checkpoint models/seem_tiny.pt] [--scenes 100]
                            [--json bench/results/quality.json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seem_ros.predictor import SeemPredictor  # noqa: E402
from tqdm import tqdm  # noqa: E402
from seem_ros.prompts import ObjectPrompt  # noqa: E402
from seem_ros.scenes import SHAPES, build_scene, click_point, reference_patch, render_frame  # noqa: E402
from seem_ros.training.data import EVAL_SEEDS, add_click, corrective_click  # noqa: E402

SCENARIOS = ('random', 'demo', 'occlusion', 'exit_reentry')
IOU_METRICS = ('click@1', 'click@3', 'box', 'referring patch')


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def eval_frame(seed: int, width: int, height: int):
    """The held-out scene of ``seed`` and its evaluated frame."""
    if seed not in EVAL_SEEDS:
        raise ValueError(f'seed {seed} is not a held-out evaluation seed ({EVAL_SEEDS})')
    scene = build_scene(SCENARIOS[seed % len(SCENARIOS)], seed, width=width, height=height)
    index = int(np.random.default_rng([seed, 7]).integers(scene.n_frames))
    return scene, render_frame(scene, index)


def panoptic_quality(segments, targets: Dict[int, tuple], void: np.ndarray) -> Dict[str, list]:
    """Per shape class: ``[sum of matched IoUs, TP, FP, FN]`` of one frame.

    ``targets`` maps object id -> (shape, mask); a prediction matches the unmatched target of its
    class with the highest IoU above 0.5 (such a match is unique, as in PQ).
    """
    stats = {shape: [0.0, 0, 0, 0] for shape in SHAPES}
    matched = set()
    for segment in segments:
        best, best_iou = None, 0.5
        for oid, (shape, mask) in targets.items():
            if oid not in matched and segment.label == shape:
                value = iou(segment.mask, mask)
                if value > best_iou:
                    best, best_iou = oid, value
        if best is not None:
            matched.add(best)
            stats[segment.label][0] += best_iou
            stats[segment.label][1] += 1
        elif np.count_nonzero(segment.mask & void) <= 0.5 * np.count_nonzero(segment.mask):
            stats[segment.label][2] += 1
    for oid, (shape, _) in targets.items():
        if oid not in matched:
            stats[shape][3] += 1
    return stats


def evaluate(predictor: SeemPredictor, seeds, *, width: int = 640, height: int = 480, min_pixels: int = 200,
             progress: bool = False) -> Dict[str, object]:
    """Run every metric on the frames of ``seeds``; returns per-metric values and counts."""
    ious: Dict[str, List[float]] = {name: [] for name in IOU_METRICS}
    text_hits: List[bool] = []
    pq_stats = {shape: [0.0, 0, 0, 0] for shape in SHAPES}
    with tqdm(total=len(seeds), desc='quality', unit='frames', disable=False if progress else None) as bar:
        for seed in seeds:
            scene, frame = eval_frame(seed, width, height)
            predictor.set_image(frame.rgb)
            targets = [o.id for o in frame.objects if o.visible_px >= min_pixels]
            for oid in targets:
                gt = frame.mask(oid)
                prompt = ObjectPrompt(points=click_point(gt)[None], point_labels=np.ones(1, bool))
                result = predictor.predict([prompt])
                ious['click@1'].append(iou(result.masks[0], gt))
                for _ in range(2):
                    prompt = add_click(prompt, *corrective_click(result.masks[0], gt))
                    result = predictor.predict([prompt], prev_mask=result.prev_mask)
                ious['click@3'].append(iou(result.masks[0], gt))
                box = frame.objects[oid - 1].bbox.astype(np.float32)
                ious['box'].append(iou(predictor.predict([ObjectPrompt(boxes=box[None])]).masks[0], gt))
                text = predictor.predict([ObjectPrompt(text=scene.object(oid).sentence)]).masks[0]
                text_hits.append(iou(text, gt) > 0.5)
                patch, _ = reference_patch(scene, oid)
                ious['referring patch'].append(iou(predictor.predict([ObjectPrompt(reference=patch)]).masks[0], gt))
            void = np.isin(frame.ids, [o.id for o in frame.objects if 0 < o.visible_px < min_pixels])
            segments = predictor.segment_everything(list(SHAPES)).segments
            classes = {oid: (scene.object(oid).shape, frame.mask(oid)) for oid in targets}
            for shape, values in panoptic_quality(segments, classes, void).items():
                pq_stats[shape] = [a + b for a, b in zip(pq_stats[shape], values)]
            bar.update()
    per_class = {}
    for shape, (iou_sum, tp, fp, fn) in pq_stats.items():
        if tp + fp + fn:
            per_class[shape] = {'pq': iou_sum / (tp + 0.5 * fp + 0.5 * fn), 'sq': iou_sum / tp if tp else 0.0,
                                'rq': tp / (tp + 0.5 * fp + 0.5 * fn), 'tp': tp, 'fp': fp, 'fn': fn}
    metrics = {name: {'value': float(np.mean(values)), 'n': len(values)} for name, values in ious.items()}
    metrics['text accuracy'] = {'value': float(np.mean(text_hits)), 'n': len(text_hits)}
    for key in ('pq', 'sq', 'rq'):
        metrics[f'everything {key.upper()}'] = {'value': float(np.mean([c[key] for c in per_class.values()])),
                                                'n': len(per_class)}
    return {'metrics': metrics, 'pq_per_class': per_class}


def format_table(metrics: Dict[str, dict]) -> str:
    rows = [('metric', 'value', 'n')] + [(name, f"{m['value']:.3f}", str(m['n'])) for name, m in metrics.items()]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [' | '.join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, '-|-'.join('-' * w for w in widths))
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', type=Path, default=ROOT / 'models' / 'seem_tiny.pt')
    parser.add_argument('--variant', default='tiny')
    parser.add_argument('--short-side', type=int, default=120, help='model input short side (default 120)')
    parser.add_argument('--scenes', type=int, default=100, help='held-out scenes, one frame each (default 100)')
    parser.add_argument('--first-seed', type=int, default=0, help='seed of the first scene (default 0)')
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--min-pixels', type=int, default=200,
                        help='visible pixels (at --width x --height) for an object to be a target (default 200)')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    parser.add_argument('--json', type=Path, default=ROOT / 'bench' / 'results' / 'quality.json')
    parser.add_argument('--progress', action='store_true', help='show progress even when stderr is not a terminal')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    predictor = SeemPredictor.from_checkpoint(args.checkpoint, variant=args.variant, short_side=args.short_side)
    seeds = list(range(args.first_seed, args.first_seed + args.scenes))
    start = time.perf_counter()
    result = evaluate(predictor, seeds, width=args.width, height=args.height, min_pixels=args.min_pixels,
                      progress=args.progress)
    print(format_table(result['metrics']))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        'checkpoint': str(args.checkpoint), 'sha256': hashlib.sha256(args.checkpoint.read_bytes()).hexdigest(),
        'variant': args.variant, 'short_side': args.short_side, 'size': [args.width, args.height],
        'seeds': [seeds[0], seeds[-1]], 'min_pixels': args.min_pixels,
        'seconds': round(time.perf_counter() - start, 1), **result}, indent=2) + '\n')
    print(f'wrote {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

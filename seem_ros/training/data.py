"""Training examples sampled on the fly from procedural scenes, and the click simulator.

Every example is a pure function of a NumPy generator, so a training run is reproducible from its
seed. Scene seeds split three ways (:data:`TRAIN_SEED_BASE`):

* ``0 .. 999``: held-out evaluation scenes (``bench/quality.py``), never used for training; their
  referring patches come from the ``random`` scenes ``REFERENCE_SEED_OFFSET + 0 .. 999``;
* ``>= TRAIN_SEED_BASE``: training scenes (and their referring patches, at ``+ REFERENCE_SEED_OFFSET``).

An example is one rendered frame resized to the model input (short side ``short_side``, as
:class:`~seem_ros.predictor.SeemPredictor` resizes), its visible objects with masks at that size,
visual prompts drawn from the ground truth (a click, a box or a scribble per prompted object,
in input pixel coordinates) and, sometimes, a referring patch of one object cut from another scene.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import cv2
import numpy as np

from seem_ros.model.preprocess import resize_short_side
from seem_ros.prompts import ObjectPrompt, ReferencePatch
from seem_ros.scenes import PALETTE, SHAPES, build_scene, click_point, reference_patch, render_frame

TRAIN_SEED_BASE = 2_000_000
"""Training scenes use seeds ``TRAIN_SEED_BASE + [0, 1e9)``; evaluation uses ``0 .. 999``."""

EVAL_SEEDS = range(0, 1000)
"""Seeds of the held-out evaluation scenes."""

SCENARIO_WEIGHTS = {'random': 0.7, 'demo': 0.1, 'occlusion': 0.1, 'exit_reentry': 0.1}
RENDER_WIDTHS = {160: 0.25, 320: 0.5, 640: 0.25}
"""Scenes are rendered at one of these widths (4:3) and resized to the model input, so the model
sees both native low-resolution frames and downscaled camera frames."""

VISUAL_PROMPT_KINDS = {'click': 0.45, 'box': 0.3, 'scribble': 0.25}
MIN_PIXELS = 12
"""An object needs this many visible pixels at the model input to be a target."""

SHAPE_VOCABULARY: Tuple[str, ...] = SHAPES
COLOUR_SHAPE_VOCABULARY: Tuple[str, ...] = tuple(f'{c} {s}' for c in PALETTE for s in SHAPES)


@dataclass
class TargetObject:
    """A visible object of an example: ``mask`` (h, w) bool at the model input."""

    id: int
    shape: str
    colour: str
    sentence: str
    mask: np.ndarray


@dataclass
class Example:
    """One training example at the model input size.

    ``image`` (h, w, 3) uint8; ``objects`` the visible targets; ``prompts`` ``(object index,
    kind, ObjectPrompt)`` visual prompts in input pixel coordinates; ``reference`` an optional
    ``(object index, ReferencePatch)`` patch of that object's look from another scene.
    """

    image: np.ndarray
    objects: List[TargetObject]
    prompts: List[Tuple[int, str, ObjectPrompt]]
    reference: Optional[Tuple[int, ReferencePatch]]


def weighted_choice(rng: np.random.Generator, weights: dict):
    """A key of ``weights`` (key -> relative probability) drawn with ``rng``."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _interior_points(mask: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 2) float (x, y) pixel centres drawn from the inner part of ``mask`` (distance to
    the boundary at least 30 % of the maximum)."""
    dist = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    rows, cols = np.nonzero(dist >= 0.3 * dist.max())
    pick = rng.integers(0, len(rows), count)
    return np.stack([cols[pick] + 0.5, rows[pick] + 0.5], 1).astype(np.float32)


def sample_prompt(kind: str, mask: np.ndarray, rng: np.random.Generator) -> ObjectPrompt:
    """A visual prompt of ``kind`` ('click', 'box' or 'scribble') for the object ``mask`` (h, w).

    click: half the time the point farthest from the boundary (:func:`click_point`, what the
    scripted prompts and the benchmark use), otherwise a random inner point; box: the visible
    box, its sides jittered by up to 10 % of its size half the time; scribble: a polyline through
    2 to 4 inner points.
    """
    if kind == 'click':
        point = click_point(mask) if rng.random() < 0.5 else _interior_points(mask, rng, 1)[0]
        return ObjectPrompt(points=np.asarray(point, np.float32)[None], point_labels=np.ones(1, bool))
    if kind == 'box':
        rows, cols = np.nonzero(mask)
        box = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], np.float64)
        if rng.random() < 0.5:
            size = np.tile(box[2:] - box[:2], 2)
            box = box + rng.uniform(-0.1, 0.1, 4) * size
        h, w = mask.shape
        box = np.clip(box, 0, [w, h, w, h])
        box[2:] = np.maximum(box[2:], box[:2] + 1)
        return ObjectPrompt(boxes=box.astype(np.float32)[None])
    if kind == 'scribble':
        return ObjectPrompt(scribbles=[_interior_points(mask, rng, int(rng.integers(2, 5)))])
    raise ValueError(f'unknown prompt kind {kind!r}; expected one of {tuple(VISUAL_PROMPT_KINDS)}')


def corrective_click(pred: np.ndarray, gt: np.ndarray) -> Tuple[np.ndarray, bool]:
    """The next simulated click (official interactive evaluation).

    The larger error region (false negatives ``gt & ~pred`` or false positives ``pred & ~gt``)
    gets a click at its point farthest from the region boundary: positive for a missed part,
    negative for a spurious one. Returns ``((x, y) float32, positive)``; with no error at all, a
    positive click at :func:`click_point` of ``gt``.
    """
    missed, spurious = gt & ~pred, pred & ~gt
    if not missed.any() and not spurious.any():
        return click_point(gt), True
    positive = int(missed.sum()) >= int(spurious.sum())
    return click_point(missed if positive else spurious), positive


def add_click(prompt: ObjectPrompt, point: np.ndarray, positive: bool) -> ObjectPrompt:
    """``prompt`` with one more (positive or negative) click."""
    return ObjectPrompt(text=prompt.text, points=np.concatenate([prompt.points.reshape(-1, 2), point[None]]),
                        point_labels=np.concatenate([prompt.point_labels.reshape(-1), [positive]]),
                        boxes=prompt.boxes, scribbles=prompt.scribbles, polygons=prompt.polygons,
                        mask=prompt.mask, negative_mask=prompt.negative_mask, reference=prompt.reference,
                        name=prompt.name)


def sample_example(rng: np.random.Generator, *, short_side: int = 120, max_prompts: int = 4,
                   reference_prob: float = 0.35) -> Example:
    """Render a random frame of a random training scene and draw its prompts.

    Frames without any object of :data:`MIN_PIXELS` visible pixels are skipped (another frame is
    drawn). Up to ``max_prompts`` objects get a visual prompt; with probability
    ``reference_prob`` one object also gets a referring patch from another scene.
    """
    while True:
        scenario = weighted_choice(rng, SCENARIO_WEIGHTS)
        seed = TRAIN_SEED_BASE + int(rng.integers(0, 10 ** 9))
        width = weighted_choice(rng, RENDER_WIDTHS)
        scene = build_scene(scenario, seed, width=width, height=width * 3 // 4)
        frame = render_frame(scene, int(rng.integers(scene.n_frames)))
        image = resize_short_side(frame.rgb, short_side)
        ids = cv2.resize(frame.ids, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        objects = [TargetObject(o.id, o.shape, o.colour, o.sentence, ids == o.id) for o in scene.objects]
        objects = [o for o in objects if o.mask.sum() >= MIN_PIXELS]
        if objects:
            break
    count = int(rng.integers(1, min(max_prompts, len(objects)) + 1))
    chosen = rng.permutation(len(objects))[:count]
    prompts = []
    for index in chosen:
        kind = weighted_choice(rng, VISUAL_PROMPT_KINDS)
        prompts.append((int(index), kind, sample_prompt(kind, objects[index].mask, rng)))
    reference = None
    if rng.random() < reference_prob:
        index = int(rng.integers(len(objects)))
        patch, _ = reference_patch(scene, objects[index].id)
        reference = (index, patch)
    return Example(image, objects, prompts, reference)

"""Trackers on hand-made frames: ids follow objects through swaps, occlusions, exits and re-prompts.

A tiny world of flat coloured squares stands in for the camera. :class:`WorldPredictor` answers
the prompted tracker's prompts from the world's id map, like a perfect SEEM: a mask or click
prompt gets the object under it, a referring patch or text the object of that colour/name. The
last test drives :class:`PromptedTracker` with the real :class:`SeemPredictor` (random weights).
"""
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import torch
import pytest

from seem_ros.prompts import ObjectPrompt, ReferencePatch
from seem_ros.rasterize import rasterize
from seem_ros.tracking import (AppearanceBank, EverythingConfig, EverythingTracker, IdPool, PromptedConfig,
                               PromptedTracker, TrackState, assign, mask_bbox)
from seem_ros.tracking.association import mask_shift
from seem_ros.tracking.state import MAX_ID

H, W = 60, 80
FPS = 10
COLOURS = {1: (220, 30, 30), 2: (30, 60, 220), 3: (30, 200, 40), 4: (225, 40, 35)}   # 4 looks like 1
NAMES = {1: 'red', 2: 'blue', 3: 'green', 4: 'red too'}


def stamp(k: int) -> int:
    return k * 1_000_000_000 // FPS + 1


def world(objects):
    """(rgb, ids) of a frame with ``{object id: (x, y)}`` 10x10 squares (top-left corner), drawn in order."""
    rgb = np.full((H, W, 3), 128, np.uint8)
    ids = np.zeros((H, W), np.uint16)
    for oid, (x, y) in objects.items():
        rgb[max(y, 0):y + 10, max(x, 0):x + 10] = COLOURS[oid]
        ids[max(y, 0):y + 10, max(x, 0):x + 10] = oid
    return rgb, ids


def segments(ids, order=None, label='square'):
    """Everything-mode segments of the world, in ``order`` (default: by id)."""
    present = [int(i) for i in np.unique(ids) if i]
    return [SimpleNamespace(mask=ids == i, score=0.9, label=label, embedding=None) for i in (order or present)
            if i in present]


class WorldPredictor:
    """A perfect segmenter of the current world frame (``ids``), with a spy on every call.

    Mask, click and box prompts get the object under them (most pixels), a referring patch the
    visible object of the patch's colour, text the object of that name. ``impostor`` maps a
    hidden object to a visible one that its referring patch finds instead, shifted by 3 px (a
    look-alike, segmented a little off). Embeddings are the object's colour.
    """

    def __init__(self):
        self.ids = None
        self.calls = []
        self.impostor = {}

    def set_image(self, rgb):
        self.rgb = rgb

    def _target(self, p):
        ids = self.ids
        if p.has_visual:
            pos, _ = rasterize(p, ids.shape, ids.shape)
            counts = np.bincount(ids[pos], minlength=5)
            counts[0] = 0
            return int(counts.argmax()) if counts.any() else 0
        if p.reference is not None:
            colour = tuple(int(c) for c in np.median(p.reference.image[p.reference.mask], axis=0))
            oid = next((i for i, c in COLOURS.items() if c == colour), 0)
            return oid if (ids == oid).any() else -self.impostor.get(oid, 0)
        return next((i for i, n in NAMES.items() if n == p.text and (ids == i).any()), 0)

    def predict(self, prompts, prev_mask=None):
        self.calls.append((len(prompts), prev_mask is not None))
        targets = [self._target(p) for p in prompts]
        masks = np.stack([(self.ids == t) & (t > 0) if t >= 0 else np.roll(self.ids == -t, 3, axis=1)
                          for t in targets])
        targets = [abs(t) for t in targets]
        emb = np.array([COLOURS.get(t, (0, 0, 0)) for t in targets], np.float32) + 1.0
        return SimpleNamespace(masks=masks, confidence=np.where(masks.any((1, 2)), 0.9, 0.0).astype(np.float32),
                               embeddings=emb / np.linalg.norm(emb, axis=1, keepdims=True),
                               prev_mask=torch.zeros(len(prompts), H // 4, W // 4))


def click(x, y, positive=True):
    return ObjectPrompt(points=np.array([[x, y]], np.float32), point_labels=np.array([positive]))


def run_prompted(tracker, predictor, frames, first=0):
    """Feed ``frames`` (lists of ``{id: (x, y)}``); returns per frame ``{track id: gt object}`` of the
    visible outputs and the outputs themselves."""
    seen, outputs = [], []
    for k, objects in enumerate(frames, start=first):
        rgb, ids = world(objects)
        predictor.ids = ids
        predictor.set_image(rgb)
        out = tracker.update(rgb, stamp(k))
        outputs.append(out)
        seen.append({t.id: int(np.bincount(ids[t.mask]).argmax()) for t in out.tracks if t.mask.any()})
    return seen, outputs


def run_everything(tracker, frames, orders=None):
    seen = []
    for k, objects in enumerate(frames):
        rgb, ids = world(objects)
        out = tracker.update(rgb, stamp(k), segments(ids, orders[k] if orders else None))
        seen.append({t.id: int(np.bincount(ids[t.mask]).argmax()) for t in out.tracks if t.mask.any()})
    return seen


# --------------------------------------------------------------------------- building blocks

def test_assign_tiers_are_lexicographic():
    score = np.array([[0.1], [1.9]])
    valid = np.ones((2, 1), bool)
    assert assign(score, valid) == [(1, 0)]
    assert assign(score, valid, np.array([2, 1])) == [(0, 0)], 'a higher tier wins whatever the scores'
    assert assign(score, np.zeros((2, 1), bool)) == []
    # two tier-1 pairs do not outweigh one tier-2 pair
    score = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    tiers = np.array([[2, 2], [1, 1], [1, 1]])
    valid = np.array([[True, False], [True, False], [False, True]])
    assert sorted(assign(score, valid, tiers)) == [(0, 0), (2, 1)]


def test_mask_shift_follows_the_object_not_the_centroid():
    _, ids = world({1: (20, 20)})
    _, moved = world({1: (23, 18)})
    assert mask_shift(ids == 1, mask_bbox(ids == 1), moved == 1, 5) == (3, -2)
    assert mask_shift(ids == 1, mask_bbox(ids == 1), moved == 1, 2) != (3, -2), 'searched within the reach only'
    grown = ids == 1
    grown[20:30, 30:36] = True      # more of the object appears on its right: its centroid moves, it does not
    assert mask_shift(ids == 1, mask_bbox(ids == 1), grown, 8) == (0, 0)
    _, far = world({1: (60, 45)})
    assert mask_shift(ids == 1, mask_bbox(ids == 1), far == 1, 5) == (0, 0), 'no overlap within reach: no move'


def test_id_pool_skips_ids_in_use_and_wraps():
    pool = IdPool()
    assert [pool.take() for _ in range(3)] == [1, 2, 3]
    pool.release(2)
    assert pool.take() == 4, 'released ids are not reused before the pool wraps'
    pool._next = 65535
    assert pool.take() == 65535
    assert pool.take() == 2, 'after 65535 the pool wraps, skipping ids in use (1, 3, 4)'


class _YieldingSet(set):
    """A set that lets other threads run in the middle of ``add``, where an unlocked
    :class:`IdPool` would hand the id it is marking out a second time."""

    def add(self, item):
        time.sleep(0)
        super().add(item)


def test_id_pool_never_hands_out_a_live_id_to_concurrent_callers():
    pool = IdPool()
    pool._in_use = _YieldingSet()
    pool._next = MAX_ID - 500         # the callers wrap around the id space, skipping ids in use
    live, live_lock, duplicates = set(), threading.Lock(), []

    def caller(seed: int) -> None:
        rng, held = random.Random(seed), []
        for _ in range(2000):
            if held and (len(held) >= 8 or rng.random() < 0.5):
                track_id = held.pop(rng.randrange(len(held)))
                with live_lock:
                    live.discard(track_id)
                pool.release(track_id)    # after leaving `live`, so that a reuse is no duplicate
            else:
                track_id = pool.take()
                with live_lock:
                    if track_id in live:
                        duplicates.append(track_id)
                    live.add(track_id)
                held.append(track_id)

    with ThreadPoolExecutor(8) as callers:
        list(callers.map(caller, range(8)))    # re-raises a caller's exception
    assert not duplicates
    assert {i for i in range(1, MAX_ID + 1) if i in pool} == live, 'the pool marks exactly the held ids in use'


def test_appearance_bank_is_bounded_and_keeps_the_first_entry():
    bank = AppearanceBank(4)
    vectors = np.eye(10, dtype=np.float32)
    for v in vectors:
        bank.add(v)
    assert len(bank) == 4
    assert bank.similarity(vectors[0]) == 1.0, 'the first (prompted) appearance is pinned'
    assert bank.similarity(vectors[9]) == 1.0 and bank.similarity(vectors[3]) == 0.0
    assert bank.similarity(np.ones(3, np.float32)) == 0.0, 'another layout never matches'


def test_config_validation():
    with pytest.raises(ValueError, match='min_iou'):
        PromptedConfig(min_iou=1.5)
    with pytest.raises(ValueError, match='min_hits'):
        EverythingConfig(min_hits=0)
    with pytest.raises(ValueError, match="unknown EverythingConfig keys \\['nope'\\]"):
        EverythingConfig.from_dict({'nope': 1})
    assert PromptedConfig.from_dict({'lost_timeout_s': 2.0}).lost_timeout_s == 2.0


# --------------------------------------------------------------------------- everything mode

def test_everything_ids_follow_objects_whose_segments_swap_order():
    tracker = EverythingTracker(EverythingConfig(min_hits=1))
    frames = [{1: (10, 10), 2: (50, 30)}, {1: (12, 11), 2: (48, 29)}, {1: (14, 12), 2: (46, 28)}]
    seen = run_everything(tracker, frames, orders=[[1, 2], [2, 1], [1, 2]])
    assert seen[0] == seen[1] == seen[2], seen
    assert sorted(seen[0].values()) == [1, 2]


def test_everything_crossing_objects_keep_their_ids():
    """Two objects pass each other (touching masks); velocity and colour keep them apart."""
    tracker = EverythingTracker(EverythingConfig(min_hits=1))
    frames = [{1: (5 + 6 * k, 20), 2: (65 - 6 * k, 24)} for k in range(11)]
    seen = run_everything(tracker, frames)
    first = {g: t for t, g in seen[0].items()}
    for k, s in enumerate(seen):
        assert all(first[g] == t for t, g in s.items()), (k, s, first)


def test_everything_birth_needs_min_hits_and_a_one_frame_false_positive_never_gets_an_id():
    tracker = EverythingTracker(EverythingConfig(min_hits=3))
    frames = [{1: (10, 10)}, {1: (10, 10), 3: (50, 40)}, {1: (10, 10)}, {1: (10, 10)}, {1: (10, 10)}]
    outs = []
    for k, objects in enumerate(frames):
        rgb, ids = world(objects)
        outs.append(tracker.update(rgb, stamp(k), segments(ids)).tracks)
        if k == 1:
            assert len(tracker.tracks()) == 2, 'the false positive is a tentative track'
    assert [len(o) for o in outs] == [0, 0, 1, 1, 1]
    assert [o[0].state for o in outs[2:]] == [TrackState.NEW, TrackState.TRACKED, TrackState.TRACKED]
    assert len(tracker.tracks()) == 1 and tracker.tracks()[0].id == outs[2][0].id
    # a flickering segment (present, absent, present, ...) is never born
    tracker = EverythingTracker(EverythingConfig(min_hits=2))
    for k in range(8):
        rgb, ids = world({3: (50, 40)} if k % 2 == 0 else {})
        assert tracker.update(rgb, stamp(k), segments(ids)).tracks == []


def test_everything_occlusion_keeps_the_id_and_lost_is_published_without_mask():
    tracker = EverythingTracker(EverythingConfig(min_hits=1))
    frames = [{1: (10 + 2 * k, 20)} for k in range(4)] + [{} for _ in range(6)] + [{1: (30, 22)}, {1: (32, 22)}]
    states = []
    for k, objects in enumerate(frames):
        rgb, ids = world(objects)
        out = tracker.update(rgb, stamp(k), segments(ids)).tracks
        states.append([(t.id, t.state, bool(t.mask.any())) for t in out])
    assert states[0] == [(1, TrackState.NEW, True)]
    assert all(s == [(1, TrackState.LOST, False)] for s in states[4:10])
    assert states[10] == [(1, TrackState.TRACKED, True)] and states[11] == [(1, TrackState.TRACKED, True)]


def test_everything_reidentification_never_steals_a_visible_objects_id():
    """Object 1 disappears; object 4 (same colour) stays visible but its class flickers to 1's.
    Re-identifying 1 on it would score higher (same class, appearance only), yet 4 keeps its id
    because its continuity match is protected; 1 comes back with its own id."""
    tracker = EverythingTracker(EverythingConfig(min_hits=1, iou_weight=0.0))
    frames = [{1: (10, 10), 4: (50, 40)}] * 3 + [{4: (50 + k, 40)} for k in range(5)] + [{1: (12, 10), 4: (56, 40)}]
    seen = []
    for k, objects in enumerate(frames):
        rgb, ids = world(objects)
        segs = segments(ids)
        for seg in segs:
            seg.label = 'look-alike' if seg.mask[ids == 4].any() and k < 3 else 'square'
        out = tracker.update(rgb, stamp(k), segs)
        seen.append({t.id: int(np.bincount(ids[t.mask]).argmax()) for t in out.tracks if t.mask.any()})
    ids = {g: t for t, g in seen[0].items()}
    for s in seen[3:8]:
        assert s == {ids[4]: 4}, s
    assert seen[8] == {ids[1]: 1, ids[4]: 4}


def test_everything_exit_and_reentry_elsewhere_gets_the_old_id_back_until_the_timeout():
    tracker = EverythingTracker(EverythingConfig(min_hits=1, lost_timeout_s=2.0, motion_horizon_s=0.3))
    frames = ([{1: (60 + 5 * k, 20), 2: (10, 40)} for k in range(5)] + [{2: (10, 40)}] * 10
              + [{1: (-5, 30), 2: (10, 40)}, {1: (0, 30), 2: (10, 40)}])
    seen = run_everything(tracker, frames)
    ids = {g: t for t, g in seen[0].items()}
    assert seen[15] == {ids[1]: 1, ids[2]: 2}, 'the object came back through the other side with its id'
    # gone for longer than the timeout: removed, and it comes back with a new id
    tracker = EverythingTracker(EverythingConfig(min_hits=1, lost_timeout_s=0.5))
    frames = [{1: (10, 10)}] * 2 + [{}] * 7 + [{1: (10, 10)}]
    seen = run_everything(tracker, frames)
    assert seen[0] == {1: 1} and seen[9] == {2: 1}
    assert len(tracker.tracks()) == 1


def test_everything_late_reidentification_at_birth():
    """An object comes back looking different (half of its mask is now another colour): too
    different for one frame's re-identification, so a tentative track follows it; at birth that
    track takes over the lost id instead of a new one."""
    tracker = EverythingTracker(EverythingConfig(min_hits=3, motion_horizon_s=0.3))
    outs = []
    for k in range(17):
        if k < 3:
            rgb, ids = world({1: (10, 10)})
            segs = segments(ids)
        elif k < 13:
            rgb, ids = world({})
            segs = []
        else:       # red square with a blue square stuck to it, segmented as one object
            rgb, ids = world({1: (40, 30), 2: (50, 30)})
            segs = [SimpleNamespace(mask=ids > 0, score=0.9, label='square', embedding=None)]
        outs.append([(t.id, t.state) for t in tracker.update(rgb, stamp(k), segs).tracks])
    assert outs[2] == [(1, TrackState.NEW)] and outs[13] == outs[14] == [(1, TrackState.LOST)]
    assert outs[15] == [(1, TrackState.TRACKED)] and outs[16] == [(1, TrackState.TRACKED)]
    assert len(tracker.tracks()) == 1


def test_everything_memory_is_bounded():
    config = EverythingConfig(min_hits=1, max_tracks=5, bank_size=3, bank_interval_s=0.0)
    tracker = EverythingTracker(config)
    rng = np.random.default_rng(0)
    for k in range(40):   # a new false positive every frame next to a persistent object
        rgb, ids = world({1: (10, 10), 2: (int(rng.integers(30, 70)), int(rng.integers(0, 50)))})
        tracker.update(rgb, stamp(k), [s for s in segments(ids) if s.mask[10, 10] or k % 2 == 0])
        assert len(tracker.tracks()) <= 5
    kept = [t for t in tracker.tracks() if t.mask is not None and t.mask[12, 12]]
    assert len(kept) == 1 and len(kept[0].bank) == 3
    assert all(len(t.label_votes) <= 1 for t in tracker.tracks())


# --------------------------------------------------------------------------- prompted objects

def test_prompted_objects_keep_their_ids_while_moving_in_one_batched_call():
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(click(15, 15))
    b = tracker.add(ObjectPrompt(text='blue'))
    frames = [{1: (10 + 3 * k, 10), 2: (60 - 3 * k, 40)} for k in range(10)]
    seen, outs = run_prompted(tracker, predictor, frames)
    assert all(s == {a: 1, b: 2} for s in seen), seen
    assert [t.state for t in outs[0].tracks] == [TrackState.NEW, TrackState.NEW]
    assert all(t.state == TrackState.TRACKED for o in outs[1:] for t in o.tracks)
    assert len(predictor.calls) == len(frames), 'one predict call per frame for all objects'
    assert predictor.calls[1][1], 'later frames pass the previous logits as prev_mask memory'
    assert outs[3].tracks[0].origin is not None and outs[3].tracks[0].origin.points.shape == (1, 2)


def test_prompted_object_is_found_again_after_the_click_pixel_left_it():
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(click(15, 15))
    frames = [{1: (10 + 8 * k, 10 + 4 * k)} for k in range(7)]   # moves 8 px per frame: faster than its size
    seen, _ = run_prompted(tracker, predictor, frames)
    assert all(s == {a: 1} for s in seen), seen


def test_prompted_occlusion_keeps_the_id_and_never_steals_a_visible_objects_id():
    """Red object 1 hides for 12 frames (over 1 s) while the red look-alike 4 stays visible: the
    lost track's referring prompt finds (most of) 4, yet 4 keeps its id and 1 stays lost; 1 comes
    back with its own id."""
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(click(15, 15))
    b = tracker.add(click(55, 45))
    frames = ([{1: (10, 10), 4: (50, 40)}] * 3 + [{4: (50 - k, 40)} for k in range(12)]
              + [{1: (12, 12), 4: (38, 40)}] * 3)
    predictor.impostor = {1: 4}
    seen, outs = run_prompted(tracker, predictor, frames)
    assert all(s == {b: 4} for s in seen[3:15]), seen[3:15]
    assert all(dict((t.id, t.state) for t in o.tracks)[a] == TrackState.LOST for o in outs[3:15])
    assert seen[15] == {a: 1, b: 4}, seen[15]


def referring_patch(oid):
    """A referring patch of object ``oid`` cut from another image."""
    rgb, ids = world({oid: (5, 5)})
    return ReferencePatch(image=rgb[:20, :20], mask=ids[:20, :20] == oid)


@pytest.mark.parametrize('on_earlier_frame', [False, True])
def test_prompted_referring_patch_of_a_hidden_object_never_takes_a_visible_objects_id(on_earlier_frame):
    """The referring patch of the hidden red object 4 finds its look-alike 1, which a click
    already tracks: 1 keeps its id and the new object waits, LOST, until 4 appears. The same when
    the prompt is applied to the earlier frame it refers to (:meth:`PromptedTracker.initialize`)."""
    predictor = WorldPredictor()
    predictor.impostor = {4: 1}
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(click(15, 15))
    seen, _ = run_prompted(tracker, predictor, [{1: (10, 10)}])
    b = tracker.add(ObjectPrompt(reference=referring_patch(4)))
    if on_earlier_frame:
        out = tracker.initialize(predictor.rgb, stamp(0), [b])
        assert [(t.id, t.state) for t in out.tracks] == [(b, TrackState.LOST)]
    frames = [{1: (11 + k, 10)} for k in range(3)] + [{1: (14 + k, 10), 4: (50, 40)} for k in range(3)]
    seen, outs = run_prompted(tracker, predictor, frames, first=1)
    assert seen[:3] == [{a: 1}] * 3, seen
    assert all(dict((t.id, t.state) for t in o.tracks)[b] == TrackState.LOST for o in outs[:3])
    assert seen[3:] == [{a: 1, b: 4}] * 3, seen


def test_prompted_exit_and_reentry_on_the_other_side():
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig(lost_timeout_s=5.0))
    a = tracker.add(ObjectPrompt(text='green'))
    b = tracker.add(click(15, 45))
    frames = ([{3: (50 + 6 * k, 10), 2: (10, 40)} for k in range(5)] + [{2: (10, 40)}] * 20
              + [{3: (0, 12), 2: (10, 40)}, {3: (3, 12), 2: (10, 40)}])
    seen, _ = run_prompted(tracker, predictor, frames)
    assert seen[25] == {a: 3, b: 2} and seen[26] == {a: 3, b: 2}


def test_prompted_remove_reset_and_lost_timeout():
    predictor = WorldPredictor()
    ids = IdPool()
    tracker = PromptedTracker(predictor, PromptedConfig(lost_timeout_s=0.5), ids)
    a = tracker.add(click(15, 15))
    b = tracker.add(click(55, 45))
    run_prompted(tracker, predictor, [{1: (10, 10), 2: (50, 40)}] * 2)
    tracker.remove(a)
    assert a not in ids
    with pytest.raises(KeyError, match=str(a)):
        tracker.remove(a)
    with pytest.raises(KeyError):
        tracker.prompt(a, click(1, 1))
    _, outs = run_prompted(tracker, predictor, [{1: (10, 10), 2: (50, 40)}], first=2)
    assert [t.id for t in outs[0].tracks] == [b]
    _, outs = run_prompted(tracker, predictor, [{1: (10, 10)}] * 8, first=3)   # 2 gone for 0.8 s
    assert outs[0].tracks[0].state == TrackState.LOST and outs[-1].tracks == []
    assert tracker.tracks() == [] and b not in ids
    c = tracker.add(click(15, 15))
    tracker.reset()
    assert tracker.tracks() == [] and c not in ids


def test_prompted_refine_keeps_the_id_and_replace_starts_over():
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(click(55, 45))           # the user clicked the blue square by mistake
    frames = [{1: (10, 10), 2: (50, 40)}] * 3
    seen, _ = run_prompted(tracker, predictor, frames)
    assert seen[-1] == {a: 2}
    tracker.prompt(a, ObjectPrompt(text='red'), refine=False)
    seen, outs = run_prompted(tracker, predictor, frames, first=3)
    assert seen == [{a: 1}] * 3 and outs[0].tracks[0].state == TrackState.NEW
    assert outs[0].tracks[0].origin.text == 'red'
    # a corrective click refines the same id: the new inputs plus the current mask and memory
    before = len(predictor.calls)
    tracker.prompt(a, click(12, 12))
    tracker.prompt(a, click(13, 13))       # accumulates until the next frame
    seen, outs = run_prompted(tracker, predictor, frames[:1], first=6)
    assert seen == [{a: 1}] and outs[0].tracks[0].state == TrackState.TRACKED
    assert predictor.calls[before][1], 'the refinement carries the prev_mask memory'
    assert tracker.tracks()[0].origin.text == 'red', 'the origin stays the prompt that created the object'
    with pytest.raises(ValueError, match='empty'):
        tracker.prompt(a, ObjectPrompt())


def test_prompted_object_not_found_on_its_first_frame_is_lost_until_it_appears():
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(ObjectPrompt(text='green'))
    seen, outs = run_prompted(tracker, predictor, [{1: (10, 10)}] * 2 + [{1: (10, 10), 3: (50, 40)}])
    assert outs[0].tracks[0].state == TrackState.LOST and 'not found' in outs[0].warnings[0]
    assert seen[2] == {a: 3} and outs[2].tracks[0].state == TrackState.NEW


def test_prompted_bad_prompt_is_isolated():
    """A prompt the predictor rejects removes its track only; the others are decoded."""
    class Picky(WorldPredictor):
        def predict(self, prompts, prev_mask=None):
            if any(p.text == 'boom' for p in prompts):
                raise ValueError('cannot ground boom')
            return super().predict(prompts, prev_mask)

    predictor = Picky()
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(click(15, 15))
    bad = tracker.add(ObjectPrompt(text='boom'))
    seen, outs = run_prompted(tracker, predictor, [{1: (10, 10)}] * 2)
    assert seen == [{a: 1}] * 2
    assert any(f'track {bad} removed' in w for w in outs[0].warnings)
    assert [t.id for t in tracker.tracks()] == [a]


def test_prompted_failing_reference_of_a_tracked_object_is_that_objects_failure():
    """Any exception (here a RuntimeError, as a backend raises) from one tracked object's
    prompt or reference costs that object the frame only: a warning names it and the cause, the
    other objects are decoded, and the failing object is found again once its prompt works."""
    class Flaky(WorldPredictor):
        failing = False

        def predict(self, prompts, prev_mask=None):
            if self.failing and any(p.reference is not None for p in prompts):
                raise RuntimeError('graph encoder-64x64.fp32 was not exported')
            return super().predict(prompts, prev_mask)

    predictor = Flaky()
    tracker = PromptedTracker(predictor, PromptedConfig(reference_interval_s=0.0))
    a = tracker.add(click(15, 15))
    b = tracker.add(click(55, 45))
    steady = [{1: (10, 10), 2: (50, 40)}] * 3
    run_prompted(tracker, predictor, steady)
    b_gone = [{1: (10 + k, 10)} for k in range(3)]              # b leaves: its search uses its reference
    predictor.failing = True
    seen, outs = run_prompted(tracker, predictor, b_gone, first=3)
    assert [s.get(a) for s in seen] == [1, 1, 1]
    failed = [w for out in outs for w in out.warnings if 'prompt failed' in w]
    assert failed and all(w.startswith(f'track {b} (') and 'RuntimeError: graph encoder-64x64.fp32' in w
                          for w in failed)
    assert {t.id for t in tracker.tracks()} == {a, b}           # kept, not removed
    predictor.failing = False
    seen, _ = run_prompted(tracker, predictor, [{1: (13, 10), 2: (50, 40)}] * 2, first=6)
    assert seen[-1] == {a: 1, b: 2}


def test_prompted_remove_during_predict_is_safe():
    """Prompts may arrive while a frame is decoded: a track removed meanwhile is not updated."""
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig())
    a = tracker.add(click(15, 15))
    b = tracker.add(click(55, 45))
    inner = predictor.predict

    def predict_and_remove(prompts, prev_mask=None):
        if len(predictor.calls) == 2:
            tracker.remove(b)
        return inner(prompts, prev_mask)

    predictor.predict = predict_and_remove
    seen, outs = run_prompted(tracker, predictor, [{1: (10, 10), 2: (50, 40)}] * 4)
    assert seen[1] == {a: 1, b: 2} and seen[2] == seen[3] == {a: 1}


def test_prompted_memory_is_bounded():
    predictor = WorldPredictor()
    tracker = PromptedTracker(predictor, PromptedConfig(bank_size=4, bank_interval_s=0.0, reference_interval_s=0.0))
    tracker.add(click(15, 15))
    run_prompted(tracker, predictor, [{1: (10 + k % 5, 10)} for k in range(30)])
    track = tracker.tracks()[0]
    assert len(track.bank) == 4
    assert track.reference.image.shape[:2] == track.reference.mask.shape == (H, W)   # one frame, not a history


# --------------------------------------------------------------------------- with the real predictor

def test_prompted_tracker_runs_with_the_real_predictor():
    """Plumbing: SeemPredictor (tiny model, random weights) drives the tracker for a few frames;
    every output has one of the added ids, no id is duplicated, and ids do not change."""
    torch = pytest.importorskip('torch')
    from seem_ros.model.build import build_seem
    from seem_ros.predictor import SeemPredictor
    from seem_ros.scenes import build_scene, render_frame

    torch.manual_seed(0)
    predictor = SeemPredictor(build_seem('tiny'), short_side=96)
    scene = build_scene('occlusion', 0, width=128, height=96, frames=3)
    tracker = PromptedTracker(predictor, PromptedConfig(min_confidence=0.0, min_similarity=0.0))
    first = render_frame(scene, 0)
    box = mask_bbox(first.mask(3))
    added = {tracker.add(ObjectPrompt(boxes=np.array([box], np.float32))), tracker.add(click(64, 48))}
    history = []
    for k in range(scene.n_frames):
        frame = render_frame(scene, k)
        predictor.set_image(frame.rgb)
        out = tracker.update(frame.rgb, stamp(k))
        ids = [t.id for t in out.tracks]
        assert len(ids) == len(set(ids)) and set(ids) == added
        assert all(t.mask.shape == (96, 128) and t.mask.dtype == bool for t in out.tracks)
        history.append({t.id: t.mask for t in out.tracks if t.mask.any()})
    assert history[0], 'the visual prompts gave masks on their first frame'

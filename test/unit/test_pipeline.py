"""Pipeline logic with a scripted predictor: frames, prompt binding, tracking through the trackers, modes, worker."""
import threading
import time
from types import SimpleNamespace

import numpy as np
import torch
import pytest

from seem_ros.pipeline import (Frame, IdPool, LatestFrameWorker, Mode, Pipeline, PipelineConfig, StampedBuffer,
                               TrackState, fit_prompt)
from seem_ros.prompts import ObjectPrompt, PromptError, ReferencePatch
from seem_ros.rasterize import rasterize
from seem_ros.tracking import EverythingConfig, PromptedConfig

H, W = 48, 64
COLOURS = {1: (220, 30, 30), 2: (30, 60, 220), 3: (30, 200, 40)}
NAMES = {'red': 1, 'blue': 2, 'green': 3}


class WorldPredictor:
    """A perfect segmenter of a world of 10x10 coloured squares (``objects``: {id: (x, y)}).

    A visual prompt gets the object under most of its pixels, a referring patch the object of
    its colour, text the object of that name; the text 'boom' cannot be grounded (ValueError).
    Records ``('set_image', image[0, 0, 0])`` and ``('predict', n)`` calls.
    """

    short_side = 0          # segments the frame at its own size

    def __init__(self, segments=()):
        self.calls = []
        self.segments = list(segments)
        self.objects = {}
        self.image = None

    def ids(self):
        ids = np.zeros((H, W), np.uint16)
        for oid, (x, y) in self.objects.items():
            ids[y:y + 10, x:x + 10] = oid
        return ids

    def set_image(self, rgb):
        self.calls.append(('set_image', int(rgb[0, 0, 0])))
        self.image = rgb

    def _target(self, prompt, ids):
        if prompt.text == 'boom':
            raise ValueError('cannot ground boom')
        if prompt.has_visual:
            pos, _ = rasterize(prompt, (H, W), (H, W))
            counts = np.bincount(ids[pos], minlength=len(COLOURS) + 1)
            counts[0] = 0
            return int(counts.argmax()) if counts.any() else 0
        if prompt.reference is not None:
            colour = tuple(int(c) for c in np.median(prompt.reference.image[prompt.reference.mask], axis=0))
            return next((i for i, c in COLOURS.items() if c == colour), 0)
        return NAMES.get(prompt.text, 0)

    def predict(self, prompts, prev_mask=None):
        self.calls.append(('predict', len(prompts)))
        ids = self.ids()
        targets = [self._target(p, ids) for p in prompts]
        masks = np.stack([(ids == t) & (t > 0) for t in targets])
        emb = np.array([COLOURS.get(t, (1, 1, 1)) for t in targets], np.float32)
        return SimpleNamespace(masks=masks, confidence=np.where(masks.any((1, 2)), 0.9, 0.1).astype(np.float32),
                               embeddings=emb / np.linalg.norm(emb, axis=1, keepdims=True),
                               prev_mask=torch.zeros(len(prompts), H // 4, W // 4))

    def segment_everything(self, vocabulary):
        self.calls.append(('segment_everything', tuple(vocabulary)))
        return SimpleNamespace(segments=list(self.segments))


def frame(stamp, value=0, world=None):
    """A frame with background ``value`` (read back by the predictor's spy) and ``world``'s squares."""
    image = np.full((H, W, 3), value, np.uint8)
    for oid, (x, y) in (world.objects.items() if world is not None else ()):
        image[y:y + 10, x:x + 10] = COLOURS[oid]
    return Frame(image, stamp, 'cam')


def click(x, y, positive=True):
    return ObjectPrompt(points=np.array([[x, y]], np.float32), point_labels=np.array([positive]))


def segment(label, score, rows):
    mask = np.zeros((H, W), bool)
    mask[rows] = True
    return SimpleNamespace(label=label, score=score, mask=mask, embedding=None)


def encoded(pred):
    return [c[1] for c in pred.calls if c[0] == 'set_image']


def test_config_validation():
    with pytest.raises(ValueError, match='vocabulary'):
        PipelineConfig(mode='everything')
    with pytest.raises(ValueError, match='overlay_alpha'):
        PipelineConfig(overlay_alpha=1.5)
    with pytest.raises(ValueError, match='max_objects'):
        PipelineConfig(max_objects=0)
    assert PipelineConfig(mode='both', vocabulary=(' cup ', '')).vocabulary == ('cup',)


def test_stamped_buffer_nearest_and_capacity():
    buf = StampedBuffer(3)
    for t in (10, 20, 30, 40):
        buf.add(t, t)
    assert len(buf) == 3 and buf.span() == (20, 40)
    assert buf.nearest(22, 5) == 20 and buf.nearest(26, 5) == 30
    assert buf.nearest(10, 5) is None and buf.newest() == 40
    buf.resize(2)
    assert buf.span() == (30, 40)


def test_fit_prompt_drops_outside_clicks_and_clips_boxes():
    prompt = ObjectPrompt(points=np.array([[5, 5], [W + 3, 2]], np.float32), point_labels=np.array([True, True]),
                          boxes=np.array([[-5, 10, 20, 100], [W, 0, W + 5, 5]], np.float32))
    fitted, warnings = fit_prompt(prompt, (H, W))
    assert fitted.points.tolist() == [[5, 5]]
    assert fitted.boxes.tolist() == [[0, 10, 20, H]]
    assert any('outside' in w for w in warnings) and any('clipped' in w for w in warnings)
    assert any('no area' in w for w in warnings)


def test_fit_prompt_errors():
    with pytest.raises(PromptError, match='nothing positive'):
        fit_prompt(click(-1, 3), (H, W))
    with pytest.raises(PromptError, match='nothing positive'):
        fit_prompt(click(3, 3, positive=False), (H, W))
    assert fit_prompt(click(3, 3, positive=False), (H, W), refine=True)[0].point_labels.tolist() == [False]
    with pytest.raises(PromptError, match='nothing is left'):
        fit_prompt(click(-1, 3, positive=False), (H, W), refine=True)
    with pytest.raises(PromptError, match='mask is'):
        fit_prompt(ObjectPrompt(mask=np.ones((H + 1, W), bool)), (H, W))
    with pytest.raises(PromptError, match='referring mask'):
        fit_prompt(ObjectPrompt(reference=ReferencePatch(np.zeros((8, 8, 3), np.uint8), np.ones((4, 4), bool))),
                   (H, W))


def test_click_object_keeps_its_id_while_it_moves():
    pred = WorldPredictor()
    pipe = Pipeline(pred, PipelineConfig())
    pred.objects = {1: (10, 10)}
    pipe.remember(frame(1, world=pred))
    oid, warnings = pipe.add_object(click(12, 12))
    assert oid == 1 and warnings == []
    r1 = pipe.process(frame(1, world=pred))
    (obj,) = r1.objects
    assert (obj.id, obj.state, obj.bbox, obj.last_seen_ns) == (oid, TrackState.NEW, (10.0, 10.0, 20.0, 20.0), 1)
    assert obj.origin.points.tolist() == [[12, 12]] and obj.label == 'click'      # an unnamed click is labelled
    assert r1.label_image.dtype == np.uint16 and set(np.unique(r1.label_image)) == {0, oid}
    for k in range(2, 8):                                     # moves 3 px per frame; the click no longer hits it
        pred.objects = {1: (10 + 3 * k, 10 + k)}
        (obj,) = pipe.process(frame(k, world=pred)).objects
        assert (obj.id, obj.state) == (oid, TrackState.TRACKED)
        assert np.array_equal(obj.mask, pred.ids() == 1)
    assert encoded(pred) == [0] * 7                            # one encoding per frame
    assert [c for c in pred.calls if c[0] == 'predict'] == [('predict', 1)] * 7   # one batched decode per frame


def test_no_objects_no_encoding():
    pred = WorldPredictor()
    result = Pipeline(pred, PipelineConfig()).process(frame(1))
    assert result.objects == [] and not result.label_image.any() and pred.calls == []


def test_prompts_before_the_first_image_wait_for_it():
    pred = WorldPredictor()
    pipe = Pipeline(pred, PipelineConfig())
    a, _ = pipe.add_object(click(12, 12))
    b, _ = pipe.add_object(click(W + 10, 10))    # outside the (future) image: removed at binding
    c, _ = pipe.add_object(ObjectPrompt(points=np.array([[13, 13], [W + 5, 5]], np.float32),
                                        point_labels=np.array([True, True])))   # fitted: the outside click dropped
    d, _ = pipe.add_object(ObjectPrompt(text='green'))   # not in view yet
    pred.objects = {1: (10, 10)}
    result = pipe.process(frame(10**18, world=pred))
    assert [o.id for o in result.objects] == [a, c, d]
    assert [o.state for o in result.objects] == [TrackState.NEW, TrackState.NEW, TrackState.LOST]
    assert any(f'object {b} removed' in w and 'outside' in w for w in result.warnings)
    assert any(f'object {c}:' in w and 'outside' in w for w in result.warnings)
    assert [o.id for o in pipe.list_objects()] == [a, c, d]
    for k in range(1, 4):                        # long after its stamp-less creation: not timed out
        pipe.process(frame(10**18 + k * 10**10, world=pred))
    assert d in [o.id for o in pipe.list_objects()]


def test_prompt_on_an_older_buffered_frame_is_applied_there():
    pred = WorldPredictor()
    pipe = Pipeline(pred, PipelineConfig())
    for t, v in ((1, 10), (2, 20), (3, 30)):
        pipe.remember(frame(t, v))
    pred.objects = {1: (28, 28)}                 # where it was on frame 2
    oid, warnings = pipe.add_object(click(30, 30), stamp_ns=2)
    assert warnings == []
    calls = len(pred.calls)
    pipe.process(frame(3, 30))
    assert encoded(SimpleNamespace(calls=pred.calls[calls:])) == [20, 30]
    assert pipe.process(frame(4, 40)).objects[0].state == TrackState.TRACKED


def test_a_name_only_refinement_renames_and_keeps_tracking():
    pred = WorldPredictor()
    pred.objects = {1: (10, 10)}
    pipe = Pipeline(pred, PipelineConfig())
    pipe.remember(frame(1, world=pred))
    a, _ = pipe.add_object(click(12, 12))
    (first,) = pipe.process(frame(1, world=pred)).objects
    assert pipe.add_object(ObjectPrompt(name='mug'), object_id=a, refine=True) == (a, [])
    (renamed,) = pipe.process(frame(2, world=pred)).objects
    assert (renamed.id, renamed.label, renamed.state) == (a, 'mug', TrackState.TRACKED)
    assert np.array_equal(renamed.mask, first.mask)
    assert [o.prompt.name for o in pipe.list_objects()] == ['mug']
    with pytest.raises(PromptError, match='no object with id 99'):
        pipe.add_object(ObjectPrompt(name='cup'), object_id=99, refine=True)
    with pytest.raises(PromptError, match='empty'):                     # a REPLACE needs inputs
        pipe.add_object(ObjectPrompt(name='cup'), object_id=a)


def test_prompt_for_an_unbuffered_stamp_uses_the_newest_frame_with_a_warning():
    pipe = Pipeline(WorldPredictor(), PipelineConfig(ring_size=2, stamp_tolerance_ns=0))
    for t in (1, 2, 3):
        pipe.remember(frame(t))
    _, warnings = pipe.add_object(click(5, 5), stamp_ns=1)
    assert len(warnings) == 1 and 'newest frame' in warnings[0]


def test_update_refine_remove_reset():
    pred = WorldPredictor()
    pred.objects = {1: (10, 10), 2: (40, 30)}
    pipe = Pipeline(pred, PipelineConfig(max_objects=2))
    pipe.remember(frame(1, world=pred))
    a, _ = pipe.add_object(ObjectPrompt(text='red', name='left'))
    assert pipe.add_object(ObjectPrompt(text='red', name='left'))[0] == a   # same text prompt, same object
    b, _ = pipe.add_object(click(12, 12))
    with pytest.raises(PromptError, match='full'):
        pipe.add_object(click(6, 6))
    with pytest.raises(PromptError, match='no object with id 99'):
        pipe.add_object(click(6, 6), object_id=99)
    assert pipe.add_object(click(42, 32), object_id=b)[0] == b             # replaced: now the blue square
    result = pipe.process(frame(1, world=pred))
    assert {o.id: int(pred.ids()[o.mask].max()) for o in result.objects} == {a: 1, b: 2}
    assert pipe.add_object(click(5, 5, positive=False), object_id=b, refine=True)[0] == b   # a correction
    (blue,) = [o for o in pipe.process(frame(2, world=pred)).objects if o.id == b]
    assert blue.state == TrackState.TRACKED and blue.mask[35, 45]
    assert {o.id: o.prompt.points.tolist() for o in pipe.list_objects()}[b] == [[42, 32]]
    assert pipe.remove_object(name='left') == a
    with pytest.raises(KeyError, match="no object named 'left'"):
        pipe.remove_object(name='left')
    with pytest.raises(KeyError, match='no object with id 7'):
        pipe.remove_object(7)
    pipe.reset()
    assert pipe.list_objects() == []
    with pytest.raises(PromptError, match='empty'):
        pipe.add_object(ObjectPrompt())


def test_bad_object_does_not_stop_the_others():
    pred = WorldPredictor()
    pred.objects = {1: (10, 10)}
    pipe = Pipeline(pred, PipelineConfig())
    good, _ = pipe.add_object(ObjectPrompt(text='red'))
    bad, _ = pipe.add_object(ObjectPrompt(text='boom'))
    result = pipe.process(frame(1, world=pred))
    assert [o.id for o in result.objects] == [good] and result.objects[0].mask.any()
    assert any(f'track {bad}' in w and 'boom' in w for w in result.warnings)
    assert [o.id for o in pipe.list_objects()] == [good]


def test_occluded_object_is_lost_then_found_again_with_its_id():
    pred = WorldPredictor()
    pipe = Pipeline(pred, PipelineConfig())
    pred.objects = {1: (10, 10), 2: (40, 30)}
    red, _ = pipe.add_object(click(12, 12))
    blue, _ = pipe.add_object(ObjectPrompt(text='blue'))
    first = pipe.process(frame(1, world=pred)).objects
    pred.objects = {2: (40, 30)}                                  # red hidden for 3 frames
    for k in (2, 3, 4):
        result = pipe.process(frame(k * 10**8, world=pred))
        lost, seen = result.objects
        assert (lost.id, lost.state, lost.bbox, lost.last_seen_ns) == (red, TrackState.LOST, first[0].bbox, 1)
        assert not lost.mask.any() and red not in result.label_image
        assert (seen.id, seen.state) == (blue, TrackState.TRACKED)
    pred.objects = {1: (30, 5), 2: (40, 30)}                      # back somewhere else
    back = pipe.process(frame(5 * 10**8, world=pred)).objects[0]
    assert (back.id, back.state) == (red, TrackState.TRACKED) and np.array_equal(back.mask, pred.ids() == 1)


def test_lost_object_times_out_with_the_tracking_settings():
    pred = WorldPredictor()
    pipe = Pipeline(pred, PipelineConfig())
    pred.objects = {1: (10, 10)}
    oid, _ = pipe.add_object(click(12, 12))
    pipe.process(frame(1, world=pred))
    pred.objects = {}
    pipe.config = PipelineConfig(prompted=PromptedConfig(lost_timeout_s=1.0))   # at runtime
    assert pipe.process(frame(10**9, world=pred)).objects[0].state == TrackState.LOST
    assert pipe.process(frame(3 * 10**9, world=pred)).objects == []
    assert pipe.list_objects() == []


def test_modes_and_everything_ids():
    segs = [segment('cup', 0.9, slice(0, 5)), segment('table', 0.8, slice(30, 40)), segment('cup', 0.2, slice(5, 7))]
    pred = WorldPredictor(segs)
    pred.objects = {2: (40, 14)}                                   # rows 14..23, clear of the segments
    config = PipelineConfig(mode=Mode.EVERYTHING, vocabulary=('cup', 'table'), overlay=True,
                            everything=EverythingConfig(min_hits=2))
    pipe = Pipeline(pred, config)
    pipe.add_object(ObjectPrompt(text='blue'))
    r1 = pipe.process(frame(1, world=pred))
    assert r1.objects == [] and not any(c[0] == 'predict' for c in pred.calls)   # born after min_hits
    r2 = pipe.process(frame(2, world=pred))
    assert [o.label for o in r2.objects] == ['cup', 'table']          # low score dropped, no prompted objects
    assert r2.overlay.shape == (H, W, 3) and r2.overlay.dtype == np.uint8
    r3 = pipe.process(frame(3, world=pred))
    assert [o.id for o in r3.objects] == [o.id for o in r2.objects]   # same segments, same ids
    pipe.config = PipelineConfig(mode='both', vocabulary=('cup', 'table'))
    r4 = pipe.process(frame(4, world=pred))
    ids = [o.id for o in r4.objects]
    assert len(set(ids)) == len(ids) == 3 and r4.objects[0].label == 'blue'
    assert set(np.unique(r4.label_image)) == {0, *ids}
    pipe.config = PipelineConfig(mode='prompted')
    assert [o.label for o in pipe.process(frame(5, world=pred)).objects] == ['blue']


def test_everything_segment_on_a_prompted_object_is_that_object():
    pred = WorldPredictor()
    pred.objects = {1: (10, 10)}
    pred.segments = [SimpleNamespace(label='cup', score=0.9, mask=pred.ids() == 1, embedding=None)]
    pipe = Pipeline(pred, PipelineConfig(mode='both', vocabulary=('cup',), everything=EverythingConfig(min_hits=1)))
    oid, _ = pipe.add_object(ObjectPrompt(text='red'))
    for k in (1, 2):
        assert [o.id for o in pipe.process(frame(k, world=pred)).objects] == [oid]


def test_ids_are_not_reused_by_a_new_pipeline_on_the_same_pool():
    ids = IdPool()
    pred = WorldPredictor()
    first = Pipeline(pred, PipelineConfig(), ids)
    a, _ = first.add_object(click(5, 5))
    first.reset()
    second = Pipeline(pred, PipelineConfig(), ids)
    assert second.add_object(click(5, 5))[0] == a + 1


def test_worker_newest_item_wins_and_drops_are_counted():
    gate = threading.Event()
    seen = []

    def handle(item):
        gate.wait(5)
        seen.append(item)

    errors = []
    worker = LatestFrameWorker(handle, errors.append)
    worker.submit(0)
    time.sleep(0.05)          # 0 is running, blocked on the gate
    for item in (1, 2, 3):
        worker.submit(item)
    gate.set()
    deadline = time.monotonic() + 5
    while worker.processed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert seen == [0, 3] and worker.dropped == 2 and errors == []


def test_worker_serves_sources_round_robin_with_the_newest_item_of_each():
    """A camera that submits on every frame does not starve one that submits rarely."""
    seen, busy = [], threading.Event()

    def handle(item):
        seen.append(item)
        busy.set()
        time.sleep(0.02)

    worker = LatestFrameWorker(handle, lambda exc: None)
    worker.submit(('slow', 0), 'slow')
    busy.wait(5)
    for i in range(1, 30):                          # 'fast' submits far more often than it is served
        worker.submit(('fast', i), 'fast')
        if i % 10 == 0:
            worker.submit(('slow', i), 'slow')
        time.sleep(0.005)
    deadline = time.monotonic() + 5
    while ('slow', 20) not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    slow = [i for source, i in seen if source == 'slow']
    assert slow == [0, 10, 20]                      # every slow item served (none was replaced)
    fast = [i for source, i in seen if source == 'fast']
    assert fast == sorted(fast) and worker.dropped_by['fast'] >= 29 - len(fast) - 1 and worker.dropped_by['slow'] == 0


def test_worker_survives_errors():
    errors = []
    worker = LatestFrameWorker(lambda item: 1 / item, errors.append)
    worker.submit(0)
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.submit(2)
    while worker.processed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError) and worker.processed == 2


def test_worker_stop_waits_for_the_running_item_however_long_it_takes():
    """Deactivate stops the worker: nothing the running item does may outlast the stop (a 10 s
    bound would be shorter than one Focal-T CPU frame)."""
    events = []

    def handle(item):
        time.sleep(1.5)
        events.append('done')

    worker = LatestFrameWorker(handle, lambda exc: None)
    worker.submit(0)
    time.sleep(0.05)
    worker.submit(1)                                  # waiting: discarded by the stop
    worker.stop()
    events.append('stopped')
    assert events == ['done', 'stopped'] and worker.processed == 1

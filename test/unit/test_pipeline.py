"""Pipeline logic with a scripted predictor: frames, prompt binding, ids, modes, worker."""
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from seem_ros.pipeline import (Frame, LatestFrameWorker, Mode, Pipeline, PipelineConfig, PromptError, SegmentIds,
                               StampedBuffer, TrackState, fit_prompt, mask_bbox, merge_prompts)
from seem_ros.prompts import ObjectPrompt, ReferencePatch

H, W = 48, 64


class FakePredictor:
    """Masks a 9x9 square around the first positive click, the prompt mask itself, or for text a
    band whose row is the text length; records every call."""

    def __init__(self, segments=()):
        self.calls = []
        self.segments = list(segments)
        self.image = None

    def set_image(self, rgb):
        self.calls.append(('set_image', int(rgb[0, 0, 0])))
        self.image = rgb

    def predict(self, prompts, prev_mask=None):
        self.calls.append(('predict', len(prompts)))
        h, w = self.image.shape[:2]
        masks = np.zeros((len(prompts), h, w), bool)
        for i, p in enumerate(prompts):
            if p.text == 'boom':
                raise ValueError('cannot ground boom')
            if p.mask is not None:
                masks[i] = p.mask
            elif len(p.points):
                x, y = np.asarray(p.points)[np.asarray(p.point_labels)][0].astype(int)
                masks[i, max(y - 4, 0):y + 5, max(x - 4, 0):x + 5] = True
            elif p.text:
                masks[i, len(p.text) % h, :] = True
        return SimpleNamespace(masks=masks, confidence=np.full(len(prompts), 0.9, np.float32),
                               labels=[p.text for p in prompts])

    def segment_everything(self, vocabulary):
        self.calls.append(('segment_everything', tuple(vocabulary)))
        return SimpleNamespace(segments=list(self.segments))


def frame(stamp, value=0):
    return Frame(np.full((H, W, 3), value, np.uint8), stamp, 'cam')


def click(x, y, positive=True):
    return ObjectPrompt(points=np.array([[x, y]], np.float32), point_labels=np.array([positive]))


def segment(label, score, rows):
    mask = np.zeros((H, W), bool)
    mask[rows] = True
    return SimpleNamespace(label=label, score=score, mask=mask)


def test_config_validation():
    with pytest.raises(ValueError, match='vocabulary'):
        PipelineConfig(mode='everything')
    with pytest.raises(ValueError, match='score_threshold'):
        PipelineConfig(score_threshold=1.5)
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
    with pytest.raises(PromptError, match='mask is'):
        fit_prompt(ObjectPrompt(mask=np.ones((H + 1, W), bool)), (H, W))
    with pytest.raises(PromptError, match='referring mask'):
        fit_prompt(ObjectPrompt(reference=ReferencePatch(np.zeros((8, 8, 3), np.uint8), np.ones((4, 4), bool))),
                   (H, W))


def test_click_object_keeps_its_id_and_follows_its_mask():
    pred = FakePredictor()
    pipe = Pipeline(pred, PipelineConfig())
    pipe.remember(frame(1))
    oid, warnings = pipe.add_object(click(20, 20))
    assert oid == 1 and warnings == []
    r1 = pipe.process(frame(1))
    (obj,) = r1.objects
    assert (obj.id, obj.state) == (oid, TrackState.NEW)
    assert obj.bbox == (16.0, 16.0, 25.0, 25.0) and obj.last_seen_ns == 1
    assert r1.label_image.dtype == np.uint16 and set(np.unique(r1.label_image)) == {0, oid}
    r2 = pipe.process(frame(2))
    assert r2.objects[0].id == oid and r2.objects[0].state == TrackState.TRACKED
    assert np.array_equal(r2.objects[0].mask, obj.mask)       # followed by its last mask
    assert pred.calls.count(('set_image', 0)) == 2            # one encode per frame


def test_no_objects_no_encoding():
    pred = FakePredictor()
    result = Pipeline(pred, PipelineConfig()).process(frame(1))
    assert result.objects == [] and not result.label_image.any() and pred.calls == []


def test_prompts_before_the_first_image_wait_for_it():
    pred = FakePredictor()
    pipe = Pipeline(pred, PipelineConfig())
    a, _ = pipe.add_object(click(10, 10))
    b, _ = pipe.add_object(click(W + 10, 10))    # outside the (future) image: removed at binding
    result = pipe.process(frame(5))
    assert [o.id for o in result.objects] == [a]
    assert any(f'object {b} removed' in w for w in result.warnings)
    assert [o.id for o in pipe.list_objects()] == [a]


def test_prompt_on_an_older_buffered_frame_is_applied_there():
    pred = FakePredictor()
    pipe = Pipeline(pred, PipelineConfig())
    for t, v in ((1, 10), (2, 20), (3, 30)):
        pipe.remember(frame(t, v))
    oid, warnings = pipe.add_object(click(30, 30), stamp_ns=2)
    assert warnings == []
    result = pipe.process(frame(3, 30))
    assert [c for c in pred.calls if c[0] == 'set_image'] == [('set_image', 20), ('set_image', 30)]
    assert result.objects[0].id == oid and result.objects[0].mask[30, 30]


def test_prompt_for_an_unbuffered_stamp_uses_the_newest_frame_with_a_warning():
    pipe = Pipeline(FakePredictor(), PipelineConfig(ring_size=2, stamp_tolerance_ns=0))
    for t in (1, 2, 3):
        pipe.remember(frame(t))
    _, warnings = pipe.add_object(click(5, 5), stamp_ns=1)
    assert len(warnings) == 1 and 'newest frame' in warnings[0]


def test_prompt_for_a_newer_frame_waits_for_it():
    pred = FakePredictor()
    pipe = Pipeline(pred, PipelineConfig())
    pipe.remember(frame(1))
    pipe.remember(frame(2))
    pipe.add_object(click(5, 5), stamp_ns=2)
    assert pipe.process(frame(1)).objects == []
    assert len(pipe.process(frame(2)).objects) == 1


def test_update_refine_remove_reset():
    pipe = Pipeline(FakePredictor(), PipelineConfig(max_objects=2))
    pipe.remember(frame(1))
    a, _ = pipe.add_object(ObjectPrompt(text='mug', name='left'))
    assert pipe.add_object(ObjectPrompt(text='mug', name='left'))[0] == a   # same text prompt, same object
    b, _ = pipe.add_object(click(5, 5))
    with pytest.raises(PromptError, match='full'):
        pipe.add_object(click(6, 6))
    with pytest.raises(PromptError, match='no object with id 99'):
        pipe.add_object(click(6, 6), object_id=99)
    assert pipe.add_object(click(40, 40), object_id=b)[0] == b
    pipe.process(frame(1))
    pipe.add_object(click(30, 30, positive=False), object_id=b, refine=True)
    refined = {o.id: o.prompt for o in pipe.list_objects()}[b]
    assert refined.mask is not None and refined.mask[40, 40] and refined.point_labels.tolist() == [False]
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
    pipe = Pipeline(FakePredictor(), PipelineConfig())
    good, _ = pipe.add_object(ObjectPrompt(text='mug'))
    bad, _ = pipe.add_object(ObjectPrompt(text='boom'))
    result = pipe.process(frame(1))
    assert [o.id for o in result.objects] == [good]
    assert any(f'object {bad}' in w and 'boom' in w for w in result.warnings)
    assert [o.id for o in pipe.list_objects()] == [good]


def test_lost_object_keeps_id_and_last_box():
    pred = FakePredictor()
    pipe = Pipeline(pred, PipelineConfig(object_threshold=0.5))
    oid, _ = pipe.add_object(click(10, 10))
    first = pipe.process(frame(1)).objects[0]
    pred.predict = lambda prompts, prev_mask=None: SimpleNamespace(
        masks=np.zeros((len(prompts), H, W), bool), confidence=np.zeros(len(prompts), np.float32), labels=[''])
    lost = pipe.process(frame(2)).objects[0]
    assert (lost.id, lost.state, lost.bbox, lost.last_seen_ns) == (oid, TrackState.LOST, first.bbox, 1)
    assert not lost.mask.any()


def test_modes_and_everything_ids():
    segs = [segment('cup', 0.9, slice(0, 5)), segment('table', 0.8, slice(30, 40)), segment('cup', 0.2, slice(10, 12))]
    pred = FakePredictor(segs)
    pipe = Pipeline(pred, PipelineConfig(mode=Mode.EVERYTHING, vocabulary=('cup', 'table'), overlay=True))
    pipe.add_object(ObjectPrompt(text='a mug on the table'))   # row 18, clear of the segments
    r1 = pipe.process(frame(1))
    assert [o.label for o in r1.objects] == ['cup', 'table']          # low score dropped, no prompted objects
    assert not any(c[0] == 'predict' for c in pred.calls)
    assert r1.overlay.shape == (H, W, 3) and r1.overlay.dtype == np.uint8
    r2 = pipe.process(frame(2))
    assert [o.id for o in r2.objects] == [o.id for o in r1.objects]   # same segments, same ids
    pipe.config = PipelineConfig(mode='both', vocabulary=('cup', 'table'))
    r3 = pipe.process(frame(3))
    ids = [o.id for o in r3.objects]
    assert len(set(ids)) == len(ids) == 3 and r3.objects[0].label == 'a mug on the table'
    assert set(np.unique(r3.label_image)) == {0, *ids}
    pipe.config = PipelineConfig(mode='prompted')
    assert [o.label for o in pipe.process(frame(4)).objects] == ['a mug on the table']


def test_segment_ids_reuse_only_on_overlap_and_label():
    ids = SegmentIds()
    counter = iter(range(100, 200))
    take = lambda used: next(counter)  # noqa: E731
    a = ids.assign([segment('cup', 1, slice(0, 10))], take, set())
    assert ids.assign([segment('cup', 1, slice(1, 10))], take, set()) == a
    assert ids.assign([segment('bowl', 1, slice(1, 10))], take, set()) != a


def test_merge_prompts_concatenates_inputs():
    merged = merge_prompts(click(1, 1), ObjectPrompt(text='mug', points=np.array([[2, 2]]),
                                                     point_labels=np.array([False])))
    assert merged.points.tolist() == [[1, 1], [2, 2]] and merged.point_labels.tolist() == [True, False]
    assert merged.text == 'mug'


def test_mask_bbox():
    m = np.zeros((5, 6), bool)
    assert mask_bbox(m) == (0, 0, 0, 0)
    m[1:3, 2:5] = True
    assert mask_bbox(m) == (2, 1, 5, 3)


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

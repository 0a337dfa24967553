"""Validation at the boundary: every malformed or oversized message is a rejection naming its field,
never a crash, a stall or a gigabyte allocation; the entry-point guard, the prompt rate and the
receive statistics of the node."""
import array
import struct
import time
import zlib

import numpy as np
import pytest
from geometry_msgs.msg import Point
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from seem_ros.geometry.depth3d import CameraIntrinsics, depth_to_metres
from seem_ros.msg import BoundingBox2D, Polyline, Prompt
from seem_ros.pipeline import fit_prompt
from seem_ros.prompts import InputLimits, ObjectPrompt, PromptError, ReferencePatch, check_prompt
from seem_ros.ros import conversions as conv
from seem_ros.ros.guard import EntryGuard, KeyedThrottle, SourceRate, clip_text, service_failure
from seem_ros.ros.input_stats import InputStats

NAN, INF = float('nan'), float('inf')


def mono(pixels):
    return conv.numpy_to_image(np.asarray(pixels, np.uint8), 'mono8', Header())


def rgb_image(h, w):
    return conv.numpy_to_image(np.zeros((h, w, 3), np.uint8), 'rgb8', Header())


def png_header_claiming(width, height):
    """A few bytes of PNG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind, payload):
        return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 4096)))


def box(x0, y0, x1, y1):
    return BoundingBox2D(x_min=x0, y_min=y0, x_max=x1, y_max=y1)


@pytest.mark.parametrize('msg, field', [
    (Prompt(points=[Point(x=NAN, y=1.0)]), r'points\[0\]: nan is not a finite int32'),
    (Prompt(points=[Point(x=1.0, y=INF)]), r'points\[0\]: inf'),
    (Prompt(points=[Point(x=3e9, y=1.0)]), r'points\[0\]: 3e\+09 is not a finite int32'),
    (Prompt(points=[Point(x=1.0, y=1.0)] * 2, point_labels=[True]), '2 points but 1 point_labels'),
    (Prompt(boxes=[box(5.0, 0.0, 1.0, 4.0)]), r'boxes\[0\]: min > max'),
    (Prompt(boxes=[box(0.0, 0.0, NAN, 4.0)]), r'boxes\[0\]: nan'),
    (Prompt(scribbles=[Polyline(points=[Point(x=NAN, y=0.0)])]), r'scribbles\[0\].points\[0\]'),
    (Prompt(mask=mono(np.zeros((4, 4)))), 'mask is empty'),
    (Prompt(reference_image=rgb_image(6, 8), reference_box=box(0.0, 0.0, INF, 3.0)), r'reference_box\[0\]: inf'),
    (Prompt(reference_image=rgb_image(6, 8), reference_box=box(-5.0, -5.0, -1.0, -1.0)), 'covers no pixel'),
    (Prompt(reference_image=rgb_image(6, 8), reference_box=box(4.0, 4.0, 1.0, 1.0)), r'reference_box\[0\]: min > max'),
    (Prompt(reference_image=rgb_image(6, 8), reference_mask=mono(np.zeros((6, 8)))), 'reference mask is empty'),
    (Prompt(text='x' * 3000), "word 'xxxx.*alone exceeds 77 tokens"),
    (Prompt(text='a ' * 3000), 'text of 6000 characters exceeds 4096'),
    (Prompt(points=[Point(x=1.0, y=1.0)] * 5000), r'points: 5000 entries, at most 4096'),
    (Prompt(reference_image=rgb_image(1, 100)), 'aspect ratio over 8'),
])
def test_malformed_prompt_fields_are_rejected_by_name(msg, field):
    with pytest.raises(PromptError, match=field):
        conv.prompt_from_msg(msg)


def test_a_reference_box_selects_its_pixels_and_the_zero_box_the_whole_image():
    prompt, _ = conv.prompt_from_msg(Prompt(reference_image=rgb_image(6, 8), reference_box=box(-3.0, 1.0, 2.0, 30.0)))
    assert prompt.reference.mask.sum() == 2 * 5 and prompt.reference.mask[1:, :2].all()
    prompt, _ = conv.prompt_from_msg(Prompt(reference_image=rgb_image(6, 8)))
    assert prompt.reference.mask.all()


def test_texts_over_their_limits_are_rejected_fast_and_never_echoed():
    start = time.monotonic()
    with pytest.raises(PromptError, match=r'text of 1000000 characters exceeds 4096 \(limits.max_text_chars\)'):
        conv.text_to_prompts('a,' * 500000)
    with pytest.raises(PromptError, match=r'17 comma-separated objects in one text, at most 16'):
        conv.text_to_prompts(','.join(['mug'] * 17))
    assert time.monotonic() - start < 1.0
    prompts, _ = conv.text_to_prompts(','.join(['mug'] * 3), InputLimits(max_text_items=3))
    assert [p.text for p in prompts] == ['mug'] * 3
    with pytest.raises(PromptError) as info:
        conv.text_to_prompts(' \x1b\x07\t ')
    assert '\x1b' not in str(info.value) and '\\x1b' in str(info.value)
    assert conv.text_to_prompts('the \x1b[31mred\x00 mug')[0][0].text == 'the [31mred mug'
    assert clip_text('\x00' + 'y' * 1000, 10) == '\\x00yyyyyy... (1001 characters)'


@pytest.mark.parametrize('h, w, reason', [(1, 10000, 'aspect ratio over 8'), (9, 1, 'aspect ratio over 8'),
                                          (6000, 6000, '36000000 pixels, more than the limit 33177600')])
def test_images_over_the_limits_are_refused_before_any_allocation(h, w, reason):
    msg = Image(height=h, width=w, encoding='rgb8', step=3 * w, data=array.array('B', bytes(3)))
    with pytest.raises(conv.ImageError, match=reason):
        conv.image_to_rgb(msg)


def test_a_compressed_image_claiming_a_huge_size_is_refused_from_its_header():
    for width, height, reason in ((20000, 20000, 'Image size \\(400000000 pixels\\) exceeds limit'),
                                  (7000, 5000, 'image is 7000x5000 = 35000000 pixels')):
        msg = CompressedImage(format='png', data=array.array('B', png_header_claiming(width, height)))
        with pytest.raises(conv.ImageError, match=reason):
            conv.compressed_to_rgb(msg)
    with pytest.raises(conv.ImageError, match='cannot decode compressed image'):
        conv.compressed_to_rgb(CompressedImage(format='jpeg', data=array.array('B', b'\xff\xd8garbage')))


def test_accepted_prompts_are_usable_on_the_model_input():
    scribble_outside = ObjectPrompt(scribbles=[np.array([[700.0, 10.0], [800.0, 20.0]], np.float32)],
                                    boxes=np.array([[10, 10, 50, 50]], np.float32))
    fitted, warnings = fit_prompt(scribble_outside, (480, 640))
    assert fitted.scribbles == () and warnings == ['scribble lies wholly outside the 640x480 image: dropped']
    with pytest.raises(PromptError, match='nothing positive'):
        fit_prompt(ObjectPrompt(scribbles=[np.array([[-5.0, -5.0]], np.float32)]), (480, 640))
    thin = ObjectPrompt(boxes=np.array([[100.0, 100.0, 100.4, 300.0]], np.float32))
    with pytest.raises(PromptError, match='covers no pixel centre'):
        fit_prompt(thin, (480, 640), short_side=120)
    tiny = ObjectPrompt(points=np.array([[1500.0, 1200.0]], np.float32), point_labels=np.array([True]))
    with pytest.raises(PromptError, match='vanishes'):
        fit_prompt(tiny, (3000, 4000), short_side=32)
    assert fit_prompt(tiny, (3000, 4000))[0] is not None                   # at its own size
    patch = ReferencePatch(np.zeros((3000, 4000, 3), np.uint8), np.zeros((3000, 4000), bool))
    patch.mask[1500, 2000] = True
    with pytest.raises(PromptError, match='vanishes'):
        fit_prompt(ObjectPrompt(reference=patch), (480, 640), short_side=32)


def test_check_prompt_checks_objects_from_every_source():
    check_prompt(ObjectPrompt(text='the mug', points=np.array([[1.0, 2.0]]), point_labels=np.array([True])))
    with pytest.raises(PromptError, match='polygons\\[0\\] has 2 points'):
        check_prompt(ObjectPrompt(polygons=[np.zeros((2, 2), np.float32)]))
    with pytest.raises(PromptError, match='reference image must be a non-empty'):
        check_prompt(ObjectPrompt(reference=ReferencePatch(np.zeros((4, 4), np.uint8), np.ones((4, 4), bool))))


def test_labels_of_unnamed_objects_name_their_inputs():
    assert ObjectPrompt(points=np.array([[1.0, 2.0]]), point_labels=np.array([True])).default_label == 'click'
    assert ObjectPrompt(boxes=np.array([[0, 0, 2, 2]]), points=np.array([[1.0, 1.0]]),
                        point_labels=np.array([True])).default_label == 'box+click'
    assert ObjectPrompt(text='the mug', boxes=np.array([[0, 0, 2, 2]])).default_label == 'the mug'
    patch = ReferencePatch(np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), bool))
    assert ObjectPrompt(reference=patch).default_label == 'referring patch'


# ------------------------------------------------------------------------------- depth and camera info
@pytest.mark.parametrize('k, width, height, reason', [
    ([1e-30, 0, 320, 0, 1e-30, 240, 0, 0, 1], 640, 480, 'not physical'),
    ([500, 0, 1e9, 0, 500, 240, 0, 0, 1], 640, 480, 'principal point'),
    ([500, 0, 320, 0, 500, 240, 0, 0, 1], 64, 48, 'principal point'),          # size disagrees with K
    ([5e6, 0, 320, 0, 5e6, 240, 0, 0, 1], 640, 480, 'not physical'),
])
def test_camera_info_outside_physical_bounds_is_rejected(k, width, height, reason):
    with pytest.raises(ValueError, match=reason):
        CameraIntrinsics.from_matrix(k, width, height)
    CameraIntrinsics.from_matrix([500, 0, 320, 0, 500, 240, 0, 0, 1], 640, 480)


def test_depth_nearer_than_a_centimetre_is_invalid():
    metres = depth_to_metres(np.array([[1e-42, 0.005, 0.5, 20.0]], np.float32), '32FC1', max_depth=10.0)
    assert np.isnan(metres[0, [0, 1, 3]]).all() and metres[0, 2] == np.float32(0.5)


# ------------------------------------------------------------------------------- guard, rate, stats
class Logger:
    def __init__(self):
        self.lines = []

    def error(self, text):
        self.lines.append(text)


def test_the_guard_reports_counts_and_answers_every_exception_once_per_cause():
    logger = Logger()
    guard = EntryGuard(logger, KeyedThrottle(period=60.0))

    class Response:
        success, message = True, ''

    def broken(request, response):
        raise OverflowError('cannot convert float infinity to integer')

    service = guard('service ~/set_object', broken, service_failure)
    for _ in range(3):
        answer = service(None, Response())
        assert answer.success is False and 'OverflowError: cannot convert float infinity' in answer.message
    topic = guard('topic ~/text', lambda msg: 1 / 0)
    assert topic('x') is None
    assert guard.errors == {'service ~/set_object': 3, 'topic ~/text': 1} and guard.total() == 4
    assert len(logger.lines) == 2 and 'the node keeps serving' in logger.lines[0]
    assert guard.last_error == 'topic ~/text: ZeroDivisionError: division by zero'
    assert guard('again', service) is service                  # wrapping twice changes nothing
    assert guard('ok', lambda x: x + 1)(1) == 2


def test_the_prompt_rate_is_per_source():
    rate = SourceRate(5.0)
    admitted = [rate('~/click') for _ in range(20)]
    assert sum(admitted) == 5 and rate('~/text')
    time.sleep(0.25)
    assert rate('~/click')


def test_input_stats_count_stamp_gaps_as_missing_frames():
    stats = InputStats()
    period = 33_333_333
    stamps = [k * period for k in range(50) if k not in (10, 11, 30)]   # 3 frames lost in transport
    for stamp in stamps:
        stats.add(stamp)
    report = stats.report()
    assert report['received'] == 47 and report['missing'] == 3 and report['rate_hz'] > 0
    assert stats.report()['rate_hz'] == 0.0

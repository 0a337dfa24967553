"""Image and prompt message conversions: encodings, padded rows, byte order, bad input."""
import array

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import Point, Point32
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from seem_ros.mask_codec import CompactMask
from seem_ros.msg import BoundingBox2D, Polyline, Prompt
from seem_ros.geometry import ObjectGeometry, depth_to_metres
from seem_ros.pipeline import Frame, FrameResult, TrackOutput, TrackState
from seem_ros.prompts import ObjectPrompt, PromptError
from seem_ros.ros import conversions as conv

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def raw_image(pixels, encoding, pad=0, bigendian=False):
    """An Image of ``pixels`` with ``pad`` garbage bytes after every row."""
    pixels = np.asarray(pixels)
    dtype = pixels.dtype.newbyteorder('>' if bigendian else '<')
    rows = np.ascontiguousarray(pixels.astype(dtype)).view(np.uint8).reshape(pixels.shape[0], -1)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=int(bigendian),
                 step=padded.shape[1], data=array.array('B', padded.tobytes()))


COLOR_CASES = {
    'rgb8': lambda rgb: rgb,
    'bgr8': lambda rgb: rgb[:, :, ::-1],
    'rgba8': lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
    'bgra8': lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 9, np.uint8)]),
}


@pytest.mark.parametrize('pad', [0, 3, 16])
@pytest.mark.parametrize('encoding', sorted(COLOR_CASES))
def test_color_encodings_with_padded_rows(encoding, pad):
    msg = raw_image(COLOR_CASES[encoding](RGB), encoding, pad)
    assert np.array_equal(conv.image_to_rgb(msg), RGB)


@pytest.mark.parametrize('pad', [0, 5])
def test_mono8_becomes_grey_rgb(pad):
    grey = RGB[:, :, 0]
    out = conv.image_to_rgb(raw_image(grey, 'mono8', pad))
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[:, :, c], grey) for c in range(3))


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('encoding,dtype', [('mono16', np.uint16), ('16UC1', np.uint16), ('32FC1', np.float32)])
def test_wide_encodings_padding_and_byte_order(encoding, dtype, bigendian):
    pixels = (RNG.random((4, 6)) * 5000).astype(dtype)
    out = conv.image_to_numpy(raw_image(pixels, encoding, pad=2, bigendian=bigendian))
    assert out.dtype == dtype and np.array_equal(out, pixels)


def test_depth_images_to_metres():
    """What the node does with a depth message: its pixels (padding, byte order) to metres."""
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    out = depth_to_metres(conv.image_to_numpy(raw_image(mm, '16UC1', pad=4)), '16UC1', max_depth=10.0)
    assert np.isnan(out[0, 0]) and out[0, 1] == pytest.approx(1.0) and out[1, 0] == pytest.approx(2.5)
    assert np.isnan(out[1, 1])                                  # 65.5 m > max_depth
    metres = np.array([[1.5, 0], [-1, np.nan]], np.float32)
    out = depth_to_metres(conv.image_to_numpy(raw_image(metres, '32FC1', bigendian=True)), '32FC1')
    assert out[0, 0] == pytest.approx(1.5) and np.isnan(out[0, 1]) and np.isnan(out[1]).all()
    with pytest.raises(ValueError, match="unsupported depth encoding 'rgb8'"):
        depth_to_metres(conv.image_to_numpy(raw_image(RGB, 'rgb8')), 'rgb8')


@pytest.mark.parametrize('mutate,match', [
    (lambda m: setattr(m, 'encoding', 'yuv422'), "unsupported colour image encoding 'yuv422'"),
    (lambda m: setattr(m, 'encoding', '32FC1'), "unsupported colour image encoding '32FC1'"),
    (lambda m: (setattr(m, 'width', 0), setattr(m, 'height', 0)), 'zero-size image'),
    (lambda m: setattr(m, 'data', m.data[:-10]), 'truncated image data'),
    (lambda m: setattr(m, 'step', 7), 'step 7 is shorter than a row'),
])
def test_bad_images_raise_naming_the_problem(mutate, match):
    msg = raw_image(RGB, 'rgb8')
    mutate(msg)
    with pytest.raises(conv.ImageError, match=match):
        conv.image_to_rgb(msg)


def test_compressed_png_and_jpeg():
    ok, png = cv2.imencode('.png', cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format='png', data=array.array('B', png.tobytes()))
    assert np.array_equal(conv.compressed_to_rgb(msg), RGB)
    flat = np.zeros((16, 16, 3), np.uint8)
    flat[:] = (200, 30, 90)
    ok, jpg = cv2.imencode('.jpg', cv2.cvtColor(flat, cv2.COLOR_RGB2BGR))
    out = conv.compressed_to_rgb(CompressedImage(format='jpeg', data=array.array('B', jpg.tobytes())))
    assert np.abs(out.astype(int) - flat).max() <= 3
    with pytest.raises(conv.ImageError, match='cannot decode'):
        conv.compressed_to_rgb(CompressedImage(format='jpeg', data=array.array('B', b'not a jpeg')))


def test_numpy_to_image_roundtrip():
    header = Header(frame_id='cam')
    labels = np.array([[0, 1], [300, 65535]], np.uint16)
    msg = conv.numpy_to_image(labels, 'mono16', header)
    assert (msg.encoding, msg.step, msg.is_bigendian, msg.header.frame_id) == ('mono16', 4, 0, 'cam')
    assert np.array_equal(conv.image_to_numpy(msg), labels)
    assert np.array_equal(conv.image_to_rgb(conv.numpy_to_image(RGB, 'rgb8', header)), RGB)
    with pytest.raises(conv.ImageError):
        conv.numpy_to_image(labels, 'rgb8', header)


def test_stamp_conversions():
    stamp = conv.ns_to_stamp(12_345_678_901)
    assert (stamp.sec, stamp.nanosec) == (12, 345_678_901) and conv.stamp_to_ns(stamp) == 12_345_678_901


def test_text_prompts_split_and_truncate():
    prompts, warnings = conv.text_to_prompts(' the red mug ,, bottle ')
    assert [p.text for p in prompts] == ['the red mug', 'bottle'] and warnings == []
    with pytest.raises(PromptError, match='empty text'):
        conv.text_to_prompts(' , ')
    long_text = ' '.join(['word'] * 100)
    (prompt,), warnings = conv.text_to_prompts(long_text)
    assert conv.count_tokens(prompt.text) <= conv.MAX_TEXT_TOKENS < conv.count_tokens(long_text)
    assert len(warnings) == 1 and 'truncated' in warnings[0]


def test_point_to_prompt():
    prompt = conv.point_to_prompt(Point(x=12.5, y=3.0, z=0.0))
    assert prompt.points.tolist() == [[12.5, 3.0]] and prompt.point_labels.tolist() == [True]


def mono8(mask):
    return raw_image(np.asarray(mask, np.uint8) * 255, 'mono8')


def test_prompt_message_roundtrip():
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:4] = True
    msg = Prompt(object_id=4, object_name='mug', text='the mug',
                 points=[Point(x=1.0, y=2.0), Point(x=3.0, y=4.0)], point_labels=[True, False],
                 boxes=[BoundingBox2D(x_min=0.0, y_min=1.0, x_max=4.0, y_max=5.0)],
                 scribbles=[Polyline(points=[Point32(x=0.0, y=0.0), Point32(x=2.0, y=2.0)], closed=False),
                            Polyline(points=[Point32(x=0.0, y=0.0), Point32(x=4.0, y=0.0), Point32(x=0.0, y=4.0)],
                                     closed=True)],
                 mask=mono8(mask), negative_mask=mono8(~mask),
                 reference_image=raw_image(RGB, 'bgr8'),
                 reference_box=BoundingBox2D(x_min=1.0, y_min=1.0, x_max=3.0, y_max=2.0))
    prompt, warnings = conv.prompt_from_msg(msg)
    assert warnings == [] and prompt.name == 'mug' and prompt.text == 'the mug'
    assert prompt.point_labels.tolist() == [True, False] and prompt.boxes.tolist() == [[0, 1, 4, 5]]
    assert len(prompt.scribbles) == 1 and len(prompt.polygons) == 1
    assert np.array_equal(prompt.mask, mask) and np.array_equal(prompt.negative_mask, ~mask)
    assert np.array_equal(prompt.reference.image, RGB[:, :, ::-1]) and prompt.reference.mask.sum() == 2
    back, _ = conv.prompt_from_msg(conv.prompt_to_msg(prompt, 4))
    assert back.points.tolist() == prompt.points.tolist() and np.array_equal(back.mask, mask)
    assert len(back.polygons) == 1 and np.array_equal(back.reference.mask, prompt.reference.mask)


def test_prompt_message_defaults_and_errors():
    prompt, _ = conv.prompt_from_msg(Prompt(points=[Point(x=1.0, y=1.0)]))
    assert prompt.point_labels.tolist() == [True]       # empty labels: all positive
    with pytest.raises(PromptError, match='2 points but 1 point_labels'):
        conv.prompt_from_msg(Prompt(points=[Point(), Point()], point_labels=[True]))
    with pytest.raises(PromptError, match="mask must be mono8, got 'rgb8'"):
        conv.prompt_from_msg(Prompt(mask=raw_image(RGB, 'rgb8')))
    with pytest.raises(PromptError, match='polygon needs 3'):
        conv.prompt_from_msg(Prompt(scribbles=[Polyline(points=[Point32()], closed=True)]))
    with pytest.raises(PromptError, match='reference_mask is 2x2 but reference_image is 7x5'):
        conv.prompt_from_msg(Prompt(reference_image=raw_image(RGB, 'rgb8'), reference_mask=mono8(np.ones((2, 2)))))
    whole, _ = conv.prompt_from_msg(Prompt(reference_image=raw_image(RGB, 'rgb8')))
    assert whole.reference.image.shape == (5, 7, 3) and whole.reference.mask.all()


def test_result_to_msg_masks_decode_to_the_image_size():
    h, w = 6, 9
    mask = np.zeros((h, w), bool)
    mask[2:5, 3:7] = True
    mask[3, 4] = False
    lost = TrackOutput(5, TrackState.LOST, 'cup', 0.4, np.zeros((h, w), bool), (1.0, 1.0, 3.0, 3.0), 7,
                       ObjectPrompt(text='cup', name='c'))
    seg = TrackOutput(9, TrackState.TRACKED, 'table', 0.8, mask, (3.0, 2.0, 7.0, 5.0), 2_000_000_001)
    result = FrameResult(Frame(np.zeros((h, w, 3), np.uint8), 2_000_000_001, 'cam'), [lost, seg],
                         np.zeros((h, w), np.uint16), None, {})
    msg = conv.result_to_msg(result, Header(frame_id='cam'))
    assert not any(o.has_position for o in msg.objects)
    assert (msg.image_width, msg.image_height, msg.header.frame_id) == (w, h, 'cam')
    a, b = msg.objects
    assert (a.id, a.state, a.prompt_id, a.prompt_name, a.mask_width) == (5, TrackState.LOST, 5, 'c', 0)
    assert (a.bbox.x_min, a.bbox.x_max) == (1.0, 3.0)
    assert (b.id, b.prompt_id, b.last_seen.sec, b.last_seen.nanosec) == (9, 0, 2, 1)
    decoded = CompactMask(b.mask_x_offset, b.mask_y_offset, b.mask_width, b.mask_height,
                          np.array(b.mask_rle)).to_mask(h, w)
    assert np.array_equal(decoded, mask)
    assert (b.bbox.x_min, b.bbox.y_min, b.bbox.x_max, b.bbox.y_max) == (3.0, 2.0, 7.0, 5.0)



def test_result_to_msg_fills_the_3d_fields():
    h, w = 4, 4
    mask = np.ones((h, w), bool)
    result = FrameResult(Frame(np.zeros((h, w, 3), np.uint8), 1, 'cam'),
                         [TrackOutput(i, TrackState.TRACKED, 'x', 0.9, mask, (0.0, 0.0, 4.0, 4.0), 1)
                          for i in (1, 2, 3)],
                         np.ones((h, w), np.uint16), None, {})
    good = ObjectGeometry(np.array([0.1, -0.2, 1.5]), np.array([0.2, 0.3, 0.1]), np.array([0.1, -0.2, 1.5]), 40, True)
    empty = ObjectGeometry(np.full(3, np.nan), np.full(3, np.nan), np.full(3, np.nan), 0, False)
    a, b, c = conv.result_to_msg(result, Header(), [good, empty, None]).objects
    assert a.has_position and a.position_valid and a.num_points == 40
    assert (a.centroid.x, a.centroid.y, a.centroid.z) == pytest.approx((0.1, -0.2, 1.5))
    assert (a.extent.x, a.extent.y, a.extent.z) == pytest.approx((0.2, 0.3, 0.1))
    assert b.has_position and not b.position_valid and b.num_points == 0 and np.isnan(b.centroid.z)
    assert not c.has_position

"""Every seem_ros message and service crosses real DDS between two processes.

This process publishes each message type and calls each service; interface_peer.py, a separate
process, echoes the messages back and serves the services. Isolation: test/conftest.py.
"""
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Point32, Vector3
from sensor_msgs.msg import Image
from std_msgs.msg import Header

try:
    from seem_ros.msg import BoundingBox2D, Polyline, Prompt, TrackedObject, TrackedObjectArray
    from seem_ros.srv import ListObjects, RemoveObject, Reset, SetObject
except ImportError as exc:
    pytest.fail(f'the seem_ros interfaces are not built or not importable ({exc}); run `make setup`',
                pytrace=False)

from interface_peer import MESSAGES
from ros_helpers import PythonProcess, call, ros_node, spin_until
from seem_ros.mask_codec import CompactMask

PEER = Path(__file__).with_name('interface_peer.py')
HEADER = Header(stamp=Time(sec=1700000000, nanosec=123456789), frame_id='camera_color_optical_frame')


def mono8(mask):
    """A sensor_msgs/Image (mono8, 255 = set) of a (H, W) bool mask."""
    h, w = mask.shape
    return Image(header=HEADER, height=h, width=w, encoding='mono8', step=w,
                 data=(mask.astype(np.uint8) * 255).tobytes())


def object_mask():
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:41] = True
    mask[15:20, 25:30] = False  # a hole, which contour-polygon formats lose
    return mask


def sample_prompt():
    """A prompt with every field set: an rqt_image_view click, text, a box, strokes, masks, a patch."""
    mask = object_mask()
    ref = np.zeros((8, 10, 3), np.uint8)
    ref[..., 0] = np.arange(10, dtype=np.uint8) * 20
    return Prompt(
        header=HEADER, object_id=0, object_name='mug_left', mode=Prompt.REPLACE, text='the red mug',
        points=[Point(x=30.0, y=20.0, z=0.0), Point(x=5.5, y=40.25, z=0.0)], point_labels=[True, False],
        boxes=[BoundingBox2D(x_min=20.0, y_min=10.0, x_max=41.0, y_max=30.0)],
        scribbles=[Polyline(points=[Point32(x=22.0, y=12.0), Point32(x=38.0, y=27.0)], closed=False),
                   Polyline(points=[Point32(x=21.0, y=11.0), Point32(x=40.0, y=11.0), Point32(x=30.0, y=29.0)],
                            closed=True)],
        mask=mono8(mask), negative_mask=mono8(~mask),
        reference_image=Image(header=HEADER, height=8, width=10, encoding='rgb8', step=30, data=ref.tobytes()),
        reference_mask=mono8(np.eye(8, 10, dtype=bool)),
        reference_box=BoundingBox2D(x_min=1.0, y_min=2.0, x_max=7.0, y_max=8.0))


def sample_tracked_object():
    compact = CompactMask.from_mask(object_mask())
    x0, y0, x1, y1 = compact.bbox
    return TrackedObject(
        id=7, label='the red mug', score=0.875, state=TrackedObject.TRACKED,
        last_seen=HEADER.stamp, prompt_id=3, prompt_name='mug_left',
        bbox=BoundingBox2D(x_min=float(x0), y_min=float(y0), x_max=float(x1), y_max=float(y1)),
        mask_x_offset=compact.x_offset, mask_y_offset=compact.y_offset,
        mask_width=compact.width, mask_height=compact.height, mask_rle=compact.counts.tolist(),
        has_position=True, position_valid=True, centroid=Point(x=0.1, y=-0.05, z=0.62),
        extent=Vector3(x=0.08, y=0.1, z=0.07), num_points=412)


SAMPLES = {
    'bounding_box': lambda: BoundingBox2D(x_min=1.5, y_min=2.0, x_max=10.0, y_max=20.25),
    'polyline': lambda: Polyline(points=[Point32(x=1.0, y=2.0), Point32(x=3.5, y=4.5)], closed=True),
    'prompt': sample_prompt,
    'tracked_object': sample_tracked_object,
    'tracked_objects': lambda: TrackedObjectArray(
        header=HEADER, image_width=64, image_height=48,
        objects=[sample_tracked_object(), TrackedObject(id=9, label='cup', state=TrackedObject.LOST)]),
}


@pytest.fixture(scope='module')
def peer(ros_namespace, tmp_path_factory):
    process = PythonProcess(PEER, ros_namespace, log_path=tmp_path_factory.mktemp('peer') / 'peer.log')
    yield process
    assert process.stop() == 0, f'the peer process failed:\n{process.log()}'


@pytest.fixture(scope='module')
def node(ros_namespace):
    with ros_node('interface_test', ros_namespace) as node:
        yield node


def test_every_message_type_is_tested():
    assert set(SAMPLES) == set(MESSAGES)


@pytest.mark.parametrize('name', sorted(MESSAGES))
def test_message_round_trip_through_another_process(peer, node, name):
    msg_type, sent = MESSAGES[name], SAMPLES[name]()
    received = []
    sub = node.create_subscription(msg_type, f'echo/{name}', received.append, 10)
    pub = node.create_publisher(msg_type, name, 10)
    try:
        spin_until(node, lambda: pub.get_subscription_count() > 0, 30, f'the peer to subscribe to {name}')
        spin_until(node, lambda: received, 30, f'the echo of {name}', on_idle=lambda: pub.publish(sent))
    finally:
        node.destroy_subscription(sub)
        node.destroy_publisher(pub)
    assert received[0] == sent


def test_tracked_object_mask_decodes_after_the_round_trip(peer, node):
    received = []
    sub = node.create_subscription(TrackedObjectArray, 'echo/tracked_objects', received.append, 10)
    pub = node.create_publisher(TrackedObjectArray, 'tracked_objects', 10)
    sent = SAMPLES['tracked_objects']()
    spin_until(node, lambda: received, 30, 'the echo of tracked_objects', on_idle=lambda: pub.publish(sent))
    node.destroy_subscription(sub)
    node.destroy_publisher(pub)
    array = received[0]
    obj = array.objects[0]
    compact = CompactMask(obj.mask_x_offset, obj.mask_y_offset, obj.mask_width, obj.mask_height,
                          np.asarray(obj.mask_rle))
    np.testing.assert_array_equal(compact.to_mask(array.image_height, array.image_width), object_mask())
    lost = array.objects[1]
    assert (lost.state, lost.mask_width, len(lost.mask_rle)) == (TrackedObject.LOST, 0, 0)


def test_services_add_list_remove_reset(peer, node):
    clients = {name: node.create_client(srv, name) for name, srv in
               [('set_object', SetObject), ('list_objects', ListObjects),
                ('remove_object', RemoveObject), ('reset', Reset)]}
    prompt = sample_prompt()

    added = call(node, clients['set_object'], SetObject.Request(prompt=prompt))
    assert added.success and added.object_id > 0, added.message
    second = call(node, clients['set_object'], SetObject.Request(prompt=Prompt(text='a bottle')))
    assert second.success and second.object_id not in (0, added.object_id)
    refined = call(node, clients['set_object'], SetObject.Request(
        prompt=Prompt(object_id=second.object_id, mode=Prompt.REFINE, text='the green bottle')))
    assert (refined.success, refined.object_id) == (True, second.object_id)
    unknown = call(node, clients['set_object'], SetObject.Request(prompt=Prompt(object_id=999)))
    assert not unknown.success and unknown.object_id == 0

    listed = call(node, clients['list_objects'], ListObjects.Request()).objects
    prompt.object_id = added.object_id
    assert listed[0] == prompt
    assert [p.object_id for p in listed] == [added.object_id, second.object_id]
    assert listed[1].text == 'the green bottle'

    assert call(node, clients['remove_object'], RemoveObject.Request(object_name='mug_left')).success
    assert not call(node, clients['remove_object'], RemoveObject.Request(object_id=added.object_id)).success
    assert call(node, clients['reset'], Reset.Request()).success
    assert list(call(node, clients['list_objects'], ListObjects.Request()).objects) == []

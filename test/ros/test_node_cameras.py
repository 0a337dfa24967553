"""Two cameras in one node over real DDS, with the shipped model: ``-p cameras:=[left, right]``.

Two different generated scenes (640x480) are published on ``left/image`` and ``right/image``,
left flooding the node with images while right sends one now and then. Checks: each camera's own
outputs (``~/left/objects``, ``~/right/label_image``, ...) with only the object clicked on that
camera, found with a mask there; ids unique across cameras; every image of the slow camera is
processed although the fast one always has a newer image waiting (round-robin); one diagnostics status per camera; the
services' camera names (a new object needs one, an id finds its camera, reset of one camera
keeps the other's objects). That each camera's masks equal a single-camera session's on the
same frames is checked without DDS in ``test/unit/test_session.py``.
"""
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ros_helpers import NodeProcess, call, ros_node, spin_until
from seem_ros.msg import Prompt, TrackedObjectArray
from seem_ros.ros.conversions import ns_to_stamp
from seem_ros.scenes import build_scene, render_frame
from seem_ros.srv import ListObjects, RemoveObject, Reset, SetObject

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / 'models' / 'seem_tiny.pt'
W, H, FRAMES = 640, 480, 10
TIMEOUT = 120.0
QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason='the shipped model is missing')


@pytest.fixture(scope='module')
def scenes():
    return {'left': build_scene('demo', 0, width=W, height=H, frames=FRAMES),
            'right': build_scene('occlusion', 3, width=W, height=H, frames=FRAMES)}


@pytest.fixture(scope='module')
def node(ros_namespace, tmp_path_factory):
    process = NodeProcess(ros_namespace, tmp_path_factory.mktemp('node') / 'node.log',
                          ros_args=['-p', 'cameras:=[left, right]', '-p', 'qos.reliability:=reliable',
                                    '-p', 'qos.depth:=5', '-p', 'publish.overlay:=false',
                                    '-p', 'diagnostics.period:=0.5'])
    yield process
    assert process.interrupt() == 0, process.log()


def image_msg(rgb, stamp_ns):
    return Image(header=Header(stamp=ns_to_stamp(stamp_ns), frame_id='camera'), height=H, width=W,
                 encoding='rgb8', step=3 * W, data=rgb.tobytes())


def test_two_cameras_one_model(node, ros_namespace, scenes):
    ns = ros_namespace
    with ros_node('cameras_test', ns) as test:
        outputs = {camera: [] for camera in scenes}
        labels, diagnostics = {}, []
        pubs = {camera: test.create_publisher(Image, f'{ns}/{camera}/image', QOS) for camera in scenes}
        for camera in scenes:
            test.create_subscription(TrackedObjectArray, f'{ns}/seem/{camera}/objects',
                                     lambda m, c=camera: outputs[c].append(m), QOS)
            test.create_subscription(Image, f'{ns}/seem/{camera}/label_image',
                                     lambda m, c=camera: labels.update({c: m}), QOS)
        test.create_subscription(DiagnosticArray, f'{ns}/seem/diagnostics', diagnostics.append, 10)
        spin_until(test, lambda: all(p.get_subscription_count() for p in pubs.values()), TIMEOUT,
                   'the node subscribed to both cameras')
        frames = {camera: [render_frame(scene, i) for i in range(FRAMES)] for camera, scene in scenes.items()}

        def publish(camera, index, stamp_ns=None):
            stamp_ns = (index + 1) * 100_000_000 if stamp_ns is None else stamp_ns
            pubs[camera].publish(image_msg(frames[camera][index].rgb, stamp_ns))

        publish('left', 0)
        publish('right', 0)
        spin_until(test, lambda: all(outputs.values()), TIMEOUT, 'a first output of each camera')

        set_object = test.create_client(SetObject, f'{ns}/seem/set_object')
        clicks = {}
        for camera in scenes:
            x, y = frames[camera][0].objects[1].center_px
            prompt = Prompt(header=Header(stamp=ns_to_stamp(100_000_000)), points=[Point(x=float(x), y=float(y))])
            reply = call(test, set_object, SetObject.Request(prompt=prompt, camera=camera))
            assert reply.success, reply.message
            clicks[camera] = reply.object_id
        assert clicks['left'] != clicks['right']                  # one id pool for both cameras
        refused = call(test, set_object, SetObject.Request(prompt=Prompt(text='a cup')))
        assert not refused.success and 'needs a camera' in refused.message and 'left, right' in refused.message
        refused = call(test, set_object, SetObject.Request(prompt=Prompt(text='a cup'), camera='middle'))
        assert not refused.success and "no camera 'middle'" in refused.message

        # left floods the node with images (more than it can process) while right sends one now
        # and then: every right image must still be processed (its turn comes after one left image)
        left_sent = 0

        def flood_left():
            nonlocal left_sent
            left_sent += 1
            publish('left', left_sent % (FRAMES - 1) + 1, (FRAMES + left_sent) * 100_000_000)   # stamps go on
        for right_index in range(1, 4):
            for _ in range(5):
                flood_left()
            publish('right', right_index)
            stamp = (right_index + 1) * 100_000_000

            def right_done(stamp=stamp):
                flood_left()
                return any(o.header.stamp.sec * 10**9 + o.header.stamp.nanosec == stamp for o in outputs['right'])
            spin_until(test, right_done, TIMEOUT, f'the output of right image {right_index} among left images')
        assert left_sent >= 18
        for camera, object_id in clicks.items():
            assert [o.id for o in outputs[camera][-1].objects] == [object_id]   # only its own camera's object
            found = [o for out in outputs[camera] for o in out.objects if o.mask_width]
            assert found and all(o.id == object_id for o in found), camera
            label = np.frombuffer(bytes(labels[camera].data), np.uint16).reshape(H, W)
            assert set(np.unique(label).tolist()) <= {0, object_id}
        spin_until(test, lambda: diagnostics and len(diagnostics[-1].status) == 2
                   and all(dict((kv.key, kv.value) for kv in s.values)['frames_processed'] != '0'
                           for s in diagnostics[-1].status), TIMEOUT, 'one diagnostics status per camera')
        assert [s.name.rsplit(' ', 1)[1] for s in diagnostics[-1].status] == ['left', 'right']

        listed = call(test, test.create_client(ListObjects, f'{ns}/seem/list_objects'), ListObjects.Request())
        assert list(zip((p.object_id for p in listed.objects), listed.cameras)) == sorted(
            (object_id, camera) for camera, object_id in clicks.items())
        reset = call(test, test.create_client(Reset, f'{ns}/seem/reset'), Reset.Request(camera='right'))
        assert reset.success
        listed = call(test, test.create_client(ListObjects, f'{ns}/seem/list_objects'),
                      ListObjects.Request(camera='left'))
        assert [p.object_id for p in listed.objects] == [clicks['left']]
        removed = call(test, test.create_client(RemoveObject, f'{ns}/seem/remove_object'),
                       RemoveObject.Request(object_id=clicks['left']))
        assert removed.success, removed.message               # found on its camera without naming it
    assert 'Traceback' not in node.log()

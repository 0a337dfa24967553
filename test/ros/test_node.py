"""The seem node as users run it: a separate process over real DDS, with a synthetic checkpoint.

The node is started with the documented command (``python -m seem_ros.ros.seem_node --ros-args
--params-file config/seem.yaml``) plus overrides for a tiny model at a small input size, with
``~/click`` remapped to ``image_mouse_left`` where rqt_image_view publishes its clicks. This
process publishes images and prompts, calls the services and drives the lifecycle; it checks the
outputs structurally (stamps, sizes, encodings, id consistency), that bad input leaves the node
serving with the problem logged, and that lifecycle cycles do not grow its memory.
"""
import array
import itertools
import re
import time

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

import ros_helpers as helpers
from ros_helpers import call, ros_node, spin_until
from seem_ros.mask_codec import CompactMask
from seem_ros.msg import BoundingBox2D, Prompt, TrackedObject, TrackedObjectArray
from seem_ros.srv import ListObjects, RemoveObject, Reset, SetObject

H, W = 48, 64
TIMEOUT = 120.0          # generous: CI machines are shared and the first inference warms up
STAMPS = itertools.count(1)
RNG = np.random.default_rng(1)
SCENE = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)


def next_stamp():
    return Time(sec=1000 + next(STAMPS), nanosec=0)


def image_msg(rgb, encoding='rgb8', pad=0, stamp=None):
    """A ``sensor_msgs/Image`` of ``rgb`` in ``encoding``, rows padded with ``pad`` garbage bytes."""
    pixels = {'rgb8': rgb, 'bgr8': rgb[:, :, ::-1], 'mono8': rgb[:, :, 0],
              'rgba8': np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
              'bgra8': np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)])}[encoding]
    rows = np.ascontiguousarray(pixels).reshape(rgb.shape[0], -1)
    rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xEE, np.uint8)], axis=1)
    return Image(header=Header(stamp=stamp or next_stamp(), frame_id='camera'), height=rgb.shape[0],
                 width=rgb.shape[1], encoding=encoding, step=rows.shape[1], data=array.array('B', rows.tobytes()))


def stamp_ns(stamp):
    return stamp.sec * 10**9 + stamp.nanosec


class NodeProcess(helpers.NodeProcess):
    """The node with a synthetic tiny checkpoint at a small input size, ``~/click`` remapped to
    ``image_mouse_left`` where rqt_image_view publishes its clicks."""

    def __init__(self, namespace, checkpoint, log_path):
        super().__init__(namespace, log_path, [
            '-r', '~/click:=image_mouse_left', '-p', f'model.checkpoint:={checkpoint}', '-p', 'model.variant:=tiny',
            '-p', 'model.short_side:=64', '-p', 'qos.reliability:=reliable', '-p', 'qos.depth:=5',
            '-p', 'pipeline.vocabulary:=[cup, table]', '-p', 'diagnostics.period:=0.5',
            # random weights: accept any mask, and keep objects that are never found
            '-p', 'tracking.min_confidence:=0.0', '-p', 'tracking.lost_timeout:=100000.0'])


class Client:
    """Publishers, subscriptions and service clients of the node's interface, in its namespace."""

    def __init__(self, node):
        self.node = node
        self.pubs = {name: node.create_publisher(t, topic, 10) for name, t, topic in [
            ('image', Image, 'image'), ('compressed', CompressedImage, 'image/compressed'), ('depth', Image, 'depth'),
            ('prompt', Prompt, 'seem/prompt'), ('text', String, 'seem/text'), ('click', Point, 'image_mouse_left'),
            ('click_stamped', PointStamped, 'seem/click_stamped')]}
        self.objects, self.labels, self.overlays, self.diagnostics = {}, {}, {}, []
        node.create_subscription(TrackedObjectArray, 'seem/objects',
                                 lambda m: self.objects.__setitem__(stamp_ns(m.header.stamp), m), 50)
        node.create_subscription(Image, 'seem/label_image',
                                 lambda m: self.labels.__setitem__(stamp_ns(m.header.stamp), m), 50)
        node.create_subscription(Image, 'seem/overlay',
                                 lambda m: self.overlays.__setitem__(stamp_ns(m.header.stamp), m), 50)
        node.create_subscription(DiagnosticArray, 'seem/diagnostics', self.diagnostics.append, 50)
        self.clients = {name: node.create_client(t, f'seem/{name}') for name, t in [
            ('set_object', SetObject), ('remove_object', RemoveObject), ('reset', Reset),
            ('list_objects', ListObjects), ('change_state', ChangeState), ('get_state', GetState),
            ('set_parameters', SetParameters)]}

    def publish(self, name, msg):
        pub = self.pubs[name]
        spin_until(self.node, lambda: pub.get_subscription_count() > 0, TIMEOUT, f'the node to subscribe to {name}')
        pub.publish(msg)

    def process(self, msg, topic='image', depth=None):
        """Publish an image (after its ``depth``) until its objects and label image come back; returns both."""
        key = stamp_ns(msg.header.stamp)

        def send():
            if depth is not None:
                self.publish('depth', depth)
            self.publish(topic, msg)
        spin_until(self.node, lambda: key in self.objects and key in self.labels, TIMEOUT,
                   f'outputs for the image stamped {key}', on_idle=send, idle_period=3.0)
        return self.objects[key], self.labels[key]

    def diagnostic_values(self):
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values} if self.diagnostics else {}

    def call(self, name, request):
        return call(self.node, self.clients[name], request, TIMEOUT)

    def state(self):
        return self.call('get_state', GetState.Request()).current_state.id

    def transition(self, transition_id):
        return self.call('change_state', ChangeState.Request(transition=Transition(id=transition_id))).success

    def set_parameters(self, **values):
        params = [Parameter(name.replace('__', '.'), value=v).to_parameter_msg() for name, v in values.items()]
        return self.call('set_parameters', SetParameters.Request(parameters=params)).results


@pytest.fixture(scope='module')
def seem(ros_namespace, checkpoint, tmp_path_factory):
    node = NodeProcess(ros_namespace, checkpoint, tmp_path_factory.mktemp('node') / 'node.log')
    yield node
    if node.proc.poll() is None:
        assert node.interrupt() == 0, f'the node did not stop cleanly on SIGINT:\n{node.log()}'


@pytest.fixture(scope='module')
def client(ros_namespace, seem):
    with ros_node('seem_test_client', ros_namespace) as node:
        yield Client(node)


def decode(array_msg, obj):
    return CompactMask(obj.mask_x_offset, obj.mask_y_offset, obj.mask_width, obj.mask_height,
                       np.asarray(obj.mask_rle)).to_mask(array_msg.image_height, array_msg.image_width)


def check_outputs(objects, label_msg, sent):
    """Matching stamps and frames, label-image format, masks of the image size, ids consistent."""
    assert objects.header == sent.header and label_msg.header == sent.header
    assert (objects.image_width, objects.image_height) == (sent.width, sent.height)
    assert (label_msg.encoding, label_msg.width, label_msg.height, label_msg.step) == ('mono16', W, H, 2 * W)
    labels = np.frombuffer(label_msg.data, '<u2').reshape(H, W)
    ids = [o.id for o in objects.objects]
    assert len(set(ids)) == len(ids) and all(1 <= i <= 65535 for i in ids)
    visible = {o.id for o in objects.objects if o.state != TrackedObject.LOST}
    assert set(np.unique(labels)) - {0} <= visible
    for obj in objects.objects:
        mask = decode(objects, obj)
        assert mask.shape == (H, W)
        assert np.all(mask[labels == obj.id]), f'label-image pixels of {obj.id} outside its mask'
        if mask.any():
            x0, y0, x1, y1 = obj.bbox.x_min, obj.bbox.y_min, obj.bbox.x_max, obj.bbox.y_max
            assert (obj.mask_x_offset, obj.mask_y_offset, obj.mask_width, obj.mask_height) == (
                x0, y0, x1 - x0, y1 - y0)
            assert 0.0 <= obj.score <= 1.0
        else:
            assert obj.state == TrackedObject.LOST
    return labels


def test_configured_and_active_on_start(client):
    spin_until(client.node, lambda: client.clients['get_state'].service_is_ready(), TIMEOUT, 'the lifecycle services')
    spin_until(client.node, lambda: client.state() == State.PRIMARY_STATE_ACTIVE, TIMEOUT, 'the active state',
               idle_period=1.0)


def test_prompts_of_every_kind_become_objects(client, seem):
    first = image_msg(SCENE)
    client.process(first)                          # the ring buffer now holds a frame
    client.publish('text', String(data='the red mug, a bottle'))
    client.publish('click', Point(x=20.0, y=15.0, z=0.0))
    client.publish('click_stamped', PointStamped(header=first.header, point=Point(x=40.0, y=30.0)))
    client.publish('prompt', Prompt(header=first.header, object_name='boxed', text='',
                                    boxes=[BoundingBox2D(x_min=5.0, y_min=5.0, x_max=30.0, y_max=25.0)],
                                    points=[Point(x=10.0, y=10.0)], point_labels=[False]))
    ref = image_msg(RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    patch = client.call('set_object', SetObject.Request(prompt=Prompt(
        object_name='patch', reference_image=ref, reference_box=BoundingBox2D(x_min=4.0, y_min=4.0,
                                                                             x_max=16.0, y_max=12.0))))
    assert patch.success and patch.object_id > 0, patch.message
    names = ['the red mug', 'a bottle', '', '', 'boxed', 'patch']
    spin_until(client.node, lambda: len(client.call('list_objects', ListObjects.Request()).objects) == len(names),
               TIMEOUT, 'six objects in the table', idle_period=1.0)
    listed = client.call('list_objects', ListObjects.Request()).objects
    assert sorted(p.object_name or p.text for p in listed) == sorted(names)
    boxed = next(p for p in listed if p.object_name == 'boxed')
    assert list(boxed.point_labels) == [False] and len(boxed.boxes) == 1

    for _ in range(2):                             # the frame that applies them, then one that follows them
        sent = image_msg(SCENE)
        objects, labels = client.process(sent)
        check_outputs(objects, labels, sent)
        assert {o.id for o in objects.objects} == {p.object_id for p in listed}
        assert {o.id: o.prompt_id for o in objects.objects} == {p.object_id: p.object_id for p in listed}
    assert next(o for o in objects.objects if o.id == patch.object_id).prompt_name == 'patch'


@pytest.mark.parametrize('encoding,pad', [('rgb8', 0), ('bgr8', 4), ('rgba8', 0), ('bgra8', 12), ('mono8', 3),
                                          ('rgb8', 64)])
def test_every_encoding_and_padded_rows(client, encoding, pad):
    sent = image_msg(SCENE, encoding, pad)
    objects, labels = client.process(sent)
    check_outputs(objects, labels, sent)


def test_overlay_and_diagnostics(client):
    sent = image_msg(SCENE)
    client.process(sent)
    key = stamp_ns(sent.header.stamp)
    spin_until(client.node, lambda: key in client.overlays, TIMEOUT, 'the overlay')
    overlay = client.overlays[key]
    assert (overlay.encoding, overlay.width, overlay.height, overlay.header) == ('rgb8', W, H, sent.header)
    for _ in range(6):                             # a burst while the model is busy: the newest wins
        client.publish('image', image_msg(SCENE))

    spin_until(client.node, lambda: int(client.diagnostic_values().get('frames_dropped', 0)) > 0, TIMEOUT,
               'dropped frames counted')
    v = client.diagnostic_values()
    assert v['backend'] == 'torch-cpu' and v['device'] == 'cpu' and float(v['latency_ms']) > 0
    assert int(v['frames_processed']) > 0


def test_bad_inputs_leave_the_node_serving(client, seem):
    good = image_msg(SCENE)
    bad_encoding = image_msg(SCENE)
    bad_encoding.encoding = 'yuv422'
    empty = image_msg(SCENE)
    empty.height = empty.width = empty.step = 0
    empty.data = array.array('B')
    truncated = image_msg(SCENE)
    truncated.data = truncated.data[:100]
    for msg in (bad_encoding, empty, truncated):
        client.publish('image', msg)
    seem.wait_for_log(r"ERROR.*unsupported colour image encoding 'yuv422'")
    seem.wait_for_log(r'ERROR.*zero-size image')
    seem.wait_for_log(r'ERROR.*truncated image data')

    client.publish('click', Point(x=5000.0, y=10.0))
    seem.wait_for_log(r'ERROR.*~/click: prompt rejected.*\(5000, 10\) lies outside the 64x48 image')
    client.publish('text', String(data='  '))
    seem.wait_for_log(r"ERROR.*~/text: prompt rejected: empty text prompt '  '")
    client.publish('text', String(data=' '.join(['mug'] * 90)))
    seem.wait_for_log(r'WARN.*~/text: text of \d+ tokens exceeds 77: truncated')
    removed = client.call('remove_object', RemoveObject.Request(object_id=4242))
    assert not removed.success and '4242' in removed.message
    seem.wait_for_log(r'ERROR.*~/remove_object: no object with id 4242')

    objects, labels = client.process(good)          # still serving
    check_outputs(objects, labels, good)
    assert seem.proc.poll() is None


def reference_prompt(box):
    """A Prompt whose object is marked by ``box`` (x0, y0, x1, y1) on a referring image."""
    return Prompt(reference_image=image_msg(SCENE),
                  reference_box=BoundingBox2D(x_min=box[0], y_min=box[1], x_max=box[2], y_max=box[3]))


def test_malformed_messages_are_rejected_naming_the_field_and_the_node_keeps_serving(client, seem):
    """One message of each kind that could crash, stall or bloat the node, or be accepted unusable."""
    inf = float('inf')
    for box, reason in (((0.0, 0.0, inf, 10.0), 'reference_box[0]: inf'), ((-inf, 0.0, 5.0, 5.0), 'reference_box'),
                        ((-5.0, -5.0, -1.0, -1.0), 'covers no pixel')):
        answer = client.call('set_object', SetObject.Request(prompt=reference_prompt(box)))
        assert not answer.success and reason in answer.message, answer.message
        client.publish('prompt', reference_prompt(box))
    seem.wait_for_log(r'ERROR.*~/prompt: prompt rejected: reference_box\[0\]: inf is not a finite int32')
    for prompt, reason in (
            (Prompt(points=[Point(x=float('nan'), y=3.0)]), 'points[0]: nan'),
            (Prompt(boxes=[BoundingBox2D(x_min=10.0, y_min=1.0, x_max=2.0, y_max=5.0)]), 'boxes[0]: min > max'),
            (Prompt(mask=image_msg(np.zeros((H, W, 3), np.uint8), 'mono8')), 'mask is empty'),
            (Prompt(text='x' * 3000), 'alone exceeds 77 tokens'),
            (Prompt(text='a ' * 3000), 'exceeds 4096'),
            (Prompt(boxes=[BoundingBox2D(x_min=1.0, y_min=1.0, x_max=1.2, y_max=1.2)]), 'covers no pixel centre')):
        answer = client.call('set_object', SetObject.Request(prompt=prompt))
        assert not answer.success and reason in answer.message, (reason, answer.message)
    start = time.monotonic()
    client.publish('text', String(data='a,' * 500000))
    seem.wait_for_log(r'ERROR.*~/text: prompt rejected: text of 1000000 characters exceeds 4096')
    assert client.call('list_objects', ListObjects.Request()) is not None
    assert time.monotonic() - start < 30, 'a 1 MB text stalled the prompt callbacks'
    assert 'a,a,a,a' not in seem.log()                          # unbounded input is never echoed
    rss = seem.rss_mb()
    client.publish('image', image_msg(np.zeros((1, 1000, 3), np.uint8)))
    seem.wait_for_log(r'ERROR.*image: image is 1000x1, an aspect ratio over 8')
    sent = image_msg(SCENE)
    objects, labels = client.process(sent)                     # still serving
    check_outputs(objects, labels, sent)
    assert seem.rss_mb() - rss < 100 and seem.proc.poll() is None
    spin_until(client.node, lambda: int(client.diagnostic_values().get('prompts_rejected', 0)) >= 10, TIMEOUT,
               'rejected prompts counted in ~/diagnostics')
    values = client.diagnostic_values()
    assert int(values['image.received']) >= 2 and float(values['image.rate_hz']) >= 0 and 'image.missing' in values


def test_invalid_lifecycle_transitions_are_refused_and_the_state_kept(client, seem):
    assert client.state() == State.PRIMARY_STATE_ACTIVE
    for transition in (Transition.TRANSITION_ACTIVATE, Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_CLEANUP,
                       99):
        assert not client.transition(transition)
        assert client.state() == State.PRIMARY_STATE_ACTIVE
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert not client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.state() == State.PRIMARY_STATE_INACTIVE
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    sent = image_msg(SCENE)
    check_outputs(*client.process(sent), sent)
    spin_until(client.node, lambda: int(client.diagnostic_values().get('callback_errors', 0)) >= 5, TIMEOUT,
               'the refused transitions counted in ~/diagnostics')
    assert 'RCLError' in client.diagnostic_values()['last_callback_error'] and seem.proc.poll() is None


def test_runtime_mode_switch_and_validation(client):
    (ok,) = client.set_parameters(pipeline__mode='both')
    assert ok.successful, ok.reason
    sent = image_msg(SCENE)
    objects, labels = client.process(sent)
    check_outputs(objects, labels, sent)
    (bad,) = client.set_parameters(pipeline__mode='sometimes')
    assert not bad.successful and 'pipeline.mode' in bad.reason
    (bad,) = client.set_parameters(pipeline__score_threshold=2.0)
    assert not bad.successful and 'score_threshold' in bad.reason
    (ok,) = client.set_parameters(pipeline__mode='prompted')
    assert ok.successful


def test_remove_and_reset(client):
    listed = client.call('list_objects', ListObjects.Request()).objects
    named = next(p for p in listed if p.object_name == 'boxed')
    assert client.call('remove_object', RemoveObject.Request(object_name='boxed')).success
    sent = image_msg(SCENE)
    objects, _ = client.process(sent)
    assert named.object_id not in {o.id for o in objects.objects}
    assert client.call('reset', Reset.Request()).success
    assert list(client.call('list_objects', ListObjects.Request()).objects) == []


def test_lifecycle_cycles_do_not_leak(client, seem):
    """deactivate/activate, then the full deactivate/cleanup/configure/activate: RSS stays flat and
    ids are not reused."""
    ids = []

    def cycle(transitions):
        for transition in transitions:
            assert client.transition(transition), f'transition {transition} failed:\n{seem.log()}'
        assert client.call('reset', Reset.Request()).success      # the same work every cycle: one object
        ids.append(client.call('set_object', SetObject.Request(prompt=Prompt(points=[Point(x=30.0, y=20.0)]))
                               ).object_id)
        sent = image_msg(SCENE)
        objects, labels = client.process(sent)
        check_outputs(objects, labels, sent)
        assert client.state() == State.PRIMARY_STATE_ACTIVE
        return seem.rss_mb()

    cycle([])                                                     # warm-up
    short = [cycle([Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE]) for _ in range(5)]
    full = [cycle([Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP, Transition.TRANSITION_CONFIGURE,
                   Transition.TRANSITION_ACTIVATE]) for _ in range(6)]
    # A leaked model would add its size (about 47 MB) per full cycle.
    assert short[-1] - short[1] < 20, f'RSS grew over deactivate/activate cycles: {short} MB'
    assert full[-1] - full[1] < 40, f'RSS grew over cleanup/configure cycles: {full} MB'
    assert ids == sorted(set(ids)), f'an object id was reused: {ids}'


def test_bad_checkpoint_fails_configure_then_compressed_input_with_depth(client, seem, tmp_path):
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.transition(Transition.TRANSITION_CLEANUP)
    assert client.state() == State.PRIMARY_STATE_UNCONFIGURED
    results = client.set_parameters(model__checkpoint=str(tmp_path / 'missing.pt'))
    assert results[0].successful
    assert not client.transition(Transition.TRANSITION_CONFIGURE)
    seem.wait_for_log(r"ERROR.*configure failed: model.checkpoint: no such file '.*missing.pt'")
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a checkpoint')
    client.set_parameters(model__checkpoint=str(garbage))
    assert not client.transition(Transition.TRANSITION_CONFIGURE)
    seem.wait_for_log(r"ERROR.*configure failed: cannot load checkpoint '.*garbage.pt'")
    assert client.state() == State.PRIMARY_STATE_UNCONFIGURED

    checkpoint = re.search(r'model.checkpoint:=(\S+)', ' '.join(seem.proc.args)).group(1)
    client.set_parameters(model__checkpoint=checkpoint, input__transport='compressed', depth__enabled=True)
    assert client.transition(Transition.TRANSITION_CONFIGURE)
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    client.call('set_object', SetObject.Request(prompt=Prompt(points=[Point(x=30.0, y=20.0)])))
    ok, jpeg = cv2.imencode('.jpg', cv2.cvtColor(SCENE, cv2.COLOR_RGB2BGR))
    paired = 0
    for depth in (np.full((H, W), 1500, np.uint16), np.full((H // 2, W // 2), 1.5, np.float32)):
        sent = CompressedImage(header=Header(stamp=next_stamp(), frame_id='camera'), format='jpeg',
                               data=array.array('B', jpeg.tobytes()))
        depth_msg = Image(header=sent.header, height=depth.shape[0], width=depth.shape[1],
                          encoding='16UC1' if depth.dtype == np.uint16 else '32FC1', step=depth.strides[0],
                          data=array.array('B', depth.tobytes()))
        objects, labels = client.process(sent, topic='compressed', depth=depth_msg)
        check_outputs(objects, labels, image_msg(SCENE, stamp=sent.header.stamp))
        assert len(objects.objects) == 1
        assert not objects.objects[0].has_position          # no depth/camera_info: 2D only
        paired += 1
        spin_until(client.node, lambda: int(client.diagnostic_values().get('depth_paired', 0)) >= paired, TIMEOUT,
                   f'{paired} images paired with depth')
    assert int(client.diagnostic_values()['camera_info_missing']) >= paired
    seem.wait_for_log(r'WARN.*3D fields unset: no depth/camera_info received \(2D outputs are published\)')
    client.publish('depth', image_msg(SCENE))
    seem.wait_for_log(r"ERROR.*depth: unsupported depth encoding 'rgb8'")


def test_a_failed_autostart_configure_exits_non_zero_and_manual_lifecycle_waits(ros_namespace, tmp_path):
    """Supervisors see a node that cannot start; under a lifecycle manager it waits, unconfigured."""
    failed = helpers.NodeProcess(f'{ros_namespace}_fail', tmp_path / 'fail.log',
                                 ['-p', f'model.checkpoint:={tmp_path / "missing.pt"}'])
    assert failed.proc.wait(120) == 1
    assert re.search(r"configure failed: model.checkpoint: no such file .*missing.pt'", failed.log())
    assert 'exiting' in failed.log()
    waiting = helpers.NodeProcess(f'{ros_namespace}_wait', tmp_path / 'wait.log',
                                  ['-p', f'model.checkpoint:={tmp_path / "missing.pt"}', '-p', 'autostart:=false'])
    waiting.wait_for_log(r'autostart is false: unconfigured, waiting for lifecycle transitions', timeout=120)
    assert waiting.interrupt() == 0

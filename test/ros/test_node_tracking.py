"""Tracked ids and 3D positions from the node over real DDS, with the shipped trained model.

The node runs as users run it, with ``models/seem_tiny.pt`` (trained on generated scenes; the
module is skipped when the file is missing) and ``depth.enabled``, on each backend: eager torch,
and onnxruntime over the graphs exported for the camera size (export cache, made on first use).
A generated bag (:mod:`seem_ros.scenes` scenario 'demo', held-out seed 0, 640x480 camera images,
32 frames, aligned 16UC1 depth with its CameraInfo) is replayed through it in lockstep: the depth, its
CameraInfo and the image of a frame are published when the previous image's outputs have come back, and the bag's
prompts (text, click, box, referring patch) right after the image they refer to. In the bag, B
passes behind occluder A and C leaves the image and comes back. The outputs are compared with
the bag's ground truth (id maps, 3D centroids). Around the replay, images rendered from the same
scene test the 3D edge cases: no CameraInfo, depth late or never, depth at another resolution,
depth of another aspect ratio, all-invalid depth; 2D outputs never wait for any of them.

Each output mask is attributed to the ground-truth object holding most of its pixels (more than
half), and the tests assert:

* each prompt (text, click, box, referring patch) gets its object and only that object, and no
  other id is ever on it: every prompted object keeps its id through the whole bag;
* a prompted object is found on every frame where it shows at least 100 pixels of the model
  input (short side 120: ``VISIBLE_PX`` camera pixels), at most 3
  frames after it comes back from the occlusion or the exit;
* centroids of attributed objects are within a few centimetres of the ground truth.
"""
import array
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ros_helpers import NodeProcess, call, ros_node, spin_until
from seem_ros.mask_codec import CompactMask
from seem_ros.msg import Prompt, TrackedObject, TrackedObjectArray
from seem_ros.replay.bagio import BagReader, cdr_stamp_ns
from seem_ros.ros.conversions import ns_to_stamp
from seem_ros.scenes import build_scene, depth_to_mm, render_frame
from seem_ros.scenes.bag import FRAME_ID, START_NS, TOPICS, read_ground_truth, stamp_ns, write_bag
from seem_ros.srv import ListObjects, Reset, SetObject

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / 'models' / 'seem_tiny.pt'
SCENARIO, SEED, N, W, H = 'demo', 0, 32, 640, 480
VISIBLE_PX = 100 * (W * H) // (160 * 120)    # 100 pixels of the 160x120 model input
OCCLUDED, EXITS = 2, 3          # demo: B passes behind A, C leaves the image and comes back
TIMEOUT = 240.0                 # per image: CI machines are shared
QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
BAG_TOPICS = {TOPICS['depth_info']: 'depth/camera_info', TOPICS['depth']: 'depth', TOPICS['image']: 'image',
              TOPICS['prompt']: 'seem/prompt'}


@pytest.fixture(scope='module')
def scene():
    return build_scene(SCENARIO, SEED, width=W, height=H, frames=N)


@pytest.fixture(scope='module')
def bag(scene, tmp_path_factory):
    path = tmp_path_factory.mktemp('bag') / SCENARIO
    write_bag(scene, path)
    return path


@pytest.fixture(scope='module', params=['torch', 'onnxruntime'])
def seem(request, ros_namespace, tmp_path_factory):
    if not MODEL.is_file():
        pytest.skip(f'the shipped model {MODEL.relative_to(ROOT)} is missing')
    from seem_ros.model.build import build_seem
    build_seem('tiny', checkpoint=str(MODEL))      # loads strictly (a broken file fails here, not in the node)
    backend = ['-p', 'runtime.backend:=torch']
    if request.param == 'onnxruntime':
        from seem_ros.runtime.export_cache import cached_export
        graphs = cached_export(MODEL, variant='tiny', version='v1', height=H, width=W, short_side=120)
        backend = ['-p', 'runtime.backend:=onnxruntime-cpu', '-p', f'runtime.onnx_dir:={graphs}']
    node = NodeProcess(ros_namespace, tmp_path_factory.mktemp('node') / 'node.log', [
        *backend, '-p', f'model.checkpoint:={MODEL}', '-p', 'model.variant:=tiny', '-p', 'model.short_side:=120',
        '-p', 'qos.reliability:=reliable', '-p', 'qos.depth:=10', '-p', 'publish.overlay:=false',
        '-p', 'depth.enabled:=true', '-p', 'depth.publish_points:=true', '-p', 'depth.publish_markers:=true',
        '-p', 'diagnostics.period:=0.1'])
    yield node
    if node.proc.poll() is None:
        assert node.interrupt() == 0, f'the node did not stop cleanly on SIGINT:\n{node.log()}'


class Client:
    """The node's inputs and outputs in its namespace; outputs are kept by header stamp."""

    def __init__(self, node):
        self.node = node
        self.pubs = {topic: node.create_publisher(msg_type, topic, QOS) for topic, msg_type in (
            ('image', Image), ('depth', Image), ('depth/camera_info', CameraInfo), ('seem/prompt', Prompt))}
        self.out = {key: {} for key in ('objects', 'label_image', 'points', 'markers')}
        for key, msg_type in (('objects', TrackedObjectArray), ('label_image', Image), ('points', PointCloud2),
                              ('markers', MarkerArray)):
            node.create_subscription(msg_type, f'seem/{key}', lambda m, k=key: self._keep(k, m), QOS)
        self.diagnostics = []
        node.create_subscription(DiagnosticArray, 'seem/diagnostics', self.diagnostics.append, 10)
        self.clients = {name: node.create_client(t, f'seem/{name}') for name, t in (
            ('set_object', SetObject), ('reset', Reset), ('list_objects', ListObjects))}
        for pub in self.pubs.values():
            spin_until(node, lambda p=pub: p.get_subscription_count() > 0, TIMEOUT, f'the node on {pub.topic_name}')

    def _keep(self, key, msg):
        header = msg.markers[0].header if key == 'markers' else msg.header
        self.out[key][header.stamp.sec * 10**9 + header.stamp.nanosec] = msg

    def call(self, name, request):
        return call(self.node, self.clients[name], request, TIMEOUT)

    def outputs(self, stamp):
        """Wait for every output of the image stamped ``stamp``; returns (objects, label image, points, markers)."""
        spin_until(self.node, lambda: all(stamp in got for got in self.out.values()), TIMEOUT,
                   f'the outputs of the image stamped {stamp}')
        return tuple(self.out[key][stamp] for key in ('objects', 'label_image', 'points', 'markers'))

    def received(self, topic):
        """The node's count of ``topic`` messages, from a diagnostics message newer than the call."""
        seen = len(self.diagnostics)
        spin_until(self.node, lambda: len(self.diagnostics) > seen, TIMEOUT, 'diagnostics of the node')
        return self.diagnostic(f'{topic}.received')

    def send(self, image, depth=None, info=None):
        """Publish ``info``, ``depth`` (messages or None), then, once the node has received them
        (DDS does not order topics), ``image``; returns the image's outputs."""
        for topic, msg in (('depth/camera_info', info), ('depth', depth)):
            if msg is not None:
                count = self.received(topic)
                self.pubs[topic].publish(msg)
                spin_until(self.node, lambda t=topic: self.diagnostic(f'{t}.received') > count, TIMEOUT,
                           f'{topic} at the node')
        self.pubs['image'].publish(image)
        return self.outputs(image.header.stamp.sec * 10**9 + image.header.stamp.nanosec)

    def diagnostic(self, key):
        values = {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values} if self.diagnostics else {}
        return int(values.get(key, 0))


@pytest.fixture(scope='module')
def client(ros_namespace, seem):
    with ros_node('seem_tracking_test', ros_namespace) as node:
        yield Client(node)


def header(stamp):
    return Header(stamp=ns_to_stamp(stamp), frame_id=FRAME_ID)


def image(pixels, encoding, stamp):
    pixels = np.ascontiguousarray(pixels)
    return Image(header=header(stamp), height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                 step=pixels.strides[0], data=array.array('B', pixels.tobytes()))


def rendered(scene, index, stamp, depth_scene=None):
    """(image, 16UC1 depth) messages of frame ``index`` (depth rendered from ``depth_scene``, e.g.
    the scene at another resolution)."""
    frame = render_frame(scene, index)
    depth = render_frame(depth_scene, index).depth if depth_scene is not None else frame.depth
    return frame, image(frame.rgb, 'rgb8', stamp), image(depth_to_mm(depth), '16UC1', stamp)


def masks(array_msg):
    """{id: mask} of the visible objects of a TrackedObjectArray."""
    return {o.id: CompactMask(o.mask_x_offset, o.mask_y_offset, o.mask_width, o.mask_height,
                              np.asarray(o.mask_rle)).to_mask(array_msg.image_height, array_msg.image_width)
            for o in array_msg.objects if o.state != TrackedObject.LOST}


def owner(mask, ids):
    """The ground-truth object holding more than half of ``mask``'s pixels, else 0."""
    counts = np.bincount(ids[mask].astype(np.int64))
    counts[0] = 0
    best = int(counts.argmax())
    return best if counts[best] * 2 > np.count_nonzero(mask) else 0


def centroid_error_m(obj, truth):
    c = obj.centroid
    return math.dist((c.x, c.y, c.z), truth)


def test_3d_never_delays_2d_without_depth_or_camera_info(client, seem, scene):
    """Before any CameraInfo: no depth, then depth that arrives late, then depth without CameraInfo.
    Every image gets its 2D outputs at once; the 3D fields stay unset, with a throttled warning."""
    truth = render_frame(scene, 0).objects[0]                    # A, the large occluder
    stamps = [START_NS - (3 - i) * 10**8 for i in range(3)]      # before the bag, 10 Hz
    _, first, _ = rendered(scene, 0, stamps[0])
    client.pubs['image'].publish(first)
    client.outputs(stamps[0])
    reply = client.call('set_object', SetObject.Request(prompt=Prompt(
        header=header(stamps[0]), object_name='a', points=[Point(x=float(truth.center_px[0]),
                                                                  y=float(truth.center_px[1]))])))
    assert reply.success, reply.message
    for i, stamp in enumerate(stamps[1:]):
        _, colour, depth = rendered(scene, 0, stamp)
        objects, labels, points, markers = client.send(colour, depth=depth if i == 1 else None)
        if i == 0:
            client.pubs['depth'].publish(depth)               # late: after the image's outputs
        (obj,) = objects.objects
        assert obj.id == reply.object_id and obj.state != TrackedObject.LOST and obj.mask_width > 0
        assert not obj.has_position
        assert (points.width, [m.action for m in markers.markers]) == (0, [Marker.DELETEALL])
    seem.wait_for_log(r'WARN.*3D fields unset: no depth image within 50 ms of the image and no '
                      r'depth/camera_info received \(2D outputs are published\)')
    spin_until(client.node, lambda: client.diagnostic('depth_paired') >= 1 and client.diagnostic('depth_missing') >= 2
               and client.diagnostic('camera_info_missing') >= 3, TIMEOUT, 'the depth counters')
    assert client.call('reset', Reset.Request()).success


def test_bag_replay_keeps_ids_through_occlusion_and_exit_with_3d(client, seem, bag):
    gt = read_ground_truth(bag)
    frames = gt.meta['frames']
    outputs, prompts = [], {}
    depths = client.received('depth')      # the count includes earlier tests' depth images
    with BagReader(bag) as reader:
        messages = list(reader.messages(BAG_TOPICS))
    for _, group in itertools.groupby(messages, key=lambda m: m.log_time_ns):
        group = sorted(group, key=lambda m: list(BAG_TOPICS).index(m.topic))   # depth info, depth, image, prompts
        for m in group:
            if m.topic == TOPICS['image']:
                # a camera-sized depth image may reach the node after its image: wait until it has
                spin_until(client.node, lambda: client.diagnostic('depth.received') >= depths, TIMEOUT,
                           f'depth image {depths} at the node')
                client.pubs['image'].publish(bytes(m.data))
                outputs.append(client.outputs(cdr_stamp_ns(m.data)))
            elif m.topic == TOPICS['prompt']:
                client.pubs['seem/prompt'].publish(bytes(m.data))
                prompts[len(prompts)] = len(outputs) - 1
            else:
                client.pubs[BAG_TOPICS[m.topic]].publish(bytes(m.data))
                depths += m.topic == TOPICS['depth']
        spin_until(client.node, lambda: len(client.call('list_objects', ListObjects.Request()).objects)
                   == len(prompts), TIMEOUT, f'{len(prompts)} prompted objects', idle_period=1.0)
    assert len(outputs) == N and len(prompts) == 4

    names = {}                       # track id -> prompt name ('<kind>_<ground-truth id>')
    owners = {}                      # track id -> ground-truth objects it was on
    seen = []                        # per frame {ground-truth id: track id}
    errors = []                      # centroid errors (m) of attributed objects
    for k, (objects, labels, points, markers) in enumerate(outputs):
        assert objects.header.frame_id == FRAME_ID and labels.header == objects.header
        ids = gt.ids[k]
        visible = {o['id']: o for o in frames[k]['objects']}
        found = {}
        for o in objects.objects:
            names.setdefault(o.id, o.prompt_name)
        by_id = {o.id: o for o in objects.objects}
        for track_id, mask in masks(objects).items():
            g = owner(mask, ids)
            if not g:
                continue
            owners.setdefault(track_id, set()).add(g)
            found.setdefault(g, track_id)
            obj = by_id[track_id]
            assert obj.has_position, f'frame {k}: object {track_id} without 3D'
            if obj.position_valid and visible[g]['visible_px'] >= VISIBLE_PX // 2:
                errors.append(centroid_error_m(obj, visible[g]['centroid_m']))
        seen.append(found)
        cloud = np.frombuffer(bytes(points.data), np.dtype([('xyz', '<f4', 3), ('id', '<u4')]))
        valid = {o.id: o.num_points for o in objects.objects if o.has_position}
        assert {i: int(n) for i, n in zip(*np.unique(cloud['id'], return_counts=True))} == \
            {i: n for i, n in valid.items() if n}
        assert len(markers.markers) == 1 + 2 * sum(o.position_valid for o in objects.objects)

    report = '\n'.join(f'{k:2d} {seen[k]}' for k in range(N))
    # Every prompt (text, click, box, referring patch) gets its object, and only its object.
    assert sorted(n.split('_')[0] for n in names.values()) == ['box', 'click', 'reference', 'text']
    target = {track_id: int(name.split('_')[1]) for track_id, name in names.items()}
    for track_id, g in target.items():
        assert owners.get(track_id) == {g}, f'{names[track_id]} (id {track_id}) on {owners.get(track_id)}:\n{report}'
        # ... and keeps its id through the whole bag: no other id is ever on that object.
        assert {seen[k][g] for k in range(N) if g in seen[k]} == {track_id}, f'{names[track_id]}:\n{report}'
    # Prompted objects are found on every frame after their prompt where they show >= VISIBLE_PX,
    # at most 3 frames after coming back from the occlusion or the exit.
    first = {g: min(k for k in range(N) if g in seen[k]) for g in target.values()}
    for g in target.values():
        px = [next(o['visible_px'] for o in f['objects'] if o['id'] == g) for f in frames]
        gone = px.index(0) if 0 in px else N
        back = next((k for k in range(gone, N) if px[k] >= VISIBLE_PX), N)
        missed = [k for k in range(first[g], N)
                  if px[k] >= VISIBLE_PX and g not in seen[k] and not back <= k < back + 3]
        assert not missed, f'object {g} not found on frames {missed} (gone at {gone}, back at {back}):\n{report}'
    for g in (OCCLUDED, EXITS):
        assert 0 in [next(o['visible_px'] for o in f['objects'] if o['id'] == g) for f in frames], \
            f'object {g} is never hidden: the bag does not test what it should'
    assert len(errors) >= N and np.median(errors) < 0.02 and np.percentile(errors, 90) < 0.05, sorted(errors)
    print(f'ids {names}\nframe {{ground-truth object: id}}\n{report}\ncentroid error over {len(errors)} objects: '
          f'median {np.median(errors) * 100:.1f} cm, p90 {np.percentile(errors, 90) * 100:.1f} cm, '
          f'max {max(errors) * 100:.1f} cm')


def test_3d_with_depth_at_another_resolution_or_invalid(client, seem, scene):
    """After the bag (whose CameraInfo is full size): half-size depth is placed right; depth of
    another aspect ratio is reported and leaves the 3D fields unset; all-invalid depth gives
    positions without points."""
    stamps = [stamp_ns(N + i, scene.fps) for i in range(3)]     # the bag's last frame again, at the bag's rate
    half = build_scene(SCENARIO, SEED, width=W // 2, height=H // 2, frames=N)
    frame, colour, depth = rendered(scene, N - 1, stamps[0], depth_scene=half)
    objects, _, points, markers = client.send(colour, depth=depth)
    placed = {o.id: o for o in objects.objects if o.position_valid}
    assert placed and len(markers.markers) == 1 + 2 * len(placed)
    for track_id, mask in masks(objects).items():
        g = owner(mask, frame.ids)
        if g and track_id in placed:
            assert centroid_error_m(placed[track_id], frame.objects[g - 1].centroid) < 0.05

    square = image(np.full((64, 64), 1000, np.uint16), '16UC1', stamps[1])
    _, colour, _ = rendered(scene, N - 1, stamps[1])
    objects, labels, _, _ = client.send(colour, depth=square)
    assert masks(objects) and not any(o.has_position for o in objects.objects)
    seem.wait_for_log(rf'ERROR.*3D fields unset: a {W}x{H} mask or intrinsics and a 64x64 depth image differ in '
                      r'aspect ratio')

    _, colour, _ = rendered(scene, N - 1, stamps[2])
    invalid = image(np.zeros((H, W), np.uint16), '16UC1', stamps[2])
    objects, _, points, markers = client.send(colour, depth=invalid)
    shown = masks(objects)
    assert shown
    for o in objects.objects:
        assert o.has_position == (o.id in shown) and not o.position_valid and o.num_points == 0
        assert not o.has_position or math.isnan(o.centroid.z)
    assert points.width == 0 and len(markers.markers) == 1

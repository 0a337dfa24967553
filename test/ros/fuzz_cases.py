"""Seeded fuzz cases for the seem node's interface, and the checks run after every batch.

Shared by ``test/ros/test_fuzz.py`` (a subset in CI) and ``bench/fuzz.py`` (the full set). Each
case is one odd or malformed input a tool on the network might send: images of every encoding and
geometry, stamps, every prompt field, texts, object ids, churn, table overflow, depth and
CameraInfo values, compressed garbage and decompression bombs, lifecycle requests (every
transition id in every state) and parameter sets. After each category the node must be alive,
answer a service and give a valid image its ``~/objects`` within bounds, keep its RSS within a
bound, and count the rejections in ``~/diagnostics``.
"""
from __future__ import annotations

import array
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List

import cv2
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, PointStamped
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from ros_helpers import call, spin_until
from seem_ros.msg import BoundingBox2D, Polyline, Prompt, TrackedObjectArray
from seem_ros.srv import ListObjects, RemoveObject, Reset, SetObject

H, W = 48, 64
REPLY_BOUND_S = 5.0          # a service must answer within this after a batch (no stall)
OUTPUT_BOUND_S = 60.0        # a valid image must get its ~/objects within this (shared CI cores)
RSS_BOUND_MB = 300.0         # growth over the RSS before the first batch
PACE_S = 0.02                # between published cases
SHUTDOWN = {State.PRIMARY_STATE_UNCONFIGURED: Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
            State.PRIMARY_STATE_INACTIVE: Transition.TRANSITION_INACTIVE_SHUTDOWN,
            State.PRIMARY_STATE_ACTIVE: Transition.TRANSITION_ACTIVE_SHUTDOWN}
TRANSITION_IDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 99, 255)


@dataclass
class Case:
    """One fuzz input: ``send(client)`` publishes it or calls a service with it."""

    category: str
    name: str
    send: Callable
    reconfigures: bool = False      # the case reconfigures the node (its diagnostics counters restart)


def _image(h, w, encoding='rgb8', data=None, step=None, bigendian=0, stamp=None):
    channels = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, '16UC1': 2, '32FC1': 4}.get(encoding, 3)
    step = w * channels if step is None else step
    payload = bytes(step * h) if data is None else data
    return Image(header=Header(stamp=stamp or Time(sec=1, nanosec=0), frame_id='camera'), height=h, width=w,
                 encoding=encoding, is_bigendian=bigendian, step=step, data=array.array('B', payload))


def _png_claiming(width, height):
    def chunk(kind, payload):
        return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\x00' * 4096)))


def _publish(topic, msg):
    return lambda client: client.publish(topic, msg)


def _service(name, request):
    return lambda client: client.call(name, request)


def _value(rng, kind='coordinate'):
    """An odd number: NaN, +-inf, huge, negative, tiny or an ordinary pixel value."""
    choices = [float('nan'), float('inf'), -float('inf'), 1e308, -1e308, 3e9, -3e9, -5.0, 1e-42, 0.0,
               float(rng.uniform(0, W)), float(rng.uniform(0, 1e6))]
    return choices[int(rng.integers(len(choices)))]


def encoding_cases(rng, n):
    encodings = ['rgb8', 'bgr8', 'mono8', 'rgba8', 'bgra8', 'yuv422', '16UC1', '32FC1', 'bayer_rggb8', '', 'x' * 300,
                 'rgb8\x00', 'RGB8', '8UC3', 'jpeg']
    out = []
    for i in range(n):
        enc = encodings[i % len(encodings)]
        data = rng.integers(0, 256, H * W * 4, dtype=np.uint8).tobytes()
        out.append(Case('image encodings', f'{enc!r}', _publish('image', _image(H, W, enc, data[:H * W * 3]))))
    return out


def geometry_cases(rng, n):
    shapes = [(0, 0, 0, b''), (1, 1, None, None), (1, 10000, None, None), (10000, 1, None, None),
              (20000, 20000, None, bytes(100)), (4097, 4097, None, bytes(10)), (65535, 65535, None, bytes(3)),
              (H, W, 10, None), (H, W, 2 ** 31, bytes(10)), (H, W, None, bytes(5)),
              (H, W, None, bytes(H * W * 3 + 999))]
    out = []
    for i in range(n):
        h, w, step, data = shapes[i % len(shapes)]
        big = int(rng.integers(2))
        out.append(Case('geometry', f'{w}x{h} step {step} data {None if data is None else len(data)} big {big}',
                        _publish('image', _image(h, w, data=data, step=step, bigendian=big))))
    return out


def stamp_cases(rng, n):
    stamps = [Time(sec=0, nanosec=0), Time(sec=-1, nanosec=0), Time(sec=2 ** 31 - 1, nanosec=999_999_999),
              Time(sec=5, nanosec=2 ** 32 - 1), Time(sec=-(2 ** 31), nanosec=0)]
    out = []
    for i in range(n):
        stamp = stamps[i % len(stamps)] if i < len(stamps) else Time(sec=int(rng.integers(-100, 10 ** 6)),
                                                                      nanosec=int(rng.integers(0, 2 ** 32)))
        out.append(Case('stamps', f'{stamp.sec}.{stamp.nanosec}', _publish('image', _image(H, W, stamp=stamp))))
        if i % 3 == 0:
            out.append(Case('stamps', 'prompt with that stamp',
                            _publish('prompt', Prompt(header=Header(stamp=stamp), points=[Point(x=5.0, y=5.0)]))))
    return out[:n]


def prompt_field_cases(rng, n):
    def field_prompt(k):
        kind = k % 12
        if kind == 0:
            count = int(rng.integers(1, 4))
            return 'points', Prompt(points=[Point(x=_value(rng), y=_value(rng)) for _ in range(count)])
        if kind == 1:
            return 'point_labels', Prompt(points=[Point(x=1.0, y=1.0)] * 2,
                                          point_labels=[True] * int(rng.integers(3, 6)))
        if kind == 2:
            return 'boxes', Prompt(boxes=[BoundingBox2D(x_min=_value(rng), y_min=_value(rng), x_max=_value(rng),
                                                        y_max=_value(rng))])
        if kind == 3:
            count = [0, 1, 2, 5000][int(rng.integers(4))]
            return 'scribbles', Prompt(scribbles=[Polyline(points=[Point(x=_value(rng), y=_value(rng))] * count,
                                                           closed=bool(rng.integers(2)))])
        if kind == 4:
            return 'mask', Prompt(mask=_image(H, W, ['mono8', 'rgb8', '32FC1'][int(rng.integers(3))]))
        if kind == 5:
            return 'mask size', Prompt(mask=_image(int(rng.integers(1, 90)), int(rng.integers(1, 90)), 'mono8',
                                                   data=None))
        if kind == 6:
            return 'negative_mask', Prompt(points=[Point(x=3.0, y=3.0)], negative_mask=_image(3, 3, 'mono8'))
        if kind == 7:
            return 'reference_image', Prompt(reference_image=_image(int(rng.integers(1, 30)), int(rng.integers(1, 30)),
                                                                    ['rgb8', 'yuv422', 'mono8'][int(rng.integers(3))],
                                                                    data=bytes(int(rng.integers(0, 50)))))
        if kind == 8:
            return 'reference_mask', Prompt(reference_image=_image(8, 8), reference_mask=_image(4, 5, 'mono8'))
        if kind == 9:
            return 'reference_box', Prompt(reference_image=_image(8, 8),
                                           reference_box=BoundingBox2D(x_min=_value(rng), y_min=_value(rng),
                                                                       x_max=_value(rng), y_max=_value(rng)))
        if kind == 10:
            return 'object_id / mode', Prompt(object_id=int(rng.choice([-1, 2 ** 31 - 1, 77777])),
                                              mode=int(rng.integers(0, 256)), points=[Point(x=2.0, y=2.0)])
        return 'object_name', Prompt(object_name='\x1b[31m' + 'n' * int(rng.integers(0, 20000)),
                                     points=[Point(x=2.0, y=2.0)])
    out = []
    for k in range(n):
        name, prompt = field_prompt(k)
        send = _service('set_object', SetObject.Request(prompt=prompt)) if k % 2 else _publish('prompt', prompt)
        out.append(Case('prompt fields', name, send))
    return out


def text_cases(rng, n):
    texts = ['', ' ', '\t\n', 'a,' * 500000, '\x00\x1b[2J\x07', '🦜 the parrot 🍵', ','.join(['cup'] * 500), ',,,,',
             'x' * 5000, 'y' * 3000, 'the red mug', 'ÿ' * 100]
    return [Case('texts', repr(t[:20]), _publish('text', String(data=texts[i % len(texts)])))
            for i, t in zip(range(n), texts * (n // len(texts) + 1))]


def object_id_cases(rng, n):
    out = []
    for i in range(n):
        oid = int(rng.choice([-1, 0, 99999, 2 ** 31 - 1, -(2 ** 31)]))
        if i % 2:
            out.append(Case('object ids', f'remove {oid}', _service('remove_object', RemoveObject.Request(
                object_id=oid, object_name='' if i % 4 else 'no such name'))))
        else:
            out.append(Case('object ids', f'update {oid}', _service('set_object', SetObject.Request(
                prompt=Prompt(object_id=oid, points=[Point(x=4.0, y=4.0)])))))
    return out


def churn_cases(rng, n):
    out = []
    for i in range(n):
        if i % 3 == 2:
            out.append(Case('churn', 'reset', _service('reset', Reset.Request())))
        elif i % 3 == 1:
            out.append(Case('churn', 'remove newest', lambda client: client.remove_newest()))
        else:
            x, y = float(rng.uniform(0, W)), float(rng.uniform(0, H))
            out.append(Case('churn', f'click {x:.0f},{y:.0f}', _publish('click', Point(x=x, y=y))))
    return out


def overflow_cases(rng, n):
    out = [Case('table overflow', 'reset', _service('reset', Reset.Request()))]
    for i in range(n - 1):
        out.append(Case('table overflow', f'object {i}', _service('set_object', SetObject.Request(
            prompt=Prompt(text=f'thing {i}')))))
    return out


def depth_cases(rng, n):
    out = []
    for i in range(n):
        if i % 2:
            k = [float(v) for v in rng.choice([0.0, 1e-30, 500.0, 1e9, -3.0, float('nan')], 9)]
            info = CameraInfo(header=Header(stamp=Time(sec=1)), width=int(rng.choice([0, 64, 640, 100000])),
                              height=int(rng.choice([0, 48, 480])), k=k)
            out.append(Case('depth and camera info', f'K {k[0]:g} {k[2]:g}', _publish('depth_info', info)))
        else:
            values = np.array(rng.choice([float('nan'), float('inf'), -1.0, 1e-42, 0.0, 1e30, 1.5], H * W), np.float32)
            enc = ['32FC1', '16UC1', 'rgb8', 'mono16'][int(rng.integers(4))]
            data = values.tobytes() if enc == '32FC1' else bytes(H * W * 2)
            out.append(Case('depth and camera info', f'depth {enc}', _publish('depth', _image(H, W, enc, data=data))))
    return out


def compressed_cases(rng, n):
    """Garbage and decompression bombs on ``image/compressed`` (the node switched to that transport
    for the batch; the check after it sends a valid PNG)."""
    payloads = [b'', b'\xff\xd8\xff', rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(), _png_claiming(20000, 20000),
                _png_claiming(7000, 5000), _png_claiming(1, 100000), _png_claiming(W, H)[:40], b'GIF89a' + bytes(30)]
    return [Case('compressed', 'switch to compressed', lambda client: client.use_transport('compressed'), True)] + [
        Case('compressed', f'{len(payloads[i % len(payloads)])} bytes', _publish('compressed', CompressedImage(
            header=Header(stamp=Time(sec=1)), format=['jpeg', 'png', 'x' * 200][i % 3],
            data=array.array('B', payloads[i % len(payloads)])))) for i in range(max(n - 1, 1))]


def lifecycle_cases(rng, n):
    """Every transition id by number in each primary state (shutdowns excepted), then back to active."""
    out = []
    routes = {State.PRIMARY_STATE_ACTIVE: [], State.PRIMARY_STATE_INACTIVE: [Transition.TRANSITION_DEACTIVATE],
              State.PRIMARY_STATE_UNCONFIGURED: [Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP]}
    for state, route in routes.items():
        for transition_id in TRANSITION_IDS:
            if transition_id == SHUTDOWN[state]:
                continue
            out.append(Case('lifecycle', f'id {transition_id} in state {state}',
                            lambda client, s=state, r=route, t=transition_id: client.transition_in(s, r, t)))
    out.append(Case('lifecycle', 'back to active', lambda client: client.to_active()))
    return out[:max(n, 1) - 1] + out[-1:]


def parameter_cases(rng, n):
    def param(name, kind, **value):
        return ParameterMsg(name=name, value=ParameterValue(type=kind, **value))
    sets = [param('pipeline.mode', ParameterType.PARAMETER_INTEGER, integer_value=5),
            param('pipeline.mode', ParameterType.PARAMETER_STRING, string_value='sometimes'),
            param('pipeline.score_threshold', ParameterType.PARAMETER_DOUBLE, double_value=float('nan')),
            param('pipeline.score_threshold', ParameterType.PARAMETER_DOUBLE, double_value=2.0),
            param('tracking.min_confidence', ParameterType.PARAMETER_STRING, string_value='abc'),
            param('limits.prompt_rate', ParameterType.PARAMETER_DOUBLE, double_value=-1.0),
            param('pipeline.max_objects', ParameterType.PARAMETER_INTEGER, integer_value=-(2 ** 62)),
            param('no.such.parameter', ParameterType.PARAMETER_BOOL, bool_value=True),
            param('pipeline.vocabulary', ParameterType.PARAMETER_STRING_ARRAY, string_array_value=['\x00'] * 300),
            param('pipeline.ring_size', ParameterType.PARAMETER_INTEGER, integer_value=0)]
    return [Case('parameters', sets[i % len(sets)].name, _service('set_parameters', SetParameters.Request(
        parameters=[sets[i % len(sets)]]))) for i in range(n)]


CATEGORIES: Dict[str, Callable] = {
    'image encodings': encoding_cases, 'geometry': geometry_cases, 'stamps': stamp_cases,
    'prompt fields': prompt_field_cases, 'texts': text_cases, 'object ids': object_id_cases, 'churn': churn_cases,
    'table overflow': overflow_cases, 'depth and camera info': depth_cases, 'compressed': compressed_cases,
    'lifecycle': lifecycle_cases, 'parameters': parameter_cases,
}


def all_cases(seed: int, per_category: int) -> Dict[str, List[Case]]:
    """``per_category`` seeded cases of every category (lifecycle: at most one per id and state)."""
    rng = np.random.default_rng(seed)
    return {name: make(rng, per_category) for name, make in CATEGORIES.items()}


class FuzzClient:
    """Publishers and service clients of the node's interface, with the per-batch checks."""

    TOPICS = {'image': (Image, 'image'), 'compressed': (CompressedImage, 'image/compressed'),
              'depth': (Image, 'depth'), 'depth_info': (CameraInfo, 'depth/camera_info'),
              'prompt': (Prompt, 'seem/prompt'), 'text': (String, 'seem/text'), 'click': (Point, 'seem/click'),
              'click_stamped': (PointStamped, 'seem/click_stamped')}
    SERVICES = {'set_object': SetObject, 'remove_object': RemoveObject, 'reset': Reset, 'list_objects': ListObjects,
                'change_state': ChangeState, 'get_state': GetState, 'set_parameters': SetParameters}

    def __init__(self, node):
        self.node = node
        self.pubs = {name: node.create_publisher(t, topic, 10) for name, (t, topic) in self.TOPICS.items()}
        self.clients = {name: node.create_client(t, f'seem/{name}') for name, t in self.SERVICES.items()}
        self.objects = {}
        self.diagnostics = []
        node.create_subscription(TrackedObjectArray, 'seem/objects',
                                 lambda m: self.objects.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m),
                                 50)
        node.create_subscription(DiagnosticArray, 'seem/diagnostics', self.diagnostics.append, 50)
        self._next_sec = 100
        self.transport = 'raw'

    def publish(self, name, msg):
        self.pubs[name].publish(msg)
        rclpy.spin_once(self.node, timeout_sec=0.0)
        time.sleep(PACE_S)                                    # paced: the node's queues keep every case

    def call(self, name, request, timeout=OUTPUT_BOUND_S):
        return call(self.node, self.clients[name], request, timeout)

    def state(self):
        return self.call('get_state', GetState.Request()).current_state.id

    def transition(self, transition_id):
        return self.call('change_state', ChangeState.Request(transition=Transition(id=transition_id))).success

    def transition_in(self, state, route, transition_id):
        """Bring the node from active into ``state`` along ``route``, then request ``transition_id``."""
        self.to_active()
        for step in route:
            assert self.transition(step), f'transition {step} on the way to state {state} failed'
        self.transition(transition_id)

    def to_active(self):
        """Bring the node back to active from whatever state a lifecycle case left it in."""
        routes = {State.PRIMARY_STATE_UNCONFIGURED: [Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE],
                  State.PRIMARY_STATE_INACTIVE: [Transition.TRANSITION_ACTIVATE], State.PRIMARY_STATE_ACTIVE: []}
        for step in routes[self.state()]:
            assert self.transition(step), f'transition {step} back to active failed'

    def use_transport(self, transport):
        """Reconfigure the node to subscribe to ``transport`` ('raw' or 'compressed') images."""
        self.to_active()
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=transport)
        self.call('set_parameters', SetParameters.Request(parameters=[ParameterMsg(name='input.transport',
                                                                                   value=value)]))
        for step in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP, Transition.TRANSITION_CONFIGURE,
                     Transition.TRANSITION_ACTIVATE):
            assert self.transition(step), f'transition {step} to the {transport} transport failed'
        self.transport = transport
        name = 'compressed' if transport == 'compressed' else 'image'
        spin_until(self.node, lambda: self.pubs[name].get_subscription_count() > 0, OUTPUT_BOUND_S,
                   f'the node to subscribe to {name}')

    def remove_newest(self):
        objects = self.call('list_objects', ListObjects.Request()).objects
        if objects:
            self.call('remove_object', RemoveObject.Request(object_id=max(o.object_id for o in objects)))

    def counters(self) -> Dict[str, int]:
        """Rejection counters of the newest ``~/diagnostics``."""
        if not self.diagnostics:
            return {}
        values = {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}
        return {k: int(values.get(k, 0))
                for k in ('input_errors', 'prompts_rejected', 'parameters_rejected', 'callback_errors')}

    def counters_after_next_diagnostics(self) -> Dict[str, int]:
        """:meth:`counters` of a ``~/diagnostics`` message published after everything sent so far
        was handled (two periods later)."""
        seen = len(self.diagnostics)
        spin_until(self.node, lambda: len(self.diagnostics) >= seen + 2, OUTPUT_BOUND_S, 'two ~/diagnostics')
        return self.counters()

    def check_serving(self, scene) -> Dict[str, float]:
        """The batch checks: a service answers within :data:`REPLY_BOUND_S`, a valid image gets its
        ``~/objects`` within :data:`OUTPUT_BOUND_S`. Returns the reply and output times (s)."""
        start = time.monotonic()
        self.call('list_objects', ListObjects.Request(), timeout=REPLY_BOUND_S)
        reply = time.monotonic() - start
        self._next_sec += 1
        stamp = Time(sec=self._next_sec, nanosec=0)
        if self.transport == 'compressed':
            topic, msg = 'compressed', CompressedImage(header=Header(stamp=stamp), format='png', data=array.array(
                'B', cv2.imencode('.png', scene[:, :, ::-1])[1].tobytes()))
        else:
            topic, msg = 'image', _image(H, W, 'rgb8', data=scene.tobytes(), stamp=stamp)
        key = (stamp.sec, stamp.nanosec)
        start = time.monotonic()
        spin_until(self.node, lambda: key in self.objects, OUTPUT_BOUND_S, f'~/objects of the image stamped {key}',
                   on_idle=lambda: self.pubs[topic].publish(msg), idle_period=2.0)
        return {'reply_s': reply, 'output_s': time.monotonic() - start}


def run_category(client: FuzzClient, seem, cases: List[Case], scene, rss_start_mb: float) -> dict:
    """Send ``cases``, then check the node (alive, serving, RSS bound, rejections counted)."""
    before = client.counters()
    crashed_at = None
    for case in cases:
        case.send(client)
        if seem.proc.poll() is not None:
            crashed_at = case.name
            break
        if case.reconfigures:
            before = client.counters_after_next_diagnostics()
    alive = seem.proc.poll() is None
    timing = client.check_serving(scene) if alive else {'reply_s': float('nan'), 'output_s': float('nan')}
    after = client.counters_after_next_diagnostics()
    # a counter below its value before the batch restarted at a configure: all of it is new
    counted = sum(v - before.get(k, 0) if v >= before.get(k, 0) else v for k, v in after.items())
    rss = seem.rss_mb() if alive else float('nan')
    return {'cases': len(cases), 'alive': alive, 'crashed_at': crashed_at, 'counted': counted,
            'rss_mb': rss, 'rss_growth_mb': rss - rss_start_mb, **timing}


NODE_ARGS = ['-p', 'depth.enabled:=true', '-p', 'qos.reliability:=reliable', '-p', 'qos.depth:=10',
             '-p', 'diagnostics.period:=0.5', '-p', 'limits.prompt_rate:=1000.0', '-p', 'pipeline.max_objects:=8']
"""The node as config/seem.yaml gives it (the shipped model), with depth, reliable images so that
every case arrives, and a prompt rate that lets the fuzz cases reach the field checks."""


def fuzz(client: FuzzClient, seem, cases: Dict[str, List[Case]], scene) -> Dict[str, dict]:
    """Run every category of ``cases`` against the node; returns the per-category results."""
    for name in ('image', 'prompt', 'text', 'click', 'depth', 'depth_info'):
        spin_until(client.node, lambda n=name: client.pubs[n].get_subscription_count() > 0, OUTPUT_BOUND_S,
                   f'the node to subscribe to {name}')
    client.check_serving(scene)                          # warm: the first inference loads everything
    rss_start = seem.rss_mb()
    return {name: run_category(client, seem, batch, scene, rss_start) for name, batch in cases.items()}

"""The ROS side of ``seem_ui``: the camera image, the seem node's public topics and services.

Subscribes to the camera image (the topic the seem node segments; ``image`` by default, remapped
as the node's) and to ``<seem>/objects``, ``<seem>/diagnostics`` and ``/parameter_events``. Each
objects message is paired with the buffered camera frame of the same stamp, so the page draws the
masks on the image they were computed on; when no objects arrive for ``objects_timeout`` seconds
(no seem node, or it is inactive) the newest camera frames are shown bare. Prompts become
``seem_ros/Prompt`` messages stamped with the frame the page showed and go to ``<seem>/set_object``;
remove, reset and list use the node's services, mode and vocabulary its parameter services.

Threads: rclpy callbacks run on an executor thread and hand their results to the asyncio loop of
the web server (:meth:`UiBridge.attach`); service calls are awaited there.
"""
from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, Point32
from rcl_interfaces.msg import Parameter, ParameterEvent, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from ..msg import BoundingBox2D, Polyline, Prompt, TrackedObject, TrackedObjectArray
from ..ros import images
from ..srv import ListObjects, RemoveObject, Reset, SetObject
from . import protocol as proto

STATES = {TrackedObject.NEW: 'NEW', TrackedObject.TRACKED: 'TRACKED', TrackedObject.LOST: 'LOST'}
SENT_FRAMES_KEPT = 256
"""Stamps of frames sent to pages that a prompt may still refer to (validation)."""
FPS_WINDOW_S = 2.0


class NodeUnavailable(RuntimeError):
    """A service of the seem node that does not answer."""


@dataclass
class View:
    """One picture for the page: a camera frame and, when the node has processed it, its objects."""

    stamp_ns: int
    frame_id: str
    width: int
    height: int
    jpeg: bytes
    objects: Optional[List[dict]]

    def header(self, extra: dict) -> dict:
        sec, nanosec = divmod(self.stamp_ns, 1_000_000_000)
        return {'type': 'view', 'stamp': {'sec': sec, 'nanosec': nanosec}, 'frame_id': self.frame_id,
                'width': self.width, 'height': self.height, 'objects': self.objects, **extra}


def object_json(obj: TrackedObject) -> dict:
    """One TrackedObject as the page draws and lists it (mask as its COCO RLE crop)."""
    out = {'id': obj.id, 'label': obj.label, 'state': STATES.get(obj.state, str(obj.state)),
           'score': round(float(obj.score), 3), 'prompt_id': obj.prompt_id, 'prompt_name': obj.prompt_name,
           'bbox': [obj.bbox.x_min, obj.bbox.y_min, obj.bbox.x_max, obj.bbox.y_max], 'mask': None, 'position': None}
    if obj.mask_width and obj.mask_height:
        out['mask'] = {'x': obj.mask_x_offset, 'y': obj.mask_y_offset, 'w': obj.mask_width, 'h': obj.mask_height,
                       'rle': list(obj.mask_rle)}
    if obj.has_position and obj.position_valid:
        out['position'] = [round(v, 3) for v in (obj.centroid.x, obj.centroid.y, obj.centroid.z)]
    return out


def _encode_jpeg(msg, quality: int) -> Tuple[bytes, int, int]:
    """(JPEG bytes, width, height) of a camera message; a JPEG CompressedImage is passed through."""
    if isinstance(msg, CompressedImage):
        rgb = images.compressed_to_rgb(msg)
        if 'jpeg' in msg.format.lower() or 'jpg' in msg.format.lower():
            return bytes(msg.data), rgb.shape[1], rgb.shape[0]
    else:
        rgb = images.image_to_rgb(msg)
    ok, data = cv2.imencode('.jpg', rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise images.ImageError('JPEG encoding failed')
    return data.tobytes(), rgb.shape[1], rgb.shape[0]


class UiBridge(Node):
    """``seem_ui`` node: see the module docstring; parameters are declared in ``__init__``."""

    def __init__(self, **kwargs):
        super().__init__('seem_ui', **kwargs)
        declare = self.declare_parameter
        self.host = declare('host', '127.0.0.1').value
        self.port = declare('port', 8080).value
        self.token = declare('token', '').value
        self.seem = declare('seem_node', '/seem').value.rstrip('/')
        self.camera = declare('camera', '').value       # of a node with several cameras ('' = the only one)
        transport = declare('image_transport', 'raw').value
        reliability = declare('qos.reliability', 'best_effort').value
        self.jpeg_quality = declare('jpeg_quality', 80).value
        self.frame_buffer = declare('frame_buffer', 30).value
        self.objects_timeout = declare('objects_timeout', 1.0).value
        self.request_rate = declare('limits.request_rate', 20.0).value
        self.request_burst = declare('limits.request_burst', 40).value
        self.max_clients = declare('limits.max_clients', 16).value
        self.service_timeout = declare('service_timeout', 10.0).value
        if transport not in ('raw', 'compressed'):
            raise ValueError(f"image_transport: '{transport}' is not raw or compressed")
        if reliability not in ('best_effort', 'reliable'):
            raise ValueError(f"qos.reliability: '{reliability}' is not best_effort or reliable")
        self._lock = threading.Lock()
        # stamp -> the camera message (Image or CompressedImage); stamp -> (width, height, frame_id) sent
        self._frames: 'collections.OrderedDict[int, Any]' = collections.OrderedDict()
        self._sent: 'collections.OrderedDict[int, Tuple[int, int, str]]' = collections.OrderedDict()
        self._last_objects = 0.0             # monotonic time of the last objects message
        self._object_times: 'collections.deque[float]' = collections.deque()
        self._diagnostics: Dict[str, str] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._emit: Optional[Callable[[str, object], None]] = None
        image_qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if reliability == 'reliable'
                               else ReliabilityPolicy.BEST_EFFORT)
        if transport == 'raw':
            self.create_subscription(Image, 'image', self._on_image, image_qos)
        else:
            self.create_subscription(CompressedImage, 'image/compressed', self._on_image, image_qos)
        outputs = f'{self.seem}/{self.camera}' if self.camera else self.seem
        self.create_subscription(TrackedObjectArray, f'{outputs}/objects', self._on_objects, 10)
        self.create_subscription(DiagnosticArray, f'{self.seem}/diagnostics', self._on_diagnostics, 10)
        self.create_subscription(ParameterEvent, '/parameter_events', self._on_parameter_event, 10)
        self._node_clients = {name: self.create_client(srv, f'{self.seem}/{name}') for name, srv in (
            ('set_object', SetObject), ('remove_object', RemoveObject), ('reset', Reset),
            ('list_objects', ListObjects), ('set_parameters', SetParameters), ('get_parameters', GetParameters))}

    # ---------------------------------------------------------------- to the web server
    def attach(self, loop: asyncio.AbstractEventLoop, emit: Callable[[str, object], None]) -> None:
        """Deliver ``emit(kind, payload)`` on ``loop``: kind 'view' (:class:`View`), 'status' (dict)."""
        self._loop, self._emit = loop, emit

    def _deliver(self, kind: str, payload) -> None:
        loop, emit = self._loop, self._emit
        if loop is not None and emit is not None and not loop.is_closed():
            loop.call_soon_threadsafe(emit, kind, payload)

    def frame_size(self, stamp_ns: int) -> Optional[Tuple[int, int]]:
        """(width, height) of a frame recently sent to pages (:data:`protocol.FrameSize`)."""
        with self._lock:
            sent = self._sent.get(stamp_ns)
        return sent[:2] if sent is not None else None

    def status(self) -> dict:
        """Rates, latency and the node's state for the page's readout."""
        now = time.monotonic()
        with self._lock:
            while self._object_times and now - self._object_times[0] > FPS_WINDOW_S:
                self._object_times.popleft()
            n = len(self._object_times)
            fps = (n - 1) / (self._object_times[-1] - self._object_times[0]) if n > 1 else 0.0
            d = dict(self._diagnostics)
        return {'type': 'status', 'fps': round(fps, 1), 'latency_ms': d.get('latency_ms'),
                'backend': d.get('backend'), 'model': d.get('model'), 'mode': d.get('mode'),
                'frames_dropped': d.get('frames_dropped'), 'node': self.seem,
                'node_ready': self._node_clients['set_object'].service_is_ready(),
                'live': now - self._last_objects < self.objects_timeout}

    # ---------------------------------------------------------------- subscriptions
    def _on_image(self, msg) -> None:
        stamp = images.stamp_to_ns(msg.header.stamp)
        with self._lock:
            self._frames[stamp] = msg
            self._frames.move_to_end(stamp)
            while len(self._frames) > self.frame_buffer:
                self._frames.popitem(last=False)
            bare = time.monotonic() - self._last_objects > self.objects_timeout
        if bare:
            self._send_view(stamp, None)

    def _on_objects(self, msg: TrackedObjectArray) -> None:
        now = time.monotonic()
        with self._lock:
            self._last_objects = now
            self._object_times.append(now)
        self._send_view(images.stamp_to_ns(msg.header.stamp), [object_json(o) for o in msg.objects])

    def _send_view(self, stamp: int, objects: Optional[List[dict]]) -> None:
        with self._lock:
            msg = self._frames.get(stamp)
        if msg is None:
            return                      # the camera frame is gone (or never came): nothing to draw on
        try:
            jpeg, width, height = _encode_jpeg(msg, self.jpeg_quality)
        except ValueError as exc:       # images.ImageError: an encoding the page cannot show
            self.get_logger().error(f'image: {exc}', throttle_duration_sec=5.0)
            return
        with self._lock:
            self._sent[stamp] = (width, height, msg.header.frame_id)
            while len(self._sent) > SENT_FRAMES_KEPT:
                self._sent.popitem(last=False)
        self._deliver('view', View(stamp, msg.header.frame_id, width, height, jpeg, objects))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if values.get('camera', '') == self.camera:
                with self._lock:
                    self._diagnostics = values
        self._deliver('status', self.status())

    def _on_parameter_event(self, msg: ParameterEvent) -> None:
        if msg.node == self.seem and any(p.name in ('pipeline.mode', 'pipeline.vocabulary')
                                         for p in (*msg.changed_parameters, *msg.new_parameters)):
            self._deliver('parameters', None)

    # ---------------------------------------------------------------- commands (asyncio side)
    async def _call(self, name: str, request):
        client = self._node_clients[name]
        if not client.service_is_ready():
            raise NodeUnavailable(f'{client.srv_name} is not available: is the seem node running and configured?')
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def transfer(future) -> None:
            def settle() -> None:
                if done.done():
                    return
                if future.exception() is not None:
                    done.set_exception(future.exception())
                else:
                    done.set_result(future.result())
            loop.call_soon_threadsafe(settle)
        client.call_async(request).add_done_callback(transfer)
        try:
            return await asyncio.wait_for(done, self.service_timeout)
        except asyncio.TimeoutError:
            raise NodeUnavailable(f'{client.srv_name} did not answer within {self.service_timeout:g} s') from None

    async def execute(self, command: proto.Command) -> dict:
        """Carry out a validated command; returns the reply's fields (``ok``, ``message``, ...)."""
        if isinstance(command, proto.PromptCommand):
            return await self._prompts(command)
        if isinstance(command, proto.Rename):
            prompt = Prompt(object_id=command.object_id, mode=Prompt.REFINE, object_name=command.name)
            response = await self._call('set_object', SetObject.Request(prompt=prompt, camera=self.camera))
            return {'ok': response.success, 'message': response.message, 'object_ids': [response.object_id]}
        if isinstance(command, proto.Remove):
            response = await self._call('remove_object', RemoveObject.Request(object_id=command.object_id,
                                                                              camera=self.camera))
            return {'ok': response.success, 'message': response.message}
        if isinstance(command, proto.Reset):
            response = await self._call('reset', Reset.Request(camera=self.camera))
            return {'ok': response.success, 'message': response.message}
        if isinstance(command, proto.SetMode):
            return await self._set_parameter('pipeline.mode', ParameterValue(
                type=ParameterType.PARAMETER_STRING, string_value=command.mode))
        assert isinstance(command, proto.SetVocabulary)
        return await self._set_parameter('pipeline.vocabulary', ParameterValue(
            type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=list(command.names)))

    def _prompt_messages(self, command) -> List[Prompt]:
        """The Prompt messages of a prompt command, stamped with the frame the page showed."""
        with self._lock:
            frame_id = self._sent.get(command.stamp_ns, (0, 0, ''))[2]
        header = Header(stamp=images.ns_to_stamp(command.stamp_ns), frame_id=frame_id)
        if isinstance(command, proto.Text):
            return [Prompt(header=header, text=item) for item in command.items]
        if isinstance(command, proto.Click):
            return [Prompt(header=header, object_id=command.object_id, mode=Prompt.REFINE,
                           points=[Point(x=command.x, y=command.y)], point_labels=[command.positive])]
        if isinstance(command, proto.Box):
            x0, y0, x1, y1 = command.box
            return [Prompt(header=header, boxes=[BoundingBox2D(x_min=x0, y_min=y0, x_max=x1, y_max=y1)])]
        scribble = Polyline(points=[Point32(x=x, y=y) for x, y in command.points], closed=False)
        return [Prompt(header=header, object_id=command.object_id, mode=Prompt.REFINE, scribbles=[scribble])]

    async def _prompts(self, command) -> dict:
        ids, notes, ok = [], [], True
        for prompt in self._prompt_messages(command):
            response = await self._call('set_object', SetObject.Request(prompt=prompt, camera=self.camera))
            ok = ok and response.success
            ids.append(response.object_id)
            label = f"'{prompt.text}': " if prompt.text else ''
            notes.append(f'{label}{response.message}')
        return {'ok': ok, 'message': '; '.join(notes), 'object_ids': ids}

    async def _set_parameter(self, name: str, value: ParameterValue) -> dict:
        request = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
        (result,) = (await self._call('set_parameters', request)).results
        return {'ok': result.successful, 'message': result.reason or f'{name} set'}

    async def prompted_objects(self) -> dict:
        """The node's prompted objects (``~/list_objects``) and its mode and vocabulary."""
        listed = await self._call('list_objects', ListObjects.Request(camera=self.camera))
        params = await self._call('get_parameters', GetParameters.Request(names=['pipeline.mode',
                                                                               'pipeline.vocabulary']))
        mode, vocabulary = (params.values + [ParameterValue(), ParameterValue()])[:2]
        return {'type': 'objects', 'mode': mode.string_value, 'vocabulary': list(vocabulary.string_array_value),
                'objects': [{'id': p.object_id, 'name': p.object_name, 'text': p.text} for p in listed.objects]}


def view_message(view: View, status: dict) -> bytes:
    """A binary WebSocket message: uint32 LE header length, the JSON header, the JPEG."""
    header = json.dumps(view.header({'fps': status.get('fps'), 'latency_ms': status.get('latency_ms')})).encode()
    return len(header).to_bytes(4, 'little') + header + view.jpeg

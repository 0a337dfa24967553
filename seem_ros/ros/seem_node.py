"""The SEEM lifecycle node: camera images and prompts in, tracked instance masks with ids out.

Thin glue over :class:`seem_ros.pipeline.Pipeline` (segmentation and tracking) and
:mod:`seem_ros.geometry` (3D from aligned depth): messages are converted here, everything else
happens there. Inference runs on a worker thread (the newest image wins); after it, the image's
objects are placed in 3D with the depth image of the nearest stamp, when one has arrived (2D
output never waits for depth). Prompt topics and services run in their own callback group on a
multi-threaded executor.

Run: ``python -m seem_ros.ros.seem_node --ros-args --params-file config/seem.yaml``.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String

from ..geometry.depth3d import DEPTH_BUFFER, CameraIntrinsics, depth_to_metres, place_objects
from ..geometry.ros_outputs import MARKERS_AVAILABLE, MarkerArray, box_markers, point_cloud
from ..msg import Prompt, TrackedObjectArray
from ..pipeline import Frame, FrameResult, IdPool, LatestFrameWorker, Pipeline, PromptError, StampedBuffer
from ..prompts import InputLimits, ObjectPrompt
from ..srv import ListObjects, RemoveObject, Reset, SetObject
from . import conversions as conv
from .guard import EntryGuard, KeyedThrottle, SourceRate, parameters_refused, service_failure
from .input_stats import InputStats
from .params import RUNTIME, SeemParams, declare, ros_name


class SeemNode(LifecycleNode):
    """``seem`` lifecycle node.

    configure: validate parameters, load the checkpoint, create publishers and services (a bad
    parameter or checkpoint returns FAILURE with the reason logged); activate: subscribe and start
    the inference worker; deactivate: unsubscribe, stop the worker, drop buffered images and cached
    GPU memory; cleanup: release the model, publishers and services.
    """

    def __init__(self, **kwargs):
        self.params: Optional[SeemParams] = None
        self.pipeline: Optional[Pipeline] = None
        self._worker: Optional[LatestFrameWorker] = None
        self._pubs = {}
        self._srvs = []
        self._subs = []
        self._diag_timer = None
        self._depth = StampedBuffer(DEPTH_BUFFER)
        self._ids = IdPool()             # outlives pipelines: ids are never reused while the node runs
        self._lock = threading.Lock()    # guards _depth, _depth_info, _stats
        self._depth_info = None          # (K, width, height) of the newest depth/camera_info
        self._stats = {}                 # counters for ~/diagnostics, and _inputs: name -> InputStats
        self._inputs = {}
        self._reset_stats()              # (reset at every configure)
        self._limits = InputLimits()
        self._prompt_rate = SourceRate(SeemParams.limits__prompt_rate)
        self._throttle = KeyedThrottle()
        self._guard: Optional[EntryGuard] = None
        super().__init__('seem', **kwargs)
        self._guard = EntryGuard(self.get_logger(), self._throttle)
        for service in self._services:       # parameter and lifecycle services, made by rclpy
            service.callback = self._guard(f'service {service.srv_name}', service.callback, service_failure)
        for state_id, callback in self._callbacks.items():
            self._callbacks[state_id] = self._guard(f'transition {callback.__name__}', callback,
                                                    lambda *_: TransitionCallbackReturn.ERROR)
        declare(self)
        self.add_on_set_parameters_callback(self._guard('parameters', self._on_set_parameters, parameters_refused))
        self._prompt_group = MutuallyExclusiveCallbackGroup()
        self._input_group = MutuallyExclusiveCallbackGroup()

    # ---------------------------------------------------------------- guarded entry points
    def create_subscription(self, msg_type, topic, callback, *args, **kwargs):
        return super().create_subscription(msg_type, topic, self._guarded(f'topic {topic}', callback),
                                           *args, **kwargs)

    def create_service(self, srv_type, srv_name, callback, **kwargs):
        return super().create_service(srv_type, srv_name, self._guarded(f'service {srv_name}', callback,
                                                                        service_failure), **kwargs)

    def create_timer(self, timer_period_sec, callback, *args, **kwargs):
        return super().create_timer(timer_period_sec, self._guarded('timer', callback), *args, **kwargs)

    def _guarded(self, entry: str, callback, failed=None):
        # rclpy creates its own services inside Node.__init__, before the guard exists; they are
        # wrapped right after it (see __init__)
        return callback if self._guard is None else self._guard(entry, callback, failed)

    # ---------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load the model, create publishers and services."""
        try:
            params = SeemParams.from_node(self)
        except ValueError as exc:
            self.get_logger().error(f'configure failed: invalid parameter: {exc}')
            return TransitionCallbackReturn.FAILURE
        checkpoint = Path(params.model__checkpoint).expanduser()
        if not params.model__checkpoint or not checkpoint.is_file():
            self.get_logger().error(f"configure failed: model.checkpoint: no such file '{params.model__checkpoint}'")
            return TransitionCallbackReturn.FAILURE
        t0 = time.perf_counter()
        try:
            from ..predictor import SeemPredictor
            predictor = SeemPredictor.from_checkpoint(str(checkpoint), **params.predictor_options())
        except Exception as exc:  # noqa: BLE001 - any loading problem fails the transition
            self.get_logger().error(f"configure failed: cannot load checkpoint '{checkpoint}' as "
                                    f'{params.requested_model()}: {type(exc).__name__}: {exc}')
            return TransitionCallbackReturn.FAILURE
        self.params = params
        self.pipeline = Pipeline(predictor, params.pipeline_config(), self._ids)
        self._limits = params.input_limits()
        self._prompt_rate = SourceRate(params.limits__prompt_rate)
        self._reset_stats()
        out_qos = QoSProfile(depth=params.qos__depth)
        self._pubs = {'objects': self.create_lifecycle_publisher(TrackedObjectArray, '~/objects', out_qos),
                      'diagnostics': self.create_lifecycle_publisher(DiagnosticArray, '~/diagnostics', 10)}
        if params.publish__label_image:
            self._pubs['label_image'] = self.create_lifecycle_publisher(Image, '~/label_image', out_qos)
        if params.publish__overlay:
            self._pubs['overlay'] = self.create_lifecycle_publisher(Image, '~/overlay', out_qos)
        if params.depth__enabled and params.depth__publish_points:
            self._pubs['points'] = self.create_lifecycle_publisher(PointCloud2, '~/points', out_qos)
        if params.depth__enabled and params.depth__publish_markers:
            if MARKERS_AVAILABLE:
                self._pubs['markers'] = self.create_lifecycle_publisher(MarkerArray, '~/markers', out_qos)
            else:
                self.get_logger().warning('depth.publish_markers: visualization_msgs is not installed: '
                                          'no ~/markers')
        self._srvs = [self.create_service(srv_type, name, callback, callback_group=self._prompt_group)
                      for srv_type, name, callback in ((SetObject, '~/set_object', self._on_set_object),
                                                       (RemoveObject, '~/remove_object', self._on_remove_object),
                                                       (Reset, '~/reset', self._on_reset),
                                                       (ListObjects, '~/list_objects', self._on_list_objects))]
        self.get_logger().info(f'configured: {predictor.model_name} on {predictor.backend.describe()} '
                               f'({params.runtime__precision}), mode {params.pipeline__mode}, '
                               f'loaded in {time.perf_counter() - t0:.1f} s')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to images and prompts and start the inference worker."""
        p = self.params
        image_qos = QoSProfile(depth=p.qos__depth, reliability=ReliabilityPolicy.BEST_EFFORT
                               if p.qos__reliability == 'best_effort' else ReliabilityPolicy.RELIABLE)
        self._worker = LatestFrameWorker(self._infer, self._on_worker_error)
        sub, inputs, prompts = self.create_subscription, self._input_group, self._prompt_group
        image = (sub(Image, 'image', self._on_image, image_qos, callback_group=inputs) if p.input__transport == 'raw'
                 else sub(CompressedImage, 'image/compressed', self._on_compressed, image_qos, callback_group=inputs))
        self._subs = [image, sub(Prompt, '~/prompt', self._on_prompt, 10, callback_group=prompts),
                      sub(String, '~/text', self._on_text, 10, callback_group=prompts),
                      sub(Point, '~/click', self._on_click, 10, callback_group=prompts),
                      sub(PointStamped, '~/click_stamped', self._on_click_stamped, 10, callback_group=prompts)]
        if p.depth__enabled:
            self._subs += [sub(Image, 'depth', self._on_depth, image_qos, callback_group=inputs),
                           sub(CameraInfo, 'depth/camera_info', self._on_depth_info, image_qos, callback_group=inputs)]
        self._diag_timer = self.create_timer(p.diagnostics__period, self._publish_diagnostics, callback_group=prompts)
        self.get_logger().info(f'active: listening on {image.topic_name}')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker, drop buffered images and cached GPU memory."""
        self._stop_inputs()
        self.get_logger().info('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, publishers and services."""
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f'error in state {state.label}: releasing everything')
        self._stop_inputs()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_inputs(self) -> None:
        for s in self._subs:
            self.destroy_subscription(s)
        self._subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._worker is not None:
            self._worker.stop()
            with self._lock:
                self._stats['dropped_earlier'] += self._worker.dropped
            self._worker = None
        if self.pipeline is not None:
            self.pipeline.clear_frames()
        with self._lock:
            self._depth.clear()
            self._depth_info = None
        _empty_gpu_cache()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        for srv in self._srvs:
            self.destroy_service(srv)
        self._srvs = []
        if self.pipeline is not None:
            self.pipeline.reset()        # its ids go back to the pool (they are not handed out again soon)
        self.pipeline = None
        self.params = None
        _empty_gpu_cache()

    def _on_set_parameters(self, changes) -> SetParametersResult:
        """Validate every change; pipeline.* changes apply at once, the others at the next configure."""
        names = [ros_name(name) for name in SeemParams.__dataclass_fields__]
        values = {name: self.get_parameter(name).value for name in names}
        values.update({c.name: c.value for c in changes})
        try:
            new = SeemParams.from_values(values)
        except (ValueError, TypeError) as exc:
            with self._lock:
                self._stats['parameters_rejected'] += 1
            return SetParametersResult(successful=False, reason=str(exc))
        pipeline = self.pipeline
        if pipeline is not None:
            if any(c.name in RUNTIME for c in changes):
                pipeline.config = replace(new.pipeline_config(), overlay=pipeline.config.overlay,
                                          overlay_alpha=pipeline.config.overlay_alpha)
            later = [c.name for c in changes if c.name in names and c.name not in RUNTIME]
            if later:
                self.get_logger().info(f'{", ".join(later)} will apply at the next configure')
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- images
    def _on_image(self, msg: Image) -> None:
        self._received('image', msg.header)
        try:
            rgb = conv.image_to_rgb(msg, self._limits)
        except conv.ImageError as exc:
            self._input_error(f'image: {exc}')
            return
        self._submit(rgb, msg.header)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._received('image', msg.header)
        try:
            rgb = conv.compressed_to_rgb(msg, self._limits)
        except conv.ImageError as exc:
            self._input_error(f'image/compressed: {exc}')
            return
        self._submit(rgb, msg.header)

    def _received(self, name: str, header: Header) -> None:
        stats = self._inputs.get(name)
        if stats is not None:
            stats.add(conv.stamp_to_ns(header.stamp))

    def _on_depth(self, msg: Image) -> None:
        params = self.params
        if params is None:
            return
        self._received('depth', msg.header)
        try:
            depth = depth_to_metres(conv.image_to_numpy(msg, self._limits), msg.encoding,
                                    max_depth=params.depth__max_depth)
        except ValueError as exc:       # conv.ImageError too
            self._input_error(f'depth: {exc}')
            return
        with self._lock:
            self._depth.add(conv.stamp_to_ns(msg.header.stamp), depth)

    def _on_depth_info(self, msg: CameraInfo) -> None:
        """Keep the intrinsics of the depth image (the colour camera's do too: they are rescaled);
        physically impossible ones are rejected and the last good ones kept."""
        self._received('depth/camera_info', msg.header)
        try:
            CameraIntrinsics.from_matrix(msg.k, int(msg.width), int(msg.height))
        except ValueError as exc:
            self._input_error(f'depth/camera_info: {exc}')
            return
        with self._lock:
            self._depth_info = (tuple(msg.k), int(msg.width), int(msg.height))

    def _input_error(self, text: str) -> None:
        with self._lock:
            self._stats['input_errors'] += 1
        if self._throttle(text):
            self.get_logger().error(f'{text} (dropped; repeats are logged every {self._throttle.period:g} s)')

    def _submit(self, rgb: np.ndarray, header: Header) -> None:
        pipeline, worker = self.pipeline, self._worker
        if pipeline is None or worker is None:
            return
        frame = Frame(rgb, conv.stamp_to_ns(header.stamp), header.frame_id)
        with self._lock:
            self._stats['received'] += 1
            self._stats['last_image'] = time.monotonic()
        pipeline.remember(frame)
        worker.submit((frame, time.perf_counter()))

    def _infer(self, item) -> None:
        """Worker: run the pipeline, then pair depth, publish every output with the image header.

        The job keeps the pipeline, parameters and publishers it started with (deactivate waits
        for it, see :meth:`_stop_inputs`), so a reconfiguration never sees half of it."""
        frame, received = item
        pipeline, params, pubs = self.pipeline, self.params, self._pubs
        if pipeline is None:
            return
        result = pipeline.process(frame)
        for warning in result.warnings:
            if self._throttle(warning):
                self.get_logger().warning(warning)
        self._publish(pubs, result, self._geometry(result, params) if params.depth__enabled else None)
        latency = (time.perf_counter() - received) * 1e3
        with self._lock:
            s = self._stats
            s['processed'] += 1
            s['latency_ms'] = latency
            s['latency_sum_ms'] += latency
            s['timings'] = result.timings
            s['objects'] = len(result.objects)

    def _geometry(self, result: FrameResult, params) -> Optional[list]:
        """Per object of ``result``, its :class:`~seem_ros.geometry.ObjectGeometry` from the depth
        image nearest to its stamp (None for LOST objects); None when the depth or its
        CameraInfo is missing or does not fit (throttled message, counted in diagnostics)."""
        with self._lock:
            depth = self._depth.nearest(result.frame.stamp_ns, int(params.depth__slop_ms * 1e6))
            info = self._depth_info
            self._stats['depth_paired' if depth is not None else 'depth_missing'] += 1
            if info is None:
                self._stats['camera_info_missing'] += 1
        problems = []
        if depth is None:
            problems.append(f'no depth image within {params.depth__slop_ms:g} ms of the image')
        if info is None:
            problems.append('no depth/camera_info received')
        if problems:
            self._warn_throttled(f'3D fields unset: {" and ".join(problems)} (2D outputs are published)')
            return None
        k, width, height = info
        try:
            return place_objects(result.shown_masks(), depth, k, (width, height), erode_px=params.depth__erode_px,
                                 min_points=params.depth__min_points, return_points=params.depth__publish_points)
        except ValueError as exc:
            text = f'3D fields unset: {exc}'
            if self._throttle(text):
                self.get_logger().error(f'{text} (repeats are logged every {self._throttle.period:g} s)')
            return None

    def _warn_throttled(self, text: str) -> None:
        if self._throttle(text):
            self.get_logger().warning(f'{text} (repeats are logged every {self._throttle.period:g} s)')

    @staticmethod
    def _publish(pubs: dict, result: FrameResult, geometries: Optional[list]) -> None:
        """Every output of ``result`` on ``pubs``; the 3D ones (empty without ``geometries``) when enabled."""
        header = Header(stamp=conv.ns_to_stamp(result.frame.stamp_ns), frame_id=result.frame.frame_id)
        pubs['objects'].publish(conv.result_to_msg(result, header, geometries))
        if 'label_image' in pubs:
            pubs['label_image'].publish(conv.numpy_to_image(result.label_image, 'mono16', header))
        if 'overlay' in pubs and result.overlay is not None:
            pubs['overlay'].publish(conv.numpy_to_image(result.overlay, 'rgb8', header))
        if 'points' in pubs or 'markers' in pubs:
            placed = [(o, g) for o, g in zip(result.objects, geometries or ()) if g is not None]
            ids, labels = [o.id for o, _ in placed], [o.label for o, _ in placed]
            if 'points' in pubs:
                pubs['points'].publish(point_cloud(header, [g for _, g in placed], ids))
            if 'markers' in pubs:
                pubs['markers'].publish(box_markers(header, [g for _, g in placed], ids, labels))

    def _on_worker_error(self, exc: BaseException) -> None:
        reason = self._guard.report('inference of an image', exc)
        with self._lock:
            self._stats['inference_errors'] += 1
            self._stats['last_error'] = reason

    # ---------------------------------------------------------------- prompts
    def _add(self, prompt: ObjectPrompt, source: str, stamp=None, object_id: int = 0, refine: bool = False,
             warnings=()) -> tuple:
        """Add/update an object from ``source``; logs the outcome. Returns (id or 0, message)."""
        pipeline = self.pipeline
        if pipeline is None:
            return 0, 'the node is not configured'
        stamp_ns = conv.stamp_to_ns(stamp) if stamp is not None else 0
        try:
            object_id, fit_warnings = pipeline.add_object(prompt, stamp_ns=stamp_ns or None, object_id=object_id,
                                                          refine=refine)
        except PromptError as exc:
            self._prompt_rejected(source, exc)
            return 0, str(exc)
        notes = [*warnings, *fit_warnings]
        for note in notes:
            self.get_logger().warning(f'{source}: {note}')
        label = f" '{prompt.name or prompt.text}'" if prompt.name or prompt.text else ''
        self.get_logger().info(f'{source}: object {object_id}{label}')
        return object_id, '; '.join(notes) or f'object {object_id}'

    def _convert(self, source: str, convert, *args):
        """``convert(*args)`` for a prompt of ``source``, within its rate (``limits.prompt_rate``);
        raises :class:`PromptError` when the rate is exceeded or the message is rejected."""
        if not self._prompt_rate(source):
            raise PromptError(f'more than {self._prompt_rate.rate:g} prompts per second (limits.prompt_rate)')
        return convert(*args)

    def _prompt_rejected(self, source: str, exc: Exception) -> None:
        with self._lock:
            self._stats['prompts_rejected'] += 1
        text = f'{source}: prompt rejected: {exc}'
        if self._throttle(text):
            self.get_logger().error(text)

    def _on_prompt(self, msg: Prompt) -> None:
        try:
            prompt, warnings = self._convert('~/prompt', conv.prompt_from_msg, msg, self._limits)
        except PromptError as exc:
            self._prompt_rejected('~/prompt', exc)
            return
        self._add(prompt, '~/prompt', msg.header.stamp, msg.object_id, msg.mode == Prompt.REFINE, warnings)

    def _on_text(self, msg: String) -> None:
        try:
            prompts, warnings = self._convert('~/text', conv.text_to_prompts, msg.data, self._limits)
        except PromptError as exc:
            self._prompt_rejected('~/text', exc)
            return
        for note in warnings:
            self.get_logger().warning(f'~/text: {note}')
        for prompt in prompts:
            self._add(prompt, '~/text')

    def _on_click(self, msg: Point, source: str = '~/click', stamp=None) -> None:
        try:
            prompt = self._convert(source, conv.point_to_prompt, msg)
        except PromptError as exc:
            self._prompt_rejected(source, exc)
            return
        self._add(prompt, source, stamp)

    def _on_click_stamped(self, msg: PointStamped) -> None:
        self._on_click(msg.point, '~/click_stamped', msg.header.stamp)

    def _on_set_object(self, request, response):
        try:
            prompt, warnings = self._convert('~/set_object', conv.prompt_from_msg, request.prompt, self._limits)
        except PromptError as exc:
            self._prompt_rejected('~/set_object', exc)
            response.success, response.message = False, str(exc)
            return response
        p = request.prompt
        object_id, message = self._add(prompt, '~/set_object', p.header.stamp, p.object_id,
                                       p.mode == Prompt.REFINE, warnings)
        response.success, response.message, response.object_id = object_id > 0, message, object_id
        return response

    def _on_remove_object(self, request, response):
        pipeline = self.pipeline
        try:
            if pipeline is None:
                raise KeyError('the node is not configured')
            removed = pipeline.remove_object(request.object_id, request.object_name)
        except KeyError as exc:
            response.success, response.message = False, exc.args[0]
            self.get_logger().error(f'~/remove_object: {exc.args[0]}')
            return response
        response.success, response.message = True, f'removed object {removed}'
        self.get_logger().info(f'~/remove_object: removed object {removed}')
        return response

    def _on_reset(self, request, response):
        if self.pipeline is not None:
            self.pipeline.reset()
        response.success, response.message = self.pipeline is not None, 'all objects removed'
        self.get_logger().info('~/reset: all objects removed')
        return response

    def _on_list_objects(self, request, response):
        infos = self.pipeline.list_objects() if self.pipeline is not None else []
        response.objects = [conv.prompt_to_msg(info.prompt, info.id) for info in infos]
        return response

    # ---------------------------------------------------------------- diagnostics
    def _reset_stats(self) -> None:
        with self._lock:
            self._stats = dict(received=0, processed=0, input_errors=0, inference_errors=0, latency_ms=0.0,
                               latency_sum_ms=0.0, timings={}, objects=0, depth_paired=0, depth_missing=0,
                               camera_info_missing=0, last_image=None, last_error='', dropped_earlier=0,
                               prompts_rejected=0, parameters_rejected=0)
            self._inputs = {name: InputStats() for name in ('image', 'depth', 'depth/camera_info')}

    def _publish_diagnostics(self) -> None:
        params, worker, pipeline = self.params, self._worker, self.pipeline
        if params is None or pipeline is None:
            return
        with self._lock:
            s = dict(self._stats)
        dropped = s['dropped_earlier'] + (worker.dropped if worker is not None else 0)
        stale = s['last_image'] is None or time.monotonic() - s['last_image'] > 5 * params.diagnostics__period
        level, message = DiagnosticStatus.OK, 'running'
        if s['inference_errors']:
            level, message = DiagnosticStatus.ERROR, f"inference errors, last: {s['last_error']}"
        elif stale:
            level, message = DiagnosticStatus.WARN, 'no images received'
        values = {
            'backend': pipeline.predictor.backend.name, 'device': params.runtime__device,
            'precision': params.runtime__precision, 'model': pipeline.predictor.model_name,
            'mode': pipeline.config.mode.value, 'frames_received': s['received'], 'frames_processed': s['processed'],
            'frames_dropped': dropped, 'input_errors': s['input_errors'], 'inference_errors': s['inference_errors'],
            'latency_ms': round(s['latency_ms'], 1),
            'latency_mean_ms': round(s['latency_sum_ms'] / s['processed'], 1) if s['processed'] else 0.0,
            'timings_ms': json.dumps({k: round(v, 1) for k, v in s['timings'].items()}),
            'objects': s['objects'], 'prompted_objects': len(pipeline.list_objects()),
            'callback_errors': self._guard.total(), 'last_callback_error': self._guard.last_error,
            'prompts_rejected': s['prompts_rejected'], 'parameters_rejected': s['parameters_rejected'],
        }
        for name in ('image', 'depth', 'depth/camera_info') if params.depth__enabled else ('image',):
            values.update({f'{name}.{key}': value for key, value in self._inputs[name].report().items()})
        if params.depth__enabled:
            values.update(depth_paired=s['depth_paired'], depth_missing=s['depth_missing'],
                          camera_info_missing=s['camera_info_missing'])
        status = DiagnosticStatus(level=level, name=f'{self.get_fully_qualified_name()}: inference', message=message,
                                  hardware_id=params.runtime__device,
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        self._pubs['diagnostics'].publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                                status=[status]))


def _empty_gpu_cache() -> None:
    torch = sys.modules.get('torch')
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


EXIT_CONFIGURE_FAILED = 1


def main(args=None) -> int:
    """Run the node until SIGINT/SIGTERM; returns the exit status.

    With ``autostart`` it configures and activates itself, and a failed configure exits with
    :data:`EXIT_CONFIGURE_FAILED` (the reason is logged) so that supervisors see it; without, it
    stays unconfigured until a lifecycle manager drives it.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = SeemNode()
        executor = MultiThreadedExecutor(num_threads=3)
        executor.add_node(node)
        if not node.get_parameter('autostart').value:
            node.get_logger().info('autostart is false: unconfigured, waiting for lifecycle transitions '
                                   '(~/change_state)')
        elif node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal('configure failed (reason above) and autostart is true: exiting')
            return EXIT_CONFIGURE_FAILED
        else:
            node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():   # a transition interrupted by SIGINT fails with RCLError; anything else is a bug
            raise
    finally:
        if node is not None:
            node.on_shutdown(None)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""The SEEM lifecycle node: camera images and prompts in, tracked instance masks with ids out.

An adapter over :class:`seem_ros.session.Session` (segmentation, tracking, prompt intake, depth
pairing and 3D, the outputs as plain data; offline replay uses the same session): messages are
converted here, threads, publishers and the lifecycle are handled here, everything else happens
there. Inference runs on a worker thread (the newest image wins); after it, the image's objects
are placed in 3D with the depth image of the nearest stamp, when one has arrived (2D output
never waits for depth). Prompt topics and services run in their own callback group on a
multi-threaded executor.

Run: ``python -m seem_ros.ros.seem_node --ros-args --params-file config/seem.yaml``.
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import replace
from typing import Optional, Tuple

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PointStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy._rclpy_pybind11 import InvalidHandle, RCLError
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String

from ..geometry.ros_outputs import MARKERS_AVAILABLE, MarkerArray
from ..msg import Prompt, TrackedObjectArray
from ..pipeline import Frame, IdPool, LatestFrameWorker, Pipeline
from ..prompts import InputLimits, ObjectPrompt, PromptError
from ..session import LoadError, Session, SessionOutput, load_session
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
        self.session: Optional[Session] = None
        self._worker: Optional[LatestFrameWorker] = None
        self._pubs = {}
        self._srvs = []
        self._subs = []
        self._diag_timer = None
        self._ids = IdPool()             # outlives sessions: ids are never reused while the node runs
        self._lock = threading.Lock()    # guards _stats
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

    @property
    def pipeline(self) -> Optional[Pipeline]:
        """The configured session's pipeline, or None."""
        session = self.session
        return session.pipeline if session is not None else None

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
        t0 = time.perf_counter()
        try:
            session = load_session(params, ids=self._ids)
        except LoadError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        predictor = session.pipeline.predictor
        self.params = params
        self.session = session
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
        assert p is not None                 # set by on_configure
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
        worker, self._worker = self._worker, None      # shutdown may race a transition: stop it once
        if worker is not None:
            worker.stop()
            with self._lock:
                self._stats['dropped_earlier'] += worker.dropped
        if self.session is not None:
            self.session.clear()
        _empty_gpu_cache()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        for srv in self._srvs:
            self.destroy_service(srv)
        self._srvs = []
        if self.session is not None:
            self.session.pipeline.reset()    # its ids go back to the pool (they are not handed out again soon)
        self.session = None
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
        session = self.session
        if session is None:
            return
        self._received('depth', msg.header)
        try:
            session.depth(conv.image_to_numpy(msg, self._limits), msg.encoding, conv.stamp_to_ns(msg.header.stamp))
        except ValueError as exc:       # conv.ImageError too
            self._input_error(f'depth: {exc}')

    def _on_depth_info(self, msg: CameraInfo) -> None:
        """Keep the intrinsics of the depth image (the colour camera's do too: they are rescaled);
        physically impossible ones are rejected and the last good ones kept."""
        self._received('depth/camera_info', msg.header)
        session = self.session
        if session is None:
            return
        try:
            session.depth_info(msg.k, msg.width, msg.height)
        except ValueError as exc:
            self._input_error(f'depth/camera_info: {exc}')

    def _input_error(self, text: str) -> None:
        with self._lock:
            self._stats['input_errors'] += 1
        if self._throttle(text):
            self.get_logger().error(f'{text} (dropped; repeats are logged every {self._throttle.period:g} s)')

    def _submit(self, rgb: np.ndarray, header: Header) -> None:
        session, worker = self.session, self._worker
        if session is None or worker is None:
            return
        frame = session.frame(rgb, conv.stamp_to_ns(header.stamp), header.frame_id)
        with self._lock:
            self._stats['received'] += 1
            self._stats['last_image'] = time.monotonic()
        worker.submit((session, frame, time.perf_counter()))

    def _infer(self, item: Tuple[Session, Frame, float]) -> None:
        """Worker: process the frame in its session, publish every output with the image header.

        The job keeps the session, parameters and publishers it started with (deactivate waits
        for it, see :meth:`_stop_inputs`), so a reconfiguration never sees half of it."""
        session, frame, received = item
        params, pubs = self.params, self._pubs
        if params is None or session is not self.session:
            return                                   # reconfigured meanwhile: its outputs are dropped
        output = session.process(frame)
        for warning in output.result.warnings:
            if self._throttle(warning):
                self.get_logger().warning(warning)
        if output.problem and self._throttle(output.problem):
            text = f'{output.problem} (repeats are logged every {self._throttle.period:g} s)'
            # one call site per severity: rclpy refuses a call site whose severity changes
            if output.problem_is_error:
                self.get_logger().error(text)
            else:
                self.get_logger().warning(text)
        try:
            self._publish(pubs, output)
        except RCLError:
            if self.context.ok():
                raise
            return                                   # shutting down (SIGINT): the outputs are dropped
        latency = (time.perf_counter() - received) * 1e3
        with self._lock:
            s = self._stats
            s['processed'] += 1
            s['latency_ms'] = latency
            s['latency_sum_ms'] += latency
            s['timings'] = output.result.timings
            s['objects'] = len(output.result.objects)

    @staticmethod
    def _publish(pubs: dict, output: SessionOutput) -> None:
        """Every output of the frame on the publishers in ``pubs`` (those configured)."""
        frame = output.result.frame
        header = Header(stamp=conv.ns_to_stamp(frame.stamp_ns), frame_id=frame.frame_id)
        keys = [k for k in ('objects', 'label_image', 'overlay', 'points', 'markers') if k in pubs]
        for key, msg in conv.output_messages(output, header, keys).items():
            pubs[key].publish(msg)

    def _on_worker_error(self, exc: BaseException) -> None:
        assert self._guard is not None        # made in __init__
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
                               latency_sum_ms=0.0, timings={}, objects=0, last_image=None, last_error='',
                               dropped_earlier=0, prompts_rejected=0, parameters_rejected=0)
            self._inputs = {name: InputStats() for name in ('image', 'depth', 'depth/camera_info')}

    def _publish_diagnostics(self) -> None:
        params, worker, session = self.params, self._worker, self.session
        if params is None or session is None:
            return
        pipeline = session.pipeline
        assert self._guard is not None        # made in __init__
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
            values.update({key: session.counts[key] for key in ('depth_paired', 'depth_missing',
                                                                 'camera_info_missing')})
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


def _spin(executor, node: SeemNode) -> None:
    """Spin until shutdown. rclpy's executor can raise InvalidHandle when a transition destroys a
    subscription, timer or service while another executor thread is adding it to its wait set
    (ros2/rclpy#1206, #1355); the entity is gone by then, so the node spins on."""
    while rclpy.ok(context=node.context):
        try:
            executor.spin()
        except InvalidHandle as exc:
            node.get_logger().debug(f'executor: an entity destroyed while waited on ({exc}); spinning on')


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
        _spin(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():   # a transition interrupted by SIGINT fails with RCLError; anything else is a bug
            raise
    finally:
        if node is not None:
            node.on_shutdown(None)  # type: ignore[arg-type]  # outside a transition there is no state; rclpy ignores it
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())

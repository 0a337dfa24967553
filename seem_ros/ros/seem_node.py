"""The SEEM lifecycle node: camera images and prompts in, tracked instance masks with ids out.

An adapter over :class:`seem_ros.session.Session` (segmentation, tracking, prompt intake, depth
pairing and 3D, the outputs as plain data; offline replay uses the same session): messages are
converted here, threads, publishers and the lifecycle are handled here, everything else happens
there. Inference runs on a worker thread (the newest image wins); after it, the image's objects
are placed in 3D with the depth image of the nearest stamp, when one has arrived (2D output
never waits for depth). Prompt topics and services run in their own callback group on a
multi-threaded executor.

Several cameras (parameter ``cameras``): one session per camera over one loaded model, each with
its inputs under ``<camera>/``, its prompt topics and outputs under ``~/<camera>/``; the worker
serves the cameras' newest frames round-robin, ids are unique across cameras, diagnostics have one
status per camera and the services take a camera name.

Run: ``python -m seem_ros.ros.seem_node --ros-args --params-file config/seem.yaml``.
"""
from __future__ import annotations

import functools
import json
import sys
import threading
import time
from dataclasses import replace
from typing import Dict, Optional, Tuple

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
from ..pipeline import Frame, IdPool, LatestFrameWorker
from ..prompts import InputLimits, ObjectPrompt, PromptError
from ..session import LoadError, Session, SessionOutput, load_sessions
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
        self.sessions: Dict[str, Session] = {}   # camera name -> its session, in the order of `cameras`
        self._worker: Optional[LatestFrameWorker] = None
        self._pubs: Dict[str, dict] = {}         # camera -> output name -> publisher
        self._diag_pub = None
        self._srvs = []
        self._subs = []
        self._diag_timer = None
        self._ids = IdPool()             # outlives sessions: ids are never reused while the node runs
        self._lock = threading.Lock()    # guards _stats, _camera_stats
        self._stats = {}                 # node-wide counters for ~/diagnostics
        self._camera_stats: Dict[str, dict] = {}       # camera -> its counters
        self._inputs: Dict[str, Dict[str, InputStats]] = {}   # camera -> input name -> InputStats
        self._reset_stats(('',))         # (reset at every configure)
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

    def _session_for(self, camera: str, object_id: int = 0, name: str = '') -> Tuple[str, Session]:
        """The camera and session a service request names: ``camera``, else the only camera, else
        the camera that has object ``object_id`` (or the object named ``name``).

        Raises:
            KeyError: not configured, an unknown camera, or '' that names no single camera.
        """
        sessions = self.sessions
        if not sessions:
            raise KeyError('the node is not configured')
        if camera:
            if camera not in sessions:
                raise KeyError(f"no camera '{camera}' (cameras: {', '.join(sessions)})")
            return camera, sessions[camera]
        if len(sessions) == 1:
            return next(iter(sessions.items()))
        for cam, session in sessions.items():
            for info in session.pipeline.list_objects():
                if (object_id and info.id == object_id) or (not object_id and name and info.prompt.name == name):
                    return cam, session
        what = f'object {object_id}' if object_id else f"object '{name}'" if name else 'a new object'
        raise KeyError(f"no camera has {what}: name one in 'camera' ({', '.join(sessions)})" if object_id or name
                       else f"{what} needs a camera: name one in 'camera' ({', '.join(sessions)})")

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
            sessions = load_sessions(params, len(params.cameras), ids=self._ids)
        except LoadError as exc:
            self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        predictor = sessions[0].pipeline.predictor
        self.params = params
        self.sessions = dict(zip(params.cameras, sessions))
        self._limits = params.input_limits()
        self._prompt_rate = SourceRate(params.limits__prompt_rate)
        self._reset_stats(params.cameras)
        self._diag_pub = self.create_lifecycle_publisher(DiagnosticArray, '~/diagnostics', 10)
        self._pubs = {camera: self._create_outputs(camera, params) for camera in params.cameras}
        self._srvs = [self.create_service(srv_type, name, callback, callback_group=self._prompt_group)
                      for srv_type, name, callback in ((SetObject, '~/set_object', self._on_set_object),
                                                       (RemoveObject, '~/remove_object', self._on_remove_object),
                                                       (Reset, '~/reset', self._on_reset),
                                                       (ListObjects, '~/list_objects', self._on_list_objects))]
        cameras = f", cameras {', '.join(params.cameras)}" if params.cameras != ('',) else ''
        self.get_logger().info(f'configured: {predictor.model_name} on {predictor.backend.describe()} '
                               f'({params.runtime__precision}), mode {params.pipeline__mode}{cameras}, '
                               f'loaded in {time.perf_counter() - t0:.1f} s')
        return TransitionCallbackReturn.SUCCESS

    def _create_outputs(self, camera: str, params: SeemParams) -> dict:
        """The output publishers of one camera (``~/<camera>/objects``, ...)."""
        out_qos = QoSProfile(depth=params.qos__depth)
        create = self.create_lifecycle_publisher
        pubs = {'objects': create(TrackedObjectArray, _private(camera, 'objects'), out_qos)}
        if params.publish__label_image:
            pubs['label_image'] = create(Image, _private(camera, 'label_image'), out_qos)
        if params.publish__overlay:
            pubs['overlay'] = create(Image, _private(camera, 'overlay'), out_qos)
        if params.depth__enabled and params.depth__publish_points:
            pubs['points'] = create(PointCloud2, _private(camera, 'points'), out_qos)
        if params.depth__enabled and params.depth__publish_markers:
            if MARKERS_AVAILABLE:
                pubs['markers'] = create(MarkerArray, _private(camera, 'markers'), out_qos)
            elif not camera or camera == params.cameras[0]:
                self.get_logger().warning('depth.publish_markers: visualization_msgs is not installed: '
                                          'no ~/markers')
        return pubs

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to images and prompts and start the inference worker."""
        p = self.params
        assert p is not None                 # set by on_configure
        image_qos = QoSProfile(depth=p.qos__depth, reliability=ReliabilityPolicy.BEST_EFFORT
                               if p.qos__reliability == 'best_effort' else ReliabilityPolicy.RELIABLE)
        self._worker = LatestFrameWorker(self._infer, self._on_worker_error)
        images = []
        for camera in self.sessions:
            images.append(self._subscribe(camera, p, image_qos))
        self._diag_timer = self.create_timer(p.diagnostics__period, self._publish_diagnostics,
                                             callback_group=self._prompt_group)
        self.get_logger().info(f'active: listening on {", ".join(images)}')
        return super().on_activate(state)

    def _subscribe(self, camera: str, p: SeemParams, image_qos: QoSProfile) -> str:
        """Subscribe to one camera's inputs and prompt topics; returns its image topic."""
        sub, inputs, prompts = self.create_subscription, self._input_group, self._prompt_group

        def bound(callback):
            return functools.partial(callback, camera)
        image = (sub(Image, _input(camera, 'image'), bound(self._on_image), image_qos, callback_group=inputs)
                 if p.input__transport == 'raw' else
                 sub(CompressedImage, _input(camera, 'image/compressed'), bound(self._on_compressed), image_qos,
                     callback_group=inputs))
        self._subs += [image,
                       sub(Prompt, _private(camera, 'prompt'), bound(self._on_prompt), 10, callback_group=prompts),
                       sub(String, _private(camera, 'text'), bound(self._on_text), 10, callback_group=prompts),
                       sub(Point, _private(camera, 'click'), bound(self._on_click), 10, callback_group=prompts),
                       sub(PointStamped, _private(camera, 'click_stamped'), bound(self._on_click_stamped), 10,
                           callback_group=prompts)]
        if p.depth__enabled:
            self._subs += [sub(Image, _input(camera, 'depth'), bound(self._on_depth), image_qos, callback_group=inputs),
                           sub(CameraInfo, _input(camera, 'depth/camera_info'), bound(self._on_depth_info), image_qos,
                               callback_group=inputs)]
        return image.topic_name

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
                for camera, stats in self._camera_stats.items():
                    stats['dropped_earlier'] += worker.dropped_by[camera]
        for session in self.sessions.values():
            session.clear()
        _empty_gpu_cache()

    def _release(self) -> None:
        for pub in [pub for pubs in self._pubs.values() for pub in pubs.values()] + [self._diag_pub]:
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._pubs, self._diag_pub = {}, None
        for srv in self._srvs:
            self.destroy_service(srv)
        self._srvs = []
        for session in self.sessions.values():
            session.pipeline.reset()    # its ids go back to the pool (they are not handed out again soon)
        self.sessions = {}
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
        if self.sessions:
            if any(c.name in RUNTIME for c in changes):
                for session in self.sessions.values():
                    pipeline = session.pipeline
                    pipeline.config = replace(new.pipeline_config(), overlay=pipeline.config.overlay,
                                              overlay_alpha=pipeline.config.overlay_alpha)
            later = [c.name for c in changes if c.name in names and c.name not in RUNTIME]
            if later:
                self.get_logger().info(f'{", ".join(later)} will apply at the next configure')
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- images
    def _on_image(self, camera: str, msg: Image) -> None:
        self._received(camera, 'image', msg.header)
        try:
            rgb = conv.image_to_rgb(msg, self._limits)
        except conv.ImageError as exc:
            self._input_error(camera, f'{_input(camera, "image")}: {exc}')
            return
        self._submit(camera, rgb, msg.header)

    def _on_compressed(self, camera: str, msg: CompressedImage) -> None:
        self._received(camera, 'image', msg.header)
        try:
            rgb = conv.compressed_to_rgb(msg, self._limits)
        except conv.ImageError as exc:
            self._input_error(camera, f'{_input(camera, "image/compressed")}: {exc}')
            return
        self._submit(camera, rgb, msg.header)

    def _received(self, camera: str, name: str, header: Header) -> None:
        stats = self._inputs.get(camera, {}).get(name)
        if stats is not None:
            stats.add(conv.stamp_to_ns(header.stamp))

    def _on_depth(self, camera: str, msg: Image) -> None:
        session = self.sessions.get(camera)
        if session is None:
            return
        self._received(camera, 'depth', msg.header)
        try:
            session.depth(conv.image_to_numpy(msg, self._limits), msg.encoding, conv.stamp_to_ns(msg.header.stamp))
        except ValueError as exc:       # conv.ImageError too
            self._input_error(camera, f'{_input(camera, "depth")}: {exc}')

    def _on_depth_info(self, camera: str, msg: CameraInfo) -> None:
        """Keep the intrinsics of the depth image (the colour camera's do too: they are rescaled);
        physically impossible ones are rejected and the last good ones kept."""
        self._received(camera, 'depth/camera_info', msg.header)
        session = self.sessions.get(camera)
        if session is None:
            return
        try:
            session.depth_info(msg.k, msg.width, msg.height)
        except ValueError as exc:
            self._input_error(camera, f'{_input(camera, "depth/camera_info")}: {exc}')

    def _input_error(self, camera: str, text: str) -> None:
        with self._lock:
            if camera in self._camera_stats:
                self._camera_stats[camera]['input_errors'] += 1
        if self._throttle(text):
            self.get_logger().error(f'{text} (dropped; repeats are logged every {self._throttle.period:g} s)')

    def _submit(self, camera: str, rgb: np.ndarray, header: Header) -> None:
        session, worker = self.sessions.get(camera), self._worker
        if session is None or worker is None:
            return
        frame = session.frame(rgb, conv.stamp_to_ns(header.stamp), header.frame_id)
        with self._lock:
            self._camera_stats[camera]['received'] += 1
            self._camera_stats[camera]['last_image'] = time.monotonic()
        worker.submit((camera, session, frame, time.perf_counter()), source=camera)

    def _infer(self, item: Tuple[str, Session, Frame, float]) -> None:
        """Worker: one camera's frame; a failure is counted for that camera, the others go on."""
        try:
            self._process(*item)
        except Exception as exc:  # noqa: BLE001 - reported in ~/diagnostics and the log
            self._inference_error(item[0], exc)

    def _process(self, camera: str, session: Session, frame: Frame, received: float) -> None:
        """Process the frame in its camera's session, publish every output with the image header.

        The job keeps the session, parameters and publishers it started with (deactivate waits
        for it, see :meth:`_stop_inputs`), so a reconfiguration never sees half of it."""
        params, pubs = self.params, self._pubs.get(camera, {})
        if params is None or session is not self.sessions.get(camera):
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
            s = self._camera_stats[camera]
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

    def _inference_error(self, camera: str, exc: BaseException) -> None:
        assert self._guard is not None        # made in __init__
        where = f' from {_input(camera, "image")}' if camera else ''
        reason = self._guard.report(f'inference of an image{where}', exc)
        with self._lock:
            if camera in self._camera_stats:
                self._camera_stats[camera]['inference_errors'] += 1
                self._camera_stats[camera]['last_error'] = reason

    def _on_worker_error(self, exc: BaseException) -> None:
        """The worker's last resort (:meth:`_infer` reports its own errors)."""
        assert self._guard is not None        # made in __init__
        self._guard.report('inference worker', exc)

    # ---------------------------------------------------------------- prompts
    def _add(self, camera: str, prompt: ObjectPrompt, source: str, stamp=None, object_id: int = 0,
             refine: bool = False, warnings=()) -> tuple:
        """Add/update an object of ``camera`` ('' from a service: see :meth:`_session_for`) from
        ``source``; logs the outcome. Returns (id or 0, message)."""
        try:
            camera, session = self._session_for(camera, object_id)
        except KeyError as exc:
            self._prompt_rejected(source, exc.args[0])
            return 0, exc.args[0]
        stamp_ns = conv.stamp_to_ns(stamp) if stamp is not None else 0
        try:
            object_id, fit_warnings = session.add_prompt(prompt, stamp_ns=stamp_ns, object_id=object_id,
                                                         refine=refine)
        except PromptError as exc:
            self._prompt_rejected(source, exc)
            return 0, str(exc)
        notes = [*warnings, *fit_warnings]
        for note in notes:
            self.get_logger().warning(f'{source}: {note}')
        label = f" '{prompt.name or prompt.text}'" if prompt.name or prompt.text else ''
        where = f' on camera {camera}' if camera else ''
        self.get_logger().info(f'{source}: object {object_id}{label}{where}')
        return object_id, '; '.join(notes) or f'object {object_id}'

    def _convert(self, source: str, convert, *args):
        """``convert(*args)`` for a prompt of ``source``, within its rate (``limits.prompt_rate``);
        raises :class:`PromptError` when the rate is exceeded or the message is rejected."""
        if not self._prompt_rate(source):
            raise PromptError(f'more than {self._prompt_rate.rate:g} prompts per second (limits.prompt_rate)')
        return convert(*args)

    def _prompt_rejected(self, source: str, exc) -> None:
        with self._lock:
            self._stats['prompts_rejected'] += 1
        text = f'{source}: prompt rejected: {exc}'
        if self._throttle(text):
            self.get_logger().error(text)

    def _on_prompt(self, camera: str, msg: Prompt) -> None:
        source = _private(camera, 'prompt')
        try:
            prompt, warnings = self._convert(source, conv.prompt_from_msg, msg, self._limits)
        except PromptError as exc:
            self._prompt_rejected(source, exc)
            return
        self._add(camera, prompt, source, msg.header.stamp, msg.object_id, msg.mode == Prompt.REFINE, warnings)

    def _on_text(self, camera: str, msg: String) -> None:
        source = _private(camera, 'text')
        try:
            prompts, warnings = self._convert(source, conv.text_to_prompts, msg.data, self._limits)
        except PromptError as exc:
            self._prompt_rejected(source, exc)
            return
        for note in warnings:
            self.get_logger().warning(f'{source}: {note}')
        for prompt in prompts:
            self._add(camera, prompt, source)

    def _on_click(self, camera: str, msg: Point, source: str = '', stamp=None) -> None:
        source = source or _private(camera, 'click')
        try:
            prompt = self._convert(source, conv.point_to_prompt, msg)
        except PromptError as exc:
            self._prompt_rejected(source, exc)
            return
        self._add(camera, prompt, source, stamp)

    def _on_click_stamped(self, camera: str, msg: PointStamped) -> None:
        self._on_click(camera, msg.point, _private(camera, 'click_stamped'), msg.header.stamp)

    def _on_set_object(self, request, response):
        try:
            prompt, warnings = self._convert('~/set_object', conv.prompt_from_msg, request.prompt, self._limits)
        except PromptError as exc:
            self._prompt_rejected('~/set_object', exc)
            response.success, response.message = False, str(exc)
            return response
        p = request.prompt
        object_id, message = self._add(request.camera, prompt, '~/set_object', p.header.stamp, p.object_id,
                                       p.mode == Prompt.REFINE, warnings)
        response.success, response.message, response.object_id = object_id > 0, message, object_id
        return response

    def _on_remove_object(self, request, response):
        try:
            _, session = self._session_for(request.camera, request.object_id, request.object_name)
            removed = session.pipeline.remove_object(request.object_id, request.object_name)
        except KeyError as exc:
            response.success, response.message = False, exc.args[0]
            self.get_logger().error(f'~/remove_object: {exc.args[0]}')
            return response
        response.success, response.message = True, f'removed object {removed}'
        self.get_logger().info(f'~/remove_object: removed object {removed}')
        return response

    def _named_sessions(self, camera: str) -> Dict[str, Session]:
        """The sessions a request for ``camera`` ('' = every camera) means; KeyError for an unknown one."""
        if not camera:
            return self.sessions
        return dict([self._session_for(camera)])

    def _on_reset(self, request, response):
        try:
            sessions = self._named_sessions(request.camera)
        except KeyError as exc:
            response.success, response.message = False, exc.args[0]
            return response
        for session in sessions.values():
            session.pipeline.reset()
        response.success = bool(sessions)
        response.message = 'all objects removed' if sessions else 'the node is not configured'
        self.get_logger().info(f'~/reset: {response.message}')
        return response

    def _on_list_objects(self, request, response):
        try:
            sessions = self._named_sessions(request.camera)
        except KeyError as exc:
            self.get_logger().error(f'~/list_objects: {exc.args[0]}')
            return response
        rows = sorted((info.id, camera, info.prompt) for camera, session in sessions.items()
                      for info in session.pipeline.list_objects())
        response.objects = [conv.prompt_to_msg(prompt, object_id) for object_id, _, prompt in rows]
        response.cameras = [camera for _, camera, _ in rows]
        return response

    # ---------------------------------------------------------------- diagnostics
    def _reset_stats(self, cameras) -> None:
        with self._lock:
            self._stats = dict(prompts_rejected=0, parameters_rejected=0)
            self._camera_stats = {camera: dict(received=0, processed=0, input_errors=0, inference_errors=0,
                                               latency_ms=0.0, latency_sum_ms=0.0, timings={}, objects=0,
                                               last_image=None, last_error='', dropped_earlier=0)
                                  for camera in cameras}
            self._inputs = {camera: {name: InputStats() for name in ('image', 'depth', 'depth/camera_info')}
                            for camera in cameras}

    def _publish_diagnostics(self) -> None:
        """One DiagnosticStatus per camera (named ``<node>: inference[ <camera>]``)."""
        params, sessions, pub = self.params, self.sessions, self._diag_pub
        if params is None or not sessions or pub is None:
            return
        statuses = [self._camera_status(camera, session, params) for camera, session in sessions.items()]
        pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=statuses))

    def _camera_status(self, camera: str, session: Session, params: SeemParams) -> DiagnosticStatus:
        pipeline, worker = session.pipeline, self._worker
        assert self._guard is not None        # made in __init__
        with self._lock:
            s = {**self._camera_stats[camera], **self._stats}
        dropped = s['dropped_earlier'] + (worker.dropped_by[camera] if worker is not None else 0)
        stale = s['last_image'] is None or time.monotonic() - s['last_image'] > 5 * params.diagnostics__period
        level, message = DiagnosticStatus.OK, 'running'
        if s['inference_errors']:
            level, message = DiagnosticStatus.ERROR, f"inference errors, last: {s['last_error']}"
        elif stale:
            level, message = DiagnosticStatus.WARN, 'no images received'
        values = {
            'camera': camera, 'backend': pipeline.predictor.backend.name, 'device': params.runtime__device,
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
            values.update({f'{name}.{key}': value for key, value in self._inputs[camera][name].report().items()})
        if params.depth__enabled:
            values.update({key: session.counts[key] for key in ('depth_paired', 'depth_missing',
                                                                 'camera_info_missing')})
        name = f'{self.get_fully_qualified_name()}: inference' + (f' {camera}' if camera else '')
        return DiagnosticStatus(level=level, name=name, message=message, hardware_id=params.runtime__device,
                                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])


def _input(camera: str, name: str) -> str:
    """A camera's input topic: ``<camera>/<name>``, or ``<name>`` for the unnamed camera."""
    return f'{camera}/{name}' if camera else name


def _private(camera: str, name: str) -> str:
    """A camera's prompt or output topic: ``~/<camera>/<name>``, or ``~/<name>`` for the unnamed camera."""
    return f'~/{camera}/{name}' if camera else f'~/{name}'


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

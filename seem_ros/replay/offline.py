"""Offline replay (``seem-ros replay``, :mod:`seem_ros.cli.replay`): a rosbag2 bag through the
node's core, its outputs recorded into another bag.

No ROS graph: the bag (MCAP or sqlite3) is read in log-time order and every
image goes through the node's own core, a :class:`~seem_ros.session.Session` (prompt intake,
depth pairing and 3D, outputs), and the node's message conversions, synchronously: each input
image gives exactly one output of every kind, none is dropped. Prompts come from every
``seem_ros/msg/Prompt`` topic of the bag and/or a YAML script (:mod:`.prompts_yaml`); they are
applied as the node applies them (a prompt refers to the buffered image with its header stamp).
Outputs, with the input image's header, logged at the input image's
log time: ``/seem/objects`` (TrackedObjectArray), ``/seem/label_image`` (mono16, pixel = id),
optionally ``/seem/overlay`` (rgb8). With ``--depth-topic`` (an aligned 16UC1/32FC1 depth image and
its CameraInfo) every shown object gets its 3D fields as in the node (``depth.*`` settings). Also
an overlay video (mp4v), overlay PNGs, a progress bar and a summary table (frames, objects and
ids, p50/p95 latency per pipeline stage).

A damaged bag (corrupt, truncated) or an image that cannot be converted stops the replay with an
error; every frame before it is processed and written, and the output bag is valid. A frame the
model cannot process is counted (:attr:`ReplayStats.failed`) and the next one is tried.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from tqdm import tqdm

from ..pipeline import Frame, FrameResult, TrackState
from ..prompts import PromptError
from ..session import Session
from .bagio import BagDamaged, BagError, BagMessage, BagReader, BagWriter
from .prompts_yaml import PromptEvent

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
PROMPT_TYPE = 'seem_ros/msg/Prompt'
OUTPUTS = {'objects': ('/seem/objects', 'seem_ros/msg/TrackedObjectArray'),
           'label_image': ('/seem/label_image', 'sensor_msgs/msg/Image'),
           'overlay': ('/seem/overlay', 'sensor_msgs/msg/Image')}
# Settings that differ from the node's defaults when no params file names them: the shipped small model
# (its variant and input size are read from it).
REPLAY_DEFAULTS = {'model.checkpoint': 'models/seem_tiny.pt'}
STAGES = {'encode_ms': 'encoder', 'decode_ms': 'decoder', 'post_ms': 'postprocess', 'total_ms': 'total'}


class ReplayError(Exception):
    """Replay cannot start or go on (bad settings, a model that does not load, a bad image)."""


def read_params_file(path, node_name: str = 'seem') -> dict:
    """``{'model.checkpoint': ..., ...}`` for node ``node_name`` from a ROS 2 params file (sections
    ``/**``, ``NAME`` or ``/.../NAME``, nested keys joined with dots)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReplayError(f'cannot read params file {path}: {exc}') from exc
    values: dict = {}

    def flatten(prefix: str, node) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                flatten(f'{prefix}{key}.', value)
            else:
                values[f'{prefix}{key}'] = value

    for key, section in (data.items() if isinstance(data, dict) else ()):
        name = str(key)
        if name in ('/**', node_name) or name.endswith('/' + node_name):
            flatten('', (section or {}).get('ros__parameters') or {})
    return values


def load_params(params_file=None, overrides: Optional[dict] = None):
    """Node parameters for replay: :data:`REPLAY_DEFAULTS`, then ``params_file``, then ``overrides``
    (``{ros name: value}``, None values ignored). Raises :class:`ReplayError` for an invalid value."""
    from ..ros.params import SeemParams
    values = dict(REPLAY_DEFAULTS)
    if params_file:
        values.update(read_params_file(params_file))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return SeemParams.from_values(values)
    except (ValueError, TypeError) as exc:
        raise ReplayError(f'invalid setting: {exc}') from exc


def node_output_qos(depth: int) -> Qos:
    """The QoS the node's output publishers offer (``QoSProfile(depth=qos.depth)``: reliable,
    volatile, keep-last ``depth``), with the infinite deadline, lifespan and lease and the automatic
    liveliness that DDS gives them, as a rosbag2 recording of them stores it."""
    infinite = QosTime(9223372036, 854775807)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, QosDurability.VOLATILE, infinite, infinite,
               QosLiveliness.AUTOMATIC, infinite, False)


@dataclass
class IdStats:
    """One id over a replay: its label, frames where it was found or lost, first and last frame found."""

    label: str
    found: int = 0
    lost: int = 0
    first: int = -1
    last: int = -1

    def add(self, index: int, label: str, lost: bool) -> None:
        self.label = label
        if lost:
            self.lost += 1
        else:
            self.found += 1
            self.first = index if self.first < 0 else self.first
            self.last = index


def ids_table(ids: Dict[int, IdStats]) -> List[str]:
    lines = [f'  objects      {len(ids)} ids seen']
    if ids:
        width = max(12, *(len(s.label) for s in ids.values()))
        lines.append(f'    {"id":>5}  {"label":<{width}}  {"found":>5}  {"lost":>5}  {"first":>5}  {"last":>5}')
        for i, s in sorted(ids.items()):
            first, last = (s.first, s.last) if s.found else ('-', '-')
            lines.append(f'    {i:>5}  {s.label:<{width}}  {s.found:>5}  {s.lost:>5}  {first:>5}  {last:>5}')
    return lines


def latency_table(samples: Dict[str, Sequence[float]]) -> List[str]:
    """p50/p95 rows of ``{stage: milliseconds}``."""
    lines = [f'  latency ms   {"p50":>8}  {"p95":>8}']
    for name, values in samples.items():
        p50, p95 = np.percentile(values, [50, 95])
        lines.append(f'    {name:<10} {p50:8.1f}  {p95:8.1f}')
    return lines


@dataclass
class ReplayStats:
    """What a replay did; :meth:`table` formats it."""

    bag: str
    out: str
    frames_in: int = 0
    frames_out: int = 0
    prompts: Counter = field(default_factory=Counter)    # source -> prompts applied
    rejected: List[str] = field(default_factory=list)
    warnings: Counter = field(default_factory=Counter)   # distinct pipeline warnings -> count
    failed: Counter = field(default_factory=Counter)     # cause of a frame's failure -> frames
    ids: Dict[int, IdStats] = field(default_factory=dict)
    timings: Dict[str, List[float]] = field(default_factory=dict)
    wall_s: float = 0.0
    written: Dict[str, int] = field(default_factory=dict)
    files: List[str] = field(default_factory=list)
    error: str = ''

    def add_result(self, index: int, result: FrameResult) -> None:
        self.frames_out += 1
        for obj in result.objects:
            self.ids.setdefault(obj.id, IdStats(obj.label)).add(index, obj.label, obj.state == TrackState.LOST)
        for key, ms in result.timings.items():
            self.timings.setdefault(key, []).append(ms)

    def table(self) -> str:
        skipped = self.frames_in - self.frames_out
        lines = [f'replay {self.bag} -> {self.out}',
                 f'  frames       {self.frames_in} in, {self.frames_out} out'
                 + (f' ({skipped} not processed)' if skipped else '')]
        sources = ', '.join(f'{n} from {src}' for src, n in sorted(self.prompts.items())) or 'none'
        lines.append(f'  prompts      {sum(self.prompts.values())} applied ({sources}), {len(self.rejected)} rejected')
        lines += ids_table(self.ids)
        if self.timings:
            keys = [k for k in STAGES if k in self.timings] + sorted(k for k in self.timings if k not in STAGES)
            lines += latency_table({STAGES.get(k, k.removesuffix('_ms').replace('_', ' ')): self.timings[k]
                                    for k in keys})
        rate = self.frames_out / self.wall_s if self.wall_s > 0 else 0.0
        lines.append(f'  wall time    {self.wall_s:.1f} s ({rate:.2f} frames/s)')
        if self.warnings:
            lines.append(f'  warnings     {sum(self.warnings.values())} ({len(self.warnings)} distinct, '
                         'printed once each)')
        for cause, count in self.failed.items():
            lines.append(f'  FAILED       {count} frame{"s" * (count != 1)}: {cause}')
        if self.written:
            lines.append(f'  output bag   {self.out}: ' + ', '.join(f'{t} {n}' for t, n in self.written.items()))
        for f in self.files:
            lines.append(f'  wrote        {f}')
        if self.error:
            lines.append(f'  STOPPED      {self.error}')
        return '\n'.join(lines)


class OverlayFiles:
    """The overlay video (mp4v, created at the second frame to know the rate) and PNGs of chosen frames."""

    def __init__(self, video: Optional[Path], png_dir: Optional[Path], png_frames: Sequence[int]):
        self.video_path, self.png_dir, self.png_frames = video, png_dir, set(png_frames)
        self._writer: Optional[Any] = None                       # cv2.VideoWriter once the rate is known
        self._first: Optional[Tuple[int, np.ndarray]] = None     # (stamp, BGR image) of the first frame
        self.frames = 0
        self.pngs: List[Path] = []

    def add(self, index: int, stamp_ns: int, overlay: np.ndarray) -> None:
        import cv2
        bgr = cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
        if self.png_dir is not None and index in self.png_frames:
            self.png_dir.mkdir(parents=True, exist_ok=True)
            path = self.png_dir / f'overlay_{index:05d}.png'
            cv2.imwrite(str(path), bgr)
            self.pngs.append(path)
        if self.video_path is None:
            return
        if self._writer is None:
            if self._first is None:
                self._first = (stamp_ns, bgr)
                return
            fps = 1e9 / (stamp_ns - self._first[0]) if stamp_ns > self._first[0] else 15.0
            self._open(fps, self._first[1].shape)
            self._write(self._first[1])
        self._write(bgr)

    def _open(self, fps: float, shape) -> None:
        import cv2
        assert self.video_path is not None                        # only called with a video to write
        self.video_path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = cv2.VideoWriter(str(self.video_path), cv2.VideoWriter.fourcc(*'mp4v'),
                                       min(max(fps, 1.0), 120.0), (shape[1], shape[0]))
        if not self._writer.isOpened():
            raise ReplayError(f'cannot write the video {self.video_path} (mp4v codec unavailable in OpenCV)')

    def _write(self, bgr: np.ndarray) -> None:
        assert self._writer is not None
        self._writer.write(bgr)
        self.frames += 1

    def close(self) -> List[str]:
        """Finish the files; returns one line per file written."""
        if self.video_path is not None and self._writer is None and self._first is not None:
            self._open(15.0, self._first[1].shape)
            self._write(self._first[1])
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        out = [f'{self.video_path} ({self.frames} frames)'] if self.frames else []
        if self.pngs:
            out.append(f'{len(self.pngs)} overlay PNGs in {self.png_dir}: ' + ', '.join(p.name for p in self.pngs))
        return out


def png_indices(n_frames: Optional[int], count: int) -> List[int]:
    """``count`` frames spread over the replay (at 1/(count+1), 2/(count+1), ...; every 30th when the
    frame count is unknown)."""
    if count <= 0:
        return []
    if not n_frames:
        return [30 * (i + 1) for i in range(count)]
    return sorted({min(n_frames - 1, int(round((i + 1) * n_frames / (count + 1)))) for i in range(count)})


def select_topics(reader: BagReader, image_topic: str, bag_prompts: bool):
    """(image topic, prompt topics), checked against the bag."""
    image = reader.require(image_topic, IMAGE_TYPES)
    prompts = [t.name for t in reader.topics.values() if t.msgtype == PROMPT_TYPE] if bag_prompts else []
    for name in prompts:
        reader.require(name, (PROMPT_TYPE,))
    return image, prompts


def select_depth_topics(reader: BagReader, depth_topic: Optional[str], depth_info_topic: Optional[str]):
    """(depth topic, its camera info topic), checked against the bag; (None, None) without depth.
    The info topic defaults to the depth topic's sibling ``camera_info``."""
    if not depth_topic:
        return None, None
    reader.require(depth_topic, ('sensor_msgs/msg/Image',))
    if depth_info_topic is None:
        sibling = depth_topic.rsplit('/', 1)[0] + '/camera_info'
        depth_info_topic = sibling if sibling in reader.topics else ''
    if not depth_info_topic:
        raise BagError(f'{reader.path}: no CameraInfo for the depth topic {depth_topic} (pass --depth-info-topic)')
    reader.require(depth_info_topic, (CAMERA_INFO_TYPE,))
    return depth_topic, depth_info_topic


@dataclass(frozen=True)
class DepthInput:
    """The bag's aligned depth image topic and its CameraInfo topic."""

    topic: str
    info_topic: str


class Replay:
    """One offline replay of ``reader`` through ``session`` into ``writer``.

    Args:
        reader, writer: the input and output bags.
        session: the node's core (:func:`~seem_ros.session.load_session`).
        image_topic, prompt_topics: from :func:`select_topics`.
        events: YAML prompts.
        outputs: keys of :data:`OUTPUTS` to write.
        files: overlay video/PNGs, or None.
        prompts_name: what the YAML prompts are called in messages and counts (the file name).
        log: where warnings go (a line at a time).
        depth: the depth topics that fill the objects' 3D fields (the session's depth settings
            must be set), or None.
    """

    def __init__(self, reader: BagReader, writer: BagWriter, session: Session, *, image_topic: str,
                 prompt_topics: Sequence[str], events: Sequence[PromptEvent] = (),
                 outputs: Sequence[str] = ('objects', 'label_image'), files: Optional[OverlayFiles] = None,
                 prompts_name: str = 'YAML', log: Callable[[str], None] = print,
                 depth: Optional[DepthInput] = None):
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from ..msg import Prompt
        from ..ros import conversions
        self._deserialize, self._serialize = deserialize_message, serialize_message
        self._types = {'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CompressedImage': CompressedImage,
                       CAMERA_INFO_TYPE: CameraInfo, PROMPT_TYPE: Prompt}
        self._conv = conversions
        self.reader, self.writer, self.session = reader, writer, session
        self.image_topic = image_topic
        self.prompt_topics = list(prompt_topics)
        self.pending_events = list(events)
        self.prompts_name = prompts_name
        self.outputs = list(outputs)
        self.files = files
        self.log = log
        self.stats = ReplayStats(str(reader.path), str(writer.path))
        self._first_stamp: Optional[int] = None
        self.depth = depth

    def run(self, progress: Optional[tqdm] = None) -> ReplayStats:
        """Replay every frame; stops at the first damage or bad image (``stats.error``)."""
        start = time.monotonic()
        # (frame, index, log time): processed once every message of its log time is in
        pending: Optional[Tuple[Frame, int, int]] = None
        topics = [self.image_topic, *self.prompt_topics]
        if self.depth is not None:
            topics += [self.depth.topic, self.depth.info_topic]
        try:
            for msg in self.reader.messages(topics):
                if pending is not None and (msg.log_time_ns > pending[2] or msg.topic == self.image_topic):
                    self._finish(*pending, progress)
                    pending = None
                if msg.topic == self.image_topic:
                    pending = self._frame(msg)
                elif self.depth is not None and msg.topic == self.depth.topic:
                    self._depth_image(msg)
                elif self.depth is not None and msg.topic == self.depth.info_topic:
                    self._depth_info(msg)
                else:
                    self._bag_prompt(msg)
            if pending is not None:
                self._finish(*pending, progress)
                pending = None
        except (BagError, ReplayError) as exc:
            if pending is not None and not isinstance(exc, ReplayError):
                self._finish(*pending, progress)
            self.stats.error = str(exc)
            if isinstance(exc, BagDamaged):
                self.stats.error += f'; the {self.stats.frames_out} frames before the damage were processed and written'
        finally:
            self.stats.wall_s = time.monotonic() - start
            self.writer.close()
            self.stats.written = dict(self.writer.counts)
            if self.files is not None:
                try:
                    self.stats.files = self.files.close()
                except ReplayError as exc:
                    self.stats.error = self.stats.error or str(exc)
        for e in self.pending_events:
            self.log(f'warning: {self.prompts_name} prompt {e.index} at {e.when} was never applied: '
                     f'the replay has {self.stats.frames_out} frames')
        return self.stats

    def _decode(self, msg: BagMessage):
        try:
            return self._deserialize(msg.data, self._types[msg.msgtype])
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types for bad CDR
            raise BagDamaged(f'{self.reader.path}: the {msg.msgtype} message on {msg.topic} at '
                             f'{msg.log_time_ns * 1e-9:.3f} s cannot be deserialized ({exc}): corrupt bag') from exc

    def _frame(self, msg: BagMessage):
        image = self._decode(msg)
        index = self.stats.frames_in
        stamp = self._conv.stamp_to_ns(image.header.stamp)
        try:
            rgb = (self._conv.image_to_rgb(image) if msg.msgtype == 'sensor_msgs/msg/Image'
                   else self._conv.compressed_to_rgb(image))
        except self._conv.ImageError as exc:
            raise ReplayError(f'frame {index} on {msg.topic} (stamp {stamp * 1e-9:.3f} s): {exc}; '
                              'replay stops at an image it cannot use') from exc
        self.stats.frames_in += 1
        frame = self.session.frame(rgb, stamp, image.header.frame_id)
        if self._first_stamp is None:
            self._first_stamp = stamp
        due = [e for e in self.pending_events if e.due(index, stamp, self._first_stamp)]
        for event in due:
            self.pending_events.remove(event)
            self._add(event.prompt, stamp, 0, False, f'{self.prompts_name} prompt {event.index}', self.prompts_name)
        return frame, index, msg.log_time_ns

    def _depth_image(self, msg: BagMessage) -> None:
        image = self._decode(msg)
        try:
            self.session.depth(self._conv.image_to_numpy(image), image.encoding,
                               self._conv.stamp_to_ns(image.header.stamp))
        except ValueError as exc:       # conv.ImageError too
            self._warn(f'{msg.topic}: {exc}; that depth image is skipped')

    def _depth_info(self, msg: BagMessage) -> None:
        info = self._decode(msg)
        try:
            self.session.depth_info(info.k, info.width, info.height)
        except ValueError as exc:
            self._warn(f'{msg.topic}: {exc}; the last good CameraInfo is kept')

    def _warn(self, text: str, where: str = '') -> None:
        """Count ``text`` in the summary; log it (after ``where``) the first time."""
        if not self.stats.warnings[text]:
            self.log(f'warning: {where}{text}')
        self.stats.warnings[text] += 1

    def _bag_prompt(self, msg: BagMessage) -> None:
        prompt_msg = self._decode(msg)
        source = f'{msg.topic} at {msg.log_time_ns * 1e-9:.3f} s'
        try:
            prompt, warnings = self._conv.prompt_from_msg(prompt_msg)
        except PromptError as exc:
            self._reject(source, exc)
            return
        for w in warnings:
            self.log(f'warning: {source}: {w}')
        self._add(prompt, self._conv.stamp_to_ns(prompt_msg.header.stamp), prompt_msg.object_id,
                  prompt_msg.mode == type(prompt_msg).REFINE, source, msg.topic)

    def _add(self, prompt, stamp_ns: int, object_id: int, refine: bool, source: str, counter: str) -> None:
        """Add or update an object as the node does (a zero stamp means the newest frame)."""
        try:
            object_id, warnings = self.session.add_prompt(prompt, stamp_ns=stamp_ns, object_id=object_id,
                                                          refine=refine)
        except PromptError as exc:
            self._reject(source, exc)
            return
        for w in warnings:
            self.log(f'warning: {source}: {w}')
        self.stats.prompts[counter] += 1

    def _reject(self, source: str, exc: Exception) -> None:
        self.stats.rejected.append(f'{source}: {exc}')
        self.log(f'error: {source}: prompt rejected: {exc}')

    def _finish(self, frame: Frame, index: int, log_time_ns: int, progress: Optional[tqdm]) -> None:
        """Process ``frame`` and write its outputs."""
        from std_msgs.msg import Header
        try:
            output = self.session.process(frame)
        except Exception as exc:  # noqa: BLE001 - counted and logged once per cause; the next frame is tried
            cause = f'inference failed: {type(exc).__name__}: {exc}'
            if not self.stats.failed[cause]:
                self.log(f'error: frame {index} (stamp {frame.stamp_ns * 1e-9:.3f} s): {cause} '
                         '(later frames failing so are counted in the summary)')
            self.stats.failed[cause] += 1
            if progress is not None:
                progress.update()
            return
        result = output.result
        for w in result.warnings:
            self._warn(w, where=f'frame {index}: ')
        if output.problem:
            self._warn(output.problem)
        header = Header(stamp=self._conv.ns_to_stamp(frame.stamp_ns), frame_id=frame.frame_id)
        for key, msg in self._conv.output_messages(output, header, self.outputs).items():
            topic, msgtype = OUTPUTS[key]
            self.writer.write(topic, msgtype, log_time_ns, self._serialize(msg))
        if self.files is not None and result.overlay is not None:      # drawn: the session was loaded so
            self.files.add(index, frame.stamp_ns, result.overlay)
        self.stats.add_result(index, result)
        if progress is not None:
            progress.update()

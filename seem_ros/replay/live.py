"""``seem-ros replay BAG --live --out OUT``: play a bag into a running seem node and record its outputs.

``ros2 bag play`` / ``record`` are not available here; this is the project's own player and recorder.
Start the node with its inputs remapped to the bag's topics (``use_sim_time`` makes it follow the
bag's ``/clock``), then play::

    python -m seem_ros.ros.seem_node --ros-args --params-file config/seem.yaml \\
        -r image:=/camera/image_raw -r camera_info:=/camera/camera_info -p use_sim_time:=true
    seem-ros replay demo_bag --live --out live_out

Player: waits until the node subscribes to the image topic and publishes its outputs, then
publishes every bag topic whose message type has Python bindings here (others are skipped with a
warning), raw, at the bag's log times scaled by ``--rate``, with ``rosgraph_msgs/Clock`` on
``/clock`` (bag time, ``--clock-rate`` per second while waiting, and before every message).
``seem_ros/msg/Prompt`` topics go to the node's ``~/prompt`` (unless ``--remap`` says otherwise);
YAML prompts are published there as Prompt messages right after the image they refer to, stamped
with it. ``--remap FROM:=TO`` publishes bag topic FROM on TO.

Recorder: ``<node>/objects``, ``label_image``, ``overlay`` and ``diagnostics``, written as they
arrive. An output is logged at the log time of the input image with its header stamp (as offline
replay does); diagnostics at the bag clock on arrival.

The node drops frames while it is busy (the newest image wins), so unlike offline replay not every
frame has an output; the summary says how many did, and the end-to-end latency (image published ->
objects received). After the last message the recorder waits (``--drain``) for the last image's
outputs. A damaged bag stops the player with an error after everything before the damage was
played and recorded.

``--loop`` plays the bag again and again until Ctrl-C, every lap's log times and header stamps
shifted by the laps before, so that time keeps going forward for the node (a camera without a
robot, e.g. for the teleop page). Without ``--out`` nothing is recorded.
"""
from __future__ import annotations

import functools
import importlib
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from .bagio import BagDamaged, BagError, BagReader, BagWriter, cdr_stamp_ns, check_output
from .offline import IMAGE_TYPES, PROMPT_TYPE, IdStats, ReplayError, ids_table, latency_table
from .prompts_yaml import PromptEvent

DISCOVERY_SETTLE_S = 0.5
RECORDED = (('objects', 'seem_ros/msg/TrackedObjectArray'), ('label_image', 'sensor_msgs/msg/Image'),
            ('overlay', 'sensor_msgs/msg/Image'), ('diagnostics', 'diagnostic_msgs/msg/DiagnosticArray'))


def message_class(msgtype: str):
    """The rclpy class of ``pkg/msg/Name``, or None when this environment has no bindings for it."""
    pkg, kind, name = (msgtype.split('/') + ['', ''])[:3]
    try:
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ImportError, AttributeError, ValueError):
        return None


def discovered_qos(profile) -> Qos:
    """An rclpy ``QoSProfile`` of a discovered publisher (``get_publishers_info_by_topic``) as the
    rosbags ``Qos`` that rosbag2 records for it (durations in whole seconds and nanoseconds)."""
    def duration(d) -> QosTime:
        return QosTime(*divmod(d.nanoseconds, 1_000_000_000))
    return Qos(QosHistory[profile.history.name], profile.depth, QosReliability[profile.reliability.name],
               QosDurability[profile.durability.name], duration(profile.deadline), duration(profile.lifespan),
               QosLiveliness[profile.liveliness.name], duration(profile.liveliness_lease_duration),
               profile.avoid_ros_namespace_conventions)


def node_path(namespace: str, name: str) -> str:
    """Fully qualified node name, e.g. ``/robot/seem``."""
    return '/' + '/'.join(p for p in (namespace.strip('/'), name.strip('/')) if p)


def parse_remaps(remaps: Sequence[str]) -> Dict[str, str]:
    out = {}
    for r in remaps:
        src, sep, dst = r.partition(':=')
        if not sep or not src or not dst:
            raise ReplayError(f'--remap {r!r}: expected FROM:=TO')
        out[src] = dst
    return out


@dataclass
class LiveStats:
    bag: str
    out: str
    frames_published: int = 0
    frames_with_output: int = 0
    prompts: Dict[str, int] = field(default_factory=dict)    # target topic -> prompts published
    skipped_topics: List[str] = field(default_factory=list)
    ids: Dict[int, IdStats] = field(default_factory=dict)
    latency_ms: List[float] = field(default_factory=list)
    wall_s: float = 0.0
    written: Dict[str, int] = field(default_factory=dict)
    clock: str = ''
    error: str = ''

    def table(self) -> str:
        missing = self.frames_published - self.frames_with_output
        lines = [f'live replay {self.bag} -> {self.out}',
                 f'  frames       {self.frames_published} published, {self.frames_with_output} with outputs'
                 + (f' ({missing} dropped by the busy node)' if missing else ''),
                 '  prompts      ' + (', '.join(f'{n} to {t}' for t, n in self.prompts.items()) or 'none'),
                 f'  clock        {self.clock}']
        if self.skipped_topics:
            lines.append(f'  not played   {", ".join(self.skipped_topics)}')
        lines += ids_table(self.ids)
        if self.latency_ms:
            lines += latency_table({'end to end': self.latency_ms})
        lines.append(f'  wall time    {self.wall_s:.1f} s')
        if self.written:
            lines.append(f'  output bag   {self.out}: ' + ', '.join(f'{t} {n}' for t, n in self.written.items()))
        if self.error:
            lines.append(f'  STOPPED      {self.error}')
        return '\n'.join(lines)


class LiveReplay:
    """Player and recorder around a running node (see the module docstring).

    Args:
        reader: the input bag.
        writer: the output bag, or None to record nothing.
        image_topic: the bag's image topic (must be subscribed by the node).
        node: fully qualified node name (:func:`node_path`).
        events: YAML prompts.
        remaps: bag topic -> published topic.
        rate: playback rate factor.
        clock_rate: /clock messages per second while waiting (0: no /clock).
        bag_prompts: play the bag's Prompt topics.
        wait_s, drain_s: seconds to wait for the node before playing, and for the last output after.
        loop: play until interrupted, each lap shifted in time (module docstring).
        log: where warnings go.
    """

    def __init__(self, reader: BagReader, writer: Optional[BagWriter], *, image_topic: str, node: str,
                 events: Sequence[PromptEvent] = (), remaps: Optional[Dict[str, str]] = None, rate: float = 1.0,
                 clock_rate: float = 50.0, bag_prompts: bool = True, wait_s: float = 60.0, drain_s: float = 30.0,
                 loop: bool = False, log=print):
        self.reader, self.writer = reader, writer
        self.image_topic, self.node_name = image_topic, node
        self.events = list(events)
        self.remaps = dict(remaps or {})
        self.rate, self.clock_rate = rate, clock_rate
        self.bag_prompts = bag_prompts
        self.wait_s, self.drain_s = wait_s, drain_s
        self.loop = loop
        self.log = log
        self.stats = LiveStats(str(reader.path), str(writer.path) if writer is not None else 'not recorded')
        self._lock = threading.Lock()
        self._input_log_time: Dict[int, int] = {}     # image header stamp -> its log time in the bag
        self._published_at: Dict[int, float] = {}     # image header stamp -> wall time published
        self._frame_index: Dict[int, int] = {}        # image header stamp -> index of the image in the bag
        self._outputs: Dict[int, float] = {}          # header stamp -> wall time its objects arrived
        self._bag_zero: Optional[int] = None         # log time of the first message played
        self._wall_zero = 0.0                          # monotonic time it was played
        self._last_clock = -1
        self._first_stamp: Optional[int] = None      # header stamp of the first image played

    # ---------------------------------------------------------------- setup
    def _plan(self):
        """(bag topic -> (published topic, rclpy class)) for the topics to play."""
        plan = {}
        for topic in self.reader.topics.values():
            if topic.msgtype == PROMPT_TYPE and not self.bag_prompts:
                continue
            cls = message_class(topic.msgtype)
            if cls is None:
                known = 'its definition is in the bag' if topic.definition else 'the bag has no definition'
                self.stats.skipped_topics.append(topic.name)
                self.log(f'warning: not playing {topic.name}: no Python bindings for {topic.msgtype} here ({known})')
                continue
            default = f'{self.node_name}/prompt' if topic.msgtype == PROMPT_TYPE else topic.name
            plan[topic.name] = (self.remaps.get(topic.name, default), cls)
        return plan

    def run(self) -> LiveStats:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from ..msg import Prompt
        plan = self._plan()
        context = rclpy.Context()
        rclpy.init(args=[], context=context)
        node = rclpy.create_node('seem_replay_player', context=context, start_parameter_services=False)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, name='seem-replay-recorder', daemon=True)
        if self.writer is not None:
            self.writer.qos = lambda topic: [discovered_qos(info.qos_profile)
                                             for info in node.get_publishers_info_by_topic(topic)]
        start = time.monotonic()
        try:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self._pubs = {name: node.create_publisher(cls, target, qos) for name, (target, cls) in plan.items()}
            self._prompt_pub = node.create_publisher(Prompt, f'{self.node_name}/prompt', qos) if self.events else None
            self._clock_pub = self._clock_publisher(node, qos)
            subs = {}
            for key, msgtype in RECORDED:
                topic = f'{self.node_name}/{key}'
                subs[key] = node.create_subscription(
                    message_class(msgtype), topic, functools.partial(self._record, key, topic, msgtype),
                    QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE), raw=True)
            spinner.start()
            self._wait_for_node(plan, subs['objects'])
            self._play(plan)
        except KeyboardInterrupt:
            self.log('stopped (Ctrl-C)')
        except BagDamaged as exc:
            self.stats.error = f'{exc}; everything before the damage was played'
        except (BagError, ReplayError) as exc:
            self.stats.error = str(exc)
        finally:
            if self._published_at:
                self._drain()
            executor.shutdown()
            spinner.join(5.0)
            node.destroy_node()
            rclpy.try_shutdown(context=context)
            self.stats.wall_s = time.monotonic() - start
            if self.writer is not None:
                self.writer.close()
                self.stats.written = dict(self.writer.counts)
                if not self._published_at:     # nothing was played: leave no empty output bag behind
                    shutil.rmtree(self.writer.path, ignore_errors=True)
                    self.stats.written = {}
        with self._lock:
            self.stats.frames_with_output = len(set(self._outputs) & set(self._published_at))
        return self.stats

    def _clock_publisher(self, node, qos):
        if not self.clock_rate:
            self.stats.clock = 'not published (--no-clock)'
            return None
        try:
            from rosgraph_msgs.msg import Clock
        except ImportError:
            self.stats.clock = 'not published: rosgraph_msgs is not installed'
            self.log('warning: rosgraph_msgs is not installed: /clock is not published')
            return None
        self.stats.clock = f'/clock at {self.clock_rate:g} Hz (bag time)'
        self._clock_msg = Clock
        return node.create_publisher(Clock, '/clock', qos)

    def _wait_for_node(self, plan, objects_sub) -> None:
        """Until the node subscribes to the image (and prompt) topics and publishes its objects."""
        needed = [self._pubs[self.image_topic]] + [self._pubs[t] for t, (_, c) in plan.items()
                                                    if self.reader.topics[t].msgtype == PROMPT_TYPE]
        if self._prompt_pub is not None:
            needed.append(self._prompt_pub)
        deadline = time.monotonic() + self.wait_s
        while not (all(p.get_subscription_count() for p in needed) and objects_sub.get_publisher_count()):
            if time.monotonic() > deadline:
                missing = [p.topic_name for p in needed if not p.get_subscription_count()]
                if not objects_sub.get_publisher_count():
                    missing.append(f'a publisher on {objects_sub.topic_name}')
                raise ReplayError(
                    f'no running seem node after {self.wait_s:g} s (waiting for: {", ".join(missing)}). Start it with '
                    f'its inputs remapped to the bag, e.g.: python -m seem_ros.ros.seem_node --ros-args --params-file '
                    f'config/seem.yaml -r __ns:={self.node_name.rsplit("/", 1)[0] or "/"} '
                    f'-r image:={plan[self.image_topic][0]} -p use_sim_time:=true')
            time.sleep(0.05)
        # Matching is seen here first; a message sent before the node has matched this player is
        # resent only at the next reliable heartbeat (seconds later): give discovery a moment.
        time.sleep(DISCOVERY_SETTLE_S)

    # ---------------------------------------------------------------- player
    def _bag_now(self) -> int:
        if self._bag_zero is None:
            return 0
        return self._bag_zero + int((time.monotonic() - self._wall_zero) * self.rate * 1e9)

    def _clock(self, bag_ns: int) -> None:
        if self._clock_pub is None or bag_ns <= self._last_clock:
            return
        self._last_clock = bag_ns
        from builtin_interfaces.msg import Time
        self._clock_pub.publish(self._clock_msg(clock=Time(sec=bag_ns // 1_000_000_000,
                                                           nanosec=bag_ns % 1_000_000_000)))

    def _sleep_until(self, log_time_ns: int) -> None:
        assert self._bag_zero is not None                # set by the first message played
        target = self._wall_zero + (log_time_ns - self._bag_zero) * 1e-9 / self.rate
        period = 1.0 / self.clock_rate if self.clock_rate else 0.05
        while (left := target - time.monotonic()) > 0:
            self._clock(min(self._bag_now(), log_time_ns))
            time.sleep(min(left, period))
        self._clock(log_time_ns)

    def _play(self, plan) -> None:
        """Play the bag once, or with ``loop`` lap after lap (each shifted past the one before)."""
        shift_ns, first_stamp = 0, None
        while True:
            span = self._play_lap(plan, shift_ns, first_stamp)
            if not self.loop or span is None:
                break
            first_stamp = first_stamp if first_stamp is not None else self._first_stamp
            assert first_stamp is not None      # set by a lap that played an image
            shift_ns += span
            oldest = first_stamp + shift_ns - span
            with self._lock:                # keep the bookkeeping of the last two laps only
                for table in (self._input_log_time, self._frame_index, self._published_at, self._outputs):
                    for stamp in [s for s in table if s < oldest]:
                        del table[stamp]

    def _shifted(self, cls, data, shift_ns: int) -> bytes:
        """``data`` (CDR of ``cls``) with its header stamp ``shift_ns`` later, when it has one."""
        from rclpy.serialization import deserialize_message, serialize_message

        from ..ros import conversions as conv
        msg = deserialize_message(bytes(data), cls)
        if not hasattr(msg, 'header'):
            return bytes(data)
        msg.header.stamp = conv.ns_to_stamp(conv.stamp_to_ns(msg.header.stamp) + shift_ns)
        return serialize_message(msg)

    def _play_lap(self, plan, shift_ns: int, first_stamp: Optional[int]) -> Optional[int]:
        """One pass over the bag, ``shift_ns`` later than recorded; returns the lap's length (its
        span plus one frame period) in ns, or None when it played no image."""
        from std_msgs.msg import Header

        from ..ros import conversions as conv
        first_log = last_log = None
        images = 0
        for msg in self.reader.messages(plan):
            log_time = msg.log_time_ns + shift_ns
            data = self._shifted(plan[msg.topic][1], msg.data, shift_ns) if shift_ns else bytes(msg.data)
            if self._bag_zero is None:
                self._bag_zero, self._wall_zero = log_time, time.monotonic()
            self._sleep_until(log_time)
            target = plan[msg.topic][0]
            is_image = msg.topic == self.image_topic and msg.msgtype in IMAGE_TYPES
            if is_image:
                stamp, index = cdr_stamp_ns(data), self.stats.frames_published
                with self._lock:
                    self._input_log_time[stamp] = log_time
                    self._frame_index[stamp] = index
                    self._published_at[stamp] = time.monotonic()
            self._pubs[msg.topic].publish(data)
            if msg.msgtype == PROMPT_TYPE:
                self.stats.prompts[target] = self.stats.prompts.get(target, 0) + 1
            if not is_image:
                continue
            self.stats.frames_published += 1
            images += 1
            first_log = msg.log_time_ns if first_log is None else first_log
            last_log = msg.log_time_ns
            first_stamp = stamp if first_stamp is None else first_stamp
            self._first_stamp = first_stamp
            for event in [e for e in self.events if e.due(index, stamp, first_stamp)]:
                assert self._prompt_pub is not None          # created when there are events
                self.events.remove(event)
                self._prompt_pub.publish(conv.prompt_to_msg(event.prompt, 0, Header(stamp=conv.ns_to_stamp(stamp))))
                topic = self._prompt_pub.topic_name
                self.stats.prompts[topic] = self.stats.prompts.get(topic, 0) + 1
        if not self.loop:
            for e in self.events:
                self.log(f'warning: YAML prompt {e.index} at {e.when} was never published: '
                         f'the bag has {self.stats.frames_published} frames')
        if first_log is None or last_log is None:
            return None
        period = (last_log - first_log) // (images - 1) if images > 1 else 100_000_000
        return last_log - first_log + period

    def _drain(self) -> None:
        """Wait until the last published image has its objects, or ``drain_s`` passes."""
        last = max(self._published_at)
        deadline = time.monotonic() + self.drain_s
        while time.monotonic() < deadline:
            with self._lock:
                if last in self._outputs:
                    break
            time.sleep(0.05)
        else:
            self.log(f'warning: no output for the last image after waiting {self.drain_s:g} s')
        time.sleep(0.2)   # let the label image and overlay of the last frame arrive too

    # ---------------------------------------------------------------- recorder
    def _record(self, key: str, topic: str, msgtype: str, data: bytes) -> None:
        """Executor thread: write one output; objects also feed the statistics."""
        stamp = cdr_stamp_ns(data)
        with self._lock:
            log_time = self._input_log_time.get(stamp) if key != 'diagnostics' else None
            if key == 'objects':
                self._outputs[stamp] = time.monotonic()
                if stamp in self._published_at:
                    self.stats.latency_ms.append((self._outputs[stamp] - self._published_at[stamp]) * 1e3)
        if self.writer is not None:
            self.writer.write(topic, msgtype, self._bag_now() if log_time is None else log_time, data)
        if key == 'objects':
            from rclpy.serialization import deserialize_message

            from ..msg import TrackedObjectArray
            msg = deserialize_message(data, TrackedObjectArray)
            with self._lock:
                index = self._frame_index.get(stamp, -1)
                for obj in msg.objects:
                    self.stats.ids.setdefault(obj.id, IdStats(obj.label)).add(index, obj.label, obj.state == obj.LOST)


def run_live(args, events: Sequence[PromptEvent]) -> int:
    """``seem-ros replay --live`` for the parsed command line ``args``; returns the exit code."""
    try:
        remaps = parse_remaps(args.remap)
        if args.out is not None:
            check_output(args.out, args.overwrite)
        with BagReader(args.bag) as reader:
            image = reader.require(args.image_topic, IMAGE_TYPES)
            writer = (BagWriter(args.out, args.storage or reader.storage, overwrite=args.overwrite)
                      if args.out is not None else None)
            node = node_path(args.node_namespace, args.node_name)
            print(f'live replay {args.bag} ({image.count or "?"} frames on {image.name}) into {node} '
                  f'at {args.rate:g}x', file=sys.stderr)
            stats = LiveReplay(reader, writer, image_topic=image.name, node=node, events=events, remaps=remaps,
                               rate=args.rate, clock_rate=0.0 if args.no_clock else args.clock_rate,
                               bag_prompts=not args.ignore_bag_prompts, wait_s=args.wait, drain_s=args.drain,
                               loop=args.loop, log=lambda line: print(line, file=sys.stderr)).run()
    except (BagError, ReplayError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    if stats.frames_published:
        print(stats.table())
    if stats.error:
        print(f'error: {stats.error}', file=sys.stderr)
        return 1
    return 0

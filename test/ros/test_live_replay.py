"""Live replay as users run it: the seem node and ``seem-ros replay BAG --live`` in their own
processes over real DDS, with a synthetic tiny checkpoint and a generated 12-frame bag.

Checks that the player publishes the bag (remapped into this test's namespace) with ``/clock`` in
bag time, that the node gets the bag's prompts, and that the recorded outputs carry the input
stamps and log times, with label images consistent with the object arrays.
"""
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from seem_ros.mask_codec import CompactMask
from seem_ros.msg import TrackedObjectArray
from seem_ros.replay.bagio import BagReader, cdr_stamp_ns
from seem_ros.scenes.bag import TOPICS, write_bag
from seem_ros.scenes.render import build_scene

ROOT = Path(__file__).resolve().parents[2]
N, H, W = 30, 120, 160          # 2 s of bag at 15 fps: the /clock listener here discovers the player in time
TIMEOUT = 300.0


@pytest.fixture(scope='module')
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('bag') / 'demo'
    write_bag(build_scene('demo', 0, width=W, height=H, frames=N), path)
    return path


@pytest.fixture(scope='module')
def node(ros_namespace, checkpoint, tmp_path_factory):
    """The node, its camera inputs remapped to the bag's topics in this test's namespace."""
    log_path = tmp_path_factory.mktemp('node') / 'node.log'
    log = open(log_path, 'w')
    cmd = [sys.executable, '-m', 'seem_ros.ros.seem_node', '--ros-args', '--params-file', 'config/seem.yaml',
           '-r', f'__ns:={ros_namespace}', '-r', f'image:={ros_namespace}{TOPICS["image"]}',
           '-r', f'camera_info:={ros_namespace}{TOPICS["camera_info"]}', '-p', f'model.checkpoint:={checkpoint}',
           '-p', 'model.variant:=tiny', '-p', 'model.short_side:=32', '-p', 'qos.reliability:=reliable',
           '-p', 'qos.depth:=5', '-p', 'publish.overlay:=true', '-p', 'use_sim_time:=true']
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    yield proc, log_path
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope='module')
def clock_listener():
    """Every /clock value (ns) published while the test runs."""
    rclpy.init()
    node = rclpy.create_node('clock_listener')
    values = []
    node.create_subscription(Clock, '/clock', lambda m: values.append(m.clock.sec * 10**9 + m.clock.nanosec),
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            rclpy.spin_once(node, timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    yield values
    stop.set()
    thread.join(5)
    node.destroy_node()
    rclpy.shutdown()


def wait_for_log(log_path, text, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while text not in log_path.read_text():
        assert proc.poll() is None, f'the node died:\n{log_path.read_text()}'
        assert time.monotonic() < deadline, f'no {text!r} in the node log:\n{log_path.read_text()}'
        time.sleep(0.1)


def test_live_replay_records_the_node_outputs_with_input_stamps(ros_namespace, bag, node, clock_listener, tmp_path):
    proc, log_path = node
    out = tmp_path / 'live_out'
    remaps = [a for key in ('image', 'camera_info', 'depth', 'depth_info')
              for a in ('--remap', f'{TOPICS[key]}:={ros_namespace}{TOPICS[key]}')]
    run = subprocess.run([sys.executable, '-m', 'seem_ros.cli.main', 'replay', str(bag), '--live', '--out', str(out),
                          '--node-namespace', ros_namespace, '--rate', '0.5', '--wait', '240', '--drain', '120',
                          *remaps], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert run.returncode == 0, f'{run.stdout}\n{run.stderr}\nnode log:\n{log_path.read_text()}'
    assert f'frames       {N} published' in run.stdout
    assert f'4 to {ros_namespace}/seem/prompt' in run.stdout
    assert '/clock at 50 Hz (bag time)' in run.stdout
    for i, name in enumerate(('text_2', 'click_3', 'box_1', 'reference_4'), 1):   # the bag's prompts reached the node
        wait_for_log(log_path, f"~/prompt: object {i} '{name}'", proc)

    with BagReader(bag) as reader:
        inputs = {cdr_stamp_ns(m.data): m.log_time_ns for m in reader.messages([TOPICS['image']])}
    with BagReader(out) as reader:
        topics = {t.name: t.count for t in reader.topics.values()}
        recorded = list(reader.messages([f'{ros_namespace}/seem/{k}' for k in ('objects', 'label_image', 'overlay')]))
    info = yaml.safe_load((out / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    offered = {t['topic_metadata']['name']: t['topic_metadata']['offered_qos_profiles']
               for t in info['topics_with_message_count']}
    for key in ('objects', 'label_image', 'overlay'):
        assert 1 <= topics[f'{ros_namespace}/seem/{key}'] <= N
        # the node's publisher as discovery reports it, as rosbag2 records it
        assert [(q['reliability'], q['durability']) for q in offered[f'{ros_namespace}/seem/{key}']] == [
            ('reliable', 'volatile')]
    objects, labels = {}, {}
    for m in recorded:
        stamp = cdr_stamp_ns(m.data)
        assert stamp in inputs and m.log_time_ns == inputs[stamp]     # input stamps and log times
        if m.topic.endswith('/objects'):
            objects[stamp] = deserialize_message(m.data, TrackedObjectArray)
        elif m.topic.endswith('/label_image'):
            labels[stamp] = deserialize_message(m.data, Image)
    assert max(inputs) in objects, 'the last image has no output'
    for stamp, arr in objects.items():
        label = labels[stamp]
        assert (label.encoding, label.height, label.width) == ('mono16', H, W)
        ids = np.frombuffer(bytes(label.data), '<u2').reshape(H, W)
        shown = {o.id: o for o in arr.objects if o.state != o.LOST}
        assert set(np.unique(ids)) - {0} <= set(shown)
        for o in shown.values():
            mask = CompactMask(o.mask_x_offset, o.mask_y_offset, o.mask_width, o.mask_height,
                               np.asarray(o.mask_rle)).to_mask(H, W)
            assert not (ids == o.id)[~mask].any()

    first, last = min(inputs.values()), max(inputs.values())
    assert clock_listener, 'no /clock received'
    assert all(first <= c <= last for c in clock_listener)
    assert clock_listener == sorted(clock_listener) and clock_listener[-1] == last

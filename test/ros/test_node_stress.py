"""The node under load over real DDS: camera images at 30 Hz, prompts and service calls in parallel,
and 20 lifecycle cycles (deactivate, cleanup, configure, activate) while frames are in flight.

The node runs the shipped model in mode ``both`` (the prompted and the everything tracker draw
ids from one pool) on generated 160x120 frames. This process streams images from a timer, sends
clicks, text and ``~/set_object`` / ``~/list_objects`` calls from another, and drives the
lifecycle from the test thread; an executor with several threads runs all of it at once. The
test asserts that no id appears twice in one output, that no callback raised (the node's
``callback_errors`` and its log), that the node is alive, active and still answering, that its
memory stays flat over the cycles, and that SIGINT under load stops it cleanly.
"""
import array
import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from ros_helpers import NodeProcess, ros_node
from seem_ros.msg import Prompt, TrackedObjectArray
from seem_ros.ros.conversions import ns_to_stamp
from seem_ros.scenes import build_scene, render_frame
from seem_ros.srv import ListObjects, SetObject

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / 'models' / 'seem_tiny.pt'
W, H, FRAMES = 160, 120, 30
CYCLES = 20
TIMEOUT = 120.0
CYCLE = (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP, Transition.TRANSITION_CONFIGURE,
         Transition.TRANSITION_ACTIVATE)
# Between the medians of cycles 1-5 and of the last 5 (14 cycles apart): a leaked model or session
# (about 47 MB each) would add some 650 MB; buffers in flight under load vary by tens of MB.
RSS_GROWTH_MB = 100

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason='the shipped model is missing')


class Load:
    """Images at 30 Hz and prompts and services at 5 Hz into the node; what comes back is kept."""

    def __init__(self, node):
        self.node = node
        scene = build_scene('demo', 0, width=W, height=H, frames=FRAMES)
        self.frames = [render_frame(scene, k) for k in range(FRAMES)]
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.image = node.create_publisher(Image, 'image', qos)
        self.click = node.create_publisher(Point, 'seem/click', 10)
        self.text = node.create_publisher(String, 'seem/text', 10)
        self.set_object = node.create_client(SetObject, 'seem/set_object')
        self.list_objects = node.create_client(ListObjects, 'seem/list_objects')
        self.change_state = node.create_client(ChangeState, 'seem/change_state')
        self.get_state = node.create_client(GetState, 'seem/get_state')
        self.outputs, self.diagnostics = [], []
        node.create_subscription(TrackedObjectArray, 'seem/objects', self.outputs.append, 50)
        node.create_subscription(DiagnosticArray, 'seem/diagnostics', self.diagnostics.append, 10)
        self.sent = itertools.count()
        self.prompts = itertools.count()
        self.running = False
        node.create_timer(1 / 30, self._publish_image)
        node.create_timer(1 / 5, self._prompt)

    def _publish_image(self):
        if not self.running:
            return
        k = next(self.sent)
        rgb = self.frames[k % FRAMES].rgb
        self.image.publish(Image(header=Header(stamp=ns_to_stamp(10**9 + k * 33_333_333), frame_id='camera'),
                                 height=H, width=W, encoding='rgb8', step=3 * W,
                                 data=array.array('B', rgb.tobytes())))

    def _prompt(self):
        if not self.running:
            return
        k = next(self.prompts)
        x, y = self.frames[0].objects[k % 4].center_px
        kind = k % 4
        if kind == 0:
            self.click.publish(Point(x=float(x), y=float(y)))
        elif kind == 1:
            self.text.publish(String(data='the circle, the square'))
        elif kind == 2:
            self.set_object.call_async(SetObject.Request(prompt=Prompt(points=[Point(x=float(x), y=float(y))])))
        else:
            self.list_objects.call_async(ListObjects.Request())

    def call(self, client, request):
        """A service call from the test thread while the executor spins elsewhere."""
        assert client.wait_for_service(timeout_sec=TIMEOUT), f'{client.srv_name} is not served'
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        assert done.wait(TIMEOUT), f'{client.srv_name} did not answer'
        return future.result()

    def transition(self, transition_id):
        return self.call(self.change_state, ChangeState.Request(transition=Transition(id=transition_id))).success

    def wait_for(self, condition, what):
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            assert time.monotonic() < deadline, f'timed out waiting for {what}'
            time.sleep(0.05)


@pytest.fixture(scope='module')
def seem(ros_namespace, tmp_path_factory):
    node = NodeProcess(ros_namespace, tmp_path_factory.mktemp('node') / 'node.log', [
        '-p', f'model.checkpoint:={MODEL}', '-p', 'pipeline.mode:=both',
        '-p', 'pipeline.vocabulary:=[circle, square, triangle]', '-p', 'qos.reliability:=reliable',
        '-p', 'qos.depth:=5', '-p', 'diagnostics.period:=0.2', '-p', 'limits.prompt_rate:=100.0'])
    yield node
    if node.proc.poll() is None:
        node.interrupt()


def test_lifecycle_cycles_under_load_keep_the_node_serving(ros_namespace, seem):
    with ros_node('seem_stress_test', ros_namespace) as node:
        load = Load(node)
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            load.wait_for(lambda: load.image.get_subscription_count() > 0, 'the node to subscribe')
            load.running = True
            load.wait_for(lambda: len(load.outputs) >= 10, 'the first outputs')
            rss = []
            for cycle in range(CYCLES):
                for transition in CYCLE:
                    assert load.transition(transition), f'cycle {cycle}: transition {transition} failed:\n{seem.log()}'
                seen = len(load.outputs)
                load.wait_for(lambda: len(load.outputs) > seen + 3, f'outputs after cycle {cycle}')
                rss.append(seem.rss_mb())
            state = load.call(load.get_state, GetState.Request()).current_state.id
            load.wait_for(lambda: load.diagnostics, 'diagnostics')
            diagnostics = {kv.key: kv.value for kv in load.diagnostics[-1].status[0].values}
            alive = seem.proc.poll() is None
            code = seem.interrupt()                    # Ctrl-C while images are still coming
        finally:
            load.running = False
            executor.shutdown()
            spinner.join(timeout=10)
    log = seem.log_path.read_text()
    assert alive and code == 0, f'the node died or did not stop cleanly (exit {code}):\n{log}'
    assert state == State.PRIMARY_STATE_ACTIVE
    for objects in load.outputs:
        ids = [o.id for o in objects.objects]
        assert len(ids) == len(set(ids)), f'an id twice in one output: {ids}'
    assert diagnostics['callback_errors'] == '0' and 'unexpected' not in log and 'Traceback' not in log, log
    assert np.median(rss[-5:]) - np.median(rss[1:6]) < RSS_GROWTH_MB, f'RSS grew over the cycles: {rss} MB'
    print(f'{next(load.sent)} images sent, {len(load.outputs)} outputs, {next(load.prompts)} prompts; '
          f'RSS over the cycles {rss[1]:.0f} -> {rss[-1]:.0f} MB')

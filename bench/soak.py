"""Soak: thousands of 640x480 frames with 4 tracked objects and lifecycle cycles; RSS must stay flat.

Starts the node as users do (``config/seem.yaml``: the shipped model, 640x480 resized to short
side 120), prompts 4 objects of a generated scene (a sentence, a click, a box, a referring patch)
and sends the scene's frames in lockstep (the next frame once the previous one's ``~/objects``
came back), looping over the scene. Every ``--frames / --cycles`` frames it runs one lifecycle
cycle (deactivate/activate; every third one also cleanup/configure) and re-prompts the objects.
Prints the node's RSS every ``--every`` frames and the least-squares slope of RSS over frames
after the first report (warm-up), in MB per 1,000 frames.

Run: ``python bench/soak.py [--frames 10000] [--cycles 30] [--json bench/results/soak.json]``.
"""
from __future__ import annotations

import argparse
import array
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'ros'))
os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import ros_helpers  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from seem_ros.msg import BoundingBox2D, Prompt, TrackedObjectArray  # noqa: E402
from seem_ros.scenes import build_scene, render_frame  # noqa: E402
from seem_ros.srv import Reset, SetObject  # noqa: E402

WIDTH, HEIGHT = 640, 480
TIMEOUT = 120.0
SHORT = [Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE]
FULL = [Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP, Transition.TRANSITION_CONFIGURE,
        Transition.TRANSITION_ACTIVATE]


def image_msg(rgb, sec):
    return Image(header=Header(stamp=Time(sec=sec), frame_id='camera'), height=rgb.shape[0], width=rgb.shape[1],
                 encoding='rgb8', step=rgb.shape[1] * 3, data=array.array('B', rgb.tobytes()))


def object_prompts(scene, frame):
    """A sentence, a click, a box and a referring patch (the whole frame with one object's mask)."""
    objects = frame.objects[:4]
    sentence = Prompt(text=scene.object(objects[0].id).sentence)
    ys, xs = np.nonzero(frame.mask(objects[1].id))
    click = Prompt(points=[Point(x=float(xs.mean()), y=float(ys.mean()))], point_labels=[True])
    x0, y0, x1, y1 = (float(v) for v in objects[2].bbox)
    box = Prompt(boxes=[BoundingBox2D(x_min=x0, y_min=y0, x_max=x1, y_max=y1)])
    mask = frame.mask(objects[3].id).astype(np.uint8) * 255
    patch = Prompt(reference_image=image_msg(frame.rgb, 0),
                   reference_mask=Image(height=HEIGHT, width=WIDTH, encoding='mono8', step=WIDTH,
                                        data=array.array('B', mask.tobytes())))
    return [sentence, click, box, patch]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=10000)
    parser.add_argument('--cycles', type=int, default=30)
    parser.add_argument('--every', type=int, default=500, help='frames between RSS reports')
    parser.add_argument('--json', type=Path)
    args = parser.parse_args(argv)
    scene = build_scene('demo', 0, width=WIDTH, height=HEIGHT)
    frames = [render_frame(scene, k) for k in range(scene.n_frames)]
    prompts = object_prompts(scene, frames[0])
    namespace = f'/soak_{uuid.uuid4().hex[:8]}'
    seem = ros_helpers.NodeProcess(namespace, Path(tempfile.mkdtemp(prefix='seem_soak_')) / 'node.log',
                                   ['-p', 'qos.reliability:=reliable', '-p', 'qos.depth:=2'])
    reports, cycle_every = [], max(args.frames // max(args.cycles, 1), 1)
    outputs = {}
    start = time.monotonic()
    try:
        with ros_helpers.ros_node('seem_soak', namespace) as node:
            pub = node.create_publisher(Image, 'image', 2)
            node.create_subscription(TrackedObjectArray, 'seem/objects',
                                     lambda m: outputs.__setitem__(m.header.stamp.sec, len(m.objects)), 10)
            clients = {name: node.create_client(t, f'seem/{name}')
                       for name, t in (('set_object', SetObject), ('reset', Reset), ('change_state', ChangeState))}

            def prompt_all():
                ros_helpers.call(node, clients['reset'], Reset.Request(), TIMEOUT)
                for p in prompts:
                    ros_helpers.call(node, clients['set_object'], SetObject.Request(prompt=p), TIMEOUT)

            prompt_all()
            cycles = 0
            for k in range(1, args.frames + 1):
                msg = image_msg(frames[k % len(frames)].rgb, k)
                ros_helpers.spin_until(node, lambda: k in outputs, TIMEOUT, f'~/objects of frame {k}',
                                       on_idle=lambda: pub.publish(msg), idle_period=5.0)
                outputs.pop(k - 1, None)
                if k % cycle_every == 0 and cycles < args.cycles:
                    cycles += 1
                    for transition in FULL if cycles % 3 == 0 else SHORT:
                        answer = ros_helpers.call(node, clients['change_state'],
                                                  ChangeState.Request(transition=Transition(id=transition)), TIMEOUT)
                        assert answer.success, f'transition {transition} failed:\n{seem.log()[-2000:]}'
                    prompt_all()
                if k % args.every == 0:
                    reports.append((k, seem.rss_mb(), cycles, outputs.get(k, 0)))
                    print(f'frame {k:6d}: RSS {reports[-1][1]:7.1f} MB, {cycles} lifecycle cycles, '
                          f'{time.monotonic() - start:6.0f} s', flush=True)
    finally:
        code = seem.interrupt() if seem.proc.poll() is None else seem.proc.returncode
    later = np.array([(k, rss) for k, rss, _, _ in reports[1:]], float)
    slope = float(np.polyfit(later[:, 0], later[:, 1], 1)[0] * 1000) if len(later) >= 2 else float('nan')
    print(f'\nRSS slope after warm-up: {slope:+.2f} MB per 1,000 frames '
          f'({reports[0][1]:.0f} -> {reports[-1][1]:.0f} MB over {args.frames} frames, {args.cycles} cycles); '
          f'exit code on SIGINT {code}')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'frames': args.frames, 'cycles': args.cycles, 'width': WIDTH,
                                         'height': HEIGHT, 'slope_mb_per_1000_frames': slope,
                                         'rss_mb': [{'frame': k, 'rss_mb': r, 'cycles': c} for k, r, c, _ in reports],
                                         'seconds': time.monotonic() - start, 'exit_code_on_sigint': code},
                                        indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""The seem_ros interfaces end to end over DDS, between two processes (no model involved).

A client process encodes what a teleop operator does, a click in rqt_image_view plus a language
command, as one seem_ros/Prompt and registers it with the SetObject service. A second process,
standing in for the segmentation node, answers and publishes a seem_ros/TrackedObjectArray whose
mask it derives from the prompt's geometry (box and clicks) and encodes with seem_ros.mask_codec.
The client decodes the mask and prints everything that crossed the wire.

Usage: ``python tools/interfaces_demo.py`` (``make demo``). DDS discovery stays on this machine
unless ROS_AUTOMATIC_DISCOVERY_RANGE is set.
"""
import os
import signal
import subprocess
import sys
import time
import uuid

os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from geometry_msgs.msg import Point  # noqa: E402
from rclpy.executors import ExternalShutdownException  # noqa: E402
from rclpy.node import Node  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from seem_ros.mask_codec import CompactMask  # noqa: E402
from seem_ros.msg import BoundingBox2D, Prompt, TrackedObject, TrackedObjectArray  # noqa: E402
from seem_ros.srv import ListObjects, RemoveObject, SetObject  # noqa: E402

WIDTH, HEIGHT = 40, 16  # the (imaginary) camera image
CLICK_RADIUS = 2


def prompt_mask(prompt):
    """The prompt's boxes, plus disks around positive clicks, minus disks around negative ones."""
    ys, xs = np.mgrid[:HEIGHT, :WIDTH] + 0.5
    mask = np.zeros((HEIGHT, WIDTH), bool)
    for b in prompt.boxes:
        mask |= (xs >= b.x_min) & (xs < b.x_max) & (ys >= b.y_min) & (ys < b.y_max)
    labels = list(prompt.point_labels) or [True] * len(prompt.points)
    for p, positive in zip(prompt.points, labels):
        disk = (xs - p.x - 0.5) ** 2 + (ys - p.y - 0.5) ** 2 <= CLICK_RADIUS ** 2
        mask = mask | disk if positive else mask & ~disk
    return mask


class StandIn(Node):
    """Answers SetObject/ListObjects/RemoveObject and publishes tracked objects at 10 Hz."""

    def __init__(self):
        super().__init__('seem_stand_in')
        self.objects = {}
        self.pub = self.create_publisher(TrackedObjectArray, 'tracked_objects', 10)
        self.create_service(SetObject, 'set_object', self.set_object)
        self.create_service(ListObjects, 'list_objects', self.list_objects)
        self.create_service(RemoveObject, 'remove_object', self.remove_object)
        self.create_timer(0.1, self.publish)

    def set_object(self, request, response):
        prompt = request.prompt
        prompt.object_id = prompt.object_id or len(self.objects) + 1
        self.objects[prompt.object_id] = prompt
        response.success, response.object_id = True, prompt.object_id
        response.message = f'tracking {prompt.text or prompt.object_name!r}'
        return response

    def list_objects(self, request, response):
        response.objects = list(self.objects.values())
        return response

    def remove_object(self, request, response):
        response.success = self.objects.pop(request.object_id, None) is not None
        return response

    def publish(self):
        array = TrackedObjectArray(header=Header(stamp=self.get_clock().now().to_msg(), frame_id='camera'),
                                   image_width=WIDTH, image_height=HEIGHT)
        for object_id, prompt in self.objects.items():
            compact = CompactMask.from_mask(prompt_mask(prompt))
            x0, y0, x1, y1 = compact.bbox
            array.objects.append(TrackedObject(
                id=object_id, label=prompt.text or prompt.object_name, score=1.0, state=TrackedObject.TRACKED,
                last_seen=array.header.stamp, prompt_id=object_id, prompt_name=prompt.object_name,
                bbox=BoundingBox2D(x_min=float(x0), y_min=float(y0), x_max=float(x1), y_max=float(y1)),
                mask_x_offset=compact.x_offset, mask_y_offset=compact.y_offset, mask_width=compact.width,
                mask_height=compact.height, mask_rle=compact.counts.tolist()))
        self.pub.publish(array)


def serve():
    rclpy.init(args=sys.argv)
    node = StandIn()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


def spin_until(node, condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f'interfaces demo: timed out waiting for {what}')
        rclpy.spin_once(node, timeout_sec=0.05)


def call(node, client, request):
    spin_until(node, client.service_is_ready, f'service {client.srv_name}')
    future = client.call_async(request)
    spin_until(node, future.done, f'a reply from {client.srv_name}')
    return future.result()


def client(namespace):
    rclpy.init()
    node = rclpy.create_node('teleop_client', namespace=namespace)
    arrays = []
    node.create_subscription(TrackedObjectArray, 'tracked_objects', arrays.append, 10)
    set_object = node.create_client(SetObject, 'set_object')

    click = Point(x=12.0, y=7.0, z=0.0)  # as rqt_image_view publishes it on <image>_mouse_left
    prompt = Prompt(header=Header(frame_id='camera'), object_name='mug', text='the red mug',
                    points=[click, Point(x=27.0, y=7.0)], point_labels=[True, False],
                    boxes=[BoundingBox2D(x_min=20.0, y_min=3.0, x_max=32.0, y_max=13.0)])
    print('--> SetObject request: Prompt')
    print(f'    text={prompt.text!r} object_name={prompt.object_name!r} frame_id={prompt.header.frame_id!r}')
    print(f'    points={[(p.x, p.y) for p in prompt.points]} point_labels={list(prompt.point_labels)}')
    print(f'    boxes={[(b.x_min, b.y_min, b.x_max, b.y_max) for b in prompt.boxes]}')
    reply = call(node, set_object, SetObject.Request(prompt=prompt))
    print(f'<-- SetObject reply: success={reply.success} object_id={reply.object_id} message={reply.message!r}')
    if not reply.success:
        sys.exit('interfaces demo: SetObject failed')

    spin_until(node, lambda: arrays and arrays[-1].objects, 'a TrackedObjectArray with the object')
    array = arrays[-1]
    obj = array.objects[0]
    print(f'<-- TrackedObjectArray: frame_id={array.header.frame_id!r} image {array.image_width}x{array.image_height}, '
          f'{len(array.objects)} object(s)')
    print(f'    id={obj.id} label={obj.label!r} score={obj.score} state={obj.state} (TRACKED={TrackedObject.TRACKED}) '
          f'prompt_id={obj.prompt_id} prompt_name={obj.prompt_name!r}')
    print(f'    bbox=({obj.bbox.x_min:g}, {obj.bbox.y_min:g}, {obj.bbox.x_max:g}, {obj.bbox.y_max:g}) '
          f'mask {obj.mask_width}x{obj.mask_height} at ({obj.mask_x_offset}, {obj.mask_y_offset}), '
          f'{len(obj.mask_rle)} RLE counts: {list(obj.mask_rle)}')
    mask = CompactMask(obj.mask_x_offset, obj.mask_y_offset, obj.mask_width, obj.mask_height,
                       np.asarray(obj.mask_rle)).to_mask(array.image_height, array.image_width)
    print('    decoded mask (# object, . background):')
    for row in mask:
        print('    ' + ''.join('#' if v else '.' for v in row))

    listed = call(node, node.create_client(ListObjects, 'list_objects'), ListObjects.Request())
    print(f'<-- ListObjects: {[(p.object_id, p.object_name, p.text) for p in listed.objects]}')
    removed = call(node, node.create_client(RemoveObject, 'remove_object'),
                   RemoveObject.Request(object_id=reply.object_id))
    print(f'<-- RemoveObject({reply.object_id}): success={removed.success}')
    node.destroy_node()
    rclpy.shutdown()


def main():
    if sys.argv[1:2] == ['--serve']:
        return serve()
    namespace = f'/seem_demo_{uuid.uuid4().hex[:8]}'
    print(f'interfaces demo: a client and a stand-in segmenter in two processes, namespace {namespace}, '
          f'ROS_DOMAIN_ID={os.environ.get("ROS_DOMAIN_ID", "0")}')
    server = subprocess.Popen([sys.executable, __file__, '--serve', '--ros-args', '-r', f'__ns:={namespace}'])
    try:
        client(namespace)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(10)
    print('interfaces demo: OK')


if __name__ == '__main__':
    main()

"""The other process of test_interfaces.py: echoes every seem_ros message, serves every service.

Usage: ``python interface_peer.py NAMESPACE``. Each message type received on ``NAMESPACE/<name>``
is republished unchanged on ``NAMESPACE/echo/<name>``; the services keep an in-memory object
registry with the contract of the node's. Prints ``ready`` once everything exists and exits
cleanly when its standard input closes (so it never outlives the test).
"""
import sys
import threading

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from seem_ros.msg import BoundingBox2D, Polyline, Prompt, TrackedObject, TrackedObjectArray
from seem_ros.srv import ListObjects, RemoveObject, Reset, SetObject

MESSAGES = {
    'bounding_box': BoundingBox2D,
    'polyline': Polyline,
    'prompt': Prompt,
    'tracked_object': TrackedObject,
    'tracked_objects': TrackedObjectArray,
}


class InterfacePeer(Node):
    def __init__(self, namespace):
        super().__init__('interface_peer', namespace=namespace)
        for name, msg_type in MESSAGES.items():
            echo = self.create_publisher(msg_type, f'echo/{name}', 10)
            self.create_subscription(msg_type, name, echo.publish, 10)
        self.objects = {}  # object_id -> Prompt
        self.next_id = 1
        self.create_service(SetObject, 'set_object', self.set_object)
        self.create_service(RemoveObject, 'remove_object', self.remove_object)
        self.create_service(Reset, 'reset', self.reset)
        self.create_service(ListObjects, 'list_objects', self.list_objects)

    def set_object(self, request, response):
        prompt = request.prompt
        if prompt.object_id == 0:
            prompt.object_id, self.next_id = self.next_id, self.next_id + 1
        elif prompt.object_id not in self.objects:
            response.message = f'no object {prompt.object_id}'
            return response
        self.objects[prompt.object_id] = prompt
        response.success, response.object_id = True, prompt.object_id
        response.message = f'object {prompt.object_id}: {prompt.text!r}'
        return response

    def remove_object(self, request, response):
        ids = [i for i, p in self.objects.items()
               if i == request.object_id or (request.object_id == 0 and p.object_name == request.object_name)]
        for i in ids:
            del self.objects[i]
        response.success = bool(ids)
        response.message = f'removed {ids}' if ids else 'no such object'
        return response

    def reset(self, request, response):
        self.objects.clear()
        response.success, response.message = True, 'reset'
        return response

    def list_objects(self, request, response):
        response.objects = [self.objects[i] for i in sorted(self.objects)]
        return response


def main():
    rclpy.init()
    node = InterfacePeer(sys.argv[1])
    threading.Thread(target=lambda: (sys.stdin.read(), rclpy.try_shutdown()), daemon=True).start()
    print('ready', flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass


if __name__ == '__main__':
    main()

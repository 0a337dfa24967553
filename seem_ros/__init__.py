"""SEEM (Segment Everything Everywhere All at Once) for ROS 2.

``seem_ros`` is one package assembled from two directories: the library in the source tree and
the interfaces that rosidl generates (``seem_ros.msg``, ``seem_ros.srv``), which live in the
installed prefix. Extending ``__path__`` over every ``seem_ros`` directory on ``sys.path`` lets
either copy of this file be imported first and still reach both.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

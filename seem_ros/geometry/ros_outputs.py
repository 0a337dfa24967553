"""ROS messages of objects in 3D (:mod:`.depth3d`): the 3D fields of ``seem_ros/TrackedObject``, a
``sensor_msgs/PointCloud2`` of every object's points with its track id, and a
``visualization_msgs/MarkerArray`` of boxes and ids for RViz.

Every message is in the camera optical frame of the image (pass the image header). Markers need
``visualization_msgs``: :data:`MARKERS_AVAILABLE` says whether it is installed.
"""
from __future__ import annotations

import array
from typing import Optional, Sequence

import numpy as np
from geometry_msgs.msg import Point, Vector3
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

from ..overlay import id_color
from .depth3d import ObjectGeometry

try:
    from visualization_msgs.msg import Marker, MarkerArray
except ImportError:   # optional dependency: only the marker output needs it
    Marker = MarkerArray = None

MARKERS_AVAILABLE = MarkerArray is not None

POINT_DTYPE = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('track_id', '<u4')])
"""One point of the cloud: little-endian, 16 bytes."""

# numpy types a dtype's fields and names Optional (None for an unstructured dtype).
POINT_FIELDS = [PointField(name=name, offset=POINT_DTYPE.fields[name][1], count=1,  # type: ignore[index]
                           datatype=PointField.UINT32 if name == 'track_id' else PointField.FLOAT32)
                for name in POINT_DTYPE.names]  # type: ignore[union-attr]

MIN_BOX_M = 0.005
"""Smallest box side drawn, so that flat objects stay visible."""

TEXT_HEIGHT_M = 0.05


def position_fields(geometry: Optional[ObjectGeometry]) -> dict:
    """Keyword arguments for the optional 3D fields of ``seem_ros/TrackedObject``.

    None (no depth or no intrinsics for the image) gives ``{}``: ``has_position`` stays false.
    A geometry without points has a NaN centroid and extent and ``position_valid`` false.
    """
    if geometry is None:
        return {}
    return dict(has_position=True, position_valid=bool(geometry.valid),
                centroid=Point(x=float(geometry.centroid[0]), y=float(geometry.centroid[1]),
                               z=float(geometry.centroid[2])),
                extent=Vector3(x=float(geometry.extent[0]), y=float(geometry.extent[1]), z=float(geometry.extent[2])),
                num_points=int(geometry.num_points))


def point_cloud(header: Header, geometries: Sequence[ObjectGeometry], ids: Sequence[int]) -> PointCloud2:
    """An unorganized (height 1), dense cloud of the points of every object (fields x, y, z
    float32 metres and ``track_id`` uint32; see :data:`POINT_DTYPE`).

    Each geometry must carry its ``points`` (``return_points=True``); ``ids[i]`` is the track id
    of ``geometries[i]``.
    """
    points = []
    for geometry in geometries:
        if geometry.points is None:
            raise ValueError('a geometry without its points (place it with return_points=True)')
        points.append(geometry.points)
    cloud = np.empty(sum(len(p) for p in points), POINT_DTYPE)
    start = 0
    for xyz, track_id in zip(points, ids):
        end = start + len(xyz)
        for axis, name in enumerate('xyz'):
            cloud[name][start:end] = xyz[:, axis]
        cloud['track_id'][start:end] = track_id
        start = end
    return PointCloud2(header=header, height=1, width=len(cloud), fields=POINT_FIELDS, is_bigendian=False,
                       point_step=POINT_DTYPE.itemsize, row_step=POINT_DTYPE.itemsize * len(cloud),
                       data=array.array('B', cloud.tobytes()), is_dense=True)   # array: no per-byte check


def box_markers(header: Header, geometries: Sequence[ObjectGeometry], ids: Sequence[int],
                labels: Sequence[str]) -> 'MarkerArray':
    """RViz markers: a DELETEALL (clears the previous image's markers), then for every valid
    object a translucent CUBE (namespace 'boxes') around its extent and a TEXT_VIEW_FACING
    'id label' above it (namespace 'ids'), both with marker id = track id, in the id's colour.

    Raises:
        RuntimeError: ``visualization_msgs`` is not installed.
    """
    if not MARKERS_AVAILABLE:
        raise RuntimeError('visualization_msgs is not installed: no 3D box markers')
    markers = [Marker(header=header, action=Marker.DELETEALL)]
    for geometry, track_id, label in zip(geometries, ids, labels):
        if not geometry.valid:
            continue
        r, g, b = (c / 255.0 for c in id_color(track_id))
        cx, cy, cz = (float(v) for v in geometry.box_center)
        sx, sy, sz = (max(float(v), MIN_BOX_M) for v in geometry.extent)
        box = Marker(header=header, ns='boxes', id=int(track_id), type=Marker.CUBE, action=Marker.ADD)
        box.pose.position = Point(x=cx, y=cy, z=cz)
        box.pose.orientation.w = 1.0
        box.scale = Vector3(x=sx, y=sy, z=sz)
        box.color.r, box.color.g, box.color.b, box.color.a = r, g, b, 0.4
        text = Marker(header=header, ns='ids', id=int(track_id), type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                      text=f'{track_id} {label}'.strip())
        text.pose.position = Point(x=cx, y=cy - sy / 2 - TEXT_HEIGHT_M, z=cz)   # y points down: above the box
        text.pose.orientation.w = 1.0
        text.scale.z = TEXT_HEIGHT_M
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        markers += [box, text]
    return MarkerArray(markers=markers)

"""3D geometry of segmented objects from aligned depth: :mod:`.depth3d` (numpy/cv2 only) and the
ROS messages built from it, :mod:`.ros_outputs` (import it explicitly; it needs ROS message types)."""
from .depth3d import (DEPTH_ENCODINGS, CameraIntrinsics, ObjectGeometry, depth_to_metres, frame_geometry,
                      mask_to_grid, nearest_by_stamp, object_geometry)

__all__ = ['DEPTH_ENCODINGS', 'CameraIntrinsics', 'ObjectGeometry', 'depth_to_metres', 'frame_geometry',
           'mask_to_grid', 'nearest_by_stamp', 'object_geometry']

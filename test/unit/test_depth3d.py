"""Objects in 3D from aligned depth: accuracy against the scenes' ground truth, resolution mismatch,
invalid depth, edge bleeding, encodings, stamp sync, and the ROS messages built from it."""
import cv2
import numpy as np
import pytest
from std_msgs.msg import Header

from seem_ros.geometry import (CameraIntrinsics, ObjectGeometry, depth_to_metres, frame_geometry, mask_to_grid,
                               nearest_by_stamp, object_geometry)
from seem_ros.geometry import ros_outputs
from seem_ros.msg import TrackedObject
from seem_ros.scenes import Camera, build_scene, depth_to_mm, render_frame

SIZE = dict(width=320, height=240)
MIN_VISIBLE_PX = 150      # objects with fewer visible pixels are not scored
TOLERANCE_M = 0.02


def _intrinsics(camera: Camera) -> CameraIntrinsics:
    return CameraIntrinsics.from_matrix(camera.K, camera.width, camera.height)


def _scored(frame):
    return [o for o in frame.objects if o.visible_px >= MIN_VISIBLE_PX]


def _frames(scenario, seed, count=3, **size):
    scene = build_scene(scenario, seed, frames=12, **(size or SIZE))
    return scene, [render_frame(scene, k) for k in np.linspace(0, scene.n_frames - 1, count).astype(int)]


@pytest.mark.parametrize('scenario,seed', [('demo', 0), ('occlusion', 1), ('exit_reentry', 2), ('random', 3),
                                           ('random', 4)])
def test_centroid_within_centimetres_of_ground_truth_with_sensor_noise(scenario, seed):
    scene, frames = _frames(scenario, seed)
    intr = _intrinsics(scene.camera)
    rng = np.random.default_rng(seed)
    scored = 0
    for frame in frames:
        # 16UC1 like a bag, with depth-dependent noise and 5 % dropouts (0 = invalid).
        noisy = frame.depth + rng.normal(0.0, 1.0, frame.depth.shape).astype(np.float32) * 0.003 * frame.depth ** 2
        mm = depth_to_mm(noisy)
        mm[rng.random(mm.shape) < 0.05] = 0
        depth = depth_to_metres(mm, '16UC1')
        objects = _scored(frame)
        geometries = frame_geometry([frame.mask(o.id) for o in objects], depth, intr)
        for obj, geometry in zip(objects, geometries):
            assert geometry.valid, (obj.id, geometry.num_points)
            error = np.linalg.norm(geometry.centroid - obj.centroid)
            assert error < TOLERANCE_M, (frame.index, obj.id, geometry.centroid, obj.centroid)
            scored += 1
    assert scored >= 4


def test_extent_matches_the_visible_shape():
    scene = build_scene('demo', 0, frames=12, **SIZE)
    frame = render_frame(scene, 0)
    intr = _intrinsics(scene.camera)
    for obj in _scored(frame):
        g = object_geometry(frame.mask(obj.id), frame.depth, intr)
        x0, y0, x1, y1 = obj.bbox
        size_px = np.array([x1 - x0, y1 - y0])
        truth = size_px * obj.depth_m / np.array([intr.fx, intr.fy])
        ratio = g.extent[:2] / truth            # percentiles trim sparse extremes (star tips), never add
        assert ((0.8 < ratio) & (ratio <= 1.0)).all(), (obj.id, ratio)
        assert g.extent[2] < 1e-6                          # flat, fronto-parallel shapes
        assert g.points is None and g.num_points == obj.visible_px     # exact mask and depth: every pixel


def test_half_resolution_depth_gives_the_same_centroid():
    full = build_scene('random', 5, frames=12, width=640, height=480)
    half = build_scene('random', 5, frames=12, width=320, height=240)   # same objects, same field of view
    intr = _intrinsics(full.camera)                                       # colour CameraInfo only
    checked = 0
    for k in (0, 6, 11):
        colour, depth = render_frame(full, k), render_frame(half, k)
        objects = _scored(colour)
        at_full = frame_geometry([colour.mask(o.id) for o in objects], colour.depth, intr)
        at_half = frame_geometry([colour.mask(o.id) for o in objects], depth.depth, intr)
        from_depth_info = frame_geometry([colour.mask(o.id) for o in objects], depth.depth,
                                         intr.scaled_to(320, 240))
        for obj, a, b, c in zip(objects, at_full, at_half, from_depth_info):
            assert b.valid and np.linalg.norm(b.centroid - obj.centroid) < TOLERANCE_M
            assert np.linalg.norm(a.centroid - b.centroid) < 0.01
            np.testing.assert_array_equal(b.centroid, c.centroid)
            checked += 1
    assert checked >= 3


def test_scaled_intrinsics_follow_the_pixel_centre_convention():
    intr = _intrinsics(Camera.with_fov(640, 480))
    half = intr.scaled_to(320, 240)
    expected = Camera.with_fov(320, 240)
    np.testing.assert_allclose([half.fx, half.fy, half.cx, half.cy],
                               [expected.fx, expected.fy, expected.cx, expected.cy])
    assert (half.width, half.height) == (320, 240)
    back = half.scaled_to(640, 480)
    np.testing.assert_allclose([back.fx, back.fy, back.cx, back.cy], [intr.fx, intr.fy, intr.cx, intr.cy])
    # A 3D point projects onto corresponding locations of both grids: (u + 0.5) scales by the ratio.
    x, y, z = 0.3, -0.2, 1.5
    u, v = intr.fx * x / z + intr.cx, intr.fy * y / z + intr.cy
    np.testing.assert_allclose([half.fx * x / z + half.cx + 0.5, half.fy * y / z + half.cy + 0.5],
                               [(u + 0.5) / 2, (v + 0.5) / 2])


def test_intrinsics_from_k_or_p_and_rejects_uncalibrated():
    k = [500.0, 0, 320.0, 0, 510.0, 240.0, 0, 0, 1]
    p = [500.0, 0, 320.0, 0.0, 0, 510.0, 240.0, 0.0, 0, 0, 1, 0]
    assert CameraIntrinsics.from_matrix(k, 640, 480) == CameraIntrinsics.from_matrix(p, 640, 480) \
        == CameraIntrinsics(500.0, 510.0, 320.0, 240.0, 640, 480)
    with pytest.raises(ValueError, match='focal'):
        CameraIntrinsics.from_matrix(np.zeros(9), 640, 480)
    with pytest.raises(ValueError, match='size'):
        CameraIntrinsics.from_matrix(k, 0, 0)


def test_mask_to_grid_picks_the_pixel_under_each_centre():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 4:8] = True
    np.testing.assert_array_equal(mask_to_grid(mask, (3, 4)), mask[1::2, 1::2])
    np.testing.assert_array_equal(mask_to_grid(mask_to_grid(mask, (12, 16)), (6, 8)), mask)
    assert mask_to_grid(mask, (6, 8)) is mask


def test_all_invalid_depth_is_not_valid():
    scene = build_scene('demo', 0, frames=2, **SIZE)
    frame = render_frame(scene, 0)
    intr = _intrinsics(scene.camera)
    mask = frame.mask(1)
    nothing = [depth_to_metres(np.zeros_like(depth_to_mm(frame.depth)), '16UC1'),
               np.full(frame.depth.shape, np.nan, np.float32),
               depth_to_metres(frame.depth, '32FC1', max_depth=0.5)]    # every pixel beyond max_depth
    for depth in nothing:
        g = object_geometry(mask, depth, intr, return_points=True)
        assert not g.valid and g.num_points == 0 and g.points.shape == (0, 3)
        assert np.isnan(g.centroid).all() and np.isnan(g.extent).all()
    g = object_geometry(np.zeros_like(mask), frame.depth, intr)
    assert not g.valid and g.num_points == 0


def test_too_few_points_is_not_valid_but_estimated():
    intr = CameraIntrinsics(100.0, 100.0, 15.5, 15.5, 32, 32)
    depth = np.full((32, 32), 2.0, np.float32)
    mask = np.zeros((32, 32), bool)
    mask[10:13, 10:13] = True
    g = object_geometry(mask, depth, intr, min_points=20)
    assert not g.valid and g.num_points == 9                 # too thin to erode: the whole mask sets the depth
    np.testing.assert_allclose(g.centroid, [(11 - 15.5) * 0.02, (11 - 15.5) * 0.02, 2.0])
    assert object_geometry(mask, depth, intr, min_points=9).valid


def test_edge_bleeding_onto_the_background_barely_moves_the_centroid():
    scene = build_scene('demo', 0, frames=12, **SIZE)
    frame = render_frame(scene, 6)
    intr = _intrinsics(scene.camera)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    for obj in _scored(frame):
        mask = frame.mask(obj.id)
        bled = cv2.dilate(mask.view(np.uint8), kernel).view(bool)          # 4 px onto whatever lies around
        exact = object_geometry(mask, frame.depth, intr)
        g = object_geometry(bled, frame.depth, intr)
        assert np.linalg.norm(g.centroid - exact.centroid) < 0.01, obj.id
        assert np.linalg.norm(g.centroid - obj.centroid) < TOLERANCE_M
        # The naive mean over the bled mask is far off: the test exercises the robustness.
        ys, xs = np.nonzero(bled)
        assert abs(frame.depth[ys, xs].mean() - obj.centroid[2]) > 0.05


def test_flying_pixels_at_the_edge_are_ignored():
    intr = CameraIntrinsics(300.0, 300.0, 31.5, 31.5, 64, 64)
    depth = np.full((64, 64), 3.0, np.float32)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    depth[mask] = 1.0
    edge = mask & ~cv2.erode(mask.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool)
    depth[edge] = 2.0                                          # interpolated between object and background
    g = object_geometry(mask, depth, intr)                     # the depth band drops them
    np.testing.assert_allclose(g.centroid[2], 1.0)
    assert g.num_points == np.count_nonzero(mask & ~edge)


@pytest.mark.parametrize('encoding', ['16UC1', 'mono16', '32FC1'])
def test_depth_encodings_and_invalid_values(encoding):
    metres = np.array([[0.0, 0.5, 1.234], [np.nan, np.inf, 9.0]], np.float32)
    raw = metres if encoding == '32FC1' else depth_to_mm(np.nan_to_num(metres, posinf=0.0))
    out = depth_to_metres(raw, encoding, max_depth=5.0)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out[0, 1:], [0.5, 1.234], atol=1e-6)
    assert np.isnan(out[0, 0]) and np.isnan(out[1]).all()
    unbounded = depth_to_metres(raw, encoding)                         # no max_depth: 9 m kept, inf not
    assert unbounded[1, 2] == pytest.approx(9.0) and np.isnan(unbounded[1, 1])


def test_depth_encoding_errors():
    with pytest.raises(ValueError, match='unsupported'):
        depth_to_metres(np.zeros((2, 2), np.uint8), 'mono8')
    with pytest.raises(ValueError, match='16UC1'):
        depth_to_metres(np.zeros((2, 2), np.float32), '16UC1')
    with pytest.raises(ValueError, match='32FC1'):
        depth_to_metres(np.zeros((2, 2), np.uint16), '32FC1')


def test_millimetre_and_metre_depth_give_the_same_centroid():
    scene = build_scene('occlusion', 0, frames=2, **SIZE)
    frame = render_frame(scene, 0)
    intr = _intrinsics(scene.camera)
    masks = [frame.mask(o.id) for o in _scored(frame)]
    metres = frame_geometry(masks, depth_to_metres(frame.depth, '32FC1'), intr)
    millimetres = frame_geometry(masks, depth_to_metres(depth_to_mm(frame.depth), '16UC1'), intr)
    for a, b in zip(metres, millimetres):
        np.testing.assert_allclose(a.centroid, b.centroid, atol=1e-3)


def test_sizes_must_agree():
    intr = CameraIntrinsics(100.0, 100.0, 7.5, 7.5, 16, 16)
    depth = np.ones((16, 16), np.float32)
    assert frame_geometry([np.ones((32, 32), bool)], depth, intr.scaled_to(64, 64))[0].valid
    with pytest.raises(ValueError, match='aspect ratio'):               # colour 1280x720, depth 640x480
        frame_geometry([np.ones((9, 16), bool)], depth, intr)
    with pytest.raises(ValueError, match='aspect ratio'):
        frame_geometry([], depth, intr.scaled_to(16, 9))
    with pytest.raises(ValueError, match='same size'):
        object_geometry(np.ones((8, 8), bool), np.ones((16, 16), np.float32), intr)
    with pytest.raises(ValueError, match='same size'):
        object_geometry(np.ones((8, 8), bool), np.ones((8, 8), np.float32), intr)


def test_nearest_stamp_within_slop_else_none():
    ms = 1_000_000
    buffer = [(100 * ms, 'a'), (133 * ms, 'b'), (166 * ms, 'c')]
    assert nearest_by_stamp(buffer, 140 * ms, 20 * ms) == 'b'
    assert nearest_by_stamp(buffer, 150 * ms, 20 * ms) == 'c'          # 16 ms from c, 17 ms from b
    assert nearest_by_stamp(buffer, 200 * ms, 34 * ms) == 'c'          # boundary is inclusive
    assert nearest_by_stamp(buffer, 200 * ms, 20 * ms) is None         # depth for this image not there yet
    assert nearest_by_stamp(buffer, 50 * ms, 20 * ms) is None          # only depth that came much later
    assert nearest_by_stamp([], 100 * ms, 20 * ms) is None             # no depth at all
    assert nearest_by_stamp([(90, 'early'), (110, 'late')], 100, 10) == 'early'   # tie: earlier stamp


def test_point_cloud_round_trip():
    scene = build_scene('demo', 0, frames=2, **SIZE)
    frame = render_frame(scene, 0)
    objects = _scored(frame)
    geometries = frame_geometry([frame.mask(o.id) for o in objects], frame.depth, _intrinsics(scene.camera),
                                return_points=True)
    ids = [o.id + 40 for o in objects]
    header = Header(frame_id='camera_color_optical_frame')
    msg = ros_outputs.point_cloud(header, geometries, ids)

    total = sum(g.num_points for g in geometries)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, total, 16, 16 * total)
    assert msg.is_dense and not msg.is_bigendian and msg.header.frame_id == header.frame_id
    types = {7: '<f4', 6: '<u4'}    # PointField.FLOAT32, PointField.UINT32
    dtype = np.dtype({'names': [f.name for f in msg.fields], 'offsets': [f.offset for f in msg.fields],
                      'formats': [types[f.datatype] for f in msg.fields], 'itemsize': msg.point_step})
    assert dtype.names == ('x', 'y', 'z', 'track_id') and all(f.count == 1 for f in msg.fields)
    decoded = np.frombuffer(bytes(msg.data), dtype)
    np.testing.assert_array_equal(np.stack([decoded['x'], decoded['y'], decoded['z']], 1),
                                  np.concatenate([g.points for g in geometries]))
    np.testing.assert_array_equal(decoded['track_id'], np.repeat(ids, [g.num_points for g in geometries]))
    for g, track_id in zip(geometries, ids):
        own = decoded[decoded['track_id'] == track_id]
        np.testing.assert_allclose([own['x'].mean(), own['y'].mean(), own['z'].mean()], g.centroid, atol=1e-5)
    empty = ros_outputs.point_cloud(header, [], [])
    assert empty.width == 0 and len(empty.data) == 0


def _geometry(valid=True):
    return ObjectGeometry(np.array([0.1, -0.2, 1.5]), np.array([0.2, 0.1, 0.0]), np.array([0.12, -0.2, 1.5]),
                          400 if valid else 3, valid)


def test_tracked_object_3d_fields():
    msg = TrackedObject(id=7, **ros_outputs.position_fields(_geometry()))
    assert msg.has_position and msg.position_valid and msg.num_points == 400
    assert (msg.centroid.x, msg.centroid.y, msg.centroid.z) == (0.1, -0.2, 1.5)
    assert (msg.extent.x, msg.extent.y, msg.extent.z) == pytest.approx((0.2, 0.1, 0.0))
    weak = TrackedObject(**ros_outputs.position_fields(_geometry(valid=False)))
    assert weak.has_position and not weak.position_valid and weak.num_points == 3
    intr = CameraIntrinsics(100.0, 100.0, 7.5, 7.5, 16, 16)
    none = TrackedObject(**ros_outputs.position_fields(
        object_geometry(np.zeros((16, 16), bool), np.ones((16, 16), np.float32), intr)))
    assert none.has_position and not none.position_valid and none.num_points == 0 and np.isnan(none.centroid.z)
    unset = TrackedObject(**ros_outputs.position_fields(None))
    assert not unset.has_position and not unset.position_valid and unset.num_points == 0


def test_box_markers():
    if not ros_outputs.MARKERS_AVAILABLE:
        with pytest.raises(RuntimeError, match='visualization_msgs'):
            ros_outputs.box_markers(Header(), [_geometry()], [7], ['mug'])
        pytest.skip('visualization_msgs is not installed')
    from visualization_msgs.msg import Marker
    header = Header(frame_id='cam')
    msg = ros_outputs.box_markers(header, [_geometry(), _geometry(valid=False)], [7, 8], ['mug', 'cup'])
    clear, box, text = msg.markers                 # the invalid object gets no marker
    assert clear.action == Marker.DELETEALL
    assert (box.type, box.ns, box.id, box.header.frame_id) == (Marker.CUBE, 'boxes', 7, 'cam')
    assert (box.pose.position.x, box.pose.position.y, box.pose.position.z) == (0.12, -0.2, 1.5)
    assert (box.scale.x, box.scale.y, box.scale.z) == pytest.approx((0.2, 0.1, ros_outputs.MIN_BOX_M))
    assert box.pose.orientation.w == 1.0 and 0 < box.color.a < 1
    assert (text.type, text.ns, text.id, text.text) == (Marker.TEXT_VIEW_FACING, 'ids', 7, '7 mug')
    assert text.pose.position.y < box.pose.position.y - box.scale.y / 2     # above the box (y down)

"""Procedural scenes: determinism, ground-truth consistency, depth/3D, prompts, bag round trip, CLI."""
import re
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from seem_ros.scenes import (PALETTE, SCENARIO_SECONDS, SHAPES, Trajectory, build_scene, depth_to_mm,
                             render_frame, scripted_prompts)
from seem_ros.scenes import bag as scene_bag
from seem_ros.cli.generate import main as generate_main

SMALL = dict(width=160, height=120)


def _frames(scene):
    return [render_frame(scene, k) for k in range(scene.n_frames)]


def _visibility(frames, object_id):
    return np.array([f.objects[object_id - 1].visibility for f in frames])


def test_trajectory_passes_through_its_keys_and_holds_outside():
    keys = np.array([[0.1, 0.2, 1.0, 0.0], [0.5, 0.6, 1.5, 1.0], [0.9, 0.1, 0.8, -1.0]])
    traj = Trajectory(np.array([0.0, 1.0, 3.0]), keys)
    for t, k in zip(traj.times, keys):
        np.testing.assert_allclose(traj.at(t), k, atol=1e-12)
    np.testing.assert_array_equal(traj.at(-1.0), keys[0])
    np.testing.assert_array_equal(traj.at(9.0), keys[-1])


@pytest.mark.parametrize('scenario', list(SCENARIO_SECONDS))
def test_same_seed_same_frames_other_seed_other_frames(scenario):
    a, b = (_frames(build_scene(scenario, 3, frames=6, **SMALL)) for _ in range(2))
    c = _frames(build_scene(scenario, 4, frames=6, **SMALL))
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.rgb, fb.rgb)
        np.testing.assert_array_equal(fa.depth, fb.depth)
        np.testing.assert_array_equal(fa.ids, fb.ids)
        for oa, ob in zip(fa.objects, fb.objects):
            assert (oa.visible_px, oa.area_px, oa.depth_m) == (ob.visible_px, ob.area_px, ob.depth_m)
    assert not np.array_equal(a[0].rgb, c[0].rgb)


def test_scenarios_differ_for_one_seed():
    assert not np.array_equal(render_frame(build_scene('occlusion', 0, frames=2, **SMALL), 0).rgb,
                              render_frame(build_scene('exit_reentry', 0, frames=2, **SMALL), 0).rgb)


@pytest.mark.parametrize('scenario', list(SCENARIO_SECONDS))
def test_objects_have_unique_sentences_and_valid_looks(scenario):
    scene = build_scene(scenario, 1, **SMALL)
    assert 3 <= len(scene.objects) <= 6
    assert [o.id for o in scene.objects] == list(range(1, len(scene.objects) + 1))
    sentences = [o.sentence for o in scene.objects]
    assert len(set(sentences)) == len(sentences)
    for o in scene.objects:
        assert o.shape in SHAPES and o.colour in PALETTE
        assert o.sentence.startswith('the ') and o.sentence.endswith(f'{o.colour} {o.shape}')


@pytest.mark.parametrize('scenario', list(SCENARIO_SECONDS))
def test_id_map_matches_object_ground_truth(scenario):
    scene = build_scene(scenario, 2, frames=20, **SMALL)
    ids_in_scene = {0} | {o.id for o in scene.objects}
    for f in _frames(scene):
        assert f.rgb.shape == (120, 160, 3) and f.rgb.dtype == np.uint8
        assert f.ids.shape == (120, 160) and f.ids.dtype == np.uint16
        assert set(np.unique(f.ids)) <= ids_in_scene
        for o in f.objects:
            mask = f.mask(o.id)
            assert o.visible_px == mask.sum()
            assert 0.0 <= o.visibility <= 1.0 and o.area_px > 0
            if o.visible_px:
                rows, cols = np.nonzero(mask)
                assert o.bbox.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            else:
                assert o.bbox is None and o.centroid is None


def test_occluded_object_disappears_behind_nearer_one_and_comes_back():
    scene = build_scene('occlusion', 0, **SMALL)
    frames = _frames(scene)
    vis = _visibility(frames, 2)
    hidden = np.flatnonzero(vis == 0)
    assert len(hidden) >= 5, vis
    assert vis[:hidden[0]].max() > 0.95 and vis[hidden[-1] + 1:].max() > 0.95
    h, w = frames[0].ids.shape
    for k in hidden:   # hidden inside the frame, behind object 1, which is nearer
        occluded, occluder = frames[k].objects[1], frames[k].objects[0]
        assert 0 <= occluded.center_px[0] < w and 0 <= occluded.center_px[1] < h
        assert occluder.depth_m < occluded.depth_m
        x0, y0, x1, y1 = occluder.bbox
        assert x0 <= occluded.center_px[0] < x1 and y0 <= occluded.center_px[1] < y1
    partial = frames[hidden[0] - 2].objects[1]
    assert 0 < partial.visibility < 1   # partly hidden while passing behind


def test_object_leaves_the_frame_and_comes_back():
    scene = build_scene('exit_reentry', 0, **SMALL)
    frames = _frames(scene)
    for object_id in (2, 3):
        vis = _visibility(frames, object_id)
        absent = np.flatnonzero(vis == 0)
        assert len(absent) >= 10, vis
        assert vis[:absent[0]].max() == 1.0 and vis[absent[-1] + 1:].max() == 1.0
        for k in absent:   # outside the image, not occluded
            u, v = frames[k].objects[object_id - 1].center_px
            assert not (0 <= u < 160 and 0 <= v < 120)


def test_demo_has_an_occlusion_and_an_exit():
    scene = build_scene('demo', 0, **SMALL)
    frames = _frames(scene)
    assert scene.n_frames == 150 and 3 <= len(scene.objects) <= 5
    assert (_visibility(frames, 2) == 0).sum() >= 5     # behind object 1
    assert (_visibility(frames, 3) == 0).sum() >= 15    # out of the frame
    radius = [f.objects[3].radius_px for f in frames]
    assert radius[-1] > 2 * radius[0]                   # object 4 approaches the camera


def test_depth_is_consistent_with_layout_and_centroids():
    scene = build_scene('random', 5, frames=10, **SMALL)
    cam = scene.camera
    rows, cols = np.mgrid[0:cam.height, 0:cam.width]
    for f in _frames(scene):
        assert f.depth.dtype == np.float32
        assert f.depth[f.ids == 0].min() > max(o.depth_m for o in f.objects)   # background plane is behind
        mm = depth_to_mm(f.depth)
        assert mm.dtype == np.uint16 and np.abs(mm / 1000.0 - f.depth).max() <= 0.0005 + 1e-6
        for o in f.objects:
            mask = f.mask(o.id)
            if not o.visible_px:
                continue
            np.testing.assert_array_equal(f.depth[mask], np.float32(o.depth_m))
            for depth, tolerance in ((f.depth.astype(np.float64), 1e-5), (mm / 1000.0, 0.01)):
                z = depth[mask]
                xyz = np.array([((cols[mask] - cam.cx) * z / cam.fx).mean(),
                                ((rows[mask] - cam.cy) * z / cam.fy).mean(), z.mean()])
                assert np.linalg.norm(xyz - o.centroid) < tolerance
            np.testing.assert_allclose(o.centroid[2], o.depth_m)


def test_scripted_prompts_point_at_their_objects():
    scene = build_scene('demo', 0, **SMALL)
    prompts = scripted_prompts(scene)
    assert [p.kind for p in sorted(prompts, key=lambda p: ('text', 'click', 'box', 'reference').index(p.kind))] == [
        'text', 'click', 'box', 'reference']
    assert len({p.object_id for p in prompts}) == 4
    for p in prompts:
        f = render_frame(scene, p.frame)
        obj = scene.object(p.object_id)
        assert f.objects[p.object_id - 1].visibility >= 0.6
        if p.kind == 'text':
            assert p.prompt.text == obj.sentence
        elif p.kind == 'click':
            x, y = p.prompt.points[0]
            assert p.prompt.point_labels.tolist() == [True]
            assert f.mask(p.object_id)[int(y), int(x)]
        elif p.kind == 'box':
            np.testing.assert_array_equal(p.prompt.boxes[0], f.objects[p.object_id - 1].bbox)
        else:
            ref = p.prompt.reference
            assert p.source['seed'] != scene.seed
            assert ref.image.shape[:2] == ref.mask.shape and ref.image.dtype == np.uint8
            assert ref.mask.mean() > 0.1
            source = build_scene(p.source['scenario'], p.source['seed'], fps=scene.fps, frames=p.source['frames'],
                                 include=p.source['include'], **SMALL)
            assert (source.object(1).shape, source.object(1).colour) == (obj.shape, obj.colour)
            x0, y0, x1, y1 = p.source['box']
            src = render_frame(source, p.source['frame'])
            np.testing.assert_array_equal(ref.image, src.rgb[y0:y1, x0:x1])
            np.testing.assert_array_equal(ref.mask, src.mask(1)[y0:y1, x0:x1])


def test_typestore_registers_every_package_message():
    ts = scene_bag.typestore()
    msgs = sorted((Path(scene_bag.__file__).resolve().parents[2] / 'msg').glob('*.msg'))
    assert msgs
    for f in msgs:
        assert f'seem_ros/msg/{f.stem}' in ts.types


def _image(msg, dtype, channels):
    assert msg.step == msg.width * channels * np.dtype(dtype).itemsize
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)
    return rows.view(dtype).reshape(msg.height, msg.width, channels).squeeze(-1 if channels == 1 else None)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_bag_round_trip(tmp_path, storage):
    scene = build_scene('demo', 0, frames=8, **SMALL)
    path = tmp_path / 'bag'
    meta = scene_bag.write_bag(scene, path, storage=storage)
    frames = _frames(scene)
    ts = scene_bag.typestore()
    topics = scene_bag.TOPICS
    got = {}
    with Reader(path) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {topics['image']: 8, topics['camera_info']: 8, topics['depth']: 8, topics['depth_info']: 8,
                          topics['prompt']: 4}
        for conn, t, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            assert t == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert msg.header.frame_id == scene_bag.FRAME_ID
            got.setdefault(conn.topic, []).append((t, msg))
    for topic in (topics['image'], topics['camera_info'], topics['depth'], topics['depth_info']):
        stamps = [t for t, _ in got[topic]]
        assert stamps == sorted(stamps) and len(set(stamps)) == 8
        assert stamps == [scene_bag.stamp_ns(k, 15.0) for k in range(8)]
    for (_, img), (_, depth), (_, info), f in zip(got[topics['image']], got[topics['depth']],
                                                  got[topics['camera_info']], frames):
        assert img.encoding == 'rgb8' and depth.encoding == '16UC1' and img.is_bigendian == 0
        np.testing.assert_array_equal(_image(img, np.uint8, 3), f.rgb)
        np.testing.assert_array_equal(_image(depth, np.uint16, 1), depth_to_mm(f.depth))
        assert info.distortion_model == 'plumb_bob' and (info.width, info.height) == (160, 120)
        np.testing.assert_allclose(info.k.reshape(3, 3), scene.camera.K)
        np.testing.assert_allclose(info.p.reshape(3, 4)[:, :3], scene.camera.K)
    gt = scene_bag.read_ground_truth(path)
    assert gt.meta == meta
    np.testing.assert_array_equal(gt.ids, np.stack([f.ids for f in frames]))
    prompts = {m.object_name: (t, m) for t, m in got[topics['prompt']]}
    for p in gt.prompts:
        t, msg = prompts[p['object_name']]
        assert t == p['stamp_ns'] == scene_bag.stamp_ns(p['frame'], 15.0) and msg.object_id == 0
        if p['kind'] == 'text':
            assert msg.text == p['text'] == scene.object(p['object_id']).sentence
        elif p['kind'] == 'click':
            assert [msg.points[0].x, msg.points[0].y] == p['point'] and msg.point_labels.tolist() == [True]
        elif p['kind'] == 'box':
            b = msg.boxes[0]
            assert [b.x_min, b.y_min, b.x_max, b.y_max] == p['box']
        else:
            ref = gt.references[p['index']]
            np.testing.assert_array_equal(_image(msg.reference_image, np.uint8, 3), ref.image)
            np.testing.assert_array_equal(_image(msg.reference_mask, np.uint8, 1), ref.mask * np.uint8(255))


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_same_seed_gives_identical_bag_files(tmp_path, storage):
    contents = []
    for run in ('a', 'b'):
        (tmp_path / run).mkdir()
        scene_bag.write_bag(build_scene('occlusion', 9, frames=4, **SMALL), tmp_path / run / 'bag', storage=storage)
        contents.append({p.relative_to(tmp_path / run): p.read_bytes()
                         for p in sorted((tmp_path / run).rglob('*')) if p.is_file()})
    assert contents[0] == contents[1]
    assert len(contents[0]) == 4   # metadata.yaml, the storage file, .gt.npz, .gt.json


def test_write_bag_refuses_an_existing_path(tmp_path):
    with pytest.raises(FileExistsError):
        scene_bag.write_bag(build_scene('demo', 0, frames=2, **SMALL), tmp_path)


def test_generate_cli(tmp_path, capsys):
    out = tmp_path / 'gen'
    argv = ['--out', str(out), '--scenario', 'exit_reentry', '--seed', '3', '--frames', '5', '--width', '160',
            '--height', '120', '--storage', 'sqlite3']
    assert generate_main(argv) == 0
    captured = capsys.readouterr()
    assert 'object 1: the ' in captured.out
    assert 'generate' not in captured.err      # no bar when stderr is not a terminal
    gt = scene_bag.read_ground_truth(out)
    assert (gt.meta['scenario'], gt.meta['seed'], gt.meta['storage'], gt.ids.shape) == (
        'exit_reentry', 3, 'sqlite3', (5, 120, 160))
    with pytest.raises(SystemExit) as exc:
        generate_main(argv)
    assert exc.value.code == 2 and 'exists' in capsys.readouterr().err
    assert generate_main(argv + ['--overwrite', '--frames', '3', '--progress']) == 0
    assert re.search(r'generate: 100%\|.*\| 3/3 ', capsys.readouterr().err)   # --progress forces it
    assert scene_bag.read_ground_truth(out).ids.shape == (3, 120, 160)
    with pytest.raises(SystemExit):
        generate_main(['--out', str(tmp_path / 'x'), '--scenario', 'nope'])

"""The node's and replay's shared core without DDS: :class:`seem_ros.session.Session` with the
shipped model on camera-sized (640x480) generated frames: loading errors, prompt rules, depth
pairing by stamp, the 3D of the shown objects and the reasons the 3D fields stay unset."""
import math
from pathlib import Path

import numpy as np
import pytest

from seem_ros.prompts import ObjectPrompt, PromptError
from seem_ros.ros.params import SeemParams
from seem_ros.scenes import build_scene, depth_to_mm, render_frame
from seem_ros.session import LoadError, load_session, load_sessions

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / 'models' / 'seem_tiny.pt'
W, H = 640, 480
MS = 1_000_000

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason='the shipped model is missing')


def params(**values):
    return SeemParams.from_values({'model.checkpoint': str(MODEL), 'depth.enabled': True, **values})


@pytest.fixture(scope='module')
def scene():
    return build_scene('demo', 0, width=W, height=H, frames=4)


@pytest.fixture
def session():
    return load_session(params())


def click_on(frame, object_id):
    """A positive click on the centre of ground-truth object ``object_id``."""
    x, y = frame.objects[object_id - 1].center_px
    return ObjectPrompt(points=np.array([[x, y]], np.float32), point_labels=np.array([True]))


def test_loading_errors_name_the_file_and_the_cause(tmp_path):
    with pytest.raises(LoadError, match="model.checkpoint: no such file '/nope.pt'"):
        load_session(params(**{'model.checkpoint': '/nope.pt'}))
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'not a checkpoint')
    with pytest.raises(LoadError, match=f"cannot load checkpoint '{broken}' as tiny"):
        load_session(params(**{'model.checkpoint': str(broken), 'model.variant': 'tiny'}))


def test_prompt_rules(session, scene):
    with pytest.raises(PromptError, match='the prompt is empty'):
        session.add_prompt(ObjectPrompt())
    with pytest.raises(PromptError, match='no object with id 7'):
        session.add_prompt(ObjectPrompt(text='a cup'), object_id=7)
    frame = render_frame(scene, 0)
    session.frame(frame.rgb, 10 * MS, 'camera')
    object_id, warnings = session.add_prompt(click_on(frame, 1), stamp_ns=10 * MS)
    assert object_id > 0 and warnings == []
    assert session.add_prompt(ObjectPrompt(text='a cup'), object_id=object_id)[0] == object_id


def test_depth_is_paired_by_stamp_and_places_the_shown_objects(session, scene):
    frame = render_frame(scene, 0)
    first = session.frame(frame.rgb, 100 * MS, 'camera')
    object_id, _ = session.add_prompt(click_on(frame, 1))
    out = session.process(first)
    assert out.geometries is None and out.problem == (
        '3D fields unset: no depth image within 50 ms of the image and no depth/camera_info received '
        '(2D outputs are published)') and not out.problem_is_error
    session.depth_info(scene.camera.K.ravel(), W, H)
    session.depth(depth_to_mm(frame.depth), '16UC1', 160 * MS)            # 60 ms off: too far
    assert session.process(session.frame(frame.rgb, 100 * MS, 'camera')).problem.startswith(
        '3D fields unset: no depth image within 50 ms')
    session.depth(depth_to_mm(frame.depth), '16UC1', 130 * MS)            # 30 ms off: paired
    out = session.process(session.frame(frame.rgb, 100 * MS, 'camera'))
    assert out.problem == '' and [o.id for o, _ in out.placed] == [object_id]
    (obj, geometry), = out.placed
    assert geometry.valid and math.dist(geometry.centroid, frame.objects[0].centroid) < 0.05
    assert dict(session.counts) == {'depth_paired': 1, 'depth_missing': 2, 'camera_info_missing': 1}


def test_bad_depth_is_refused_and_a_mismatched_one_explained(session, scene):
    frame = render_frame(scene, 0)
    session.add_prompt(click_on(frame, 1))
    with pytest.raises(ValueError, match="unsupported depth encoding 'rgb8'"):
        session.depth(np.zeros((H, W), np.uint16), 'rgb8', 0)
    with pytest.raises(ValueError, match='focal lengths'):
        session.depth_info((0.0,) * 9, W, H)
    session.depth_info(scene.camera.K.ravel(), W, H)
    session.depth(np.full((64, 64), 1000, np.uint16), '16UC1', 5 * MS)
    out = session.process(session.frame(frame.rgb, 5 * MS, 'camera'))
    assert out.geometries is None and out.problem_is_error and 'differ in aspect ratio' in out.problem


def test_cameras_share_one_model_and_each_matches_a_camera_of_its_own():
    """Two cameras over one loaded model (load_sessions): ids unique across them, and each
    camera's masks equal to those of a session that has the model to itself, on the same frames
    and prompts, interleaved frame by frame as the node's worker serves them."""
    left_scene, right_scene = (build_scene('demo', 0, width=W, height=H, frames=4),
                               build_scene('occlusion', 3, width=W, height=H, frames=4))
    left, right = load_sessions(params(**{'depth.enabled': False}), 2)
    assert left.pipeline.predictor is right.pipeline.predictor
    alone = {'left': load_session(params(**{'depth.enabled': False})),
             'right': load_session(params(**{'depth.enabled': False}))}
    shared = {'left': left, 'right': right}
    masks = {key: [] for key in ('shared left', 'shared right', 'alone left', 'alone right')}
    ids = {}
    for index in range(4):
        for camera, scene_ in (('left', left_scene), ('right', right_scene)):
            frame = render_frame(scene_, index)
            for kind, session in (('shared', shared[camera]), ('alone', alone[camera])):
                processed = session.frame(frame.rgb, (index + 1) * 100 * MS, camera)
                if index == 0:
                    object_id, _ = session.add_prompt(click_on(frame, 2), stamp_ns=(index + 1) * 100 * MS)
                    ids[kind, camera] = object_id
                (obj,) = session.process(processed).result.objects
                masks[f'{kind} {camera}'].append((obj.state, obj.mask))
    assert ids['shared', 'left'] != ids['shared', 'right']           # one id pool across cameras
    for camera in ('left', 'right'):
        for (state, mask), (alone_state, alone_mask) in zip(masks[f'shared {camera}'], masks[f'alone {camera}']):
            assert state == alone_state and np.array_equal(mask, alone_mask)
        assert sum(mask.any() for _, mask in masks[f'shared {camera}']) >= 2      # found, not only LOST

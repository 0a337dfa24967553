"""Write a :class:`~seem_ros.scenes.render.Scene` as a rosbag2 (MCAP or sqlite3) with ground truth.

Topics (all stamped with the frame's stamp, :func:`stamp_ns`; header frame_id
:data:`FRAME_ID`; log time = header stamp):

=============================  =========================  ==========================================
``/camera/image_raw``          sensor_msgs/msg/Image       rgb8, step = width * 3 (blur and noise)
``/camera/camera_info``        sensor_msgs/msg/CameraInfo  plumb_bob, D = 0, K, R = I, P = [K | 0]
``/camera/depth/image_raw``    sensor_msgs/msg/Image       16UC1 millimetres, aligned to the colour image
``/camera/depth/camera_info``  sensor_msgs/msg/CameraInfo  identical to the colour camera's
``/seem/prompt``               seem_ros/msg/Prompt         scripted prompts, stamped with the frame
                                                           they refer to, written after that frame
=============================  =========================  ==========================================

Prompt messages: ``object_id`` 0 (a new object), ``object_name`` ``"<kind>_<gt id>"`` (e.g.
``click_3``), and one of: ``text`` (the object's sentence); one positive click in ``points``
(z = 0) with ``point_labels = [true]``; one box in ``boxes``; ``reference_image`` (rgb8) with
``reference_mask`` (mono8, 255 = object) cut from another scene. Pixel coordinates follow
``msg/BoundingBox2D.msg`` (origin at the top-left image corner).

Ground truth sits next to the bag directory ``BAG``:

``BAG.gt.npz`` (numpy, compressed):
    ``ids`` (N, H, W) uint16 instance id map per frame (0 = background, else the object id;
    occlusion respected); ``stamps_ns`` (N,) int64; for prompt ``i`` of kind 'reference',
    ``reference_image_<i>`` (h, w, 3) uint8 RGB and ``reference_mask_<i>`` (h, w) bool.

``BAG.gt.json``:
    ``format`` ("seem_ros.scenes/1"), ``scenario``, ``seed``, ``storage``, ``fps``, ``n_frames``,
    ``width``, ``height``, ``topics``, ``camera`` {``frame_id``, ``fx``, ``fy``, ``cx``, ``cy``}
    (pixel centres at integer (u, v) = (col, row)), ``background`` {``kind``,
    ``plane_distance_m``, ``plane_tilt``} (depth ``d / (1 + tilt * (v - cy) / fy)``), ``render``
    {``noise_sigma``, ``defocus_sigma``, ``exposure``}, ``objects`` [{``id``, ``class``,
    ``colour``, ``sentence``, ``radius_m``, ``aspect``}], ``frames`` [{``index``, ``stamp_ns``,
    ``objects`` [{``id``, ``visible_px``, ``area_px``, ``visibility``, ``bbox`` (XYXY exclusive
    px or null), ``centroid_m`` ([x, y, z] optical frame of the visible pixels, or null),
    ``depth_m``, ``center_px``, ``angle_rad``, ``radius_px``}]}] (every object in every frame),
    ``prompts`` [{``index``, ``frame``, ``stamp_ns``, ``kind``, ``object_id``, ``object_name``,
    and ``text`` | ``point`` [x, y] | ``box`` [x0, y0, x1, y1] | ``reference`` {``scenario``,
    ``seed``, ``include``, ``frames``, ``frame``, ``object_id``, ``box``, ``image_key``,
    ``mask_key``}}] (reference: the patch is ``box`` of ``frame`` of the scene
    ``build_scene(scenario, seed, include=include, frames=frames)`` at this size and rate).

Everything is a function of the scene: the same scenario, seed and options give the same
messages and ground truth.
"""
from __future__ import annotations

import json
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from seem_ros.prompts import ReferencePatch

from .render import Camera, RenderedFrame, Scene, ScriptedPrompt, depth_to_mm, render_frame, scripted_prompts

TOPICS = {
    'image': '/camera/image_raw',
    'camera_info': '/camera/camera_info',
    'depth': '/camera/depth/image_raw',
    'depth_info': '/camera/depth/camera_info',
    'prompt': '/seem/prompt',
}
FRAME_ID = 'camera_color_optical_frame'
START_NS = 1_700_000_000 * 10**9
"""Stamp of frame 0 (fixed, so bags do not depend on the wall clock)."""
STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
GT_FORMAT = 'seem_ros.scenes/1'
PROMPT_TYPE = 'seem_ros/msg/Prompt'


def msg_dirs() -> List[Path]:
    """Candidate directories holding this package's ``*.msg`` files, most specific first: the
    source tree (``<repo>/msg``), then ``<prefix>/share/seem_ros/msg`` for every prefix in
    ``AMENT_PREFIX_PATH`` and for ``sys.prefix`` (the venv install)."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p] + [sys.prefix]
    return [Path(__file__).resolve().parents[2] / 'msg'] + [Path(p) / 'share' / 'seem_ros' / 'msg' for p in prefixes]


def typestore() -> Typestore:
    """A ROS 2 Jazzy typestore with every ``seem_ros/msg/*`` type registered.

    The definitions come from the first directory of :func:`msg_dirs` that has ``*.msg`` files;
    without any, only the standard types are available.
    """
    store = get_typestore(Stores.ROS2_JAZZY)
    for d in msg_dirs():
        files = sorted(d.glob('*.msg'))
        if files:
            types: dict = {}
            for f in files:
                types.update(get_types_from_msg(f.read_text(), f'seem_ros/msg/{f.stem}'))
            store.register(types)
            break
    return store


def stamp_ns(index: int, fps: float) -> int:
    """Stamp in nanoseconds of frame ``index`` at ``fps``."""
    return START_NS + int(round(index * 1e9 / fps))


def sidecar_paths(bag: Path) -> Tuple[Path, Path]:
    """(``BAG.gt.npz``, ``BAG.gt.json``) next to the bag directory."""
    bag = Path(bag)
    return bag.with_name(bag.name + '.gt.npz'), bag.with_name(bag.name + '.gt.json')


# --------------------------------------------------------------------------- messages

def _header(ts: Typestore, stamp: int):
    time = ts.types['builtin_interfaces/msg/Time'](sec=stamp // 10**9, nanosec=stamp % 10**9)
    return ts.types['std_msgs/msg/Header'](stamp=time, frame_id=FRAME_ID)


def image_msg(ts: Typestore, array: np.ndarray, encoding: str, stamp: int):
    """sensor_msgs/Image from a C-contiguous (H, W[, C]) array (little-endian), step = W * C * itemsize."""
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    return ts.types['sensor_msgs/msg/Image'](
        header=_header(ts, stamp), height=h, width=w, encoding=encoding, is_bigendian=0,
        step=array.strides[0], data=array.reshape(-1).view(np.uint8))


def _empty_image(ts: Typestore):
    return ts.types['sensor_msgs/msg/Image'](
        header=_header(ts, 0), height=0, width=0, encoding='', is_bigendian=0, step=0, data=np.zeros(0, np.uint8))


def camera_info_msg(ts: Typestore, cam: Camera, stamp: int):
    """sensor_msgs/CameraInfo of ``cam``: plumb_bob with zero distortion, P = [K | 0]."""
    k = cam.K
    roi = ts.types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types['sensor_msgs/msg/CameraInfo'](
        header=_header(ts, stamp), height=cam.height, width=cam.width, distortion_model='plumb_bob',
        d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=np.hstack([k, np.zeros((3, 1))]).reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


def prompt_msg(ts: Typestore, p: ScriptedPrompt, stamp: int):
    """seem_ros/msg/Prompt for a scripted prompt (see the module docstring)."""
    types = ts.types
    box = types['seem_ros/msg/BoundingBox2D']
    q = p.prompt
    ref = q.reference
    return types[PROMPT_TYPE](
        header=_header(ts, stamp), object_id=0, object_name=f'{p.kind}_{p.object_id}', mode=0, text=q.text,
        points=[types['geometry_msgs/msg/Point'](x=float(x), y=float(y), z=0.0) for x, y in q.points],
        point_labels=np.asarray(q.point_labels, bool),
        boxes=[box(x_min=float(b[0]), y_min=float(b[1]), x_max=float(b[2]), y_max=float(b[3])) for b in q.boxes],
        scribbles=[], mask=_empty_image(ts), negative_mask=_empty_image(ts),
        reference_image=_empty_image(ts) if ref is None else image_msg(ts, ref.image, 'rgb8', stamp),
        reference_mask=(_empty_image(ts) if ref is None
                        else image_msg(ts, ref.mask.astype(np.uint8) * 255, 'mono8', stamp)),
        reference_box=box(x_min=0.0, y_min=0.0, x_max=0.0, y_max=0.0))


# --------------------------------------------------------------------------- ground truth

def _list(a: Optional[np.ndarray]) -> Optional[list]:
    return None if a is None else [float(x) for x in a]


def _frame_json(frame: RenderedFrame, stamp: int) -> dict:
    return {'index': frame.index, 'stamp_ns': stamp, 'objects': [
        {'id': o.id, 'visible_px': o.visible_px, 'area_px': o.area_px, 'visibility': round(o.visibility, 6),
         'bbox': None if o.bbox is None else [int(v) for v in o.bbox], 'centroid_m': _list(o.centroid),
         'depth_m': o.depth_m, 'center_px': _list(o.center_px), 'angle_rad': o.angle_rad, 'radius_px': o.radius_px}
        for o in frame.objects]}


def _prompt_json(i: int, p: ScriptedPrompt, fps: float) -> dict:
    out = {'index': i, 'frame': p.frame, 'stamp_ns': stamp_ns(p.frame, fps), 'kind': p.kind,
           'object_id': p.object_id, 'object_name': f'{p.kind}_{p.object_id}'}
    if p.kind == 'text':
        out['text'] = p.prompt.text
    elif p.kind == 'click':
        out['point'] = _list(p.prompt.points[0])
    elif p.kind == 'box':
        out['box'] = _list(p.prompt.boxes[0])
    else:
        out['reference'] = dict(p.source or {}, image_key=f'reference_image_{i}', mask_key=f'reference_mask_{i}')
    return out


def _scene_json(scene: Scene, storage: str) -> dict:
    cam = scene.camera
    return {
        'format': GT_FORMAT, 'scenario': scene.scenario, 'seed': scene.seed, 'storage': storage, 'fps': scene.fps,
        'n_frames': scene.n_frames, 'width': cam.width, 'height': cam.height, 'topics': dict(TOPICS),
        'camera': {'frame_id': FRAME_ID, 'fx': cam.fx, 'fy': cam.fy, 'cx': cam.cx, 'cy': cam.cy},
        'background': {'kind': scene.background_kind, 'plane_distance_m': scene.plane[0],
                       'plane_tilt': scene.plane[1]},
        'render': {'noise_sigma': scene.noise_sigma, 'defocus_sigma': scene.defocus_sigma,
                   'exposure': scene.exposure},
        'objects': [{'id': o.id, 'class': o.shape, 'colour': o.colour, 'sentence': o.sentence,
                     'radius_m': o.radius_m, 'aspect': o.aspect} for o in scene.objects],
    }


class _NpzStream:
    """An ``.npz`` written entry by entry; one array can be appended to frame by frame.

    Entries have a fixed timestamp so the file depends on the content only.
    """

    def __init__(self, path: Path):
        self._zip = zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED, allowZip64=True)

    def _open(self, name: str):
        info = zipfile.ZipInfo(name + '.npy', date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        return self._zip.open(info, 'w', force_zip64=True)

    def begin(self, name: str, shape: Tuple[int, ...], dtype: np.dtype):
        """Open entry ``name`` for an array of ``shape``; write its rows to the returned file in C order."""
        f = self._open(name)
        np.lib.format.write_array_header_2_0(
            f, {'descr': np.lib.format.dtype_to_descr(np.dtype(dtype)), 'fortran_order': False, 'shape': shape})
        return f

    def add(self, name: str, array: np.ndarray) -> None:
        with self._open(name) as f:
            np.lib.format.write_array(f, np.ascontiguousarray(array))

    def close(self) -> None:
        self._zip.close()


def write_bag(scene: Scene, path, *, storage: str = 'mcap', progress=None) -> dict:
    """Render every frame of ``scene`` into the rosbag2 directory ``path`` plus its sidecars.

    Args:
        scene: what to render.
        path: bag directory to create (must not exist).
        storage: 'mcap' or 'sqlite3'.
        progress: optional object with ``update(n)`` (e.g. a ``tqdm`` bar),
            called once per frame.
    Returns:
        The JSON ground truth that was written (module docstring).
    Raises:
        ValueError: an unknown storage.
        FileExistsError: ``path`` exists.
        RuntimeError: no ``seem_ros/msg/Prompt`` definition is found (:func:`msg_dirs`).
    """
    if storage not in STORAGES:
        raise ValueError(f'unknown storage {storage!r}; expected one of {tuple(STORAGES)}')
    path = Path(path)
    if path.exists():
        raise FileExistsError(f'{path} exists')
    ts = typestore()
    if PROMPT_TYPE not in ts.types:
        raise RuntimeError(f'no {PROMPT_TYPE} definition in any of {[str(d) for d in msg_dirs()]}')
    prompts = scripted_prompts(scene)
    by_frame: Dict[int, List[ScriptedPrompt]] = {}
    for p in prompts:
        by_frame.setdefault(p.frame, []).append(p)
    meta = _scene_json(scene, storage)
    cam = scene.camera
    npz_path, json_path = sidecar_paths(path)
    npz = _NpzStream(npz_path)
    frames_json = []
    try:
        ids_file = npz.begin('ids', (scene.n_frames, cam.height, cam.width), np.dtype(np.uint16))
        with Writer(path, version=9, storage_plugin=STORAGES[storage]) as writer:
            conns = {key: writer.add_connection(TOPICS[key], msgtype, typestore=ts) for key, msgtype in (
                ('image', 'sensor_msgs/msg/Image'), ('camera_info', 'sensor_msgs/msg/CameraInfo'),
                ('depth', 'sensor_msgs/msg/Image'), ('depth_info', 'sensor_msgs/msg/CameraInfo'),
                ('prompt', PROMPT_TYPE))}

            def write(key: str, msg, stamp: int) -> None:
                writer.write(conns[key], stamp, ts.serialize_cdr(msg, conns[key].msgtype))

            for k in range(scene.n_frames):
                frame = render_frame(scene, k)
                stamp = stamp_ns(k, scene.fps)
                info = camera_info_msg(ts, cam, stamp)
                write('image', image_msg(ts, frame.rgb, 'rgb8', stamp), stamp)
                write('camera_info', info, stamp)
                write('depth', image_msg(ts, depth_to_mm(frame.depth), '16UC1', stamp), stamp)
                write('depth_info', info, stamp)
                for p in by_frame.get(k, ()):
                    write('prompt', prompt_msg(ts, p, stamp), stamp)
                ids_file.write(frame.ids.tobytes())
                frames_json.append(_frame_json(frame, stamp))
                if progress is not None:
                    progress.update(1)
        ids_file.close()
        npz.add('stamps_ns', np.array([stamp_ns(k, scene.fps) for k in range(scene.n_frames)], np.int64))
        for i, p in enumerate(prompts):
            reference = p.prompt.reference
            if p.kind == 'reference' and reference is not None:
                npz.add(f'reference_image_{i}', reference.image)
                npz.add(f'reference_mask_{i}', reference.mask)
    finally:
        npz.close()
    meta['frames'] = frames_json
    meta['prompts'] = [_prompt_json(i, p, scene.fps) for i, p in enumerate(prompts)]
    json_path.write_text(json.dumps(meta, indent=1))
    return meta


@dataclass(frozen=True)
class GroundTruth:
    """A bag's sidecars: ``meta`` the JSON (module docstring), ``ids`` (N, H, W) uint16 id maps and
    ``references`` prompt index -> referring patch."""

    meta: dict
    ids: np.ndarray
    references: Dict[int, ReferencePatch]

    @property
    def prompts(self) -> Sequence[dict]:
        return self.meta['prompts']


def read_ground_truth(bag) -> GroundTruth:
    """Load the sidecars of the bag directory ``bag``.

    Raises:
        FileNotFoundError: a sidecar is missing.
        ValueError: the JSON has another format.
    """
    npz_path, json_path = sidecar_paths(Path(bag))
    meta = json.loads(json_path.read_text())
    if meta.get('format') != GT_FORMAT:
        raise ValueError(f'{json_path}: format {meta.get("format")!r}, expected {GT_FORMAT!r}')
    with np.load(npz_path) as z:
        ids = z['ids']
        refs = {p['index']: ReferencePatch(image=z[p['reference']['image_key']], mask=z[p['reference']['mask_key']])
                for p in meta['prompts'] if p['kind'] == 'reference'}
    return GroundTruth(meta, ids, refs)

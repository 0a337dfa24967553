"""ROS messages <-> numpy and pipeline types: prompts, tracked-object arrays, and (from
:mod:`.images`) images with row ``step`` and byte order, and stamps. Every rejected input raises a
``ValueError`` subclass naming the problem."""
from __future__ import annotations

import array
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from geometry_msgs.msg import Point, Point32
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ..geometry.depth3d import ObjectGeometry
from ..geometry.ros_outputs import box_markers, point_cloud, position_fields
from ..mask_codec import CompactMask
from ..msg import BoundingBox2D, Polyline, Prompt, TrackedObject, TrackedObjectArray
from ..pipeline import FrameResult
from ..prompts import (InputLimits, ObjectPrompt, PromptError, ReferencePatch, box_mask, check_boxes,
                       check_coordinates, check_prompt)
from ..session import SessionOutput
from .guard import clip_text
# The image and stamp conversions live in .images (torch-free, for seem_ui); re-exported here for
# the node and replay, which convert everything through this module.
from .images import COLOR_ENCODINGS as COLOR_ENCODINGS
from .images import ENCODINGS as ENCODINGS
from .images import ImageError as ImageError
from .images import compressed_to_rgb as compressed_to_rgb
from .images import image_to_numpy as image_to_numpy
from .images import image_to_rgb as image_to_rgb
from .images import ns_to_stamp as ns_to_stamp
from .images import numpy_to_image as numpy_to_image
from .images import stamp_to_ns as stamp_to_ns

MAX_TEXT_TOKENS = 77  # CLIP context, start and end tokens included


def _mask_from_image(msg: Image, what: str, limits: InputLimits) -> np.ndarray:
    if msg.encoding not in ('mono8', '8UC1'):
        raise PromptError(f"{what} must be mono8, got '{clip_text(msg.encoding, 40)}'")
    try:
        return image_to_numpy(msg, limits) != 0
    except ImageError as exc:
        raise PromptError(f'{what}: {exc}') from exc


def _box_array(boxes) -> np.ndarray:
    return np.array([[b.x_min, b.y_min, b.x_max, b.y_max] for b in boxes], np.float64).reshape(-1, 4)


def _reference_box_mask(box, size) -> np.ndarray:
    """(h, w) bool mask of ``reference_box`` on its image (all True for the all-zero "no box")."""
    corners = (box.x_min, box.y_min, box.x_max, box.y_max)
    return np.ones(size, bool) if not any(corners) else box_mask(corners, size, 'reference_box')


def count_tokens(text: str) -> int:
    """CLIP token count of ``text``, start and end tokens included."""
    from ..model.tokenizer import count_tokens as count
    return count([text])[0]


def _check_length(text: str, limits: InputLimits) -> None:
    if len(text) > limits.max_text_chars:
        raise PromptError(f'text of {len(text)} characters exceeds {limits.max_text_chars} (limits.max_text_chars)')


def clean_text(text: str, limits: InputLimits = InputLimits()) -> Tuple[str, List[str]]:
    """``text`` with control characters and runs of white space made single spaces, stripped, cut
    to the words that fit in 77 CLIP tokens; returns (text, warnings).

    Raises :class:`PromptError` for text over ``limits.max_text_chars`` or a first word that
    alone exceeds 77 tokens.
    """
    _check_length(text, limits)
    text = ' '.join(''.join(c if c.isprintable() else ' ' for c in text).split())   # no control characters
    if not text or count_tokens(text) <= MAX_TEXT_TOKENS:
        return text, []
    words = text.split(' ')
    if count_tokens(words[0]) > MAX_TEXT_TOKENS:
        raise PromptError(f'the word {clip_text(words[0], 40)!r} alone exceeds {MAX_TEXT_TOKENS} tokens')
    lo, hi = 0, len(words)   # the longest prefix of lo words fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_tokens(' '.join(words[:mid])) <= MAX_TEXT_TOKENS else (lo, mid - 1)
    kept = ' '.join(words[:lo])
    return kept, [f'text of {count_tokens(text)} tokens exceeds {MAX_TEXT_TOKENS}: truncated to "{kept}"']


def text_to_prompts(text: str, limits: InputLimits = InputLimits()) -> Tuple[List[ObjectPrompt], List[str]]:
    """One text prompt per comma-separated item of ``text``; raises :class:`PromptError` when it
    is empty, over ``limits.max_text_chars`` or has more than ``limits.max_text_items`` items."""
    _check_length(text, limits)
    items = text.split(',')
    if len(items) > limits.max_text_items:
        raise PromptError(f'{len(items)} comma-separated objects in one text, at most {limits.max_text_items} '
                          '(limits.max_text_items)')
    prompts, warnings = [], []
    for item in items:
        item, item_warnings = clean_text(item, limits)
        warnings += item_warnings
        if item:
            prompts.append(ObjectPrompt(text=item))
    if not prompts:
        raise PromptError(f'empty text prompt {clip_text(repr(text))}')
    return prompts, warnings


def point_to_prompt(point: Point) -> ObjectPrompt:
    """A positive click at pixel (x, y) (``geometry_msgs/Point`` as rqt_image_view publishes it)."""
    return ObjectPrompt(points=check_coordinates([[point.x, point.y]], 'point', 2, 1), point_labels=np.ones(1, bool))


def prompt_from_msg(msg: Prompt, limits: InputLimits = InputLimits()) -> Tuple[ObjectPrompt, List[str]]:
    """The :class:`ObjectPrompt` of a ``seem_ros/Prompt`` message and conversion warnings.

    Every field is checked here (:func:`~seem_ros.prompts.check_prompt`: NaN, inf, beyond int32,
    lengths that disagree, min > max, empty masks, sizes over ``limits``); pixel fields are
    checked against the target image later (``pipeline.fit_prompt``), once the frame the prompt
    refers to is known. Raises :class:`PromptError` naming the field.
    """
    text, warnings = clean_text(msg.text, limits)
    points = np.array([[p.x, p.y] for p in msg.points], np.float64).reshape(-1, 2)
    labels = np.array(msg.point_labels, bool) if len(msg.point_labels) else np.ones(len(points), bool)
    if len(labels) != len(points):
        raise PromptError(f'{len(points)} points but {len(labels)} point_labels')
    scribbles: List[np.ndarray] = []
    polygons: List[np.ndarray] = []
    for i, line in enumerate(msg.scribbles):
        xy = np.array([[p.x, p.y] for p in line.points], np.float64).reshape(-1, 2)
        if len(xy) < (3 if line.closed else 1):
            raise PromptError(f'scribble {i} has {len(xy)} points; '
                              f'a {"polygon needs 3" if line.closed else "stroke needs 1"}')
        (polygons if line.closed else scribbles).append(check_coordinates(xy, f'scribbles[{i}].points', 2,
                                                                          limits.max_prompt_points))
    reference = None
    if msg.reference_image.width:
        try:
            ref_image = image_to_rgb(msg.reference_image, limits)
        except ImageError as exc:
            raise PromptError(f'reference_image: {exc}') from exc
        h, w = ref_image.shape[:2]
        if msg.reference_mask.width:
            ref_mask = _mask_from_image(msg.reference_mask, 'reference_mask', limits)
            if ref_mask.shape != (h, w):
                raise PromptError(f'reference_mask is {ref_mask.shape[1]}x{ref_mask.shape[0]} '
                                  f'but reference_image is {w}x{h}')
        else:
            ref_mask = _reference_box_mask(msg.reference_box, (h, w))
        reference = ReferencePatch(ref_image, ref_mask)
    prompt = ObjectPrompt(
        text=text, points=check_coordinates(points, 'points', 2, limits.max_prompt_points), point_labels=labels,
        boxes=check_boxes(_box_array(msg.boxes), 'boxes', limits.max_prompt_points),
        scribbles=tuple(scribbles), polygons=tuple(polygons),
        mask=_mask_from_image(msg.mask, 'mask', limits) if msg.mask.width else None,
        negative_mask=_mask_from_image(msg.negative_mask, 'negative_mask', limits) if msg.negative_mask.width else None,
        reference=reference, name=clip_text(msg.object_name, 200))
    check_prompt(prompt, limits)
    return prompt, warnings


def prompt_to_msg(prompt: ObjectPrompt, object_id: int = 0, header: Header = None) -> Prompt:
    """The ``seem_ros/Prompt`` message of ``prompt`` (inverse of :func:`prompt_from_msg`)."""
    header = header or Header()

    def mask_image(mask):
        return numpy_to_image(mask.astype(np.uint8) * 255, 'mono8', header) if mask is not None else Image()

    lines = [Polyline(points=[Point32(x=float(x), y=float(y)) for x, y in np.reshape(line, (-1, 2))], closed=closed)
             for closed, group in ((False, prompt.scribbles), (True, prompt.polygons)) for line in group]
    ref = prompt.reference
    return Prompt(
        header=header, object_id=int(object_id), object_name=prompt.name, mode=Prompt.REPLACE, text=prompt.text,
        points=[Point(x=float(x), y=float(y)) for x, y in np.reshape(prompt.points, (-1, 2))],
        point_labels=[bool(v) for v in np.reshape(prompt.point_labels, -1)],
        boxes=[BoundingBox2D(x_min=float(b[0]), y_min=float(b[1]), x_max=float(b[2]), y_max=float(b[3]))
               for b in np.reshape(prompt.boxes, (-1, 4))],
        scribbles=lines, mask=mask_image(prompt.mask), negative_mask=mask_image(prompt.negative_mask),
        reference_image=numpy_to_image(ref.image, 'rgb8', header) if ref is not None else Image(),
        reference_mask=mask_image(ref.mask) if ref is not None else Image())


def result_to_msg(result: FrameResult, header: Header,
                  geometries: Optional[Sequence[Optional[ObjectGeometry]]] = None) -> TrackedObjectArray:
    """The ``seem_ros/TrackedObjectArray`` of a pipeline frame result (masks RLE-encoded).

    ``geometries[i]`` fills the 3D fields of ``result.objects[i]`` (None, or no ``geometries``:
    ``has_position`` false).
    """
    h, w = result.frame.size
    objects = []
    for i, obj in enumerate(result.objects):
        compact = CompactMask.from_mask(obj.mask)
        x0, y0, x1, y1 = obj.bbox
        objects.append(TrackedObject(
            id=obj.id, label=obj.label, score=float(obj.score), state=int(obj.state),
            last_seen=ns_to_stamp(obj.last_seen_ns),
            prompt_id=obj.id if obj.origin is not None else 0,
            prompt_name=obj.origin.name if obj.origin is not None else '',
            bbox=BoundingBox2D(x_min=float(x0), y_min=float(y0), x_max=float(x1), y_max=float(y1)),
            mask_x_offset=compact.x_offset, mask_y_offset=compact.y_offset,
            mask_width=compact.width, mask_height=compact.height,
            mask_rle=array.array('I', compact.counts.astype(np.uint32).tobytes()),
            **position_fields(geometries[i] if geometries is not None else None)))
    return TrackedObjectArray(header=header, image_width=w, image_height=h, objects=objects)


def output_messages(output: SessionOutput, header: Header, keys: Sequence[str]) -> Dict[str, object]:
    """The messages of one processed frame for each of ``keys``, all with ``header`` (the image's):
    'objects' (TrackedObjectArray with the 3D fields), 'label_image' (mono16), 'overlay' (rgb8,
    when drawn), 'points' (PointCloud2 of the placed objects) and 'markers' (MarkerArray)."""
    result, placed = output.result, output.placed
    ids, geometries = [o.id for o, _ in placed], [g for _, g in placed]
    build = {'objects': lambda: result_to_msg(result, header, output.geometries),
             'label_image': lambda: numpy_to_image(result.label_image, 'mono16', header),
             'points': lambda: point_cloud(header, geometries, ids),
             'markers': lambda: box_markers(header, geometries, ids, [o.label for o, _ in placed])}
    if result.overlay is not None:
        overlay = result.overlay
        build['overlay'] = lambda: numpy_to_image(overlay, 'rgb8', header)
    return {key: build[key]() for key in keys if key != 'overlay' or result.overlay is not None}

"""Prompt scripts for ``seem-ros replay --prompts FILE``: objects to add at given frames or times.

The file is YAML: a list of prompts, or a mapping whose ``prompts`` key holds that list. Each
prompt adds one object on one frame of the replayed image topic and needs exactly one of:

* ``frame``: index of the image in the bag (0 = the first image);
* ``time``: seconds after the first image's stamp (the first image at or after that time).

and at least one input. Pixel coordinates are (x, y) in the bag's images, x to the right, y down,
origin at the top-left corner of the top-left pixel. Relative file paths are relative to the YAML
file. Example::

    prompts:
      - frame: 0
        text: the red rectangle          # referring text (cut to 77 CLIP tokens, with a warning)
        name: rect                       # optional name: the label when there is no text
      - frame: 3
        click: [80.5, 60.5]              # positive click(s): [x, y] or [[x, y], ...]
        negative_click: [[10, 12]]       # negative click(s), same forms
      - time: 0.4
        box: [40, 30, 90, 80]            # [x0, y0, x1, y1] or a list of them
      - frame: 5
        scribble: [[10, 10], [30, 12], [50, 20]]   # a polyline or a list of polylines
        polygon: [[60, 60], [90, 60], [75, 90]]    # a closed polygon (filled) or a list of them
      - frame: 6
        mask: masks/object.png           # image file, nonzero = object, the size of the bag's images
        negative_mask: masks/not.png     # optional
      - frame: 8
        reference:                       # referring patch: the object marked in another image
          image: ref/other_scene.png
          mask: ref/other_scene_mask.png # or box: [x0, y0, x1, y1] in that image; neither: all of it

Inputs given together designate one object (e.g. a text with a click).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import yaml

from ..prompts import ObjectPrompt, ReferencePatch, box_mask, check_prompt

INPUT_KEYS = ('text', 'click', 'negative_click', 'box', 'scribble', 'polygon', 'mask', 'negative_mask', 'reference')
KEYS = ('frame', 'time', 'name') + INPUT_KEYS


class PromptFileError(ValueError):
    """A prompt file that cannot be used; the message names the file, the prompt and the problem."""


@dataclass(frozen=True)
class PromptEvent:
    """Prompt ``index`` of the file: add ``prompt`` on image ``frame``, or on the first image at least
    ``time_s`` seconds after the first one; ``warnings`` from reading it (e.g. a truncated text)."""

    index: int
    prompt: ObjectPrompt
    frame: Optional[int] = None
    time_s: Optional[float] = None
    warnings: Tuple[str, ...] = ()

    @property
    def when(self) -> str:
        return f'frame {self.frame}' if self.frame is not None else f'time {self.time_s:g} s'

    def due(self, frame_index: int, stamp_ns: int, first_stamp_ns: int) -> bool:
        """True when the event applies to image ``frame_index`` (or an earlier one)."""
        if self.frame is not None:
            return frame_index >= self.frame
        assert self.time_s is not None        # an event has a frame or a time
        return stamp_ns - first_stamp_ns >= round(self.time_s * 1e9)


def _points(value, what: str) -> np.ndarray:
    a = np.asarray(value, np.float64)
    if a.shape == (2,):
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 2 or not len(a) or not np.isfinite(a).all():
        raise ValueError(f'{what} must be [x, y] or a list of [x, y], got {value!r}')
    return a.astype(np.float32)


def _boxes(value) -> np.ndarray:
    a = np.asarray(value, np.float64)
    if a.shape == (4,):
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 4 or not len(a) or not np.isfinite(a).all():
        raise ValueError(f'box must be [x0, y0, x1, y1] or a list of them, got {value!r}')
    if ((a[:, 2] <= a[:, 0]) | (a[:, 3] <= a[:, 1])).any():
        raise ValueError(f'box needs x1 > x0 and y1 > y0, got {value!r}')
    return a.astype(np.float32)


def _polylines(value, what: str, minimum: int) -> tuple:
    """One polyline ([[x, y], ...]) or a list of them."""
    several = isinstance(value, list) and value and isinstance(value[0], list) and value[0] \
        and isinstance(value[0][0], list)
    lines = tuple(_points(line, what) for line in (value if several else [value]))
    for line in lines:
        if len(line) < minimum:
            raise ValueError(f'a {what} needs at least {minimum} points, got {len(line)}')
    return lines


def _read_image(path: Path, what: str, flags: int) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f'{what}: no such file {path}')
    image = cv2.imread(str(path), flags)
    if image is None:
        raise ValueError(f'{what}: cannot read {path} as an image')
    return image


def _mask(value, base: Path, what: str) -> np.ndarray:
    return _read_image(base / str(value), what, cv2.IMREAD_GRAYSCALE) != 0


def _reference(value, base: Path) -> ReferencePatch:
    if not isinstance(value, dict) or 'image' not in value or set(value) - {'image', 'mask', 'box'}:
        raise ValueError(f'reference must be a mapping with image and optionally mask or box, got {value!r}')
    if 'mask' in value and 'box' in value:
        raise ValueError('reference takes a mask or a box, not both')
    image = cv2.cvtColor(_read_image(base / str(value['image']), 'reference image', cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB)
    h, w = image.shape[:2]
    if 'mask' in value:
        mask = _mask(value['mask'], base, 'reference mask')
        if mask.shape != (h, w):
            raise ValueError(f'reference mask is {mask.shape[1]}x{mask.shape[0]} but its image is {w}x{h}')
    else:
        mask = box_mask(_boxes(value['box'])[0], (h, w), 'reference box') if 'box' in value else np.ones((h, w), bool)
    if not mask.any():
        raise ValueError('the reference mask is empty')
    return ReferencePatch(image, mask)


def _event(i: int, entry, base: Path) -> PromptEvent:
    if not isinstance(entry, dict):
        raise ValueError(f'expected a mapping, got {entry!r}')
    unknown = sorted(set(entry) - set(KEYS))
    if unknown:
        raise ValueError(f'unknown key(s) {", ".join(map(str, unknown))} (known: {", ".join(KEYS)})')
    if ('frame' in entry) == ('time' in entry):
        raise ValueError('needs exactly one of frame or time')
    frame, time_s = entry.get('frame'), entry.get('time')
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise ValueError(f'frame must be an integer >= 0, got {frame!r}')
    if time_s is not None and (isinstance(time_s, bool) or not isinstance(time_s, (int, float)) or time_s < 0):
        raise ValueError(f'time must be a number of seconds >= 0, got {time_s!r}')
    if not any(k in entry for k in INPUT_KEYS):
        raise ValueError(f'has no input (one or more of {", ".join(INPUT_KEYS)})')
    from ..ros.conversions import clean_text
    text, warnings = clean_text(str(entry.get('text', '')))
    if 'text' in entry and not text:
        raise ValueError('text is empty')
    positive = _points(entry['click'], 'click') if 'click' in entry else np.zeros((0, 2), np.float32)
    negative = (_points(entry['negative_click'], 'negative_click') if 'negative_click' in entry
                else np.zeros((0, 2), np.float32))
    prompt = ObjectPrompt(
        text=text, points=np.concatenate([positive, negative]),
        point_labels=np.concatenate([np.ones(len(positive), bool), np.zeros(len(negative), bool)]),
        boxes=_boxes(entry['box']) if 'box' in entry else np.zeros((0, 4), np.float32),
        scribbles=_polylines(entry['scribble'], 'scribble', 1) if 'scribble' in entry else (),
        polygons=_polylines(entry['polygon'], 'polygon', 3) if 'polygon' in entry else (),
        mask=_mask(entry['mask'], base, 'mask') if 'mask' in entry else None,
        negative_mask=_mask(entry['negative_mask'], base, 'negative_mask') if 'negative_mask' in entry else None,
        reference=_reference(entry['reference'], base) if 'reference' in entry else None,
        name=str(entry.get('name', '')))
    if not (prompt.text or len(positive) or len(prompt.boxes) or prompt.scribbles or prompt.polygons
            or prompt.mask is not None or prompt.reference is not None):
        raise ValueError('has no positive input (negative clicks or masks alone designate nothing)')
    check_prompt(prompt)             # the node's checks of every field (PromptError is a ValueError)
    return PromptEvent(i, prompt, frame, None if time_s is None else float(time_s), tuple(warnings))


def load_prompts(path) -> List[PromptEvent]:
    """The prompts of the YAML file ``path`` (format in the module docstring), in file order.

    Raises:
        PromptFileError: a missing or unreadable file, or a prompt that is not valid.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PromptFileError(f'{path}: cannot read: {exc.strerror or exc}') from exc
    except yaml.YAMLError as exc:
        raise PromptFileError(f'{path}: not valid YAML: {exc}') from exc
    if isinstance(data, dict) and set(data) == {'prompts'}:
        data = data['prompts']
    if not isinstance(data, list) or not data:
        raise PromptFileError(f'{path}: expected a non-empty list of prompts (or a mapping with a prompts list)')
    events = []
    for i, entry in enumerate(data):
        try:
            events.append(_event(i, entry, path.parent))
        except ValueError as exc:
            raise PromptFileError(f'{path}: prompt {i}: {exc}') from exc
    return events


def describe(events: Sequence[PromptEvent]) -> List[str]:
    """One line per event, e.g. ``prompt 0 at frame 3: text 'the red mug' + 1 click``."""
    lines = []
    for e in events:
        p = e.prompt
        parts = [f"text '{p.text}'"] if p.text else []
        parts += [f'{n} {k}{"s" if n > 1 else ""}' for k, n in (
            ('click', int(np.count_nonzero(p.point_labels))),
            ('negative click', int(np.count_nonzero(~p.point_labels))),
            ('box', len(p.boxes)), ('scribble', len(p.scribbles)), ('polygon', len(p.polygons))) if n]
        parts += [k for k, v in (('mask', p.mask), ('negative mask', p.negative_mask), ('referring patch', p.reference))
                  if v is not None]
        lines.append(f'prompt {e.index} at {e.when}: {" + ".join(parts)}')
    return lines

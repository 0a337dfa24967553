"""What a browser may send to ``seem_ui``, validated: one JSON object per WebSocket message.

Every request is ``{"type": ..., "id": <optional request id, echoed in the reply>, ...fields}``.
Pixel fields are image pixels of the frame the page showed, named by its ``stamp``
(``{"sec": int, "nanosec": int}``, as the frame's header); x = column, y = row, origin at the
image's top-left corner (``msg/BoundingBox2D.msg``).

========== ===============================================================================
type       fields
========== ===============================================================================
click      stamp, x, y, positive (bool), object_id (0: a new object; > 0: refine it)
box        stamp, box [x_min, y_min, x_max, y_max] (a new object)
scribble   stamp, points [[x, y], ...], object_id (0: a new object; > 0: refine it)
text       stamp, text (a comma list adds one object per item)
rename     object_id, name
remove     object_id
reset      (nothing)
mode       mode: prompted | everything | both
vocabulary names: a comma list of class names
========== ===============================================================================

A negative click refines an object, so it needs ``object_id`` > 0. No ROS and no web server here:
:func:`parse_request` raises :class:`RequestError` naming the field, and the server replies with it.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

MAX_MESSAGE_BYTES = 64 * 1024
"""Longest request; longer ones are refused unread (a 4096-point scribble fits)."""
MAX_TEXT_CHARS = 512
MAX_TEXT_ITEMS = 16
MAX_NAME_CHARS = 128
MAX_SCRIBBLE_POINTS = 4096
MAX_VOCABULARY = 64
MAX_REQUEST_ID_CHARS = 64
MAX_OBJECT_ID = 2 ** 31 - 1
MODES = ('prompted', 'everything', 'both')

FrameSize = Callable[[int], Optional[Tuple[int, int]]]
"""stamp (ns) -> (width, height) of a frame this client was sent, or None."""


class RequestError(ValueError):
    """A request that is refused; the message names the field and the reason."""


@dataclass(frozen=True)
class Click:
    stamp_ns: int
    x: float
    y: float
    positive: bool
    object_id: int


@dataclass(frozen=True)
class Box:
    stamp_ns: int
    box: Tuple[float, float, float, float]


@dataclass(frozen=True)
class Scribble:
    stamp_ns: int
    points: Tuple[Tuple[float, float], ...]
    object_id: int


@dataclass(frozen=True)
class Text:
    stamp_ns: int
    items: Tuple[str, ...]


@dataclass(frozen=True)
class Rename:
    object_id: int
    name: str


@dataclass(frozen=True)
class Remove:
    object_id: int


@dataclass(frozen=True)
class Reset:
    pass


@dataclass(frozen=True)
class SetMode:
    mode: str


@dataclass(frozen=True)
class SetVocabulary:
    names: Tuple[str, ...]


Command = Union[Click, Box, Scribble, Text, Rename, Remove, Reset, SetMode, SetVocabulary]
PromptCommand = (Click, Box, Scribble, Text)


class RateLimit:
    """Token bucket: ``rate`` requests per second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._last = float(burst), clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass(frozen=True)
class Request:
    """One validated request: the client's ``id`` (echoed in the reply), its ``type`` and command."""

    id: Optional[Union[int, str]]
    type: str
    command: Command


def parse_request(raw: Union[str, bytes], frame_size: FrameSize) -> Request:
    """The :class:`Request` of one WebSocket message.

    Raises:
        RequestError: not a JSON object, over :data:`MAX_MESSAGE_BYTES`, an unknown type, a
            missing, unknown or mistyped field, a stamp of a frame this client was not sent,
            pixels outside that frame, or text, names or points over their limits.
    """
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > MAX_MESSAGE_BYTES:
        raise RequestError(f'message of {size} bytes exceeds {MAX_MESSAGE_BYTES}')
    try:
        request = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f'not JSON: {exc}') from None
    if not isinstance(request, dict):
        raise RequestError('a request must be a JSON object')
    request_id = request.pop('id', None)
    if request_id is not None and not (isinstance(request_id, (int, str)) and not isinstance(request_id, bool)
                                       and len(str(request_id)) <= MAX_REQUEST_ID_CHARS):
        raise RequestError(f'id: an integer or a string of at most {MAX_REQUEST_ID_CHARS} characters')
    kind = request.pop('type', None)
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise RequestError(f'type: {str(kind)[:40]!r} is not one of {", ".join(_PARSERS)}')
    fields = _Fields(kind, request)
    command = parser(fields, frame_size)
    fields.check_consumed()
    return Request(request_id, kind, command)


class _Fields:
    """The fields of one request, read once each; unread ones are refused."""

    def __init__(self, kind: str, values: Dict[str, Any]):
        self.kind, self.values = kind, values

    def take(self, name: str) -> Any:
        if name not in self.values:
            raise RequestError(f'{self.kind}: missing field {name!r}')
        return self.values.pop(name)

    def check_consumed(self) -> None:
        if self.values:
            raise RequestError(f'{self.kind}: unknown field(s) {", ".join(sorted(self.values))[:200]}')

    def number(self, name: str, value: Any = None) -> float:
        value = self.take(name) if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RequestError(f'{self.kind}: {name} must be a finite number')
        return float(value)

    def boolean(self, name: str) -> bool:
        value = self.take(name)
        if not isinstance(value, bool):
            raise RequestError(f'{self.kind}: {name} must be true or false')
        return value

    def object_id(self, *, required: bool) -> int:
        value = self.take('object_id')
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_OBJECT_ID:
            raise RequestError(f'{self.kind}: object_id must be an integer in [0, {MAX_OBJECT_ID}]')
        if required and value == 0:
            raise RequestError(f'{self.kind}: object_id must name an object (> 0)')
        return value

    def string(self, name: str, limit: int) -> str:
        value = self.take(name)
        if not isinstance(value, str):
            raise RequestError(f'{self.kind}: {name} must be a string')
        if len(value) > limit:
            raise RequestError(f'{self.kind}: {name} of {len(value)} characters exceeds {limit}')
        if any(ord(c) < 32 for c in value):
            raise RequestError(f'{self.kind}: {name} contains control characters')
        return value.strip()

    def items(self, name: str, limit_chars: int, limit_items: int) -> Tuple[str, ...]:
        items = tuple(item.strip() for item in self.string(name, limit_chars).split(',') if item.strip())
        if not items:
            raise RequestError(f'{self.kind}: {name} is empty')
        if len(items) > limit_items:
            raise RequestError(f'{self.kind}: {name} has {len(items)} items, more than {limit_items}')
        return items

    def frame(self, frame_size: FrameSize) -> Tuple[int, int, int]:
        """(stamp ns, width, height) of the frame the request refers to."""
        stamp = self.take('stamp')
        if not (isinstance(stamp, dict) and set(stamp) == {'sec', 'nanosec'}
                and all(isinstance(v, int) and not isinstance(v, bool) for v in stamp.values())
                and 0 <= stamp['sec'] < 2 ** 31 and 0 <= stamp['nanosec'] < 10 ** 9):
            raise RequestError(f'{self.kind}: stamp must be {{"sec": int, "nanosec": int}} of a frame')
        stamp_ns = stamp['sec'] * 1_000_000_000 + stamp['nanosec']
        size = frame_size(stamp_ns)
        if size is None:
            raise RequestError(f'{self.kind}: stamp {stamp["sec"]}.{stamp["nanosec"]:09d} is not a frame this page '
                               'was sent recently')
        return (stamp_ns, *size)

    def pixel(self, name: str, xy: Any, width: int, height: int) -> Tuple[float, float]:
        if not (isinstance(xy, (list, tuple)) and len(xy) == 2):
            raise RequestError(f'{self.kind}: {name} must be [x, y]')
        x, y = self.number(name, xy[0]), self.number(name, xy[1])
        if not (0 <= x < width and 0 <= y < height):
            raise RequestError(f'{self.kind}: {name} ({x:g}, {y:g}) is outside the {width}x{height} frame')
        return x, y


def _click(f: _Fields, frame_size: FrameSize) -> Click:
    stamp_ns, width, height = f.frame(frame_size)
    x, y = f.pixel('x, y', (f.take('x'), f.take('y')), width, height)
    positive = f.boolean('positive')
    object_id = f.object_id(required=not positive)
    return Click(stamp_ns, x, y, positive, object_id)


def _box(f: _Fields, frame_size: FrameSize) -> Box:
    stamp_ns, width, height = f.frame(frame_size)
    box = f.take('box')
    if not (isinstance(box, list) and len(box) == 4):
        raise RequestError('box: box must be [x_min, y_min, x_max, y_max]')
    x0, y0, x1, y1 = (f.number('box', v) for v in box)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise RequestError(f'box: ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is not a non-empty box inside the '
                           f'{width}x{height} frame')
    return Box(stamp_ns, (x0, y0, x1, y1))


def _scribble(f: _Fields, frame_size: FrameSize) -> Scribble:
    stamp_ns, width, height = f.frame(frame_size)
    points = f.take('points')
    if not isinstance(points, list) or not 1 <= len(points) <= MAX_SCRIBBLE_POINTS:
        raise RequestError(f'scribble: points must be a list of 1 to {MAX_SCRIBBLE_POINTS} [x, y] pairs')
    pixels = tuple(f.pixel(f'points[{i}]', p, width, height) for i, p in enumerate(points))
    return Scribble(stamp_ns, pixels, f.object_id(required=False))


def _text(f: _Fields, frame_size: FrameSize) -> Text:
    stamp_ns, _, _ = f.frame(frame_size)
    return Text(stamp_ns, f.items('text', MAX_TEXT_CHARS, MAX_TEXT_ITEMS))


def _rename(f: _Fields, frame_size: FrameSize) -> Rename:
    object_id = f.object_id(required=True)
    name = f.string('name', MAX_NAME_CHARS)
    if not name:
        raise RequestError('rename: name is empty')
    return Rename(object_id, name)


def _mode(f: _Fields, frame_size: FrameSize) -> SetMode:
    mode = f.take('mode')
    if mode not in MODES:
        raise RequestError(f'mode: mode must be one of {", ".join(MODES)}')
    return SetMode(mode)


_PARSERS: Dict[str, Callable[[_Fields, FrameSize], Command]] = {
    'click': _click, 'box': _box, 'scribble': _scribble, 'text': _text, 'rename': _rename,
    'remove': lambda f, _: Remove(f.object_id(required=True)),
    'reset': lambda f, _: Reset(),
    'mode': _mode,
    'vocabulary': lambda f, _: SetVocabulary(f.items('names', MAX_VOCABULARY * MAX_NAME_CHARS, MAX_VOCABULARY)),
}

"""The teleop page's request validation (seem_ros/ui/protocol.py) and the server's address rules."""
import json

import pytest

from seem_ros.ui import protocol as proto
from seem_ros.ui.server import is_loopback

STAMP = {'sec': 1_700_000_000, 'nanosec': 200_000_000}
STAMP_NS = 1_700_000_000_200_000_000


def frame_size(stamp_ns):
    return (640, 480) if stamp_ns == STAMP_NS else None


def parse(**request):
    return proto.parse_request(json.dumps(request), frame_size)


def test_valid_requests_become_commands():
    request = parse(type='click', id=7, stamp=STAMP, x=639.5, y=0, positive=True, object_id=0)
    assert (request.id, request.type) == (7, 'click')
    assert request.command == proto.Click(STAMP_NS, 639.5, 0.0, True, 0)
    assert parse(type='click', stamp=STAMP, x=3, y=4, positive=False, object_id=5).command.object_id == 5
    assert parse(type='box', stamp=STAMP, box=[0, 0, 640, 480]).command == proto.Box(STAMP_NS, (0, 0, 640, 480))
    scribble = parse(type='scribble', stamp=STAMP, points=[[1, 2], [3.5, 4]], object_id=0).command
    assert scribble.points == ((1.0, 2.0), (3.5, 4.0))
    assert parse(type='text', stamp=STAMP, text=' the red mug, , the cup ').command.items == ('the red mug', 'the cup')
    assert parse(type='rename', object_id=3, name=' mug ').command == proto.Rename(3, 'mug')
    assert parse(type='remove', object_id=3).command == proto.Remove(3)
    assert parse(type='reset').command == proto.Reset()
    assert parse(type='mode', mode='both').command == proto.SetMode('both')
    assert parse(type='vocabulary', names='cup, person').command == proto.SetVocabulary(('cup', 'person'))


@pytest.mark.parametrize('request_, message', [
    ({'type': 'click', 'stamp': STAMP, 'x': 640, 'y': 0, 'positive': True, 'object_id': 0},
     'click: x, y (640, 0) is outside the 640x480 frame'),
    ({'type': 'click', 'stamp': STAMP, 'x': -0.1, 'y': 0, 'positive': True, 'object_id': 0}, 'outside'),
    ({'type': 'click', 'stamp': STAMP, 'x': True, 'y': 0, 'positive': True, 'object_id': 0}, 'finite number'),
    ({'type': 'click', 'stamp': STAMP, 'x': 1, 'y': 1, 'positive': 1, 'object_id': 0}, 'true or false'),
    ({'type': 'click', 'stamp': STAMP, 'x': 1, 'y': 1, 'positive': False, 'object_id': 0}, 'must name an object'),
    ({'type': 'click', 'stamp': STAMP, 'x': 1, 'y': 1, 'positive': True, 'object_id': -1}, 'object_id must be'),
    ({'type': 'click', 'stamp': STAMP, 'x': 1, 'positive': True, 'object_id': 0}, "missing field 'y'"),
    ({'type': 'click', 'stamp': {'sec': 1, 'nanosec': 0}, 'x': 1, 'y': 1, 'positive': True, 'object_id': 0},
     'stamp 1.000000000 is not a frame this page was sent'),
    ({'type': 'click', 'stamp': {'sec': 1}, 'x': 1, 'y': 1, 'positive': True, 'object_id': 0}, 'stamp must be'),
    ({'type': 'click', 'stamp': STAMP, 'x': 1, 'y': 1, 'positive': True, 'object_id': 0, 'z': 2},
     'unknown field(s) z'),
    ({'type': 'box', 'stamp': STAMP, 'box': [10, 10, 10, 20]}, 'not a non-empty box'),
    ({'type': 'box', 'stamp': STAMP, 'box': [10, 10, 700, 20]}, 'inside the 640x480 frame'),
    ({'type': 'box', 'stamp': STAMP, 'box': [1, 2, 3]}, 'box must be'),
    ({'type': 'scribble', 'stamp': STAMP, 'points': [], 'object_id': 0}, '1 to 4096'),
    ({'type': 'scribble', 'stamp': STAMP, 'points': [[1, 1]] * 4097, 'object_id': 0}, '1 to 4096'),
    ({'type': 'scribble', 'stamp': STAMP, 'points': [[1, 1], [1, 900]], 'object_id': 0}, 'points[1]'),
    ({'type': 'scribble', 'stamp': STAMP, 'points': [[1, 1, 1]], 'object_id': 0}, 'must be [x, y]'),
    ({'type': 'text', 'stamp': STAMP, 'text': 'x' * 513}, 'text of 513 characters exceeds 512'),
    ({'type': 'text', 'stamp': STAMP, 'text': ' , '}, 'text is empty'),
    ({'type': 'text', 'stamp': STAMP, 'text': ','.join('abcdefghijklmnopq')}, 'has 17 items, more than 16'),
    ({'type': 'text', 'stamp': STAMP, 'text': 'a\x00b'}, 'control characters'),
    ({'type': 'rename', 'object_id': 1, 'name': ''}, 'name is empty'),
    ({'type': 'rename', 'object_id': 0, 'name': 'x'}, 'must name an object'),
    ({'type': 'mode', 'mode': ['both']}, 'mode must be one of'),
    ({'type': 'vocabulary', 'names': ','.join(['a'] * 65)}, 'more than 64'),
    ({'type': 'reset', 'id': [1]}, 'id: an integer or a string'),
    ({'type': 'drop_tables'}, "type: 'drop_tables' is not one of"),
    ({}, "type: 'None' is not one of"),
])
def test_invalid_requests_are_refused_with_the_field_named(request_, message):
    with pytest.raises(proto.RequestError) as caught:
        proto.parse_request(json.dumps(request_), frame_size)
    assert message in str(caught.value)


def test_not_json_oversized_and_non_objects_are_refused():
    for raw, message in (('{', 'not JSON'), (b'\xff\xfe', 'not JSON'), ('"click"', 'must be a JSON object'),
                         ('x' * (proto.MAX_MESSAGE_BYTES + 1), f'exceeds {proto.MAX_MESSAGE_BYTES}')):
        with pytest.raises(proto.RequestError, match=message):
            proto.parse_request(raw, frame_size)


def test_rate_limit_allows_bursts_then_the_rate():
    now = [0.0]
    limit = proto.RateLimit(rate=10.0, burst=3, clock=lambda: now[0])
    assert [limit.allow() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.1                                  # one token back
    assert [limit.allow(), limit.allow()] == [True, False]
    now[0] = 100.0                                # refills to the burst, not beyond
    assert sum(limit.allow() for _ in range(10)) == 3


def test_loopback_addresses():
    assert all(map(is_loopback, ('127.0.0.1', '127.1.2.3', '::1', 'localhost')))
    assert not any(map(is_loopback, ('0.0.0.0', '192.168.1.5', '::', 'robot.local')))

"""Shared by the backend-parity tests (test/unit/test_backend_parity_*.py): the shipped model,
the output tracks of a bag and their comparison between backends."""
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message

from seem_ros.mask_codec import CompactMask
from seem_ros.msg import TrackedObjectArray
from seem_ros.replay.bagio import BagReader

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / 'models' / 'seem_tiny.pt'
PARITY_IOU = 0.98


def tracked(bag):
    """Per frame {id: (state, (H, W) bool mask)} of an output bag's object arrays."""
    frames = []
    with BagReader(bag) as reader:
        for m in reader.messages(['/seem/objects']):
            arr = deserialize_message(m.data, TrackedObjectArray)
            frames.append({o.id: (o.state, CompactMask(o.mask_x_offset, o.mask_y_offset, o.mask_width, o.mask_height,
                                                       np.asarray(o.mask_rle)).to_mask(arr.image_height,
                                                                                       arr.image_width))
                           for o in arr.objects})
    return frames


def assert_same_tracks(eager, graphs):
    """Both backends' outputs (:func:`tracked`) have the same ids and states on every frame, and
    each object's masks agree with IoU >= PARITY_IOU; returns the worst IoU per id."""
    assert len(eager) == len(graphs)
    worst = {}
    for k, (a, b) in enumerate(zip(eager, graphs)):
        assert {i: s for i, (s, _) in a.items()} == {i: s for i, (s, _) in b.items()}, f'frame {k}'
        for i, (_, mask) in a.items():
            union = np.count_nonzero(mask | b[i][1])
            iou = np.count_nonzero(mask & b[i][1]) / union if union else 1.0
            worst[i] = min(worst.get(i, 1.0), iou)
    assert min(worst.values()) >= PARITY_IOU, worst
    return worst

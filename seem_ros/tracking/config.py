"""Tracker settings: the association thresholds both trackers share and each tracker's own.

Every config is a frozen dataclass that checks its values on construction (``ValueError``) and
builds from a mapping of ROS parameters (:meth:`AssociationConfig.from_dict`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict

_UNIT_FIELDS = {'min_iou', 'keep_iou', 'min_similarity', 'reid_similarity', 'colour_weight', 'velocity_smoothing',
                'bank_confidence', 'min_confidence', 'merge_iou', 'max_overlap', 'reference_confidence',
                'referred_similarity', 'min_score'}
"""Settings that are fractions or similarities: they must lie in [0, 1]."""


@dataclass(frozen=True)
class AssociationConfig:
    """Thresholds shared by both trackers; invalid values raise ``ValueError``.

    Attributes:
        min_iou: a continuity match needs this mask IoU with the motion-predicted mask.
        min_similarity: ... and this appearance similarity to the track's bank.
        keep_iou: a continuity match of a visible track with this IoU or more is protected: the
            assignment gives it priority over every other kind of match (re-identification
            never takes a visible object's id).
        reid_similarity: a match without continuity (re-identification) needs this similarity.
        iou_weight, appearance_weight: weights of IoU and similarity in the match score.
        colour_weight: share of the colour histogram in the appearance similarity (the rest is
            the query embedding; see :func:`~seem_ros.tracking.association.appearance`).
        min_area_px: masks with fewer pixels are ignored.
        lost_timeout_s: a track lost for longer is removed.
        motion_horizon_s: the constant-velocity prediction is used up to this long after the
            last match (prompted: the lost track is still prompted with its predicted mask);
            later only appearance can re-identify the track.
        velocity_smoothing: weight of the newest displacement in the velocity estimate.
        bank_size: appearance vectors kept per track (the first is pinned).
        bank_interval_s: at most one new bank entry per track per this interval.
        bank_confidence: a match enters the bank only with this confidence or more.
    """

    min_iou: float = 0.1
    min_similarity: float = 0.5
    keep_iou: float = 0.5
    reid_similarity: float = 0.75
    iou_weight: float = 1.0
    appearance_weight: float = 1.0
    colour_weight: float = 0.5
    min_area_px: int = 16
    lost_timeout_s: float = 5.0
    motion_horizon_s: float = 1.0
    velocity_smoothing: float = 0.5
    bank_size: int = 8
    bank_interval_s: float = 0.5
    bank_confidence: float = 0.6

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not value >= 0:
                raise ValueError(f'{f.name} must be >= 0, got {value}')
            if f.name in _UNIT_FIELDS and value > 1:
                raise ValueError(f'{f.name} must be in [0, 1], got {value}')
        if self.bank_size < 1:
            raise ValueError(f'bank_size must be >= 1, got {self.bank_size}')

    @classmethod
    def from_dict(cls, values: Dict[str, Any]):
        """Build from a mapping (e.g. ROS parameters ``tracking.*``); unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown {cls.__name__} keys {unknown}; expected some of {sorted(known)}')
        return cls(**values)


@dataclass(frozen=True)
class PromptedConfig(AssociationConfig):
    """:class:`PromptedTracker` settings (see also :class:`AssociationConfig`).

    Attributes:
        min_confidence: a result with a lower confidence (mean mask probability) is rejected;
            also the bar for the first frame of a text or referring-patch object.
        merge_iou: results of different prompts overlapping this much are one candidate object.
        max_overlap: a re-identified mask may share at most this fraction of its pixels with
            the mask of a visible track (re-identification never takes a visible object's pixels).
        reference_confidence: a frame becomes the track's new reference (referring patch: the
            frame with the object's mask) only with this confidence, the re-identification
            similarity and the mask clear of the image border.
        referred_similarity: a lost track is also re-identified with this lower similarity when
            its own global prompt (reference or text) found the candidate with at least
            ``reference_confidence`` (e.g. an object still half hidden when it comes back).
        reference_interval_s: at most one new reference per track per this interval.
        propagation: how the predicted mask prompts the next frame: 'mask' (the mask itself),
            'box' (its box) or 'box+point' (its box and its innermost pixel as a click).
        global_when_tracked: also prompt visible tracks with their reference (found even after
            a jump too large for the propagation prompt, at the cost of a second, longer prompt
            per object); otherwise only lost tracks get it.
        use_prev_mask: pass the previous low-resolution mask logits as ``prev_mask`` memory.
        negative_others: give the other tracks' predicted masks as the negative mask of each
            propagation prompt.
    """

    lost_timeout_s: float = 30.0
    min_confidence: float = 0.5
    merge_iou: float = 0.6
    max_overlap: float = 0.5
    reference_confidence: float = 0.7
    referred_similarity: float = 0.65
    reference_interval_s: float = 2.0
    propagation: str = 'mask'
    global_when_tracked: bool = False
    use_prev_mask: bool = True
    negative_others: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.propagation not in PROPAGATION:
            raise ValueError(f'propagation must be one of {PROPAGATION}, got {self.propagation!r}')




PROPAGATION = ('mask', 'box', 'box+point')


@dataclass(frozen=True)
class EverythingConfig(AssociationConfig):
    """:class:`EverythingTracker` settings (see also :class:`AssociationConfig`).

    Attributes:
        min_score: segments scoring below are ignored.
        min_hits: consecutive matches before a tentative track is born (gets an id, NEW).
        max_misses: a lost track is removed after this many missed frames (or ``lost_timeout_s``).
        label_weight: score bonus of a match with the track's class.
        reid_same_label: re-identification needs the track's class.
        max_tracks: most tracks kept (tentative and lost included); the oldest lost go first.
        publish_tentative: also output tentative tracks (state NEW, id 0).
    """

    min_score: float = 0.5
    min_hits: int = 3
    max_misses: int = 75
    label_weight: float = 0.2
    reid_same_label: bool = True
    max_tracks: int = 100
    publish_tentative: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.min_hits < 1:
            raise ValueError(f'min_hits must be >= 1, got {self.min_hits}')
        if self.max_tracks < 1:
            raise ValueError(f'max_tracks must be >= 1, got {self.max_tracks}')


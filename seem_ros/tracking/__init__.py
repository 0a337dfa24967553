"""Stable track ids for segmented objects (no ROS, no torch): prompted objects and everything mode.

:class:`PromptedTracker` re-finds every prompted object on each frame through the predictor;
:class:`EverythingTracker` associates everything-mode segments to tracks. Both return a
:class:`FrameTracks` of :class:`TrackOutput` per frame and share one :class:`IdPool`.
"""
from .association import appearance, assign, colour_descriptor, mask_bbox, mask_iou
from .config import AssociationConfig, EverythingConfig, PromptedConfig
from .everything import EverythingTracker
from .prompted import PromptedTracker
from .prompting import merge_prompts
from .state import AppearanceBank, FrameTracks, IdPool, Track, TrackOutput, TrackState

__all__ = ['AppearanceBank', 'AssociationConfig', 'EverythingConfig', 'EverythingTracker', 'FrameTracks', 'IdPool',
           'PromptedConfig', 'PromptedTracker', 'Track', 'TrackOutput', 'TrackState', 'appearance', 'assign',
           'colour_descriptor', 'mask_bbox', 'mask_iou', 'merge_prompts']

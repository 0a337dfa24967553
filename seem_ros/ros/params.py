"""The node's ROS parameters: one table of names, defaults and descriptions, and a validated dataclass."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Dict, Mapping, Tuple

from rcl_interfaces.msg import ParameterDescriptor

from ..pipeline import Mode, PipelineConfig
from ..prompts import InputLimits
from ..runtime.backend import ALIASES, BACKENDS as RUNTIME_BACKENDS
from ..tracking import EverythingConfig, PromptedConfig

BACKENDS = ('auto', *ALIASES, *RUNTIME_BACKENDS)
PRECISIONS = ('fp32', 'fp16', 'bf16')
TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')
CAMERA_NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')
MAX_CAMERAS = 16


@dataclass(frozen=True)
class SeemParams:
    """Validated node parameters; field ``a__b`` is the ROS parameter ``a.b``. Invalid values raise
    ``ValueError`` naming the parameter (variant and version are checked by the model builder)."""

    cameras: Tuple[str, ...] = ('',)
    model__checkpoint: str = ''
    model__variant: str = ''
    model__version: str = ''
    model__short_side: int = 0
    model__deterministic: bool = True
    runtime__backend: str = 'torch'
    runtime__device: str = 'cpu'
    runtime__precision: str = 'fp32'
    runtime__onnx_dir: str = ''
    runtime__engine_dir: str = ''
    pipeline__mode: str = 'prompted'
    pipeline__vocabulary: Tuple[str, ...] = ('person', 'cup', 'bottle', 'chair', 'table', 'laptop', 'book')
    pipeline__score_threshold: float = 0.5
    pipeline__max_objects: int = 32
    pipeline__ring_size: int = 30
    pipeline__stamp_tolerance: float = 0.01
    tracking__min_confidence: float = 0.5
    tracking__lost_timeout: float = 30.0
    tracking__reid_similarity: float = 0.75
    tracking__everything__min_hits: int = 3
    tracking__everything__max_misses: int = 75
    tracking__everything__lost_timeout: float = 5.0
    input__transport: str = 'raw'
    depth__enabled: bool = False
    depth__slop_ms: float = 50.0
    depth__max_depth: float = 10.0
    depth__erode_px: int = 2
    depth__min_points: int = 20
    depth__publish_points: bool = False
    depth__publish_markers: bool = False
    qos__reliability: str = 'best_effort'
    qos__depth: int = 1
    publish__label_image: bool = True
    publish__overlay: bool = False
    publish__overlay_alpha: float = 0.5
    diagnostics__period: float = 1.0
    limits__max_image_pixels: int = InputLimits.max_image_pixels
    limits__max_aspect_ratio: float = InputLimits.max_aspect_ratio
    limits__max_text_chars: int = InputLimits.max_text_chars
    limits__max_text_items: int = InputLimits.max_text_items
    limits__max_prompt_points: int = InputLimits.max_prompt_points
    limits__prompt_rate: float = 20.0
    autostart: bool = True

    def __post_init__(self):
        for name, allowed in (('runtime__backend', BACKENDS), ('runtime__precision', PRECISIONS),
                              ('input__transport', TRANSPORTS), ('qos__reliability', RELIABILITIES),
                              ('pipeline__mode', tuple(m.value for m in Mode))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{ros_name(name)}: '{getattr(self, name)}' is not one of {', '.join(allowed)}")
        self.check_cameras()
        if not self.runtime__device == 'cpu' and not self.runtime__device.startswith('cuda'):
            raise ValueError(f"runtime.device: '{self.runtime__device}' is not cpu, cuda or cuda:N")
        if self.model__short_side != 0 and self.model__short_side < 32:
            raise ValueError(f'model.short_side must be 0 (the checkpoint\'s) or >= 32, got {self.model__short_side}')
        for name, low in (('qos__depth', 1), ('depth__slop_ms', 0), ('depth__erode_px', 0),
                          ('depth__min_points', 1)):
            if not getattr(self, name) >= low:
                raise ValueError(f'{ros_name(name)} must be >= {low}, got {getattr(self, name)}')
        for name in ('limits__max_image_pixels', 'limits__max_text_chars', 'limits__max_text_items',
                     'limits__max_prompt_points'):
            if not getattr(self, name) >= 1:
                raise ValueError(f'{ros_name(name)} must be >= 1, got {getattr(self, name)}')
        if not self.limits__max_aspect_ratio >= 1:
            raise ValueError(f'limits.max_aspect_ratio must be >= 1, got {self.limits__max_aspect_ratio}')
        for name in ('depth__max_depth', 'diagnostics__period', 'limits__prompt_rate'):
            if not getattr(self, name) > 0:
                raise ValueError(f'{ros_name(name)} must be > 0, got {getattr(self, name)}')
        for name in ('pipeline__score_threshold', 'tracking__min_confidence', 'tracking__reid_similarity'):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f'{ros_name(name)} must be in [0, 1], got {getattr(self, name)}')
        for name in ('tracking__lost_timeout', 'tracking__everything__lost_timeout',
                     'tracking__everything__max_misses'):
            if not getattr(self, name) >= 0:
                raise ValueError(f'{ros_name(name)} must be >= 0, got {getattr(self, name)}')
        if self.tracking__everything__min_hits < 1:
            raise ValueError(f'tracking.everything.min_hits must be >= 1, got {self.tracking__everything__min_hits}')
        try:
            self.pipeline_config()
        except ValueError as exc:
            raise ValueError(f'pipeline: {exc}') from exc

    def check_cameras(self) -> None:
        cameras = self.cameras
        if cameras == ('',):
            return
        bad = [c for c in cameras if not CAMERA_NAME.fullmatch(c)]
        if bad or not cameras or len(set(cameras)) != len(cameras) or len(cameras) > MAX_CAMERAS:
            raise ValueError(f'cameras: {list(cameras)} must be [\'\'] (one camera, topics without a prefix) or up '
                             f'to {MAX_CAMERAS} distinct names of letters, digits and _ (starting with a letter)')

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> 'SeemParams':
        """Build from ``{ros_name: value}``; missing names keep their defaults."""
        kwargs: Dict[str, Any] = {}
        for f in fields(cls):
            name = ros_name(f.name)
            if name in values:
                value = values[name]
                kwargs[f.name] = tuple(value) if isinstance(f.default, tuple) else value
        return cls(**kwargs)

    @classmethod
    def from_node(cls, node) -> 'SeemParams':
        """Read every declared parameter of ``node`` (see :func:`declare`)."""
        return cls.from_values({ros_name(f.name): node.get_parameter(ros_name(f.name)).value for f in fields(cls)})

    def requested_model(self) -> str:
        """'variant/version' as asked for ('checkpoint' where the checkpoint is to say)."""
        return f"{self.model__variant or 'checkpoint'}/{self.model__version or 'checkpoint'}"

    def predictor_options(self) -> dict:
        """Keyword arguments of ``SeemPredictor.from_checkpoint`` for these parameters."""
        return dict(variant=self.model__variant or None, version=self.model__version or None,
                    short_side=self.model__short_side or None, device=self.runtime__device,
                    backend=self.runtime__backend, precision=self.runtime__precision,
                    onnx_dir=self.runtime__onnx_dir or None, engine_dir=self.runtime__engine_dir or None,
                    deterministic=self.model__deterministic)

    def input_limits(self) -> InputLimits:
        return InputLimits(max_image_pixels=self.limits__max_image_pixels,
                           max_aspect_ratio=self.limits__max_aspect_ratio,
                           max_text_chars=self.limits__max_text_chars, max_text_items=self.limits__max_text_items,
                           max_prompt_points=self.limits__max_prompt_points)

    def pipeline_config(self) -> PipelineConfig:
        prompted = PromptedConfig(min_confidence=self.tracking__min_confidence,
                                  lost_timeout_s=self.tracking__lost_timeout,
                                  reid_similarity=self.tracking__reid_similarity)
        everything = EverythingConfig(min_score=self.pipeline__score_threshold,
                                      reid_similarity=self.tracking__reid_similarity,
                                      min_hits=self.tracking__everything__min_hits,
                                      max_misses=self.tracking__everything__max_misses,
                                      lost_timeout_s=self.tracking__everything__lost_timeout)
        return PipelineConfig(
            mode=Mode(self.pipeline__mode), vocabulary=self.pipeline__vocabulary,
            max_objects=self.pipeline__max_objects, ring_size=self.pipeline__ring_size,
            stamp_tolerance_ns=int(self.pipeline__stamp_tolerance * 1e9), overlay=self.publish__overlay,
            overlay_alpha=self.publish__overlay_alpha, prompted=prompted, everything=everything)


DESCRIPTIONS = {
    'cameras': "camera names served by this node with one model: each camera's inputs are <camera>/image "
               "(<camera>/depth, ...), its prompt topics ~/<camera>/prompt (...) and outputs ~/<camera>/objects "
               "(...); [''] = one camera with today's unprefixed topics",
    'model.checkpoint': 'SEEM checkpoint file (official .pt format); required',
    'model.variant': "model variant: focalt | focall | tiny; '' = what the checkpoint says, else focalt",
    'model.version': "decoder version of the checkpoint: v1 | v0; '' = what the checkpoint says, else v1",
    'model.short_side': 'input images are resized so that their short side has this many pixels; 0 = what the '
                        'checkpoint says, else 512 (the official demo)',
    'model.deterministic': 'reproducible masks (seeded sampling of prompt pixels)',
    'runtime.backend': 'inference backend: auto | torch | onnxruntime | tensorrt | onnxruntime-cuda | torch-cuda | '
                       'onnxruntime-cpu | torch-cpu (auto: the first that works, in that order)',
    'runtime.device': 'cpu | cuda | cuda:N',
    'runtime.precision': 'fp32 | fp16 | bf16 (autocast, CUDA)',
    'runtime.onnx_dir': 'directory of `seem-ros export` graphs (onnxruntime and tensorrt backends)',
    'runtime.engine_dir': 'TensorRT engine and timing cache directory (default: <onnx_dir>/engines)',
    'pipeline.mode': 'prompted (objects users asked for) | everything (panoptic over the vocabulary) | both; '
                     'changeable at runtime',
    'pipeline.vocabulary': 'class names for everything mode; changeable at runtime',
    'pipeline.score_threshold': 'everything-mode segments below this score are dropped; changeable at runtime',
    'pipeline.max_objects': 'most prompted objects, and most everything-mode segments per image',
    'pipeline.ring_size': 'recent images kept so that a prompt can refer to the image it was drawn on',
    'pipeline.stamp_tolerance': 'seconds between a prompt stamp and the buffered image it picks',
    'input.transport': 'raw (subscribe to image) | compressed (subscribe to image/compressed)',
    'tracking.min_confidence': 'a prompted object found with a lower confidence (mean mask probability) is '
                               'reported LOST; changeable at runtime',
    'tracking.lost_timeout': 'seconds a lost prompted object is kept for re-identification before it is removed; '
                             'changeable at runtime',
    'tracking.reid_similarity': 'appearance similarity in [0, 1] a lost object needs to be re-identified; '
                                'changeable at runtime',
    'tracking.everything.min_hits': 'consecutive images an everything-mode segment needs before it gets an id; '
                                    'changeable at runtime',
    'tracking.everything.max_misses': 'images a lost everything-mode track is kept; changeable at runtime',
    'tracking.everything.lost_timeout': 'seconds a lost everything-mode track is kept; changeable at runtime',
    'depth.enabled': 'subscribe to depth (aligned, 16UC1 mm or 32FC1 m) and depth/camera_info, and fill the 3D '
                     'fields of every object',
    'depth.slop_ms': 'milliseconds between image and depth stamps for them to be paired',
    'depth.max_depth': 'metres; farther depth is invalid',
    'depth.erode_px': 'depth pixels eroded from each mask before its depth statistics (robust to mask edges)',
    'depth.min_points': 'fewest valid depth points for position_valid',
    'depth.publish_points': 'publish ~/points (PointCloud2 of every object with a track_id field)',
    'depth.publish_markers': 'publish ~/markers (MarkerArray: a box and the id of every object, for RViz)',
    'qos.reliability': 'reliability of the image subscriptions: best_effort | reliable',
    'qos.depth': 'history depth of the image subscriptions and of the outputs',
    'publish.label_image': 'publish ~/label_image (mono16, pixel = track id)',
    'publish.overlay': 'publish ~/overlay (rgb8, masks and ids drawn)',
    'publish.overlay_alpha': 'mask opacity in the overlay',
    'diagnostics.period': 'seconds between ~/diagnostics messages',
    'autostart': 'configure and activate the lifecycle node on start; a failed configure then exits non-zero',
    'limits.max_image_pixels': 'images (camera, depth, referring, masks) with more pixels are rejected',
    'limits.max_aspect_ratio': 'images whose long side exceeds the short side this many times are rejected',
    'limits.max_text_chars': 'texts (~/text, Prompt.text) longer than this are rejected',
    'limits.max_text_items': 'most comma-separated objects one ~/text message may add',
    'limits.max_prompt_points': 'most clicks of one prompt and most points of one scribble or polygon',
    'limits.prompt_rate': 'prompts per second each source (topic or service) may send; more are rejected',
}
RUNTIME = frozenset(('pipeline.mode', 'pipeline.vocabulary', 'pipeline.score_threshold', 'pipeline.max_objects',
                     'pipeline.ring_size', 'pipeline.stamp_tolerance', 'tracking.min_confidence',
                     'tracking.lost_timeout', 'tracking.reid_similarity', 'tracking.everything.min_hits',
                     'tracking.everything.max_misses', 'tracking.everything.lost_timeout'))


def ros_name(field_name: str) -> str:
    return field_name.replace('__', '.')


def declare(node) -> None:
    """Declare every parameter on ``node`` with its default and description."""
    for f in fields(SeemParams):
        name = ros_name(f.name)
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        node.declare_parameter(name, default, ParameterDescriptor(description=DESCRIPTIONS[name]))

"""The node's ROS parameters: one table of names, defaults and descriptions, and a validated dataclass."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Tuple

from rcl_interfaces.msg import ParameterDescriptor

from ..pipeline import Mode, PipelineConfig

BACKENDS = ('torch',)
PRECISIONS = ('fp32', 'fp16', 'bf16')
TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')


@dataclass(frozen=True)
class SeemParams:
    """Validated node parameters; field ``a__b`` is the ROS parameter ``a.b``. Invalid values raise
    ``ValueError`` naming the parameter (variant and version are checked by the model builder)."""

    model__checkpoint: str = ''
    model__variant: str = 'focalt'
    model__version: str = 'v1'
    model__short_side: int = 512
    model__deterministic: bool = True
    runtime__backend: str = 'torch'
    runtime__device: str = 'cpu'
    runtime__precision: str = 'fp32'
    pipeline__mode: str = 'prompted'
    pipeline__vocabulary: Tuple[str, ...] = ('person', 'cup', 'bottle', 'chair', 'table', 'laptop', 'book')
    pipeline__score_threshold: float = 0.5
    pipeline__object_threshold: float = 0.0
    pipeline__max_objects: int = 32
    pipeline__ring_size: int = 30
    pipeline__stamp_tolerance: float = 0.01
    input__transport: str = 'raw'
    input__depth: bool = False
    input__depth_slop: float = 0.05
    qos__reliability: str = 'best_effort'
    qos__depth: int = 1
    publish__label_image: bool = True
    publish__overlay: bool = False
    publish__overlay_alpha: float = 0.5
    diagnostics__period: float = 1.0
    autostart: bool = True

    def __post_init__(self):
        for name, allowed in (('runtime__backend', BACKENDS), ('runtime__precision', PRECISIONS),
                              ('input__transport', TRANSPORTS), ('qos__reliability', RELIABILITIES),
                              ('pipeline__mode', tuple(m.value for m in Mode))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{ros_name(name)}: '{getattr(self, name)}' is not one of {', '.join(allowed)}")
        if not self.runtime__device == 'cpu' and not self.runtime__device.startswith('cuda'):
            raise ValueError(f"runtime.device: '{self.runtime__device}' is not cpu, cuda or cuda:N")
        for name, low in (('model__short_side', 32), ('qos__depth', 1)):
            if getattr(self, name) < low:
                raise ValueError(f'{ros_name(name)} must be >= {low}, got {getattr(self, name)}')
        for name in ('input__depth_slop', 'diagnostics__period'):
            if not getattr(self, name) > 0:
                raise ValueError(f'{ros_name(name)} must be > 0, got {getattr(self, name)}')
        try:
            self.pipeline_config()
        except ValueError as exc:
            raise ValueError(f'pipeline: {exc}') from exc

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> 'SeemParams':
        """Build from ``{ros_name: value}``; missing names keep their defaults."""
        kwargs = {}
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

    def pipeline_config(self) -> PipelineConfig:
        return PipelineConfig(
            mode=Mode(self.pipeline__mode), vocabulary=self.pipeline__vocabulary,
            score_threshold=self.pipeline__score_threshold, object_threshold=self.pipeline__object_threshold,
            max_objects=self.pipeline__max_objects, ring_size=self.pipeline__ring_size,
            stamp_tolerance_ns=int(self.pipeline__stamp_tolerance * 1e9), overlay=self.publish__overlay,
            overlay_alpha=self.publish__overlay_alpha)


DESCRIPTIONS = {
    'model.checkpoint': 'SEEM checkpoint file (official .pt format); required',
    'model.variant': 'model variant: focalt | focall (tiny: tests only)',
    'model.version': 'decoder version of the checkpoint: v1 | v0',
    'model.short_side': 'input images are resized so that their short side has this many pixels',
    'model.deterministic': 'reproducible masks (seeded sampling of prompt pixels)',
    'runtime.backend': 'inference backend: torch',
    'runtime.device': 'cpu | cuda | cuda:N',
    'runtime.precision': 'fp32 | fp16 | bf16 (autocast, CUDA)',
    'pipeline.mode': 'prompted (objects users asked for) | everything (panoptic over the vocabulary) | both; '
                     'changeable at runtime',
    'pipeline.vocabulary': 'class names for everything mode; changeable at runtime',
    'pipeline.score_threshold': 'everything-mode segments below this score are dropped; changeable at runtime',
    'pipeline.object_threshold': 'a prompted object below this score is reported LOST; changeable at runtime',
    'pipeline.max_objects': 'most prompted objects, and most everything-mode segments per image',
    'pipeline.ring_size': 'recent images kept so that a prompt can refer to the image it was drawn on',
    'pipeline.stamp_tolerance': 'seconds between a prompt stamp and the buffered image it picks',
    'input.transport': 'raw (subscribe to image) | compressed (subscribe to image/compressed)',
    'input.depth': 'subscribe to an aligned depth image (16UC1 mm or 32FC1 m)',
    'input.depth_slop': 'seconds between image and depth stamps for them to be paired',
    'qos.reliability': 'reliability of the image subscriptions: best_effort | reliable',
    'qos.depth': 'history depth of the image subscriptions and of the outputs',
    'publish.label_image': 'publish ~/label_image (mono16, pixel = track id)',
    'publish.overlay': 'publish ~/overlay (rgb8, masks and ids drawn)',
    'publish.overlay_alpha': 'mask opacity in the overlay',
    'diagnostics.period': 'seconds between ~/diagnostics messages',
    'autostart': 'configure and activate the lifecycle node on start',
}
RUNTIME = frozenset(('pipeline.mode', 'pipeline.vocabulary', 'pipeline.score_threshold', 'pipeline.object_threshold',
                     'pipeline.max_objects', 'pipeline.ring_size', 'pipeline.stamp_tolerance'))


def ros_name(field_name: str) -> str:
    return field_name.replace('__', '.')


def declare(node) -> None:
    """Declare every parameter on ``node`` with its default and description."""
    for f in fields(SeemParams):
        name = ros_name(f.name)
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        node.declare_parameter(name, default, ParameterDescriptor(description=DESCRIPTIONS[name]))

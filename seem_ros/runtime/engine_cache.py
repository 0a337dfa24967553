"""TensorRT engine cache: the cache key, validation, atomic storage and rebuild rules.

Pure Python (no TensorRT, no CUDA): building and deserializing are delegated to an
:class:`EngineFactory`, so the rules can be tested with a fake one.

Layout of a cache directory (one per device by default, see :func:`device_cache_dir`)::

    <graph>.<precision>.engine   serialized plan
    <graph>.<precision>.json     {"key": {...}, "plan_sha256": ..., "plan_bytes": ..., "built_s": ...}
    timing-<trt version>.cache   TensorRT timing cache of this device

An engine is served only when its sidecar key equals the expected :class:`EngineKey` field by
field (ONNX sha256, TensorRT version, GPU name, compute capability, precision recipe, profile
shapes, platform), the plan's sha256 matches the sidecar and the factory deserializes it. Any
failure is logged with its reason and triggers a rebuild; a rebuilt engine must pass
``factory.validate`` (the parity check) before it is written. Files are written to a temporary
name in the same directory, fsynced and renamed, plan first and sidecar last.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, List, Optional, Protocol, Tuple

LOG = logging.getLogger('seem_ros.runtime.engine_cache')

Shape = Tuple[int, ...]


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; two engines are interchangeable only if their keys are equal.

    ``profiles``: per dynamic input ``(name, min, opt, max)`` shapes (empty for static graphs).
    ``platform``: anything else that invalidates engines on this machine (e.g. the L4T release
    on Jetson, plugin library hashes).
    """

    graph: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profiles: Tuple[Tuple[str, Shape, Shape, Shape], ...] = ()
    platform: str = ''

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> 'EngineKey':
        """Rebuild a key from :meth:`to_json` output (ValueError on missing or unknown fields)."""
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            raise ValueError(f'engine key fields {sorted(data)} != {sorted(names)}')
        data = dict(data)
        data['profiles'] = tuple((str(n), tuple(a), tuple(b), tuple(c)) for n, a, b, c in data['profiles'])
        return cls(**data)

    def differences(self, other: 'EngineKey') -> List[str]:
        """``field: stored -> expected`` for every field where ``other`` (stored) differs."""
        return [f'{f.name}: {getattr(other, f.name)!r} -> {getattr(self, f.name)!r}'
                for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]


class EngineFactory(Protocol):
    """Builds, loads and checks engines (TensorRT in production, a fake in unit tests)."""

    def build(self, key: EngineKey) -> bytes:
        """Serialized plan for ``key`` (may take minutes)."""

    def deserialize(self, plan: bytes) -> Optional[Any]:
        """The engine of ``plan``, or None when it cannot be deserialized."""

    def validate(self, engine: Any, key: EngineKey) -> None:
        """Raise when a freshly built engine disagrees with the reference (parity check)."""


def slug(text: str) -> str:
    """File-name-safe form of ``text`` ('NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3')."""
    return re.sub(r'[^a-z0-9.]+', '-', text.lower()).strip('-') or 'unknown'


def device_cache_dir(root, gpu_name: str, compute_capability: str) -> Path:
    """Per-device cache directory ``root/<gpu slug>-sm<cc>``."""
    return Path(root) / f'{slug(gpu_name)}-sm{compute_capability.replace(".", "")}'


def timing_cache_path(directory, tensorrt_version: str) -> Path:
    """The device directory's timing cache of ``tensorrt_version`` (caches are not portable across versions)."""
    return Path(directory) / f'timing-{slug(tensorrt_version)}.cache'


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EngineCache:
    """Engines of one device in ``directory``, built on demand by ``factory``."""

    def __init__(self, directory, factory: EngineFactory):
        self.directory = Path(directory)
        self.factory = factory

    def paths(self, key: EngineKey) -> Tuple[Path, Path]:
        """(plan, sidecar) paths of ``key``."""
        stem = f'{key.graph}.{slug(key.precision.split("/")[0])}'
        return self.directory / f'{stem}.engine', self.directory / f'{stem}.json'

    def load(self, key: EngineKey) -> Tuple[Optional[Any], str]:
        """``(engine, '')`` for a valid cached engine of ``key``, else ``(None, reason)``."""
        plan_path, meta_path = self.paths(key)
        if not plan_path.is_file() or not meta_path.is_file():
            return None, 'no cached engine'
        try:
            meta = json.loads(meta_path.read_text())
            stored = EngineKey.from_json(meta['key'])
        except (ValueError, KeyError, TypeError) as exc:
            return None, f'unreadable sidecar {meta_path.name} ({exc})'
        if stored != key:
            return None, 'cache key mismatch (' + '; '.join(key.differences(stored)) + ')'
        plan = plan_path.read_bytes()
        if len(plan) != meta.get('plan_bytes') or hashlib.sha256(plan).hexdigest() != meta.get('plan_sha256'):
            return None, f'engine file {plan_path.name} is corrupt (size or sha256 differs from its sidecar)'
        try:
            engine = self.factory.deserialize(plan)
        except Exception as exc:  # TensorRT raises on some corrupt or foreign plans
            return None, f'deserialization failed ({type(exc).__name__}: {exc})'
        if engine is None:
            return None, 'deserialization returned no engine'
        return engine, ''

    def load_or_build(self, key: EngineKey) -> Any:
        """A valid engine of ``key``: the cached one, or a new build that passed validation.

        Raises whatever ``factory.build`` / ``factory.validate`` raise; nothing is written then.
        """
        engine, reason = self.load(key)
        if engine is not None:
            LOG.info('engine %s: loaded from %s', key.graph, self.directory)
            return engine
        LOG.warning('engine %s: building (%s)', key.graph, reason)
        start = time.monotonic()
        plan = bytes(self.factory.build(key))
        engine = self.factory.deserialize(plan)
        if engine is None:
            raise RuntimeError(f'engine {key.graph}: a freshly built plan could not be deserialized')
        self.factory.validate(engine, key)
        seconds = time.monotonic() - start
        plan_path, meta_path = self.paths(key)
        atomic_write(plan_path, plan)
        meta = {'key': key.to_json(), 'plan_sha256': hashlib.sha256(plan).hexdigest(), 'plan_bytes': len(plan),
                'built_s': round(seconds, 1), 'built_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
        atomic_write(meta_path, (json.dumps(meta, indent=1, sort_keys=True) + '\n').encode())
        LOG.info('engine %s: built and validated in %.0f s, %d MB -> %s', key.graph, seconds, len(plan) >> 20,
                 plan_path)
        return engine

"""Exported graphs on first use: a cache of ``seem-ros export`` directories keyed by checkpoint and size.

Graph backends (onnxruntime, TensorRT) run the fixed-shape graphs of one padded model input
(:func:`~seem_ros.runtime.export.padded_size` of the camera resolution and the model's short
side). :func:`cached_export` returns the export directory of a checkpoint at a camera size,
exporting it (every graph verified against PyTorch, see :mod:`seem_ros.runtime.export`) the first
time. The cache lives in ``$SEEM_ROS_CACHE`` (default ``$XDG_CACHE_HOME/seem_ros``, else
``~/.cache/seem_ros``), under ``onnx/<variant>-<version>-<checkpoint sha256>-<Hp>x<Wp>-<code digest>``
(:func:`code_digest`: graphs exported by other model or export code are not reused);
a directory appears only once all its graphs are written (built under a temporary name, then
renamed), so an interrupted export is redone, never half used. Processes that need the same
export at once (two nodes starting, parallel test workers) take turns on a lock file: the first
exports, the others then find its result.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

from . import export as ex

PACKAGE = Path(__file__).resolve().parents[1]


def code_digest() -> str:
    """12 hex digits of sha256 over the sources that define the graphs (``seem_ros/model/*.py``,
    ``seem_ros/runtime/export.py``)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.glob('model/*.py')) + [PACKAGE / 'runtime' / 'export.py']:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def cache_root() -> Path:
    """The cache directory (see the module docstring)."""
    explicit = os.environ.get('SEEM_ROS_CACHE')
    if explicit:
        return Path(explicit)
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'seem_ros'


def cached_export(checkpoint, *, variant: str, version: str, height: int, width: int, short_side: int,
                  cache_dir: Optional[Path] = None, log: Callable[[str], None] = print) -> Path:
    """The export directory of ``checkpoint`` (``variant``/``version``) for (height, width) camera
    images resized to ``short_side``: fp32 encoder, text, prompt encoder, decoder and memory
    decoder graphs. Exports them when the cache does not hold them yet (``log`` tells so).

    Raises:
        ExportParityError: a graph disagrees with PyTorch (nothing is cached).
    """
    size = ex.padded_size(height, width, short_side=short_side)
    digest = ex.sha256_file(checkpoint)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / 'onnx' / f'{variant}-{version}-{digest[:16]}-{size[0]}x{size[1]}-{code_digest()}'
    if (target / ex.MANIFEST).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f'.{target.name}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # released when the file closes
        if not (target / ex.MANIFEST).is_file():
            log(f'exporting the graphs of {checkpoint} for {width}x{height} camera images (model input '
                f'{size[1]}x{size[0]}) into {target} (once; later runs reuse them)')
            _export(checkpoint, variant, version, size, digest, target)
    return target


def _export(checkpoint, variant: str, version: str, size, digest: str, target: Path) -> None:
    """Export the cached graphs of ``checkpoint`` at padded ``size`` into ``target`` (atomically)."""
    import torch

    from ..model.build import build_seem
    jobs = ex.plan(ex.DEFAULT_GROUPS, [size], ['fp32'])
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f'.{target.name}.'))
    try:
        with torch.no_grad():
            model = build_seem(variant, version=version, checkpoint=str(checkpoint))
            cfg = ex.ExportConfig.of(model, variant, checkpoint_sha256=digest)
            for kind, graph_size, precision in jobs:
                ex.export_graph(model, cfg, kind, graph_size, work, precision=precision)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)

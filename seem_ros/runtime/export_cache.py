"""Exported graphs on first use: a cache of ``seem-ros export`` directories keyed by checkpoint and size.

Graph backends (onnxruntime, TensorRT) run the fixed-shape graphs of one padded model input
(:func:`~seem_ros.runtime.export.padded_size` of the camera resolution and the model's short
side). :func:`cached_export` returns the export directory of a checkpoint at a camera size,
exporting it (every graph verified against PyTorch, see :mod:`seem_ros.runtime.export`) the first
time. The cache lives in ``$SEEM_ROS_CACHE`` (default ``$XDG_CACHE_HOME/seem_ros``, else
``~/.cache/seem_ros``), under ``onnx/<variant>-<version>-<checkpoint sha256>-<Hp>x<Wp>-<code digest>``
(:func:`code_digest`: graphs exported by other model or export code are not reused);
a directory appears only once all its graphs are written (built under a temporary name, then
renamed), so an interrupted export is redone, never half used.
"""
from __future__ import annotations

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
    import torch

    from ..model.build import build_seem
    size = ex.padded_size(height, width, short_side=short_side)
    digest = ex.sha256_file(checkpoint)
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    target = root / 'onnx' / f'{variant}-{version}-{digest[:16]}-{size[0]}x{size[1]}-{code_digest()}'
    if (target / ex.MANIFEST).is_file():
        return target
    jobs = ex.plan(ex.DEFAULT_GROUPS, [size], ['fp32'])
    log(f'exporting {len(jobs)} graphs of {checkpoint} for {width}x{height} camera images '
        f'(model input {size[1]}x{size[0]}) into {target} (once; later runs reuse them)')
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f'.{target.name}.'))
    try:
        with torch.no_grad():
            model = build_seem(variant, version=version, checkpoint=str(checkpoint))
            cfg = ex.ExportConfig.of(model, variant, checkpoint_sha256=digest)
            for kind, graph_size, precision in jobs:
                ex.export_graph(model, cfg, kind, graph_size, work, precision=precision)
        try:
            os.replace(work, target)
        except OSError:          # another process finished the same export first
            if not (target / ex.MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target

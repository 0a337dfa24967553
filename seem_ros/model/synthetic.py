"""Deterministic synthetic SEEM weights and the state-dict manifests they are generated from.

The weight rule is the one the official reference fixtures were produced with: every tensor
gets its own ``torch.Generator`` seeded with ``zlib.crc32(key)``, one ``torch.randn`` call over
the full shape, then a scale chosen by the key's role (table, matrix, bias, norm scale). The
rule is order independent, so any subset of keys can be generated on its own.

Manifests are tab-separated ``key<TAB>shape<TAB>dtype`` rows (e.g.
``backbone.norm0.weight\t(96,)\ttorch.float32``) in official ``state_dict()`` order. The
official Focal-T and Focal-L manifests ship with the package (``manifests/keys_*.tsv``).
"""
import math
import zlib
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Tuple

import torch

MANIFEST_DIR = Path(__file__).resolve().parent / 'manifests'
MANIFEST_VARIANTS = ('focalt', 'focall')

# Parameters that are embedding / positional tables (std 1, no fan-in scaling).
TABLES = frozenset({
    'query_feat', 'query_embed', 'level_embed', 'spatial_embed', 'spatial_featured', 'pn_indicator',
    'token_embedding', 'positional_embedding', 'pos_embed', 'rel_pos_h', 'rel_pos_w'})


class ManifestRow(NamedTuple):
    """One state-dict entry: full key, shape and dtype."""

    key: str
    shape: Tuple[int, ...]
    dtype: torch.dtype


def _parse_shape(text: str) -> Tuple[int, ...]:
    inner = text.strip().strip('()')
    return tuple(int(part) for part in inner.split(',') if part.strip())


def read_manifest(path) -> List[ManifestRow]:
    """Read a ``key<TAB>shape<TAB>dtype`` manifest file into rows (file order kept)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        key, shape, dtype = line.split('\t')
        rows.append(ManifestRow(key, _parse_shape(shape), getattr(torch, dtype.replace('torch.', ''))))
    return rows


def load_manifest(variant: str) -> List[ManifestRow]:
    """The packaged official manifest of ``variant`` ('focalt' or 'focall')."""
    if variant not in MANIFEST_VARIANTS:
        raise ValueError(f'unknown manifest variant {variant!r}; expected one of {MANIFEST_VARIANTS}')
    return read_manifest(MANIFEST_DIR / f'keys_{variant}.tsv')


def synthetic_tensor(key: str, shape: Tuple[int, ...]) -> torch.Tensor:
    """The float32 CPU tensor the reference weight rule assigns to ``key`` (full official key)."""
    shape = tuple(shape)
    if key == 'dilation_kernel':
        return torch.ones(shape, dtype=torch.float32)
    if key == 'criterion.empty_weight':
        weight = torch.ones(shape, dtype=torch.float32)
        weight[-1] = 0.1
        return weight
    if len(shape) == 0:  # lang_encoder.logit_scale
        return torch.tensor(math.log(1 / 0.07), dtype=torch.float32)
    generator = torch.Generator(device='cpu')
    generator.manual_seed(zlib.crc32(key.encode('utf-8')))
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    parts = key.split('.')
    last = parts[-1]
    owner = parts[-2] if last == 'weight' else last
    if len(shape) >= 2 and (owner in TABLES or last in TABLES):
        return noise
    if len(shape) >= 2:
        return noise * (1.0 / math.sqrt(math.prod(shape[1:])))
    if last.endswith('bias'):
        return noise * 0.1
    return 1.0 + 0.1 * noise


def synthetic_state_dict(manifest_rows: Iterable[ManifestRow], prefix: str = '') -> Dict[str, torch.Tensor]:
    """Synthetic tensors for ``manifest_rows``.

    Seeds always come from the full official key. With ``prefix``, only rows under it are
    generated and the prefix is stripped from the returned keys (e.g. ``prefix='backbone.'``
    gives a state dict for the backbone module alone).
    """
    return {row.key[len(prefix):]: synthetic_tensor(row.key, row.shape)
            for row in manifest_rows if row.key.startswith(prefix)}

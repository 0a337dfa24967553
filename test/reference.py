"""Access to the official SEEM reference arrays in ``test/fixtures/`` (see tools/make_fixtures.py)."""
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / 'fixtures'
_FILE_OF_PREFIX = {'a.': 'a_image_path.npz', 'b.': 'b_text_encoder.npz', 'c0.': 'c_grounding.npz'}


@lru_cache(maxsize=None)
def meta():
    return json.loads((FIXTURES / 'reference.json').read_text())['arrays']


@lru_cache(maxsize=None)
def _npz(name):
    return np.load(FIXTURES / name)


def load(key):
    """The stored reference array ``key`` (bool arrays unpacked; sliced arrays as stored)."""
    name = next(f for p, f in _FILE_OF_PREFIX.items() if key.startswith(p))
    arr = _npz(name)[key]
    info = meta()[key]
    if 'packed_bits' in info:
        arr = np.unpackbits(arr)[:info['packed_bits']].astype(bool).reshape(info['shape'])
    return arr


def stored_view(key, full):
    """Apply the slice the fixture stores for ``key`` to an array of the full reference shape."""
    full = np.asarray(full)
    assert list(full.shape) == meta()[key]['shape'], (key, full.shape, meta()[key]['shape'])
    text = meta()[key].get('slice')
    if text is None:
        return full
    step = int(text.split('::')[1].rstrip(']'))
    return full[:, ::step]


def assert_close(key, actual, relaxed=False):
    """Compare ``actual`` (full shape) to the reference with the fixture's tolerance (rtol 0).

    ``relaxed=True`` applies the README procedure for attention-mask flips: everything within
    ``relaxed_atol`` and at least ``relaxed_min_fraction_within_atol`` within the strict atol.
    """
    info = meta()[key]
    ref = load(key)
    mine = stored_view(key, np.asarray(actual, dtype=np.float64))
    err = np.abs(mine - ref)
    atol = info['atol']
    if not relaxed:
        assert err.max() <= atol, f'{key}: max |err| {err.max():.3g} > atol {atol} ({(err > atol).sum()} elements)'
        return
    assert err.max() <= info['relaxed_atol'], f'{key}: max |err| {err.max():.3g} > relaxed atol {info["relaxed_atol"]}'
    frac = float((err <= atol).mean())
    need = info['relaxed_min_fraction_within_atol']
    assert frac >= need, f'{key}: only {frac:.4f} within atol {atol} (need {need})'

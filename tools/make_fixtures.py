"""Extract the reference arrays the tests assert on into ``test/fixtures/``.

The golden outputs of the official SEEM code (synthetic weights) come as three large
``.npz`` files plus ``index.json``. This keeps what the tests use, in compressed form:

* small arrays in full;
* large float arrays as a fixed slice (every k-th channel or query), recorded in
  ``test/fixtures/reference.json`` next to each array's tolerance;
* boolean attention masks bit-packed (``np.packbits``), with their original length.

Usage: ``python tools/make_fixtures.py SEEM_REFERENCE_DIR``.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

MAX_FULL_BYTES = 700_000
OUT = Path(__file__).resolve().parent.parent / 'test' / 'fixtures'


def slice_for(arr):
    """Return (slice tuple, text) that keeps ``arr`` under MAX_FULL_BYTES, striding axis 1."""
    if arr.nbytes <= MAX_FULL_BYTES or arr.ndim < 2:
        return None, None
    step = int(np.ceil(arr.nbytes / MAX_FULL_BYTES))
    sl = (slice(None), slice(None, None, step))
    return sl, f'[:, ::{step}]'


def main(src):
    src = Path(src)
    index = json.loads((src / 'index.json').read_text())
    meta = {'source': {k: index[k] for k in ('official_repo', 'commit', 'config', 'compute')}, 'arrays': {}}
    OUT.mkdir(parents=True, exist_ok=True)
    for fname, info in index['files'].items():
        data = np.load(src / fname)
        out = {}
        for key in data.files:
            arr = data[key]
            entry = {k: v for k, v in info['arrays'][key].items() if k in (
                'atol', 'relaxed_atol', 'relaxed_min_fraction_within_atol', 'compare', 'top1_minus_top2')}
            entry['shape'] = list(arr.shape)
            if arr.dtype == bool:
                out[key] = np.packbits(arr)
                entry['packed_bits'] = int(arr.size)
            else:
                sl, text = slice_for(arr) if arr.dtype.kind == 'f' else (None, None)
                if sl is not None:
                    arr = arr[sl]
                    entry['slice'] = text
                out[key] = np.ascontiguousarray(arr)
            meta['arrays'][key] = entry
        np.savez_compressed(OUT / fname, **out)
    shutil.copy(src / 'images' / 'image_a.png', OUT / 'image_a.png')
    for variant in ('focalt', 'focall'):
        shutil.copy(src / 'manifests' / f'keys_{variant}_unicl_lang_v1.tsv', OUT / f'keys_{variant}.tsv')
        shutil.copy(src / 'weights' / f'checksums_{variant}_unicl_lang_v1.tsv', OUT / f'checksums_{variant}.tsv')
    (OUT / 'reference.json').write_text(json.dumps(meta, indent=1) + '\n')


if __name__ == '__main__':
    main(sys.argv[1])

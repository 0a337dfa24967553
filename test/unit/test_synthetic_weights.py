"""The synthetic weight rule reproduces the reference checksums; packaged manifests are the official ones."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reference import FIXTURES  # noqa: E402

from seem_ros.model import synthetic  # noqa: E402


def read_checksums(variant):
    lines = (FIXTURES / f'checksums_{variant}.tsv').read_text().splitlines()
    return {fields[0]: fields for fields in (line.split('\t') for line in lines[1:])}


def assert_matches_checksum(row, fields):
    tensor = synthetic.synthetic_tensor(row.key, row.shape)
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == row.shape, row.key
    first = ['%.9g' % value for value in tensor.reshape(-1)[:4].tolist()]
    assert first + [''] * (4 - len(first)) == fields[3:7], row.key
    as_f64 = tensor.double()
    for actual, expected in ((as_f64.sum().item(), float(fields[7])),
                             (as_f64.square().sum().item(), float(fields[8]))):
        assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9), row.key


@pytest.mark.parametrize('variant', synthetic.MANIFEST_VARIANTS)
def test_packaged_manifest_is_the_official_one(variant):
    packaged = (synthetic.MANIFEST_DIR / f'keys_{variant}.tsv').read_bytes()
    assert packaged == (FIXTURES / f'keys_{variant}.tsv').read_bytes()
    rows = synthetic.load_manifest(variant)
    assert [row.key for row in rows] == list(read_checksums(variant))
    assert {row.dtype for row in rows} == {torch.float32}


def test_read_manifest_parses_shapes():
    rows = {row.key: row.shape for row in synthetic.load_manifest('focalt')}
    assert len(rows) == 729
    assert rows['backbone.patch_embed.proj.weight'] == (96, 3, 7, 7)
    assert rows['backbone.norm0.bias'] == (96,)
    assert rows['sem_seg_head.predictor.lang_encoder.logit_scale'] == ()


def test_unknown_manifest_variant():
    with pytest.raises(ValueError, match='focalt'):
        synthetic.load_manifest('samvitb')


def test_focal_t_every_key_matches_checksums():
    checksums = read_checksums('focalt')
    for row in synthetic.load_manifest('focalt'):
        assert_matches_checksum(row, checksums[row.key])


def test_focal_l_keys_not_shared_with_focal_t_match_checksums():
    """Rows with the same key and shape as a Focal-T row give the same tensor, checked above."""
    shared = set(synthetic.load_manifest('focalt'))
    checksums = read_checksums('focall')
    rows = [row for row in synthetic.load_manifest('focall') if row not in shared]
    assert len(rows) == 504 + 4  # every backbone key, input_proj.weight and adapter_{1,2,3}.weight
    for row in rows:
        assert_matches_checksum(row, checksums[row.key])


def test_state_dict_subset_strips_prefix_and_keeps_full_key_seeds():
    rows = synthetic.load_manifest('focalt')
    subset = synthetic.synthetic_state_dict(rows, prefix='backbone.norm')
    assert sorted(subset) == sorted(f'{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert torch.equal(subset['3.bias'], synthetic.synthetic_tensor('backbone.norm3.bias', (768,)))
    buffers = synthetic.synthetic_state_dict([row for row in rows if not row.key.startswith('sem_seg')
                                              and not row.key.startswith('backbone')])
    assert torch.equal(buffers['dilation_kernel'], torch.ones(1, 1, 3, 3))
    assert buffers['criterion.empty_weight'][-1].item() == pytest.approx(0.1)

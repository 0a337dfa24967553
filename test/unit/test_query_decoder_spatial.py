"""SEEM decoder visual-prompt (spatial) path: self-consistency of v1 and v0.

Small random features stand in for an image (padded 96x128); the decoder has the synthetic
reference weights. Runs are compared in float64: in float32, runs with different row counts may
legitimately differ by a flipped cross-attention-mask entry (a logit within rounding of 0).
"""
import pytest
import torch
from torch import nn

from seem_ros.model import synthetic
from seem_ros.model.query_decoder import SeemDecoder
from seem_ros.model.spatial import (interpolation_matrix, mask_mean_features, pad_points, points_from_masks,
                                    sample_points)

PREFIX = 'sem_seg_head.predictor.'
HP, WP = 96, 128
ATOL = 1e-8   # float64 mask logits of order 30; only rounding differs between the compared runs


class LogitScale(nn.Module):
    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.ones([]))


def build_decoders(dtype):
    """{'v1': decoder, 'v0': decoder} sharing the synthetic reference weights, in ``dtype``."""
    rows = [row for row in synthetic.load_manifest('focalt') if row.key.startswith(PREFIX)
            and (not row.key.startswith(PREFIX + 'lang_encoder.') or row.key.endswith('.logit_scale'))]
    state = {key: value.to(dtype) for key, value in synthetic.synthetic_state_dict(rows, PREFIX).items()}
    out = {}
    for version in ('v1', 'v0'):
        with torch.device('meta'):
            out[version] = SeemDecoder(LogitScale(), version=version)
        out[version].load_state_dict(state, assign=True)
        out[version].eval()
    return out


@pytest.fixture(scope='module')
def decoders():
    return build_decoders(torch.float64)


def make_features(seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    multi_scale = [0.6 * torch.randn(1, 512, HP // s, WP // s, generator=gen) for s in (32, 16, 8)]
    mask_features = 0.7 * torch.randn(1, 512, HP // 4, WP // 4, generator=gen)
    return [m.to(dtype) for m in multi_scale], mask_features.to(dtype)


@pytest.fixture(scope='module')
def features():
    return make_features(0)


@pytest.fixture(scope='module')
def first_round(decoders, features):
    """Round-1 outputs (with steps) of the three test prompts, per version."""
    return {version: decode(decoder, features, POS, NEG, return_steps=True) for version, decoder in decoders.items()}


def box(y0, y1, x0, x1):
    mask = torch.zeros(HP, WP, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


EMPTY = torch.zeros(HP, WP, dtype=torch.bool)
POS = torch.stack([box(10, 16, 12, 18), box(50, 54, 70, 75), box(80, 82, 20, 25)])
NEG = torch.stack([box(0, 2, 0, 2), EMPTY, box(90, 92, 120, 122)])


def decode(decoder, features, pos, neg, **kwargs):
    with torch.no_grad():
        return decoder(*features, spatial=decoder.encode_prompts(*features, pos, neg), **kwargs)


def test_query_and_memory_assignment_rules(decoders):
    v1 = decoders['v1']
    assert v1.spatial_query_index(torch.ones(3, dtype=torch.bool)).tolist() == list(range(9))
    assert v1.spatial_query_index(torch.ones(35, dtype=torch.bool))[-3:].tolist() == [1, 2, 3]   # mod 101
    assert v1.spatial_query_index(torch.tensor([True, False, True])).tolist()[6:] == [3, 4, 5]
    assert v1.memory_owner(torch.ones(3, dtype=torch.bool)).tolist() == [(j * 3) // 32 for j in range(32)]
    owner = v1.memory_owner(torch.tensor([True, False, True, False]))
    assert owner.tolist() == [0] * 16 + [2] * 16
    assert decoders['v0'].spatial_query_index(torch.ones(1, dtype=torch.bool)).tolist() == list(range(101))


def test_points_within_budget_are_every_pixel_in_official_order():
    points = points_from_masks(POS, NEG)
    rows = torch.cat([POS.nonzero(), NEG.nonzero()])
    assert points.prompt.tolist() == rows[:, 0].tolist()
    assert points.positive.tolist() == [True] * int(POS.sum()) + [False] * int(NEG.sum())
    assert torch.equal(points.coords, torch.stack([rows[:, 2] / WP, rows[:, 1] / HP], -1))
    assert points.valid.all()


@pytest.mark.parametrize('merged', [False, True])
def test_points_above_budget_are_a_seeded_subset(merged):
    pos = torch.stack([box(0, 40, 0, 40), box(50, 52, 50, 60)])
    first = points_from_masks(pos, torch.zeros_like(pos), merged=merged, max_points=100,
                              generator=torch.Generator().manual_seed(3))
    again = points_from_masks(pos, torch.zeros_like(pos), merged=merged, max_points=100,
                              generator=torch.Generator().manual_seed(3))
    assert len(first.coords) == 100 and torch.equal(first.coords, again.coords)
    if not merged:   # v1: both prompts get about half of the budget despite 1600 vs 20 pixels
        assert int((first.prompt == 1).sum()) >= 15


@pytest.mark.parametrize('version', ['v1', 'v0'])
def test_matmul_mean_equals_sampling_mean(decoders, features, version):
    decoder = decoders[version]
    prompts = decoder.encode_prompts(*features, POS, NEG)
    masks = POS if version == 'v1' else POS.sum(0, keepdim=True)
    mean, counts = mask_mean_features(features[1], masks)
    assert counts.tolist() == masks.flatten(1).sum(1).tolist()
    torch.testing.assert_close(mean[0], prompts.pos_mean, rtol=0, atol=1e-5)   # points are float32
    if version == 'v1':
        neg_mean, _ = mask_mean_features(features[1], NEG[[0, 2]])
        torch.testing.assert_close(neg_mean[0], prompts.neg_mean[[0, 2]], rtol=0, atol=1e-5)


def test_interpolation_matrix_reproduces_point_sampling(features):
    mask_features = features[1]
    ys, xs = torch.tensor([0, 5, 37, 95]), torch.tensor([0, 9, 64, 127])
    coords = torch.stack([xs / WP, ys / HP], -1)
    wy = interpolation_matrix(HP, mask_features.shape[-2], dtype=mask_features.dtype)[ys]
    wx = interpolation_matrix(WP, mask_features.shape[-1], dtype=mask_features.dtype)[xs]
    expected = torch.einsum('nh,nw,chw->nc', wy, wx, mask_features[0])
    torch.testing.assert_close(sample_points(mask_features, coords)[0], expected, rtol=0, atol=1e-5)


def test_empty_prompt_mean_feature(decoders, features):
    pos = torch.stack([POS[0], EMPTY])
    assert torch.all(decoders['v1'].encode_prompts(*features, pos).pos_mean[1] == -1)
    assert torch.all(decoders['v0'].encode_prompts(*features, torch.stack([EMPTY])).pos_mean == 0)


@pytest.mark.parametrize('version', ['v1', 'v0'])
def test_outputs_and_selection(first_round, version):
    out = first_round[version]
    num_prompts, num_spatial = (3, 9) if version == 'v1' else (1, 101)
    assert out['pred_smasks'].shape == (1, num_spatial, HP // 4, WP // 4)
    assert out['pred_pspatials'].shape == (1, num_prompts, 512)
    assert out['prev_mask'].shape == (1, num_prompts, HP // 4, WP // 4)
    assert out['cross_rows']['spatial'] == slice(101, 101 + num_spatial)
    index = out['selected_index'][0]
    if version == 'v1':   # each prompt selects one of its own 3 queries
        assert torch.equal(index // 3, torch.arange(3))
    logits = out['pred_smaskembs'][0] @ out['pred_pspatials'][0].T
    assert torch.allclose(out['selected_score'][0], logits[index, torch.arange(num_prompts)])
    assert torch.equal(out['prev_mask'][0], out['pred_smasks'][0, index])
    assert len(out['aux_outputs']) == 9 and all('pred_smasks' in aux for aux in out['aux_outputs'])


def test_prompt_alone_equals_prompt_in_multi_prompt_pass(decoders, features, first_round):
    decoder = decoders['v1']
    several = first_round['v1']
    alone = decode(decoder, features, POS[:1], NEG[:1])
    torch.testing.assert_close(alone['pred_smasks'], several['pred_smasks'][:, :3], rtol=0, atol=ATOL)
    assert torch.equal(alone['selected_index'], several['selected_index'][:, :1])
    assert torch.equal(alone['pred_masks'], several['pred_masks'])   # object queries never see prompts


def test_fully_padded_prompt_changes_nothing(decoders, features, first_round):
    slot = 1   # a padding slot between valid prompts shifts the ranks of the later ones
    decoder = decoders['v1']
    compact = first_round['v1']
    compact2 = decode(decoder, features, POS, NEG, prev_mask=compact['prev_mask'])
    keep = [i for i in range(4) if i != slot]
    pos, neg = torch.zeros(4, HP, WP, dtype=torch.bool), torch.zeros(4, HP, WP, dtype=torch.bool)
    pos[keep], neg[keep] = POS, NEG
    valid = torch.ones(4, dtype=torch.bool)
    valid[slot] = False
    prev = torch.zeros(1, 4, HP // 4, WP // 4, dtype=compact['prev_mask'].dtype)
    prev[:, keep] = compact['prev_mask']
    with torch.no_grad():
        prompts = decoder.encode_prompts(*features, pos, neg, prompt_valid=valid)
        padded = decoder(*features, spatial=prompts)
        padded2 = decoder(*features, spatial=prompts, prev_mask=prev)
    rows = torch.tensor([3 * i + k for i in keep for k in range(3)])
    for ref, out in ((compact, padded), (compact2, padded2)):
        torch.testing.assert_close(out['pred_smasks'][:, rows], ref['pred_smasks'], rtol=0, atol=ATOL)
        torch.testing.assert_close(out['prev_mask'][:, keep], ref['prev_mask'], rtol=0, atol=ATOL)
        own = out['selected_index'][:, keep] - 3 * torch.tensor(keep)   # choice among the prompt's 3 queries
        assert torch.equal(own, ref['selected_index'] - 3 * torch.arange(3))


@pytest.mark.parametrize('version', ['v1', 'v0'])
def test_second_round_uses_memories(decoders, features, first_round, version):
    decoder = decoders[version]
    first = first_round[version]
    with torch.no_grad():
        prompts = decoder.encode_prompts(*features, POS, NEG)
        second = decoder(*features, spatial=prompts, prev_mask=first['prev_mask'], return_steps=True)
        other = decoder(*features, spatial=prompts, prev_mask=-first['prev_mask'])
    assert second['cross_rows']['memory'].stop - second['cross_rows']['memory'].start == 32
    assert second['query_states'].shape[2] == second['cross_rows']['memory'].stop
    assert not torch.allclose(second['pred_smasks'], first['pred_smasks'], atol=1e-2)
    assert not torch.allclose(second['pred_smasks'], other['pred_smasks'], atol=1e-2)
    assert torch.equal(second['pred_masks'], first['pred_masks'])


def test_memory_cross_attention_follows_prev_mask(decoders):
    decoder = decoders['v1']
    prev = torch.full((1, 2, 4, 4), -5.0)
    prev[0, 1, :2] = 5.0
    owner = decoder.memory_owner(torch.ones(2, dtype=torch.bool))
    blocked = decoder.cross_attention_memory_mask(prev, (2, 2), owner)
    assert blocked.shape == (1, 32, 4)
    assert blocked[0, :16].all() and torch.equal(blocked[0, 16], torch.tensor([False, False, True, True]))
    assert decoders['v0'].cross_attention_memory_mask(prev[:, 1:], (2, 2), None).shape == (1, 32, 4)


def test_referring_image_prompts(decoders, features, first_round):
    decoder = decoders['v1']
    target = make_features(1)
    direct = first_round['v1']
    with torch.no_grad():
        reference_prompts = decoder.encode_prompts(*features, POS, NEG)
        same_image = decoder(*features, spatial=reference_prompts)
        referring = decoder(*target, spatial=reference_prompts)
        round2 = decoder(*target, spatial=reference_prompts, prev_mask=referring['prev_mask'])
    for name in ('pred_smasks', 'prev_mask', 'selected_index'):
        assert torch.equal(same_image[name], direct[name])
    assert torch.equal(referring['pred_pspatials'], direct['pred_pspatials'])   # selection by the reference
    assert not torch.allclose(referring['pred_smasks'], direct['pred_smasks'], atol=1e-2)
    assert torch.equal(referring['selected_index'][0] // 3, torch.arange(3))
    assert round2['prev_mask'].shape == referring['prev_mask'].shape


@pytest.mark.parametrize('version', ['v1', 'v0'])
def test_text_and_visual_prompts_in_one_pass(decoders, features, first_round, version):
    decoder = decoders[version]
    tokens = torch.randn(1, 5, 512, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    visual = first_round[version]
    with torch.no_grad():
        prompts = decoder.encode_prompts(*features, POS, NEG)
        both = decoder(*features, spatial=prompts, grounding_tokens=tokens)
        text = decoder(*features, grounding_tokens=tokens)
    torch.testing.assert_close(both['pred_smasks'], visual['pred_smasks'], rtol=0, atol=ATOL)
    torch.testing.assert_close(both['pred_gmasks'], text['pred_gmasks'], rtol=0, atol=ATOL)
    torch.testing.assert_close(both['pred_masks'], visual['pred_masks'], rtol=0, atol=ATOL)


def test_padded_point_set_matches_mask_path(decoders, features, first_round):
    decoder = decoders['v1']
    valid = torch.ones(3, dtype=torch.bool)
    points = points_from_masks(POS, NEG)
    padded = pad_points(points, len(points.coords) + 37)
    with torch.no_grad():
        exact = decoder.encode_prompt_points(*features, points, valid)
        fixed = decoder.encode_prompt_points(*features, padded, valid)
        mean, _ = mask_mean_features(features[1], POS)
        from_masks = fixed._replace(pos_mean=mean[0])
        outs = [first_round['v1']] + [decoder(*features, spatial=p) for p in (fixed, from_masks)]
    n = len(points.coords)
    torch.testing.assert_close(fixed.tokens[:, :n], exact.tokens, rtol=0, atol=1e-12)
    assert fixed.token_valid[:n].all() and not fixed.token_valid[n:].any()
    torch.testing.assert_close(fixed.pos_mean, exact.pos_mean, rtol=0, atol=1e-12)
    for out in outs[1:]:
        torch.testing.assert_close(out['pred_smasks'], outs[0]['pred_smasks'], rtol=0, atol=ATOL)
        assert torch.equal(out['selected_index'], outs[0]['selected_index'])


def test_v0_merges_prompt_channels(decoders, features, first_round):
    decoder = decoders['v0']
    split = first_round['v0']
    merged = decode(decoder, features, POS.any(0, keepdim=True), NEG.any(0, keepdim=True))
    torch.testing.assert_close(split['pred_smasks'], merged['pred_smasks'], rtol=0, atol=ATOL)
    assert torch.equal(split['selected_index'], merged['selected_index'])


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_runs_under_autocast(dtype):
    decoder = build_decoders(torch.float32)['v1']
    features = make_features(0, torch.float32)
    gen = torch.Generator().manual_seed(2)
    text = torch.nn.functional.normalize(torch.randn(4, 512, generator=gen), dim=-1)
    tokens = torch.randn(1, 5, 512, generator=gen)
    prev_mask = 5 * torch.randn(1, 3, HP // 4, WP // 4, generator=gen)
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        prompts = decoder.encode_prompts(*features, POS, NEG)
        out = decoder(*features, spatial=prompts, prev_mask=prev_mask, text_embeddings=text, grounding_tokens=tokens)
    for name in ('pred_masks', 'pred_logits', 'pred_gmasks', 'pred_smasks', 'prev_mask', 'selected_score'):
        assert torch.isfinite(out[name].float()).all(), name
    assert torch.equal(out['selected_index'][0] // 3, torch.arange(3))


def test_prev_mask_needs_one_channel_per_prompt(decoders, features, first_round):
    decoder = decoders['v0']
    prompts = decoder.encode_prompts(*features, POS, NEG)
    with pytest.raises(ValueError):
        decoder(*features, spatial=prompts, prev_mask=first_round['v1']['prev_mask'])
    with pytest.raises(ValueError):
        decoder(*features, prev_mask=first_round['v0']['prev_mask'])

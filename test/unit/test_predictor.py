"""SeemPredictor on the full Focal-T model with synthetic weights loaded from an official-format file.

Fidelity against the official outputs (semantic inference, text grounding) and the documented
semantics of the visual-prompt paths (composition, referring image, multi-round, v0/v1).
"""
import cv2
import numpy as np
import pytest
import torch

import reference
from seem_ros.model.build import build_model, variant_config
from seem_ros.model.checkpoint import read_state_dict
from seem_ros.model.synthetic import load_manifest
from seem_ros.predictor import SeemPredictor
from seem_ros.prompts import ObjectPrompt, PromptError, ReferencePatch

IMAGE = cv2.cvtColor(cv2.imread(str(reference.FIXTURES / 'image_a.png')), cv2.COLOR_BGR2RGB)
H, W = IMAGE.shape[:2]


def click(x, y, positive=True):
    return ObjectPrompt(points=np.array([[x, y]], np.float32), point_labels=np.array([positive]))


def disk(cx, cy, r):
    yy, xx = np.mgrid[:H, :W]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


@pytest.fixture(scope='module', params=['v1', 'v0'])
def predictor(request, synthetic_checkpoint):
    p = SeemPredictor.from_checkpoint(synthetic_checkpoint('focalt'), variant='focalt', version=request.param,
                                      short_side=0)
    p.set_image(IMAGE)
    return p


@pytest.mark.parametrize('variant', ['focalt', 'focall'])
def test_state_dict_equals_official_manifest(variant):
    with torch.device('meta'):
        model = build_model(variant_config(variant))
    ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(r.key, tuple(r.shape)) for r in load_manifest(variant)]


def test_synthetic_checkpoint_has_exactly_the_official_keys(synthetic_checkpoint):
    state = read_state_dict(synthetic_checkpoint('focalt'))
    assert [(k, tuple(v.shape)) for k, v in state.items()] == [(r.key, tuple(r.shape)) for r in load_manifest('focalt')]


def test_semantic_inference_matches_official(predictor):
    sem = predictor.semantic(['person', 'dog', 'cup', 'sky'])
    assert sem.shape == (4, H, W)
    reference.assert_close('a.post.sem_seg', sem)


def test_text_grounding_matches_official(predictor):
    result = predictor.predict([ObjectPrompt(text='the person on the left')])
    assert result.selected_index.tolist() == reference.load('c0.matched_id').tolist()
    official = reference.load('c0.grounding_mask')[0] > 0
    assert (result.masks[0] != official).mean() <= 1e-3
    assert result.labels == ['the person on the left']


def test_outputs_have_documented_shapes(predictor):
    result = predictor.predict([click(100, 120), ObjectPrompt(mask=disk(200, 60, 20))])
    assert result.masks.shape == (2, H, W) and result.masks.dtype == bool
    assert result.prev_mask.shape == (2, 64, 80)
    assert result.scores.shape == result.confidence.shape == (2,)
    assert np.allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)
    limit = 6 if predictor.version == 'v1' else 101
    assert ((0 <= result.selected_index) & (result.selected_index < limit)).all()


def test_first_prompt_of_a_multi_prompt_pass_equals_the_prompt_alone(predictor):
    alone = predictor.predict([click(100, 120)])
    both = predictor.predict([click(100, 120), ObjectPrompt(boxes=np.array([[180, 30, 260, 100]], np.float32))])
    assert both.selected_index[0] == alone.selected_index[0]
    np.testing.assert_allclose(both.prev_mask[0], alone.prev_mask[0], atol=2e-3)
    assert (both.masks[0] != alone.masks[0]).mean() <= 1e-3


def test_referring_patch_on_the_same_image_equals_the_mask_prompt(predictor):
    mask = disk(90, 150, 25)
    direct = predictor.predict([ObjectPrompt(mask=mask)])
    referred = predictor.predict([ObjectPrompt(reference=ReferencePatch(IMAGE, mask))])
    assert referred.selected_index.tolist() == direct.selected_index.tolist()
    np.testing.assert_allclose(referred.prev_mask, direct.prev_mask, atol=2e-3)


def test_referring_patch_is_encoded_once_and_reused(predictor):
    patch = ReferencePatch(IMAGE[100:200, 40:180].copy(), disk(90, 150, 25)[100:200, 40:180])
    first = predictor.encode_reference(patch)
    assert predictor.encode_reference(ReferencePatch(patch.image.copy(), patch.mask.copy())) is first


def test_second_round_uses_the_previous_mask(predictor):
    first = predictor.predict([click(100, 120)])
    corrected = [ObjectPrompt(points=np.array([[100, 120], [140, 160]], np.float32),
                              point_labels=np.array([True, False]))]
    second = predictor.predict(corrected, prev_mask=first.prev_mask)
    without_memory = predictor.predict(corrected)
    assert second.masks.shape == first.masks.shape
    assert not np.allclose(second.prev_mask, without_memory.prev_mask, atol=1e-3)


def test_deterministic_runs_are_identical(predictor):
    big = ObjectPrompt(mask=disk(150, 120, 60))   # more than 512 pixels: sampled with a seeded generator
    a, b = predictor.predict([big]), predictor.predict([big])
    np.testing.assert_array_equal(a.prev_mask, b.prev_mask)


def test_text_and_click_compose_into_one_object(predictor):
    result = predictor.predict([ObjectPrompt(text='the person on the left', points=np.array([[100, 120]], np.float32),
                                             point_labels=np.array([True]))])
    assert result.masks.shape == (1, H, W)


def test_panoptic_and_instance_outputs(predictor):
    pan = predictor.segment_everything(['person', 'dog'], object_mask_threshold=0.0, overlap_threshold=0.0)
    assert pan.id_map.shape == (H, W)
    for k, seg in enumerate(pan.segments, start=1):
        assert seg.label in ('person', 'dog')
        np.testing.assert_array_equal(seg.mask, pan.id_map == k)
    inst = predictor.instances(['person', 'dog'], top_k=10)
    assert inst['masks'].shape == (10, H, W) and inst['scores'].shape == (10,)


def test_bad_inputs_raise_clear_errors(synthetic_checkpoint, predictor):
    fresh = SeemPredictor(predictor.backend, short_side=0)
    with pytest.raises(RuntimeError, match='set_image'):
        fresh.predict([click(10, 10)])
    with pytest.raises(ValueError, match='uint8'):
        fresh.set_image(np.zeros((10, 10), np.float32))
    with pytest.raises(ValueError, match='empty image'):
        fresh.set_image(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(PromptError, match='outside'):
        predictor.predict([click(W + 5, 10)])
    with pytest.raises(ValueError, match='empty'):
        predictor.predict([ObjectPrompt()])
    with pytest.raises(ValueError, match='prev_mask'):
        predictor.predict([click(10, 10)], prev_mask=np.zeros((2, 64, 80), np.float32))

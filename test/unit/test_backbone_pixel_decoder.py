"""FocalNet + pixel decoder against the official reference outputs; key sets against the manifests."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference  # noqa: E402

from seem_ros.model import synthetic  # noqa: E402
from seem_ros.model.backbone import FocalNet  # noqa: E402
from seem_ros.model.pixel_decoder import TransformerEncoderPixelDecoder  # noqa: E402
from seem_ros.model.preprocess import normalize_and_pad  # noqa: E402

BACKBONE = 'backbone.'
PIXEL_DECODER = 'sem_seg_head.pixel_decoder.'
BUILDERS = {'focalt': FocalNet.focal_t, 'focall': FocalNet.focal_l}


def build_meta(variant):
    """Backbone and pixel decoder of ``variant`` on the meta device (no memory, no init)."""
    with torch.device('meta'):
        backbone = BUILDERS[variant]()
        return backbone, TransformerEncoderPixelDecoder(in_channels=backbone.out_channels)


def build_focal_t_synthetic():
    backbone, pixel_decoder = build_meta('focalt')
    rows = synthetic.load_manifest('focalt')
    backbone.load_state_dict(synthetic.synthetic_state_dict(rows, BACKBONE), assign=True)
    pixel_decoder.load_state_dict(synthetic.synthetic_state_dict(rows, PIXEL_DECODER), assign=True)
    return backbone.eval(), pixel_decoder.eval()


@pytest.fixture(scope='module')
def focal_t():
    return build_focal_t_synthetic()


@pytest.fixture(scope='module')
def outputs(focal_t):
    backbone, pixel_decoder = focal_t
    image, size = normalize_and_pad(reference.load('a.image_uint8'))
    with torch.no_grad():
        features = backbone(image)
        mask_features, encoder_features, multi_scale = pixel_decoder(features)
    out = {'a.input_normalized_padded': image, 'size': size,
           'a.pixdec.mask_features': mask_features,
           'a.pixdec.transformer_encoder_features': encoder_features}
    out.update({f'a.backbone.{name}': value for name, value in features.items()})
    out.update({f'a.pixdec.multi_scale_features.{i}': value for i, value in enumerate(multi_scale)})
    return out


def test_preprocessing_matches_reference(outputs):
    assert outputs['size'] == (250, 310)
    assert outputs['a.input_normalized_padded'].dtype == torch.float32
    reference.assert_close('a.input_normalized_padded', outputs['a.input_normalized_padded'])


@pytest.mark.parametrize('key', [f'a.backbone.res{i}' for i in range(2, 6)] + [
    'a.pixdec.mask_features', 'a.pixdec.transformer_encoder_features'] + [
    f'a.pixdec.multi_scale_features.{i}' for i in range(3)])
def test_features_match_reference(outputs, key):
    reference.assert_close(key, outputs[key])


@pytest.mark.parametrize('variant', sorted(BUILDERS))
def test_state_dict_keys_and_shapes_equal_manifest(variant):
    backbone, pixel_decoder = build_meta(variant)
    rows = synthetic.load_manifest(variant)
    for prefix, module in ((BACKBONE, backbone), (PIXEL_DECODER, pixel_decoder)):
        expected = [(row.key[len(prefix):], row.shape) for row in rows if row.key.startswith(prefix)]
        assert [(key, tuple(value.shape)) for key, value in module.state_dict().items()] == expected


def test_any_input_size_is_padded_to_the_patch_grid(focal_t):
    backbone, pixel_decoder = focal_t
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 70, 90))
        mask_features, encoder_features, multi_scale = pixel_decoder(features)
    assert {name: tuple(value.shape[-2:]) for name, value in features.items()} == {
        'res2': (18, 23), 'res3': (9, 12), 'res4': (5, 6), 'res5': (3, 3)}
    assert [tuple(x.shape) for x in multi_scale] == [(1, 512, 3, 3), (1, 512, 5, 6), (1, 512, 9, 12)]
    assert tuple(mask_features.shape) == (1, 512, 18, 23) and tuple(encoder_features.shape) == (1, 512, 3, 3)


@pytest.mark.parametrize('block,levels,padding', [('focal_dw', 3, 3), ('focal', 4, 2)])
def test_small_focalnet_of_each_block_type(block, levels, padding):
    torch.manual_seed(0)
    net = FocalNet(block=block, embed_dim=16, depths=(1, 1, 2, 1), focal_levels=(levels,) * 4,
                   focal_windows=(3,) * 4, stem_padding=padding).eval()
    with torch.no_grad():
        features = net(torch.randn(2, 3, 61, 64))
    assert {name: tuple(value.shape) for name, value in features.items()} == {
        'res2': (2, 16, 16, 16), 'res3': (2, 32, 8, 8), 'res4': (2, 64, 4, 4), 'res5': (2, 128, 2, 2)}
    assert all(torch.isfinite(value).all() for value in features.values())


def test_unknown_block_type():
    with pytest.raises(ValueError, match='focal_dw'):
        FocalNet(block='davit', embed_dim=16, depths=(1,), focal_levels=(2,), focal_windows=(3,), stem_padding=3)


def test_autocast_float16(focal_t):
    backbone, pixel_decoder = focal_t
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        mask_ref = pixel_decoder(backbone(image))[0]
        with torch.autocast('cpu', dtype=torch.float16):
            mask_half = pixel_decoder(backbone(image))[0]
    assert mask_half.dtype == torch.float16
    assert torch.isfinite(mask_half).all()
    assert (mask_half.float() - mask_ref).abs().max() < 0.05 * mask_ref.abs().max()


def test_normalize_and_pad_layout():
    image = np.zeros((33, 64, 3), np.uint8)
    image[..., 0] = 255
    padded, size = normalize_and_pad(torch.from_numpy(image[:, ::-1].copy()), size_divisibility=32)
    assert size == (33, 64) and tuple(padded.shape) == (1, 3, 64, 64)
    assert padded[0, 0, :33].allclose(torch.tensor((255 - 123.675) / 58.395))
    assert padded[0, 2, :33].allclose(torch.tensor(-103.53 / 57.375))
    assert (padded[:, :, 33:] == 0).all()
    flipped, _ = normalize_and_pad(image[:, ::-1])  # negative-stride NumPy views are accepted
    assert torch.equal(flipped, padded)
    with pytest.raises(ValueError, match='uint8'):
        normalize_and_pad(image.astype(np.float32))



"""Checkpoint reading, strict validation and writing in the official flat format."""
from pathlib import Path

import pytest
import torch
from torch import nn

from seem_ros.model import checkpoint, synthetic
from seem_ros.model.backbone import FocalNet
from seem_ros.model.build import build_seem
from seem_ros.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


class Model(nn.Module):
    """A Focal-T-shaped model with one block per stage: every key is an official Focal-T key."""

    def __init__(self):
        super().__init__()
        self.backbone = FocalNet(block='focal_dw', embed_dim=96, depths=(1, 1, 1, 1),
                                 focal_levels=(3, 3, 3, 3), focal_windows=(3, 3, 3, 3), stem_padding=3)


@pytest.fixture(scope='module')
def state_dict():
    with torch.device('meta'):
        shapes = {key: tuple(value.shape) for key, value in Model().state_dict().items()}
    return {key: synthetic.synthetic_tensor(key, shape) for key, shape in shapes.items()}


def assert_loaded(model, state_dict):
    loaded = model.state_dict()
    assert loaded.keys() == state_dict.keys()
    assert all(torch.equal(loaded[key], value) for key, value in state_dict.items())


def test_manifest_covers_the_test_model(state_dict):
    manifest = {row.key: row.shape for row in synthetic.load_manifest('focalt')}
    assert all(manifest[key] == tuple(value.shape) for key, value in state_dict.items())


def test_save_then_load_strict(tmp_path, state_dict):
    path = tmp_path / 'seem.pt'
    save_checkpoint(state_dict, path)
    raw = torch.load(path, weights_only=True)
    assert type(raw) is dict and list(raw) == list(state_dict)
    model = Model()
    load_checkpoint(model, path)
    assert_loaded(model, state_dict)


def test_load_assigns_into_a_meta_model(tmp_path, state_dict):
    path = tmp_path / 'seem.pt'
    save_checkpoint(state_dict, path)
    with torch.device('meta'):
        model = Model()
    load_checkpoint(model, path, assign=True)
    assert_loaded(model, state_dict)


@pytest.mark.parametrize('wrap', [
    lambda sd: {'model': sd},
    lambda sd: {'state_dict': sd, 'epoch': torch.tensor(3)},
    lambda sd: {f'module.{key}': value for key, value in sd.items()},
    lambda sd: {f'model.{key}': value for key, value in sd.items()},
    lambda sd: {**sd, 'criterion.empty_weight': torch.ones(134), 'dilation_kernel': torch.ones(1, 1, 3, 3)},
], ids=['model-wrapper', 'state_dict-wrapper', 'module-prefix', 'model-prefix', 'ignored-keys'])
def test_accepted_variations(tmp_path, state_dict, wrap):
    path = tmp_path / 'seem.pt'
    torch.save(wrap(state_dict), path)
    model = Model()
    load_checkpoint(model, path)
    assert_loaded(model, state_dict)


def test_legacy_serialization_is_read_without_mmap(tmp_path, state_dict):
    path = tmp_path / 'legacy.pt'
    torch.save(state_dict, path, _use_new_zipfile_serialization=False)
    model = Model()
    load_checkpoint(model, path)
    assert_loaded(model, state_dict)


def test_rename_table_is_applied(tmp_path, state_dict, monkeypatch):
    monkeypatch.setattr(checkpoint, 'KEY_RENAMES', {'image_encoder.': 'backbone.'})
    path = tmp_path / 'renamed.pt'
    torch.save({key.replace('backbone.', 'image_encoder.', 1): value for key, value in state_dict.items()}, path)
    model = Model()
    load_checkpoint(model, path)
    assert_loaded(model, state_dict)


def test_wrong_file_lists_missing_and_unexpected_keys(tmp_path, state_dict):
    keys = list(state_dict)
    wrong = {key: value for key, value in state_dict.items() if '.blocks.' not in key}
    wrong.update({f'sem_seg_head.extra.{i}': torch.zeros(1) for i in range(3)})
    path = tmp_path / 'wrong.pt'
    torch.save(wrong, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(Model(), path)
    message = str(error.value)
    n_missing = sum('.blocks.' in key for key in keys)
    assert str(path) in message
    assert f'{n_missing} missing keys: backbone.layers.0.blocks.0.gamma_1' in message
    assert f'({n_missing - 10} more)' in message
    assert '3 unexpected keys: sem_seg_head.extra.0, sem_seg_head.extra.1, sem_seg_head.extra.2' in message


def test_shape_mismatch_is_reported(tmp_path, state_dict):
    path = tmp_path / 'shape.pt'
    torch.save({**state_dict, 'backbone.norm3.weight': torch.ones(1536)}, path)
    with pytest.raises(CheckpointError, match=r'1 shape mismatches.*backbone\.norm3\.weight \(1536,\) != \(768,\)'):
        load_checkpoint(Model(), path)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / 'nope' / 'seem_focalt_v1.pt'
    with pytest.raises(FileNotFoundError, match='seem_focalt_v1.pt'):
        load_checkpoint(Model(), path)


@pytest.mark.parametrize('content', [b'not a checkpoint', None])
def test_unreadable_or_non_state_dict_file(tmp_path, content):
    path = tmp_path / 'bad.pt'
    if content is None:
        torch.save([torch.zeros(1)], path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match='bad.pt'):
        load_checkpoint(Model(), path)


def test_check_against_packaged_manifest():
    rows = synthetic.load_manifest('focall')
    expected = {row.key: row.shape for row in rows}
    full = {row.key: torch.empty(row.shape, device='meta') for row in rows}
    assert checkpoint.check_state_dict(expected, full).keys() == full.keys()
    del full['sem_seg_head.pixel_decoder.input_proj.weight']
    with pytest.raises(CheckpointError, match='1 missing keys: sem_seg_head.pixel_decoder.input_proj.weight'):
        checkpoint.check_state_dict(expected, full)


def test_a_checkpoint_of_another_variant_gets_a_one_line_hint():
    shipped = Path(__file__).resolve().parents[2] / 'models' / 'seem_tiny.pt'
    with pytest.raises(CheckpointError) as info:
        build_seem('focalt', checkpoint=shipped)
    assert str(info.value) == f"{shipped} is not a 'focalt' checkpoint: it looks like `tiny` (use variant tiny)"

"""CLIP tokenizer, prompt templates and SEEM language encoder against the official reference (b, c0)."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import reference  # noqa: E402

from seem_ros.model.synthetic import read_manifest, synthetic_state_dict  # noqa: E402
from seem_ros.model.templates import PROMPT_TEMPLATES, clean_class_name, prompts_for  # noqa: E402
from seem_ros.model.text_encoder import LanguageEncoder  # noqa: E402
from seem_ros.model.tokenizer import END_ID, START_ID, count_tokens, tokenize  # noqa: E402

PREFIX = 'sem_seg_head.predictor.lang_encoder.'
CLASSES = ['person', 'dog', 'cup', 'sky']
SENTENCES = ['a red cup', 'the person on the left', 'background']


ROWS = read_manifest(reference.FIXTURES / 'keys_focalt.tsv')


@pytest.fixture(scope='module')
def encoder():
    torch.set_num_threads(2)
    model = LanguageEncoder().eval()
    model.load_state_dict(synthetic_state_dict(ROWS, prefix=PREFIX), strict=True)
    return model


def test_state_dict_matches_manifest():
    model = LanguageEncoder(width=512, layers=12, heads=8, context_length=77, vocab_size=49408, proj_dim=512)
    mine = [(PREFIX + k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert mine == [(r.key, r.shape) for r in ROWS if r.key.startswith(PREFIX)]


def test_tokenizer_ids():
    examples = {'a red cup': [49406, 320, 736, 1937, 49407],
                'the person on the left': [49406, 518, 2533, 525, 518, 1823, 49407],
                'background': [49406, 5994, 49407]}
    ids, mask = tokenize(list(examples))
    assert ids.dtype == mask.dtype == torch.int64 and ids.shape == (3, 77)
    for row, (ids_row, mask_row) in enumerate(zip(ids, mask)):
        expected = list(examples.values())[row]
        assert ids_row[:len(expected)].tolist() == expected
        assert (ids_row[len(expected):] == END_ID).all() and mask_row.sum() == len(expected)
    np.testing.assert_array_equal(ids.numpy(), reference.load('b.input_ids'))
    np.testing.assert_array_equal(mask.numpy(), reference.load('b.attention_mask'))
    ids, mask = tokenize(['the person on the left'])
    np.testing.assert_array_equal(ids.numpy(), reference.load('c0.input_ids'))
    np.testing.assert_array_equal(mask.numpy(), reference.load('c0.attention_mask'))


def test_templates_reproduce_reference_ids():
    assert len(PROMPT_TEMPLATES) == 81
    ref_ids = reference.load('b.template_input_ids')
    ref_mask = reference.load('b.template_attention_mask')
    ids, mask = tokenize([p for name in CLASSES + ['background'] for p in prompts_for(name)])
    np.testing.assert_array_equal(ids.view(5, 81, 77).numpy(), ref_ids)
    np.testing.assert_array_equal(mask.view(5, 81, 77).numpy(), ref_mask)


def test_class_name_cleaning():
    assert clean_class_name('wall-other-merged') == 'wall'
    assert clean_class_name('grass-merged') == 'grass'
    assert clean_class_name('floor-wood') == 'floor-wood'
    assert prompts_for('tree-merged', templates=False) == ['tree']


def test_truncation_and_empty_text():
    long_text = ' '.join(['red'] * 100)
    assert count_tokens([long_text, 'a red cup', '']) == [102, 5, 2]
    ids, mask = tokenize([long_text, ''])
    assert mask[0].all() and ids[0, 0] == START_ID and ids[0, -1] == END_ID
    assert (ids[0, 1:-1] == ids[0, 1]).all()
    assert ids[1, :2].tolist() == [START_ID, END_ID] and mask[1].sum() == 2 and (ids[1, 2:] == END_ID).all()


def test_forward_matches_reference(encoder):
    ids = torch.from_numpy(reference.load('b.input_ids'))
    with torch.no_grad():
        out = encoder.forward_tokens(ids, torch.from_numpy(reference.load('b.attention_mask')))
    reference.assert_close('b.last_hidden_state', out['last_hidden_state'])
    reference.assert_close('b.token_emb', out['token_emb'])
    reference.assert_close('b.class_emb', out['class_emb'])
    np.testing.assert_array_equal(out['eot_index'].numpy(), reference.load('b.eot_index'))
    with torch.no_grad():
        sent = encoder.encode_sentences(SENTENCES)
    reference.assert_close('b.class_emb_normalized', sent['class_emb_normalized'])
    assert sent['token_mask'].dtype == torch.bool and sent['grounding_tokens'].shape == (5 + 7 + 3, 512)


def test_grounding_tokens(encoder):
    with torch.no_grad():
        sent = encoder.encode_sentences(['the person on the left'])
    reference.assert_close('c0.grounding_tokens', sent['grounding_tokens'])
    reference.assert_close('c0.class_emb', sent['class_emb'])


def test_class_embeddings_and_cache(encoder):
    emb = encoder.vocabulary_embeddings(CLASSES)
    assert emb.shape == (5, 512) and not emb.requires_grad
    reference.assert_close('b.class_text_embeddings', emb)
    assert encoder.vocabulary_embeddings(CLASSES) is emb
    assert encoder.class_embeddings(CLASSES + ['background']) is emb
    encoder.load_state_dict(encoder.state_dict())
    assert encoder.vocabulary_embeddings(CLASSES) is not emb


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_autocast_runs(encoder, dtype):
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        sent = encoder.encode_sentences(SENTENCES)
        emb = encoder.class_embeddings(['cup'], templates=False)
    assert sent['token_emb'].shape == (3, 77, 512) and torch.isfinite(sent['token_emb']).all()
    assert emb.shape == (1, 512) and emb.dtype == torch.float32


def test_tokenizer_is_safe_across_threads():
    """A node tokenizes from its prompt callbacks and its inference worker at once: counting
    (no truncation) and tokenizing (truncated, padded) in parallel keep their own results."""
    from concurrent.futures import ThreadPoolExecutor
    long_text = 'red ' * 100
    want_count, want_ids = count_tokens([long_text]), tokenize(['a cup'])[0]
    with ThreadPoolExecutor(8) as pool:
        counts = [pool.submit(count_tokens, [long_text]) for _ in range(1000)]
        ids = [pool.submit(tokenize, ['a cup']) for _ in range(1000)]
        assert all(f.result() == want_count for f in counts)
        assert all(torch.equal(f.result()[0], want_ids) for f in ids)

"""ONNX export, the onnxruntime backend and backend selection.

Every exported graph is compared with PyTorch (``tiny`` variant, fast) and, for Focal-T, with the
official reference fixtures at their own tolerances: the encoder graph on ``image_a.png`` against
``a.pixdec.*``, the text graph against ``b.*``, the decoder graph against ``a.dec.*`` (object
queries, with the vocabulary logits computed on the host) and ``c0.*`` (grounding), using the
fixtures' relaxed procedure for the decoder (cross-attention mask flips).
"""
import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import reference
from seem_ros.cli import export as export_cli
from seem_ros.cli.main import COMMANDS
from seem_ros.model.build import build_seem, synthetic_state_dict, write_synthetic_checkpoint
from seem_ros.model.preprocess import normalize_and_pad
from seem_ros.runtime import BackendUnavailable, backend as backend_module, create_backend, select_backend
from seem_ros.runtime import export as ex

SIZE = (128, 160)
LIMITS = dict(p_max=4, t_max=16, n_max=64)


def tiny_model(version='v1'):
    torch.manual_seed(0)
    model = build_seem('tiny', version=version)
    model.load_state_dict(synthetic_state_dict('tiny', version=version))
    return model


@pytest.fixture(scope='module')
def tiny():
    torch.set_num_threads(2)
    return tiny_model()


@pytest.fixture(scope='module')
def tiny_export(tiny, tmp_path_factory):
    """All five graph kinds of the tiny model, fp32, at SIZE."""
    out = tmp_path_factory.mktemp('tiny_onnx')
    cfg = ex.ExportConfig.of(tiny, 'tiny', **LIMITS)
    for kind, size, precision in ex.plan(['encoder', 'text', 'decoder', 'memory'], [SIZE], ['fp32']):
        ex.export_graph(tiny, cfg, kind, size, out, precision=precision)
    return out


def rel_err(got, want):
    got, want = got.float().cpu(), want.float().cpu()
    finite = torch.isfinite(want)
    assert torch.equal(finite, torch.isfinite(got))
    return float((got[finite] - want[finite]).abs().max() / want[finite].abs().max().clamp(min=1e-12))


def assert_outputs_close(got: dict, want: dict, rel=1e-4):
    assert set(got) == set(want), set(got) ^ set(want)
    for key, value in want.items():
        if value.dtype.is_floating_point:
            assert rel_err(got[key], value) <= rel, key
        else:
            assert torch.equal(got[key].cpu(), value.cpu()), key


# ---------------------------------------------------------------------------------- the files
def test_manifest_records_every_graph_with_interface_and_parity(tiny, tiny_export):
    manifest = ex.read_manifest(tiny_export)
    names = {ex.graph_name(k, None if k == 'text' else SIZE, 'fp32') for k in ex.KINDS}
    assert set(manifest['graphs']) == names
    cfg = ex.ExportConfig.of(tiny, 'tiny', **LIMITS)
    assert manifest['config'] == cfg.__dict__
    for name, entry in manifest['graphs'].items():
        path = tiny_export / entry['file']
        assert ex.sha256_file(path) == entry['sha256']
        proto = onnx.load(str(path))
        assert not {n.op_type for n in proto.graph.node} & ex.FORBIDDEN_OPS, name
        spec = ex.interface(entry['kind'], cfg, tuple(entry['padded_size']) if entry['padded_size'] else None)
        assert [i.name for i in proto.graph.input] == [i['name'] for i in spec['inputs']]
        assert [o.name for o in proto.graph.output] == [o['name'] for o in spec['outputs']]
        for value in list(proto.graph.input) + list(proto.graph.output):
            dims = [d.dim_value if d.HasField('dim_value') else d.dim_param for d in value.type.tensor_type.shape.dim]
            assert entry['kind'] == 'text' or all(isinstance(d, int) and d > 0 for d in dims), (name, value.name)
        rule = ex.tolerance(entry['kind'], 'fp32')
        for probe in entry['parity'].values():
            for numbers in probe.values():
                assert numbers.get('max_rel', 0.0) <= (rule.relaxed or rule.rel)
    assert not list(tiny_export.glob('*.tmp')) and not list(tiny_export.glob('.*'))


def test_fp16_recipe_keeps_normalization_and_attention_in_fp32(tiny, tmp_path):
    cfg = ex.ExportConfig.of(tiny, 'tiny', **LIMITS)
    result = ex.export_graph(tiny, cfg, 'encoder', SIZE, tmp_path, precision='fp16')
    assert result.name == 'encoder-128x160.fp16'
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(result.path)))
    types = {v.name: v.type.tensor_type.elem_type for v in list(proto.graph.value_info) + list(proto.graph.input)
             + list(proto.graph.output)}
    types.update({t.name: t.data_type for t in proto.graph.initializer})
    assert {types[v.name] for v in proto.graph.input} | {types[v.name] for v in proto.graph.output} == {
        TensorProto.FLOAT}
    convs = [n for n in proto.graph.node if n.op_type == 'Conv']
    assert convs and all(types[n.input[1]] == TensorProto.FLOAT16 for n in convs)
    kept = [n for n in proto.graph.node
            if n.op_type in ('LayerNormalization', 'InstanceNormalization', 'GroupNormalization', 'Softmax')]
    assert kept and all(types[n.input[0]] == TensorProto.FLOAT for n in kept)
    worst = max(r['max_rel'] for r in result.parity['probe0'].values())
    assert 1e-5 < worst <= ex.tolerance('encoder', 'fp16').rel


def test_disagreeing_graph_is_refused_and_nothing_written(tiny, tmp_path, monkeypatch):
    class Skewed(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            first, *rest = self.inner(*args)
            return (first * 1.05, *rest)

    monkeypatch.setattr(ex, 'apply_recipe', lambda graph, precision: Skewed(graph))
    cfg = ex.ExportConfig.of(tiny, 'tiny', **LIMITS)
    with pytest.raises(ex.ExportParityError, match='mask_features'):
        ex.export_graph(tiny, cfg, 'encoder', SIZE, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_forbidden_ops_are_refused():
    graph = helper.make_graph([helper.make_node('NonZero', ['x'], ['y'])], 'g',
                              [helper.make_tensor_value_info('x', TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info('y', TensorProto.INT64, [1, None])])
    with pytest.raises(ex.ExportParityError, match='NonZero'):
        ex._check_ops(helper.make_model(graph))


def test_padded_size_follows_the_predictor_resize():
    assert ex.padded_size(480, 640) == (512, 704)          # 512 x 682 -> padded
    assert ex.padded_size(720, 1280) == (512, 928)         # 512 x 910
    assert ex.padded_size(250, 310, short_side=0) == (256, 320)


# ---------------------------------------------------------------------------------- the backend
@pytest.fixture(scope='module')
def backends(tiny, tiny_export):
    return create_backend('torch-cpu', model=tiny), create_backend('onnxruntime-cpu', onnx_dir=tiny_export)


def prompt_masks():
    pos = torch.zeros(3, *SIZE, dtype=torch.bool)
    pos[0, 20:24, 30:34] = True            # 26 positive pixels: within the export's 32 per sign
    pos[1, 60:63, 100:103] = True
    pos[2, 5, 5] = True
    neg = torch.zeros_like(pos)
    neg[0, 90, 20] = True
    return pos, neg


def test_onnxruntime_backend_matches_torch_backend(backends):
    torch_backend, ort_backend = backends
    assert ort_backend.name == 'onnxruntime-cpu' and ort_backend.version == 'v1'
    image = ex.probe_image(SIZE)
    want_f, got_f = torch_backend.encode_image(image, (120, 150)), ort_backend.encode_image(image, (120, 150))
    assert got_f.padded_size == SIZE and got_f.valid_size == (120, 150)
    assert rel_err(got_f.mask_features, want_f.mask_features) < 1e-5
    pos, neg = prompt_masks()
    want_s = torch_backend.encode_prompts(want_f, pos, neg)
    got_s = ort_backend.encode_prompts(got_f, pos, neg)
    for field in want_s._fields:
        assert_outputs_close({field: getattr(got_s, field)}, {field: getattr(want_s, field)})
    sentences = ['a red cup', 'the dog on the left']
    want_t, got_t = torch_backend.encode_sentences(sentences), ort_backend.encode_sentences(sentences)
    assert_outputs_close(got_t, want_t)
    vocab = ['person', 'dog', 'cup']
    assert rel_err(ort_backend.vocabulary_embeddings(vocab), torch_backend.vocabulary_embeddings(vocab)) < 1e-5
    text = torch_backend.vocabulary_embeddings(vocab)
    tokens = want_t['grounding_tokens'][None]
    prev = 3.0 * torch.randn(1, 3, SIZE[0] // 4, SIZE[1] // 4, generator=torch.Generator().manual_seed(0))
    for kwargs in (dict(text_embeddings=text), dict(grounding_tokens=tokens), dict(spatial=True),
                   dict(spatial=True, prev_mask=prev, grounding_tokens=tokens, text_embeddings=text)):
        want = torch_backend.decode(want_f, **{**kwargs, **({'spatial': want_s} if 'spatial' in kwargs else {})})
        got = ort_backend.decode(got_f, **{**kwargs, **({'spatial': got_s} if 'spatial' in kwargs else {})})
        assert_outputs_close(got, want)
    scores = ort_backend.grounding_scores(want['pred_gtexts'], want_t['class_emb'])
    torch.testing.assert_close(scores, torch_backend.model.decoder.grounding_scores(want['pred_gtexts'],
                                                                                      want_t['class_emb']))


def test_fixed_sizes_are_enforced(backends):
    torch_backend, ort_backend = backends
    features = ort_backend.encode_image(ex.probe_image(SIZE))
    pos = torch.zeros(5, *SIZE, dtype=torch.bool)
    pos[:, 3, 3] = True
    with pytest.raises(ValueError, match='p_max=4'):
        ort_backend.encode_prompts(features, pos)
    many = torch.zeros(1, *SIZE, dtype=torch.bool)
    many[0, :10, :10] = True                          # 100 pixels: subsampled to n_max / 2 per sign
    assert ort_backend.max_spatial_points == 32
    encoded = ort_backend.encode_prompts(features, many, generator=torch.Generator().manual_seed(0))
    assert encoded.tokens.shape[1] == 32
    unpadded = torch_backend.encode_prompts(torch_backend.encode_image(ex.probe_image(SIZE)), many)
    with pytest.raises(ValueError, match='n_max=64'):
        ort_backend.decode(features, spatial=unpadded)
    with pytest.raises(ValueError, match=r'\(1, 16\)'):
        ort_backend.decode(features, grounding_tokens=torch.zeros(1, 17, ort_backend.hidden_dim))
    with pytest.raises(BackendUnavailable, match='encoder-256x320.fp32 was not exported'):
        ort_backend.encode_image(ex.probe_image((256, 320)))


def test_v0_graphs_match_torch(tmp_path):
    model = tiny_model('v0')
    cfg = ex.ExportConfig.of(model, 'tiny', **LIMITS)
    assert cfg.p_max == 1
    for kind, size, precision in ex.plan(['encoder', 'text', 'decoder'], [SIZE], ['fp32']):
        ex.export_graph(model, cfg, kind, size, tmp_path, precision=precision)
    torch_backend = create_backend('torch-cpu', model=model)
    ort_backend = create_backend('onnxruntime-cpu', onnx_dir=tmp_path)
    image = ex.probe_image(SIZE)
    want_f, got_f = torch_backend.encode_image(image), ort_backend.encode_image(image)
    pos, neg = prompt_masks()
    want_s = torch_backend.encode_prompts(want_f, pos[:1], neg[:1])
    got_s = ort_backend.encode_prompts(got_f, pos[:1], neg[:1])
    assert_outputs_close(ort_backend.decode(got_f, spatial=got_s), torch_backend.decode(want_f, spatial=want_s))


# ---------------------------------------------------------------------------------- CLI
def test_export_command_end_to_end(tmp_path, capsys):
    assert COMMANDS['export'][0] == 'seem_ros.cli.export'
    checkpoint = tmp_path / 'tiny.pt'
    write_synthetic_checkpoint('tiny', checkpoint)
    out = tmp_path / 'onnx'
    args = ['--checkpoint', str(checkpoint), '--variant', 'tiny', '--out', str(out), '--height', '120',
            '--width', '150', '--short-side', '0', '--graphs', 'encoder', '--p-max', '4', '--t-max', '16']
    assert export_cli.main(args) == 0
    assert torch.is_grad_enabled()  # the command leaves the caller's autograd state alone
    assert 'encoder-128x160.fp32: ok' in capsys.readouterr().out
    assert set(ex.read_manifest(out)['graphs']) == {'encoder-128x160.fp32'}
    assert export_cli.main([a if a != '4' else '8' for a in args]) == export_cli.EXIT_BAD_ARGUMENT  # other p_max
    assert 'another model or configuration (p_max differ)' in capsys.readouterr().err
    assert export_cli.main(args[:-6] + ['--graphs', 'encoder,bogus']) == export_cli.EXIT_BAD_ARGUMENT
    assert export_cli.main(args[:-6] + ['--precision', 'int8']) == export_cli.EXIT_BAD_ARGUMENT


def test_export_command_refuses_a_disagreeing_graph(tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / 'tiny.pt'
    write_synthetic_checkpoint('tiny', checkpoint)

    def refuse(*args, **kwargs):
        raise ex.ExportParityError('mask_features: max |err|/scale 0.05')

    monkeypatch.setattr(ex, 'export_graph', refuse)
    code = export_cli.main(['--checkpoint', str(checkpoint), '--variant', 'tiny', '--out', str(tmp_path / 'o'),
                            '--height', '128', '--width', '160', '--short-side', '0', '--graphs', 'encoder'])
    assert code == export_cli.EXIT_PARITY
    assert 'REFUSED, not written' in capsys.readouterr().err


# ---------------------------------------------------------------------------------- selection
def test_auto_selection_falls_back_in_order_and_logs_each_reason_once(tiny, tiny_export, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    backend_module._logged.clear()
    with caplog.at_level(logging.INFO, 'seem_ros.runtime'):
        chosen = select_backend('auto', model=tiny, onnx_dir=tiny_export)
        first = caplog.text
        caplog.clear()
        select_backend('auto', model=tiny, onnx_dir=tiny_export)
    assert chosen.name == 'onnxruntime-cpu'
    skipped = [line for line in first.splitlines() if 'not used' in line]
    assert [line.split('backend ')[1].split(' ')[0] for line in skipped] == ['tensorrt', 'onnxruntime-cuda',
                                                                             'torch-cuda']
    assert 'inference backend: onnxruntime-cpu' in first
    assert caplog.text == ''                                          # nothing logged twice
    assert select_backend('auto', model=tiny).name == 'torch-cpu'     # no export given
    assert select_backend('auto', model=tiny, onnx_dir=tiny_export, image_size=(256, 320)).name == 'torch-cpu'
    assert select_backend('onnxruntime', onnx_dir=tiny_export, image_size=SIZE).name == 'onnxruntime-cpu'
    with pytest.raises(BackendUnavailable):
        select_backend('tensorrt', onnx_dir=tiny_export)
    with pytest.raises(ValueError, match='unknown backend'):
        select_backend('openvino')


# ---------------------------------------------------------------------------------- CUDA (skipped here)
def _cuda_provider_missing():
    import onnxruntime as ort
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        return 'onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu not installed)'
    return None if torch.cuda.is_available() else 'no CUDA device'


@pytest.mark.skipif(_cuda_provider_missing() is not None, reason=f'onnxruntime-cuda: {_cuda_provider_missing()}')
def test_onnxruntime_cuda_matches_cpu(backends, tiny_export):
    _, cpu = backends
    gpu = create_backend('onnxruntime-cuda', onnx_dir=tiny_export)
    image = ex.probe_image(SIZE)
    want, got = cpu.decode(cpu.encode_image(image)), gpu.decode(gpu.encode_image(image.cuda()))
    assert all(v.is_cuda for v in got.values())
    assert_outputs_close(got, want, rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='torch-cuda: no CUDA device')
def test_torch_cuda_graph_encoder_matches_eager(tiny):
    eager = create_backend('torch-cpu', model=tiny_model())
    graphed = create_backend('torch-cuda', model=tiny_model(), precision='fp16')
    image = ex.probe_image(SIZE)
    want = eager.encode_image(image)
    for _ in range(2):
        got = graphed.encode_image(image.cuda())
        assert rel_err(got.mask_features, want.mask_features) < 2e-2


# ---------------------------------------------------------------------------------- Focal-T fixtures
@pytest.fixture(scope='module')
def focalt_export(tmp_path_factory):
    model = build_seem('focalt')
    model.load_state_dict(synthetic_state_dict('focalt'))
    out = tmp_path_factory.mktemp('focalt_onnx')
    cfg = ex.ExportConfig.of(model, 'focalt', p_max=1, t_max=8, n_max=8)
    image, _ = normalize_and_pad(reference.load('a.image_uint8'))
    size = tuple(image.shape[-2:])
    for kind in ('encoder', 'text', 'decoder'):
        ex.export_graph(model, cfg, kind, None if kind == 'text' else size, out)
    return out, image


def test_focalt_encoder_graph_matches_reference(focalt_export):
    out, image = focalt_export
    backend = create_backend('onnxruntime-cpu', onnx_dir=out)
    features = backend.encode_image(image, (250, 310))
    reference.assert_close('a.pixdec.mask_features', features.mask_features)
    for i, value in enumerate(features.multi_scale_features):
        reference.assert_close(f'a.pixdec.multi_scale_features.{i}', value)


def test_focalt_text_graph_matches_reference(focalt_export):
    backend = create_backend('onnxruntime-cpu', onnx_dir=focalt_export[0])
    out = backend.encode_text(torch.from_numpy(reference.load('b.input_ids')))
    reference.assert_close('b.token_emb', out['token_emb'])
    reference.assert_close('b.class_emb', out['class_emb'])
    grounding = backend.encode_sentences(['the person on the left'])
    reference.assert_close('c0.grounding_tokens', grounding['grounding_tokens'])


def test_focalt_decoder_graph_matches_reference(focalt_export):
    out, image = focalt_export
    backend = create_backend('onnxruntime-cpu', onnx_dir=out)
    features = backend.encode_image(image, (250, 310))
    decoded = backend.decode(features, text_embeddings=torch.from_numpy(reference.load('b.class_text_embeddings')),
                             grounding_tokens=torch.from_numpy(reference.load('c0.grounding_tokens'))[None])
    reference.assert_close('a.dec.pred_logits', decoded['pred_logits'], relaxed=True)
    reference.assert_close('a.dec.pred_masks', decoded['pred_masks'], relaxed=True)
    reference.assert_close('c0.pred_gmasks', decoded['pred_gmasks'], relaxed=True)
    reference.assert_close('c0.pred_gtexts', decoded['pred_gtexts'], relaxed=True)
    scores = backend.grounding_scores(decoded['pred_gtexts'], torch.from_numpy(reference.load('c0.class_emb')))
    reference.assert_close('c0.out_prob', scores[0], relaxed=True)
    assert np.array_equal(scores[0].argmax(0).numpy(), reference.load('c0.matched_id'))

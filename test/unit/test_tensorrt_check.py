"""Static TensorRT readiness (:mod:`seem_ros.runtime.tensorrt_check`): TensorRT itself does not run here.

Every graph of a real export of the shipped model at the camera size (640x480 at the model's own
short side) must pass the check for every targeted TensorRT version; hand-made graphs with an
unsupported op, an unsupported attribute mode, a dynamic shape or an out-of-int32 INT64 constant
must fail with the op type and node name; the export refuses such a graph and writes nothing.
"""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from seem_ros.model.build import build_seem, synthetic_state_dict
from seem_ros.model.checkpoint import read_metadata
from seem_ros.runtime import export as ex
from seem_ros.runtime import tensorrt_check as tc
from seem_ros.runtime.export_cache import cached_export

SHIPPED = Path(__file__).resolve().parents[2] / 'models' / 'seem_tiny.pt'
CAMERA = (480, 640)


# ---------------------------------------------------------------------------------- the recorded lists
def test_recorded_lists_name_their_sources_and_targets():
    data = json.loads(tc.DATA_FILE.read_text())
    assert tc.TARGETS == ('10.3', '10.15')
    for name, source in data['sources'].items():
        assert source['repository'] == 'onnx/onnx-tensorrt' and source['path'].startswith('docs/'), name
    assert data['sources']['operators-10.15']['commit'] == 'fa5aa9f61e7781d2ca8f5351d42c1f19525a6124'
    latest, jetpack = tc.profile('10.15'), tc.profile('10.3')
    assert 'Attention' in latest.ops and 'Attention' not in jetpack.ops          # added in 10.14
    assert 'STFT' in latest.ops and 'STFT' in jetpack.unsupported                  # added in 10.5
    assert {'NonZero', 'Resize', 'GridSample', 'ScatterND'} <= set(jetpack.ops)
    assert {'Unique', 'Bernoulli', 'Det'} <= set(latest.unsupported)
    assert 'INT64' in latest.ops['Gather'] and 'INT64' not in latest.ops['MatMul']
    assert latest.opset == (9, 24) and jetpack.opset == (9, 20)
    assert set(tc.sources()) == set(tc.TARGETS)


# ---------------------------------------------------------------------------------- the shipped model
@pytest.fixture(scope='module')
def shipped_export():
    """The export of models/seem_tiny.pt for a 640x480 camera at the file's short side (all graphs,
    fp32), from the export cache that the backend-parity and node tests use too."""
    short_side = read_metadata(SHIPPED)['short_side']
    out = cached_export(SHIPPED, variant='tiny', version='v1', height=CAMERA[0], width=CAMERA[1],
                        short_side=short_side)
    return out, ex.padded_size(*CAMERA, short_side=short_side)


def test_every_graph_of_the_shipped_export_is_tensorrt_ready(shipped_export):
    out, size = shipped_export
    manifest = ex.read_manifest(out)
    assert set(manifest['graphs']) == {ex.graph_name(k, None if k == 'text' else size, 'fp32') for k in ex.KINDS}
    for name, entry in manifest['graphs'].items():
        record = entry['tensorrt_check']
        assert record['versions'] == list(tc.TARGETS), name
        assert set(record['lists']) == set(tc.TARGETS)
        dynamic = entry['kind'] == 'text'                   # the interface declares B, L symbolic
        assert record['static_shapes'] is not dynamic
        assert any(isinstance(d, str) for d in entry['inputs'][0]['shape']) is dynamic
        path = out / entry['file']
        assert tc.check_graph(path, dynamic_ok=dynamic) == [], name
        proto = onnx.load(str(path))
        ops = {n.op_type for n in proto.graph.node}
        assert all(n.domain in ('', 'ai.onnx') for n in proto.graph.node)
        for version in tc.TARGETS:
            assert ops <= set(tc.profile(version).ops), (name, version, ops - set(tc.profile(version).ops))
    text = out / manifest['graphs']['text.fp32']['file']
    problems = tc.check_graph(text)                          # the static rule is live on the dynamic graph
    assert problems and all('dynamic' in p.reason for p in problems)
    assert any(p.op_type == 'graph input' and p.node == 'input_ids' for p in problems)


# ---------------------------------------------------------------------------------- hand-made graphs
def model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, 'g', inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def value(name, elem, dims):
    return helper.make_tensor_value_info(name, elem, dims)


def fails(m, *words, **kwargs):
    """The TensorRTSupportError message of ``m``; asserts every word is in it."""
    with pytest.raises(tc.TensorRTSupportError) as info:
        tc.require_supported(m, graph='handmade', **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ex.ExportParityError) and message.startswith('handmade: ')
    for word in words:
        assert word in message, (word, message)
    return message


def test_unsupported_op_fails_with_op_and_node_name():
    m = model([helper.make_node('Det', ['x'], ['y'], name='det_0')],
              [value('x', TensorProto.FLOAT, [2, 3, 3])], [value('y', TensorProto.FLOAT, [2])])
    message = fails(m, "Det node 'det_0'", 'unsupported', '10.3', '10.15')
    assert tc.check_graph(m)[0].op_type == 'Det'
    # ops a release added: STFT only from 10.5, so the 10.3 profile refuses it, 10.15 does not
    stft = model([helper.make_node('STFT', ['s', 'step'], ['z'], name='stft_0')],
                 [value('s', TensorProto.FLOAT, [1, 64, 1])], [value('z', TensorProto.FLOAT, [1, 7, 9, 2])],
                 [numpy_helper.from_array(np.array(8, np.int64), 'step')])
    assert [(p.op_type, p.node, p.versions) for p in tc.check_graph(stft)] == [('STFT', 'stft_0', ('10.3',))]
    assert message.count('Det') == 1


def test_unsupported_attribute_mode_fails():
    def resize(**attrs):
        return model([helper.make_node('Resize', ['x', '', 'scales'], ['y'], name='up', **attrs)],
                     [value('x', TensorProto.FLOAT, [1, 3, 8, 8])], [value('y', TensorProto.FLOAT, [1, 3, 16, 16])],
                     [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), 'scales')])

    assert tc.check_graph(resize(mode='linear', coordinate_transformation_mode='half_pixel')) == []
    fails(resize(mode='cubic'), "Resize node 'up'", "mode='cubic'")
    fails(resize(mode='linear', antialias=1), "Resize node 'up'", 'antialias=1')
    fails(resize(mode='nearest', coordinate_transformation_mode='tf_crop_and_resize'), 'tf_crop_and_resize')
    pool = model([helper.make_node('MaxPool', ['x'], ['y'], name='pool', kernel_shape=[2, 2], dilations=[2, 2])],
                 [value('x', TensorProto.FLOAT, [1, 3, 8, 8])], [value('y', TensorProto.FLOAT, [1, 3, 6, 6])])
    fails(pool, "MaxPool node 'pool'", 'dilations')
    scatter = model([helper.make_node('ScatterND', ['d', 'i', 'u'], ['y'], name='sc', reduction='max')],
                    [value('d', TensorProto.FLOAT, [4]), value('i', TensorProto.INT64, [1, 1]),
                     value('u', TensorProto.FLOAT, [1])], [value('y', TensorProto.FLOAT, [4])])
    fails(scatter, "ScatterND node 'sc'", "reduction='max'")


def test_dynamic_shape_fails_unless_declared():
    m = model([helper.make_node('Relu', ['x'], ['h'], name='relu_0'),
               helper.make_node('Neg', ['h'], ['y'], name='neg')],
              [value('x', TensorProto.FLOAT, ['batch', 4])], [value('y', TensorProto.FLOAT, ['batch', 4])])
    fails(m, "graph input node 'x'", "Relu node 'relu_0'", "'h' has a dynamic shape [batch, 4]")
    assert tc.check_graph(m, dynamic_ok=True) == []
    # a data-dependent intermediate shape between static I/O is caught at its producer
    nz = model([helper.make_node('NonZero', ['x'], ['i'], name='nz'),
                helper.make_node('ReduceSum', ['i'], ['y'], name='sum', keepdims=0)],
               [value('x', TensorProto.FLOAT, [4])], [value('y', TensorProto.INT64, [])])
    fails(nz, "NonZero node 'nz'", 'dynamic shape')


def test_int64_constant_outside_int32_fails_but_slice_ends_and_int64_io_pass():
    big = helper.make_node('Constant', [], ['c'], name='big',
                           value=numpy_helper.from_array(np.array([2 ** 40], np.int64)))
    m = model([big, helper.make_node('Add', ['x', 'c'], ['y'], name='add')],
              [value('x', TensorProto.INT64, [1])], [value('y', TensorProto.INT64, [1])])
    fails(m, "Constant node 'big'", str(2 ** 40), "Add 'add'", 'int32')
    init = model([helper.make_node('Mul', ['x', 'w'], ['y'], name='mul')],
                 [value('x', TensorProto.INT64, [2])], [value('y', TensorProto.INT64, [2])],
                 [numpy_helper.from_array(np.array([1, -2 ** 33], np.int64), 'w')])
    fails(init, "Mul node 'mul'", str(-2 ** 33))
    # INT64 I/O and Slice's INT64_MAX "to the end" are native in TensorRT >= 9: accepted
    ends = np.array([np.iinfo(np.int64).max], np.int64)
    sliced = model([helper.make_node('Slice', ['x', 'starts', 'ends', 'axes'], ['y'], name='tail')],
                   [value('x', TensorProto.INT64, [6])], [value('y', TensorProto.INT64, [5])],
                   [numpy_helper.from_array(np.array([1], np.int64), 'starts'), numpy_helper.from_array(ends, 'ends'),
                    numpy_helper.from_array(np.array([0], np.int64), 'axes')])
    assert tc.check_graph(sliced) == []
    # DOUBLE is the type TensorRT 10 narrows silently (to FLOAT, clamped)
    double = model([helper.make_node('Cast', ['x'], ['y'], name='to_double', to=TensorProto.DOUBLE)],
                   [value('x', TensorProto.FLOAT, [2])], [value('y', TensorProto.DOUBLE, [2])])
    fails(double, "Cast node 'to_double'", 'DOUBLE', 'narrowed')


def test_custom_domains_nested_graphs_constant_inputs_and_types():
    custom = helper.make_node('Gelu', ['x'], ['y'], name='fused', domain='com.microsoft')
    m = model([custom], [value('x', TensorProto.FLOAT, [4])], [value('y', TensorProto.FLOAT, [4])])
    m.opset_import.append(helper.make_opsetid('com.microsoft', 1))
    fails(m, "Gelu node 'fused'", "custom domain 'com.microsoft'")
    then_b = helper.make_graph([helper.make_node('Unique', ['x'], ['t'], name='inner_unique')], 'then', [],
                               [value('t', TensorProto.FLOAT, [4])])
    else_b = helper.make_graph([helper.make_node('Identity', ['x'], ['e'], name='inner_id')], 'else', [],
                               [value('e', TensorProto.FLOAT, [4])])
    branchy = model([helper.make_node('If', ['c'], ['y'], name='branch', then_branch=then_b, else_branch=else_b)],
                    [value('c', TensorProto.BOOL, []), value('x', TensorProto.FLOAT, [4])],
                    [value('y', TensorProto.FLOAT, [4])])
    fails(branchy, "Unique node 'inner_unique'")
    reduce = model([helper.make_node('ReduceSum', ['x', 'axes'], ['y'], name='rsum', keepdims=0)],
                   [value('x', TensorProto.FLOAT, [2, 3]), value('axes', TensorProto.INT64, [1])],
                   [value('y', TensorProto.FLOAT, [2])])
    fails(reduce, "ReduceSum node 'rsum'", 'build-time constant')
    cumsum = model([helper.make_node('CumSum', ['x', 'axis'], ['y'], name='cs')],
                   [value('x', TensorProto.INT64, [5])], [value('y', TensorProto.INT64, [5])],
                   [numpy_helper.from_array(np.array(0, np.int64), 'axis')])
    report = tc.analyze(cumsum)            # INT64 is not in CumSum's Supported Types column: a warning
    assert report.errors == [] and "CumSum node 'cs': INT64 data" in str(report.warnings[0])
    fails(cumsum, "CumSum node 'cs'", 'Supported Types', strict_types=True)
    old_opset = model([helper.make_node('Relu', ['x'], ['y'], name='r')], [value('x', TensorProto.FLOAT, [2])],
                      [value('y', TensorProto.FLOAT, [2])], opset=21)
    assert [p.versions for p in tc.check_graph(old_opset)] == [('10.3',)]       # 10.x lists start 9..20


# ---------------------------------------------------------------------------------- the export refuses
def test_export_refuses_a_graph_tensorrt_cannot_parse_and_writes_nothing(tmp_path, monkeypatch):
    torch.manual_seed(0)
    tiny = build_seem('tiny')
    tiny.load_state_dict(synthetic_state_dict('tiny'))

    class BitwiseTail(torch.nn.Module):         # BitwiseAnd: deterministic, static, not in TensorRT's list
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            first, *rest = self.inner(*args)
            bits = torch.bitwise_and(first.to(torch.int32), 1).to(first.dtype)
            return (first + 0.0 * bits, *rest)

    monkeypatch.setattr(ex, 'apply_recipe', lambda graph, precision: BitwiseTail(graph))
    cfg = ex.ExportConfig.of(tiny, 'tiny', p_max=4, t_max=16, n_max=64)
    with pytest.raises(tc.TensorRTSupportError, match=r"encoder-128x160\.fp32: .*BitwiseAnd node '[^']+'"):
        ex.export_graph(tiny, cfg, 'encoder', (128, 160), tmp_path)
    assert list(tmp_path.iterdir()) == []

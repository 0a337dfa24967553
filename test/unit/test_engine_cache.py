"""TensorRT engine cache rules without a GPU (fake factory), and the real TensorRT path when available.

The fake factory stands in for TensorRT only in this module: its plans are ``PLAN:<key json>``,
deserialization rejects anything else, and validation can be told to fail.
"""
import hashlib
import json
import logging

import pytest
import torch

from seem_ros.runtime.engine_cache import (EngineCache, EngineKey, atomic_write, device_cache_dir, slug,
                                           timing_cache_path)

KEY = EngineKey(graph='encoder-256x320.fp16', onnx_sha256='ab' * 32, tensorrt_version='10.3.0',
                gpu_name='Orin', compute_capability='8.7', precision='fp16/1: LN fp32',
                profiles=(('input_ids', (1, 2), (64, 16), (256, 77)),), platform='# R36 (release), REVISION: 4.3')


class FakeFactory:
    """Counts builds; deserializes only plans it built; ``fail_validation`` makes validate raise."""

    def __init__(self):
        self.builds = []
        self.fail_validation = False

    def build(self, key):
        self.builds.append(key)
        return b'PLAN:' + json.dumps(key.to_json()).encode()

    def deserialize(self, plan):
        if not plan.startswith(b'PLAN:'):
            return None
        return {'engine_for': EngineKey.from_json(json.loads(plan[5:]))}

    def validate(self, engine, key):
        if self.fail_validation:
            raise RuntimeError('parity mismatch')


@pytest.fixture
def cache(tmp_path):
    return EngineCache(tmp_path / 'engines', FakeFactory())


def test_first_use_builds_then_loads_from_disk(cache):
    engine = cache.load_or_build(KEY)
    assert engine['engine_for'] == KEY and len(cache.factory.builds) == 1
    plan, meta = cache.paths(KEY)
    assert plan.is_file() and meta.is_file()
    fresh = EngineCache(cache.directory, FakeFactory())           # a new process
    assert fresh.load_or_build(KEY)['engine_for'] == KEY
    assert fresh.factory.builds == []


def test_corrupt_engine_file_triggers_rebuild(cache, caplog):
    cache.load_or_build(KEY)
    plan, _ = cache.paths(KEY)
    data = bytearray(plan.read_bytes())
    data[10] ^= 0xFF
    plan.write_bytes(bytes(data))
    assert cache.load(KEY)[0] is None
    with caplog.at_level(logging.WARNING, 'seem_ros.runtime.engine_cache'):
        cache.load_or_build(KEY)
    assert len(cache.factory.builds) == 2
    assert 'corrupt' in caplog.text
    assert cache.load(KEY)[0] is not None


def test_truncated_engine_file_triggers_rebuild(cache):
    cache.load_or_build(KEY)
    plan, _ = cache.paths(KEY)
    plan.write_bytes(plan.read_bytes()[:7])
    cache.load_or_build(KEY)
    assert len(cache.factory.builds) == 2


def test_failed_deserialization_triggers_rebuild(cache, caplog):
    """A plan whose checksum matches its sidecar but that the runtime rejects (e.g. foreign plan)."""
    cache.load_or_build(KEY)
    plan, meta_path = cache.paths(KEY)
    foreign = b'NOT A PLAN'
    plan.write_bytes(foreign)
    meta = json.loads(meta_path.read_text())
    meta.update(plan_bytes=len(foreign), plan_sha256=hashlib.sha256(foreign).hexdigest())
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, 'seem_ros.runtime.engine_cache'):
        cache.load_or_build(KEY)
    assert len(cache.factory.builds) == 2 and 'deserialization' in caplog.text


def test_deserializer_exception_triggers_rebuild(cache):
    cache.load_or_build(KEY)

    def explode(plan):
        raise RuntimeError('serialization assertion failed')

    cache.factory.deserialize, original = explode, cache.factory.deserialize
    assert cache.load(KEY) == (None, 'deserialization failed (RuntimeError: serialization assertion failed)')
    cache.factory.deserialize = original


@pytest.mark.parametrize('change', [
    {'tensorrt_version': '10.3.1'},                                  # TensorRT upgrade
    {'tensorrt_version': '11.4.0'},
    {'gpu_name': 'NVIDIA GeForce RTX 4090'},                        # another GPU
    {'compute_capability': '8.9'},
    {'onnx_sha256': 'cd' * 32},                                      # re-exported graph
    {'precision': 'fp16/2: LN fp32'},                                # recipe change
    {'profiles': (('input_ids', (1, 2), (64, 16), (512, 77)),)},     # profile shapes
    {'platform': '# R36 (release), REVISION: 5.0'},                  # JetPack upgrade
], ids=lambda c: next(iter(c)))
def test_any_key_mismatch_triggers_rebuild_and_is_never_served(cache, caplog, change):
    cache.load_or_build(KEY)
    expected = EngineKey(**{**KEY.__dict__, **change})
    engine, reason = cache.load(expected)
    assert engine is None and reason.startswith('cache key mismatch') and next(iter(change)) in reason
    with caplog.at_level(logging.WARNING, 'seem_ros.runtime.engine_cache'):
        engine = cache.load_or_build(expected)
    assert engine['engine_for'] == expected
    assert cache.factory.builds == [KEY, expected]
    assert 'cache key mismatch' in caplog.text
    assert cache.load(KEY)[0] is None                   # the old engine was replaced, not kept


def test_failed_validation_writes_nothing(cache):
    cache.factory.fail_validation = True
    with pytest.raises(RuntimeError, match='parity mismatch'):
        cache.load_or_build(KEY)
    assert not cache.directory.exists() or list(cache.directory.iterdir()) == []


def test_failed_validation_keeps_serving_nothing_stale(cache):
    cache.load_or_build(KEY)
    newer = EngineKey(**{**KEY.__dict__, 'tensorrt_version': '10.4.0'})
    cache.factory.fail_validation = True
    with pytest.raises(RuntimeError):
        cache.load_or_build(newer)
    assert cache.load(newer)[0] is None                 # the old plan is still there but never served


def test_unreadable_sidecar_triggers_rebuild(cache):
    cache.load_or_build(KEY)
    cache.paths(KEY)[1].write_text('{not json')
    assert cache.load(KEY)[1].startswith('unreadable sidecar')
    cache.load_or_build(KEY)
    assert len(cache.factory.builds) == 2


def test_key_round_trip_and_field_check():
    assert EngineKey.from_json(json.loads(json.dumps(KEY.to_json()))) == KEY
    with pytest.raises(ValueError):
        EngineKey.from_json({**KEY.to_json(), 'extra': 1})


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / 'a' / 'plan.engine'
    atomic_write(target, b'x' * 100)
    atomic_write(target, b'y' * 10)
    assert target.read_bytes() == b'y' * 10
    assert [p.name for p in target.parent.iterdir()] == ['plan.engine']


def test_per_device_directories_and_timing_cache_names(tmp_path):
    h100 = device_cache_dir(tmp_path, 'NVIDIA H100 80GB HBM3', '9.0')
    orin = device_cache_dir(tmp_path, 'Orin', '8.7')
    assert h100.name == 'nvidia-h100-80gb-hbm3-sm90' and orin.name == 'orin-sm87'
    assert timing_cache_path(h100, '10.3.0').name == 'timing-10.3.0.cache'
    assert slug('  ') == 'unknown'


# ---------------------------------------------------------------------------------- real TensorRT
def _tensorrt_missing():
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f'TensorRT Python package not installed ({exc})'
    if not torch.cuda.is_available():
        return 'no CUDA device (torch.cuda.is_available() is False)'
    return None


@pytest.mark.skipif(_tensorrt_missing() is not None, reason=f'real TensorRT path: {_tensorrt_missing()}')
def test_tensorrt_engines_build_validate_cache_and_match_torch(tmp_path):
    from seem_ros.model.build import build_seem, synthetic_state_dict
    from seem_ros.runtime import export as ex
    from seem_ros.runtime.tensorrt_backend import TensorRTBackend
    from seem_ros.runtime.torch_backend import TorchBackend

    model = build_seem('tiny')
    model.load_state_dict(synthetic_state_dict('tiny'))
    cfg = ex.ExportConfig.of(model, 'tiny', p_max=4, t_max=16, n_max=64)
    size = (128, 160)
    for kind, graph_size, precision in ex.plan(['encoder', 'text', 'decoder'], [size], ['fp32']):
        ex.export_graph(model, cfg, kind, graph_size, tmp_path / 'onnx', precision=precision)
    trt_backend = TensorRTBackend(tmp_path / 'onnx', engine_dir=tmp_path / 'engines')
    trt_backend.prepare(size)
    assert len(list(trt_backend.cache.directory.glob('*.engine'))) == 4
    reference = TorchBackend(model.cuda())
    image = ex.probe_image(size).cuda()
    for _ in range(2):                                   # second call replays the CUDA graphs
        got, want = trt_backend.encode_image(image), reference.encode_image(image)
        torch.testing.assert_close(got.mask_features, want.mask_features, rtol=0, atol=1e-3)
    again = TensorRTBackend(tmp_path / 'onnx', engine_dir=tmp_path / 'engines')
    built_before = {p: p.stat().st_mtime_ns for p in trt_backend.cache.directory.glob('*.engine')}
    again.prepare(size)
    assert {p: p.stat().st_mtime_ns for p in again.cache.directory.glob('*.engine')} == built_before

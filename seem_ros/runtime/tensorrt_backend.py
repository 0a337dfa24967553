"""TensorRT backend (10.x and 11.x Python API) over the exported ONNX graphs.

Each graph becomes a strongly typed engine (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``):
precision comes from the ONNX types, so the ``fp16`` export's recipe (LayerNorm, GroupNorm and
attention in fp32) is built as written, on TensorRT 10.3 (JetPack 6) and on 11.x alike (no
``BuilderFlag.FP16``, which 11.0 removed). TF32 is disabled so fp32 layers are fp32. The ``text``
graph gets one optimization profile over (batch, length); the others are static.

Engines are cached per device by :class:`~seem_ros.runtime.engine_cache.EngineCache` (key: ONNX
sha256, TensorRT version, GPU name and compute capability, recipe, profile shapes, L4T
release), with the timing cache persisted next to them. A fresh build is checked against
onnxruntime on the same ONNX file with the export's probe inputs; a disagreement raises
:class:`EngineParityError` and nothing is cached. Static engines run from a CUDA graph captured
after their first execution; I/O tensors are torch CUDA tensors. ``tensorrt`` is imported only
when a backend is created. Not thread-safe: use one backend per inference thread.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import torch

from .backend import BackendUnavailable
from .engine_cache import EngineCache, EngineKey, atomic_write, device_cache_dir, timing_cache_path
from .export import ExportConfig, compare, graph_name, ort_runner, probe_feeds, sha256_file, tolerance
from .onnx_backend import GraphBackend

LOG = logging.getLogger('seem_ros.runtime.tensorrt')

# text profile: (batch, length) min / opt / max
TEXT_PROFILE = ((1, 2), (64, 16), (256, 77))
HEARTBEAT_S = 15.0


class EngineParityError(RuntimeError):
    """A freshly built engine disagrees with onnxruntime on the probe input (it is not cached)."""


def _import_tensorrt():
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(f'tensorrt is not installed ({exc})') from None
    return tensorrt


def default_engine_dir() -> Path:
    """``$SEEM_ROS_ENGINE_DIR`` or ``${XDG_CACHE_HOME:-~/.cache}/seem_ros/engines``."""
    if os.environ.get('SEEM_ROS_ENGINE_DIR'):
        return Path(os.environ['SEEM_ROS_ENGINE_DIR'])
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'seem_ros' / 'engines'


def platform_tag() -> str:
    """L4T release line on Jetson (engines are rebuilt after a JetPack upgrade), else ''."""
    release = Path('/etc/nv_tegra_release')
    return release.read_text().splitlines()[0].strip() if release.is_file() else ''


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {'FLOAT': torch.float32, 'HALF': torch.float16, 'BF16': torch.bfloat16, 'INT32': torch.int32,
             'INT64': torch.int64, 'BOOL': torch.bool, 'INT8': torch.int8, 'UINT8': torch.uint8}
    for name, value in table.items():
        if getattr(trt.DataType, name, None) == dtype:
            return value
    raise TypeError(f'unsupported TensorRT I/O type {dtype}')


def _make_logger(trt):
    """A ``trt.ILogger`` forwarding to Python logging."""
    levels = {trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL, trt.ILogger.Severity.ERROR: logging.ERROR,
              trt.ILogger.Severity.WARNING: logging.WARNING, trt.ILogger.Severity.INFO: logging.DEBUG,
              trt.ILogger.Severity.VERBOSE: logging.DEBUG}

    class Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            LOG.log(levels.get(severity, logging.INFO), 'TensorRT: %s', msg)

    return Logger()


def _make_monitor(trt, label: str):
    """A ``trt.IProgressMonitor`` that logs top-level build phases and reports the current one."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._phases: Dict[str, list] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self._lock:
                self._phases[phase_name] = [parent_phase, 0, num_steps]
            if parent_phase is None:
                LOG.info('%s: %s (%d steps)', label, phase_name, num_steps)

        def step_complete(self, phase_name, step):
            with self._lock:
                if phase_name in self._phases:
                    self._phases[phase_name][1] = step + 1
            return True

        def phase_finish(self, phase_name):
            with self._lock:
                self._phases.pop(phase_name, None)

        def status(self) -> str:
            with self._lock:
                return ', '.join(f'{n} {s}/{t}' for n, (_, s, t) in self._phases.items()) or 'optimizing'

    return Monitor()


class _EngineRunner:
    """Executes one engine on torch CUDA tensors.

    Static engines own persistent input/output buffers whose addresses are bound once; after the
    first execution the enqueue is captured into a CUDA graph and replayed. Dynamic engines
    (``text``) set shapes and addresses per call. Outputs are returned as fresh tensors.
    """

    def __init__(self, trt, engine, device: torch.device, cuda_graph: bool):
        self.engine = engine
        self.device = device
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: _torch_dtype(trt, engine.get_tensor_dtype(n)) for n in names}
        self.static = all(-1 not in tuple(engine.get_tensor_shape(n)) for n in names)
        self.stream = torch.cuda.Stream(device)
        self.buffers: Dict[str, torch.Tensor] = {}
        if self.static:
            for n in names:
                self.buffers[n] = torch.empty(tuple(engine.get_tensor_shape(n)), dtype=self.dtypes[n], device=device)
                self.context.set_tensor_address(n, self.buffers[n].data_ptr())
        self.want_graph = cuda_graph and self.static
        self.graph: Optional[torch.cuda.CUDAGraph] = None

    def _execute(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError('TensorRT execute_async_v3 failed (see the TensorRT log)')

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode='thread_local'):
                self._execute()
        except RuntimeError as exc:
            self.want_graph = False
            LOG.warning('CUDA graph capture failed, engine runs without it: %s', exc)
            return
        self.graph = graph

    def __call__(self, feeds: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        current = torch.cuda.current_stream(self.device)
        if self.static:
            for n in self.inputs:
                self.buffers[n].copy_(feeds[n])
            outputs = self.buffers
        else:
            for n in self.inputs:
                self.context.set_input_shape(n, tuple(feeds[n].shape))
                self.context.set_tensor_address(n, feeds[n].data_ptr())
            outputs = {n: torch.empty(tuple(self.context.get_tensor_shape(n)), dtype=self.dtypes[n],
                                      device=self.device) for n in self.outputs}
            for n in self.outputs:
                self.context.set_tensor_address(n, outputs[n].data_ptr())
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._execute()
                if self.want_graph:
                    self._capture()
        current.wait_stream(self.stream)
        return {n: outputs[n].clone() if self.static else outputs[n] for n in self.outputs}


class TensorRTFactory:
    """:class:`~seem_ros.runtime.engine_cache.EngineFactory` building engines with the TensorRT API.

    Args:
        trt: the imported ``tensorrt`` module.
        onnx_path: graph name -> ONNX file.
        reference: graph name -> (probe feeds, expected outputs, parity rule) on CPU.
        timing_cache: path of the persisted timing cache.
        device: CUDA device the engines run on.
        workspace: builder workspace limit in bytes.
    """

    def __init__(self, trt, *, onnx_path: Callable[[str], Path], reference: Callable[[str], tuple],
                 timing_cache: Path, device: torch.device, workspace: int = 4 << 30):
        self.trt = trt
        self.logger = _make_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self.onnx_path = onnx_path
        self.reference = reference
        self.timing_cache = timing_cache
        self.device = device
        self.workspace = workspace

    def build(self, key: EngineKey) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(self.onnx_path(key.graph))):
            errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f'TensorRT could not parse {key.graph}: {errors}')
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace)
        if hasattr(trt.BuilderFlag, 'TF32'):
            config.clear_flag(trt.BuilderFlag.TF32)
        cache_bytes = self.timing_cache.read_bytes() if self.timing_cache.is_file() else b''
        config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
        if key.profiles:
            profile = builder.create_optimization_profile()
            for name, low, opt, high in key.profiles:
                profile.set_shape(name, low, opt, high)
            config.add_optimization_profile(profile)
        label = f'TensorRT build {key.graph} ({key.precision.split("/")[0]})'
        monitor = _make_monitor(trt, label)
        config.progress_monitor = monitor
        done = threading.Event()
        start = time.monotonic()

        def heartbeat():
            while not done.wait(HEARTBEAT_S):
                LOG.info('%s: %.0f s elapsed; %s', label, time.monotonic() - start, monitor.status())

        LOG.info('%s: started on %s (takes minutes)', label, key.gpu_name)
        thread = threading.Thread(target=heartbeat, daemon=True)
        thread.start()
        try:
            plan = builder.build_serialized_network(network, config)
        finally:
            done.set()
            thread.join()
        if plan is None:
            raise RuntimeError(f'TensorRT failed to build {key.graph} (see the TensorRT log)')
        atomic_write(self.timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
        LOG.info('%s: finished in %.0f s', label, time.monotonic() - start)
        return bytes(memoryview(plan))

    def deserialize(self, plan: bytes):
        return self.runtime.deserialize_cuda_engine(plan)

    def validate(self, engine, key: EngineKey) -> None:
        feeds, expected, rule = self.reference(key.graph)
        runner = _EngineRunner(self.trt, engine, self.device, cuda_graph=False)
        got = runner({k: v.to(self.device) for k, v in feeds.items()})
        try:
            report = compare({k: v.cpu().numpy() for k, v in got.items()},
                             {k: v.numpy() for k, v in expected.items()}, rule)
        except RuntimeError as exc:
            raise EngineParityError(f'engine {key.graph} disagrees with onnxruntime: {exc}') from None
        worst = max((r.get('max_rel', 0.0) for r in report.values()), default=0.0)
        LOG.info('engine %s: parity with onnxruntime ok (max |err|/scale %.2g)', key.graph, worst)


class TensorRTBackend(GraphBackend):
    """TensorRT engines of the graphs in ``onnx_dir`` (see the module docstring).

    Args:
        onnx_dir: a ``seem-ros export`` directory.
        engine_dir: cache root (default :func:`default_engine_dir`); engines live in a per-device
            subdirectory.
        device: CUDA device.
        precision: which exported graphs to build ('fp32' or 'fp16').
        cuda_graphs: replay static engines from CUDA graphs.
        workspace: builder workspace limit in bytes.
    """

    def __init__(self, onnx_dir, *, engine_dir=None, device=torch.device('cuda'), precision: str = 'fp32',
                 cuda_graphs: bool = True, workspace: int = 4 << 30):
        trt = _import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendUnavailable('torch has no CUDA device (torch.cuda.is_available() is False)')
        device = torch.device(device)
        device = torch.device('cuda', torch.cuda.current_device() if device.index is None else device.index)
        super().__init__(onnx_dir, device=device, precision=precision)
        self.name = 'tensorrt'
        self.trt = trt
        self.text_chunk = TEXT_PROFILE[2][0]
        props = torch.cuda.get_device_properties(device)
        self.gpu_name = props.name
        self.compute_capability = f'{props.major}.{props.minor}'
        self.platform = platform_tag()
        self.cuda_graphs = cuda_graphs
        directory = device_cache_dir(engine_dir or default_engine_dir(), self.gpu_name, self.compute_capability)
        factory = TensorRTFactory(trt, onnx_path=self._path, reference=self._reference,
                                  timing_cache=timing_cache_path(directory, trt.__version__), device=device,
                                  workspace=workspace)
        self.cache = EngineCache(directory, factory)
        self._runners: Dict[str, _EngineRunner] = {}

    def describe(self) -> str:
        return (f'tensorrt {self.trt.__version__} on {self.gpu_name} (sm {self.compute_capability}), '
                f'{self.precision} engines in {self.cache.directory}')

    def _key(self, name: str) -> EngineKey:
        entry = self._entry(name)
        digest = sha256_file(self._path(name))
        if digest != entry['sha256']:
            raise RuntimeError(f'{self._path(name)} changed after export (sha256 differs from manifest.json); '
                               're-run seem-ros export')
        profiles: tuple = ()
        if entry['kind'] == 'text':
            (b0, l0), (b1, l1), (b2, l2) = TEXT_PROFILE
            profiles = (('input_ids', (b0, l0), (b1, l1), (b2, l2)),)
        return EngineKey(graph=name, onnx_sha256=digest, tensorrt_version=self.trt.__version__, gpu_name=self.gpu_name,
                         compute_capability=self.compute_capability, precision=entry['recipe'], profiles=profiles,
                         platform=self.platform)

    def _reference(self, name: str):
        """Probe feeds, onnxruntime (CPU) outputs of the same ONNX file, and the parity rule."""
        entry = self._entry(name)
        kind, size = entry['kind'], tuple(entry['padded_size']) if entry['padded_size'] else None
        cfg = ExportConfig(**self.manifest['config'])
        run = ort_runner(lambda k: self._path(graph_name(k, None if k == 'text' else size, self.precision)))
        feeds = probe_feeds(kind, cfg, size, run)
        return feeds, run(kind, feeds), tolerance(kind, self.precision)

    def _load(self, name: str) -> None:
        if name not in self._runners:
            engine = self.cache.load_or_build(self._key(name))
            self._runners[name] = _EngineRunner(self.trt, engine, self.device, self.cuda_graphs)

    def _run(self, name: str, feeds: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        self._load(name)
        return self._runners[name](feeds)

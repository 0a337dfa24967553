"""Backends over the exported graphs: the shared padding logic and onnxruntime (CPU / CUDA).

:class:`GraphBackend` turns the :class:`~seem_ros.runtime.backend.Backend` calls into runs of the
fixed-shape graphs that ``seem-ros export`` wrote (interface: :mod:`seem_ros.runtime.export`):
it pads prompt points to ``n_max``, prompt slots to ``p_max`` and grounding tokens to ``t_max``
with validity masks, runs the graph, and slices the outputs back to the real counts.
Subclasses only implement ``_run(name, feeds)``.
"""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..model.seem import ImageFeatures
from ..model.spatial import PromptPoints, SpatialPrompts
from .backend import Backend, BackendUnavailable
from .export import TEXT_MAX_BATCH, graph_name, read_manifest


TORCH_DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'int64': torch.int64, 'int32': torch.int32,
                'bool': torch.bool}
NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.int32: np.int32,
                torch.bool: np.bool_}


def _pad(t: torch.Tensor, length: int, dim: int = 0) -> torch.Tensor:
    """Zero-pad (False for bool) dimension ``dim`` of ``t`` up to ``length``."""
    extra = length - t.shape[dim]
    if extra == 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim) + [0, extra]
    return F.pad(t.to(torch.uint8), pad).bool() if t.dtype == torch.bool else F.pad(t, pad)


class GraphBackend(Backend):
    """Common part of the backends that run exported graphs (see the module docstring).

    ``text_chunk``: most sequences per ``text`` graph run (TensorRT: its profile's maximum batch).

    Args:
        onnx_dir: a ``seem-ros export`` output directory (``manifest.json`` + ``.onnx`` files).
        device: where inputs are taken from and outputs are returned.
        precision: which exported graphs to use ('fp32' or 'fp16').
    """

    def __init__(self, onnx_dir, *, device: torch.device, precision: str = 'fp32'):
        super().__init__()
        self.onnx_dir = Path(onnx_dir)
        try:
            self.manifest = read_manifest(self.onnx_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise BackendUnavailable(str(exc)) from None
        cfg = self.manifest['config']
        self.device = torch.device(device)
        self.precision = precision
        self.variant = cfg['variant']
        self.version = cfg['version']
        self.hidden_dim = cfg['hidden_dim']
        self.num_queries = cfg['num_queries']
        self.context_length = cfg['context_length']
        self.logit_scale = cfg['logit_scale']
        self.p_max, self.t_max, self.n_max = cfg['p_max'], cfg['t_max'], cfg['n_max']
        # per-sign pixel budget: the official one, or less so that one encoding fits n_max points
        self.max_spatial_points = min(cfg['max_spatial_points'], self.n_max // 2)
        self.reference_points = self.n_max - 2 * self.max_spatial_points
        self.size_divisibility = cfg['size_divisibility']
        self.text_chunk = TEXT_MAX_BATCH
        self._entry(graph_name('text', None, precision))

    # ------------------------------------------------------------------ graphs
    def _entry(self, name: str) -> dict:
        entry = self.manifest['graphs'].get(name)
        if entry is None:
            have = ', '.join(sorted(self.manifest['graphs'])) or 'nothing'
            raise BackendUnavailable(f'graph {name} was not exported to {self.onnx_dir} (it has: {have})')
        return entry

    def _path(self, name: str) -> Path:
        return self.onnx_dir / self._entry(name)['file']

    @abstractmethod
    def _run(self, name: str, feeds: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Run graph ``name`` on ``feeds`` (interface dtypes, on ``device``); outputs on ``device``."""

    def _load(self, name: str) -> None:
        """Make graph ``name`` ready to run (subclasses: create the session / engine)."""

    def _call(self, kind: str, size, feeds: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        name = graph_name(kind, size, self.precision)
        entry = self._entry(name)
        typed = {spec['name']: feeds[spec['name']].to(self.device, TORCH_DTYPES[spec['dtype']]).contiguous()
                 for spec in entry['inputs']}
        return self._run(name, typed)

    def prepare(self, padded_size) -> None:
        size = tuple(padded_size)
        names = [graph_name('text', None, self.precision)] + [
            graph_name(kind, size, self.precision) for kind in ('encoder', 'prompt_encoder', 'decoder')]
        memory = graph_name('decoder_memory', size, self.precision)
        names += [memory] if memory in self.manifest['graphs'] else []
        for name in names:
            self._entry(name)
        for name in names:
            self._load(name)

    def describe(self) -> str:
        return f'{self.name} on {self.device}, {self.precision} graphs from {self.onnx_dir}'

    # ------------------------------------------------------------------ stages
    def encode_image(self, images: torch.Tensor, valid_size=None) -> ImageFeatures:
        padded = tuple(images.shape[-2:])
        if images.shape[0] != 1:
            raise ValueError(f'exported encoders take one image at a time, got a batch of {images.shape[0]}')
        out = self._call('encoder', padded, {'image': images})
        return ImageFeatures(out['mask_features'], [out[f'multi_scale_{i}'] for i in range(3)], padded,
                             tuple(valid_size or padded))

    def encode_text(self, input_ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        parts = [self._call('text', None, {'input_ids': chunk}) for chunk in torch.split(input_ids, self.text_chunk)]
        return {key: torch.cat([p[key] for p in parts]) for key in ('token_emb', 'class_emb')}

    def _features(self, features: ImageFeatures) -> Dict[str, torch.Tensor]:
        if features.mask_features.shape[0] != 1:
            raise ValueError('exported graphs decode one image at a time')
        feeds = {'mask_features': features.mask_features}
        feeds.update({f'multi_scale_{i}': f for i, f in enumerate(features.multi_scale_features)})
        return feeds

    def encode_prompt_points(self, features: ImageFeatures, points: PromptPoints,
                             prompt_valid: torch.Tensor) -> SpatialPrompts:
        count = len(points.coords)
        if count > self.n_max:
            raise ValueError(f'{count} prompt points exceed the exported n_max={self.n_max}')
        if self.version == 'v0':
            prompt_valid = prompt_valid.any()[None]
        slots = len(prompt_valid)
        if slots > self.p_max:
            raise ValueError(f'{slots} prompts exceed the exported p_max={self.p_max}; decode them in several passes')
        feeds = {**self._features(features), 'point_coords': _pad(points.coords, self.n_max),
                 'point_prompt': _pad(points.prompt, self.n_max), 'point_positive': _pad(points.positive, self.n_max),
                 'point_valid': _pad(points.valid, self.n_max), 'prompt_valid': _pad(prompt_valid, self.p_max)}
        out = self._call('prompt_encoder', features.padded_size, feeds)
        token_prompt = points.prompt if self.version == 'v1' else torch.zeros_like(points.prompt)
        return SpatialPrompts(out['spatial_tokens'][:, :count], token_prompt.to(self.device),
                              points.valid.to(self.device), out['pos_mean'][:slots], out['neg_mean'][:slots],
                              prompt_valid.to(self.device))

    def decode(self, features: ImageFeatures, *, text_embeddings=None, grounding_tokens=None, grounding_padding=None,
               spatial: Optional[SpatialPrompts] = None, prev_mask=None) -> dict:
        c, dev = self.hidden_dim, self.device
        feeds = self._features(features)
        if grounding_tokens is not None:
            if grounding_tokens.shape[0] != 1 or grounding_tokens.shape[1] > self.t_max:
                raise ValueError(f'grounding tokens {tuple(grounding_tokens.shape)} exceed the exported '
                                 f'(1, {self.t_max})')
            valid = (torch.ones(grounding_tokens.shape[:2], dtype=torch.bool, device=dev) if grounding_padding is None
                     else ~grounding_padding.to(dev))
            feeds['grounding_tokens'] = _pad(grounding_tokens.to(dev, torch.float32), self.t_max, 1)
            feeds['grounding_valid'] = _pad(valid, self.t_max, 1)
        else:
            feeds['grounding_tokens'] = torch.zeros(1, self.t_max, c, device=dev)
            feeds['grounding_valid'] = torch.zeros(1, self.t_max, dtype=torch.bool, device=dev)
        slots = 0
        if spatial is not None:
            count, slots = spatial.tokens.shape[1], len(spatial.prompt_valid)
            if count > self.n_max or slots > self.p_max:
                raise ValueError(f'{count} prompt tokens / {slots} prompts exceed the exported '
                                 f'n_max={self.n_max} / p_max={self.p_max}')
            feeds.update({'spatial_tokens': _pad(spatial.tokens.float(), self.n_max, 1),
                          'token_prompt': _pad(spatial.token_prompt, self.n_max),
                          'token_valid': _pad(spatial.token_valid, self.n_max),
                          'pos_mean': _pad(spatial.pos_mean.float(), self.p_max),
                          'prompt_valid': _pad(spatial.prompt_valid, self.p_max)})
        else:
            feeds.update({'spatial_tokens': torch.zeros(3, self.n_max, c, device=dev),
                          'token_prompt': torch.zeros(self.n_max, dtype=torch.int64, device=dev),
                          'token_valid': torch.zeros(self.n_max, dtype=torch.bool, device=dev),
                          'pos_mean': torch.zeros(self.p_max, c, device=dev),
                          'prompt_valid': torch.zeros(self.p_max, dtype=torch.bool, device=dev)})
        kind = 'decoder'
        if prev_mask is not None:
            if spatial is None:
                raise ValueError('prev_mask (memory prompts) needs visual prompts')
            kind = 'decoder_memory'
            feeds['memory_mask'] = _pad(prev_mask.to(dev, torch.float32), self.p_max, 1)
        out = self._call(kind, features.padded_size, feeds)
        result = {'pred_masks': out['pred_masks'], 'pred_captions': out['pred_captions']}
        if text_embeddings is not None:
            result['pred_logits'] = self.class_logits(out['pred_captions'], text_embeddings.to(dev))
        if grounding_tokens is not None:
            result.update(pred_gmasks=out['pred_gmasks'], pred_gtexts=out['pred_gtexts'])
        if spatial is not None:
            queries = 3 * slots if self.version == 'v1' else self.num_queries
            result.update(pred_smasks=out['pred_smasks'][:, :queries], pred_stexts=out['pred_stexts'][:, :queries],
                          pred_smaskembs=out['pred_smaskembs'][:, :queries],
                          pred_pspatials=spatial.pos_mean[None].float(), pred_nspatials=spatial.neg_mean[None].float(),
                          spatial_logits=out['spatial_logits'][:, :queries, :slots],
                          selected_index=out['selected_index'][:, :slots],
                          selected_score=out['selected_score'][:, :slots], prev_mask=out['prev_mask'][:, :slots],
                          spatial_query_index=out['spatial_query_index'][:queries])
        return result


def _cuda_provider_works(ort, device: torch.device) -> Optional[str]:
    """None when onnxruntime's CUDA provider loads on ``device``, else the reason it does not."""
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node('Identity', ['x'], ['y'])], 'probe',
                              [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = min(model.ir_version, 10)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=[
            ('CUDAExecutionProvider', {'device_id': device.index or 0}), 'CPUExecutionProvider'])
    except Exception as exc:  # provider libraries missing or broken
        return f'CUDAExecutionProvider failed to load: {exc}'
    if session.get_providers()[0] != 'CUDAExecutionProvider':
        return 'CUDAExecutionProvider is listed but fell back to CPU (CUDA/cuDNN libraries missing?)'
    return None


class OnnxRuntimeBackend(GraphBackend):
    """onnxruntime over the exported graphs: CPU, or the CUDA provider with I/O bound to torch CUDA tensors.

    Args:
        onnx_dir, precision: see :class:`GraphBackend`.
        device: ``cpu`` or a CUDA device (needs onnxruntime-gpu and torch CUDA).
        threads: intra-op threads on CPU (0 = onnxruntime's default).
    """

    def __init__(self, onnx_dir, *, device=torch.device('cpu'), precision: str = 'fp32', threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f'onnxruntime is not installed ({exc})') from None
        device = torch.device(device)
        if device.type == 'cuda':
            if 'CUDAExecutionProvider' not in ort.get_available_providers():
                raise BackendUnavailable('onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)')
            if not torch.cuda.is_available():
                raise BackendUnavailable('torch has no CUDA device (torch.cuda.is_available() is False)')
            reason = _cuda_provider_works(ort, device)
            if reason:
                raise BackendUnavailable(reason)
            self.providers = [('CUDAExecutionProvider', {'device_id': device.index or 0}), 'CPUExecutionProvider']
        else:
            self.providers = ['CPUExecutionProvider']
        super().__init__(onnx_dir, device=device, precision=precision)
        self.name = 'onnxruntime-cuda' if device.type == 'cuda' else 'onnxruntime-cpu'
        self._ort = ort
        self.options = ort.SessionOptions()
        self.options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.options.intra_op_num_threads = int(threads)
        self._sessions: Dict[str, Any] = {}    # name -> onnxruntime.InferenceSession

    def _load(self, name: str) -> None:
        if name not in self._sessions:
            self._sessions[name] = self._ort.InferenceSession(str(self._path(name)), self.options,
                                                              providers=self.providers)

    def _run(self, name: str, feeds: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        self._load(name)
        session = self._sessions[name]
        names = [o.name for o in session.get_outputs()]
        if self.device.type == 'cpu':
            values = session.run(names, {k: v.numpy() for k, v in feeds.items()})
            return {k: torch.from_numpy(v) for k, v in zip(names, values)}
        return self._run_bound(name, session, names, feeds)

    def _run_bound(self, name, session, names, feeds):
        """CUDA: inputs and outputs bound in place to torch tensors (no host copies)."""
        index = self.device.index or 0
        binding = session.io_binding()
        for key, value in feeds.items():
            binding.bind_input(key, 'cuda', index, NUMPY_DTYPES[value.dtype], tuple(value.shape), value.data_ptr())
        outputs = {}
        symbols = {}
        for spec in self._entry(name)['inputs']:
            symbols.update({d: n for d, n in zip(spec['shape'], feeds[spec['name']].shape) if isinstance(d, str)})
        for spec in self._entry(name)['outputs']:
            shape = tuple(symbols[d] if isinstance(d, str) else d for d in spec['shape'])
            out = torch.empty(shape, dtype=TORCH_DTYPES[spec['dtype']], device=self.device)
            binding.bind_output(spec['name'], 'cuda', index, NUMPY_DTYPES[out.dtype], shape, out.data_ptr())
            outputs[spec['name']] = out
        torch.cuda.current_stream(self.device).synchronize()   # inputs written by torch are complete
        session.run_with_iobinding(binding)
        return {k: outputs[k] for k in names}

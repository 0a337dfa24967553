"""PyTorch backend (``torch-cpu`` / ``torch-cuda``): the model itself, no export.

On CUDA it runs under ``torch.autocast`` (fp16 or bf16 when asked) and replays the image encoder
(static shape per padded input size) from a CUDA graph captured on first use of each size. The
decoder runs eagerly (its shapes follow the prompts). On CPU it is plain fp32 eager execution;
nothing CUDA-related is touched.
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Tuple

import torch

from ..model.build import build_seem
from ..model.seem import ImageFeatures, SeemModel
from ..model.spatial import PromptPoints, SpatialPrompts
from .backend import Backend, BackendUnavailable

_AUTOCAST = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


class _GraphedEncoder:
    """CUDA-graph replay of ``model.encode_image`` for one input shape.

    Captured once (after two warm-up runs on a side stream); each call copies the input into the
    static buffer, replays, and returns clones of the static outputs (so cached features survive
    the next frame).
    """

    def __init__(self, model: SeemModel, shape: Tuple[int, ...], device: torch.device, autocast):
        self.input = torch.zeros(shape, device=device)
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), autocast():
            for _ in range(2):
                model.encode_image(self.input)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), autocast():
            features = model.encode_image(self.input)
        self.outputs: List[torch.Tensor] = [features.mask_features, *features.multi_scale_features]

    def __call__(self, images: torch.Tensor) -> List[torch.Tensor]:
        self.input.copy_(images)
        self.graph.replay()
        return [t.clone() for t in self.outputs]


class TorchBackend(Backend):
    """SEEM in PyTorch on the device of ``model``.

    Args:
        model: a :class:`SeemModel` in eval mode, already on its device.
        precision: 'fp32', or on CUDA 'fp16' / 'bf16' autocast.
        cuda_graphs: on CUDA, replay the encoder from CUDA graphs (one per padded size).
    """

    def __init__(self, model: SeemModel, *, precision: str = 'fp32', cuda_graphs: bool = True):
        super().__init__()
        if precision not in _AUTOCAST:
            raise ValueError(f'unknown precision {precision!r}; expected one of {sorted(_AUTOCAST)}')
        self.model = model.eval()
        self.device = next(model.parameters()).device
        if precision != 'fp32' and self.device.type != 'cuda':
            raise BackendUnavailable(f'{precision} autocast needs a CUDA device (model is on {self.device})')
        self.name = 'torch-cuda' if self.device.type == 'cuda' else 'torch-cpu'
        self.precision = precision
        self.cuda_graphs = cuda_graphs and self.device.type == 'cuda'
        decoder = model.decoder
        self.version = decoder.version
        self.hidden_dim = decoder.class_embed.shape[1]
        self.num_queries = decoder.num_queries
        self.context_length = model.lang_encoder.context_length
        self.logit_scale = float(model.lang_encoder.logit_scale.detach())
        self.max_spatial_points = decoder.max_spatial_points
        self.size_divisibility = model.size_divisibility
        self._graphs: Dict[tuple, _GraphedEncoder] = {}

    @classmethod
    def create(cls, *, model: Optional[SeemModel] = None, checkpoint=None, variant: str = 'focalt',
               version: str = 'v1', device=torch.device('cpu'), precision: str = 'fp32',
               cuda_graphs: bool = True) -> 'TorchBackend':
        """Backend on ``device`` from ``model`` (moved there) or from ``checkpoint`` of ``variant``."""
        device = torch.device(device)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise BackendUnavailable('torch has no CUDA device (torch.cuda.is_available() is False)')
        if model is None:
            if checkpoint is None:
                raise BackendUnavailable('no model and no checkpoint given')
            model = build_seem(variant, version=version, checkpoint=checkpoint, device=device)
        return cls(model.to(device), precision=precision, cuda_graphs=cuda_graphs)

    def _autocast(self):
        dtype = _AUTOCAST[self.precision]
        if dtype is None:
            return torch.inference_mode()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        # cache_enabled=False: autocast's weight-cast cache must not leak out of a CUDA graph capture
        stack.enter_context(torch.autocast('cuda', dtype=dtype, cache_enabled=False))
        return stack

    def describe(self) -> str:
        extra = f', {self.precision}' + (', CUDA-graph encoder' if self.cuda_graphs else '')
        return f'{self.name} on {self.device}{extra}'

    def encode_image(self, images: torch.Tensor, valid_size=None) -> ImageFeatures:
        images = images.to(self.device, torch.float32)
        padded = tuple(images.shape[-2:])
        if not self.cuda_graphs:
            with self._autocast():
                return self.model.encode_image(images, valid_size)
        shape = tuple(images.shape)
        if shape not in self._graphs:
            self._graphs[shape] = _GraphedEncoder(self.model, shape, self.device, self._autocast)
        mask_features, *multi_scale = self._graphs[shape](images)
        return ImageFeatures(mask_features, multi_scale, padded, tuple(valid_size or padded))

    def encode_text(self, input_ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        with self._autocast():
            out = self.model.lang_encoder.forward_tokens(input_ids.to(self.device))
        return {'token_emb': out['token_emb'].float(), 'class_emb': out['class_emb'].float()}

    def encode_sentences(self, texts):
        with self._autocast():
            return self.model.lang_encoder.encode_sentences(list(texts))

    def class_embeddings(self, names, templates: bool = True) -> torch.Tensor:
        return self.model.lang_encoder.class_embeddings(list(names), templates)

    def clear_text_cache(self) -> None:
        self.model.lang_encoder.clear_cache()

    def encode_prompt_points(self, features: ImageFeatures, points: PromptPoints,
                             prompt_valid: torch.Tensor) -> SpatialPrompts:
        with self._autocast():
            return self.model.decoder.encode_prompt_points(features.multi_scale_features, features.mask_features,
                                                           points, prompt_valid)

    def decode(self, features: ImageFeatures, *, text_embeddings=None, grounding_tokens=None, grounding_padding=None,
               spatial: Optional[SpatialPrompts] = None, prev_mask=None) -> dict:
        with self._autocast():
            return self.model.decoder(features.multi_scale_features, features.mask_features,
                                      text_embeddings=text_embeddings, grounding_tokens=grounding_tokens,
                                      grounding_padding=grounding_padding, spatial=spatial, prev_mask=prev_mask)

"""The inference-backend interface of SEEM and the ``auto`` fallback chain.

A backend runs the three stages of SEEM on torch tensors of its ``device``:

* :meth:`Backend.encode_image`: normalized, padded images (1, 3, Hp, Wp) float32 ->
  :class:`~seem_ros.model.seem.ImageFeatures`;
* :meth:`Backend.encode_text`: token ids (N, L) int64 -> ``token_emb`` (N, L, C) and
  ``class_emb`` (N, C) (plus the sentence / vocabulary helpers built on it);
* :meth:`Backend.encode_prompts` / :meth:`Backend.decode`: visual prompts and the SEEM decoder,
  with the output dict of :meth:`seem_ros.model.query_decoder.SeemDecoder.forward`.

Pixel sampling of visual prompts (``nonzero`` and the seeded subsampling above the point
budget) always runs on the host; engines only see padded, fixed-shape point sets.

Backends (``BACKENDS``): ``tensorrt`` (ONNX export + TensorRT engines, CUDA), ``onnxruntime-cuda``,
``torch-cuda`` (fp16 autocast + CUDA-graph encoder), ``onnxruntime-cpu``, ``torch-cpu``.
:func:`select_backend` builds one by name, or with ``auto`` takes the first that works in that
order, logging once per process why each earlier one was skipped.
"""
from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import Dict, Optional, Sequence, Set

import torch

from ..model.seem import ImageFeatures
from ..model.spatial import REFERENCE_POINTS, PromptPoints, SpatialPrompts, points_from_masks
from ..model.templates import prompts_for
from ..model.text_encoder import normalize
from ..model.tokenizer import tokenize

LOG = logging.getLogger('seem_ros.runtime')

BACKENDS = ('tensorrt', 'onnxruntime-cuda', 'torch-cuda', 'onnxruntime-cpu', 'torch-cpu')
ALIASES = {'torch': ('torch-cuda', 'torch-cpu'), 'onnxruntime': ('onnxruntime-cuda', 'onnxruntime-cpu')}


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (missing package, device, export or engine)."""


class Backend(ABC):
    """SEEM inference on one device; all tensors in and out are torch tensors on ``device``.

    Attributes (set by subclasses): ``name`` (one of ``BACKENDS``), ``device``, ``version``
    ('v1'/'v0'), ``hidden_dim`` C, ``num_queries`` (101), ``context_length`` (77),
    ``logit_scale`` (float, the language encoder's log scale), ``max_spatial_points`` (per-sign
    pixel budget of visual prompts: the official 512, or ``n_max // 2`` of an export with fewer
    points), ``reference_points`` (prompt points the referring patches of one decoder pass may
    add, :data:`~seem_ros.model.spatial.REFERENCE_POINTS` or what an export's ``n_max`` leaves),
    ``size_divisibility`` (32).
    """

    name: str
    device: torch.device
    version: str
    hidden_dim: int
    num_queries: int
    context_length: int
    logit_scale: float
    max_spatial_points: int
    reference_points: int = REFERENCE_POINTS
    size_divisibility: int = 32
    text_batch: int = 256

    def __init__(self):
        self._vocab_cache: Dict[tuple, torch.Tensor] = {}

    # ------------------------------------------------------------------ stages
    @abstractmethod
    def encode_image(self, images: torch.Tensor, valid_size=None) -> ImageFeatures:
        """Backbone + pixel decoder on a normalized, zero-padded (1, 3, Hp, Wp) float32 batch."""

    @abstractmethod
    def encode_text(self, input_ids: torch.Tensor) -> Dict[str, torch.Tensor]:
        """int64 ids (N, L), L <= 77 -> ``token_emb`` (N, L, C) and ``class_emb`` (N, C) (the
        projected embedding at the first end token ``argmax(ids)``), float32."""

    @abstractmethod
    def encode_prompt_points(self, features: ImageFeatures, points: PromptPoints,
                             prompt_valid: torch.Tensor) -> SpatialPrompts:
        """Fixed-shape prompt encoding of a point set on ONE image (see
        :meth:`SeemDecoder.encode_prompt_points`); ``prompt_valid`` (P,) bool."""

    @abstractmethod
    def decode(self, features: ImageFeatures, *, text_embeddings: Optional[torch.Tensor] = None,
               grounding_tokens: Optional[torch.Tensor] = None, grounding_padding: Optional[torch.Tensor] = None,
               spatial: Optional[SpatialPrompts] = None, prev_mask: Optional[torch.Tensor] = None) -> dict:
        """The SEEM decoder on ``features`` (batch 1); arguments and output keys as
        :meth:`SeemDecoder.forward` (without ``return_steps``)."""

    def prepare(self, padded_size) -> None:  # noqa: B027 - an optional hook: the default is to do nothing
        """Load (or build) everything needed for images of ``padded_size`` (Hp, Wp) now rather than
        on the first frame. The default does nothing."""

    # ------------------------------------------------------------------ prompts
    def encode_prompts(self, features: ImageFeatures, pos_masks: torch.Tensor,
                       neg_masks: Optional[torch.Tensor] = None, *, prompt_valid: Optional[torch.Tensor] = None,
                       generator: Optional[torch.Generator] = None,
                       max_points: Optional[int] = None) -> SpatialPrompts:
        """Encode per-prompt (P, Hp, Wp) bool pixel masks of the image of ``features``.

        Pixels are picked on the host with the official rule
        (:func:`~seem_ros.model.spatial.points_from_masks`; every pixel below the per-sign budget
        ``max_points``, default ``max_spatial_points``, a ``generator``-seeded subset above it),
        then encoded by :meth:`encode_prompt_points`.
        """
        points = points_from_masks(pos_masks, neg_masks, merged=self.version == 'v0',
                                   max_points=self.max_spatial_points if max_points is None else max_points,
                                   generator=generator)
        if prompt_valid is None:
            prompt_valid = torch.ones(pos_masks.shape[0], dtype=torch.bool, device=pos_masks.device)
        points = PromptPoints(*(t.to(self.device) for t in points))
        return self.encode_prompt_points(features, points, prompt_valid.to(self.device))

    # ------------------------------------------------------------------ text
    def encode_sentences(self, texts: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Sentence embeddings for grounding; keys and shapes as
        :meth:`~seem_ros.model.text_encoder.LanguageEncoder.encode_sentences`."""
        input_ids, attention_mask = tokenize(list(texts), self.context_length)
        input_ids, token_mask = input_ids.to(self.device), attention_mask.to(self.device).bool()
        out = self.encode_text(input_ids)
        return {'input_ids': input_ids, 'token_emb': out['token_emb'], 'token_mask': token_mask,
                'grounding_tokens': out['token_emb'][token_mask], 'class_emb': out['class_emb'],
                'class_emb_normalized': normalize(out['class_emb'])}

    def class_embeddings(self, names: Sequence[str], templates: bool = True) -> torch.Tensor:
        """Open-vocabulary class embeddings (K, C), cached per name list; same rule as
        :meth:`~seem_ros.model.text_encoder.LanguageEncoder.class_embeddings` (81 templates,
        each normalized with +1e-7, averaged, renormalized)."""
        if not names:
            raise ValueError('class_embeddings needs at least one class name')
        key = (tuple(names), bool(templates))
        if key not in self._vocab_cache:
            prompts = [prompts_for(n, templates) for n in names]
            input_ids, _ = tokenize([p for group in prompts for p in group], self.context_length)
            self._vocab_cache[key] = self._pooled_mean(input_ids.to(self.device), len(names))
        return self._vocab_cache[key]

    def _pooled_mean(self, input_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Normalized per-class mean of the normalized ``class_emb`` of ids (K * T, 77)."""
        end = input_ids.argmax(-1)
        order = torch.argsort(end)
        pooled = torch.empty(len(end), self.hidden_dim, device=self.device)
        for chunk in torch.split(order, self.text_batch):
            length = int(end[chunk].max()) + 1      # causal: later positions never change earlier ones
            pooled[chunk] = normalize(self.encode_text(input_ids[chunk, :length])['class_emb'].float())
        mean = pooled.view(num_classes, -1, self.hidden_dim).mean(1)
        return mean / mean.norm(dim=-1, keepdim=True)

    def vocabulary_embeddings(self, names: Sequence[str]) -> torch.Tensor:
        """``class_embeddings(names + ['background'])`` (K+1, C): the decoder's classification columns."""
        return self.class_embeddings(list(names) + ['background'])

    def clear_text_cache(self) -> None:
        """Forget cached vocabulary embeddings."""
        self._vocab_cache.clear()

    # ------------------------------------------------------------------ scores
    def class_logits(self, captions: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """``exp(logit_scale) * normalize(captions) @ text_embeddings.T`` (the decoder's ``pred_logits``)."""
        return math.exp(self.logit_scale) * normalize(captions.float()) @ text_embeddings.float().T

    def grounding_scores(self, pred_gtexts: torch.Tensor, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """Official grounding logits (B, Q, S), as :meth:`SeemDecoder.grounding_scores`."""
        scale = min(math.exp(self.logit_scale), 100.0)
        return scale * (normalize(pred_gtexts.float()) @ normalize(sentence_embeddings.float()).T)

    def describe(self) -> str:
        """One line for logs: backend, device and what it runs."""
        return f'{self.name} on {self.device}'


_logged: Set[str] = set()


def _log_once(level: int, message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        LOG.log(level, message)


def _candidates(name: str) -> Sequence[str]:
    if name == 'auto':
        return BACKENDS
    if name in ALIASES:
        return ALIASES[name]
    if name in BACKENDS:
        return (name,)
    raise ValueError(f'unknown backend {name!r}; expected auto, {", ".join(BACKENDS)} or {", ".join(ALIASES)}')


def create_backend(name: str, *, model=None, checkpoint=None, variant: str = 'focalt', version: str = 'v1',
                   onnx_dir=None, engine_dir=None, precision: str = 'fp32', device=None,
                   cuda_graphs: bool = True, threads: int = 0) -> Backend:
    """Build exactly the backend ``name`` (one of ``BACKENDS``) or raise :class:`BackendUnavailable`.

    Torch backends use ``model`` (a :class:`SeemModel`) or build ``variant``/``version`` from
    ``checkpoint``; the others read the graphs that ``seem-ros export`` wrote to ``onnx_dir``.
    ``precision``: 'fp32' or 'fp16' (CUDA backends; graph backends need graphs exported with it).
    ``device``: CUDA device for the CUDA backends (default ``cuda``). ``threads``: onnxruntime
    CPU threads (0 = its default).
    """
    cuda = torch.device(device) if device is not None and torch.device(device).type == 'cuda' else torch.device('cuda')
    if name.endswith('-cpu') and precision != 'fp32':
        _log_once(logging.INFO, f'{name} runs fp32 ({precision} is for CUDA backends)')
        precision = 'fp32'
    if name in ('torch-cuda', 'torch-cpu'):
        from .torch_backend import TorchBackend
        return TorchBackend.create(model=model, checkpoint=checkpoint, variant=variant, version=version,
                                   device=cuda if name == 'torch-cuda' else torch.device('cpu'),
                                   precision=precision, cuda_graphs=cuda_graphs)
    if onnx_dir is None:
        raise BackendUnavailable('no exported ONNX graphs given (run `seem-ros export` and pass their directory)')
    if name in ('onnxruntime-cuda', 'onnxruntime-cpu'):
        from .onnx_backend import OnnxRuntimeBackend
        return OnnxRuntimeBackend(onnx_dir, device=cuda if name == 'onnxruntime-cuda' else torch.device('cpu'),
                                  precision=precision, threads=threads)
    if name == 'tensorrt':
        from .tensorrt_backend import TensorRTBackend
        return TensorRTBackend(onnx_dir, engine_dir=engine_dir, device=cuda, precision=precision,
                               cuda_graphs=cuda_graphs)
    raise ValueError(f'unknown backend {name!r}')


def select_backend(name: str = 'auto', *, image_size=None, **kwargs) -> Backend:
    """The backend ``name``; with ``auto`` (or an alias such as ``torch``) the first that works of
    tensorrt -> onnxruntime-cuda -> torch-cuda -> onnxruntime-cpu -> torch-cpu.

    ``image_size`` (Hp, Wp): padded model input size; when given, each candidate must
    :meth:`~Backend.prepare` it (graph backends need an export of that size; TensorRT builds or
    loads its engines here, including the post-build parity check). Other keyword arguments go
    to :func:`create_backend`. Each skipped candidate is logged once per process with the reason
    (a failed parity check at ERROR level); the chosen one at INFO. A single named backend that
    cannot run raises :class:`BackendUnavailable`.
    """
    names = _candidates(name)
    reasons = []
    for candidate in names:
        try:
            backend = create_backend(candidate, **kwargs)
            if image_size is not None:
                backend.prepare(tuple(image_size))
        except BackendUnavailable as exc:
            reasons.append(f'{candidate}: {exc}')
            if len(names) > 1:
                _log_once(logging.WARNING, f'backend {candidate} not used: {exc}')
            continue
        except Exception as exc:  # a backend that fails while loading must not stop the fallback
            reasons.append(f'{candidate}: {type(exc).__name__}: {exc}')
            if len(names) == 1:
                raise
            _log_once(logging.ERROR, f'backend {candidate} failed, falling back: {type(exc).__name__}: {exc}')
            continue
        _log_once(logging.INFO, f'inference backend: {backend.describe()}')
        return backend
    raise BackendUnavailable('no usable backend: ' + '; '.join(reasons))

"""SeemPredictor: encode an image once, then answer many prompts (the SAM predictor split).

``set_image`` runs the backbone and pixel decoder once and caches the features; ``predict`` runs
the SEEM decoder for any list of :class:`~seem_ros.prompts.ObjectPrompt` (one mask per object);
``segment_everything`` / ``semantic`` / ``instances`` run the open-vocabulary object-query path.

The frame program is the same on every backend and only uses shapes of the frame's padded model
input (Hp, Wp), the one size a graph backend was exported for:

* one image-encoder pass per frame (``set_image``);
* referring patches (the user's, and the trackers' references) are encoded once into a canvas of
  the frame's size (:func:`~seem_ros.model.preprocess.fitted_size`: the official resize when it
  fits, else letterboxed to fit; zero padding outside its valid region) and cached by content
  (``reference_cache_size`` entries); the patches of one pass share the backend's
  ``reference_points`` prompt points (at most the official 512 each), so that any pass fits the
  exported ``n_max`` points;
* sentence embeddings are cached per string;
* every object, visual, referring and text, goes through one decoder pass (v1), split only by a
  backend's fixed ``p_max`` prompt slots and ``t_max`` grounding tokens.

Conventions: images are (H, W, 3) uint8 RGB; output masks are (H, W) bool at the size given to
``set_image``; pixel coordinates are (x, y) of that image; mask logits that feed the next round
(``prev_mask``) stay torch tensors on the backend's device.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .model.postprocess import (instance_inference, panoptic_inference, resize_mask_logits,
                                semantic_inference)
from .model.preprocess import fitted_size, normalize_and_pad, resize_to
from .model.build import matching_variant
from .model.checkpoint import read_metadata, read_state_dict
from .model.query_decoder import grounding_match
from .model.seem import ImageFeatures, SeemModel
from .model.spatial import SpatialPrompts
from .prompts import ObjectPrompt, PromptError, ReferencePatch
from .rasterize import rasterize
from .runtime.backend import Backend, select_backend
from .runtime.torch_backend import TorchBackend

REFERENCE_CACHE_SIZE = 32
"""Encoded referring patches kept by default (the pipeline makes room for ``max_objects``)."""
SENTENCE_CACHE_SIZE = 256
"""Sentence embeddings kept (per string)."""
DEFAULT_MODEL = {'variant': 'focalt', 'version': 'v1', 'short_side': 512}
"""What a checkpoint that says nothing of itself (an official file) is run as."""


def resolve_model(checkpoint, *, variant: Optional[str] = None, version: Optional[str] = None,
                  short_side: Optional[int] = None) -> Dict[str, Any]:
    """``{'variant', 'version', 'short_side'}`` to run ``checkpoint`` as: each given value, else what
    the checkpoint says of itself (:func:`~seem_ros.model.checkpoint.read_metadata`; the variant
    else from the shapes of its tensors), else :data:`DEFAULT_MODEL`."""
    given = {'variant': variant, 'version': version, 'short_side': short_side}
    said = read_metadata(checkpoint)
    if variant is None and 'variant' not in said:          # the variant its tensors are shaped for
        said['variant'] = matching_variant(read_state_dict(checkpoint)) or DEFAULT_MODEL['variant']
    return {key: said.get(key, DEFAULT_MODEL[key]) if value is None else value for key, value in given.items()}


def cached_export_for(checkpoint, height: int, width: int, *, variant: Optional[str] = None,
                      version: Optional[str] = None, short_side: Optional[int] = None, log=print):
    """The export directory of ``checkpoint`` (run as :func:`resolve_model` says) for (height,
    width) camera images, from the export cache (exported on first use, ``log`` tells so)."""
    from .runtime.export_cache import cached_export
    model = resolve_model(checkpoint, variant=variant, version=version, short_side=short_side)
    return cached_export(checkpoint, variant=model['variant'], version=model['version'], height=height, width=width,
                         short_side=model['short_side'], log=log)


@dataclass
class SeemResult:
    """Masks for N prompted objects, in prompt order.

    masks: (N, H, W) bool. scores: (N,) float32, the official selection score (visual prompts:
    ``mask_embed . prompt_mean``; text: the grounding score ``clamp(exp(logit_scale),100)*cos``).
    confidence: (N,) float32 in [0, 1], mean mask probability inside the mask (0 when empty).
    labels: object names (text, name, or 'object'). selected_index: (N,) int64, v1: index into
    the 3·P spatial queries, v0: into the 101 queries, text: the matched grounding query.
    prev_mask: (N, Hp/4, Wp/4) float32 torch tensor on the backend's device, low-resolution logits of
    the padded input; pass them back as ``prev_mask`` for the same prompts in the next round
    (they never leave the device). embeddings: (N, C) float32 L2-normalized
    ``decoder_norm(q) @ class_embed`` of the selected query (appearance/semantics, for tracking).
    """

    masks: np.ndarray
    scores: np.ndarray
    confidence: np.ndarray
    labels: List[str]
    selected_index: np.ndarray
    prev_mask: torch.Tensor
    embeddings: np.ndarray


@dataclass
class Segment:
    """One everything-mode segment: label, score, (H, W) bool mask, (C,) normalized embedding."""

    label: str
    score: float
    mask: np.ndarray
    embedding: np.ndarray
    category: int = -1


@dataclass
class PanopticResult:
    """Open-vocabulary panoptic result: ``id_map`` (H, W) int32 (0 = void, i = segments[i-1])."""

    id_map: np.ndarray
    segments: List[Segment] = field(default_factory=list)


@dataclass
class _Image:
    features: ImageFeatures
    original_size: tuple   # (H, W) given to set_image
    input_size: tuple      # (h, w) after the short-side resize


class SeemPredictor:
    """Stateful SEEM inference on one image at a time.

    Args:
        backend: a :class:`~seem_ros.runtime.backend.Backend` (torch, onnxruntime, TensorRT), or a
            :class:`SeemModel` in eval mode, run by the torch backend on its device.
        short_side: resize images so the short side has this length (0 = keep the size).
        deterministic: reproducible prompt sampling (seeded generator above the prompt-pixel
            budget); the spatial query choice is always the fixed rule ``prompt p -> queries 3p..3p+2``.
        seed: seed of the sampling generator in deterministic mode.
        reference_cache_size: encoded referring patches kept (least recently used go first).
    """

    def __init__(self, backend, *, short_side: int = 512, deterministic: bool = True, seed: int = 0,
                 reference_cache_size: int = REFERENCE_CACHE_SIZE):
        self.backend: Backend = TorchBackend(backend) if isinstance(backend, SeemModel) else backend
        self.variant: Optional[str] = None          # set by from_checkpoint
        self.short_side = int(short_side)
        self.deterministic = deterministic
        self.seed = seed
        self.timings: Dict[str, float] = {}
        self._image: Optional[_Image] = None
        self.reference_cache_size = reference_cache_size
        self._references: OrderedDict = OrderedDict()
        self._sentences: OrderedDict = OrderedDict()

    @classmethod
    def from_checkpoint(cls, checkpoint, *, variant: Optional[str] = None, version: Optional[str] = None,
                        short_side: Optional[int] = None, device='cpu', backend='torch', precision='fp32',
                        onnx_dir=None, engine_dir=None, **kwargs) -> 'SeemPredictor':
        """Strictly load ``checkpoint`` of ``variant`` (decoder ``version``) into ``backend``.

        ``variant``, ``version`` and ``short_side`` left None are what the checkpoint says of
        itself (:func:`~seem_ros.model.checkpoint.read_metadata`; the variant else from the
        shapes of its tensors), else :data:`DEFAULT_MODEL` (the official Focal-T v1 at the demo's
        short side 512); the predictor's ``variant`` tells the one used.

        ``backend``: a name of :data:`~seem_ros.runtime.backend.BACKENDS`, an alias ('torch',
        'onnxruntime') or 'auto' (tensorrt -> onnxruntime-cuda -> torch-cuda -> onnxruntime-cpu ->
        torch-cpu); graph backends read the ``seem-ros export`` output in ``onnx_dir``.
        """
        chosen = resolve_model(checkpoint, variant=variant, version=version, short_side=short_side)
        if backend == 'torch':
            backend = 'torch-cuda' if torch.device(device).type == 'cuda' else 'torch-cpu'
        engine = select_backend(backend, checkpoint=checkpoint, variant=chosen['variant'], version=chosen['version'],
                                device=device, precision=precision, onnx_dir=onnx_dir, engine_dir=engine_dir)
        predictor = cls(engine, short_side=chosen['short_side'], **kwargs)
        predictor.variant = chosen['variant']
        return predictor

    @property
    def model_name(self) -> str:
        """'variant/version, short side N' of the model this predictor runs."""
        return f'{self.variant or "model"}/{self.version}, short side {self.short_side}'

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def version(self) -> str:
        return self.backend.version

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def _timed(self, stage):
        start = time.perf_counter()
        yield
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        self.timings[stage] = (time.perf_counter() - start) * 1000.0

    def _encode(self, image, canvas: Optional[tuple] = None) -> _Image:
        """Resize, normalize, pad and encode ``image``: padded to multiples of 32, or into ``canvas``
        (Hp, Wp) (resized by :func:`~seem_ros.model.preprocess.fitted_size` to fit it)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'expected an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}')
        if min(image.shape[:2]) < 1:
            raise ValueError(f'empty image ({image.shape[1]}x{image.shape[0]})')
        height, width = image.shape[:2]
        size = fitted_size(height, width, self.short_side, canvas or (2**31, 2**31))
        tensor, valid = normalize_and_pad(resize_to(image, size), self.backend.size_divisibility, device=self.device,
                                          canvas=canvas)
        with torch.inference_mode():
            return _Image(self.backend.encode_image(tensor, valid), tuple(image.shape[:2]), tuple(valid))

    def _generator(self):
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self.seed if self.deterministic else int(torch.seed()))
        return generator

    def _require_image(self) -> _Image:
        if self._image is None:
            raise RuntimeError('no image set: call set_image() before predicting')
        return self._image

    # ------------------------------------------------------------------ image
    def set_image(self, image) -> None:
        """Encode ``image`` ((H, W, 3) uint8 RGB) once; later calls reuse its features."""
        with self._timed('encoder'):
            self._image = self._encode(image)

    def reset_image(self) -> None:
        """Forget the current image's features."""
        self._image = None

    # ------------------------------------------------------------------ prompts
    def _prompt_masks(self, img: _Image, prompts: Sequence[ObjectPrompt]):
        """(P, Hp, Wp) positive and negative bool masks of the visual prompts on ``img``."""
        hp, wp = img.features.padded_size
        h, w = img.input_size
        pos = torch.zeros(len(prompts), hp, wp, dtype=torch.bool)
        neg = torch.zeros_like(pos)
        for i, prompt in enumerate(prompts):
            p, n = rasterize(prompt, img.original_size, (h, w))
            pos[i, :h, :w] = torch.from_numpy(p)
            neg[i, :h, :w] = torch.from_numpy(n)
        return pos.to(self.device), neg.to(self.device)

    def encode_reference(self, reference: ReferencePatch, max_points: Optional[int] = None) -> SpatialPrompts:
        """Encode a referring patch (official ``task='refimg'``) into a canvas of the current image's
        padded size (see the module docstring), with at most ``max_points`` prompt pixels (default:
        the official ``max_spatial_points``, within the backend's ``reference_points``); cached by
        content, canvas and budget."""
        canvas = self._require_image().features.padded_size
        if max_points is None:
            max_points = min(self.backend.max_spatial_points, self.backend.reference_points)
        if max_points < 1:
            raise PromptError(f'the backend has no room for referring patches (reference_points '
                              f'{self.backend.reference_points}): export with a larger n_max')
        mask = np.asarray(reference.mask, bool)
        if mask.shape != np.asarray(reference.image).shape[:2]:
            raise PromptError(f'reference mask {mask.shape} does not match its image '
                              f'{np.asarray(reference.image).shape[:2]}')
        if not mask.any():
            raise PromptError('reference mask is empty')
        key = (canvas, max_points, hashlib.sha1(np.ascontiguousarray(reference.image).tobytes()
                                                + np.packbits(mask).tobytes()).hexdigest())
        if key in self._references:
            self._references.move_to_end(key)
            return self._references[key]
        img = self._encode(reference.image, canvas)
        pos, neg = self._prompt_masks(img, [ObjectPrompt(mask=mask)])
        with torch.inference_mode():
            encoded = self.backend.encode_prompts(img.features, pos, neg, generator=self._generator(),
                                                  max_points=max_points)
        self._references[key] = encoded
        while len(self._references) > max(self.reference_cache_size, 1):
            self._references.popitem(last=False)
        return encoded

    def _encode_spatial(self, img: _Image, prompts: Sequence[ObjectPrompt]) -> Tuple[List[int], SpatialPrompts]:
        """One multi-prompt encoding of ``prompts`` on ``img``: the prompts with pixels on it are
        encoded together (the official multi-prompt path, 2 x ``max_spatial_points`` points at
        most), referring patches are appended, splitting ``reference_points`` between them (at
        most ``max_spatial_points`` each), so that the pass fits the exported ``n_max`` points.
        Returns the prompts' order in the encoding and the encoding."""
        direct = [i for i, p in enumerate(prompts) if p.has_visual]
        referring = [i for i, p in enumerate(prompts) if not p.has_visual]
        groups = []
        if direct:
            pos, neg = self._prompt_masks(img, [prompts[i] for i in direct])
            with torch.inference_mode():
                groups.append(self.backend.encode_prompts(img.features, pos, neg, generator=self._generator()))
        if referring:
            share = min(self.backend.max_spatial_points, self.backend.reference_points // len(referring))
            for i in referring:
                reference = prompts[i].reference
                assert reference is not None     # a spatial prompt without pixels here is a referring patch
                groups.append(self.encode_reference(reference, share))
        return direct + referring, _concat_prompts(groups)

    def _passes(self, prompts: Sequence[ObjectPrompt], spatial_ids: List[int], text_ids: List[int]) -> List[tuple]:
        """Decoder passes ``[(spatial object indices, text object indices), ...]``.

        v1: as few passes as the backend's fixed ``p_max`` prompt slots and ``t_max`` grounding
        tokens allow (one for unbounded backends), text and visual objects together; v0: one
        pass per visual object (the text objects join the first).
        """
        p_max = 1 if self.version == 'v0' else getattr(self.backend, 'p_max', None) or max(len(spatial_ids), 1)
        spatial = [spatial_ids[k:k + p_max] for k in range(0, len(spatial_ids), p_max)]
        t_max = getattr(self.backend, 't_max', None)
        texts: List[List[int]] = []
        used = 0
        for i in text_ids:
            length = len(self._sentence(prompts[i].text)[0])
            if not texts or (t_max is not None and used + length > t_max):
                texts.append([])
                used = 0
            texts[-1].append(i)
            used += length
        count = max(len(spatial), len(texts))
        return [(spatial[k] if k < len(spatial) else [], texts[k] if k < len(texts) else []) for k in range(count)]

    def predict(self, prompts: Sequence[ObjectPrompt], prev_mask=None) -> SeemResult:
        """Segment one object per prompt on the current image.

        Objects with visual input (clicks, boxes, scribbles, masks) or a referring patch use the
        spatial path (v1: all in one decoder pass; v0: one pass per object); text-only objects use
        text grounding (all sentences in the same pass, official ``evaluate_grounding``). Text that
        accompanies visual input re-ranks the object's candidate queries by text similarity.

        Args:
            prompts: the objects; an empty prompt raises ValueError.
            prev_mask: (N, Hp/4, Wp/4) float logits (tensor, ideally on the device, or array) from
                the previous round's ``prev_mask`` for the same N prompts (enables the memory
                prompts of visual objects), or None.
        Raises:
            RuntimeError: no image set. ValueError / PromptError: unusable prompts.
        """
        img = self._require_image()
        prompts = list(prompts)
        for i, p in enumerate(prompts):
            if p.is_empty:
                raise ValueError(f'prompt {i} is empty (no text, pixels or referring patch)')
        if prev_mask is not None:
            prev_mask = torch.as_tensor(prev_mask, dtype=torch.float32, device=self.device)
            expected = (len(prompts), *img.features.mask_features.shape[-2:])
            if tuple(prev_mask.shape) != expected:
                raise ValueError(f'prev_mask has shape {tuple(prev_mask.shape)}, expected {expected}')
        spatial_ids = [i for i, p in enumerate(prompts) if p.has_visual or p.reference is not None]
        text_ids = [i for i, p in enumerate(prompts) if i not in spatial_ids]
        n = len(prompts)
        low = torch.zeros(n, *img.features.mask_features.shape[-2:], device=self.device)
        scores = torch.zeros(n, device=self.device)
        selected = torch.zeros(n, dtype=torch.long)
        embeddings = torch.zeros(n, self.backend.hidden_dim, device=self.device)
        with self._timed('decoder'):
            for spatial_rows, text_rows in self._passes(prompts, spatial_ids, text_ids):
                self._decode_pass(img, prompts, spatial_rows, text_rows, prev_mask, low, scores, selected, embeddings)
        with self._timed('postprocess'):
            masks, confidence = self._final_masks(img, low, text_ids)
        return SeemResult(masks=masks, scores=scores.float().cpu().numpy(), confidence=confidence,
                          labels=[p.text or p.name or 'object' for p in prompts],
                          selected_index=selected.numpy(), prev_mask=low.float(),
                          embeddings=F.normalize(embeddings.float(), dim=-1).cpu().numpy())

    def _sentence(self, text: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """(grounding tokens (T, C), sentence embedding (C,)) of ``text``, cached per string."""
        if text in self._sentences:
            self._sentences.move_to_end(text)
            return self._sentences[text]
        with torch.inference_mode():
            out = self.backend.encode_sentences([text])
        self._sentences[text] = entry = (out['grounding_tokens'], out['class_emb'][0])
        while len(self._sentences) > SENTENCE_CACHE_SIZE:
            self._sentences.popitem(last=False)
        return entry

    def _sentence_embeddings(self, texts: Sequence[str]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Grounding tokens of ``texts`` concatenated (1, T, C) and their embeddings (n, C)."""
        entries = [self._sentence(t) for t in texts]
        return torch.cat([e[0] for e in entries])[None], torch.stack([e[1] for e in entries])

    def _decode_pass(self, img, prompts, spatial_rows, text_rows, prev_mask, low, scores, selected, embeddings):
        """One decoder pass for visual objects ``spatial_rows`` and text objects ``text_rows``;
        writes each object's selected mask logits, score, query index and embedding."""
        spatial = prev = tokens = sentences = None
        if spatial_rows:
            order, spatial = self._encode_spatial(img, [prompts[i] for i in spatial_rows])
            spatial_rows = [spatial_rows[k] for k in order]
            if prev_mask is not None:
                prev = prev_mask[spatial_rows][None]
        if text_rows:
            tokens, sentences = self._sentence_embeddings([prompts[i].text for i in text_rows])
        with torch.inference_mode():
            out = self.backend.decode(img.features, spatial=spatial, prev_mask=prev, grounding_tokens=tokens)
        if spatial_rows:
            self._select_spatial(out, [prompts[i].text for i in spatial_rows], spatial_rows, low, scores, selected,
                                 embeddings)
        if text_rows:
            with torch.inference_mode():
                grounding = self.backend.grounding_scores(out['pred_gtexts'], sentences)
            match = grounding_match(grounding)[0]
            for col, i in enumerate(text_rows):
                q = int(match[col])
                low[i] = out['pred_gmasks'][0, q].float()
                scores[i] = grounding[0, q, col].float()
                selected[i] = q
                embeddings[i] = out['pred_gtexts'][0, q].float()

    def _select_spatial(self, out, texts, rows, low, scores, selected, embeddings):
        logits = out['spatial_logits'][0]                                 # (S, P)
        if any(t.strip() for t in texts):
            logits = self._rerank_by_text(out['pred_stexts'][0], logits, texts)
        index = logits.argmax(0)
        for slot, i in enumerate(rows):
            q = int(index[slot])
            low[i] = out['pred_smasks'][0, q].float()
            scores[i] = out['spatial_logits'][0, q, slot].float()
            selected[i] = q
            embeddings[i] = out['pred_stexts'][0, q].float()

    def _rerank_by_text(self, stexts, logits, texts):
        """Add each prompt's text similarity to its candidate queries' selection logits.

        Both terms are turned into log-probabilities over the prompt's own candidates (softmax of
        the spatial logits, softmax of the grounding scores), so neither scale dominates.
        """
        out = logits.clone()
        present = [k for k, t in enumerate(texts) if t.strip()]
        sentences = self._sentence_embeddings([texts[k] for k in present])[1]
        grounding = self.backend.grounding_scores(stexts[None], sentences)[0]          # (S, n_text)
        for col, k in enumerate(present):
            own = torch.isfinite(logits[:, k])
            out[own, k] = (logits[own, k].float().log_softmax(0) + grounding[own, col].float().log_softmax(0))
        return out

    def _final_masks(self, img: _Image, low: torch.Tensor, text_ids):
        """Binary masks at the original size, as the official evaluation makes them.

        Logits go bilinearly to the padded input, are cropped to the resized image, then resized
        to the original size: text (``evaluate_grounding``) bicubic with antialias, then ``> 0``;
        visual prompts (``evaluate_interactive``) bilinear, then ``sigmoid > 0.5``.
        """
        feats = img.features
        masks = torch.zeros(len(low), *img.original_size, dtype=torch.bool, device=self.device)
        prob = torch.zeros(len(low), device=self.device)
        visual_ids = [i for i in range(len(low)) if i not in text_ids]
        for mode, rows in (('bicubic', list(text_ids)), ('bilinear', visual_ids)):
            if not rows:
                continue
            logits = resize_mask_logits(low[rows].float(), feats.padded_size, img.input_size, img.original_size,
                                        final_mode=mode)
            probability = logits.sigmoid()
            binary = logits > 0 if mode == 'bicubic' else probability > 0.5
            masks[rows] = binary
            prob[rows] = (probability * binary).flatten(1).sum(1) / binary.flatten(1).sum(1).clamp(min=1)
        return masks.cpu().numpy(), prob.cpu().numpy().astype(np.float32)

    # ------------------------------------------------------------------ vocabulary tasks
    def _object_queries(self, vocabulary: Sequence[str]):
        names = [v.strip() for v in vocabulary if v.strip()]
        if not names:
            raise ValueError('the vocabulary is empty')
        img = self._require_image()
        feats = img.features
        with self._timed('text_encoder'), torch.inference_mode():
            text = self.backend.vocabulary_embeddings(names)
        with self._timed('decoder'), torch.inference_mode():
            out = self.backend.decode(feats, text_embeddings=text)
        with self._timed('postprocess'):
            logits = resize_mask_logits(out['pred_masks'][0].float(), feats.padded_size, img.input_size,
                                        img.original_size, final_mode='bicubic')
        return names, out, logits

    def semantic(self, vocabulary: Sequence[str]) -> np.ndarray:
        """Per-class score maps (K, H, W) float32 for ``vocabulary`` (official ``sem_seg``)."""
        _, out, logits = self._object_queries(vocabulary)
        return semantic_inference(out['pred_logits'][0].float(), logits).cpu().numpy()

    def segment_everything(self, vocabulary: Sequence[str], *, object_mask_threshold: float = 0.8,
                           overlap_threshold: float = 0.8, stuff: Sequence[str] = ()) -> PanopticResult:
        """Open-vocabulary panoptic segmentation (Mask2Former merge; thresholds as the official 0.8)."""
        names, out, logits = self._object_queries(vocabulary)
        stuff_ids = [names.index(s) for s in stuff if s in names]
        pan = panoptic_inference(out['pred_logits'][0].float(), logits, object_mask_threshold=object_mask_threshold,
                                 overlap_threshold=overlap_threshold, stuff_categories=stuff_ids)
        id_map = pan.id_map.cpu().numpy()
        emb = F.normalize(out['pred_captions'][0].float(), dim=-1).cpu().numpy()
        segments = [Segment(label=names[c], score=s, mask=id_map == k + 1, embedding=emb[q], category=c)
                    for k, (q, c, s) in enumerate(zip(pan.query_index, pan.category, pan.score))]
        return PanopticResult(id_map=id_map, segments=segments)

    def instances(self, vocabulary: Sequence[str], *, top_k: int = 100) -> Dict[str, np.ndarray]:
        """Instance segmentation: ``masks`` (N, H, W) bool, ``scores``, ``category``, ``query_index``."""
        _, out, logits = self._object_queries(vocabulary)
        inst = instance_inference(out['pred_logits'][0].float(), logits, top_k=top_k)
        return {k: v.cpu().numpy() for k, v in inst.items()}


def _concat_prompts(groups: Sequence[SpatialPrompts]) -> SpatialPrompts:
    """Join per-object encodings into one multi-prompt encoding (v1 prompt indices offset)."""
    if len(groups) == 1:
        return groups[0]
    offsets = np.cumsum([0] + [len(g.prompt_valid) for g in groups[:-1]])
    return SpatialPrompts(torch.cat([g.tokens for g in groups], 1),
                          torch.cat([g.token_prompt + int(o) for g, o in zip(groups, offsets)]),
                          torch.cat([g.token_valid for g in groups]),
                          torch.cat([g.pos_mean for g in groups]), torch.cat([g.neg_mean for g in groups]),
                          torch.cat([g.prompt_valid for g in groups]))

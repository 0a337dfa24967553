"""ONNX export of SEEM as fixed-shape graphs, each verified against PyTorch before it is written.

Graphs and their interface (C = hidden dim, 512 for Focal-T/L; Q = 101 object queries;
Hp, Wp = padded model input, multiples of 32; h4 = Hp/4, w4 = Wp/4; P = ``p_max`` prompt slots
(1 for v0); N = ``n_max`` prompt points; T = ``t_max`` grounding tokens; S = 3P (v1) or Q (v0);
all float tensors float32, also in fp16 exports):

``encoder-HpxWp`` (static): backbone + pixel decoder.
    in  ``image`` (1, 3, Hp, Wp): RGB normalized with the official mean/std, zero-padded bottom/right.
    out ``mask_features`` (1, C, h4, w4); ``multi_scale_0`` (1, C, Hp/32, Wp/32),
        ``multi_scale_1`` (1, C, Hp/16, Wp/16), ``multi_scale_2`` (1, C, Hp/8, Wp/8).

``text`` (dynamic B, L <= 77): language encoder.
    in  ``input_ids`` (B, L) int64 CLIP ids (start, words, end, end-padding).
    out ``token_emb`` (B, L, C) = ``last_hidden_state @ lang_proj``; ``class_emb`` (B, C), the
        row of ``token_emb`` at the first end token (``argmax(input_ids)``).

``prompt_encoder-HpxWp`` (static): visual-prompt encoding on one image's features.
    in  the four encoder outputs; ``point_coords`` (N, 2) normalized ``(x / Wp, y / Hp)``;
        ``point_prompt`` (N,) int64 prompt slot; ``point_positive`` (N,) bool; ``point_valid``
        (N,) bool (False = padding); ``prompt_valid`` (P,) bool.
    out ``spatial_tokens`` (3, N, C) (levels 1/32, 1/16, 1/8); ``pos_mean``, ``neg_mean`` (P, C)
        mean ``mask_features`` over each prompt's positive / negative points (-1 when empty
        in v1, 0 in v0).

``decoder-HpxWp`` (static): the SEEM decoder with every query group present at once.
    in  the four encoder outputs; ``grounding_tokens`` (1, T, C), ``grounding_valid`` (1, T)
        bool; ``spatial_tokens`` (3, N, C), ``token_prompt`` (N,) int64, ``token_valid`` (N,)
        bool, ``pos_mean`` (P, C), ``prompt_valid`` (P,) bool.
    out ``pred_masks`` (1, Q, h4, w4), ``pred_captions`` (1, Q, C) (object queries);
        ``pred_gmasks`` (1, Q, h4, w4), ``pred_gtexts`` (1, Q, C) (grounding queries);
        ``pred_smasks`` (1, S, h4, w4), ``pred_stexts``, ``pred_smaskembs`` (1, S, C) (spatial
        queries); ``spatial_logits`` (1, S, P) (-inf outside a query's own prompt in v1);
        ``selected_index`` (1, P) int64, ``selected_score`` (1, P); ``prev_mask`` (1, P, h4, w4);
        ``spatial_query_index`` (S,) int64.
    Padding (invalid tokens, prompt slots, points) never changes the outputs of valid entries;
    outputs of absent groups are meaningless and dropped by the host.

``decoder_memory-HpxWp``: as ``decoder`` plus input ``memory_mask`` (1, P, h4, w4), the previous
    round's ``prev_mask`` output, which adds the 32 spatial memory queries.

Outside the graphs (host): resize/normalize/pad, tokenization, pixel picking of visual prompts
(``nonzero`` + seeded subsampling, :func:`~seem_ros.model.spatial.points_from_masks`),
classification logits against the vocabulary (``exp(logit_scale) * normalize(pred_captions) @
vocab.T``), grounding scores, mask upsampling (bicubic antialias) and the panoptic merge. Exported
graphs hold no ``NonZero``/random ops and, except ``text``, only static shapes.

Precision recipes: ``fp32``; ``fp16`` = fp16 weights and activations with LayerNorm, GroupNorm and
attention (incl. softmax) kept in fp32 and fp32 graph I/O. The recipe is baked into the ONNX types,
so a strongly typed TensorRT network builds it as written.

Every graph runs on a deterministic probe input in torch (fp32) and in onnxruntime; a graph
whose outputs disagree beyond :data:`TOLERANCES` is not written (:class:`ExportParityError`).
The output directory holds ``manifest.json`` (configuration, logit scale, per-graph file,
sha256, interface and measured parity) next to the ``.onnx`` files.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._pytree import tree_map

from ..model.decoder_layers import MultiheadAttention as DecoderAttention
from ..model.preprocess import resized_size
from ..model.seem import SeemModel
from ..model.spatial import REFERENCE_POINTS, PromptPoints, SpatialPrompts
from ..model.text_encoder import LayerNorm as TextLayerNorm
from ..model.tokenizer import tokenize

MANIFEST = 'manifest.json'
FORMAT = 1
OPSET = 18
KINDS = ('encoder', 'text', 'prompt_encoder', 'decoder', 'decoder_memory')
# CLI groups -> graph kinds
GROUPS = {'encoder': ('encoder',), 'text': ('text',), 'decoder': ('prompt_encoder', 'decoder'),
          'memory': ('decoder_memory',)}
DEFAULT_GROUPS = ('encoder', 'text', 'decoder', 'memory')  # the tracker decodes with prev_mask memory
PRECISIONS = ('fp32', 'fp16')
# recipe descriptions; part of TensorRT engine cache keys (bump when a recipe changes)
RECIPES = {'fp32': 'fp32', 'fp16': 'fp16/1: LayerNorm, GroupNorm, attention+softmax fp32; fp32 I/O'}
FORBIDDEN_OPS = frozenset({'NonZero', 'RandomUniform', 'RandomUniformLike', 'RandomNormal', 'RandomNormalLike',
                           'Multinomial', 'Bernoulli', 'Unique'})
TEXT_MAX_BATCH = 4096



class ExportParityError(RuntimeError):
    """An exported graph disagrees with the reference beyond its tolerance (nothing was written)."""


# ---------------------------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class Tolerance:
    """Agreement rule for one output, relative to the reference's largest finite magnitude ``scale``.

    Pass when at least ``fraction`` of the elements are within ``rel * scale``, all are within
    ``relaxed * scale`` (default ``rel``), and non-finite values (-inf logits) sit at the same
    places. Integer outputs must agree on at least ``fraction`` of the elements.
    """

    rel: float
    fraction: float = 1.0
    relaxed: Optional[float] = None


# Decoder masks can flip a few cross-attention entries (sigmoid(logit) < 0.5 thresholds), as the
# reference fixtures' relaxed procedure allows; everything else must hold elementwise.
TOLERANCES: Dict[Tuple[str, str], Tolerance] = {
    ('encoder', 'fp32'): Tolerance(1e-4),
    ('text', 'fp32'): Tolerance(1e-4),
    ('prompt_encoder', 'fp32'): Tolerance(1e-4),
    ('decoder', 'fp32'): Tolerance(1e-3, fraction=0.99, relaxed=0.1),
    ('encoder', 'fp16'): Tolerance(2e-2),
    ('text', 'fp16'): Tolerance(2e-2),
    ('prompt_encoder', 'fp16'): Tolerance(2e-2),
    ('decoder', 'fp16'): Tolerance(3e-2, fraction=0.95, relaxed=0.5),
}


def tolerance(kind: str, precision: str) -> Tolerance:
    """Parity rule of graph ``kind`` at ``precision`` (``decoder_memory`` uses the decoder's)."""
    return TOLERANCES[('decoder' if kind == 'decoder_memory' else kind, precision)]


def compare(actual: Dict[str, np.ndarray], expected: Dict[str, np.ndarray], rule: Tolerance) -> Dict[str, dict]:
    """Per-output agreement numbers; raises :class:`ExportParityError` listing every failure."""
    report, failures = {}, []
    for name, ref in expected.items():
        ref = np.asarray(ref)
        got = np.asarray(actual[name])
        if got.shape != ref.shape:
            failures.append(f'{name}: shape {got.shape} != {ref.shape}')
            continue
        if not np.issubdtype(ref.dtype, np.floating):
            agree = float((got == ref).mean()) if ref.size else 1.0
            report[name] = {'agree': agree}
            if agree < rule.fraction:
                failures.append(f'{name}: {agree:.4f} of values equal (need {rule.fraction})')
            continue
        got = got.astype(np.float64)
        ref = ref.astype(np.float64)
        finite = np.isfinite(ref)
        if not np.array_equal(finite, np.isfinite(got)) or not np.array_equal(got[~finite], ref[~finite]):
            failures.append(f'{name}: non-finite values differ')
            continue
        scale = float(np.abs(ref[finite]).max()) if finite.any() else 0.0
        scale = scale if scale > 0 else 1.0
        err = np.abs(got[finite] - ref[finite]) / scale
        worst = float(err.max()) if err.size else 0.0
        within = float((err <= rule.rel).mean()) if err.size else 1.0
        report[name] = {'max_rel': worst, 'within': within, 'scale': scale}
        if within < rule.fraction or worst > (rule.relaxed or rule.rel):
            failures.append(f'{name}: max |err|/scale {worst:.3g}, {within:.4f} within {rule.rel:g} '
                            f'(need {rule.fraction}, all within {rule.relaxed or rule.rel:g})')
    if failures:
        raise ExportParityError('; '.join(failures))
    return report


# ---------------------------------------------------------------------------------- graph modules
class EncoderGraph(nn.Module):
    """``image`` -> ``mask_features, multi_scale_0, multi_scale_1, multi_scale_2``."""

    def __init__(self, model: SeemModel):
        super().__init__()
        self.backbone = model.backbone
        self.pixel_decoder = model.sem_seg_head.pixel_decoder

    def forward(self, image):
        mask_features, _, multi_scale = self.pixel_decoder.forward_features(self.backbone(image))
        return (mask_features, *multi_scale)


class TextGraph(nn.Module):
    """``input_ids`` (B, L) -> ``token_emb`` (B, L, C), ``class_emb`` (B, C)."""

    def __init__(self, model: SeemModel):
        super().__init__()
        self.lang = model.lang_encoder

    def forward(self, input_ids):
        token_emb = self.lang.lang_encoder(input_ids) @ self.lang.lang_proj
        end = input_ids.argmax(dim=-1)
        index = end[:, None, None].expand(-1, 1, token_emb.shape[-1])
        return token_emb, torch.gather(token_emb, 1, index)[:, 0]


class PromptEncoderGraph(nn.Module):
    """Encoder outputs + padded point set -> ``spatial_tokens, pos_mean, neg_mean``."""

    def __init__(self, model: SeemModel):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, mask_features, ms0, ms1, ms2, point_coords, point_prompt, point_positive, point_valid,
                prompt_valid):
        points = PromptPoints(point_coords, point_prompt, point_positive, point_valid)
        out = self.decoder.encode_prompt_points([ms0, ms1, ms2], mask_features, points, prompt_valid)
        return out.tokens, out.pos_mean, out.neg_mean


class DecoderGraph(nn.Module):
    """Encoder outputs + padded grounding tokens + padded spatial prompts (+ ``prev_mask``) -> the
    decoder outputs listed in the module docstring."""

    OUTPUTS = ('pred_masks', 'pred_captions', 'pred_gmasks', 'pred_gtexts', 'pred_smasks', 'pred_stexts',
               'pred_smaskembs', 'spatial_logits', 'selected_index', 'selected_score', 'prev_mask',
               'spatial_query_index')

    def __init__(self, model: SeemModel, memory: bool = False):
        super().__init__()
        self.decoder = model.decoder
        self.memory = memory

    def forward(self, mask_features, ms0, ms1, ms2, grounding_tokens, grounding_valid, spatial_tokens, token_prompt,
                token_valid, pos_mean, prompt_valid, memory_mask=None):
        spatial = SpatialPrompts(spatial_tokens, token_prompt, token_valid, pos_mean, pos_mean, prompt_valid)
        out = self.decoder([ms0, ms1, ms2], mask_features, grounding_tokens=grounding_tokens,
                           grounding_padding=~grounding_valid, spatial=spatial, prev_mask=memory_mask)
        return tuple(out[name] for name in self.OUTPUTS)


# ---------------------------------------------------------------------------------- fp16 recipe
class _Fp32Island(nn.Module):
    """Runs ``inner`` in fp32 inside an fp16 model (casts fp16 tensors in, fp32 tensors out)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner.float()

    def forward(self, *args, **kwargs):
        args, kwargs = tree_map(_to(torch.float16, torch.float32), (args, kwargs))
        return tree_map(_to(torch.float32, torch.float16), self.inner(*args, **kwargs))


class _CastIO(nn.Module):
    """fp32 graph I/O around an fp16 graph module."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, *args):
        outputs = self.inner(*tree_map(_to(torch.float32, torch.float16), args))
        return tree_map(_to(torch.float16, torch.float32), outputs)


def _to(src: torch.dtype, dst: torch.dtype) -> Callable:
    return lambda v: v.to(dst) if isinstance(v, torch.Tensor) and v.dtype == src else v


FP32_MODULES = (nn.LayerNorm, nn.GroupNorm, TextLayerNorm, nn.MultiheadAttention, DecoderAttention)


def apply_recipe(graph: nn.Module, precision: str) -> nn.Module:
    """``graph`` for ``precision``: itself for fp32; for fp16 a half copy whose ``FP32_MODULES``
    run in fp32, with fp32 inputs and outputs."""
    if precision == 'fp32':
        return graph
    if precision != 'fp16':
        raise ValueError(f'unknown precision {precision!r}; expected one of {PRECISIONS}')
    half = copy.deepcopy(graph).half()

    def wrap(parent: nn.Module):
        for name, child in parent.named_children():
            if isinstance(child, FP32_MODULES):
                setattr(parent, name, _Fp32Island(child))
            else:
                wrap(child)

    wrap(half)
    return _CastIO(half)


# ---------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class ExportConfig:
    """Model facts and fixed sizes shared by all graphs of one export directory."""

    variant: str
    version: str
    hidden_dim: int
    num_queries: int
    context_length: int
    logit_scale: float
    max_spatial_points: int
    size_divisibility: int
    p_max: int
    t_max: int
    n_max: int
    checkpoint_sha256: str = ''

    @classmethod
    def of(cls, model: SeemModel, variant: str, *, p_max: int = 16, t_max: int = 77, n_max: Optional[int] = None,
           checkpoint_sha256: str = '') -> 'ExportConfig':
        decoder = model.decoder
        if p_max < 1 or t_max < 1:
            raise ValueError('p_max and t_max must be >= 1')
        return cls(variant=variant, version=decoder.version, hidden_dim=decoder.class_embed.shape[1],
                   num_queries=decoder.num_queries, context_length=model.lang_encoder.context_length,
                   logit_scale=float(model.lang_encoder.logit_scale.detach()),
                   max_spatial_points=decoder.max_spatial_points,
                   size_divisibility=model.size_divisibility, p_max=1 if decoder.version == 'v0' else int(p_max),
                   t_max=int(t_max), n_max=int(n_max or 2 * decoder.max_spatial_points + REFERENCE_POINTS),
                   checkpoint_sha256=checkpoint_sha256)

    @property
    def num_spatial_queries(self) -> int:
        return 3 * self.p_max if self.version == 'v1' else self.num_queries


def padded_size(height: int, width: int, *, short_side: int = 512, divisor: int = 32) -> Tuple[int, int]:
    """Padded model input (Hp, Wp) of a camera image (height, width): the predictor's short-side
    resize (:func:`~seem_ros.model.preprocess.resized_size`; 0 = none), then padding to
    multiples of ``divisor``."""
    height, width = resized_size(height, width, short_side)
    return -(-height // divisor) * divisor, -(-width // divisor) * divisor


def graph_name(kind: str, size: Optional[Tuple[int, int]], precision: str) -> str:
    """Manifest key and file stem, e.g. ``encoder-512x704.fp16`` or ``text.fp32``."""
    if kind == 'text':
        return f'{kind}.{precision}'
    assert size is not None           # every graph but 'text' is exported for one image size
    return f'{kind}-{size[0]}x{size[1]}.{precision}'


def interface(kind: str, cfg: ExportConfig, size: Optional[Tuple[int, int]]) -> Dict[str, List[dict]]:
    """Inputs and outputs of graph ``kind`` as ``[{'name', 'shape', 'dtype'}]`` (dims: int or symbol)."""
    c, q, p, n, t, s = cfg.hidden_dim, cfg.num_queries, cfg.p_max, cfg.n_max, cfg.t_max, cfg.num_spatial_queries

    def spec(name, shape, dtype='float32'):
        return {'name': name, 'shape': list(shape), 'dtype': dtype}

    if kind == 'text':
        return {'inputs': [spec('input_ids', ('B', 'L'), 'int64')],
                'outputs': [spec('token_emb', ('B', 'L', c)), spec('class_emb', ('B', c))]}
    assert size is not None           # every graph but 'text' is exported for one image size
    hp, wp = size
    h4, w4 = hp // 4, wp // 4
    features = [spec('mask_features', (1, c, h4, w4)), spec('multi_scale_0', (1, c, hp // 32, wp // 32)),
                spec('multi_scale_1', (1, c, hp // 16, wp // 16)), spec('multi_scale_2', (1, c, hp // 8, wp // 8))]
    if kind == 'encoder':
        return {'inputs': [spec('image', (1, 3, hp, wp))], 'outputs': features}
    if kind == 'prompt_encoder':
        return {'inputs': features + [spec('point_coords', (n, 2)), spec('point_prompt', (n,), 'int64'),
                                      spec('point_positive', (n,), 'bool'), spec('point_valid', (n,), 'bool'),
                                      spec('prompt_valid', (p,), 'bool')],
                'outputs': [spec('spatial_tokens', (3, n, c)), spec('pos_mean', (p, c)), spec('neg_mean', (p, c))]}
    inputs = features + [spec('grounding_tokens', (1, t, c)), spec('grounding_valid', (1, t), 'bool'),
                         spec('spatial_tokens', (3, n, c)), spec('token_prompt', (n,), 'int64'),
                         spec('token_valid', (n,), 'bool'), spec('pos_mean', (p, c)),
                         spec('prompt_valid', (p,), 'bool')]
    if kind == 'decoder_memory':
        inputs.append(spec('memory_mask', (1, p, h4, w4)))
    elif kind != 'decoder':
        raise ValueError(f'unknown graph kind {kind!r}; expected one of {KINDS}')
    outputs = [spec('pred_masks', (1, q, h4, w4)), spec('pred_captions', (1, q, c)),
               spec('pred_gmasks', (1, q, h4, w4)), spec('pred_gtexts', (1, q, c)),
               spec('pred_smasks', (1, s, h4, w4)), spec('pred_stexts', (1, s, c)), spec('pred_smaskembs', (1, s, c)),
               spec('spatial_logits', (1, s, p)), spec('selected_index', (1, p), 'int64'),
               spec('selected_score', (1, p)), spec('prev_mask', (1, p, h4, w4)),
               spec('spatial_query_index', (s,), 'int64')]
    return {'inputs': inputs, 'outputs': outputs}


def graph_module(kind: str, model: SeemModel) -> nn.Module:
    """The fp32 torch module of graph ``kind`` (positional inputs and outputs in interface order)."""
    return {'encoder': EncoderGraph, 'text': TextGraph, 'prompt_encoder': PromptEncoderGraph,
            'decoder': DecoderGraph}.get(kind, lambda m: DecoderGraph(m, memory=True))(model).eval()


# ---------------------------------------------------------------------------------- probe inputs
Runner = Callable[[str, Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]


def probe_image(size: Tuple[int, int]) -> torch.Tensor:
    """Deterministic normalized probe image (1, 3, Hp, Wp): smooth colour blobs over the top-left
    7/8 of the input, zero padding below and right of it."""
    hp, wp = size
    generator = torch.Generator().manual_seed(1234)
    coarse = torch.randn(1, 3, max(hp // 32, 2), max(wp // 32, 2), generator=generator)
    image = F.interpolate(coarse, size=(hp, wp), mode='bilinear', align_corners=False) * 1.5
    image[..., hp - hp // 8:, :] = 0
    image[..., wp - wp // 8:] = 0
    return image


def probe_text_ids(batch: int = 3, length: int = 77) -> torch.Tensor:
    """Real token ids (batch, length) of short sentences (cut to ``length``; keeps the end token)."""
    sentences = ['a photo of a dog', 'the person on the left holding a red cup', 'background',
                 'a cup on the table']
    ids, _ = tokenize([sentences[i % len(sentences)] for i in range(batch)])
    return ids[:, :length]


def probe_points(cfg: ExportConfig, size: Tuple[int, int]) -> Dict[str, torch.Tensor]:
    """A padded point set: two prompts (one for v0) with positive and negative clicks."""
    hp, wp = size
    n, p = cfg.n_max, cfg.p_max
    rows = [(0, 0.30, 0.40, True), (0, 0.32, 0.41, True), (0, 0.35, 0.38, True), (0, 0.60, 0.20, False),
            (1, 0.70, 0.65, True), (1, 0.72, 0.70, True), (1, 0.20, 0.75, False)]
    rows = [r for r in rows if r[0] < min(p, 2) or cfg.version == 'v0'][:n]
    coords = torch.zeros(n, 2)
    prompt = torch.zeros(n, dtype=torch.int64)
    positive = torch.zeros(n, dtype=torch.bool)
    valid = torch.zeros(n, dtype=torch.bool)
    for i, (slot, x, y, pos) in enumerate(rows):
        coords[i] = torch.tensor([round(x * wp) / wp, round(y * hp) / hp])
        prompt[i] = slot
        positive[i] = pos
        valid[i] = True
    prompt_valid = torch.arange(p) < min(p, 2)
    return {'point_coords': coords, 'point_prompt': prompt, 'point_positive': positive, 'point_valid': valid,
            'prompt_valid': prompt_valid}


def probe_feeds(kind: str, cfg: ExportConfig, size: Optional[Tuple[int, int]], run: Runner) -> Dict[str, torch.Tensor]:
    """Deterministic inputs of graph ``kind``; ``run(kind, feeds)`` evaluates upstream graphs
    (encoder features for the prompt encoder and decoders, prompt tokens for decoders)."""
    if kind == 'text':
        return {'input_ids': probe_text_ids()}
    assert size is not None           # every graph but 'text' is exported for one image size
    if kind == 'encoder':
        return {'image': probe_image(size)}
    features = run('encoder', {'image': probe_image(size)})
    points = probe_points(cfg, size)
    if kind == 'prompt_encoder':
        return {**features, **points}
    spatial = run('prompt_encoder', {**features, **points})
    generator = torch.Generator().manual_seed(99)
    tokens = torch.randn(1, cfg.t_max, cfg.hidden_dim, generator=generator)
    feeds = {**features, 'grounding_tokens': tokens,
             'grounding_valid': torch.arange(cfg.t_max)[None] < min(7, cfg.t_max),
             'spatial_tokens': spatial['spatial_tokens'],
             'token_prompt': (points['point_prompt'] if cfg.version == 'v1'
                              else torch.zeros_like(points['point_prompt'])),
             'token_valid': points['point_valid'], 'pos_mean': spatial['pos_mean'],
             'prompt_valid': points['prompt_valid']}
    if kind == 'decoder_memory':
        hp, wp = size
        feeds['memory_mask'] = 4.0 * torch.randn(1, cfg.p_max, hp // 4, wp // 4, generator=generator)
    return feeds


def torch_runner(model: SeemModel, cfg: ExportConfig, size) -> Runner:
    """A :data:`Runner` evaluating the fp32 torch graph modules of ``model``."""
    def run(kind, feeds):
        names = [o['name'] for o in interface(kind, cfg, size)['outputs']]
        order = [i['name'] for i in interface(kind, cfg, size)['inputs']]
        with torch.no_grad():
            out = graph_module(kind, model)(*(feeds[k] for k in order))
        return dict(zip(names, out))
    return run


def ort_runner(paths: Callable[[str], Path], providers: Sequence[str] = ('CPUExecutionProvider',)) -> Runner:
    """A :data:`Runner` evaluating ONNX files with onnxruntime; ``paths(kind)`` gives each file."""
    import onnxruntime as ort
    sessions = {}

    def run(kind, feeds):
        if kind not in sessions:
            sessions[kind] = ort.InferenceSession(str(paths(kind)), providers=list(providers))
        session = sessions[kind]
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {i.name: feeds[i.name].cpu().numpy() for i in session.get_inputs()})
        return {name: torch.from_numpy(v) for name, v in zip(names, values)}
    return run


# ---------------------------------------------------------------------------------- files
def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory) -> dict:
    """The ``manifest.json`` of an export directory (ValueError when absent or of another format)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f'{path} not found (run `seem-ros export` first)')
    manifest = json.loads(path.read_text())
    if manifest.get('format') != FORMAT:
        raise ValueError(f'{path}: unsupported manifest format {manifest.get("format")!r} (expected {FORMAT})')
    return manifest


def _write_json_atomic(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + '.', suffix='.tmp')
    with os.fdopen(fd, 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(tmp, path)


def _check_ops(model_proto) -> None:
    ops = {node.op_type for node in model_proto.graph.node}
    for function in model_proto.functions:
        ops |= {node.op_type for node in function.node}
    bad = sorted(ops & FORBIDDEN_OPS)
    if bad:
        raise ExportParityError(f'graph contains non-deterministic or data-dependent ops: {", ".join(bad)}')


def _check_static(model_proto, spec: Dict[str, List[dict]]) -> None:
    """The ONNX I/O shapes must equal the interface (symbolic dims only where it has symbols)."""
    for values, expected in ((model_proto.graph.input, spec['inputs']), (model_proto.graph.output, spec['outputs'])):
        for value, want in zip(values, expected):
            dims = [d.dim_value if d.HasField('dim_value') else (d.dim_param or '?')
                    for d in value.type.tensor_type.shape.dim]
            static_ok = all(isinstance(w, str) or d == w for d, w in zip(dims, want['shape']))
            if value.name != want['name'] or len(dims) != len(want['shape']) or not static_ok:
                raise ExportParityError(f'graph I/O {value.name} {dims} does not match the interface '
                                        f'{want["name"]} {want["shape"]}')


def _export_onnx(module: nn.Module, args: tuple, path: Path, spec: Dict[str, List[dict]], opset: int) -> None:
    """torch.onnx (dynamo) export to ``path``; the exporter's chatter is kept off the console."""
    input_names = [i['name'] for i in spec['inputs']]
    dynamic: Optional[tuple] = None
    if any(isinstance(d, str) for i in spec['inputs'] for d in i['shape']):
        batch = torch.export.Dim('batch', min=1, max=TEXT_MAX_BATCH)
        length = torch.export.Dim('length', min=2, max=77)
        dynamic = ({0: batch, 1: length},)
        if any(p.kind == p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values()):
            dynamic = (dynamic,)      # one entry per positional parameter: the *args tuple
    quiet = [logging.getLogger(n) for n in ('torch.onnx', 'torch.export', 'torch._dynamo', 'onnxscript')]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                torch.onnx.export(module, args, str(path), input_names=input_names,
                                  output_names=[o['name'] for o in spec['outputs']], opset_version=opset,
                                  dynamo=True, external_data=False, dynamic_shapes=dynamic, verbose=False)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


@dataclass
class GraphResult:
    """What :func:`export_graph` wrote: manifest key, file, and parity numbers per probe."""

    name: str
    path: Path
    parity: Dict[str, dict]
    seconds: float


def export_graph(model: SeemModel, cfg: ExportConfig, kind: str, size: Optional[Tuple[int, int]], out_dir,
                 *, precision: str = 'fp32', opset: int = OPSET) -> GraphResult:
    """Export, verify and (only when it agrees) write one graph into ``out_dir``; updates the manifest.

    The graph runs on :func:`probe_feeds` in torch fp32 and in onnxruntime (CPU); ``text`` is also
    checked at a second (batch, length). On disagreement (:func:`compare` with
    :func:`tolerance`), forbidden ops or constructs the TensorRT ONNX parser does not support
    (:func:`~seem_ros.runtime.tensorrt_check.require_supported`, a :class:`ExportParityError`) the
    temporary file is removed and :class:`ExportParityError` raised.
    """
    import onnx
    import onnxruntime as ort

    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = graph_name(kind, size, precision)
    spec = interface(kind, cfg, size)
    reference = torch_runner(model, cfg, size)
    probes = [probe_feeds(kind, cfg, size, reference)]
    if kind == 'text':
        probes.append({'input_ids': probe_text_ids(batch=2, length=12)})
    order = [i['name'] for i in spec['inputs']]
    module = apply_recipe(graph_module(kind, model), precision)
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f'.{name}.', suffix='.onnx.tmp')
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _export_onnx(module, tuple(probes[0][k] for k in order), tmp, spec, opset)
        proto = onnx.load(str(tmp))
        _check_ops(proto)
        _check_static(proto, spec)
        from .tensorrt_check import require_supported   # TensorRT parser support, checked statically
        tensorrt = require_supported(proto, graph=name, dynamic_ok=any(
            isinstance(d, str) for value in spec['inputs'] + spec['outputs'] for d in value['shape']))
        del proto
        session = ort.InferenceSession(str(tmp), providers=['CPUExecutionProvider'])
        rule = tolerance(kind, precision)
        parity = {}
        for i, feeds in enumerate(probes):
            expected = reference(kind, feeds)
            values = session.run(list(expected), {k: feeds[k].numpy() for k in order})
            parity[f'probe{i}'] = compare(dict(zip(expected, values)), {k: v.numpy() for k, v in expected.items()},
                                          rule)
        del session
        final = out_dir / f'{name}.onnx'
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    entry = {'kind': kind, 'precision': precision, 'recipe': RECIPES[precision], 'file': final.name,
             'sha256': sha256_file(final), 'padded_size': list(size) if size else None, 'opset': opset,
             'torch': torch.__version__, 'parity': parity, 'tensorrt_check': tensorrt, **spec}
    _update_manifest(out_dir, cfg, name, entry)
    return GraphResult(name, final, parity, time.monotonic() - start)


def _update_manifest(out_dir: Path, cfg: ExportConfig, name: str, entry: dict) -> None:
    check_compatible(out_dir, cfg)
    path = out_dir / MANIFEST
    manifest: dict = (read_manifest(out_dir) if path.is_file()
                else {'format': FORMAT, 'config': dict(cfg.__dict__), 'graphs': {}})
    manifest['graphs'][name] = entry
    _write_json_atomic(path, manifest)


def check_compatible(out_dir, cfg: ExportConfig) -> None:
    """Raise ValueError when ``out_dir`` already holds an export of another configuration."""
    path = Path(out_dir) / MANIFEST
    if path.is_file():
        stored = read_manifest(out_dir)['config']
        changed = sorted(k for k in cfg.__dict__ if stored.get(k) != cfg.__dict__[k])
        if changed:
            raise ValueError(f'{out_dir} holds graphs of another model or configuration ({", ".join(changed)} '
                             'differ); export into a new directory')


def plan(groups: Iterable[str], sizes: Sequence[Tuple[int, int]], precisions: Sequence[str]) -> List[tuple]:
    """``(kind, size, precision)`` of every graph for CLI ``groups`` (text once, size-independent)."""
    kinds = []
    for group in groups:
        if group not in GROUPS:
            raise ValueError(f'unknown graph {group!r}; expected some of {", ".join(GROUPS)}')
        kinds += [k for k in GROUPS[group] if k not in kinds]
    jobs = []
    for precision in precisions:
        if precision not in PRECISIONS:
            raise ValueError(f'unknown precision {precision!r}; expected one of {PRECISIONS}')
        for kind in sorted(kinds, key=KINDS.index):
            for size in ([None] if kind == 'text' else sizes):
                jobs.append((kind, size, precision))
    return jobs


__all__ = ['ExportConfig', 'ExportParityError', 'GraphResult', 'Tolerance', 'TOLERANCES', 'KINDS', 'GROUPS',
           'DEFAULT_GROUPS', 'PRECISIONS', 'RECIPES', 'apply_recipe', 'compare', 'export_graph', 'graph_module',
           'graph_name', 'interface', 'ort_runner', 'padded_size', 'plan', 'probe_feeds', 'read_manifest',
           'sha256_file', 'tolerance', 'torch_runner', 'check_compatible']

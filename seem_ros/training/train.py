"""Train a small SEEM on procedural scenes, on CPU (``seem-ros train``, :mod:`seem_ros.cli.train`).

Each step renders ``--batch`` random training frames (:mod:`.data`) and trains every SEEM task at
once, text encoder included:

* one batched decoder pass with the class vocabulary (object queries, :func:`.losses.object_loss`)
  and the objects' referring sentences (grounding queries, :func:`.losses.grounding_loss`);
* per image, one visual-prompt pass (clicks, boxes, scribbles and a referring patch encoded on
  its own image) with :func:`.losses.spatial_loss`; in some images the prompts first go through
  one or two rounds without gradients, each adding a corrective click (:func:`.data.corrective_click`)
  and feeding the round's ``prev_mask`` to the next, as in multi-round interactive segmentation.

Every decoder layer's prediction is supervised (deep supervision). The vocabulary is the shape
names or the "colour shape" names, each embedded with one random prompt template per step; all
those names, embedded twice with random templates, also feed :func:`.losses.text_contrastive_loss`.

Reproducible and resumable: the model is initialized from ``--seed``, step ``k`` draws its data
from ``(seed, k)``, and the training state (model, optimizer, step) is saved to ``--state`` every
``--save-every`` steps and when ``--minutes`` run out; running the same command again resumes.
The learning-rate schedule spans ``--steps``. ``--out`` receives an official-format checkpoint
(flat state dict, float16) at every save.
"""
from __future__ import annotations

import math
import time
from typing import Dict, List, Sequence

import numpy as np
import torch
from tqdm import tqdm

from seem_ros.model.build import build_model, variant_config
from seem_ros.model.checkpoint import save_checkpoint
from seem_ros.model.preprocess import normalize_and_pad, resize_short_side
from seem_ros.model.seem import ImageFeatures, SeemModel
from seem_ros.model.spatial import points_from_masks
from seem_ros.model.templates import PROMPT_TEMPLATES
from seem_ros.model.text_encoder import normalize
from seem_ros.model.tokenizer import tokenize
from seem_ros.predictor import _concat_prompts
from seem_ros.prompts import ObjectPrompt
from seem_ros.rasterize import rasterize

from . import losses
from .data import (COLOUR_SHAPE_VOCABULARY, SHAPE_VOCABULARY, Example, add_click, corrective_click, sample_example,
                   weighted_choice)

ROUNDS = {1: 0.6, 2: 0.25, 3: 0.15}
"""Probability of 1, 2 or 3 interactive rounds for an image's visual prompts."""
COLOUR_SHAPE_PROB = 0.3
"""Probability that a step's class vocabulary is "colour shape" instead of the shape names."""
INITIAL_LOGIT_SCALE = math.log(1 / 0.07)
"""CLIP's initial temperature for the text-similarity logits."""
PROMPT_POINTS = 96
"""Per-sign budget of sampled prompt pixels in training (inference uses up to 512): the prompt
tokens dominate the cost of a visual-prompt pass, and their mean and attention do not need all."""


def _as_settings(args) -> Dict[str, object]:
    """The arguments that define a training run (a resumed run must match them)."""
    return {key: getattr(args, key) for key in ('variant', 'seed', 'steps', 'batch', 'lr', 'short_side')}


def init_model(variant: str, seed: int) -> SeemModel:
    """A freshly initialized model of ``variant`` in training mode (seeded)."""
    torch.manual_seed(seed)
    model = build_model(variant_config(variant)).train()
    with torch.no_grad():
        model.lang_encoder.logit_scale.fill_(INITIAL_LOGIT_SCALE)
    return model


def make_optimizer(model: SeemModel, lr: float, weight_decay: float = 0.05) -> torch.optim.Optimizer:
    """AdamW; matrices decay, vectors and scalars (norms, biases, logit scale) do not."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{'params': decay, 'weight_decay': weight_decay},
                              {'params': other, 'weight_decay': 0.0}], lr=lr)


def learning_rate(step: int, steps: int, lr: float, warmup: int = 100) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5 % of ``lr`` at ``steps``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min((step - warmup) / max(steps - warmup, 1), 1.0)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _image_features(feats: ImageFeatures, b: int):
    return [f[b:b + 1] for f in feats.multi_scale_features], feats.mask_features[b:b + 1]


def _step_outputs(out: dict) -> List[dict]:
    """The final prediction and every auxiliary (per-layer) one."""
    return out['aux_outputs'] + [out]


class Trainer:
    """One training step of all SEEM tasks on a batch of :class:`~.data.Example`."""

    def __init__(self, model: SeemModel, *, short_side: int, weights: losses.LossWeights = losses.LossWeights()):
        self.model = model
        self.short_side = short_side
        self.weights = weights

    @property
    def decoder(self):
        return self.model.decoder

    def _pad(self, mask: np.ndarray, padded_size) -> torch.Tensor:
        out = torch.zeros(padded_size, dtype=torch.bool)
        out[:mask.shape[0], :mask.shape[1]] = torch.from_numpy(mask)
        return out

    def _encode_texts(self, texts: Sequence[str]):
        """``LanguageEncoder.encode_sentences`` on the positions up to the last end token only
        (causal attention: the same values): ``(token_emb (S, L, C), token_mask (S, L), class_emb (S, C))``."""
        input_ids, attention_mask = tokenize(list(texts), self.model.lang_encoder.context_length)
        length = int(input_ids.argmax(-1).max()) + 1
        out = self.model.lang_encoder.forward_tokens(input_ids[:, :length])
        return out['token_emb'], attention_mask[:, :length].bool(), out['class_emb']

    def _class_embeddings(self, names: Sequence[str], rng: np.random.Generator) -> torch.Tensor:
        """(K, C) normalized embeddings of ``names``, each in one random prompt template."""
        texts = [PROMPT_TEMPLATES[int(rng.integers(len(PROMPT_TEMPLATES)))].format(n) for n in names]
        return normalize(self._encode_texts(texts)[2])

    def _grounding_inputs(self, examples: Sequence[Example]):
        """Sentence embeddings per image and the padded (B, T, C) grounding tokens."""
        sentences = [o.sentence for ex in examples for o in ex.objects]
        token_emb, token_mask, class_emb = self._encode_texts(sentences)
        tokens = [token_emb[i][token_mask[i]] for i in range(len(sentences))]
        per_image, per_tokens, start = [], [], 0
        for ex in examples:
            count = len(ex.objects)
            per_image.append(class_emb[start:start + count])
            per_tokens.append(torch.cat(tokens[start:start + count]))
            start += count
        length = max(len(t) for t in per_tokens)
        padded = torch.stack([torch.nn.functional.pad(t, (0, 0, 0, length - len(t))) for t in per_tokens])
        padding = torch.stack([torch.arange(length) >= len(t) for t in per_tokens])
        return per_image, padded, padding

    def _encode_reference(self, example: Example, generator: torch.Generator):
        """Encode the example's referring patch on its own image, as the predictor does."""
        assert example.reference is not None   # called for examples with a referring patch
        patch = example.reference[1]
        image = resize_short_side(patch.image, self.short_side)
        tensor, valid = normalize_and_pad(image, self.model.size_divisibility)
        feats = self.model.encode_image(tensor, valid)
        pos, _ = rasterize(ObjectPrompt(mask=patch.mask), patch.image.shape[:2], valid)
        return self._encode_prompts(feats.multi_scale_features, feats.mask_features,
                                    self._pad(pos, feats.padded_size)[None], None, generator)

    def _encode_prompts(self, ms, mf, pos: torch.Tensor, neg, generator: torch.Generator):
        """``SeemDecoder.encode_prompts`` with at most :data:`PROMPT_POINTS` pixels per sign."""
        neg = torch.zeros_like(pos) if neg is None else neg
        points = points_from_masks(pos, neg, max_points=PROMPT_POINTS, generator=generator)
        return self.decoder.encode_prompt_points(ms, mf, points, torch.ones(len(pos), dtype=torch.bool))

    def _spatial(self, feats: ImageFeatures, b: int, example: Example, rounds: int,
                 generator: torch.Generator) -> torch.Tensor:
        """Spatial loss of one image's visual prompts after ``rounds`` interactive rounds."""
        ms, mf = _image_features(feats, b)
        size = feats.valid_size
        prompts = [p for _, _, p in example.prompts]
        targets = [example.objects[i].mask for i, _, _ in example.prompts]
        reference = None
        if example.reference is not None:
            reference = self._encode_reference(example, generator)
            targets.append(example.objects[example.reference[0]].mask)
        prev = None
        for round_ in range(rounds):
            masks = [rasterize(p, size, size) for p in prompts]
            pos = torch.stack([self._pad(m, feats.padded_size) for m, _ in masks])
            neg = torch.stack([self._pad(m, feats.padded_size) for _, m in masks])
            spatial = self._encode_prompts(ms, mf, pos, neg, generator)
            if reference is not None:
                spatial = _concat_prompts([spatial, reference])
            if round_ == rounds - 1:
                break
            with torch.no_grad():
                prev = self.decoder(ms, mf, spatial=spatial, prev_mask=prev)['prev_mask']
                predicted = (losses.upsample(prev[0], feats.padded_size, size) > 0).numpy()
            prompts = [add_click(p, *corrective_click(predicted[i], targets[i])) for i, p in enumerate(prompts)]
        out = self.decoder(ms, mf, spatial=spatial, prev_mask=prev, return_steps=True)
        gt = losses.downsample_masks(torch.from_numpy(np.stack(targets)), feats.padded_size)
        terms = []
        for step in _step_outputs(out):
            candidates = step['pred_smasks'][0].view(len(gt), -1, *gt.shape[-2:])
            logits = losses.select_logits(step['pred_smaskembs'][0], spatial.pos_mean)
            terms.append(losses.spatial_loss(candidates, logits, gt, self.weights))
        return torch.stack(terms).mean()

    def loss(self, examples: Sequence[Example], rng: np.random.Generator,
             generator: torch.Generator) -> Dict[str, torch.Tensor]:
        """Loss parts ('object', 'grounding', 'spatial': means over images and layers; 'text')."""
        padded = [normalize_and_pad(ex.image, self.model.size_divisibility) for ex in examples]
        feats = self.model.encode_image(torch.cat([t for t, _ in padded]), padded[0][1])
        vocabulary = COLOUR_SHAPE_VOCABULARY if rng.random() < COLOUR_SHAPE_PROB else SHAPE_VOCABULARY
        names = SHAPE_VOCABULARY + COLOUR_SHAPE_VOCABULARY + ('background',)
        first, second = self._class_embeddings(names, rng), self._class_embeddings(names, rng)
        text = first[[names.index(n) for n in vocabulary + ('background',)]]
        text_term = losses.text_contrastive_loss(first, second, self.model.lang_encoder.logit_scale.exp(),
                                                 self.weights)
        sentence_emb, tokens, padding = self._grounding_inputs(examples)
        out = self.decoder(feats.multi_scale_features, feats.mask_features, text_embeddings=text,
                           grounding_tokens=tokens, grounding_padding=padding, return_steps=True)
        gt = [losses.downsample_masks(torch.from_numpy(np.stack([o.mask for o in ex.objects])), feats.padded_size)
              for ex in examples]
        labels = [torch.tensor([vocabulary.index(f'{o.colour} {o.shape}' if vocabulary is COLOUR_SHAPE_VOCABULARY
                                                 else o.shape) for o in ex.objects]) for ex in examples]
        object_terms, grounding_terms = [], []
        for step in _step_outputs(out):
            for b in range(len(examples)):
                object_terms.append(losses.object_loss(step['pred_logits'][b], step['pred_masks'][b], labels[b],
                                                       gt[b], self.weights))
                scores = self.decoder.grounding_scores(step['pred_gtexts'][b:b + 1], sentence_emb[b])[0]
                grounding_terms.append(losses.grounding_loss(scores, step['pred_gmasks'][b], gt[b], self.weights))
        spatial_terms = [self._spatial(feats, b, ex, weighted_choice(rng, ROUNDS), generator)
                         for b, ex in enumerate(examples)]
        return {'object': torch.stack(object_terms).mean(), 'grounding': torch.stack(grounding_terms).mean(),
                'spatial': torch.stack(spatial_terms).mean(), 'text': text_term}


def step_examples(seed: int, step: int, batch: int, short_side: int) -> List[Example]:
    """The examples of training step ``step`` (a pure function of its arguments)."""
    rng = np.random.default_rng([seed, step, 0])
    return [sample_example(rng, short_side=short_side) for _ in range(batch)]


def step_random(seed: int, step: int):
    """The random sources of the loss at step ``step``: a NumPy generator (vocabulary, templates,
    interactive rounds) and a torch generator (prompt-pixel sampling)."""
    rng = np.random.default_rng([seed, step, 1])
    return rng, torch.Generator().manual_seed(int(rng.integers(2 ** 62)))


class StepExamples(torch.utils.data.Dataset):
    """Step index -> :func:`step_examples`, so a loader worker renders the next steps' scenes
    while the main process trains."""

    def __init__(self, seed: int, batch: int, short_side: int):
        self.seed, self.batch, self.short_side = seed, batch, short_side

    def __getitem__(self, step: int) -> List[Example]:
        return step_examples(self.seed, step, self.batch, self.short_side)


def _keep(examples):
    """Loader collation: a step's examples as they are."""
    return examples


def export_checkpoint(model: SeemModel, path, *, variant: str, short_side: int) -> None:
    """Write ``model`` as an official-format checkpoint with float16 floating-point tensors, saying
    its ``variant``, decoder version and the ``short_side`` it was trained at."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_checkpoint(state, path, metadata={'variant': variant, 'version': model.decoder.version,
                                           'short_side': int(short_side)})


def train(args) -> int:
    """Run (or resume) the training of the parsed ``seem-ros train`` arguments; returns the exit status."""
    torch.set_num_threads(args.threads)
    state_path = args.state or args.out.with_suffix('.state')
    settings = _as_settings(args)
    model = init_model(args.variant, args.seed)
    optimizer = make_optimizer(model, args.lr)
    start, elapsed = 0, 0.0
    if state_path.exists() and not args.fresh:
        state = torch.load(state_path, map_location='cpu', weights_only=True)
        if state['settings'] != settings:
            print(f'error: {state_path} belongs to a run with {state["settings"]}; use --fresh or another --state')
            return 2
        model.load_state_dict(state['model'])
        optimizer.load_state_dict(state['optimizer'])
        start, elapsed = state['step'], state['elapsed']
        print(f'resuming at step {start} ({elapsed / 60:.1f} min trained)')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(model, short_side=args.short_side)
    began = time.monotonic()

    def save(step):
        torch.save({'settings': settings, 'model': model.state_dict(), 'optimizer': optimizer.state_dict(),
                    'step': step, 'elapsed': elapsed + time.monotonic() - began}, state_path)
        export_checkpoint(model, args.out, variant=args.variant, short_side=args.short_side)

    running: Dict[str, float] = {}
    step = start
    loader = torch.utils.data.DataLoader(StepExamples(args.seed, args.batch, args.short_side), batch_size=None,
                                         sampler=range(start, args.steps), num_workers=1, collate_fn=_keep)
    with tqdm(total=args.steps - start, desc='train', unit='step', disable=False if args.progress else None) as bar:
        for examples in loader:
            if args.minutes is not None and time.monotonic() - began > args.minutes * 60:
                print(f'time limit reached at step {step}; run the same command again to resume')
                break
            for group in optimizer.param_groups:
                group['lr'] = learning_rate(step, args.steps, args.lr)
            parts = trainer.loss(examples, *step_random(args.seed, step))
            loss = sum(parts.values(), torch.tensor(0.0))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            for key, part in parts.items():
                value = part.item()
                running[key] = 0.95 * running.get(key, value) + 0.05 * value
            bar.set_postfix({k: f'{v:.3f}' for k, v in running.items()}, refresh=False)
            bar.update()
            if step % args.save_every == 0:
                save(step)
    if step % args.save_every:
        save(step)
    total_minutes = (elapsed + time.monotonic() - began) / 60
    print(f'step {step}/{args.steps}, {total_minutes:.1f} min; wrote {args.out}')
    return 0

"""The SEEM decoder (official ``seem_v1`` / ``seem_v0``): masked-attention query decoder with
object queries, text grounding and visual (spatial) prompts.

Official task names map onto :meth:`SeemDecoder.forward` inputs:

* ``task='seg'``: ``forward(ms, mf, text_embeddings=...)``;
* ``task='grounding_eval'``: ``forward(ms, mf, grounding_tokens=...)`` then
  :meth:`SeemDecoder.grounding_scores` and :func:`grounding_match`;
* ``task='refimg'``: :meth:`SeemDecoder.encode_prompts` on the reference image;
* ``task='spatial'``: ``forward(ms, mf, spatial=encode_prompts(...), prev_mask=...)``; the
  prompts may come from another image (referring image) and combine with text in one pass.

Layout of the decoder rows. Cross-attention rows, in order: 101 object queries, 101 grounding
queries (copies of the initial object queries; only with grounding tokens), the spatial queries
(v1: 3 per prompt, copies of initial object queries ``3r, 3r+1, 3r+2`` for the r-th valid prompt;
v0: copies of all 101), 32 spatial memories (only with ``prev_mask``). Self-attention adds the
grounding tokens (they evolve across layers) and the spatial prompt tokens of level ``i % 3``
(rebuilt at every layer: only keys and values, their own outputs are never computed).

Self-attention visibility (everything else blocked): object <-> object; grounding queries and
valid grounding tokens among themselves; spatial queries -> spatial queries, valid spatial
tokens, memories; spatial tokens -> spatial tokens; memories -> memories. v1 restricts every
spatial relation to the same prompt (memory j belongs to the valid prompt of rank
``(j * n_valid) // 32``). Each layer runs the self-attention of each group apart: object queries;
grounding queries and tokens; memories; spatial queries, grouped per prompt over the keys of
their prompt, so that its cost is linear in the number of prompts and tokens.
"""
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from .decoder_layers import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer
from .position import sine_position_embedding
from .spatial import PromptPoints, SpatialPrompts, points_from_masks, sample_points
from .text_encoder import LanguageEncoder

VERSIONS = ('v1', 'v0')


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + 1e-7)


class _SelfAttentionPlan(NamedTuple):
    """Self-attention visibility of one forward pass, the same at every layer. Object queries,
    grounding queries + tokens, spatial queries and memories are separate attention calls (the
    groups never see each other, except spatial queries the memories).

    rows: the cross-attention rows, name -> slice.
    grounding_blocked: (B, Q + T, Q + T) bool (True = blocked) over [grounding queries, grounding
        tokens]; None without grounding.
    memory_blocked: (1, 32, 32) bool, v1: memories of other prompts; None in v0 or without memories.
    groups: P prompts (1 in v0); the spatial queries attend per prompt over the keys [spatial
        queries (3P; v0 101), spatial tokens (N), memories (32 or none)]; key_group (K,) int64 is
        the prompt of each key, key_valid (K,) bool its validity.
    """

    rows: Dict[str, slice]
    grounding_blocked: Optional[torch.Tensor] = None
    memory_blocked: Optional[torch.Tensor] = None
    groups: int = 0
    key_group: Optional[torch.Tensor] = None
    key_valid: Optional[torch.Tensor] = None


class _InitialRows(NamedTuple):
    """The cross-attention rows of one forward pass before the first layer.

    feat, pos: (R, C) content and position of each row (query_feat / query_embed copies, then the
        memories' spatial_featured / spatial_embed); rows: name -> slice of the R rows.
    spatial_query_index: (S,) int64 object query each spatial query copies; None without spatial.
    memory_owner: (32,) int64 prompt of each memory (v1 with memories); None otherwise.
    """

    feat: torch.Tensor
    pos: torch.Tensor
    rows: Dict[str, slice]
    spatial_query_index: Optional[torch.Tensor] = None
    memory_owner: Optional[torch.Tensor] = None


class SeemDecoder(nn.Module):
    """SEEM decoder; parameter names equal the checkpoint keys under ``sem_seg_head.predictor.``.

    Args:
        lang_encoder: the language encoder (stored as ``self.lang_encoder``); only its scalar
            ``logit_scale`` parameter is used here.
        version: 'v1' (several visual prompts per pass, 3 queries each) or 'v0' (one merged
            visual prompt, all 101 queries as candidates). The parameters are identical.
        hidden_dim, dim_proj, num_queries, nheads, dim_feedforward, dec_layers, mask_dim:
            released configs use 512, 512, 101, 8, 2048, 9, 512.
        num_memories: spatial memory tokens (32). queries_per_prompt: v1 queries per prompt (3).
        max_spatial_points: per-sign pixel budget of :meth:`encode_prompts` (512).
    """

    def __init__(self, lang_encoder: LanguageEncoder, *, version: str = 'v1', hidden_dim: int = 512,
                 dim_proj: int = 512, num_queries: int = 101, nheads: int = 8, dim_feedforward: int = 2048,
                 dec_layers: int = 9, mask_dim: int = 512, num_memories: int = 32, queries_per_prompt: int = 3,
                 max_spatial_points: int = 512):
        super().__init__()
        if version not in VERSIONS:
            raise ValueError(f'unknown decoder version {version!r}; expected one of {VERSIONS}')
        self.version = version
        self.num_queries = num_queries
        self.num_memories = num_memories
        self.queries_per_prompt = queries_per_prompt
        self.max_spatial_points = max_spatial_points
        self.num_levels = 3
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(self.num_levels, hidden_dim)
        self.lang_encoder = lang_encoder
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.class_embed = nn.Parameter(nn.init.trunc_normal_(torch.empty(hidden_dim, dim_proj), std=0.02))
        self.mask_sptial_embed = nn.ParameterList(
            nn.Parameter(nn.init.trunc_normal_(torch.empty(hidden_dim, hidden_dim), std=0.02))
            for _ in range(self.num_levels))
        self.spatial_embed = nn.Embedding(num_memories, hidden_dim)
        self.spatial_featured = nn.Embedding(num_memories, hidden_dim)
        self.pn_indicator = nn.Embedding(2, hidden_dim)

    # ------------------------------------------------------------------ visual prompts
    def encode_prompts(self, multi_scale_features: Sequence[torch.Tensor], mask_features: torch.Tensor,
                       pos_masks: torch.Tensor, neg_masks: Optional[torch.Tensor] = None, *,
                       prompt_valid: Optional[torch.Tensor] = None,
                       generator: Optional[torch.Generator] = None) -> SpatialPrompts:
        """Encode per-prompt pixel masks of ONE image (official ``task='refimg'`` output).

        Args:
            multi_scale_features, mask_features: features of that image (batch size 1), as in
                :meth:`forward`.
            pos_masks: (P, Hp, Wp) bool positive masks at the padded image size, one per prompt.
            neg_masks: (P, Hp, Wp) bool negative masks (None = no negatives).
            prompt_valid: (P,) bool, False marks padding prompt slots (default all valid).
            generator: random source used only when a sign has more than ``max_spatial_points``
                pixels; below that every pixel is used, exactly as the official sampling.
        """
        points = points_from_masks(pos_masks, neg_masks, merged=self.version == 'v0',
                                   max_points=self.max_spatial_points, generator=generator)
        if prompt_valid is None:
            prompt_valid = torch.ones(pos_masks.shape[0], dtype=torch.bool, device=pos_masks.device)
        return self.encode_prompt_points(multi_scale_features, mask_features, points, prompt_valid)

    def encode_prompt_points(self, multi_scale_features: Sequence[torch.Tensor], mask_features: torch.Tensor,
                             points: PromptPoints, prompt_valid: torch.Tensor) -> SpatialPrompts:
        """Fixed-shape prompt encoding from a (padded) point set of ONE image.

        ``points`` from :func:`~seem_ros.model.spatial.points_from_masks` (or built by the host);
        ``prompt_valid`` (P,) bool gives the number of prompt slots P. No data-dependent shapes:
        suitable for export. Means are over each prompt's valid points (v1; empty -> -1) or over
        all valid points (v0; empty -> 0).
        """
        if mask_features.shape[0] != 1:
            raise ValueError('visual prompts are encoded from the features of a single image')
        coords, prompt, positive, valid = points
        pn = self.pn_indicator.weight
        tokens = []
        for level, feat in enumerate(multi_scale_features):
            src = feat + self.level_embed.weight[level][None, :, None, None]
            sampled = sample_points(src, coords)[0] @ self.mask_sptial_embed[level]
            tokens.append(sampled + torch.where(positive[:, None], pn[0], pn[1]))
        sampled = sample_points(mask_features, coords)[0]                 # (N, C)
        if self.version == 'v1':
            slots = torch.arange(len(prompt_valid), device=prompt.device)
            member = (prompt[None, :] == slots[:, None]) & valid[None, :]
            empty_value, token_prompt = -1.0, prompt
        else:
            member = valid[None, :]
            empty_value, token_prompt = 0.0, torch.zeros_like(prompt)
            prompt_valid = prompt_valid.any()[None]
        means = []
        for sign in (positive, ~positive):
            weights = (member & sign[None, :]).to(sampled.dtype)
            counts = weights.sum(1, keepdim=True)
            mean = weights @ sampled / counts.clamp(min=1.0)
            means.append(torch.where(counts > 0, mean, torch.full_like(mean, empty_value)))
        return SpatialPrompts(torch.stack(tokens), token_prompt, valid, means[0], means[1], prompt_valid)

    def spatial_query_index(self, prompt_valid: torch.Tensor) -> torch.Tensor:
        """Object query copied by each spatial query: v1 (3P,) ``(3 r + k) % 101`` for the prompt of
        valid rank r (padding slots reuse their predecessor's); v0 (101,) ``arange(101)``."""
        if self.version == 'v0':
            return torch.arange(self.num_queries, device=prompt_valid.device)
        rank = (prompt_valid.long().cumsum(0) - 1).clamp(min=0)
        offsets = torch.arange(self.queries_per_prompt, device=rank.device)
        return (rank[:, None] * self.queries_per_prompt + offsets).flatten() % self.num_queries

    def memory_owner(self, prompt_valid: torch.Tensor) -> torch.Tensor:
        """(32,) prompt index owning each spatial memory: the valid prompt of rank ``(j * n_valid) // 32``."""
        rank = prompt_valid.long().cumsum(0) - 1
        num_valid = prompt_valid.long().sum()
        owner_rank = torch.arange(self.num_memories, device=rank.device) * num_valid // self.num_memories
        match = prompt_valid[None, :] & (rank[None, :] == owner_rank[:, None])
        return match.int().argmax(1)

    # ------------------------------------------------------------------ masks
    def cross_attention_mask(self, step: int, mask_logits: torch.Tensor, size) -> torch.Tensor:
        """Raw cross-attention mask of prediction ``step`` (0 = initial queries): (B, R, h*w) bool,
        True = blocked, from ``mask_logits`` (B, R, H/4, W/4) resized bilinearly
        (align_corners=False) to ``size`` (h, w) and blocked where ``sigmoid < 0.5``.

        Override to force masks (teacher forcing); memory rows are replaced and fully blocked
        rows unblocked afterwards.
        """
        resized = F.interpolate(mask_logits, size=tuple(size), mode='bilinear', align_corners=False)
        return resized.sigmoid().flatten(2) < 0.5

    def _self_attention_plan(self, rows: Dict[str, slice], grounding_padding: Optional[torch.Tensor],
                             spatial: Optional[SpatialPrompts], memory_owner: Optional[torch.Tensor],
                             device) -> _SelfAttentionPlan:
        """Self-attention visibility for the cross-attention ``rows`` (see the module docstring)."""
        plan: Dict[str, Any] = {'rows': rows}
        if 'grounding' in rows:
            assert grounding_padding is not None      # grounding rows come with their tokens' padding
            g = rows['grounding']
            queries = torch.ones(len(grounding_padding), g.stop - g.start, dtype=torch.bool, device=device)
            visible = torch.cat([queries, ~grounding_padding], 1)                  # (B, Q + T)
            plan['grounding_blocked'] = ~(visible[:, :, None] & visible[:, None, :])
        memory_group = torch.zeros(0, dtype=torch.long, device=device)
        if 'memory' in rows:
            memory_group = torch.zeros(self.num_memories, dtype=torch.long, device=device)
            if memory_owner is not None:
                memory_group = memory_owner
                plan['memory_blocked'] = (memory_owner[:, None] != memory_owner[None, :])[None]
        if spatial is not None:
            s = rows['spatial']
            groups = len(spatial.prompt_valid)
            query_group = torch.arange(groups, device=device).repeat_interleave((s.stop - s.start) // groups)
            plan['groups'] = groups
            plan['key_group'] = torch.cat([query_group, spatial.token_prompt, memory_group])
            plan['key_valid'] = torch.cat([torch.ones_like(query_group, dtype=torch.bool), spatial.token_valid,
                                           torch.ones_like(memory_group, dtype=torch.bool)])
        return _SelfAttentionPlan(**plan)

    @staticmethod
    def _self_attention_step(layer: SelfAttentionLayer, ffn: FFNLayer, plan: _SelfAttentionPlan, x: torch.Tensor,
                             qpos: torch.Tensor, tokens_g: Optional[torch.Tensor], pos_g: Optional[torch.Tensor],
                             tokens_s: Optional[torch.Tensor]):
        """Self-attention and FFN of one layer, without rows for the spatial tokens (their outputs
        would be discarded: the tokens are rebuilt at every layer).

        x, qpos (B, R, C): cross-attention rows [object, grounding, spatial, memories]; tokens_g,
        pos_g (B, T, C) grounding tokens or None; tokens_s (B, N, C) spatial tokens of the layer's
        level or None. Returns the new rows (B, R, C) and grounding tokens (B, T, C) or None.
        """
        rows = plan.rows
        obj = rows['object']
        parts = [layer(x[:, obj], qpos[:, obj])]
        if 'grounding' in rows:
            assert tokens_g is not None and pos_g is not None   # grounding rows come with their tokens
            g = rows['grounding']
            grounding = layer(torch.cat([x[:, g], tokens_g], 1), torch.cat([qpos[:, g], pos_g], 1),
                              plan.grounding_blocked)
            parts.append(grounding[:, :g.stop - g.start])
        if 'spatial' in rows:
            assert tokens_s is not None and plan.key_group is not None and plan.key_valid is not None
            s, memory = rows['spatial'], slice(rows['spatial'].stop, None)      # memories (if any) follow
            context = torch.cat([x[:, s], tokens_s, x[:, memory]], 1)
            context_pos = torch.cat([qpos[:, s], tokens_s.detach(), qpos[:, memory]], 1)
            q, q_pos = (t[:, s].unflatten(1, (plan.groups, -1)) for t in (x, qpos))
            parts.append(layer.grouped(q, q_pos, context, context_pos, plan.key_group, plan.key_valid).flatten(1, 2))
        if 'memory' in rows:
            m = rows['memory']
            parts.append(layer(x[:, m], qpos[:, m], plan.memory_blocked))
        if 'grounding' in rows:
            parts.append(grounding[:, g.stop - g.start:])
        out = ffn(torch.cat(parts, 1))
        return out[:, :x.shape[1]], (None if tokens_g is None else out[:, x.shape[1]:])

    # ------------------------------------------------------------------ forward
    def _levels(self, multi_scale_features: Sequence[torch.Tensor]):
        """Per level: source (B, HW, C) incl. level_embed, sine key position (1, HW, C), size (h, w)."""
        srcs, poss, sizes = [], [], []
        for level, feat in enumerate(multi_scale_features):
            h, w = feat.shape[-2:]
            pos = sine_position_embedding(h, w, feat.shape[1] // 2, device=feat.device).to(feat.dtype)
            srcs.append(feat.flatten(2).transpose(1, 2) + self.level_embed.weight[level])
            poss.append(pos.flatten(2).transpose(1, 2))
            sizes.append((h, w))
        return srcs, poss, sizes

    def _predict(self, x: torch.Tensor, mask_features: torch.Tensor, step: int, size) -> dict:
        """Prediction heads on the cross-attention rows ``x`` (B, R, C) (pre-norm states)."""
        decoded = self.decoder_norm(x)
        mask_embed = self.mask_embed(decoded)
        masks = torch.einsum('bqc,bchw->bqhw', mask_embed, mask_features)
        return {'states': x, 'class_feat': decoded @ self.class_embed, 'mask_embed': mask_embed,
                'masks': masks, 'attn_mask': self.cross_attention_mask(step, masks, size)}

    def _step_outputs(self, pred: dict, rows: Dict[str, slice], text_embeddings: Optional[torch.Tensor]) -> dict:
        obj = rows['object']
        out = {'pred_masks': pred['masks'][:, obj], 'pred_captions': pred['class_feat'][:, obj]}
        if text_embeddings is not None:
            scale = self.lang_encoder.logit_scale.exp()
            out['pred_logits'] = scale * _normalize(pred['class_feat'][:, obj]) @ text_embeddings.T
        if 'grounding' in rows:
            g = rows['grounding']
            out['pred_gmasks'] = pred['masks'][:, g]
            out['pred_gtexts'] = pred['class_feat'][:, g]
        if 'spatial' in rows:
            s = rows['spatial']
            out['pred_smasks'] = pred['masks'][:, s]
            out['pred_stexts'] = pred['class_feat'][:, s]
            out['pred_smaskembs'] = pred['mask_embed'][:, s]
        return out

    def forward(self, multi_scale_features: Sequence[torch.Tensor], mask_features: torch.Tensor, *,
                text_embeddings: Optional[torch.Tensor] = None,
                grounding_tokens: Optional[torch.Tensor] = None,
                grounding_padding: Optional[torch.Tensor] = None,
                spatial: Optional[SpatialPrompts] = None,
                prev_mask: Optional[torch.Tensor] = None,
                return_steps: bool = False) -> Dict[str, object]:
        """Run the decoder, in the steps of the official one: the rows before the first layer
        (:meth:`_initial_rows`, the official ``attention_data`` layout), a prediction from them and
        after each :meth:`_layer` (:meth:`_predict`, official ``forward_prediction_heads``), whose
        masks block the next layer's cross-attention, and the outputs (:meth:`_outputs`).

        Args:
            multi_scale_features: 3 maps (B, C, H/32, W/32), (B, C, H/16, W/16), (B, C, H/8, W/8)
                of the padded image (pixel-decoder order).
            mask_features: (B, C, H/4, W/4).
            text_embeddings: (K+1, C) class embeddings (last = background), used as given, for
                ``pred_logits``; None skips classification.
            grounding_tokens: (B, T, C) text token embeddings (``token_emb @ lang_proj`` of the
                non-padding tokens; several sentences concatenated) -> grounding queries.
            grounding_padding: (B, T) bool, True = padding token (default none).
            spatial: encoded visual prompts (:meth:`encode_prompts`), shared by the batch.
            prev_mask: (B, P, H/4, W/4) mask logits of the previous round (``prev_mask`` output;
                v0: P = 1) -> 32 memory prompts with mask-guided cross-attention. Needs ``spatial``.
            return_steps: also return per-step outputs, states and raw attention masks.

        Returns a dict (final prediction, after the last layer):
            ``pred_masks`` (B, 101, H/4, W/4) object mask logits; ``pred_captions`` (B, 101, C)
            ``decoder_norm(q) @ class_embed``; ``pred_logits`` (B, 101, K+1) =
            ``exp(logit_scale) * normalize(pred_captions) @ text_embeddings.T`` (if given);
            with grounding: ``pred_gmasks`` (B, 101, H/4, W/4), ``pred_gtexts`` (B, 101, C);
            with spatial (S = 3P in v1, 101 in v0): ``pred_smasks`` (B, S, H/4, W/4),
            ``pred_stexts``, ``pred_smaskembs`` (B, S, C), ``pred_pspatials`` /
            ``pred_nspatials`` (B, P, C) prompt mean features, ``spatial_query_index`` (S,)
            object query each spatial query copies, ``spatial_logits`` (B, S, P) =
            ``pred_smaskembs @ pred_pspatials^T`` (v1: -inf for other prompts' queries),
            ``selected_index`` (B, P) argmax over the spatial queries, ``selected_score`` (B, P),
            ``prev_mask`` (B, P, H/4, W/4) the selected mask logits (input of the next round).
            With ``return_steps``: ``aux_outputs`` (9 dicts with the per-step keys above, step 0
            = initial queries, step k = after layer k-1), ``query_states`` (10, B, R, C)
            pre-norm cross-attention rows, ``attn_masks`` 10 raw masks (B, R, h_s*w_s) (True =
            blocked, before memory replacement and row unblocking; step s is used by layer s and
            sized like level ``s % 3``), ``cross_rows`` name -> slice of the R rows.
        """
        batch = mask_features.shape[0]
        if prev_mask is not None and (spatial is None or prev_mask.shape[1] != spatial.pos_mean.shape[0]):
            raise ValueError('prev_mask needs visual prompts and one channel per prompt (v0: one channel)')
        if grounding_tokens is not None and grounding_padding is None:
            grounding_padding = torch.zeros(grounding_tokens.shape[:2], dtype=torch.bool,
                                            device=grounding_tokens.device)
        levels = self._levels(multi_scale_features)
        _, _, sizes = levels
        initial = self._initial_rows(grounding_tokens is not None, spatial, prev_mask is not None)
        plan = self._self_attention_plan(initial.rows, grounding_padding, spatial, initial.memory_owner,
                                         initial.feat.device)
        memory_blocked = None
        if prev_mask is not None:
            memory_blocked = [self.cross_attention_memory_mask(prev_mask, size, initial.memory_owner) for size in sizes]

        x = initial.feat[None].expand(batch, -1, -1)
        qpos = initial.pos[None].expand(batch, -1, -1)
        tokens_g = grounding_tokens
        pos_g = None if grounding_tokens is None else grounding_tokens.detach()
        steps = [self._predict(x, mask_features, 0, sizes[0])]
        for i in range(len(self.transformer_cross_attention_layers)):
            blocked = steps[-1]['attn_mask']
            if memory_blocked is not None:      # the memory rows attend where the previous round's masks are
                blocked = torch.cat([blocked[:, :initial.rows['memory'].start],
                                     memory_blocked[i % self.num_levels]], 1)
            x, tokens_g = self._layer(i, x, qpos, blocked, levels, plan, tokens_g, pos_g, spatial)
            steps.append(self._predict(x, mask_features, i + 1, sizes[(i + 1) % self.num_levels]))
        return self._outputs(steps, initial, spatial, text_embeddings, return_steps)

    def _initial_rows(self, grounding: bool, spatial: Optional[SpatialPrompts], memories: bool) -> _InitialRows:
        """The rows [object, grounding, spatial, memories] before the first layer (see the module docstring)."""
        feat0, pos0 = self.query_feat.weight, self.query_embed.weight
        feats, poses, rows, start = [], [], {}, 0

        def add_rows(name, feat, pos):
            nonlocal start
            feats.append(feat)
            poses.append(pos)
            rows[name] = slice(start, start + len(feat))
            start += len(feat)

        add_rows('object', feat0, pos0)
        if grounding:
            add_rows('grounding', feat0, pos0)
        query_index = memory_owner = None
        if spatial is not None:
            query_index = self.spatial_query_index(spatial.prompt_valid)
            add_rows('spatial', feat0[query_index], pos0[query_index])
        if memories:
            add_rows('memory', self.spatial_featured.weight, self.spatial_embed.weight)
            if self.version == 'v1':
                assert spatial is not None               # v1 memories belong to the spatial prompts
                memory_owner = self.memory_owner(spatial.prompt_valid)
        return _InitialRows(torch.cat(feats), torch.cat(poses), rows, query_index, memory_owner)

    def _layer(self, i: int, x: torch.Tensor, qpos: torch.Tensor, blocked: torch.Tensor, levels,
               plan: _SelfAttentionPlan, tokens_g: Optional[torch.Tensor], pos_g: Optional[torch.Tensor],
               spatial: Optional[SpatialPrompts]):
        """Decoder layer ``i``: masked cross-attention to level ``i % 3``, then self-attention and FFN.

        x, qpos (B, R, C): the cross-attention rows; blocked (B, R, h*w) bool, True = blocked
        (fully blocked rows are unblocked here); levels: :meth:`_levels`; tokens_g, pos_g (B, T, C)
        grounding tokens or None. Returns the new rows (B, R, C) and grounding tokens (B, T, C) or None.
        """
        level = i % self.num_levels
        srcs, poss, _ = levels
        blocked = blocked & ~blocked.all(-1, keepdim=True)
        x = self.transformer_cross_attention_layers[i](x, qpos, srcs[level], poss[level], blocked)
        tokens_s = None if spatial is None else spatial.tokens[level][None].expand(x.shape[0], -1, -1)
        # nn.ModuleList types its items nn.Module
        return self._self_attention_step(cast(SelfAttentionLayer, self.transformer_self_attention_layers[i]),
                                         cast(FFNLayer, self.transformer_ffn_layers[i]),
                                         plan, x, qpos, tokens_g, pos_g, tokens_s)

    def _outputs(self, steps: List[dict], initial: _InitialRows, spatial: Optional[SpatialPrompts],
                 text_embeddings: Optional[torch.Tensor], return_steps: bool) -> Dict[str, object]:
        """The :meth:`forward` dict from the predictions of every step (``steps[0]``: initial queries)."""
        rows = initial.rows
        out = self._step_outputs(steps[-1], rows, text_embeddings)
        if spatial is not None:
            out.update(self._select_spatial(out, spatial, steps[-1]['masks'].shape[0]))
            out['spatial_query_index'] = initial.spatial_query_index
        if return_steps:
            out['aux_outputs'] = [self._step_outputs(p, rows, text_embeddings) for p in steps[:-1]]
            out['query_states'] = torch.stack([p['states'] for p in steps])
            out['attn_masks'] = [p['attn_mask'] for p in steps]
            out['cross_rows'] = rows
        return out

    def cross_attention_memory_mask(self, prev_mask: torch.Tensor, size, memory_owner: Optional[torch.Tensor]):
        """(B, 32, h*w) blocked mask of the memory rows: ``prev_mask`` of the owning prompt resized
        bilinearly to ``size``, blocked where ``sigmoid < 0.5`` (v0: the single prompt)."""
        blocked = F.interpolate(prev_mask, size=tuple(size), mode='bilinear', align_corners=False)
        blocked = blocked.sigmoid().flatten(2) < 0.5
        if memory_owner is None:
            return blocked.expand(-1, self.num_memories, -1)
        return blocked[:, memory_owner]

    def _select_spatial(self, out: dict, spatial: SpatialPrompts, batch: int) -> dict:
        pos_mean = spatial.pos_mean[None].expand(batch, -1, -1)
        logits = out['pred_smaskembs'] @ pos_mean.transpose(1, 2)      # (B, S, P)
        if self.version == 'v1':
            num_prompts = pos_mean.shape[1]
            query_prompt = torch.arange(num_prompts, device=logits.device).repeat_interleave(self.queries_per_prompt)
            own = query_prompt[:, None] == torch.arange(num_prompts, device=logits.device)[None, :]
            logits = logits.masked_fill(~own, float('-inf'))
        score, index = logits.max(1)
        masks = out['pred_smasks']
        prev = torch.gather(masks, 1, index[:, :, None, None].expand(-1, -1, *masks.shape[-2:]))
        return {'pred_pspatials': pos_mean, 'pred_nspatials': spatial.neg_mean[None].expand(batch, -1, -1),
                'spatial_logits': logits, 'selected_index': index, 'selected_score': score, 'prev_mask': prev}

    # ------------------------------------------------------------------ grounding
    def grounding_scores(self, pred_gtexts: torch.Tensor, sentence_embeddings: torch.Tensor) -> torch.Tensor:
        """Official grounding logits (B, 101, n_sent) =
        ``clamp(exp(logit_scale), max=100) * normalize(pred_gtexts) @ normalize(sentences)^T``,
        ``normalize(x) = x / (|x| + 1e-7)``; ``sentence_embeddings`` (n_sent, C) are the projected
        end-of-text embeddings (``class_emb``)."""
        scale = self.lang_encoder.logit_scale.exp().clamp(max=100)
        return scale * (_normalize(pred_gtexts) @ _normalize(sentence_embeddings).T)


def grounding_match(scores: torch.Tensor) -> torch.Tensor:
    """Official selection: best grounding query per sentence, (B, n_sent) int64, from
    ``scores`` (B, Q, n_sent)."""
    return scores.argmax(1)


def grounding_instances(scores: torch.Tensor, masks: torch.Tensor, *, threshold: float,
                        iou_threshold: float = 0.5) -> List[List[torch.Tensor]]:
    """Multi-instance grounding (not in the official code; official issue #78).

    For each image and sentence: the grounding queries whose score is at least ``threshold``,
    best first, dropping any whose binary mask (logit > 0) has IoU above ``iou_threshold`` with
    an already kept one. ``scores`` (B, Q, n_sent) from :meth:`SeemDecoder.grounding_scores`;
    ``masks`` (B, Q, h, w) ``pred_gmasks``. Returns ``[image][sentence] -> (n,) int64`` indices
    (possibly empty).
    """
    result = []
    for image_scores, image_masks in zip(scores, masks):
        binary = (image_masks > 0).flatten(1).float()
        area = binary.sum(1)
        iou = binary @ binary.T / (area[:, None] + area[None, :] - binary @ binary.T).clamp(min=1.0)
        per_sentence = []
        for column in image_scores.T:
            order = column.argsort(descending=True)
            order = order[column[order] >= threshold]
            kept: List[int] = []
            for idx in order.tolist():
                if all(iou[idx, j] <= iou_threshold for j in kept):
                    kept.append(idx)
            per_sentence.append(torch.tensor(kept, dtype=torch.long, device=scores.device))
        result.append(per_sentence)
    return result

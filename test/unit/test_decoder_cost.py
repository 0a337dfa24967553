"""Decoder attention: equal to the former dense implementation, with a cost linear in the prompts.

The reference below is the previous implementation, kept only here: one self-attention over
[queries, grounding tokens, spatial tokens, memories] with a dense (B, L, L) mask and explicit
(B, heads, Lq, Lk) scores. The decoder (tiny variant, synthetic weights) is compared with it in
float64, where no cross-attention mask entry (``sigmoid(logit) < 0.5``) flips from rounding.
"""
import pytest
import torch
import torch.nn.functional as F

from seem_ros.model import decoder_layers
from seem_ros.model.build import build_seem, synthetic_state_dict
from seem_ros.model.decoder_layers import MultiheadAttention
from seem_ros.model.spatial import PromptPoints

HP, WP = 64, 96


# ---------------------------------------------------------------------------------- reference
def reference_attention(attn, query, key, value, blocked):
    """Explicit scores, masked softmax, fully blocked rows with zero weights."""
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)
    heads, dim = attn.num_heads, query.shape[-1] // attn.num_heads
    q = F.linear(query, w_q, b_q) * dim ** -0.5
    k, v = F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
    q, k, v = (t.unflatten(-1, (heads, dim)).transpose(1, 2) for t in (q, k, v))
    blocked = blocked[:, None]
    weights = (q @ k.transpose(-2, -1)).masked_fill(blocked, float('-inf')).softmax(-1).masked_fill(blocked, 0.0)
    return attn.out_proj((weights @ v).transpose(1, 2).flatten(2))


def reference_self_blocked(decoder, batch, rows, length, grounding_padding, spatial, memory_owner):
    """The former (B, L, L) self-attention mask, True = blocked."""
    allowed = torch.zeros(batch, length, length, dtype=torch.bool)
    obj = rows['object']
    allowed[:, obj, obj] = True
    if 'grounding' in rows:
        g, t, ok = rows['grounding'], rows['grounding_tokens'], ~grounding_padding
        allowed[:, g, g] = True
        allowed[:, g, t] = ok[:, None, :]
        allowed[:, t, g] = ok[:, :, None]
        allowed[:, t, t] = ok[:, :, None] & ok[:, None, :]
    if spatial is not None:
        s, k, ok = rows['spatial'], rows['spatial_tokens'], spatial.token_valid
        query_prompt = torch.arange(len(spatial.prompt_valid)).repeat_interleave(3)
        kp = spatial.token_prompt
        if decoder.version == 'v0':
            query_prompt = torch.zeros(decoder.num_queries, dtype=torch.long)
        allowed[:, s, s] = query_prompt[:, None] == query_prompt[None, :]
        allowed[:, s, k] = (query_prompt[:, None] == kp[None, :]) & ok[None, :]
        allowed[:, k, k] = (kp[:, None] == kp[None, :]) & ok[:, None] & ok[None, :]
        if 'memory' in rows:
            m = rows['memory']
            owner = torch.zeros(decoder.num_memories, dtype=torch.long) if memory_owner is None else memory_owner
            allowed[:, s, m] = query_prompt[:, None] == owner[None, :]
            allowed[:, m, m] = owner[:, None] == owner[None, :]
    return ~allowed


def reference_forward(decoder, ms, mf, grounding_tokens=None, grounding_padding=None, spatial=None, prev_mask=None):
    """The former ``SeemDecoder.forward`` (final outputs only)."""
    batch = mf.shape[0]
    srcs, poss, sizes = decoder._levels(ms)
    feat0, pos0 = decoder.query_feat.weight, decoder.query_embed.weight
    groups = [('object', feat0, pos0)]
    if grounding_tokens is not None:
        groups.append(('grounding', feat0, pos0))
    if spatial is not None:
        index = decoder.spatial_query_index(spatial.prompt_valid)
        groups.append(('spatial', feat0[index], pos0[index]))
    if prev_mask is not None:
        groups.append(('memory', decoder.spatial_featured.weight, decoder.spatial_embed.weight))
    rows, start = {}, 0
    for name, feat, _ in groups:
        rows[name] = slice(start, start + len(feat))
        start += len(feat)
    num_q = rows['memory'].start if prev_mask is not None else start
    x = torch.cat([g[1] for g in groups])[None].expand(batch, -1, -1)
    qpos = torch.cat([g[2] for g in groups])[None].expand(batch, -1, -1)
    cross_rows, length = dict(rows), num_q
    for name, count in (('grounding_tokens', None if grounding_tokens is None else grounding_tokens.shape[1]),
                        ('spatial_tokens', None if spatial is None else spatial.tokens.shape[1]),
                        ('memory', None if prev_mask is None else decoder.num_memories)):
        if count is not None:
            rows[name] = slice(length, length + count)
            length += count
    owner = decoder.memory_owner(spatial.prompt_valid) if prev_mask is not None and decoder.version == 'v1' else None
    if grounding_tokens is not None and grounding_padding is None:
        grounding_padding = torch.zeros(grounding_tokens.shape[:2], dtype=torch.bool)
    self_blocked = reference_self_blocked(decoder, batch, rows, length, grounding_padding, spatial, owner)
    tokens_g = grounding_tokens
    pred = decoder._predict(x, mf, 0, sizes[0])
    for i in range(len(decoder.transformer_self_attention_layers)):
        cross = decoder.transformer_cross_attention_layers[i]
        self_layer = decoder.transformer_self_attention_layers[i]
        level = i % 3
        blocked = pred['attn_mask']
        if prev_mask is not None:
            memory = decoder.cross_attention_memory_mask(prev_mask, sizes[level], owner)
            blocked = torch.cat([blocked[:, :num_q], memory], 1)
        blocked = blocked & ~blocked.all(-1, keepdim=True)
        x = cross.norm(x + reference_attention(cross.multihead_attn, x + qpos, srcs[level] + poss[level], srcs[level],
                                               blocked))
        seq, seq_pos = [x[:, :num_q]], [qpos[:, :num_q]]
        if tokens_g is not None:
            seq.append(tokens_g)
            seq_pos.append(grounding_tokens)
        if spatial is not None:
            tokens_s = spatial.tokens[level][None].expand(batch, -1, -1)
            seq.append(tokens_s)
            seq_pos.append(tokens_s)
        seq.append(x[:, num_q:])
        seq_pos.append(qpos[:, num_q:])
        seq, q = torch.cat(seq, 1), torch.cat(seq, 1) + torch.cat(seq_pos, 1)
        attended = reference_attention(self_layer.self_attn, q, q, seq, self_blocked)
        seq = decoder.transformer_ffn_layers[i](self_layer.norm(seq + attended))
        if tokens_g is not None:
            tokens_g = seq[:, rows['grounding_tokens']]
        x = torch.cat([seq[:, :num_q], seq[:, length - (x.shape[1] - num_q):]], 1)
        pred = decoder._predict(x, mf, i + 1, sizes[(i + 1) % 3])
    out = decoder._step_outputs(pred, cross_rows, None)
    if spatial is not None:
        out.update(decoder._select_spatial(out, spatial, batch))
    return out


# ---------------------------------------------------------------------------------- inputs
@pytest.fixture(scope='module')
def decoders():
    out = {}
    for version in ('v1', 'v0'):
        model = build_seem('tiny', version=version)
        model.load_state_dict(synthetic_state_dict('tiny', version=version))
        out[version] = model.decoder.double().eval()
    return out


def make_inputs(decoder, seed, *, batch=1, prompts=1, points=8, padding_points=0, padding_slots=(), empty_slots=(),
                tokens=0, padding_tokens=0, memory=False):
    """Random features, a padded point set of ``points`` valid points over the valid prompt slots
    (none on ``padding_slots`` / ``empty_slots``) and the decoder keyword arguments."""
    gen = torch.Generator().manual_seed(seed)
    dim = decoder.class_embed.shape[0]
    ms = [torch.randn(batch, dim, HP // s, WP // s, generator=gen, dtype=torch.float64) for s in (32, 16, 8)]
    mf = torch.randn(batch, dim, HP // 4, WP // 4, generator=gen, dtype=torch.float64)
    prompt_valid = torch.tensor([p not in padding_slots for p in range(prompts)])
    with_points = torch.tensor([p for p in range(prompts) if p not in padding_slots and p not in empty_slots])
    total = points + padding_points
    prompt = with_points[torch.randint(len(with_points), (total,), generator=gen)]
    valid = torch.arange(total) < points
    point_set = PromptPoints(torch.rand(total, 2, generator=gen, dtype=torch.float64), torch.where(valid, prompt, 0),
                             torch.rand(total, generator=gen) < 0.7, valid)
    spatial = decoder.encode_prompt_points([m[:1] for m in ms], mf[:1], point_set, prompt_valid)
    kwargs = {'spatial': spatial}
    if tokens:
        kwargs['grounding_tokens'] = torch.randn(batch, tokens, dim, generator=gen, dtype=torch.float64)
        kwargs['grounding_padding'] = torch.arange(tokens).expand(batch, -1) >= tokens - padding_tokens
    if memory:
        kwargs['prev_mask'] = 4 * torch.randn(batch, len(spatial.pos_mean), HP // 4, WP // 4, generator=gen,
                                              dtype=torch.float64)
    return ms, mf, kwargs


CONFIGS = {
    'v1-1p': ('v1', dict(prompts=1, points=9)),
    'v1-1p-memory-text': ('v1', dict(prompts=1, points=30, padding_points=6, tokens=5, padding_tokens=2, memory=True)),
    'v1-4p-padding-memory-text-batch2': ('v1', dict(batch=2, prompts=4, points=60, padding_points=8,
                                                    padding_slots=(2,), tokens=6, padding_tokens=2, memory=True)),
    'v1-16p-padding-empty-memory-text': ('v1', dict(prompts=16, points=400, padding_points=24, padding_slots=(5, 11),
                                                    empty_slots=(7,), tokens=9, padding_tokens=3, memory=True)),
    'v1-16p': ('v1', dict(prompts=16, points=200)),
    'v0-memory-text': ('v0', dict(prompts=1, points=50, padding_points=5, tokens=4, padding_tokens=1, memory=True)),
}


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_decoder_equals_dense_reference(decoders, name):
    version, config = CONFIGS[name]
    decoder = decoders[version]
    ms, mf, kwargs = make_inputs(decoder, seed=sorted(CONFIGS).index(name), **config)
    with torch.no_grad():
        got = decoder(ms, mf, **kwargs)
        want = reference_forward(decoder, ms, mf, **kwargs)
    for key, value in want.items():
        if not value.dtype.is_floating_point:
            assert torch.equal(got[key], value), key
            continue
        finite = torch.isfinite(value)
        assert torch.equal(torch.isfinite(got[key]), finite), key
        err = (got[key][finite] - value[finite]).abs().max() / value[finite].abs().max()
        assert err < 1e-9, (key, float(err))


# ---------------------------------------------------------------------------------- attention
def test_fully_blocked_rows_give_out_proj_bias():
    torch.manual_seed(0)
    attn = MultiheadAttention(32, 4)
    nn_init = torch.nn.init
    nn_init.normal_(attn.in_proj_bias)
    nn_init.normal_(attn.out_proj.bias)
    query, key = torch.randn(2, 7, 32), torch.randn(2, 11, 32)
    blocked = torch.rand(2, 7, 11) < 0.5
    blocked[0, 3] = True
    blocked[1, 0] = True
    got = attn(query, key, key, blocked)
    torch.testing.assert_close(got, reference_attention(attn, query, key, key, blocked), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[0, 3], attn.out_proj.bias)
    torch.testing.assert_close(got[1, 0], attn.out_proj.bias)


def test_grouped_attention_equals_block_masked_attention():
    torch.manual_seed(1)
    attn = MultiheadAttention(32, 4)
    groups, size, keys = 5, 3, 40
    query, key, value = torch.randn(2, groups, size, 32), torch.randn(2, keys, 32), torch.randn(2, keys, 32)
    key_group = torch.randint(groups, (keys,))
    key_group[key_group == 4] = 3                          # group 4 has no keys, group 2 only invalid ones
    key_valid = (torch.rand(keys) < 0.8) & (key_group != 2)
    got = attn(query, key, value, key_group=key_group, key_valid=key_valid)
    query_group = torch.arange(groups).repeat_interleave(size)
    blocked = ((query_group[:, None] != key_group[None, :]) | ~key_valid[None, :]).expand(2, -1, -1)
    want = reference_attention(attn, query.flatten(1, 2), key, value, blocked).unflatten(1, (groups, size))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[:, 4], attn.out_proj.bias.expand(2, size, -1))


# ---------------------------------------------------------------------------------- cost
def test_attention_work_grows_linearly_with_prompts(decoders, monkeypatch):
    """Score elements computed by all decoder attention calls, for P prompts of 40 points each:
    affine in P (the former dense self-attention grows with (3P + N)^2)."""
    counted = []
    dense, grouped = decoder_layers._dense_attention, decoder_layers._grouped_attention

    def count_dense(q, k, v, blocked):
        counted.append(q.shape[0] * q.shape[2] * q.shape[1] * k.shape[1])        # B h Lq Lk
        return dense(q, k, v, blocked)

    def count_grouped(q, k, v, key_group, key_valid):
        counted.append(q.shape[0] * q.shape[3] * k.shape[1] * q.shape[2])        # B h K g
        return grouped(q, k, v, key_group, key_valid)

    monkeypatch.setattr(decoder_layers, '_dense_attention', count_dense)
    monkeypatch.setattr(decoder_layers, '_grouped_attention', count_grouped)
    decoder = decoders['v1']
    work = {}
    for prompts in (2, 4, 6, 16):
        ms, mf, kwargs = make_inputs(decoder, 0, prompts=prompts, points=40 * prompts, tokens=4, memory=True)
        counted.clear()
        with torch.no_grad():
            decoder(ms, mf, **kwargs)
        work[prompts] = sum(counted)
    assert work[6] - work[4] == work[4] - work[2] > 0
    assert work[16] - work[6] == 5 * (work[4] - work[2])

"""SEEM language encoder: CLIP-style causal text transformer + projection (``lang_encoder.*`` keys).

State-dict keys equal the checkpoint's ``sem_seg_head.predictor.lang_encoder.*`` subset:
``lang_proj`` [512,512], ``logit_scale`` [], ``lang_encoder.token_embedding.weight``,
``lang_encoder.positional_embedding`` [77,512], ``lang_encoder.resblocks.{i}.{attn,ln_1,mlp,ln_2}``,
``lang_encoder.ln_final``.
"""
from collections import OrderedDict

import torch
from torch import nn

from .templates import prompts_for
from .tokenizer import tokenize

_NORM_EPS = 1e-7
_CHUNK = 512  # sequences per forward pass when embedding a vocabulary


def normalize(x):
    """``x / (||x|| + 1e-7)`` over the last dimension, as the official code normalizes."""
    return x / (x.norm(dim=-1, keepdim=True) + _NORM_EPS)


class LayerNorm(nn.Module):
    """TF-style LayerNorm (eps inside the sqrt, default 1e-12), statistics in float32.

    The normalized value is cast back to the input dtype before the affine part.
    """

    def __init__(self, width, eps=1e-12):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight * x.to(dtype) + self.bias


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``; sequence-first [L, N, D]."""

    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ('c_fc', nn.Linear(width, width * 4)),
            ('gelu', QuickGELU()),
            ('c_proj', nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x, attn_mask):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask.to(h.dtype))[0]
        return x + self.mlp(self.ln_2(x))


class TextTransformer(nn.Module):
    """Causal CLIP text transformer (the checkpoint's ``lang_encoder.lang_encoder``)."""

    def __init__(self, *, context_length=77, vocab_size=49408, width=512, layers=12, heads=8):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_final = LayerNorm(width)
        nn.init.trunc_normal_(self.positional_embedding, std=0.02)
        nn.init.trunc_normal_(self.token_embedding.weight, std=0.02)
        self.register_buffer('causal_mask', torch.full((context_length, context_length), float('-inf')).triu_(1),
                             persistent=False)

    def forward(self, input_ids):
        """int64 ids [N, L] (L <= context length) -> last hidden state after ``ln_final`` [N, L, D].

        Each position attends to itself and earlier positions only (additive -inf mask), so for
        L < 77 the outputs equal the first L positions of a full-length run up to float rounding;
        padding is never masked.
        """
        length = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.positional_embedding[:length]
        x = x.permute(1, 0, 2)
        mask = self.causal_mask[:length, :length]
        for block in self.resblocks:
            x = block(x, mask)
        return self.ln_final(x.permute(1, 0, 2))


class LanguageEncoder(nn.Module):
    """Text encoder of SEEM (the checkpoint's ``sem_seg_head.predictor.lang_encoder``).

    ``lang_encoder``: ``TextTransformer``; ``lang_proj``: [width, proj_dim] used as ``x @ lang_proj``;
    ``logit_scale``: scalar whose ``exp`` scales classification logits.
    Vocabulary embeddings are not in the state dict; they are computed on demand and cached per
    (names, templates, device, dtype). Loading a state dict clears the cache.
    """

    def __init__(self, *, width=512, layers=12, heads=8, context_length=77, vocab_size=49408, proj_dim=512):
        super().__init__()
        self.lang_encoder = TextTransformer(context_length=context_length, vocab_size=vocab_size,
                                            width=width, layers=layers, heads=heads)
        self.lang_proj = nn.Parameter(torch.empty(width, proj_dim))
        self.logit_scale = nn.Parameter(torch.ones([]))
        nn.init.trunc_normal_(self.lang_proj, std=0.02)
        self.context_length = context_length
        self._vocab_cache = {}

    def _load_from_state_dict(self, *args, **kwargs):
        self._vocab_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    def clear_cache(self):
        """Forget cached vocabulary embeddings (call after changing weights in place)."""
        self._vocab_cache.clear()

    def forward_tokens(self, input_ids, attention_mask=None):
        """Run the transformer on int64 ids [N, 77].

        Returns ``last_hidden_state`` [N,77,width], ``token_emb = last_hidden_state @ lang_proj``
        [N,77,proj_dim], ``class_emb`` [N,proj_dim] = ``token_emb`` at ``argmax(input_ids)`` (the
        first end token) and that index ``eot_index`` (int64 [N]). ``attention_mask`` is accepted for
        API symmetry and, as in the official model, not used.
        """
        del attention_mask
        hidden = self.lang_encoder(input_ids)
        token_emb = hidden @ self.lang_proj
        eot = input_ids.argmax(dim=-1)
        class_emb = token_emb[torch.arange(len(eot), device=eot.device), eot]
        return {'last_hidden_state': hidden, 'token_emb': token_emb, 'class_emb': class_emb, 'eot_index': eot}

    def encode_sentences(self, texts):
        """Embed a list of S sentences (for grounding / referring).

        Returns ``input_ids`` int64 [S,77]; ``token_emb`` [S,77,proj_dim]; ``token_mask`` bool [S,77]
        (start, words, end); ``grounding_tokens`` [T,proj_dim] = ``token_emb[token_mask]``, the
        tokens of all sentences concatenated; ``class_emb`` [S,proj_dim]; ``class_emb_normalized``
        = ``class_emb / (||class_emb|| + 1e-7)``. Text over 77 tokens is truncated (see
        ``tokenizer.count_tokens``); an empty string yields start+end tokens only, so callers
        should reject it.
        """
        device = self.lang_proj.device
        input_ids, attention_mask = tokenize(texts, self.context_length)
        input_ids, token_mask = input_ids.to(device), attention_mask.to(device).bool()
        out = self.forward_tokens(input_ids)
        return {'input_ids': input_ids, 'token_emb': out['token_emb'], 'token_mask': token_mask,
                'grounding_tokens': out['token_emb'][token_mask], 'class_emb': out['class_emb'],
                'class_emb_normalized': normalize(out['class_emb'])}

    def _pooled_normalized(self, input_ids):
        """Normalized projected end-token embeddings [N, proj_dim] of int64 ids [N, 77].

        Sequences are sorted by end-token position and run in chunks cut after their last end
        token; causality makes this equal to running all 77 positions.
        """
        eot = input_ids.argmax(dim=-1)
        order = torch.argsort(eot)
        out = torch.empty(len(eot), self.lang_proj.shape[1], device=input_ids.device, dtype=self.lang_proj.dtype)
        for chunk in torch.split(order, _CHUNK):
            length = int(eot[chunk].max()) + 1
            hidden = self.lang_encoder(input_ids[chunk, :length])
            pooled = hidden[torch.arange(len(chunk), device=chunk.device), eot[chunk]] @ self.lang_proj
            out[chunk] = normalize(pooled)
        return out

    def class_embeddings(self, names, templates=True):
        """Open-vocabulary class embeddings [K, proj_dim] for K class names (cached, no grad).

        Per class (tags ``-other/-merged/-stuff`` removed): the 81 prompt templates are embedded,
        each normalized with +1e-7, averaged, and the mean renormalized without epsilon (official
        ``get_text_embeddings(names, is_eval=True, prompt=True)``). With ``templates=False`` the
        bare cleaned name is embedded alone. Computed in the parameters' dtype with autocast off.
        """
        if not names:
            raise ValueError('class_embeddings needs at least one class name')
        device, dtype = self.lang_proj.device, self.lang_proj.dtype
        key = (tuple(names), bool(templates), device, dtype)
        if key not in self._vocab_cache:
            prompts = [prompts_for(n, templates) for n in names]
            input_ids, _ = tokenize([p for group in prompts for p in group], self.context_length)
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                emb = self._pooled_normalized(input_ids.to(device))
            emb = emb.view(len(names), len(prompts[0]), -1).mean(dim=1)
            self._vocab_cache[key] = emb / emb.norm(dim=-1, keepdim=True)
        return self._vocab_cache[key]

    def vocabulary_embeddings(self, names):
        """``class_embeddings(names + ['background'])`` [K+1, proj_dim]: the SEEM decoder's K+1 columns.

        "background" is always appended as the last class and embedded with the templates like
        any other name; ``names`` should not contain it.
        """
        return self.class_embeddings(list(names) + ['background'])

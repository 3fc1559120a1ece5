"""DyCoke stage 2: dynamic pruning of the video entries of the KV cache while
decoding, with the cache of layers ``>= K`` physically shrunk.

At every decode step (one new token per sample), the new token's attention at
layer ``K - 1`` (softmax over every cached entry, mean over heads) is read
over the prompt's video entries. When it has moved, the cosine between this
step's and the previous step's video attention below ``threshold`` (and at the
first step), the sample re-selects the ``floor(keep * n)`` video entries with
the most attention (``n``: its video entries after stage 1; ties toward the
earlier entry); otherwise it keeps its selection. Layers ``>= K`` then attend
to the text entries, the selected video entries and the generated tokens only:
their caches hold just those (compacted, samples right-aligned, padding
masked), so each decode step reads fewer keys and values there. The prompt's
full entries of layers ``>= K`` are kept aside, unread, so that a later
re-selection can bring back an entry dropped earlier, which is what the method
computes (its released code gathers from a full cache at every step instead).

Reading of the released code that this follows: the score is layer ``K - 1``'s
attention of the newest token, mean over heads; the similarity is the cosine
of the video attention to the previous step's (updated every step); ``keep``
is ``1 - p`` of the video tokens (``floor``). Where the released code uses the
full cache for a step whose attention has not moved (its selection is reset
every step and only re-made below the threshold), this keeps the previous
selection, as the paper describes.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from transformers.masking_utils import create_causal_mask

from vlmkern.ops import topk_indices
from vlmkern.patch.core import PatchHandle


@dataclass
class _Stage2:
    """Per cache: the prompt layout after stage 1 and the current selection."""
    video: torch.Tensor  # bool [B, S0]: which prompt slots of layers >= K hold video tokens
    full: list = field(default_factory=list)  # per layer >= K: (keys, values) of the S0 prompt slots
    prev: torch.Tensor | None = None  # [B, S0] the previous step's video attention
    visible: torch.Tensor | None = None  # bool [B, S0]: prompt slots in the compact cache
    order: torch.Tensor | None = None  # [B, S2] prompt slot of each compact prompt slot
    slot_valid: torch.Tensor | None = None  # bool [B, S2]


class KVStagePruner:
    """Installs DyCoke's stage 2 next to its stage-1 pruner.

    Args:
        pruner: the installed :class:`vlmkern.patch.pre_llm.PreLLMPruner` of
            stage 1 (its per-cache records give the prompt layout).
        layer: ``K``: layers ``>= K`` have their video entries pruned,
            scored from layer ``K - 1``; ``1 <= K <= num_layers - 1``.
        keep: fraction of each sample's video entries kept, in ``(0, 1]``.
        threshold: re-select when the cosine of this step's video attention
            to the previous step's is below it.
    """

    def __init__(self, pruner, layer: int, keep: float, threshold: float):
        self.pruner, self.lm, self.K = pruner, pruner.lm, int(layer)
        self.keep, self.threshold = float(keep), float(threshold)
        self.records = weakref.WeakKeyDictionary()  # cache -> _Stage2
        self._q = self._cos_sin = None
        # the compact layers' attention mask during a decode step (None is a valid
        # mask: sdpa's causal shortcut), and whether this forward set it
        self._mask, self._active = None, False
        # of the last decode step: prompt slots visible to layers >= K [B, S0], and
        # which samples re-selected [B]
        self.last_visible = self.last_reselected = None

    def install(self, handle: PatchHandle) -> None:
        layers, K = self.lm.layers, self.K
        attn = layers[K - 1].self_attn
        reg = [
            (attn.register_forward_pre_hook(self._attn_pre, with_kwargs=True),
             f"layers[{K - 1}].self_attn: forward pre-hook reads position_embeddings (DyCoke stage 2)"),
            (attn.q_proj.register_forward_hook(self._q_hook),
             f"layers[{K - 1}].self_attn.q_proj: forward hook captures the decode query (DyCoke stage 2)"),
            (layers[K].register_forward_pre_hook(self._select_pre, with_kwargs=True),
             f"layers[{K}]: forward pre-hook selects video entries and compacts layers >= {K}"),
        ]
        for i in range(K + 1, len(layers)):
            reg.append((layers[i].register_forward_pre_hook(self._follow_pre, with_kwargs=True),
                        f"layers[{i}]: forward pre-hook uses the compacted cache's mask"))
        for h, where in reg:
            handle.add_hook(h, where)
        handle.note(layers[K], f"[vlmkern] DyCoke stage 2: while decoding, layers >= {K} hold the text, "
                               f"the {self.keep:g} most attended video entries and the generated tokens")
        handle.kv_pruner = self

    # -- hooks ----------------------------------------------------------------
    def _attn_pre(self, module, args, kwargs):
        self._cos_sin = kwargs.get("position_embeddings")

    def _q_hook(self, module, args, out):
        self._q = out if out.shape[1] == 1 else None

    def _follow_pre(self, module, args, kwargs):
        if not self._active:
            return None
        kwargs = dict(kwargs)
        kwargs["attention_mask"] = self._mask
        return args, kwargs

    def _select_pre(self, module, args, kwargs):
        self._mask, self._active = None, False
        hs = args[0] if args else kwargs["hidden_states"]
        cache = kwargs.get("past_key_values")
        pruner, K = self.pruner, self.K
        if cache is None or cache not in pruner.kept:
            return None
        if cache.get_seq_length(K) == 0:  # the pruned prefill reaching layer K: record its layout
            st = pruner.state
            video = st.image_mask.to(hs.device).gather(1, pruner.last_positions.to(hs.device))
            self.records[cache] = _Stage2(video=video & pruner.last_slot_valid.to(hs.device))
            return None
        rec = self.records.get(cache)
        if rec is None:
            return None
        if hs.shape[1] != 1 or self._q is None:
            raise NotImplementedError(
                f"vlmkern: DyCoke stage 2 decodes one token per sample and step; got {hs.shape[1]} "
                "tokens on a pruned cache")
        tail = self._tail(cache, hs)
        reselect = self._score_and_select(rec, cache, tail)
        if rec.order is None or bool(reselect.any()):
            self._compact(rec, cache)
        mask2d = torch.cat([rec.slot_valid, tail], dim=1)
        self._mask = create_causal_mask(config=self.lm.config, inputs_embeds=hs, attention_mask=mask2d,
                                        past_key_values=cache, position_ids=None, layer_idx=K)
        self._active = True
        kwargs = dict(kwargs)
        kwargs["attention_mask"] = self._mask
        return args, kwargs

    # -- the step ---------------------------------------------------------------
    def _tail(self, cache, hs) -> torch.Tensor:
        """bool ``[B, g + 1]``: the generated tokens' and this token's validity."""
        pruner = self.pruner
        kept = pruner.kept[cache]
        n_new = cache.get_seq_length(0) - kept.prefix_mask.shape[1]  # layer 0 holds this token already
        attn2d = pruner.state.attn2d
        if attn2d is not None:
            return attn2d[:, kept.prompt_len:].to(device=hs.device, dtype=torch.bool)
        return torch.ones((hs.shape[0], n_new), dtype=torch.bool, device=hs.device)

    def _score_and_select(self, rec: _Stage2, cache, tail) -> torch.Tensor:
        """This step's video attention at layer K-1 and, per sample, whether it
        re-selected (bool ``[B]``); updates ``rec.visible``."""
        K, pruner = self.K, self.pruner
        attn = self.lm.layers[K - 1].self_attn
        keys = cache.layers[K - 1].keys  # [B, Hkv, S0 + g + 1, D], after RoPE
        B, Hkv, S, D = keys.shape
        q = self._q.view(B, 1, -1, D)
        if getattr(attn, "q_norm", None) is not None:
            q = attn.q_norm(q)
        q = q.transpose(1, 2)  # [B, Hq, 1, D]
        cos, sin = self._cos_sin
        q, _ = pruner.rotary(q, q, cos, sin)
        G = q.shape[1] // Hkv
        logits = torch.matmul(q.float().view(B, Hkv, G, 1, D),
                              keys.float().unsqueeze(2).transpose(-1, -2)).view(B, Hkv * G, S)
        valid = torch.cat([pruner.kept[cache].prefix_mask.to(keys.device), tail.to(keys.device)], dim=1)
        logits = logits * float(attn.scaling)
        logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
        probs = torch.softmax(logits, dim=-1).mean(1)  # [B, S]
        S0 = rec.video.shape[1]
        video_attn = torch.where(rec.video, probs[:, :S0], torch.zeros((), device=probs.device))
        if rec.prev is None:
            reselect = torch.ones(B, dtype=torch.bool, device=probs.device)
        else:
            cos_prev = torch.nn.functional.cosine_similarity(video_attn.double(), rec.prev.double(), dim=1)
            reselect = ~(cos_prev >= self.threshold)
        rec.prev = video_attn
        if rec.visible is None:
            rec.visible = ~rec.video  # text slots, before any selection
        if bool(reselect.any()):
            n = rec.video.sum(1)
            budget = torch.floor(n.double() * self.keep).to(torch.int64)
            score = torch.where(rec.video, video_attn, torch.full((), float("nan"), device=probs.device))
            kept = topk_indices(score, budget.clamp(min=0), S0)  # [B, max budget], -1 padded
            chosen = torch.zeros((B, S0 + 1), dtype=torch.bool, device=probs.device)
            chosen.scatter_(1, torch.where(kept >= 0, kept, S0), True)
            fresh = ~rec.video | chosen[:, :S0]
            rec.visible = torch.where(reselect[:, None], fresh, rec.visible)
        self.last_visible, self.last_reselected = rec.visible.clone(), reselect
        return reselect

    def _compact(self, rec: _Stage2, cache) -> None:
        """Rebuild layers >= K: the visible prompt slots (right-aligned per
        sample, from the prompt entries kept aside) then the generated tokens."""
        K, layers = self.K, cache.layers
        S0 = rec.video.shape[1]
        if not rec.full:  # first decode step: the caches still hold the whole prompt
            rec.full = [(layers[i].keys[:, :, :S0], layers[i].values[:, :, :S0]) for i in range(K, len(layers))]
            gen_from = S0
        else:
            gen_from = rec.order.shape[1]
        prefix = self.pruner.kept[cache].prefix_mask.to(rec.video.device)
        visible = rec.visible & prefix
        S2 = int(visible.sum(1).max())
        order = torch.sort(visible.to(torch.int8), dim=1, stable=True).indices[:, S0 - S2:]
        valid = visible.gather(1, order)
        for i, (k_full, v_full) in zip(range(K, len(layers)), rec.full):
            idx = order.to(k_full.device)[:, None, :, None].expand(-1, k_full.shape[1], -1, k_full.shape[3])
            layer = layers[i]
            gen_k, gen_v = layer.keys[:, :, gen_from:], layer.values[:, :, gen_from:]
            layer.keys = torch.cat([k_full.gather(2, idx), gen_k], dim=2)
            layer.values = torch.cat([v_full.gather(2, idx), gen_v], dim=2)
        rec.order, rec.slot_valid = order, valid

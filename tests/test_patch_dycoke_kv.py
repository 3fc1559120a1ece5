"""DyCoke stage 2 (``DyCoke(rho, kv_layer=K)``): while decoding, layers >= K
read only the most attended video entries, from a physically compacted cache.

The reference never compacts: it is a twin model (same weights, eager
attention) with DyCoke stage 1 only, whose decode steps keep the whole cache
and hide the unselected video entries from layers >= K with an additive
mask; its selection is recomputed in the test from the attention weights the
eager layer K-1 returns (mean over heads, the newest token's row), with the
same rule written out here: re-select when the cosine of this step's video
attention to the previous step's is below the threshold (and at the first
step), keeping ``floor(keep * n)`` entries by attention, ties toward the
earlier entry.
"""

from __future__ import annotations

import math

import pytest
import torch

import vlmkern
from vlmkern.methods import DyCoke
from models import LV_VIDEO, QWEN_VIDEO, tiny_llava_video, tiny_qwen3_video, tiny_qwen_video

RAGGED = ((3, (4, 4, 4), 5), (1, (6, 4, 6), 2))


def build(family, impl, seed):
    """(model, inputs, video token id) with 6 decoder layers and a ragged batch of two videos."""
    if family.startswith("llava"):
        model, inputs = tiny_llava_video(family, impl, samples=((3, 4, 5), (1, 4, 2)), num_layers=6, seed=seed)
        return model, inputs, LV_VIDEO
    if family == "qwen3_vl":
        return (*tiny_qwen3_video(impl, samples=RAGGED, num_layers=6, seed=seed), QWEN_VIDEO)
    return (*tiny_qwen_video(family, impl, samples=RAGGED, num_layers=6, seed=seed), QWEN_VIDEO)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class MaskedReference:
    """Stage-2 semantics on a full cache: hooks on a stage-1-patched eager model."""

    def __init__(self, model, patch, K, keep, threshold):
        self.model, self.patch, self.K = model, patch, K
        self.keep, self.threshold = keep, threshold
        self.prev = self.visible = self.video = None
        self.reselected = []
        layers = model.model.language_model.layers
        self.hooks = [layers[K - 1].self_attn.register_forward_hook(self._read_attention)]
        self.hooks += [layers[i].register_forward_pre_hook(self._hide, with_kwargs=True)
                       for i in range(K, len(layers))]

    def remove(self):
        for h in self.hooks:
            h.remove()

    def _read_attention(self, module, args, out):
        probs = out[1]  # [B, H, q, S]
        if probs.shape[2] != 1:  # the prefill: the prompt layout of layers >= K
            pr = self.patch.pruner
            ids_video = pr.last_keep_mask & (self.ids == self.video_id)
            self.video = ids_video.gather(1, pr.last_positions) & pr.last_slot_valid
            self.prev = None
            return
        S0 = self.video.shape[1]
        att = probs[:, :, 0].double().mean(1)[:, :S0] * self.video  # [B, S0]
        B = att.shape[0]
        if self.visible is None or self.prev is None:
            self.visible = ~self.video
        again = []
        for b in range(B):
            first = self.prev is None
            cos = None if first else torch.nn.functional.cosine_similarity(att[b], self.prev[b], dim=0)
            if first or not bool(cos >= self.threshold):
                idx = self.video[b].nonzero().flatten()
                k = math.floor(idx.numel() * self.keep)
                order = torch.argsort(att[b, idx], descending=True, stable=True)[:k]
                self.visible[b] = ~self.video[b]
                self.visible[b, idx[order]] = True
                again.append(True)
            else:
                again.append(False)
        self.reselected.append(again)
        self.prev = att

    def _hide(self, module, args, kwargs):
        hs = args[0] if args else kwargs["hidden_states"]
        if hs.shape[1] != 1 or self.visible is None:
            return None
        mask = kwargs.get("attention_mask")
        hidden = torch.zeros(hs.shape[0], mask.shape[-1], dtype=torch.bool)
        hidden[:, :self.visible.shape[1]] = ~self.visible
        kwargs = dict(kwargs)
        kwargs["attention_mask"] = mask.masked_fill(hidden[:, None, None, :], torch.finfo(mask.dtype).min)
        return args, kwargs


def _generate(model, inputs, steps):
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=steps, do_sample=False, output_logits=True,
                              return_dict_in_generate=True)


@pytest.mark.parametrize("threshold", [-1.0, 0.9, 1.0])
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl", "qwen3_vl", "llava_onevision", "llava_next_video"])
def test_compacted_decoding_equals_the_masked_full_cache(family, impl, threshold):
    K, keep, steps = 3, 0.3, 6
    model, inputs, video_id = build(family, impl, 2)
    twin, _, _ = build(family, "eager", 2)
    with vlmkern.apply(model, DyCoke(0.7, kv_layer=K, kv_keep=keep, kv_threshold=threshold)) as patch:
        out = _generate(model, inputs, steps)
        kv = patch.kv_pruner
        got_visible = kv.last_visible.clone()
    with vlmkern.apply(twin, DyCoke(0.7)) as tpatch:
        ref = MaskedReference(twin, tpatch, K, keep, threshold)
        ref.ids, ref.video_id = inputs["input_ids"], video_id
        want = _generate(twin, inputs, steps)
        ref.remove()
    assert torch.equal(got_visible, ref.visible)
    assert torch.equal(out.sequences, want.sequences)
    for s in range(steps):
        torch.testing.assert_close(out.logits[s], want.logits[s], atol=2e-5 * float(want.logits[s].abs().max()),
                                   rtol=0)
    # the selection rule was exercised: every step re-selects at threshold 1,
    # only the first at -1
    flags = [any(r) for r in ref.reselected]
    assert len(flags) == steps - 1 and flags[0]
    if threshold == 1.0:
        assert all(flags)
    if threshold == -1.0:
        assert not any(flags[1:])
    # layers >= K physically hold fewer entries than layers < K
    assert 0 < int(ref.video.sum(1).max())


def test_the_cache_of_layers_from_K_is_shorter_and_keep_one_is_stage_one():
    K = 2
    model, inputs = tiny_qwen_video("qwen2_5_vl", "sdpa", samples=RAGGED, num_layers=4, seed=3)
    with vlmkern.apply(model, DyCoke(0.7)) as patch:
        base = _generate(model, inputs, 4)
    with vlmkern.apply(model, DyCoke(0.7, kv_layer=K, kv_keep=1.0)):
        same = _generate(model, inputs, 4)
    assert torch.equal(same.sequences, base.sequences)
    for a, b in zip(same.logits, base.logits):
        torch.testing.assert_close(a, b, atol=2e-5 * float(b.abs().max()), rtol=0)
    with vlmkern.apply(model, DyCoke(0.7, kv_layer=K, kv_keep=0.25)) as patch:
        with torch.no_grad():
            pre = model(**inputs, use_cache=True)
            nxt = pre.logits[:, -1:].argmax(-1)
            model(input_ids=nxt, past_key_values=pre.past_key_values, use_cache=True)
        cache = pre.past_key_values
        full, short = cache.get_seq_length(K - 1), cache.get_seq_length(K)
        rec = patch.kv_pruner.records[cache]
        prefix = patch.pruner.kept[cache].prefix_mask
        text = (prefix & ~rec.video).sum(1)
        kept = [math.floor(int(n) * 0.25) for n in rec.video.sum(1)]
        # layers >= K: each sample's text and kept video entries (right-aligned to
        # the longest), then the decoded token; layers < K: the whole prompt + 1
        assert full == prefix.shape[1] + 1
        assert short == max(int(t) + k for t, k in zip(text, kept)) + 1 < full


def test_bad_arguments_name_what_is_wrong():
    model, _ = tiny_qwen_video("qwen2_5_vl", "sdpa", num_layers=4)
    for bad, match in ((dict(kv_layer=0), "kv_layer must be None"), (dict(kv_layer=True), "kv_layer must be None"),
                       (dict(kv_layer=3, kv_keep=0.0), r"kv_keep must be in \(0, 1\]"),
                       (dict(kv_layer=3, kv_threshold=2.0), r"kv_threshold must be a cosine in \[-1, 1\]")):
        with pytest.raises(ValueError, match=match):
            DyCoke(0.7, **bad)
    with pytest.raises(ValueError, match=r"kv_layer must be in \[1, 3\] \(the model has 4 decoder layers\), got 4"):
        vlmkern.apply(model, DyCoke(0.7, kv_layer=4))
    assert "_vlmkern_patch" not in model.__dict__
    assert repr(DyCoke(0.5, kv_layer=3)) == "DyCoke(rho=0.5, kv_layer=3, kv_keep=0.3, kv_threshold=0.9)"

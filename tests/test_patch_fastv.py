"""vlmkern.apply(model, method="fastv") on tiny Llava and Qwen2.5-VL models.

The references here never touch vlmkern's patch: they read layer K-1's attention
probabilities from an eager twin of the model (same seed, same weights) with
``output_attentions=True``, pick the top-k with ``torch.sort``, and drive the
decoder layers by hand on the kept tokens at their original positions.
"""

from __future__ import annotations

import pytest
import torch

import vlmkern
from models import LLAVA_IMAGE, QWEN_IMAGE, sample, text_only, tiny_llava, tiny_qwen2_5_vl

BUILDERS = {"llava": (tiny_llava, LLAVA_IMAGE), "qwen2_5_vl": (tiny_qwen2_5_vl, QWEN_IMAGE)}
FAMILIES = list(BUILDERS)
IMPLS = ["eager", "sdpa"]
K = 3
STEPS = 20


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The models are tiny: a second intra-op thread only adds synchronisation
    (10 ms per matmul on a loaded 2-core machine instead of 0.04 ms)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def build(family, impl, **kw):
    return BUILDERS[family][0](impl, **kw)


def greedy(model, inputs, steps=STEPS):
    """(tokens [B, steps], logits [B, steps, V]) of greedy generation with a cache."""
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
    L = inputs["input_ids"].shape[1]
    return out.sequences[:, L:], torch.stack(out.logits, dim=1), out.past_key_values


# -- the independent reference ------------------------------------------------------

class Reference:
    """FastV computed by hand on the eager twin of a one-sample model."""

    def __init__(self, family, inputs, keep_ratio):
        self.model, _ = build(family, "eager")
        self.family = family
        self.lm = self.model.model.language_model
        image = inputs["input_ids"][0] == BUILDERS[family][1]
        captured = {}
        hook = self.lm.register_forward_pre_hook(
            lambda m, a, kw: captured.update(embeds=kw["inputs_embeds"]), with_kwargs=True)
        with torch.no_grad():
            out = self.model(**inputs, output_attentions=True)
        hook.remove()
        self.embeds = captured["embeds"]  # [1, L, D] after the image features are merged
        probs = out.attentions[K - 1][0, :, -1, :].double().mean(0)  # head mean of the last row
        self.scores = torch.where(image, probs, torch.nan)
        n = int(image.sum())
        keep = max(1, round(n * keep_ratio))
        img_pos = image.nonzero().flatten()
        order = torch.sort(probs[img_pos], descending=True, stable=True).indices[:keep]
        self.kept_image = img_pos[order].sort().values
        self.keep = (~image).clone()
        self.keep[self.kept_image] = True
        self.L = image.numel()
        if family == "qwen2_5_vl":
            pos, _ = self.model.model.get_rope_index(
                inputs["input_ids"], inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"],
                attention_mask=inputs["attention_mask"])
            self.positions = pos  # [3, 1, L]
        else:
            self.positions = torch.arange(self.L).view(1, -1)

    def _pos(self, n_new):
        """Positions of the prompt plus n_new generated tokens (the unpruned numbering)."""
        last = self.positions.max()
        new = torch.arange(1, n_new + 1) + last
        if self.family == "qwen2_5_vl":
            return torch.cat([self.positions, new.view(1, 1, -1).expand(3, 1, -1)], dim=-1)
        return torch.cat([self.positions, new.view(1, -1)], dim=-1)

    def _layers(self, hs, pos, layers):
        L = hs.shape[1]
        mask = torch.full((L, L), torch.finfo(hs.dtype).min).triu(1).view(1, 1, L, L)
        cos_sin = self.lm.rotary_emb(hs, pos)
        for layer in layers:
            hs = layer(hs, attention_mask=mask, position_embeddings=cos_sin, position_ids=None)
        return hs

    def logits(self, generated=()):
        """Logits over the kept sequence, re-running everything without a cache:
        layers < K on all tokens, layers >= K on the text, the kept image tokens
        and the generated tokens."""
        gen = torch.tensor([list(generated)], dtype=torch.long)
        hs = torch.cat([self.embeds, self.lm.embed_tokens(gen)], dim=1)
        pos = self._pos(len(generated))
        with torch.no_grad():
            hs = self._layers(hs, pos, self.lm.layers[:K])
            keep = torch.cat([self.keep, torch.ones(len(generated), dtype=torch.bool)])
            hs = self._layers(hs[:, keep], pos[..., keep], self.lm.layers[K:])
            return self.model.lm_head(self.lm.norm(hs))


# -- 1. keep_ratio=1.0 is the unpatched model -------------------------------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_keep_all_equals_unpatched(family, impl):
    model, inputs = build(family, impl)
    with torch.no_grad():
        ref_prefill = model(**inputs).logits
    ref_tokens, ref_logits, _ = greedy(model, inputs)
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=1.0)
    with torch.no_grad():
        prefill = model(**inputs).logits
    tokens, logits, _ = greedy(model, inputs)
    patch.revert()
    torch.testing.assert_close(prefill, ref_prefill, atol=1e-5, rtol=0)
    assert torch.equal(tokens, ref_tokens)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)


# -- 2. prefill with keep_ratio=0.25 against the hand-driven reference ------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_matches_reference(family, impl):
    model, inputs = build(family, impl)
    ref = Reference(family, inputs, keep_ratio=0.25)
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    with torch.no_grad():
        logits = model(**inputs).logits
    keep_mask, scores = patch.pruner.last_keep_mask, patch.pruner.last_scores
    patch.revert()
    torch.testing.assert_close(scores[0].double(), ref.scores, atol=1e-6, rtol=1e-5, equal_nan=True)
    assert int(keep_mask[0].sum()) == int(ref.keep.sum()) == ref.L - 16 + 4  # 16 image tokens -> 4
    assert torch.equal(keep_mask[0], ref.keep)
    assert logits.shape[1] == int(ref.keep.sum())
    torch.testing.assert_close(logits, ref.logits(), atol=1e-4, rtol=1e-5)


# -- 3. cached greedy decoding against a cache-free reference decode --------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_decode_matches_cache_free_reference(family, impl):
    model, inputs = build(family, impl)
    ref = Reference(family, inputs, keep_ratio=0.25)
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    tokens, logits, cache = greedy(model, inputs)
    patch.revert()
    generated = []
    for step in range(STEPS):
        step_logits = ref.logits(generated)[:, -1]
        torch.testing.assert_close(logits[:, step], step_logits, atol=1e-4, rtol=1e-5)
        generated.append(int(step_logits.argmax()))
    assert tokens[0].tolist() == generated
    # layers < K cache every token; layers >= K only the kept ones
    L, L_kept = ref.L, int(ref.keep.sum())
    n_cached = STEPS - 1  # the last generated token is never fed back
    for i, layer in enumerate(cache.layers):
        expected = (L if i < K else L_kept) + n_cached
        assert layer.keys.shape[-2] == expected, (i, layer.keys.shape)


# -- 4. batches with left padding: each sample gets what it gets alone ------------------

@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family,kw", [
    ("llava", {}),
    ("qwen2_5_vl", {}),
    ("qwen2_5_vl", {"grids": [(1, 8, 8), (1, 4, 6)]}),  # 16 and 6 image tokens: ragged counts
    ("qwen2_5_vl", {"grids": [None, (1, 6, 6)]}),  # a sample without image beside one with 9
])
def test_batch_left_padding(family, kw, impl):
    prompts = ((4, 6), (1, 2))
    model, batch = build(family, impl, prompts=prompts, **kw)
    assert (batch["attention_mask"] == 0).any()  # really padded
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    tokens, logits, _ = greedy(model, batch)
    batch_keep, batch_scores = patch.pruner.last_keep_mask, patch.pruner.last_scores
    L = batch["input_ids"].shape[1]
    for b in range(len(prompts)):
        alone = sample(batch, b)
        t1, l1, _ = greedy(model, alone)
        has_image = bool((alone["input_ids"] == BUILDERS[family][1]).any())
        keep1 = patch.pruner.last_keep_mask[0] if has_image else torch.ones_like(alone["input_ids"][0]).bool()
        assert torch.equal(batch_keep[b, L - keep1.numel():], keep1)
        if has_image:  # padding keys get no probability mass
            torch.testing.assert_close(batch_scores[b, L - keep1.numel():], patch.pruner.last_scores[0],
                                       atol=1e-6, rtol=1e-5, equal_nan=True)
        assert torch.equal(tokens[b], t1[0])
        torch.testing.assert_close(logits[b], l1[0], atol=1e-4, rtol=1e-5)
    image = BUILDERS[family][1]
    n_img = (batch["input_ids"] == image).sum(1)
    expected = [max(1, round(int(n) * 0.25)) if n else 0 for n in n_img]
    kept_img = (batch_keep & (batch["input_ids"] == image)).sum(1).tolist()
    assert kept_img == expected
    patch.revert()


# -- decoding by hand, outside generate ----------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_manual_decode_loop(family):
    """A plain forward loop over the returned cache, without attention_mask or
    position_ids: the model derives positions from the cache length (layer 0, which
    holds every token), so they match generate's."""
    model, inputs = build(family, "sdpa")
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    tokens, logits, _ = greedy(model, inputs, steps=6)
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
        cache, step_logits = out.past_key_values, [out.logits[:, -1]]
        for t in range(5):
            out = model(input_ids=tokens[:, t:t + 1], past_key_values=cache, use_cache=True)
            step_logits.append(out.logits[:, -1])
        # without a cache every forward is a prefill that prunes again (original FastV behaviour)
        no_cache = model.generate(**inputs, max_new_tokens=3, do_sample=False, use_cache=False)
    patch.revert()
    torch.testing.assert_close(torch.stack(step_logits, 1), logits, atol=1e-5, rtol=1e-5)
    assert no_cache.shape[1] == inputs["input_ids"].shape[1] + 3


# -- 5. revert restores everything bit for bit ---------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_revert_bit_for_bit(family):
    model, inputs = build(family, "sdpa")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    text = repr(model)
    with torch.no_grad():
        before = model(**inputs).logits  # also lets transformers install its own hooks
    hooks = {name: (dict(m._forward_hooks), dict(m._forward_pre_hooks))
             for name, m in model.named_modules()}
    tokens_before, _, _ = greedy(model, inputs, steps=5)
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    assert "[vlmkern]" in repr(model) and "FastV" in repr(patch)
    with torch.no_grad():
        assert model(**inputs).logits.shape[1] < before.shape[1]
    greedy(model, inputs, steps=5)
    patch.revert()
    patch.revert()  # harmless
    assert "reverted" in repr(patch)
    assert repr(model) == text
    after_state = model.state_dict()
    assert after_state.keys() == state.keys()
    assert all(torch.equal(after_state[k], v) for k, v in state.items())
    for name, m in model.named_modules():
        assert (dict(m._forward_hooks), dict(m._forward_pre_hooks)) == hooks[name], name
        assert "extra_repr" not in m.__dict__
    assert "_vlmkern_patch" not in model.__dict__ and "generate" not in model.__dict__
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)
    assert torch.equal(greedy(model, inputs, steps=5)[0], tokens_before)
    vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.5).revert()  # can patch again


# -- pruned prefill outputs back at the prompt's positions -----------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_to_prompt_positions(family):
    """Logits [B, L', V] of a pruned prefill map back to [B, L, V]: kept tokens
    at their prompt positions (in order), NaN where a token was pruned, and the
    last position is the prompt's last token."""
    model, inputs = build(family, "sdpa", prompts=((3, 5), (1, 2)))
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    with pytest.raises(RuntimeError, match="no pruning prefill"):
        patch.to_prompt_positions(torch.zeros(2, 3, 4))
    with torch.no_grad():
        logits = model(**inputs).logits
    B, L = inputs["input_ids"].shape
    full = patch.to_prompt_positions(logits)
    keep = patch.pruner.last_keep_mask
    assert full.shape == (B, L, logits.shape[-1]) and logits.shape[1] < L
    assert torch.equal(~full.isnan().all(-1), keep)
    for b in range(B):
        kept = keep[b].nonzero().flatten()
        assert torch.equal(full[b, kept], logits[b, -len(kept):])  # right-aligned, in order
    assert torch.equal(full[:, -1], logits[:, -1])
    with pytest.raises(ValueError, match="x: expected"):
        patch.to_prompt_positions(logits[:, 1:])
    patch.revert()


# -- chunked prefill ------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_prefill_is_refused_and_the_patch_stays_usable(family):
    """generate(..., prefill_chunk_size=n) would prune the first chunk alone
    (scored from its own last token) and change the output silently: a patched
    model refuses it before any work, by argument or generation config; plain
    generate still prunes; after revert, chunked prefill works as before."""
    model, inputs = build(family, "sdpa")
    with torch.no_grad():
        chunked_before = model.generate(**inputs, max_new_tokens=4, do_sample=False, prefill_chunk_size=8)
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    with torch.no_grad():
        pruned = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        with pytest.raises(NotImplementedError, match=r"chunked prefill \(prefill_chunk_size=8\)"):
            model.generate(**inputs, max_new_tokens=4, do_sample=False, prefill_chunk_size=8)
        model.generation_config.prefill_chunk_size = 8
        try:
            with pytest.raises(NotImplementedError, match="prefill_chunk_size=8"):
                model.generate(**inputs, max_new_tokens=4, do_sample=False)
        finally:
            model.generation_config.prefill_chunk_size = None
        assert torch.equal(model.generate(**inputs, max_new_tokens=4, do_sample=False), pruned)
        assert int(patch.pruner.last_keep_mask.sum()) < inputs["input_ids"].shape[1]
    patch.revert()
    with torch.no_grad():
        again = model.generate(**inputs, max_new_tokens=4, do_sample=False, prefill_chunk_size=8)
    assert torch.equal(again, chunked_before)


# -- prompts without images --------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_no_image_prompt_runs_unpruned(family):
    model, inputs = build(family, "sdpa")
    inputs = text_only(inputs, BUILDERS[family][1])
    with torch.no_grad():
        ref = model(**inputs).logits
    ref_tokens, ref_logits, _ = greedy(model, inputs, steps=5)
    patch = vlmkern.apply(model, "fastv", layer=K, keep_ratio=0.25)
    with torch.no_grad():
        out = model(**inputs).logits
    tokens, logits, _ = greedy(model, inputs, steps=5)
    assert patch.pruner.last_keep_mask is None
    patch.revert()
    assert torch.equal(out, ref)
    assert torch.equal(tokens, ref_tokens)
    assert torch.equal(logits, ref_logits)


# -- errors ------------------------------------------------------------------------

def test_unsupported_model_lists_families():
    from transformers import LlamaConfig, LlamaForCausalLM
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2))
    with pytest.raises(ValueError, match="llava.*qwen2_5_vl"):
        vlmkern.apply(model, "fastv")
    assert set(vlmkern.SUPPORTED_FAMILIES) == {"llava", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_onevision",
                                               "llava_next_video"}


@pytest.fixture(scope="module")
def llava_model():
    return tiny_llava("sdpa")


@pytest.mark.parametrize("ratio", [1.5, 0, 0.0, -0.25, float("nan")])
def test_bad_keep_ratio(llava_model, ratio):
    model, _ = llava_model
    with pytest.raises(ValueError, match=r"keep_ratio must be in \(0, 1\], got"):
        vlmkern.apply(model, "fastv", keep_ratio=ratio)
    assert "_vlmkern_patch" not in model.__dict__


def test_bad_keep_ratio_message(llava_model):
    with pytest.raises(ValueError, match=r"^keep_ratio must be in \(0, 1\], got 1.5$"):
        vlmkern.apply(llava_model[0], "fastv", keep_ratio=1.5)


@pytest.mark.parametrize("layer", [0, -1, 6, 7, 2.5])
def test_bad_layer(llava_model, layer):
    model, _ = llava_model
    with pytest.raises(ValueError, match="layer must be"):
        vlmkern.apply(model, "fastv", layer=layer)
    assert "_vlmkern_patch" not in model.__dict__


def test_layer_zero_message(llava_model):
    with pytest.raises(ValueError, match="layer 0 has no layer before it"):
        vlmkern.apply(llava_model[0], "fastv", layer=0)


def test_unknown_method_and_double_patch(llava_model):
    model, _ = llava_model
    with pytest.raises(ValueError, match="method must be one of"):
        vlmkern.apply(model, "nope")
    patch = vlmkern.apply(model, "fastv", layer=5)  # the last valid layer
    with pytest.raises(RuntimeError, match="already patched"):
        vlmkern.apply(model, "fastv")
    patch.revert()


def test_training_mode_raises(llava_model):
    model, inputs = llava_model
    patch = vlmkern.apply(model, "fastv")
    model.train()
    try:
        with pytest.raises(RuntimeError, match="inference only"):
            model(**inputs)
    finally:
        model.eval()
        patch.revert()


def test_right_padding_raises(llava_model):
    model, inputs = llava_model
    inputs = dict(inputs)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], torch.zeros(1, 2, dtype=torch.long)], 1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.zeros(1, 2, dtype=torch.long)], 1)
    with vlmkern.apply(model, "fastv"), pytest.raises(ValueError, match="left padding"):
        with torch.no_grad():
            model(**inputs)


# -- the method on its own ------------------------------------------------------------

def test_fastv_keep_counts():
    from vlmkern.methods import FastV
    n = torch.tensor([0, 1, 2, 5, 6, 16, 576])
    # max(1, round(N * r)), round half to even like Python's; 0 without image tokens
    assert FastV(keep_ratio=0.25).keep_counts(n).tolist() == [0, 1, 1, 1, 2, 4, 144]
    assert FastV(keep_ratio=1.0).keep_counts(n).tolist() == n.tolist()
    assert [max(1, round(int(v) * 0.3)) if v else 0 for v in n] == FastV(keep_ratio=0.3).keep_counts(n).tolist()


def test_fastv_score_and_select_match_reference():
    from vlmkern.methods import FastV
    from vlmkern.reference import attention_mass
    B, Hq, Hkv, L, D = 3, 4, 2, 20, 8
    q, k = torch.randn(B, Hq, 1, D), torch.randn(B, Hkv, L, D)
    image = torch.zeros(B, L, dtype=torch.bool)
    image[0, 3:15] = True          # 12 image tokens
    image[1, 8:13] = True          # 5, at another offset
    pad = torch.ones(B, L, dtype=torch.bool)
    pad[1, :4] = False             # left padding
    # sample 2: no image at all
    fastv = FastV(layer=2, keep_ratio=0.25)
    scores = fastv.score(q, k, image, scale=0.3, key_padding_mask=pad)
    expected = attention_mass(q, k, causal=True, scale=0.3, key_padding_mask=pad)
    torch.testing.assert_close(scores[image], expected[image], atol=1e-6, rtol=1e-5)
    assert scores[~image].isnan().all()
    kept = fastv.select(scores, image)
    assert kept.sum(1).tolist() == [3, 1, 0] and not (kept & ~image).any()
    for b in range(2):
        pos = image[b].nonzero().flatten()
        top = pos[torch.sort(expected[b, pos], descending=True, stable=True).indices[:int(kept[b].sum())]]
        assert sorted(top.tolist()) == kept[b].nonzero().flatten().tolist()


def test_fastv_rejects_layer_zero_and_bad_ratio():
    from vlmkern.methods import FastV, get_method
    with pytest.raises(ValueError, match="layer must be >= 1"):
        FastV(layer=0)
    with pytest.raises(ValueError, match=r"keep_ratio must be in \(0, 1\], got 2"):
        get_method("fastv", keep_ratio=2)

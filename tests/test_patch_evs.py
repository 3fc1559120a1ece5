"""vlmkern.apply(model, method="evs" | "dycoke") on tiny Qwen2-VL and Qwen2.5-VL
video models (the generate test covers VidCom2 too; tests/test_patch_vidcom2.py
reuses ``Reference``).

The reference never touches vlmkern: it encodes the videos with the unpatched
model, computes the method's definition in float64 (EVS: 1 - cos to the
previous frame, frame 0 first, a stable descending sort, ``max(N, floor(T N (1
- rate)))`` kept; DyCoke stage 1: odd frames against the frame before, then
frame 4i+2 against frame 4i, each keeping its ``ceil((1 - rho) N)`` least
similar tokens), and runs the unpatched language model on the surviving
embeddings at their original M-RoPE positions.
"""

from __future__ import annotations

import math

import pytest
import torch

import vlmkern
from vlmkern.methods import EVS, DyCoke, VidCom2
from vlmkern.methods.dycoke import dycoke_anchors
from models import QWEN_IMAGE, QWEN_VIDEO, tiny_llava, tiny_qwen_video, video_sample

FAMILIES = ["qwen2_vl", "qwen2_5_vl"]
IMPLS = ["eager", "sdpa"]
RAGGED = ((3, (4, 4, 4), 5), (1, (6, 4, 6), 2))  # 16 and 36 video tokens, different lengths


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def evs_keep_eager(feats: torch.Tensor, rate: float) -> torch.Tensor:
    """EVS's definition for one video ``[T, N, D]``, straightforwardly: bool ``[T * N]``."""
    T, N, _ = feats.shape
    f = feats.double()
    cos = (f[1:] * f[:-1]).sum(-1) / ((f[1:] ** 2).sum(-1) * (f[:-1] ** 2).sum(-1)).sqrt().clamp(min=1e-8)
    dis = torch.cat([torch.full((N,), math.inf, dtype=torch.float64), (1 - cos).flatten()])
    keep_n = max(N, math.floor(T * N * (1 - rate)))
    order = torch.argsort(dis, descending=True, stable=True)[:keep_n]
    mask = torch.zeros(T * N, dtype=torch.bool)
    mask[order] = True
    return mask


def dycoke_keep_eager(feats: torch.Tensor, rho: float) -> torch.Tensor:
    """DyCoke stage 1 for one video ``[T, N, D]``, as its released code loops:
    bool ``[T * N]``."""
    T, N, _ = feats.shape
    f = feats.double()
    k = math.ceil((1 - rho) * N)
    keep = torch.ones(T, N, dtype=torch.bool)

    def least_similar(a, b):
        cos = (f[a] * f[b]).sum(-1) / ((f[a] ** 2).sum(-1) * (f[b] ** 2).sum(-1)).sqrt().clamp(min=1e-8)
        order = torch.argsort(cos, stable=True)[:k]  # ascending: least similar first, ties by index
        m = torch.zeros(N, dtype=torch.bool)
        m[order] = True
        return m

    for i in range(0, T - 1, 2):  # pairs
        keep[i + 1] = least_similar(i + 1, i)
    for i in range(0, T - 4, 4):  # windows of four, against the window's first frame
        keep[i + 2] = least_similar(i + 2, i)
    return keep.flatten()


KEEP_EAGER = {"evs": lambda f, r: evs_keep_eager(f, r), "dycoke": lambda f, r: dycoke_keep_eager(f, r)}
OPTION = {"evs": "rate", "dycoke": "rho"}


class Reference:
    """EVS (or ``method``: a name in ``KEEP_EAGER``, or a function ``(features [T,
    N, D], rate) -> bool [T * N]``) on one unpadded sample, by hand on the
    unpatched model."""

    def __init__(self, model, inputs, rate, method="evs"):
        mm = model.model
        ids = inputs["input_ids"]
        with torch.no_grad():
            emb = mm.get_input_embeddings()(ids)
            grid = inputs["video_grid_thw"]
            vfeat = torch.cat(mm.get_video_features(inputs["pixel_values_videos"], grid,
                                                    return_dict=True).pooler_output)
            emb[ids == QWEN_VIDEO] = vfeat.to(emb.dtype)
            if "pixel_values" in inputs:
                ifeat = torch.cat(mm.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"],
                                                        return_dict=True).pooler_output)
                emb[ids == QWEN_IMAGE] = ifeat.to(emb.dtype)
        T, h, w = grid[0].tolist()
        N = (h // 2) * (w // 2)
        video = ids[0] == QWEN_VIDEO
        self.keep = ~video
        keep_eager = method if callable(method) else KEEP_EAGER[method]
        self.keep[video] = keep_eager(vfeat.view(T, N, -1), rate)
        pos, _ = mm.get_rope_index(ids, inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
                                   video_grid_thw=grid, attention_mask=inputs["attention_mask"])
        kept = self.keep.nonzero().flatten()
        with torch.no_grad():
            hs = mm.language_model(inputs_embeds=emb[:, kept], position_ids=pos[:, :, kept],
                                   attention_mask=torch.ones(1, kept.numel(), dtype=torch.long)).last_hidden_state
            self.logits = model.lm_head(hs)  # [1, L', V]


def _close(a, b, tol=2e-5):
    torch.testing.assert_close(a, b, atol=tol * max(1.0, float(b.abs().max())), rtol=0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_rate_zero_is_a_no_op_and_revert_is_exact(family, impl):
    model, inputs = tiny_qwen_video(family, impl, samples=RAGGED, image_first=True)
    with torch.no_grad():
        before = model(**inputs).logits
    with vlmkern.apply(model, "evs", rate=0.0) as patch:
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, before)
        assert patch.pruner.last_keep_mask.all()
    with vlmkern.apply(model, "evs", rate=0.6):
        with torch.no_grad():
            assert model(**inputs).logits.shape[1] < before.shape[1]
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)  # reverted: exact


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rate", [0.5, 0.75, 0.9])
def test_matches_the_definition(family, impl, rate):
    model, inputs = tiny_qwen_video(family, impl, samples=((4, (6, 4, 6), 3),), seed=3)
    ref = Reference(model, inputs, rate)
    with vlmkern.apply(model, "evs", rate=rate) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert torch.equal(keep, ref.keep)
    T, h, w = inputs["video_grid_thw"][0].tolist()
    assert int((~keep).sum()) == T * h * w // 4 - EVS(rate).retained_tokens(T, h // 2, w // 2)
    _close(got, ref.logits)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("rho", [0.0, 0.5, 0.7])
@pytest.mark.parametrize("frames", [5, 9, 10])
def test_dycoke_matches_the_definition(family, rho, frames):
    model, inputs = tiny_qwen_video(family, "sdpa", samples=((4, (frames, 4, 6), 3),), seed=frames)
    ref = Reference(model, inputs, rho, method="dycoke")
    with vlmkern.apply(model, "dycoke", rho=rho) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert torch.equal(keep, ref.keep)
    assert int(keep.sum()) == int((inputs["input_ids"][0] != QWEN_VIDEO).sum()) + \
        DyCoke(rho).retained_tokens(frames, 2, 3)
    _close(got, ref.logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_mixed_image_and_video_prompts(family):
    model, inputs = tiny_qwen_video(family, "sdpa", samples=((4, (6, 4, 6), 3),), seed=5, image_first=True)
    ref = Reference(model, inputs, 0.75)
    with vlmkern.apply(model, "evs", rate=0.75) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert keep[inputs["input_ids"][0] == QWEN_IMAGE].all()  # images are not EVS's business
    assert torch.equal(keep, ref.keep)
    _close(got, ref.logits)


@pytest.mark.parametrize("method", [EVS(rate=0.75), DyCoke(rho=0.7), VidCom2(keep_ratio=0.25)],
                         ids=["evs", "dycoke", "vidcom2"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_generate_with_cache_equals_no_cache_and_ragged_batch_equals_samples(family, impl, method):
    steps = 6
    model, inputs = tiny_qwen_video(family, impl, samples=RAGGED, image_first=True, seed=1)
    L = inputs["input_ids"].shape[1]
    with vlmkern.apply(model, method) as patch:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        # KV cache == recomputing the whole (pruned) prompt at every step
        for s in range(steps):
            f = dict(inputs)
            f["input_ids"] = out.sequences[:, :L + s]
            f["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones(2, s, dtype=torch.long)], 1)
            f["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"],
                                                torch.zeros(2, s, dtype=torch.int32)], 1)
            with torch.no_grad():
                full = model(**f, use_cache=False).logits[:, -1]
            _close(out.logits[s], full)
        # each sample alone gives the same tokens and logits
        for b in range(2):
            one = video_sample(inputs, b)
            with torch.no_grad():
                alone = model.generate(**one, max_new_tokens=steps, do_sample=False, output_logits=True,
                                       return_dict_in_generate=True)
            assert torch.equal(alone.sequences[0, -steps:], out.sequences[b, -steps:])
            _close(torch.stack(alone.logits)[:, 0], torch.stack(out.logits)[:, b])
        assert patch.active


@pytest.mark.parametrize("family", FAMILIES)
def test_decode_step_without_mask_or_positions_keeps_the_unpruned_numbering(family):
    """A hand-driven decode step with only input_ids and the cache: the patch
    supplies the positions of the unpruned sequence (the model would number the
    step from the cache length, which is the kept length)."""
    # Text after the video longer than its temporal extent (Qwen2.5-VL spaces
    # frames by tokens_per_second = 4 positions): then the
    # unpatched model's decode rule (rope_deltas) agrees with its full-sequence
    # positions, which the check below relies on (asserted first).
    model, inputs = tiny_qwen_video(family, "sdpa", samples=((2, (4, 4, 4), 16),), seed=2)

    def step_and_full():
        with torch.no_grad():
            pre = model(**{k: v for k, v in inputs.items() if k != "attention_mask"}, use_cache=True)
            nxt = pre.logits[:, -1:].argmax(-1)
            step = model(input_ids=nxt, past_key_values=pre.past_key_values, use_cache=True).logits[:, -1]
            f = dict(inputs)
            f["input_ids"] = torch.cat([inputs["input_ids"], nxt], 1)
            f["attention_mask"] = torch.ones_like(f["input_ids"])
            f["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"],
                                                torch.zeros_like(nxt, dtype=torch.int32)], 1)
            return step, model(**f, use_cache=False).logits[:, -1]

    _close(*step_and_full())  # the unpatched model is consistent here
    with vlmkern.apply(model, "evs", rate=0.75) as patch:
        step, full = step_and_full()
        assert not patch.pruner.last_keep_mask.all()
    _close(step, full)


def test_identical_frames_keep_frame_zero_then_the_earliest_tokens():
    model, inputs = tiny_qwen_video("qwen2_5_vl", "sdpa", samples=((2, (6, 4, 4), 2),), repeat_frames=True)
    with vlmkern.apply(model, "evs", rate=0.5) as patch:
        with torch.no_grad():
            model(**inputs)
        keep = patch.pruner.last_keep_mask[0][inputs["input_ids"][0] == QWEN_VIDEO]
    # 6 frames x 4 tokens, 12 kept: frame 0 (maximum score), then ties toward the lower index
    assert keep.tolist() == [True] * 12 + [False] * 12


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_select_equals_the_eager_definition_with_ties(dtype):
    g = torch.Generator().manual_seed(0)
    for rate in (0.0, 0.3, 0.5, 0.75, 0.9, 0.99):
        for T, N, D in ((1, 5, 8), (2, 3, 16), (7, 9, 33), (16, 49, 64)):
            x = torch.randn(3, T, N, D, generator=g).to(dtype)
            x[1] = x[1, :1].expand(T, N, D)  # a video whose frames are all identical
            if T > 2:  # exact ties: tokens repeating their previous frame, scaled by powers of two
                x[2, 2, ::2] = x[2, 1, ::2] * 2
                x[2, T - 1, 1::3] = x[2, T - 2, 1::3]
            got = EVS(rate).select(x)
            for v in range(3):
                want = evs_keep_eager(x[v].float(), rate)
                assert torch.equal(got[v], want), (rate, T, N, D, v)
                assert int(got[v].sum()) == EVS(rate).retained_tokens(T, 1, N)


def test_retained_tokens_from_shapes():
    evs = EVS(rate=0.75)
    assert evs.retained_tokens(32, 14, 14) == max(196, math.floor(32 * 196 * 0.25)) == 1568
    assert evs.retained_tokens(1, 14, 14) == 196  # frame 0 is always kept
    assert EVS(0.0).retained_tokens(8, 3, 5) == 120
    with pytest.raises(ValueError, match="T must be a positive int"):
        evs.retained_tokens(0, 14, 14)


def test_bad_arguments_name_what_is_wrong():
    model, inputs = tiny_qwen_video("qwen2_5_vl", "sdpa")
    for rate in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
            vlmkern.apply(model, "evs", rate=rate)
    with pytest.raises(ValueError, match="rate must be a number"):
        vlmkern.apply(model, "evs", rate="0.5")
    with pytest.raises(ValueError, match="evs: unknown option.*keep_ratio.*accepts rate"):
        vlmkern.apply(model, "evs", keep_ratio=0.5)
    with pytest.raises(ValueError, match="pass options to the method object"):
        vlmkern.apply(model, EVS(0.5), rate=0.3)
    with pytest.raises(ValueError, match="positions='renumber': qwen2_5_vl numbers tokens with M-RoPE"):
        vlmkern.apply(model, "evs", positions="renumber")
    llava, _ = tiny_llava("sdpa")
    with pytest.raises(ValueError, match="evs acts on videos and llava has no video support.*qwen2_vl"):
        vlmkern.apply(llava, "evs")
    assert "_vlmkern_patch" not in model.__dict__ and "_vlmkern_patch" not in llava.__dict__


def test_one_frame_video_and_method_object_and_w4a8_compose():
    model, inputs = tiny_qwen_video("qwen2_5_vl", "sdpa", samples=((2, (1, 4, 4), 3),))
    with torch.no_grad():
        before = model(**inputs).logits
    with vlmkern.apply(model, EVS(rate=0.9)) as patch:  # one temporal patch: nothing to compare, all kept
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, before)
        assert patch.pruner.last_keep_mask.all()
    model, inputs = tiny_qwen_video("qwen2_5_vl", "sdpa", samples=RAGGED)
    with torch.no_grad():
        ref_tokens = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    with vlmkern.apply(model, "evs", rate=0.75, quant="w4a8", group_size=32) as patch:
        assert "W4A8Linear" in repr(model.model.language_model.layers[0].mlp.down_proj.__class__)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert out.shape == ref_tokens.shape
        assert int(patch.pruner.last_keep_mask.sum()) < inputs["input_ids"].numel()
    with torch.no_grad():
        assert torch.equal(model.generate(**inputs, max_new_tokens=3, do_sample=False), ref_tokens)


def test_dycoke_anchors_and_counts():
    assert dycoke_anchors(1) == [-1]
    assert dycoke_anchors(4) == [-1, 0, -1, 2]
    assert dycoke_anchors(9) == [-1, 0, 0, 2, -1, 4, 4, 6, -1]  # windows at 0 and 4 (4 < 9 - 4)
    assert DyCoke(0.7).frame_keep(196) == 59
    assert DyCoke(0.7).retained_tokens(32, 14, 14) == sum(
        196 if r < 0 else 59 for r in dycoke_anchors(32))
    for bad in (1.0, -0.2, "x"):
        with pytest.raises(ValueError, match=r"rho must be in \[0, 1\)"):
            DyCoke(bad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dycoke_select_equals_the_eager_definition_with_ties(dtype):
    g = torch.Generator().manual_seed(1)
    for rho in (0.0, 0.3, 0.7, 0.95):
        for T, N, D in ((1, 5, 8), (2, 3, 16), (6, 9, 33), (13, 49, 64)):
            x = torch.randn(2, T, N, D, generator=g).to(dtype)
            x[1] = x[1, :1].expand(T, N, D)  # identical frames: every compared token ties at 1
            got = DyCoke(rho).select(x)
            for v in range(2):
                assert torch.equal(got[v], dycoke_keep_eager(x[v].float(), rho)), (rho, T, N, D, v)


@pytest.mark.parametrize("family", FAMILIES)
def test_fastv_prunes_video_frames_too(family):
    """FastV on a video prompt: its scores over the video (and image) tokens are
    the eager twin's layer K-1 attention from the last token, head mean; the
    budget covers every visual token; generate starts from the pruned prefill."""
    K, r = 2, 0.25
    model, inputs = tiny_qwen_video(family, "sdpa", samples=((3, (4, 4, 4), 5),), image_first=True, seed=4)
    twin, _ = tiny_qwen_video(family, "eager", samples=((3, (4, 4, 4), 5),), image_first=True, seed=4)
    with torch.no_grad():
        probs = twin(**inputs, output_attentions=True).attentions[K - 1][0, :, -1].double().mean(0)
    visual = (inputs["input_ids"][0] == QWEN_VIDEO) | (inputs["input_ids"][0] == QWEN_IMAGE)
    n = int(visual.sum())
    with vlmkern.apply(model, "fastv", layer=K, keep_ratio=r) as patch:
        with torch.no_grad():
            model(**inputs)
        scores = patch.pruner.last_scores[0]
        keep = patch.pruner.last_keep_mask[0]
        torch.testing.assert_close(scores[visual].double(), probs[visual], atol=1e-6, rtol=1e-4)
        assert int((keep & visual).sum()) == max(1, round(n * r))
        want = torch.argsort(probs[visual], descending=True, stable=True)[:max(1, round(n * r))]
        assert torch.equal(keep[visual].nonzero().flatten(), want.sort().values)
        with torch.no_grad():
            last = model(**inputs).logits[:, -1]
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        # (without a cache FastV re-scores from each forward's own last token, so a
        # no-cache recomputation is not the reference here; test_patch_fastv.py
        # checks FastV's decoding against layers driven by hand)
        _close(out.logits[0], last)
        assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + 4

"""Video methods on the LLaVA video families (tiny LLaVA-OneVision and
LLaVA-NeXT-Video models): EVS, DyCoke stage 1, VidCom2 before the first decoder
layer, FastV inside it.

The reference never touches vlmkern: it encodes the video with the unpatched
model's ``get_video_features``, applies the method's definition (the eager
functions of test_patch_evs.py and test_patch_vidcom2.py) to the ``T x N``
frame tokens, always keeps OneVision's trailing ``image_newline``, and runs the
unpatched language model on the surviving embeddings, numbered 0, 1, ... (the
default on these families, ``positions="renumber"``) or at their original 1-D
positions (``positions="keep"``).
"""

from __future__ import annotations

import pytest
import torch

import vlmkern
from vlmkern.methods import EVS, DyCoke, PixelDedup, VidCom2
from models import LV_FRAME_TOKENS, LV_VIDEO, llava_video_sample, tiny_llava_video
from test_patch_evs import _close, dycoke_keep_eager, evs_keep_eager
from test_patch_vidcom2 import vidcom2_keep_eager

FAMILIES = ["llava_onevision", "llava_next_video"]
IMPLS = ["eager", "sdpa"]
TAIL = {"llava_onevision": 1, "llava_next_video": 0}  # trailing non-frame video tokens
RAGGED = ((3, 4, 5), (1, 4, 2), (2, None, 6))  # two videos behind different text, one text-only sample
METHODS = {"evs": (EVS(rate=0.75), lambda f: evs_keep_eager(f, 0.75)),
           "dycoke": (DyCoke(rho=0.7), lambda f: dycoke_keep_eager(f, 0.7)),
           "vidcom2": (VidCom2(keep_ratio=0.25), lambda f: vidcom2_keep_eager(f, 0.25))}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """generate's 1-D positions for a left-padded 2-D mask (padding at 1)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)


class Reference:
    """``keep_frames(features [T, N, D]) -> bool [T * N]`` applied by hand to one
    unpadded sample of the unpatched model."""

    def __init__(self, model, inputs, keep_frames, positions="renumber"):
        mm, cfg = model.model, model.config
        ids = inputs["input_ids"]
        pv = inputs["pixel_values_videos"]
        with torch.no_grad():
            emb = mm.get_input_embeddings()(ids)
            feats = mm.get_video_features(pv, vision_feature_layer=cfg.vision_feature_layer,
                                          vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                                          return_dict=True).pooler_output[0]
        video = ids[0] == LV_VIDEO
        T, N = pv.shape[1], LV_FRAME_TOKENS
        assert feats.shape[0] == int(video.sum()) == T * N + TAIL[cfg.model_type]
        emb[0, video] = feats.to(emb.dtype)
        idx = video.nonzero().flatten()
        self.keep = ~video
        self.keep[idx[:T * N]] = keep_frames(feats[:T * N].view(T, N, -1))
        self.keep[idx[T * N:]] = True  # OneVision's image_newline is not a frame token
        kept = self.keep.nonzero().flatten()
        with torch.no_grad():
            pos = kept[None] if positions == "keep" else torch.arange(kept.numel())[None]
            hs = mm.language_model(inputs_embeds=emb[:, kept], position_ids=pos,
                                   attention_mask=torch.ones(1, kept.numel(), dtype=torch.long)).last_hidden_state
            self.logits = model.lm_head(hs)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_keeping_everything_is_a_no_op_and_revert_is_exact(family, impl):
    model, inputs = tiny_llava_video(family, impl, samples=RAGGED)
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
        assert torch.equal(model(**inputs).logits, before)


@pytest.mark.parametrize("positions", [None, "keep", "renumber"])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("frames", [4, 7])
@pytest.mark.parametrize("family", FAMILIES)
def test_matches_the_definition(family, frames, method, positions):
    obj, keep_frames = METHODS[method]
    model, inputs = tiny_llava_video(family, "sdpa", samples=((4, frames, 3),), seed=frames)
    ref = Reference(model, inputs, keep_frames, positions or "renumber")
    with vlmkern.apply(model, obj, positions=positions) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert torch.equal(keep, ref.keep)
    video = inputs["input_ids"][0] == LV_VIDEO
    assert int((keep & video).sum()) == obj.retained_tokens(frames, 3, 3) + TAIL[family]
    assert not keep.all()
    _close(got, ref.logits)


@pytest.mark.parametrize("positions", ["keep", "renumber"])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_generate_with_cache_equals_no_cache_and_ragged_batch_equals_samples(family, impl, method, positions):
    steps = 5
    model, inputs = tiny_llava_video(family, impl, samples=RAGGED, seed=1)
    B, L = inputs["input_ids"].shape
    with vlmkern.apply(model, METHODS[method][0], positions=positions) as patch:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        assert not patch.pruner.last_keep_mask.all()
        # KV cache == recomputing the whole (pruned) prompt at every step, at
        # generate's positions
        for s in range(steps):
            f = dict(inputs)
            f["input_ids"] = out.sequences[:, :L + s]
            f["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones(B, s, dtype=torch.long)], 1)
            f["position_ids"] = _positions(f["attention_mask"])
            with torch.no_grad():
                full = model(**f, use_cache=False).logits[:, -1]
            _close(out.logits[s], full)
        # each sample alone gives the same tokens and logits
        for b in range(B):
            one = llava_video_sample(inputs, b)
            with torch.no_grad():
                alone = model.generate(**one, max_new_tokens=steps, do_sample=False, output_logits=True,
                                       return_dict_in_generate=True)
            assert torch.equal(alone.sequences[0, -steps:], out.sequences[b, -steps:])
            _close(torch.stack(alone.logits)[:, 0], torch.stack(out.logits)[:, b])


@pytest.mark.parametrize("positions", ["keep", "renumber"])
@pytest.mark.parametrize("family", FAMILIES)
def test_decode_step_without_mask_or_positions_is_numbered_as_without_a_cache(family, positions):
    """A hand-driven decode step with only input_ids and the cache is numbered
    as the same token in a forward without a cache (the model would number the
    step from the cache length, which is the kept length: the patch passes the
    unpruned sequence's positions, renumbered if the prompt was)."""
    model, inputs = tiny_llava_video(family, "sdpa", samples=((2, 4, 6),), seed=2)

    def step_and_full():
        with torch.no_grad():
            pre = model(input_ids=inputs["input_ids"], pixel_values_videos=inputs["pixel_values_videos"],
                        use_cache=True)
            nxt = pre.logits[:, -1:].argmax(-1)
            step = model(input_ids=nxt, past_key_values=pre.past_key_values, use_cache=True).logits[:, -1]
            full = model(input_ids=torch.cat([inputs["input_ids"], nxt], 1),
                         pixel_values_videos=inputs["pixel_values_videos"], use_cache=False).logits[:, -1]
            return step, full

    _close(*step_and_full())
    with vlmkern.apply(model, "evs", rate=0.75, positions=positions) as patch:
        step, full = step_and_full()
        assert not patch.pruner.last_keep_mask.all()
    _close(step, full)


@pytest.mark.parametrize("family", FAMILIES)
def test_fastv_prunes_video_frames_too(family):
    """FastV on these families' video prompts: its scores are the eager twin's
    layer K-1 attention from the last token (head mean) over every video
    placeholder, the newline included; generate starts from the pruned prefill."""
    K, r = 2, 0.25
    model, inputs = tiny_llava_video(family, "sdpa", samples=((3, 4, 5),), seed=4)
    twin, _ = tiny_llava_video(family, "eager", samples=((3, 4, 5),), seed=4)
    with torch.no_grad():
        probs = twin(**inputs, output_attentions=True).attentions[K - 1][0, :, -1].double().mean(0)
    video = inputs["input_ids"][0] == LV_VIDEO
    n = int(video.sum())
    with vlmkern.apply(model, "fastv", layer=K, keep_ratio=r) as patch:
        with torch.no_grad():
            last = model(**inputs).logits[:, -1]
        scores, keep = patch.pruner.last_scores[0], patch.pruner.last_keep_mask[0]
        torch.testing.assert_close(scores[video].double(), probs[video], atol=1e-6, rtol=1e-4)
        want = torch.argsort(probs[video], descending=True, stable=True)[:max(1, round(n * r))]
        assert torch.equal(keep[video].nonzero().flatten(), want.sort().values)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        _close(out.logits[0], last)


def test_bad_input_names_what_is_wrong():
    model, inputs = tiny_llava_video("llava_onevision", "sdpa")
    with pytest.raises(ValueError, match="positions must be 'keep', 'renumber' or None"):
        vlmkern.apply(model, "evs", positions="contiguous")
    with pytest.raises(ValueError, match="positions='renumber' applies to video methods that prune before"):
        vlmkern.apply(model, "fastv", positions="renumber")
    with pytest.raises(ValueError, match="pixel_dedup skips repeated temporal patch groups.*llava_onevision encodes its frames another way"):
        vlmkern.apply(model, [PixelDedup(0.0), EVS(0.5)])
    assert "_vlmkern_patch" not in model.__dict__
    # (the model itself refuses a placeholder count that does not match its
    # features; the pruner's own check names the video's shape)
    with vlmkern.apply(model, "evs", rate=0.5) as patch:
        ids = inputs["input_ids"].clone()
        ids[0, 3 + 4 * LV_FRAME_TOKENS] = 5  # the newline placeholder becomes text
        patch.pruner._grid = inputs["pixel_values_videos"]
        with pytest.raises(ValueError, match=r"video of 4 frames x 9 tokens has 36 placeholder tokens.*expected 36 \+ 1"):
            patch.pruner._video_spans(ids == LV_VIDEO)
        patch.pruner._grid = inputs["pixel_values_videos"]
        two = torch.cat([inputs["input_ids"], torch.full((1, 1), 7), inputs["input_ids"]], 1)
        with pytest.raises(ValueError, match="2 runs of video tokens but pixel_values_videos describes 1"):
            patch.pruner._video_spans(two == LV_VIDEO)


def test_identical_frames_keep_frame_zero_and_the_newline():
    model, inputs = tiny_llava_video("llava_onevision", "sdpa", samples=((2, 6, 2),), repeat_frames=True)
    with vlmkern.apply(model, "evs", rate=0.5) as patch:
        with torch.no_grad():
            model(**inputs)
        keep = patch.pruner.last_keep_mask[0][inputs["input_ids"][0] == LV_VIDEO]
    # 6 frames x 9 tokens, 27 kept: frame 0 (maximum score), then ties toward the lower index
    assert keep.tolist() == [True] * 27 + [False] * 27 + [True]

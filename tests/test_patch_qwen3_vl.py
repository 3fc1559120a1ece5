"""Video methods on a tiny Qwen3-VL: every frame is its own placeholder run
(timestamp and vision start/end tokens between frames), the text model adds
deepstack visual features after its first layers, and attention normalises q
and k per head before RoPE.

The reference never touches vlmkern: it encodes the prompt's image and video
with the unpatched model, applies the method's definition (the eager functions
of test_patch_evs.py and test_patch_vidcom2.py) to the video's ``T x N`` tokens
(frame-major across the runs), and runs the unpatched language model on the
surviving embeddings at their original M-RoPE positions, with the deepstack
rows and visual mask of the surviving tokens.
"""

from __future__ import annotations

import pytest
import torch

import vlmkern
from vlmkern.methods import EVS, DyCoke, PixelDedup, VidCom2
from models import QWEN_IMAGE, QWEN_VIDEO, tiny_qwen3_video, video_sample
from test_patch_evs import _close, dycoke_keep_eager, evs_keep_eager
from test_patch_vidcom2 import vidcom2_keep_eager

IMPLS = ["eager", "sdpa"]
RAGGED = ((3, (4, 4, 4), 5), (1, (6, 4, 6), 2))  # different frame counts and frame sizes
METHODS = {"evs": (EVS(rate=0.75), lambda f: evs_keep_eager(f, 0.75)),
           "dycoke": (DyCoke(rho=0.7), lambda f: dycoke_keep_eager(f, 0.7)),
           "vidcom2": (VidCom2(keep_ratio=0.25), lambda f: vidcom2_keep_eager(f, 0.25))}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Reference:
    def __init__(self, model, inputs, keep_frames):
        mm = model.model
        ids = inputs["input_ids"]
        image, video = ids[0] == QWEN_IMAGE, ids[0] == QWEN_VIDEO
        visual = image | video
        with torch.no_grad():
            emb = mm.get_input_embeddings()(ids)
            grid = inputs["video_grid_thw"]
            vout = mm.get_video_features(inputs["pixel_values_videos"], grid, return_dict=True)
            vfeat = torch.cat(vout.pooler_output)
            emb[0, video] = vfeat
            deep = [torch.zeros(int(visual.sum()), vfeat.shape[-1]) for _ in vout.deepstack_features]
            for d, f in zip(deep, vout.deepstack_features):
                d[video[visual]] = torch.cat(f)
            if "pixel_values" in inputs:
                iout = mm.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)
                emb[0, image] = torch.cat(iout.pooler_output)
                for d, f in zip(deep, iout.deepstack_features):
                    d[image[visual]] = torch.cat(f)
        T, h, w = grid[0].tolist()
        N = (h // 2) * (w // 2)
        self.keep = ~video
        self.keep[video] = keep_frames(vfeat.view(T, N, -1))
        pos, _ = mm.get_rope_index(ids, inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
                                   video_grid_thw=grid, attention_mask=inputs["attention_mask"])
        kept = self.keep.nonzero().flatten()
        rows = self.keep[visual]
        with torch.no_grad():
            hs = mm.language_model(inputs_embeds=emb[:, kept], position_ids=pos[:, :, kept],
                                   attention_mask=torch.ones(1, kept.numel(), dtype=torch.long),
                                   visual_pos_masks=visual[kept][None],
                                   deepstack_visual_embeds=[d[rows] for d in deep]).last_hidden_state
            self.logits = model.lm_head(hs)


@pytest.mark.parametrize("impl", IMPLS)
def test_keeping_everything_is_a_no_op_and_revert_is_exact(impl):
    model, inputs = tiny_qwen3_video(impl, samples=RAGGED, image_first=True)
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


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("grid", [(4, 4, 4), (7, 4, 6)])
@pytest.mark.parametrize("image_first", [False, True])
def test_matches_the_definition(method, grid, image_first):
    obj, keep_frames = METHODS[method]
    model, inputs = tiny_qwen3_video("sdpa", samples=((4, grid, 3),), seed=grid[0], image_first=image_first)
    ref = Reference(model, inputs, keep_frames)
    with vlmkern.apply(model, obj) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert torch.equal(keep, ref.keep)
    T, h, w = grid
    assert int((~keep).sum()) == T * h * w // 4 - obj.retained_tokens(T, h // 2, w // 2)
    _close(got, ref.logits)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("impl", IMPLS)
def test_generate_with_cache_equals_no_cache_and_ragged_batch_equals_samples(impl, method):
    steps = 5
    model, inputs = tiny_qwen3_video(impl, samples=RAGGED, image_first=True, seed=1)
    B, L = inputs["input_ids"].shape
    with vlmkern.apply(model, METHODS[method][0]) as patch:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        assert not patch.pruner.last_keep_mask.all()
        for s in range(steps):
            f = dict(inputs)
            f["input_ids"] = out.sequences[:, :L + s]
            f["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones(B, s, dtype=torch.long)], 1)
            f["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"],
                                                torch.zeros(B, s, dtype=torch.int32)], 1)
            with torch.no_grad():
                full = model(**f, use_cache=False).logits[:, -1]
            _close(out.logits[s], full)
        for b in range(B):
            one = video_sample(inputs, b)
            with torch.no_grad():
                alone = model.generate(**one, max_new_tokens=steps, do_sample=False, output_logits=True,
                                       return_dict_in_generate=True)
            assert torch.equal(alone.sequences[0, -steps:], out.sequences[b, -steps:])
            _close(torch.stack(alone.logits)[:, 0], torch.stack(out.logits)[:, b])


@pytest.mark.parametrize("K", [1, 3])
def test_fastv_scores_are_the_normalised_attention_and_deepstack_follows(K):
    """FastV scores from layer K-1's last-query attention (q_norm/k_norm applied
    before RoPE, as the eager twin's attention shows); with K = 1 the pruned
    hidden states still receive deepstack features after layer 1, at the kept
    tokens only (checked against the reference with FastV's keep mask)."""
    r = 0.25
    samples = ((3, (4, 4, 4), 5),)
    model, inputs = tiny_qwen3_video("sdpa", samples=samples, image_first=True, seed=4)
    twin, _ = tiny_qwen3_video("eager", samples=samples, image_first=True, seed=4)
    with torch.no_grad():
        probs = twin(**inputs, output_attentions=True).attentions[K - 1][0, :, -1].double().mean(0)
    ids = inputs["input_ids"][0]
    visual = (ids == QWEN_VIDEO) | (ids == QWEN_IMAGE)
    with vlmkern.apply(model, "fastv", layer=K, keep_ratio=r) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        scores, keep = patch.pruner.last_scores[0], patch.pruner.last_keep_mask[0]
        torch.testing.assert_close(scores[visual].double(), probs[visual], atol=1e-6, rtol=1e-4)
        n = int(visual.sum())
        want = torch.argsort(probs[visual], descending=True, stable=True)[:max(1, round(n * r))]
        assert torch.equal(keep[visual].nonzero().flatten(), want.sort().values)
    # The same model driven by hand (sdpa, one unpadded sample: causal without a
    # mask): layers < K on every token, then the kept tokens at their original
    # positions, deepstack rows of the kept visual tokens after layers 0 and 1.
    lm = model.model.language_model
    seen = {}
    hook = lm.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
    hook.remove()
    hs, pos = seen["inputs_embeds"], seen["position_ids"]
    vmask, deep = seen["visual_pos_masks"], seen["deepstack_visual_embeds"]
    if pos.shape[0] == 4:
        pos = pos[1:]
    kept = keep.nonzero().flatten()
    with torch.no_grad():
        for i, layer in enumerate(lm.layers):
            if i == K:
                hs, pos = hs[:, kept], pos[:, :, kept]
                deep = [d[keep[vmask[0]]] for d in deep]
                vmask = vmask[:, kept]
            hs = layer(hs, attention_mask=None, position_embeddings=lm.rotary_emb(hs, pos))
            if i < len(deep):
                hs = lm._deepstack_process(hs, vmask, deep[i])
        want = model.lm_head(lm.norm(hs))
    _close(got, want)


def test_pixel_dedup_then_evs_equals_evs_on_exact_repeats():
    """Frames 1 and 2 repeat frame 0 exactly: pixel_dedup encodes 2 of 4 groups,
    and the composition keeps the same tokens and logits as EVS alone."""
    model, inputs = tiny_qwen3_video("sdpa", samples=((3, (4, 4, 4), 5),), image_first=True, seed=6)
    pv = inputs["pixel_values_videos"]
    pv[16:32] = pv[0:16]
    pv[32:48] = pv[0:16]
    with vlmkern.apply(model, EVS(0.5)) as patch:
        with torch.no_grad():
            alone = model(**inputs).logits
        keep = patch.pruner.last_keep_mask.clone()
    with vlmkern.apply(model, [PixelDedup(0.0), EVS(0.5)]) as patch:
        with torch.no_grad():
            both = model(**inputs).logits
        assert patch.dedup.last_encoded == 2 and patch.dedup.last_groups == 4
        assert torch.equal(patch.pruner.last_keep_mask, keep)
    torch.testing.assert_close(both, alone, atol=1e-5 * float(alone.abs().max()), rtol=0)


def test_identical_frames_keep_frame_zero_then_the_earliest_tokens():
    model, inputs = tiny_qwen3_video("sdpa", samples=((2, (6, 4, 4), 2),), repeat_frames=True)
    with vlmkern.apply(model, "evs", rate=0.5) as patch:
        with torch.no_grad():
            model(**inputs)
        keep = patch.pruner.last_keep_mask[0][inputs["input_ids"][0] == QWEN_VIDEO]
    assert keep.tolist() == [True] * 12 + [False] * 12

"""FastVID: its segmentation, selection and merge against the definition, and
vlmkern.apply(model, method="fastvid", ...) on the tiny video models (Qwen2-VL,
Qwen2.5-VL, Qwen3-VL, LLaVA-OneVision, LLaVA-NeXT-Video).

The definition is written here independently, per video, in float64 with plain
loops (``fastvid_eager``; the reading of the released code is in
``vlmkern.methods.fastvid``): frame means, cuts below ``tau`` and at the ``c -
1`` weakest transitions; per frame ``r = max(1, int(N R))`` kept, ``int(d r)``
of them salient (largest dot product with the frame mean); the segment's
context budget spread over its every-``p``-th anchor frames; anchors by
density-peak clustering (``vlmkern.reference.dpc_knn``, the fp64 reference of
the op); every non-salient token of the segment joins its most similar anchor
and the anchor becomes ``w u + (1 - w) mean(members)`` on unit vectors. The
model tests run the unpatched language model by hand on the surviving
embeddings, the merged ones replaced, at the right positions.
"""

from __future__ import annotations

import pytest
import torch

import vlmkern
from vlmkern.methods import FastVID
from vlmkern.reference import dpc_knn as dpc_knn_reference
from models import (LV_FRAME_TOKENS, LV_VIDEO, QWEN_IMAGE, QWEN_VIDEO, llava_video_sample, tiny_llava,
                    tiny_llava_video, tiny_qwen3_video, tiny_qwen_video, video_sample)
from test_patch_evs import _close

QWEN_FAMILIES = ["qwen2_vl", "qwen2_5_vl"]
LLAVA_FAMILIES = ["llava_onevision", "llava_next_video"]
IMPLS = ["eager", "sdpa"]
TAIL = {"llava_onevision": 1, "llava_next_video": 0}
# multi-frame segments (c = 2, a low tau) with anchor frames every 2nd frame,
# so that merging crosses frames; and the released defaults at a larger ratio
CONFIGS = {"segments": dict(retain_ratio=0.5, c=2, tau=0.0, p=2),
           "defaults": dict(retain_ratio=0.5)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- the definition --------------------------------------------------------------
def _norm(v: torch.Tensor) -> float:
    return max(float(v.dot(v)) ** 0.5, 1e-12)


def segments_eager(feats: torch.Tensor, c: int = 8, tau: float = 0.9) -> list[int]:
    """First frame of each segment of one video ``[T, N, D]``."""
    f = feats.double()
    T = f.shape[0]
    g = [f[t].mean(0) for t in range(T)]
    sims = [float(g[t].dot(g[t + 1])) / (_norm(g[t]) * _norm(g[t + 1])) for t in range(T - 1)]
    cuts = {t for t in range(T - 1) if sims[t] < tau}
    cuts |= set(sorted(range(T - 1), key=lambda t: (sims[t], t))[:c - 1])
    return [0] + [t + 1 for t in sorted(cuts)]


def fastvid_eager(feats: torch.Tensor, retain_ratio: float, c: int = 8, tau: float = 0.9, d: float = 0.4, p: int = 4,
                  k: int = 4, alpha: float = 0.6):
    """FastVID on one video ``[T, N, D]``: bool ``[T * N]`` and the fp64 values
    ``[T * N, D]`` (the kept tokens' new features; the others untouched)."""
    T, N, D = feats.shape
    f = feats.double()
    r = min(N, max(1, int(N * retain_ratio)))
    s = int(d * r)
    value = f.clone()
    if r == N:
        return torch.ones(T * N, dtype=torch.bool), value.reshape(T * N, D)
    keep = [[False] * N for _ in range(T)]
    sal = [[False] * N for _ in range(T)]

    def by_salience(t):
        g = f[t].mean(0)
        score = [float(f[t, i].dot(g)) for i in range(N)]
        return sorted(range(N), key=lambda i: (-score[i], i))

    def unit(v):
        return v / _norm(v)

    starts = segments_eager(f, c, tau)
    for a, b in zip(starts, starts[1:] + [T]):
        L = b - a
        anchors = [a + j * p for j in range((L + p - 1) // p)]
        ctx, n = r - s, N - s
        C, A = L * ctx, len(anchors)
        budget, extra = {}, {t: 0 for t in range(a, b)}
        if C <= A * n:
            for i, t in enumerate(anchors):
                budget[t] = C // A + (1 if i < C % A else 0)
        else:  # the anchor frames are full: the rest become salient tokens of the other frames
            others = [t for t in range(a, b) if t not in anchors]
            E = C - A * n
            for t in anchors:
                budget[t] = n
            for i, t in enumerate(others):
                extra[t] = E // len(others) + (1 if i < E % len(others) else 0)
        for t in range(a, b):
            for i in by_salience(t)[:s + extra[t]]:
                sal[t][i] = keep[t][i] = True
        chosen = []
        for t in anchors:
            if budget[t] == 0:
                continue
            rest = [i for i in range(N) if not sal[t][i]]
            centres, _ = dpc_knn_reference(f[t, rest].unsqueeze(0), min(k, len(rest)), budget[t])
            chosen += [(t, rest[j]) for j in centres[0].tolist()]
        members = [[] for _ in chosen]
        for t in range(a, b):
            for i in range(N):
                if sal[t][i] or not chosen:
                    continue
                u = unit(f[t, i])
                sims = [float(u.dot(unit(f[ta, ia]))) for ta, ia in chosen]
                best = max(range(len(chosen)), key=lambda j: (sims[j], -j))
                members[best].append(u)
        for (ta, ia), mem in zip(chosen, members):
            keep[ta][ia] = True
            ua = unit(f[ta, ia])
            if mem:
                w = max(alpha, 1.0 / (len(mem) + 1))
                value[ta, ia] = w * ua + (1 - w) * sum(mem) / len(mem)
            else:
                value[ta, ia] = ua
    return torch.tensor(keep).flatten(), value.reshape(T * N, D)


def _videos(g: torch.Generator, T: int, N: int, D: int, dtype) -> torch.Tensor:
    """Four videos: random; every frame identical (ties in the segmentation and
    the merge); a static scene with a cut in the middle; frames whose tokens
    repeat (ties in salience and in the clustering)."""
    x = torch.randn(4, T, N, D, generator=g)
    x[1] = x[1, :1].expand(T, N, D)
    x[2] = x[2, :1].expand(T, N, D) + 0.02 * torch.randn(T, N, D, generator=g)
    x[2, T // 2:] = torch.randn(N, D, generator=g) + 0.02 * torch.randn(T - T // 2, N, D, generator=g)
    x[3, :, 1::3] = x[3, :, :1]
    return x.to(dtype)


# -- the method alone --------------------------------------------------------------
def test_segments_equal_the_eager_definition():
    g = torch.Generator().manual_seed(0)
    for T in (1, 2, 3, 5, 8, 9, 13, 20):
        x = _videos(g, T, 6, 8, torch.float32)
        for c, tau in ((8, 0.9), (1, 0.9), (3, 0.0), (2, 0.999), (30, -1.0), (1, 0.95)):
            got = FastVID(c=c, tau=tau).segments(x)
            for v in range(4):
                want = segments_eager(x[v], c, tau)
                assert got[v] == want, (T, c, tau, v)
                assert len(want) >= min(c, T)
    # a hand-made case: frames 0-2 alike, 3-4 alike, 5 new: the threshold cuts
    # after frames 2 and 4; c = 2 adds nothing, c = 4 also cuts the weakest
    # transition left (ties broken toward the earlier one)
    base = torch.eye(4, dtype=torch.float64)
    frames = [base[0], base[0], base[0], base[1], base[1], base[2]]
    x = torch.stack([f.expand(3, 4) for f in frames]).unsqueeze(0).float()
    assert FastVID(c=2, tau=0.5).segments(x) == [[0, 3, 5]]
    assert FastVID(c=4, tau=0.5).segments(x) == [[0, 1, 3, 5]]
    assert FastVID(c=1, tau=-1.0).segments(x) == [[0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_reduce_equals_the_eager_definition(dtype):
    g = torch.Generator().manual_seed(1)
    shapes = ((1, 5, 8), (2, 9, 17), (5, 25, 32), (7, 49, 64), (9, 6, 8), (13, 10, 12))
    configs = (dict(), dict(c=2, tau=0.0, p=2), dict(c=3, tau=0.5, p=3, d=0.7, alpha=0.3),
               dict(c=1, tau=-1.0, p=4, d=0.0), dict(d=1.0))
    for T, N, D in shapes:
        x = _videos(g, T, N, D, dtype)
        for R in (0.1, 0.25, 0.5, 0.75, 0.9, 1.0):
            for cfg in configs:
                m = FastVID(R, **cfg)
                keep, merged = m.reduce(x)
                assert keep.shape == (4, T * N) and keep.dtype == torch.bool
                n = m.retained_tokens(T, 1, N)
                if n == T * N:
                    assert keep.all() and merged is None
                else:
                    assert merged.shape == (4, n, D) and merged.dtype == dtype
                assert torch.equal(m.select(x), keep)
                for v in range(4):
                    want_keep, want_value = fastvid_eager(x[v], R, **cfg)
                    assert torch.equal(keep[v], want_keep), (T, N, D, R, cfg, v)
                    assert int(keep[v].sum()) == n
                    if merged is not None:
                        torch.testing.assert_close(merged[v].double(), want_value[want_keep].to(dtype).double(),
                                                   atol=1e-6 if dtype == torch.float32 else 1e-2, rtol=0)
                for v in (0, 3):  # a video alone reduces as in the batch
                    k1, m1 = m.reduce(x[v:v + 1])
                    assert torch.equal(k1[0], keep[v])
                    if merged is not None:
                        assert torch.equal(m1[0], merged[v])


def test_merge_changes_the_context_tokens_and_keeps_the_salient_ones():
    g = torch.Generator().manual_seed(2)
    T, N, D = 6, 20, 16
    x = torch.randn(1, T, N, D, generator=g)
    m = FastVID(0.5, c=2, tau=0.0, p=2)
    keep, merged = m.reduce(x)
    r, s = m.frame_budget(N)
    assert (r, s) == (10, 4)
    rows = x.reshape(T * N, D)[keep[0]]
    same = (merged[0] == rows).all(1)
    assert int(same.sum()) == T * s  # salient tokens: their own values
    # the merged value is a mix of normalised vectors: norm <= 1
    assert (merged[0][~same].norm(dim=1) <= 1 + 1e-6).all()


def test_retained_tokens_from_shapes():
    m = FastVID()
    assert repr(m) == "FastVID(retain_ratio=0.1, c=8, tau=0.9, d=0.4, p=4, k=4, alpha=0.6)"
    assert m.retained_tokens(32, 14, 14) == 32 * 19  # int(19.6) per frame
    assert m.frame_budget(196) == (19, 7)  # int(0.4 * 19) salient, 12 context
    assert m.retained_tokens(8, 3, 3) == 8  # at least one token per frame
    assert FastVID(1.0).retained_tokens(5, 2, 3) == 30
    g = torch.Generator().manual_seed(3)
    for R in (0.05, 0.1, 0.3, 0.5, 0.8, 1.0):
        for T, H, W in ((1, 1, 1), (1, 3, 3), (3, 2, 5), (8, 3, 3), (11, 2, 2)):
            x = torch.randn(2, T, H * W, 8, generator=g)
            x[1] = x[1, :1].expand_as(x[1])
            n = FastVID(R, c=3, tau=0.5, p=2).retained_tokens(T, H, W)
            assert FastVID(R, c=3, tau=0.5, p=2).select(x).sum(1).tolist() == [n, n], (R, T, H, W)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="T must be a positive int"):
            m.retained_tokens(bad, 2, 2)


# -- on the models ------------------------------------------------------------------
def _values(eager, feats, T, N, cfg):
    keep, value = eager(feats.view(T, N, -1), **cfg)
    return keep, value.to(feats.dtype)


class QwenReference:
    """FastVID by hand on one unpadded Qwen2-VL / Qwen2.5-VL sample: the kept
    tokens (merged ones replaced) at their original M-RoPE positions."""

    def __init__(self, model, inputs, cfg):
        mm = model.model
        ids = inputs["input_ids"]
        with torch.no_grad():
            emb = mm.get_input_embeddings()(ids)
            grid = inputs["video_grid_thw"]
            vfeat = torch.cat(mm.get_video_features(inputs["pixel_values_videos"], grid,
                                                    return_dict=True).pooler_output)
            if "pixel_values" in inputs:
                ifeat = torch.cat(mm.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"],
                                                        return_dict=True).pooler_output)
                emb[ids == QWEN_IMAGE] = ifeat.to(emb.dtype)
        T, h, w = grid[0].tolist()
        N = (h // 2) * (w // 2)
        video = ids[0] == QWEN_VIDEO
        keep, value = _values(fastvid_eager, vfeat, T, N, cfg)
        emb[0, video] = value.to(emb.dtype)
        self.keep = ~video
        self.keep[video] = keep
        pos, _ = mm.get_rope_index(ids, inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
                                   video_grid_thw=grid, attention_mask=inputs["attention_mask"])
        kept = self.keep.nonzero().flatten()
        with torch.no_grad():
            hs = mm.language_model(inputs_embeds=emb[:, kept], position_ids=pos[:, :, kept],
                                   attention_mask=torch.ones(1, kept.numel(), dtype=torch.long)).last_hidden_state
            self.logits = model.lm_head(hs)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("grid", [(6, 4, 6), (5, 4, 6), (1, 4, 6)], ids=["T6", "T5", "T1"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_qwen_matches_the_definition(family, impl, grid, config):
    cfg = CONFIGS[config]
    model, inputs = tiny_qwen_video(family, impl, samples=((4, grid, 3),), seed=grid[0], image_first=True)
    ref = QwenReference(model, inputs, cfg)
    with vlmkern.apply(model, "fastvid", **cfg) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    ids = inputs["input_ids"][0]
    assert keep[ids == QWEN_IMAGE].all()  # images are not FastVID's business
    assert torch.equal(keep, ref.keep)
    T, h, w = grid
    assert int(keep[ids == QWEN_VIDEO].sum()) == FastVID(**cfg).retained_tokens(T, h // 2, w // 2)
    _close(got, ref.logits)


def test_qwen_identical_frames():
    """Every frame identical: the segmentation cuts at the first c - 1
    transitions (ties), and merged tokens still enter the model as defined."""
    model, inputs = tiny_qwen_video("qwen2_5_vl", "sdpa", samples=((2, (6, 4, 4), 2),), repeat_frames=True)
    cfg = dict(retain_ratio=0.5, c=3, tau=0.5, p=2)
    ref = QwenReference(model, inputs, cfg)
    with vlmkern.apply(model, "fastvid", **cfg) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert torch.equal(keep, ref.keep)
    _close(got, ref.logits)


class Qwen3Reference:
    """As :class:`QwenReference` on Qwen3-VL: frames as separate runs, the
    deepstack rows of the surviving tokens (a merged token keeps its anchor's)."""

    def __init__(self, model, inputs, cfg):
        mm = model.model
        ids = inputs["input_ids"]
        image, video = ids[0] == QWEN_IMAGE, ids[0] == QWEN_VIDEO
        visual = image | video
        with torch.no_grad():
            emb = mm.get_input_embeddings()(ids)
            grid = inputs["video_grid_thw"]
            vout = mm.get_video_features(inputs["pixel_values_videos"], grid, return_dict=True)
            vfeat = torch.cat(vout.pooler_output)
            deep = [torch.zeros(int(visual.sum()), vfeat.shape[-1]) for _ in vout.deepstack_features]
            for dd, f in zip(deep, vout.deepstack_features):
                dd[video[visual]] = torch.cat(f)
            if "pixel_values" in inputs:
                iout = mm.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], return_dict=True)
                emb[0, image] = torch.cat(iout.pooler_output)
                for dd, f in zip(deep, iout.deepstack_features):
                    dd[image[visual]] = torch.cat(f)
        T, h, w = grid[0].tolist()
        N = (h // 2) * (w // 2)
        keep, value = _values(fastvid_eager, vfeat, T, N, cfg)
        emb[0, video] = value.to(emb.dtype)
        self.keep = ~video
        self.keep[video] = keep
        pos, _ = mm.get_rope_index(ids, inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
                                   video_grid_thw=grid, attention_mask=inputs["attention_mask"])
        kept = self.keep.nonzero().flatten()
        rows = self.keep[visual]
        with torch.no_grad():
            hs = mm.language_model(inputs_embeds=emb[:, kept], position_ids=pos[:, :, kept],
                                   attention_mask=torch.ones(1, kept.numel(), dtype=torch.long),
                                   visual_pos_masks=visual[kept][None],
                                   deepstack_visual_embeds=[dd[rows] for dd in deep]).last_hidden_state
            self.logits = model.lm_head(hs)


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("grid", [(4, 4, 4), (7, 4, 6)])
def test_qwen3_matches_the_definition(grid, config):
    cfg = CONFIGS[config]
    model, inputs = tiny_qwen3_video("sdpa", samples=((4, grid, 3),), seed=grid[0], image_first=True)
    ref = Qwen3Reference(model, inputs, cfg)
    with vlmkern.apply(model, "fastvid", **cfg) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert torch.equal(keep, ref.keep)
    T, h, w = grid
    assert int(keep[inputs["input_ids"][0] == QWEN_VIDEO].sum()) == \
        FastVID(**cfg).retained_tokens(T, h // 2, w // 2)
    _close(got, ref.logits)


class LlavaReference:
    """FastVID by hand on one unpadded LLaVA-OneVision / LLaVA-NeXT-Video
    sample (OneVision's trailing newline kept), numbered 0, 1, ... or at the
    original 1-D positions."""

    def __init__(self, model, inputs, cfg, positions="renumber"):
        mm, mcfg = model.model, model.config
        ids = inputs["input_ids"]
        pv = inputs["pixel_values_videos"]
        with torch.no_grad():
            emb = mm.get_input_embeddings()(ids)
            feats = mm.get_video_features(pv, vision_feature_layer=mcfg.vision_feature_layer,
                                          vision_feature_select_strategy=mcfg.vision_feature_select_strategy,
                                          return_dict=True).pooler_output[0]
        video = ids[0] == LV_VIDEO
        T, N = pv.shape[1], LV_FRAME_TOKENS
        idx = video.nonzero().flatten()
        keep, value = _values(fastvid_eager, feats[:T * N], T, N, cfg)
        emb[0, idx[:T * N]] = value.to(emb.dtype)
        emb[0, idx[T * N:]] = feats[T * N:].to(emb.dtype)
        self.keep = ~video
        self.keep[idx[:T * N]] = keep
        self.keep[idx[T * N:]] = True
        kept = self.keep.nonzero().flatten()
        with torch.no_grad():
            pos = kept[None] if positions == "keep" else torch.arange(kept.numel())[None]
            hs = mm.language_model(inputs_embeds=emb[:, kept], position_ids=pos,
                                   attention_mask=torch.ones(1, kept.numel(), dtype=torch.long)).last_hidden_state
            self.logits = model.lm_head(hs)


@pytest.mark.parametrize("positions", [None, "keep", "renumber"])
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("frames", [4, 7])
@pytest.mark.parametrize("family", LLAVA_FAMILIES)
def test_llava_matches_the_definition(family, frames, config, positions):
    cfg = CONFIGS[config]
    model, inputs = tiny_llava_video(family, "sdpa", samples=((4, frames, 3),), seed=frames)
    ref = LlavaReference(model, inputs, cfg, positions or "renumber")
    with vlmkern.apply(model, "fastvid", positions=positions, **cfg) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    assert torch.equal(keep, ref.keep)
    video = inputs["input_ids"][0] == LV_VIDEO
    assert int((keep & video).sum()) == FastVID(**cfg).retained_tokens(frames, 3, 3) + TAIL[family]
    _close(got, ref.logits)


def _generate_checks(model, inputs, method, steps, full_inputs, alone_of, positions=None):
    B, L = inputs["input_ids"].shape
    with vlmkern.apply(model, method, **({} if positions is None else {"positions": positions})) as patch:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=steps, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        assert not patch.pruner.last_keep_mask.all()
        for s in range(steps):  # KV cache == recomputing the whole (pruned, merged) prompt
            with torch.no_grad():
                full = model(**full_inputs(out.sequences[:, :L + s], s), use_cache=False).logits[:, -1]
            _close(out.logits[s], full)
        for b in range(B):  # each sample alone: the same tokens and logits
            with torch.no_grad():
                alone = model.generate(**alone_of(b), max_new_tokens=steps, do_sample=False,
                                       output_logits=True, return_dict_in_generate=True)
            assert torch.equal(alone.sequences[0, -steps:], out.sequences[b, -steps:])
            _close(torch.stack(alone.logits)[:, 0], torch.stack(out.logits)[:, b])


QWEN_RAGGED = ((3, (4, 4, 4), 5), (1, (6, 4, 6), 2))
QWEN3_RAGGED = ((3, (4, 4, 4), 5), (1, (4, 4, 6), 2))
LLAVA_RAGGED = ((3, 4, 5), (1, 4, 2), (2, None, 6))


def _qwen_full(inputs):
    B = inputs["input_ids"].shape[0]

    def full(seq, s):
        f = dict(inputs)
        f["input_ids"] = seq
        f["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones(B, s, dtype=torch.long)], 1)
        f["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros(B, s, dtype=torch.int32)], 1)
        return f
    return full


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_qwen_generate_with_cache_equals_no_cache_and_ragged_batch_equals_samples(family, impl, config):
    model, inputs = tiny_qwen_video(family, impl, samples=QWEN_RAGGED, image_first=True, seed=1)
    _generate_checks(model, inputs, FastVID(**CONFIGS[config]), 5, _qwen_full(inputs),
                     lambda b: video_sample(inputs, b))


@pytest.mark.parametrize("impl", IMPLS)
def test_qwen3_generate_with_cache_equals_no_cache_and_ragged_batch_equals_samples(impl):
    model, inputs = tiny_qwen3_video(impl, samples=QWEN3_RAGGED, image_first=True, seed=1)
    _generate_checks(model, inputs, FastVID(**CONFIGS["segments"]), 5, _qwen_full(inputs),
                     lambda b: video_sample(inputs, b))


@pytest.mark.parametrize("positions", ["keep", "renumber"])
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", LLAVA_FAMILIES)
def test_llava_generate_with_cache_equals_no_cache_and_ragged_batch_equals_samples(family, impl, positions):
    model, inputs = tiny_llava_video(family, impl, samples=LLAVA_RAGGED, seed=1)
    B = inputs["input_ids"].shape[0]

    def full(seq, s):
        f = dict(inputs)
        f["input_ids"] = seq
        f["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones(B, s, dtype=torch.long)], 1)
        m = f["attention_mask"]
        f["position_ids"] = (m.long().cumsum(-1) - 1).masked_fill(m == 0, 1)
        return f
    _generate_checks(model, inputs, FastVID(**CONFIGS["segments"]), 4, full,
                     lambda b: llava_video_sample(inputs, b), positions=positions)


@pytest.mark.parametrize("impl", IMPLS)
def test_retain_one_is_a_no_op_and_revert_is_exact(impl):
    cases = [tiny_qwen_video("qwen2_5_vl", impl, samples=QWEN_RAGGED, image_first=True),
             tiny_qwen3_video(impl, samples=QWEN3_RAGGED, image_first=True),
             tiny_llava_video("llava_onevision", impl, samples=LLAVA_RAGGED)]
    for model, inputs in cases:
        with torch.no_grad():
            before = model(**inputs).logits
        with vlmkern.apply(model, "fastvid", retain_ratio=1.0) as patch:
            with torch.no_grad():
                assert torch.equal(model(**inputs).logits, before)
            assert patch.pruner.last_keep_mask.all()
        with vlmkern.apply(model, "fastvid", retain_ratio=0.5):
            with torch.no_grad():
                assert model(**inputs).logits.shape[1] < before.shape[1]
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, before)


def test_the_hidden_states_entering_layer_0_are_not_modified_in_place():
    """The merged values go into a copy: the tensor the model hands to layer 0
    (which may be a caller's inputs_embeds) is left as it was."""
    model, inputs = tiny_qwen_video("qwen2_5_vl", "sdpa", samples=((2, (4, 4, 4), 2),), seed=6)
    seen = []

    def grab(mod, args, kwargs):
        x = kwargs.get("hidden_states", args[0] if args else None)
        seen.append((x, x.clone()))

    h = model.model.language_model.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with vlmkern.apply(model, "fastvid", retain_ratio=0.5, c=2, tau=0.0, p=2) as patch:
            with torch.no_grad():
                model(**inputs)
            assert not patch.pruner.last_keep_mask.all()
    finally:
        h.remove()
    x, copy = seen[0]
    assert torch.equal(x, copy)


def test_bad_arguments_name_what_is_wrong():
    model, _ = tiny_qwen_video("qwen2_5_vl", "sdpa")
    for bad in (0, 0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"retain_ratio must be in \(0, 1\]"):
            vlmkern.apply(model, "fastvid", retain_ratio=bad)
    for bad in (True, "0.1", None):
        with pytest.raises(ValueError, match=r"retain_ratio must be a number"):
            vlmkern.apply(model, "fastvid", retain_ratio=bad)
    for name, bad in (("c", 0), ("c", 2.5), ("p", 0), ("k", 0), ("k", 65), ("c", True)):
        with pytest.raises(ValueError, match=f"{name} must be an int"):
            vlmkern.apply(model, "fastvid", **{name: bad})
    for bad in (1.5, -2, "x"):
        with pytest.raises(ValueError, match=r"tau must be a number in \[-1, 1\]"):
            FastVID(tau=bad)
    for name in ("d", "alpha"):
        with pytest.raises(ValueError, match=rf"{name} must be in \[0, 1\]"):
            FastVID(**{name: 1.2})
    with pytest.raises(ValueError, match="fastvid: unknown option.*rate.*accepts retain_ratio"):
        vlmkern.apply(model, "fastvid", rate=0.75)
    with pytest.raises(ValueError, match="positions='renumber': qwen2_5_vl numbers tokens with M-RoPE"):
        vlmkern.apply(model, "fastvid", positions="renumber")
    llava, _ = tiny_llava("sdpa")
    with pytest.raises(ValueError, match="fastvid acts on videos and llava has no video support"):
        vlmkern.apply(llava, "fastvid")
    assert "_vlmkern_patch" not in model.__dict__ and "_vlmkern_patch" not in llava.__dict__

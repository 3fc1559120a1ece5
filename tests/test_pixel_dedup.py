"""vlmkern.ops.pixel_dedup against its eager reference, and the pre_vit
placement (vlmkern.apply(model, "pixel_dedup")) on tiny Qwen-VL video models:
exact repeats give the unpatched logits while the encoder runs on fewer groups."""

from __future__ import annotations

import functools

import pytest
import torch

import vlmkern
from vlmkern import ops, reference
from vlmkern.methods import EVS, PixelDedup
from models import QWEN_VIDEO, tiny_llava, tiny_qwen3_video, tiny_qwen_video

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _videos(grids, F=24, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    grid = torch.tensor(grids, dtype=torch.int64).view(-1, 3)
    x = torch.randn(int(grid.prod(-1).sum()), F, generator=g).to(dtype)
    return x, grid


def _slab(x, grid, v, i):
    """Rows of group i of video v."""
    t, h, w = grid.tolist()[v]
    start = int(grid[:v].prod(-1).sum())
    return x[start + i * h * w: start + (i + 1) * h * w]


@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(dtype):
    x, grid = _videos([[6, 2, 4], [1, 2, 2], [5, 4, 6]], dtype=dtype)
    _slab(x, grid, 0, 2).copy_(_slab(x, grid, 0, 1))        # exact repeat
    _slab(x, grid, 0, 3).copy_(_slab(x, grid, 0, 1))        # repeat of the anchor (1), not of 2's rows
    _slab(x, grid, 2, 1).copy_(_slab(x, grid, 2, 0) + 0.0625)  # near repeat: mean difference 0.0625
    _slab(x, grid, 2, 4).copy_(_slab(x, grid, 2, 3))
    _slab(x, grid, 2, 4)[0, 0] = float("nan")              # NaN never matches
    for tol in (0.0, 0.05, 0.07, 10.0):
        got = ops.pixel_dedup(x, grid, tol)
        assert torch.equal(got, reference.pixel_dedup(x, grid, tol)), tol
    assert ops.pixel_dedup(x, grid).tolist() == [0, 1, 1, 1, 4, 5, 6, 7, 8, 9, 10, 11]
    assert ops.pixel_dedup(x, grid, 0.07).tolist()[7:] == [7, 7, 9, 10, 11]
    assert ops.pixel_dedup(x, grid, 10.0).tolist() == [0, 0, 0, 0, 0, 0, 6, 7, 7, 7, 7, 11]  # NaN kept


def test_anchor_is_the_last_kept_group_not_the_previous_one():
    """A slow drift: each group within tol of the one before, not of the anchor."""
    x, grid = _videos([[6, 2, 2]], F=8)
    base = _slab(x, grid, 0, 0).clone()
    for i in range(1, 6):
        _slab(x, grid, 0, i).copy_(base + 0.25 * i)  # mean difference 0.25 per step
    assert ops.pixel_dedup(x, grid, 0.3).tolist() == [0, 0, 2, 2, 4, 4]
    assert torch.equal(ops.pixel_dedup(x, grid, 0.3), reference.pixel_dedup(x, grid, 0.3))


def test_large_slabs_threads_and_empty():
    x, grid = _videos([[4, 28, 28], [3, 16, 16]], F=1176)  # 921984 values per group: many chunks
    _slab(x, grid, 0, 1).copy_(_slab(x, grid, 0, 0))
    _slab(x, grid, 0, 2).copy_(_slab(x, grid, 0, 0) + 1e-3)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.pixel_dedup(x, grid, 2e-3)
        torch.set_num_threads(max(2, n))
        two = ops.pixel_dedup(x, grid, 2e-3)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one, two) and torch.equal(one, reference.pixel_dedup(x, grid, 2e-3))
    assert one.tolist()[:4] == [0, 0, 0, 3]
    assert ops.pixel_dedup(torch.empty(0, 24), torch.empty(0, 3, dtype=torch.int64)).numel() == 0


def test_bad_arguments():
    x, grid = _videos([[3, 2, 2]])
    with pytest.raises(ValueError, match="tol: expected a finite float >= 0"):
        ops.pixel_dedup(x, grid, -0.1)
    with pytest.raises(RuntimeError, match=r"pixel_values: expected sum\(t \* h \* w\) = 12 patch rows"):
        ops.pixel_dedup(x[:11], grid)
    with pytest.raises(RuntimeError, match=r"grid: expected an int64 tensor of shape \[videos, 3\]"):
        ops.pixel_dedup(x, grid[:, :2])
    with pytest.raises(RuntimeError, match=r"grid: expected t, h, w >= 0"):
        ops.pixel_dedup(x, torch.tensor([[-3, 2, -2]]))
    with pytest.raises(TypeError, match="grid: expected an integer tensor"):
        ops.pixel_dedup(x, grid.float())
    with pytest.raises(NotImplementedError, match="pixel_values: expected a float32"):
        ops.pixel_dedup(x.double(), grid)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        PixelDedup(tol=float("inf"))


def test_opcheck():
    x, grid = _videos([[4, 2, 2]])
    torch.library.opcheck(torch.ops.vlmkern.pixel_dedup.default, (x, grid, 0.0))


# -- the pre_vit placement ------------------------------------------------------------

def _repeating(family, impl="sdpa", seed=0):
    """Two videos whose temporal groups repeat: video 0 groups 1, 2 = group 0;
    video 1 group 3 = group 2 (7 of 10 groups need the encoder)."""
    build = tiny_qwen3_video if family == "qwen3_vl" else functools.partial(tiny_qwen_video, family)
    model, inputs = build(impl, samples=((3, (4, 4, 4), 5), (1, (6, 4, 6), 2)), image_first=True, seed=seed)
    pv = inputs["pixel_values_videos"]
    pv[16:32] = pv[0:16]
    pv[32:48] = pv[0:16]
    pv[64 + 72:64 + 96] = pv[64 + 48:64 + 72]
    return model, inputs


def _encoder_rows(model):
    """A hook counting the patch rows the vision tower encodes."""
    seen = []
    h = model.model.visual.register_forward_pre_hook(lambda m, a, kw: seen.append(a[0].shape[0]),
                                                     with_kwargs=True)
    return seen, h


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_exact_repeats_skip_the_encoder_and_keep_the_logits(family, impl):
    """(Qwen3-VL: its deepstack features are expanded like the tokens, and every
    frame is its own run behind a timestamp.)"""
    model, inputs = _repeating(family, impl)
    seen, hook = _encoder_rows(model)
    with torch.no_grad():
        before = model(**inputs).logits
        steps_before = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    with vlmkern.apply(model, "pixel_dedup") as patch:
        with torch.no_grad():
            after = model(**inputs).logits
            steps = model.generate(**inputs, max_new_tokens=5, do_sample=False)
        assert patch.dedup.last_encoded == 7 and patch.dedup.last_groups == 10
    hook.remove()
    # video rows per call (the images are 2 x 64 rows): unpatched 64 + 144, patched 2 x 16 + 5 x 24
    video_rows = [r for r in seen if r != 128]
    assert video_rows == [208, 208, 152, 152]
    torch.testing.assert_close(after, before, atol=1e-5 * float(before.abs().max()), rtol=0)
    assert torch.equal(steps, steps_before)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)  # reverted


def test_tolerance_and_compose_with_evs_and_w4a8():
    model, inputs = _repeating("qwen2_5_vl")
    pv = inputs["pixel_values_videos"]
    pv[64 + 24:64 + 48] = pv[64:64 + 24] + 0.01  # video 1 group 1: a near repeat of group 0
    with vlmkern.apply(model, PixelDedup(tol=0.0)) as patch:
        with torch.no_grad():
            model(**inputs)
        assert patch.dedup.last_encoded == 7
    with vlmkern.apply(model, PixelDedup(tol=0.02)) as patch:
        with torch.no_grad():
            model(**inputs)
        assert patch.dedup.last_encoded == 6 and patch.dedup.last_source[5] == 4
    with vlmkern.apply(model, [PixelDedup(tol=0.0), EVS(rate=0.5)], quant="w4a8", group_size=32) as patch:
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert out.shape[1] == inputs["input_ids"].shape[1] + 3
        assert patch.dedup.last_encoded == 7
        video = inputs["input_ids"] == QWEN_VIDEO
        kept_video = (patch.pruner.last_keep_mask & video).sum(1).tolist()
        assert kept_video == [EVS(0.5).retained_tokens(4, 2, 2), EVS(0.5).retained_tokens(6, 2, 3)]


def test_bad_compositions_and_families():
    model, _ = tiny_qwen_video("qwen2_5_vl")
    with pytest.raises(ValueError, match="at most one pre_vit method"):
        vlmkern.apply(model, [PixelDedup(), PixelDedup(0.1)])
    with pytest.raises(ValueError, match="a list must hold method objects"):
        vlmkern.apply(model, ["pixel_dedup", "evs"])
    with pytest.raises(ValueError, match="pass options to the method objects"):
        vlmkern.apply(model, [PixelDedup()], tol=0.1)
    llava, _ = tiny_llava("sdpa")
    with pytest.raises(ValueError, match="pixel_dedup acts on videos and llava has no video support"):
        vlmkern.apply(llava, "pixel_dedup")
    assert "_vlmkern_patch" not in model.__dict__


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_drop_mode_drops_the_repeated_groups_tokens(family):
    """PixelDedup(drop=True): the encoder skips the repeats (as without drop)
    and their tokens leave the sequence before layer 0; the rest keep their
    original positions (Qwen3-VL: the repeats' timestamps stay). Reference:
    the unpatched language model on the embeddings without the tokens of the
    groups built as repeats (video 0: groups 1, 2)."""
    from test_patch_evs import Reference

    build = tiny_qwen3_video if family == "qwen3_vl" else functools.partial(tiny_qwen_video, family)
    model, inputs = build("sdpa", samples=((3, (4, 4, 4), 5),), image_first=True, seed=3)
    pv = inputs["pixel_values_videos"]
    pv[16:32] = pv[0:16]
    pv[32:48] = pv[0:16]
    built = torch.tensor([True, False, False, True]).repeat_interleave(4)  # 4 groups x 4 tokens
    if family == "qwen3_vl":
        from test_patch_qwen3_vl import Reference as Ref3
        ref = Ref3(model, inputs, lambda f: built)
    else:
        ref = Reference(model, inputs, 0.0, method=lambda f, _: built)
    with vlmkern.apply(model, PixelDedup(0.0, drop=True)) as patch:
        assert repr(patch.pruner.method) == "RepeatDrop(PixelDedup(tol=0, drop=True))"
        with torch.no_grad():
            got = model(**inputs).logits
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True)
        assert patch.dedup.last_encoded == 2
        assert torch.equal(patch.pruner.last_keep_mask[0], ref.keep)
    torch.testing.assert_close(got, ref.logits, atol=2e-5 * float(ref.logits.abs().max()), rtol=0)
    torch.testing.assert_close(out.logits[0], got[:, -1], atol=1e-5 * float(got.abs().max()), rtol=0)


def test_drop_mode_arguments_and_composition():
    model, _ = tiny_qwen_video("qwen2_5_vl")
    with pytest.raises(ValueError, match="drop must be True or False"):
        PixelDedup(0.0, drop=1)
    with pytest.raises(ValueError, match=r"PixelDedup\(tol=0, drop=True\) drops the repeats itself"):
        vlmkern.apply(model, [PixelDedup(0.0, drop=True), EVS(0.5)])
    assert "_vlmkern_patch" not in model.__dict__

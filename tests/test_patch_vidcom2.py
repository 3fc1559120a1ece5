"""vlmkern.apply(model, method="vidcom2", keep_ratio=R) on tiny Qwen2-VL and
Qwen2.5-VL video models, and VidCom2's select against its definition.

The definition is computed here independently, per video and per frame, in
float64 (``vidcom2_keep_eager``), from the released code's reading (see
``vlmkern.methods.vidcom2``): the lowest-variance half of the channels,
L2-normalised; multi-scale Gaussian similarity (bandwidths 2**-3 .. 2**1) to
the video's and the frame's mean token; frame budgets from a softmax
(temperature 0.01) of minus each frame's mean video similarity, rounded, then
reconciled one token at a time to ``max(T, round(R T N))``; in each frame the
tokens of lowest summed similarity (ties toward the lower index). The model
tests run the unpatched model on the kept embeddings at their original
positions (``Reference`` of tests/test_patch_evs.py); KV-cache and ragged-batch
generation are covered there too (its generate test is parametrized over
VidCom2).
"""

from __future__ import annotations

import math

import pytest
import torch

import vlmkern
from vlmkern.methods import VidCom2
from models import QWEN_IMAGE, QWEN_VIDEO, tiny_llava, tiny_qwen_video
from test_patch_evs import FAMILIES, IMPLS, RAGGED, Reference, _close


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def budgets_eager(u: list[float], N: int, R: float) -> list[int]:
    """Per-frame token counts from the frames' distinctiveness ``u``: the released
    rule (softmax at temperature 0.01, ``round(N min(1, R (1 + p - 1/T)))``, at
    least 1), then one token at a time to ``max(T, round(R T N))``."""
    T = len(u)
    total = max(T, round(R * (T * N)))
    e = [math.exp((v - max(u)) / 0.01) for v in u]
    p = [v / sum(e) for v in e]
    q = [N * min(1.0, R * (1 + (p[t] - 1 / T))) for t in range(T)]
    k = [min(N, max(1, round(q[t]))) for t in range(T)]
    while sum(k) < total:  # the most under-served frame that is not full gains one
        t = max((t for t in range(T) if k[t] < N), key=lambda t: (q[t] - k[t], -t))
        k[t] += 1
    while sum(k) > total:  # the most over-served frame keeping more than one loses one
        t = min((t for t in range(T) if k[t] > 1), key=lambda t: (q[t] - k[t], -t))
        k[t] -= 1
    return k


def vidcom2_keep_eager(feats: torch.Tensor, R: float) -> torch.Tensor:
    """VidCom2 for one video ``[T, N, D]``, straightforwardly: bool ``[T * N]``."""
    T, N, D = feats.shape
    total = max(T, round(R * (T * N)))
    if total >= T * N:
        return torch.ones(T * N, dtype=torch.bool)
    x = feats.double().reshape(T * N, D)
    var = ((x - x.mean(0)) ** 2).mean(0)
    chans = sorted(range(D), key=lambda c: (float(var[c]), c))[: D // 2]
    y = x[:, chans]
    y = y / y.norm(dim=1, keepdim=True).clamp(min=1e-12)
    video_mean = y.mean(0)
    frames = y.view(T, N, -1)

    def similarity(tokens, center):
        d2 = ((tokens - center) ** 2).sum(-1)
        return sum(torch.exp(-d2 / (2 * 2.0 ** e)) for e in range(-3, 2))

    s_video = [similarity(frames[t], video_mean) for t in range(T)]
    s_frame = [similarity(frames[t], frames[t].mean(0)) for t in range(T)]
    k = budgets_eager([-float(s.mean()) for s in s_video], N, R)
    keep = torch.zeros(T, N, dtype=torch.bool)
    for t in range(T):
        score = (s_video[t] + s_frame[t]).tolist()
        for n in sorted(range(N), key=lambda n: (score[n], n))[: k[t]]:
            keep[t, n] = True
    return keep.flatten()


def _videos(g: torch.Generator, T: int, N: int, D: int, dtype) -> torch.Tensor:
    """Four videos: random; every frame identical; exact ties (frame 1 is frame 0
    times 4, so both normalise to the same tokens; frame 0 repeats its token 1 in
    its odd tokens; the last frame, when T > 2, is one token repeated); one
    frame far from identical others (it should get the largest budget)."""
    x = torch.randn(4, T, N, D, generator=g)
    x[1] = x[1, :1].expand(T, N, D)
    x[2, 0, 1::2] = x[2, 0, 1]
    if T > 1:
        x[2, 1] = x[2, 0] * 4
    if T > 2:
        x[2, T - 1] = x[2, T - 1, N // 2]
    x[3] = x[3, :1].expand(T, N, D) + 0.05 * torch.randn(T, N, D, generator=g)
    x[3, T // 2] = torch.randn(N, D, generator=g)
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_select_equals_the_eager_definition(dtype):
    g = torch.Generator().manual_seed(0)
    for T, N, D in ((2, 5, 8), (3, 9, 17), (5, 25, 32), (8, 49, 64), (1, 7, 8)):
        x = _videos(g, T, N, D, dtype)
        for R in (0.05, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 1.0):
            m = VidCom2(keep_ratio=R)
            got = m.select(x)
            assert got.shape == (4, T * N) and got.dtype == torch.bool
            for v in range(4):
                want = vidcom2_keep_eager(x[v].float(), R)
                assert torch.equal(got[v], want), (R, T, N, D, v)
                assert int(got[v].sum()) == m.retained_tokens(T, 1, N)
                assert got[v].view(T, N).any(1).all()  # every frame keeps a token
            for v in range(4):  # a video alone selects as in the batch
                assert torch.equal(m.select(x[v:v + 1])[0], got[v])


def test_frame_budgets_equal_the_eager_rule():
    """Budgets alone, from hand-made distinctiveness: random (peaked and flat
    softmaxes), frames tied in pairs, and the cases where the one-token floor
    decides (R N a little above 1 with a total of T: without the floor the
    distinctive frame would take a second token before another frame's first)."""
    g = torch.Generator().manual_seed(4)
    cases = []
    for T in (1, 2, 3, 5, 8):
        for N in (1, 4, 9, 25, 49):
            for R in (0.02, 0.1, 0.12, 0.25, 0.4, 0.5, 0.75, 0.9):
                for spread in (0.001, 0.01, 0.1):
                    cases.append((spread * torch.randn(3, T, generator=g), N, R))
                pairs = (0.01 * torch.randn(3, (T + 1) // 2, generator=g)).repeat_interleave(2, 1)[:, :T]
                cases.append((pairs, N, R))
    floor_cases = [(torch.tensor([[0.0, 1.0]]), 9, 0.12), (torch.tensor([[0.0, 0.0, 1.0]]), 22, 0.05),
                   (torch.tensor([[1.0, 0.0, 0.0, 0.5]]), 20, 0.055)]
    for u, N, R in floor_cases:
        want = budgets_eager(u[0].tolist(), N, R)
        assert min(want) == 1 and sum(want) == u.shape[1]
        cases.append((u, N, R))
    for u, N, R in cases:
        m = VidCom2(R)
        got = m.frame_budgets(u, N)
        assert got.dtype == torch.int64 and got.shape == u.shape
        for v in range(u.shape[0]):
            assert got[v].tolist() == budgets_eager(u[v].tolist(), N, R), (u[v], N, R)
            assert int(got[v].sum()) == m.retained_tokens(u.shape[1], 1, N)


def test_distinctive_frame_gets_the_largest_budget_and_ties_break_low():
    g = torch.Generator().manual_seed(1)
    T, N, D = 5, 9, 16
    x = _videos(g, T, N, D, torch.float32)
    m = VidCom2(keep_ratio=0.25)
    score, distinct = m.scores(x)
    k = m.frame_budgets(distinct, N)
    assert (k.sum(1) == m.retained_tokens(T, 3, 3)).all()
    assert int(k[3].argmax()) == T // 2 and int(k[3, T // 2]) > int(k[3].min())
    # identical frames: q = 2.25 each, round -> 2 each = 10, total round(11.25) = 11:
    # the extra token goes to the earliest frame
    assert k[1].tolist() == [3, 2, 2, 2, 2]
    keep = m.select(x).view(4, T, N)
    # a frame of one repeated token keeps its first k tokens
    assert keep[2, T - 1].tolist() == [True] * int(k[2, T - 1]) + [False] * (N - int(k[2, T - 1]))


def test_channel_variance_ties_break_toward_the_lower_channel():
    """Channels 1 and 2 hold the same values in another token order (exactly equal
    variances: dyadic values, 16 tokens); with channel 0 of lowest variance and
    channel 3 of the largest, the second kept channel is channel 1."""
    g = torch.Generator().manual_seed(2)
    T, N = 2, 8
    a = torch.randint(-4, 5, (T * N,), generator=g).double() / 4
    x = torch.stack([0.01 * torch.randn(T * N, generator=g, dtype=torch.float64), a,
                     a[torch.randperm(T * N, generator=g)], 10 * torch.randn(T * N, generator=g,
                                                                              dtype=torch.float64)], 1)
    var = ((x - x.mean(0)) ** 2).mean(0)
    assert var[1] == var[2] and var[0] < var[1] < var[3]
    x = x.float().view(1, T, N, 4)
    for R in (0.25, 0.5):
        want = vidcom2_keep_eager(x[0], R)
        assert torch.equal(VidCom2(R).select(x)[0], want)
    # ... and the choice matters: channels 0 and 2 would keep another set
    swapped = x[..., [0, 2, 1, 3]]
    assert not torch.equal(VidCom2(0.25).select(x), VidCom2(0.25).select(swapped))


def test_retained_tokens_from_shapes():
    m = VidCom2()
    assert m.keep_ratio == 0.25 and repr(m) == "VidCom2(keep_ratio=0.25)"
    assert m.retained_tokens(32, 14, 14) == 1568
    assert m.retained_tokens(3, 1, 5) == 4  # round(3.75)
    assert VidCom2(0.5).retained_tokens(1, 1, 5) == 2  # round half to even
    assert VidCom2(0.01).retained_tokens(8, 2, 2) == 8  # one token per frame
    assert VidCom2(1.0).retained_tokens(8, 3, 5) == 120
    g = torch.Generator().manual_seed(3)
    for R in (0.01, 0.2, 0.25, 0.3, 0.5, 0.61, 0.99, 1.0):
        for T, H, W in ((1, 1, 1), (1, 3, 3), (2, 1, 5), (3, 3, 3), (4, 2, 5), (7, 1, 9), (8, 5, 5),
                        (16, 3, 1)):
            x = torch.randn(2, T, H * W, 6, generator=g)
            x[1] = x[1, :1].expand_as(x[1])
            n = VidCom2(R).retained_tokens(T, H, W)
            assert T <= n <= T * H * W
            assert VidCom2(R).select(x).sum(1).tolist() == [n, n], (R, T, H, W)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="T must be a positive int"):
            m.retained_tokens(bad, 2, 2)
    with pytest.raises(ValueError, match="W must be a positive int"):
        m.retained_tokens(2, 2, 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
def test_keep_ratio_one_is_a_no_op_and_revert_is_exact(family, impl):
    model, inputs = tiny_qwen_video(family, impl, samples=RAGGED, image_first=True)
    with torch.no_grad():
        before = model(**inputs).logits
    with vlmkern.apply(model, "vidcom2", keep_ratio=1.0) as patch:
        with torch.no_grad():
            assert torch.equal(model(**inputs).logits, before)
        assert patch.pruner.last_keep_mask.all()
    with vlmkern.apply(model, "vidcom2"):
        with torch.no_grad():
            assert model(**inputs).logits.shape[1] < before.shape[1]
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("R, grid", [(0.25, (6, 4, 6)), (0.5, (5, 6, 6)), (0.25, (1, 4, 6))],
                         ids=["R0.25-T6", "R0.5-T5", "R0.25-T1"])
def test_matches_the_definition(family, impl, R, grid):
    model, inputs = tiny_qwen_video(family, impl, samples=((4, grid, 3),), seed=3, image_first=True)
    ref = Reference(model, inputs, R, method=vidcom2_keep_eager)
    with vlmkern.apply(model, "vidcom2", keep_ratio=R) as patch:
        with torch.no_grad():
            got = model(**inputs).logits
        keep = patch.pruner.last_keep_mask[0]
    ids = inputs["input_ids"][0]
    assert keep[ids == QWEN_IMAGE].all()  # images are not VidCom2's business
    assert torch.equal(keep, ref.keep)
    T, h, w = grid
    assert int(keep[ids == QWEN_VIDEO].sum()) == VidCom2(R).retained_tokens(T, h // 2, w // 2)
    _close(got, ref.logits)


def test_bad_arguments_name_what_is_wrong():
    model, _ = tiny_qwen_video("qwen2_5_vl", "sdpa")
    for bad in (0, 0.0, -0.1, 1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"keep_ratio must be in \(0, 1\]"):
            vlmkern.apply(model, "vidcom2", keep_ratio=bad)
    for bad in (True, "0.5", None):
        with pytest.raises(ValueError, match=r"keep_ratio must be a number in \(0, 1\]"):
            vlmkern.apply(model, "vidcom2", keep_ratio=bad)
        with pytest.raises(ValueError, match="keep_ratio must be a number"):
            VidCom2(bad)
    with pytest.raises(ValueError, match="vidcom2: unknown option.*foo.*accepts keep_ratio"):
        vlmkern.apply(model, "vidcom2", foo=1)
    with pytest.raises(ValueError, match="vidcom2: unknown option.*rate.*accepts keep_ratio"):
        vlmkern.apply(model, "vidcom2", rate=0.75)
    llava, _ = tiny_llava("sdpa")
    with pytest.raises(ValueError, match="vidcom2 acts on videos and llava has no video support"):
        vlmkern.apply(llava, "vidcom2")
    assert "_vlmkern_patch" not in model.__dict__ and "_vlmkern_patch" not in llava.__dict__

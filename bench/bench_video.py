"""EVS's scoring and selection (frame_similarity + topk_indices) against the
eager PyTorch version of the definition, at Qwen2.5-VL-7B video shapes.

Baseline (what vLLM's EVS and the eager video methods do): F.cosine_similarity
of consecutive frames in the input dtype, 1 - cos, frame 0 set to the maximum,
one stable descending argsort over the video's tokens, the first
retained_tokens, sorted back to original order. vlmkern: one pass of
frame_similarity (fp32 sums) and topk_indices. The ceiling is one read of the
features at the DRAM read bandwidth measured in the same run.
"""

import math

import pytest
import torch

import vlmkern
from vlmkern.methods import EVS

import _util

CASES = [("qwen25vl7b_64x196x3584", 64, 196, 3584), ("qwen25vl7b_32x196x3584", 32, 196, 3584),
         ("llava_ov_32x196x896", 32, 196, 896)]


def _eager_evs(x: torch.Tensor, rate: float) -> torch.Tensor:
    """x [T, N, D] -> kept indices (ascending)."""
    T, N, _ = x.shape
    cos = torch.nn.functional.cosine_similarity(x[1:], x[:-1], dim=-1)
    dis = torch.cat([torch.full((N,), 255.0, dtype=cos.dtype), (1 - cos).flatten()])
    keep = max(N, math.floor(T * N * (1 - rate)))
    return torch.argsort(dis, descending=True, stable=True)[:keep].sort().values


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_evs_select(benchmark, case):
    _, T, N, D = case
    rate = 0.75
    evs = EVS(rate)
    # Rotate among enough videos that the working set (>= 1 GB) is not cache-resident.
    n_vid = max(2, math.ceil(1.2e9 / (T * N * D * 2)))
    vids = [torch.randn(1, T, N, D, dtype=torch.bfloat16) for _ in range(n_vid)]
    it = {"k": 0, "b": 0}

    def kern():
        it["k"] = (it["k"] + 1) % n_vid
        return evs.select(vids[it["k"]])

    def base():
        it["b"] = (it["b"] + 1) % n_vid
        return _eager_evs(vids[it["b"]][0], rate)

    # the same kept set as the definition evaluated in fp32 (the bf16 baseline
    # rounds its cosines to bf16 and so breaks near-ties differently)
    assert torch.equal(evs.select(vids[0]).nonzero()[:, 1], _eager_evs(vids[0][0].float(), rate))
    t_k, t_b = _util.ab_times(kern, base, rounds=9)
    benchmark.pedantic(kern, rounds=9, warmup_rounds=1)
    ceil = _util.ceilings()
    read_s = T * N * D * 2 / (ceil["dram_read_GBps"] * 1e9)
    benchmark.extra_info.update({
        "threads": torch.get_num_threads(), "cpu_isa": vlmkern._C.cpu_isa(),
        "time_vlmkern_ms": t_k * 1e3, "time_eager_ms": t_b * 1e3, "speedup": t_b / t_k,
        "time_one_read_at_dram_bw_ms": read_s * 1e3, "x_of_one_read": t_k / read_s,
        "GBps_vlmkern": T * N * D * 2 / t_k / 1e9, **ceil})


# -- pixel_dedup before the vision encoder ------------------------------------------

def _qwen25_vision(depth=32):
    """Qwen2.5-VL-7B's vision tower (random weights, fp32): 32 blocks of width
    1280, patch 14, 2x2 merge into 3584 channels."""
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    torch.manual_seed(0)
    cfg = Qwen2_5_VLVisionConfig(depth=depth, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                 out_hidden_size=3584, patch_size=14, spatial_merge_size=2,
                                 temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31])
    cfg._attn_implementation = "sdpa"
    return Qwen2_5_VisionTransformerPretrainedModel(cfg).eval()


def _frames_448(groups: int, repeat_every: int = 0):
    """pixel_values_videos of `groups` temporal groups of 448x448 (32x32 patches of
    2 x 14 x 14 x 3 values); with repeat_every=2, every second group repeats the
    one before (half the groups repeat)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(groups, 1024, 1176, generator=g)
    if repeat_every:
        for i in range(1, groups, repeat_every):
            x[i] = x[i - 1]
    return x.view(groups * 1024, 1176), torch.tensor([[groups, 32, 32]])


def test_pixel_dedup_vs_encoder(benchmark):
    """pixel_dedup over 32 frames of 448x448 (16 groups) against the encoder's
    time per group (measured on 2 groups: the tower attends within a group, so
    its cost is linear in groups)."""
    import time

    x, grid = _frames_448(16)
    t_op, _ = _util.ab_times(lambda: vlmkern.ops.pixel_dedup(x, grid, 0.0), lambda: None, rounds=9)
    benchmark.pedantic(lambda: vlmkern.ops.pixel_dedup(x, grid, 0.0), rounds=9, warmup_rounds=1)
    tower = _qwen25_vision()
    x2, grid2 = _frames_448(2)
    with torch.no_grad():
        tower(x2, grid_thw=grid2)  # warm-up
        t0 = time.perf_counter()
        tower(x2, grid_thw=grid2)
        t_enc2 = time.perf_counter() - t0
    per_group = t_enc2 / 2
    benchmark.extra_info.update({
        "threads": torch.get_num_threads(), "time_pixel_dedup_16_groups_ms": t_op * 1e3,
        "time_encoder_2_groups_s": t_enc2, "encoder_s_per_group": per_group,
        "pixel_dedup_share_of_encoder_16_groups": t_op / (16 * per_group),
        "GBps_pixel_dedup": 2 * x.numel() * 4 * 15 / 16 / t_op / 1e9})


def test_encoder_with_half_the_groups_repeating(benchmark):
    """get_video_features of a Qwen2.5-VL model (the real tower's size) on 4
    groups of 448x448, two of them repeats: unpatched vs pixel_dedup (tol 0)."""
    import time

    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tower = _qwen25_vision()
    # a one-layer toy language model: only get_video_features runs here
    text = dict(vocab_size=128, hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=4, num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]})
    vision = dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=64)
    model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(vision_config=vision, text_config=text)).eval()
    model.model.visual = tower  # the real tower's size
    x, grid = _frames_448(4, repeat_every=2)

    def run():
        with torch.no_grad():
            return torch.cat(model.model.get_video_features(x, grid, return_dict=True).pooler_output)

    ref = run()
    t0 = time.perf_counter()
    ref = run()
    t_full = time.perf_counter() - t0
    with vlmkern.apply(model, "pixel_dedup") as patch:
        out = run()
        t0 = time.perf_counter()
        out = run()
        t_dedup = time.perf_counter() - t0
        encoded = patch.dedup.last_encoded
    assert encoded == 2
    err = float((out - ref).abs().max() / ref.abs().max())
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update({"threads": torch.get_num_threads(), "groups": 4, "groups_encoded": encoded,
                                 "time_unpatched_s": t_full, "time_pixel_dedup_s": t_dedup,
                                 "speedup": t_full / t_dedup, "max_rel_diff_of_features": err})

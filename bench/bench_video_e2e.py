"""Video end to end: time to first token of a Qwen2.5-VL-shaped model with the
real vision tower's size (32 blocks of width 1280, random weights, fp32) and 28
decoder layers of Qwen2-VL-2B's width (hidden 1536, 12/2 heads, MLP 8960), on a
32-frame 224x224 video made from photographs (the demo's pan and zoom, twice
as slow) in which every second temporal group repeats the one before (8 of 16
groups; the rest all differ), per video method next to the unpatched model.

Per configuration, one prefill (`use_cache=True`, first token's logits), split
with forward hooks into:
- encoder: inside the vision tower;
- decoder stack: inside the language model and lm_head;
- the rest (embedding merge, the methods' scoring and selection, positions);
and the peak RSS growth during that prefill (the VmHWM mark reset before it).
One round per configuration (a prefill here takes tens of seconds on two
cores); the unpatched model is run once to warm up first.
"""

import os
import time

import numpy as np
import pytest
import torch

import vlmkern
from vlmkern import demo
from vlmkern.demo_video import demo_video, qwen_video_inputs
from vlmkern.methods import EVS, DyCoke, PixelDedup, VidCom2

# VLMKERN_BENCH_SMOKE=1: a tiny tower, 2 decoder layers and 8 frames of 56x56, to
# check that the benchmark runs (its figures mean nothing).
SMOKE = os.environ.get("VLMKERN_BENCH_SMOKE") == "1"


def _fixed_mmap_threshold():
    """What the demo's children get from MALLOC_MMAP_THRESHOLD_: glibc otherwise
    raises its mmap threshold as large blocks are freed, and the resident size
    then follows its caching rather than the live tensors (the peak column of
    one configuration came out 17% above the unpatched run's without it)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 65536)
    libc.mallopt(M_TRIM_THRESHOLD, 0)


_fixed_mmap_threshold()
FRAMES, SIDE, LAYERS, DEPTH = (8, 56, 2, 2) if SMOKE else (32, 224, 28, 32)

CONFIGS = {
    "evs_0.75": lambda: [EVS(0.75)],
    "dycoke_0.7": lambda: [DyCoke(0.7)],
    "vidcom2_0.25": lambda: [VidCom2(0.25)],
    "pixel_dedup": lambda: [PixelDedup(0.0)],
    "pixel_dedup+evs_0.75": lambda: [PixelDedup(0.0), EVS(0.75)],
}


def _kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


class _Split:
    """Wall time inside the vision tower and inside the decoder stack during one forward."""

    def __init__(self, model):
        self.encoder = self.decoder = 0.0
        self._hooks = []
        for name, mod in (("encoder", model.model.visual), ("decoder", model.model.language_model),
                          ("decoder", model.lm_head)):
            self._hooks.append(mod.register_forward_pre_hook(lambda *a, n=name: self._start(n)))
            self._hooks.append(mod.register_forward_hook(lambda *a, n=name: self._stop(n)))

    def _start(self, name):
        setattr(self, f"_t_{name}", time.perf_counter())

    def _stop(self, name):
        setattr(self, name, getattr(self, name) + time.perf_counter() - getattr(self, f"_t_{name}"))

    def remove(self):
        for h in self._hooks:
            h.remove()


def _prefill(model, inputs):
    split = _Split(model)
    model.model.rope_deltas = None
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak-RSS mark to the current RSS
        rss0 = _kb("VmRSS:")
        t = time.perf_counter()
        with torch.no_grad():
            out = model(**inputs, use_cache=True, logits_to_keep=1)
        total = time.perf_counter() - t
        peak = max(_kb("VmHWM:") - rss0, 0) * 1024
    finally:
        split.remove()
    return {"ttft_s": total, "encoder_s": split.encoder, "decoder_s": split.decoder,
            "other_s": total - split.encoder - split.decoder, "peak_extra_MiB": peak / 2**20,
            "logits": out.logits[:, -1].float()}


def _video_half_repeating(frames=32, side=224):
    """The demo video's pan and zoom (every frame distinct: the demo's holds
    would add repeats of their own), with every second temporal group (two
    frames) replaced by the group before it: exactly half the groups repeat."""
    v = demo_video(2 * frames, side)[frames // 2:frames // 2 + frames].copy()
    for g in range(1, frames // 2, 2):
        v[2 * g:2 * g + 2] = v[2 * g - 2:2 * g]
    return v


@pytest.fixture(scope="module")
def setup():
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    model = demo.random_qwen2_5_vl(num_layers=LAYERS)
    torch.manual_seed(1)
    vcfg = Qwen2_5_VLVisionConfig(depth=DEPTH, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                  out_hidden_size=1536, patch_size=14, spatial_merge_size=2,
                                  temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31][:DEPTH // 8] or [DEPTH - 1])
    vcfg._attn_implementation = "sdpa"
    model.model.visual = Qwen2_5_VisionTransformerPretrainedModel(vcfg).eval()
    inputs = qwen_video_inputs(_video_half_repeating(FRAMES, SIDE))
    _prefill(model, inputs)  # warm-up
    base = _prefill(model, inputs)
    return model, inputs, base


@pytest.mark.parametrize("config", list(CONFIGS))
def test_video_ttft(benchmark, setup, config):
    model, inputs, base = setup
    runs = []
    with vlmkern.apply(model, CONFIGS[config]()) as patch:
        # one round: the table's time is this prefill (with the split's hooks)
        benchmark.pedantic(lambda: runs.append(_prefill(model, inputs)), rounds=1, iterations=1)
        r = runs[0]
        _, kept = demo.visual_counts(inputs["input_ids"], demo.VIDEO_ID, patch)  # from the keep mask
        encoded = patch.dedup.last_encoded if getattr(patch, "dedup", None) else FRAMES // 2
    cos = torch.nn.functional.cosine_similarity(base["logits"], r["logits"], dim=-1).mean().item()
    info = {"threads": torch.get_num_threads(), "cpu_isa": vlmkern._C.cpu_isa(),
            "video_tokens": int((inputs["input_ids"] == demo.VIDEO_ID).sum()),
            "groups_encoded": encoded, "first_token_logits_cosine": cos,
            "first_token_logits_max_abs_diff": float((base["logits"] - r["logits"]).abs().max()),
            "ttft_speedup": base["ttft_s"] / r["ttft_s"],
            "encoder_speedup": base["encoder_s"] / max(r["encoder_s"], 1e-9),
            "decoder_speedup": base["decoder_s"] / r["decoder_s"]}
    for k in ("ttft_s", "encoder_s", "decoder_s", "other_s", "peak_extra_MiB"):
        info[f"{k}_unpatched"] = base[k]
        info[f"{k}_{config}"] = r[k]
    info["kept_tokens"] = kept
    benchmark.extra_info.update(info)
    print(f"\n{config}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in info.items()))
    assert np.isfinite(cos)

"""End to end: prefill of a Qwen2.5-VL model at Qwen2-VL-2B's decoder width
(28 layers, hidden 1536, 12/2 heads, MLP 8960; random weights, fp32) on a real
photo giving 1024 visual tokens and 33 text tokens, unpatched SDPA against
FastV (K=3, keep 0.25).

Two figures, measured A B A B in one process:
- decoder stack: from the merged input embeddings to the first token's logits
  (forward hooks around the language model and lm_head inside the real forward);
- time to first token: the whole forward, vision encoder included (a small
  2-layer vision tower here, so this ratio is close to the decoder's; a real
  Qwen2-VL-2B tower, 32 layers x 1280, would add about the same absolute time to
  both sides and pull the ratio down).
"""

import statistics
import time

import pytest
import torch

import vlmkern
from vlmkern import demo


class _Timer:
    """Wall time spent inside the language model + lm_head during one forward."""

    def __init__(self, model):
        self.spent = 0.0
        self._hooks = []
        for mod in (model.model.language_model, model.lm_head):
            self._hooks.append(mod.register_forward_pre_hook(self._pre))
            self._hooks.append(mod.register_forward_hook(self._post))

    def _pre(self, *a):
        self._t = time.perf_counter()

    def _post(self, *a):
        self.spent += time.perf_counter() - self._t

    def remove(self):
        for h in self._hooks:
            h.remove()


def _prefill(model, inputs):
    timer = _Timer(model)
    try:
        t = time.perf_counter()
        with torch.no_grad():
            out = model(**inputs, use_cache=True, logits_to_keep=1)
        total = time.perf_counter() - t
    finally:
        timer.remove()
    return total, timer.spent, out.logits[:, -1].float()


@pytest.mark.parametrize("layers", [28])
def test_prefill_fastv_vs_sdpa(benchmark, layers):
    model = demo.random_qwen2_5_vl(num_layers=layers)
    inputs, n_img = demo.qwen_image_inputs(demo.photo(), side=896, text_before=12, text_after=19)
    assert n_img >= 1024 and inputs["input_ids"].shape[1] - n_img <= 64
    rounds = 3
    base_tot, base_dec, fast_tot, fast_dec = [], [], [], []
    _prefill(model, inputs)  # warm-up
    for _ in range(rounds):
        model.model.rope_deltas = None
        t, d, base_logits = _prefill(model, inputs)
        base_tot.append(t)
        base_dec.append(d)
        patch = vlmkern.apply(model, method="fastv", layer=3, keep_ratio=0.25)
        try:
            model.model.rope_deltas = None
            t, d, fast_logits = _prefill(model, inputs)
        finally:
            patch.revert()
        fast_tot.append(t)
        fast_dec.append(d)
    med = statistics.median
    info = {
        "threads": torch.get_num_threads(),
        "layers": layers,
        "visual_tokens": n_img,
        "text_tokens": inputs["input_ids"].shape[1] - n_img,
        "decoder_unpatched_s": med(base_dec),
        "decoder_fastv_s": med(fast_dec),
        "decoder_speedup": med(base_dec) / med(fast_dec),
        "ttft_unpatched_s": med(base_tot),
        "ttft_fastv_s": med(fast_tot),
        "ttft_speedup": med(base_tot) / med(fast_tot),
        "first_token_logits_cosine": torch.nn.functional.cosine_similarity(
            base_logits, fast_logits, dim=-1).mean().item(),
    }
    benchmark.extra_info.update(info)
    patch = vlmkern.apply(model, method="fastv", layer=3, keep_ratio=0.25)
    try:
        benchmark.pedantic(lambda: _prefill(model, inputs), rounds=1, iterations=1)
    finally:
        patch.revert()


def _text_inputs(n: int = 32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 30000, (1, n), generator=gen)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_e2e_w4a8_decode_and_fastv_prefill(benchmark):
    """One table: decode tokens/s of the Qwen2-VL-2B-shaped decoder (28 layers,
    hidden 1536, MLP 8960; random weights; a 32000-token vocabulary instead of
    151936) in bf16, fp32 and W4A8 (int4 g128 weights, int8 activations, fp32
    around the GEMMs), on a 32-token text prompt, 32 new tokens; then prefill and
    decode on the 1024-visual-token photo prompt for fp32, W4A8 and W4A8 + FastV
    (K=3, keep 0.25). bf16 is not run on the photo prompt: without AMX or
    AVX512-BF16 its prefill here would take minutes (bf16 F.linear runs at
    ~20 GFLOP/s on this CPU)."""
    import copy

    new_tokens = 32
    model = demo.random_qwen2_5_vl(num_layers=28)
    text = _text_inputs()
    photo, n_img = demo.qwen_image_inputs(demo.photo(), side=896, text_before=12, text_after=19)
    rows = {}

    def run(name, m, inputs, weights, patch=None):
        m.model.rope_deltas = None
        r = demo._run(m, inputs, new_tokens, demo.IMAGE_ID, patch)
        rows[name] = {"prefill_s": r.prefill_s, "decode_tok_s": r.decode_tok_s,
                      "peak_rss_MiB": r.peak_bytes / 2**20, "linear_weight_MiB": weights / 2**20,
                      "visual_tokens": f"{r.visual_in}->{r.visual_out}"}  # measured kept count

    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    run("bf16 text32", bf16, text, demo.linear_weight_bytes(bf16))
    del bf16
    run("fp32 text32", model, text, demo.linear_weight_bytes(model))
    run("fp32 photo", model, photo, demo.linear_weight_bytes(model))
    vlmkern.quantize(model, "w4a8", group_size=128, progress=False)
    wq = demo.linear_weight_bytes(model)
    run("w4a8 text32", model, text, wq)
    run("w4a8 photo", model, photo, wq)
    patch = vlmkern.apply(model, method="fastv", layer=3, keep_ratio=0.25)
    try:
        run("w4a8+fastv photo", model, photo, wq, patch)
    finally:
        patch.revert()
    assert rows["w4a8+fastv photo"]["visual_tokens"] == f"{n_img}->{max(1, round(n_img * 0.25))}"
    info = {"threads": torch.get_num_threads(), "rows": rows,
            "decode_speedup_w4a8_vs_bf16": rows["w4a8 text32"]["decode_tok_s"] / rows["bf16 text32"]["decode_tok_s"],
            "decode_speedup_w4a8_vs_fp32": rows["w4a8 text32"]["decode_tok_s"] / rows["fp32 text32"]["decode_tok_s"],
            "prefill_speedup_w4a8_vs_fp32": rows["fp32 photo"]["prefill_s"] / rows["w4a8 photo"]["prefill_s"],
            "prefill_speedup_w4a8_fastv_vs_fp32": rows["fp32 photo"]["prefill_s"] / rows["w4a8+fastv photo"]["prefill_s"]}
    benchmark.extra_info.update(info)
    print("\n" + "\n".join(f"{k:>18}: " + ", ".join(f"{kk} {vv:.3g}" if isinstance(vv, float) else f"{kk} {vv}"
                                                      for kk, vv in v.items()) for k, v in rows.items()))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)

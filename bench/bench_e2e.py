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

"""`vlmkern demo`: a real VLM architecture with random weights on a real photo,
run once unpatched and once with FastV, side by side.

No network is needed: the configuration is Qwen2.5-VL's architecture at a width
that runs in seconds on a 2-core CPU (or a real checkpoint with ``--model``), the
picture is scikit-image's bundled ``astronaut`` photograph, and the image
processor is transformers' offline Qwen2-VL processor. With random weights the
generated tokens are meaningless; the table shows what pruning changes (visual
tokens, prefill time, peak memory, decode speed) and how many generated tokens
agree with the unpatched model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

# Qwen2.5-VL text stack at Qwen2-VL-2B's width (hidden 1536, 12 query / 2 KV heads,
# MLP 8960), fewer layers by default; a small vision tower.
TEXT_VOCAB = 32000
IMAGE_ID, VIDEO_ID, VSTART_ID, VEND_ID = 31990, 31991, 31992, 31993


def qwen2_5_vl_config(num_layers: int = 8, hidden: int = 1536, heads: int = 12, kv_heads: int = 2,
                      intermediate: int = 8960, attn_implementation: str = "sdpa"):
    from transformers import Qwen2_5_VLConfig

    vision = dict(depth=2, hidden_size=256, intermediate_size=512, num_heads=4, out_hidden_size=hidden,
                  patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                  fullatt_block_indexes=[1])
    text = dict(vocab_size=TEXT_VOCAB, hidden_size=hidden, intermediate_size=intermediate,
                num_hidden_layers=num_layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                max_position_embeddings=32768,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                 "mrope_section": [16, 24, 24]},
                pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg = Qwen2_5_VLConfig(vision_config=vision, text_config=text, image_token_id=IMAGE_ID,
                           video_token_id=VIDEO_ID, vision_start_token_id=VSTART_ID,
                           vision_end_token_id=VEND_ID)
    for c in (cfg, cfg.text_config, cfg.vision_config):
        c._attn_implementation = attn_implementation
    return cfg


def random_qwen2_5_vl(seed: int = 0, dtype=torch.float32, **kw):
    """Qwen2_5_VLForConditionalGeneration with random weights (see qwen2_5_vl_config)."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(qwen2_5_vl_config(**kw)).to(dtype).eval()
    model.generation_config.eos_token_id = None  # random weights: always generate max_new_tokens
    model.generation_config.pad_token_id = 0
    return model


def photo(name: str = "astronaut"):
    """A real photograph shipped inside scikit-image (no download): HxWx3 uint8."""
    from skimage import data

    return getattr(data, name)()


def qwen_image_inputs(image, *, side: int = 896, text_before: int = 12, text_after: int = 20,
                      batch: int = 1, seed: int = 0):
    """Model inputs for one photo resized to side x side pixels: (side/28)^2
    visual tokens after Qwen's 2x2 merge (896 -> 1024 tokens), between random
    text tokens (the random-weight model has no tokenizer)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(min_pixels=side * side, max_pixels=side * side)
    from PIL import Image

    img = Image.fromarray(image).resize((side, side))
    pix = proc(images=[img] * batch, return_tensors="pt")
    grid = pix["image_grid_thw"]
    n_tokens = int(grid[0].prod()) // 4
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        pre = torch.randint(3, 30000, (text_before,), generator=gen).tolist()
        post = torch.randint(3, 30000, (text_after,), generator=gen).tolist()
        rows.append(pre + [VSTART_ID] + [IMAGE_ID] * n_tokens + [VEND_ID] + post)
    ids = torch.tensor(rows)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "mm_token_type_ids": (ids == IMAGE_ID).to(torch.int32),
        "pixel_values": pix["pixel_values"],
        "image_grid_thw": grid,
    }, n_tokens


class PeakRSS:
    """Peak resident memory growth inside the block (Linux VmHWM, reset on entry)."""

    @staticmethod
    def _kb(field):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
        return 0

    def __enter__(self):
        self.before = self._kb("VmRSS:")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        return self

    def __exit__(self, *exc):
        self.peak_bytes = max(self._kb("VmHWM:") - self.before, 0) * 1024


@dataclass
class RunResult:
    visual_in: int
    visual_out: int
    prefill_s: float
    peak_bytes: int
    decode_tok_s: float
    tokens: list


class _StepClock:
    """A logits processor that only records when each generation step ends:
    the first call closes the prefill, the rest time the decode steps."""

    def __init__(self):
        self.stamps = []

    def __call__(self, input_ids, scores):
        self.stamps.append(time.perf_counter())
        return scores


def _run(model, inputs, max_new_tokens, visual_in, visual_out):
    from transformers import LogitsProcessorList

    clock = _StepClock()
    with torch.no_grad(), PeakRSS() as mem:
        t0 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             logits_processor=LogitsProcessorList([clock]))
    new = out[:, inputs["input_ids"].shape[1]:]
    prefill = clock.stamps[0] - t0
    steps = len(clock.stamps) - 1
    decode = steps * new.shape[0] / (clock.stamps[-1] - clock.stamps[0]) if steps else float("nan")
    return RunResult(visual_in, visual_out, prefill, mem.peak_bytes, decode, new[0].tolist())


def main(args) -> int:
    import vlmkern

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if args.model:
        return _main_checkpoint(args)
    print(f"vlmkern demo: Qwen2.5-VL architecture, {args.layers} decoder layers, hidden 1536 "
          f"(random weights), {torch.get_num_threads()} threads, fp32")
    print(f"image: scikit-image 'astronaut' photograph resized to {args.side}x{args.side}")
    model = random_qwen2_5_vl(num_layers=args.layers)
    inputs, n_img = qwen_image_inputs(photo(), side=args.side)
    kept = max(1, round(n_img * args.keep_ratio))
    print(f"prompt: {inputs['input_ids'].shape[1]} tokens, {n_img} of them visual\n")
    base = _run(model, inputs, args.max_new_tokens, n_img, n_img)
    patch = vlmkern.apply(model, method="fastv", layer=args.layer, keep_ratio=args.keep_ratio)
    try:
        fast = _run(model, inputs, args.max_new_tokens, n_img, kept)
    finally:
        patch.revert()
    w_float = linear_weight_bytes(model.model.language_model)
    quant = None
    if args.quant != "none":
        vlmkern.quantize(model, args.quant, group_size=128, progress=True)
        patch = vlmkern.apply(model, method="fastv", layer=args.layer, keep_ratio=args.keep_ratio)
        try:
            quant = _run(model, inputs, args.max_new_tokens, n_img, kept)
        finally:
            patch.revert()
    runs = [base, fast] + ([quant] if quant else [])
    heads = ["unpatched", f"FastV K={args.layer} keep={args.keep_ratio}"] + (
        [f"+ {args.quant.upper()} g128"] if quant else [])
    w_quant = linear_weight_bytes(model.model.language_model)
    rows = [("visual tokens in -> out", [f"{r.visual_in} -> {r.visual_out}" for r in runs]),
            ("prefill (time to 1st token)", [f"{r.prefill_s:.2f} s" for r in runs]),
            ("peak memory (prefill + decode)", [f"{r.peak_bytes / 2**20:.0f} MiB" for r in runs]),
            ("decode", [f"{r.decode_tok_s:.1f} tok/s" for r in runs]),
            ("decoder linear weights", [f"{w_float / 2**20:.0f} MiB"] * 2 + (
                [f"{w_quant / 2**20:.0f} MiB"] if quant else [])),
            ("generated tokens agreeing", ["-"] + [
                f"{sum(a == b for a, b in zip(base.tokens, r.tokens))}/{len(base.tokens)}"
                for r in runs[1:]])]
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
    print(f"{'':{w0}}  " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths)))
    for name, cells in rows:
        print(f"{name:{w0}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    print(f"\nprefill speed-up: FastV {base.prefill_s / fast.prefill_s:.2f}x" + (
        f", FastV + {args.quant.upper()} {base.prefill_s / quant.prefill_s:.2f}x" if quant else "")
        + " (whole time to first token, vision encoder included)")
    print("Random weights: agreement measures how much the pruned (and quantized) model's greedy "
          "choices move, not answer quality.")
    return 0


def linear_weight_bytes(module) -> int:
    """Bytes of the linear-layer weights under ``module`` (W4A8: nibbles + scales)."""
    from vlmkern.nn import W4A8Linear

    total = 0
    for m in module.modules():
        if isinstance(m, W4A8Linear):
            total += m.weight_bytes()
        elif isinstance(m, torch.nn.Linear):
            total += m.weight.numel() * m.weight.element_size()
    return total


def _main_checkpoint(args) -> int:
    """A real checkpoint (a local path or a hub id already in the local cache)."""
    import vlmkern
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from PIL import Image

    processor = AutoProcessor.from_pretrained(args.model)
    model = AutoModelForImageTextToText.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": "Describe this picture."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=[Image.fromarray(photo())], text=[prompt], return_tensors="pt")
    image_id = getattr(model.config, "image_token_id", None) or getattr(model.config, "image_token_index")
    n_img = int((inputs["input_ids"] == image_id).sum())
    base = _run(model, inputs, args.max_new_tokens, n_img, n_img)
    patch = vlmkern.apply(model, method="fastv", layer=args.layer, keep_ratio=args.keep_ratio)
    try:
        fast = _run(model, inputs, args.max_new_tokens, n_img, max(1, round(n_img * args.keep_ratio)))
    finally:
        patch.revert()
    results = [("unpatched", base), ("fastv", fast)]
    if args.quant != "none":
        vlmkern.quantize(model, args.quant, group_size=128, progress=True)
        patch = vlmkern.apply(model, method="fastv", layer=args.layer, keep_ratio=args.keep_ratio)
        try:
            results.append((f"fastv+{args.quant}", _run(model, inputs, args.max_new_tokens, n_img,
                                                        max(1, round(n_img * args.keep_ratio)))))
        finally:
            patch.revert()
    for name, r in results:
        print(f"{name}: visual {r.visual_in}->{r.visual_out}, prefill {r.prefill_s:.2f} s, "
              f"decode {r.decode_tok_s:.1f} tok/s: {processor.decode(r.tokens, skip_special_tokens=True)!r}")
    return 0

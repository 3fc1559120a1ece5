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
    visual_in: int  # image tokens of sample 0 in the prompt
    visual_out: int  # of them, those the model kept (from the patch's keep mask)
    prefill_s: float
    peak_bytes: int
    decode_tok_s: float
    tokens: list
    linear_weight_bytes: int = 0
    groups_encoded: str = "-"  # video: temporal groups the vision encoder ran on / all


class _StepClock:
    """A logits processor that only records when each generation step ends:
    the first call closes the prefill, the rest time the decode steps."""

    def __init__(self):
        self.stamps = []

    def __call__(self, input_ids, scores):
        self.stamps.append(time.perf_counter())
        return scores


def visual_counts(input_ids, image_token_id: int, patch=None) -> tuple[int, int]:
    """(image tokens of sample 0, how many of them the last pruning prefill kept).

    Measured from the patch's keep mask (``patch.pruner.last_keep_mask``), not
    from the keep ratio: without a patch, or when its prefill pruned nothing,
    every image token counts as kept."""
    img = input_ids[0] == image_token_id
    n_in = int(img.sum())
    pruner = getattr(patch, "pruner", None)
    mask = None if pruner is None else pruner.last_keep_mask
    n_out = n_in if mask is None else int((mask[0].cpu() & img).sum())
    return n_in, n_out


def _run(model, inputs, max_new_tokens, image_token_id: int, patch=None):
    """One greedy ``generate``: prefill time, decode rate, peak RSS growth, and
    the visual tokens in and kept (see visual_counts)."""
    from transformers import LogitsProcessorList

    if getattr(patch, "pruner", None) is not None:
        patch.pruner.last_keep_mask = None  # what this call keeps, not an earlier one
    clock = _StepClock()
    with torch.no_grad(), PeakRSS() as mem:
        t0 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             logits_processor=LogitsProcessorList([clock]))
    new = out[:, inputs["input_ids"].shape[1]:]
    prefill = clock.stamps[0] - t0
    steps = len(clock.stamps) - 1
    decode = steps * new.shape[0] / (clock.stamps[-1] - clock.stamps[0]) if steps else float("nan")
    n_in, n_out = visual_counts(inputs["input_ids"], image_token_id, patch)
    return RunResult(n_in, n_out, prefill, mem.peak_bytes, decode, new[0].tolist())


CONFIGS = ("unpatched", "fastv", "fastv+quant")
# the video part (vlmkern.demo_video): "video:" + one of demo_video.VIDEO_CONFIGS


def _model(args):
    """The demo's model: the checkpoint at ``args.model``, or random weights."""
    if args.model:
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText.from_pretrained(args.model, dtype=torch.float32).eval()
    return random_qwen2_5_vl(num_layers=args.layers)


def _inputs(args, model, side: int | None = None):
    """(inputs, image token id) for the photo at ``side`` pixels (default: the
    demo's size; the checkpoint's processor chooses its own)."""
    if args.model:
        from transformers import AutoProcessor

        from PIL import Image

        processor = AutoProcessor.from_pretrained(args.model)
        messages = [{"role": "user", "content": [{"type": "image"},
                                                 {"type": "text", "text": "Describe this picture."}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        img = Image.fromarray(photo())
        if side:
            img = img.resize((side, side))
        inputs = processor(images=[img], text=[prompt], return_tensors="pt")
        image_id = getattr(model.config, "image_token_id", None)
        if image_id is None:
            image_id = model.config.image_token_index
        return dict(inputs), int(image_id)
    return qwen_image_inputs(photo(), side=side or args.side)[0], IMAGE_ID


def run_config(name: str, args, return_model: bool = False):
    """Build the model and run one configuration of the demo (``CONFIGS``);
    with ``return_model``, also the model after the run (reverted)."""
    import vlmkern

    if name.startswith("video:"):
        return _run_video_config(name[len("video:"):], args, return_model)
    if name not in CONFIGS:
        raise ValueError(f"config must be one of {CONFIGS}, got {name!r}")
    model = _model(args)
    inputs, image_id = _inputs(args, model)
    if name == "fastv+quant":
        vlmkern.quantize(model, args.quant, group_size=128, progress=True)
    patch = None
    if name != "unpatched":
        patch = vlmkern.apply(model, method="fastv", layer=args.layer, keep_ratio=args.keep_ratio)
    # Warm-up on a 56x56 picture: the first call of each code path faults in its
    # code pages and thread pools, which would count as this run's memory (the
    # small warm-up leaves little allocated memory behind).
    result = _measured(model, patch, _inputs(args, model, side=56)[0], inputs, args, image_id)
    return (result, model) if return_model else result


def _measured(model, patch, warm, inputs, args, token_id: int) -> RunResult:
    """A one-token warm-up generate on ``warm``, then the measured one on
    ``inputs``; the patch is reverted afterwards (also on error)."""
    try:
        _run(model, warm, 1, token_id, patch)
        result = _run(model, inputs, args.max_new_tokens, token_id, patch)
        dedup = getattr(patch, "dedup", None)
        if "video_grid_thw" in inputs:
            groups = int(inputs["video_grid_thw"][:, 0].sum())
            result.groups_encoded = f"{dedup.last_encoded if dedup else groups}/{groups}"
    finally:
        if patch is not None:
            patch.revert()
    lm = getattr(model.model, "language_model", model.model)
    result.linear_weight_bytes = linear_weight_bytes(lm)
    return result


def _run_video_config(name: str, args, return_model: bool = False):
    """One video configuration (demo_video.VIDEO_CONFIGS) on the random model."""
    import vlmkern
    from vlmkern import demo_video as dv

    if name not in dv.VIDEO_CONFIGS:
        raise ValueError(f"video config must be one of {dv.VIDEO_CONFIGS}, got {name!r}")
    model = _model(args)
    inputs = dv.qwen_video_inputs(dv.demo_video(args.frames, args.video_side))
    warm = dv.qwen_video_inputs(dv.demo_video(4, 56))
    methods = dv.video_methods(name, args.rate, args.rho, args.tol, args.keep_ratio)
    patch = None if methods is None else vlmkern.apply(model, methods)
    result = _measured(model, patch, warm, inputs, args, VIDEO_ID)
    return (result, model) if return_model else result


# glibc's malloc raises its mmap threshold as large blocks are freed, so the
# resident size then follows the allocator's caching, not the live tensors
# (two identical runs differed by 10%); a fixed threshold returns every large
# block to the system when it is freed (identical runs agree within 1%).
_CHILD_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _run_in_fresh_process(name: str, args) -> RunResult:
    """run_config in a child process, so that its peak memory is its own
    (allocator caches and one-time initialisation of an earlier run in the same
    process would hide part of it)."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "result.json")
        cmd = [sys.executable, "-m", "vlmkern", "demo", "--run-config", name, "--result-json", out,
               "--layers", str(args.layers), "--side", str(args.side), "--layer", str(args.layer),
               "--keep-ratio", str(args.keep_ratio), "--max-new-tokens", str(args.max_new_tokens),
               "--quant", args.quant, "--threads", str(torch.get_num_threads()),
               "--frames", str(args.frames), "--video-side", str(args.video_side), "--rate", str(args.rate),
               "--rho", str(args.rho), "--tol", str(args.tol)]
        if args.model:
            cmd += ["--model", args.model]
        subprocess.run(cmd, check=True, env={**os.environ, **_CHILD_MALLOC_ENV})
        with open(out) as f:
            return RunResult(**json.load(f))


def main(args) -> int:
    import dataclasses
    import json

    torch.set_num_threads(args.threads or torch.get_num_threads())
    if getattr(args, "run_config", None):  # a child of the demo: one configuration
        r = run_config(args.run_config, args)
        with open(args.result_json, "w") as f:
            json.dump(dataclasses.asdict(r), f)
        return 0
    if args.model:
        print(f"vlmkern demo: {args.model}, {torch.get_num_threads()} threads, fp32")
    else:
        print(f"vlmkern demo: Qwen2.5-VL architecture, {args.layers} decoder layers, hidden 1536 "
              f"(random weights), {torch.get_num_threads()} threads, fp32")
    print(f"image: scikit-image 'astronaut' photograph" + ("" if args.model else
                                                            f" resized to {args.side}x{args.side}"))
    print("each configuration runs in a fresh process (its own peak memory)\n")
    names = ["unpatched", "fastv"] + (["fastv+quant"] if args.quant != "none" else [])
    runs = [_run_in_fresh_process(n, args) for n in names]
    base, fast = runs[0], runs[1]
    quant = runs[2] if len(runs) > 2 else None
    heads = ["unpatched", f"FastV K={args.layer} keep={args.keep_ratio}"] + (
        [f"+ {args.quant.upper()} g128"] if quant else [])
    rows = [("visual tokens in -> kept", [f"{r.visual_in} -> {r.visual_out}" for r in runs]),
            ("prefill (time to 1st token)", [f"{r.prefill_s:.2f} s" for r in runs]),
            ("peak memory (prefill + decode)", [f"{r.peak_bytes / 2**20:.0f} MiB" for r in runs]),
            ("decode", [f"{r.decode_tok_s:.1f} tok/s" for r in runs]),
            ("decoder linear weights", [f"{r.linear_weight_bytes / 2**20:.0f} MiB" for r in runs]),
            ("generated tokens agreeing", _agreement(base, runs))]
    _print_table(heads, rows)
    print(f"\nprefill speed-up: FastV {base.prefill_s / fast.prefill_s:.2f}x" + (
        f", FastV + {args.quant.upper()} {base.prefill_s / quant.prefill_s:.2f}x" if quant else "")
        + " (whole time to first token, vision encoder included)")
    if args.model:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(args.model)
        for head, r in zip(heads, runs):
            print(f"{head}: {processor.decode(r.tokens, skip_special_tokens=True)!r}")
    else:
        print("Random weights: agreement measures how much the pruned (and quantized) model's greedy "
              "choices move, not answer quality.")
    if args.frames and not args.model:
        _video_table(args)
    return 0


def _video_table(args) -> None:
    from vlmkern.demo_video import VIDEO_CONFIGS

    print(f"\nvideo: {args.frames} frames of {args.video_side}x{args.video_side} made from scikit-image "
          "photographs (hold, pan, zoom, hold; two frames per temporal patch)")
    runs = [_run_in_fresh_process("video:" + n, args) for n in VIDEO_CONFIGS]
    base = runs[0]
    heads = ["unpatched", f"pixel_dedup tol={args.tol:g}", f"EVS rate={args.rate:g}",
             "pixel_dedup + EVS", f"DyCoke rho={args.rho:g}", f"VidCom2 keep={args.keep_ratio:g}",
             f"FastVID keep={args.keep_ratio:g}"]
    rows = [("video tokens in -> kept", [f"{r.visual_in} -> {r.visual_out}" for r in runs]),
            ("encoder groups run", [r.groups_encoded for r in runs]),
            ("prefill (time to 1st token)", [f"{r.prefill_s:.2f} s" for r in runs]),
            ("peak memory (prefill + decode)", [f"{r.peak_bytes / 2**20:.0f} MiB" for r in runs]),
            ("decode", [f"{r.decode_tok_s:.1f} tok/s" for r in runs]),
            ("generated tokens agreeing", _agreement(base, runs))]
    _print_table(heads, rows)


def _agreement(base, runs) -> list:
    """Cells: how many generated tokens of each run after the first equal the first run's."""
    return ["-"] + [f"{sum(a == b for a, b in zip(base.tokens, r.tokens))}/{len(base.tokens)}"
                    for r in runs[1:]]


def _print_table(heads, rows) -> None:
    """Right-aligned columns: ``heads`` over ``rows`` of ``(name, cells)``."""
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(heads)]
    print(f"{'':{w0}}  " + "  ".join(f"{h:>{w}}" for h, w in zip(heads, widths)))
    for name, cells in rows:
        print(f"{name:{w0}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))


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

"""Tiny vision-language models built from configs with random weights, for tests.

Each builder seeds torch itself, so two calls with the same ``seed`` (and any
``attn_implementation``) give models with identical weights: a test can build an
eager twin of an sdpa model to read attention probabilities from.

    model, inputs = tiny_llava("sdpa")
    model, inputs = tiny_qwen2_5_vl("eager", prompts=((3, 5), (1, 2)))  # batch of 2

``prompts`` lists, per sample, (text tokens before the image, text tokens after
it); samples of different lengths are left-padded, the way ``generate`` wants.
"""

from __future__ import annotations

import torch

VOCAB = 128
PAD = 0
# Llava
LLAVA_IMAGE = 120
LLAVA_PATCHES = 16  # 8x8 image, patch 2 -> 4x4 patches (the CLS token is dropped)
# Qwen2.5-VL
QWEN_IMAGE, QWEN_VIDEO, QWEN_VSTART, QWEN_VEND = 120, 121, 122, 123
QWEN_GRID = (1, 8, 8)  # patches (t, h, w); spatial merge 2 -> 16 image tokens


def _text_ids(gen: torch.Generator, n: int) -> list[int]:
    return torch.randint(1, 110, (n,), generator=gen).tolist()


def _left_pad(rows: list[list[int]]):
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), PAD, dtype=torch.long)
    mask = torch.zeros((len(rows), L), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, L - len(r):] = torch.tensor(r)
        mask[b, L - len(r):] = 1
    return ids, mask


def tiny_llava(attn_implementation: str = "sdpa", *, prompts=((3, 5),), num_layers: int = 6,
               seed: int = 0):
    """A LlavaForConditionalGeneration (CLIP vision tower, Llama language model with
    grouped-query attention) and its inputs: ``input_ids``, ``attention_mask``,
    ``pixel_values`` (one 8x8 image per sample, 16 image tokens each)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=8, patch_size=2, projection_dim=32)
    text = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=256, pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=LLAVA_IMAGE,
                         image_seq_length=LLAVA_PATCHES)
    config._attn_implementation = attn_implementation
    config.text_config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = attn_implementation
    model = LlavaForConditionalGeneration(config).eval()
    # Random init leaves the logits nearly flat; a larger lm_head makes greedy choices
    # well separated so that token-level comparisons are not decided by rounding.
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.generation_config.eos_token_id = None  # always generate max_new_tokens
    gen = torch.Generator().manual_seed(seed + 1)
    rows = [_text_ids(gen, pre) + [LLAVA_IMAGE] * LLAVA_PATCHES + _text_ids(gen, post)
            for pre, post in prompts]
    ids, mask = _left_pad(rows)
    pixel_values = torch.randn(len(rows), 3, 8, 8, generator=gen)
    return model, {"input_ids": ids, "attention_mask": mask, "pixel_values": pixel_values}


def tiny_qwen2_5_vl(attn_implementation: str = "sdpa", *, prompts=((3, 5),), num_layers: int = 6,
                    seed: int = 0, grids=None):
    """A Qwen2_5_VLForConditionalGeneration and its inputs: ``input_ids``,
    ``attention_mask``, ``mm_token_type_ids``, ``pixel_values`` and
    ``image_grid_thw``. By default one 8x8-patch image per sample (16 image tokens
    after the 2x2 merge, on a 4x4 M-RoPE grid); ``grids`` gives each sample its own
    patch grid (t, h, w) instead (h, w even; None: no image), for ragged image-token
    counts."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  patch_size=2, spatial_merge_size=2, temporal_patch_size=2, window_size=8,
                  fullatt_block_indexes=[1])
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [2, 3, 3]},
                pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, image_token_id=QWEN_IMAGE,
                              video_token_id=QWEN_VIDEO, vision_start_token_id=QWEN_VSTART,
                              vision_end_token_id=QWEN_VEND)
    config._attn_implementation = attn_implementation
    config.text_config._attn_implementation = attn_implementation
    config.vision_config._attn_implementation = attn_implementation
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.generation_config.eos_token_id = None
    gen = torch.Generator().manual_seed(seed + 1)
    grids = [tuple(QWEN_GRID)] * len(prompts) if grids is None else grids
    rows = []
    for (pre, post), g in zip(prompts, grids):
        image = [] if g is None else [QWEN_VSTART] + [QWEN_IMAGE] * (g[0] * g[1] * g[2] // 4) + [QWEN_VEND]
        rows.append(_text_ids(gen, pre) + image + _text_ids(gen, post))
    ids, mask = _left_pad(rows)
    grids = [tuple(g) for g in grids if g is not None]
    patch_dim = 3 * 2 * 2 * 2  # channels * temporal_patch_size * patch_size**2
    n_patches = sum(t * h * w for t, h, w in grids)
    pixel_values = torch.randn(n_patches, patch_dim, generator=gen)
    grid = torch.tensor([list(g) for g in grids], dtype=torch.long).view(-1, 3)
    mm = (ids == QWEN_IMAGE).to(torch.int32)
    return model, {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": mm,
                   "pixel_values": pixel_values, "image_grid_thw": grid}


def text_only(inputs: dict, image_token: int) -> dict:
    """The same prompts with the image placeholders (and pixel inputs) removed."""
    keep = inputs["input_ids"][0] != image_token
    out = {"input_ids": inputs["input_ids"][:, keep], "attention_mask": inputs["attention_mask"][:, keep]}
    if "mm_token_type_ids" in inputs:
        out["mm_token_type_ids"] = inputs["mm_token_type_ids"][:, keep]
    return out


def sample(inputs: dict, b: int) -> dict:
    """Sample ``b`` of a left-padded batch as a batch of one, without its padding."""
    real = inputs["attention_mask"][b].bool()
    out = {"input_ids": inputs["input_ids"][b:b + 1, real],
           "attention_mask": inputs["attention_mask"][b:b + 1, real]}
    if "mm_token_type_ids" in inputs:
        out["mm_token_type_ids"] = inputs["mm_token_type_ids"][b:b + 1, real]
    if "image_grid_thw" in inputs:  # Qwen: pixel rows are the patches of every image in turn
        has_image = inputs["mm_token_type_ids"].bool().any(dim=1).tolist()
        if has_image[b]:
            i = sum(has_image[:b])  # this sample's image index
            grid = inputs["image_grid_thw"]
            sizes = grid.prod(-1).tolist()
            start = sum(sizes[:i])
            out["pixel_values"] = inputs["pixel_values"][start:start + sizes[i]]
            out["image_grid_thw"] = grid[i:i + 1]
    else:
        out["pixel_values"] = inputs["pixel_values"][b:b + 1]
    return out


def tiny_qwen_video(family: str = "qwen2_5_vl", attn_implementation: str = "sdpa", *,
                    samples=((3, (4, 4, 4), 5),), num_layers: int = 4, seed: int = 0,
                    repeat_frames: bool = False, image_first: bool = False):
    """A Qwen2-VL or Qwen2.5-VL model and a batch of video prompts.

    ``samples``: per sample ``(text before, video patch grid (t, h, w) or None,
    text after)``; the video's language-model grid is ``t x h/2 x w/2`` tokens
    (each temporal patch is two input frames). ``repeat_frames``: every temporal
    patch of a video gets the pixels of its first one (so every frame's tokens
    are identical). ``image_first``: each sample with a video also has an 8x8
    image before it (mixed image + video prompts). Returns the model (lm_head
    scaled as in :func:`tiny_qwen2_5_vl`) and ``input_ids``, ``attention_mask``,
    ``mm_token_type_ids``, ``pixel_values_videos``, ``video_grid_thw`` (plus
    ``pixel_values``, ``image_grid_thw`` with ``image_first``)."""
    torch.manual_seed(seed)
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": [2, 3, 3]},
                pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    ids = dict(image_token_id=QWEN_IMAGE, video_token_id=QWEN_VIDEO, vision_start_token_id=QWEN_VSTART,
               vision_end_token_id=QWEN_VEND)
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig as Config
        from transformers import Qwen2_5_VLForConditionalGeneration as Model
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                      patch_size=2, spatial_merge_size=2, temporal_patch_size=2, window_size=8,
                      fullatt_block_indexes=[1])
    elif family == "qwen2_vl":
        from transformers import Qwen2VLConfig as Config
        from transformers import Qwen2VLForConditionalGeneration as Model
        vision = dict(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2, patch_size=2,
                      spatial_merge_size=2, temporal_patch_size=2)
    else:
        raise ValueError(family)
    config = Config(vision_config=vision, text_config=text, **ids)
    for c in (config, config.text_config, config.vision_config):
        c._attn_implementation = attn_implementation
    model = Model(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.generation_config.eos_token_id = None
    gen = torch.Generator().manual_seed(seed + 1)
    patch_dim = 3 * 2 * 2 * 2
    rows, types, vids, vgrids, imgs, igrids = [], [], [], [], [], []
    for pre, g, post in samples:
        row, typ = _text_ids(gen, pre), [0] * pre
        if g is not None:
            if image_first:
                n_img = QWEN_GRID[0] * QWEN_GRID[1] * QWEN_GRID[2] // 4
                row += [QWEN_VSTART] + [QWEN_IMAGE] * n_img + [QWEN_VEND]
                typ += [0] + [1] * n_img + [0]
                imgs.append(torch.randn(QWEN_GRID[0] * QWEN_GRID[1] * QWEN_GRID[2], patch_dim, generator=gen))
                igrids.append(list(QWEN_GRID))
            t, h, w = g
            n_tok = t * h * w // 4
            row += [QWEN_VSTART] + [QWEN_VIDEO] * n_tok + [QWEN_VEND]
            typ += [0] + [2] * n_tok + [0]
            frame = lambda: torch.randn(h * w, patch_dim, generator=gen)  # noqa: E731
            first = frame()
            vids.append(torch.cat([first] + [first.clone() if repeat_frames else frame()
                                             for _ in range(t - 1)]))
            vgrids.append([t, h, w])
        rows.append(row + _text_ids(gen, post))
        types.append(typ + [0] * post)
    input_ids, mask = _left_pad(rows)
    mm = torch.zeros_like(input_ids, dtype=torch.int32)
    for b, typ in enumerate(types):
        mm[b, input_ids.shape[1] - len(typ):] = torch.tensor(typ, dtype=torch.int32)
    out = {"input_ids": input_ids, "attention_mask": mask, "mm_token_type_ids": mm}
    if vids:
        out["pixel_values_videos"] = torch.cat(vids)
        out["video_grid_thw"] = torch.tensor(vgrids, dtype=torch.long)
    if imgs:
        out["pixel_values"] = torch.cat(imgs)
        out["image_grid_thw"] = torch.tensor(igrids, dtype=torch.long)
    return model, out


def video_sample(inputs: dict, b: int) -> dict:
    """Sample ``b`` of a :func:`tiny_qwen_video` batch as a batch of one, without padding."""
    real = inputs["attention_mask"][b].bool()
    out = {k: inputs[k][b:b + 1, real] for k in ("input_ids", "attention_mask", "mm_token_type_ids")}
    for key, grid_key, typ in (("pixel_values_videos", "video_grid_thw", 2), ("pixel_values", "image_grid_thw", 1)):
        if grid_key not in inputs:
            continue
        has = (inputs["mm_token_type_ids"] == typ).any(dim=1).tolist()
        if not has[b]:
            continue
        i = sum(has[:b])
        sizes = inputs[grid_key].prod(-1).tolist()
        start = sum(sizes[:i])
        out[key] = inputs[key][start:start + sizes[i]]
        out[grid_key] = inputs[grid_key][i:i + 1]
    return out


# LLaVA-OneVision / LLaVA-NeXT-Video
LV_IMAGE, LV_VIDEO = 120, 121
LV_SIDE = 12  # frame side in pixels; patch 2 -> 6x6 patches -> 3x3 = 9 tokens per frame after pooling
LV_FRAME_TOKENS = 9


def tiny_llava_video(family: str = "llava_onevision", attn_implementation: str = "sdpa", *,
                     samples=((3, 4, 5),), num_layers: int = 4, seed: int = 0,
                     repeat_frames: bool = False):
    """A LLaVA-OneVision (SigLIP tower, Qwen2 language model, a trailing
    ``image_newline`` per video) or LLaVA-NeXT-Video (CLIP tower, Llama, average
    pooling) model and a batch of video prompts.

    ``samples``: per sample ``(text before, frames T or None, text after)``;
    every video has :data:`LV_FRAME_TOKENS` tokens per frame (OneVision: ``T *
    9 + 1`` placeholders, NeXT-Video: ``T * 9``); the videos of one batch share
    ``T`` (``pixel_values_videos`` is one ``[num_videos, T, 3, 12, 12]``
    tensor). ``repeat_frames``: every frame gets the first frame's pixels.
    Returns the model (lm_head scaled as in :func:`tiny_llava`) and
    ``input_ids``, ``attention_mask``, ``pixel_values_videos``."""
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    if family == "llava_onevision":
        from transformers import (LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, Qwen2Config,
                                  SiglipVisionConfig)

        vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=2, image_size=LV_SIDE, patch_size=2)
        config = LlavaOnevisionConfig(vision_config=vision, text_config=Qwen2Config(**common),
                                      image_token_id=LV_IMAGE, video_token_id=LV_VIDEO)
        Model, tail = LlavaOnevisionForConditionalGeneration, 1
    elif family == "llava_next_video":
        from transformers import (CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig,
                                  LlavaNextVideoForConditionalGeneration)

        vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, image_size=LV_SIDE, patch_size=2, projection_dim=32)
        config = LlavaNextVideoConfig(vision_config=vision, text_config=LlamaConfig(**common),
                                      image_token_id=LV_IMAGE, video_token_id=LV_VIDEO,
                                      spatial_pool_stride=2, spatial_pool_mode="average")
        Model, tail = LlavaNextVideoForConditionalGeneration, 0
    else:
        raise ValueError(family)
    for c in (config, config.text_config, config.vision_config):
        c._attn_implementation = attn_implementation
    model = Model(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.generation_config.eos_token_id = None
    gen = torch.Generator().manual_seed(seed + 1)
    frames = {t for _, t, _ in samples if t is not None}
    if len(frames) > 1:
        raise ValueError(f"the videos of one batch share T, got {sorted(frames)}")
    rows, vids = [], []
    for pre, t, post in samples:
        row = _text_ids(gen, pre)
        if t is not None:
            row += [LV_VIDEO] * (t * LV_FRAME_TOKENS + tail)
            first = torch.randn(3, LV_SIDE, LV_SIDE, generator=gen)
            vids.append(torch.stack([first] + [first.clone() if repeat_frames else
                                               torch.randn(3, LV_SIDE, LV_SIDE, generator=gen)
                                               for _ in range(t - 1)]))
        rows.append(row + _text_ids(gen, post))
    input_ids, mask = _left_pad(rows)
    out = {"input_ids": input_ids, "attention_mask": mask}
    if vids:
        out["pixel_values_videos"] = torch.stack(vids)
    return model, out


def llava_video_sample(inputs: dict, b: int) -> dict:
    """Sample ``b`` of a :func:`tiny_llava_video` batch as a batch of one, without padding."""
    real = inputs["attention_mask"][b].bool()
    out = {k: inputs[k][b:b + 1, real] for k in ("input_ids", "attention_mask")}
    has = (inputs["input_ids"] == LV_VIDEO).any(dim=1).tolist()
    if has[b]:
        i = sum(has[:b])
        out["pixel_values_videos"] = inputs["pixel_values_videos"][i:i + 1]
    return out


def tiny_qwen3_video(attn_implementation: str = "sdpa", *, samples=((3, (4, 4, 4), 5),), num_layers: int = 4,
                     seed: int = 0, image_first: bool = False, repeat_frames: bool = False):
    """A Qwen3-VL model (deepstack features from both vision blocks into the
    first two decoder layers; q/k norms) and a batch of video prompts laid out
    as its processor does: every frame (temporal patch) is its own run of
    ``h/2 * w/2`` video tokens between vision start/end tokens, after two
    "timestamp" text tokens. ``samples``, ``image_first``, ``repeat_frames``
    as in :func:`tiny_qwen_video`; the same input keys."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  patch_size=2, spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0, 1],
                  num_position_embeddings=16)
    text = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3],
                                 "mrope_interleaved": True},
                pad_token_id=PAD, bos_token_id=1, eos_token_id=2)
    config = Qwen3VLConfig(vision_config=vision, text_config=text, image_token_id=QWEN_IMAGE,
                           video_token_id=QWEN_VIDEO, vision_start_token_id=QWEN_VSTART,
                           vision_end_token_id=QWEN_VEND)
    for c in (config, config.text_config, config.vision_config):
        c._attn_implementation = attn_implementation
    model = Qwen3VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    model.generation_config.eos_token_id = None
    gen = torch.Generator().manual_seed(seed + 1)
    patch_dim = 3 * 2 * 2 * 2
    rows, types, vids, vgrids, imgs, igrids = [], [], [], [], [], []
    for pre, g, post in samples:
        row, typ = _text_ids(gen, pre), [0] * pre
        if g is not None:
            if image_first:
                n_img = QWEN_GRID[0] * QWEN_GRID[1] * QWEN_GRID[2] // 4
                row += [QWEN_VSTART] + [QWEN_IMAGE] * n_img + [QWEN_VEND]
                typ += [0] + [1] * n_img + [0]
                imgs.append(torch.randn(QWEN_GRID[0] * QWEN_GRID[1] * QWEN_GRID[2], patch_dim, generator=gen))
                igrids.append(list(QWEN_GRID))
            t, h, w = g
            n_frame = h * w // 4
            for _ in range(t):
                row += _text_ids(gen, 2) + [QWEN_VSTART] + [QWEN_VIDEO] * n_frame + [QWEN_VEND]
                typ += [0, 0, 0] + [2] * n_frame + [0]
            first = torch.randn(h * w, patch_dim, generator=gen)
            vids.append(torch.cat([first] + [first.clone() if repeat_frames else
                                             torch.randn(h * w, patch_dim, generator=gen) for _ in range(t - 1)]))
            vgrids.append([t, h, w])
        rows.append(row + _text_ids(gen, post))
        types.append(typ + [0] * post)
    input_ids, mask = _left_pad(rows)
    mm = torch.zeros_like(input_ids, dtype=torch.int32)
    for b, typ in enumerate(types):
        mm[b, input_ids.shape[1] - len(typ):] = torch.tensor(typ, dtype=torch.int32)
    out = {"input_ids": input_ids, "attention_mask": mask, "mm_token_type_ids": mm}
    if vids:
        out["pixel_values_videos"] = torch.cat(vids)
        out["video_grid_thw"] = torch.tensor(vgrids, dtype=torch.long)
    if imgs:
        out["pixel_values"] = torch.cat(imgs)
        out["image_grid_thw"] = torch.tensor(igrids, dtype=torch.long)
    return model, out

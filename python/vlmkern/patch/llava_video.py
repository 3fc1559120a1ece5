"""Adapters for the LLaVA video families: ``LlavaOnevisionForConditionalGeneration``
and ``LlavaNextVideoForConditionalGeneration`` (transformers 5.x).

Layout: ``model.model`` (``LlavaOnevisionModel`` / ``LlavaNextVideoModel``)
receives ``input_ids`` and ``pixel_values_videos`` ``[num_videos, T, C, H, W]``;
its ``get_video_features`` runs the vision tower on every frame, projects, and
pools each frame's ``s x s`` patch grid (``s = image_size // patch_size``) to
``N`` tokens in raster order:

- LLaVA-OneVision: bilinear resize to ``ceil(s / 2) x ceil(s / 2)``, and after
  the ``T * N`` frame tokens of a video one ``image_newline`` token (which the
  video methods keep: it is not a frame token);
- LLaVA-NeXT-Video: ``spatial_pool_stride`` pooling to ``(s // stride)^2``, no
  trailing token.

``model.model.language_model`` is the decoder stack (Qwen2 for OneVision,
usually Llama for NeXT-Video; any model whose attention applies its module's
``apply_rotary_pos_emb`` to ``q_proj`` / ``k_proj`` outputs with 1-D
positions). Positions are 1-D: the layers receive ``(cos, sin)`` ``[B, L, D]``.
A video method pruning before the first layer renumbers the kept prompt by
default (``positions="renumber"`` of :func:`vlmkern.apply`), as the released
video methods for these models did, or keeps the original ids (``"keep"``).
"""

from __future__ import annotations

import math
import sys

from vlmkern.patch.core import Parts, VideoLayout

ONEVISION = "llava_onevision"
NEXT_VIDEO = "llava_next_video"
MODEL_TYPES = (ONEVISION, NEXT_VIDEO)


def parts(model) -> Parts:
    """The pieces of a LLaVA-OneVision or LLaVA-NeXT-Video model the pruners hook into."""
    config = model.config
    model_type = config.model_type
    mm_model = model.model if hasattr(model, "lm_head") else model
    lm = mm_model.language_model
    rotary = getattr(sys.modules.get(type(lm).__module__), "apply_rotary_pos_emb", None)
    attn = getattr(lm.layers[0], "self_attn", None) if len(lm.layers) else None
    if rotary is None or attn is None or not all(hasattr(attn, a) for a in ("q_proj", "k_proj")):
        raise NotImplementedError(
            f"vlmkern: {model_type} with a {type(lm).__name__} language model is not supported "
            "(needs layers[i].self_attn.q_proj / k_proj and its module's apply_rotary_pos_emb)")
    if getattr(lm.config, "rope_parameters", {}).get("mrope_section") is not None:
        raise NotImplementedError(f"vlmkern: {model_type} with M-RoPE positions is not supported")
    types = set(getattr(lm.config, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"}:
        raise NotImplementedError(
            f"vlmkern: {model_type} with sliding-window layers is not supported (layer_types {sorted(types)})")

    side = config.vision_config.image_size // config.vision_config.patch_size
    if model_type == ONEVISION:
        n, tail = math.ceil(side / 2) ** 2, 1
    else:
        n, tail = (side // config.spatial_pool_stride) ** 2, 0

    def shapes(pixel_values_videos):
        if pixel_values_videos.dim() != 5:
            raise ValueError(f"vlmkern: {model_type}: pixel_values_videos must be [num_videos, T, C, H, W], "
                             f"got shape {tuple(pixel_values_videos.shape)}")
        return [(int(pixel_values_videos.shape[1]), n, tail)] * int(pixel_values_videos.shape[0])

    return Parts(mm_model=mm_model, lm=lm, image_token_id=config.image_token_id, rotary=rotary,
                 video_token_id=config.video_token_id,
                 video_layout=VideoLayout("pixel_values_videos", 0, shapes))

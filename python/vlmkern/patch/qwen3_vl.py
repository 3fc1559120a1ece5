"""Adapter for ``Qwen3VLForConditionalGeneration`` (transformers 5.x).

Layout: ``model.model`` (``Qwen3VLModel``) receives ``input_ids``,
``video_grid_thw`` and ``mm_token_type_ids`` and computes M-RoPE positions
``[3, B, L]`` as Qwen2.5-VL does; ``model.model.language_model``
(``Qwen3VLTextModel``) turns them into ``(cos, sin)`` ``[B, L, D]`` (sections
interleaved), so kept tokens keep their ``(t, h, w)`` triples. Differences from
Qwen2.5-VL that the pruners handle:

- each frame of a video (one temporal patch, ``(h / 2) * (w / 2)`` tokens) is a
  placeholder run of its own: the prompt puts a timestamp (``<1.5 seconds>``)
  and vision start/end tokens around every frame (``VideoLayout.frame_runs``);
- "deepstack": after its first decoder layers the text model adds features
  from intermediate vision layers at the visual positions
  (``_deepstack_process``); the pruners wrap it to add only the kept tokens'
  rows at their compacted positions;
- attention normalises queries and keys per head (``q_norm``, ``k_norm``)
  before RoPE, which FastV's scoring applies too.

``pixel_dedup`` works as on Qwen2.5-VL: the vision tower attends within each
temporal patch group (its position embeddings depend on ``h, w`` only), so a
repeated group's tokens and deepstack features are its anchor's; the prompt,
its timestamps and the grid stay as they are.
"""

from __future__ import annotations

from transformers.models.qwen3_vl import modeling_qwen3_vl

from vlmkern.patch.core import Parts, VideoLayout

MODEL_TYPE = "qwen3_vl"


def parts(model) -> Parts:
    """The pieces of a Qwen3-VL model the pruners hook into."""
    mm_model = model if isinstance(model, modeling_qwen3_vl.Qwen3VLModel) else model.model
    lm = mm_model.language_model
    types = set(getattr(lm.config, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"}:
        raise NotImplementedError(
            f"vlmkern: {MODEL_TYPE} with sliding-window layers is not supported (layer_types {sorted(types)})")
    m = int(model.config.vision_config.spatial_merge_size)

    def shapes(grid):
        return [(int(t), int(h) // m * (int(w) // m), 0) for t, h, w in grid.tolist()]

    return Parts(mm_model=mm_model, lm=lm, image_token_id=model.config.image_token_id,
                 rotary=modeling_qwen3_vl.apply_rotary_pos_emb, video_token_id=model.config.video_token_id,
                 video_layout=VideoLayout("video_grid_thw", 1, shapes, frame_runs=True),
                 video_grid_key="video_grid_thw", spatial_merge=m, mrope=True)

"""Adapter for ``Qwen2_5_VLForConditionalGeneration``.

Layout (transformers 5.x): ``model.model`` is the ``Qwen2_5_VLModel`` that
receives ``input_ids``, merges the vision features into the image placeholders
(``config.image_token_id``) and computes the M-RoPE position ids ``[3, B, L]``
(``get_rope_index``; ``generate`` passes ``[4, B, L]``, text positions first)
and ``rope_deltas``. ``model.model.language_model`` (``Qwen2_5_VLTextModel``)
turns them into ``(cos, sin)`` of shape ``[B, L, D]`` with the (t, h, w)
sections already interleaved, so gathering ``cos``/``sin`` at the kept tokens
keeps each token's original (t, h, w) triple; the layers also receive the 2-D
text ``position_ids`` (or None), gathered the same way.

``rope_deltas`` and every position of later tokens are computed by the model
from the *unpruned* input_ids and the unpruned attention mask (``generate``
extends both), so decoding continues the original numbering. In-LLM methods
prune image tokens only; video methods (placement ``pre_llm``) prune the video
tokens (``config.video_token_id``), one run of ``t * (h/2) * (w/2)`` placeholders
per row of ``video_grid_thw``, frames in order, each frame in raster order.
"""

from __future__ import annotations

from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl

from vlmkern.patch.core import Parts, VideoLayout

MODEL_TYPE = "qwen2_5_vl"


def parts(model) -> Parts:
    """The pieces of a Qwen2.5-VL model the pruners hook into."""
    return qwen_vl_parts(model, modeling_qwen2_5_vl, modeling_qwen2_5_vl.Qwen2_5_VLModel, MODEL_TYPE)


def qwen_vl_parts(model, modeling, mm_class, model_type: str) -> Parts:
    """Parts of a Qwen-VL family model (Qwen2-VL and Qwen2.5-VL share the
    layout): ``modeling`` is the family's modeling module, ``mm_class`` its
    multimodal ``...Model`` class."""
    mm_model = model if isinstance(model, mm_class) else model.model
    lm = mm_model.language_model
    types = set(lm.config.layer_types)
    if types != {"full_attention"}:
        raise NotImplementedError(
            f"vlmkern: {model_type} with sliding-window layers is not supported (layer_types {sorted(types)})")
    m = int(model.config.vision_config.spatial_merge_size)

    def shapes(grid):
        return [(int(t), int(h) // m * (int(w) // m), 0) for t, h, w in grid.tolist()]

    return Parts(mm_model=mm_model, lm=lm, image_token_id=model.config.image_token_id,
                 rotary=modeling.apply_rotary_pos_emb,
                 video_token_id=model.config.video_token_id,
                 video_layout=VideoLayout("video_grid_thw", 1, shapes),
                 video_grid_key="video_grid_thw", spatial_merge=m, mrope=True)

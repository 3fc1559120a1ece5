"""Adapter for ``Qwen2VLForConditionalGeneration``: the layout of Qwen2.5-VL
(see :mod:`vlmkern.patch.qwen2_5_vl`) with Qwen2-VL's classes (``Qwen2VLModel``,
``Qwen2VLTextModel``, ``modeling_qwen2_vl.apply_rotary_pos_emb``); its videos
use the same placeholder runs and ``video_grid_thw``.
"""

from __future__ import annotations

from transformers.models.qwen2_vl import modeling_qwen2_vl

from vlmkern.patch.core import Parts
from vlmkern.patch.qwen2_5_vl import qwen_vl_parts

MODEL_TYPE = "qwen2_vl"


def parts(model) -> Parts:
    """The pieces of a Qwen2-VL model the pruners hook into."""
    return qwen_vl_parts(model, modeling_qwen2_vl, modeling_qwen2_vl.Qwen2VLModel, MODEL_TYPE)

"""Adapter for ``LlavaForConditionalGeneration`` with a Llama language model.

Layout (transformers 5.x): ``model.model`` is the ``LlavaModel`` that receives
``input_ids`` and merges the image features into the placeholder tokens
(``config.image_token_id``); ``model.model.language_model`` is a ``LlamaModel``
whose ``layers[i].self_attn`` has ``q_proj``/``k_proj``, applies
``modeling_llama.apply_rotary_pos_emb`` with the ``position_embeddings`` it is
given, and scales by ``self_attn.scaling``. Positions are 1-D: the layers receive
``(cos, sin)`` of shape ``[B or 1, L, D]`` and 2-D ``position_ids``.
"""

from __future__ import annotations

from transformers.models.llama import modeling_llama
from transformers.models.llava import modeling_llava

from vlmkern.patch.core import Parts

MODEL_TYPE = "llava"
TEXT_MODEL_TYPES = ("llama",)


def parts(model) -> Parts:
    """The pieces of a Llava model the in-LLM pruner hooks into."""
    text_type = model.config.text_config.model_type
    if text_type not in TEXT_MODEL_TYPES:
        raise NotImplementedError(
            f"vlmkern: llava is supported with a {' or '.join(TEXT_MODEL_TYPES)} language model, "
            f"got {text_type!r}")
    mm_model = model if isinstance(model, modeling_llava.LlavaModel) else model.model
    lm = mm_model.language_model
    if not isinstance(lm, modeling_llama.LlamaModel):
        raise NotImplementedError(
            f"vlmkern: expected the llava language model to be a LlamaModel, got {type(lm).__name__}")
    return Parts(mm_model=mm_model, lm=lm, image_token_id=model.config.image_token_id,
                 rotary=modeling_llama.apply_rotary_pos_emb)

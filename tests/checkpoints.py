"""Real checkpoint directories, built offline: a small random-weight model of
each supported family saved with ``save_pretrained``, its processor config, and
a byte-level BPE tokenizer trained on the spot (``tokenizers``) over a few
hundred words with the family's special tokens. ``from_pretrained`` and
``AutoProcessor`` load them as they would a downloaded checkpoint.

    path = llava_checkpoint(tmp_dir)     # or qwen2_5_vl_checkpoint(tmp_dir)
"""

from __future__ import annotations

import torch

_WORDS = ("a an the picture photo image of in on at with and person man woman dog cat sky tree house "
          "red green blue white black small large left right top bottom describe this what is there "
          "astronaut flag space suit helmet smiling standing sitting looking camera background "
          "color shape object scene light dark one two three many near far front behind").split()


def _tokenizer(specials: list[str], **named):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [" ".join(_WORDS[i:] + _WORDS[:i]) for i in range(len(_WORDS))] * 3
    tok = Tokenizer(models.BPE(unk_token=specials[0]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named)


def _finish(model, path: str, processor) -> str:
    with torch.no_grad():  # random init leaves the logits flat: separate the greedy choices
        model.lm_head.weight.mul_(20.0)
    model.generation_config.eos_token_id = None  # always generate max_new_tokens
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def llava_checkpoint(path: str, num_layers: int = 6) -> str:
    """LlavaForConditionalGeneration (CLIP tower, Llama decoder) + LlavaProcessor."""
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaProcessor)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = _tokenizer(["<unk>", "<s>", "</s>", "<pad>", "<image>"], unk_token="<unk>", bos_token="<s>",
                     eos_token="</s>", pad_token="<pad>", padding_side="left")
    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=8, patch_size=2, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                       pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=16)
    model = LlavaForConditionalGeneration(config).eval()
    template = ("{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} "
                "{% else %}ASSISTANT: {% for c in m['content'] %}{{ c['text'] }}{% endfor %}</s>{% endif %}"
                "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8}),
        tokenizer=tok, patch_size=2, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=template)
    return _finish(model, path, processor)


def qwen2_5_vl_checkpoint(path: str, num_layers: int = 6) -> str:
    """Qwen2_5_VLForConditionalGeneration + Qwen2_5_VLProcessor (pictures of 16x16
    pixels: an 8x8 patch grid, 16 image tokens after the 2x2 merge)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left")
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    torch.manual_seed(0)
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=2,
                  spatial_merge_size=2, temporal_patch_size=2, window_size=8, fullatt_block_indexes=[1])
    text = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=num_layers,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}"
                "{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    pixels = dict(min_pixels=256, max_pixels=256, patch_size=2, merge_size=2, temporal_patch_size=2)
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessorPil(**pixels), tokenizer=tok,
                                    video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=template)
    return _finish(model, path, processor)


CHECKPOINTS = {"llava": llava_checkpoint, "qwen2_5_vl": qwen2_5_vl_checkpoint}

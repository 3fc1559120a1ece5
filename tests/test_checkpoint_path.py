"""The documented user path, end to end, from a real checkpoint directory
(tests/checkpoints.py builds one per family offline: save_pretrained weights,
processor config, a BPE tokenizer trained on the spot):

    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)     # on a real photo
    patch = vlmkern.apply(model, ...); model.generate(...); patch.revert()
    vlmkern.quantize(model); vlmkern.save_quantized(model, file)
    # a fresh process: from_pretrained + load_quantized + apply + generate -> the same tokens

and `vlmkern demo --model PATH` on it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import vlmkern
from checkpoints import CHECKPOINTS

PROMPT = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this picture."}]}]


@pytest.fixture(scope="module", params=list(CHECKPOINTS))
def checkpoint(request, tmp_path_factory):
    return request.param, CHECKPOINTS[request.param](str(tmp_path_factory.mktemp(request.param)))


def _load(path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmkern.demo import photo
    from PIL import Image

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(path)
    text = processor.apply_chat_template(PROMPT, add_generation_prompt=True)
    img = Image.fromarray(photo())
    inputs = processor(images=[img, img], text=[text, "A photo: " + text], return_tensors="pt", padding=True)
    return model, processor, dict(inputs)


def _generate(model, inputs, n=6):
    with torch.no_grad():
        return model.generate(**inputs, max_new_tokens=n, do_sample=False)


def test_user_path_from_a_checkpoint_directory(checkpoint, tmp_path):
    family, path = checkpoint
    model, processor, inputs = _load(path)
    image_id = model.config.image_token_id if family == "qwen2_5_vl" else model.config.image_token_index
    n_img = int((inputs["input_ids"][0] == image_id).sum())
    assert n_img == 16 and inputs["input_ids"].shape[0] == 2
    base = _generate(model, inputs)

    patch = vlmkern.apply(model, method="fastv", layer=2, keep_ratio=0.25)
    pruned = _generate(model, inputs)
    keep = patch.pruner.last_keep_mask
    assert all(int((keep[b] & (inputs["input_ids"][b] == image_id)).sum()) == 4 for b in range(2))
    assert pruned.shape == base.shape
    text = processor.batch_decode(pruned[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert len(text) == 2 and all(isinstance(t, str) for t in text)
    patch.revert()
    assert torch.equal(_generate(model, inputs), base)

    vlmkern.quantize(model, "w4a8", group_size=32, progress=False)
    patch = vlmkern.apply(model, method="fastv", layer=2, keep_ratio=0.25)
    want = _generate(model, inputs)
    patch.revert()
    file = str(tmp_path / "model-w4a8.safetensors")
    vlmkern.save_quantized(model, file)

    script = textwrap.dedent(f"""
        import json, sys, torch, vlmkern
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from test_checkpoint_path import _load, _generate
        model, _, inputs = _load({path!r})
        vlmkern.load_quantized(model, {file!r})
        patch = vlmkern.apply(model, method="fastv", layer=2, keep_ratio=0.25)
        print(json.dumps(_generate(model, inputs).tolist()))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == want.tolist()


def test_demo_runs_on_a_checkpoint_directory(checkpoint):
    family, path = checkpoint
    r = subprocess.run([sys.executable, "-m", "vlmkern", "demo", "--model", path, "--layer", "2",
                        "--max-new-tokens", "3"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "visual tokens in -> kept" in r.stdout and "16 -> 16" in r.stdout and "16 -> 4" in r.stdout, r.stdout
    assert "unpatched: '" in r.stdout  # the decoded answers of each configuration

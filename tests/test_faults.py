"""Faults: nothing is lost when work fails or is interrupted part-way.

- vlmkern.quantize raising inside a layer's quantization, or interrupted by
  KeyboardInterrupt, leaves the model as it was;
- save_quantized failing during the write leaves an existing file intact and
  no temporary file behind;
- a generate that raises in the middle of a patched model (a failing logits
  processor, a bad attention mask at decode) leaves the patch usable for the
  next call and revert() exact.
"""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

import vlmkern
from vlmkern.nn import W4A8Linear
from models import tiny_llava, tiny_qwen2_5_vl


def _state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: (type(m), dict(m._forward_hooks), dict(m._forward_pre_hooks)) for n, m in model.named_modules()})


def _assert_same(model, snap):
    state, mods = snap
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())
    assert {n: (type(m), dict(m._forward_hooks), dict(m._forward_pre_hooks))
            for n, m in model.named_modules()} == mods


@pytest.mark.parametrize("fault", [RuntimeError("a layer failed"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_quantize_fails_part_way_and_the_model_is_unchanged(monkeypatch, fault):
    model, inputs = tiny_qwen2_5_vl("sdpa")
    with torch.no_grad():
        before = model(**inputs).logits
    patch = vlmkern.apply(model, layer=2)  # hooks on q/k move with quantization: must come back too
    snap = _state(model)
    real = W4A8Linear.from_linear
    calls = []

    def failing(lin, *a, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise fault
        return real(lin, *a, **kw)

    monkeypatch.setattr(W4A8Linear, "from_linear", staticmethod(failing))
    with pytest.raises(type(fault)):
        vlmkern.quantize(model, progress=False)
    assert len(calls) == 5  # four layers had been replaced when it failed
    assert not vlmkern.quant.quantized_layers(model)
    _assert_same(model, snap)
    patch.revert()
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_save_quantized_is_atomic(monkeypatch, tmp_path):
    import safetensors.torch

    model, _ = tiny_llava("sdpa")
    vlmkern.quantize(model, progress=False)
    path = tmp_path / "q.safetensors"
    vlmkern.save_quantized(model, str(path))
    digest = _digest(path)
    real = safetensors.torch.save_model

    def failing(m, filename, metadata=None):
        real(m, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # half written, then the disk fills up
            f.truncate(os.path.getsize(filename) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", failing)
    vlmkern.quantize(model, progress=False, targets="lm_head")  # the model changed since
    with pytest.raises(OSError, match="No space left"):
        vlmkern.save_quantized(model, str(path))
    assert _digest(path) == digest  # the earlier file is intact
    assert os.listdir(tmp_path) == ["q.safetensors"]  # no temporary file left behind
    fresh, _ = tiny_llava("sdpa")
    vlmkern.load_quantized(fresh, str(path))  # and it still loads


class _FailAt(LogitsProcessor):
    def __init__(self, step):
        self.step, self.calls = step, 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == self.step:
            raise RuntimeError("a logits processor failed")
        return scores


@pytest.mark.parametrize("build", [tiny_llava, tiny_qwen2_5_vl], ids=["llava", "qwen2_5_vl"])
def test_generate_failing_mid_way_leaves_the_patch_usable(build):
    model, inputs = build("sdpa", prompts=((3, 5), (1, 2)))
    with torch.no_grad():
        before = model(**inputs).logits
    snap = _state(model)
    patch = vlmkern.apply(model, layer=2, keep_ratio=0.25)
    with torch.no_grad():
        want = model.generate(**inputs, max_new_tokens=6, do_sample=False)
        with pytest.raises(RuntimeError, match="a logits processor failed"):
            model.generate(**inputs, max_new_tokens=6, do_sample=False,
                           logits_processor=LogitsProcessorList([_FailAt(3)]))
        assert torch.equal(model.generate(**inputs, max_new_tokens=6, do_sample=False), want)

        # A bad attention mask at decode: the pruner refuses it, the next call works.
        out = model(**inputs, use_cache=True)
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        bad_mask = torch.ones(inputs["input_ids"].shape[0], 3, dtype=torch.long)
        with pytest.raises(RuntimeError, match="attention_mask covers|must match the size"):
            model(input_ids=nxt, attention_mask=bad_mask, past_key_values=out.past_key_values, use_cache=True)
        assert torch.equal(model.generate(**inputs, max_new_tokens=6, do_sample=False), want)
    patch.revert()
    _assert_same(model, snap)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)

"""The bad-input matrix: every public op, vlmkern.apply, vlmkern.quantize,
W4A8Linear, save_quantized / load_quantized and the CLI, fed what a user
should not pass. Each row ends in a clear exception naming the argument, or in
a documented result that the row checks; never a crash, a hang, an
out-of-bounds read or a silent wrong answer. Rows that touch a model or a file
also check that the model and the file are unchanged after the error.

A second device is the meta device here (no GPU on these machines): a CPU
tensor mixed with a meta one must be refused, not traced.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys

import pytest
import torch

import vlmkern
from vlmkern import ops
from vlmkern.nn import W4A8Linear
from vlmkern.reference import attention_mass as ref_attention_mass
from conftest import cpu_isa_params
from models import tiny_llava, tiny_qwen2_5_vl

g = torch.Generator().manual_seed(0)
Q, K = torch.randn(2, 4, 3, 16, generator=g), torch.randn(2, 2, 10, 16, generator=g)
S = torch.randn(2, 10, generator=g)
X = torch.randn(3, 64, generator=g)
NIB = torch.randint(0, 256, (16, 32), dtype=torch.uint8, generator=g)
WS = torch.rand(16, 2, generator=g) + 0.1
PACKED = ops.w4a8_pack(NIB, WS, 32)
CODES, XS, RS = ops.quantize_per_token_int8(X, 32)
META = torch.device("meta")

# (id, call, exception type, message pattern)
ERRORS = [
    # attention_mass
    *[(f"attention_mass q {dt}", lambda dt=dt: ops.attention_mass(Q.to(dt), K.to(dt)), NotImplementedError,
       "q: expected a float32, bfloat16 or float16")
      for dt in (torch.int32, torch.float64, torch.bool, torch.complex64)],
    ("attention_mass k dtype differs", lambda: ops.attention_mass(Q, K.double()), RuntimeError,
     "k: expected the dtype of q"),
    ("attention_mass device mix", lambda: ops.attention_mass(Q, K.to(META)), ValueError,
     "k and q must be on the same device"),
    ("attention_mass mask device mix", lambda: ops.attention_mass(Q, K, key_padding_mask=torch.ones(
        2, 10, dtype=torch.bool, device=META)), ValueError, "key_padding_mask and q must be on the same device"),
    ("attention_mass rank 3", lambda: ops.attention_mass(Q[0], K[0]), ValueError, "q: expected a 4-d"),
    ("attention_mass head dim 0", lambda: ops.attention_mass(Q[..., :0], K[..., :0]), ValueError,
     "q: expected a head dim >= 1"),
    ("attention_mass Lq 0", lambda: ops.attention_mass(Q[:, :, :0], K), RuntimeError, "1 <= Lq <= Lk"),
    ("attention_mass span reversed", lambda: ops.attention_mass(Q, K, 6, 3), RuntimeError, "key_start/key_end"),
    ("attention_mass span past Lk", lambda: ops.attention_mass(Q, K, 0, 11), RuntimeError, "key_end <= Lk"),
    ("attention_mass key_end float", lambda: ops.attention_mass(Q, K, 0, 9.5), TypeError, "key_end: expected an int"),
    ("attention_mass key_start bool", lambda: ops.attention_mass(Q, K, True), TypeError,
     "key_start: expected an int"),
    ("attention_mass causal int", lambda: ops.attention_mass(Q, K, causal=1), TypeError, "causal: expected a bool"),
    *[(f"attention_mass scale {v!r}", lambda v=v: ops.attention_mass(Q, K, scale=v), ValueError,
       "scale: expected a finite value > 0") for v in (0.0, -0.5, float("nan"), float("inf"))],
    ("attention_mass scale bool", lambda: ops.attention_mass(Q, K, scale=True), TypeError, "scale: expected a float"),
    ("attention_mass scale 0 (op)", lambda: torch.ops.vlmkern.attention_mass(Q, K, 0, 10, True, 0.0, None, None),
     RuntimeError, "scale: expected a finite value > 0"),
    ("attention_mass mask float", lambda: ops.attention_mass(Q, K, key_padding_mask=torch.ones(2, 10)), TypeError,
     "key_padding_mask: expected bool or integer"),
    ("attention_mass mask shape", lambda: ops.attention_mass(Q, K, key_padding_mask=torch.ones(
        2, 9, dtype=torch.bool)), RuntimeError, "key_padding_mask: expected shape"),
    ("attention_mass weights NaN", lambda: ops.attention_mass(Q, K, query_weights=torch.full((2, 3), float("nan"))),
     RuntimeError, "query_weights: expected finite values >= 0"),
    ("attention_mass weights negative", lambda: ops.attention_mass(Q, K, query_weights=-torch.ones(2, 3)),
     RuntimeError, "query_weights: expected finite values >= 0"),
    # topk_indices
    *[(f"topk scores {dt}", lambda dt=dt: ops.topk_indices(S.to(dt), 3), NotImplementedError,
       "scores: expected a float32, bfloat16 or float16")
      for dt in (torch.int64, torch.float64, torch.bool, torch.complex64)],
    ("topk scores rank 1", lambda: ops.topk_indices(S[0], 3), ValueError, "scores: expected a 2-d"),
    ("topk keep bool", lambda: ops.topk_indices(S, True), TypeError, "keep: expected an int"),
    ("topk keep float", lambda: ops.topk_indices(S, 2.5), TypeError, "keep: expected an int"),
    ("topk keep NaN", lambda: ops.topk_indices(S, float("nan")), TypeError, "keep: expected an int"),
    ("topk keep > N", lambda: ops.topk_indices(S, 11), ValueError, "keep: expected 0 <= keep <= N=10"),
    ("topk keep < 0", lambda: ops.topk_indices(S, -1), ValueError, "keep: expected 0 <= keep <= N=10"),
    ("topk keep tensor float", lambda: ops.topk_indices(S, torch.tensor([1.0, 2.0])), TypeError,
     "keep: expected an integer tensor"),
    ("topk keep tensor bool", lambda: ops.topk_indices(S, torch.tensor([True, False])), TypeError,
     "keep: expected an integer tensor"),
    ("topk keep tensor > N", lambda: ops.topk_indices(S, torch.tensor([1, 11])), ValueError,
     "keep: expected values in"),
    ("topk keep > k_max (op)", lambda: torch.ops.vlmkern.topk_indices(S, torch.tensor([1, 4]), 3), RuntimeError,
     r"keep: expected values in \[0, k_max=3\], got keep\[1\]=4"),
    ("topk keep shape", lambda: ops.topk_indices(S, torch.tensor([1, 2, 3])), ValueError, "keep: expected a tensor"),
    ("topk k_max bool", lambda: ops.topk_indices(S, 2, True), TypeError, "k_max: expected an int"),
    ("topk device mix", lambda: ops.topk_indices(S, torch.tensor([1, 2], device=META)), ValueError,
     "keep and scores must be on the same device"),
    # gather_kept
    ("gather index past L", lambda: ops.gather_kept(torch.randn(2, 5, 3), torch.tensor([[0, 5], [1, 2]])),
     IndexError, r"out of range \[0, L=5\)"),
    ("gather negative index", lambda: ops.gather_kept(torch.randn(2, 5, 3), torch.tensor([[0, -1], [1, 2]])),
     IndexError, "out of range"),
    ("gather offset past L", lambda: ops.gather_kept(torch.randn(2, 5, 3), torch.tensor([[0], [1]]), 5),
     IndexError, "out of range"),
    ("gather float indices", lambda: ops.gather_kept(torch.randn(2, 5, 3), torch.tensor([[0.0], [1.0]])),
     TypeError, "indices: expected an integer tensor"),
    ("gather batch mismatch", lambda: ops.gather_kept(torch.randn(3, 5), torch.zeros(2, 1, dtype=torch.long)),
     ValueError, "x: expected batch 1 or 2"),
    ("gather indices rank", lambda: ops.gather_kept(torch.randn(2, 5), torch.zeros(2, dtype=torch.long)),
     ValueError, r"indices: expected \[B, k\]"),
    # quantize_per_token_int8
    *[(f"quantize x {dt}", lambda dt=dt: ops.quantize_per_token_int8(X.to(dt), 32), NotImplementedError,
       "x: expected a float32, bfloat16 or float16") for dt in (torch.int8, torch.float64, torch.bool, torch.complex64)],
    ("quantize group_size bool", lambda: ops.quantize_per_token_int8(X, True), TypeError, "group_size: expected an int"),
    ("quantize group_size float", lambda: ops.quantize_per_token_int8(X, 32.0), TypeError, "group_size: expected an int"),
    ("quantize group_size 0", lambda: ops.quantize_per_token_int8(X, 0), RuntimeError, "group_size: expected a positive multiple of 8"),
    ("quantize group_size 12", lambda: ops.quantize_per_token_int8(X, 12), RuntimeError, "group_size: expected a positive multiple of 8"),
    ("quantize K not a multiple", lambda: ops.quantize_per_token_int8(X[:, :40], 32), RuntimeError, "x: K=40 is not divisible"),
    ("quantize K 0", lambda: ops.quantize_per_token_int8(X[:, :0], 32), RuntimeError, "x: K=0"),
    ("quantize rank 0", lambda: ops.quantize_per_token_int8(torch.tensor(1.0), 32), RuntimeError, r"x: expected a tensor \[..., K\]"),
    # w4a8_pack
    ("pack weight int8", lambda: ops.w4a8_pack(NIB.to(torch.int8), WS, 32), RuntimeError, "weight: expected uint8"),
    ("pack weight rank", lambda: ops.w4a8_pack(NIB.flatten(), WS, 32), RuntimeError, "weight: expected a 2-d"),
    ("pack scales float64", lambda: ops.w4a8_pack(NIB, WS.double(), 32), NotImplementedError, "scales: expected a float32"),
    ("pack scales shape", lambda: ops.w4a8_pack(NIB, WS[:, :1], 32), RuntimeError, "scales: expected shape"),
    *[(f"pack scale {v}", lambda v=v: ops.w4a8_pack(NIB, WS.index_fill(1, torch.tensor([1]), v), 32), RuntimeError,
       "scales: expected finite, strictly positive") for v in (0.0, -1.0, float("nan"), float("inf"))],
    ("pack no channels", lambda: ops.w4a8_pack(NIB[:0], WS[:0], 32), RuntimeError, "weight: expected at least one output channel"),
    ("pack device mix", lambda: ops.w4a8_pack(NIB, WS.to(META), 32), ValueError, "scales and weight must be on the same device"),
    # w4a8_gemm
    ("gemm codes float", lambda: ops.w4a8_gemm(CODES.float(), XS, RS, PACKED, WS, 32), RuntimeError, "codes: expected int8"),
    ("gemm x_scales float64", lambda: ops.w4a8_gemm(CODES, XS.double(), RS, PACKED, WS, 32), RuntimeError, "x_scales: expected float32"),
    ("gemm x_rowsums shape", lambda: ops.w4a8_gemm(CODES, XS, RS[:, :1], PACKED, WS, 32), RuntimeError, "x_rowsums: expected int32"),
    ("gemm unpacked weight", lambda: ops.w4a8_gemm(CODES, XS, RS, NIB, WS, 32), RuntimeError, "packed: expected the CPU layout"),
    *[(f"gemm w_scale {v}", lambda v=v: ops.w4a8_gemm(CODES, XS, RS, PACKED, WS.index_fill(0, torch.tensor([7]), v), 32),
       RuntimeError, "w_scales: expected finite, strictly positive") for v in (0.0, -1.0, float("nan"))],
    ("gemm bias int", lambda: ops.w4a8_gemm(CODES, XS, RS, PACKED, WS, 32, torch.ones(16, dtype=torch.int64)),
     NotImplementedError, "bias: expected a float32"),
    ("gemm bias shape", lambda: ops.w4a8_gemm(CODES, XS, RS, PACKED, WS, 32, torch.ones(15)), RuntimeError, "bias: expected shape"),
    ("gemm out_dtype int", lambda: ops.w4a8_gemm(CODES, XS, RS, PACKED, WS, 32, out_dtype=torch.int32), RuntimeError,
     "out_dtype: expected float32"),
    ("gemm group_size mismatch", lambda: ops.w4a8_gemm(CODES, XS, RS, PACKED, WS, 64), RuntimeError, "x_rowsums"),
    ("gemm device mix", lambda: ops.w4a8_gemm(CODES, XS, RS, PACKED, WS.to(META), 32), ValueError,
     "w_scales and codes must be on the same device"),
    # w4a8_linear
    ("linear x float64", lambda: ops.w4a8_linear(X.double(), PACKED, WS, 32), NotImplementedError, "x: expected a float32"),
    ("linear K mismatch", lambda: ops.w4a8_linear(X[:, :32], PACKED, WS, 32), RuntimeError, "w_scales: expected K/group_size"),
    ("linear device mix", lambda: ops.w4a8_linear(X, PACKED, WS.to(META), 32), ValueError,
     "w_scales and x must be on the same device"),
    # W4A8Linear
    ("W4A8Linear group_size 20", lambda: W4A8Linear.from_linear(torch.nn.Linear(64, 8), 20), ValueError,
     "group_size must be a positive multiple of 8"),
    ("W4A8Linear input width", lambda: W4A8Linear.from_linear(torch.nn.Linear(64, 8), 32)(torch.randn(2, 60)),
     ValueError, r"W4A8Linear: expected input \[..., 64\]"),
]


@pytest.mark.parametrize("name,call,exc,match", ERRORS, ids=[r[0] for r in ERRORS])
def test_bad_input_raises_a_clear_error(name, call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---- documented results ------------------------------------------------------------------

def test_empty_dimensions_give_empty_results():
    assert ops.attention_mass(Q[:0], K[:0]).shape == (0, 10)
    assert ops.attention_mass(Q, K, 4, 4).shape == (2, 0)
    assert ops.topk_indices(S[:, :0], 0).shape == (2, 0)
    assert ops.topk_indices(S[:0], 0).shape == (0, 0)
    assert ops.gather_kept(torch.randn(2, 5, 3), torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0, 3)
    codes, xs, rs = ops.quantize_per_token_int8(X[:0], 32)
    assert codes.shape == (0, 64) and xs.shape == (0,) and rs.shape == (0, 2)
    assert ops.w4a8_gemm(codes, xs, rs, PACKED, WS, 32).shape == (0, 16)
    assert ops.w4a8_linear(torch.randn(2, 0, 64), PACKED, WS, 32).shape == (2, 0, 16)


def test_overlapping_and_strided_views_read_like_their_copies():
    k_exp = torch.randn(2, 2, 1, 16).expand(2, 2, 10, 16)  # stride 0 over keys
    assert torch.equal(ops.attention_mass(Q, k_exp), ops.attention_mass(Q, k_exp.contiguous()))
    q_t = torch.randn(2, 3, 4, 16).transpose(1, 2)
    assert torch.equal(ops.attention_mass(q_t, K), ops.attention_mass(q_t.contiguous(), K))
    s_exp = torch.randn(1, 10).expand(3, 10)
    assert torch.equal(ops.topk_indices(s_exp, 4), ops.topk_indices(s_exp.contiguous(), 4))
    s_str = torch.randn(2, 20)[:, ::2]
    assert torch.equal(ops.topk_indices(s_str, 4), ops.topk_indices(s_str.contiguous(), 4))
    x_exp = torch.randn(1, 64).expand(3, 64)
    for a, b in zip(ops.quantize_per_token_int8(x_exp, 32), ops.quantize_per_token_int8(x_exp.contiguous(), 32)):
        assert torch.equal(a, b)
    c_exp = CODES[:1].expand(3, 64)
    assert torch.equal(ops.w4a8_gemm(c_exp, XS, RS[:1].expand(3, 2), PACKED, WS, 32),
                       ops.w4a8_gemm(c_exp.contiguous(), XS, RS[:1].expand(3, 2).contiguous(), PACKED, WS, 32))


@pytest.mark.parametrize("isa", cpu_isa_params()[:4])  # scalar .. avx512_bf16; others skip visibly
def test_nan_and_inf_make_the_batch_row_nan(isa, isa_cap):
    """NaN or Inf in q or k: that batch row's masses are NaN (as eager
    attention's probabilities), on every CPU path; the other rows are exact.
    (The vector paths used to drop NaN scores: their exp2 clamps NaN to 0.)"""
    isa_cap(isa)
    mask = torch.rand(2, 10, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[:, -1] = True
    for dt in (torch.float32, torch.bfloat16):
        q, k = Q.clone(), K.clone()
        q[0, 1, 2, 5] = float("nan")
        k[1, 0, 4, 0] = float("inf")
        out = ops.attention_mass(q.to(dt), k.to(dt), key_padding_mask=mask)
        want = ref_attention_mass(q.to(dt), k.to(dt), key_padding_mask=mask)
        assert out[0].isnan().all() and out[1].isnan().all() == want[1].isnan().all()
        assert want[0].isnan().all()
        clean = ops.attention_mass(Q.to(dt), K.to(dt), key_padding_mask=mask)
        assert not clean.isnan().any()


def test_nan_scores_rank_last_and_nan_rows_quantize_to_nan():
    s = torch.tensor([[0.5, float("nan"), -1.0, float("-inf")]])
    assert ops.topk_indices(s, 3).tolist() == [[0, 2, 3]]
    x = X.clone()
    x[1, 3] = float("nan")
    x[2, 0] = float("inf")
    codes, xs, _ = ops.quantize_per_token_int8(x, 32)
    assert xs[1].isnan() and xs[2].isnan() and not codes[1:].any()
    y = ops.w4a8_linear(x, PACKED, WS, 32)
    assert y[1:].isnan().all() and not y[0].isnan().any()


# ---- the patch, quantize, files, CLI --------------------------------------------------------

def _snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            {n: (type(m), dict(m._forward_hooks), dict(m._forward_pre_hooks), "generate" in m.__dict__)
             for n, m in model.named_modules()})


def _unchanged(model, snap):
    state, mods = snap
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())
    assert {n: (type(m), dict(m._forward_hooks), dict(m._forward_pre_hooks), "generate" in m.__dict__)
            for n, m in model.named_modules()} == mods


PATCH_ERRORS = [
    ("keep_ratio 0", dict(keep_ratio=0.0), ValueError, r"keep_ratio must be in \(0, 1\]"),
    ("keep_ratio NaN", dict(keep_ratio=float("nan")), ValueError, r"keep_ratio must be in \(0, 1\]"),
    ("keep_ratio bool", dict(keep_ratio=True), ValueError, r"keep_ratio must be in \(0, 1\]"),
    ("keep_ratio 1.5", dict(keep_ratio=1.5), ValueError, r"keep_ratio must be in \(0, 1\]"),
    ("layer 0", dict(layer=0), ValueError, "layer must be in"),
    ("layer past the model", dict(layer=6), ValueError, "layer must be in"),
    ("layer float", dict(layer=2.0), ValueError, "layer must be an int"),
    ("unknown method", dict(method="nope"), ValueError, "method must be one of"),
    ("unknown quant", dict(quant="w3a5"), ValueError, "quant must be None or one of"),
    ("bad quant targets", dict(quant="w4a8", quant_targets="everything"), ValueError, "targets: expected"),
    ("bad group_size", dict(quant="w4a8", group_size=20), ValueError, "group_size must be a positive multiple of 8"),
]


@pytest.mark.parametrize("name,kw,exc,match", PATCH_ERRORS, ids=[r[0] for r in PATCH_ERRORS])
def test_apply_refuses_and_leaves_the_model_as_it_was(name, kw, exc, match):
    model, _ = tiny_llava("sdpa")
    snap = _snapshot(model)
    with pytest.raises(exc, match=match):
        vlmkern.apply(model, **kw)
    _unchanged(model, snap)


def test_apply_on_a_patched_model_and_in_training_mode():
    model, inputs = tiny_llava("sdpa")
    patch = vlmkern.apply(model, layer=2)
    snap = _snapshot(model)
    with pytest.raises(RuntimeError, match="already patched"):
        vlmkern.apply(model, layer=3)
    _unchanged(model, snap)
    model.train()
    with pytest.raises(RuntimeError, match="inference only"):
        model(**inputs)
    model.eval()
    with torch.no_grad():
        model(**inputs)  # still usable
    patch.revert()


def test_prompts_without_text_or_without_images():
    """An image-only prompt (the last token is an image token, never pruned)
    and a text-only one both run; right padding is refused."""
    for build in (tiny_llava, tiny_qwen2_5_vl):
        model, inputs = build("sdpa", prompts=((0, 0),))
        patch = vlmkern.apply(model, layer=2, keep_ratio=0.25)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
        assert out.shape[1] == inputs["input_ids"].shape[1] + 3
        keep = patch.pruner.last_keep_mask
        assert keep[0, -1] and int(keep.sum()) < keep.shape[1]
        patch.revert()
    model, inputs = tiny_llava("sdpa", prompts=((3, 5), (1, 2)))
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    right = {**inputs, "input_ids": torch.stack([ids[0], ids[1].roll(-int((mask[1] == 0).sum()))]),
             "attention_mask": torch.stack([mask[0], mask[1].roll(-int((mask[1] == 0).sum()))])}
    patch = vlmkern.apply(model, layer=2)
    with pytest.raises(ValueError, match="left padding"), torch.no_grad():
        model(**right)
    patch.revert()


QUANT_ERRORS = [
    ("scheme", dict(scheme="int3"), ValueError, "scheme must be one of"),
    ("targets", dict(targets=["language", "nope"]), ValueError, "targets: expected"),
    ("group_size", dict(group_size=12), ValueError, "group_size must be a positive multiple of 8"),
    ("empty calibration", dict(calibration=[]), ValueError, "calibration: expected at least one batch"),
]


@pytest.mark.parametrize("name,kw,exc,match", QUANT_ERRORS, ids=[r[0] for r in QUANT_ERRORS])
def test_quantize_refuses_and_leaves_the_model_as_it_was(name, kw, exc, match):
    model, _ = tiny_llava("sdpa")
    snap = _snapshot(model)
    with pytest.raises(exc, match=match):
        vlmkern.quantize(model, progress=False, **kw)
    _unchanged(model, snap)


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, _ = tiny_llava("sdpa")
    vlmkern.quantize(model, progress=False)
    path = str(tmp_path_factory.mktemp("q") / "llava.safetensors")
    vlmkern.save_quantized(model, path)
    return path


def _file_errors(saved, tmp):
    import json
    import struct

    raw = open(saved, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])

    def with_header(h):
        b = json.dumps(h).encode()
        return struct.pack("<Q", len(b)) + b + raw[8 + n:]

    huge = copy.deepcopy(header)
    layers = json.loads(huge["__metadata__"]["layers"])
    first = next(iter(layers))
    layers[first]["in_features"] = 10**12  # would allocate 500 GB if trusted
    huge["__metadata__"]["layers"] = json.dumps(layers)
    dtype = copy.deepcopy(header)
    layers = json.loads(dtype["__metadata__"]["layers"])
    layers[first]["bias_dtype"] = "load"
    layers[first]["bias"] = True
    dtype["__metadata__"]["layers"] = json.dumps(layers)
    pickle_path = tmp / "model.pt"
    torch.save({"x": torch.zeros(3)}, pickle_path)
    files = {
        "truncated": (raw[: len(raw) // 2], "not a readable safetensors file"),
        "tampered in_features": (with_header(huge), "in_features is 1000000000000"),
        "tampered bias_dtype": (with_header(dtype), "bias"),
        "not JSON": (with_header({**header, "__metadata__": {**header["__metadata__"], "layers": "{oops"}}),
                     "not valid JSON"),
        "another format": (with_header({**header, "__metadata__": {"format": "other"}}), "not a vlmkern W4A8 file"),
        "a pickle": (open(pickle_path, "rb").read(), "never pickle"),
    }
    out = []
    for name, (data, match) in files.items():
        p = tmp / f"{name.replace(' ', '_')}.safetensors"
        p.write_bytes(data)
        out.append((name, str(p), match))
    return out


def test_load_quantized_refuses_bad_files_and_leaves_model_and_file_as_they_were(saved, tmp_path):
    for name, path, match in _file_errors(saved, tmp_path):
        model, _ = tiny_llava("sdpa")
        snap, digest = _snapshot(model), _digest(path)
        with pytest.raises(ValueError, match=match):
            vlmkern.load_quantized(model, path)
        _unchanged(model, snap)
        assert _digest(path) == digest, name
    # a file saved from another model: the Qwen layers are not in a Llava
    qwen, _ = tiny_qwen2_5_vl("sdpa")
    vlmkern.quantize(qwen, progress=False)
    other = str(tmp_path / "qwen.safetensors")
    vlmkern.save_quantized(qwen, other)
    model, _ = tiny_llava("sdpa")
    snap = _snapshot(model)
    with pytest.raises(ValueError, match="another model"):
        vlmkern.load_quantized(model, other)
    _unchanged(model, snap)
    # and the good file still loads
    model, inputs = tiny_llava("sdpa")
    vlmkern.load_quantized(model, saved)
    assert vlmkern.quant.quantized_layers(model)


def test_cli_refuses_bad_arguments():
    for args, match in [(["demo", "--keep-ratio", "0"], "keep_ratio must be in (0, 1]"),
                        (["demo", "--layers", "1"], "--layers"),
                        (["demo", "--layer", "9", "--layers", "4"], "--layer"),
                        (["demo", "--side", "100"], "--side"),
                        (["demo", "--max-new-tokens", "0"], "--max-new-tokens"),
                        (["bench", "--bench-dir", "/nonexistent"], "no benchmark suite")]:
        r = subprocess.run([sys.executable, "-m", "vlmkern", *args], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, (args, r.stderr[-2000:])
        assert match in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-2000:])

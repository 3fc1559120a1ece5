"""W4A8Linear, vlmkern.quantize (targets, padding, AWQ calibration), save/load,
and W4A8 combined with FastV on the tiny VLMs."""

import copy

import pytest
import torch
import torch.nn.functional as F

import vlmkern
from vlmkern.nn import W4A8Linear
from vlmkern.nn.w4a8_linear import sqnr_db
from vlmkern.quant.model import _target_linears
from vlmkern.reference import w4a8 as ref
from models import tiny_llava, tiny_qwen2_5_vl

FAMILIES = {"llava": tiny_llava, "qwen2_5_vl": tiny_qwen2_5_vl}


def _gaussian_linear(K, N, bias=False):
    lin = torch.nn.Linear(K, N, bias=bias)
    torch.nn.init.normal_(lin.weight, std=0.02)
    return lin


@torch.no_grad()
def test_sqnr_against_fp32_and_fake_quant(capsys):
    """>= 18 dB against the fp32 Linear; <= 0.1 dB lost against the fake-quant
    reference (same int4 weights and int8 codes, fp32 math)."""
    lin = _gaussian_linear(4096, 1024)
    x = torch.randn(64, 4096)
    y_fp = lin(x)
    q = W4A8Linear.from_linear(lin, group_size=128)
    y = q(x)
    y_fake = ref.w4a8_linear_fake(x, q.qweight, q.scales, 128)
    s_kernel, s_fake = sqnr_db(y_fp, y), sqnr_db(y_fp, y_fake)
    with capsys.disabled():
        print(f"\n[w4a8 g128 Gaussian 1024x4096] SQNR vs fp32: kernel {s_kernel:.2f} dB, "
              f"fake-quant {s_fake:.2f} dB, kernel vs fake-quant {sqnr_db(y_fake, y):.1f} dB")
    assert s_kernel >= 18.0
    assert s_fake - s_kernel <= 0.1
    # weight rounding alone: about 19-20 dB at group 128 (the arithmetic)
    assert 19.0 <= sqnr_db(lin.weight, q.dequantized_weight()) <= 21.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@torch.no_grad()
def test_drop_in_shapes_dtypes_bias(dtype):
    lin = _gaussian_linear(256, 96, bias=True).to(dtype)
    before = lin.weight.clone()
    q = W4A8Linear.from_linear(lin, group_size=64)
    assert torch.equal(lin.weight, before)  # the float layer is not touched
    x = torch.randn(2, 7, 256).to(dtype)
    y = q(x)
    assert y.shape == (2, 7, 96) and y.dtype == dtype
    assert q.bias.dtype == dtype
    want = ref.w4a8_linear_fake(x, q.qweight, q.scales, 64, q.bias)
    torch.testing.assert_close(y.float(), want.float(), **DROP_IN_TOL[dtype])
    assert sqnr_db(lin(x).float(), y.float()) > 18


# The kernel and the fake-quant reference quantize to the same codes and add the
# same exact integer products; they differ only in fp32 rounding order (fp32
# outputs: measured 5e-7 on values of about 1.4), then both round to the output
# dtype, where two fp32 results on either side of a rounding boundary differ by
# one unit in the last place: at most 2^-7 (bf16) or 2^-10 (fp16) of the value.
DROP_IN_TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5),
               torch.bfloat16: dict(rtol=2**-7, atol=1e-5),
               torch.float16: dict(rtol=2**-10, atol=1e-6)}


@torch.no_grad()
def test_padding_and_per_channel_groups():
    lin = _gaussian_linear(100, 24, bias=True)
    x = torch.randn(3, 100)
    for g, kp in [(32, 128), (64, 128), (None, 104)]:
        q = W4A8Linear.from_linear(lin, group_size=g)
        assert q.k_padded == kp and q.qweight.shape == (24, kp // 2)
        assert f"K padded to {kp}" in repr(q)
        assert sqnr_db(lin(x), q(x)) > 17
    assert "K padded" not in repr(W4A8Linear.from_linear(_gaussian_linear(128, 8), 64))
    with pytest.raises(ValueError, match="group_size must be a positive multiple of 8"):
        W4A8Linear.from_linear(lin, group_size=20)


def test_repr_shows_scheme():
    q = W4A8Linear.from_linear(_gaussian_linear(128, 16), group_size=128)
    assert repr(q) == ("W4A8Linear(in_features=128, out_features=16, bias=False, scheme=w4a8 "
                       "(int4 g128 symmetric weights, int8 per-token activations))")


@torch.no_grad()
def test_repacks_after_weights_change():
    a, b = _gaussian_linear(64, 16), _gaussian_linear(64, 16)
    qa, qb = W4A8Linear.from_linear(a, 32), W4A8Linear.from_linear(b, 32)
    x = torch.randn(2, 64)
    ya = qa(x)
    qa.load_state_dict(qb.state_dict())
    assert torch.equal(qa(x), qb(x)) and not torch.equal(qa(x), ya)


@torch.no_grad()
def test_model_cast_keeps_the_format():
    """model.to(bfloat16) casts the bias and activations, never the int4 format."""
    q = W4A8Linear.from_linear(_gaussian_linear(128, 32, bias=True), 64)
    x = torch.randn(3, 128)
    want = q(x.bfloat16())
    q.to(torch.bfloat16)
    assert q.scales.dtype == torch.float32 and q.qweight.dtype == torch.uint8
    assert q.bias.dtype == torch.bfloat16
    y = q(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), want.float(), rtol=1e-2, atol=1e-2)


def test_built_under_inference_mode():
    lin = _gaussian_linear(64, 16)
    x = torch.randn(2, 64)
    with torch.inference_mode():
        q = W4A8Linear.from_linear(lin, 32)
        a = q(x)
    b = q(x)  # the packed cache key must not need inference tensors' version counters
    assert torch.equal(a, b)


def _cosine(model, quantized, inputs):
    with torch.no_grad():
        a = model(**inputs).logits[:, -1].float()
        b = quantized(**inputs).logits[:, -1].float()
    return F.cosine_similarity(a, b, dim=-1)


def _weight_only_fake(model, group_size):
    """The model with its language linears replaced by their int4-rounded float weights."""
    fake = copy.deepcopy(model)
    for _, lin in _target_linears(fake, "language"):
        lin.weight.data = W4A8Linear.from_linear(lin, group_size).dequantized_weight()
    return fake


@pytest.mark.parametrize("family", list(FAMILIES))
def test_quantized_tiny_vlm_logits(family, capsys):
    """Last-token logits of the quantized tiny VLMs against the float model.

    Measured 0.96-0.98 cosine (two prompts, g128). The issue asks for >= 0.99;
    that is not reached here, and it is not the kernel: the int4-rounded float
    weights alone (no activation quantization, fp32 math) give the same cosine
    within 0.01, because each of these random-init Gaussian layers loses ~20 dB
    to int4 rounding and the six layers' errors add up in the residual stream.
    So the test pins (a) the W4A8 model to the weight-only fake-quant model and
    (b) a floor of 0.95.
    """
    model, inputs = FAMILIES[family]("sdpa", prompts=((3, 5), (1, 2)))
    q = vlmkern.quantize(copy.deepcopy(model), progress=False)
    cos = _cosine(model, q, inputs)
    cos_fake = _cosine(model, _weight_only_fake(model, 128), inputs)
    with capsys.disabled():
        print(f"\n[{family}] last-token logits cosine: W4A8 {cos.tolist()}, "
              f"int4 weights only (fp32) {cos_fake.tolist()}")
    assert (cos >= 0.95).all()
    assert ((cos - cos_fake).abs() <= 0.01).all()
    assert len(vlmkern.quant.quantized_layers(q)) == 6 * 7


def test_targets(capsys):
    model, inputs = tiny_llava("sdpa")
    n_lang = len(_target_linears(model, "language"))
    n_vis = len(_target_linears(model, "vision"))
    q = vlmkern.quantize(copy.deepcopy(model), targets=["language", "lm_head"], progress=False)
    assert isinstance(q.lm_head, W4A8Linear)
    assert not any(isinstance(m, W4A8Linear) for m in q.model.vision_tower.modules())
    q = vlmkern.quantize(copy.deepcopy(model), targets="all", progress=True)
    assert "vlmkern.quantize w4a8" in capsys.readouterr().err  # the progress bar
    assert len(vlmkern.quant.quantized_layers(q)) == n_lang + n_vis + 2 + 1  # + projector, lm_head
    with torch.no_grad():
        assert torch.isfinite(q(**inputs).logits).all()
    qwen, qwen_inputs = tiny_qwen2_5_vl("sdpa")
    q = vlmkern.quantize(copy.deepcopy(qwen), targets="all", progress=False)
    assert isinstance(q.model.visual.merger.mlp[0], W4A8Linear) and isinstance(q.lm_head, W4A8Linear)
    with torch.no_grad():
        assert torch.isfinite(q(**qwen_inputs).logits).all()
    with pytest.raises(ValueError, match="has no 'projector' part"):
        vlmkern.quantize(copy.deepcopy(qwen), targets=["projector"], progress=False)
    with pytest.raises(ValueError, match="targets: expected 'all' or names from"):
        vlmkern.quantize(model, targets="decoder")
    with pytest.raises(ValueError, match="scheme must be one of"):
        vlmkern.quantize(model, scheme="w4a16")


class _Wrapper(torch.nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.language_model = torch.nn.Sequential(lin)

    def forward(self, x):
        return self.language_model(x)


@torch.no_grad()
def test_awq_calibration_fixes_massive_activations():
    """A few input channels 100x larger than the rest (LLM "massive activations")
    with small weights: per-token int8 codes of the other channels become coarse
    and round-to-nearest W4A8 loses most of the signal; the calibrated
    per-channel scales move the range into the weights and win it back."""
    torch.manual_seed(1)
    lin = _gaussian_linear(512, 256)
    boost = torch.ones(512)
    idx = torch.randperm(512)[:4]
    boost[idx] = 100.0
    lin.weight.data[:, idx] /= 100.0
    model = _Wrapper(lin)
    batches = [torch.randn(32, 512) * boost for _ in range(4)]
    x = torch.randn(64, 512) * boost  # held out
    y = lin(x)
    rtn = vlmkern.quantize(copy.deepcopy(model), progress=False)
    awq = vlmkern.quantize(copy.deepcopy(model), calibration=batches, progress=False)
    s_rtn = sqnr_db(y, rtn.language_model(x))
    s_awq = sqnr_db(y, awq.language_model(x))
    assert awq.language_model[0].smooth is not None and "awq" in repr(awq.language_model[0])
    assert s_awq > s_rtn + 6.0, (s_rtn, s_awq)
    assert s_awq > 17.0


@torch.no_grad()
def test_awq_never_worse_on_its_calibration_data():
    """a = 0 (plain round-to-nearest) is in the grid, so on the calibration rows
    the search can only match or beat it."""
    lin = _gaussian_linear(256, 64)
    model = _Wrapper(lin)
    x = torch.randn(128, 256)
    rtn = vlmkern.quantize(copy.deepcopy(model), progress=False)
    awq = vlmkern.quantize(copy.deepcopy(model), calibration=[x], progress=False)
    y = lin(x)
    assert sqnr_db(y, awq.language_model(x)) >= sqnr_db(y, rtn.language_model(x)) - 1e-9


@pytest.mark.parametrize("family", list(FAMILIES))
def test_save_load_roundtrip(family, tmp_path):
    model, inputs = FAMILIES[family]("sdpa")
    calib = [inputs]
    q = vlmkern.quantize(model, group_size=32, calibration=calib, progress=False)
    with torch.no_grad():
        want = q(**inputs).logits
    path = str(tmp_path / "q.safetensors")
    vlmkern.save_quantized(q, path)
    fresh, _ = FAMILIES[family]("sdpa", seed=7)  # other random weights
    vlmkern.load_quantized(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh(**inputs).logits, want)
    assert len(vlmkern.quant.quantized_layers(fresh)) == len(vlmkern.quant.quantized_layers(q))


def test_load_rejects_bad_scales_and_foreign_files(tmp_path):
    from safetensors.torch import save_file, load_file

    model, _ = tiny_llava("sdpa")
    vlmkern.quantize(model, progress=False)
    path = str(tmp_path / "q.safetensors")
    vlmkern.save_quantized(model, path)
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    state = load_file(path)
    key = next(k for k in state if k.endswith("q_proj.scales"))
    state[key][0, 0] = -1.0
    bad = str(tmp_path / "bad.safetensors")
    save_file(state, bad, metadata=meta)
    with pytest.raises(ValueError, match="non-finite or non-positive scales"):
        vlmkern.load_quantized(tiny_llava("sdpa")[0], bad)
    other = str(tmp_path / "other.safetensors")
    save_file({"a": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="not a vlmkern W4A8 file"):
        vlmkern.load_quantized(tiny_llava("sdpa")[0], other)
    with pytest.raises(ValueError, match="no W4A8Linear layers"):
        vlmkern.save_quantized(tiny_llava("sdpa")[0], other)


def _fastv_w4a8(model, inputs, order, keep_ratio=0.5):
    """(patch, prefill logits, generated tokens) of FastV K=2 + W4A8 composed in `order`."""
    if order == "apply_quant":
        patch = vlmkern.apply(model, "fastv", layer=2, keep_ratio=keep_ratio, quant="w4a8")
    elif order == "quantize_then_apply":
        vlmkern.quantize(model, progress=False)
        patch = vlmkern.apply(model, "fastv", layer=2, keep_ratio=keep_ratio)
    else:
        patch = vlmkern.apply(model, "fastv", layer=2, keep_ratio=keep_ratio)
        vlmkern.quantize(model, progress=False)  # the q/k hooks move to the new layers
    with torch.no_grad():
        logits = model(**inputs).logits
        tokens = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    return patch, logits, tokens


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fastv_with_w4a8(family):
    """FastV + W4A8 in each order (apply(quant=), quantize then apply, apply
    then quantize) gives bit-identical logits and tokens; its selection is the
    top half of the image tokens by the head-mean attention of layer 1's last
    row, read from an eager twin quantized the same way; with keep_ratio=1 it
    is exactly the quantized model; revert restores what each order promises."""
    model, inputs = FAMILIES[family]("sdpa", prompts=((3, 5), (1, 2)))
    with torch.no_grad():
        float_logits = model(**inputs).logits
    runs = {}
    for order in ("apply_quant", "quantize_then_apply", "apply_then_quantize"):
        work = copy.deepcopy(model)
        patch, logits, tokens = _fastv_w4a8(work, inputs, order)
        runs[order] = (logits, tokens, patch.pruner.last_keep_mask.clone())
        assert isinstance(work.model.language_model.layers[0].mlp.down_proj, W4A8Linear)
        patch.revert()
        if order == "apply_quant":  # the handle restores the float layers too
            assert not vlmkern.quant.quantized_layers(work)
            with torch.no_grad():
                assert torch.equal(work(**inputs).logits, float_logits)
        else:
            assert vlmkern.quant.quantized_layers(work)
    first = runs["apply_quant"]
    for order, (logits, tokens, keep) in runs.items():
        assert torch.equal(logits, first[0]) and torch.equal(tokens, first[1]), order
        assert torch.equal(keep, first[2]), order
    keep = first[2]
    # 8 of each sample's 16 image tokens pruned (left padding, dropped with them, is not a token)
    real = inputs["attention_mask"].bool()
    assert (real & ~keep).sum(-1).tolist() == [8, 8]

    # The selection from the quantized eager twin's attention probabilities.
    twin, _ = FAMILIES[family]("eager", prompts=((3, 5), (1, 2)))
    vlmkern.quantize(twin, progress=False)
    image_id = twin.config.image_token_id if family == "qwen2_5_vl" else twin.config.image_token_index
    with torch.no_grad():
        probs = twin(**inputs, output_attentions=True).attentions[1][:, :, -1, :].double().mean(1)
    for b in range(2):
        img = (inputs["input_ids"][b] == image_id).nonzero().flatten()
        top = img[torch.sort(probs[b, img], descending=True, stable=True).indices[:8]]
        assert torch.equal(keep[b, img], torch.isin(img, top)), b

    # keep_ratio=1: nothing pruned, exactly the quantized model.
    quantized = copy.deepcopy(model)
    vlmkern.quantize(quantized, progress=False)
    with torch.no_grad():
        want = quantized(**inputs).logits
    patch, logits, _ = _fastv_w4a8(copy.deepcopy(model), inputs, "apply_quant", keep_ratio=1.0)
    assert torch.equal(logits, want)


def test_failed_apply_with_quant_leaves_the_model_untouched():
    model, inputs = tiny_llava("sdpa")
    with torch.no_grad():
        before = model(**inputs).logits

    def bad_batches():
        yield inputs
        raise RuntimeError("calibration source broke")

    with pytest.raises(RuntimeError, match="calibration source broke"):
        vlmkern.apply(model, "fastv", layer=2, quant="w4a8", calibration=bad_batches())
    assert not vlmkern.quant.quantized_layers(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, before)
    vlmkern.apply(model, "fastv", layer=2).revert()  # not left marked as patched


def test_apply_rejects_unknown_quant():
    model, _ = tiny_llava("sdpa")
    with pytest.raises(ValueError, match="quant must be None or one of"):
        vlmkern.apply(model, "fastv", layer=2, quant="int3")

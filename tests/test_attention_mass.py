"""vlmkern.ops.attention_mass against vlmkern.reference.attention_mass."""

import pytest
import torch

import vlmkern
from vlmkern import ops, reference as ref
from conftest import cpu_isa_params, cpu_isas

# Tolerance on the result relative to its largest value: the kernels accumulate in
# fp32 from the same (already rounded) bf16/fp16 inputs the reference upcasts.
RTOL = {torch.float32: 2e-5, torch.bfloat16: 2e-5, torch.float16: 2e-5}

SHAPES = [
    # B, Hq, Hkv, Lq, Lk, D
    (1, 4, 4, 1, 1, 64),
    (2, 8, 2, 1, 7, 64),
    (2, 28, 4, 1, 577, 128),  # Qwen2.5-VL GQA ratio 7
    (3, 6, 3, 5, 577, 80),
    (2, 32, 32, 1, 640, 128),  # LLaVA-1.5 MHA
    (2, 12, 2, 3, 4109, 64),
    (1, 4, 1, 16, 300, 13),  # odd head dim: vector tail
    (1, 5, 1, 1, 100, 64),  # GQA group of 5 rows
    (2, 12, 2, 1, 333, 96),  # GQA group of 6 rows
    (1, 8, 1, 1, 41, 24),  # GQA group of 8 rows, head dim tail
]


def _check(q, k, key_start=0, key_end=None, **kw):
    out = ops.attention_mass(q, k, key_start, key_end, **kw)
    exp = ref.attention_mass(q, k, key_start, key_end, **kw)
    assert out.dtype == torch.float32 and out.shape == exp.shape
    tol = RTOL[q.dtype] * max(exp.abs().max().item(), 1e-30)
    torch.testing.assert_close(out, exp, rtol=0, atol=tol)
    return out


@pytest.mark.parametrize("isa", cpu_isa_params())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_reference(shape, dtype, isa, isa_cap):
    isa_cap(isa)
    B, Hq, Hkv, Lq, Lk, D = shape
    q = torch.randn(B, Hq, Lq, D).to(dtype)
    k = torch.randn(B, Hkv, Lk, D).to(dtype)
    _check(q, k)
    if Lk > 2:
        _check(q, k, 1, Lk - 1)


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_padding_weights_and_ragged_spans(isa, isa_cap):
    isa_cap(isa)
    B, Hq, Hkv, Lq, Lk, D = 3, 8, 2, 4, 577, 64
    q = torch.randn(B, Hq, Lq, D, dtype=torch.bfloat16)
    k = torch.randn(B, Hkv, Lk, D, dtype=torch.bfloat16)
    mask = torch.ones(B, Lk, dtype=torch.bool)
    mask[0, :100] = False  # left padding of different lengths
    mask[1, :7] = False
    mask[2, 200:260] = False  # holes
    w = torch.rand(B, Lq)
    w[1] = 0.0
    w[1, -1] = 2.0  # only the last query counts
    _check(q, k, key_padding_mask=mask, query_weights=w)
    _check(q, k, 50, 400, key_padding_mask=mask.int(), query_weights=w[0])  # int mask, [Lq] weights
    # non-causal
    _check(q, k, key_padding_mask=mask, causal=False)


def test_rows_without_valid_keys_contribute_zero():
    q = torch.randn(1, 2, 3, 16)
    k = torch.randn(1, 2, 10, 16)
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, 9] = True  # only the last key: queries 0 and 1 (positions 7, 8) see nothing
    out = _check(q, k, key_padding_mask=mask)
    # each query with a valid key puts all its mass on key 9; 1 of 3 queries does
    assert out[0, 9].item() == pytest.approx(1 / 3, rel=1e-6)
    mask[:] = False
    assert ops.attention_mass(q, k, key_padding_mask=mask).abs().max().item() == 0.0


@pytest.mark.parametrize("isa", cpu_isa_params())
def test_non_contiguous_inputs(isa, isa_cap):
    isa_cap(isa)
    # [B, L, H, D] layouts as they come out of a projection, viewed as [B, H, L, D]
    q = torch.randn(2, 3, 12, 64).transpose(1, 2)
    k = torch.randn(2, 300, 4, 64).transpose(1, 2)
    assert not q.is_contiguous() and not k.is_contiguous()
    _check(q, k)
    # last dim strided as well
    k2 = torch.randn(2, 4, 300, 128)[..., ::2]
    _check(q, k2)


def test_scale_and_mass_sums_to_one():
    q = torch.randn(2, 4, 1, 32)
    k = torch.randn(2, 4, 50, 32)
    out = _check(q, k, scale=0.3)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2), rtol=0, atol=1e-5)


def test_all_paths_agree():
    """Every CPU path gives the same numbers (to fp32 rounding) on the same input."""
    q = torch.randn(2, 14, 2, 128, dtype=torch.bfloat16)
    k = torch.randn(2, 2, 1000, 128, dtype=torch.bfloat16)
    outs = []
    for isa in cpu_isas():
        vlmkern._C.set_cpu_isa_cap(isa)
        outs.append(ops.attention_mass(q, k, 10, 990))
    vlmkern._C.set_cpu_isa_cap("amx")
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-9)


def test_thread_count_does_not_change_result():
    q = torch.randn(2, 28, 1, 128, dtype=torch.bfloat16)
    k = torch.randn(2, 4, 2048, 128, dtype=torch.bfloat16)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = ops.attention_mass(q, k)
        torch.set_num_threads(max(n, 2))
        b = ops.attention_mass(q, k)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(q=torch.randn(2, 4, 1), k=torch.randn(2, 4, 5, 8)), "q: expected a 4-d"),
        (dict(q=torch.randn(2, 6, 1, 8), k=torch.randn(2, 4, 5, 8)), "must divide"),
        (dict(q=torch.randn(2, 0, 1, 8), k=torch.randn(2, 4, 5, 8)), "at least one query head"),
        (dict(q=torch.randn(2, 4, 1, 8), k=torch.randn(2, 4, 5, 8).half()), "k: expected the dtype"),
        (dict(q=torch.randn(2, 4, 6, 8), k=torch.randn(2, 4, 5, 8)), "Lq <= Lk"),
        (dict(q=torch.randn(2, 4, 1, 8), k=torch.randn(2, 4, 5, 8), key_end=6), "key_end"),
        (dict(q=torch.randn(2, 4, 1, 8).int(), k=torch.randn(2, 4, 5, 8).int()), "float32, bfloat16"),
        (dict(q=torch.randn(2, 4, 1, 8), k=torch.randn(2, 4, 5, 8),
              key_padding_mask=torch.ones(2, 4, dtype=torch.bool)), "key_padding_mask: expected shape"),
        (dict(q=torch.randn(2, 4, 1, 8), k=torch.randn(2, 4, 5, 8),
              query_weights=torch.ones(2, 3)), "query_weights: expected shape"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    with pytest.raises((RuntimeError, ValueError, NotImplementedError), match=match):
        ops.attention_mass(**kwargs)


def test_opcheck():
    q = torch.randn(2, 8, 3, 32)
    k = torch.randn(2, 2, 40, 32)
    mask = torch.rand(2, 40) > 0.1
    w = torch.rand(2, 3)
    torch.library.opcheck(torch.ops.vlmkern.attention_mass.default,
                          (q, k, 2, 38, True, 0.125, mask, w))
    torch.library.opcheck(torch.ops.vlmkern.attention_mass.default,
                          (q.bfloat16(), k.bfloat16(), 0, 40, False, 0.2, None, None))


def test_torch_compile_fullgraph():
    def score(q, k):
        return ops.attention_mass(q, k, 3, 30).softmax(dim=-1)

    q = torch.randn(2, 8, 1, 32)
    k = torch.randn(2, 2, 40, 32)
    compiled = torch.compile(score, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(q, k), score(q, k))

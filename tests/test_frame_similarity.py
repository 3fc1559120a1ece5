"""vlmkern.ops.frame_similarity against vlmkern.reference.frame_similarity (fp64)
on every CPU path this machine has, and its AVX2/AVX-512 loops under SIMDe on
every machine."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

import vlmkern
from vlmkern import ops, reference
from conftest import cpu_isa_params
from simde_build import build_and_run

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def isa_params():
    """The paths frame_similarity has (scalar, AVX2, AVX-512; the higher caps run
    the AVX-512 loop again), skipped visibly where this CPU lacks them."""
    return [p for p in cpu_isa_params() if (p.values[0] if hasattr(p, "values") else p)
            in ("scalar", "avx2", "avx512")]


def _check(x, ref=None, atol=2e-6):
    got = ops.frame_similarity(x, ref)
    want = reference.frame_similarity(x, ref)
    assert got.dtype == torch.float32 and got.shape == x.shape[:3]
    assert torch.equal(got.isnan(), want.isnan())
    torch.testing.assert_close(got.nan_to_num(), want.nan_to_num(), atol=atol, rtol=0)
    return got


@pytest.mark.parametrize("isa", isa_params())
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 33), (3, 5, 9, 77), (1, 4, 196, 130), (2, 2, 8, 1031)])
def test_matches_reference(isa_cap, isa, dtype, shape):
    isa_cap(isa)
    x = torch.randn(shape).to(dtype)
    got = _check(x)
    assert got[:, 0].isnan().all()


@pytest.mark.parametrize("isa", isa_params())
def test_identical_frames_are_exactly_one_and_anchors(isa_cap, isa):
    isa_cap(isa)
    x = torch.randn(2, 8, 11, 70, dtype=torch.bfloat16)
    x[:, 5] = x[:, 4]
    x[:, 6] = x[:, 4] * 4  # a power-of-two multiple: the cosine is still exactly 1
    ref = torch.tensor([-1, 0, 0, 0, -1, 4, 4, 4])
    got = _check(x, ref)
    assert (got[:, 5] == 1).all() and (got[:, 6] == 1).all()
    assert got[:, 0].isnan().all() and got[:, 4].isnan().all()


@pytest.mark.parametrize("isa", isa_params())
def test_strided_zero_and_nan_rows(isa_cap, isa):
    isa_cap(isa)
    base = torch.randn(2, 4, 12, 2 * 50)
    x = base[..., ::2].contiguous()[:, :, ::2]  # strided over N
    x = base.transpose(1, 2)[:, :6].transpose(1, 2)[..., :50]  # non-contiguous B/T/N strides, last dim unit
    assert not x.is_contiguous() and x.stride(-1) == 1
    _check(x)
    z = torch.randn(1, 3, 4, 16)
    z[0, 1, 2] = 0  # zero row: cos = 0 by the eps floor
    z[0, 2, 3, 5] = float("nan")
    got = _check(z)
    assert got[0, 1, 2] == 0 and got[0, 2, 2] == 0  # frame 2 against the zero row too
    assert got[0, 2, 3].isnan()
    # only the last dim must be contiguous; a transposed last dim is copied
    _check(torch.randn(2, 3, 16, 5).transpose(2, 3))


def test_empty_and_bad_arguments():
    assert ops.frame_similarity(torch.randn(0, 3, 4, 8)).shape == (0, 3, 4)
    assert ops.frame_similarity(torch.randn(2, 0, 4, 8)).shape == (2, 0, 4)
    assert ops.frame_similarity(torch.randn(2, 3, 4, 0)).nan_to_num().abs().max() == 0
    x = torch.randn(1, 4, 3, 8)
    with pytest.raises(ValueError, match=r"x: expected a 4-d tensor"):
        ops.frame_similarity(x[0])
    with pytest.raises(NotImplementedError, match="x: expected a float32, bfloat16 or float16"):
        ops.frame_similarity(x.double())
    with pytest.raises(RuntimeError, match=r"ref: expected -1 .* got ref\[2\]=2"):
        ops.frame_similarity(x, torch.tensor([-1, 0, 2, 1]))
    with pytest.raises(RuntimeError, match=r"ref: expected -1 .* got ref\[1\]=4"):
        ops.frame_similarity(x, torch.tensor([-1, 4, 0, 1]))
    with pytest.raises(RuntimeError, match=r"ref: expected an int64 tensor of shape \[T\] = \[4\]"):
        ops.frame_similarity(x, torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="ref: expected an integer tensor"):
        ops.frame_similarity(x, torch.tensor([-1.0, 0, 1, 2]))
    with pytest.raises(ValueError, match="eps: expected a finite float > 0"):
        ops.frame_similarity(x, eps=0.0)


def test_opcheck_and_compile():
    x = torch.randn(2, 3, 5, 24)
    ref = torch.tensor([1, 0, 1])  # no -1: opcheck compares without equal_nan
    torch.library.opcheck(torch.ops.vlmkern.frame_similarity.default, (x, ref, 1e-8))

    def f(x):
        return ops.frame_similarity(x) * 2

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), f(x), equal_nan=True)


def test_threads_give_the_same_bits():
    x = torch.randn(3, 6, 37, 300, dtype=torch.bfloat16)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.frame_similarity(x)
        torch.set_num_threads(max(2, n))
        two = ops.frame_similarity(x)
    finally:
        torch.set_num_threads(n)
    assert torch.equal(one.nan_to_num(), two.nan_to_num())


simde_py = pytest.importorskip("simde_py", reason="simde-py (requirements.txt) is not installed")


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.skipif(os.environ.get("VLMKERN_SANITIZED") == "1",
                    reason="make sanitize preloads ASan into every child process; this test builds its own "
                           "sanitized harness and runs in make test")
def test_vector_loops_match_fp64_under_emulation(tmp_path):
    r = build_and_run(tmp_path, simde_py.get_include(),
                      emulated=["csrc/cpu/frame_similarity_avx2.cpp", "csrc/cpu/frame_similarity_avx512.cpp"],
                      plain=["csrc/cpu/frame_similarity_kernel.cpp", "tests/simde/frame_similarity_harness.cpp"],
                      extra_flags=("-fsanitize=address,undefined", "-fno-sanitize-recover=all"))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "189 cases x 3 paths, 0 failures" in r.stdout, r.stdout[-2000:]

import os

import pytest
import torch

import vlmkern


if os.environ.get("VLMKERN_SANITIZED") == "1":  # make sanitize: the instrumented build, not the installed one
    assert "sanitize" in vlmkern.__file__, f"expected the sanitizer build, imported {vlmkern.__file__}"


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def isa_cap():
    """Cap the CPU kernels' instruction set for one test, then restore it."""
    def cap(name):
        vlmkern._C.set_cpu_isa_cap(name)
    yield cap
    vlmkern._C.set_cpu_isa_cap("amx")  # the cap never exceeds what the CPU supports


ISA_ORDER = ["scalar", "avx2", "avx512", "avx512_bf16", "amx"]
# Where each path is exercised on machines whose CPU lacks it.
_EMULATED_BY = {
    "avx2": "nowhere else (every CPU these tests target has AVX2)",
    "avx512": ("tests/test_attention_mass_simde.py, tests/test_w4a8_simde.py, "
               "tests/test_frame_similarity.py and tests/test_dpc_knn_simde.py (SIMDe emulation)"),
    "avx512_bf16": "tests/test_attention_mass_simde.py (SIMDe emulation)",
    "amx": "tests/test_w4a8_simde.py (SIMDe + a software model of the tiles)",
}


def _best_isa():
    best = vlmkern._C.cpu_isa_supported()
    env = os.environ.get("VLMKERN_CPU_ISA")
    if env in ISA_ORDER:
        best = ISA_ORDER[min(ISA_ORDER.index(env), ISA_ORDER.index(best))]
    return best


def cpu_isas():
    """Every CPU kernel path this machine can run (scalar always)."""
    return ISA_ORDER[: ISA_ORDER.index(_best_isa()) + 1]


def cpu_isa_params():
    """Every CPU kernel path as a pytest parameter: the ones this machine cannot
    run are skipped with the reason, so the report shows what did not run here
    (and where it is emulated instead)."""
    runnable = cpu_isas()
    params = []
    for isa in ISA_ORDER:
        if isa in runnable:
            params.append(isa)
        else:
            why = (f"this CPU (best path: {vlmkern._C.cpu_isa_supported()}, VLMKERN_CPU_ISA="
                   f"{os.environ.get('VLMKERN_CPU_ISA', 'unset')}) cannot run the {isa} path; "
                   f"it is exercised by {_EMULATED_BY[isa]}")
            params.append(pytest.param(isa, marks=pytest.mark.skip(reason=why)))
    return params

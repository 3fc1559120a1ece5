import os

import pytest
import torch

import vlmkern


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


def cpu_isas():
    """Every CPU kernel path this machine can run (scalar always)."""
    order = ["scalar", "avx2", "avx512", "avx512_bf16", "amx"]
    best = vlmkern._C.cpu_isa_supported()
    env = os.environ.get("VLMKERN_CPU_ISA")
    if env in order:
        best = order[min(order.index(env), order.index(best))]
    return order[: order.index(best) + 1]

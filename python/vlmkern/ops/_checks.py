"""Argument checks of the Python op wrappers: errors that name the argument.

The compiled ops check tensors (shapes, dtypes, devices; csrc/core/op_checks.h,
shared by the CPU and CUDA backends); these cover what only Python sees (a bool
or a float where an integer is meant) and the fake kernels' device checks (a
CPU tensor mixed with a meta tensor would otherwise be traced, not refused).
"""

from __future__ import annotations

import math
import numbers

import torch


def integer(name: str, value) -> int:
    """``value`` as an int; a bool, a float with a fraction, or anything else is refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
                and value.dtype != torch.bool:
            return int(value)
        raise TypeError(f"{name}: expected an int, got {value!r} ({type(value).__name__})")
    return int(value)


def positive_float(name: str, value) -> float:
    """``value`` as a finite float > 0 (a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {value!r} ({type(value).__name__})")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}: expected a finite value > 0, got {value!r}")
    return v


def integer_tensor(name: str, t: torch.Tensor) -> None:
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer tensor, got {t.dtype}")


def same_device(op: str, **tensors) -> None:
    """Every given tensor on one device (used by the fake kernels too)."""
    first = None
    for name, t in tensors.items():
        if t is None:
            continue
        if first is None:
            first = (name, t.device)
        elif t.device != first[1]:
            raise ValueError(f"{op}: {name} and {first[0]} must be on the same device, got {t.device} "
                             f"and {first[1]}")

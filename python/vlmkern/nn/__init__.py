"""Drop-in modules backed by vlmkern ops."""

from vlmkern.nn.w4a8_linear import W4A8Linear

__all__ = ["W4A8Linear"]

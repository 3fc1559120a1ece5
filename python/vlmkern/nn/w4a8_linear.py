"""``W4A8Linear``: an ``nn.Linear`` replacement with int4 weights and int8
activations (format: ``vlmkern.ops.w4a8``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vlmkern.ops import w4a8 as _w4a8
from vlmkern.reference import w4a8 as _ref

_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")


def padded_k(in_features: int, group_size: int | None) -> tuple[int, int]:
    """``(K_padded, group)``: K padded up to a multiple of the group (per-channel
    groups, ``group_size=None``, pad K to a multiple of 8, the CPU layout's unit)."""
    if group_size is None:
        kp = -(-in_features // 8) * 8
        return kp, kp
    if group_size <= 0 or group_size % 8:
        raise ValueError(f"group_size must be a positive multiple of 8 (32, 64, 128) or None "
                         f"(per channel), got {group_size}")
    return -(-in_features // group_size) * group_size, group_size


class W4A8Linear(torch.nn.Module):
    """``y = x W^T + b`` with ``W`` in symmetric int4 per group of k and ``x``
    quantized per row to int8 at run time (``vlmkern.ops.w4a8_linear``).

    Shapes and dtypes are those of the ``nn.Linear`` it replaces: input
    ``[..., in_features]`` float32/bfloat16/float16, output ``[...,
    out_features]`` in the input's dtype. Inference only (no autograd).

    Buffers (saved, the logical format): ``qweight`` uint8 ``[N, Kp/2]``,
    ``scales`` float32 ``[N, Kp/G]``, optional ``smooth`` float32 ``[K]`` (AWQ
    input scaling: the weight columns were multiplied by it, the input is
    divided by it). ``Kp`` is ``in_features`` padded up to a multiple of the
    group with zero weights (the input is zero-padded to match), so no layer is
    refused for its shape. The kernel layout is packed lazily per device.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 group_size: int | None = 128, bias_dtype: torch.dtype = torch.float32,
                 device=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.k_padded, self.group = padded_k(self.in_features, group_size)
        self.group_size = group_size
        self.register_buffer("qweight", torch.full((out_features, self.k_padded // 2), 0x88,
                                                   dtype=torch.uint8, device=device))
        self.register_buffer("scales", torch.ones((out_features, self.k_padded // self.group),
                                                  dtype=torch.float32, device=device))
        self.register_buffer("smooth", None)
        if bias:
            self.bias = torch.nn.Parameter(torch.zeros(out_features, dtype=bias_dtype, device=device),
                                           requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self._packed = None
        self._packed_key = None

    # ---- construction ---------------------------------------------------------------
    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, group_size: int | None = 128,
                    smooth: torch.Tensor | None = None) -> "W4A8Linear":
        """Round-to-nearest int4 quantization of ``linear`` (its weight is not modified).

        Args:
            linear: an ``nn.Linear`` (any float dtype and device).
            group_size: 32, 64, 128 (default) or None for one group per output channel.
            smooth: optional positive ``[in_features]`` AWQ scales ``s``: the weight
                quantized is ``W * s`` (per input channel) and inputs are divided by ``s``.
        """
        w = linear.weight.detach()
        N, K = w.shape
        m = cls(K, N, linear.bias is not None, group_size=group_size,
                bias_dtype=linear.bias.dtype if linear.bias is not None else torch.float32,
                device=w.device)
        wf = w.float()
        if smooth is not None:
            smooth = smooth.detach().float().to(w.device)
            if smooth.shape != (K,) or not bool(torch.isfinite(smooth).all() and (smooth > 0).all()):
                raise ValueError(f"smooth: expected finite positive scales of shape [{K}]")
            wf = wf * smooth
            m.smooth = smooth
        if m.k_padded != K:
            wf = F.pad(wf, (0, m.k_padded - K))
        nib, sc = _ref.quantize_weight(wf.cpu(), m.group)
        m.qweight.copy_(nib)
        m.scales.copy_(sc)
        if linear.bias is not None:
            m.bias.data.copy_(linear.bias.detach())
        return m

    def dequantized_weight(self) -> torch.Tensor:
        """float32 ``[out_features, in_features]`` that this layer multiplies by
        (the smoothing folded back in)."""
        w = _ref.dequantize_weight(self.qweight.cpu(), self.scales.cpu(), self.group)
        w = w[:, : self.in_features]
        if self.smooth is not None:
            w = w / self.smooth.cpu()
        return w

    # ---- run --------------------------------------------------------------------------
    def packed(self) -> torch.Tensor:
        """The kernel layout for ``qweight``'s device (made once, remade when the
        weights change or move)."""
        key = (self.qweight.device, self.qweight.data_ptr(), _version(self.qweight),
               self.scales.data_ptr(), _version(self.scales))
        if self._packed is None or self._packed_key != key:
            self._packed = _w4a8.w4a8_pack(self.qweight, self.scales, self.group)
            self._packed_key = key
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"W4A8Linear: expected input [..., {self.in_features}], got {tuple(x.shape)}")
        if self.smooth is not None:
            x = x / self.smooth.to(x.dtype)
        if self.k_padded != self.in_features:
            x = F.pad(x, (0, self.k_padded - self.in_features))
        return _w4a8.w4a8_linear(x, self.packed(), self.scales, self.group, self.bias)

    def _apply(self, fn, recurse=True):
        # moved or cast: pack again on next use. A cast of the whole model
        # (model.to(torch.bfloat16)) must not touch the format: the scales (and
        # AWQ smoothing) stay float32, the nibbles uint8; the bias follows.
        self._packed = None
        out = super()._apply(fn, recurse)
        if self.scales.dtype != torch.float32:
            self.scales = self.scales.float()
        if self.smooth is not None and self.smooth.dtype != torch.float32:
            self.smooth = self.smooth.float()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        self._packed = None
        return super()._load_from_state_dict(*args, **kwargs)

    def extra_repr(self) -> str:
        g = "per-channel" if self.group_size is None else f"g{self.group}"
        pad = f", K padded to {self.k_padded}" if self.k_padded != self.in_features else ""
        awq = ", awq" if self.smooth is not None else ""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, scheme=w4a8 (int4 {g} symmetric weights, "
                f"int8 per-token activations{awq}{pad})")

    def weight_bytes(self) -> int:
        return self.qweight.numel() + self.scales.numel() * 4


def _version(t: torch.Tensor):
    """The tensor's in-place version counter, or None for inference-mode tensors,
    which have none: for those the packed cache is dropped only by
    load_state_dict, .to() and a new tensor, not by an in-place edit."""
    try:
        return t._version
    except RuntimeError:
        return None


def take_hooks(new: torch.nn.Module, old: torch.nn.Module) -> None:
    """Move ``old``'s forward (pre-)hooks to ``new`` (the same dict objects, so
    existing ``RemovableHandle``s still remove them)."""
    for name in _HOOK_DICTS:
        d = getattr(old, name, None)
        if d is not None:
            setattr(new, name, d)


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio 10 log10(|ref|^2 / |ref - test|^2) in dB."""
    ref, test = ref.double(), test.double()
    noise = (ref - test).pow(2).sum().item()
    return math.inf if noise == 0 else 10 * math.log10(ref.pow(2).sum().item() / noise)

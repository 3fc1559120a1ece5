"""vlmkern: fused kernels that make vision-language models cheaper to run.

    import vlmkern
    patch = vlmkern.apply(model, method="fastv", layer=3, keep_ratio=0.25)
    out = model.generate(**inputs)
    patch.revert()

    patch = vlmkern.apply(model, method="evs", rate=0.75)   # videos (Qwen2-VL, Qwen2.5-VL)

    vlmkern.quantize(model, "w4a8", group_size=128)   # int4 weights, int8 activations

Ops: ``vlmkern.ops`` (also ``torch.ops.vlmkern.*``); eager references:
``vlmkern.reference``.
"""

from vlmkern._build import C as _C
from vlmkern import methods, nn, ops, reference
from vlmkern.patch import apply, SUPPORTED_FAMILIES, VIDEO_FAMILIES
from vlmkern.quant import quantize, save_quantized, load_quantized

__version__ = "0.1.0"

__all__ = ["apply", "quantize", "save_quantized", "load_quantized", "methods", "nn", "ops", "reference",
           "SUPPORTED_FAMILIES", "VIDEO_FAMILIES", "__version__"]

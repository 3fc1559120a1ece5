"""vlmkern: fused kernels that make vision-language models cheaper to run.

    import vlmkern
    patch = vlmkern.apply(model, method="fastv", layer=3, keep_ratio=0.25)
    out = model.generate(**inputs)
    patch.revert()

    vlmkern.quantize(model, "w4a8", group_size=128)   # int4 weights, int8 activations

Ops: ``vlmkern.ops`` (also ``torch.ops.vlmkern.*``); eager references:
``vlmkern.reference``.
"""

from vlmkern._build import C as _C
from vlmkern import nn, ops, reference
from vlmkern.patch import apply, SUPPORTED_FAMILIES
from vlmkern.quant import quantize, save_quantized, load_quantized

__version__ = "0.1.0"

__all__ = ["apply", "quantize", "save_quantized", "load_quantized", "nn", "ops", "reference",
           "SUPPORTED_FAMILIES", "__version__"]

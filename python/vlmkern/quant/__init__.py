"""Weight quantization of whole models: ``vlmkern.quantize``, AWQ-style
calibration, and safetensors save/load in the logical W4A8 format."""

from vlmkern.quant.model import (QUANT_SCHEMES, TARGETS, load_quantized, quantize,
                                 quantized_layers, save_quantized)

__all__ = ["quantize", "save_quantized", "load_quantized", "quantized_layers", "QUANT_SCHEMES",
           "TARGETS"]

"""vlmkern's stable op API.

Each function here is a thin wrapper around a ``torch.ops.vlmkern.*`` op: it
documents shapes and dtypes, resolves Python-level defaults, and registers the
fake (meta) kernel so ``torch.compile(fullgraph=True)`` traces through it. The
same ops can be called directly as ``torch.ops.vlmkern.<name>`` by other
toolkits.
"""

from vlmkern.ops.attention_mass import attention_mass
from vlmkern.ops.dpc_knn import dpc_knn
from vlmkern.ops.frame_similarity import frame_similarity
from vlmkern.ops.pixel_dedup import pixel_dedup
from vlmkern.ops.temporal_select import temporal_select
from vlmkern.ops.topk_indices import topk_indices, gather_kept
from vlmkern.ops.w4a8 import quantize_per_token_int8, w4a8_pack, w4a8_gemm, w4a8_linear

__all__ = [
    "attention_mass", "dpc_knn", "frame_similarity", "pixel_dedup", "temporal_select", "topk_indices", "gather_kept",
    "quantize_per_token_int8", "w4a8_pack", "w4a8_gemm", "w4a8_linear",
]

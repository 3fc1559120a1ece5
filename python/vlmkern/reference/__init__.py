"""Eager PyTorch versions of every vlmkern op: the tests' oracle and the
benchmarks' baseline. Slow and memory-hungry on purpose: they materialize
what the kernels avoid."""

from vlmkern.reference.attention import attention_mass
from vlmkern.reference.topk import topk_indices
from vlmkern.reference import w4a8
from vlmkern.reference.cluster import dpc_knn
from vlmkern.reference.video import frame_similarity, pixel_dedup, temporal_select

__all__ = ["attention_mass", "dpc_knn", "frame_similarity", "pixel_dedup", "temporal_select", "topk_indices", "w4a8"]

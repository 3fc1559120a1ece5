"""DyCoke (Tao et al., CVPR 2025, "DyCoke: Dynamic Compression of Tokens for
Fast Video Large Language Models"), stage 1: temporal token merging (TTM), as
score x select x placement; stage 2 (dynamic KV-cache pruning while decoding)
with ``kv_layer=K`` (:mod:`vlmkern.patch.kv_prune`).

- **placement** ``pre_llm`` (as EVS): the video tokens entering decoder layer 0
  lose the dropped tokens at prefill; kept tokens keep their original
  positions (for M-RoPE families the original ``(t, h, w)`` triple).
- **score**: the cosine of token ``(t, h, w)`` to the same position in its
  frame's anchor (:func:`vlmkern.ops.frame_similarity` with a reference per
  frame): odd frames ``2i + 1`` against frame ``2i`` (the pairs), and frames
  ``4i + 2`` against frame ``4i`` (the windows of four) for every window that
  has four more frames after its anchor (``4i < T - 4``, as the released code
  loops). Every other frame has no anchor and is kept whole.
- **select**: in each compared frame, the ``ceil((1 - rho) * N)`` tokens least
  similar to the anchor (:func:`vlmkern.ops.topk_indices` per frame: ties
  toward the lower index, NaN last); tokens are dropped, not averaged. The
  count depends on the shapes only (``retained_tokens``). Scoring and selection
  run as one call of :func:`vlmkern.ops.temporal_select` (per_frame mode).

A "frame" is a temporal step of the language model's token grid (a Qwen-VL
temporal patch). DyCoke's pairs-then-windows order matters only through which
frames get which anchor: the window step compares frames the pair step left
whole, so both steps are one selection with one anchor per frame.
"""

from __future__ import annotations

import math
import numbers

import torch

from vlmkern.ops import temporal_select


def dycoke_anchors(T: int) -> list[int]:
    """The anchor frame of each of ``T`` frames, ``-1`` where a frame is kept
    whole: ``2i + 1 -> 2i``; ``4i + 2 -> 4i`` for ``4i < T - 4``."""
    ref = [-1] * T
    for t in range(1, T, 2):
        ref[t] = t - 1
    for i in range(0, max(T - 4, 0), 4):
        ref[i + 2] = i
    return ref


class DyCoke:
    """DyCoke's stage-1 score and select for videos.

    Args:
        rho: the merge rate: the fraction of each compared frame's tokens
            dropped, in ``[0, 1)`` (the paper's default 0.7).
        kv_layer: None (stage 1 only, the default) or ``K`` for stage 2:
            while decoding, layers ``>= K`` read only the ``kv_keep`` most
            attended video entries (the paper's ``K = 3``, 0.3), re-selected
            when the attention's cosine to the previous step falls below
            ``kv_threshold`` (0.9); see :mod:`vlmkern.patch.kv_prune`.
            Off by default: it makes each decode step depend on the steps
            before it, so ``generate`` no longer equals recomputing without a
            cache.
    """

    name = "dycoke"
    placement = "pre_llm"
    layer = 0
    modality = "video"

    def __init__(self, rho: float = 0.7, kv_layer: int | None = None, kv_keep: float = 0.3,
                 kv_threshold: float = 0.9):
        if isinstance(rho, bool) or not isinstance(rho, numbers.Real) or not 0.0 <= float(rho) < 1.0:
            raise ValueError(f"rho must be in [0, 1) (the fraction of a compared frame's tokens dropped), "
                             f"got {rho!r}")
        if kv_layer is not None and (isinstance(kv_layer, bool) or not isinstance(kv_layer, numbers.Integral)
                                     or kv_layer < 1):
            raise ValueError(f"kv_layer must be None (stage 1 only) or an int >= 1 (the paper's 3), "
                             f"got {kv_layer!r}")
        if isinstance(kv_keep, bool) or not isinstance(kv_keep, numbers.Real) or not 0.0 < float(kv_keep) <= 1.0:
            raise ValueError(f"kv_keep must be in (0, 1] (the fraction of video entries decoding reads), "
                             f"got {kv_keep!r}")
        if isinstance(kv_threshold, bool) or not isinstance(kv_threshold, numbers.Real) \
                or not -1.0 <= float(kv_threshold) <= 1.0:
            raise ValueError(f"kv_threshold must be a cosine in [-1, 1], got {kv_threshold!r}")
        self.rho = float(rho)
        self.kv_layer = None if kv_layer is None else int(kv_layer)
        self.kv_keep, self.kv_threshold = float(kv_keep), float(kv_threshold)

    def __repr__(self) -> str:
        if self.kv_layer is None:
            return f"DyCoke(rho={self.rho:g})"
        return (f"DyCoke(rho={self.rho:g}, kv_layer={self.kv_layer}, kv_keep={self.kv_keep:g}, "
                f"kv_threshold={self.kv_threshold:g})")

    def frame_keep(self, N: int) -> int:
        """Tokens a compared frame of ``N`` tokens keeps: ``ceil((1 - rho) * N)``."""
        return min(N, math.ceil((1.0 - self.rho) * N))

    def retained_tokens(self, T: int, H: int, W: int) -> int:
        """Tokens kept of a video of ``T`` frames of ``H x W`` tokens (shapes only)."""
        for name, v in (("T", T), ("H", H), ("W", W)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        N = int(H) * int(W)
        compared = sum(r >= 0 for r in dycoke_anchors(int(T)))
        return (int(T) - compared) * N + compared * self.frame_keep(N)

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """Which tokens of same-shape videos to keep.

        Args:
            features: ``[V, T, N, D]``: ``V`` videos of ``T`` frames of ``N``
                tokens, float32/bfloat16/float16.

        Returns:
            bool ``[V, T * N]``: true at the kept tokens.
        """
        V, T, N, _ = features.shape
        # One fused call (per_frame mode): frames without an anchor kept whole.
        kept, _, _ = temporal_select(features, dycoke_anchors(T), "per_frame", self.frame_keep(N), 1, N,
                                     features=False)
        mask = torch.zeros((V, T * N), dtype=torch.bool, device=features.device)
        return mask.scatter_(1, kept, True)

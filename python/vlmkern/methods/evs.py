"""EVS, Efficient Video Sampling (as in vLLM's ``video_pruning_rate``), as score x
select x placement.

- **placement** ``pre_llm``: the projected video tokens entering the first
  decoder layer lose the dropped tokens at prefill; every decoder layer sees and
  caches only the kept ones. Kept tokens keep their original positions (for
  M-RoPE families the original ``(t, h, w)`` triple), as vLLM does.
- **score**: the dissimilarity of token ``(t, h, w)`` to the token at the same
  position in frame ``t - 1``, ``1 - cos`` (:func:`vlmkern.ops.frame_similarity`,
  fp32 sums); every token of frame 0 gets the maximum score. "Frame" is a
  temporal step of the language model's token grid: for Qwen-VL families one
  temporal patch (two input frames).
- **select**: per video, one global ranking of its ``T * N`` tokens by
  dissimilarity (descending; ties toward the earlier token in raster order, as
  vLLM's stable sort; NaN last) keeps ``retained_tokens(T, H, W) = max(N,
  floor(T * N * (1 - rate)))`` of them, in their original order
  (:func:`vlmkern.ops.topk_indices`' order). Frame 0 is always kept whole. The
  count depends on the shapes only. ``rate = 0`` keeps everything. Scoring and
  selection run as one call of :func:`vlmkern.ops.temporal_select` (global
  mode), whose cosines are frame_similarity's bits.

Implementation note: the ranking uses ``-cos`` rather than ``1 - cos`` in
float32. Both order tokens the same way as the exact dissimilarity, but
``1 - cos`` rounds distinct cosines near 0 to equal values (creating ties the
exact definition does not have), ``-cos`` does not.
"""

from __future__ import annotations

import math
import numbers

import torch

from vlmkern.ops import temporal_select


def check_rate(rate) -> float:
    """``rate`` as a float, or ValueError unless it lies in ``[0, 1)``."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise ValueError(f"rate must be a number in [0, 1), got {rate!r}")
    r = float(rate)
    if not (0.0 <= r < 1.0):
        raise ValueError(f"rate must be in [0, 1) (the fraction of video tokens pruned), got {rate}")
    return r


class EVS:
    """EVS's score and select for videos; ``rate`` is the fraction pruned.

    Args:
        rate: fraction of each video's tokens to drop, in ``[0, 1)`` (vLLM's
            ``video_pruning_rate``; 0.75 keeps a quarter).
    """

    name = "evs"
    placement = "pre_llm"
    layer = 0  # the hidden states entering decoder layer 0 are pruned
    modality = "video"

    def __init__(self, rate: float = 0.75):
        self.rate = check_rate(rate)

    def __repr__(self) -> str:
        return f"EVS(rate={self.rate:g})"

    def retained_tokens(self, T: int, H: int, W: int) -> int:
        """Tokens kept of a video of ``T`` frames of ``H x W`` tokens (the language
        model's grid, after any spatial merge): ``max(H * W, floor(T * H * W *
        (1 - rate)))``, computed in double precision as vLLM does. Shapes only."""
        for name, v in (("T", T), ("H", H), ("W", W)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        n = int(H) * int(W)
        return max(n, int(math.floor(int(T) * n * (1.0 - self.rate))))

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """Which tokens of same-shape videos to keep.

        Args:
            features: ``[V, T, N, D]``: ``V`` videos of ``T`` frames of ``N``
                tokens (raster order), float32/bfloat16/float16.

        Returns:
            bool ``[V, T * N]``: true at the ``retained_tokens`` kept tokens of
            each video (frame 0 always).
        """
        V, T, N, _ = features.shape
        keep = self.retained_tokens(T, 1, N)
        if keep >= T * N:
            return torch.ones((V, T * N), dtype=torch.bool, device=features.device)
        # One fused call: frame_similarity's cosines, frame 0 forced (+inf),
        # topk_indices' ranking; the rows themselves are not compacted here.
        kept, _, _ = temporal_select(features, None, "global", keep, 1, N, features=False)
        mask = torch.zeros((V, T * N), dtype=torch.bool, device=features.device)
        return mask.scatter_(1, kept, True)

"""FastV (Chen et al., 2024, "An Image is Worth 1/2 Tokens After Layer 2") as
score x select x placement.

- **placement** ``in_llm@K``: the hidden states entering decoder layer ``K``
  (0-based) lose their dropped image tokens at prefill; layers ``< K`` see and
  cache every token, layers ``>= K`` only the kept ones (LightCompress calls ``K``
  ``pruning_loc``).
- **score**: the attention probability from the last token of the prefill
  sequence to each image token at layer ``K - 1`` (softmax over all valid keys,
  causal, the model's own scale), averaged over the query heads. Computed by
  :func:`vlmkern.ops.attention_mass` from that layer's post-RoPE query row and
  keys, so the model can run any attention backend; the references re-run the
  layer with eager attention to read the same numbers.
- **tokens**: the visual tokens: image tokens, and for families with video
  (Qwen2-VL, Qwen2.5-VL) video tokens too, as the paper applied FastV to
  video frames; in a mixed prompt they share one budget.
- **select**: per sample, the ``max(1, round(N * keep_ratio))`` visual tokens with
  the largest scores (:func:`vlmkern.ops.topk_indices`: ties toward the lower
  index, NaN last), ``N`` being that sample's image-token count (``round`` is
  half-to-even, as Python's). A sample without image tokens keeps everything.
  Text tokens are never dropped; kept tokens keep their order and positions.

The paper's drop rate ``R`` is ``1 - keep_ratio``. The patch layer
(:mod:`vlmkern.patch`) does the placement; this module only scores and selects.
"""

from __future__ import annotations

import torch

from vlmkern.ops import attention_mass, topk_indices


def check_keep_ratio(keep_ratio) -> float:
    """``keep_ratio`` as a float, or ValueError unless it lies in ``(0, 1]``."""
    try:
        ratio = float(keep_ratio)
    except (TypeError, ValueError):
        raise ValueError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}") from None
    if isinstance(keep_ratio, bool) or not 0.0 < ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    return ratio


class FastV:
    """FastV's score and select; ``layer`` is where the placement acts.

    Args:
        layer: ``K``, the decoder layer whose *input* is pruned (``K >= 1``: the
            score is read at layer ``K - 1``). The upper bound depends on the model
            and is checked by :func:`vlmkern.apply`.
        keep_ratio: fraction of each sample's image tokens to keep, in ``(0, 1]``.
    """

    name = "fastv"
    placement = "in_llm"

    def __init__(self, layer: int = 3, keep_ratio: float = 0.25):
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise ValueError(f"layer must be an int, got {layer!r}")
        if layer < 1:
            raise ValueError(
                f"layer must be >= 1, got {layer}: FastV prunes the input of layer K using the "
                "attention of layer K - 1, so layer 0 has nothing to score from")
        self.layer = layer
        self.keep_ratio = check_keep_ratio(keep_ratio)

    @property
    def score_layer(self) -> int:
        """The decoder layer whose last query row and keys give the scores: ``K - 1``."""
        return self.layer - 1

    def __repr__(self) -> str:
        return f"FastV(layer={self.layer}, keep_ratio={self.keep_ratio:g})"

    def keep_counts(self, n_image: torch.Tensor) -> torch.Tensor:
        """int64 ``[B]``: ``max(1, round(N_b * keep_ratio))`` where ``N_b > 0``, else 0.

        ``n_image``: integer ``[B]``, the image-token count of each sample. Depends
        on the shapes only, never on the scores.
        """
        n = n_image.to(torch.int64)
        k = torch.round(n.to(torch.float64) * self.keep_ratio).to(torch.int64).clamp(min=1)
        return torch.where(n > 0, torch.minimum(k, n), torch.zeros_like(n))

    def score(self, q_last: torch.Tensor, k: torch.Tensor, image_mask: torch.Tensor, *,
              scale: float, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention mass of the last query row on every image token.

        Args:
            q_last: ``[B, Hq, 1, D]``, layer ``K-1``'s query of the last prefill
                position, after RoPE.
            k: ``[B, Hkv, L, D]``, layer ``K-1``'s keys of all ``L`` prefill
                positions, after RoPE (``Hq`` a multiple of ``Hkv``).
            image_mask: bool ``[B, L]``, true at image tokens.
            scale: the softmax scale the layer uses (``module.scaling``).
            key_padding_mask: optional ``[B, L]``, true/1 at real (non-pad) tokens.

        Returns:
            float32 ``[B, L]``: the head-mean probability at image tokens, NaN
            elsewhere.
        """
        B, L = image_mask.shape
        scores = torch.full((B, L), float("nan"), dtype=torch.float32, device=k.device)
        cols = image_mask.any(dim=0).nonzero().flatten()
        if cols.numel() == 0:
            return scores
        lo, hi = int(cols[0]), int(cols[-1]) + 1  # one span covering every sample's images
        mass = attention_mass(q_last, k, lo, hi, causal=True, scale=scale,
                              key_padding_mask=key_padding_mask)
        scores[:, lo:hi] = mass
        return scores.masked_fill(~image_mask, float("nan"))

    def select(self, scores: torch.Tensor, image_mask: torch.Tensor) -> torch.Tensor:
        """Which image tokens to keep.

        Args:
            scores: float ``[B, L]`` from :meth:`score` (NaN off the image tokens).
            image_mask: bool ``[B, L]``.

        Returns:
            bool ``[B, L]``: true at the kept image tokens (``keep_counts`` of them
            per sample), false everywhere else.
        """
        B, L = image_mask.shape
        n_image = image_mask.sum(dim=1)
        keep = self.keep_counts(n_image)
        n_max = int(n_image.max()) if B else 0
        selected = torch.zeros((B, L + 1), dtype=torch.bool, device=image_mask.device)
        if n_max == 0:
            return selected[:, :L]
        # Each sample's image positions first, in order (a stable sort of "is text").
        order = torch.sort((~image_mask).to(torch.int8), dim=1, stable=True).indices[:, :n_max]
        # Columns past a sample's own N hold text positions, whose scores are NaN: never picked.
        local = topk_indices(scores.gather(1, order), keep)  # [B, k_max], -1 padded
        pos = order.gather(1, local.clamp(min=0))
        pos = torch.where(local >= 0, pos, torch.full_like(pos, L))  # padding -> spare column
        selected.scatter_(1, pos, True)
        return selected[:, :L]

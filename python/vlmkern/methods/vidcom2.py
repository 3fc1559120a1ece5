"""VidCom2 (Liu et al., EMNLP 2025, "Video Compression Commander: Plug-and-Play
Inference Acceleration for Video Large Language Models"), as score x select x
placement, following the released code (github.com/xuyang-liu16/VidCom2,
``token_compressor/vidcom2/vidcom2.py``, the same computation as its
``llava/model/vidcom2.py``).

- **placement** ``pre_llm`` (as EVS): the projected video tokens entering
  decoder layer 0 lose the dropped tokens at prefill; kept tokens keep their
  original positions (for M-RoPE families the original ``(t, h, w)`` triple).
  The released Qwen2-VL integration scores the merger's output, which is what
  the pre_llm placement hands over. A "frame" is a temporal step of the
  language model's token grid (a Qwen-VL temporal patch, two input frames).
- **score**, per video of ``T`` frames x ``N`` tokens x ``D`` channels (fp32):

  1. *channels*: the population variance of each channel over the video's
     ``T * N`` tokens (the raw projected features); the ``floor(D / 2)``
     channels with the lowest variance are kept (ties toward the lower channel
     index), the others ignored from here on.
  2. each token's kept channels are L2-normalised (``x / max(|x|, 1e-12)``).
  3. ``g`` = the mean of all ``T * N`` normalised tokens, ``g_t`` = the mean of
     frame ``t``'s ``N`` normalised tokens (means of unit vectors, not
     re-normalised).
  4. ``K(x, c) = sum over a in {1/8, 1/4, 1/2, 1, 2} of exp(-|x - c|^2 / (2 a))``
     (a multi-scale Gaussian similarity); per token ``s_video = K(x, g)`` and
     ``s_frame = K(x, g_t)``.
  5. frame distinctiveness ``u_t = -mean_n s_video[t, n]``; token score
     ``s_video + s_frame`` (lower = more distinctive).
- **select**:

  1. per-frame budgets: ``p = softmax(u / 0.01)`` over the video's frames,
     ``q_t = N * min(1, R * (1 + (p_t - 1 / T)))``, evaluated in that order
     (the released code subtracts ``mean(p)``, which is ``1 / T`` exactly;
     ``1 / T`` is used so that frames of equal distinctiveness get exactly
     ``R * N``), and the released rounding
     ``k_t = clamp(round(q_t), 1, N)`` (round half to even, as ``torch.round``).
     This arithmetic is done in fp64 (from the fp32 ``u``): in fp32, ``p_t -
     1 / T`` rounds the tiny shares of the frames far below the most
     distinctive one to equal values, creating ties the definition lacks.
  2. reconciliation (not in the released code, whose total
     ``sum_t k_t`` depends on the data through the rounding, the clamp at 1 and
     the floor of one token per frame): the total is made exactly
     ``retained_tokens(T, H, W) = max(T, round(R * (T * H * W)))`` (round half
     to even, the product in fp64; shapes only). The ``(t, j)`` "slots" (frame ``t``'s ``j``-th token,
     ``j = 1..N``) are ranked by ``q_t - j``, descending, ties toward the
     earlier frame; a short total takes the best-ranked slots beyond the
     ``k_t`` (one at a time this is: the frame with the largest ``q_t - k_t``
     that is not full gains a token), an excess drops the worst-ranked kept
     slots ``j >= 2`` (the frame with the smallest ``q_t - k_t`` that keeps
     more than one token loses one; ties toward the later frame). Where the
     released total already equals it, nothing changes. ``R = 1`` keeps
     everything (the released clamp would drop tokens from frames less
     distinctive than average). Net effect: every frame keeps one token, and
     the other ``retained - T`` go to the best-ranked slots ``j >= 2``; the
     released rounding only decides between slots tied exactly at a
     half-integer quota.
  3. within frame ``t``, the ``k_t`` tokens with the lowest combined score
     (:func:`vlmkern.ops.topk_indices` on the negated score: ties toward the
     lower token index, NaN last; the released ``torch.topk`` leaves ties
     unspecified). Kept tokens stay in their original order, as the released
     code sorts its indices.

Paper vs code: the paper describes the similarity to the video's mean token as
a cosine similarity (as summaries of it report); the released code (followed
here) uses the multi-scale Gaussian similarity above, on the low-variance half
of the channels, and gives every frame at least one token. The released
softmax temperature (0.01) and bandwidths are fixed in its pipeline (only the
retention ratio ``base_scale`` is exposed), so here they are constants too.
``T = 1`` is allowed: one frame gets ``p = 1`` and ``k = max(1, round(R N))``.
"""

from __future__ import annotations

import numbers

import torch

from vlmkern.ops import topk_indices

TEMPERATURE = 0.01  # the released softmax temperature over frames
BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)  # the released 2**k, k = -3..1
CHANNEL_FRACTION = 0.5  # the released share of (lowest-variance) channels kept


def check_keep_ratio(keep_ratio) -> float:
    """``keep_ratio`` as a float, or ValueError unless it is a number in ``(0, 1]``."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, numbers.Real):
        raise ValueError(f"keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
    r = float(keep_ratio)
    if not 0.0 < r <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1] (the fraction of video tokens kept), "
                         f"got {keep_ratio}")
    return r


def gaussian_similarity(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """``sum_a exp(-|x - center|^2 / (2 a))`` over :data:`BANDWIDTHS`, over the last dim."""
    d2 = (x - center).square().sum(-1)
    out = torch.zeros_like(d2)
    for a in BANDWIDTHS:
        out = out + torch.exp(d2 / (-2.0 * a))
    return out


class VidCom2:
    """VidCom2's score and select for videos.

    Args:
        keep_ratio: ``R``, the fraction of each video's tokens kept, in ``(0, 1]``
            (the released ``base_scale`` / ``R_RATIO``, default 0.25).
    """

    name = "vidcom2"
    placement = "pre_llm"
    layer = 0
    modality = "video"

    def __init__(self, keep_ratio: float = 0.25):
        self.keep_ratio = check_keep_ratio(keep_ratio)

    def __repr__(self) -> str:
        return f"VidCom2(keep_ratio={self.keep_ratio:g})"

    def retained_tokens(self, T: int, H: int, W: int) -> int:
        """Tokens kept of a video of ``T`` frames of ``H x W`` tokens (the language
        model's grid): ``max(T, round(keep_ratio * (T * H * W)))``, round half to
        even (at least one token per frame, as the released budgets). Shapes only."""
        for name, v in (("T", T), ("H", H), ("W", W)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        total = int(T) * int(H) * int(W)
        return max(int(T), min(total, round(self.keep_ratio * total)))

    def scores(self, features: torch.Tensor):
        """``(token score [V, T, N], frame distinctiveness [V, T])``, fp32: the
        token score is ``s_video + s_frame`` (lower is kept first), the frame
        distinctiveness ``-mean_n s_video``."""
        V, T, N, D = features.shape
        x = features.float()
        flat = x.reshape(V, T * N, D)
        var = (flat - flat.mean(1, keepdim=True)).square().mean(1)  # [V, D], population variance
        c = int(D * CHANNEL_FRACTION)
        chans = torch.argsort(var, dim=1, stable=True)[:, :c]  # lowest first, ties by index, NaN last
        sel = torch.gather(x, 3, chans.view(V, 1, 1, c).expand(V, T, N, c))
        sel = sel / sel.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        s_video = gaussian_similarity(sel, sel.mean(dim=(1, 2), keepdim=True))
        s_frame = gaussian_similarity(sel, sel.mean(dim=2, keepdim=True))
        return s_video + s_frame, -s_video.mean(2)

    def frame_budgets(self, distinct: torch.Tensor, N: int) -> torch.Tensor:
        """int64 ``[V, T]``: each frame's kept-token count, from the frames'
        distinctiveness ``[V, T]``; every row sums to ``retained_tokens(T, 1, N)``."""
        V, T = distinct.shape
        dev = distinct.device
        # fp64: in fp32, p - 1/T would round the small shares of the frames far
        # below the most distinctive one (softmax at temperature 0.01) to ties.
        u = distinct.double()
        e = torch.exp((u - u.amax(1, keepdim=True)) / TEMPERATURE)
        p = e / e.sum(1, keepdim=True)
        dev_p = torch.nan_to_num(p - 1.0 / T, nan=0.0)  # NaN only from NaN / inf scores
        q = N * torch.clamp(self.keep_ratio * (1.0 + dev_p), max=1.0)  # [V, T] quotas
        k0 = torch.round(q).clamp(1, N).to(torch.int64)  # the released per-frame budgets
        short = self.retained_tokens(T, 1, N) - k0.sum(1)  # [V]: > 0 add, < 0 drop
        if not bool((short != 0).any()):
            return k0
        # Rank the (frame, slot j) pairs by q_t - j, descending, ties toward the earlier frame.
        j = torch.arange(1, N + 1, dtype=torch.float64, device=dev)
        order = torch.argsort((q.unsqueeze(-1) - j).reshape(V, T * N), dim=1, descending=True, stable=True)
        kept = (j <= k0.unsqueeze(-1)).reshape(V, T * N)
        add = (~kept).gather(1, order)  # in rank order: slots a short total can take
        take = add & (add.cumsum(1) <= short.clamp(min=0).unsqueeze(1))
        drop = (kept & (j >= 2).repeat(T)).gather(1, order).flip(1)  # worst-ranked first
        give = drop & (drop.cumsum(1) <= (-short).clamp(min=0).unsqueeze(1))
        delta = torch.zeros((V, T * N), dtype=torch.int64, device=dev)
        delta.scatter_(1, order, take.to(torch.int64) - give.flip(1).to(torch.int64))
        return k0 + delta.view(V, T, N).sum(2)

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """Which tokens of same-shape videos to keep.

        Args:
            features: ``[V, T, N, D]``: ``V`` videos of ``T`` frames of ``N``
                tokens (raster order), float32/bfloat16/float16.

        Returns:
            bool ``[V, T * N]``: true at the ``retained_tokens(T, 1, N)`` kept
            tokens of each video (at least one per frame).
        """
        V, T, N, _ = features.shape
        if self.retained_tokens(T, 1, N) >= T * N:
            return torch.ones((V, T * N), dtype=torch.bool, device=features.device)
        score, distinct = self.scores(features)
        k = self.frame_budgets(distinct, N)
        kept = topk_indices(-score.reshape(V * T, N), k.reshape(V * T), N)  # lowest score first
        mask = torch.zeros((V * T, N + 1), dtype=torch.bool, device=features.device)
        mask.scatter_(1, torch.where(kept >= 0, kept, N), True)
        return mask[:, :N].reshape(V, T * N)


__all__ = ["VidCom2", "check_keep_ratio", "gaussian_similarity"]

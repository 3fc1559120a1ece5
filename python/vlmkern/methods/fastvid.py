"""FastVID (Shen et al., 2025, "FastVID: Dynamic Density Pruning for Fast Video
Large Language Models"), as score x select x merge x placement, following the
released code (github.com/LunarShen/FastVID: ``dyseg``, ``stprune``, ``dtm``)
where it and the paper's description part ways.

- **placement** ``pre_llm`` (as EVS): the projected video tokens entering
  decoder layer 0 are reduced at prefill. Kept tokens keep their original
  positions (M-RoPE triples on Qwen-VL; the LLaVA families' ``positions``
  option applies). Unlike the other ``pre_llm`` methods, FastVID *merges*: the
  context tokens it keeps carry new feature values (:meth:`FastVID.reduce`
  returns them, the pruner writes them at the kept positions).
- **segmentation** (DySeg), per video of ``T`` frames x ``N`` tokens:
  a global feature per frame, here the mean of its ``N`` projected tokens (the
  released LLaVA-OneVision code uses the SigLIP pooling head's output, which
  not every family has and which the ``pre_llm`` placement does not see). With
  ``s_t`` the cosine of frames ``t`` and ``t + 1``'s global features, the video
  is cut after frame ``t`` where ``s_t < tau`` and after the ``min(c - 1, T -
  1)`` transitions of lowest ``s_t`` (ties toward the earlier transition), so
  there are at least ``min(c, T)`` segments (:meth:`FastVID.segments`).
- **budget**: ``r = max(1, int(N * retain_ratio))`` tokens per frame (the
  released ``int``; at least one); ``s = int(d * r)`` of them salient and
  ``r - s`` context tokens (the released code multiplies the *salient* share
  by ``d``: with ``d = 0.4``, 40% salient and 60% context). Each segment of
  ``L`` frames holds ``L (r - s)`` context tokens, placed on its anchor frames
  (every ``p``-th frame of the segment from its first, ``A = ceil(L / p)`` of
  them): the released code gives each anchor frame ``floor(L (r - s) / A)``
  and drops the remainder, which makes the total depend on the segmentation;
  here the first ``L (r - s) mod A`` anchor frames take one more, so every
  video keeps exactly ``retained_tokens(T, H, W) = T r`` tokens (shapes only;
  everything when ``r >= N``, and then nothing is merged). Where an anchor
  frame has fewer than its share of non-salient tokens (large ratios, tiny
  frames; not reachable by the released defaults), each anchor frame takes all
  ``N - s`` and the rest of the segment's budget becomes extra salient tokens
  of its other frames, spread evenly (the earlier frames first).
- **salient tokens** (ATS), per frame: the paper ranks by the vision
  encoder's attention (OneVision's pooling-head attention; the released
  Qwen2.5-VL code: each frame's mean query against the tokens' keys in the
  last vision block). The ``pre_llm`` placement sees only the projected
  features, so here the substitute is the attention logit a query equal to
  the frame's global feature gives each token, ``<x, g_t>`` (softmax is
  monotone, so the ``s`` largest dot products; fp64; ties toward the lower
  index): the tokens an attention pool over the frame would weight most.
  Salient tokens are kept with their own features.
- **context tokens** (DTM), per segment: on each anchor frame, density-peak
  clustering of its non-salient tokens (:func:`vlmkern.ops.dpc_knn`, ``k =
  min(4, n)`` neighbours, as many centres as the frame's share) picks the
  anchor tokens (the released code takes the top ``rho * delta`` scores of
  the same clustering, with random noise for ties and its neighbours taken
  as the *largest* distances, ``torch.topk``'s default; the op uses the
  nearest ones, as DPC-kNN is defined, and breaks ties by index). Every
  non-salient token of the segment, the anchors included, joins the anchor of
  highest cosine (ties toward the earlier anchor, frame-major order); with
  ``u`` the unit-normalised vectors, an anchor becomes ``w u_anchor + (1 - w)
  mean(u of its members)``, ``w = max(alpha, 1 / (count + 1))``. As in the
  released code the merge is done on the L2-normalised features (so context
  tokens have norm <= 1; the paper's formula does not mention it). An anchor
  no token joins (an earlier anchor of the same direction took them) keeps
  its own normalised feature (the released code would scale it by ``w``).
  Every other non-salient token is dropped.

Constants are the released defaults for LLaVA-OneVision: ``c = 8``, ``tau =
0.9``, ``d = 0.4``, ``p = 4``, ``k = 4``, ``alpha = 0.6`` (its ``DTM_beta``);
the released scripts run ``retain_ratio`` 0.1 - 0.25 (Qwen2.5-VL: ``tau =
0.84``, and an extra frame-skipping threshold ``DySeg_ignore``, which is not
implemented here). The arithmetic of the segmentation, salience and merge is
fp64; the clustering is the op's (fp32 Gram matrix, fp64 distances).
"""

from __future__ import annotations

import math
import numbers

import torch

from vlmkern.ops import dpc_knn


def _ratio(name: str, value, low_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in {'(0' if low_open else '[0'}, 1], got {value!r}")
    v = float(value)
    ok = (0.0 < v <= 1.0) if low_open else (0.0 <= v <= 1.0)
    if not ok:
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value}")
    return v


def _positive_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` in fp64, L2-normalised (norm clamped at 1e-12)."""
    x = x.double()
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class FastVID:
    """FastVID's segmentation, selection and merge for videos.

    Args:
        retain_ratio: fraction of each frame's tokens kept, in ``(0, 1]``
            (``r = max(1, int(N * retain_ratio))`` per frame; 1 keeps everything).
        c: minimum number of segments (the ``c - 1`` weakest transitions are
            always cut), ``>= 1``.
        tau: cut where consecutive frames' cosine is below ``tau``, in ``[-1, 1]``
            (-1 never cuts by the threshold; values outside the range are refused).
        d: the salient share of each frame's budget, in ``[0, 1]`` (released
            ``STPrune_d``; the rest are context tokens).
        p: anchor-frame step inside a segment (released ``DTM_p``), ``>= 1``.
        k: neighbours of the density-peak clustering, 1 to 64.
        alpha: the merge's minimum anchor weight, in ``[0, 1]`` (released
            ``DTM_beta``).
    """

    name = "fastvid"
    placement = "pre_llm"
    layer = 0
    modality = "video"

    def __init__(self, retain_ratio: float = 0.1, c: int = 8, tau: float = 0.9, d: float = 0.4,
                 p: int = 4, k: int = 4, alpha: float = 0.6):
        self.retain_ratio = _ratio("retain_ratio", retain_ratio)
        self.c = _positive_int("c", c)
        if isinstance(tau, bool) or not isinstance(tau, numbers.Real) or not -1.0 <= float(tau) <= 1.0:
            raise ValueError(f"tau must be a number in [-1, 1] (a cosine), got {tau!r}")
        self.tau = float(tau)
        self.d = _ratio("d", d, low_open=False)
        self.p = _positive_int("p", p)
        self.k = _positive_int("k", k)
        if self.k > 64:
            raise ValueError(f"k must be an int in [1, 64], got {k!r}")
        self.alpha = _ratio("alpha", alpha, low_open=False)

    def __repr__(self) -> str:
        return (f"FastVID(retain_ratio={self.retain_ratio:g}, c={self.c}, tau={self.tau:g}, d={self.d:g}, "
                f"p={self.p}, k={self.k}, alpha={self.alpha:g})")

    # -- budgets (shapes only) -----------------------------------------------
    def frame_budget(self, N: int) -> tuple[int, int]:
        """``(r, s)``: tokens kept per frame of ``N`` and how many are salient."""
        r = min(N, max(1, int(N * self.retain_ratio)))
        return r, int(self.d * r)

    def retained_tokens(self, T: int, H: int, W: int) -> int:
        """Tokens kept of a video of ``T`` frames of ``H x W`` tokens (the language
        model's grid): ``T * max(1, int(H * W * retain_ratio))``. Shapes only."""
        for name, v in (("T", T), ("H", H), ("W", W)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        return int(T) * self.frame_budget(int(H) * int(W))[0]

    # -- the parts -------------------------------------------------------------
    def segments(self, features: torch.Tensor) -> list[list[int]]:
        """Per video of ``features [V, T, N, D]``, the first frame of each segment
        (ascending, starting with 0)."""
        V, T = features.shape[:2]
        g = features.double().mean(2)  # [V, T, D]
        g = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        sim = (g[:, :-1] * g[:, 1:]).sum(-1)  # [V, T - 1]
        weakest = min(self.c - 1, T - 1)
        out = []
        for v in range(V):
            cuts = set((sim[v] < self.tau).nonzero().flatten().tolist())
            if weakest > 0:
                # a NaN similarity (NaN features) ranks as the weakest
                key = torch.nan_to_num(sim[v], nan=-math.inf)
                cuts.update(torch.argsort(key, stable=True)[:weakest].tolist())
            out.append([0] + [t + 1 for t in sorted(cuts)])
        return out

    def salience(self, features: torch.Tensor) -> torch.Tensor:
        """fp64 ``[V, T, N]``: each token's dot product with its frame's mean token."""
        out = []
        for v in range(features.shape[0]):  # one video's fp64 copy at a time
            x = features[v].double()
            out.append((x * x.mean(1, keepdim=True)).sum(-1))
        return torch.stack(out)

    def _plan(self, T: int, N: int, starts: list[int]):
        """Per segment ``(frames, {anchor frame: centres}, {frame: extra salient})``."""
        r, s = self.frame_budget(N)
        ctx, n = r - s, N - s
        plan = []
        for a, b in zip(starts, starts[1:] + [T]):
            L = b - a
            anchors = list(range(a, b, self.p))
            A, C = len(anchors), L * ctx
            extra = {}
            if C <= A * n:
                share = {f: C // A + (1 if i < C % A else 0) for i, f in enumerate(anchors)}
            else:
                share = {f: n for f in anchors}
                rest = [f for f in range(a, b) if f not in share]
                E = C - A * n
                extra = {f: E // len(rest) + (1 if i < E % len(rest) else 0) for i, f in enumerate(rest)}
            plan.append((range(a, b), share, extra))
        return plan

    # -- select and merge -------------------------------------------------------
    def reduce(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Which tokens of same-shape videos to keep, and their new features.

        Args:
            features: ``[V, T, N, D]``: ``V`` videos of ``T`` frames of ``N``
                tokens (raster order), float32/bfloat16/float16.

        Returns:
            ``(keep, merged)``: bool ``[V, T * N]``, true at the
            ``retained_tokens(T, 1, N)`` kept tokens of each video, and
            ``[V, K, D]`` (``K`` that count, ``features``' dtype), the kept
            tokens' features in their order: a salient token's own, a context
            token's merged value. ``merged`` is None when everything is kept.
        """
        V, T, N, D = features.shape
        dev = features.device
        r, s = self.frame_budget(N)
        if r >= N:
            return torch.ones((V, T * N), dtype=torch.bool, device=dev), None
        rank = torch.argsort(self.salience(features), dim=-1, descending=True, stable=True)  # [V, T, N]
        plans = [self._plan(T, N, st) for st in self.segments(features)]
        salient = torch.zeros((V, T, N), dtype=torch.bool, device=dev)
        for v, plan in enumerate(plans):
            for frames, _, extra in plan:
                for f in frames:
                    salient[v, f, rank[v, f, :s + extra.get(f, 0)]] = True
        keep = salient.clone()
        # density-peak clustering of each anchor frame's non-salient tokens,
        # batched over the frames that want the same number of centres
        jobs: dict = {}
        for v, plan in enumerate(plans):
            for _, share, _ in plan:
                for f, m in share.items():
                    if m > 0:
                        jobs.setdefault(m, []).append((v, f))
        anchors: dict = {}  # (v, f) -> token indices of the anchors, ascending
        for m, frames in jobs.items():
            idx = torch.stack([(~salient[v, f]).nonzero().flatten() for v, f in frames])  # [B, n]
            pts = torch.stack([features[v, f] for v, f in frames]).gather(
                1, idx.unsqueeze(-1).expand(-1, -1, D))
            centres, _ = dpc_knn(pts, min(self.k, idx.shape[1]), m)
            for (v, f), i, cen in zip(frames, idx, centres):
                anchors[(v, f)] = i[cen]
        context = []  # (video, flat positions, merged rows fp64)
        for v, plan in enumerate(plans):
            for frames, share, _ in plan:
                held = [f for f in sorted(share) if share[f] > 0]  # anchor frames, in order
                if not held:
                    continue
                af = torch.cat([torch.full((share[f],), f, dtype=torch.long, device=dev) for f in held])
                at = torch.cat([anchors[(v, f)] for f in held])  # each frame's ascending
                keep[v, af, at] = True
                members = ~salient[v, frames.start:frames.stop].reshape(-1)
                u = _unit(features[v, frames.start:frames.stop].reshape(-1, D)[members])  # [M, D]
                a = _unit(features[v, af, at])  # [A, D]
                A = a.shape[0]
                sim = u @ a.T
                # an anchor repeating an earlier one exactly ties with it on every
                # token and loses; decided here, not by the matmul's rounding
                _, inv = torch.unique(a, dim=0, return_inverse=True)
                order = torch.arange(A, device=dev)
                first = torch.full((int(inv.max()) + 1,), A, device=dev).scatter_reduce(0, inv, order, "amin")
                sim[:, first[inv] != order] = -math.inf
                join = torch.argmax(sim, dim=1)  # first maximum: the earlier anchor
                onehot = torch.nn.functional.one_hot(join, A).to(torch.float64)  # [M, A]
                count = onehot.sum(0).unsqueeze(1)  # [A, 1]
                total = onehot.T @ u
                w = torch.clamp(1.0 / (count + 1.0), min=self.alpha)
                merged = w * a + (1.0 - w) * total / count.clamp_min(1.0)
                context.append((v, af * N + at, torch.where(count > 0, merged, a)))
        keep = keep.reshape(V, T * N)
        K = self.retained_tokens(T, 1, N)
        out = features.reshape(V, T * N, D)[keep].reshape(V, K, D).clone()  # salient rows: their own
        slot = keep.cumsum(1) - 1  # a kept token's row in out
        for v, flat, rows in context:
            out[v, slot[v, flat]] = rows.to(features.dtype)
        return keep, out

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """bool ``[V, T * N]``: the kept tokens (:meth:`reduce` without the values)."""
        return self.reduce(features)[0]


__all__ = ["FastVID"]

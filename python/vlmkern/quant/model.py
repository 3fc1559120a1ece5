"""``vlmkern.quantize(model, scheme="w4a8", ...)`` and friends."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import torch

from vlmkern.nn.w4a8_linear import W4A8Linear, take_hooks

QUANT_SCHEMES = ("w4a8",)
TARGETS = ("language", "lm_head", "vision", "projector")
FORMAT = "vlmkern-w4a8-v1"

# Where each part lives in the transformers VLMs (model.<path>); first match wins.
_PARTS = {
    "language": ("model.language_model", "language_model", "model.text_model"),
    "vision": ("model.visual", "model.vision_tower", "vision_tower", "visual", "model.vision_model",
               "vision_model"),
    "projector": ("model.multi_modal_projector", "multi_modal_projector", "model.mlp1", "mlp1"),
    "lm_head": ("lm_head",),
}


def _get(model, path: str):
    m = model
    for p in path.split("."):
        m = getattr(m, p, None)
        if m is None:
            return None
    return m


def _resolve_targets(targets) -> tuple[str, ...]:
    if isinstance(targets, str):
        targets = TARGETS if targets == "all" else (targets,)
    targets = tuple(targets)
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"targets: expected 'all' or names from {TARGETS}, got {targets!r}")
    return targets


def _target_linears(model, targets) -> list[tuple[str, torch.nn.Linear]]:
    """(qualified name, module) of every nn.Linear the targets cover, in model order."""
    names = {id(m): n for n, m in model.named_modules()}
    chosen: dict[str, torch.nn.Module] = {}
    every = isinstance(targets, str) and targets == "all"
    for t in _resolve_targets(targets):
        part = None
        for path in _PARTS[t]:
            part = _get(model, path)
            if part is not None:
                break
        if part is None:
            if every:  # "all": the parts this family has (Qwen's projector is inside its vision tower)
                continue
            raise ValueError(f"targets: {type(model).__name__} has no {t!r} part (looked for "
                             f"{', '.join(_PARTS[t])})")
        if isinstance(part, torch.nn.Linear):
            chosen[names[id(part)]] = part
            continue
        base = names[id(part)]
        for n, m in part.named_modules():
            if isinstance(m, torch.nn.Linear) and not isinstance(m, W4A8Linear):
                chosen[f"{base}.{n}" if n else base] = m
    order = {n: i for i, n in enumerate(names.values())}
    return sorted(chosen.items(), key=lambda kv: order[kv[0]])


def parent_and_child(model, name: str) -> tuple[torch.nn.Module, str]:
    """(the module holding ``name``, the attribute name inside it)."""
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def _set_module(model, name: str, new: torch.nn.Module) -> torch.nn.Module:
    parent, child = parent_and_child(model, name)
    old = getattr(parent, child)
    take_hooks(new, old)
    setattr(parent, child, new)
    return old


def quantized_layers(model) -> dict[str, W4A8Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, W4A8Linear)}


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, unit="layer")


def quantize(model, scheme: str = "w4a8", group_size: int | None = 128, targets="language",
             calibration: Iterable | None = None, *, progress: bool = True,
             awq_grid: int = 20, calibration_rows: int = 512, _replaced: list | None = None):
    """Replace the chosen ``nn.Linear`` layers of ``model`` by :class:`W4A8Linear`, in place.

    Args:
        model: a transformers VLM (or any model with a ``language_model`` part).
        scheme: ``"w4a8"`` (int4 symmetric weights per group, int8 per-token activations).
        group_size: 32, 64, 128 (default) or None (one group per output channel).
            A layer whose ``in_features`` is not a multiple is padded with zero
            weights (reported in its ``repr``), never skipped.
        targets: ``"language"`` (default: the language model's decoder), or any
            of ``"lm_head"``, ``"vision"`` (vision tower), ``"projector"``, as a
            list, or ``"all"``.
        calibration: optional iterable of input batches (dicts of model kwargs,
            e.g. a processor's output). Runs the float model on them once,
            records each target layer's inputs (up to ``calibration_rows`` rows),
            and picks per-input-channel AWQ scales ``s = mean|x|^a`` (``a`` from
            ``{0, 1/awq_grid, ..., (awq_grid-1)/awq_grid}``, ``a = 0`` is plain
            round-to-nearest) that minimise the layer's W4A8 output error on them.
        progress: show a progress bar over layers.

    Returns:
        ``model`` (modified in place; the float weights of replaced layers are
        released unless something else references them).
    """
    if scheme not in QUANT_SCHEMES:
        raise ValueError(f"scheme must be one of {QUANT_SCHEMES}, got {scheme!r}")
    layers = _target_linears(model, targets)
    if not layers:
        raise ValueError(f"quantize: no nn.Linear layers found under targets={targets!r}")
    inputs = _record_inputs(model, layers, calibration, calibration_rows) if calibration is not None else {}
    for name, lin in _progress(layers, len(layers), "vlmkern.quantize w4a8", progress):
        smooth = None
        if name in inputs:
            smooth = awq_search(lin, inputs.pop(name), group_size, grid=awq_grid)
        q = W4A8Linear.from_linear(lin, group_size=group_size, smooth=smooth)
        old = _set_module(model, name, q)
        if _replaced is not None:
            _replaced.append((name, old))
    return model


@torch.no_grad()
def _record_inputs(model, layers, calibration, max_rows: int) -> dict[str, torch.Tensor]:
    """Inputs of each layer over the calibration batches, as float32 [rows, K]:
    a deterministic subsample of at most max_rows per batch, then of max_rows
    overall (memory: batches x max_rows x K floats per layer at the peak)."""
    store: dict[str, list[torch.Tensor]] = {n: [] for n, _ in layers}
    gen = torch.Generator().manual_seed(0)
    hooks = []
    for name, lin in layers:
        def hook(mod, args, name=name):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            if x.shape[0] > max_rows:  # bound the memory per batch, not only at the end
                x = x[torch.randperm(x.shape[0], generator=gen)[:max_rows].to(x.device)]
            store[name].append(x.float().cpu())
        hooks.append(lin.register_forward_pre_hook(hook))
    try:
        n_batches = 0
        for batch in calibration:
            if isinstance(batch, dict):
                model(**batch)
            else:
                model(batch)
            n_batches += 1
        if n_batches == 0:
            raise ValueError("calibration: expected at least one batch")
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, xs in store.items():
        if not xs:
            continue
        x = torch.cat(xs)
        if x.shape[0] > max_rows:
            x = x[torch.randperm(x.shape[0], generator=gen)[:max_rows]]
        out[name] = x
    return out


@torch.no_grad()
def awq_search(linear: torch.nn.Linear, x: torch.Tensor, group_size: int | None,
               grid: int = 20) -> torch.Tensor | None:
    """AWQ-style per-input-channel scale for one layer.

    ``s = mean_rows|x|^a`` divided by ``sqrt(max(s) * min(s))`` (so the
    largest and smallest scales are reciprocal), with ``a`` in
    ``{0, 1/grid, ..., (grid-1)/grid}``; returns the ``s`` whose W4A8 output (weights
    ``W * s`` quantized round-to-nearest, inputs ``x / s`` quantized per row to
    int8) is closest to the float output ``x W^T`` in squared error, or None when
    ``a = 0`` (plain round-to-nearest) wins.
    """
    w = linear.weight.detach().float().cpu()
    x = x.float()
    ref = x @ w.t()
    act = x.abs().mean(0).clamp_min(1e-5)
    best_err, best_s = math.inf, None
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False, device="meta")
    lin.weight = torch.nn.Parameter(w, requires_grad=False)  # the float weight on the CPU, no bias
    for i in range(grid):
        a = i / grid
        s = act.pow(a)
        s = s / (s.max() * s.min()).sqrt()
        q = W4A8Linear.from_linear(lin, group_size=group_size, smooth=None if i == 0 else s)
        err = (q(x) - ref).pow(2).sum().item()
        if err < best_err:
            best_err, best_s = err, (None if i == 0 else s)
    return best_s


# ---- save / load ---------------------------------------------------------------------------

def save_quantized(model, path: str) -> None:
    """Write the whole model state (W4A8 layers in the logical format) to one
    safetensors file; the metadata lists the quantized layers."""
    from safetensors.torch import save_model

    layers = {n: {"in_features": m.in_features, "out_features": m.out_features,
                  "group_size": m.group_size, "bias": m.bias is not None,
                  "bias_dtype": str(m.bias.dtype).removeprefix("torch.") if m.bias is not None else None,
                  "smooth": m.smooth is not None}
              for n, m in quantized_layers(model).items()}
    if not layers:
        raise ValueError("save_quantized: the model has no W4A8Linear layers (call vlmkern.quantize first)")
    save_model(model, path, metadata={"format": FORMAT, "layers": json.dumps(layers)})


def load_quantized(model, path: str, *, strict: bool = True):
    """Load a file written by :func:`save_quantized` into ``model``, a freshly
    built model of the same architecture (random or float weights): the listed
    layers are replaced by :class:`W4A8Linear` and every tensor is loaded.
    Scales are validated (finite, > 0). Returns ``model``."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vlmkern W4A8 file (format={meta.get('format')!r}, "
                         f"expected {FORMAT!r})")
    for name, spec in json.loads(meta["layers"]).items():
        old = model.get_submodule(name)
        dev = next(old.parameters()).device if any(True for _ in old.parameters()) else None
        q = W4A8Linear(spec["in_features"], spec["out_features"], spec["bias"],
                       group_size=spec["group_size"],
                       bias_dtype=getattr(torch, spec["bias_dtype"] or "float32"), device=dev)
        if spec["smooth"]:
            q.smooth = torch.ones(spec["in_features"], device=dev)
        _set_module(model, name, q)
    load_model(model, path, strict=strict)
    for name, q in quantized_layers(model).items():
        s = q.scales
        if not bool(torch.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"{path}: layer {name} has non-finite or non-positive scales")
        if q.smooth is not None and not bool(torch.isfinite(q.smooth).all() and (q.smooth > 0).all()):
            raise ValueError(f"{path}: layer {name} has non-finite or non-positive smooth scales")
    return model

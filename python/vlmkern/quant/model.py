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

    All or nothing: if anything fails or is interrupted part-way (an error in a
    layer's quantization, ``KeyboardInterrupt``), every layer replaced so far
    is put back and the model is as it was.
    """
    if scheme not in QUANT_SCHEMES:
        raise ValueError(f"scheme must be one of {QUANT_SCHEMES}, got {scheme!r}")
    layers = _target_linears(model, targets)
    if not layers:
        raise ValueError(f"quantize: no nn.Linear layers found under targets={targets!r}")
    inputs = _record_inputs(model, layers, calibration, calibration_rows) if calibration is not None else {}
    replaced = []
    try:
        for name, lin in _progress(layers, len(layers), "vlmkern.quantize w4a8", progress):
            smooth = None
            if name in inputs:
                smooth = awq_search(lin, inputs.pop(name), group_size, grid=awq_grid)
            q = W4A8Linear.from_linear(lin, group_size=group_size, smooth=smooth)
            replaced.append((name, _set_module(model, name, q)))
    except BaseException:
        for name, old in reversed(replaced):  # put the float layers back
            _set_module(model, name, old)
        raise
    if _replaced is not None:
        _replaced.extend(replaced)
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
    safetensors file; the metadata lists the quantized layers. Atomic: the file
    is written next to ``path`` and renamed over it, so a failure part-way
    leaves an existing file at ``path`` as it was."""
    import os
    import tempfile

    from safetensors.torch import save_model

    layers = {n: {"in_features": m.in_features, "out_features": m.out_features,
                  "group_size": m.group_size, "bias": m.bias is not None,
                  "bias_dtype": str(m.bias.dtype).removeprefix("torch.") if m.bias is not None else None,
                  "smooth": m.smooth is not None}
              for n, m in quantized_layers(model).items()}
    if not layers:
        raise ValueError("save_quantized: the model has no W4A8Linear layers (call vlmkern.quantize first)")
    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        save_model(model, tmp, metadata={"format": FORMAT, "layers": json.dumps(layers)})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


_BIAS_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _layer_spec(path: str, name: str, spec, model) -> dict:
    """A layer entry of the file's metadata, checked against the model before
    anything is allocated from it: the layer must be a Linear of the model with
    the same shape (so no size comes from the file alone)."""
    def bad(why):
        return ValueError(f"{path}: layer {name!r}: {why} (a file saved from another model, or a "
                          "tampered header)")

    if not isinstance(spec, dict):
        raise bad(f"expected a dict, got {type(spec).__name__}")
    try:
        old = model.get_submodule(name)
    except AttributeError:
        raise bad("the model has no such module") from None
    if not isinstance(old, (torch.nn.Linear, W4A8Linear)):
        raise bad(f"the model's module is a {type(old).__name__}, not a Linear")
    for key in ("in_features", "out_features"):
        v = spec.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v != getattr(old, key):
            raise bad(f"{key} is {v!r}, the model's layer has {getattr(old, key)}")
    g = spec.get("group_size")
    if g is not None and (isinstance(g, bool) or not isinstance(g, int) or g <= 0 or g % 8):
        raise bad(f"group_size {g!r} is not a positive multiple of 8 or null")
    for key in ("bias", "smooth"):
        if not isinstance(spec.get(key), bool):
            raise bad(f"{key} must be true or false, got {spec.get(key)!r}")
    if spec["bias"] != (old.bias is not None):
        raise bad(f"bias is {spec['bias']}, the model's layer {'has' if old.bias is not None else 'has no'} bias")
    bias_dtype = spec.get("bias_dtype")
    if spec["bias"] and bias_dtype not in _BIAS_DTYPES:
        raise bad(f"bias_dtype {bias_dtype!r} is not one of {sorted(_BIAS_DTYPES)}")
    return spec


def load_quantized(model, path: str, *, strict: bool = True):
    """Load a file written by :func:`save_quantized` into ``model``, a freshly
    built model of the same architecture (random or float weights): the listed
    layers are replaced by :class:`W4A8Linear` and every tensor is loaded.

    Safetensors only (never pickle). Everything is checked before the model is
    touched: the format tag, each listed layer against the model (a Linear of
    the same shape), every tensor's name, shape and dtype against the model's,
    and the scales (finite, > 0). On any error the model is unchanged and a
    ``ValueError`` names the file and the problem. Returns ``model``."""
    from safetensors import SafetensorError, safe_open

    path = str(path)
    try:
        f = safe_open(path, framework="pt")
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); vlmkern loads W4A8 "
                         "checkpoints from safetensors files only, never pickle") from e
    with f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: not a vlmkern W4A8 file (format={meta.get('format')!r}, "
                             f"expected {FORMAT!r})")
        try:
            layers = json.loads(meta.get("layers", ""))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: the metadata's layer list is not valid JSON ({e})") from e
        if not isinstance(layers, dict) or not layers:
            raise ValueError(f"{path}: the metadata lists no quantized layers")
        specs = {name: _layer_spec(path, name, spec, model) for name, spec in layers.items()}

        # The replacements (sized by the model's own layers), and the state the
        # model would have with them, to check the file's tensors against.
        new = {}
        for name, spec in specs.items():
            old = model.get_submodule(name)
            dev = next(old.parameters()).device if any(True for _ in old.parameters()) else None
            q = W4A8Linear(spec["in_features"], spec["out_features"], spec["bias"],
                           group_size=spec["group_size"],
                           bias_dtype=_BIAS_DTYPES.get(spec["bias_dtype"], torch.float32), device=dev)
            if spec["smooth"]:
                q.smooth = torch.ones(spec["in_features"], device=dev)
            new[name] = q
        expected = {}
        for key, t in model.state_dict().items():
            owner = next((n for n in new if key.startswith(n + ".")), None)
            if owner is None:
                expected[key] = (tuple(t.shape), t.dtype)
        for name, q in new.items():
            for k, t in q.state_dict().items():
                expected[f"{name}.{k}"] = (tuple(t.shape), t.dtype)
        keys = set(f.keys())
        missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
        if strict and (missing or unexpected):
            raise ValueError(f"{path}: the file does not match this model: missing {missing[:5]}"
                             f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                             f"{'...' if len(unexpected) > 5 else ''} (a file saved from another model?)")
        for key in sorted(keys & set(expected)):
            sl = f.get_slice(key)
            shape, dtype = tuple(sl.get_shape()), sl.get_dtype()
            want_shape, want_dtype = expected[key]
            if shape != want_shape:
                raise ValueError(f"{path}: tensor {key} has shape {list(shape)}, the model expects "
                                 f"{list(want_shape)}")
            if not _same_dtype(dtype, want_dtype):
                raise ValueError(f"{path}: tensor {key} has dtype {dtype}, the model expects {want_dtype}")
        state = {key: f.get_tensor(key) for key in keys & set(expected)}

    for name, q in new.items():
        for what in ("scales", "smooth"):
            t = state.get(f"{name}.{what}")
            if t is not None and not bool(torch.isfinite(t).all() and (t > 0).all()):
                raise ValueError(f"{path}: layer {name} has non-finite or non-positive "
                                 f"{'scales' if what == 'scales' else 'smooth scales'}")
    # Swap in, load, and undo both if loading fails.
    swapped = [(name, _set_module(model, name, q)) for name, q in new.items()]
    try:
        model.load_state_dict(state, strict=strict)
    except BaseException:
        for name, old in reversed(swapped):
            _set_module(model, name, old)
        raise
    return model


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F64": torch.float64, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
                       "I32": torch.int32, "I64": torch.int64, "BOOL": torch.bool}


def _same_dtype(st_dtype: str, dtype: torch.dtype) -> bool:
    return _SAFETENSORS_DTYPES.get(st_dtype) == dtype

"""Summaries of a pytest-benchmark JSON written by `vlmkern bench`: a table of
every ratio recorded in extra_info, a PNG bar chart of them, and a comparison
with an earlier run (`--compare OLD.json`)."""

from __future__ import annotations

import json
import os

RATIO_KEYS = ("speedup", "speedup_vs_index_select", "speedup_vs_a", "speedup_vs_b", "memory_ratio_a", "decoder_speedup",
              "ttft_speedup", "encoder_speedup", "x_of_k_read_time")


def _ratios(path):
    with open(path) as f:
        data = json.load(f)
    out = {}
    for b in data.get("benchmarks", []):
        for k in RATIO_KEYS:
            if k in b.get("extra_info", {}):
                out[f"{b['name']} {k}"] = float(b["extra_info"][k])
        out[f"{b['name']} median_s"] = float(b["stats"]["median"])
    return out


def report(path, compare=None, png=None):
    cur = _ratios(path)
    old = _ratios(compare) if compare else {}
    w = max((len(k) for k in cur), default=10)
    print(f"\n{'case':<{w}}  {'value':>10}" + (f"  {'before':>10}  {'change':>8}" if old else ""))
    for k, v in cur.items():
        line = f"{k:<{w}}  {v:>10.4g}"
        if old and k in old and old[k]:
            line += f"  {old[k]:>10.4g}  {v / old[k]:>7.2f}x"
        print(line)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        print("(matplotlib not installed: no chart)")
        return
    items = [(k, v) for k, v in cur.items() if not k.endswith("median_s")]
    if not items:
        return
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xscale("log")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("ratio (log scale)")
    fig.tight_layout()
    png = png or os.path.splitext(path)[0] + ".png"
    fig.savefig(png, dpi=100)
    print(f"chart: {png}")

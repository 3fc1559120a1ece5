"""The command line: `vlmkern info`, a small `vlmkern demo`, the bench report."""

import argparse
import json
import re
import subprocess
import sys

import torch

import vlmkern
from vlmkern import bench_report, cli, demo
from vlmkern.patch.core import InLLMPruner


def test_info_runs_and_names_every_op():
    out = subprocess.run([sys.executable, "-m", "vlmkern", "info"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for key in ("vlmkern", "torch", "transformers", "cpu kernel ISA", "op attention_mass",
                "op topk_indices", "op w4a8_gemm", "CUDA kernels", "patch families"):
        assert key in out.stdout
    assert vlmkern._C.cpu_isa() in out.stdout


def _demo_args(**kw):
    args = dict(model=None, layers=2, side=112, layer=1, keep_ratio=0.25, max_new_tokens=3,
                threads=None, quant="w4a8", run_config=None, result_json=None, frames=0, video_side=56,
                rate=0.75, rho=0.7, tol=0.0)
    args.update(kw)
    return argparse.Namespace(**args)


def test_small_demo_prunes_and_reverts(capsys):
    assert demo.main(_demo_args()) == 0
    text = capsys.readouterr().out
    # 112x112 px -> 16 visual tokens; FastV keeps 4 (measured from the keep mask)
    assert re.search(r"visual tokens in -> kept\s+16 -> 16\s+16 -> 4\s+16 -> 4", text), text
    assert "prefill speed-up" in text and "fresh process" in text
    assert "+ W4A8 g128" in text and "decoder linear weights" in text


def test_small_video_demo(capsys):
    """16 frames of 56x56: 8 temporal groups, the two holds repeat (6 encoded);
    EVS keeps max(N, floor(T N / 4)) of 8 x 4 tokens = 8, DyCoke (rho 0.7) keeps
    3 whole frames + 5 x ceil(0.3 x 4) = 22 (anchors: 1->0, 3->2, 5->4, 7->6, 2->0),
    VidCom2 (keep 0.25) max(T, round(0.25 T N)) = 8, FastVID (keep 0.25) T max(1,
    int(0.25 N)) = 8."""
    args = _demo_args(quant="none", frames=16)
    assert demo.main(args) == 0
    text = capsys.readouterr().out
    assert re.search(r"video tokens in -> kept\s+32 -> 32\s+32 -> 32\s+32 -> 8\s+32 -> 8\s+32 -> 22\s+32 -> 8\s+32 -> 8",
                     text), text
    assert re.search(r"encoder groups run\s+8/8\s+6/8\s+8/8\s+6/8\s+8/8\s+8/8\s+8/8", text), text


def test_demo_counts_what_the_model_kept(monkeypatch):
    """With the pruning hook disabled, the demo reports 16 -> 16, not the
    ratio's 16 -> 4; after the run the model is reverted and computes exactly
    what a fresh one does."""
    args = _demo_args(quant="none")
    r, model = demo.run_config("fastv", args, return_model=True)
    assert (r.visual_in, r.visual_out) == (16, 4)
    assert "_vlmkern_patch" not in model.__dict__
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules())
    fresh = demo.random_qwen2_5_vl(num_layers=2)
    inputs, _ = demo.qwen_image_inputs(demo.photo(), side=112)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, fresh(**inputs).logits)

    monkeypatch.setattr(InLLMPruner, "_prune_pre", lambda self, module, a, kw: None)
    r = demo.run_config("fastv", args)
    assert (r.visual_in, r.visual_out) == (16, 16)


def test_demo_peak_memory_does_not_depend_on_run_order():
    """Each configuration runs in a fresh process (after a warm-up, with a
    fixed malloc mmap threshold): two identical unpatched runs report the same
    peak memory within 3% (the old in-process column gave 42 and 8 MiB), and
    FastV's is lower than both (1024 visual tokens, 2 layers, K=1: it saves
    about 7 MiB of about 177 here)."""
    args = _demo_args(layers=2, side=896, quant="none", max_new_tokens=2)
    a, b = (demo._run_in_fresh_process("unpatched", args) for _ in range(2))
    f = demo._run_in_fresh_process("fastv", args)
    assert abs(a.peak_bytes - b.peak_bytes) <= 0.03 * max(a.peak_bytes, b.peak_bytes), (a.peak_bytes, b.peak_bytes)
    assert f.peak_bytes < min(a.peak_bytes, b.peak_bytes) - 2**20, (f.peak_bytes, a.peak_bytes, b.peak_bytes)


def test_bench_report_compares_runs(tmp_path, capsys):
    def run(t, speed):
        return {"benchmarks": [{"name": "case", "stats": {"median": t},
                                "extra_info": {"speedup_vs_b": speed}}]}
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(run(2.0, 1.5)))
    new.write_text(json.dumps(run(1.0, 3.0)))
    bench_report.report(str(new), compare=str(old), png=str(tmp_path / "chart.png"))
    text = capsys.readouterr().out
    assert "case speedup_vs_b" in text and "2.00x" in text
    assert (tmp_path / "chart.png").exists()


def test_cli_parser_rejects_unknown_command():
    try:
        cli.main(["nope"])
    except SystemExit as e:
        assert e.code != 0
    else:  # pragma: no cover
        raise AssertionError("expected a usage error")


def test_unknown_cpu_isa_is_refused():
    """A typo in VLMKERN_CPU_ISA must not silently run the best path."""
    import os

    env = dict(os.environ, VLMKERN_CPU_ISA="avx3")
    r = subprocess.run([sys.executable, "-c", "import vlmkern"], env=env, capture_output=True, text=True)
    assert r.returncode != 0
    assert "VLMKERN_CPU_ISA: expected one of scalar, avx2, avx512, avx512_bf16, amx" in r.stderr
    assert "'avx3'" in r.stderr
    env["VLMKERN_CPU_ISA"] = "scalar"
    r = subprocess.run([sys.executable, "-c", "import vlmkern; print(vlmkern._C.cpu_isa())"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "scalar", r.stderr

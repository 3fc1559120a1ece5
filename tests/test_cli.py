"""The command line: `vlmkern info`, a small `vlmkern demo`, the bench report."""

import argparse
import json
import subprocess
import sys

import vlmkern
from vlmkern import bench_report, cli, demo


def test_info_runs_and_names_every_op():
    out = subprocess.run([sys.executable, "-m", "vlmkern", "info"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for key in ("vlmkern", "torch", "transformers", "cpu kernel ISA", "op attention_mass",
                "op topk_indices", "op w4a8_gemm", "CUDA kernels", "patch families"):
        assert key in out.stdout
    assert vlmkern._C.cpu_isa() in out.stdout


def test_small_demo_prunes_and_reverts(capsys):
    args = argparse.Namespace(model=None, layers=2, side=112, layer=1, keep_ratio=0.25,
                              max_new_tokens=3, threads=None, quant="w4a8")
    assert demo.main(args) == 0
    text = capsys.readouterr().out
    assert "16 -> 4" in text  # 112x112 px -> 16 visual tokens -> keep 4
    assert "prefill speed-up" in text
    assert "+ W4A8 g128" in text and "decoder linear weights" in text


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

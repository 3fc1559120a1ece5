"""Command line: ``vlmkern info | demo | bench`` (also ``python -m vlmkern``)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def _info(args) -> int:
    import platform

    import torch
    import transformers

    import vlmkern
    from vlmkern import _C

    isa = _C.cpu_isa()
    am_path = {
        "scalar": "scalar C++",
        "avx2": "AVX2+FMA (fp32 accumulate; bf16/fp16 converted on load)",
        "avx512": "AVX-512 FMA",
        "avx512_bf16": "AVX-512, VDPBF16PS for bf16",
        "amx": "AVX-512, VDPBF16PS for bf16",
    }[isa]
    rows = [
        ("vlmkern", vlmkern.__version__),
        ("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}); extension built against {_C.torch_version}"),
        ("transformers", transformers.__version__),
        ("python", platform.python_version()),
        ("cpu", platform.processor() or platform.machine()),
        ("cpu features", _C.cpu_features() or "(none of interest)"),
        ("cpu kernel ISA", f"{isa} (best supported: {_C.cpu_isa_supported()}; cap with VLMKERN_CPU_ISA)"),
        ("threads", str(torch.get_num_threads())),
        ("op attention_mass [cpu]", am_path),
        ("op topk_indices [cpu]", "scalar C++ (nth_element select + ordered scan)"),
        ("op frame_similarity [cpu]", {"scalar": "scalar C++", "avx2": "AVX2 FMA"}.get(isa, "AVX-512 FMA")),
        ("op temporal_select [cpu]", "frame_similarity's " + {"scalar": "scalar C++", "avx2": "AVX2 FMA"}.get(
            isa, "AVX-512 FMA") + " cosines + topk_indices' select + gather"),
        ("op w4a8_gemm [cpu]", {"scalar": "scalar C++", "avx2": "AVX2 VPMADDUBSW + VPMADDWD",
                                "avx512_vnni": "AVX512-VNNI VPDPBUSD",
                                "amx": "AMX-INT8 tiles (M >= 16), AVX512-VNNI below"}[_C.w4a8_cpu_path()]),
        ("CUDA kernels", f"built for {_C.cuda_archs}" if _C.with_cuda else "not built"),
        ("CUDA device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"),
        ("patch families", ", ".join(vlmkern.SUPPORTED_FAMILIES)),
        ("video families", ", ".join(vlmkern.patch.VIDEO_FAMILIES)),
        ("methods", ", ".join(sorted(vlmkern.methods.METHODS))),
    ]
    w = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    return 0


def _bench(args) -> int:
    bench_dir = args.bench_dir or os.path.join(os.getcwd(), "bench")
    if not os.path.isdir(bench_dir):
        print(f"vlmkern bench: no benchmark suite at {bench_dir}; run from a source checkout "
              "or pass --bench-dir", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.json)) or ".", exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", bench_dir, "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={args.json}", "--benchmark-columns=median,iqr,rounds"]
    if args.k:
        cmd += ["-k", args.k]
    rc = subprocess.call(cmd)
    if os.path.exists(args.json):
        from vlmkern.bench_report import report

        report(args.json, compare=args.compare, png=args.png)
    return rc


def _demo_args_error(args) -> str | None:
    """What is wrong with the demo's arguments, checked before any model is built."""
    from vlmkern.methods.fastv import check_keep_ratio

    try:
        check_keep_ratio(args.keep_ratio)
    except ValueError as e:
        return str(e)
    if not args.model and args.layers < 2:
        return f"--layers must be at least 2 (FastV needs a layer before K), got {args.layers}"
    if not args.model and not 1 <= args.layer <= args.layers - 1:
        return f"--layer must be in [1, {args.layers - 1}] for {args.layers} layers, got {args.layer}"
    if not args.model and (args.side < 56 or args.side % 28):
        return f"--side must be a multiple of 28 pixels, at least 56 (Qwen's merged patch), got {args.side}"
    if args.max_new_tokens < 1:
        return f"--max-new-tokens must be at least 1, got {args.max_new_tokens}"
    if args.threads is not None and args.threads < 1:
        return f"--threads must be at least 1, got {args.threads}"
    if args.frames < 0 or args.frames % 2 or 0 < args.frames < 4:
        return f"--frames must be 0 or an even number >= 4 (two frames per temporal patch), got {args.frames}"
    if args.video_side < 56 or args.video_side % 28:
        return f"--video-side must be a multiple of 28 pixels, at least 56, got {args.video_side}"
    from vlmkern.methods import EVS, DyCoke, FastVID, PixelDedup, VidCom2

    for make, value in ((EVS, args.rate), (DyCoke, args.rho), (PixelDedup, args.tol),
                        (VidCom2, args.keep_ratio), (FastVID, args.keep_ratio)):
        try:
            make(value)
        except ValueError as e:
            return f"{make.name}: {e}"
    return None


def _demo(args) -> int:
    from vlmkern import demo

    why = _demo_args_error(args)
    if why:
        print(f"vlmkern demo: error: {why}", file=sys.stderr)
        return 2
    return demo.main(args)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="vlmkern", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions, CPU features, kernel paths, CUDA build")
    d = sub.add_parser("demo", help="unpatched vs FastV on a real architecture and a real photo, "
                                     "then the video methods on a video made from photographs")
    d.add_argument("--model", help="a local checkpoint path (or cached hub id) instead of random weights")
    d.add_argument("--layers", type=int, default=8, help="decoder layers of the random model (default 8)")
    d.add_argument("--side", type=int, default=896, help="image side in pixels (896 -> 1024 visual tokens)")
    d.add_argument("--layer", type=int, default=3, help="FastV layer K (default 3)")
    d.add_argument("--keep-ratio", type=float, default=0.25,
                   help="fraction of visual tokens kept: FastV on the image, VidCom2 and FastVID on the video "
                        "(default 0.25)")
    d.add_argument("--max-new-tokens", type=int, default=16)
    d.add_argument("--quant", choices=["w4a8", "none"], default="w4a8",
                   help="also run FastV with the decoder quantized (default w4a8)")
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--frames", type=int, default=32,
                   help="frames of the demo video (default 32; 0 skips the video part)")
    d.add_argument("--video-side", type=int, default=224, help="video frame side in pixels (default 224)")
    d.add_argument("--rate", type=float, default=0.75, help="EVS pruning rate (default 0.75)")
    d.add_argument("--rho", type=float, default=0.7, help="DyCoke merge rate (default 0.7)")
    d.add_argument("--tol", type=float, default=0.0, help="pixel_dedup tolerance (default 0: exact repeats)")
    # internal: the demo runs each configuration in a child process
    d.add_argument("--run-config", default=None, help=argparse.SUPPRESS)
    d.add_argument("--result-json", default=None, help=argparse.SUPPRESS)
    b = sub.add_parser("bench", help="run the benchmark suite, write JSON and a PNG of the ratios")
    b.add_argument("--json", default="bench-results/latest.json")
    b.add_argument("--png", default=None, help="chart path (default: next to the JSON)")
    b.add_argument("--compare", default=None, help="an earlier JSON to compare against")
    b.add_argument("-k", default=None, help="pytest -k expression to select cases")
    b.add_argument("--bench-dir", default=None)
    args = p.parse_args(argv)
    return {"info": _info, "demo": _demo, "bench": _bench}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())

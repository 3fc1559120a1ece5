"""Measurement helpers shared by the benchmark suites (see docs/benchmarks.md).

- ratios are measured A B A B in one process (`ab_times`);
- peak extra memory is measured in a fresh subprocess from its peak RSS
  (`peak_extra_bytes`), so allocator caches and earlier cases don't leak in;
- ceilings (DRAM read and copy bandwidth) are measured on the same machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import time

import torch


def ab_times(fa, fb, rounds: int = 15, inner: int = 1, warmup: int = 2):
    """Median seconds per call of fa and fb, timed alternately (A B A B ...)."""
    for _ in range(warmup):
        fa()
        fb()
    ta, tb = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(inner):
            fa()
        ta.append((time.perf_counter() - t) / inner)
        t = time.perf_counter()
        for _ in range(inner):
            fb()
        tb.append((time.perf_counter() - t) / inner)
    return statistics.median(ta), statistics.median(tb)


_PEAK_SCRIPT = """
import sys, torch
torch.set_num_threads({threads})
import vlmkern, vlmkern.reference.attention
{setup}
def _run():
{body}
def _kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
torch.ones(1 << 22).sum()  # start the thread pool before the baseline reading
before = _kb("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
_run()
print(max(_kb("VmHWM:") - before, 0) * 1024)
"""


def peak_extra_bytes(setup: str, body: str, threads: int | None = None) -> int:
    """Peak RSS growth (bytes) while running `body` once, in a fresh interpreter
    where `setup` made the inputs: the peak mark (VmHWM) is reset after the
    setup, so the setup's temporaries don't count. (ru_maxrss would not do: a
    child inherits its parent's peak across fork+exec.) Resolution: a page; the
    output tensor counts as extra memory."""
    script = _PEAK_SCRIPT.format(
        threads=threads or torch.get_num_threads(), setup=textwrap.dedent(setup),
        body=textwrap.indent(textwrap.dedent(body), "    "))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"peak_extra_bytes subprocess failed:\n{out.stderr[-2000:]}")
    return int(out.stdout.strip().splitlines()[-1])


_CEILINGS = None


def ceilings() -> dict:
    """DRAM read and copy bandwidth of this machine (GB/s), measured once on
    1 GiB buffers with all threads."""
    global _CEILINGS
    if _CEILINGS is None:
        x = torch.empty(256 * 1024 * 1024, dtype=torch.float32).fill_(1.0)  # 1 GiB
        y = torch.empty_like(x)
        for _ in range(2):
            x.sum()
            y.copy_(x)
        reads, copies = [], []
        for _ in range(5):
            t = time.perf_counter()
            x.sum()
            reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            y.copy_(x)
            copies.append(time.perf_counter() - t)
        n = x.numel() * 4
        _CEILINGS = {
            "dram_read_GBps": n / min(reads) / 1e9,
            "dram_copy_GBps": 2 * n / min(copies) / 1e9,
            "threads": torch.get_num_threads(),
        }
        del x, y
    return _CEILINGS


"""tests/test_cuda_parity*.py must not turn a broken build into skips: with a
vlmkern that fails to import, collecting them is an error on every machine (the
first used to catch the ImportError and report "built without CUDA kernels")."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["test_cuda_parity.py", "test_cuda_parity_video.py"])
def test_a_broken_import_is_an_error_not_a_skip(tmp_path, name):
    fake = tmp_path / "vlmkern"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('vlmkern: a broken build')\n")
    r = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / name), "-q", "--noconftest",
         "-p", "no:cacheprovider"],
        env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path, capture_output=True, text=True,
        timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "a broken build" in out and "skipped" not in out.splitlines()[-1], out[-3000:]

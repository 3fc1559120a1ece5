"""Loads the compiled extension once, with an error that says what to do."""

from __future__ import annotations

import torch  # noqa: F401  (libtorch must be loaded before the extension)

try:
    from vlmkern import _C  # noqa: F401  (registers torch.ops.vlmkern.*)
except ImportError as e:  # pragma: no cover - exercised only on broken installs
    raise ImportError(
        "vlmkern: the compiled extension vlmkern._C failed to load "
        f"({e}). Build it against the installed torch with "
        "`pip install --no-build-isolation .` (or `make install`) from the source tree; "
        "a wheel built for another torch version will not load."
    ) from e

C = _C

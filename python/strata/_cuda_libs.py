"""Where the CUDA backend finds cuBLAS.

The native core opens libcublas at run time (csrc/backends/cuda/cublas.cu) for the prefill
GEMM. NVIDIA's pip wheels (the ones PyTorch installs) keep it under
``site-packages/nvidia/.../lib``, which the dynamic loader does not search, so the first
match there is handed to the core through ``STRATA_CUBLAS`` unless that is already set.
Nothing is loaded here; without a match the core tries the system's libcublas, and without
one of those the prefill GEMM runs on strata's own tensor-core tiles.
"""

from __future__ import annotations

import glob
import os
import sys


def point_core_at_cublas() -> None:
    if "STRATA_CUBLAS" in os.environ:
        return
    for root in sys.path:
        if not root or not os.path.isdir(os.path.join(root, "nvidia")):
            continue
        for pattern in ("nvidia/cu*/lib/libcublas.so.*", "nvidia/cublas/lib/libcublas.so.*"):
            found = sorted(glob.glob(os.path.join(root, pattern)), reverse=True)
            if found:
                os.environ["STRATA_CUBLAS"] = found[0]
                return

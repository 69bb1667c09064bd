"""strata: fast local LLM inference from GGUF files.

    import strata
    m = strata.load("model.gguf")
    print(m.generate("The capital of France is", max_tokens=32))
"""

from __future__ import annotations

from ._cuda_libs import point_core_at_cublas
from .backends import available_backends
from .errors import (
    ContextOverflowError,
    GGUFError,
    StrataError,
    StrataValueError,
    UnsupportedModelError,
)
from .generate import Completion
from .model import Model, load
from .system import default_model_path, info

__version__ = "0.1.0"

point_core_at_cublas()

__all__ = [
    "Completion",
    "ContextOverflowError",
    "GGUFError",
    "Model",
    "StrataError",
    "StrataValueError",
    "UnsupportedModelError",
    "__version__",
    "available_backends",
    "default_model_path",
    "info",
    "load",
]

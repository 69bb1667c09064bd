"""Model architectures, one file each, looked up by ``general.architecture``."""

from __future__ import annotations

from ..errors import UnsupportedModelError
from .base import ModelDef

_REGISTRY: dict[str, type[ModelDef]] = {}


def register(*names: str):
    """Class decorator: make an architecture available under the given GGUF names."""

    def deco(cls: type[ModelDef]) -> type[ModelDef]:
        for n in names:
            _REGISTRY[n] = cls
        return cls

    return deco


def architecture(name: str) -> type[ModelDef]:
    """The model definition for ``general.architecture`` = ``name``.

    Raises:
        UnsupportedModelError: strata has no such architecture.
    """
    _load_all()
    cls = _REGISTRY.get(name)
    if cls is None:
        known = ", ".join(sorted(_REGISTRY))
        raise UnsupportedModelError(f"unsupported architecture {name!r} (supported: {known})")
    return cls


def supported_architectures() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def _load_all() -> None:
    from . import gemma3, gpt2, llama, phi3, qwen2, qwen3  # noqa: F401  (each registers itself)

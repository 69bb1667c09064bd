"""What every architecture file provides, and the blocks they share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import UnsupportedModelError
from ..gguf import GGUFFile
from ..graph import GraphBuilder, Value


@dataclass
class ModelDef:
    """Hyperparameters read from GGUF metadata plus ``build``, which describes one step."""

    arch: ClassVar[str] = ""
    n_vocab: int
    n_ctx_train: int

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> ModelDef:
        raise NotImplementedError

    def build(self, g: GraphBuilder) -> None:
        """Describe one step: tokens in, logits out (g.output)."""
        raise NotImplementedError


def meta_int(gguf: GGUFFile, key: str, default: int | None = None) -> int:
    """An integer hyperparameter ``{arch}.{key}``; UnsupportedModelError if absent/odd."""
    v = gguf.arch_key(key, default if default is not None else ...)
    if isinstance(v, (list, tuple)) or hasattr(v, "shape"):
        raise UnsupportedModelError(f"{gguf.path}: per-layer {gguf.arch}.{key} is not supported")
    try:
        return int(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnsupportedModelError(f"{gguf.path}: {gguf.arch}.{key} is not an integer") from None


def meta_float(gguf: GGUFFile, key: str, default: float) -> float:
    v = gguf.arch_key(key, default)
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnsupportedModelError(f"{gguf.path}: {gguf.arch}.{key} is not a number") from None


def vocab_size(gguf: GGUFFile) -> int:
    tokens = gguf.get("tokenizer.ggml.tokens")
    if tokens is not None:
        return len(tokens)  # type: ignore[arg-type]
    return meta_int(gguf, "vocab_size")


def swiglu_ffn(g: GraphBuilder, x: Value, prefix: str, act: str = "silu") -> Value:
    """down(act(gate(x)) * up(x)), the gated feed-forward of llama-family models."""
    gate = g.linear(x, f"{prefix}.ffn_gate.weight")
    up = g.linear(x, f"{prefix}.ffn_up.weight")
    return g.linear(g.glu(gate, up, act), f"{prefix}.ffn_down.weight")


def lm_head(g: GraphBuilder, x: Value) -> Value:
    """Logits from the last hidden state: output.weight, or the tied token embedding."""
    w = "output.weight" if g.has("output.weight") else "token_embd.weight"
    return g.matmul(x, g.weight(w))

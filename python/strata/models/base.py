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

    @property
    def max_positions(self) -> int | None:
        """The most positions the model can take (learned position embeddings), or None."""
        return None

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> ModelDef:
        raise NotImplementedError

    def build(self, g: GraphBuilder) -> None:
        """Describe one step: tokens in, logits out (g.output)."""
        raise NotImplementedError


# Hyperparameters are sizes and counts: 0..2**31-1 (the native graph keeps them in 32-bit
# fields); the ones that divide others (n_embd // n_head) must not be 0.
_MAX_HPARAM = 2**31 - 1
_NONZERO = frozenset({"attention.head_count"})


def meta_int(gguf: GGUFFile, key: str, default: int | None = None) -> int:
    """An integer hyperparameter ``{arch}.{key}``; UnsupportedModelError if absent/odd."""
    v = gguf.arch_key(key, default if default is not None else ...)
    if isinstance(v, (list, tuple)) or hasattr(v, "shape"):
        raise UnsupportedModelError(f"{gguf.path}: per-layer {gguf.arch}.{key} is not supported")
    try:
        n = int(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise UnsupportedModelError(f"{gguf.path}: {gguf.arch}.{key} is not an integer") from None
    if not 0 <= n <= _MAX_HPARAM or (n == 0 and key in _NONZERO):
        raise UnsupportedModelError(f"{gguf.path}: {gguf.arch}.{key} = {n} is out of range")
    return n


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


def transformer_dims(gguf: GGUFFile, n_ctx_default: int) -> dict[str, int]:
    """The sizes every decoder-only transformer file states, as keyword arguments:
    n_vocab, n_ctx_train, n_layer, n_embd, n_head, n_head_kv, head_dim."""
    n_embd = meta_int(gguf, "embedding_length")
    n_head = meta_int(gguf, "attention.head_count")
    return {
        "n_vocab": vocab_size(gguf),
        "n_ctx_train": meta_int(gguf, "context_length", n_ctx_default),
        "n_layer": meta_int(gguf, "block_count"),
        "n_embd": n_embd,
        "n_head": n_head,
        "n_head_kv": meta_int(gguf, "attention.head_count_kv", n_head),
        "head_dim": meta_int(gguf, "attention.key_length", n_embd // n_head),
    }


def swiglu_ffn(g: GraphBuilder, x: Value, prefix: str, act: str = "silu") -> Value:
    """down(act(gate(x)) * up(x)), the gated feed-forward of llama-family models."""
    gate = g.linear(x, f"{prefix}.ffn_gate.weight")
    up = g.linear(x, f"{prefix}.ffn_up.weight")
    return g.linear(g.glu(gate, up, act), f"{prefix}.ffn_down.weight")


def lm_head(g: GraphBuilder, x: Value) -> Value:
    """Logits from the last hidden state: output.weight, or the tied token embedding."""
    w = "output.weight" if g.has("output.weight") else "token_embd.weight"
    return g.matmul(x, g.weight(w))


def rope_freq_scale(gguf: GGUFFile) -> float:
    """llama.cpp's rope frequency scale: 1 / ``rope.scaling.factor`` (or the older
    ``rope.scale_linear``) under linear scaling, which llama.cpp assumes when
    ``rope.scaling.type`` is absent; 1 for "none" or no factor.

    Raises:
        UnsupportedModelError: YaRN (or another unsupported) rope scaling.
    """
    scaling = str(gguf.arch_key("rope.scaling.type", "linear"))
    if scaling == "none":
        return 1.0
    if scaling not in ("linear", "longrope"):  # longrope: factors come as tensors
        raise UnsupportedModelError(f"{gguf.path}: rope scaling {scaling!r} is not supported")
    factor = meta_float(gguf, "rope.scaling.factor", 0.0) or meta_float(gguf, "rope.scale_linear", 0.0)
    return 1.0 / factor if factor > 0 else 1.0


def attn_qkv(
    g: GraphBuilder, x: Value, prefix: str, n_q: int, n_k: int, n_v: int
) -> tuple[Value, Value, Value]:
    """Q, K and V (widths n_q, n_k, n_v) of ``x``, from a fused ``attn_qkv`` (columns in
    that order) or separate ``attn_q/k/v`` weights, each with its bias if the file has one."""
    if not g.has(f"{prefix}.attn_qkv.weight"):
        return tuple(  # type: ignore[return-value]
            g.linear(x, f"{prefix}.attn_{n}.weight", f"{prefix}.attn_{n}.bias") for n in "qkv"
        )
    qkv = g.linear(x, f"{prefix}.attn_qkv.weight", f"{prefix}.attn_qkv.bias")
    q = g.slice(qkv, 0, n_q)
    k = g.slice(qkv, n_q, n_k)
    v = g.slice(qkv, n_q + n_k, n_v)
    if not g.has(f"{prefix}.attn_qkv.bias"):  # a fused weight with separate biases
        biases = [g.optional_weight(f"{prefix}.attn_{n}.bias") for n in "qkv"]
        if all(b is not None for b in biases):
            q, k, v = (g.add(t, b) for t, b in zip((q, k, v), biases))  # type: ignore[arg-type]
    return q, k, v


def fused_swiglu_ffn(g: GraphBuilder, x: Value, prefix: str, n_ff: int) -> Value:
    """down(silu(gate) * up) where ``ffn_up`` holds gate (first n_ff columns) then up."""
    gate_up = g.linear(x, f"{prefix}.ffn_up.weight")
    gate, up = g.slice(gate_up, 0, n_ff), g.slice(gate_up, n_ff, n_ff)
    return g.linear(g.glu(gate, up, "silu"), f"{prefix}.ffn_down.weight")

"""Qwen 2 / Qwen 2.5.

Llama's pre-norm decoder (x += attn(rms_norm(x)); x += swiglu(rms_norm(x))) with biases on
the Q, K and V projections and rotary embeddings in the "neox" layout (the two halves of
each head rotate together), as llama.cpp's `llama_model_qwen2`. An optional output bias.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gguf import GGUFFile
from ..graph import GraphBuilder, Value
from . import register
from .base import (
    ModelDef,
    attn_qkv,
    lm_head,
    meta_float,
    rope_freq_scale,
    swiglu_ffn,
    transformer_dims,
)


@register("qwen2")
@dataclass
class Qwen2(ModelDef):
    arch = "qwen2"
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rms_eps: float
    rope_base: float
    rope_freq_scale: float

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> Qwen2:
        return cls(
            **transformer_dims(gguf, 32768),
            rms_eps=meta_float(gguf, "attention.layer_norm_rms_epsilon", 1e-6),
            rope_base=meta_float(gguf, "rope.freq_base", 10000.0),
            rope_freq_scale=rope_freq_scale(gguf),
        )

    def qk_norm(self, g: GraphBuilder, p: str, q: Value, k: Value) -> tuple[Value, Value]:
        """Q and K as they enter rope (Qwen 3 normalizes them here)."""
        return q, k

    def build(self, g: GraphBuilder) -> None:
        hd = self.head_dim
        rope = {"base": self.rope_base, "neox": True, "freq_scale": self.rope_freq_scale}
        x = g.embedding(g.weight("token_embd.weight"), g.tokens())
        for i in range(self.n_layer):
            p = f"blk.{i}"
            h = g.rms_norm(x, g.weight(f"{p}.attn_norm.weight"), self.rms_eps)
            q, k, v = attn_qkv(g, h, p, self.n_head * hd, self.n_head_kv * hd, self.n_head_kv * hd)
            q, k = self.qk_norm(g, p, q, k)
            q = g.rope(q, self.n_head, hd, **rope)
            k = g.rope(k, self.n_head_kv, hd, **rope)
            a = g.attention(q, k, v, self.n_head, self.n_head_kv, hd)
            x = g.add(x, g.linear(a, f"{p}.attn_output.weight", f"{p}.attn_output.bias"))
            h = g.rms_norm(x, g.weight(f"{p}.ffn_norm.weight"), self.rms_eps)
            x = g.add(x, swiglu_ffn(g, h, p))
        x = g.last_row(x)
        x = g.rms_norm(x, g.weight("output_norm.weight"), self.rms_eps)
        logits = lm_head(g, x)
        if g.has("output.bias"):
            logits = g.add(logits, g.weight("output.bias"))
        g.output(logits)

"""Llama (SmolLM2, TinyLlama, Llama 2/3, Mistral).

Pre-norm decoder: x += attn(rms_norm(x)); x += swiglu(rms_norm(x)). Grouped-query
attention with rotary embeddings in llama.cpp's "normal" layout (adjacent pairs: the GGUF
converter permutes Q/K rows so that this matches the original model).

Attention is always over the whole context: llama.cpp's llama architecture (which Mistral
GGUFs use) ignores ``llama.attention.sliding_window``, and strata follows it so that logits
match llama.cpp's (Mistral 7B v0.1 was trained with a 4096 window: the two differ only
past 4096 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gguf import GGUFFile
from ..graph import GraphBuilder
from . import register
from .base import (
    ModelDef,
    lm_head,
    meta_float,
    meta_int,
    rope_freq_scale,
    swiglu_ffn,
    transformer_dims,
)


@register("llama")
@dataclass
class Llama(ModelDef):
    arch = "llama"
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int
    rms_eps: float
    rope_base: float
    rope_freq_scale: float

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> Llama:
        dims = transformer_dims(gguf, 4096)
        return cls(
            **dims,
            n_rot=meta_int(gguf, "rope.dimension_count", dims["head_dim"]),
            rms_eps=meta_float(gguf, "attention.layer_norm_rms_epsilon", 1e-5),
            rope_base=meta_float(gguf, "rope.freq_base", 10000.0),
            rope_freq_scale=rope_freq_scale(gguf),
        )

    def build(self, g: GraphBuilder) -> None:
        freq_factors = g.optional_weight("rope_freqs.weight")  # Llama 3.1+ frequency scaling
        x = g.embedding(g.weight("token_embd.weight"), g.tokens())
        for i in range(self.n_layer):
            p = f"blk.{i}"
            h = g.rms_norm(x, g.weight(f"{p}.attn_norm.weight"), self.rms_eps)
            q = g.linear(h, f"{p}.attn_q.weight", f"{p}.attn_q.bias")
            k = g.linear(h, f"{p}.attn_k.weight", f"{p}.attn_k.bias")
            v = g.linear(h, f"{p}.attn_v.weight", f"{p}.attn_v.bias")
            rope = {"base": self.rope_base, "n_rot": self.n_rot, "freq_scale": self.rope_freq_scale,
                        "freq_factors": freq_factors}
            q = g.rope(q, self.n_head, self.head_dim, **rope)
            k = g.rope(k, self.n_head_kv, self.head_dim, **rope)
            a = g.attention(q, k, v, self.n_head, self.n_head_kv, self.head_dim)
            x = g.add(x, g.linear(a, f"{p}.attn_output.weight", f"{p}.attn_output.bias"))
            h = g.rms_norm(x, g.weight(f"{p}.ffn_norm.weight"), self.rms_eps)
            x = g.add(x, swiglu_ffn(g, h, p))
        x = g.last_row(x)  # only the last position's logits, unless all are asked for
        x = g.rms_norm(x, g.weight("output_norm.weight"), self.rms_eps)
        g.output(lm_head(g, x))

"""Gemma 3 (text): interleaved sliding-window and global attention.

Per layer: x += post_attn_norm(attn(attn_norm(x))); x += post_ffw_norm(geglu(ffn_norm(x))).
Attention has per-head RMSNorm on q and k, neox rope with base 10k on sliding layers and
`rope.freq_base` (1M) on global ones; five sliding layers (window from metadata) then one
global, as llama.cpp's `set_swa_pattern(6)`. Embeddings are scaled by sqrt(n_embd); the
GGUF converter already folded Gemma's (1 + w) into the norm weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..gguf import GGUFFile
from ..graph import GraphBuilder
from . import register
from .base import ModelDef, lm_head, meta_float, meta_int, rope_freq_scale, transformer_dims

SWA_PATTERN = 6  # every 6th layer attends globally
ROPE_BASE_SLIDING = 10000.0


@register("gemma3")
@dataclass
class Gemma3(ModelDef):
    arch = "gemma3"
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    rms_eps: float
    rope_base: float
    rope_freq_scale: float
    sliding_window: int

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> Gemma3:
        return cls(
            **transformer_dims(gguf, 32768),
            rms_eps=meta_float(gguf, "attention.layer_norm_rms_epsilon", 1e-6),
            rope_base=meta_float(gguf, "rope.freq_base", 1e6),
            rope_freq_scale=rope_freq_scale(gguf),
            sliding_window=meta_int(gguf, "attention.sliding_window", 512),
        )

    def is_sliding(self, layer: int) -> bool:
        return layer % SWA_PATTERN < SWA_PATTERN - 1

    def build(self, g: GraphBuilder) -> None:
        hd, eps = self.head_dim, self.rms_eps
        x = g.embedding(g.weight("token_embd.weight"), g.tokens())
        x = g.scale(x, math.sqrt(self.n_embd))
        for i in range(self.n_layer):
            p = f"blk.{i}"
            sliding = self.is_sliding(i)
            rope = {
                "base": ROPE_BASE_SLIDING if sliding else self.rope_base,
                "neox": True,
                "freq_scale": 1.0 if sliding else self.rope_freq_scale,
            }
            h = g.rms_norm(x, g.weight(f"{p}.attn_norm.weight"), eps)
            q = g.linear(h, f"{p}.attn_q.weight")
            k = g.linear(h, f"{p}.attn_k.weight")
            v = g.linear(h, f"{p}.attn_v.weight")
            q = g.rms_norm(q, g.weight(f"{p}.attn_q_norm.weight"), eps, head_dim=hd)
            k = g.rms_norm(k, g.weight(f"{p}.attn_k_norm.weight"), eps, head_dim=hd)
            q = g.rope(q, self.n_head, hd, **rope)
            k = g.rope(k, self.n_head_kv, hd, **rope)
            a = g.attention(q, k, v, self.n_head, self.n_head_kv, hd, scale=1.0 / math.sqrt(hd),
                            window=self.sliding_window if sliding else 0)
            a = g.linear(a, f"{p}.attn_output.weight")
            x = g.add(x, g.rms_norm(a, g.weight(f"{p}.post_attention_norm.weight"), eps))
            h = g.rms_norm(x, g.weight(f"{p}.ffn_norm.weight"), eps)
            gate = g.linear(h, f"{p}.ffn_gate.weight")
            up = g.linear(h, f"{p}.ffn_up.weight")
            f = g.linear(g.glu(gate, up, "gelu_tanh"), f"{p}.ffn_down.weight")
            x = g.add(x, g.rms_norm(f, g.weight(f"{p}.post_ffw_norm.weight"), eps))
        x = g.last_row(x)
        x = g.rms_norm(x, g.weight("output_norm.weight"), eps)
        g.output(lm_head(g, x))

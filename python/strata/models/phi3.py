"""Phi-3 / Phi-3.5 (mini, medium), including LongRoPE.

Llama's pre-norm decoder with fused tensors: ``attn_qkv`` holds Q, K then V and ``ffn_up``
holds the gate then the up projection (silu(gate) * up). Rope is "neox".

LongRoPE (Phi-3.5, Phi-3-*-128k): the file carries two per-dimension frequency divisors,
``rope_factors_short`` and ``rope_factors_long``. As llama.cpp's
`llama_model::get_rope_factors`, the long ones apply when the context n_ctx exceeds
``rope.scaling.original_context_length`` (default: the training context), the short ones
otherwise. (llama.cpp first rounds n_ctx up to a multiple of 256; the original length of
every released Phi-3 is 4096, where that rounding changes nothing.) Either way cos and sin
are scaled by ``rope.scaling.attn_factor``, which the GGUF converter sets to
sqrt(1 + ln(n_ctx_train / original) / ln(original)) for LongRoPE models (1 otherwise).

``attention.sliding_window`` is ignored, as llama.cpp ignores it for phi3.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gguf import GGUFFile
from ..graph import GraphBuilder, Value
from . import register
from .base import (
    ModelDef,
    attn_qkv,
    fused_swiglu_ffn,
    lm_head,
    meta_float,
    meta_int,
    rope_freq_scale,
    transformer_dims,
)


@register("phi3")
@dataclass
class Phi3(ModelDef):
    arch = "phi3"
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_rot: int
    rms_eps: float
    rope_base: float
    rope_freq_scale: float
    rope_attn_factor: float
    n_ctx_orig: int
    # The context the model runs with (strata.Model sets it before build): selects the
    # LongRoPE factors. Defaults to the training context.
    n_ctx: int = 0

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> Phi3:
        dims = transformer_dims(gguf, 4096)
        n_ctx_train = dims["n_ctx_train"]
        return cls(
            **dims,
            n_ff=meta_int(gguf, "feed_forward_length"),
            n_rot=meta_int(gguf, "rope.dimension_count", dims["head_dim"]),
            rms_eps=meta_float(gguf, "attention.layer_norm_rms_epsilon", 1e-5),
            rope_base=meta_float(gguf, "rope.freq_base", 10000.0),
            rope_freq_scale=rope_freq_scale(gguf),
            rope_attn_factor=meta_float(gguf, "rope.scaling.attn_factor", 1.0),
            n_ctx_orig=meta_int(gguf, "rope.scaling.original_context_length", n_ctx_train),
            n_ctx=n_ctx_train,
        )

    def rope_factors(self, g: GraphBuilder) -> Value | None:
        """The frequency divisors for this context, or None (plain rope)."""
        n_ctx = self.n_ctx or self.n_ctx_train
        name = "rope_factors_long" if n_ctx > self.n_ctx_orig else "rope_factors_short"
        return g.optional_weight(f"{name}.weight")

    def build(self, g: GraphBuilder) -> None:
        hd = self.head_dim
        rope = {"base": self.rope_base, "neox": True, "n_rot": self.n_rot,
                "freq_scale": self.rope_freq_scale, "freq_factors": self.rope_factors(g),
                "attn_factor": self.rope_attn_factor}
        x = g.embedding(g.weight("token_embd.weight"), g.tokens())
        for i in range(self.n_layer):
            p = f"blk.{i}"
            h = g.rms_norm(x, g.weight(f"{p}.attn_norm.weight"), self.rms_eps)
            q, k, v = attn_qkv(g, h, p, self.n_head * hd, self.n_head_kv * hd, self.n_head_kv * hd)
            q = g.rope(q, self.n_head, hd, **rope)
            k = g.rope(k, self.n_head_kv, hd, **rope)
            a = g.attention(q, k, v, self.n_head, self.n_head_kv, hd)
            x = g.add(x, g.linear(a, f"{p}.attn_output.weight", f"{p}.attn_output.bias"))
            h = g.rms_norm(x, g.weight(f"{p}.ffn_norm.weight"), self.rms_eps)
            x = g.add(x, fused_swiglu_ffn(g, h, p, self.n_ff))
        x = g.last_row(x)
        x = g.rms_norm(x, g.weight("output_norm.weight"), self.rms_eps)
        g.output(lm_head(g, x))

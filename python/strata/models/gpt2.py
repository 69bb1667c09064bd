"""GPT-2.

Learned absolute position embeddings added to the token embeddings; pre-LayerNorm blocks
(weight and bias): x += attn(ln(x)); x += mlp(ln(x)) with a fused ``attn_qkv`` (Q, K, V,
with bias), no rope, and an up / gelu / down MLP with biases, as llama.cpp's
`llama_model_gpt2`. llama.cpp's gelu is the tanh approximation (GPT-2's "gelu_new").
The output projection is ``output.weight`` or the tied token embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gguf import GGUFFile
from ..graph import GraphBuilder, Value
from . import register
from .base import ModelDef, attn_qkv, lm_head, meta_float, transformer_dims


@register("gpt2")
@dataclass
class GPT2(ModelDef):
    arch = "gpt2"
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    norm_eps: float

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> GPT2:
        return cls(
            **transformer_dims(gguf, 1024),
            norm_eps=meta_float(gguf, "attention.layer_norm_epsilon", 1e-5),
        )

    @property
    def max_positions(self) -> int | None:
        return self.n_ctx_train  # rows of position_embd.weight

    def build(self, g: GraphBuilder) -> None:
        hd, eps = self.head_dim, self.norm_eps

        def ln(x: Value, name: str) -> Value:
            return g.layer_norm(x, g.weight(f"{name}.weight"), g.weight(f"{name}.bias"), eps)

        x = g.embedding(g.weight("token_embd.weight"), g.tokens())
        x = g.add(x, g.embedding(g.weight("position_embd.weight"), g.positions()))
        for i in range(self.n_layer):
            p = f"blk.{i}"
            h = ln(x, f"{p}.attn_norm")
            q, k, v = attn_qkv(g, h, p, self.n_head * hd, self.n_head_kv * hd, self.n_head_kv * hd)
            a = g.attention(q, k, v, self.n_head, self.n_head_kv, hd)
            x = g.add(x, g.linear(a, f"{p}.attn_output.weight", f"{p}.attn_output.bias"))
            h = ln(x, f"{p}.ffn_norm")
            h = g.activation(g.linear(h, f"{p}.ffn_up.weight", f"{p}.ffn_up.bias"), "gelu_tanh")
            x = g.add(x, g.linear(h, f"{p}.ffn_down.weight", f"{p}.ffn_down.bias"))
        x = g.last_row(x)
        x = ln(x, "output_norm")
        g.output(lm_head(g, x))

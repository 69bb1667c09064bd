"""Qwen 3 (dense).

Qwen 2's decoder without the Q/K/V biases but with RMSNorm applied to each head of Q and K
(one weight of head_dim shared by all heads) before rope, as llama.cpp's
`llama_model_qwen3`. Heads may be wider than n_embd / n_head (``attention.key_length``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph import GraphBuilder, Value
from . import register
from .qwen2 import Qwen2


@register("qwen3")
@dataclass
class Qwen3(Qwen2):
    arch = "qwen3"

    def qk_norm(self, g: GraphBuilder, p: str, q: Value, k: Value) -> tuple[Value, Value]:
        q = g.rms_norm(q, g.weight(f"{p}.attn_q_norm.weight"), self.rms_eps, head_dim=self.head_dim)
        k = g.rms_norm(k, g.weight(f"{p}.attn_k_norm.weight"), self.rms_eps, head_dim=self.head_dim)
        return q, k

"""Exact float64 NumPy forward pass for llama-architecture GGUF models.

This is the correctness reference for strata's llama model: weights are dequantized with
the `gguf` package (the project's reference dequantizers), upcast to float64, and every
op runs in float64 with no rounding of activations or of the KV cache.  It computes what
llama.cpp computes on the same GGUF weights:

    x = token_embd[tokens]
    per layer:  h = x + Wo @ attn(rope(Wq @ rms(x)), rope(Wk @ rms(x)), Wv @ rms(x))
                x = h + Wdown @ (silu(Wgate @ rms(h)) * (Wup @ rms(h)))
    logits = output(rms(x))        # output.weight, or token_embd.weight when tied

Rope is llama.cpp's "normal" layout: adjacent pairs (x[2i], x[2i+1]) of the first
`rope.dimension_count` dims of each head are rotated by pos * base^(-2i/n_rot).  (The GGUF
converter permutes the q/k rows so that this matches HF's rotate_half on the original
weights.)  Linear rope scaling and llama3-style `rope_freqs.weight` factors are honoured;
YaRN is not implemented.  Attention is causal, GQA (query head h reads KV head
h // (n_head / n_head_kv)), softmax scale 1/sqrt(head_dim).

    from tests.reference.llama_f64 import forward_f64
    logits = forward_f64(path, tokens)     # float64, shape (len(tokens), n_vocab)
"""
from __future__ import annotations

import functools

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def _meta(reader: GGUFReader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


@functools.lru_cache(maxsize=1)
def _load(path: str):
    """Hyperparameters and dequantized weights (float32 here: exact, upcast at use)."""
    r = GGUFReader(path)
    arch = _meta(r, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r}, expected 'llama'")
    m = lambda k, d=None: _meta(r, f"llama.{k}", d)  # noqa: E731
    n_embd, n_head = int(m("embedding_length")), int(m("attention.head_count"))
    head_dim = int(m("attention.key_length", n_embd // n_head))
    scaling = m("rope.scaling.type", "none")
    if scaling not in ("none", "linear"):
        raise NotImplementedError(f"rope scaling {scaling!r}")
    factor = float(m("rope.scaling.factor", m("rope.scale_linear", 1.0)) or 1.0)
    hp = dict(
        n_layer=int(m("block_count")),
        n_head=n_head,
        n_head_kv=int(m("attention.head_count_kv", n_head)),
        head_dim=head_dim,
        n_rot=int(m("rope.dimension_count", head_dim)),
        eps=float(m("attention.layer_norm_rms_epsilon")),
        base=float(m("rope.freq_base", 10000.0)),
        freq_scale=1.0 / factor if scaling == "linear" else 1.0,
    )
    w = {t.name: dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
         for t in r.tensors}
    w.setdefault("output.weight", w["token_embd.weight"])  # tied embeddings
    return hp, w


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """x: (n_tok, n_heads, head_dim); rotate adjacent pairs of the first 2*len(cos[0]) dims."""
    n_rot = 2 * cos.shape[-1]
    x = x.copy()
    even, odd = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
    c, s = cos[:, None, :], sin[:, None, :]
    x[..., 0:n_rot:2] = even * c - odd * s
    x[..., 1:n_rot:2] = even * s + odd * c
    return x


def forward_f64(path: str, tokens: list[int]) -> np.ndarray:
    """float64 logits (n_tokens, n_vocab) for `tokens` at positions 0..n-1 (empty cache)."""
    hp, w = _load(path)
    L = lambda name: w[name].astype(np.float64)  # noqa: E731
    lin = lambda x, name: x @ L(name).T  # noqa: E731  GGUF (out, in) layout
    n, hd, nh, nkv, eps = len(tokens), hp["head_dim"], hp["n_head"], hp["n_head_kv"], hp["eps"]

    pos = np.arange(n, dtype=np.float64) * hp["freq_scale"]
    inv_freq = hp["base"] ** (-np.arange(0, hp["n_rot"], 2, dtype=np.float64) / hp["n_rot"])
    if "rope_freqs.weight" in w:  # llama3-style per-dimension divisors
        inv_freq = inv_freq / w["rope_freqs.weight"].astype(np.float64)
    theta = pos[:, None] * inv_freq[None, :]
    cos, sin = np.cos(theta), np.sin(theta)
    mask = np.triu(np.full((n, n), -np.inf), k=1)

    x = w["token_embd.weight"][np.asarray(tokens)].astype(np.float64)
    for i in range(hp["n_layer"]):
        b = f"blk.{i}."
        h = _rms_norm(x, L(b + "attn_norm.weight"), eps)
        q = _rope(lin(h, b + "attn_q.weight").reshape(n, nh, hd), cos, sin)
        k = _rope(lin(h, b + "attn_k.weight").reshape(n, nkv, hd), cos, sin)
        v = lin(h, b + "attn_v.weight").reshape(n, nkv, -1)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)  # GQA
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        attn = np.einsum("hqk,khd->qhd", probs, v).reshape(n, -1)
        x = x + lin(attn, b + "attn_output.weight")

        h = _rms_norm(x, L(b + "ffn_norm.weight"), eps)
        gate, up = lin(h, b + "ffn_gate.weight"), lin(h, b + "ffn_up.weight")
        x = x + lin(gate / (1.0 + np.exp(-gate)) * up, b + "ffn_down.weight")

    return lin(_rms_norm(x, L("output_norm.weight"), eps), "output.weight")

"""Exact float64 NumPy forward pass for Gemma 3 GGUF models (the reference strata's gemma3
model is judged against besides llama.cpp). Mirrors python/strata/models/gemma3.py:

    x = token_embd[tokens] * sqrt(n_embd)
    per layer (sliding window on 5 of every 6 layers, rope base 10k there, else freq_base):
        x += post_attn_norm(Wo @ attn(rope(qnorm(Wq h)), rope(knorm(Wk h)), Wv h)), h = rms(x)
        x += post_ffw_norm(Wdown @ (gelu_tanh(Wgate h) * (Wup h))),              h = rms(x)
    logits = token_embd @ rms(x)

Rope is neox (halves); attention scale 1/sqrt(head_dim); nothing is rounded.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def _meta(r: GGUFReader, key: str, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


@functools.lru_cache(maxsize=1)
def _load(path: str):
    r = GGUFReader(path)
    m = lambda k, d=None: _meta(r, f"gemma3.{k}", d)  # noqa: E731
    n_embd, n_head = int(m("embedding_length")), int(m("attention.head_count"))
    hp = dict(n_layer=int(m("block_count")), n_embd=n_embd, n_head=n_head,
              n_head_kv=int(m("attention.head_count_kv", n_head)),
              head_dim=int(m("attention.key_length", n_embd // n_head)),
              eps=float(m("attention.layer_norm_rms_epsilon")),
              base=float(m("rope.freq_base", 1e6)), window=int(m("attention.sliding_window")))
    w = {t.name: dequantize(t.data, t.tensor_type).reshape([int(d) for d in reversed(t.shape)])
         for t in r.tensors}
    return hp, w


def _rms(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def _rope_neox(x, pos, base):
    hd = x.shape[-1]
    inv = base ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    th = pos[:, None] * inv[None, :]
    c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)


def forward_f64(path: str, tokens: list[int]) -> np.ndarray:
    hp, w = _load(path)
    L = lambda name: w[name].astype(np.float64)  # noqa: E731
    lin = lambda x, name: x @ L(name).T  # noqa: E731
    n, hd, nh, nkv, eps = len(tokens), hp["head_dim"], hp["n_head"], hp["n_head_kv"], hp["eps"]
    pos = np.arange(n, dtype=np.float64)
    causal = np.triu(np.full((n, n), -np.inf), k=1)
    idx = np.arange(n)
    swa = causal + np.where(idx[:, None] - idx[None, :] >= hp["window"], -np.inf, 0.0)
    x = w["token_embd.weight"][np.asarray(tokens)].astype(np.float64) * math.sqrt(hp["n_embd"])
    for i in range(hp["n_layer"]):
        b = f"blk.{i}."
        sliding = i % 6 < 5
        h = _rms(x, L(b + "attn_norm.weight"), eps)
        q = _rms(lin(h, b + "attn_q.weight").reshape(n, nh, hd), L(b + "attn_q_norm.weight"), eps)
        k = _rms(lin(h, b + "attn_k.weight").reshape(n, nkv, hd), L(b + "attn_k_norm.weight"), eps)
        v = lin(h, b + "attn_v.weight").reshape(n, nkv, hd)
        base = 10000.0 if sliding else hp["base"]
        q, k = _rope_neox(q, pos, base), _rope_neox(k, pos, base)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd) + (swa if sliding else causal)
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        a = np.einsum("hqk,khd->qhd", p / p.sum(axis=-1, keepdims=True), v).reshape(n, -1)
        x = x + _rms(lin(a, b + "attn_output.weight"), L(b + "post_attention_norm.weight"), eps)
        h = _rms(x, L(b + "ffn_norm.weight"), eps)
        g, u = lin(h, b + "ffn_gate.weight"), lin(h, b + "ffn_up.weight")
        gl = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g**3)))
        x = x + _rms(lin(gl * u, b + "ffn_down.weight"), L(b + "post_ffw_norm.weight"), eps)
    return _rms(x, L("output_norm.weight"), eps) @ L("token_embd.weight").T

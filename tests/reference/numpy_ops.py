"""NumPy float64 references of the ops and helpers shared by the op tests of every backend
(tests/ops for the CPU, tests/metal for the Metal shader harness, tests/test_cuda.py) and the
model tests. Pure NumPy: importing it never loads the native core."""

from __future__ import annotations

import math

import numpy as np


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax."""
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def ref_rms_norm(x, w, eps):
    x = x.astype(np.float64)
    return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * w


def ref_layer_norm(x, w, b, eps):
    x = x.astype(np.float64)
    mu = x.mean(axis=1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=1, keepdims=True) + eps) * w + b


def ref_act(name, x):
    x = x.astype(np.float64)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "gelu":
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def ref_rope(x, n_head, hd, base, neox, n_rot, pos0=0, freq_scale=1.0, factors=None):
    T = x.shape[0]
    y = x.astype(np.float64).reshape(T, n_head, hd).copy()
    half = n_rot // 2
    inv = base ** (-2.0 * np.arange(half) / n_rot)
    if factors is not None:
        inv = inv / factors
    theta = (np.arange(T)[:, None] + pos0) * freq_scale * inv[None, :]
    c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    if neox:
        a, b = y[..., :half].copy(), y[..., half:n_rot].copy()
        y[..., :half], y[..., half:n_rot] = a * c - b * s, a * s + b * c
    else:
        a, b = y[..., 0:n_rot:2].copy(), y[..., 1:n_rot:2].copy()
        y[..., 0:n_rot:2], y[..., 1:n_rot:2] = a * c - b * s, a * s + b * c
    return y.reshape(T, n_head * hd)


def ref_attention(q, k, v, n_head, n_kv, hd, window=0, softcap=0.0):
    T = q.shape[0]
    k = k.astype(np.float16).astype(np.float64)  # the cache holds fp16
    v = v.astype(np.float16).astype(np.float64)
    out = np.zeros((T, n_head * hd))
    for t in range(T):
        lo = max(0, t - window + 1) if window else 0
        for h in range(n_head):
            g = h // (n_head // n_kv)
            qh = q[t, h * hd : (h + 1) * hd].astype(np.float64)
            s = k[lo : t + 1, g * hd : (g + 1) * hd] @ qh / np.sqrt(hd)
            if softcap:
                s = softcap * np.tanh(s / softcap)
            p = np.exp(s - s.max())
            p /= p.sum()
            out[t, h * hd : (h + 1) * hd] = p @ v[lo : t + 1, g * hd : (g + 1) * hd]
    return out

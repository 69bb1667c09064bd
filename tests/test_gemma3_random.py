"""Gemma 3's architecture on small random-weight files, every backend here against float64.

The real Gemma 3 270M file (tests/test_gemma3.py) is 253 MB: more than a device call may
carry, so it has not run on CUDA. These files are a few MB and have the same structure: per-
head q/k RMSNorm, post-attention and post-FFN norms, gelu-tanh GLU, scaled tied embeddings,
five sliding-window layers (window 6 here, so 30 tokens slide past it) then a global one with
its own rope base. tests/reference/gemma3_f64.py computes the exact float64 forward pass of
the same file (weights dequantized as gguf does, nothing rounded), and each backend must stay
within its own rounding of it: F32 weights only pay the fp16 K/V cache; Q8_0 also the 8-bit
activations of the quantized matmuls (CPU, CUDA decode) or f16 ones (CUDA prefill).
"""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
from conftest import arch_fixtures

gguf = pytest.importorskip("gguf", reason="pip install gguf")

import strata  # noqa: E402
from strata import _core  # noqa: E402

N_LAYER, N_EMBD, N_HEAD, N_HEAD_KV, HEAD_DIM, N_FF, WINDOW = 7, 128, 4, 2, 32, 256, 6
N_TOKENS = 30
# Largest |strata - float64| logit allowed, per weight type, for logits of standard deviation
# 1.7. Measured on the CPU: F32 2.7e-3, Q8_0 0.18 (its int8 activations); the bounds leave
# 2-4x room for other summation orders (a GPU's). A window of 7 instead of 6 moves the float64
# logits by up to 4.3, the global layer's rope base at 1e4 instead of 1e6 by up to 0.98.
TOL = {"F32": 1e-2, "Q8_0": 0.4}


def write_random_gemma3(path: str, wtype: str, seed: int = 0) -> None:
    """A random-weight Gemma 3 file with the SentencePiece vocabulary of the arch fixtures."""
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_name("strata random gemma3")
    w.add_context_length(128)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD_KV)
    w.add_key_length(HEAD_DIM)
    w.add_value_length(HEAD_DIM)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1e6)
    w.add_sliding_window(WINDOW)
    n_vocab = arch_fixtures()._write_vocab(w, types.SimpleNamespace(vocab="spm", pre=""))

    def add(name: str, a: np.ndarray, quantize: bool = True) -> None:
        a = a.astype(np.float32)
        if quantize and wtype != "F32":
            qt = gguf.GGMLQuantizationType[wtype]
            w.add_tensor(name, gguf.quants.quantize(a, qt), raw_dtype=qt)
        else:
            w.add_tensor(name, a)

    def linear(n_out: int, n_in: int) -> np.ndarray:
        return rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)

    def norm(n: int) -> np.ndarray:
        return 1.0 + 0.1 * rng.standard_normal(n)

    add("token_embd.weight", 0.15 * rng.standard_normal((n_vocab, N_EMBD)))
    for i in range(N_LAYER):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", norm(N_EMBD), False)
        add(p + "attn_q.weight", linear(N_HEAD * HEAD_DIM, N_EMBD))
        add(p + "attn_k.weight", linear(N_HEAD_KV * HEAD_DIM, N_EMBD))
        add(p + "attn_v.weight", linear(N_HEAD_KV * HEAD_DIM, N_EMBD))
        add(p + "attn_q_norm.weight", norm(HEAD_DIM), False)
        add(p + "attn_k_norm.weight", norm(HEAD_DIM), False)
        add(p + "attn_output.weight", linear(N_EMBD, N_HEAD * HEAD_DIM))
        add(p + "post_attention_norm.weight", norm(N_EMBD), False)
        add(p + "ffn_norm.weight", norm(N_EMBD), False)
        add(p + "ffn_gate.weight", linear(N_FF, N_EMBD))
        add(p + "ffn_up.weight", linear(N_FF, N_EMBD))
        add(p + "ffn_down.weight", linear(N_EMBD, N_FF))
        add(p + "post_ffw_norm.weight", norm(N_EMBD), False)
    add("output_norm.weight", norm(N_EMBD), False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module", params=["F32", "Q8_0"])
def case(request, tmp_path_factory):
    """(weight type, path, tokens, float64 logits)."""
    from reference.gemma3_f64 import forward_f64

    wtype = request.param
    path = str(tmp_path_factory.mktemp("gemma3") / f"gemma3-{wtype}.gguf")
    write_random_gemma3(path, wtype)
    vocab = arch_fixtures().vocabulary("spm")
    rng = np.random.default_rng(1)
    tokens = [int(vocab["bos_token_id"])] + rng.integers(3, len(vocab["tokens"]), N_TOKENS - 1).tolist()
    return wtype, path, tokens, forward_f64(path, tokens)


def cpu_logits(path: str, tokens: list[int]) -> np.ndarray:
    m = strata.load(path, n_ctx=64, backend="cpu", n_threads=2)
    try:
        assert m.config.arch == "gemma3" and m.config.sliding_window == WINDOW
        return m.logits(tokens)
    finally:
        m.close()


def check_against_f64(logits: np.ndarray, f64: np.ndarray, wtype: str, what: str) -> None:
    err = np.abs(logits.astype(np.float64) - f64)
    worst = np.unravel_index(err.argmax(), err.shape)
    assert err.max() < TOL[wtype], f"{what}: max |logit - float64| {err.max():.3g} at {worst}"
    top2 = np.sort(f64, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * TOL[wtype]
    differ = np.flatnonzero(clear & (logits.argmax(axis=1) != f64.argmax(axis=1)))
    assert differ.size == 0, f"{what}: argmax differs from float64 at positions {differ.tolist()}"


def test_cpu_against_float64(case):
    wtype, path, tokens, f64 = case
    assert len(tokens) > 4 * WINDOW and f64.std() > 1.0  # past the window; logits carry signal
    check_against_f64(cpu_logits(path, tokens), f64, wtype, "cpu")


@pytest.mark.skipif(not _core.cuda_available(), reason="no CUDA device")
def test_cuda_prefill_and_decode_against_float64_and_cpu(case):
    """Prefill in one step, then the same tokens as a short prefill and single-token decode
    steps (the captured graph, fused kernels, the sliding layers' ring buffer wrapping)."""
    wtype, path, tokens, f64 = case
    m = strata.load(path, n_ctx=64, backend="cuda")
    try:
        assert m.description.startswith("cuda"), m.description
        prefill = m.logits(tokens)
        eng = m._engine
        eng.truncate(0)
        rows = [eng.eval(np.asarray(tokens[:5], dtype=np.int32), True)]
        for t in tokens[5:]:
            eng.eval(np.asarray([t], dtype=np.int32), False)
            rows.append(eng.last_logits()[None, :])
        decode = np.concatenate(rows)
    finally:
        m.close()
    cpu = cpu_logits(path, tokens)
    check_against_f64(prefill, f64, wtype, "cuda prefill")
    check_against_f64(decode, f64, wtype, "cuda decode")
    assert np.abs(decode - cpu).max() < TOL[wtype], np.abs(decode - cpu).max()

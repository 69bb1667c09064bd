"""SmolLM2-135M-Instruct Q4_1 end to end, against llama.cpp and exact float64 math.

References: tests/fixtures/make_llama_fixtures.py (llama.cpp via llama-cpp-python, and the
float64 NumPy forward pass of tests/reference/llama_f64.py over the dequantized weights).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import check_smollm2_greedy
from reference.numpy_ops import log_softmax

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="module")
def ref():
    return np.load(os.path.join(FIXTURES, "smollm2_q4_1_logits.npz"))


@pytest.fixture(scope="module")
def logits(smollm2, ref):
    return smollm2.logits(ref["tokens"].tolist()).astype(np.float64)


def test_perplexity_within_1_percent_of_llama_cpp(logits, ref):
    tokens = ref["tokens"]
    nll = -log_softmax(logits)[np.arange(len(tokens) - 1), tokens[1:]]
    ppl = float(np.exp(nll.mean()))
    assert abs(ppl / float(ref["ppl"]) - 1) < 0.01, (ppl, float(ref["ppl"]))


def test_argmax_agrees_with_llama_cpp(logits, ref):
    agree = (logits.argmax(axis=1) == ref["argmax"]).mean()
    assert agree >= 0.94, agree


def test_at_least_as_close_to_exact_math_as_llama_cpp(logits, ref):
    """Distance to the float64 reference, measured on every position by the error in the
    log-probability of the actual next token (robust: argmax flips only happen at
    near-ties, where both engines are equally likely to land on either side).

    Compared per position (paired): strata's mean error may exceed llama.cpp's by at most
    two standard errors of the paired difference. A strict "mean <= llama.cpp's mean" is a
    coin toss on this model: fp32 summation order alone moves the mean error by +-5%
    (measured, same engine and file: 0.0515 with the 4-token prefill dots, 0.0556 with
    the tile matmul, 0.0560 scalar, 0.0565 AVX2 kernels; llama.cpp 0.0554; one standard
    error is 0.0035). A kernel that is really less exact (a lost bit, a coarser scale)
    moves every position the same way and fails this."""
    tokens = ref["tokens"]
    ours = log_softmax(logits)[np.arange(len(tokens) - 1), tokens[1:]]
    exact = ref["f64_logprob_next"].astype(np.float64)
    llama = ref["logprob_next"].astype(np.float64)
    diff = np.abs(ours - exact) - np.abs(llama - exact)
    stderr = diff.std(ddof=1) / np.sqrt(diff.size)
    assert diff.mean() <= 2 * stderr, (np.abs(ours - exact).mean(), np.abs(llama - exact).mean(), stderr)
    # Argmax against exact math: a flip is rounding noise only where exact math itself is
    # nearly tied. How many such near-ties flip is a lottery (a 1e-7 relative change of the
    # attention scores moves the count by several), so the rule is where, not how many:
    # every disagreement at a float64 top-2 gap below 0.25 (llama.cpp has one at 0.255).
    flips = np.flatnonzero(logits.argmax(axis=1) != ref["f64_argmax"])
    assert (ref["f64_top2_gap"][flips] < 0.25).all(), list(zip(flips, ref["f64_top2_gap"][flips]))
    # Raw logits of the first positions stay within quantization noise of llama.cpp's.
    diff = np.abs(logits[:16] - ref["logits_f16"].astype(np.float64))
    assert np.sqrt((diff**2).mean()) < 0.5


def test_greedy_continuations_match_llama_cpp(smollm2, smollm2_file):
    """Identical greedy text, except where a continuation reaches a token that exact math
    itself nearly ties with llama.cpp's choice (conftest.check_smollm2_greedy)."""
    check_smollm2_greedy(smollm2, smollm2_file)


def test_prompt_tokens_identical_to_llama_cpp(smollm2):
    with open(os.path.join(FIXTURES, "smollm2_q4_1_greedy.json")) as fh:
        cases = json.load(fh)["cases"]
    for case in cases:
        assert smollm2.tokenize(case["prompt"], parse_special=True) == case["prompt_ids"], case[
            "name"
        ]


@pytest.mark.parametrize("chunk, tile_matmul", [(7, False), (20, True)])
def test_chunked_prefill_equals_single_pass(smollm2_file, ref, monkeypatch, chunk, tile_matmul):
    """The KV cache across steps: a prompt evaluated in chunks gives the same logits as one
    pass. Each token's matmul result depends only on which matmul kernel runs, so both runs
    use the same one: chunks of 7 with the tile matmul off (the 4-token dots, which equal
    token-at-a-time decode), chunks of 20 with it on (it takes steps of 16 tokens or more).
    Mixing the two differs by fp32 summation order, which this model amplifies."""
    import strata

    if not tile_matmul:
        monkeypatch.setenv("STRATA_CPU_GEMM_MIN_ROWS", "0")
    # On a GPU ("auto" picks CUDA there) strata's own GEMM tiles, whose sums do not depend on
    # the step's token count; cuBLAS, the default, picks its kernel by shape (docs/numerics.md).
    monkeypatch.setenv("STRATA_CUDA_GEMM", "mma")
    tokens = ref["tokens"][:40].tolist()
    m = strata.load(smollm2_file, n_ctx=64, n_threads=2)
    full = m.logits(tokens)
    eng = strata.load(smollm2_file, n_ctx=64, n_threads=2)._engine
    last = []
    for i in range(0, len(tokens), chunk):
        eng.eval(np.asarray(tokens[i : i + chunk], dtype=np.int32))
        last.append(eng.last_logits())
    np.testing.assert_allclose(last[-1], full[-1], atol=2e-3)

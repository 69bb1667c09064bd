"""End to end over weight types: SmolLM2 re-quantized by llama.cpp, run by strata.

A reduced version of benchmarks/ppl_by_type.py (the full table: all 14 files, 512 tokens;
results in benchmarks/results/ppl-by-type.md).  Three files that between them carry Q2_K,
Q4_0, Q4_K, Q5_0, Q5_K, Q6_K, Q8_0, IQ4_NL and IQ4_XS tensors:

* test_files_carry_the_types: the files hold the tensor types they are here to exercise.
* test_perplexity_matches_llama_cpp: strata's perplexity within 1% of llama.cpp's on the
  same file and the benchmark's 512 tokens (issue 3's requirement), argmax agreement
  >= 90%.  Needs llama-cpp-python.
* test_perplexity_matches_exact_f64: strata against the float64 NumPy reference
  (tests/reference/llama_f64.py) on the same weights, 128 tokens -- no llama.cpp at run
  time.

About 40-60 s with the files present (2 busy cores); making them adds about 30-45 s.

The files can only be *made* with llama.cpp's quantizer (llama-cpp-python), which CI does not
build (it takes minutes).  So: if benchmarks/models/ (or $STRATA_QUANT_MODELS) already holds
them (`python scripts/requantize_smollm2.py`), they are used; otherwise they are made into a
temporary folder when llama_cpp is importable (mostly IQ4_XS's time); otherwise
every test here skips, saying why.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ["Q4_K_M", "IQ4_XS", "Q2_K-pure"]
# What each file must hold so that the kernels named are really exercised here.
MUST_HOLD = {
    "Q4_K_M": {"Q4_K", "Q6_K", "Q5_0", "Q8_0"},
    "IQ4_XS": {"IQ4_XS", "IQ4_NL", "Q5_K"},
    "Q2_K-pure": {"Q2_K", "Q4_0"},
}
N_TOKENS = 512  # the benchmark's count: see the note on test_perplexity_matches_llama_cpp
N_TOKENS_F64 = 128  # the float64 reference costs ~5 s per file at 128 tokens
# llama.cpp's own mean |d logprob| against the float64 reference on the first 128 tokens of
# ppl.TEXT, these files (llama-cpp-python 0.3.36): the bar strata's error is held to.
LLAMA_CPP_ERR_F64_128 = {"Q4_K_M": 0.0918, "IQ4_XS": 0.0815, "Q2_K-pure": 0.1487}


def _load_module(name: str, rel: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rq = _load_module("requantize_smollm2", "scripts/requantize_smollm2.py")
ppl = _load_module("ppl_by_type", "benchmarks/ppl_by_type.py")


def _have_llama_cpp() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


@pytest.fixture(scope="module")
def files(smollm2_file, tmp_path_factory) -> dict[str, str]:
    folder = os.environ.get("STRATA_QUANT_MODELS") or os.path.join(ROOT, "benchmarks", "models")
    found = {t: os.path.join(folder, rq.file_name(t)) for t in TYPES}
    if all(os.path.exists(p) for p in found.values()):
        return found
    if not _have_llama_cpp():
        pytest.skip(
            "re-quantized SmolLM2 files missing and llama-cpp-python not installed (CI does "
            "not build it): run `python scripts/requantize_smollm2.py` where it is"
        )
    out = str(tmp_path_factory.mktemp("quant_models"))
    made = rq.requantize(out, TYPES, src=smollm2_file, verbose=False)
    errors = {t: r["error"] for t, r in made.items() if "error" in r}
    assert not errors, f"llama.cpp's quantizer refused: {errors}"
    return {t: r["path"] for t, r in made.items()}


@pytest.fixture(scope="module")
def tokens(smollm2) -> np.ndarray:
    # strata's tokenizer equals llama.cpp's (tests/test_tokenizer.py); the llama.cpp test
    # below checks it again on this text.
    ids = smollm2.tokenize(ppl.TEXT)
    assert len(ids) >= N_TOKENS
    return np.asarray(ids[:N_TOKENS], dtype=np.int64)


@pytest.fixture(scope="module")
def strata_logits(files, tokens):
    """strata's logits of the N_TOKENS tokens per type, computed once for both tests."""
    cache: dict[str, np.ndarray] = {}

    def get(qtype: str) -> np.ndarray:
        if qtype not in cache:
            logits, _ = ppl.strata_logits(files[qtype], tokens, n_threads=2)
            assert logits.shape[0] == len(tokens) and np.isfinite(logits).all()
            cache[qtype] = logits
        return cache[qtype]

    return get


@pytest.mark.parametrize("qtype", TYPES)
def test_files_carry_the_types(files, qtype):
    held = set(rq.tensor_type_counts(files[qtype]))
    assert MUST_HOLD[qtype] <= held, (qtype, held)


@pytest.mark.parametrize("qtype", TYPES)
def test_perplexity_matches_llama_cpp(files, tokens, strata_logits, qtype):
    """Issue 3's bar, |strata / llama.cpp - 1| < 1%, on the benchmark's 512 tokens (or, past
    it, strata nearer to float64 math than llama.cpp over those tokens).  Not on
    fewer: both engines round activations to 8 bits on quantized weights, and on 128 tokens
    that noise alone moves each engine's perplexity ~1.4% from the exact one (measured:
    IQ4_XS strata 35.48, llama.cpp 36.14, float64 35.63) -- a 1% bar there tests the noise."""
    if not _have_llama_cpp():
        pytest.skip("llama-cpp-python not installed (CI does not build it)")
    assert ppl.tokenize(files[qtype], N_TOKENS).tolist() == tokens.tolist()
    theirs, _ = ppl.llama_logits(files[qtype], tokens, n_threads=2)
    ours = strata_logits(qtype)
    ratio = np.exp(
        ppl.next_token_logprobs(theirs, tokens).mean()
        - ppl.next_token_logprobs(ours, tokens).mean()
    )
    agree = (ours.argmax(axis=1) == theirs.argmax(axis=1)).mean()
    if abs(ratio - 1) >= 0.01:
        # Allowed only where strata is the more exact one: its K-quant prompt path
        # quantizes activations per 32 elements where llama.cpp's q8_K has one scale per
        # 256 (measured on Q2_K-pure, 512 tokens: float64 140.1, strata 139.5, llama.cpp
        # 144.3); judged against float64 over the same 512 tokens.
        import sys

        sys.path.insert(0, ROOT)
        try:
            from tests.reference.llama_f64 import _load, forward_f64
        finally:
            sys.path.remove(ROOT)
        exact = ppl.next_token_logprobs(forward_f64(files[qtype], tokens.tolist()), tokens)
        _load.cache_clear()
        err_ours = np.abs(ppl.next_token_logprobs(ours, tokens) - exact).mean()
        err_theirs = np.abs(ppl.next_token_logprobs(theirs, tokens) - exact).mean()
        assert err_ours < err_theirs, (qtype, ratio, err_ours, err_theirs)
    assert agree >= 0.90, (qtype, agree)


@pytest.mark.parametrize("qtype", TYPES)
def test_perplexity_matches_exact_f64(files, tokens, strata_logits, qtype):
    """No llama.cpp at run time: strata vs every op in float64 on the same dequantized
    weights (tests/reference/llama_f64.py), first 128 tokens.  strata's mean error in the
    next-token log-probability must stay within 1.25x llama.cpp's own (recorded above), and
    its perplexity within 2% of the exact one (llama.cpp itself is 1.4% off on IQ4_XS)."""
    import sys

    sys.path.insert(0, ROOT)
    try:
        from tests.reference.llama_f64 import _load, forward_f64
    finally:
        sys.path.remove(ROOT)

    toks = tokens[:N_TOKENS_F64]
    ours = ppl.next_token_logprobs(strata_logits(qtype)[:N_TOKENS_F64], toks)
    exact = ppl.next_token_logprobs(forward_f64(files[qtype], toks.tolist()), toks)
    _load.cache_clear()
    err = np.abs(ours - exact).mean()
    ratio = np.exp(exact.mean() - ours.mean())
    assert err <= 1.25 * LLAMA_CPP_ERR_F64_128[qtype], (qtype, err)
    assert abs(ratio - 1) < 0.02, (qtype, ratio)

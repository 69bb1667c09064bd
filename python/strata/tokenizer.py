"""GGUF vocabulary -> tokenizer that gives exactly llama.cpp's token ids.

:meth:`Tokenizer.from_metadata` reads the ``tokenizer.*`` keys of a GGUF file and returns
the tokenizer for its ``tokenizer.ggml.model``. Everything that llama.cpp decides from the
vocabulary alone lives in :class:`Tokenizer` and is shared by every kind (this follows
``src/llama-vocab.cpp``, ``llama_vocab::impl::load``):

- token attributes from ``tokenizer.ggml.token_type``, plus llama.cpp's overrides by token
  text (EOT/EOG/FIM-looking tokens become control tokens, gpt-oss' ``<|channel|>`` & co.
  become user-defined);
- special ids (defaults per kind, then ``tokenizer.ggml.*_token_id``), ``add_bos``/``add_eos``;
- the end-of-generation set (``special_eog_ids``);
- the special-token partition of the text (``tokenizer_st_partition``): control, user-defined
  and unknown tokens are cut out longest first; with ``parse_special=False`` only the
  user-defined ones are (llama.cpp matches HF ``tokenizers`` there);
- token -> bytes (``token_to_piece``) and so :meth:`Tokenizer.decode` and :class:`StreamDecoder`.

A subclass per ``tokenizer.ggml.model`` only turns one plain-text fragment into ids
(:meth:`Tokenizer._encode_fragment`) and the bytes of a normal token
(:meth:`Tokenizer._normal_token_bytes`). Kinds now: ``"gpt2"`` (byte-level BPE, built on
HF ``tokenizers``) and ``"llama"`` (SentencePiece-style BPE over token scores with byte
fallback: Llama 2, Mistral, Phi-3, Gemma 1-3; :class:`SPMTokenizer`). A new kind subclasses
:class:`Tokenizer`, and registers with ``@_register("name")``.

Byte-level BPE pre-tokenization: llama.cpp splits the text with a list of regexes applied in
turn (each one splits the pieces the previous one left; matches and the text between them
both become pieces), then byte-encodes and runs BPE on each piece. Here that list becomes an
HF ``Sequence`` of ``Split(..., "isolated")`` followed by ``ByteLevel(use_regex=False)``;
the regexes are llama.cpp's own strings (:data:`_PRE_REGEXES`). llama.cpp runs some of them
with hand-written matchers and the rest with ``std::regex`` on a "collapsed" text where every
non-ASCII code point stands for its category; Oniguruma (used by ``tokenizers``) gives the
same pieces for the expressions listed here, up to differences between the Unicode tables
of the two libraries.
"""

from __future__ import annotations

import codecs
import heapq
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from .errors import StrataValueError, UnsupportedModelError

__all__ = ["StreamDecoder", "TokenType", "Tokenizer"]


class TokenType:
    """Values of ``tokenizer.ggml.token_type`` (llama.cpp's ``llama_token_type``)."""

    UNDEFINED = 0
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


# llama.cpp's llama_token_attr bit flags.
_ATTR_UNDEFINED = 0
_ATTR_UNKNOWN = 1 << 0
_ATTR_UNUSED = 1 << 1
_ATTR_NORMAL = 1 << 2
_ATTR_CONTROL = 1 << 3
_ATTR_USER_DEFINED = 1 << 4
_ATTR_BYTE = 1 << 5
_ATTR_LSTRIP = 1 << 7
_ATTR_RSTRIP = 1 << 8

_TYPE_TO_ATTR = {
    TokenType.UNDEFINED: _ATTR_UNDEFINED,
    TokenType.NORMAL: _ATTR_NORMAL,
    TokenType.UNKNOWN: _ATTR_UNKNOWN,
    TokenType.CONTROL: _ATTR_CONTROL,
    TokenType.USER_DEFINED: _ATTR_USER_DEFINED,
    TokenType.UNUSED: _ATTR_UNUSED,
    TokenType.BYTE: _ATTR_BYTE,
}
_ATTR_SPECIAL = _ATTR_UNKNOWN | _ATTR_CONTROL  # hidden by decode(skip_special=True)
_ATTR_PARTITIONED = _ATTR_CONTROL | _ATTR_USER_DEFINED | _ATTR_UNKNOWN

# Token texts that llama.cpp recognises (src/llama-vocab.cpp, "auto-detect special tokens").
_EOT_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
)  # fmt: skip
_EOM_TEXTS = ("<|eom_id|>",)
_FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
                "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
                "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
                "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}  # fmt: skip
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
))  # fmt: skip
_ALWAYS_USER_DEFINED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")  # gpt-oss

# (GGUF key suffix, name of the special id); the deprecated prefix/suffix/middle keys last.
_SPECIAL_ID_KEYS = (
    ("bos_token_id", "bos"), ("eos_token_id", "eos"), ("eot_token_id", "eot"),
    ("eom_token_id", "eom"), ("unknown_token_id", "unk"), ("seperator_token_id", "sep"),
    ("padding_token_id", "pad"), ("mask_token_id", "mask"), ("fim_pre_token_id", "fim_pre"),
    ("fim_suf_token_id", "fim_suf"), ("fim_mid_token_id", "fim_mid"),
    ("fim_pad_token_id", "fim_pad"), ("fim_rep_token_id", "fim_rep"),
    ("fim_sep_token_id", "fim_sep"), ("prefix_token_id", "fim_pre"),
    ("suffix_token_id", "fim_suf"), ("middle_token_id", "fim_mid"),
)  # fmt: skip

_P = "tokenizer.ggml."
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _get(md: Mapping[str, object], key: str, default: object = None) -> object:
    value = md.get(key, default)
    return default if value is None else value


def _as_list(value: object) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value)  # type: ignore[arg-type]


def _check_types(md: Mapping[str, object]) -> None:
    """Refuses tokenizer metadata of the wrong type (as llama.cpp does) before it is used:
    a hostile file may store, say, token types as floats or an id as a string."""

    def bad(key: str, what: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"{_P}{key} must be {what}, not {type(md[_P + key]).__name__}")

    def is_int(x: object) -> bool:  # Python or NumPy integers, not bools
        return isinstance(x, numbers.Integral) and not isinstance(x, bool)

    for key in ("tokens", "merges"):
        v = md.get(_P + key)
        if v is not None and not (
            isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
        ):
            raise bad(key, "an array of strings")
    for key, kinds in (("token_type", "iu"), ("scores", "iuf")):
        v = md.get(_P + key)
        if v is None:
            continue
        dtype = getattr(v, "dtype", None)
        if dtype is not None:
            ok = getattr(v, "ndim", 1) == 1 and dtype.kind in kinds
        else:
            ok = isinstance(v, (list, tuple)) and all(
                is_int(x) or (kinds == "iuf" and isinstance(x, float)) for x in v
            )
        if not ok:
            raise bad(key, "an array of integers" if kinds == "iu" else "an array of numbers")
    for suffix, _ in _SPECIAL_ID_KEYS:
        v = md.get(_P + suffix)
        if v is not None and not is_int(v):
            raise bad(suffix, "an integer")
    for key in ("add_bos_token", "add_eos_token", "add_space_prefix"):
        v = md.get(_P + key)
        if v is not None and not (isinstance(v, bool) or is_int(v)):
            raise bad(key, "a bool")


# ---------------------------------------------------------------------------------------------
# The kinds
# ---------------------------------------------------------------------------------------------

_KINDS: dict[str, type[Tokenizer]] = {}


def _register(name: str) -> Callable[[type[Tokenizer]], type[Tokenizer]]:
    def deco(cls: type[Tokenizer]) -> type[Tokenizer]:
        _KINDS[name] = cls
        return cls

    return deco


class Tokenizer:
    """A GGUF vocabulary: text -> token ids exactly as llama.cpp, ids -> bytes/text.

    Build one with :meth:`from_metadata` or :meth:`from_gguf`; the result is an instance of
    the subclass for the file's ``tokenizer.ggml.model``.

    Attributes:
        kind: the ``tokenizer.ggml.model`` value, e.g. ``"gpt2"``.
        pre: the ``tokenizer.ggml.pre`` value ("" when absent).
        vocab_size: number of tokens.
        bos_id, eos_id: ids of the BOS/EOS tokens, or None where the vocabulary has none.
        eog_ids: the ids that end generation (EOS, EOT, ``<|im_end|>``, ...), by llama.cpp's rule.
        add_bos, add_eos: whether ``encode(..., add_special=True)`` adds BOS/EOS.
        add_space_prefix: whether a space is put before the text (SentencePiece vocabularies,
            ``tokenizer.ggml.add_space_prefix``; False for the other kinds).
        chat_template: ``tokenizer.chat_template``, or None.
    """

    kind: ClassVar[str] = ""
    # Defaults of llama.cpp for this kind, before the tokenizer.ggml.*_token_id keys apply.
    _default_special_ids: ClassVar[dict[str, int | None]] = {}

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_gguf(cls, gguf_file: object) -> Tokenizer:
        """The tokenizer of an open GGUF file (anything with a ``.metadata`` mapping).

        Raises:
            UnsupportedModelError: the tokenizer kind or pre-tokenizer is not supported.
        """
        return cls.from_metadata(gguf_file.metadata)  # type: ignore[attr-defined]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, object]) -> Tokenizer:
        """The tokenizer described by GGUF metadata (``tokenizer.*`` and ``general.*`` keys).

        String arrays are sequences of str; numeric arrays are sequences or NumPy arrays.

        Raises:
            UnsupportedModelError: ``tokenizer.ggml.model`` is missing or names a kind strata
                does not support, or the kind rejects the file (e.g. an unknown pre-tokenizer).
        """
        kind = metadata.get(_P + "model")
        if not isinstance(kind, str):
            raise UnsupportedModelError("GGUF file has no tokenizer.ggml.model: no vocabulary")
        impl = _KINDS.get(kind)
        if impl is None:
            raise UnsupportedModelError(
                f"tokenizer kind {kind!r} (tokenizer.ggml.model) is not supported; "
                f"supported: {', '.join(sorted(_KINDS))}"
            )
        return impl(metadata)

    def __init__(self, metadata: Mapping[str, object]) -> None:
        md = metadata
        _check_types(md)
        tokens = _get(md, _P + "tokens")
        if tokens is None:
            raise UnsupportedModelError("GGUF file has no tokenizer.ggml.tokens")
        texts = list(tokens)  # type: ignore[call-overload]
        n = len(texts)
        for i, t in enumerate(texts):
            if not t:  # llama.cpp: an empty token would break lookups
                texts[i] = f"[EMPTY_{i}]"
        self._texts: list[str] = texts
        self._text_to_id: dict[str, int] = {t: i for i, t in enumerate(texts)}
        self.vocab_size: int = n
        self.pre: str = str(_get(md, _P + "pre", ""))
        template = md.get("tokenizer.chat_template")
        self.chat_template: str | None = template if isinstance(template, str) else None

        types = _get(md, _P + "token_type")
        if types is None:
            attrs = [_ATTR_NORMAL] * n
        else:
            types = _as_list(types)
            if len(types) < n:
                raise UnsupportedModelError(
                    f"tokenizer.ggml.token_type has {len(types)} entries for {n} tokens"
                )
            attrs = [_TYPE_TO_ATTR.get(int(t), _ATTR_UNDEFINED) for t in types[:n]]
        self._attrs: list[int] = attrs

        # Kind-specific options (pre-tokenizer, add_bos default, ...) before the keys apply.
        ids: dict[str, int | None] = {name: None for _, name in _SPECIAL_ID_KEYS}
        ids.update(self._default_special_ids)
        self.add_bos: bool = False
        self.add_eos: bool = False
        self.add_space_prefix: bool = False
        self._configure(md, ids)

        for name, value in ids.items():  # defaults out of range are disabled
            if value is not None and not 0 <= value < n:
                ids[name] = None
        for suffix, name in _SPECIAL_ID_KEYS:
            value = md.get(_P + suffix)
            if value is not None and 0 <= int(value) < n:  # type: ignore[call-overload]
                ids[name] = int(value)  # type: ignore[call-overload]
        for key, attr in (("add_bos_token", "add_bos"), ("add_eos_token", "add_eos")):
            value = md.get(_P + key)
            if value is not None:
                setattr(self, attr, bool(value))

        self._find_special_tokens_by_text(ids)
        self.eog_ids: frozenset[int] = self._eog_set(ids)
        self._special_ids = ids
        self.bos_id: int | None = ids["bos"]
        self.eos_id: int | None = ids["eos"]
        self.eot_id: int | None = ids["eot"]
        self._set_strip_attrs(md)

        # The special-token cache: longest (in bytes) first; ties by id (llama.cpp's
        # std::sort leaves their order unspecified).
        special = [i for i, a in enumerate(self._attrs) if a & _ATTR_PARTITIONED]
        special.sort(key=lambda i: (-len(texts[i].encode("utf-8")), i))
        self._special_order = {i: rank for rank, i in enumerate(special)}
        self._special_all = self._bucket(special)
        self._special_user = self._bucket(
            i for i in special if not self._attrs[i] & (_ATTR_CONTROL | _ATTR_UNKNOWN)
        )
        self._bytes_cache: list[bytes | None] = [None] * n
        # llama_detokenize removes one leading space of the first token's piece (the space
        # an SPM vocabulary with add_space_prefix puts before the text); kinds set this.
        self._strip_first_space: bool = False
        self._build()

    # -- hooks for the kinds ----------------------------------------------------------------

    def _configure(self, md: Mapping[str, object], ids: dict[str, int | None]) -> None:
        """Read kind-specific options; may change the default special ids and add_bos/add_eos."""

    def _build(self) -> None:
        """Build the encoder after the shared vocabulary state is ready."""

    def _encode_fragment(self, text: str) -> list[int]:
        """Ids of a fragment of plain text (no special token is cut out of it any more)."""
        raise NotImplementedError

    def _encode_parts(self, parts: list[str | int]) -> list[int]:
        """Ids of a partitioned text: token ids kept, text fragments encoded in turn."""
        out: list[int] = []
        for frag in parts:
            if isinstance(frag, int):
                out.append(frag)
            else:
                out.extend(self._encode_fragment(frag))
        return out

    def _normal_token_bytes(self, text: str) -> bytes:
        """The bytes that a normal token with this vocabulary text stands for."""
        raise NotImplementedError

    # -- vocabulary-wide llama.cpp rules --------------------------------------------------

    def _find_special_tokens_by_text(self, ids: dict[str, int | None]) -> None:
        # llama.cpp walks an unordered_map, so where several texts of one list are present
        # the one it picks is unspecified; here the lowest id wins.
        tti = self._text_to_id

        def detect(name: str, candidates: Iterable[str]) -> None:
            if ids[name] is not None:
                return
            found = sorted(tti[t] for t in candidates if t in tti)
            if found:
                ids[name] = found[0]
                self._attrs[found[0]] |= _ATTR_CONTROL

        detect("eot", _EOT_TEXTS)
        detect("eom", _EOM_TEXTS)
        for name, candidates in _FIM_TEXTS.items():
            detect(name, candidates)
        for i, a in enumerate(self._attrs):  # control tokens named "unused" are unused
            if a & _ATTR_CONTROL and "unused" in self._texts[i]:
                self._attrs[i] = a | _ATTR_UNUSED

    def _eog_set(self, ids: dict[str, int | None]) -> frozenset[int]:
        eog = {ids[k] for k in ("fim_pad", "fim_rep", "fim_sep") if ids[k] is not None}
        for t in _EOG_TEXTS:
            i = self._text_to_id.get(t)
            if i is not None:
                eog.add(i)
                self._attrs[i] |= _ATTR_CONTROL
        for t in _ALWAYS_USER_DEFINED:
            i = self._text_to_id.get(t)
            if i is not None:
                self._attrs[i] = _ATTR_USER_DEFINED
        eog.update(ids[k] for k in ("eos", "eot", "eom") if ids[k] is not None)  # type: ignore[misc]
        by_text = {self._texts[i]: i for i in eog}
        # gpt-oss / solar-open: "<|end|>" ends a message, not the generation.
        if "<|end|>" in by_text and (
            ("<|return|>" in by_text and ("<|call|>" in by_text or "<|calls|>" in by_text))
            or (("<|call|>" in by_text or "<|calls|>" in by_text) and "<|flush|>" in by_text)
        ):
            i = by_text["<|end|>"]
            eog.discard(i)
            self._attrs[i] = _ATTR_USER_DEFINED
        # gemma4 and plamo have a normal "</s>".
        if "</s>" in by_text and ("<|tool_response>" in by_text or "<|plamo:eos|>" in by_text):
            i = by_text["</s>"]
            eog.discard(i)
            self._attrs[i] = _ATTR_NORMAL
        return frozenset(eog)

    def _set_strip_attrs(self, md: Mapping[str, object]) -> None:
        # llama.cpp sets lstrip/rstrip by model name, pre-tokenizer or architecture.
        name = str(md.get("general.name") or "").lower()
        arch = str(md.get("general.architecture") or "")
        tti = self._text_to_id

        def set_attr(text: str, attr: int, on: bool) -> None:
            i = tti.get(text)
            if i is not None:
                self._attrs[i] = self._attrs[i] | attr if on else self._attrs[i] & ~attr

        if any(s in self.pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
            s in arch for s in ("nomic-bert-moe", "jina-bert-v3")
        ):
            set_attr("<mask>", _ATTR_LSTRIP, True)
        elif "phi-3" in name or "phi3" in name:
            for i, a in enumerate(self._attrs):
                if a & _ATTR_PARTITIONED:
                    self._attrs[i] = a | _ATTR_RSTRIP
            set_attr("</s>", _ATTR_RSTRIP, True)
            for t in ("<unk>", "<s>", "<|endoftext|>"):
                set_attr(t, _ATTR_RSTRIP, False)
        elif "modern-bert" in name:
            set_attr("[MASK]", _ATTR_LSTRIP, True)

    def _bucket(self, ids: Iterable[int]) -> dict[str, list[int]]:
        """Special ids by their first two characters (a quick filter before ``in``)."""
        buckets: dict[str, list[int]] = {}
        for i in ids:
            buckets.setdefault(self._texts[i][:2], []).append(i)
        return buckets

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """llama.cpp's tokenizer_st_partition: text fragments and special-token ids, in order."""
        buckets = self._special_all if parse_special else self._special_user
        present: list[int] = []
        if buckets:
            keys = {text[i : i + 2] for i in range(len(text))}
            keys.update(text)  # the bucket of a one-character token
            for k in keys & buckets.keys():
                present.extend(i for i in buckets[k] if self._texts[i] in text)
        if not present:
            return [text] if text else []
        present.sort(key=self._special_order.__getitem__)
        fragments: list[str | int] = [text]
        for sid in present:
            stext = self._texts[sid]
            attr = self._attrs[sid]
            out: list[str | int] = []
            for frag in fragments:
                if isinstance(frag, int) or stext not in frag:
                    out.append(frag)
                    continue
                pos = 0
                while True:
                    j = frag.find(stext, pos)
                    if j < 0:
                        break
                    left = frag[pos:j]
                    if attr & _ATTR_LSTRIP:
                        left = left.rstrip(" \t\n\v\f\r")
                    if left:
                        out.append(left)
                    out.append(sid)
                    pos = j + len(stext)
                    if attr & _ATTR_RSTRIP:
                        while pos < len(frag) and frag[pos] in " \t\n\v\f\r":
                            pos += 1
                if pos < len(frag):
                    out.append(frag[pos:])
            fragments = out
        return fragments

    # -- public API -----------------------------------------------------------------------

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``, identical to llama.cpp's ``llama_tokenize``.

        Args:
            text: the text to tokenize.
            add_special: add BOS (if ``add_bos``) and EOS (if ``add_eos``) as the model asks.
            parse_special: map the text of control tokens (``<|im_start|>``...) to their ids.
                When False they are tokenized as plain text; user-defined tokens are always
                matched, as in llama.cpp.

        Raises:
            UnsupportedModelError: BOS/EOS is asked for but the vocabulary has none.
        """
        out: list[int] = []
        if add_special and self.add_bos:
            if self.bos_id is None:
                raise UnsupportedModelError("the model asks for a BOS token but defines none")
            out.append(self.bos_id)
        out.extend(self._encode_parts(self._partition(text, parse_special)))
        if add_special and self.add_eos:
            if self.eos_id is None:
                raise UnsupportedModelError("the model asks for an EOS token but defines none")
            out.append(self.eos_id)
        return out

    def _check_id(self, token_id: int) -> int:
        if not 0 <= token_id < self.vocab_size:
            raise StrataValueError(f"token_id {token_id} is out of range [0, {self.vocab_size})")
        return token_id

    def token_bytes(self, token_id: int) -> bytes:
        """The exact bytes that ``token_id`` stands for (llama.cpp's ``token_to_piece``).

        Control, unknown and user-defined tokens give their text; byte tokens their byte;
        unused and undefined tokens nothing.

        Raises:
            StrataValueError: ``token_id`` is not in ``[0, vocab_size)``.
        """
        cached = self._bytes_cache[self._check_id(token_id)]
        if cached is not None:
            return cached
        attr = self._attrs[token_id]
        text = self._texts[token_id]
        if attr & (_ATTR_SPECIAL | _ATTR_USER_DEFINED):
            piece = text.encode("utf-8")
        elif attr & _ATTR_NORMAL:
            piece = self._normal_token_bytes(text)
        elif attr & _ATTR_BYTE:
            # "<0xAB>"; like llama.cpp's strtol, hex digits as far as they go, else 0 (a
            # hostile file may give any text the byte type).
            digits = text[3:5]
            n = next((i for i, c in enumerate(digits) if c not in _HEX_DIGITS), len(digits))
            piece = bytes([int(digits[:n], 16) if n else 0])
        else:
            piece = b""
        self._bytes_cache[token_id] = piece
        return piece

    def is_special(self, token_id: int) -> bool:
        """Whether ``token_id`` is a control or unknown token (hidden by ``skip_special``)."""
        return bool(self._attrs[self._check_id(token_id)] & _ATTR_SPECIAL)

    def is_eog(self, token_id: int) -> bool:
        """Whether ``token_id`` ends generation."""
        return token_id in self.eog_ids

    def token_text(self, token_id: int) -> str:
        """The vocabulary string of ``token_id`` as stored in the file (not decoded)."""
        return self._texts[self._check_id(token_id)]

    def token_to_id(self, text: str) -> int | None:
        """The id whose vocabulary string is exactly ``text``, or None."""
        return self._text_to_id.get(text)

    def decode_bytes(self, ids: Iterable[int], skip_special: bool = False) -> bytes:
        """The bytes of ``ids`` concatenated; control/unknown tokens left out if ``skip_special``.

        This is llama.cpp's ``llama_detokenize(ids, remove_special=False,
        unparse_special=not skip_special)`` except for its ``clean_spaces`` pass: where the
        vocabulary puts a space before the text (SPM with ``add_space_prefix``), one leading
        space of the *first* token's piece is dropped (none if that token is a hidden special
        token, e.g. BOS with ``skip_special``).
        """
        pieces = [b"" if skip_special and self.is_special(i) else self.token_bytes(i) for i in ids]
        if self._strip_first_space and pieces and pieces[0][:1] == b" ":
            pieces[0] = pieces[0][1:]
        return b"".join(pieces)

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD.

        Args:
            ids: token ids.
            skip_special: leave out control and unknown tokens (llama.cpp's ``special=False``);
                user-defined tokens are kept.

        Raises:
            StrataValueError: an id is out of range.
        """
        return self.decode_bytes(ids, skip_special).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} kind={self.kind!r} pre={self.pre!r} "
            f"vocab_size={self.vocab_size} bos={self.bos_id} eos={self.eos_id}>"
        )


class StreamDecoder:
    """Turns token ids, one at a time, into text without ever splitting a character.

    ``push`` returns the text completed by the new token (possibly ""), holding back the
    bytes of a character that later tokens will finish; ``flush`` returns what is left,
    with bytes that never formed a valid character replaced by U+FFFD. The concatenation
    of every ``push`` and the final ``flush`` is the concatenation of the tokens' bytes,
    which equals ``tokenizer.decode(ids, skip_special)`` except that ``decode`` drops the
    leading space an SPM vocabulary with ``add_space_prefix`` puts before a text: a stream
    continues a text, so the space of its first token is kept (as llama.cpp's
    ``token_to_piece`` per token keeps it).
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False) -> None:
        self._tok = tokenizer
        self._skip = skip_special
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes.

        Raises:
            StrataValueError: ``token_id`` is out of range.
        """
        if self._skip and self._tok.is_special(token_id):
            return ""
        return self._dec.decode(self._tok.token_bytes(token_id), final=False)

    def flush(self) -> str:
        """Return the held-back bytes (as U+FFFD where incomplete) and start afresh."""
        text = self._dec.decode(b"", final=True)
        self._dec.reset()
        return text


# ---------------------------------------------------------------------------------------------
# "gpt2": byte-level BPE
# ---------------------------------------------------------------------------------------------

# llama.cpp's regexes per pre-tokenizer type (llm_tokenizer_bpe's constructor), copied verbatim.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SEED_CODER = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_DEEPSEEK_LLM_LETTERS = (  # escaped: an editor's Unicode normalisation would break ranges
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a\U00010400-\U0001044f"
    "\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2\U00010cc0-\U00010cf2"
    "\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
# llama.cpp runs regexes without \p{..} with std::wregex on a text whose non-ASCII whitespace
# became "\v", so whitespace never matches a literal class there: "&&\S" says the same here.
_CJK_HANGUL = "[[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]&&\\S]+"
_PORO = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
_PRE_REGEXES: dict[str, tuple[str, ...]] = {
    "default": (
        r"[\p{P}\$\+<=>\^~\|]+",
        _GPT2,
        r"\p{N}+",
        r"[0-9][0-9][0-9]",
    ),
    "gpt2": (_GPT2,),
    "llama3": (_LLAMA3,),
    "starcoder": (r"\p{N}", _GPT2),  # also refact, command-r, smollm, codeshell, exaone, ...
    "qwen2": (_QWEN2,),  # also stablelm2, hunyuan, solar-open
    "deepseek-llm": (
        "[\r\n]",
        _DEEPSEEK_LLM_LETTERS,
        "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3001-\u3002]+",  # no U+3000
        # llama.cpp's "\s+$" under std::regex, where "$" is the end of the piece only.
        "\\s+\\z",
        _CJK_HANGUL,
        r"\p{N}+",
    ),
    "deepseek-coder": ("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK_HANGUL, r"\p{N}"),
    "falcon": (
        r"[\p{P}\$\+<=>\^~\|`]+",
        r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)",
        r"[0-9][0-9][0-9]",
    ),
    "poro": (_PORO,),  # also bloom, gpt3-finnish
    "viking": (_PORO, r"\p{N}"),
    "seed-coder": (_SEED_CODER,),
}


@dataclass(frozen=True)
class _Pre:
    """What a tokenizer.ggml.pre value selects in llama.cpp (llama_vocab::impl::load)."""

    regexes: str  # key of _PRE_REGEXES
    ignore_merges: bool = False  # a piece that is itself a token is not merged
    add_bos: bool = False  # llama.cpp's add_bos before tokenizer.ggml.add_bos_token applies
    no_bos: bool = False  # special_bos_id = none
    clean_spaces: bool = True  # llama_detokenize's clean-up (not used by decode())


_L3 = _Pre("llama3", ignore_merges=True, add_bos=True)
_PRE_TYPES: dict[str, _Pre] = {
    "default": _Pre("default"),
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
         "lfm2", "jina-v5-nano"),
        _L3,
    ),
    "dbrx": _Pre("llama3"),
    "smaug-bpe": _Pre("llama3"),
    "deepseek-llm": _Pre("deepseek-llm", clean_spaces=False),
    "deepseek-coder": _Pre("deepseek-coder", clean_spaces=False),
    "falcon": _Pre("falcon"),
    "mpt": _Pre("gpt2"),
    "olmo": _Pre("gpt2"),
    "jais": _Pre("gpt2"),
    "exaone4": _Pre("gpt2"),
    "trillion": _Pre("gpt2", clean_spaces=False),
    "granite-docling": _Pre("gpt2", clean_spaces=False),
    **dict.fromkeys(
        ("gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
         "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe"),
        _Pre("gpt2"),
    ),
    **dict.fromkeys(
        ("starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"),
        _Pre("starcoder"),
    ),
    "command-r": _Pre("starcoder", clean_spaces=False),
    "smollm": _Pre("starcoder", clean_spaces=False),
    **dict.fromkeys(
        ("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open"),
        _Pre("qwen2", clean_spaces=False),
    ),
    "megrez": _Pre("qwen2"),
    "stablelm2": _Pre("qwen2"),
    "chatglm-bpe": _Pre("llama3", no_bos=True),
    "poro-chat": _Pre("poro", clean_spaces=False),
    "bloom": _Pre("poro"),
    "gpt3-finnish": _Pre("poro"),
    "viking": _Pre("viking", clean_spaces=False),
    "seed-coder": _Pre("seed-coder", clean_spaces=False),
}  # fmt: skip


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (as in llama.cpp's unicode_byte_to_utf8)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_BYTE_TO_CHAR = _bytes_to_unicode()
_CHAR_TO_BYTE_TABLE = str.maketrans({c: chr(b) for b, c in _BYTE_TO_CHAR.items()})


@_register("gpt2")
class BPETokenizer(Tokenizer):
    """Byte-level BPE (``tokenizer.ggml.model == "gpt2"``), run by HF ``tokenizers``.

    ``tokenizer.ggml.pre`` selects llama.cpp's pre-tokenizer regexes (:data:`_PRE_TYPES`);
    a missing value means llama.cpp's ``"default"``. A value llama.cpp does not know makes it
    refuse the file, and so does strata (as it does for ones llama.cpp handles with custom
    code strata does not have, such as ``"kimi-k2"``).
    """

    kind = "gpt2"
    _default_special_ids: ClassVar[dict[str, int | None]] = {"bos": 11, "eos": 11}

    def _configure(self, md: Mapping[str, object], ids: dict[str, int | None]) -> None:
        pre = self.pre or "default"  # llama.cpp warns and uses "default" when missing
        spec = _PRE_TYPES.get(pre)
        if spec is None:
            raise UnsupportedModelError(
                f"pre-tokenizer {pre!r} (tokenizer.ggml.pre) is not supported; llama.cpp "
                "refuses pre-tokenizers it does not know, and strata supports "
                f"{', '.join(sorted(_PRE_TYPES))}"
            )
        self._pre_spec = spec
        self.add_bos = spec.add_bos
        if spec.no_bos:
            ids["bos"] = None
        merges = _get(md, _P + "merges")
        if merges is None:
            raise UnsupportedModelError("byte-level BPE vocabulary without tokenizer.ggml.merges")
        self._merges: list[str] = list(merges)  # type: ignore[call-overload]

    def _build(self) -> None:
        from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        vocab = self._text_to_id
        pairs: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        for m in self._merges:
            pos = m.find(" ", 1)  # as llama.cpp: the first space after the first character
            if pos < 0:
                continue  # llama.cpp records ("", "") which never matches
            a, b = m[:pos], m[pos + 1 :]
            # tokenizers refuses merges whose parts or result are not tokens; llama.cpp can
            # never complete such a merge into one token, so leaving them out is the nearest.
            if (a, b) in seen or a not in vocab or b not in vocab or a + b not in vocab:
                continue
            seen.add((a, b))
            pairs.append((a, b))
        model = models.BPE(vocab=dict(vocab), merges=pairs,
                           ignore_merges=self._pre_spec.ignore_merges)  # fmt: skip
        hf = HFTokenizer(model)
        splits = [
            pre_tokenizers.Split(Regex(r), behavior="isolated")
            for r in _PRE_REGEXES[self._pre_spec.regexes]
        ]
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
        hf.decoder = decoders.ByteLevel()
        special = sorted(self._special_order, key=self._special_order.__getitem__)
        hf.add_special_tokens(
            [AddedToken(self._texts[i], special=True, normalized=False) for i in special]
        )
        # strata cuts special tokens out itself (llama.cpp's order and rules); the HF object
        # must treat whatever reaches it as plain text.
        hf.encode_special_tokens = True
        self._hf = hf

    @property
    def hf_tokenizer(self) -> object:
        """The underlying ``tokenizers.Tokenizer`` (encodes plain text, not special tokens)."""
        return self._hf

    def _encode_fragment(self, text: str) -> list[int]:
        return self._hf.encode(text, add_special_tokens=False).ids

    def _normal_token_bytes(self, text: str) -> bytes:
        try:
            return text.translate(_CHAR_TO_BYTE_TABLE).encode("latin-1")
        except UnicodeEncodeError:
            # Not byte-level text (llama.cpp prints "[UNK_BYTE_0x..]" here); keep the
            # characters that are not in the byte table as UTF-8.
            return b"".join(
                c.translate(_CHAR_TO_BYTE_TABLE).encode("latin-1")
                if ord(c.translate(_CHAR_TO_BYTE_TABLE)) < 256
                else c.encode("utf-8")
                for c in text
            )


# ---------------------------------------------------------------------------------------------
# "llama": SentencePiece-style BPE over token scores, with byte fallback
# ---------------------------------------------------------------------------------------------

_SPACE = "\u2581"  # "▁", SentencePiece's visible space


@_register("llama")
class SPMTokenizer(Tokenizer):
    """SentencePiece-style vocabulary (``tokenizer.ggml.model == "llama"``), as llama.cpp's SPM.

    Llama 1/2, TinyLlama, Mistral, Phi-3 and Gemma 1-3 ship this kind: every token has a
    score (``tokenizer.ggml.scores``), spaces are written as U+2581 and bytes that no token
    covers become the byte tokens ``<0x00>``..``<0xFF>``. llama.cpp (``llm_tokenizer_spm``)
    encodes each text fragment left by the special-token partition as follows:

    - a space is put before the fragment when ``add_space_prefix`` (``tokenizer.ggml.
      add_space_prefix``, default True; Gemma 3 sets False) and the fragment starts the text
      or follows a token cut out by the partition (control or user-defined, BOS included);
    - every space becomes U+2581 (no other normalisation: tabs, newlines and non-ASCII
      spaces stay as they are);
    - the fragment is split into characters; repeatedly the adjacent pair whose
      concatenation is a token with the highest score is merged (ties: the leftmost pair),
      over the whole fragment at once (there is no pre-tokenizer: ``tokenizer.ggml.pre`` is
      ignored, as in llama.cpp);
    - each final piece becomes its token, or, if it is not one (a single character outside
      the vocabulary), the byte tokens of its UTF-8 bytes.

    Every vocabulary string takes part in the merges, whatever its type, as in llama.cpp.
    ``add_bos`` defaults to True, ``add_eos`` to False; default ids: BOS 1, EOS 2, UNK 0.
    Decoding turns U+2581 back into spaces and byte tokens into their byte; see
    :meth:`Tokenizer.decode_bytes` for the leading space.
    """

    kind = "llama"
    _default_special_ids: ClassVar[dict[str, int | None]] = {"bos": 1, "eos": 2, "unk": 0}

    def _configure(self, md: Mapping[str, object], ids: dict[str, int | None]) -> None:
        self.add_bos = True
        self.add_eos = False
        prefix = md.get(_P + "add_space_prefix")
        self.add_space_prefix = True if prefix is None else bool(prefix)
        scores = md.get(_P + "scores")
        if scores is None:
            self._scores: list[float] = [0.0] * self.vocab_size
        else:
            values = [float(x) for x in _as_list(scores)]
            if len(values) < self.vocab_size:
                raise UnsupportedModelError(
                    f"tokenizer.ggml.scores has {len(values)} entries for {self.vocab_size} tokens"
                )
            self._scores = values[: self.vocab_size]

    def _build(self) -> None:
        self._strip_first_space = self.add_space_prefix
        tti = self._text_to_id
        # llama.cpp's byte_to_token: "<0xXX>", else the byte itself as a one-byte token
        # (only possible for ASCII here; NUL never, an empty text is no token).
        self._byte_ids: list[int | None] = [
            tti.get(f"<0x{b:02X}>", tti.get(chr(b)) if 0 < b < 0x80 else None) for b in range(256)
        ]
        # Score per vocabulary string, for the merge loop's single dictionary lookup.
        scores = self._scores
        self._text_score: dict[str, float] = {t: scores[i] for t, i in tti.items()}

    def _encode_parts(self, parts: list[str | int]) -> list[int]:
        out: list[int] = []
        prev_special = True  # llama.cpp: a text at the start counts as following a token
        for frag in parts:
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            if self.add_space_prefix and prev_special:
                frag = " " + frag
            self._merge(frag.replace(" ", _SPACE), out)
            prev_special = False
        return out

    def _encode_fragment(self, text: str) -> list[int]:
        """Ids of ``text`` as one fragment that follows a token (space prefix rule applied)."""
        return self._encode_parts([text])

    def _merge(self, text: str, out: list[int]) -> None:
        """llama.cpp's ``llm_tokenizer_spm_session::tokenize`` on escaped text, into ``out``.

        Symbol ``i`` always starts at character ``i`` (a merge appends the right symbol to
        the left one), so a symbol is its length plus links to its neighbours. The queue
        holds (-score, left, right, size); a popped pair is stale if either side was merged
        since (size check, as llama.cpp).
        """
        n = len(text)
        if n == 0:
            return
        score_of = self._text_score.get
        length = [1] * n
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        heap: list[tuple[float, int, int, int]] = []
        for i in range(n - 1):
            s = score_of(text[i : i + 2])
            if s is not None:
                heap.append((-s, i, i + 1, 2))
        heapq.heapify(heap)
        pop, push = heapq.heappop, heapq.heappush
        while heap:
            _, left, right, size = pop(heap)
            ln = length[left]
            rn = length[right]
            if ln == 0 or rn == 0 or ln + rn != size:
                continue
            ln += rn
            length[left] = ln
            length[right] = 0
            after = nxt[right]
            nxt[left] = after
            before = prev[left]
            if after >= 0:
                prev[after] = left
                s = score_of(text[left : after + length[after]])
                if s is not None:
                    push(heap, (-s, left, after, ln + length[after]))
            if before >= 0:
                s = score_of(text[before : left + ln])
                if s is not None:
                    push(heap, (-s, before, left, length[before] + ln))
        tti = self._text_to_id
        i = 0
        while i >= 0:
            piece = text[i : i + length[i]]
            tid = tti.get(piece)
            if tid is not None:
                out.append(tid)
            else:
                for b in piece.encode("utf-8"):
                    bid = self._byte_ids[b]
                    if bid is None:  # llama.cpp throws from byte_to_token (and aborts)
                        raise StrataValueError(
                            f"the vocabulary has no token for byte 0x{b:02X} of {piece!r} "
                            "(no <0x..> byte token)"
                        )
                    out.append(bid)
            i = nxt[i]

    def _normal_token_bytes(self, text: str) -> bytes:
        return text.replace(_SPACE, " ").encode("utf-8")

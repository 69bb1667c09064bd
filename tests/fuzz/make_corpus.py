"""Write the fuzzer's seed corpus, ``tests/fuzz/corpus/``: small crafted GGUF files.

Run ``python tests/fuzz/make_corpus.py`` to (re)write it (needs ``numpy``; only
:mod:`struct` writes bytes, through ``tests/fixtures/make_bad_gguf.py``'s builder, so the
files are the same on every machine). ``tests/test_hostile.py`` checks that the committed
files are what this script writes.

Two kinds of seed:

* header-level files of a few hundred bytes (the valid base file of make_bad_gguf.py,
  version 2, a custom alignment, every metadata value type, no tensors): mutations of
  these exercise the parser;
* complete tiny models, 1.5 to 6 KiB each, that ``strata.load`` accepts and runs (llama
  with a SentencePiece vocabulary in F32, F16 and Q4_0; llama with a byte-level BPE
  vocabulary; gemma3 with a sliding window; gpt2 with learned positions): mutations of
  these reach the model definitions, the tokenizers, the graph builder and the native
  engine's own checks.

The weights are random (NumPy PCG64, fixed seeds) and meaningless: only the structure
matters. The fuzzer also reads ``tests/fixtures/bad_gguf/`` as seeds.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
_spec = importlib.util.spec_from_file_location(
    "make_bad_gguf", HERE.parent / "fixtures" / "make_bad_gguf.py"
)
assert _spec is not None and _spec.loader is not None
mb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mb)

F32, F16, Q4_0 = 0, 1, 2

# -- tensors -------------------------------------------------------------------------------


def _f16(a: np.ndarray) -> bytes:
    return a.astype("<f2").tobytes()


def _q4_0(a: np.ndarray) -> bytes:
    """GGML Q4_0: per 32 values an f16 scale d and 16 bytes of 4-bit q, x = d * (q - 8)."""
    out = bytearray()
    for block in a.astype(np.float32).reshape(-1, 32):
        amax = block[np.argmax(np.abs(block))]
        d = amax / -8.0 if amax else 0.0
        q = np.clip(np.round(block / d) + 8 if d else np.full(32, 8), 0, 15).astype(np.uint8)
        out += struct.pack("<e", d) + bytes(q[:16] | (q[16:] << 4))
    return bytes(out)


_ENCODE = {F32: lambda a: a.astype("<f4").tobytes(), F16: _f16, Q4_0: _q4_0}


class Model:
    """Collects metadata and tensors, then writes them with make_bad_gguf.build()."""

    def __init__(self, arch: str, seed: int) -> None:
        self.kvs: list[bytes] = [mb.kv("general.architecture", mb.STRING, arch)]
        self.arch = arch
        self.tensors: list[tuple[str, list[int], int, bytes]] = []
        self.rng = np.random.default_rng(seed)

    def u32(self, key: str, v: int) -> None:
        self.kvs.append(mb.kv(f"{self.arch}.{key}", mb.UINT32, v))

    def f32(self, key: str, v: float) -> None:
        self.kvs.append(mb.kv(f"{self.arch}.{key}", mb.FLOAT32, v))

    def tensor(self, name: str, shape: list[int], ttype: int = F32) -> None:
        """shape in GGML order: [ne0 (row length), ne1 (rows)]."""
        if name.endswith("norm.weight"):
            a = 1.0 + 0.1 * self.rng.standard_normal(shape[::-1])
        else:
            a = self.rng.standard_normal(shape[::-1]) * 0.5
        ttype = F32 if len(shape) == 1 else ttype
        self.tensors.append((name, shape, ttype, _ENCODE[ttype](a)))

    def override(self, kvs: dict[str, bytes]) -> None:
        """Replaces (or adds) metadata pairs: key -> a whole pair from make_bad_gguf.kv()."""
        for key, pair in kvs.items():
            prefix = mb.gstr(key)
            hits = [i for i, b in enumerate(self.kvs) if b.startswith(prefix)]
            if hits:
                self.kvs[hits[0]] = pair
            else:
                self.kvs.append(pair)

    def build(self) -> bytes:
        infos, data = [], bytearray()
        for name, shape, ttype, raw in self.tensors:
            infos.append(mb.tinfo(name, shape, ttype, len(data)))
            data += raw + bytes(-len(raw) % 32)
        return mb.build(self.kvs, infos, bytes(data))


# -- vocabularies --------------------------------------------------------------------------

_SPM_PIECES = ["<unk>", "<s>", "</s>", "\u2581", "\u2581the", "\u2581a", "\u2581cat", "\u2581is"]
_SPM_PIECES += list("abcdefghijklmnopqrstuvwxyz.,")


CHAT_TEMPLATE = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"


def spm_vocab(m: Model, chat_template: str = CHAT_TEMPLATE) -> int:
    n = len(_SPM_PIECES)
    m.kvs += [
        mb.kv("tokenizer.ggml.model", mb.STRING, "llama"),
        mb.kv_array("tokenizer.ggml.tokens", mb.STRING, _SPM_PIECES),
        mb.kv_array("tokenizer.ggml.scores", mb.FLOAT32, [float(-i) for i in range(n)]),
        mb.kv_array("tokenizer.ggml.token_type", mb.INT32, [2, 3, 3] + [1] * (n - 3)),
        mb.kv("tokenizer.ggml.bos_token_id", mb.UINT32, 1),
        mb.kv("tokenizer.ggml.eos_token_id", mb.UINT32, 2),
        mb.kv("tokenizer.chat_template", mb.STRING, chat_template),
    ]
    return n


def bpe_vocab(m: Model) -> int:
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["\u0120", "\u010a", ".", "!"]
    merges = ["\u0120 t", "h e", "\u0120t he", "a t", "\u0120 c", "\u0120c at"]
    tokens = ["<|endoftext|>", *chars, "\u0120t", "he", "\u0120the", "at", "\u0120c", "\u0120cat"]
    m.kvs += [
        mb.kv("tokenizer.ggml.model", mb.STRING, "gpt2"),
        mb.kv("tokenizer.ggml.pre", mb.STRING, "gpt-2"),
        mb.kv_array("tokenizer.ggml.tokens", mb.STRING, tokens),
        mb.kv_array("tokenizer.ggml.token_type", mb.INT32, [3] + [1] * (len(tokens) - 1)),
        mb.kv_array("tokenizer.ggml.merges", mb.STRING, merges),
        mb.kv("tokenizer.ggml.bos_token_id", mb.UINT32, 0),
        mb.kv("tokenizer.ggml.eos_token_id", mb.UINT32, 0),
    ]
    return len(tokens)


# -- tiny models ---------------------------------------------------------------------------


def llama(
    ttype: int,
    vocab: str = "spm",
    e: int = 8,
    seed: int = 1,
    chat_template: str = CHAT_TEMPLATE,
    overrides: dict[str, bytes] | None = None,
) -> bytes:
    m = Model("llama", seed)
    hd, n_head, n_kv, ff = e // 2, 2, 1, e
    for k, v in (
        ("context_length", 64),
        ("embedding_length", e),
        ("block_count", 1),
        ("feed_forward_length", ff),
        ("attention.head_count", n_head),
        ("attention.head_count_kv", n_kv),
        ("rope.dimension_count", hd),
    ):
        m.u32(k, v)  # fmt: skip
    m.f32("attention.layer_norm_rms_epsilon", 1e-5)
    m.f32("rope.freq_base", 10000.0)
    n_vocab = spm_vocab(m, chat_template) if vocab == "spm" else bpe_vocab(m)
    m.tensor("token_embd.weight", [e, n_vocab], ttype)
    m.tensor("blk.0.attn_norm.weight", [e])
    m.tensor("blk.0.attn_q.weight", [e, n_head * hd], ttype)
    m.tensor("blk.0.attn_k.weight", [e, n_kv * hd], ttype)
    m.tensor("blk.0.attn_v.weight", [e, n_kv * hd], ttype)
    m.tensor("blk.0.attn_output.weight", [n_head * hd, e], ttype)
    m.tensor("blk.0.ffn_norm.weight", [e])
    m.tensor("blk.0.ffn_gate.weight", [e, ff], ttype)
    m.tensor("blk.0.ffn_up.weight", [e, ff], ttype)
    m.tensor("blk.0.ffn_down.weight", [ff, e], ttype)
    m.tensor("output_norm.weight", [e])
    m.tensor("output.weight", [e, n_vocab], ttype)
    m.override(overrides or {})
    return m.build()


def gemma3(seed: int = 4) -> bytes:
    m = Model("gemma3", seed)
    e, hd, n_head, n_kv, ff = 8, 4, 2, 1, 16
    for k, v in (
        ("context_length", 64),
        ("embedding_length", e),
        ("block_count", 2),
        ("feed_forward_length", ff),
        ("attention.head_count", n_head),
        ("attention.head_count_kv", n_kv),
        ("attention.key_length", hd),
        ("attention.value_length", hd),
        ("attention.sliding_window", 4),
    ):
        m.u32(k, v)  # fmt: skip
    m.f32("attention.layer_norm_rms_epsilon", 1e-6)
    m.f32("rope.freq_base", 1e6)
    n_vocab = spm_vocab(m)
    m.kvs.append(mb.kv("tokenizer.ggml.add_space_prefix", mb.BOOL, 0))
    m.tensor("token_embd.weight", [e, n_vocab], F16)
    for i in range(2):
        p = f"blk.{i}"
        m.tensor(f"{p}.attn_norm.weight", [e])
        m.tensor(f"{p}.attn_q.weight", [e, n_head * hd], F16)
        m.tensor(f"{p}.attn_k.weight", [e, n_kv * hd], F16)
        m.tensor(f"{p}.attn_v.weight", [e, n_kv * hd], F16)
        m.tensor(f"{p}.attn_q_norm.weight", [hd])
        m.tensor(f"{p}.attn_k_norm.weight", [hd])
        m.tensor(f"{p}.attn_output.weight", [n_head * hd, e], F16)
        m.tensor(f"{p}.post_attention_norm.weight", [e])
        m.tensor(f"{p}.ffn_norm.weight", [e])
        m.tensor(f"{p}.ffn_gate.weight", [e, ff], F16)
        m.tensor(f"{p}.ffn_up.weight", [e, ff], F16)
        m.tensor(f"{p}.ffn_down.weight", [ff, e], F16)
        m.tensor(f"{p}.post_ffw_norm.weight", [e])
    m.tensor("output_norm.weight", [e])  # tied output: token_embd
    return m.build()


def gpt2(seed: int = 5) -> bytes:
    m = Model("gpt2", seed)
    e, n_head, ff, n_pos = 8, 2, 16, 32
    for k, v in (
        ("context_length", n_pos),
        ("embedding_length", e),
        ("block_count", 1),
        ("feed_forward_length", ff),
        ("attention.head_count", n_head),
    ):
        m.u32(k, v)  # fmt: skip
    m.f32("attention.layer_norm_epsilon", 1e-5)
    n_vocab = bpe_vocab(m)
    m.tensor("token_embd.weight", [e, n_vocab], F16)
    m.tensor("position_embd.weight", [e, n_pos], F16)
    for name, shape in (
        ("attn_norm.weight", [e]),
        ("attn_norm.bias", [e]),
        ("attn_qkv.weight", [e, 3 * e]),
        ("attn_qkv.bias", [3 * e]),
        ("attn_output.weight", [e, e]),
        ("attn_output.bias", [e]),
        ("ffn_norm.weight", [e]),
        ("ffn_norm.bias", [e]),
        ("ffn_up.weight", [e, ff]),
        ("ffn_up.bias", [ff]),
        ("ffn_down.weight", [ff, e]),
        ("ffn_down.bias", [e]),
    ):
        m.tensor(f"blk.0.{name}", shape, F16)  # fmt: skip
    m.tensor("output_norm.weight", [e])
    m.tensor("output_norm.bias", [e])
    return m.build()


# -- header-level seeds --------------------------------------------------------------------


def every_value_type() -> bytes:
    kvs = [
        mb.kv("general.architecture", mb.STRING, "llama"),
        *(mb.kv(f"t.{t}", t, 1) for t in (mb.UINT8, mb.INT8, mb.UINT16, mb.INT16, mb.UINT32,
                                            mb.INT32, mb.UINT64, mb.INT64)),
        mb.kv("t.f32", mb.FLOAT32, 1.5),
        mb.kv("t.f64", mb.FLOAT64, -2.5),
        mb.kv("t.bool", mb.BOOL, 1),
        mb.kv_array("t.arr_i16", mb.INT16, [1, -2, 3]),
        mb.kv_array("t.arr_bool", mb.BOOL, [0, 1]),
        mb.kv_array("t.arr_f64", mb.FLOAT64, [0.5]),
        mb.kv_array("t.arr_str", mb.STRING, ["", "x", "\u00e9"]),
    ]  # fmt: skip
    return mb.build(kvs, mb.base_infos(), mb.DATA)


SEEDS = {
    "base.gguf": mb.valid,
    "version2.gguf": lambda: mb.build(mb.base_kvs(), mb.base_infos(), mb.DATA, version=2),
    "alignment64.gguf": lambda: mb.build(
        [*mb.base_kvs(), mb.kv("general.alignment", mb.UINT32, 64)],
        [mb.tinfo("a", [4, 2], F32, 0), mb.tinfo("b", [32, 2], Q4_0, 64)],
        mb.DATA[:32] + bytes(32) + mb.DATA[32:],
        alignment=64,
    ),
    "no_tensors.gguf": lambda: mb.build(mb.base_kvs(), [], b""),
    "every_value_type.gguf": every_value_type,
    "llama_spm_f32.gguf": lambda: llama(F32),
    "llama_spm_f16.gguf": lambda: llama(F16, seed=2),
    "llama_spm_q4_0.gguf": lambda: llama(Q4_0, e=32, seed=3),
    "llama_bpe_f16.gguf": lambda: llama(F16, vocab="bpe", seed=6),
    "gemma3_f16.gguf": gemma3,
    "gpt2_f16.gguf": gpt2,
}


def main(argv: list[str]) -> int:
    CORPUS.mkdir(exist_ok=True)
    for name, make in SEEDS.items():
        data = make()
        (CORPUS / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

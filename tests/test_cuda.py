"""The CUDA backend, on a machine with a CUDA device (skipped elsewhere, with the reason).

- every op through a small graph against the CPU backend (the reference implementation),
  in prefill steps and in decode steps (which replay a captured CUDA graph);
- every weight type's matmul (decode matvec: int8 dp4a or f32; prefill: f16 tensor cores
  or f32 FMA) against float64 products of gguf's dequantized weights, within bounds derived
  from each path's rounding; embedding of every type against gguf's dequantization;
- a small random Llama-like model: CUDA vs CPU, prefill vs decode, graphs vs no graphs;
- SmolLM2 Q4_1 against the committed llama.cpp fixtures and the CPU backend;
- errors: out-of-memory at load names the bytes needed and free; unsupported shapes.

docs/cuda.md says how this runs on the lent GPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import strata
from conftest import check_smollm2_greedy
from gguf import GGMLQuantizationType
from gguf import quants as gguf_quants
from gguf.constants import GGML_QUANT_SIZES
from ops.harness import OpHarness
from reference.numpy_ops import log_softmax
from strata import _core
from strata.sampling import SamplingSettings
from strata.selftest import random_input

pytestmark = pytest.mark.skipif(
    not _core.cuda_available(),
    reason="no CUDA device: strata._core.cuda_available() is false (no GPU or driver here, "
    "or this build has no CUDA backend; see docs/cuda.md)",
)

# Every test starts from the defaults (cuBLAS prefill where it loads, programmatic dependent
# launch, greedy argmax and top-k candidates on the device, prefill attention on tensor cores,
# q4_0 / q8_0 in split rows), whatever the shell running the tests has set; the tests that
# compare a default with its plain twin set the switch themselves.
DEFAULT_SWITCHES = ("STRATA_CUDA_GEMM", "STRATA_CUDA_PDL", "STRATA_CUDA_DEVICE_ARGMAX", "STRATA_CUDA_DEVICE_TOPK",
                    "STRATA_CUDA_ATTN", "STRATA_CUDA_REPACK", "STRATA_CUDA_PREFETCH", "STRATA_CUDA_SPREAD")


@pytest.fixture(autouse=True)
def _default_paths(monkeypatch):
    for k in DEFAULT_SWITCHES:
        monkeypatch.delenv(k, raising=False)


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]
FLOAT_TYPES = {"F32", "F16", "BF16"}
FP16_FIELDS = {  # byte offsets of the fp16 scales in a block (ggml-common.h)
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "IQ4_NL": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
    "IQ4_XS": (0,),
}
# Paths switched by environment variables the backend reads when it is made.
TILES = {"STRATA_CUDA_GEMM": "mma"}  # prefill GEMM on gemm_f16.cu's own mma.sync tiles
CUBLAS = {"STRATA_CUDA_GEMM": "cublas"}  # prefill GEMM on cuBLAS where it loads (the default)
EXACT = {"STRATA_CUDA_MMA": "0", "STRATA_CUDA_MATVEC": "f32", "STRATA_CUDA_ATTN": "f32"}  # f32 arithmetic throughout
GGUF_ROWS = {"STRATA_CUDA_REPACK": "0"}  # q4_0 / q8_0 weights as the file has them, not in split rows


def qtype(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name]


def random_weights(name: str, rows: int, width: int, rng: np.random.Generator,
                   scale: float | None = None) -> np.ndarray:
    """Raw bytes of a rows x width weight: random quants and sub-block scales under fp16
    scales in +-[1e-3, 1e-1] (as tests/test_quants.py; +-[0.5, 1.5] * scale if given), or
    normal values for float types."""
    block, size = GGML_QUANT_SIZES[qtype(name)]
    if name == "F32":
        return rng.standard_normal(rows * width).astype(np.float32).view(np.uint8)
    if name == "F16":
        return rng.standard_normal(rows * width).astype(np.float16).view(np.uint8)
    if name == "BF16":
        f = rng.standard_normal(rows * width).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    n_blocks = rows * width // block
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in FP16_FIELDS[name]:
        lo, hi = (1e-3, 1e-1) if scale is None else (0.5 * scale, 1.5 * scale)
        d = rng.uniform(lo, hi, n_blocks) * rng.choice([-1.0, 1.0], n_blocks)
        raw[:, off : off + 2] = d.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return raw.ravel()


def dequantized(name: str, raw: np.ndarray, rows: int, width: int) -> np.ndarray:
    return np.asarray(gguf_quants.dequantize(raw, qtype(name)), np.float64).reshape(rows, width)


def run_graph(h: OpHarness, out: int, n: int, backend: str, monkeypatch=None, env=None, **kw):
    if monkeypatch is not None:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
    try:
        return h.run(out, n, backend=backend, **kw)
    finally:
        if monkeypatch is not None:
            for k in env or {}:
                monkeypatch.delenv(k, raising=False)


def both(h: OpHarness, out: int, n: int, **kw) -> tuple[np.ndarray, np.ndarray]:
    """(cpu, cuda) outputs of the same graph."""
    return h.run(out, n, backend="cpu", **kw), h.run(out, n, backend="cuda", **kw)


def test_cuda_is_listed_first_and_picked_by_auto():
    assert strata.available_backends()[0] == "cuda"
    assert "cpu" in strata.available_backends()


def describe(env: dict, monkeypatch) -> str:
    h = OpHarness()
    x = np.zeros((2, 64), np.float32)
    out = h.op(_core.Op.matmul, [h.rows(x), h.weight("w", np.zeros((4, 64), np.float32).tobytes(),
                                                    int(qtype("F32")), 64, 4)])
    h.graph.set_output(out)
    mapping = np.frombuffer(bytes(h._buf) + b"\0" * 64, dtype=np.uint8)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return _core.Engine(h.graph, mapping, n_ctx=16, n_batch=8, backend="cuda").description


def test_prefill_gemm_names_cublas_or_why_not(monkeypatch):
    """The description says which GEMM prefill runs on: by default cuBLAS where a libcublas
    loads (STRATA_CUBLAS, set by the package from NVIDIA's wheels, or the system's), else
    strata's tiles and what was tried; with STRATA_CUDA_GEMM=mma strata's tiles."""
    d = describe({}, monkeypatch)
    assert "prefill f16 cuBLAS" in d or ("prefill f16 mma.sync" in d and "cuBLAS not found (tried" in d), d
    print("cublas:", d, "STRATA_CUBLAS =", os.environ.get("STRATA_CUBLAS"))
    tiles = describe(TILES, monkeypatch)
    assert "prefill f16 mma.sync" in tiles and "cuBLAS" not in tiles, tiles


# ---- embedding: every type, exactly as gguf dequantizes ---------------------------------
@pytest.mark.parametrize("name", TYPES)
def test_embedding_every_type(name):
    rng = np.random.default_rng(TYPES.index(name))
    rows, width = 7, 512 if name not in FLOAT_TYPES else 300
    raw = random_weights(name, rows, width, rng)
    want = dequantized(name, raw, rows, width).astype(np.float32)
    h = OpHarness()
    h._tokens = h.graph.tokens()
    table = h.weight("table", raw.tobytes(), int(qtype(name)), width, rows)
    out = h.op(_core.Op.embedding, [table, h._tokens])
    got = h.run(out, rows, backend="cuda")
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


# ---- matmul: every type, both paths, against float64 ------------------------------------
def fp32_bound(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Rounding of fp32 sums (as tests/test_quants.py): rows of w against one x."""
    ax, aw = np.abs(x.astype(np.float64)), np.abs(w)
    return (x.size // 32 + 64) * 2.0**-22 * (aw @ ax + aw.max(axis=1) * ax.sum())


def q8_bound(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Decode matvec of quantized weights: x rounded to 8 bits per 32 (|error| <= d / 2)."""
    ax = np.abs(x.astype(np.float64))
    d = ax.reshape(-1, 32).max(axis=1) / 127.0
    return fp32_bound(w, x) + 1.001 * (np.abs(w) @ np.repeat(d / 2, 32))


def f16_bound(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Prefill on tensor cores: both operands rounded to f16 (relative 2^-11 each, absolute
    2^-25 in the subnormal range), products summed in fp32."""
    ax, aw = np.abs(x.astype(np.float64)), np.abs(w)
    return (fp32_bound(w, x) + 2.0**-10 * (aw @ ax)
            + 2.0**-24 * (aw.max(axis=1) * ax.sum() + aw.sum(axis=1) * ax.max()))


def matmul_bound(name: str, rows: int, mode: dict, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    if mode is EXACT or name in ("F32", "BF16") or (rows == 1 and name in FLOAT_TYPES):
        return fp32_bound(w, x)
    if rows == 1:
        return q8_bound(w, x)
    return f16_bound(w, x)


@pytest.mark.parametrize("mode", [TILES, CUBLAS, EXACT, GGUF_ROWS, {**GGUF_ROWS, **TILES}],
                         ids=["tiles", "cublas", "exact", "gguf-rows", "gguf-rows-tiles"])
@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("T", [1, 3, 64])
def test_matmul_every_type(monkeypatch, mode, name, T):
    rng = np.random.default_rng(1000 * TYPES.index(name) + T)
    R = 300  # several 128-row tiles and a partial one
    K = 512 if name not in FLOAT_TYPES else 300  # float types: a width that is no multiple of 8
    raw = random_weights(name, R, K, rng)
    w = dequantized(name, raw, R, K)
    x = random_input(T, K, rng)
    h = OpHarness()
    out = h.op(_core.Op.matmul, [h.rows(x), h.weight("w", raw.tobytes(), int(qtype(name)), K, R)])
    # chunks of T rows: one step, or T single-row decode steps for T = 1
    got = run_graph(h, out, T, "cuda", monkeypatch, mode, n_batch=64)
    for t in range(T):
        want = w @ x[t].astype(np.float64)
        bound = matmul_bound(name, T, mode, w, x[t])
        err = np.abs(got[t].astype(np.float64) - want)
        assert np.isfinite(got[t]).all()
        assert (err <= bound).all(), (
            f"{name} T={T} row {t}: error {err.max():.3g} > bound {bound[err.argmax()]:.3g} "
            f"at weight row {err.argmax()}"
        )


@pytest.mark.parametrize("tile", [None, "4,4,2", "v1"])
@pytest.mark.parametrize("name", [t for t in TYPES if t not in FLOAT_TYPES])
def test_decode_matvec_is_exact_for_exactly_quantizable_input(monkeypatch, name, tile):
    """Integers in [-127, 127] with a 127 in every 32 quantize with scale 1 and no rounding:
    only fp32 rounding remains, so a slip in any nibble, bit or scale of the int8 path shows."""
    for k, v in tile_env(tile).items():
        monkeypatch.setenv(k, v)
    rng = np.random.default_rng(7)
    R, K = 33, 1024
    raw = random_weights(name, R, K, rng)
    w = dequantized(name, raw, R, K)
    x = rng.integers(-127, 128, K).astype(np.float32)
    x[::32] = 127.0
    h = OpHarness()
    wv = h.weight("w", raw.tobytes(), int(qtype(name)), K, R)
    out = h.op(_core.Op.matmul, [h.rows(x[None, :]), wv])
    got = h.run(out, 1, backend="cuda")[0]
    err = np.abs(got - w @ x.astype(np.float64))
    bound = fp32_bound(w, x)
    assert (err <= bound).all(), f"{err.max():.3g} > {bound[err.argmax()]:.3g}"


# The wide decode matvec (matvec_wide.cu) at every kind of tile: rows per warp (1, 2, 4: 37
# rows leave a partial group), K split over 1, 2 or 4 warps (2304 = 9 steps of 256 f16
# elements or 2.25 steps of 32 quantized blocks: partial last steps and, for S = 4, a warp
# with no step at all), 1 to 4 steps of loads in flight; "v1": the one-warp-per-row kernels;
# "default": what a plain decode step takes for the type.
WIDE_TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL", "Q4_K", "Q6_K"]
MATVEC_TILES = ["default", "1,1,1", "2,2,2", "4,4,4", "4,1,2", "1,4,4", "2,4,1", "v1"]


def tile_env(tile: str | None) -> dict:
    if tile is None or tile == "default":
        return {}
    if tile == "v1":
        return {"STRATA_CUDA_MATVEC": "v1"}
    return {"STRATA_CUDA_MATVEC": "wide", "STRATA_CUDA_MATVEC_TILE": tile}


@pytest.mark.parametrize("tile", MATVEC_TILES)
@pytest.mark.parametrize("name", WIDE_TYPES)
def test_decode_matvec_every_tile(monkeypatch, name, tile):
    rng = np.random.default_rng(500 + WIDE_TYPES.index(name))
    R, K = 37, 2304
    raw = random_weights(name, R, K, rng)
    w = dequantized(name, raw, R, K)
    x = random_input(1, K, rng)
    h = OpHarness()
    out = h.op(_core.Op.matmul, [h.rows(x), h.weight("w", raw.tobytes(), int(qtype(name)), K, R)])
    got = run_graph(h, out, 1, "cuda", monkeypatch, tile_env(tile))[0]
    want = w @ x[0].astype(np.float64)
    bound = fp32_bound(w, x[0]) if name in FLOAT_TYPES else q8_bound(w, x[0])
    err = np.abs(got.astype(np.float64) - want)
    assert np.isfinite(got).all()
    worst = err.argmax()
    assert (err <= bound).all(), (
        f"{name} tile {tile}: error {err[worst]:.3g} > {bound[worst]:.3g} at row {worst}"
    )


# ---- q4_0 / q8_0 in split rows (the default): the numbers of the GGUF rows -------------------
def split_pair(monkeypatch, h: OpHarness, out: int, n: int, env: dict | None = None, **kw):
    """(outputs with split rows, outputs with GGUF rows, the split engine's description)."""
    env = env or {}
    plain = run_graph(h, out, n, "cuda", monkeypatch, {**env, **GGUF_ROWS}, **kw)
    split = run_graph(h, out, n, "cuda", monkeypatch, env, **kw)
    eng = cuda_engine(h, out, monkeypatch, env)
    return split, plain, eng.description


@pytest.mark.parametrize("tile", MATVEC_TILES)
@pytest.mark.parametrize("name", ["Q4_0", "Q8_0"])
def test_split_rows_decode_matvec_gives_the_gguf_rows_bytes(monkeypatch, name, tile):
    """The wide matvec over split rows adds the same block values in the same order as over
    the GGUF rows, at every tile; v1 (no wide kernel) leaves the weight as it is."""
    rng = np.random.default_rng(900 + len(tile))
    R, K = 37, 2304
    raw = random_weights(name, R, K, rng)
    h = OpHarness()
    out = h.op(_core.Op.matmul, [h.rows(random_input(1, K, rng)),
                                 h.weight("w", raw.tobytes(), int(qtype(name)), K, R)])
    split, plain, desc = split_pair(monkeypatch, h, out, 1, tile_env(tile))
    assert ("split rows" in desc) == (tile != "v1"), desc
    np.testing.assert_array_equal(split, plain)


@pytest.mark.parametrize("types", ["q4_0", "q8_0", "mixed"])
def test_split_rows_mini_llama_gives_the_bytes_of_gguf_rows(monkeypatch, types):
    """A model with its q4_0 / q8_0 matmul weights in split rows computes the same logits, bit
    for bit, in a prefill step (dequantized to f16 for the GEMM) and in decode steps (fused
    q/k/v and gate/up launches included)."""
    h, out, _ = mini_llama(6, FUSE_TYPES[types])
    for chunks in ([N_MINI], DECODE):
        split, plain, desc = split_pair(monkeypatch, h, out, N_MINI, n_ctx=2048, chunks=chunks)
        assert "split rows" in desc, desc
        np.testing.assert_array_equal(split, plain)


def test_split_rows_leave_a_weight_the_embedding_also_reads(monkeypatch):
    """A tied embedding (one q8_0 tensor read by the embedding and the output matmul) stays in
    GGUF rows: the embedding kernel does not know split rows."""
    rng = np.random.default_rng(11)
    V, K = 64, 256
    raw = random_weights("Q8_0", V, K, rng)
    h = OpHarness()
    h._tokens = h.graph.tokens()
    tied = h.weight("tied", raw.tobytes(), int(qtype("Q8_0")), K, V)
    x = h.op(_core.Op.embedding, [tied, h._tokens])
    out = h.op(_core.Op.matmul, [h.op(_core.Op.last_row, [x]), tied])
    split, plain, desc = split_pair(monkeypatch, h, out, 5, chunks=[3, 1, 1])
    assert "split rows" not in desc, desc
    np.testing.assert_array_equal(split, plain)
    w = dequantized("Q8_0", raw, V, K)
    want = w @ w[4]
    assert np.abs(split[-1] - want).max() <= 1e-2 * np.abs(want).max()


def test_bad_matvec_tile_is_named(monkeypatch):
    rng = np.random.default_rng(3)
    raw = random_weights("Q4_0", 4, 256, rng)
    h = OpHarness()
    wv = h.weight("w", raw.tobytes(), int(qtype("Q4_0")), 256, 4)
    out = h.op(_core.Op.matmul, [h.rows(random_input(1, 256, rng)), wv])
    monkeypatch.setenv("STRATA_CUDA_MATVEC_TILE", "3,1")
    with pytest.raises(strata.StrataError, match="STRATA_CUDA_MATVEC_TILE"):
        h.run(out, 1, backend="cuda")


def test_prefill_step_of_200_rows_spans_two_row_tiles():
    rng = np.random.default_rng(3)
    R, K, T = 150, 256, 200
    raw = random_weights("Q4_K", R, K, rng)
    w = dequantized("Q4_K", raw, R, K)
    x = random_input(T, K, rng)
    h = OpHarness()
    y = h.op(_core.Op.matmul, [h.rows(x), h.weight("w", raw.tobytes(), int(qtype("Q4_K")), K, R)])
    out = h.op(_core.Op.last_row, [y])
    h.graph.set_output(out)
    mapping = np.frombuffer(bytes(h._buf) + b"\0" * 64, dtype=np.uint8)
    eng = _core.Engine(h.graph, mapping, n_ctx=256, n_batch=256, backend="cuda")
    eng.eval(np.arange(T, dtype=np.int32))  # one step of 200 rows: the last row is in tile 2
    err = np.abs(eng.last_logits() - w @ x[-1].astype(np.float64))
    assert (err <= f16_bound(w, x[-1])).all(), err.max()


# ---- row-wise ops against the CPU backend ---------------------------------------------------
@pytest.mark.parametrize("chunks", [[9], [1] * 9, [4, 1, 4]])
def test_norms_and_elementwise_against_cpu(chunks):
    rng = np.random.default_rng(11)
    T, W = 9, 96
    a = (rng.standard_normal((T, W)) * 3).astype(np.float32)
    b = rng.standard_normal((T, W)).astype(np.float32)
    v = rng.standard_normal(W).astype(np.float32)
    cases = []
    for op in ("rms_norm", "rms_norm_heads", "layer_norm", "add", "mul", "add_bc", "mul_bc",
               "scale", "silu", "gelu", "gelu_tanh", "glu_silu", "glu_gelu", "glu_gelu_tanh",
               "slice", "last_row"):
        h = OpHarness()
        xa = h.rows(a)
        if op == "rms_norm":
            out = h.op(_core.Op.rms_norm, [xa, h.weight("w", v)], eps=1e-5)
        elif op == "rms_norm_heads":
            out = h.op(_core.Op.rms_norm, [xa, h.weight("w", v[:16])], eps=1e-6, head_dim=16)
        elif op == "layer_norm":
            out = h.op(_core.Op.layer_norm, [xa, h.weight("w", v), h.weight("b", v[::-1].copy())],
                       eps=1e-5)
        elif op in ("add", "mul"):
            out = h.op(getattr(_core.Op, op), [xa, h.rows(b)])
        elif op in ("add_bc", "mul_bc"):
            out = h.op(getattr(_core.Op, op[:3]), [xa, h.weight("v", v)])
        elif op == "scale":
            out = h.op(_core.Op.scale, [xa], scale=0.37)
        elif op.startswith("glu_"):
            out = h.op(_core.Op.glu, [xa, h.rows(b)], act=getattr(_core.Activation, op[4:]))
        elif op == "slice":
            out = h.op(_core.Op.slice, [xa], offset=17, width=40)
        elif op == "last_row":
            out = h.op(_core.Op.last_row, [xa])
        else:
            out = h.op(_core.Op.activation, [xa], act=getattr(_core.Activation, op))
        cpu, gpu = both(h, out, T, chunks=chunks)
        cases.append(op)
        np.testing.assert_allclose(gpu, cpu, rtol=2e-6, atol=1e-6, err_msg=op)
    assert len(cases) == 16


@pytest.mark.parametrize(
    "neox,n_rot,factors",
    [(False, 16, False), (True, 16, False), (True, 8, False), (False, 16, True)],
)
@pytest.mark.parametrize("chunks", [[3, 4], [1] * 7])
def test_rope_against_cpu(neox, n_rot, factors, chunks):
    rng = np.random.default_rng(4)
    T, n_head, hd = 7, 3, 16
    x = rng.standard_normal((T, n_head * hd)).astype(np.float32)
    ff = rng.uniform(1, 8, size=n_rot // 2).astype(np.float32) if factors else None
    h = OpHarness()
    inputs = [h.rows(x)] + ([h.weight("ff", ff)] if factors else [])
    out = h.op(_core.Op.rope, inputs, n_head=n_head, head_dim=hd, n_rot=n_rot, rope_base=10000.0,
               rope_mode=_core.RopeMode.neox if neox else _core.RopeMode.normal,
               rope_freq_scale=0.5, rope_attn_factor=1.25)
    cpu, gpu = both(h, out, T, chunks=chunks)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-5)


ATTN_CASES = [  # n_head, n_kv, head_dim, window, softcap
    (4, 4, 16, 0, 0.0), (6, 2, 16, 0, 0.0), (4, 2, 16, 5, 0.0), (2, 1, 16, 0, 3.0),
    (8, 2, 64, 0, 0.0), (4, 1, 128, 7, 0.0), (3, 1, 80, 0, 0.0), (4, 1, 256, 0, 50.0),
]


# Prefill attention on tensor cores (the default; head_dim 64 / 128, no soft-cap): Q and the
# probabilities rounded to f16 move outputs of magnitude ~1-3 by up to ~5e-4 here (float64
# simulation of this rounding); a mask one key off moves them by 0.2 or more. The f32 tiles
# (STRATA_CUDA_ATTN=f32, and every head the tensor cores do not take) agree with the CPU to
# float rounding.
ATTN_KERNELS = ["default", "f32"]


def attention_both(seed, T, n_head, n_kv, hd, window, softcap, chunks, n_ctx, monkeypatch=None, kernel="default",
                   n_batch=64):
    if kernel == "f32":
        monkeypatch.setenv("STRATA_CUDA_ATTN", "f32")
    on_mma = kernel != "f32" and hd in (64, 128) and softcap == 0 and max(chunks) > 1
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((T, n_head * hd)).astype(np.float32)
    k = rng.standard_normal((T, n_kv * hd)).astype(np.float32)
    v = rng.standard_normal((T, n_kv * hd)).astype(np.float32)
    h = OpHarness()
    out = h.op(_core.Op.attention, [h.rows(q), h.rows(k), h.rows(v)], n_head=n_head,
               n_head_kv=n_kv, head_dim=hd, window=window, softcap=softcap)
    cpu, gpu = both(h, out, T, chunks=chunks, n_ctx=n_ctx, n_batch=n_batch)
    if on_mma:
        np.testing.assert_allclose(gpu, cpu, rtol=0, atol=2e-3)
    else:
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("n_head,n_kv,hd,window,softcap", ATTN_CASES)
@pytest.mark.parametrize("chunks", [[13], [1] * 13, [5, 1, 7]])
@pytest.mark.parametrize("n_ctx", [256, 4096])  # decode: 16 / 32 splits, one in use (<= 13 keys)
def test_attention_against_cpu(n_head, n_kv, hd, window, softcap, chunks, n_ctx):
    attention_both(5, 13, n_head, n_kv, hd, window, softcap, chunks, n_ctx)


DECODE_SPLITS = {  # how decode cuts a row's keys between warps (attention.cu, key_split)
    "by-position": {},  # ceil(keys / 16) of 64 splits: 3 at the first decode step, 7 at the last
    "few-keys": {"STRATA_CUDA_ATTN_SPLIT_KEYS": "3"},  # 14 to 37 splits of ~3 keys, some empty
    "fixed": {"STRATA_CUDA_ATTN_SPLIT_KEYS": "0", "STRATA_CUDA_ATTN_SPLITS": "7"},  # 7 at every step
    "one": {"STRATA_CUDA_ATTN_SPLITS": "1"},  # no merge: the output written directly
    "8-a-round": {"STRATA_CUDA_ATTN_ROUND": "8"},  # 8 keys a round, the last round masked
    "16-a-round": {"STRATA_CUDA_ATTN_ROUND": "16", "STRATA_CUDA_ATTN_SPLIT_KEYS": "5"},
    "no-prefetch": {"STRATA_CUDA_PREFETCH": "0"},  # no K / V rows asked of L2 before the wait
    # the most splits, one key each: 40 to 64 in use, both halves of the merge's warp 0 (two
    # splits a lane), counts below and at the 64 loads each output issues
    "64-splits": {"STRATA_CUDA_ATTN_SPLITS": "64", "STRATA_CUDA_ATTN_SPLIT_KEYS": "1"},
}


@pytest.mark.parametrize("split", list(DECODE_SPLITS))
@pytest.mark.parametrize("n_head,n_kv,hd,window,softcap", [(8, 2, 64, 0, 0.0), (4, 1, 128, 37, 0.0),
                                                           (4, 2, 16, 0, 3.0), (3, 1, 80, 0, 0.0)])
def test_decode_attention_splits_against_cpu(monkeypatch, split, n_head, n_kv, hd, window, softcap):
    """70 decode steps after a 40-row prefill: the splits in use change every 16 positions
    (and stop growing under a 37-key window), splits come out empty, the merge reads only the
    splits written; every way agrees with the CPU to float rounding."""
    for k, v in DECODE_SPLITS[split].items():
        monkeypatch.setenv(k, v)
    attention_both(9, 110, n_head, n_kv, hd, window, softcap, [40] + [1] * 70, 4096, monkeypatch, "f32",
                   n_batch=40)


@pytest.mark.parametrize("kernel", ATTN_KERNELS)
@pytest.mark.parametrize("hd,window,softcap", [(64, 0, 0.0), (64, 40, 0.0), (128, 0, 30.0), (128, 45, 0.0),
                                               (128, 0, 0.0), (64, 70, 0.0)])
@pytest.mark.parametrize("chunks", [[70], [33, 37], [3, 64, 3], [150], [1, 130, 19]])
def test_prefill_attention_over_several_query_and_key_tiles(monkeypatch, kernel, hd, window, softcap, chunks):
    """70 or 150 rows: several query tiles of either tiled kernel (32 or 64 rows) and key
    tiles (32 or 64 keys), windows that end inside a key tile, steps that start mid-tile,
    GQA (4 heads on 2 KV heads)."""
    attention_both(7, sum(chunks), 4, 2, hd, window, softcap, chunks, 256, monkeypatch, kernel, n_batch=160)


def test_prefill_attention_on_tensor_cores_sees_the_ring_buffer_wrap(monkeypatch):
    """A sliding-window layer's cache is a ring of window + n_batch - 1 rows: steps of 64
    after the first ones read keys that wrapped around it."""
    attention_both(8, 200, 4, 1, 128, 24, 0.0, [40, 64, 64, 32], 256, monkeypatch)


def test_sliding_window_ring_buffer_wraps_against_cpu():
    rng = np.random.default_rng(6)
    T, hd = 20, 16
    q, k, v = (rng.standard_normal((T, 2 * hd)).astype(np.float32) for _ in range(3))
    h = OpHarness()
    out = h.op(_core.Op.attention, [h.rows(q), h.rows(k), h.rows(v)], n_head=2, n_head_kv=2,
               head_dim=hd, window=4)
    cpu, gpu = both(h, out, T, chunks=[3, 1, 2, 3, 3, 3, 1, 1, 3], n_batch=3)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=2e-5)


def test_learned_positions_embedding():
    rng = np.random.default_rng(8)
    pos_table = rng.standard_normal((64, 32)).astype(np.float32)
    h = OpHarness()
    out = h.op(_core.Op.embedding, [h.weight("pos", pos_table), h.graph.positions()])
    cpu, gpu = both(h, out, 10, chunks=[4, 1, 5], n_ctx=64)
    np.testing.assert_array_equal(gpu, cpu)
    np.testing.assert_array_equal(gpu, pos_table[:10])


# ---- a small random Llama-like model ------------------------------------------------------
MINI = {"n_embd": 256, "n_head": 4, "n_kv": 2, "hd": 64, "ffn": 512, "vocab": 320,
        "windows": (0, 16)}


K_SCALE = {"Q4_K": 4e-5, "Q6_K": 1e-5}  # fp16 scales of random K-quant blocks in mini_llama
MINI_TYPES = {"tok": "Q8_0", "q": "Q4_0", "k": "Q5_0", "v": "Q8_0", "o": "Q4_1", "g": "Q5_1",
              "u": "F16", "d": "Q4_0", "out": "Q8_0"}


def mini_llama(seed: int = 0, types: dict | None = None) -> tuple[OpHarness, int, dict]:
    """2 layers (the second with a sliding window of 16), n_embd 256, 4 heads of 64 (2 KV
    heads), ffn 512, vocab 320; weights of several types (MINI_TYPES, or `types` over it)
    quantized with gguf from normal values / sqrt(width). Returns the harness, the logits
    value and the dequantized weights."""
    ty = {**MINI_TYPES, **(types or {})}
    rng = np.random.default_rng(seed)
    h = OpHarness()
    h._tokens = h.graph.tokens()
    n_embd, n_head, n_kv, hd = (MINI[k] for k in ("n_embd", "n_head", "n_kv", "hd"))
    ffn, vocab = MINI["ffn"], MINI["vocab"]
    params: dict[str, np.ndarray] = {}

    def mat(name, rows, width, t):
        w = (rng.standard_normal((rows, width)) / np.sqrt(width)).astype(np.float32)
        if t == "F16":
            raw = w.astype(np.float16)
            params[name] = raw.astype(np.float64)
        elif t in K_SCALE:  # gguf cannot quantize K-quants: random blocks, weights near +-0.05
            raw = random_weights(t, rows, width, rng, K_SCALE[t])
            params[name] = dequantized(t, raw, rows, width)
        else:
            raw = gguf_quants.quantize(w, qtype(t))
            params[name] = np.asarray(gguf_quants.dequantize(raw, qtype(t)), np.float64)
        return h.weight(name, raw.tobytes(), int(qtype(t)), width, rows)

    def vec(name, n):
        params[name] = (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)
        return h.weight(name, params[name])

    x = h.op(_core.Op.embedding, [mat("tok", vocab, n_embd, ty["tok"]), h._tokens])
    x = h.op(_core.Op.scale, [x], scale=float(np.sqrt(n_embd)))
    for i, window in enumerate(MINI["windows"]):
        hn = h.op(_core.Op.rms_norm, [x, vec(f"an{i}", n_embd)], eps=1e-5)
        q = h.op(_core.Op.matmul, [hn, mat(f"q{i}", n_head * hd, n_embd, ty["q"])])
        k = h.op(_core.Op.matmul, [hn, mat(f"k{i}", n_kv * hd, n_embd, ty["k"])])
        v = h.op(_core.Op.matmul, [hn, mat(f"v{i}", n_kv * hd, n_embd, ty["v"])])
        q = h.op(_core.Op.rope, [q], n_head=n_head, head_dim=hd, rope_base=10000.0)
        k = h.op(_core.Op.rope, [k], n_head=n_kv, head_dim=hd, rope_base=10000.0)
        a = h.op(_core.Op.attention, [q, k, v], n_head=n_head, n_head_kv=n_kv, head_dim=hd,
                 window=window)
        o = h.op(_core.Op.matmul, [a, mat(f"o{i}", n_embd, n_head * hd, ty["o"])])
        x = h.op(_core.Op.add, [x, o])
        hn = h.op(_core.Op.rms_norm, [x, vec(f"fn{i}", n_embd)], eps=1e-5)
        g = h.op(_core.Op.matmul, [hn, mat(f"g{i}", ffn, n_embd, ty["g"])])
        u = h.op(_core.Op.matmul, [hn, mat(f"u{i}", ffn, n_embd, ty["u"])])
        f = h.op(_core.Op.glu, [g, u], act=_core.Activation.silu)
        x = h.op(_core.Op.add, [x, h.op(_core.Op.matmul, [f, mat(f"d{i}", n_embd, ffn, ty["d"])])])
    x = h.op(_core.Op.last_row, [x])
    x = h.op(_core.Op.rms_norm, [x, vec("on", n_embd)], eps=1e-5)
    return h, h.op(_core.Op.matmul, [x, mat("out", vocab, n_embd, ty["out"])]), params


def mini_llama_f64(p: dict, n: int) -> np.ndarray:
    """The same model in float64 NumPy (K and V rounded to fp16, as every cache holds them)."""
    from ops.test_rope_attention import ref_attention, ref_rope

    n_embd, n_head, n_kv, hd = (MINI[k] for k in ("n_embd", "n_head", "n_kv", "hd"))

    def rms(x, w):
        return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + 1e-5) * w

    x = p["tok"][:n] * np.float32(np.sqrt(n_embd))
    for i, window in enumerate(MINI["windows"]):
        hn = rms(x, p[f"an{i}"])
        q = ref_rope(hn @ p[f"q{i}"].T, n_head, hd, 10000.0, False, hd)
        k = ref_rope(hn @ p[f"k{i}"].T, n_kv, hd, 10000.0, False, hd)
        a = ref_attention(q, k, hn @ p[f"v{i}"].T, n_head, n_kv, hd, window=window)
        x = x + a @ p[f"o{i}"].T
        hn = rms(x, p[f"fn{i}"])
        g, u = hn @ p[f"g{i}"].T, hn @ p[f"u{i}"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ p[f"d{i}"].T
    return rms(x, p["on"]) @ p["out"].T


def rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(((a - b) ** 2).mean() / (b**2).mean()))


N_MINI = 48
DECODE = [9] + [1] * (N_MINI - 9)


@pytest.mark.parametrize("mode", [TILES, CUBLAS, EXACT], ids=["tiles", "cublas", "exact"])
def test_mini_llama_against_float64_and_cpu(monkeypatch, mode):
    """Prefill and decode on CUDA are as close to float64 as the CPU backend (which rounds
    activations to 8 bits everywhere), and agree with it."""
    h, out, params = mini_llama()
    exact = mini_llama_f64(params, N_MINI)
    cpu = h.run(out, N_MINI, backend="cpu", n_ctx=2048)
    cpu_err = rel_rms(cpu, exact)
    for chunks in ([N_MINI], DECODE):
        gpu = run_graph(h, out, N_MINI, "cuda", monkeypatch, mode, n_ctx=2048, chunks=chunks)
        assert np.isfinite(gpu).all()
        err = rel_rms(gpu, exact)
        limit = 5e-4 if mode is EXACT else max(1.5 * cpu_err, 2e-3)
        assert err <= limit, (chunks[:2], err, cpu_err)
        assert rel_rms(gpu, cpu) <= 3 * cpu_err + 1e-4, (chunks[:2], rel_rms(gpu, cpu), cpu_err)


def test_mini_llama_graph_replay_equals_direct_launches(monkeypatch):
    """The captured decode graph (n_past read from device memory) computes exactly what the
    same kernels launched one by one compute, and so does the synchronising debug mode."""
    h, out, _ = mini_llama(1)
    graphs = h.run(out, N_MINI, backend="cuda", n_ctx=2048, chunks=DECODE)
    direct = run_graph(h, out, N_MINI, "cuda", monkeypatch, {"STRATA_CUDA_GRAPH": "0"},
                       n_ctx=2048, chunks=DECODE)
    synced = run_graph(h, out, N_MINI, "cuda", monkeypatch, {"STRATA_CUDA_SYNC": "1"},
                       n_ctx=2048, chunks=DECODE)
    np.testing.assert_array_equal(graphs, direct)
    np.testing.assert_array_equal(graphs, synced)


# ---- decode fusions (STRATA_CUDA_FUSE): the same bytes as the unfused launches -------------
def one_split_at_256(monkeypatch, n_ctx: int) -> None:
    """n_ctx 256 runs decode attention on one split (its output written without the merge
    kernel, the output quantized by its own launch); 2048 on the split-and-merge path."""
    if n_ctx == 256:
        monkeypatch.setenv("STRATA_CUDA_ATTN_SPLITS", "1")


# One type per role where the fused q/k/v and gate/up launches need it (the mixed MINI_TYPES
# fuse only the norms, glu, merge and rope): Q4_0 and Q8_0 on the wide kernel's default
# path, Q4_K with a Q6_K v and down (as Q4_K_M files have), F16 and BF16 on the f32 path
# (where the gate/up launch applies the glu).
FUSE_TYPES = {
    "mixed": {},
    "q4_0": {k: "Q4_0" for k in ("q", "k", "v", "o", "g", "u", "d")},
    "q8_0": {k: "Q8_0" for k in ("q", "k", "v", "o", "g", "u", "d")},
    "q4_k_m": {"q": "Q4_K", "k": "Q4_K", "v": "Q6_K", "o": "Q4_K", "g": "Q4_K", "u": "Q4_K",
               "d": "Q6_K"},
    "f16": {k: "F16" for k in ("q", "k", "v", "o", "g", "u", "d")},
    "bf16": {k: "BF16" for k in ("q", "k", "v", "o", "g", "u", "d")},
}


@pytest.mark.parametrize("n_ctx", [256, 2048])  # 256: one decode split; 2048: 32, 3 in use, merged
@pytest.mark.parametrize("types", list(FUSE_TYPES))
def test_decode_fusions_give_the_bytes_of_unfused_launches(monkeypatch, types, n_ctx):
    """Fused decode steps (norm + quantize, add + norm, glu / merge + quantize, rope + KV append,
    q/k/v and gate/up in one launch) compute every value as the unfused launches do: the logits of every decode step are equal
    bit for bit, and as close to float64 as the CPU's."""
    one_split_at_256(monkeypatch, n_ctx)
    h, out, params = mini_llama(2, FUSE_TYPES[types])
    fused = h.run(out, N_MINI, backend="cuda", n_ctx=n_ctx, chunks=DECODE)
    unfused = run_graph(h, out, N_MINI, "cuda", monkeypatch, {"STRATA_CUDA_FUSE": "0"},
                        n_ctx=n_ctx, chunks=DECODE)
    np.testing.assert_array_equal(fused, unfused)
    exact = mini_llama_f64(params, N_MINI)
    cpu_err = rel_rms(h.run(out, N_MINI, backend="cpu", n_ctx=n_ctx), exact)
    assert rel_rms(fused, exact) <= max(2 * cpu_err, 2e-3), (rel_rms(fused, exact), cpu_err)


@pytest.mark.parametrize("fuse", ["norm", "add", "glu,merge", "rope", "mv", "norm,mv"])
@pytest.mark.parametrize("tile", ["default", "4,4,2", "2,2,1", "v1"])
def test_each_decode_fusion_alone_and_at_other_tiles(monkeypatch, fuse, tile):
    """Each fusion on its own (the others off), and the fused q/k/v and gate/up launches at
    tiles with several rows per warp and split-K (v1: no multi-weight launch), against the
    unfused launches, bit for bit."""
    h, out, _ = mini_llama(3, FUSE_TYPES["q4_0"])
    env = tile_env(tile)
    base = run_graph(h, out, N_MINI, "cuda", monkeypatch, {**env, "STRATA_CUDA_FUSE": "0"},
                     n_ctx=2048, chunks=DECODE)
    got = run_graph(h, out, N_MINI, "cuda", monkeypatch, {**env, "STRATA_CUDA_FUSE": fuse},
                    n_ctx=2048, chunks=DECODE)
    np.testing.assert_array_equal(got, base)


@pytest.mark.parametrize("tile,fused,types", [
    ("default", True, "f16"), ("4,1,2", True, "f16"), ("2,1,1", True, "f16"),
    ("1,2,4", False, "f16"), ("v1", False, "f16"), ("default", True, "bf16"),
])
def test_f16_gate_up_launch_applies_the_glu(monkeypatch, tile, fused, types):
    """f16 / bf16 gate/up: the launch whose warps take gate and up rows of the same outputs
    writes act(gate) * up itself (STRATA_CUDA_FUSE mvglu), at 1, 4 and 2 rows a warp, bit for
    bit as the separate glu and the unfused launches; with split-K or the v1 kernel it is not
    used."""
    h, out, _ = mini_llama(4, FUSE_TYPES[types])
    env = tile_env(tile)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    d = h.engine(out, n_ctx=2048, backend="cuda").description
    assert ("glu in 2 gate/up launches" in d) == fused, d
    got = h.run(out, N_MINI, backend="cuda", n_ctx=2048, chunks=DECODE)
    apart = run_graph(h, out, N_MINI, "cuda", monkeypatch,
                      {"STRATA_CUDA_FUSE": "norm,add,glu,merge,rope,mv"}, n_ctx=2048, chunks=DECODE)
    unfused = run_graph(h, out, N_MINI, "cuda", monkeypatch, {"STRATA_CUDA_FUSE": "0"},
                        n_ctx=2048, chunks=DECODE)
    np.testing.assert_array_equal(got, apart)
    np.testing.assert_array_equal(got, unfused)


# (weight type, tile, neox, n_rot, rope factors, whether the q/k/v launch takes the rope)
MV_ROPE_CASES = [
    ("Q4_0", "default", False, 64, False, True),   # split rows, 2 rows a warp
    ("Q8_0", "default", True, 64, True, True),     # neox pairs span the head's halves
    ("Q4_K", "default", False, 32, False, True),   # dimensions past n_rot pass through
    ("F16", "default", True, 64, False, True),     # f32 activations
    ("BF16", "4,1,2", False, 64, True, True),
    ("Q4_0", "4,1,4", True, 64, False, True),      # 16 rows a block: 8 of each half
    ("Q8_0", "2,1,1", False, 48, False, True),
    ("Q4_0", "2,2,2", False, 64, False, False),    # split-K: the rope launch stays
    ("Q8_0", "default", True, 32, False, False),   # neox with dimensions passed through: likewise
    ("Q4_0", "v1", False, 64, False, False),       # no multi-weight launch
]


@pytest.mark.parametrize("wtype,tile,neox,n_rot,factors,fused", MV_ROPE_CASES)
def test_q_k_v_launch_applies_the_rope(monkeypatch, wtype, tile, neox, n_rot, factors, fused):
    """q/k/v in one decode launch that also rotates q and k and appends k' and v to the KV
    cache (STRATA_CUDA_FUSE mvrope for the int8 path, mvropef for f16 / bf16, both in `all`):
    the attention's output of every decode step equals that of the separate rope launch and
    of the unfused launches bit for bit, for both rope layouts, partial rotary, frequency
    factors and several tiles; where a block's rows cannot hold whole pairs (split-K, neox
    with dimensions passed through) or there is no q/k/v launch (v1), the rope keeps its own
    launch. The default takes mvrope, not mvropef (measured slower: cuda_notes.md round 16)."""
    rng = np.random.default_rng(21)
    T, n_embd, n_head, n_kv, hd = 24, 256, 4, 2, 64
    for name, value in tile_env(tile).items():
        monkeypatch.setenv(name, value)
    h = OpHarness()
    x = h.rows(rng.standard_normal((T, n_embd)).astype(np.float32))
    hn = h.op(_core.Op.rms_norm, [x, h.weight("nw", (1 + 0.1 * rng.standard_normal(n_embd)).astype(np.float32))],
              eps=1e-5)

    def proj(name, rows):
        raw = random_weights(wtype, rows, n_embd, rng, K_SCALE.get(wtype))
        return h.op(_core.Op.matmul, [hn, h.weight(name, raw.tobytes(), int(qtype(wtype)), n_embd, rows)])

    q, k, v = proj("wq", n_head * hd), proj("wk", n_kv * hd), proj("wv", n_kv * hd)
    extra = [h.weight("ff", rng.uniform(1, 8, size=n_rot // 2).astype(np.float32))] if factors else []
    rope = {"head_dim": hd, "n_rot": n_rot, "rope_base": 10000.0,
            "rope_mode": _core.RopeMode.neox if neox else _core.RopeMode.normal}
    qr = h.op(_core.Op.rope, [q] + extra, n_head=n_head, **rope)
    kr = h.op(_core.Op.rope, [k] + extra, n_head=n_kv, **rope)
    out = h.op(_core.Op.attention, [qr, kr, v], n_head=n_head, n_head_kv=n_kv, head_dim=hd)
    d = h.engine(out, n_ctx=256, backend="cuda").description
    assert ("rope in 1 q/k/v launches" in d) == (fused and wtype not in ("F16", "BF16")), d
    monkeypatch.setenv("STRATA_CUDA_FUSE", "all")
    d = h.engine(out, n_ctx=256, backend="cuda").description
    assert ("rope in 1 q/k/v launches" in d) == fused, d
    chunks = [3] + [1] * (T - 3)
    got = h.run(out, T, backend="cuda", n_ctx=256, chunks=chunks, n_batch=3)
    monkeypatch.delenv("STRATA_CUDA_FUSE")
    apart = run_graph(h, out, T, "cuda", monkeypatch, {"STRATA_CUDA_FUSE": "norm,add,glu,merge,rope,mv,mvglu"},
                      n_ctx=256, chunks=chunks, n_batch=3)
    unfused = run_graph(h, out, T, "cuda", monkeypatch, {"STRATA_CUDA_FUSE": "0"}, n_ctx=256, chunks=chunks,
                        n_batch=3)
    np.testing.assert_array_equal(got, apart)
    np.testing.assert_array_equal(got, unfused)
    assert np.isfinite(got).all()


@pytest.mark.parametrize("spread", ["1", "0"])  # a block a head (the default), or one block
@pytest.mark.parametrize(
    "neox,n_rot,factors,window",
    [(False, 64, False, 0), (True, 64, False, 0), (True, 32, True, 0), (False, 48, False, 6)],
)
def test_fused_rope_and_kv_append_against_unfused_and_cpu(monkeypatch, neox, n_rot, factors, window, spread):
    """rope(q), rope(k), attention(q', k', v) in decode steps: the fused launch (both ropes,
    the KV append; dimensions past n_rot passed through; a ring buffer that wraps), spread over
    a block a head or in one block, equals the unfused launches bit for bit, and the CPU
    backend within the attention bound (f32 attention in the 3-row prefill step: the tensor
    cores' f16 is not what this checks)."""
    monkeypatch.setenv("STRATA_CUDA_ATTN", "f32")
    monkeypatch.setenv("STRATA_CUDA_SPREAD", spread)
    rng = np.random.default_rng(9)
    T, n_head, n_kv, hd = 20, 6, 2, 64
    q = rng.standard_normal((T, n_head * hd)).astype(np.float32)
    k = rng.standard_normal((T, n_kv * hd)).astype(np.float32)
    v = rng.standard_normal((T, n_kv * hd)).astype(np.float32)
    ff = rng.uniform(1, 8, size=n_rot // 2).astype(np.float32) if factors else None
    h = OpHarness()
    extra = [h.weight("ff", ff)] if factors else []
    rope = {"head_dim": hd, "n_rot": n_rot, "rope_base": 10000.0, "rope_freq_scale": 0.5,
            "rope_mode": _core.RopeMode.neox if neox else _core.RopeMode.normal}
    qr = h.op(_core.Op.rope, [h.rows(q)] + extra, n_head=n_head, **rope)
    kr = h.op(_core.Op.rope, [h.rows(k)] + extra, n_head=n_kv, **rope)
    out = h.op(_core.Op.attention, [qr, kr, h.rows(v)], n_head=n_head, n_head_kv=n_kv,
               head_dim=hd, window=window)
    chunks = [3] + [1] * (T - 3)
    fused = h.run(out, T, backend="cuda", chunks=chunks, n_batch=3)
    unfused = run_graph(h, out, T, "cuda", monkeypatch, {"STRATA_CUDA_FUSE": "0"}, chunks=chunks,
                        n_batch=3)
    np.testing.assert_array_equal(fused, unfused)
    cpu = h.run(out, T, backend="cpu", chunks=chunks, n_batch=3)
    np.testing.assert_allclose(fused, cpu, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("width,wtype", [(640, "Q8_0"), (2048, "Q4_0"), (1024, "F16")])
def test_spread_add_and_norm_give_the_bytes_of_one_block(monkeypatch, width, wtype):
    """The decode add + rms_norm (+ the int8 copy of the norm) spread over blocks, each taking
    the whole row's sum of squares and writing one stretch of the sum and the norm (2.5, 4 and
    2 stretches of 256 / 512 / 512; F16 reads the norm in f32), equals the one-block kernel and
    the unfused launches bit for bit: the norm through a matmul, the sum through a second add."""
    rng = np.random.default_rng(11)
    T = 12
    h = OpHarness()
    a = h.rows(rng.standard_normal((T, width)).astype(np.float32))
    b = h.rows(rng.standard_normal((T, width)).astype(np.float32))
    s = h.op(_core.Op.add, [a, b])
    n = h.op(_core.Op.rms_norm, [s, h.weight("nw", (1 + 0.1 * rng.standard_normal(width)).astype(np.float32))],
             eps=1e-5)
    w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    raw = w.astype(np.float16) if wtype == "F16" else gguf_quants.quantize(w, qtype(wtype))
    out = h.op(_core.Op.add, [s, h.op(_core.Op.matmul, [n, h.weight("w", raw.tobytes(), int(qtype(wtype)), width,
                                                                    width)])])
    chunks = [3] + [1] * (T - 3)
    spread = h.run(out, T, backend="cuda", chunks=chunks, n_batch=3)
    one = run_graph(h, out, T, "cuda", monkeypatch, {"STRATA_CUDA_SPREAD": "0"}, chunks=chunks, n_batch=3)
    unfused = run_graph(h, out, T, "cuda", monkeypatch, {"STRATA_CUDA_FUSE": "0"}, chunks=chunks, n_batch=3)
    np.testing.assert_array_equal(spread, one)
    np.testing.assert_array_equal(spread, unfused)


def test_bad_fuse_setting_is_named(monkeypatch):
    h, out, _ = mini_llama(0)
    monkeypatch.setenv("STRATA_CUDA_FUSE", "norm,rope+")
    with pytest.raises(strata.StrataError, match="STRATA_CUDA_FUSE"):
        h.run(out, 1, backend="cuda")


# ---- greedy decoding on the device, programmatic dependent launch ----------------------------
# A decode step ends with an argmax kernel and copies 4 bytes back; the logits come back only
# when last_logits() asks (STRATA_CUDA_DEVICE_ARGMAX=0: no kernel, every step copies them).
# Decode kernels are programmatic dependent launches (STRATA_CUDA_PDL=0: plain launches).
NO_HISTORY = np.zeros(0, dtype=np.int32)


def greedy() -> _core.SamplingParams:
    p = _core.SamplingParams()
    p.temperature = 0.0
    return p


def cuda_engine(h: OpHarness, out: int, monkeypatch, env: dict | None = None,
                n_ctx: int = 256) -> _core.Engine:
    """An engine on the CUDA backend made with `env` set (the backend reads it when made)."""
    h.graph.set_output(out)
    mapping = np.frombuffer(bytes(h._buf) + b"\0" * 64, dtype=np.uint8)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    try:
        return _core.Engine(h.graph, mapping, n_ctx=n_ctx, n_batch=64, backend="cuda")
    finally:
        for k in env or {}:
            monkeypatch.delenv(k, raising=False)


def greedy_run(eng: _core.Engine, prompt: int, steps: int) -> tuple[list[int], np.ndarray]:
    """Greedy tokens of `steps` decode steps after a prompt of tokens 0..prompt-1, through
    step_sample (the device argmax where on), and the logits of every step (last_logits)."""
    eng.eval(np.arange(prompt, dtype=np.int32))
    token = eng.sample(greedy(), NO_HISTORY)
    tokens, logits = [token], []
    for _ in range(steps):
        token = eng.step_sample(token, greedy(), NO_HISTORY)
        tokens.append(token)
        logits.append(eng.last_logits())
    return tokens, np.stack(logits)


@pytest.mark.parametrize("types", ["mixed", "f16"])
def test_device_argmax_is_the_argmax_of_the_step_logits(monkeypatch, types):
    """Over decode steps of the 2-layer model, the token step_sample returns (the device's
    argmax) is numpy's argmax of the logits that same step gives last_logits()."""
    h, out, _ = mini_llama(4, FUSE_TYPES[types])
    eng = cuda_engine(h, out, monkeypatch)
    assert "greedy on device" in eng.description
    tokens, logits = greedy_run(eng, 9, 24)
    assert tokens[1:] == [int(np.argmax(row)) for row in logits]


def test_greedy_tokens_and_logits_same_with_device_argmax_off(monkeypatch):
    """Greedy generation gives the same tokens with the argmax kernel and without it, and the
    logits read back after a device-argmax step are those of the same step with it off, bit
    for bit (the lazy copy reads what the step left in the arena)."""
    h, out, _ = mini_llama(5)
    on = greedy_run(cuda_engine(h, out, monkeypatch), 9, 32)
    off_eng = cuda_engine(h, out, monkeypatch, {"STRATA_CUDA_DEVICE_ARGMAX": "0"})
    assert "greedy on device" not in off_eng.description
    off = greedy_run(off_eng, 9, 32)
    assert on[0] == off[0]
    np.testing.assert_array_equal(on[1], off[1])


def test_logits_after_a_device_argmax_step_are_the_step_logits(monkeypatch):
    """last_logits after step_sample (greedy: the device argmax, logits left on the device)
    equals eval(all_logits) of the same token at the same position with the argmax off."""
    h, out, _ = mini_llama(6)
    a = cuda_engine(h, out, monkeypatch)
    b = cuda_engine(h, out, monkeypatch, {"STRATA_CUDA_DEVICE_ARGMAX": "0"})
    prompt = np.arange(9, dtype=np.int32)
    a.eval(prompt)
    b.eval(prompt)
    token = a.sample(greedy(), NO_HISTORY)
    for _ in range(8):
        nxt = a.step_sample(token, greedy(), NO_HISTORY)
        got = a.last_logits()
        want = b.eval(np.asarray([token], dtype=np.int32), all_logits=True)[0]
        np.testing.assert_array_equal(got, want)
        assert nxt == int(np.argmax(want))
        token = nxt


ARGMAX_W = 50021  # a vocabulary not a multiple of 4 nor of the block's 1024 threads


def argmax_rows() -> tuple[np.ndarray, list[int], list[int]]:
    """Rows of logits meant to trip an argmax, with the device's answer and the host's
    (sampler.cpp: scans with > from index 0)."""
    rng = np.random.default_rng(7)
    W = ARGMAX_W
    rows, dev, host = [], [], []

    def add(row, d, hst=None):
        rows.append(np.asarray(row, np.float32))
        dev.append(d)
        host.append(d if hst is None else hst)

    r = rng.standard_normal(W).astype(np.float32)
    add(r, int(np.argmax(r)))
    r = rng.standard_normal(W).astype(np.float32)
    r[[7, 30000, W - 1]] = 9.0  # ties: the first
    add(r, 7)
    r = rng.standard_normal(W).astype(np.float32)
    r[W - 1] = 9.0
    add(r, W - 1)
    r = rng.standard_normal(W).astype(np.float32)
    r[0] = 9.0
    add(r, 0)
    add(np.zeros(W), 0)
    r = -np.ones(W, np.float32)
    r[3], r[10] = -0.0, 0.0  # -0 == +0: the first
    add(r, 3)
    add(np.full(W, -np.inf), 0)
    r = rng.standard_normal(W).astype(np.float32)
    r[[1, 2, 1024, 40000]] = np.nan
    r[40001] = 9.0
    add(r, 40001)
    r = rng.standard_normal(W).astype(np.float32)
    r[0], r[12345] = np.nan, 9.0  # the one row where the two differ
    add(r, 12345, 0)
    add(np.full(W, np.nan), 0)  # the device finds nothing: the engine asks the host
    r = rng.standard_normal(W).astype(np.float32)
    r[[2048, 5000]] = np.inf
    add(r, 2048)
    r = rng.standard_normal(W).astype(np.float32)
    r[[1024, 1023, 3 * 1024 + 5]] = 9.0  # ties across threads and iterations
    add(r, 1023)
    return np.stack(rows), dev, host


@pytest.mark.parametrize("argmax", ["1", "0"])
def test_device_argmax_ties_nan_and_infinities(monkeypatch, argmax):
    """A graph whose output is row `token` of a table: step_sample over crafted rows gives
    the first index of the largest value (NaN never wins) with the kernel on, the host's
    argmax with it off; last_logits is the row either way."""
    table, dev, host = argmax_rows()
    h = OpHarness()
    out = h.rows(table)
    eng = cuda_engine(h, out, monkeypatch, {"STRATA_CUDA_DEVICE_ARGMAX": argmax}, n_ctx=64)
    want = dev if argmax == "1" else host
    for i in range(len(table)):
        assert eng.step_sample(i, greedy(), NO_HISTORY) == want[i], i
        np.testing.assert_array_equal(eng.last_logits(), table[i])


# ---- top-k sampling's candidates on the device (the default; STRATA_CUDA_DEVICE_TOPK=0: off) --
# After a decode step the k best logits are selected on the device and the host draws from
# those k (Sampler::sample_top): the same draw as from the whole row, bit for bit.
TOPK_OFF = {"STRATA_CUDA_DEVICE_TOPK": "0"}


def sampling(temperature: float, top_k: int, top_p: float = 1.0, min_p: float = 0.0) -> _core.SamplingParams:
    return SamplingSettings(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p).native()


TOPK_SETTINGS = [sampling(0.8, 40, 0.95, 0.05), sampling(1.0, 1), sampling(1.5, 5), sampling(0.7, 64, 0.9),
                 sampling(2.0, 17, 1.0, 0.02)]


def sampled_run(eng: _core.Engine, p: _core.SamplingParams, seed: int, steps: int) -> list[int]:
    eng.truncate(0)
    eng.seed(seed)
    eng.eval(np.arange(9, dtype=np.int32))
    tokens = [eng.sample(p, NO_HISTORY)]
    for _ in range(steps):
        tokens.append(eng.step_sample(tokens[-1], p, NO_HISTORY))
    return tokens


def test_device_top_k_gives_the_hosts_draws(monkeypatch):
    """Sampled decoding with the device's top-k candidates draws the same tokens as the host
    sampling the whole row, for several top-k / top-p / min-p / temperature settings."""
    h, out, _ = mini_llama(7)
    on = cuda_engine(h, out, monkeypatch)
    off = cuda_engine(h, out, monkeypatch, TOPK_OFF)
    assert "top-k on device" in on.description and "top-k on device" not in off.description
    for i, p in enumerate(TOPK_SETTINGS):
        for seed in range(3):
            assert sampled_run(on, p, seed, 24) == sampled_run(off, p, seed, 24), (i, seed)
    np.testing.assert_array_equal(on.last_logits(), off.last_logits())


def top_k_rows() -> np.ndarray:
    """Rows of logits meant to trip a top-k selection (no NaN: the host's sort is undefined
    there): ties across threads, stage-1 blocks (4096 wide) and the k-th place, -0 and +0,
    infinities, fewer finite values than k, and 64 equal maxima."""
    rng = np.random.default_rng(11)
    W = ARGMAX_W
    rows = [rng.standard_normal(W)]
    r = rng.standard_normal(W)
    r[[5, 4095, 4096, 8191, 40000, W - 1]] = 7.0
    rows.append(r)
    r = rng.standard_normal(W)
    r[rng.choice(W, 300, replace=False)] = 3.0  # more equal values than any k
    rows.append(r)
    r = -np.ones(W)
    r[[3, 10, 5000]] = [-0.0, 0.0, -0.0]
    rows.append(r)
    r = np.full(W, -np.inf)
    r[[9, 4100, 30000]] = [1.0, 2.0, 1.0]  # three finite values, then -inf by index
    rows.append(r)
    r = rng.standard_normal(W)
    r[[100, 20000]] = np.inf
    rows.append(r)
    rows.append(np.round(rng.standard_normal(W), 1))  # many ties everywhere
    return np.stack(rows).astype(np.float32)


def test_device_top_k_on_crafted_rows(monkeypatch):
    """A graph whose output is row `token` of a table: sampled step_sample over crafted rows
    draws the same tokens with the device's candidates as the host's, at several k."""
    table = top_k_rows()
    h = OpHarness()
    out = h.rows(table)
    on = cuda_engine(h, out, monkeypatch, n_ctx=64)
    off = cuda_engine(h, out, monkeypatch, TOPK_OFF, n_ctx=64)
    for p in TOPK_SETTINGS:
        for seed in range(4):
            on.seed(seed)
            off.seed(seed)
            for i in range(len(table)):
                assert on.step_sample(i, p, NO_HISTORY) == off.step_sample(i, p, NO_HISTORY), (p.top_k, seed, i)
                np.testing.assert_array_equal(on.last_logits(), table[i])
                on.truncate(0)
                off.truncate(0)


PDL_ENVS = {
    "default": {},
    "no-graph": {"STRATA_CUDA_GRAPH": "0"},
    "unfused": {"STRATA_CUDA_FUSE": "0"},
    "v1": {"STRATA_CUDA_MATVEC": "v1"},
    "f32": {"STRATA_CUDA_MATVEC": "f32"},
}


def step_logits(h: OpHarness, out: int, monkeypatch, env: dict, n_ctx: int) -> tuple[np.ndarray, str]:
    """Every logit of the mini model's prefill and decode steps (DECODE) on an engine made
    with `env`, and the engine's description."""
    eng = cuda_engine(h, out, monkeypatch, env, n_ctx=n_ctx)
    ids = np.arange(N_MINI, dtype=np.int32)
    parts, start = [], 0
    for c in DECODE:
        parts.append(eng.eval(ids[start : start + c], all_logits=True))
        start += c
    return np.concatenate(parts), eng.description


@pytest.mark.parametrize("n_ctx", [256, 2048])  # 256: one decode split; 2048: 32, 3 in use, merged
@pytest.mark.parametrize("types", ["mixed", "q4_k_m", "f16"])
@pytest.mark.parametrize("env", list(PDL_ENVS))
def test_pdl_gives_the_bytes_of_plain_launches(monkeypatch, env, types, n_ctx):
    """Decode steps launched as programmatic dependents (each kernel waits for the one before
    it before touching memory) give the logits of plain launches bit for bit, over a prefill
    and decode steps, with graphs (captured programmatic edges) and without, fused and not."""
    one_split_at_256(monkeypatch, n_ctx)
    h, out, _ = mini_llama(8, FUSE_TYPES[types])
    base = PDL_ENVS[env]
    on, desc_on = step_logits(h, out, monkeypatch, base, n_ctx)
    off, desc_off = step_logits(h, out, monkeypatch, {**base, "STRATA_CUDA_PDL": "0"}, n_ctx)
    assert "pdl on" in desc_on and "pdl off" in desc_off, (desc_on, desc_off)
    np.testing.assert_array_equal(on, off)


@pytest.mark.parametrize("setting", ["0", "kv"])
@pytest.mark.parametrize("env", [{}, {"STRATA_CUDA_ATTN_SPLIT_KEYS": "3"}, {"STRATA_CUDA_GRAPH": "0"}])
@pytest.mark.parametrize("types", ["mixed", "q4_k_m", "f16"])
def test_work_before_the_wait_gives_the_bytes_of_none(monkeypatch, types, env, setting):
    """By default a decode kernel does what reads no value of this step before it waits for
    the kernel before it: attention asks L2 for its keys' K and V rows, the norm loads its
    weights, the rope takes its angles. Without (STRATA_CUDA_PREFETCH=0), or with the K and V
    rows only (=kv), every logit of a prefill and of decode steps over 1 to 16 splits is the
    same, bit for bit: each is the same load or a hint, only earlier."""
    h, out, _ = mini_llama(8, FUSE_TYPES[types])
    on, desc_on = step_logits(h, out, monkeypatch, env, 2048)
    off, desc_off = step_logits(h, out, monkeypatch, {**env, "STRATA_CUDA_PREFETCH": setting}, 2048)
    assert "no KV prefetch" not in desc_on and "no early weights" not in desc_on, desc_on
    assert ("no KV prefetch" in desc_off) == (setting == "0") and "no early weights" in desc_off, desc_off
    np.testing.assert_array_equal(on, off)


@pytest.mark.parametrize("env", [{}, {"STRATA_CUDA_GRAPH": "0"}, {"STRATA_CUDA_MATVEC_TILE": "4,2,2"}])
@pytest.mark.parametrize("types", ["mixed", "q4_0", "q4_k_m", "f16"])
def test_matvec_weights_before_the_wait_give_the_bytes_of_after(monkeypatch, types, env):
    """By default the wide decode matvec issues its first steps of weight loads before its PDL
    wait; with STRATA_CUDA_MV_EARLY=0 after it. The same loads, earlier, so every logit of a
    prefill and of decode steps is the same, bit for bit (graphs or not, split-K tiles too)."""
    h, out, _ = mini_llama(8, FUSE_TYPES[types])
    on, desc_on = step_logits(h, out, monkeypatch, env, 2048)
    off, desc_off = step_logits(h, out, monkeypatch, {**env, "STRATA_CUDA_MV_EARLY": "0"}, 2048)
    assert "matvec weights after the wait" not in desc_on, desc_on
    assert "matvec weights after the wait" in desc_off, desc_off
    np.testing.assert_array_equal(on, off)


@pytest.mark.parametrize("switch", ["STRATA_CUDA_PREFETCH", "STRATA_CUDA_SPREAD", "STRATA_CUDA_MV_EARLY"])
def test_bad_on_off_setting_is_named(monkeypatch, switch):
    h, out, _ = mini_llama(0)
    monkeypatch.setenv(switch, "yes")
    with pytest.raises(strata.StrataError, match=switch):
        h.run(out, 1, backend="cuda")


# ---- errors -----------------------------------------------------------------------------
def test_out_of_memory_at_load_says_needed_and_free():
    h = OpHarness()
    x = np.zeros((2, 64), np.float32)
    out = h.op(_core.Op.attention, [h.rows(x), h.rows(x), h.rows(x)], n_head=1, n_head_kv=1,
               head_dim=64)
    with pytest.raises(strata.StrataError, match=r"out of GPU memory.*free"):
        h.run(out, 2, n_ctx=2**30, backend="cuda")  # a 256 GiB KV cache


def test_unsupported_head_dim_is_named():
    h = OpHarness()
    x = np.zeros((2, 512), np.float32)
    out = h.op(_core.Op.attention, [h.rows(x), h.rows(x), h.rows(x)], n_head=1, n_head_kv=1,
               head_dim=512)
    with pytest.raises(strata.UnsupportedModelError, match="head_dim"):
        h.run(out, 2, backend="cuda")


def test_context_overflow_is_reported_before_work():
    h = OpHarness()
    x = np.zeros((8, 16), np.float32)
    out = h.op(_core.Op.attention, [h.rows(x), h.rows(x), h.rows(x)], n_head=1, n_head_kv=1,
               head_dim=16)
    with pytest.raises(strata.ContextOverflowError):
        h.run(out, 8, n_ctx=4, backend="cuda")


# ---- SmolLM2 Q4_1 against llama.cpp and the CPU backend -------------------------------------
@pytest.fixture(scope="module")
def smollm2_cuda(smollm2_file):
    m = strata.load(smollm2_file, n_ctx=2048, backend="cuda")
    assert m.backend == "cuda" and m.description.startswith("cuda (")
    return m


@pytest.fixture(scope="module")
def ref():
    return np.load(os.path.join(FIXTURES, "smollm2_q4_1_logits.npz"))


def test_smollm2_logits_against_llama_cpp_and_cpu(smollm2_file, smollm2_cuda, ref):
    tokens = ref["tokens"].tolist()
    gpu = smollm2_cuda.logits(tokens).astype(np.float64)
    cpu = strata.load(smollm2_file, n_ctx=2048, backend="cpu").logits(tokens).astype(np.float64)
    nll = -log_softmax(gpu)[np.arange(len(tokens) - 1), ref["tokens"][1:]]
    ppl = float(np.exp(nll.mean()))
    assert abs(ppl / float(ref["ppl"]) - 1) < 0.01, (ppl, float(ref["ppl"]))
    # Argmax: CUDA prefill multiplies f16 activations, the CPU 8-bit ones (as llama.cpp), so
    # at near-ties (float64 top-2 gap < 0.25; the CPU itself departs from float64 at 10 of
    # 257 positions, all with gaps below 0.19) either may flip. Elsewhere they must agree, and
    # CUDA must be at least as close to float64 as the CPU and llama.cpp.
    agree_cpu = gpu.argmax(1) == cpu.argmax(1)
    decisive = ref["f64_top2_gap"] >= 0.25
    assert agree_cpu[decisive].mean() >= 0.99, agree_cpu[decisive].mean()
    assert agree_cpu.mean() >= 0.94, agree_cpu.mean()
    assert (gpu.argmax(1) == ref["argmax"]).mean() >= 0.94
    f64 = ref["f64_argmax"]
    gpu_f64, cpu_f64 = (gpu.argmax(1) == f64).mean(), (cpu.argmax(1) == f64).mean()
    assert gpu_f64 >= min(cpu_f64, float(ref["llama_vs_f64_agree"])) - 0.015, (gpu_f64, cpu_f64)
    exact = ref["f64_logprob_next"].astype(np.float64)
    gpu_err = np.abs(-nll - exact).mean()
    llama_err = np.abs(ref["logprob_next"].astype(np.float64) - exact).mean()
    assert gpu_err <= llama_err, (gpu_err, llama_err)
    diff = np.abs(gpu[:16] - ref["logits_f16"].astype(np.float64))
    assert np.sqrt((diff**2).mean()) < 0.5


def test_smollm2_greedy_continuations_match_llama_cpp(smollm2_cuda, smollm2_file):
    """As on the CPU (conftest.check_smollm2_greedy): departures from llama.cpp's text only
    where float64 nearly ties the two choices. On the H100 (session 6, cuBLAS prefill) 8 of
    10 continuations departed, all there (llama.cpp's top-2 gaps 0.03-0.35)."""
    check_smollm2_greedy(smollm2_cuda, smollm2_file)


def test_smollm2_decode_steps_match_prefill(smollm2_file, ref):
    tokens = ref["tokens"][:40].tolist()
    m = strata.load(smollm2_file, n_ctx=64, backend="cuda")
    full = m.logits(tokens)
    m2 = strata.load(smollm2_file, n_ctx=64, backend="cuda")
    eng = m2._engine
    eng.eval(np.asarray(tokens[:8], dtype=np.int32))
    for t in tokens[8:]:
        eng.eval(np.asarray([t], dtype=np.int32))
    last = eng.last_logits()
    # Prefill multiplies in f16 on tensor cores, decode in int8: close, not identical.
    assert rel_rms(last, full[-1]) < 3e-2
    assert last.argmax() in np.argsort(full[-1])[-3:]


def test_smollm2_greedy_same_with_device_argmax_off(monkeypatch, smollm2_file):
    """Greedy generation with the device argmax (the default) and without it: the same tokens."""
    on = strata.load(smollm2_file, n_ctx=512, backend="cuda")
    monkeypatch.setenv("STRATA_CUDA_DEVICE_ARGMAX", "0")
    off = strata.load(smollm2_file, n_ctx=512, backend="cuda")
    monkeypatch.delenv("STRATA_CUDA_DEVICE_ARGMAX")
    assert "greedy on device" in on.description and "greedy on device" not in off.description
    for prompt in ("Once upon a time", "The capital of France is", "1, 2, 3, 4, 5,"):
        a, b = strata.Completion(), strata.Completion()
        on.generate(prompt, max_tokens=48, temperature=0, completion=a)
        off.generate(prompt, max_tokens=48, temperature=0, completion=b)
        assert a.token_ids == b.token_ids, prompt

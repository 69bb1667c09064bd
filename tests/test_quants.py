"""Every supported weight type on every CPU kernel build this machine can run.

- dequantization equals ``gguf.quants.dequantize`` bit for bit on generated blocks;
- matvec (decode) and matmul (prefill) agree with float64 NumPy products of the
  dequantized weights within a bound derived from 8-bit activation rounding;
- every SIMD build agrees with the scalar build;
- a row length that is not a multiple of the block size is rejected with StrataError.
"""

from __future__ import annotations

import numpy as np
import pytest
import strata
from gguf import GGMLQuantizationType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize as gguf_dequantize
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ops.harness import OpHarness
from strata import _core
from strata.quant_types import SUPPORTED_WEIGHT_TYPES

TYPES = [
    "F32",
    "F16",
    "BF16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "IQ4_NL",
    "IQ4_XS",
]
ISAS = list(_core.cpu_isas())
SIMD_ISAS = [i for i in ISAS if i != "scalar"]

# Byte offsets of the fp16 scale fields (d, and m / dmin where the format has one) inside
# one block, as laid out in ggml-common.h.
FP16_FIELDS = {
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "Q8_0": (0,),
    "IQ4_NL": (0,),
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
    "IQ4_XS": (0,),
}
# Elements per block of the activation format the kernels quantize the input to for this
# weight type (None: the input stays fp32).
ACT_BLOCK = {
    **dict.fromkeys(["F32", "F16", "BF16"]),
    **dict.fromkeys(["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_NL"], 32),
    **dict.fromkeys(["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"], 256),
}


def qtype(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name]


def sizes(name: str) -> tuple[int, int]:
    """(elements per block, bytes per block)."""
    return GGML_QUANT_SIZES[qtype(name)]


def reference(name: str, raw: np.ndarray) -> np.ndarray:
    """gguf's NumPy dequantization (Inf/NaN scales make NumPy warn; they are expected)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(gguf_dequantize(raw, qtype(name)), dtype=np.float32).ravel()


def test_every_supported_type_is_tested() -> None:
    assert set(TYPES) == set(SUPPORTED_WEIGHT_TYPES)


# ---- (a) dequantization: bit for bit ---------------------------------------------------
# fp16 scales: zeros of both signs, the smallest and largest subnormals, the smallest
# normal, the largest finite values, one, and any other bit pattern. Infinities and NaNs
# are included rather than excluded: gguf computes in IEEE fp32 exactly as the kernels do
# (same operations in the same order), so an Inf or NaN scale yields Inf/NaN in the same
# elements (inf * 0 = NaN, inf - inf = NaN, ...). NaNs are compared as "both NaN", since
# the payload of a computed NaN is the hardware's, not part of the GGUF format; every
# other value, signed zeros included, must match bit for bit.
SPECIAL_HALFS = [
    0x0000,
    0x8000,
    0x0001,
    0x8001,
    0x03FF,
    0x83FF,
    0x0400,
    0x7BFF,
    0xFBFF,
    0x3C00,
    0xBC00,
    0x7C00,
    0xFC00,
    0x7E00,
    0x7C01,
    0xFFFF,
]
halfs = st.one_of(st.sampled_from(SPECIAL_HALFS), st.integers(0, 0xFFFF))


def assert_same_floats(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32 and want.dtype == np.float32 and got.shape == want.shape
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_got, nan_want), "NaNs in different places"
    ok = nan_got | (got.view(np.uint32) == want.view(np.uint32))
    if not ok.all():
        i = int(np.argmin(ok))
        raise AssertionError(
            f"{int((~ok).sum())} elements differ; first at {i}: {got[i]!r} vs {want[i]!r}"
        )


@st.composite
def raw_blocks(draw, name: str) -> np.ndarray:
    block, size = sizes(name)
    n_blocks = draw(st.integers(1, 4)) * (64 if block == 1 else 1)
    raw = np.frombuffer(
        draw(st.binary(min_size=n_blocks * size, max_size=n_blocks * size)), dtype=np.uint8
    ).copy()
    if name == "F16":
        raw.view(np.uint16)[:] = draw(st.lists(halfs, min_size=n_blocks, max_size=n_blocks))
    for off in FP16_FIELDS.get(name, ()):
        vals = np.array(draw(st.lists(halfs, min_size=n_blocks, max_size=n_blocks)), np.uint16)
        raw.reshape(n_blocks, size)[:, off : off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    return raw


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_dequantize_matches_gguf_bit_for_bit(name: str, data) -> None:
    raw = data.draw(raw_blocks(name))
    block, size = sizes(name)
    n = raw.size // size * block
    want = reference(name, raw)
    for isa in ISAS:
        assert_same_floats(_core.cpu_dequantize(int(qtype(name)), raw, n, isa), want)


# ---- (b) matvec / matmul against float64 -----------------------------------------------
def random_weights(name: str, rows: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Raw bytes of a rows x width weight. Quantized types: random quants and sub-block
    scales (every bit pattern is a valid block) under fp16 scales drawn from +-[1e-3, 1e-1],
    so no product overflows; float types: normal values."""
    block, size = sizes(name)
    if name == "F32":
        return rng.standard_normal(rows * width).astype(np.float32).view(np.uint8)
    if name == "F16":
        return rng.standard_normal(rows * width).astype(np.float16).view(np.uint8)
    if name == "BF16":
        return (
            (rng.standard_normal(rows * width).astype(np.float32).view(np.uint32) >> 16)
            .astype(np.uint16)
            .view(np.uint8)
        )
    n_blocks = rows * width // block
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in FP16_FIELDS[name]:
        d = rng.uniform(1e-3, 1e-1, n_blocks) * rng.choice([-1.0, 1.0], n_blocks)
        raw[:, off : off + 2] = d.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return raw.ravel()


def random_input(width: int, rng: np.random.Generator) -> np.ndarray:
    """Normal values with a few outliers (per-block scales differ) and sometimes an
    all-zero 32-element block (scale 0)."""
    x = rng.standard_normal(width)
    k = max(1, width // 64)
    x[rng.integers(0, width, k)] *= rng.uniform(5, 30, k)
    if width >= 64 and rng.random() < 0.5:
        z = rng.integers(0, width // 32) * 32
        x[z : z + 32] = 0.0
    return x.astype(np.float32)


def error_bound(name: str, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-row bound on |kernel - float64 product| for weights w (rows x width, float64).

    Activation rounding: the input is quantized per block of B elements to d * q with
    d = amax(block) / 127 and q = round(x / d), so |d * q - x| <= d / 2 per element (plus
    one fp32 rounding of x * (1/d), well under 1e-4 of a step, hence the 1.001). The integer
    products are exact, so the error from quantization is at most sum_i |w_i| * d_i / 2.
    This is the same rounding llama.cpp applies (it quantizes activations to q8_0 / q8_K);
    it is ~ |w| . |x| * 2^-8 at worst and far below that on average.

    fp32 arithmetic: scales, per-block partial sums and the accumulation across blocks are
    fp32. With products of magnitude at most S = sum |w_i x_i| + max|w| * sum |x_i| (the
    second term covers formats that compute q * x and the offset/minimum separately), a
    sum of n terms is within n * 2^-24 * S; we allow (width / 32 + 64) * 2^-22 * S.
    """
    width = x.size
    ax = np.abs(x.astype(np.float64))
    aw = np.abs(w)
    s = aw @ ax + aw.max(axis=1) * ax.sum()
    bound = (width // 32 + 64) * 2.0**-22 * s
    b = ACT_BLOCK[name]
    if b is not None:
        d = ax.reshape(-1, b).max(axis=1) / 127.0
        bound += 1.001 * (aw @ np.repeat(d / 2, b))
    return bound


def isa_agreement_bound(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """All builds quantize the input to the same bytes and form the same integer sums; only
    the order of the fp32 operations differs (fp32 rounding, as in error_bound)."""
    ax = np.abs(x.astype(np.float64))
    aw = np.abs(w)
    return (x.size // 32 + 64) * 2.0**-22 * (aw @ ax + aw.max(axis=1) * ax.sum())


def width_strategy(name: str) -> st.SearchStrategy[int]:
    block = sizes(name)[0]
    if block == 1:
        return st.integers(1, 300)  # any width: exercises the SIMD loops' tails
    if block == 32:
        return st.integers(1, 24).map(lambda n: 32 * n)
    return st.integers(1, 6).map(lambda n: 256 * n)


@pytest.mark.parametrize("name", TYPES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_matvec_against_float64(name: str, data) -> None:
    rows = data.draw(st.sampled_from([1, 3, 7, 33]), label="rows")
    width = data.draw(width_strategy(name), label="width")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    raw = random_weights(name, rows, width, rng)
    x = random_input(width, rng)
    w = reference(name, raw).reshape(rows, width).astype(np.float64)
    want = w @ x.astype(np.float64)
    bound = error_bound(name, w, x)
    agree = isa_agreement_bound(w, x)
    outs = {isa: _core.cpu_matvec(int(qtype(name)), raw, width, rows, x, isa) for isa in ISAS}
    for isa, got in outs.items():
        err = np.abs(got.astype(np.float64) - want)
        assert (err <= bound).all(), (
            f"{isa}: error {err.max():.3g} > bound {bound[err.argmax()]:.3g}"
        )
    # (c) every SIMD build agrees with the scalar reference.
    for isa in SIMD_ISAS:
        diff = np.abs(outs[isa].astype(np.float64) - outs["scalar"])
        assert (diff <= agree).all(), f"{isa} vs scalar: {diff.max():.3g}"


@pytest.mark.parametrize("name", [t for t in TYPES if ACT_BLOCK[t] is not None])
def test_matvec_is_exact_when_the_input_is_exactly_quantizable(name: str) -> None:
    """Integers in [-127, 127] with a 127 in every activation block quantize with scale 1
    and no rounding at all: then only fp32 rounding of the scales and partial sums remains,
    so any slip in the integer part (a wrong nibble, bit or scale) shows up at once."""
    rng = np.random.default_rng(7)
    rows, b = 33, ACT_BLOCK[name]
    width = 4 * max(b, sizes(name)[0])
    raw = random_weights(name, rows, width, rng)
    x = rng.integers(-127, 128, width).astype(np.float32)
    x[::b] = 127.0
    w = reference(name, raw).reshape(rows, width).astype(np.float64)
    want = w @ x.astype(np.float64)
    bound = isa_agreement_bound(w, x)
    for isa in ISAS:
        err = np.abs(_core.cpu_matvec(int(qtype(name)), raw, width, rows, x, isa) - want)
        assert (err <= bound).all(), f"{isa}: {err.max():.3g} > {bound[err.argmax()]:.3g}"


def run_matmul(name: str, raw: np.ndarray, width: int, rows: int, xs: np.ndarray, isa: str) -> np.ndarray:
    """The matmul op (rows x width weights `raw` of type `name`) on token rows xs, one step,
    weight rows split over 2 threads."""
    h = OpHarness()
    wv = h.weight("w", raw.tobytes(), int(qtype(name)), width, rows)
    out = h.op(_core.Op.matmul, [h.rows(xs), wv])
    return h.run(out, len(xs), isa=isa, n_threads=2)


@pytest.mark.parametrize("name", TYPES)
def test_matmul_prefill_against_float64(name: str) -> None:
    """The prefill path (several token rows, weight rows split over 2 threads, an odd
    number of rows) against float64, with the same bound as matvec. For the quantized
    types the 4-token micro-kernels form the same integer sums and the same float
    expression per block as matvec, so short prefills equal decode bit for bit (longer
    ones may take the tile matmul: test_matmul_tile_path_against_float64)."""
    rng = np.random.default_rng(11)
    rows, tokens = 37, 5
    width = 2 * max(sizes(name)[0], 32)
    raw = random_weights(name, rows, width, rng)
    xs = np.stack([random_input(width, rng) for _ in range(tokens)])
    w = reference(name, raw).reshape(rows, width).astype(np.float64)
    for isa in ISAS:
        got = run_matmul(name, raw, width, rows, xs, isa)
        for t in range(tokens):
            err = np.abs(got[t] - w @ xs[t].astype(np.float64))
            bound = error_bound(name, w, xs[t])
            assert (err <= bound).all(), f"{isa} token {t}: {err.max():.3g}"
            if ACT_BLOCK[name] is not None:
                single = _core.cpu_matvec(int(qtype(name)), raw, width, rows, xs[t], isa)
                np.testing.assert_array_equal(got[t], single, err_msg=f"{isa} token {t}")


@pytest.mark.parametrize("name", [t for t in TYPES if ACT_BLOCK[t] is not None])
def test_matmul_tile_path_against_float64(name: str) -> None:
    """Steps of 16 tokens or more, with the weight rows in whole tiles of 16, take the tile
    matmul where the build has it (gemm_vnni.cpp: AVX-512 VNNI, and AVX2 for the formats of
    up to 6 bits per weight; other builds and types run their 4-token dots here). Random inputs against float64 with matvec's bound, and integer
    inputs with a 127 in every 32-element block, which quantize exactly (scale 1): then only
    fp32 rounding remains, so a wrong nibble, bit, scale or offset in the repacked tile
    shows at once. 21 tokens leave a tail after the groups of four."""
    rng = np.random.default_rng(5)
    rows, tokens = 48, 21
    width = 2 * max(sizes(name)[0], 64)
    raw = random_weights(name, rows, width, rng)
    w = reference(name, raw).reshape(rows, width).astype(np.float64)
    exact = rng.integers(-127, 128, (tokens, width)).astype(np.float32)
    exact[:, ::32] = 127.0
    cases = {
        "random": (np.stack([random_input(width, rng) for _ in range(tokens)]), error_bound),
        "exact": (exact, lambda _name, w, x: isa_agreement_bound(w, x)),
    }
    results = {}
    for isa in ISAS:
        for case, (xs, bound_of) in cases.items():
            got = results[isa, case] = run_matmul(name, raw, width, rows, xs, isa)
            for t in range(tokens):
                err = np.abs(got[t] - w @ xs[t].astype(np.float64))
                bound = bound_of(name, w, xs[t])
                assert (err <= bound).all(), f"{isa} {case} token {t}: {err.max():.3g} > {bound[err.argmax()]:.3g}"
    # The AVX2 tiles (formats of up to 6 bits) form the AVX-512 tiles' integer sums and float
    # steps in the same order: the same numbers.
    if {"avx2", "avx512"} <= set(ISAS) and name in AVX2_TILE_TYPES:
        for case in cases:
            np.testing.assert_array_equal(results["avx2", case], results["avx512", case], err_msg=case)


AVX2_TILE_TYPES = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"}


# ---- (d) row lengths that are not a multiple of the block size ------------------------
@pytest.mark.parametrize("name", [t for t in TYPES if sizes(t)[0] > 1])
def test_partial_block_rows_are_rejected(name: str) -> None:
    block, size = sizes(name)
    for n in (block - 1, block + 1, 2 * block + 16):
        raw = np.zeros((n // block + 1) * size, np.uint8)
        with pytest.raises(strata.StrataError, match="block size"):
            _core.cpu_dequantize(int(qtype(name)), raw, n)
        with pytest.raises(strata.StrataError, match="block size"):
            _core.cpu_matvec(int(qtype(name)), raw, n, 1, np.zeros(n, np.float32))

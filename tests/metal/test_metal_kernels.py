"""Every metal/*.metal kernel, compiled unchanged by the Linux harness (tests/metal/harness),
against NumPy float64 references: simd width 32, several seeds (thread and threadgroup
order, threadgroup-memory garbage), odd sizes.

What passing means: the kernels' logic (indexing, bounds, reductions, barriers,
online softmax, quantized dot products, block layouts) is right as C++ semantics of the
MSL source. What it cannot mean: that Metal's compiler accepts the file, that its
fast-math defaults keep these tolerances, that launches fit the GPU's limits, or anything
about speed (docs/metal.md). Skipped when no clang++ is installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from .harness import msl
from .reference import (
    Q8_ACT,
    quantize_q8_act,
    ref_act,
    ref_attention,
    ref_layer_norm,
    ref_rms_norm,
    ref_rope,
)

CXX, _ = msl.find_cxx()
pytestmark = msl.harness_marks()
SEEDS = [0, 1, 7]
S = msl.arg_structs() if CXX else {}


def groups(n: int, per: int) -> int:
    return (n + per - 1) // per


# ---- rms_norm -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "G,W,threads", [(1, 1, 32), (3, 7, 32), (5, 100, 96), (2, 2049, 256), (4, 64, 1024)]
)
@pytest.mark.parametrize("weighted", [True, False])
def test_rms_norm(seed, G, W, threads, weighted):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(G, W)) * 3).astype(np.float32)
    w = rng.normal(size=W).astype(np.float32)
    y = np.full_like(x, np.nan)
    prog = msl.program("rms_norm.metal")
    args = S["RmsNormArgs"](G, W, 1e-5, int(weighted))
    prog.launch("kernel_rms_norm_f32", (G,), (threads,), [args, x, w, y], seed=seed)
    ref = ref_rms_norm(x, w if weighted else 1.0, 1e-5)
    np.testing.assert_allclose(y, ref, rtol=2e-5, atol=1e-6)


def test_rms_norm_per_head_groups():
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(3, 4 * 8)) * 5).astype(np.float32)
    w = rng.normal(size=8).astype(np.float32)
    y = np.zeros_like(x)
    msl.program("rms_norm.metal").launch(
        "kernel_rms_norm_f32", (12,), (32,), [S["RmsNormArgs"](12, 8, 1e-6, 1), x, w, y], seed=2
    )
    xh = x.reshape(3, 4, 8).astype(np.float64)
    ref = xh / np.sqrt((xh**2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(y, ref.reshape(3, 32), rtol=2e-5, atol=1e-6)


# ---- layer_norm -----------------------------------------------------------------------------


def run_layer_norm(x, w, b, threads, seed, prog=None):
    R, W = x.shape
    y = np.full_like(x, np.nan)
    args = S["LayerNormArgs"](R, W, 1e-5, int(w is not None), int(b is not None))
    (prog or msl.program("layer_norm.metal")).launch(
        "kernel_layer_norm_f32", (R,), (threads,), [args, x, w, b, y], seed=seed
    )
    return y


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "R,W,threads", [(1, 1, 32), (3, 7, 32), (5, 100, 96), (2, 2049, 256), (4, 64, 1024)]
)
@pytest.mark.parametrize("weighted,biased", [(True, True), (True, False), (False, True), (False, False)])
def test_layer_norm(seed, R, W, threads, weighted, biased):
    rng = np.random.default_rng(seed)
    # Rows far from zero mean: a one-pass E[x^2] - mean^2 would cancel.
    x = (rng.normal(size=(R, W)) * 3 + 20).astype(np.float32)
    w = rng.normal(size=W).astype(np.float32) if weighted else None
    b = rng.normal(size=W).astype(np.float32) if biased else None
    y = run_layer_norm(x, w, b, threads, seed)
    ref = ref_layer_norm(x, 1.0 if w is None else w, 0.0 if b is None else b, 1e-5)
    np.testing.assert_allclose(y, ref, rtol=5e-5, atol=5e-5)


# Bugs injected into layer_norm.metal: the deviations not centred, the barrier before the
# deviation partials are read, the bias added before the weight multiplies.
LAYER_NORM_MUTANTS = [
    [("const float d = xr[i] - mean;", "const float d = xr[i];")],
    [("    threadgroup_barrier(mem_flags::mem_threadgroup);\n    float dev", "    float dev")],
    [("        if (args.has_weight) v *= w[i];\n        if (args.has_bias) v += b[i];",
      "        if (args.has_bias) v += b[i];\n        if (args.has_weight) v *= w[i];")],
]


@pytest.mark.parametrize("edits", LAYER_NORM_MUTANTS, ids=lambda e: e[0][0].strip()[:30])
def test_layer_norm_check_catches_injected_bugs(edits):
    prog = msl.mutant("layer_norm.metal", edits)
    caught = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x = (rng.normal(size=(2, 2049)) * 3 + 20).astype(np.float32)
        w, b = rng.normal(size=2049).astype(np.float32), rng.normal(size=2049).astype(np.float32)
        y = run_layer_norm(x, w, b, 256, seed, prog=prog)
        caught += not np.allclose(y, ref_layer_norm(x, w, b, 1e-5), rtol=5e-5, atol=5e-5)
    assert caught >= 1


# ---- elementwise ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("op", ["add", "mul", "add_broadcast", "mul_broadcast", "scale"])
def test_binary_and_scale(seed, op):
    rng = np.random.default_rng(seed)
    T, W = 6, 33
    a = rng.normal(size=(T, W)).astype(np.float32)
    b = rng.normal(size=(T, W)).astype(np.float32)
    v = rng.normal(size=W).astype(np.float32)
    y = np.full_like(a, np.nan)
    n = T * W
    bc = op.endswith("broadcast")
    args = S["EltwiseArgs"](n, W, int(bc), 0.37)
    kind = op.split("_")[0]
    other = v if bc else b
    msl.program("elementwise.metal").launch(
        f"kernel_{kind}_f32", (groups(n, 64),), (64,), [args, a, other, y], seed=seed
    )
    ref = {"add": a + other, "mul": a * other, "scale": a * np.float32(0.37)}[kind]
    np.testing.assert_allclose(y, ref, rtol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("act,fc", [("silu", 0), ("gelu", 1), ("gelu_tanh", 2)])
def test_activation_and_glu(seed, act, fc):
    rng = np.random.default_rng(seed)
    g = (rng.normal(size=(4, 41)) * 4).astype(np.float32)
    g[0, :4] = [-100.0, 100.0, -30.0, 30.0]  # saturated tails: no NaN from exp/tanh overflow
    u = rng.normal(size=(4, 41)).astype(np.float32)
    n = g.size
    prog = msl.program("elementwise.metal", {"ACT": fc})
    args = S["EltwiseArgs"](n, 41, 0, 1.0)
    y = np.full_like(g, np.nan)
    prog.launch("kernel_activation_f32", (groups(n, 32),), (32,), [args, g, None, y], seed=seed)
    np.testing.assert_allclose(y, ref_act(act, g), rtol=1e-5, atol=1e-6)
    y = np.full_like(g, np.nan)
    prog.launch("kernel_glu_f32", (groups(n, 32),), (32,), [args, g, u, y], seed=seed)
    np.testing.assert_allclose(y, ref_act(act, g) * u, rtol=1e-5, atol=1e-6)


def test_gelu_erf_keeps_relative_precision_in_the_tails():
    """gelu (erf) through erfc: |x| up to 12, relative error within 3e-5 everywhere, also
    where 0.5 x (1 + erf) is ~1e-33 (the erfc fit is good to 1.2e-7; float z * z adds
    up to ~1e-5 at z ~ 8.5)."""
    x = np.linspace(-12, 12, 2001).astype(np.float32)
    y = np.full_like(x, np.nan)
    args = S["EltwiseArgs"](x.size, x.size, 0, 1.0)
    msl.program("elementwise.metal", {"ACT": 1}).launch(
        "kernel_activation_f32", (groups(x.size, 64),), (64,), [args, x, None, y]
    )
    # 0.5 x erfc(-x / sqrt 2): float64's 1 + erf itself cancels below x ~ -7.
    ref = 0.5 * x.astype(np.float64) * np.vectorize(math.erfc)(-x.astype(np.float64) / math.sqrt(2))
    assert np.all(ref[x < 0] < 0)  # down to ~-2e-32 at x = -12: the tail is in the reference
    np.testing.assert_allclose(y, ref, rtol=3e-5, atol=0)


# Bugs injected into gelu (erf): the two tails swapped, a coefficient of the erfc fit with
# the wrong sign.
GELU_MUTANTS = [
    [("return 0.5f * x * (x < 0.0f ? c : 2.0f - c);", "return 0.5f * x * (x < 0.0f ? 2.0f - c : c);")],
    [("t * (-0.18628806f +", "t * (0.18628806f +")],
]


@pytest.mark.parametrize("edits", GELU_MUTANTS, ids=lambda e: e[0][0].strip()[:30])
def test_gelu_check_catches_injected_bugs(edits):
    g = (np.random.default_rng(0).normal(size=(4, 41)) * 4).astype(np.float32)
    y = np.full_like(g, np.nan)
    args = S["EltwiseArgs"](g.size, 41, 0, 1.0)
    msl.mutant("elementwise.metal", edits, {"ACT": 1}).launch(
        "kernel_activation_f32", (groups(g.size, 32),), (32,), [args, g, None, y]
    )
    assert not np.allclose(y, ref_act("gelu", g), rtol=1e-5, atol=1e-6)


# ---- rope -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "neox,n_rot,factors",
    [(False, 16, False), (True, 16, False), (True, 8, False), (False, 16, True), (False, 6, False)],
)
def test_rope(seed, neox, n_rot, factors):
    rng = np.random.default_rng(seed)
    T, n_head, hd, n_past = 7, 3, 16, 3
    x = rng.normal(size=(T, n_head * hd)).astype(np.float32)
    ff = (
        rng.uniform(1, 8, size=n_rot // 2).astype(np.float32) if factors else np.ones(1, np.float32)
    )
    y = np.full_like(x, np.nan)
    args = S["RopeArgs"](
        T, n_head * hd, n_head, hd, n_rot, n_past, 0.5, math.log2(10000.0), 1.0, int(factors)
    )
    msl.program("rope.metal", {"ROPE_NEOX": int(neox)}).launch(
        "kernel_rope_f32", (groups(hd // 2, 32), n_head, T), (32, 1, 1), [args, x, ff, y], seed=seed
    )
    ref = ref_rope(
        x,
        n_head,
        hd,
        10000.0,
        neox,
        n_rot,
        pos0=n_past,
        freq_scale=0.5,
        factors=ff if factors else None,
    )
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_rope_far_positions_stay_close():
    """Float angles (Metal has no double): at position ~30000 the CPU's double angle and the
    GPU's float angle differ by ~1e-3 rad; the rotation error stays within that."""
    rng = np.random.default_rng(3)
    T, n_head, hd, n_past = 3, 2, 64, 30000
    x = rng.normal(size=(T, n_head * hd)).astype(np.float32)
    y = np.zeros_like(x)
    args = S["RopeArgs"](T, n_head * hd, n_head, hd, hd, n_past, 1.0, math.log2(10000.0), 1.0, 0)
    msl.program("rope.metal", {"ROPE_NEOX": 1}).launch(
        "kernel_rope_f32", (1, n_head, T), (32, 1, 1), [args, x, np.ones(1, np.float32), y]
    )
    ref = ref_rope(x, n_head, hd, 10000.0, True, hd, pos0=n_past)
    np.testing.assert_allclose(y, ref, atol=1e-2)


# ---- embedding ------------------------------------------------------------------------------


def _table(kind: str, rng, vocab: int, width: int):
    """(raw bytes (vocab, row_bytes), dequantized float64 rows) for a table of `kind`."""
    import gguf
    from gguf.quants import dequantize

    if kind == "f32":
        t = rng.normal(size=(vocab, width)).astype(np.float32)
        return t.view(np.uint8).reshape(vocab, -1), t.astype(np.float64)
    if kind == "f16":
        t = rng.normal(size=(vocab, width)).astype(np.float16)
        return t.view(np.uint8).reshape(vocab, -1), t.astype(np.float64)
    if kind == "bf16":  # the upper halves of normal floats
        bits = (rng.normal(size=(vocab, width)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        raw = bits.view(np.uint8).reshape(vocab, -1)
        return raw, dequantize(raw, gguf.GGMLQuantizationType.BF16).astype(np.float64).reshape(vocab, width)
    raw = random_blocks(kind, rng, vocab * width // BLOCK_ELEMS.get(kind, 32)).reshape(vocab, -1)
    qt = gguf.GGMLQuantizationType[kind.upper()]
    return raw, dequantize(raw, qt).astype(np.float64).reshape(vocab, width)


BLOCK_BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24, "iq4_nl": 18}
BLOCK_BYTES |= {"q2_K": 84, "q3_K": 110, "q4_K": 144, "q5_K": 176, "q6_K": 210, "iq4_xs": 136}
K_KINDS = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_xs"]  # 256-element super-blocks
BLOCK_ELEMS = dict.fromkeys(K_KINDS, 256)  # the rest: 32
# Byte offsets of the fp16 super-block scales of the K formats (csrc/quants/blocks.h); the
# 32-element formats have d at 0 (and m at 2 for q4_1 / q5_1).
K_SCALES = {"q2_K": (80, 82), "q3_K": (108,), "q4_K": (0, 2), "q5_K": (0, 2), "q6_K": (208,)}
K_SCALES["iq4_xs"] = (0,)
# Bytes holding the quants of the K formats with a min or an offset: zeroed, they leave what
# the quants are offset by (the -min of q2_K / q4_K / q5_K, -4 * d * scale of q3_K,
# -32 * d * scale of q6_K).
K_QUANTS = {"q2_K": slice(16, 80), "q3_K": slice(0, 96), "q4_K": slice(16, 144)}
K_QUANTS |= {"q5_K": slice(16, 176), "q6_K": slice(0, 192)}


def random_blocks(kind: str, rng, n_blocks: int) -> np.ndarray:
    """Random blocks: quants (and K formats' sub-block scales) uniform over all bit patterns,
    fp16 scales of varied magnitude."""
    nb = BLOCK_BYTES[kind]
    raw = rng.integers(0, 256, size=(n_blocks, nb), dtype=np.uint8)
    for off in K_SCALES.get(kind, (0,)):
        d = rng.uniform(0.5, 2.0, n_blocks) * 10.0 ** rng.integers(-4, 0, n_blocks)
        d = d.astype(np.float16)
        raw[:, off : off + 2] = d.view(np.uint8).reshape(-1, 2)
    if kind in ("q4_1", "q5_1"):
        m = (rng.normal(size=n_blocks) * 0.1).astype(np.float16)
        raw[:, 2:4] = m.view(np.uint8).reshape(-1, 2)
    return raw


FLOAT_KINDS = ["f32", "f16", "bf16"]
QUANT_KINDS = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", *K_KINDS]


def run_get_rows(kind: str, raw: np.ndarray, tokens: np.ndarray, width: int, seed: int, prog=None):
    """kernel_get_rows_<kind> over `tokens`: float tables one thread per element, block
    formats one per 16 elements (the plan launches them so)."""
    T, vocab = len(tokens), raw.shape[0]
    out = np.zeros((T, width), np.float32)
    per = 1 if kind in FLOAT_KINDS else 16
    args = S["EmbeddingArgs"](T, width, vocab, raw.shape[1])
    (prog or msl.program("embedding.metal")).launch(
        f"kernel_get_rows_{kind}",
        (groups(width // per, 32), T),
        (32, 1, 1),
        [args, raw, tokens, out],
        seed=seed,
    )
    return out


def embedding_width(kind: str) -> int:
    """Odd widths: 37 floats, 5 blocks of 32, 3 super-blocks."""
    return 37 if kind in FLOAT_KINDS else 32 * 5 if kind not in K_KINDS else 256 * 3


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", FLOAT_KINDS + QUANT_KINDS)
def test_embedding_rows(seed, kind):
    rng = np.random.default_rng(seed)
    vocab, T, width = 11, 5, embedding_width(kind)
    raw, deq = _table(kind, rng, vocab, width)
    raw = np.ascontiguousarray(raw)
    tokens = rng.integers(0, vocab, size=T).astype(np.int32)
    tokens[-1] = vocab  # out of range: NaN, never an out-of-bounds read
    out = run_get_rows(kind, raw, tokens, width, seed)
    np.testing.assert_array_equal(out[:-1], deq[tokens[:-1]].astype(np.float32))  # bit-exact
    assert np.isnan(out[-1]).all()


# Bugs injected into the shared dequantizers (quants.h, also matmul.metal's weight tiles):
# each must change some row, i.e. the random tables reach every field.
DEQUANT_MUTANTS = {
    "q5_0": [("quants.h", "return ((qh[j >> 3] >> (j & 7)) & 1) << 4;", "return ((qh[j >> 3] >> (j & 3)) & 1) << 4;")],
    "q3_K": [("quants.h", "v[i] = dl * (float)(lo - (hbit ? 0 : 4));", "v[i] = dl * (float)(lo - (hbit ? 4 : 0));")],
    "q6_K": [("quants.h", "hsh = 2 * (k0 >> 5);", "hsh = 2 * (k0 >> 6);")],
    "iq4_xs": [("quants.h", "const int hi = (b.scales_h >> (2 * j)) & 3;", "const int hi = (b.scales_h >> j) & 3;")],
    "bf16": [("quants.h", "return as_type<float>((uint)b << 16);", "return as_type<float>((uint)b << 15);")],
}


@pytest.mark.parametrize("kind", list(DEQUANT_MUTANTS))
def test_embedding_check_catches_injected_bugs(kind):
    rng = np.random.default_rng(0)
    width = embedding_width(kind)
    raw, deq = _table(kind, rng, 11, width)
    tokens = np.arange(11, dtype=np.int32)
    out = run_get_rows(kind, np.ascontiguousarray(raw), tokens, width, 0,
                       prog=msl.mutant("embedding.metal", DEQUANT_MUTANTS[kind]))
    assert not np.array_equal(out, deq.astype(np.float32))


# ---- quantize + matvec ----------------------------------------------------------------------


def run_quantize(x: np.ndarray, seed: int) -> np.ndarray:
    T, K = x.shape
    q = np.zeros(T * K // 32, Q8_ACT)
    args = S["MatvecArgs"](K, 0, T, 0)
    msl.program("matvec.metal").launch(
        "kernel_quantize_q8_act",
        (groups(T * K // 32, 4),),
        (128,),
        [args, x, q.view(np.uint8)],
        seed=seed,
    )
    return q


@pytest.mark.parametrize("seed", SEEDS)
def test_quantize_q8_act_matches_cpu_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(3, 160)) * 10.0 ** rng.integers(-3, 3)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block: d = 0, q = 0
    q = run_quantize(x, seed)
    d, s, qs = quantize_q8_act(x)
    np.testing.assert_array_equal(q["d"], d)
    np.testing.assert_array_equal(q["qs"], qs)
    np.testing.assert_array_equal(q["s"], s)


def run_matvec_q8(kind: str, K: int, R: int, T: int, NR: int, sg: int, seed: int, prog=None):
    """Random (R, K) weights of `kind` times quantized normal (T, K) activations by
    kernel_matvec_<kind> (of `prog`, else matvec.metal): (y, the activations the kernel
    multiplies as float64, the dequantized weights, their raw blocks)."""
    rng = np.random.default_rng(seed)
    w_raw, w = _table(kind, rng, R, K)
    w_raw = np.ascontiguousarray(w_raw)
    x = rng.normal(size=(T, K)).astype(np.float32)
    xq = run_quantize(x, seed)
    y = np.full((T, R), np.nan, np.float32)
    args = S["MatvecArgs"](K, R, T, w_raw.shape[1])
    (prog or msl.program("matvec.metal", {"NR": NR})).launch(
        f"kernel_matvec_{kind}",
        (groups(R, NR * sg), T),
        (32 * sg,),
        [args, w_raw, xq.view(np.uint8), y],
        seed=seed,
    )
    xd = (xq["d"][:, None].astype(np.float64) * xq["qs"]).reshape(T, K)
    return y, xd, w, w_raw


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl"])
@pytest.mark.parametrize(
    "K,R,T,NR,sg", [(32, 1, 1, 4, 2), (96, 13, 1, 4, 2), (1088, 7, 2, 2, 3), (64, 37, 3, 8, 1)]
)
def test_matvec_quantized(seed, kind, K, R, T, NR, sg):
    y, xd, w, _ = run_matvec_q8(kind, K, R, T, NR, sg, seed)
    ref = xd @ w.T
    bound = np.abs(xd) @ np.abs(w).T  # float32 rounding scale of the sum
    assert np.all(np.abs(y - ref) <= 1e-5 * bound + 1e-30), np.abs(y - ref).max()


def k_quant_matvec_error(kind: str, y, xd, w, w_raw) -> float:
    """The worst |y - ref| over its allowed bound (<= 1 passes). The kernels round the
    scaled-quant and the min terms separately, before they cancel: bound by both magnitudes,
    not by |w| alone."""
    import gguf
    from gguf.quants import dequantize

    ref = xd @ w.T
    if kind in K_QUANTS:
        blocks = w_raw.reshape(-1, BLOCK_BYTES[kind]).copy()
        blocks[:, K_QUANTS[kind]] = 0
        w0 = dequantize(blocks, gguf.GGMLQuantizationType[kind.upper()]).reshape(w.shape)
        bound = np.abs(xd) @ (np.abs(w - w0) + np.abs(w0)).T
    else:
        bound = np.abs(xd) @ np.abs(w).T
    err = np.abs(y.astype(np.float64) - ref) / (1e-5 * bound + 1e-30)
    return float(np.nan_to_num(err, nan=np.inf).max())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", K_KINDS)
@pytest.mark.parametrize(
    # 2304 = 9 super-blocks = 72 sub-blocks: lanes 0..7 take a third step.
    "K,R,T,NR,sg",
    [(256, 1, 1, 4, 2), (512, 13, 1, 4, 2), (2304, 7, 2, 2, 3), (256, 37, 3, 8, 1)],
)
def test_matvec_k_quants(seed, kind, K, R, T, NR, sg):
    y, xd, w, w_raw = run_matvec_q8(kind, K, R, T, NR, sg, seed)
    assert k_quant_matvec_error(kind, y, xd, w, w_raw) <= 1.0


# Bugs injected into matvec.metal on purpose (msl.mutant): each must fail the check above,
# or the tests prove less than they claim. A wrong nibble, shift, sign, offset or sub-block
# order of each super-block format.
K_MUTANTS = {
    "q2_K": [
        [("(sa & 0x0F) * qsum[0]", "(sa >> 4) * qsum[0]")],  # scale and min nibbles swapped
        [(" - (float)w.dmin * x.d * (float)imin;", ";")],  # mins forgotten
        [("const int sh = 2 * (j & 3);\n    int qsum", "const int sh = 2 * (j >> 2);\n    int qsum")],
    ],
    "q3_K": [
        [("((w.hmask[l] >> j) & 1) ? 0 : 4)", "((w.hmask[l] >> j) & 1) ? 4 : 0)")],  # hbit sense
        [("scale_q3_K(w.scales, 2 * j + 1) * half_sum[1]", "scale_q3_K(w.scales, 2 * j) * half_sum[1]")],
    ],
    "q4_K": [[(" - (float)dmin * (float)m * x.s;", ";")]],
    "q5_K": [[("(int)(((w.qh[l] >> j) & 1) << 4)", "(int)(((w.qh[l] >> (j ^ 1)) & 1) << 4)")]],
    "q6_K": [[("half_sum[l >> 4] += (q - 32)", "half_sum[l >> 4] += (q - 31)")]],
    "iq4_xs": [
        [("(float)(scale_iq4_xs(w, j) * sum)", "(float)((scale_iq4_xs(w, j) + 32) * sum)")],
        [("w.qs + 16 * j;\n    int sum = 0;", "w.qs + 16 * (j ^ 1);\n    int sum = 0;")],
    ],
}


@pytest.mark.parametrize(
    "kind,edits", [(k, e) for k, muts in K_MUTANTS.items() for e in muts], ids=lambda v: str(v)[:40]
)
def test_matvec_k_quant_checks_catch_injected_bugs(kind, edits):
    prog = msl.mutant("matvec.metal", edits, {"NR": 4})
    y, xd, w, w_raw = run_matvec_q8(kind, 512, 13, 1, 4, 2, 0, prog=prog)
    assert k_quant_matvec_error(kind, y, xd, w, w_raw) > 1.0


def run_matvec_float(kind, K, R, T, NR, sg, seed, prog=None) -> float:
    """kernel_matvec_<kind> on random weights: the worst error over its bound (<= 1 passes)."""
    rng = np.random.default_rng(seed)
    w_raw, w = _table(kind, rng, R, K)
    w_raw = np.ascontiguousarray(w_raw)
    x = rng.normal(size=(T, K)).astype(np.float32)
    y = np.full((T, R), np.nan, np.float32)
    args = S["MatvecArgs"](K, R, T, w_raw.shape[1])
    (prog or msl.program("matvec.metal", {"NR": NR})).launch(
        f"kernel_matvec_{kind}", (groups(R, NR * sg), T), (32 * sg,), [args, w_raw, x, y], seed=seed
    )
    ref = x.astype(np.float64) @ w.T
    bound = np.abs(x.astype(np.float64)) @ np.abs(w).T
    return float(np.nan_to_num(np.abs(y - ref) / (1e-5 * bound), nan=np.inf).max())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["f16", "bf16", "f32"])
@pytest.mark.parametrize("K,R,T,NR,sg", [(64, 5, 1, 4, 2), (37, 9, 2, 2, 2), (1024, 3, 1, 1, 4)])
def test_matvec_float(seed, kind, K, R, T, NR, sg):
    assert run_matvec_float(kind, K, R, T, NR, sg, seed) <= 1.0


@pytest.mark.parametrize(
    "edits",
    [
        # the bf16 bits read as an integer, not as the upper half of a float
        [("kernel_matvec_bf16, ushort, ushort4, bf16_to_f32)", "kernel_matvec_bf16, ushort, ushort4, (float))")],
    ],
)
def test_matvec_bf16_check_catches_injected_bugs(edits):
    for K in (64, 37):  # the vector and the scalar path
        assert run_matvec_float("bf16", K, 5, 1, 4, 2, 0, prog=msl.mutant("matvec.metal", edits, {"NR": 4})) > 1.0


# ---- copy_cols (last_row, slice) -------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("T,src_width,offset,width", [(1, 37, 0, 37), (5, 96, 32, 64), (3, 2049, 7, 1)])
def test_copy_cols(seed, T, src_width, offset, width):
    x = np.random.default_rng(seed).normal(size=(T, src_width)).astype(np.float32)
    y = np.full((T, width), np.nan, np.float32)
    args = S["CopyArgs"](T, src_width, offset, width)
    msl.program("copy.metal").launch(
        "kernel_copy_cols_f32", (groups(width, 256), T), (256,), [args, x, y], seed=seed
    )
    np.testing.assert_array_equal(y, x[:, offset : offset + width])


# ---- attention ------------------------------------------------------------------------------

ATTN_HEADS = [  # n_head, n_kv, hd, window, softcap
    (4, 4, 16, 0, 0.0),
    (6, 2, 16, 0, 0.0),
    (4, 2, 40, 5, 0.0),
    (2, 1, 64, 0, 3.0),
    (2, 2, 256, 0, 0.0),
]


def run_attention(q, k, v, n_head, n_kv, hd, window, softcap, chunks, nsg, seed, capacity=None,
                  mode="rows", n_split=1, progs=None):
    """Step through `chunks` as the engine does: append K/V, then attend, per step. mode
    "rows": kernel_attention_f16 (n_split ranges per row, merged by kernel_attention_merge_f32
    when n_split > 1); "tile": kernel_attention_tile_f16 for every step, whatever its size.
    `progs` replaces (attention.metal, attention_tile.metal) programs (mutants)."""
    T = q.shape[0]
    kvw = n_kv * hd
    cap = capacity or T
    kc = np.zeros((cap, kvw), np.float16)
    vc = np.zeros((cap, kvw), np.float16)
    out = np.full((T, n_head * hd), np.nan, np.float32)
    prog, tile = progs or (msl.program("attention.metal"), msl.program("attention_tile.metal"))
    n_past = 0
    for c in chunks:
        sl = slice(n_past, n_past + c)
        qs, ks, vs = (np.ascontiguousarray(a[sl]) for a in (q, k, v))
        o = np.full((c, n_head * hd), np.nan, np.float32)
        args = S["AttnArgs"](c, n_head, n_kv, hd, n_past, cap, window, 1.0 / math.sqrt(hd), softcap, n_split)
        prog.launch(
            "kernel_kv_append",
            (groups(c * kvw, 64),),
            (64,),
            [args, ks, vs, kc.view(np.uint16), vc.view(np.uint16)],
            seed=seed,
        )
        cache = [kc.view(np.uint16), vc.view(np.uint16)]
        if mode == "tile":
            tile.launch("kernel_attention_tile_f16", (groups(c, 32), n_head), (128,), [args, qs, *cache, o], seed=seed)
        elif n_split == 1:
            prog.launch("kernel_attention_f16", (n_head, c), (32 * nsg,), [args, qs, *cache, o], seed=seed)
        else:
            part = np.full(c * n_head * n_split * (hd + 2), np.nan, np.float32)  # all written
            prog.launch("kernel_attention_f16", (n_head, c, n_split), (32 * nsg,), [args, qs, *cache, part], seed=seed)
            prog.launch("kernel_attention_merge_f32", (n_head, c), (64,), [args, part, o], seed=seed)
        out[sl] = o
        n_past += c
    return out


def attention_inputs(seed, T, n_head, n_kv, hd):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(T, n_head * hd)).astype(np.float32)
    k = rng.normal(size=(T, n_kv * hd)).astype(np.float32)
    v = rng.normal(size=(T, n_kv * hd)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_head,n_kv,hd,window,softcap", ATTN_HEADS)
@pytest.mark.parametrize("chunks,nsg", [([13], 1), ([1] * 13, 4), ([5, 1, 7], 3)])
def test_attention(seed, n_head, n_kv, hd, window, softcap, chunks, nsg):
    q, k, v = attention_inputs(seed, 13, n_head, n_kv, hd)
    got = run_attention(q, k, v, n_head, n_kv, hd, window, softcap, chunks, nsg, seed)
    ref = ref_attention(q, k, v, n_head, n_kv, hd, window, softcap)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_sliding_window_ring_buffer_wraps(seed):
    """A window of 4 with steps of at most 3 tokens keeps 6 cache rows: 20 tokens wrap it."""
    rng = np.random.default_rng(seed)
    T, hd = 20, 16
    q, k, v = (rng.normal(size=(T, hd)).astype(np.float32) for _ in range(3))
    got = run_attention(q, k, v, 1, 1, hd, 4, 0.0, [3, 1, 2, 3, 3, 3, 1, 1, 3], 2, seed, capacity=6)
    np.testing.assert_allclose(
        got, ref_attention(q, k, v, 1, 1, hd, window=4), rtol=1e-4, atol=1e-5
    )


# ---- split-KV decode attention (flash-decoding) ----------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_head,n_kv,hd,window,softcap", ATTN_HEADS)
# 37 positions: a prefill of 6 (rows shorter than n_split: empty ranges), then decode steps,
# a 3-row step among them; n_split 2, 3, 8 over 1 and 4 simdgroups.
@pytest.mark.parametrize("chunks,nsg,n_split", [([6] + [1] * 31, 4, 3), ([6, 3] + [1] * 28, 1, 8), ([30, 1, 1, 5], 2, 2)])
def test_split_attention(seed, n_head, n_kv, hd, window, softcap, chunks, nsg, n_split):
    q, k, v = attention_inputs(seed, 37, n_head, n_kv, hd)
    got = run_attention(q, k, v, n_head, n_kv, hd, window, softcap, chunks, nsg, seed, n_split=n_split)
    ref = ref_attention(q, k, v, n_head, n_kv, hd, window, softcap)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_split", [2, 5])
def test_split_attention_ring_buffer_wraps(seed, n_split):
    """Window 7, steps of at most 3 rows: 9 cache rows, 30 tokens wrap them three times."""
    rng = np.random.default_rng(seed)
    T, hd = 30, 24
    q, k, v = (rng.normal(size=(T, 2 * hd)).astype(np.float32) for _ in range(3))
    chunks = [3, 1, 2, 3, 3, 3, 1, 1, 3, 1, 1, 1, 2, 3, 2]
    got = run_attention(q, k, v, 2, 2, hd, 7, 0.0, chunks, 2, seed, capacity=9, n_split=n_split)
    np.testing.assert_allclose(got, ref_attention(q, k, v, 2, 2, hd, window=7), rtol=1e-4, atol=1e-5)


# Bugs injected into the split path: ranges that overlap, a merge that forgets to rescale,
# a partial sum written as 1. Each must fail test_split_attention's check.
SPLIT_MUTANTS = [
    [("const int r0 = lo + z * range;", "const int r0 = lo + z * max(1, range - 1);")],
    [("o += pp[z * stride + 2 + d] * exp(pp[z * stride] - M);", "o += pp[z * stride + 2 + d];")],
    [("            pp[1] = L;  // 0 for an empty range", "            pp[1] = L > 0.0f ? 1.0f : 0.0f;")],
]


@pytest.mark.parametrize("edits", SPLIT_MUTANTS, ids=lambda e: e[0][0].strip()[:30])
def test_split_attention_check_catches_injected_bugs(edits):
    n_head, n_kv, hd, window, softcap = 4, 2, 40, 0, 0.0
    q, k, v = attention_inputs(0, 37, n_head, n_kv, hd)
    progs = (msl.mutant("attention.metal", edits), msl.program("attention_tile.metal"))
    got = run_attention(q, k, v, n_head, n_kv, hd, window, softcap, [6] + [1] * 31, 4, 0, n_split=3, progs=progs)
    ref = ref_attention(q, k, v, n_head, n_kv, hd, window, softcap)
    assert not np.allclose(got, ref, rtol=1e-4, atol=1e-5)


# ---- prefill attention on tiles ----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n_head,n_kv,hd,window,softcap", ATTN_HEADS)
# One step of 37 rows (2 query blocks, 2+ key tiles); steps after a prefix (n_past > 0);
# single rows and short steps (a block mostly past T).
@pytest.mark.parametrize("chunks", [[37], [5, 20, 12], [1, 1, 9, 3, 1, 22]])
def test_tile_attention(seed, n_head, n_kv, hd, window, softcap, chunks):
    q, k, v = attention_inputs(seed, 37, n_head, n_kv, hd)
    cap = window + max(chunks) - 1 if window else None
    got = run_attention(q, k, v, n_head, n_kv, hd, window, softcap, chunks, 4, seed, capacity=cap, mode="tile")
    ref = ref_attention(q, k, v, n_head, n_kv, hd, window, softcap)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_tile_attention_ring_buffer_wraps(seed):
    """Window 6, steps of up to 16 rows: 21 cache rows, 70 tokens wrap them."""
    rng = np.random.default_rng(seed)
    T, hd = 70, 32
    q, k, v = (rng.normal(size=(T, hd)).astype(np.float32) for _ in range(3))
    chunks = [16, 9, 1, 16, 12, 16]
    got = run_attention(q, k, v, 1, 1, hd, 6, 0.0, chunks, 4, seed, capacity=21, mode="tile")
    np.testing.assert_allclose(got, ref_attention(q, k, v, 1, 1, hd, window=6), rtol=1e-4, atol=1e-5)


# Bugs injected into the tile kernel: each of its two tile barriers, the rescale of O when
# the running max grows, the window ignored, K loaded untransposed, a lost key block. Each
# must fail test_tile_attention's check on a step of 70 rows under a window of 40 (the 2nd
# and 3rd query blocks see two key tiles each).
TILE_MUTANTS = [
    [("        threadgroup_barrier(mem_flags::mem_threadgroup);  // the previous", "        // the previous")],
    [("        }\n        threadgroup_barrier(mem_flags::mem_threadgroup);\n\n        // 1.", "        }\n\n        // 1.")],
    [("for (int c = 0; c < d8; ++c) simdgroup_multiply(om[c], dm, om[c]);", "")],
    [("if (j <= pos && j >= lo) {", "if (j <= pos) {")],
    [("simdgroup_load(kt, sk + kb * 8 * hd + 8 * c, hd, 0, true);", "simdgroup_load(kt, sk + kb * 8 * hd + 8 * c, hd, 0, false);")],
    [("for (int kb = 0; kb < bk / 8; ++kb) {\n            simdgroup_float8x8 pm;", "for (int kb = 1; kb < bk / 8; ++kb) {\n            simdgroup_float8x8 pm;")],
]


@pytest.mark.parametrize("edits", TILE_MUTANTS, ids=lambda e: e[0][0].strip()[:30])
def test_tile_attention_check_catches_injected_bugs(edits):
    n_head, n_kv, hd, window, softcap = 4, 2, 40, 40, 0.0
    q, k, v = attention_inputs(0, 70, n_head, n_kv, hd)
    progs = (msl.program("attention.metal"), msl.mutant("attention_tile.metal", edits))
    ref = ref_attention(q, k, v, n_head, n_kv, hd, window, softcap)
    caught = 0
    for seed in (0, 1):  # a missing barrier shows under some thread orders, not necessarily all
        got = run_attention(q, k, v, n_head, n_kv, hd, window, softcap, [70], 4, seed, mode="tile", progs=progs)
        caught += not np.allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert caught >= 1


# ---- argmax ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n,T,threads", [(1, 1, 32), (37, 2, 32), (1000, 3, 96), (49153, 1, 1024)])
def test_argmax_first_of_the_largest(seed, n, T, threads):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, n)).astype(np.float32)
    if n > 3:
        x[0, [n // 3, n - 1]] = 10.0  # a tie: the first index wins
        x[-1, rng.integers(0, n, 5)] = np.nan  # NaN never wins
    out = np.full(T, -1, np.int32)
    msl.program("argmax.metal").launch(
        "kernel_argmax_f32", (T,), (threads,), [S["ArgmaxArgs"](n, T), x, out], seed=seed
    )
    np.testing.assert_array_equal(out, np.nanargmax(x, axis=1))


def test_argmax_all_minus_infinity_is_index_zero():
    x = np.full((1, 50), -np.inf, np.float32)
    out = np.full(1, -1, np.int32)
    msl.program("argmax.metal").launch(
        "kernel_argmax_f32", (1,), (64,), [S["ArgmaxArgs"](50, 1), x, out]
    )
    assert out[0] == 0


ARGMAX_THREADS = 1024  # kernels.def: what the host dispatches (Backend::device_argmax)


def run_argmax(x: np.ndarray, threads: int = ARGMAX_THREADS, seed: int = 0, prog=None) -> list[int]:
    T, n = x.shape
    out = np.full(T, -1, np.int32)
    (prog or msl.program("argmax.metal")).launch(
        "kernel_argmax_f32", (T,), (threads,), [S["ArgmaxArgs"](n, T), np.ascontiguousarray(x), out], seed=seed
    )
    return out.tolist()


def ref_argmax(x: np.ndarray) -> list[int]:
    """Per row the first index of the largest non-NaN value, 0 for a row of NaN only. (NumPy's
    nanargmax reads NaN as -inf, so [NaN, -inf] gives 0 there and 1 here.)"""
    out = []
    for row in x:
        ok = ~np.isnan(row)
        out.append(int(np.flatnonzero(ok & (row == row[ok].max()))[0]) if ok.any() else 0)
    return out


def argmax_rows(n: int, seed: int) -> np.ndarray:
    """Rows of n logits for the host's threadgroup of 1024, each with a known answer: random
    normal; a tie between index 1023 (thread 1023, simdgroup 31) and 1024 (thread 0: a lower
    thread sees the later index first); a tie between the last index and an earlier one;
    every value equal; NaN at index 0 and scattered NaNs (NaN never wins, unlike the CPU's
    argmax, which returns 0 for a row starting with NaN); NaN on the largest value's
    neighbours; -inf everywhere but one finite value near the end; -inf everywhere with NaN
    at 0 (the first -inf wins); +inf twice (the first wins)."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(9, n)).astype(np.float32) * 4
    rows[1, [1023 % n, 1024 % n]] = 50.0
    rows[2, [rng.integers(0, n - 1), n - 1]] = 50.0
    rows[3] = 1.5
    rows[4, 0] = np.nan
    rows[4, rng.integers(0, n, 1 + n // 100)] = np.nan
    top = int(np.nanargmax(rows[5]))
    rows[5, [max(top - 1, 0), min(top + 1, n - 1)]] = np.nan if n > 2 else rows[5, top]
    rows[6] = -np.inf
    rows[6, n - 1 - n // 7] = -1e30
    rows[7] = -np.inf
    rows[7, 0] = np.nan
    rows[8, [n // 2, n - 1]] = np.inf
    return rows


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", [3, 1000, 1023, 1025, 49152 + 7, 151_936 + 1, 262_144, 262_144 + 5])
def test_argmax_host_threadgroup_odd_vocabularies(seed, n):
    """kernel_argmax_f32 as the host launches it (one threadgroup of 1024 per row) on
    vocabularies smaller than the threadgroup, around one stride, and of real models
    (SmolLM2's 49,152, Qwen2's 151,936, Gemma 3's 262,144), plus one; every kind of row of
    argmax_rows."""
    x = argmax_rows(n, seed)
    want = ref_argmax(x)
    if n > 1024:
        assert want[1] == 1023
    assert want[3] == 0 and want[4] != 0 and want[7] == 1
    assert run_argmax(x, seed=seed) == want


def test_argmax_all_nan_row_is_index_zero():
    x = np.full((2, 3000), np.nan, np.float32)
    x[1, 2999] = -np.inf  # -inf beats NaN
    assert run_argmax(x, seed=3) == [0, 2999]


@pytest.mark.parametrize("seed", SEEDS)
def test_argmax_ties_and_nan_from_a_small_alphabet(seed):
    """Many rows drawn from a few values (so most rows tie, many between threads and
    simdgroups), with NaN and +-inf, at every threadgroup size a simdgroup multiple."""
    rng = np.random.default_rng(seed)
    alphabet = np.array([-np.inf, -1.0, 0.0, 2.0, 2.0, 3.0, np.nan, np.inf], np.float32)
    for n, threads in [(1, 32), (31, 32), (64, 64), (300, 96), (2047, 1024), (5000, 256)]:
        # one value in a thousand is the largest (+inf), so ties of 3.0 dominate
        p = np.array([1, 10, 10, 10, 10, 10, 5, 0.02])
        x = rng.choice(alphabet, size=(8, n), p=p / p.sum()).astype(np.float32)
        x[0] = np.nan
        x[0, n - 1] = 0.0
        assert run_argmax(x, threads, seed) == ref_argmax(x), (n, threads)


# Bugs the checks above must catch: the tie rule dropped (a lower thread keeps the later
# index), NaN allowed to win, the barrier before simdgroup 0 reads the partial winners,
# garbage partials of absent simdgroups read.
ARGMAX_MUTANTS = {
    "no tie rule": [("return v > bv || (v == bv && i < bi);", "return v > bv;")],
    "NaN wins": [("return v > bv || (v == bv && i < bi);", "return !(v <= bv) || (v == bv && i < bi);")],
    "no barrier": [("threadgroup_barrier(mem_flags::mem_threadgroup);", "")],
    "absent partials": [("bv = lane < nsg ? tg_v[lane] : -INFINITY;", "bv = tg_v[lane];")],
}


@pytest.mark.parametrize("edits", ARGMAX_MUTANTS.values(), ids=ARGMAX_MUTANTS.keys())
def test_argmax_checks_catch_injected_bugs(edits):
    prog = msl.mutant("argmax.metal", edits)
    caught = 0
    for seed, (n, threads) in enumerate([(49152 + 7, 1024), (300, 96), (2047, 1024)]):
        x = argmax_rows(n, seed)
        caught += run_argmax(x, threads, seed, prog) != ref_argmax(x)
    assert caught >= 1


# ---- prefill matmul (simdgroup_matrix tiles) -------------------------------------------------

MM_TYPE = {  # function constant MM_TYPE of kernel_matmul: STRATA_MM_* of metal/strata_args.h
    name.lower().replace("_k", "_K"): int(v)
    for name, v in __import__("re").findall(r"#define STRATA_MM_(\w+) (\d+)", (msl.METAL / "strata_args.h").read_text())
}
MM_FLOAT = ["f32", "f16", "bf16"]
MM_MAIN = ["f32", "f16", "q4_0", "q8_0", "q4_K", "q6_K"]  # every seed; the other formats seed 0


def run_matmul(kind: str, K: int, R: int, T: int, seed: int, prog=None) -> float:
    """kernel_matmul on random (R, K) weights of `kind` and normal (T, K) activations (the
    q8 blocks of kernel_quantize_q8_act for block formats): the worst |y - ref| over its
    bound (<= 1 passes), ref in float64 from the same operands."""
    rng = np.random.default_rng(seed)
    w_raw, w = _table(kind, rng, R, K)
    w_raw = np.ascontiguousarray(w_raw)
    x = rng.normal(size=(T, K)).astype(np.float32)
    if kind in MM_FLOAT:
        xbuf, xd = x, x.astype(np.float64)
    else:
        xq = run_quantize(x, seed)
        xbuf, xd = xq.view(np.uint8), (xq["d"][:, None].astype(np.float64) * xq["qs"]).reshape(T, K)
    y = np.full((T + 1, R), np.nan, np.float32)  # a row past T: must stay untouched
    args = S["MatvecArgs"](K, R, T, w_raw.shape[1])
    (prog or msl.program("matmul.metal", {"MM_TYPE": MM_TYPE[kind]})).launch(
        "kernel_matmul", (groups(R, 64), groups(T, 32)), (128,), [args, w_raw, xbuf, y], seed=seed
    )
    assert np.isnan(y[T]).all(), "wrote past row T"
    ref = xd @ w.T
    bound = np.abs(xd) @ np.abs(w).T
    return float(np.nan_to_num(np.abs(y[:T] - ref) / (2e-5 * bound + 1e-30), nan=np.inf).max())


def matmul_sizes(kind: str) -> list[tuple[int, int, int]]:
    """(K, R, T): one partial tile; two tiles each way, partial (R 70 > 64, T 33 > 32);
    exact tiles. K: odd for floats, 3 / 5 blocks of 32, 1 / 2 super-blocks."""
    if kind in MM_FLOAT:
        return [(37, 13, 9), (100, 70, 33), (64, 64, 32)]
    if kind in K_KINDS:
        return [(256, 13, 9), (512, 70, 33), (256, 64, 32)]
    return [(96, 13, 9), (160, 70, 33), (64, 64, 32)]


@pytest.mark.parametrize(
    "kind,seed,K,R,T",
    [
        (kind, seed, *size)
        for kind in MM_TYPE
        for seed in (SEEDS if kind in MM_MAIN else [0])
        for size in matmul_sizes(kind)
    ],
)
def test_matmul(kind, seed, K, R, T):
    assert run_matmul(kind, K, R, T, seed) <= 1.0


def test_matmul_types_cover_the_formats():
    assert set(MM_TYPE) == set(MM_FLOAT + QUANT_KINDS)


# Bugs injected into matmul.metal: a missing barrier, an untransposed weight tile, a wrong
# tile offset, a lost K step. Each must fail test_matmul's check.
MM_MUTANTS = [
    [("        threadgroup_barrier(mem_flags::mem_threadgroup);\n        for (int kk", "        for (int kk")],
    [("        }\n        threadgroup_barrier(mem_flags::mem_threadgroup);\n    }", "        }\n    }")],
    [("    threadgroup_barrier(mem_flags::mem_threadgroup);\n    for (int e", "    for (int e")],
    [("MM_BK, 0, true);", "MM_BK, 0, false);")],
    [("sx + (xr + 8 * i) * MM_BK + kk", "sx + (xr + 4 * i) * MM_BK + kk")],
    [("for (int kk = 0; kk < MM_BK; kk += 8)", "for (int kk = 8; kk < MM_BK; kk += 8)")],
]


@pytest.mark.parametrize("edits", MM_MUTANTS, ids=lambda e: e[0][0].strip()[:30])
def test_matmul_check_catches_injected_bugs(edits):
    prog = msl.mutant("matmul.metal", edits, {"MM_TYPE": MM_TYPE["q4_0"]})
    assert run_matmul("q4_0", 160, 70, 33, 0, prog=prog) > 1.0

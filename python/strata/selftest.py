"""`strata selftest` / `python -m strata.selftest`: every kernel of every backend here,
checked on small seeded inputs.

Each case is a one-op graph (:mod:`strata.opgraph`) with a float64 NumPy reference and a
per-element error bound. Every CPU kernel set this machine can run (``cpu:avx512``,
``cpu:scalar``, ...) is checked against NumPy; every other backend (cuda, metal) against
NumPy too, with its largest difference from the CPU backend shown beside it, so a wrong
reference (both disagree with NumPy, not with each other) is told apart from a wrong
kernel. The output is a table with one row per (backend, kernel): pass / FAIL / skipped,
the largest absolute error, the largest error as a fraction of its bound (pass means
<= 1), the time of the steps in ms and, on a FAIL, where and why. Exit status 0 when nothing
failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Callable, TextIO

import numpy as np

from . import __version__, _core
from .backends import available_backends
from .errors import StrataError, StrataValueError
from .opgraph import OpGraph
from .quant_types import QUANT_TYPES_BY_NAME, SUPPORTED_WEIGHT_TYPES

try:
    from gguf import quants as gguf_quants
except ImportError:  # an old gguf without the NumPy (de)quantizers
    gguf_quants = None

N_THREADS = 2  # at least two, so the row split between threads is exercised
REPEATS = 3  # the time column is the fastest of this many passes (the first warms up)
FLOAT_TYPES = ("F32", "F16", "BF16")
# Byte offsets of the fp16 scale fields (d, and m / dmin where the format has one) inside one
# block (ggml-common.h): random blocks get sane scales there, random bytes elsewhere.
FP16_FIELDS = {
    "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2), "Q8_0": (0,), "IQ4_NL": (0,),
    "Q2_K": (80, 82), "Q3_K": (108,), "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,),
    "IQ4_XS": (0,),
}
# Elements per block of the 8-bit activations the CPU matmul quantizes its input to
# (q8_0 for the 32-element formats, q8_K for the 256-element ones; float types: none).
ACT_BLOCK = {name: min(QUANT_TYPES_BY_NAME[name].block_size, 256) for name in FP16_FIELDS}


@dataclass
class Case:
    """One kernel check: run ``graph`` up to ``out`` over ``n_tokens`` tokens in steps of
    ``chunks``, compare with ``want`` within ``bound`` (``gpu_bound`` off the CPU)."""

    kernel: str
    graph: OpGraph | None
    out: int
    n_tokens: int
    want: np.ndarray
    bound: np.ndarray
    chunks: list[int] | None = None
    n_batch: int = 64
    gpu_bound: np.ndarray | None = None
    skip: str = ""
    # Cases that are not one eval of ``graph``: (backend, isa, repeats) -> (output, seconds).
    runner: Callable[[str, str, int], tuple[np.ndarray, float]] | None = None


@dataclass
class Row:
    backend: str
    kernel: str
    status: str  # "pass", "FAIL" or "skipped"
    max_abs_err: float | None = None
    err_over_bound: float | None = None
    ms: float | None = None
    vs_cpu: float | None = None  # largest |output - CPU backend's output|, off the CPU
    note: str = ""


@dataclass
class Check:
    ok: bool
    max_abs_err: float | None
    err_over_bound: float | None
    note: str


def compare(got: np.ndarray, want: np.ndarray, bound: np.ndarray) -> Check:
    """Whether every element of ``got`` is finite and within ``bound`` (absolute, broadcast
    against ``want``) of ``want``; on failure the note names the worst element."""
    got = np.asarray(got, np.float64)
    if got.shape != want.shape:
        return Check(False, None, None, f"output shape {got.shape}, expected {want.shape}")
    bad = ~np.isfinite(got)
    if bad.any():
        i = np.unravel_index(np.argmax(bad), got.shape)
        return Check(False, None, None, f"{int(bad.sum())} non-finite outputs, first {got[i]} "
                     f"at {list(map(int, i))}")
    err = np.abs(got - want)
    bound = np.broadcast_to(bound, want.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(err == 0, 0.0, err / bound)
    i = np.unravel_index(np.argmax(ratio), ratio.shape)
    ok = bool(ratio[i] <= 1.0)
    note = "" if ok else (f"at {list(map(int, i))}: got {got[i]:.7g}, want {want[i]:.7g}, "
                          f"bound {bound[i]:.3g}")
    return Check(ok, float(err.max()), float(ratio[i]), note)


def rel_bound(want: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    return rtol * np.abs(want) + atol


# ---- NumPy float64 references -----------------------------------------------------------
ACTIVATIONS = {
    "silu": lambda x: x / (1 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
}
"""Float64 references of the activations, by the name of :class:`strata._core.Activation`."""


def ref_rope(x, n_head, hd, n_rot, neox, freq_scale=1.0, factors=None, attn_factor=1.0):
    """Rotary embedding at positions 0..T-1, base 10000."""
    y = x.astype(np.float64).reshape(len(x), n_head, hd).copy()
    theta = np.arange(len(x))[:, None] * freq_scale * 10000.0 ** (-2 * np.arange(n_rot // 2) / n_rot)
    theta = theta / (1 if factors is None else factors)
    c, s = (f(theta)[:, None, :] * attn_factor for f in (np.cos, np.sin))
    a, b = (slice(0, n_rot // 2), slice(n_rot // 2, n_rot)) if neox else (slice(0, n_rot, 2), slice(1, n_rot, 2))
    y[..., a], y[..., b] = y[..., a] * c - y[..., b] * s, y[..., a] * s + y[..., b] * c
    return y.reshape(x.shape)


def ref_attention(q, k, v, n_head, n_kv, hd, window=0, softcap=0.0):
    """Causal attention of row t over rows 0..t (the last ``window`` of them), GQA; the
    cache holds K and V in fp16."""
    T = len(q)
    qh = q.astype(np.float64).reshape(T, n_head, hd)
    group = np.arange(n_head) // (n_head // n_kv)
    kh, vh = (a.astype(np.float16).astype(np.float64).reshape(T, n_kv, hd)[:, group] for a in (k, v))
    s = np.einsum("thd,uhd->htu", qh, kh) / math.sqrt(hd)
    if softcap:
        s = softcap * np.tanh(s / softcap)
    t, u = np.arange(T)[:, None], np.arange(T)[None, :]
    s = np.where((u <= t) & ((window == 0) | (t - u < window)), s, -np.inf)
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    return np.einsum("htu,uhd->thd", p / p.sum(axis=-1, keepdims=True), vh).reshape(T, -1)


def matmul_bound(w: np.ndarray, x: np.ndarray, act_block: int | None, f16: bool) -> np.ndarray:
    """Bound on |x @ w.T - float64| (as tests/test_quants.py derives it). fp32 sums of
    products no larger than |w|.|x| + max|w| sum|x|; with 8-bit activations, each x off by
    half its block's step amax/127; with f16 operands (GPU prefill), 2^-11 relative each."""
    ax, aw = np.abs(x.astype(np.float64)), np.abs(w)
    dot = ax @ aw.T
    bound = (x.shape[1] // 32 + 64) * 2.0**-22 * (dot + ax.sum(1, keepdims=True) * aw.max(1))
    if act_block:
        step = ax.reshape(len(x), -1, act_block).max(axis=2) / 127.0
        bound += 1.001 * (np.repeat(step / 2, act_block, axis=1) @ aw.T)
    if f16:
        bound += 2.0**-10 * dot + 2.0**-24 * (ax.sum(1, keepdims=True) * aw.max(1)
                                              + ax.max(1, keepdims=True) * aw.sum(1))
    return bound


# ---- inputs ---------------------------------------------------------------------------
def random_weights(name: str, rows: int, width: int, rng: np.random.Generator):
    """(raw bytes, float64 values) of a rows x width weight of type ``name``: normal values
    for float types; random blocks under fp16 scales in +-[1e-3, 1e-1] (every bit pattern
    of the quants is valid) for quantized types, dequantized by the gguf package."""
    f = rng.standard_normal((rows, width)).astype(np.float32)
    if name == "F32":
        return f.tobytes(), f.astype(np.float64)
    if name == "F16":
        return f.astype(np.float16).tobytes(), f.astype(np.float16).astype(np.float64)
    if name == "BF16":
        bits = f.view(np.uint32) >> 16
        return bits.astype(np.uint16).tobytes(), (bits << 16).view(np.float32).astype(np.float64)
    qt = QUANT_TYPES_BY_NAME[name]
    n_blocks = rows * width // qt.block_size
    raw = rng.integers(0, 256, size=(n_blocks, qt.type_size), dtype=np.uint8)
    for off in FP16_FIELDS[name]:
        d = rng.uniform(1e-3, 1e-1, n_blocks) * rng.choice([-1.0, 1.0], n_blocks)
        raw[:, off : off + 2] = d.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    values = gguf_quants.dequantize(raw.ravel(), qt.id)
    return raw.tobytes(), np.asarray(values, np.float64).reshape(rows, width)


def random_input(rows: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Normal values with a few outliers per row, so activation blocks differ in scale."""
    x = rng.standard_normal((rows, width))
    k = max(1, width // 64)
    for r in range(rows):
        x[r, rng.integers(0, width, k)] *= rng.uniform(5, 30, k)
    return x.astype(np.float32)


# ---- cases ----------------------------------------------------------------------------
def _rng(kernel: str) -> np.random.Generator:
    """A generator per kernel name, so a case's data does not depend on which others run."""
    return np.random.default_rng(zlib.crc32(kernel.encode()))


def _weight_types() -> list[str]:
    return sorted(SUPPORTED_WEIGHT_TYPES, key=lambda n: QUANT_TYPES_BY_NAME[n].id)


def matmul_cases(names: Iterable[str] | None = None) -> Iterator[Case]:
    """Decode (one row per step) and prefill (9 rows in one step: enough for the Metal
    backend's tile matmul, which takes steps of 8 rows or more) of each weight type (or of
    those in ``names``): 37 output rows, K = 300 for float types (no multiple of 8), else
    512 (2 super-blocks)."""
    for name in _weight_types():
        if names is not None and name not in names:
            continue
        kernel = f"matmul {name}"
        if gguf_quants is None and name not in FLOAT_TYPES:
            yield from (_skipped(f"{kernel} {path}") for path in ("decode", "prefill"))
            continue
        rng = _rng(kernel)
        R, K, T = 37, 300 if name in FLOAT_TYPES else 512, 9
        raw, w = random_weights(name, R, K, rng)
        x = random_input(T, K, rng)
        g = OpGraph()
        out = g.op(_core.Op.matmul, [g.rows(x), g.weight("w", raw, QUANT_TYPES_BY_NAME[name].id, K, R)])
        want = x.astype(np.float64) @ w.T
        act = ACT_BLOCK.get(name)
        bound, gpu_bound = matmul_bound(w, x, act, False), matmul_bound(w, x, act, True)
        for path, chunks in (("decode", [1] * T), ("prefill", [T])):
            yield Case(f"{kernel} {path}", g, out, T, want, bound, chunks, gpu_bound=gpu_bound)


def _skipped(kernel: str) -> Case:
    return Case(kernel, None, 0, 0, np.zeros(0), np.zeros(0),
                skip="skipped: gguf not installed (its quants module dequantizes the reference)")


EMBEDDING_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q6_K")


def embedding_cases(names: Iterable[str] | None = None) -> Iterator[Case]:
    """Rows of a table of each type in EMBEDDING_TYPES (or of those also in ``names``),
    equal to gguf's dequantization (to 1e-6)."""
    for name in EMBEDDING_TYPES:
        if names is not None and name not in names:
            continue
        kernel = f"embedding {name}"
        if gguf_quants is None and name not in FLOAT_TYPES:
            yield _skipped(kernel)
            continue
        rows, width = 7, 300 if name in FLOAT_TYPES else 512
        raw, w = random_weights(name, rows, width, _rng(kernel))
        g = OpGraph()
        table = g.weight("table", raw, QUANT_TYPES_BY_NAME[name].id, width, rows)
        out = g.op(_core.Op.embedding, [table, g.tokens()])
        yield Case(kernel, g, out, rows, w, rel_bound(w, 1e-6, 0.0), [3, 4])


def _rowwise(kernel: str, make: Callable, rtol: float, atol: float, chunks=None) -> Case:
    """A case whose ``make(g, rng)`` adds the op to graph ``g`` and returns (out, want)."""
    g = OpGraph()
    out, want = make(g, _rng(kernel))
    return Case(kernel, g, out, len(want), want, rel_bound(want, rtol, atol), chunks)


def _normal(rng, *shape, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(np.float32)


def rms_norm(g, rng, T=5, W=37, head_dim=0):
    x, w = _normal(rng, T, W, scale=3), _normal(rng, head_dim or W)
    x64 = x.astype(np.float64).reshape(T, -1, head_dim or W)
    want = x64 / np.sqrt((x64**2).mean(-1, keepdims=True) + 1e-5) * w
    out = g.op(_core.Op.rms_norm, [g.rows(x), g.weight("w", w)], eps=1e-5, head_dim=head_dim)
    return out, want.reshape(T, W)


def layer_norm(g, rng, T=5, W=48):
    x, w, b = _normal(rng, T, W, shift=2), _normal(rng, W), _normal(rng, W)
    x64 = x.astype(np.float64)
    c = x64 - x64.mean(1, keepdims=True)
    want = c / np.sqrt((c**2).mean(1, keepdims=True) + 1e-5) * w + b
    return g.op(_core.Op.layer_norm, [g.rows(x), g.weight("w", w), g.weight("b", b)], eps=1e-5), want


def binary(op: str, broadcast: bool):
    def make(g, rng, T=6, W=33):
        a, b = _normal(rng, T, W), _normal(rng, *((W,) if broadcast else (T, W)))
        vb = g.weight("b", b) if broadcast else g.rows(b)
        want = a.astype(np.float64) + b if op == "add" else a.astype(np.float64) * b
        return g.op(getattr(_core.Op, op), [g.rows(a), vb]), want
    return make


def scale(g, rng):
    a = _normal(rng, 6, 33)
    return g.op(_core.Op.scale, [g.rows(a)], scale=0.37), a.astype(np.float64) * np.float32(0.37)


def activation(act: str, gated: bool):
    def make(g, rng, T=4, W=40):
        x, u = _normal(rng, T, W, scale=4), _normal(rng, T, W)
        enum = getattr(_core.Activation, act)
        want = ACTIVATIONS[act](x.astype(np.float64))
        if gated:
            return g.op(_core.Op.glu, [g.rows(x), g.rows(u)], act=enum), want * u
        return g.op(_core.Op.activation, [g.rows(x)], act=enum), want
    return make


def rope(neox: bool, n_rot: int, factors: bool):
    def make(g, rng, T=7, n_head=3, hd=16):
        x = _normal(rng, T, n_head * hd)
        ff = rng.uniform(1, 8, n_rot // 2).astype(np.float32) if factors else None
        inputs = [g.rows(x)] + ([g.weight("ff", ff)] if factors else [])
        out = g.op(_core.Op.rope, inputs, n_head=n_head, head_dim=hd, n_rot=n_rot,
                   rope_mode=_core.RopeMode.neox if neox else _core.RopeMode.normal,
                   rope_freq_scale=0.5, rope_attn_factor=1.25)
        return out, ref_rope(x, n_head, hd, n_rot, neox, 0.5, ff, 1.25)
    return make


def attention(n_head: int, n_kv: int, hd: int, window: int = 0, softcap: float = 0.0, T: int = 13):
    def make(g, rng):
        q, k, v = _normal(rng, T, n_head * hd), _normal(rng, T, n_kv * hd), _normal(rng, T, n_kv * hd)
        out = g.op(_core.Op.attention, [g.rows(q), g.rows(k), g.rows(v)], n_head=n_head,
                   n_head_kv=n_kv, head_dim=hd, window=window, softcap=softcap)
        return out, ref_attention(q, k, v, n_head, n_kv, hd, window, softcap)
    return make


def op_cases() -> Iterator[Case]:
    """Norms, elementwise ops, activations, rope and attention, with the tolerances of
    tests/ops (f32 kernels: a few ulps per element; attention: fp16 cache, exp)."""
    yield _rowwise("rms_norm", rms_norm, 1e-5, 1e-6)
    yield _rowwise("rms_norm per head", lambda g, r: rms_norm(g, r, 3, 32, 8), 1e-5, 1e-6)
    yield _rowwise("layer_norm", layer_norm, 1e-5, 1e-5)
    for op in ("add", "mul"):
        yield _rowwise(op, binary(op, False), 1e-6, 0.0)
        yield _rowwise(f"{op} broadcast", binary(op, True), 1e-6, 0.0)
    yield _rowwise("scale", scale, 1e-6, 0.0)
    for act in ("silu", "gelu", "gelu_tanh"):
        yield _rowwise(act, activation(act, False), 1e-5, 1e-6)
        yield _rowwise(f"glu {act}", activation(act, True), 1e-5, 1e-6)
    yield _rowwise("rope normal +freq factors", rope(False, 16, True), 1e-5, 1e-5, [3, 4])
    yield _rowwise("rope neox partial", rope(True, 8, False), 1e-5, 1e-5, [1] * 7)
    for kernel, make, chunks in (
        ("attention GQA 6/2 hd64 prefill", attention(6, 2, 64), [13]),
        ("attention GQA 6/2 hd64 decode", attention(6, 2, 64), [5] + [1] * 8),
        ("attention softcap 30 hd128", attention(4, 1, 128, softcap=30.0), [5, 1, 7]),
        ("attention window 4 ring", attention(2, 2, 16, window=4, T=20), [3, 1, 2, 3, 3, 3, 1, 1, 3]),
    ):
        case = _rowwise(kernel, make, 2e-4, 3e-5, chunks)
        case.n_batch = max(chunks)  # the ring buffer holds window + n_batch - 1 rows
        yield case


ARGMAX_WIDTH = 49152 + 7  # SmolLM2's vocabulary + 7: odd, many strides of a 1024-thread group


def argmax_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    """Logit rows with a known greedy token each: normal; a tie between indices 1023 and 1024
    (on the GPU, a lower thread sees the later index first); a tie with the last index; all
    equal; NaN scattered (never at index 0: the CPU's argmax keeps index 0 when it is NaN,
    the Metal kernel never lets NaN win, and rows holding NaN are broken either way); -inf
    everywhere but one value; +inf twice (the first wins)."""
    x = _normal(rng, 7, n, scale=4)
    x[1, [1023, 1024]] = 50.0
    x[2, [n // 3, n - 1]] = 50.0
    x[3] = 1.5
    x[4, rng.integers(1, n, n // 100)] = np.nan
    x[5] = -np.inf
    x[5, n - 1 - n // 7] = -1e30
    x[6, [n // 2, n - 1]] = np.inf
    return x


def greedy_tokens(x: np.ndarray) -> np.ndarray:
    """The first index of the largest non-NaN value of each row (rows are never all NaN)."""
    return np.array([np.flatnonzero(r == r[~np.isnan(r)].max())[0] for r in x], np.float64)


def argmax_case() -> Case:
    """Greedy decoding: ``Engine.step_sample`` at temperature 0 over one logit row per step
    (the rows of :func:`argmax_rows`). The Metal backend takes it on the GPU
    (``kernel_argmax_f32``: alone after the first step, then in each step's command buffer),
    the others on the CPU. The output per step is (token, whether ``last_logits()`` still
    differs from the step's row); both must match exactly."""
    kernel = "argmax greedy step_sample"
    x = argmax_rows(ARGMAX_WIDTH, _rng(kernel))
    T = len(x)
    g = OpGraph()
    out = g.rows(x)
    want = np.stack([greedy_tokens(x), np.zeros(T)], axis=1)

    def run(backend: str, isa: str, repeats: int) -> tuple[np.ndarray, float]:
        eng = g.engine(out, n_ctx=64, n_batch=8, n_threads=N_THREADS, backend=backend, isa=isa)
        greedy, none = _core.SamplingParams(), np.zeros(0, np.int32)
        greedy.temperature, greedy.repetition_penalty = 0.0, 1.0
        got = np.zeros((T, 2))
        for t in range(T):  # the first pass: each step's row still readable after its token
            got[t, 0] = eng.step_sample(t, greedy, none)
            got[t, 1] = not np.array_equal(eng.last_logits(), x[t], equal_nan=True)
        best = float("inf")
        for _ in range(max(repeats - 1, 1)):  # timed: the tokens alone
            eng.truncate(0)
            t0 = time.perf_counter()
            tokens = [eng.step_sample(t, greedy, none) for t in range(T)]
            best = min(best, time.perf_counter() - t0)
            got[:, 0] = np.where(got[:, 0] == tokens, got[:, 0], -1)  # passes must agree
        return got, best

    return Case(kernel, g, out, T, want, np.zeros_like(want), runner=run)


def all_cases() -> list[Case]:
    return [*matmul_cases(), *embedding_cases(), *op_cases(), argmax_case()]


QUICK_OPS = ("rms_norm", "add", "glu silu", "rope normal +freq factors", "rope neox partial",
             "attention GQA 6/2 hd64 prefill", "attention GQA 6/2 hd64 decode")
"""The op cases of :func:`quick_cases`: those nearly every model runs."""
QUICK_WEIGHT_TYPES = ("Q4_0", "Q8_0", "Q4_K", "F16")
"""The weight types :func:`quick_cases` checks when it is given none."""


def quick_cases(weight_types: Iterable[str] = (), ops: bool = True) -> list[Case]:
    """A small subset of :func:`all_cases`, the first-use check of ``backend="auto"``
    (strata.backends): matmul decode and prefill, and embedding where there is a case, of
    each of ``weight_types`` that strata supports (default QUICK_WEIGHT_TYPES), then (with
    ``ops``) the ops of QUICK_OPS and the greedy argmax. The same cases, data and bounds as
    the full selftest."""
    names = {t for t in weight_types if t in SUPPORTED_WEIGHT_TYPES} or set(QUICK_WEIGHT_TYPES)
    cases = [*matmul_cases(names), *embedding_cases(names)]
    if ops:
        cases += [*(c for c in op_cases() if c.kernel in QUICK_OPS), argmax_case()]
    return cases


# ---- running --------------------------------------------------------------------------
def targets() -> list[str]:
    """What to check here: one entry per CPU kernel set ("cpu:avx2"), then the other
    backends in the order of :func:`available_backends`."""
    out = []
    for b in sorted(available_backends(), key=lambda b: b != "cpu"):  # the CPU first
        out += [f"cpu:{isa}" for isa in _core.cpu_isas()] if b == "cpu" else [b]
    return out


def _run(case: Case, backend: str, isa: str = "", repeats: int = 1) -> tuple[np.ndarray, float]:
    if case.runner is not None:
        return case.runner(backend, isa, repeats)
    return case.graph.run_timed(case.out, case.n_tokens, isa=isa, n_threads=N_THREADS,
                                chunks=case.chunks, n_batch=case.n_batch, backend=backend,
                                repeats=repeats)


def run_case(case: Case, target: str, repeats: int = REPEATS, against_cpu: bool = True) -> Row:
    """Check one case on one target ("cpu:<isa>", "cuda", "metal"); never raises. The time
    is the fastest of ``repeats`` passes; off the CPU, ``against_cpu`` also runs the case on
    the CPU backend for the "vs cpu" column."""
    if case.skip:
        return Row(target, case.kernel, "skipped", note=case.skip)
    backend, _, isa = target.partition(":")
    try:
        got, seconds = _run(case, backend, isa, repeats)
    except Exception as e:  # noqa: BLE001 - any failure of a kernel is a row of the table
        return Row(target, case.kernel, "FAIL", note=f"{type(e).__name__}: {e}")
    bound = case.bound if backend == "cpu" or case.gpu_bound is None else case.gpu_bound
    chk = compare(got, case.want, bound)
    row = Row(target, case.kernel, "pass" if chk.ok else "FAIL", chk.max_abs_err,
              chk.err_over_bound, seconds * 1e3, note=chk.note)
    if backend != "cpu" and against_cpu:
        try:
            cpu = _run(case, "cpu")[0]
            row.vs_cpu = float(np.abs(got.astype(np.float64) - cpu).max())
        except Exception as e:  # noqa: BLE001
            row.note = f"{row.note}; CPU backend failed: {type(e).__name__}: {e}".lstrip("; ")
    return row


COLUMNS = (("backend", 11), ("kernel", 31), ("result", 7), ("max abs err", 11),
           ("err/bound", 9), ("ms", 8), ("vs cpu", 8))


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_row(r: Row) -> str:
    cells = (r.backend, r.kernel, r.status, _fmt(r.max_abs_err, ".2e"),
             _fmt(r.err_over_bound, ".3g"), _fmt(r.ms, ".3f"), _fmt(r.vs_cpu, ".1e"))
    line = " ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, (_, w)) in
                    enumerate(zip(cells, COLUMNS)))
    return f"{line}  {r.note}".rstrip()


def _header() -> str:
    return " ".join(n.ljust(w) if i < 3 else n.rjust(w) for i, (n, w) in enumerate(COLUMNS)) + "  note"


def environment_notes() -> list[str]:
    """Lines that say why an expected backend is not being checked."""
    notes = []
    have = available_backends()
    if getattr(_core, "cuda_built", False) and "cuda" not in have:
        notes.append("cuda: built in, but no CUDA device was found (driver, GPU, CUDA_VISIBLE_DEVICES)")
    if sys.platform == "darwin" and "metal" not in have:
        notes.append("metal: this build has no usable Metal backend yet (docs/metal.md); "
                     "only the CPU is checked")
    return notes


def selftest(
    backend: str | None = None,
    kernel: str | None = None,
    out: TextIO | None = None,
) -> list[Row]:
    """Run the checks and print the table (and a summary) to ``out`` (default stdout).

    ``backend`` keeps the targets equal to it or of that backend ("cpu" is every CPU kernel
    set, "cpu:avx2" one); ``kernel`` keeps the cases whose name contains it. Returns the rows.

    Raises:
        StrataValueError: ``backend`` or ``kernel`` selects nothing here.
    """
    out = out or sys.stdout
    chosen = [t for t in targets() if backend in (None, t, t.partition(":")[0])]
    if not chosen:
        raise StrataValueError(f"backend {backend!r} is not available here "
                               f"(available: {', '.join(targets())})")
    cases = [c for c in all_cases() if kernel is None or kernel in c.kernel]
    if not cases:
        raise StrataValueError(f"no kernel name contains {kernel!r}")
    print(f"strata {__version__} selftest on {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}; checking {', '.join(chosen)}", file=out)
    for note in environment_notes():
        print(f"note: {note}", file=out)
    print(_header(), file=out)
    rows, t0 = [], time.perf_counter()
    for target in chosen:
        for case in cases:
            # The row's start goes out before the kernel runs: if it crashes the process,
            # the last line names it.
            start = f"{target.ljust(COLUMNS[0][1])} {case.kernel.ljust(COLUMNS[1][1])} "
            out.write(start)
            out.flush()
            rows.append(run_case(case, target))
            print(format_row(rows[-1])[len(start):], file=out, flush=True)
    print(summary(rows, time.perf_counter() - t0), file=out)
    return rows


def summary(rows: list[Row], seconds: float) -> str:
    failed = [r for r in rows if r.status == "FAIL"]
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "FAIL", "skipped")}
    line = (f"selftest: {counts['pass']} pass, {counts['FAIL']} FAIL, {counts['skipped']} "
            f"skipped, {len(rows)} checks in {seconds:.1f} s")
    if failed:
        line += "\nFAILED: " + ", ".join(f"{r.backend} {r.kernel}" for r in failed)
    return line


def main(argv: list[str] | None = None) -> int:
    """The command line: returns 0 when every check passed (or was skipped), else 1."""
    p = argparse.ArgumentParser(
        prog="strata selftest",
        description="Check every kernel of every backend here against NumPy float64 "
        "references (other backends also against the CPU backend); print a table; exit 1 "
        "if any check failed.")
    p.add_argument("--backend", help="only this backend: cpu, cpu:<kernel set>, cuda, metal")
    p.add_argument("--kernel", "-k", help="only kernels whose name contains this text")
    p.add_argument("--json", metavar="FILE", help="also write the rows to FILE as JSON")
    a = p.parse_args(argv)
    try:
        rows = selftest(a.backend, a.kernel)
    except StrataError as e:
        print(f"strata selftest: error: {e}", file=sys.stderr)
        return 1
    ok = all(r.status != "FAIL" for r in rows)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump({"strata": __version__, "platform": platform.platform(), "passed": ok,
                       "rows": [asdict(r) for r in rows]}, fh, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""matmul through the graph (decode: 1 row; prefill: several rows, which takes the 4-row
micro-kernels and the per-row tail) against float64 NumPy over the dequantized weights."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import quants

from strata import _core

from .harness import OpHarness, isas

SEED = int(__import__("os").environ.get("SEED", "0"))
TYPES = ["F32", "F16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


def quantized(name: str, w: np.ndarray) -> tuple[bytes, np.ndarray]:
    t = Q[name]
    if name == "F32":
        return w.astype(np.float32).tobytes(), w.astype(np.float64)
    if name == "F16":
        h = w.astype(np.float16)
        return h.tobytes(), h.astype(np.float64)
    raw = quants.quantize(w.astype(np.float32), t)
    return raw.tobytes(), quants.dequantize(raw, t).astype(np.float64)


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("type_name", TYPES)
@pytest.mark.parametrize("T", [1, 4, 9])
def test_matmul_rows(isa, type_name, T):
    rng = np.random.default_rng(TYPES.index(type_name) * 100 + T + SEED)
    K, R = 96, 37
    w = rng.normal(size=(R, K)).astype(np.float32)
    x = rng.normal(size=(T, K)).astype(np.float32)
    raw, wd = quantized(type_name, w)
    h = OpHarness()
    out = h.op(_core.Op.matmul, [h.rows(x), h.weight("w", raw, int(Q[type_name]), K, R)])
    got = h.run(out, T, isa=isa)
    ref = x.astype(np.float64) @ wd.T
    # Quantized types meet 8-bit activations: each x is off by up to d/2 (d = block max/127),
    # uniformly, so an output is off by ~ N(0, sqrt(K) * rms(w) * d / sqrt(12)); allow 6 sigma.
    sigma = np.sqrt(K) * np.sqrt((wd**2).mean()) * (np.abs(x).max() / 127) / np.sqrt(12)
    tol = 1e-4 if type_name in ("F32", "F16") else 6 * sigma
    np.testing.assert_allclose(got, ref, atol=tol, rtol=1e-4)
    if type_name not in ("F32", "F16"):
        # One row at a time (the decode path) gives the same numbers as the 4-row kernel.
        single = np.stack([h2 for h2 in (_one_row(raw, type_name, K, R, x[t], isa) for t in range(T))])
        np.testing.assert_allclose(got, single, rtol=1e-5, atol=1e-4)


def _one_row(raw, type_name, K, R, xrow, isa):
    return _core.cpu_matvec(int(Q[type_name]), np.frombuffer(raw, np.uint8), K, R,
                            np.ascontiguousarray(xrow, np.float32), isa)

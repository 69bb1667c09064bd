"""rms_norm, layer_norm, add, mul, scale, activations, glu, last_row against NumPy."""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strata import _core

from reference.numpy_ops import ref_act, ref_layer_norm, ref_rms_norm

from .harness import OpHarness, isas

RTOL = 1e-5  # f32 kernels vs float64 NumPy: a few ulps per element


@pytest.mark.parametrize("isa", isas())
@settings(max_examples=20, deadline=None)
@given(T=st.integers(1, 9), W=st.sampled_from([1, 7, 64, 100]), seed=st.integers(0, 2**16))
def test_rms_norm(isa, T, W, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, W)).astype(np.float32) * 3
    w = rng.normal(size=W).astype(np.float32)
    h = OpHarness()
    out = h.op(_core.Op.rms_norm, [h.rows(x), h.weight("w", w)], eps=1e-5)
    np.testing.assert_allclose(
        h.run(out, T, isa=isa), ref_rms_norm(x, w, 1e-5), rtol=RTOL, atol=1e-6
    )


@pytest.mark.parametrize("isa", isas())
def test_layer_norm(isa):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 48)).astype(np.float32) + 2
    w, b = rng.normal(size=48).astype(np.float32), rng.normal(size=48).astype(np.float32)
    h = OpHarness()
    out = h.op(_core.Op.layer_norm, [h.rows(x), h.weight("w", w), h.weight("b", b)], eps=1e-5)
    np.testing.assert_allclose(
        h.run(out, 5, isa=isa), ref_layer_norm(x, w, b, 1e-5), rtol=RTOL, atol=1e-5
    )


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("op", ["add", "mul", "add_broadcast", "mul_broadcast", "scale"])
def test_binary_and_scale(isa, op):
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 33)).astype(np.float32)
    b = rng.normal(size=(6, 33)).astype(np.float32)
    v = rng.normal(size=33).astype(np.float32)
    h = OpHarness()
    xa = h.rows(a)
    if op == "scale":
        out, ref = h.op(_core.Op.scale, [xa], scale=0.37), a * np.float32(0.37)
    elif op.endswith("broadcast"):
        kind = _core.Op.add if op.startswith("add") else _core.Op.mul
        out = h.op(kind, [xa, h.weight("v", v)])
        ref = a + v if op.startswith("add") else a * v
    else:
        kind = _core.Op.add if op == "add" else _core.Op.mul
        out = h.op(kind, [xa, h.rows(b)])
        ref = a + b if op == "add" else a * b
    np.testing.assert_allclose(h.run(out, 6, isa=isa), ref, rtol=1e-6)


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize("act", ["silu", "gelu", "gelu_tanh"])
def test_activation_and_glu(isa, act):
    rng = np.random.default_rng(3)
    g = (rng.normal(size=(4, 40)) * 4).astype(np.float32)
    u = rng.normal(size=(4, 40)).astype(np.float32)
    enum = getattr(_core.Activation, act)
    h = OpHarness()
    out = h.op(_core.Op.activation, [h.rows(g)], act=enum)
    np.testing.assert_allclose(h.run(out, 4, isa=isa), ref_act(act, g), rtol=1e-5, atol=1e-6)
    h = OpHarness()
    out = h.op(_core.Op.glu, [h.rows(g), h.rows(u)], act=enum)
    np.testing.assert_allclose(h.run(out, 4, isa=isa), ref_act(act, g) * u, rtol=1e-5, atol=1e-6)


def test_last_row_keeps_last_token_unless_all_rows():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    h = OpHarness()
    out = h.op(_core.Op.last_row, [h.rows(x)])
    h.graph.set_output(out)
    mapping = np.frombuffer(bytes(h._buf) + b"\0" * 64, dtype=np.uint8)
    eng = _core.Engine(h.graph, mapping, n_ctx=16, n_batch=8)
    assert eng.eval(np.arange(4, dtype=np.int32)) is None
    np.testing.assert_array_equal(eng.last_logits(), x[3])
    eng.truncate(0)
    np.testing.assert_array_equal(eng.eval(np.arange(4, dtype=np.int32), all_logits=True), x)


def test_shape_errors_are_strata_errors():
    import strata

    h = OpHarness()
    x = h.rows(np.zeros((2, 8), np.float32))
    with pytest.raises(strata.StrataError, match="wide"):
        h.op(_core.Op.matmul, [x, h.weight("w", np.zeros((3, 5), np.float32))])
    with pytest.raises(strata.StrataError, match="F32 vector"):
        h.op(_core.Op.rms_norm, [x, h.weight("n", np.zeros(5, np.float32))])
    with pytest.raises(strata.StrataError, match="head"):
        h.op(_core.Op.rope, [x], n_head=3, head_dim=4)


@pytest.mark.parametrize("isa", isas())
def test_activations_over_the_whole_f32_range(isa):
    """silu is libm's x / (1 + expf(-x)) bit for bit on every ISA (model outputs must not
    depend on it); gelu_tanh, on its own exp, is within an ulp of exact; both saturate where
    the exponential overflows or underflows instead of producing NaN."""
    rng = np.random.default_rng(5)
    mag = np.exp(rng.uniform(-20, 6, 1021)) * rng.choice([-1, 1], 1021)
    edges = [0.0, 80.0, 88.7, 88.8, 89.0, 104.0, 110.0, 1e4, 1e20, 3e38]
    x = np.concatenate([mag, edges, [-e for e in edges]]).astype(np.float32).reshape(1, -1)
    h = OpHarness()
    out = h.op(_core.Op.activation, [h.rows(x)], act=_core.Activation.silu)
    libm_expf = ctypes.CDLL(ctypes.util.find_library("m")).expf
    libm_expf.argtypes, libm_expf.restype = [ctypes.c_float], ctypes.c_float
    e = np.array([libm_expf(v) for v in -x.ravel()], np.float32).reshape(x.shape)
    np.testing.assert_array_equal(h.run(out, 1, isa=isa), x / (np.float32(1) + e))
    h = OpHarness()
    out = h.op(_core.Op.activation, [h.rows(x)], act=_core.Activation.gelu_tanh)
    got = h.run(out, 1, isa=isa)
    assert np.isfinite(got).all()
    # x sigmoid(2u), the same function as ref_act's without its cancellation in 1 + tanh
    xd = x.astype(np.float64)
    with np.errstate(over="ignore"):
        exact = xd / (1 + np.exp(-2 * np.sqrt(2 / np.pi) * (xd + 0.044715 * xd**3)))
    np.testing.assert_allclose(got, exact, rtol=2e-7, atol=1e-45)

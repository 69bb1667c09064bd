"""NumPy float64 references for the Metal kernel tests.

The op references themselves are the shared ones of tests/reference/numpy_ops.py (pure
NumPy, so the harness tests never load the native core); this module adds what only the
Metal tests need. Quantized weights use the gguf package's dequantizers, as
tests/test_quants.py does.
"""

from __future__ import annotations

import numpy as np
from reference.numpy_ops import ref_act, ref_attention, ref_layer_norm, ref_rms_norm, ref_rope  # noqa: F401


def quantize_q8_act(x: np.ndarray):
    """The CPU backend's block_q8_act quantization (quant_dot.cpp quantize_row_q8_32), per
    32 floats: d = amax / 127, q = rint(x * (1 / d)), s = d * sum(q); all float32."""
    xb = x.astype(np.float32).reshape(-1, 32)
    amax = np.abs(xb).max(axis=1)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        idv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    q = np.rint(xb * idv[:, None]).astype(np.int8)
    s = (d * q.astype(np.int32).sum(axis=1).astype(np.float32)).astype(np.float32)
    return d, s, q


Q8_ACT = np.dtype([("d", "<f4"), ("s", "<f4"), ("qs", "i1", (32,))])

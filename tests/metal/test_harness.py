"""The Linux MSL harness has teeth: each kind of bug it claims to catch is caught.

Shaders in tests/metal/cases/ are wrong on purpose. If one of these tests fails, the
kernel tests in test_metal_kernels.py prove less than they say.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .harness import msl

CASES = Path(__file__).resolve().parent / "cases"
CXX, _ = msl.find_cxx()
pytestmark = msl.harness_marks()

ALL_CASES = [
    "case_reverse",
    "case_divergent_simd",
    "case_early_exit_sum",
    "case_barrier_in_branch",
    "case_uninitialised",
    "case_shuffles",
    "case_deadlock",
]


def cases(racy: bool = False) -> msl.Program:
    return msl.build(CASES / "harness_cases.metal", ALL_CASES, ["-DCASE_RACY"] if racy else [])


def test_barrier_makes_threadgroup_exchange_correct():
    x = np.arange(200, dtype=np.float32)
    for seed in range(4):
        y = np.zeros_like(x)
        cases().launch("case_reverse", (1,), (200,), [None, x, y], seed=seed)
        np.testing.assert_array_equal(y, x[::-1])


def test_missing_barrier_shows_as_wrong_answer():
    x = np.arange(200, dtype=np.float32)
    wrong = 0
    for seed in range(4):
        y = np.zeros_like(x)
        cases(racy=True).launch("case_reverse", (1,), (200,), [None, x, y], seed=seed)
        wrong += not np.array_equal(y, x[::-1])
    assert wrong == 4


def test_divergent_collectives_fail_the_launch():
    with pytest.raises(msl.LaunchError, match="different simd collectives"):
        cases().launch("case_divergent_simd", (1,), (32,), [None, np.zeros(32, np.float32)])


def test_lanes_that_returned_do_not_contribute():
    y = np.zeros(32, np.float32)
    cases().launch("case_early_exit_sum", (1,), (32,), [None, y], seed=3)
    np.testing.assert_array_equal(y[:20], sum(range(20)))
    np.testing.assert_array_equal(y[20:], 0)


def test_barrier_not_reached_by_all_threads_fails():
    with pytest.raises(msl.LaunchError, match="threadgroup_barrier"):
        cases().launch("case_barrier_in_branch", (1,), (64,), [None, np.zeros(64, np.float32)])


def test_deadlock_is_reported():
    with pytest.raises(msl.LaunchError, match="deadlock"):
        cases().launch("case_deadlock", (1,), (32,), [None, np.zeros(32, np.float32)])


def test_threadgroup_memory_starts_as_garbage():
    a, b = np.zeros(64, np.float32), np.zeros(64, np.float32)
    cases().launch("case_uninitialised", (1,), (64,), [None, a], seed=1)
    cases().launch("case_uninitialised", (1,), (64,), [None, b], seed=2)
    assert not np.array_equal(a.view(np.uint32), b.view(np.uint32))
    assert np.any(a.view(np.uint32) != 0)


@pytest.mark.parametrize("width", [32, 16])
def test_shuffles_and_reductions(width):
    y = np.zeros(4 * width, np.float32)
    cases().launch("case_shuffles", (1,), (width,), [None, y], simd_width=width)
    lane = np.arange(width)
    v = (lane * lane).astype(np.float32)
    np.testing.assert_array_equal(y[:width], v[lane ^ 5])
    np.testing.assert_array_equal(
        y[width : 2 * width], np.where(lane + 3 < width, v[np.minimum(lane + 3, width - 1)], v)
    )
    np.testing.assert_array_equal(y[2 * width : 3 * width], v[7])
    np.testing.assert_array_equal(y[3 * width :], v.max())


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_metal_compile_errors_are_compile_errors(case):
    with pytest.raises(msl.BuildError):
        msl.build(CASES / "compile_errors.metal", ["case_bad"], [f"-DCASE={case}"])


def test_block_layouts_match_csrc():
    src = Path(msl.HARNESS) / "layout_check.cpp"
    cxx = CXX or shutil.which("g++")
    r = subprocess.run(
        [cxx, "-std=c++17", "-fsyntax-only", str(src)], check=False, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_table_and_structs_agree_with_shaders():
    """Every kernel in metal/kernels.def exists in its source, and every argument struct the
    table names is one the harness (and so the host) can mirror."""
    structs = msl.arg_structs()
    for k in msl.kernel_table().values():
        text = (msl.METAL / k.source).read_text()
        assert k.name in text, k.name
        assert k.args in structs, k.args
        assert k.buffers[0] == "args"


def test_function_constant_indices_are_unique_across_shaders():
    """All shaders form one Metal library: a constant's index must mean one thing."""
    by_index: dict[int, set] = {}
    for k in msl.kernel_table().values():
        for name, i in k.fcs.items():
            by_index.setdefault(i, set()).add(name)
    assert all(len(names) == 1 for names in by_index.values()), by_index


def test_all_shaders_compile_as_one_source(tmp_path):
    """The host's fallback compiles every .metal file as one source (docs/metal.md): no name
    may clash between files."""
    table = msl.kernel_table()
    sources = sorted({k.source for k in table.values()})
    one = tmp_path / "all.metal"
    one.write_text("".join(f'#include "{msl.METAL / s}"\n' for s in sources))
    fcs = sorted({i for k in table.values() for i in k.fcs.values()})
    msl.build(one, list(table), [f"-DSTRATA_FC_{i}=1" for i in fcs])


def test_embedded_source_compiles(tmp_path):
    """What the host compiles when no metallib was built: embed_metal.cmake's one string,
    every header inlined once and its #include lines removed (a library made from source has
    no include path). Written out and compiled with every kernel of the table."""
    cmake, cc = shutil.which("cmake"), CXX or shutil.which("g++")
    if cmake is None:
        pytest.skip("cmake not found")
    root = Path(msl.ROOT)
    lib, out = tmp_path / "empty.metallib", tmp_path / "embed.c"
    lib.write_bytes(b"")
    r = subprocess.run(
        [cmake, f"-DMETALLIB={lib}", f"-DMETAL_DIR={msl.METAL}", f"-DOUT={out}", "-P",
         str(root / "csrc" / "backends" / "metal" / "embed_metal.cmake")],
        check=False, capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    main = tmp_path / "main.cpp"
    main.write_text(
        '#include <stdio.h>\nextern "C" const char strata_metal_source[];\n'
        "int main() { fputs(strata_metal_source, stdout); return 0; }\n"
    )
    exe = tmp_path / "dump"
    r = subprocess.run([cc, "-x", "c", str(out), "-x", "c++", str(main), "-o", str(exe)],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    assert '#include "' not in text  # nothing left to resolve
    src = tmp_path / "embedded" / "all.metal"
    src.parent.mkdir()
    src.write_text(text)
    table = msl.kernel_table()
    fcs = sorted({i for k in table.values() for i in k.fcs.values()})
    msl.build(src, list(table), [f"-DSTRATA_FC_{i}=1" for i in fcs])


def test_ctypes_mirrors_have_the_asserted_sizes():
    import ctypes
    import re

    text = (msl.METAL / "strata_args.h").read_text()
    asserted = dict(re.findall(r"static_assert\(sizeof\((\w+Args)\) == (\d+)", text))
    structs = msl.arg_structs()
    assert set(asserted) == set(structs)
    for name, size in asserted.items():
        assert ctypes.sizeof(structs[name]) == int(size), name


# ---- the simdgroup_matrix model ------------------------------------------------------------

MATRIX_CASES = [
    "case_matrix_mma",
    "case_matrix_filled",
    "case_matrix_unset",
    "case_matrix_lockstep",
    "case_matrix_across_simdgroups",
    "case_matrix_divergent_address",
    "case_matrix_missing_lane",
    "case_matrix_origin",
]


def matrix_cases(racy: bool = False) -> msl.Program:
    return msl.build(CASES / "matrix_cases.metal", MATRIX_CASES, ["-DCASE_RACY"] if racy else [])


@pytest.mark.parametrize("seed", [0, 1, 7])
@pytest.mark.parametrize("ta,tb,td", [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 1)])
def test_simdgroup_matrix_multiply_accumulate(seed, ta, tb, td):
    """load (device and threadgroup memory, strides, transposes; float and half), multiply-
    accumulate into an aliased accumulator, store: against NumPy."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(8, 11)).astype(np.float32)
    b = rng.normal(size=(8, 8)).astype(np.float32)
    c = rng.normal(size=(8, 8)).astype(np.float32)
    d = np.full((8, 9), 7.0, np.float32)
    flags = np.array([ta, tb, td], np.int32)
    matrix_cases().launch("case_matrix_mma", (1,), (32,), [None, a, b, c, d, flags], seed=seed)
    A = a[:, :8].astype(np.float64)
    A = A.T if ta else A
    B = b.astype(np.float16).astype(np.float64)  # through a half matrix
    B = B.T if tb else B
    D = A @ B + c
    np.testing.assert_allclose(d[:, :8], D.T if td else D, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(d[:, 8], 7.0)  # past elements_per_row 9's 8 columns


def test_simdgroup_matrix_filled_and_diagonal():
    a = np.random.default_rng(3).normal(size=(8, 8)).astype(np.float32)
    d = np.zeros((8, 8), np.float32)
    matrix_cases().launch("case_matrix_filled", (1,), (32,), [None, a, d])
    np.testing.assert_allclose(d, 2 * a + 8 * 0.125, rtol=1e-6)


def test_simdgroup_matrix_unset_is_nan():
    d = np.zeros((8, 8), np.float32)
    matrix_cases().launch("case_matrix_unset", (1,), (32,), [None, d])
    assert np.isnan(d).all()


def test_simdgroup_matrix_load_happens_in_lockstep():
    a = np.arange(64, dtype=np.float32)
    for seed in range(4):
        d = np.zeros(64, np.float32)
        matrix_cases().launch("case_matrix_lockstep", (1,), (32,), [None, a, d], seed=seed)
        np.testing.assert_array_equal(d, a)


def test_simdgroup_matrix_needs_the_barrier_between_simdgroups():
    a = np.arange(64, dtype=np.float32)
    d = np.zeros(64, np.float32)
    matrix_cases().launch("case_matrix_across_simdgroups", (1,), (64,), [None, a, d], seed=0)
    np.testing.assert_array_equal(d, a)
    wrong = 0
    for seed in range(4):
        d = np.zeros(64, np.float32)
        matrix_cases(racy=True).launch("case_matrix_across_simdgroups", (1,), (64,), [None, a, d], seed=seed)
        wrong += not np.array_equal(d, a)
    assert wrong == 4


@pytest.mark.parametrize(
    "case,threads,simd_width,message",
    [
        ("case_matrix_divergent_address", 32, 32, "different addresses"),
        ("case_matrix_missing_lane", 32, 32, "every lane live"),
        ("case_matrix_mma", 16, 16, "32-wide"),
        ("case_matrix_origin", 32, 32, "matrix_origin"),
    ],
)
def test_simdgroup_matrix_misuse_fails_the_launch(case, threads, simd_width, message):
    a = np.zeros(128, np.float32)
    bufs = [None, a, np.zeros(128, np.float32)]
    if case == "case_matrix_mma":
        bufs = [None, a, a, a, np.zeros(128, np.float32), np.zeros(3, np.int32)]
    with pytest.raises(msl.LaunchError, match=message):
        matrix_cases().launch(case, (1,), (threads,), bufs, simd_width=simd_width)

"""``backend="auto"``: the order cuda, metal, cpu, and Metal's first-use kernel check.

No Metal device exists on Linux, so the check is tested at its seams: the device probe
(``backends.devices_found``) says "a Metal device is here", and the function that runs the
cases on a target (``backends.run_checks``) is either the real one pointed at the CPU
backend (the real selftest cases and kernels, through the same code path), or one that fails
or raises, to show the fallback, the warning and the per-process verdict.
"""

from __future__ import annotations

import warnings

import pytest
import strata
from strata import backends, selftest

REAL_RUN_CHECKS = backends.run_checks


@pytest.fixture
def fake_metal(monkeypatch):
    """This process sees a Metal device (no CUDA), with no verdict yet; returns the list of
    (target, kernels) the check ran."""
    monkeypatch.setattr(backends, "devices_found", lambda: {"cuda": False, "metal": True})
    monkeypatch.setattr(backends, "_metal_rows", {})
    monkeypatch.setattr(backends, "_metal_types", set())
    monkeypatch.delenv(backends.METAL_AUTO_ENV, raising=False)
    calls: list[tuple[str, list[str]]] = []

    def on_cpu(target, cases):  # the real runner and cases, on the CPU backend
        calls.append((target, [c.kernel for c in cases]))
        return REAL_RUN_CHECKS("cpu", cases)

    monkeypatch.setattr(backends, "run_checks", on_cpu)
    return calls


def failing(bad: str, calls: list):
    """A runner that fails the cases whose name contains ``bad`` and passes the others."""
    def run(target, cases):
        calls.append((target, [c.kernel for c in cases]))
        return [selftest.Row(target, c.kernel, "FAIL" if bad in c.kernel else "pass",
                             note="at [0, 1]: got 3, want 2" if bad in c.kernel else "")
                for c in cases]
    return run


def test_order_without_metal(monkeypatch):
    monkeypatch.setattr(backends, "devices_found", lambda: {"cuda": False, "metal": False})
    assert strata.available_backends() == ["cpu"]
    monkeypatch.setattr(backends, "devices_found", lambda: {"cuda": True, "metal": False})
    assert strata.available_backends() == ["cuda", "cpu"]
    assert backends.auto_backend() == "cuda"


def test_order_with_metal_and_the_switch(fake_metal, monkeypatch):
    assert strata.available_backends() == ["metal", "cpu"]
    monkeypatch.setenv("STRATA_METAL_AUTO", "0")
    assert strata.available_backends() == ["cpu", "metal"]
    assert backends.auto_backend(["Q4_0"]) == "cpu"
    monkeypatch.setenv("STRATA_METAL_AUTO", "1")
    assert strata.available_backends() == ["metal", "cpu"]
    assert backends.auto_backend(["Q4_0"]) == "metal"
    assert fake_metal == []  # neither switch runs the check


def test_the_check_runs_real_cases_once_per_process(fake_metal):
    """The real quick cases for the model's weight types pass on the CPU kernels, through
    the guard's own path; auto then picks metal, and a second load runs only the cases of
    weight types not checked yet."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backends.auto_backend({"Q4_1", "Q8_0", "F32"}) == "metal"
    ((target, kernels),) = fake_metal
    assert target == "metal"
    assert {"matmul Q4_1 decode", "matmul Q4_1 prefill", "matmul Q8_0 decode",
            "matmul Q8_0 prefill", "embedding Q8_0", "matmul F32 decode", "rms_norm",
            "rope neox partial", "attention GQA 6/2 hd64 decode",
            "argmax greedy step_sample"} <= set(kernels)
    assert not any("Q4_K" in k or "layer_norm" in k for k in kernels)
    rows = backends._metal_rows
    assert set(rows) == set(kernels) and all(r.status == "pass" for r in rows.values())

    assert backends.auto_backend({"Q4_1", "F32"}) == "metal"
    assert len(fake_metal) == 1  # nothing new to check
    assert backends.auto_backend({"Q6_K"}) == "metal"
    assert fake_metal[1][1] == ["matmul Q6_K decode", "matmul Q6_K prefill", "embedding Q6_K"]


def test_a_failing_kernel_falls_back_to_the_cpu_with_a_warning(fake_metal, monkeypatch):
    calls = []
    monkeypatch.setattr(backends, "run_checks", failing("Q4_K prefill", calls))
    with pytest.warns(RuntimeWarning) as record:
        assert backends.auto_backend({"Q4_K"}) == "cpu"
    (w,) = record
    msg = str(w.message)
    assert "matmul Q4_K prefill" in msg and "matmul Q4_K decode" not in msg
    assert "got 3, want 2" in msg and "strata selftest --backend metal" in msg
    assert "docs/metal.md" in msg
    assert w.filename == __file__  # points at the caller, not inside strata
    assert [r.kernel for r in backends.metal_check_failures()] == ["matmul Q4_K prefill"]
    # The verdict holds for the process: metal is listed after the CPU, nothing runs again,
    # explicit backend="metal" stays available.
    assert strata.available_backends() == ["cpu", "metal"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backends.auto_backend({"Q4_K", "Q6_K"}) == "cpu"
    assert len(calls) == 1
    backends.require("metal")


def test_a_raising_runner_is_a_failed_check(fake_metal, monkeypatch):
    def boom(target, cases):
        raise RuntimeError("MTLCompilerService died")

    monkeypatch.setattr(backends, "run_checks", boom)
    died = "first-use check: RuntimeError: MTLCompilerService died"
    with pytest.warns(RuntimeWarning, match=died):
        assert backends.auto_backend() == "cpu"
    assert strata.available_backends() == ["cpu", "metal"]


def test_a_real_failing_kernel_row_is_caught(fake_metal, monkeypatch):
    """The real runner on the CPU with one case whose reference is wrong: its FAIL row from
    run_case reaches the verdict."""
    real = selftest.quick_cases

    def with_wrong_reference(weight_types=(), ops=True):
        cases = real(weight_types, ops)
        rms = next(c for c in cases if c.kernel == "rms_norm")
        rms.want = rms.want * 1.01
        return cases

    monkeypatch.setattr(selftest, "quick_cases", with_wrong_reference)
    with pytest.warns(RuntimeWarning, match=r"\(rms_norm: at \["):
        assert backends.auto_backend({"Q8_0"}) == "cpu"


def test_load_with_auto_falls_back_and_runs(fake_metal, monkeypatch, smollm2_file):
    """strata.load on a 'Mac' whose Metal fails the check: a CPU model that works, and the
    check saw the model's own weight types."""
    calls = []
    monkeypatch.setattr(backends, "run_checks", failing("Q4_1 decode", calls))
    with pytest.warns(RuntimeWarning, match="matmul Q4_1 decode") as record:
        m = strata.load(smollm2_file, n_ctx=64, n_threads=2)
    assert record[0].filename == __file__  # the user's load() line
    try:
        assert m.backend == "cpu" and m.description.startswith("cpu")
        assert m.generate("The capital of France is", max_tokens=2, temperature=0)
    finally:
        m.close()
    kernels = calls[0][1]
    assert {"matmul Q4_1 decode", "matmul Q8_0 prefill", "embedding Q8_0"} <= set(kernels)
    assert not any("F16" in k or "Q4_K" in k for k in kernels)


def test_explicit_metal_never_runs_the_check(fake_metal, monkeypatch, smollm2_file):
    """backend="metal" goes straight to the Metal engine (which this Linux build lacks)."""
    monkeypatch.setattr(backends, "run_checks", failing("", []))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(strata.StrataError):
            strata.load(smollm2_file, n_ctx=64, backend="metal")
    assert backends._metal_rows == {}


@pytest.mark.skipif(backends.devices_found()["metal"], reason="a Metal device is here")
def test_explicit_metal_without_a_device_is_a_clear_error(smollm2_file):
    with pytest.raises(strata.UnsupportedModelError, match="backend 'metal' is not available here"):
        strata.load(smollm2_file, backend="metal")
    assert "metal" not in strata.available_backends()
    assert strata.load(smollm2_file, n_ctx=64).backend in ("cpu", "cuda")


def test_selftest_checks_the_cpu_first(fake_metal):
    assert selftest.targets()[0].startswith("cpu:") and selftest.targets()[-1] == "metal"

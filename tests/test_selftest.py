"""`strata selftest`: it runs here and passes, prints its table and exit status, and has
teeth (a wrong reference, a tight bound, a wrong output or a raising kernel is a FAIL row,
never a traceback)."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from strata import _core, cli, selftest
from strata.quant_types import SUPPORTED_WEIGHT_TYPES


def find_case(kernel: str) -> selftest.Case:
    (case,) = [c for c in selftest.all_cases() if c.kernel == kernel]
    return case


def test_every_kernel_passes_on_every_backend_here(capsys):
    assert selftest.main([]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if not ln.startswith("note: ")]
    rows = [ln.split() for ln in lines[2:-1]]
    n_cases = len(selftest.all_cases())
    assert lines[1].split()[:3] == ["backend", "kernel", "result"]
    assert len(rows) == n_cases * len(selftest.targets())
    assert {r[0] for r in rows} == set(selftest.targets()) >= {f"cpu:{i}" for i in _core.cpu_isas()}
    assert all("pass" in r for r in rows), [r for r in rows if "pass" not in r]
    assert lines[-1].startswith(f"selftest: {len(rows)} pass, 0 FAIL, 0 skipped")


def test_cases_cover_every_weight_type_and_op():
    kernels = {c.kernel for c in selftest.all_cases()}
    for name in SUPPORTED_WEIGHT_TYPES:
        assert {f"matmul {name} decode", f"matmul {name} prefill"} <= kernels
    ops = {k.split()[0] for k in kernels}
    assert ops >= {"matmul", "embedding", "rms_norm", "layer_norm", "add", "mul", "scale",
                   "silu", "gelu", "gelu_tanh", "glu", "rope", "attention", "argmax"}


def test_module_command_filters_and_writes_json(tmp_path):
    out = tmp_path / "rows.json"
    r = subprocess.run(
        [sys.executable, "-m", "strata.selftest", "--backend", "cpu:scalar", "-k", "Q4_K",
         "--json", str(out)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text())
    assert data["passed"] is True
    kernels = [row["kernel"] for row in data["rows"]]
    assert kernels == ["matmul Q4_K decode", "matmul Q4_K prefill", "embedding Q4_K"]
    assert all(row["backend"] == "cpu:scalar" and row["status"] == "pass" for row in data["rows"])
    assert "cpu:scalar  matmul Q4_K decode" in r.stdout


def test_strata_cli_subcommand(capsys):
    assert cli.main(["selftest", "--kernel", "rms_norm"]) == 0
    assert "rms_norm per head" in capsys.readouterr().out


def test_unknown_backend_is_an_error_naming_what_is_here(capsys):
    assert selftest.main(["--backend", "tpu"]) == 1
    err = capsys.readouterr().err
    assert "'tpu' is not available here" in err and "cpu:scalar" in err


def test_without_gguf_quantized_types_are_skipped_rows(monkeypatch, capsys):
    monkeypatch.setattr(selftest, "gguf_quants", None)
    assert selftest.main(["--backend", "cpu:scalar", "-k", "Q4_0"]) == 0
    out = capsys.readouterr().out
    assert out.count("skipped: gguf not installed") == 3  # matmul decode, prefill, embedding
    assert "0 pass, 0 FAIL, 3 skipped" in out


# ---- teeth ------------------------------------------------------------------------------
def test_compare_reports_a_perturbed_result():
    case = find_case("matmul Q4_0 decode")
    got = case.want.copy()
    assert selftest.compare(got, case.want, case.bound).ok
    got[2, 5] += 1.01 * case.bound[2, 5]
    chk = selftest.compare(got, case.want, case.bound)
    assert not chk.ok and chk.err_over_bound == pytest.approx(1.01) and "at [2, 5]" in chk.note
    got[1, 1] = np.nan
    assert "non-finite" in selftest.compare(got, case.want, case.bound).note
    assert "shape" in selftest.compare(got[:1], case.want, case.bound).note


@pytest.mark.parametrize("kernel", ["matmul Q4_K decode", "matmul Q8_0 prefill",
                                    "attention GQA 6/2 hd64 decode", "rope neox partial"])
def test_a_slightly_wrong_reference_fails(kernel):
    """The bounds are tight enough that a small slip in the kernel shows: the true result
    against a reference off by 3 of its bounds at one element fails."""
    case = find_case(kernel)
    want = case.want.copy()
    want.flat[7] += 3 * case.bound.flat[7]
    row = selftest.run_case(dataclasses.replace(case, want=want), "cpu:scalar")
    assert row.status == "FAIL" and 2 < row.err_over_bound < 4, row


def test_a_wrong_reference_and_a_raising_kernel_are_fail_rows(monkeypatch):
    silu = find_case("silu")
    wrong = dataclasses.replace(silu, kernel="silu with gelu's reference",
                                want=selftest.ACTIVATIONS["gelu"](silu.want))
    raising = dataclasses.replace(find_case("rms_norm"), kernel="rms_norm bad graph", out=10**6)
    monkeypatch.setattr(selftest, "all_cases", lambda: [silu, wrong, raising])
    buf = io.StringIO()
    rows = selftest.selftest(backend="cpu", out=buf)
    text = buf.getvalue()
    assert [r.status for r in rows[:3]] == ["pass", "FAIL", "FAIL"]
    assert "Traceback" not in text and "got " in rows[1].note
    assert rows[2].note.startswith(("StrataError", "IndexError", "ValueError")), rows[2].note
    assert "FAILED: " in text.splitlines()[-1] and "rms_norm bad graph" in text.splitlines()[-1]
    monkeypatch.setattr(selftest, "selftest", lambda *a, **k: rows)
    assert selftest.main([]) == 1


def test_argmax_case_rows_and_teeth():
    """Greedy tokens: each kind of row has the answer it is meant to have (the later index of
    a tie, NaN or the -inf filler never win), and a wrong token or a row that last_logits()
    no longer reads is a FAIL row."""
    case = find_case("argmax greedy step_sample")
    x = selftest.argmax_rows(selftest.ARGMAX_WIDTH, np.random.default_rng(0))
    n = x.shape[1]
    assert selftest.greedy_tokens(x)[1:].tolist() == [1023, n // 3, 0, selftest.greedy_tokens(x)[4],
                                                      n - 1 - n // 7, n // 2]
    assert not np.isnan(x[4, int(selftest.greedy_tokens(x)[4])]) and np.isnan(x[4]).any()
    assert selftest.run_case(case, "cpu:scalar").status == "pass"
    for col, value in ((0, 1024), (1, 1)):
        want = case.want.copy()
        want[1, col] = value
        row = selftest.run_case(dataclasses.replace(case, want=want), "cpu:scalar")
        assert row.status == "FAIL" and "at [1, " in row.note, row

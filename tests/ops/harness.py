"""Run one op of the native core on NumPy data, for op tests against NumPy references.

The runner ships in the package (``strata.opgraph``), where ``strata selftest`` uses it too;
see its docstring for how inputs and weights reach the graph.
"""

from __future__ import annotations

from strata import _core
from strata.opgraph import OpGraph as OpHarness

__all__ = ["OpHarness", "isas"]


def isas() -> list[str]:
    return list(_core.cpu_isas())

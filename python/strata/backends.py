"""Which backends can run here, and which one ``backend="auto"`` picks.

The order is cuda, metal, cpu. Metal has not yet been verified on a Mac (docs/metal.md),
so auto picks it only after a quick first-use check: the first time in a process that auto
would pick Metal, a small subset of ``strata selftest`` (:func:`strata.selftest.quick_cases`:
matmul decode and prefill of the model's weight types, norms, rope, attention, the greedy
argmax) runs on the Metal backend. If any case fails or raises, auto falls back to the CPU
with a RuntimeWarning that names the failing kernels, and keeps Metal out of auto for the
rest of the process. ``STRATA_METAL_AUTO=0`` keeps Metal out of auto, ``STRATA_METAL_AUTO=1``
picks it without the check; ``backend="metal"`` never runs the check.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import _core
from .errors import UnsupportedModelError

if TYPE_CHECKING:
    from .selftest import Case, Row

METAL_AUTO_ENV = "STRATA_METAL_AUTO"
_DEVICE_NAMES = {"cuda": "CUDA", "metal": "Metal", "cpu": "CPU"}

# The first-use check of Metal in this process: kernel name -> its row (pass, FAIL or
# skipped), so each case runs at most once, and the weight types checked so far; a FAIL
# keeps Metal out of auto from then on.
_metal_rows: dict[str, Row] = {}
_metal_types: set[str] = set()
_metal_lock = threading.Lock()


@functools.cache
def devices_found() -> dict[str, bool]:
    """Whether this build has each GPU backend ("cuda", "metal") and the system a device
    for it; probed once per process."""
    found = {}
    for name in ("cuda", "metal"):
        probe = getattr(_core, f"{name}_available", None)
        found[name] = bool(probe()) if probe is not None else False
    return found


def metal_check_failures() -> list[Row]:
    """The rows of the Metal first-use check that failed so far in this process (empty
    when it passed or has not run)."""
    return [r for r in _metal_rows.values() if r.status == "FAIL"]


def _metal_in_auto() -> bool:
    env = os.environ.get(METAL_AUTO_ENV)
    return env == "1" or (env != "0" and not metal_check_failures())


def available_backends() -> list[str]:
    """Backends compiled into this build that can run here, in the order
    ``backend="auto"`` prefers them: "cuda", "metal", "cpu".

    "cuda" is listed when the build has the CUDA backend and the CUDA runtime finds a
    device, "metal" when the build has the Metal backend and the system a Metal device
    (each probed once per process); "cpu" always. Auto takes the first, except that it
    takes "metal" only after a quick kernel check on first use passes (see
    :mod:`strata.backends`). "metal" is listed after "cpu" (runnable with
    ``backend="metal"``, not picked by auto) when the environment sets
    ``STRATA_METAL_AUTO=0`` or when that check has failed in this process.
    """
    found = devices_found()
    gpus = ["cuda"] if found["cuda"] else []
    if not found["metal"]:
        return [*gpus, "cpu"]
    if _metal_in_auto():
        return [*gpus, "metal", "cpu"]
    return [*gpus, "cpu", "metal"]


def require(backend: str) -> None:
    """Raises UnsupportedModelError, saying why, when ``backend`` cannot run here."""
    if backend not in available_backends():
        why = (f"no {_DEVICE_NAMES[backend]} device was found"
               if getattr(_core, f"{backend}_built", False) else "this build does not include it")
        raise UnsupportedModelError(f"backend {backend!r} is not available here: {why}")


def run_checks(target: str, cases: list[Case]) -> list[Row]:
    """Run selftest ``cases`` on ``target`` ("metal"), one pass each, without the CPU
    comparison. The first-use check calls it through this module, so tests can run it on
    another target or replace it."""
    from .selftest import run_case

    return [run_case(c, target, repeats=1, against_cpu=False) for c in cases]


def check_metal(weight_types: Iterable[str] = ()) -> list[Row]:
    """The first-use check of the Metal backend: runs the cases of
    :func:`strata.selftest.quick_cases` for ``weight_types`` that have not run in this
    process, and returns every failing row so far (empty: Metal passed). Once a case has
    failed nothing more runs. Never raises: an exception while checking is a failing row."""
    from .selftest import QUICK_WEIGHT_TYPES, Row, quick_cases

    with _metal_lock:
        new = (set(weight_types) or set(QUICK_WEIGHT_TYPES)) - _metal_types
        if new and not metal_check_failures():
            try:
                cases = [c for c in quick_cases(new, ops=not _metal_rows)
                         if c.kernel not in _metal_rows]
                rows = run_checks("metal", cases) if cases else []
            except Exception as e:  # noqa: BLE001 - any failure means: do not trust Metal
                rows = [Row("metal", "first-use check", "FAIL", note=f"{type(e).__name__}: {e}")]
            _metal_types.update(new)
            for row in rows:
                _metal_rows[row.kernel] = row
        return metal_check_failures()


def _warn_fallback(failed: list[Row]) -> None:
    kernels = ", ".join(r.kernel for r in failed)
    note = failed[0].note
    msg = (f"strata: the Metal backend failed its first-use kernel check ({kernels}"
           f"{': ' + note if note else ''}), so backend='auto' runs on the CPU instead. "
           f"Please run `strata selftest --backend metal` and report its output "
           f"(docs/metal.md, \"The first Mac run\"). backend='metal' still loads on Metal; "
           f"{METAL_AUTO_ENV}=0 keeps Metal out of 'auto' without the check.")
    # Point the warning at the first caller outside the package (the user's load()).
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, RuntimeWarning, stacklevel=level)


def auto_backend(weight_types: Iterable[str] = ()) -> str:
    """The backend ``backend="auto"`` loads a model with weights of ``weight_types``
    (GGUF type names, e.g. "Q4_K") on: the first of :func:`available_backends`, where
    "metal" must first pass :func:`check_metal` (unless ``STRATA_METAL_AUTO=1``); a
    failed check warns (RuntimeWarning) and moves on to the CPU."""
    for backend in available_backends():
        if backend != "metal" or os.environ.get(METAL_AUTO_ENV) == "1":
            return backend
        failed = check_metal(weight_types)
        if not failed:
            return backend
        _warn_fallback(failed)
    return "cpu"  # not reached: "cpu" is always available

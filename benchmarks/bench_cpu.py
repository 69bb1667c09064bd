#!/usr/bin/env python3
"""strata against llama.cpp on the CPU, side by side in one run (see benchmarks/README.md).

    python benchmarks/bench_cpu.py [MODEL.gguf ...] --threads 2 --repeats 3 --json out.json

A thin wrapper around ``strata.bench`` (the code ``strata bench`` runs). It uses this
checkout's python/strata/bench.py when there is one, else the installed ``strata.bench``;
either way it measures the installed strata (``import strata``).
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _bench_module():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.normpath(os.path.join(here, os.pardir, "python", "strata", "bench.py"))
    spec = importlib.util.spec_from_file_location("strata_bench_checkout", path)
    if not os.path.isfile(path) or spec is None or spec.loader is None:
        from strata import bench

        return bench
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


if __name__ == "__main__":
    sys.exit(_bench_module().main(sys.argv[1:], prog="bench_cpu.py"))

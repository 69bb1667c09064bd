"""How much of a decode step is Python: time `Model.generate` end to end and the native
calls inside it (Engine.eval / sample / step_sample), measured by a thin timing proxy
around the engine (cProfile cannot see nanobind functions).

    python benchmarks/python_share.py [--model FILE] [--tokens 128] [--threads 2]

Issue target: Python's share of a decode step < 3%.
"""

from __future__ import annotations

import argparse
import time

import strata


class TimedEngine:
    """Forwards to the native engine, adding up the time spent in each native call."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.seconds = {"eval": 0.0, "sample": 0.0, "step_sample": 0.0}

    def __getattr__(self, name):
        attr = getattr(self._engine, name)
        if name not in self.seconds:
            return attr

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0

        return timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    m = strata.load(a.model or strata.default_model_path(), n_threads=a.threads)
    prompt = "Write a long story about a lighthouse keeper:"
    m.generate(prompt, max_tokens=8, temperature=0)  # warm-up
    m.logits([1])  # empty the prompt cache so the run below evaluates its prompt
    timed = TimedEngine(m._engine)
    m._engine = timed
    done = strata.Completion()
    t0 = time.perf_counter()
    m.generate(prompt, max_tokens=a.tokens, temperature=0, completion=done)
    total = time.perf_counter() - t0
    m._engine = timed._engine
    s = timed.seconds
    n = len(done.token_ids)
    loop = total - s["eval"]
    native = s["sample"] + s["step_sample"]
    py = loop - native
    print(f"{n} tokens; prefill (native eval) {s['eval'] * 1e3:.1f} ms; decode loop {loop * 1e3:.1f} ms "
          f"of which native {native * 1e3:.1f} ms")
    print(f"Python per generated token: {py / n * 1e6:.0f} us = {py / loop:.2%} of the decode loop")


if __name__ == "__main__":
    main()

"""Sampling settings: validated once in Python, applied natively for every token."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from . import _core
from .errors import StrataValueError


@dataclass(frozen=True)
class SamplingSettings:
    """What ``generate``/``stream``/``chat`` accept, with llama-cpp-python's defaults.

    temperature 0 means greedy decoding (always the most likely token).
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repetition_penalty: float = 1.0
    penalty_last_n: int = 64
    seed: int | None = None

    def validate(self) -> None:
        """Raises StrataValueError (a ValueError) naming the first bad argument."""
        if not _finite(self.temperature) or self.temperature < 0:
            raise StrataValueError(f"temperature must be >= 0, got {self.temperature}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise StrataValueError(f"top_k must be an integer >= 0, got {self.top_k}")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise StrataValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not _finite(self.min_p) or not 0 <= self.min_p <= 1:
            raise StrataValueError(f"min_p must be in [0, 1], got {self.min_p}")
        if not _finite(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise StrataValueError(
                f"repetition_penalty must be > 0, got {self.repetition_penalty}"
            )
        if not isinstance(self.penalty_last_n, int) or self.penalty_last_n < -1:
            raise StrataValueError(f"penalty_last_n must be >= -1, got {self.penalty_last_n}")
        if self.seed is not None and (not isinstance(self.seed, int) or self.seed < 0):
            raise StrataValueError(f"seed must be a non-negative integer, got {self.seed}")

    def native(self) -> _core.SamplingParams:
        p = _core.SamplingParams()
        p.temperature = float(self.temperature)
        p.top_k = int(self.top_k)
        p.top_p = float(self.top_p)
        p.min_p = float(self.min_p)
        p.repetition_penalty = float(self.repetition_penalty)
        p.penalty_last_n = int(self.penalty_last_n)
        return p

    def resolved_seed(self) -> int:
        """The seed to use: the given one, or a fresh random one."""
        if self.seed is not None:
            return self.seed
        return int.from_bytes(os.urandom(8), "little")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

"""Run one op of the native core on NumPy data (internal: used by ``strata.selftest`` and by
the op tests, which import it as ``OpHarness``).

A graph's only input is token ids, so the input rows of an op are stored as an F32
"embedding table" and selected with tokens 0..T-1; the op's output is the graph output,
read back with all rows. Weights live in a bytes buffer that stands in for a GGUF file's
mapping.
"""

from __future__ import annotations

import time

import numpy as np

from . import _core

GGML_F32 = 0


class OpGraph:
    """A graph of a few ops over weights and input rows given as NumPy arrays or raw bytes."""

    def __init__(self) -> None:
        self.graph = _core.Graph()
        self._buf = bytearray()
        self._tokens: int | None = None

    def weight(
        self,
        name: str,
        data: np.ndarray | bytes,
        type_id: int = GGML_F32,
        width: int | None = None,
        rows: int | None = None,
    ) -> int:
        """Append a weight to the fake file; float32 arrays are (rows, width) or (width,),
        raw bytes of type ``type_id`` need ``width`` and ``rows``."""
        while len(self._buf) % 32:
            self._buf.append(0)
        offset = len(self._buf)
        if isinstance(data, np.ndarray) and type_id == GGML_F32:
            arr = np.ascontiguousarray(data, dtype=np.float32)
            rows = 1 if arr.ndim == 1 else arr.shape[0]
            width = arr.shape[-1]
            raw = arr.tobytes()
        else:
            raw = bytes(data)
        self._buf += raw
        return self.graph.weight(name, type_id, offset, len(raw), width, rows)

    def tokens(self) -> int:
        """The step's token ids (made once per graph)."""
        if self._tokens is None:
            self._tokens = self.graph.tokens()
        return self._tokens

    def rows(self, x: np.ndarray) -> int:
        """Activation value holding the rows of ``x`` (T, width)."""
        table = self.weight(f"input{len(self._buf)}", np.asarray(x, np.float32))
        return self.op(_core.Op.embedding, [table, self.tokens()])

    def op(self, op: _core.Op, inputs: list[int], **params: object) -> int:
        """Add ``op`` over ``inputs`` with the given :class:`strata._core.OpParams` fields."""
        p = _core.OpParams()
        for k, v in params.items():
            setattr(p, k, v)
        return self.graph.add(op, inputs, p)

    def engine(
        self,
        out: int,
        n_ctx: int = 256,
        n_batch: int = 64,
        n_threads: int = 2,
        backend: str = "cpu",
        isa: str = "",
    ) -> _core.Engine:
        """A native engine over this graph with output ``out``, the weights as its file.

        Raises:
            StrataError: the backend or kernel set is not available, or the graph is invalid.
        """
        self.graph.set_output(out)
        mapping = np.frombuffer(bytes(self._buf) + b"\0" * 64, dtype=np.uint8)
        return _core.Engine(
            self.graph,
            mapping,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=n_threads,
            backend=backend,
            isa=isa,
        )

    def run_timed(
        self,
        out: int,
        n_tokens: int,
        n_ctx: int = 256,
        isa: str = "",
        n_threads: int = 2,
        chunks: list[int] | None = None,
        n_batch: int = 64,
        backend: str = "cpu",
        repeats: int = 1,
    ) -> tuple[np.ndarray, float]:
        """Evaluate tokens 0..n_tokens-1 (one step per entry of ``chunks``) and return all
        output rows of the first pass and the seconds spent in the steps of the fastest of
        ``repeats`` passes (engine creation not counted; a pass after the first starts over
        from an empty cache).

        Raises:
            StrataError: the backend or kernel set is not available, or the graph is invalid.
        """
        eng = self.engine(out, n_ctx, n_batch, n_threads, backend, isa)
        ids = np.arange(n_tokens, dtype=np.int32)
        result, best = None, float("inf")
        for _ in range(repeats):
            eng.truncate(0)
            parts, start, seconds = [], 0, 0.0
            for c in chunks or [n_tokens]:
                t0 = time.perf_counter()
                parts.append(eng.eval(ids[start : start + c], all_logits=True))
                seconds += time.perf_counter() - t0
                start += c
            result = np.concatenate(parts, axis=0) if result is None else result
            best = min(best, seconds)
        return result, best

    def run(self, out: int, n_tokens: int, **kw: object) -> np.ndarray:
        """:meth:`run_timed` without the time."""
        return self.run_timed(out, n_tokens, **kw)[0]  # type: ignore[arg-type]

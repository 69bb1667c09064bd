"""Run one op of the native core on NumPy data, for op tests against NumPy references.

A graph's only input is token ids, so the input rows of an op are stored as an F32
"embedding table" and selected with tokens 0..T-1; the op's output is the graph output,
read back with all rows.
"""

from __future__ import annotations

import numpy as np

from strata import _core

GGML_F32 = 0


class OpHarness:
    def __init__(self) -> None:
        self.graph = _core.Graph()
        self._buf = bytearray()
        self._tokens = None

    def weight(
        self,
        name: str,
        data: np.ndarray | bytes,
        type_id: int = GGML_F32,
        width: int | None = None,
        rows: int | None = None,
    ) -> int:
        """Append a weight to the fake file; float32 arrays are (rows, width) or (width,)."""
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

    def rows(self, x: np.ndarray) -> int:
        """Activation value holding the rows of ``x`` (T, width)."""
        if self._tokens is None:
            self._tokens = self.graph.tokens()
        table = self.weight(f"input{len(self._buf)}", np.asarray(x, np.float32))
        return self.op(_core.Op.embedding, [table, self._tokens])

    def op(self, op: _core.Op, inputs: list[int], **params: object) -> int:
        p = _core.OpParams()
        for k, v in params.items():
            setattr(p, k, v)
        return self.graph.add(op, inputs, p)

    def run(
        self,
        out: int,
        n_tokens: int,
        n_ctx: int = 256,
        isa: str = "",
        n_threads: int = 2,
        chunks: list[int] | None = None,
        n_batch: int = 64,
        backend: str = "cpu",
    ) -> np.ndarray:
        """Evaluate tokens 0..n_tokens-1 (in the given chunk sizes) and return all rows."""
        self.graph.set_output(out)
        mapping = np.frombuffer(bytes(self._buf) + b"\0" * 64, dtype=np.uint8)
        eng = _core.Engine(
            self.graph,
            mapping,
            n_ctx=n_ctx,
            n_batch=n_batch,
            n_threads=n_threads,
            backend=backend,
            isa=isa,
        )
        ids = np.arange(n_tokens, dtype=np.int32)
        parts, start = [], 0
        for c in chunks or [n_tokens]:
            parts.append(eng.eval(ids[start : start + c], all_logits=True))
            start += c
        return np.concatenate(parts, axis=0)


def isas() -> list[str]:
    return list(_core.cpu_isas())

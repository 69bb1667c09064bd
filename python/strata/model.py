"""``strata.load`` and ``Model``: the Python API people use."""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np

from . import _core
from .backends import auto_backend, require
from .chat import render_chat
from .errors import ContextOverflowError, StrataError, StrataValueError, UnsupportedModelError
from .generate import Completion, check_stop, run_generation
from .gguf import GGUFFile
from .graph import GraphBuilder
from .models import architecture
from .quant_types import SUPPORTED_WEIGHT_TYPES
from .sampling import SamplingSettings
from .tokenizer import Tokenizer

BACKENDS = ("auto", "cpu", "cuda", "metal")
DEFAULT_N_CTX = 4096


class Model:
    """A loaded model: GGUF file, tokenizer, and a native engine holding the KV cache.

    A Model serves one generation at a time; calls from several threads are serialised.
    Use :func:`strata.load` to make one.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_ctx: int | None = 4096,
        n_threads: int | None = None,
        backend: str = "auto",
        n_batch: int = 512,
    ) -> None:
        if backend not in BACKENDS:
            raise StrataValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend != "auto":
            require(backend)
        if n_ctx is not None and (not isinstance(n_ctx, int) or not 0 < n_ctx < 2**63):
            raise StrataValueError(f"n_ctx must be a positive integer below 2**63, got {n_ctx!r}")
        if n_threads is not None and (not isinstance(n_threads, int) or n_threads <= 0):
            raise StrataValueError(f"n_threads must be a positive integer, got {n_threads!r}")
        if not isinstance(n_batch, int) or n_batch <= 0:
            raise StrataValueError(f"n_batch must be a positive integer, got {n_batch!r}")

        self.path = os.fspath(path)
        # Our own descriptor on the file, to notice it being truncated or rewritten in place
        # after load (see _check_file and docs/security.md).
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._close_fd = weakref.finalize(self, os.close, self._fd)
        try:
            self._stat = os.fstat(self._fd)
            self.gguf = GGUFFile(self.path)
        except BaseException:
            self._close_fd()
            raise
        try:
            if (self.gguf.file_size, self.gguf.mmap.size()) != (self._stat.st_size,) * 2:
                raise StrataError(f"{self.path} changed on disk while it was being loaded")
            self.config = architecture(self.gguf.arch).from_gguf(self.gguf)
            self._check_weight_types()
            if backend == "auto":  # may run Metal's first-use check on these weight types
                backend = auto_backend({t.type_name for t in self.gguf.tensors.values()
                                        if len(t.shape) >= 2})
            self.tokenizer = Tokenizer.from_gguf(self.gguf)
            self.n_ctx = self._context_size(n_ctx)
            self.config.n_ctx = self.n_ctx  # e.g. phi3 LongRoPE picks its factors from it
            builder = GraphBuilder(self.gguf)
            self.config.build(builder)
            mapping = np.frombuffer(self.gguf.mmap, dtype=np.uint8)
            self._engine = _core.Engine(
                builder.graph, mapping, n_ctx=self.n_ctx, n_batch=n_batch,
                n_threads=n_threads or 0, backend=backend,
            )
        except BaseException:
            self.gguf.close()
            self._close_fd()
            raise
        self.backend = backend
        self._lock = threading.Lock()
        self._cached: list[int] = []  # tokens whose K/V are in the cache, in order

    def _context_size(self, n_ctx: int | None) -> int:
        """n_ctx as asked (None: the training context). Models with learned positions
        (gpt2) cannot go past them: the default 4096 is lowered, an explicit value refused."""
        limit = self.config.max_positions
        if n_ctx is None:
            return self.config.n_ctx_train
        if limit is not None and n_ctx > limit:
            if n_ctx == DEFAULT_N_CTX:
                return limit
            raise StrataValueError(
                f"n_ctx = {n_ctx} exceeds the {limit} positions this {self.config.arch} model has"
            )
        return n_ctx

    def _check_weight_types(self) -> None:
        for t in self.gguf.tensors.values():
            if t.type_name not in SUPPORTED_WEIGHT_TYPES:
                raise UnsupportedModelError(
                    f"{self.path}: tensor {t.name!r} has type {t.type_name}, which strata "
                    f"does not support yet (supported: {', '.join(sorted(SUPPORTED_WEIGHT_TYPES))})"
                )

    def _check_file(self) -> None:
        """Raises StrataError if the mapped file was truncated or modified since load.

        The weights are read in place from the map: reading a page past a truncated end
        kills the process with SIGBUS, so a change is detected (one fstat) before every
        evaluation and after every generated token. A file *replaced* (renamed over, or
        deleted) is harmless: the map keeps the old contents alive.
        """
        if self._engine is None:
            raise StrataValueError(f"{self.path}: the model is closed")
        st = os.fstat(self._fd)
        if st.st_size != self._stat.st_size or st.st_mtime_ns != self._stat.st_mtime_ns:
            raise StrataError(
                f"{self.path} changed on disk after load (size {self._stat.st_size} -> "
                f"{st.st_size} bytes, modified time changed: "
                f"{st.st_mtime_ns != self._stat.st_mtime_ns}); load it again"
            )

    # -- info --------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return int(self._engine.n_vocab)

    @property
    def description(self) -> str:
        """Which backend and kernels run this model (e.g. ``cpu (avx512, 2 threads)``)."""
        return str(self._engine.description)

    @property
    def tokens_evaluated(self) -> int:
        """Total tokens run through the model since load (prompt caching saves these)."""
        return int(self._engine.tokens_evaluated)

    def set_profiling(self, on: bool = True) -> None:
        """Start (or stop) timing every op of every step; read with :meth:`profile`."""
        self._engine.set_profiling(on)

    def profile(self) -> list[tuple[str, int, float]]:
        """(op, node count, seconds) summed over the steps since set_profiling(True),
        slowest first."""
        totals: dict[str, list[float]] = {}
        for op, secs in self._engine.profile():
            t = totals.setdefault(op, [0, 0.0])
            t[0] += 1
            t[1] += secs
        return sorted(((op, int(n), s) for op, (n, s) in totals.items()), key=lambda r: -r[2])

    # -- tokens ------------------------------------------------------------------------
    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text``, exactly as llama.cpp gives them.

        add_special adds BOS/EOS where the model asks for them; parse_special maps
        special-token text (e.g. ``<|im_start|>``) to its id instead of spelling it out.
        """
        if not isinstance(text, str):
            raise StrataValueError("text must be a str")
        return self.tokenizer.encode(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (special tokens included as their text)."""
        return self.tokenizer.decode(ids)

    # -- evaluation --------------------------------------------------------------------
    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """Raw next-token logits at every position, float32 (n_tokens, n_vocab),
        evaluated from an empty cache.

        Raises:
            ContextOverflowError: more tokens than n_ctx.
        """
        ids = self._check_ids(token_ids)
        with self._lock:
            self._check_file()
            self._cached = []
            self._engine.truncate(0)
            out = self._engine.eval(np.asarray(ids, dtype=np.int32), all_logits=True)
            self._cached = list(ids)
            return out

    def _check_ids(self, token_ids: Sequence[int]) -> list[int]:
        ids = [int(t) for t in token_ids]
        if not ids:
            raise StrataValueError("token_ids must not be empty")
        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"{len(ids)} tokens exceed n_ctx = {self.n_ctx}")
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise StrataValueError(f"token id {bad[0]} is outside the vocabulary ({self.n_vocab})")
        return ids

    # -- generation --------------------------------------------------------------------
    def stream(
        self,
        prompt: str | Sequence[int],
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.05,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        completion: Completion | None = None,
        logprobs: bool = False,
    ) -> Iterator[str]:
        """Generate text, yielding pieces as they are decoded (never half a character).

        ``prompt`` is text (tokenized with BOS as the model asks, special tokens parsed as
        text) or a list of token ids. temperature 0 is greedy; the same seed gives the same
        text. Generation stops at an end-of-generation token, a ``stop`` string (not
        included in the output), ``max_tokens`` new tokens, or a full context.
        Pass a :class:`~strata.generate.Completion` to receive ids and finish_reason, and
        with ``logprobs=True`` the log-probability of each chosen token (its ``logprobs``).

        Raises:
            StrataValueError: a bad argument (the message names it).
            ContextOverflowError: the prompt does not fit in n_ctx (raised before any work).
        """
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0:
            raise StrataValueError(f"max_tokens must be an integer >= 0, got {max_tokens!r}")
        settings = SamplingSettings(temperature, top_k, top_p, min_p, repetition_penalty, 64, seed)
        settings.validate()
        stops = check_stop(stop)
        ids = self.tokenize(prompt) if isinstance(prompt, str) else self._check_ids(prompt)
        if not ids:
            ids = [self.tokenizer.bos_id if self.tokenizer.bos_id is not None else 0]
        if len(ids) >= self.n_ctx:
            raise ContextOverflowError(
                f"prompt of {len(ids)} tokens leaves no room to generate within n_ctx = {self.n_ctx}"
            )
        result = completion if completion is not None else Completion()
        return self._stream(ids, max_tokens, settings, stops, on_token, result, bool(logprobs))

    def _stream(self, ids, max_tokens, settings, stops, on_token, result, logprobs) -> Iterator[str]:
        with self._lock:
            if max_tokens == 0:
                result.prompt_tokens = len(ids)
                result.finish_reason = "length"
                return
            # Prompt caching: keep the longest cached prefix, re-evaluating at least 1 token,
            # and at least as many as the backend's batched kernels take (or the whole
            # prompt, if shorter), so the logits are those of a fresh evaluation of the same
            # prompt (Backend::batch_kernel_rows). A prefix that was generated rather than
            # prompted ran on the decode kernels and may differ from a fresh evaluation in the
            # last bits (docs/numerics.md).
            n_cached = 0
            reeval = max(1, min(len(ids), int(self._engine.batch_kernel_rows)))
            limit = min(len(self._cached), len(ids) - reeval)
            while n_cached < limit and self._cached[n_cached] == ids[n_cached]:
                n_cached += 1
            self._check_file()
            self._cached = []  # unknown until this generation finishes cleanly
            try:
                for piece in run_generation(
                    self._engine, self.tokenizer, ids, n_cached, max_tokens, settings.native(),
                    settings.resolved_seed(), settings.penalty_last_n, stops, result, logprobs,
                ):
                    self._check_file()
                    if on_token is not None:
                        on_token(piece)
                    yield piece
            finally:
                self._cached = (ids + result.token_ids)[: int(self._engine.n_past)]

    def generate(self, prompt: str | Sequence[int], max_tokens: int = 256, **kwargs) -> str:
        """Generate and return the whole text; arguments as :meth:`stream`."""
        return "".join(self.stream(prompt, max_tokens=max_tokens, **kwargs))

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, object]], add_generation_prompt: bool = True
    ) -> str:
        """The prompt text for ``messages`` from the model's own chat template."""
        template = self.tokenizer.chat_template
        if not template:
            raise UnsupportedModelError(f"{self.path} has no chat template")
        tok = self.tokenizer
        bos = tok.token_text(tok.bos_id) if tok.bos_id is not None else ""
        eos = tok.token_text(tok.eos_id) if tok.eos_id is not None else ""
        return render_chat(template, messages, bos, eos, add_generation_prompt)

    def chat(
        self, messages: Sequence[Mapping[str, object]], stream: bool = False, **kwargs
    ) -> str | Iterator[str]:
        """Reply to an OpenAI-style message list using the model's chat template.

        With ``stream=True`` returns an iterator of text pieces; otherwise the whole reply.
        Other arguments as :meth:`stream`.
        """
        text = self.apply_chat_template(messages)
        ids = self.tokenizer.encode(text, add_special=True, parse_special=True)
        bos = self.tokenizer.bos_id
        if bos is not None and len(ids) > 1 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # the template wrote BOS itself
        pieces = self.stream(ids, **kwargs)
        return pieces if stream else "".join(pieces)

    def close(self) -> None:
        """Free the engine and unmap the file. The Model is unusable afterwards."""
        with self._lock:
            self._engine = None
            self._close_fd()
            self.gguf.close()

    def __repr__(self) -> str:
        return f"<strata.Model {os.path.basename(self.path)} {self.config.arch} on {self.description}>"


def load(
    path: str | os.PathLike[str],
    n_ctx: int | None = 4096,
    n_threads: int | None = None,
    backend: str = "auto",
) -> Model:
    """Load a GGUF model. ``backend="auto"`` picks cuda > metal > cpu among those that can
    run here (:func:`available_backends`). Metal is unverified on hardware, so the first
    time in a process that auto would pick it, a quick kernel check (a subset of
    ``strata selftest`` on this model's weight types, milliseconds) runs on it first; if
    that fails, auto falls back to the CPU with a RuntimeWarning naming the kernels
    (``STRATA_METAL_AUTO=0``: never Metal for auto; ``=1``: Metal without the check).
    ``backend="metal"`` never runs the check.

    n_ctx is the KV cache capacity in tokens (None: the model's training context);
    n_threads defaults to the number of physical cores.

    Raises:
        GGUFError: the file is malformed. UnsupportedModelError: architecture, tokenizer or
        tensor type not supported. StrataValueError: a bad argument. OSError: no such file.
    """
    return Model(path, n_ctx=n_ctx, n_threads=n_threads, backend=backend)

"""The generation loop: prompt in, text pieces out, one native call per token.

Stop strings are matched on the decoded text; text that might be the start of a stop
string is held back until it is known not to be one, so a stop string never leaks into
the output, even when it spans several tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import StrataError, StrataValueError
from .tokenizer import StreamDecoder, Tokenizer


@dataclass
class Completion:
    """What one generation produced (filled in as it runs)."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    prompt_tokens: int = 0
    finish_reason: str | None = None  # "stop" (EOG token or stop string) or "length"
    # With logprobs=True: the natural-log probability of each chosen token under the model
    # (raw logits, before temperature and penalties), one per entry of token_ids.
    logprobs: list[float] | None = None


def token_logprob(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token], computed stably in float64."""
    x = logits.astype(np.float64)
    m = x.max()
    return float(x[token] - m - np.log(np.exp(x - m).sum()))


def check_stop(stop: str | Sequence[str] | None) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    out = list(stop)
    if not all(isinstance(s, str) and s for s in out):
        raise StrataValueError("stop must be a string or a list of non-empty strings")
    return out


class StopMatcher:
    """Feeds text through; returns what is safe to emit and whether a stop string hit."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        self.pending += text
        if not self.stops:
            out, self.pending = self.pending, ""
            return out, False
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            out, self.pending = self.pending[:cut], ""
            return out, True
        # Hold back the longest suffix that is a prefix of some stop string.
        hold = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        out = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def run_generation(
    engine,
    tokenizer: Tokenizer,
    prompt_ids: list[int],
    n_cached: int,
    max_tokens: int,
    params,
    seed: int,
    penalty_window: int,
    stops: list[str],
    result: Completion,
    logprobs: bool = False,
) -> Iterator[str]:
    """Evaluates the prompt (reusing the first ``n_cached`` tokens already in the KV cache)
    and yields text pieces until EOG, a stop string, max_tokens or a full context."""
    try:
        engine.truncate(n_cached)
    except StrataError:  # a sliding-window cache forgot that far back: start afresh
        n_cached = 0
        engine.truncate(0)
    engine.eval(np.asarray(prompt_ids[n_cached:], dtype=np.int32))
    engine.seed(seed)
    history = list(prompt_ids)
    use_penalty = params.repetition_penalty != 1.0 and penalty_window != 0
    no_history = np.zeros(0, dtype=np.int32)
    decoder = StreamDecoder(tokenizer, skip_special=True)
    matcher = StopMatcher(stops)
    result.prompt_tokens = len(prompt_ids)
    if logprobs:
        result.logprobs = []

    def recent() -> np.ndarray:
        if not use_penalty:
            return no_history
        window = history if penalty_window < 0 else history[-penalty_window:]
        return np.asarray(window, dtype=np.int32)

    token = engine.sample(params, recent())
    while True:
        if tokenizer.is_eog(token):
            result.finish_reason = "stop"
            break
        result.token_ids.append(token)
        if logprobs:
            result.logprobs.append(token_logprob(engine.last_logits(), token))
        history.append(token)
        text, hit = matcher.feed(decoder.push(token))
        if text:
            result.text += text
            yield text
        if hit:
            result.finish_reason = "stop"
            return
        if len(result.token_ids) >= max_tokens or engine.n_past >= engine.n_ctx:
            result.finish_reason = "length"
            break
        token = engine.step_sample(token, params, recent())
    text, hit = matcher.feed(decoder.flush())
    tail = text if hit else text + matcher.flush()
    if tail:
        result.text += tail
        yield tail

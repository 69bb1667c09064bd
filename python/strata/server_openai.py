"""OpenAI's wire format for `strata serve`: request validation, errors and response shapes.

Nothing here touches the model or the network: it turns a parsed JSON body into checked
Python values (raising :class:`APIError` with OpenAI's error shape and status code) and
builds the JSON objects OpenAI clients expect back.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_N = 16  # choices per request: they are generated one after another


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def parse_json_body(raw: bytes) -> dict:
    """The request body as a JSON object, or a 400 APIError."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request(
            "We could not parse the JSON body of your request. The body must be valid JSON "
            "(and sent with Content-Type: application/json).", code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.", code="invalid_json")
    return body


# -- field validation ---------------------------------------------------------------------

def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _number(body: Mapping, name: str, default: float, lo: float, hi: float | None = None) -> float:
    x = body.get(name)
    if x is None:
        return default
    if not _is_number(x) or x < lo or (hi is not None and x > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise bad_request(f"'{name}' must be a number {rng}, got {x!r}", param=name)
    return float(x)


def _integer(body: Mapping, name: str, default: int | None, lo: int, hi: int | None = None):
    x = body.get(name)
    if x is None:
        return default
    if not isinstance(x, int) or isinstance(x, bool) or x < lo or (hi is not None and x > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise bad_request(f"'{name}' must be an integer {rng}, got {x!r}", param=name)
    return x


def _boolean(body: Mapping, name: str, default: bool) -> bool:
    x = body.get(name)
    if x is None:
        return default
    if not isinstance(x, bool):
        raise bad_request(f"'{name}' must be a boolean, got {x!r}", param=name)
    return x


def _unsupported(body: Mapping, name: str, allowed: tuple = (None,)) -> None:
    x = body.get(name)
    if x in allowed or (isinstance(x, (list, dict)) and not x):
        return
    raise bad_request(f"'{name}' is not supported by this server", param=name,
                      code="unsupported_parameter")


@dataclass
class Sampling:
    """Generation settings shared by /v1/completions and /v1/chat/completions."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float
    seed: int | None
    stop: list[str]
    n: int
    stream: bool
    include_usage: bool
    model: str | None

    def kwargs(self, choice: int) -> dict:
        """Keyword arguments for ``Model.stream`` for choice number ``choice``."""
        seed = None if self.seed is None else (self.seed + choice) % (1 << 64)
        return {"max_tokens": self.max_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": self.top_k, "min_p": self.min_p,
                "repetition_penalty": self.repetition_penalty, "seed": seed,
                "stop": self.stop or None}


def parse_sampling(body: Mapping, default_max_tokens: int, max_tokens_names: tuple[str, ...]
                   ) -> Sampling:
    """Validates the fields both endpoints share; defaults are llama-cpp-python's.

    ``max_tokens_names`` lists the field names for the token limit, first present wins.
    """
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad_request(f"'model' must be a string, got {model!r}", param="model")
    max_tokens = default_max_tokens
    for name in max_tokens_names:
        value = _integer(body, name, None, 0)
        if value is not None:
            max_tokens = value
            break
    temperature = _number(body, "temperature", 0.8, 0.0)
    top_p = _number(body, "top_p", 0.95, 0.0, 1.0)
    if top_p == 0.0:  # only the most likely token survives: that is greedy decoding
        top_p, temperature = 1.0, 0.0
    top_k = _integer(body, "top_k", 40, 0)
    min_p = _number(body, "min_p", 0.05, 0.0, 1.0)
    repetition_penalty = body.get("repetition_penalty")
    if repetition_penalty is None:
        repetition_penalty = 1.0
    elif not _is_number(repetition_penalty) or repetition_penalty <= 0:
        raise bad_request(f"'repetition_penalty' must be a number > 0, got {repetition_penalty!r}",
                          param="repetition_penalty")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise bad_request(f"'seed' must be an integer, got {seed!r}", param="seed")
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop] if stop else []
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = [s for s in stop if s]
    else:
        raise bad_request("'stop' must be a string or a list of strings", param="stop")
    n = _integer(body, "n", 1, 1, MAX_N)
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise bad_request("'stream_options' is only allowed when 'stream' is true",
                              param="stream_options")
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object", param="stream_options")
        include_usage = _boolean(options, "include_usage", False)
    for name in ("presence_penalty", "frequency_penalty"):
        _unsupported(body, name, (None, 0, 0.0))
    _unsupported(body, "logit_bias")
    return Sampling(max_tokens, temperature, top_p, top_k, min_p, float(repetition_penalty),
                    seed, stops, n, stream, include_usage, model)


def parse_messages(body: Mapping) -> list[dict]:
    """Chat messages as ``{"role", "content"}`` dicts with string content."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty list of messages", param="messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad_request(f"{where} must be an object with a string 'role'", param=where)
        role = "system" if m["role"] == "developer" else m["role"]
        content = m.get("content")
        if content is None:
            text = ""
        elif isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = []
            for part in content:
                if not (isinstance(part, dict) and part.get("type") in ("text", "input_text")
                        and isinstance(part.get("text"), str)):
                    raise bad_request(f"{where}.content: only text parts are supported",
                                      param=f"{where}.content")
                parts.append(part["text"])
            text = "\n".join(parts)
        else:
            raise bad_request(f"{where}.content must be a string or a list of text parts",
                              param=f"{where}.content")
        msg = {"role": role, "content": text}
        if isinstance(m.get("name"), str):
            msg["name"] = m["name"]
        out.append(msg)
    return out


def parse_chat(body: Mapping, n_ctx: int) -> tuple[list[dict], Sampling]:
    """A /v1/chat/completions body: (messages, sampling)."""
    messages = parse_messages(body)
    sampling = parse_sampling(body, n_ctx, ("max_completion_tokens", "max_tokens"))
    if body.get("logprobs") not in (None, False):
        _unsupported(body, "logprobs")
    _unsupported(body, "top_logprobs", (None, 0))
    _unsupported(body, "tools")
    _unsupported(body, "functions")
    _unsupported(body, "tool_choice", (None, "none", "auto"))
    fmt = body.get("response_format")
    if fmt is not None and not (isinstance(fmt, dict) and fmt.get("type") == "text"):
        _unsupported(body, "response_format")
    return messages, sampling


def parse_completion(body: Mapping) -> tuple[list[str] | list[list[int]], bool, Sampling]:
    """A /v1/completions body: (prompts, echo, sampling). Each prompt is text or token ids."""
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts: list = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    elif (isinstance(prompt, list) and prompt
          and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt)):
        prompts = [list(prompt)]
    elif (isinstance(prompt, list) and prompt and all(
            isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool)
                                              for t in p) for p in prompt)):
        prompts = [list(p) for p in prompt]
    else:
        raise bad_request("'prompt' must be a string, a list of strings, a list of token ids "
                          "or a list of lists of token ids", param="prompt")
    if len(prompts) > MAX_N:
        raise bad_request(f"at most {MAX_N} prompts per request", param="prompt")
    sampling = parse_sampling(body, 16, ("max_tokens",))
    if len(prompts) * sampling.n > MAX_N:
        raise bad_request(f"at most {MAX_N} choices (prompts x n) per request", param="n")
    echo = _boolean(body, "echo", False)
    _unsupported(body, "logprobs")
    _unsupported(body, "suffix", (None, ""))
    _unsupported(body, "best_of", (None, sampling.n))
    return prompts, echo, sampling


# -- responses ----------------------------------------------------------------------------

@dataclass
class Envelope:
    """The fields every response and chunk of one request share."""

    object: str
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        if not self.id:
            prefix = "chatcmpl" if self.object.startswith("chat") else "cmpl"
            self.id = f"{prefix}-{uuid.uuid4().hex}"

    def wrap(self, obj: str, choices: list, usage: dict | None = None,
             with_usage_key: bool = False) -> dict:
        out = {"id": self.id, "object": obj, "created": self.created, "model": self.model,
               "system_fingerprint": None, "choices": choices}
        if usage is not None or with_usage_key:
            out["usage"] = usage
        return out


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(obj: dict | str) -> bytes:
    """One server-sent event carrying ``obj`` as JSON (or ``[DONE]``)."""
    data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
    return f"data: {data}\n\n".encode()

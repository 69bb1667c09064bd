"""`strata serve`: an OpenAI-compatible HTTP server for one model (Starlette + uvicorn).

Endpoints: ``GET /v1/models``, ``GET /v1/models/{id}``, ``POST /v1/completions``,
``POST /v1/chat/completions`` (both with ``"stream": true`` as server-sent events ending in
``data: [DONE]``) and ``GET /health``. Errors use OpenAI's shape
``{"error": {"message", "type", "param", "code"}}``.

Requests are served one at a time, first come first served (see :mod:`strata.server_queue`):
the core has no batched multi-sequence decode yet. The model's prompt cache keeps the K/V of
the previous request, so a chat's next turn only evaluates the new messages.

Needs the ``server`` extra: ``pip install "strata[server]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .chat import ChatTemplateError
from .errors import ContextOverflowError, StrataError, UnsupportedModelError
from .generate import Completion
from .model import Model
from .server_openai import (
    APIError,
    Envelope,
    Sampling,
    bad_request,
    parse_chat,
    parse_completion,
    parse_json_body,
    sse,
    usage,
)
from .server_queue import Job, QueueFullError, Scheduler

MAX_BODY_BYTES = 8 << 20
KEEPALIVE_S = 10.0  # a streaming client waiting its turn gets an SSE comment this often


@dataclass
class _Choice:
    """One generation of a request: its index in ``choices`` and its prompt's index."""

    index: int
    prompt_index: int
    pieces: Iterator[str]
    completion: Completion
    prefix: str = ""  # echoed prompt text (completions with echo=true)
    text: list[str] = field(default_factory=list)


def default_model_id(path: str) -> str:
    """The id a model file is served under: its file name without ``.gguf``."""
    name = os.path.basename(path)
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


class _App:
    """The server's state (one model, one queue) and its request handlers."""

    def __init__(self, model: Model, model_id: str | None, max_queue: int,
                 max_body_bytes: int) -> None:
        self.model = model
        self.model_id = model_id or default_model_id(model.path)
        self.aliases = {self.model_id, os.path.basename(model.path), model.path}
        self.max_body_bytes = max_body_bytes
        self.scheduler = Scheduler(max_queue)
        try:
            self.created = int(os.path.getmtime(model.path))
        except OSError:
            self.created = 0

    # -- plain endpoints ----------------------------------------------------------------
    def _model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": self.created,
                "owned_by": "strata"}

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def get_model(self, request: Request) -> Response:
        self._check_model(request.path_params["model"])
        return JSONResponse(self._model_card())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.model_id,
                             "busy": self.scheduler.busy, "queued": self.scheduler.queued})

    def _check_model(self, name: str | None) -> None:
        if name is not None and name not in self.aliases:
            raise APIError(404, f"The model '{name}' does not exist (this server serves "
                           f"'{self.model_id}')", param="model", code="model_not_found")

    async def _read_json(self, request: Request) -> dict:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise APIError(413, f"request body exceeds {self.max_body_bytes} bytes",
                           code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise APIError(413, f"request body exceeds {self.max_body_bytes} bytes",
                               code="request_too_large")
            chunks.append(chunk)
        return parse_json_body(b"".join(chunks))

    # -- generation endpoints -----------------------------------------------------------
    async def chat_completions(self, request: Request) -> Response:
        body = await self._read_json(request)
        messages, sampling = parse_chat(body, self.model.n_ctx)
        self._check_model(sampling.model)

        def prepare() -> list[_Choice]:
            out = []
            for i in range(sampling.n):
                done = Completion()
                pieces = self.model.chat(messages, stream=True, completion=done,
                                         **sampling.kwargs(i))
                out.append(_Choice(i, 0, pieces, done))
            return out

        choices = await self._prepare(prepare, "messages")
        env = Envelope("chat.completion", self.model_id)
        return await self._respond(request, env, sampling, choices)

    async def completions(self, request: Request) -> Response:
        body = await self._read_json(request)
        prompts, echo, sampling = parse_completion(body)
        self._check_model(sampling.model)

        def prepare() -> list[_Choice]:
            out = []
            for p, prompt in enumerate(prompts):
                prefix = ""
                if echo:
                    prefix = prompt if isinstance(prompt, str) else self.model.detokenize(prompt)
                for i in range(sampling.n):
                    done = Completion()
                    pieces = self.model.stream(prompt, completion=done, **sampling.kwargs(i))
                    out.append(_Choice(len(out), p, pieces, done, prefix))
            return out

        choices = await self._prepare(prepare, "prompt")
        env = Envelope("text_completion", self.model_id)
        return await self._respond(request, env, sampling, choices)

    async def _prepare(self, fn: Callable[[], list[_Choice]], param: str) -> list[_Choice]:
        """Runs tokenization, templating and argument checks off the event loop."""
        try:
            return await anyio.to_thread.run_sync(fn)
        except ContextOverflowError as e:
            raise APIError(400, f"This model's maximum context length is {self.model.n_ctx} "
                           f"tokens: {e}", param=param, code="context_length_exceeded") from None
        except (ValueError, ChatTemplateError) as e:  # StrataValueError included
            raise bad_request(str(e), param=param) from None
        except UnsupportedModelError as e:
            raise bad_request(str(e), param="model", code="model_not_supported") from None

    async def _respond(self, request: Request, env: Envelope, sampling: Sampling,
                       choices: list[_Choice]) -> Response:
        job = Job(_work(choices), asyncio.get_running_loop())
        try:
            self.scheduler.submit(job)
        except QueueFullError as e:
            raise APIError(503, str(e), type="server_error", code="server_overloaded") from None
        except StrataError as e:
            raise APIError(503, str(e), type="server_error", code="server_unavailable") from None
        if sampling.stream:
            return StreamingResponse(
                _stream_events(request, job, env, sampling, choices),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        watcher = asyncio.ensure_future(_watch_disconnect(request, job))
        try:
            while True:
                event = await job.next_event()
                if event[0] == "error":
                    raise _internal_error(event[1])
                if event[0] in ("done", "cancelled"):
                    break
                if event[0] == "piece":
                    choices[event[1]].text.append(event[2])
        finally:
            job.cancel()  # a no-op when it finished; frees the queue if we were cancelled
            watcher.cancel()
        chat = env.object.startswith("chat")
        out = []
        for c in choices:
            text = c.prefix + "".join(c.text)
            if chat:
                out.append({"index": c.index, "message": {"role": "assistant", "content": text,
                                                          "refusal": None},
                            "logprobs": None, "finish_reason": c.completion.finish_reason})
            else:
                out.append({"text": text, "index": c.index, "logprobs": None,
                            "finish_reason": c.completion.finish_reason})
        return JSONResponse(env.wrap(env.object, out, _usage(choices)))


def _work(choices: list[_Choice]) -> Callable[[Job], None]:
    """What the worker thread runs for a request: each choice in turn, posting pieces."""

    def work(job: Job) -> None:
        done_tokens = 0
        for c in choices:
            try:
                for piece in c.pieces:
                    job.tokens_generated = done_tokens + len(c.completion.token_ids)
                    job.emit("piece", c.index, piece)
                    if job.cancelled:
                        break
            finally:
                c.pieces.close()  # releases the model now, not when garbage-collected
            done_tokens += len(c.completion.token_ids)
            job.tokens_generated = done_tokens
            if job.cancelled:
                for rest in choices:
                    rest.pieces.close()
                return
            job.emit("end", c.index)

    return work


def _usage(choices: list[_Choice]) -> dict:
    prompt_tokens = {c.prompt_index: c.completion.prompt_tokens for c in choices}
    return usage(sum(prompt_tokens.values()),
                 sum(len(c.completion.token_ids) for c in choices))


def _internal_error(e: BaseException) -> APIError:
    if isinstance(e, ContextOverflowError):
        return APIError(400, str(e), code="context_length_exceeded")
    return APIError(500, f"generation failed: {type(e).__name__}: {e}", type="server_error")


async def _watch_disconnect(request: Request, job: Job) -> None:
    """Cancels ``job`` when the client disconnects (the request body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel()
            job.emit("cancelled")
            return


async def _stream_events(request: Request, job: Job, env: Envelope, sampling: Sampling,
                         choices: list[_Choice]) -> AsyncIterator[bytes]:
    chat = env.object.startswith("chat")
    obj = "chat.completion.chunk" if chat else "text_completion"
    keep = sampling.include_usage  # OpenAI sends "usage": null on every chunk then

    def chunk(index: int, text: str | None, finish: str | None, role: bool = False) -> bytes:
        if chat:
            delta: dict = {}
            if role:
                delta = {"role": "assistant", "content": ""}
            elif text is not None:
                delta = {"content": text}
            c = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            c = {"text": text or "", "index": index, "logprobs": None, "finish_reason": finish}
        return sse(env.wrap(obj, [c], None, keep))

    started: set[int] = set()

    def start(index: int) -> Iterator[bytes]:
        if index not in started:
            started.add(index)
            if chat:
                yield chunk(index, None, None, role=True)
            elif choices[index].prefix:
                yield chunk(index, choices[index].prefix, None)

    watcher = asyncio.ensure_future(_watch_disconnect(request, job))
    try:
        for b in start(0):
            yield b
        while True:
            try:
                event = await asyncio.wait_for(job.next_event(), KEEPALIVE_S)
            except asyncio.TimeoutError:  # waiting in the queue (or a long prompt)
                yield b": keep-alive\n\n"  # an SSE comment: clients ignore it
                continue
            kind = event[0]
            if kind == "piece":
                for b in start(event[1]):
                    yield b
                yield chunk(event[1], event[2], None)
            elif kind == "end":
                for b in start(event[1]):
                    yield b
                yield chunk(event[1], None, choices[event[1]].completion.finish_reason)
            elif kind == "done":
                break
            elif kind == "error":
                yield sse(_internal_error(event[1]).body())
                return
            else:  # cancelled: the client is gone
                return
        if sampling.include_usage:
            yield sse(env.wrap(obj, [], _usage(choices)))
        yield sse("[DONE]")
    finally:
        job.cancel()
        watcher.cancel()


# -- the application ------------------------------------------------------------------------

async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(APIError(exc.status_code, str(exc.detail)).body(),
                        status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(
        APIError(500, f"internal error: {type(exc).__name__}", type="server_error").body(),
        status_code=500)


def create_app(
    model: Model,
    model_id: str | None = None,
    max_queue: int = 64,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI application serving ``model`` (run it with uvicorn or any ASGI server).

    model_id is the name clients pass as ``model`` (default: the file name without
    ``.gguf``); max_queue bounds the requests waiting for the model (more get 503);
    max_body_bytes bounds a request body (more get 413).
    The app's ``state.server`` holds the model and its scheduler.
    """
    app_state = _App(model, model_id, max_queue, max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            app_state.scheduler.close()

    endpoints = [
        ("/models", app_state.list_models, "GET"),
        ("/models/{model:path}", app_state.get_model, "GET"),
        ("/completions", app_state.completions, "POST"),
        ("/chat/completions", app_state.chat_completions, "POST"),
    ]
    # Under /v1 as OpenAI serves them, and at the root for clients configured without it.
    routes = [Route(prefix + path, fn, methods=[method])
              for prefix in ("/v1", "") for path, fn, method in endpoints]
    app = Starlette(
        routes=[*routes, Route("/health", app_state.health, methods=["GET"])],
        exception_handlers={APIError: _api_error, HTTPException: _http_error,
                            Exception: _server_error},
        lifespan=lifespan,
    )
    app.state.server = app_state
    return app


def serve(
    model: str | os.PathLike[str] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    n_ctx: int | None = 4096,
    n_threads: int | None = None,
    backend: str = "auto",
    model_id: str | None = None,
    max_queue: int = 64,
    log_level: str = "info",
) -> None:
    """Loads ``model`` (default: the embedded SmolLM2) and serves it until interrupted.

    Raises:
        StrataError: the model cannot be loaded (see :func:`strata.load`).
    """
    import uvicorn

    from . import default_model_path, load

    m = load(model or default_model_path(), n_ctx=n_ctx, n_threads=n_threads, backend=backend)
    app = create_app(m, model_id=model_id, max_queue=max_queue)
    uvicorn.run(app, host=host, port=port, log_level=log_level)

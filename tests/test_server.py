"""`strata serve` for real on loopback, driven by the official `openai` client; prompt caching.

The server runs in this process (uvicorn in a background thread, on a socket bound to
127.0.0.1 port 0) so the tests can look at its model and queue; every HTTP call has a
timeout and every loop is bounded.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest
import strata

openai = pytest.importorskip("openai", reason="needs the openai client: pip install 'strata[test]'")
httpx = pytest.importorskip("httpx", reason="needs httpx: pip install 'strata[test]'")
uvicorn = pytest.importorskip("uvicorn", reason="needs the server extra: pip install 'strata[server]'")
pytest.importorskip("starlette", reason="needs the server extra: pip install 'strata[server]'")

from strata.server import create_app

MODEL_ID = "smollm2"
GREEDY = {"temperature": 0}
QUESTIONS = ["Name a fruit.", "What is 2+2?", "Say hello.", "What color is grass?",
             "Name a planet.", "What is the capital of Italy?", "Count to three.",
             "Name an animal."]


@pytest.fixture(scope="module")
def server(smollm2_file):
    model = strata.load(smollm2_file, n_ctx=2048, n_threads=2)
    app = create_app(model, model_id=MODEL_ID)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(400):
        if srv.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    url = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
    try:
        yield SimpleNamespace(url=url, client=client, model=model,
                              scheduler=app.state.server.scheduler)
    finally:
        client.close()
        srv.should_exit = True
        thread.join(30)
        sock.close()
        model.close()
    assert not thread.is_alive(), "the server did not stop"


def _error(e: openai.APIStatusError, status: int, param: str | None = None) -> dict:
    assert e.status_code == status
    body = e.response.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    return err


def _chat_stream(client, messages, **kwargs) -> tuple[str, list]:
    chunks = list(client.chat.completions.create(model=MODEL_ID, messages=messages,
                                                 stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_models(server):
    assert [m.id for m in server.client.models.list().data] == [MODEL_ID]
    assert server.client.models.retrieve(MODEL_ID).id == MODEL_ID


def test_completion_matches_the_python_api(server, smollm2):
    prompt = "The capital of France is"
    r = server.client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=8, **GREEDY)
    assert r.object == "text_completion" and r.model == MODEL_ID
    done = strata.Completion()
    assert r.choices[0].text == smollm2.generate(prompt, max_tokens=8, completion=done, **GREEDY)
    assert r.choices[0].finish_reason == done.finish_reason
    n_prompt, n_gen = len(smollm2.tokenize(prompt)), len(done.token_ids)
    assert n_gen == 8 or done.finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (
        n_prompt, n_gen, n_prompt + n_gen)

    r = server.client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=3, n=2,
                                         seed=7, temperature=0.9)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.usage.prompt_tokens == n_prompt  # one prompt, counted once
    stopped = sum(c.finish_reason == "stop" for c in r.choices)  # ended early on an EOG token
    assert r.usage.completion_tokens == 6 or (stopped and r.usage.completion_tokens < 6)


def test_chat_completion_and_its_next_turn_reuses_the_cache(server, smollm2):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = server.client.chat.completions.create(model=MODEL_ID, messages=messages,
                                              max_tokens=10, **GREEDY)
    reply = r.choices[0].message
    assert r.object == "chat.completion"
    assert reply.role == "assistant"
    assert reply.content == smollm2.chat(messages, max_tokens=10, **GREEDY)
    finish = r.choices[0].finish_reason
    assert (r.usage.completion_tokens, finish) == (10, "length") or (
        r.usage.completion_tokens < 10 and finish == "stop"
    )

    turn2 = messages + [{"role": "assistant", "content": reply.content},
                        {"role": "user", "content": "And of Spain?"}]
    before = server.model.tokens_evaluated
    r2 = server.client.chat.completions.create(model=MODEL_ID, messages=turn2,
                                               max_tokens=4, **GREEDY)
    evaluated = server.model.tokens_evaluated - before
    assert r2.choices[0].message.content == smollm2.chat(turn2, max_tokens=4, **GREEDY)
    # Only the new messages (and the generated tokens) went through the model.
    # (At least the backend's batch_kernel_rows prompt tokens are re-evaluated:
    # docs/numerics.md.)
    new_prompt = r2.usage.prompt_tokens - r.usage.prompt_tokens
    reeval = max(new_prompt, server.model._engine.batch_kernel_rows)
    assert evaluated <= reeval + r2.usage.completion_tokens
    assert evaluated < r2.usage.prompt_tokens


def test_streaming_chat(server, smollm2):
    messages = [{"role": "user", "content": "Say hello."}]
    text, chunks = _chat_stream(server.client, messages, max_tokens=12,
                                stream_options={"include_usage": True}, **GREEDY)
    assert text == smollm2.chat(messages, max_tokens=12, **GREEDY)
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "length" and all(f is None for f in finals[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_stop_strings(server, smollm2):
    prompt = "The capital of France is"
    r = server.client.completions.create(model=MODEL_ID, prompt=prompt, max_tokens=16,
                                         stop=["\n"], **GREEDY)
    expected = smollm2.generate(prompt, max_tokens=16, stop=["\n"], **GREEDY)
    assert r.choices[0].text == expected and "\n" not in expected and expected
    assert r.choices[0].finish_reason == "stop"

    messages = [{"role": "user", "content": "What is 2+2?"}]
    full = smollm2.chat(messages, max_tokens=10, **GREEDY)
    stop = full.split()[2]  # a word in the middle of the greedy reply
    text, chunks = _chat_stream(server.client, messages, max_tokens=10, stop=stop, **GREEDY)
    assert text == full[: full.index(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_bad_requests_get_openai_errors(server):
    c = server.client
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-nonexistent",
                                  messages=[{"role": "user", "content": "hi"}])
    assert _error(e.value, 404, "model")["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=MODEL_ID, prompt="hi", max_tokens=-1)
    _error(e.value, 400, "max_tokens")
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": "hi"}],
                                  max_completion_tokens=-5)
    _error(e.value, 400, "max_completion_tokens")
    with pytest.raises(openai.BadRequestError) as e:
        c.chat.completions.create(model=MODEL_ID, messages=[], max_tokens=4)
    _error(e.value, 400, "messages")
    with pytest.raises(openai.BadRequestError) as e:
        c.completions.create(model=MODEL_ID, prompt="hi", temperature=-1)
    _error(e.value, 400, "temperature")
    with pytest.raises(openai.BadRequestError) as e:  # prompt longer than n_ctx = 2048
        c.completions.create(model=MODEL_ID, prompt="word " * 3000, max_tokens=4)
    assert _error(e.value, 400, "prompt")["code"] == "context_length_exceeded"

    with httpx.Client(base_url=server.url, timeout=30) as h:
        r = h.post("/v1/chat/completions", content=b'{"model": "smollm2", "messages": [',
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 400
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "invalid_request_error"
        r = h.post("/v1/completions", content=b"[1, 2]")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        r = h.get("/v1/no-such-endpoint")
        assert r.status_code == 404 and "error" in r.json()
    # The server still works.
    r = c.completions.create(model=MODEL_ID, prompt="Hi", max_tokens=2)
    assert r.usage.completion_tokens <= 2


def test_eight_concurrent_streaming_clients_get_the_single_client_answers(server):
    def ask(q: str) -> tuple[str, str | None]:
        text, chunks = _chat_stream(server.client, [{"role": "user", "content": q}],
                                    max_tokens=10, **GREEDY)
        return text, chunks[-1].choices[0].finish_reason

    single = [ask(q) for q in QUESTIONS]
    results: list = [None] * len(QUESTIONS)
    barrier = threading.Barrier(len(QUESTIONS))

    def client(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = ask(QUESTIONS[i])
        except Exception as e:  # noqa: BLE001 -- reported by the assertion below
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(QUESTIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert results == single
    assert all(text and finish in ("stop", "length") for text, finish in single)


def test_thirty_two_concurrent_requests_in_a_bounded_loop(server, smollm2):
    """Issue 8: 32 clients at once, a mix of streaming and plain, chat and completion,
    each checked against the Python API's greedy answer; no crash, no deadlock (every
    thread joins within its bound) and the server still answers afterwards."""
    prompts = [f"Question {i}: name something {c}." for i, c in
               enumerate(["red", "blue", "small", "large", "old", "new", "fast", "slow"] * 4)]
    expected = [smollm2.generate(p, max_tokens=6, temperature=0) for p in prompts]
    results: list = [None] * len(prompts)
    barrier = threading.Barrier(len(prompts))

    def client(i: int) -> None:
        barrier.wait(timeout=60)
        try:
            if i % 2:
                chunks = server.client.completions.create(
                    model=MODEL_ID, prompt=prompts[i], max_tokens=6, stream=True, **GREEDY)
                results[i] = "".join(c.choices[0].text for c in chunks if c.choices)
            else:
                r = server.client.completions.create(model=MODEL_ID, prompt=prompts[i],
                                                     max_tokens=6, **GREEDY)
                results[i] = r.choices[0].text
        except Exception as e:  # noqa: BLE001 -- reported by the assertion below
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not any(t.is_alive() for t in threads), "a request never finished"
    assert results == expected
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200


def test_client_disconnecting_mid_stream_frees_the_model(server):
    max_tokens = 1500  # greedy counting goes on far longer than the test waits
    cancelled_before = server.scheduler.counts["cancelled"]
    body = {"model": MODEL_ID, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    got = []
    with httpx.Client(base_url=server.url, timeout=60) as h, \
            h.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        lines = r.iter_lines()  # kept referenced: dropping it would close the connection
        for _ in range(50):
            line = next(lines)
            if line.startswith("data: "):
                got.append(json.loads(line[len("data: "):])["choices"][0]["text"])
            if len(got) >= 3:
                break
        # Meanwhile the event loop still answers: generation runs in the worker thread.
        health = httpx.get(server.url + "/health", timeout=30).json()
        assert health["busy"] is True
        lines.close()
    # Leaving the blocks closed the connection mid-stream.
    assert len(got) == 3
    r = server.client.completions.create(model=MODEL_ID, prompt="The capital of France is",
                                         max_tokens=4, **GREEDY)
    assert r.usage.completion_tokens == 4
    # The abandoned generation was stopped, long before its max_tokens.
    assert server.scheduler.counts["cancelled"] == cancelled_before + 1
    cancelled = [rec for rec in server.scheduler.recent if rec.status == "cancelled"][-1]
    assert cancelled.tokens_generated < max_tokens // 2


def test_prompt_cache_evaluates_only_the_new_tokens(smollm2_file):
    prefix = ("You are a careful assistant. Here are some notes about the solar system. "
              "The Sun is a star at the centre. Mercury is the closest planet to the Sun and "
              "has no moons. Venus is the hottest planet because of its thick atmosphere. "
              "Earth is the only planet known to have life, and it has one moon. Mars is red "
              "because of iron oxide on its surface and has two small moons. Jupiter is the "
              "largest planet and has a great red spot, a storm larger than Earth. Saturn is "
              "famous for its rings made of ice and rock. Uranus rotates on its side. Neptune "
              "has the strongest winds. Pluto was reclassified as a dwarf planet in 2006. "
              "The asteroid belt lies between Mars and Jupiter. Comets come from the Kuiper "
              "belt and the Oort cloud, far beyond Neptune. Light from the Sun takes about "
              "eight minutes to reach Earth. A year on Mercury lasts 88 Earth days, and a day "
              "on Venus is longer than its year. The Moon causes the tides on Earth.\n\n")
    first = prefix + "Question: Which planet has rings?\nAnswer:"
    second = prefix + "Question: Which planet is red?\nAnswer:"
    cached = strata.load(smollm2_file, n_ctx=1024, n_threads=2)
    ids1, ids2 = cached.tokenize(first), cached.tokenize(second)
    common = next(i for i, (a, b) in enumerate(zip(ids1, ids2)) if a != b)
    assert common >= 200

    cached.generate(first, max_tokens=8, **GREEDY)
    before = cached.tokens_evaluated
    text = cached.generate(second, max_tokens=8, **GREEDY)
    evaluated = cached.tokens_evaluated - before

    fresh = strata.load(smollm2_file, n_ctx=1024, n_threads=2)
    before = fresh.tokens_evaluated
    expected = fresh.generate(second, max_tokens=8, **GREEDY)
    evaluated_fresh = fresh.tokens_evaluated - before

    # The shared prefix was not evaluated again, except the last tokens the backend's batched
    # kernels need re-evaluated (batch_kernel_rows, docs/numerics.md).
    reused = min(common, len(ids2) - max(1, cached._engine.batch_kernel_rows))
    assert text == expected and text
    assert evaluated_fresh - evaluated == reused
    assert evaluated <= len(ids2) - reused + 8  # new prompt tokens + one per generated token
    cached.close()
    fresh.close()

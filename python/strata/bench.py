"""Side-by-side CPU benchmark: strata against llama.cpp (through llama-cpp-python).

Both engines run in one process, on the same GGUF file, the same thread count, the same
context size and the same prompt tokens; their runs are interleaved so that they share the
machine's noise. What is measured (llama-bench's names):

* ``ppN``: prefill of N prompt tokens from an empty KV cache, tokens/s (one ``eval`` in
  strata; ``llama_decode`` in batches of n_batch in llama.cpp). Only the model calls are timed.
* ``tgN``: decode of N tokens one at a time after a short prompt (16 tokens, not timed),
  greedy; each step is one native call that decodes a token and samples the next
  (``Engine.step_sample`` in strata, ``llama_decode`` + the greedy ``llama_sampler`` in
  llama.cpp). Tokens/s, and the effective weight bandwidth (bytes of weights one token
  reads x tokens/s).
* ``ttftN``: time to first token for an N-token prompt, warm (prefill + first sample), ms.
* ``load``: in a fresh subprocess per run: load time with a cold page cache (the pages of a
  private copy of the file evicted with ``posix_fadvise(DONTNEED)``, which cannot evict pages
  another process has mapped; the resident fraction is reported) and warm; the first token
  of a 128-token prompt right after each load; peak RSS growth over load + that first token
  (file-backed pages of the mapped weights count, as the kernel counts them).

On a shared machine every timed run first waits for a quiet moment and a run during which
other tasks kept the CPUs contended is redone (Linux PSI, see :class:`Gate`); the contention of
each kept run is in the results.

Use it from Python (:func:`run_benchmark`, :func:`format_tables`), from the command line
(``python benchmarks/bench_cpu.py`` or :func:`main`), or from ``strata bench``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_TESTS",
    "FileInfo",
    "Gate",
    "LlamaCppRunner",
    "StrataRunner",
    "add_arguments",
    "contention",
    "cpu_pressure_us",
    "file_info",
    "format_tables",
    "machine_info",
    "main",
    "measure_load",
    "measure_read_bandwidth",
    "prompt_tokens",
    "run",
    "run_benchmark",
]

DEFAULT_TESTS = ("pp128", "pp512", "tg64", "tg128", "ttft128", "load")
TG_PROMPT_TOKENS = 16
LOAD_PROMPT_TOKENS = 128
ENGINES = ("strata", "llama.cpp")

# Plain English prose, repeated as needed: both engines get the same token ids.
PROMPT_TEXT = (
    "The history of the lighthouse begins with fires lit on hilltops to guide ships home at "
    "night. Over the centuries these beacons became towers of stone, and the open flames gave "
    "way to oil lamps, then to great glass lenses that could throw a beam across twenty miles "
    "of dark water. Keepers lived in small cottages at the foot of each tower, trimming wicks, "
    "polishing brass and writing the weather into a logbook every four hours. Storms were the "
    "hardest part of the work: a keeper might climb the spiral stairs a hundred times in one "
    "night to make sure the light never failed. Today most lighthouses run by themselves, "
    "powered by the sun and watched from a distance by engineers who read their sensors over "
    "the radio, but many towns still celebrate the old keepers with festivals, museums and "
    "guided walks along the cliffs. "
)


# --------------------------------------------------------------------------------------
# The file: weight type, size, bytes read per decoded token
# --------------------------------------------------------------------------------------
@dataclass
class FileInfo:
    """What the table says about a GGUF file."""

    path: str
    name: str
    arch: str
    weight_type: str  # from general.file_type, else the type holding most bytes
    type_bytes: dict[str, int]  # bytes per tensor type, largest first
    size_bytes: int  # sum of tensor bytes (what llama-bench calls size)
    n_params: int
    bytes_per_token: int  # weight bytes one decode step reads
    tied_embeddings: bool
    file_bytes: int

    @property
    def label(self) -> str:
        return os.path.basename(self.path)


def _ftype_name(ftype: object) -> str | None:
    if not isinstance(ftype, int):
        return None
    try:
        import gguf

        name = gguf.LlamaFileType(ftype).name
    except (ImportError, ValueError):
        return f"ftype {ftype}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _read_tensors(path: str) -> tuple[dict[str, object], list[tuple[str, str, int, int]]]:
    """(metadata subset, [(name, type, nbytes, n_elements)]) with strata's reader, or the
    ``gguf`` package's when strata's refuses the file."""
    keys = ("general.file_type", "general.name", "general.architecture")
    try:
        from strata.gguf import GGUFFile

        with GGUFFile(path) as f:
            meta = {k: f.get(k) for k in keys}
            tensors = [(t.name, t.type_name, t.nbytes, t.n_elements) for t in f.tensors.values()]
        return meta, tensors
    except Exception:  # noqa: BLE001 - strata's reader refused the file: try gguf's
        import gguf

        r = gguf.GGUFReader(path)
        meta = {}
        for k in keys:
            fld = r.get_field(k)
            if fld is not None:
                v = fld.contents()
                meta[k] = v
        tensors = [
            (t.name, t.tensor_type.name, int(t.n_bytes), int(t.n_elements)) for t in r.tensors
        ]
        return meta, tensors


def file_info(path: str | os.PathLike[str]) -> FileInfo:
    """Weight type, size and decode bytes per token of a GGUF file.

    Bytes per token: every tensor's bytes except the token embedding table, which a decode
    step only reads one row of, unless it is also the output matrix (no ``output.weight``).
    """
    path = os.fspath(path)
    meta, tensors = _read_tensors(path)
    type_bytes: dict[str, int] = {}
    for _, tname, nbytes, _ in tensors:
        type_bytes[tname] = type_bytes.get(tname, 0) + nbytes
    type_bytes = dict(sorted(type_bytes.items(), key=lambda kv: -kv[1]))
    names = {t[0] for t in tensors}
    tied = "output.weight" not in names
    size = sum(t[2] for t in tensors)
    embd = sum(t[2] for t in tensors if t[0] == "token_embd.weight")
    per_token = size if tied else size - embd
    wtype = _ftype_name(meta.get("general.file_type")) or next(iter(type_bytes), "?")
    return FileInfo(
        path=os.path.abspath(path),
        name=str(meta.get("general.name") or os.path.basename(path)),
        arch=str(meta.get("general.architecture") or "?"),
        weight_type=wtype,
        type_bytes=type_bytes,
        size_bytes=size,
        n_params=sum(t[3] for t in tensors),
        bytes_per_token=per_token,
        tied_embeddings=tied,
        file_bytes=os.path.getsize(path),
    )


# --------------------------------------------------------------------------------------
# Engines: the same four measurements on each
# --------------------------------------------------------------------------------------
class EngineUnavailable(Exception):
    """The engine cannot run this file (status is "unsupported" or "error")."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StrataRunner:
    """strata's native engine, driven one native call per step."""

    name = "strata"

    def __init__(self, path: str, n_threads: int, n_ctx: int = 4096, n_batch: int = 512):
        import strata
        from strata.sampling import SamplingSettings

        path = os.fspath(path)
        t0 = time.perf_counter()
        try:
            # strata.load has no n_batch; its engine's own default (512) matches llama.cpp's.
            self.model = strata.load(path, n_ctx=n_ctx, n_threads=n_threads)
        except strata.UnsupportedModelError as e:
            raise EngineUnavailable("unsupported", str(e)) from e
        except strata.StrataError as e:
            raise EngineUnavailable("error", f"{type(e).__name__}: {e}") from e
        self.load_s = time.perf_counter() - t0
        self.engine = self.model._engine
        self.params = SamplingSettings(temperature=0).native()
        self.no_history = np.zeros(0, dtype=np.int32)
        self.engine.seed(0)
        self.description = self.model.description
        self.n_batch = int(getattr(self.engine, "n_batch", 0)) or None

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text)

    def prefill(self, tokens: np.ndarray) -> float:
        e = self.engine
        e.truncate(0)
        t0 = time.perf_counter()
        e.eval(tokens)
        return time.perf_counter() - t0

    def ttft(self, tokens: np.ndarray) -> float:
        e = self.engine
        e.truncate(0)
        t0 = time.perf_counter()
        e.eval(tokens)
        e.sample(self.params, self.no_history)
        return time.perf_counter() - t0

    def decode(self, prompt: np.ndarray, n: int) -> tuple[float, list[int]]:
        e, params, hist = self.engine, self.params, self.no_history
        e.truncate(0)
        e.eval(prompt)
        tok = e.sample(params, hist)
        out = [tok]
        step = e.step_sample
        append = out.append
        t0 = time.perf_counter()
        for _ in range(n):
            tok = step(tok, params, hist)
            append(tok)
        return time.perf_counter() - t0, out

    def close(self) -> None:
        self.model.close()


class LlamaCppRunner:
    """llama.cpp through llama-cpp-python's low-level API: llama_decode on batches from
    llama_batch_get_one, greedy sampling with the native llama_sampler."""

    name = "llama.cpp"

    def __init__(self, path: str, n_threads: int, n_ctx: int = 4096, n_batch: int = 512):
        try:
            import llama_cpp
        except ImportError as e:
            raise EngineUnavailable("missing", "llama-cpp-python is not installed") from e
        path = os.fspath(path)
        self.lib = llama_cpp
        t0 = time.perf_counter()
        try:
            self.llm = llama_cpp.Llama(
                path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                n_batch=n_batch, verbose=False,
            )
        except Exception as e:
            raise EngineUnavailable("error", f"{type(e).__name__}: {e}") from e
        self.load_s = time.perf_counter() - t0
        self.n_batch = n_batch
        self.ctx = self.llm._ctx.ctx
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.sampler = llama_cpp.llama_sampler_init_greedy()
        self.one = (llama_cpp.llama_token * 1)()
        self.description = f"llama-cpp-python {llama_cpp.__version__}"

    def tokenize(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def _chunks(self, tokens: np.ndarray) -> list[tuple[Any, int]]:
        T = self.lib.llama_token
        out = []
        for i in range(0, len(tokens), self.n_batch):
            part = [int(t) for t in tokens[i : i + self.n_batch]]
            out.append(((T * len(part))(*part), len(part)))
        return out

    def _decode(self, arr: Any, n: int) -> None:
        rc = self.lib.llama_decode(self.ctx, self.lib.llama_batch_get_one(arr, n))
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def _clear(self) -> None:
        self.lib.llama_memory_clear(self.mem, True)

    def prefill(self, tokens: np.ndarray) -> float:
        chunks = self._chunks(tokens)
        self._clear()
        t0 = time.perf_counter()
        for arr, n in chunks:
            self._decode(arr, n)
        return time.perf_counter() - t0

    def ttft(self, tokens: np.ndarray) -> float:
        chunks = self._chunks(tokens)
        self._clear()
        t0 = time.perf_counter()
        for arr, n in chunks:
            self._decode(arr, n)
        self.lib.llama_sampler_sample(self.sampler, self.ctx, -1)
        return time.perf_counter() - t0

    def decode(self, prompt: np.ndarray, n: int) -> tuple[float, list[int]]:
        lib, ctx, smpl, one = self.lib, self.ctx, self.sampler, self.one
        chunks = self._chunks(prompt)
        self._clear()
        for arr, k in chunks:
            self._decode(arr, k)
        tok = lib.llama_sampler_sample(smpl, ctx, -1)
        out = [tok]
        decode, batch_one = lib.llama_decode, lib.llama_batch_get_one
        sample = lib.llama_sampler_sample
        t0 = time.perf_counter()
        for _ in range(n):
            one[0] = tok
            if decode(ctx, batch_one(one, 1)) != 0:
                raise RuntimeError("llama_decode failed")
            tok = sample(smpl, ctx, -1)
            out.append(tok)
        return time.perf_counter() - t0, out

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.lib.llama_sampler_free(self.sampler)
        with contextlib.suppress(Exception):
            self.llm.close()


RUNNERS: dict[str, type] = {"strata": StrataRunner, "llama.cpp": LlamaCppRunner}


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Load time, first token after a cold load, peak RSS: one fresh subprocess per run
# --------------------------------------------------------------------------------------
_LOAD_CHILD = r"""
import ctypes, json, os, sys, time
args = json.loads(sys.argv[1])
path, engine = args["path"], args["engine"]

def status():
    d = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                d[k] = int(v.split()[0]) * 1024
    return d

def resident_fraction(p):
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        size = os.path.getsize(p)
        fd = os.open(p, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            page = os.sysconf("SC_PAGE_SIZE")
            vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
            ok = libc.mincore(ctypes.c_void_p(addr), size, vec) == 0
            libc.munmap(ctypes.c_void_p(addr), size)
            return sum(b & 1 for b in vec) / len(vec) if ok else None
        finally:
            os.close(fd)
    except Exception:
        return None

out = {"engine": engine, "cold": args["cold"]}
import numpy as np
if engine == "strata":
    import strata
    from strata.sampling import SamplingSettings
else:
    import llama_cpp
if args["cold"]:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (AttributeError, OSError):
        pass
    os.close(fd)
out["resident_before"] = resident_fraction(path)
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
except OSError:
    pass
base = status()
tokens = args["tokens"]
try:
    t0 = time.perf_counter()
    if engine == "strata":
        m = strata.load(path, n_ctx=args["n_ctx"], n_threads=args["threads"])
        t1 = time.perf_counter()
        e = m._engine
        e.eval(np.asarray(tokens, dtype=np.int32))
        e.sample(SamplingSettings(temperature=0).native(), np.zeros(0, dtype=np.int32))
    else:
        llm = llama_cpp.Llama(path, n_ctx=args["n_ctx"], n_threads=args["threads"],
                              n_threads_batch=args["threads"], n_batch=args["n_batch"],
                              verbose=False)
        t1 = time.perf_counter()
        ctx = llm._ctx.ctx
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, len(tokens))) != 0:
            raise RuntimeError("llama_decode failed")
        smpl = llama_cpp.llama_sampler_init_greedy()
        llama_cpp.llama_sampler_sample(smpl, ctx, -1)
    t2 = time.perf_counter()
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
    out["unsupported"] = type(exc).__name__ == "UnsupportedModelError"
else:
    end = status()
    out["load_s"] = t1 - t0
    out["first_token_s"] = t2 - t1
    out["peak_rss_delta"] = end["VmHWM"] - base["VmRSS"]
    out["rss_delta"] = end["VmRSS"] - base["VmRSS"]
print("BENCH-RESULT " + json.dumps(out))
"""


def measure_load(
    engine: str, path: str, tokens: Sequence[int], threads: int, cold: bool,
    n_ctx: int = 4096, n_batch: int = 512, timeout: float = 600,
) -> dict[str, Any]:
    """Load ``path`` in a fresh Python process; returns load_s, first_token_s (prefill of
    ``tokens`` + first sample right after the load), peak_rss_delta / rss_delta (bytes),
    resident_before (fraction of the file in the page cache when loading started), or
    error (and unsupported: bool)."""
    args = {
        "path": os.fspath(path), "engine": engine, "tokens": [int(t) for t in tokens], "cold": cold,
        "threads": threads, "n_ctx": n_ctx, "n_batch": n_batch,
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LOAD_CHILD, json.dumps(args)],
            capture_output=True, text=True, timeout=timeout, cwd=tempfile.gettempdir(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            return json.loads(line[len("BENCH-RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"subprocess exited {proc.returncode}: {' | '.join(tail)}"}


# --------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------
def measure_read_bandwidth(threads: int, mib: int = 256, repeats: int = 5) -> float:
    """Memory read bandwidth in GB/s: ``threads`` Python threads each reduce (max) their
    part of a buffer much larger than the caches (NumPy releases the GIL). Best of
    ``repeats``. A lower bound: NumPy's loop is not a tuned STREAM kernel."""
    a = np.ones(mib * 1024 * 1024 // 8, dtype=np.int64)
    parts = np.array_split(a, threads)
    best = float("inf")
    for _ in range(repeats):
        ths = [threading.Thread(target=np.max, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best / 1e9


def cpu_pressure_us() -> int | None:
    """Linux PSI: total microseconds during which some task waited for a CPU (None where
    /proc/pressure/cpu is missing). Its growth over a timed run divided by the run's length
    is the share of the run during which the CPUs were contended."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _loadavg() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, date, software versions."""
    import strata

    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "strata": getattr(strata, "__version__", "?"),
        "strata_info": strata.info(),
        "loadavg_start": _loadavg(),
    }
    with contextlib.suppress(Exception):  # which build of the core is being measured
        from strata import _core

        info["strata_core"] = {
            "path": _core.__file__,
            "built": datetime.datetime.fromtimestamp(
                os.path.getmtime(_core.__file__), datetime.timezone.utc
            ).isoformat(timespec="seconds"),
        }
    with contextlib.suppress(OSError, ValueError):
        info["memory_gib"] = round(
            os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
        )
    with contextlib.suppress(Exception):
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    try:
        import llama_cpp

        info["llama_cpp_python"] = llama_cpp.__version__
        info["llama_cpp_system_info"] = llama_cpp.llama_print_system_info().decode().strip()
    except Exception:  # noqa: BLE001 - missing or broken: the run says "strata only"
        info["llama_cpp_python"] = None
    return info


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------
def parse_tests(spec: str | Sequence[str]) -> list[str]:
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    tests = []
    for t in (x.strip().lower() for x in items):
        if not t:
            continue
        if t != "load" and not re.fullmatch(r"(pp|tg|ttft)[1-9][0-9]*", t):
            raise ValueError(f"unknown test {t!r}: use ppN, tgN, ttftN or load")
        if t not in tests:
            tests.append(t)
    return tests


def prompt_tokens(tokenize: Callable[[str], list[int]], n: int) -> list[int]:
    """The first ``n`` token ids of the benchmark prose (repeated as needed)."""
    text = PROMPT_TEXT
    ids = tokenize(text)
    while len(ids) < n:
        text += PROMPT_TEXT
        ids = tokenize(text)
    return ids[:n]


def _summary(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"samples": []}
    return {
        "samples": samples,
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
    }


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        self.total, self.done = total, 0
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, file=sys.stderr, unit="run", dynamic_ncols=True)
            except ImportError:
                pass

    def step(self, what: str, advance: bool = True) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_description(what, refresh=False)
            if advance:
                self.bar.update(1)
            else:
                self.bar.refresh()
        else:
            if advance:
                self.done += 1
            print(f"[{self.done}/{self.total}] {what}", file=sys.stderr, flush=True)

    def write(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _private_copy(path: str) -> tuple[str, str | None]:
    """A copy of ``path`` in a fresh temporary folder, flushed to disk so that its pages
    can be evicted; (path, None) when it cannot be made."""
    import shutil

    tmpdir = None
    try:
        tmpdir = tempfile.mkdtemp(prefix="strata-bench-")
        dst = os.path.join(tmpdir, os.path.basename(path))
        with open(path, "rb") as src, open(dst, "wb") as out:
            shutil.copyfileobj(src, out, 16 << 20)
            out.flush()
            os.fsync(out.fileno())
        return dst, tmpdir
    except OSError:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return path, None


def _load_runs(path, tokens, engines, threads, repeats, n_ctx, n_batch, loads, prog, short,
               gate):
    for r in range(repeats):
        order = engines if r % 2 == 0 else engines[::-1]
        for cold in (True, False):
            for eng in order:
                prog.step(f"{short} load {'cold' if cold else 'warm'} {eng}", advance=False)
                if tokens is None:
                    out = {"error": "no tokenizer could read the file"}
                else:
                    out = _gated_load(eng, path, tokens[:LOAD_PROMPT_TOKENS], threads, cold,
                                      n_ctx, n_batch, gate)
                prog.step(f"{short} load {'cold' if cold else 'warm'} {eng}")
                kind = "cold" if cold else "warm"
                d = loads[eng]
                if "error" in out:
                    d.setdefault("errors", []).append(out["error"])
                    if out.get("unsupported"):
                        d["unsupported"] = [True]
                    continue
                d.setdefault(f"load_{kind}_s", []).append(out["load_s"])
                d.setdefault(f"first_token_after_{kind}_load_s", []).append(
                    out["first_token_s"])
                d.setdefault(f"peak_rss_delta_{kind}", []).append(out["peak_rss_delta"])
                d.setdefault(f"resident_before_{kind}", []).append(out["resident_before"])
                if out.get("cpu_pressure") is not None:
                    d.setdefault(f"cpu_pressure_{kind}", []).append(out["cpu_pressure"])


def _gated_load(eng, path, tokens, threads, cold, n_ctx, n_batch, gate) -> dict[str, Any]:
    """measure_load under the gate: wait for quiet, redo a contended run, keep the least
    contended (its CPU pressure, over the whole subprocess, is in ``cpu_pressure``)."""
    best: dict[str, Any] | None = None
    for attempt in range(1, gate.attempts + 1):
        quiet = True
        if gate.max_contention is not None:
            quiet = _wait_quiet(gate.max_contention, gate.wait_s)
        p0, w0 = cpu_pressure_us(), time.perf_counter()
        out = measure_load(eng, path, tokens, threads, cold, n_ctx, n_batch)
        p1, w1 = cpu_pressure_us(), time.perf_counter()
        c = (p1 - p0) / 1e6 / (w1 - w0) if p0 is not None and p1 is not None else None
        out["cpu_pressure"], out["attempts"] = c, attempt
        if "error" in out:
            return out
        if best is None or (c is not None and c < (best["cpu_pressure"] or 1e9)):
            best = out
        if gate.max_contention is None or c is None or not quiet or c <= gate.max_contention:
            break
    assert best is not None
    return best


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (native libraries' logging) for the block."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class Gate:
    """How timed runs guard against other work on the machine.

    ``settle``: seconds of sleep when switching engines (the other engine's threads spin for
    a while after its last call). ``max_contention``: where Linux reports CPU pressure, wait
    (up to ``wait_s``) for a quiet moment before each run, and redo a run during which some
    task waited for a CPU more than this share of the time, up to ``attempts`` runs in all,
    keeping the least contended; None turns this off.
    """

    settle: float = 0.05
    max_contention: float | None = 0.25
    attempts: int = 4
    wait_s: float = 20.0


def contention(window_s: float) -> float | None:
    """Share of the next ``window_s`` seconds during which some task waited for a CPU."""
    p0, t0 = cpu_pressure_us(), time.perf_counter()
    time.sleep(window_s)
    p1, t1 = cpu_pressure_us(), time.perf_counter()
    if p0 is None or p1 is None:
        return None
    return (p1 - p0) / 1e6 / (t1 - t0)


def _wait_quiet(limit: float, wait_s: float) -> bool:
    """Sleep until a 0.1 s probe shows contention under ``limit``, for at most ``wait_s``
    seconds; returns whether that quiet moment came."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < wait_s:
        c = contention(0.1)
        if c is None or c <= limit:
            return True
    return False


def _bench_model(
    path: str, tests: list[str], engines: list[str], threads: int, repeats: int,
    n_ctx: int, n_batch: int, gate: Gate, prog: _Progress,
) -> dict[str, Any]:
    fi = file_info(path)
    res: dict[str, Any] = {"file": asdict(fi), "engines": {}, "tests": {}}
    short = fi.label

    # Prompt tokens: llama.cpp's tokenization when it is here (strata's is identical).
    n_need = max([LOAD_PROMPT_TOKENS, TG_PROMPT_TOKENS]
                 + [int(re.sub(r"\D", "", t)) for t in tests if t != "load"])
    tokens: list[int] | None = None
    tok_source = None

    # Load measurements first, before this process maps the file (a mapping keeps its
    # pages resident and defeats the cold-cache eviction).
    if "load" in tests:
        if "llama.cpp" in engines:
            try:
                import llama_cpp

                with _quiet_stderr():  # llama.cpp logs a context warning for vocab_only
                    vocab_only = llama_cpp.Llama(path, vocab_only=True, verbose=False)
                tokens = prompt_tokens(
                    lambda s: list(vocab_only.tokenize(s.encode(), add_bos=True, special=False)),
                    n_need,
                )
                tok_source = "llama.cpp"
                vocab_only.close()
            except Exception:  # noqa: BLE001 - fall back to strata's tokenizer
                tokens = None
        if tokens is None:
            try:
                from strata.gguf import GGUFFile
                from strata.tokenizer import Tokenizer

                with GGUFFile(path) as g:
                    tk = Tokenizer.from_gguf(g)
                tokens = prompt_tokens(lambda s: tk.encode(s, add_special=True), n_need)
                tok_source = "strata"
            except Exception:  # noqa: BLE001 - no tokens: the load runs say so
                tokens = None
        loads: dict[str, dict[str, list[Any]]] = {e: {} for e in engines}
        # posix_fadvise(DONTNEED) cannot evict pages that another process (or container
        # sharing this page cache) has mapped, so the load runs read a private copy.
        load_path, tmpdir = _private_copy(path)
        res["load_path_private_copy"] = load_path != path
        try:
            _load_runs(load_path, tokens, engines, threads, repeats, n_ctx, n_batch, loads,
                       prog, short, gate)
        finally:
            if tmpdir is not None:
                with contextlib.suppress(OSError):
                    os.remove(load_path)
                    os.rmdir(tmpdir)
        res["load"] = {
            eng: {
                k: (_summary(v) if k.startswith(("load_", "first_", "peak_")) else v)
                for k, v in d.items()
            }
            for eng, d in loads.items()
        }

    # In-process runners, both alive at once.
    runners: dict[str, Any] = {}
    for eng in engines:
        prog.step(f"{short} loading {eng}", advance=False)
        try:
            runners[eng] = RUNNERS[eng](path, threads, n_ctx=n_ctx, n_batch=n_batch)
            res["engines"][eng] = {"status": "ok", "description": runners[eng].description,
                                   "n_batch": runners[eng].n_batch,
                                   "load_s_in_process": runners[eng].load_s}
        except EngineUnavailable as e:
            res["engines"][eng] = {"status": e.status, "message": e.message}
            prog.write(f"{short}: {eng}: {e.status}: {e.message}")
    try:
        if "llama.cpp" in runners:
            ids_l = prompt_tokens(runners["llama.cpp"].tokenize, n_need)
            tokens, tok_source = ids_l, "llama.cpp"
            if "strata" in runners:
                ids_s = prompt_tokens(runners["strata"].tokenize, n_need)
                res["tokenization_identical"] = ids_s == ids_l
        elif "strata" in runners:
            tokens, tok_source = prompt_tokens(runners["strata"].tokenize, n_need), "strata"
        res["prompt_tokens_from"] = tok_source
        if tokens is None:
            return res
        toks = np.asarray(tokens, dtype=np.int32)
        live = [e for e in engines if e in runners]
        timed = [t for t in tests if t != "load"]

        # Warm-up: one untimed prefill and a few decode steps per engine.
        for eng in live:
            prog.step(f"{short} warm-up {eng}", advance=False)
            runners[eng].prefill(toks[: min(len(toks), 128)])
            runners[eng].decode(toks[:TG_PROMPT_TOKENS], 8)

        samples: dict[str, dict[str, list[float]]] = {t: {e: [] for e in live} for t in timed}
        pressure: dict[str, dict[str, list[float]]] = {t: {e: [] for e in live} for t in timed}
        tries: dict[str, dict[str, list[int]]] = {t: {e: [] for e in live} for t in timed}
        greedy: dict[str, dict[str, list[int]]] = {}
        last = None
        for r in range(repeats):
            for i, test in enumerate(timed):
                n = int(re.sub(r"\D", "", test))
                order = live if (r + i) % 2 == 0 else live[::-1]
                for eng in order:
                    prog.step(f"{short} {test} {eng} #{r + 1}", advance=False)
                    if last is not None and last != eng and gate.settle > 0:
                        time.sleep(gate.settle)  # let the other engine's threads sleep
                    last = eng
                    best: tuple[float, float | None] | None = None
                    attempt = 0
                    while True:
                        attempt += 1
                        quiet = True
                        if gate.max_contention is not None:
                            quiet = _wait_quiet(gate.max_contention, gate.wait_s)
                        value, c = _timed_run(runners[eng], test, n, toks, greedy, eng)
                        if best is None or (c is not None and (best[1] is None or c < best[1])):
                            best = (value, c)
                        # Stop when the run was quiet enough, when the machine never got
                        # quiet (steady load: redoing would not help), or after `attempts`.
                        if (gate.max_contention is None or c is None or not quiet
                                or c <= gate.max_contention or attempt >= gate.attempts):
                            break
                    samples[test][eng].append(best[0])
                    if best[1] is not None:
                        pressure[test][eng].append(best[1])
                    tries[test][eng].append(attempt)
                    prog.step(f"{short} {test} {eng} #{r + 1}")

        for test in timed:
            entry: dict[str, Any] = {
                "unit": "ms" if test.startswith("ttft") else "tok/s",
                **{eng: _summary(samples[test][eng]) for eng in live},
            }
            for eng in live:
                if pressure[test][eng]:
                    entry[eng]["cpu_pressure"] = pressure[test][eng]
                entry[eng]["attempts"] = tries[test][eng]
            if len(live) == 2:
                a, b = entry["strata"].get("median"), entry["llama.cpp"].get("median")
                if a and b:
                    entry["ratio"] = a / b  # strata / llama.cpp (tok/s: higher is better)
            if test.startswith("tg"):
                for eng in live:
                    entry[eng]["gb_per_s"] = {
                        k: entry[eng][k] * fi.bytes_per_token / 1e9
                        for k in ("median", "min", "max")
                    }
                g = greedy.get(test, {})
                if len(g) == 2:
                    a_ids, b_ids = g["strata"], g["llama.cpp"]
                    same = next((k for k, (x, y) in enumerate(zip(a_ids, b_ids)) if x != y),
                                min(len(a_ids), len(b_ids)))
                    entry["greedy_tokens_agree"] = same
            res["tests"][test] = entry
    finally:
        for run in runners.values():
            run.close()
    return res


def _timed_run(run: Any, test: str, n: int, toks: np.ndarray,
               greedy: dict[str, dict[str, list[int]]], eng: str) -> tuple[float, float | None]:
    """One timed run: (tok/s, or ms for ttft; CPU contention during it or None)."""
    p0, w0 = cpu_pressure_us(), time.perf_counter()
    if test.startswith("pp"):
        value = n / run.prefill(toks[:n])
    elif test.startswith("ttft"):
        value = run.ttft(toks[:n]) * 1000.0
    else:
        dt, out = run.decode(toks[:TG_PROMPT_TOKENS], n)
        value = n / dt
        greedy.setdefault(test, {})[eng] = out
    p1, w1 = cpu_pressure_us(), time.perf_counter()
    c = (p1 - p0) / 1e6 / (w1 - w0) if p0 is not None and p1 is not None else None
    return value, c


def run_benchmark(
    models: Sequence[str],
    tests: Sequence[str] = DEFAULT_TESTS,
    threads: int = 2,
    repeats: int = 3,
    compare: bool = True,
    n_ctx: int = 4096,
    n_batch: int = 512,
    gate: Gate | None = None,
    bandwidth: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every test on every model with strata (and llama.cpp when ``compare`` and it is
    installed); returns a JSON-able dict: machine, settings, one entry per model."""
    tests = parse_tests(tests)
    models = [os.fspath(m) for m in models]
    gate = gate if gate is not None else Gate()
    engines = ["strata"]
    notes = []
    if compare:
        if llama_cpp_available():
            engines.append("llama.cpp")
        else:
            notes.append("llama-cpp-python is not installed: strata only")
    result: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "threads": threads, "repeats": repeats, "tests": tests, "engines": engines,
            "n_ctx": n_ctx, "n_batch": n_batch, "tg_prompt_tokens": TG_PROMPT_TOKENS,
            "load_prompt_tokens": LOAD_PROMPT_TOKENS, "gate": asdict(gate),
            "sampling": "greedy",
            "env": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                                                "OMP_NUM_THREADS", "STRATA_CPU_ISA")
                    if k in os.environ},
            "argv": sys.argv,
        },
        "notes": notes,
        "models": [],
    }
    for n in notes:
        print(f"strata bench: {n}", file=sys.stderr)
    if bandwidth:
        result["machine"]["read_bandwidth_gb_s"] = {
            str(threads): measure_read_bandwidth(threads),
        }
    n_timed = len([t for t in tests if t != "load"])
    per_model = repeats * len(engines) * (n_timed + (2 if "load" in tests else 0))
    prog = _Progress(per_model * len(models), progress)
    try:
        for path in models:
            try:
                result["models"].append(_bench_model(
                    path, tests, engines, threads, repeats, n_ctx, n_batch, gate, prog))
            except Exception as e:  # noqa: BLE001 - a bad file: say so, go on with the others
                result["models"].append(
                    {"file": {"path": path}, "error": f"{type(e).__name__}: {e}"})
                prog.write(f"{path}: {type(e).__name__}: {e}")
    finally:
        prog.close()
    result["machine"]["loadavg_end"] = _loadavg()
    return result


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------
def _fmt(s: dict[str, Any] | None, digits: int = 1, scale: float = 1.0) -> str:
    if not s or "median" not in s:
        return "—"
    m, lo, hi = (s[k] * scale for k in ("median", "min", "max"))
    return f"{m:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def _status_cell(model: dict[str, Any], eng: str) -> str | None:
    st = model.get("engines", {}).get(eng)
    if st is None:
        return None
    return None if st.get("status") == "ok" else st.get("status", "error")


def _md_table(header: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def format_tables(result: dict[str, Any]) -> str:
    """llama-bench-style markdown: throughput table, then latency/memory table, then notes."""
    st = result["settings"]
    threads = st["threads"]
    cmp_ = "llama.cpp" in st["engines"]
    out = []
    rows = []
    for m in result["models"]:
        f = m["file"]
        if "error" in m:
            rows.append([os.path.basename(f["path"]), "?", "?", "?", str(threads), "error",
                         m["error"][:40], "", "", "", ""])
            continue
        base = [f"{f['name']} ({f['arch']})", f["weight_type"], f"{f['size_bytes'] / 2**20:.1f}",
                f"{f['n_params'] / 1e6:.0f} M", str(threads)]
        for test, e in m["tests"].items():
            if test.startswith("ttft"):
                continue
            s_stat, l_stat = _status_cell(m, "strata"), _status_cell(m, "llama.cpp")
            s = s_stat or _fmt(e.get("strata"))
            ll = (l_stat or _fmt(e.get("llama.cpp"))) if cmp_ else "—"
            ratio = f"{e['ratio']:.2f}" if "ratio" in e else "—"
            gbs = gbl = "—"
            if test.startswith("tg"):
                if "strata" in e and "gb_per_s" in e["strata"]:
                    gbs = f"{e['strata']['gb_per_s']['median']:.1f}"
                if "llama.cpp" in e and "gb_per_s" in e["llama.cpp"]:
                    gbl = f"{e['llama.cpp']['gb_per_s']['median']:.1f}"
            rows.append(base + [test, s, ll, ratio, gbs, gbl])
        if not m["tests"]:
            why = "; ".join(f"{k}: {v.get('status')}" for k, v in m.get("engines", {}).items())
            rows.append(base + ["—", why, "", "", "", ""])
    header = ["model", "type", "size MiB", "params", "threads", "test", "strata t/s",
              "llama.cpp t/s", "ratio", "strata GB/s", "llama.cpp GB/s"]
    out.append(_md_table(header, rows, right={2, 3, 4, 6, 7, 8, 9, 10}))

    # Latency and memory.
    rows2 = []
    for m in result["models"]:
        if "error" in m:
            continue
        f = m["file"]
        label = f"{f['name']} {f['weight_type']}"
        for test, e in m["tests"].items():
            if test.startswith("ttft"):
                s = _status_cell(m, "strata") or _fmt(e.get("strata"))
                ll = (_status_cell(m, "llama.cpp") or _fmt(e.get("llama.cpp"))) if cmp_ else "—"
                ratio = f"{e['ratio']:.2f}" if "ratio" in e else "—"
                rows2.append([label, f"{test} warm (ms)", s, ll, ratio])
        ld = m.get("load")
        if ld:
            metrics = [
                ("load, cold cache (ms)", "load_cold_s", 1000.0, 1),
                ("load, warm cache (ms)", "load_warm_s", 1000.0, 1),
                (f"first token ({LOAD_PROMPT_TOKENS}-tok prompt) after cold load (ms)",
                 "first_token_after_cold_load_s", 1000.0, 1),
                (f"first token ({LOAD_PROMPT_TOKENS}-tok prompt) after warm load (ms)",
                 "first_token_after_warm_load_s", 1000.0, 1),
                ("peak RSS growth, load + first token, warm (MiB)", "peak_rss_delta_warm",
                 1 / 2**20, 1),
            ]
            for title, key, scale, digits in metrics:
                cells = []
                meds = []
                for eng in ("strata", "llama.cpp"):
                    d = ld.get(eng)
                    if d is None:
                        cells.append("—")
                        meds.append(None)
                    elif "unsupported" in d:
                        cells.append("unsupported")
                        meds.append(None)
                    elif key in d:
                        cells.append(_fmt(d[key], digits, scale))
                        meds.append(d[key]["median"])
                    else:
                        cells.append("error")
                        meds.append(None)
                ratio = f"{meds[0] / meds[1]:.2f}" if all(meds) else "—"
                rows2.append([label, title, *cells, ratio])
    if rows2:
        out.append("")
        out.append(_md_table(["model", "metric (lower is better)", "strata", "llama.cpp",
                              "strata / llama.cpp"], rows2, right={2, 3, 4}))

    # Notes.
    mi = result["machine"]
    notes = [
        "",
        (f"Each cell: median (min–max) of {st['repeats']} runs; ratio = strata / llama.cpp "
         "of the medians (tok/s: above 1 means strata is faster)."),
        (f"Machine: {mi['cpu']}, {mi['logical_cpus']} logical CPUs; {mi['date']}; "
         f"strata {mi['strata']} ({mi['strata_info'].get('cpu_kernel_selected')} kernels); "
         f"llama-cpp-python {mi.get('llama_cpp_python') or 'not installed'}"
         f"{''.join(f', {k}={v}' for k, v in st.get('env', {}).items())}; "
         f"load average {mi.get('loadavg_start')} at start, {mi.get('loadavg_end')} at end."),
    ]
    pr = [x for m in result["models"] for e in m.get("tests", {}).values()
          for eng in ENGINES for x in (e.get(eng) or {}).get("cpu_pressure", [])]
    gate = st.get("gate") or {}
    if pr:
        redone = sum(1 for m in result["models"] for e in m.get("tests", {}).values()
                     for eng in ENGINES for a in (e.get(eng) or {}).get("attempts", []) if a > 1)
        mc = gate.get("max_contention")
        notes.append(
            "CPU contention during the kept timed runs (Linux PSI cpu 'some': share of the "
            f"time a task waited for a CPU; near 0% on an idle machine): median "
            f"{100 * statistics.median(pr):.0f}% ({100 * min(pr):.0f}–{100 * max(pr):.0f}%)"
            + (f"; each run waited for a quiet moment and a run over {100 * mc:.0f}% was "
               f"redone, up to {gate.get('attempts')} runs, keeping the least contended "
               f"({redone} of {len(pr)} samples needed more than one run)." if mc is not None
               else ".")
        )
    bw = mi.get("read_bandwidth_gb_s")
    if bw:
        notes.append(
            "Measured memory read bandwidth (NumPy, a lower bound): "
            + ", ".join(f"{v:.1f} GB/s with {k} thread(s)" for k, v in bw.items()) + "."
        )
    for m in result["models"]:
        if "error" in m:
            continue
        f = m["file"]
        mix = ", ".join(f"{k} {100 * v / f['size_bytes']:.0f}%" for k, v in
                        list(f["type_bytes"].items())[:4])
        tied = " (tied embeddings: the output matrix is the embedding table)"
        line = (f"{f['name']} {f['weight_type']}: tensor bytes by type {mix}; "
                f"{f['bytes_per_token'] / 2**20:.1f} MiB of weights read per decoded token"
                f"{tied if f['tied_embeddings'] else ''}.")
        for eng, d in m.get("engines", {}).items():
            if d.get("status") != "ok":
                line += f" {eng}: {d.get('status')} ({d.get('message', '')[:160]})."
        agree = {t: e["greedy_tokens_agree"] for t, e in m["tests"].items()
                 if "greedy_tokens_agree" in e}
        if agree:
            line += " Greedy decode: identical first " + ", ".join(
                f"{v} tokens ({t})" for t, v in agree.items()) + "."
        if m.get("tokenization_identical") is False:
            line += " WARNING: strata's and llama.cpp's prompt token ids differ."
        ld = m.get("load") or {}
        res_cold = [x for d in ld.values() for x in d.get("resident_before_cold", [])
                    if x is not None]
        if res_cold and max(res_cold) > 0.05:
            line += (f" Cold load: up to {100 * max(res_cold):.0f}% of the file was still in the "
                     "page cache: those cold figures are not cold.")
        notes.append(line)
    notes.extend(result.get("notes", []))
    out.extend(notes)
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The benchmark's options, for ``strata bench`` or a standalone parser."""
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="GGUF files (default: the default model, SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("--threads", "-t", type=int, default=None,
                   help="threads for both engines (default: physical cores, as strata)")
    p.add_argument("--repeats", "-r", type=int, default=3, help="runs per test (default 3)")
    p.add_argument("--tests", default=",".join(DEFAULT_TESTS),
                   help="comma-separated: ppN, tgN, ttftN, load (default: %(default)s)")
    p.add_argument("--compare", choices=["llama.cpp", "none"], default="llama.cpp",
                   help="engine to run beside strata (default llama.cpp, via llama-cpp-python)")
    p.add_argument("--no-llama", action="store_true", help="strata only (= --compare none)")
    p.add_argument("--json", metavar="FILE", help="write every sample and the machine info")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables to FILE")
    p.add_argument("--n-ctx", type=int, default=4096, help="context size for both (4096)")
    p.add_argument("--n-batch", type=int, default=512, help="batch size for both (512)")
    p.add_argument("--settle", type=float, default=0.05,
                   help="seconds of sleep when switching engines (default 0.05)")
    p.add_argument("--max-contention", type=float, default=25.0, metavar="PCT",
                   help="where Linux reports CPU pressure: wait for a quiet moment before each "
                        "timed run and redo a run during which tasks waited for a CPU more "
                        "than PCT%% of the time (default 25; a negative value turns it off)")
    p.add_argument("--attempts", type=int, default=4,
                   help="most runs per sample under --max-contention (default 4)")
    p.add_argument("--omp-wait-policy", choices=["passive", "active"], default=None,
                   help="set OMP_WAIT_POLICY for llama.cpp's OpenMP threads (default: leave "
                        "the environment alone, as llama.cpp users get it); passive stops its "
                        "threads spinning, which matters when other work shares the cores")
    p.add_argument("--no-bandwidth", action="store_true",
                   help="skip the memory bandwidth measurement")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def run(a: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments; print the tables; returns an exit status."""
    import strata

    try:
        tests = parse_tests(a.tests)
    except ValueError as e:
        print(f"strata bench: error: {e}", file=sys.stderr)
        return 2
    longest = max([int(re.sub(r"\D", "", t)) + (TG_PROMPT_TOKENS if t.startswith("tg") else 0)
                   for t in tests if t != "load"] + [LOAD_PROMPT_TOKENS])
    if longest > a.n_ctx:
        print(f"strata bench: error: a test needs {longest} tokens of context, more than "
              f"--n-ctx {a.n_ctx}", file=sys.stderr)
        return 2
    if a.repeats < 1:
        print("strata bench: error: --repeats must be >= 1", file=sys.stderr)
        return 2
    threads = a.threads or int(strata.info()["default_threads"])
    if threads < 1:
        print("strata bench: error: --threads must be >= 1", file=sys.stderr)
        return 2
    if a.omp_wait_policy:
        if "llama_cpp" in sys.modules:
            print("strata bench: warning: llama_cpp is already imported, --omp-wait-policy "
                  "has no effect on this process", file=sys.stderr)
        os.environ["OMP_WAIT_POLICY"] = a.omp_wait_policy.upper()  # children inherit it
    models = a.models or [strata.default_model_path()]
    missing = [m for m in models if not os.path.isfile(m)]
    if missing:
        print(f"strata bench: error: no such file: {missing[0]}", file=sys.stderr)
        return 2
    result = run_benchmark(
        models, tests, threads=threads, repeats=a.repeats,
        compare=not a.no_llama and a.compare != "none", n_ctx=a.n_ctx, n_batch=a.n_batch,
        gate=Gate(settle=a.settle,
                  max_contention=a.max_contention / 100 if a.max_contention >= 0 else None,
                  attempts=max(1, a.attempts)),
        bandwidth=not a.no_bandwidth, progress=not a.quiet,
    )
    text = format_tables(result)
    print(text)
    if a.markdown:
        with open(a.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """``strata bench MODEL... [--threads N] [--compare llama.cpp] [--json FILE]``."""
    p = argparse.ArgumentParser(
        prog=prog or "strata bench",
        description="Benchmark strata against llama.cpp on the CPU, side by side.",
    )
    add_arguments(p)
    a = p.parse_args(list(argv) if argv is not None else None)
    try:
        return run(a)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

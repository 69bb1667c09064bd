"""Fuzz the GGUF loader and model construction with mutated files.

Every input is written to a scratch file and must either

* be refused by :class:`strata.gguf.GGUFFile` with :class:`~strata.GGUFError`, or
* parse into a tensor table that lies inside the file, and then load with
  :class:`strata.Model` (``n_ctx=32``, one thread) or be refused with a
  :class:`~strata.StrataError`; a model that loads generates 3 greedy tokens, evaluates
  logits and renders its chat template, where again only StrataError may come out;

and never crash the process, hang (20 s per input), or allocate more memory than the file
justifies: the peak RSS may grow by at most 256 MiB plus 256 bytes per byte of input over
the warmed-up baseline, the address space is capped at 2 GiB above it (RLIMIT_AS), and an
"out of memory"/"needs N bytes" StrataError for a 32-token context counts as a finding.
Anything else is a finding: the input is saved to the artifact directory and the process
exits non-zero.

Engines: ``atheris`` (coverage-guided libFuzzer over the instrumented ``strata`` Python
package; ``pip install atheris``) or ``random`` (a plain mutation fuzzer, no extra
dependency: bit flips, interesting integers over length and count fields, inserts,
deletes, splices and truncations of the seeds). ``auto`` picks atheris when installed.

    python tests/fuzz/fuzz_gguf.py --seconds 60 [--engine auto|atheris|random]
        [--artifacts DIR] [--seed N] [CORPUS_DIR ...]
    python tests/fuzz/fuzz_gguf.py --replay FILE_OR_DIR ...   # re-run saved inputs

Seeds: ``tests/fuzz/corpus/`` (see make_corpus.py) and ``tests/fixtures/bad_gguf/``, plus
any directories given. libFuzzer writes the new inputs it finds into ARTIFACTS/corpus,
never into the committed directories.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED_DIRS = [HERE / "corpus", HERE.parent / "fixtures" / "bad_gguf"]
N_CTX = 32
PER_INPUT_SECONDS = 20
RSS_SLACK = 256 << 20
RSS_PER_BYTE = 256
AS_SLACK = 2 << 30
MAX_LEN = 16384

_scratch = ""
_baseline_rss = 0
# How far inputs got: refused by the parser, refused at load, loaded and ran.
stats = {"gguf_error": 0, "load_error": 0, "ran": 0}
_strata = None  # the strata package, imported (and instrumented, under atheris) in main()


class Finding(AssertionError):
    """An input broke one of the rules above."""


def _rusage_peak_rss() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def _peak_rss() -> int:
    """This process's own peak RSS. On Linux getrusage's ru_maxrss is carried over fork and
    exec from the parent (a pytest process that has run the model tests peaks near 5 GB), so
    read the high-water mark of this process's own address space (VmHWM) instead."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _rusage_peak_rss()


# libFuzzer's -rss_limit_mb compares getrusage's peak, inherited from the parent as above,
# so its limit is set above what this process started with; the per-input check in check()
# (VmHWM against the input's size) is the tight bound.
_INHERITED_PEAK_MB = _rusage_peak_rss() >> 20


def _memory_finding(e: BaseException) -> bool:
    msg = str(e)
    return msg.startswith("out of memory") or (" needs " in msg and "bytes" in msg)


def check(data: bytes) -> None:
    """Runs one input; raises Finding (or lets an unexpected exception out) on a bug."""
    strata = _strata
    from strata.gguf import GGUFFile

    with open(_scratch, "wb") as f:
        f.write(data)
    try:
        gf = GGUFFile(_scratch)
    except strata.GGUFError:
        stats["gguf_error"] += 1
        return
    with gf:
        for t in gf.tensors.values():
            if not (gf.data_offset <= t.offset and t.offset + t.nbytes <= gf.file_size):
                raise Finding(f"tensor {t.name!r} [{t.offset}, +{t.nbytes}) outside the file")
    try:
        model = strata.Model(_scratch, n_ctx=N_CTX, n_threads=1)
    except strata.StrataError as e:
        if _memory_finding(e):
            raise Finding(f"a {len(data)}-byte file asked for too much memory: {e}") from e
        stats["load_error"] += 1
        return
    stats["ran"] += 1
    try:
        for step in (
            lambda: model.generate("the cat is", max_tokens=3, temperature=0),
            lambda: model.logits([0, model.n_vocab - 1]),
            lambda: model.apply_chat_template([{"role": "user", "content": "hi"}]),
        ):
            try:
                step()
            except strata.StrataError as e:
                if _memory_finding(e):
                    raise Finding(f"{len(data)}-byte file: {e}") from e
    finally:
        model.close()
    grown = _peak_rss() - _baseline_rss
    if _baseline_rss and grown > RSS_SLACK + RSS_PER_BYTE * len(data):
        raise Finding(f"peak RSS grew by {grown} bytes on a {len(data)}-byte file")


# -- plumbing --------------------------------------------------------------------------------


def _files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for d in paths:
        if d.is_dir():
            files += sorted(p for p in d.iterdir() if p.is_file())
        elif d.is_file():
            files.append(d)
    return files


def _seed_files(extra: list[str]) -> list[Path]:
    return _files([*SEED_DIRS, *map(Path, extra)])


def _limit_address_space() -> None:
    if "asan" in os.environ.get("LD_PRELOAD", "") or os.environ.get("STRATA_FUZZ_NO_RLIMIT"):
        return  # sanitizers reserve terabytes of shadow memory
    try:
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return
    limit = vm + AS_SLACK
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _setup(artifacts: Path, instrument: bool) -> None:
    global _scratch, _strata
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["strata"]):
            import strata
    else:
        import strata
    _strata = strata
    artifacts.mkdir(parents=True, exist_ok=True)
    # The scratch file lives with the artifacts: after a native crash it holds the input.
    _scratch = str(artifacts / "current-input.gguf")


def _warm_up(seeds: list[Path]) -> None:
    """Runs every seed once (they must pass), then records the baseline peak RSS."""
    global _baseline_rss
    for p in seeds:
        try:
            check(p.read_bytes())
        except BaseException as e:
            raise Finding(f"seed {p} fails: {type(e).__name__}: {e}") from e
    _baseline_rss = _peak_rss()


def _report(artifacts: Path, data: bytes, exc: BaseException) -> None:
    import hashlib

    path = artifacts / f"crash-{hashlib.sha1(data).hexdigest()}.gguf"
    path.write_bytes(data)
    print(f"FINDING: {type(exc).__name__}: {exc}\n  input saved to {path}", file=sys.stderr)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


# -- the random engine -------------------------------------------------------------------------

_INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 1024,
                4096, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, 2**63,
                2**64 - 1]  # fmt: skip
_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-30, 1e30, 3.4e38, -3.4e38, 1e-45, float("nan"),
           float("inf"), float("-inf"), 1e300]  # fmt: skip
# GGUF value types -> struct format of one value (see strata.gguf).
_VFMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q",
         11: "<q", 12: "<d"}  # fmt: skip


def gguf_fields(data: bytes) -> list[tuple[int, str]]:
    """(offset, struct format or role) of every number in the file's header, metadata and
    tensor table, as far as it can be walked: where a mutation changes meaning, not
    just bytes. Roles: "vtype" (a value type tag), "ttype" (a tensor type id), "len4" and
    "len8" (a string length or count: changing one mostly makes the rest unparseable)."""
    out: list[tuple[int, str]] = []
    pos = 0

    def take(fmt: str, role: str | None = None) -> int:
        nonlocal pos
        (v,) = struct.unpack_from(fmt, data, pos)
        out.append((pos, role or fmt))
        pos += struct.calcsize(fmt)
        return v

    def string() -> None:
        nonlocal pos
        n = take("<Q", "len8")
        if n > len(data):
            raise ValueError
        pos += n

    try:
        pos = 8
        n_tensors, n_kv = take("<Q", "len8"), take("<Q", "len8")
        for _ in range(min(n_kv, 10000)):
            string()
            vtype = take("<I", "vtype")
            if vtype == 8:
                string()
            elif vtype == 9:
                etype = take("<I", "vtype")
                count = take("<Q", "len8")
                for i in range(min(count, len(data))):
                    if etype == 8:
                        string()
                    elif i < 16:
                        take(_VFMT[etype])
                    else:
                        pos += struct.calcsize(_VFMT[etype]) * (count - i)
                        break
            else:
                take(_VFMT[vtype])
        for _ in range(min(n_tensors, 10000)):
            string()
            n_dims = take("<I", "len4")
            for _ in range(min(n_dims, 8)):
                take("<Q")
            take("<I", "ttype")
            take("<Q")
    except (struct.error, KeyError, ValueError, OverflowError):
        pass
    return out


class Mutator:
    def __init__(self, seeds: list[bytes], rng: random.Random) -> None:
        self.seeds = seeds
        self.rng = rng
        # Byte strings worth writing somewhere: keys and names found in the seeds.
        self.tokens = [b"GGUF", b"general.alignment", b"tokenizer.ggml.tokens",
                       b"block_count", b"embedding_length", b"head_count", b"context_length",
                       b"token_embd.weight", b"output.weight", b"gemma3", b"gpt2", b"llama"]  # fmt: skip

    def field(self, b: bytearray) -> None:
        """Sets one number of the file's structure to a value chosen for its type."""
        fields = gguf_fields(bytes(b))
        values = [f for f in fields if not f[1].startswith("len")]
        if not fields:
            return
        rng = self.rng
        # Mostly values (the file still parses, and the model code sees the new value).
        pos, fmt = rng.choice(values if values and rng.random() < 0.8 else fields)
        fmt = {"len4": "<I", "len8": "<Q"}.get(fmt, fmt)
        if fmt == "vtype":
            struct.pack_into("<I", b, pos, rng.choice((*range(14), 2**31, 2**32 - 1)))
        elif fmt == "ttype":
            struct.pack_into("<I", b, pos, rng.choice((*range(42), 4, 2**31, 2**32 - 1)))
        elif fmt in ("<f", "<d"):
            v = rng.choice(_FLOATS)
            struct.pack_into(fmt, b, pos, v if fmt == "<d" or abs(v) < 3.5e38 else float("inf"))
        else:
            size = struct.calcsize(fmt)
            (old,) = struct.unpack_from(fmt.upper(), b, pos)
            struct.pack_into(fmt.upper(), b, pos, self.integer(size, old))

    def integer(self, size: int, old: int) -> int:
        r = self.rng.random()
        if r < 0.5:
            v = self.rng.choice(_INTERESTING)
        elif r < 0.8:
            v = old + self.rng.randint(-16, 16)
        else:
            v = self.rng.getrandbits(8 * size)
        return v % (1 << (8 * size))

    def mutate(self, data: bytes) -> bytes:
        b = bytearray(data)
        rng = self.rng
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            n = len(b)
            pos = rng.randrange(n + 1)
            op = rng.randrange(20)
            if op >= 10:
                self.field(b)
            elif op == 0 and n:
                b[min(pos, n - 1)] ^= 1 << rng.randrange(8)
            elif op == 1 and n:
                b[min(pos, n - 1)] = rng.randrange(256)
            elif op in (2, 3, 4) and n >= 8:  # an integer field: counts, lengths, dims, types
                size = rng.choice((4, 8, 8))
                pos = min(pos, n - size)
                if rng.random() < 0.7:
                    pos -= pos % 4  # fields sit at 4-byte multiples more often than not
                fmt = "<I" if size == 4 else "<Q"
                (old,) = struct.unpack_from(fmt, b, pos)
                struct.pack_into(fmt, b, pos, self.integer(size, old))
            elif op == 5:
                b[pos:pos] = rng.randbytes(rng.randint(1, 16))
            elif op == 6 and n:
                del b[pos : pos + rng.randint(1, 64)]
            elif op == 7 and n:
                start = rng.randrange(n)
                b[pos:pos] = b[start : start + rng.randint(1, 64)]
            elif op == 8:
                other = rng.choice(self.seeds)
                cut = rng.randrange(len(other) + 1)
                b[pos:] = other[cut:]
            elif op == 9:
                tok = rng.choice(self.tokens)
                b[pos : pos + len(tok)] = tok
        if rng.random() < 0.05:
            del b[rng.randrange(len(b) + 1) :]
        return bytes(b[:MAX_LEN])


def _alarm(signum: int, frame: object) -> None:
    raise Finding(f"input took more than {PER_INPUT_SECONDS} s (hang)")


def run_random(seconds: float, seed: int, artifacts: Path, seeds: list[Path]) -> int:
    rng = random.Random(seed)
    seed_data = [p.read_bytes() for p in seeds]
    mut = Mutator(seed_data, rng)
    # Python code is interrupted by the handler; a hang inside native code is not, and the
    # second alarm (default action) then kills the process, which the caller sees.
    signal.signal(signal.SIGALRM, _alarm)
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        # Half the time a complete model: the seeds that reach the model code.
        models = [d for d in seed_data if len(d) > 1024]
        data = mut.mutate(rng.choice(models if models and rng.random() < 0.5 else seed_data))
        signal.alarm(PER_INPUT_SECONDS)
        try:
            check(data)
        except BaseException as e:  # noqa: BLE001 - any escape is a finding
            signal.alarm(0)
            _report(artifacts, data, e)
            return 1
        finally:
            signal.alarm(0)
        n += 1
    print(f"random engine: {n} inputs in {seconds:.0f} s, no findings (seed {seed}); {stats}")
    return 0


# -- the atheris engine ------------------------------------------------------------------------


def run_atheris(seconds: float, seed: int, artifacts: Path, dirs: list[str]) -> int:
    import atheris

    def one_input(data: bytes) -> None:
        check(data)

    mutator = Mutator([p.read_bytes() for p in _seed_files(dirs)], random.Random(seed))

    def custom_mutator(data: bytes, max_size: int, mseed: int) -> bytes:
        # Half libFuzzer's own byte-level mutations, half structure-aware ones (numbers of
        # the header, metadata and tensor table set to values chosen for their type).
        mutator.rng.seed(mseed)
        if mutator.rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        return mutator.mutate(data)[:max_size]

    work = artifacts / "corpus"  # libFuzzer adds the inputs it finds here
    work.mkdir(exist_ok=True)
    corpora = [str(d) for d in SEED_DIRS if d.is_dir()] + dirs
    argv = [sys.argv[0], f"-max_total_time={int(seconds)}", f"-timeout={PER_INPUT_SECONDS}",
            f"-rss_limit_mb={_INHERITED_PEAK_MB + 3072}", f"-max_len={MAX_LEN}", f"-seed={seed}",
            f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(work), *corpora]  # fmt: skip
    atheris.Setup(argv, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()  # exits the process: 0 when the time is up, non-zero on a finding
    return 0


def replay(paths: list[str], artifacts: Path) -> int:
    bad = 0
    for p in _files([Path(x) for x in paths]) if paths else _seed_files([]):
        try:
            check(p.read_bytes())
        except BaseException as e:  # noqa: BLE001 - reported
            print(f"{p}: {type(e).__name__}: {e}", file=sys.stderr)
            bad += 1
    print(f"replayed: {bad} finding(s)")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="*", help="extra corpus directories or files")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--artifacts", default=None, help="where findings are saved")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--replay", action="store_true", help="run the given files once")
    args = ap.parse_args(argv)
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            engine = "random"
        else:
            engine = "atheris"
    artifacts = Path(args.artifacts or tempfile.mkdtemp(prefix="strata-fuzz-artifacts-"))
    _setup(artifacts, instrument=engine == "atheris" and not args.replay)
    if args.replay:
        return replay(args.dirs, artifacts)
    seeds = _seed_files(args.dirs)
    _warm_up([p for p in seeds if p.stat().st_size <= MAX_LEN])
    _limit_address_space()
    seed = args.seed if args.seed is not None else int(time.time()) & 0xFFFFFFF
    print(f"engine {engine}, {len(seeds)} seeds, {args.seconds:.0f} s, seed {seed}, "
          f"artifacts in {artifacts}", flush=True)  # fmt: skip
    if engine == "atheris":
        return run_atheris(args.seconds, seed, artifacts, args.dirs)
    return run_random(args.seconds, seed, artifacts, seeds)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

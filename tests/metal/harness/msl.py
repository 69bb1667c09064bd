"""Compile strata's .metal shaders unchanged with clang++ on Linux and run their kernels.

Each (shader file, function-constant values) pair becomes one shared object: the file is
#included as C++ after include/metal_stdlib (the MSL prelude) with STRATA_FC_<i> defined,
linked with runtime.cpp (the fiber scheduler), and loaded with ctypes. Argument structs
are read from metal/strata_args.h and the kernel list from metal/kernels.def, the same
files the Metal host uses. See docs/metal.md for what this proves and what it cannot.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
METAL = Path(os.environ.get("STRATA_METAL_DIR", ROOT / "metal"))  # override: mutation testing
HARNESS = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("STRATA_MSL_CACHE", Path(tempfile.gettempdir()) / "strata-msl-harness"))
FC_UNSET = -77777  # value of a function constant a kernel does not declare it uses

# ---- the compiler ---------------------------------------------------------------------------

_CXX_CHECK = "#if !defined(__FLT16_MAX__)\n#error no _Float16\n#endif\n_Float16 h;\n"


def find_cxx() -> tuple[str | None, bool]:
    """(clang++ path, whether it has a native _Float16 on this host). STRATA_MSL_CXX forces a
    compiler; otherwise the newest clang++ with _Float16, else any clang++."""
    forced = os.environ.get("STRATA_MSL_CXX")
    names = [forced] if forced else [f"clang++-{v}" for v in range(20, 13, -1)] + ["clang++"]
    found = [shutil.which(n) for n in names if shutil.which(n)]
    for cxx in found:
        r = subprocess.run(
            [cxx, "-x", "c++", "-fsyntax-only", "-"],
            check=False,
            input=_CXX_CHECK,
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            return cxx, True
    return (found[0], False) if found else (None, False)


# ---- the shared table -----------------------------------------------------------------------


@dataclass(frozen=True)
class KernelInfo:
    name: str
    source: str
    args: str
    buffers: tuple[str, ...]
    fcs: dict
    threads: int



def harness_marks() -> list:
    """pytest marks for tests that run shaders through the harness: Linux with clang++."""
    import sys

    import pytest

    return [
        pytest.mark.skipif(
            not sys.platform.startswith("linux"),
            reason="the MSL harness is Linux-only (ELF sections, ucontext); on macOS use Metal",
        ),
        pytest.mark.skipif(find_cxx()[0] is None, reason="clang++ not found: apt-get install clang"),
    ]

def kernel_table() -> dict[str, KernelInfo]:
    text = (METAL / "kernels.def").read_text()
    pat = re.compile(
        r'^STRATA_METAL_KERNEL\((\w+),\s*"([^"]+)",\s*(\w+),\s*"([^"]*)",\s*"([^"]*)",\s*(\d+)\)',
        re.MULTILINE,
    )
    out = {}
    for name, src, args, bufs, fcs, threads in pat.findall(text):
        fc = {k: int(v) for k, v in (p.split("=") for p in fcs.split())}
        out[name] = KernelInfo(name, src, args, tuple(bufs.split()), fc, int(threads))
    return out


_CTYPES = {"int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32, "float": ctypes.c_float}


def arg_structs() -> dict[str, type]:
    """ctypes mirrors of the structs in metal/strata_args.h (4-byte scalar fields only)."""
    text = (METAL / "strata_args.h").read_text()
    out = {}
    for name, body in re.findall(r"struct (\w+Args) \{(.*?)\};", text, re.DOTALL):
        fields = []
        for line in body.splitlines():
            m = re.match(r"\s*(int32_t|uint32_t|float)\s+(\w+);", line)
            if m:
                fields.append((m.group(2), _CTYPES[m.group(1)]))
            elif line.strip() and not line.strip().startswith("//"):
                raise ValueError(f"{name}: field the harness cannot mirror: {line.strip()}")
        out[name] = type(name, (ctypes.Structure,), {"_fields_": fields})
    return out


# ---- building -------------------------------------------------------------------------------


class BuildError(RuntimeError):
    pass


class LaunchError(RuntimeError):
    pass


class Program:
    """One .metal file compiled with one set of function-constant values."""

    def __init__(self, lib: ctypes.CDLL, kernels: list[str]):
        self.lib = lib
        self.kernels = kernels
        lib.strata_launch.restype = ctypes.c_int
        lib.strata_launch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_uint64,
            ctypes.c_char_p,
            ctypes.c_int,
        ]

    def launch(self, name: str, groups, threads, buffers, seed: int = 0, simd_width: int = 32):
        """dispatchThreadgroups(groups, threads) of kernel `name` with buffers by index
        (NumPy arrays written in place, ctypes structures, or None)."""
        fn = ctypes.cast(getattr(self.lib, f"strata_thunk_{name}"), ctypes.c_void_p)
        g = (ctypes.c_uint32 * 3)(*(list(groups) + [1, 1])[:3])
        t = (ctypes.c_uint32 * 3)(*(list(threads) + [1, 1])[:3])
        ptrs = (ctypes.c_void_p * max(1, len(buffers)))()
        for i, b in enumerate(buffers):
            if b is None:
                ptrs[i] = None
            elif isinstance(b, np.ndarray):
                assert b.flags.c_contiguous, "buffers must be C-contiguous"
                ptrs[i] = b.ctypes.data
            else:
                ptrs[i] = ctypes.addressof(b)
        err = ctypes.create_string_buffer(1024)
        rc = self.lib.strata_launch(fn, g, t, ptrs, len(buffers), simd_width, seed, err, 1024)
        if rc != 0:
            raise LaunchError(f"{name}: {err.value.decode()}")


_programs: dict[tuple, Program] = {}


def _kernels_and_defines(source: str, fc_values: dict[str, int] | None) -> tuple[list[str], list[str]]:
    """The kernels of metal/<source> (kernels.def) and the -D flags of its function constants."""
    kernels = [k for k in kernel_table().values() if k.source == source]
    fc_index: dict[str, int] = {}
    for k in kernels:
        fc_index.update(k.fcs)
    values = dict(fc_values or {})
    unknown = set(values) - set(fc_index)
    if unknown:
        raise BuildError(f"{source} has no function constants {sorted(unknown)}")
    defines = [f"-DSTRATA_FC_{i}={values.get(n, FC_UNSET)}" for n, i in sorted(fc_index.items())]
    return [k.name for k in kernels], defines


def program(source: str, fc_values: dict[str, int] | None = None) -> Program:
    """Compile metal/<source> with the given function constants (by name, per kernels.def)."""
    return build(METAL / source, *_kernels_and_defines(source, fc_values))


def mutant(source: str, edits: list[tuple], fc_values: dict[str, int] | None = None) -> Program:
    """metal/<source> with bugs injected on purpose, compiled as program() would, for tests
    that show a check catches the bug. An edit (old, new) changes the shader, (file, old,
    new) a header it includes (e.g. quants.h); `old` must occur exactly once, so an edit that
    no longer applies fails loudly instead of testing the unchanged code."""
    files: dict[str, str] = {}
    for edit in edits:
        name, old, new = edit if len(edit) == 3 else (source, *edit)
        text = files.get(name) or (METAL / name).read_text()
        n = text.count(old)
        if n != 1:
            raise BuildError(f"mutation of {name}: {old!r} occurs {n} times, not once")
        files[name] = text.replace(old, new)
    files.setdefault(source, (METAL / source).read_text())
    kernels, defines = _kernels_and_defines(source, fc_values)
    key = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()[:16]
    d = CACHE / "mutants" / key  # "quoted" includes look here first, then in METAL
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if not (d / name).exists():
            (d / name).write_text(text)
    return build(d / source, kernels, defines, extra_inputs=[d / n for n in files])


def build(
    path: Path, kernels: list[str], defines: list[str] = (), extra_inputs: list[Path] = ()
) -> Program:
    """Compile the MSL file at `path` exposing `kernels` (also used for the harness's own
    test shaders in tests/metal/cases/)."""
    cxx, _ = find_cxx()
    if cxx is None:
        raise BuildError("clang++ not found (apt-get install clang)")
    key = (str(path), tuple(defines))
    if key in _programs:
        return _programs[key]
    thunks = "\n".join(f'extern "C" void strata_thunk_{k}() {{ {k}(); }}' for k in kernels)
    tu = f'#include "{path}"\n{thunks}\n'
    flags = [
        "-std=c++17",
        "-O1",
        "-fPIC",
        "-shared",
        "-g0",
        "-D__METAL_VERSION__=300",
        f"-I{HARNESS / 'include'}",
        f"-I{METAL}",
        "-Wall",
        "-Werror",
        "-Wno-unused-function",
        "-Wno-unused-variable",
        "-fno-fast-math",
        *defines,
    ]
    inputs = [
        HARNESS / "runtime.cpp",
        Path(path),
        *sorted(METAL.glob("*.h")),  # strata_args.h, quants.h: every header a shader includes
        HARNESS / "include" / "metal_stdlib",
        HARNESS / "include" / "strata_msl_runtime.h",
        *extra_inputs,
    ]
    h = hashlib.sha256((cxx + " ".join(flags) + tu).encode())
    for p in inputs:
        h.update(p.read_bytes())
    CACHE.mkdir(parents=True, exist_ok=True)
    so = CACHE / f"{Path(path).stem}-{h.hexdigest()[:16]}.so"
    if not so.exists():
        tu_path = CACHE / f"{so.stem}.cpp"
        tu_path.write_text(tu)
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, *flags, str(tu_path), str(HARNESS / "runtime.cpp"), "-o", str(tmp), "-lm"]
        r = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if r.returncode != 0:
            raise BuildError(f"compiling {Path(path).name} failed:\n{' '.join(cmd)}\n{r.stderr}")
        os.replace(tmp, so)
    prog = Program(ctypes.CDLL(str(so)), list(kernels))
    _programs[key] = prog
    return prog

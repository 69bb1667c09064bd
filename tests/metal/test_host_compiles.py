"""The Objective-C++ Metal host compiles on Linux against declarations transcribed from
Apple's documentation (tests/metal/host_check/include): a misspelt selector or a wrong
argument type fails here, before a Mac sees it. What this cannot catch: a transcription
that is itself wrong, availability (macOS version) attributes, and anything at link or run
time. The macOS workflow compiles the same files against the real SDK.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .harness import msl

ROOT = msl.ROOT
HOST = ROOT / "csrc" / "backends" / "metal"
STUBS = Path(__file__).resolve().parent / "host_check" / "include"
CXX, _ = msl.find_cxx()
pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="Linux stand-in for the SDK; macOS CI compiles against the real one",
    ),
    pytest.mark.skipif(CXX is None, reason="clang++ not found: apt-get install clang"),
]


def syntax_check(src: Path) -> subprocess.CompletedProcess:
    cmd = [
        CXX,
        "-x",
        "objective-c++",
        "-std=c++20",
        "-fobjc-runtime=gnustep-2.0",
        "-fobjc-arc",
        "-fblocks",
        "-fsyntax-only",
        "-Wall",
        "-Werror",
        f"-I{STUBS}",
        f"-I{HOST}",
        f"-I{ROOT / 'csrc'}",
        str(src),
    ]
    return subprocess.run(cmd, check=False, capture_output=True, text=True)


@pytest.mark.parametrize("name", ["metal_context.mm", "metal_backend.mm"])
def test_host_source_compiles(name):
    r = syntax_check(HOST / name)
    assert r.returncode == 0, r.stderr


def test_misspelt_selector_fails(tmp_path):
    src = (HOST / "metal_context.mm").read_text().replace("setBuffer:impl_", "setBufer:impl_")
    bad = tmp_path / "bad.mm"
    bad.write_text(src)
    r = syntax_check(bad)
    assert r.returncode != 0 and "setBufer" in r.stderr

"""The guard on the installed llama.cpp library: it reads instructions, not this machine's CPU."""

from __future__ import annotations

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from dragoman.engine.native_check import forbidden_instructions, library_files

pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or shutil.which("as") is None,
    reason="x86-64 instructions, assembled with binutils",
)


def _object(tmp_path: Path, name: str, code: str) -> Path:
    source = tmp_path / f"{name}.s"
    source.write_text(f".text\n{code}\n")
    out = tmp_path / f"{name}.o"
    subprocess.run(["as", "-o", str(out), str(source)], check=True)
    return out


def test_amx_and_avx512_are_found(tmp_path: Path) -> None:
    amx = _object(tmp_path, "amx", "tileloadd (%rax,%rbx,1), %tmm0\ntdpbssd %tmm1, %tmm2, %tmm3")
    assert forbidden_instructions(amx) == {"tileloadd": 1, "tdpbssd": 1}
    avx512 = _object(tmp_path, "avx512", "vaddps %zmm1, %zmm2, %zmm3{%k1}")
    assert set(forbidden_instructions(avx512)) == {"%zmm", "%k"}


def test_avx2_passes(tmp_path: Path) -> None:
    avx2 = _object(tmp_path, "avx2", "vfmadd231ps %ymm1, %ymm2, %ymm3\nvpaddd %ymm0, %ymm1, %ymm2")
    assert forbidden_instructions(avx2) == {}


def test_the_installed_library_is_portable() -> None:
    libraries = [p for p in library_files() if "ggml-cpu" in p.name]
    assert libraries
    for library in libraries:
        assert forbidden_instructions(library) == {}, library

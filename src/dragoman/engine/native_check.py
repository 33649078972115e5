"""Check that the installed llama.cpp CPU library carries only portable instructions.

A llama.cpp built for the machine it was built on (`GGML_NATIVE`) may carry AMX tile or
AVX-512 instructions: on a CPU that advertises AMX, llama.cpp's AMX path faults at the first
token; on a CPU without AVX-512 the library cannot run at all. Whether this machine's CPU would
survive proves nothing about a user's, so the built library itself is read.

    python -m dragoman.engine.native_check      # exit 0: portable; 1: not; 2: cannot tell
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

# AMX: tile loads/stores/config and tile dot products. AVX-512: any zmm register or mask
# register operand (AVX2 code never names either).
_FORBIDDEN_X86 = re.compile(
    r"\b(?:tileloadd\w*|tilestored|ldtilecfg|sttilecfg|tilerelease|tilezero|tdp\w+)\b"
    r"|%zmm\d+|%k[1-7]\b"
)


def library_files() -> list[Path]:
    """The shared libraries of the installed llama_cpp package."""
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("llama_cpp is not installed")
    lib = Path(spec.origin).parent / "lib"
    # Versioned names are links to one file: read each file once.
    return sorted({p.resolve() for p in lib.glob("*.so*") if p.is_file()})


def forbidden_instructions(path: Path) -> dict[str, int]:
    """Counts of forbidden instruction mnemonics or registers found in `path`'s code."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise FileNotFoundError("objdump (binutils) is needed to read the library")
    out = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts: dict[str, int] = {}
    for match in _FORBIDDEN_X86.finditer(out):
        name = re.sub(r"\d+$", "", match.group(0))
        counts[name] = counts.get(name, 0) + 1
    return counts


def main() -> int:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        print(f"native_check: {platform.machine()}: nothing to check", file=sys.stderr)
        return 0
    try:
        files = library_files()
    except FileNotFoundError as exc:
        print(f"native_check: {exc}", file=sys.stderr)
        return 2
    cpu = [p for p in files if "ggml-cpu" in p.name] or files
    if not cpu:
        print("native_check: no llama.cpp library found", file=sys.stderr)
        return 2
    bad = False
    for path in cpu:
        try:
            counts = forbidden_instructions(path)
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            print(f"native_check: {exc}", file=sys.stderr)
            return 2
        if counts:
            bad = True
            found = ", ".join(f"{k} ×{v}" for k, v in sorted(counts.items()))
            print(f"native_check: {path.name} is not portable: {found}", file=sys.stderr)
        else:
            print(f"native_check: {path.name}: no AMX tile or AVX-512 instructions")
    if bad:
        print(
            "native_check: rebuild with ./install.sh (it builds llama-cpp-python for a "
            "portable CPU and bypasses pip's wheel cache)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

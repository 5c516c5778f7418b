#!/usr/bin/env python3
"""Compiles kernels/*.cu with nvcc (sm_80, sm_90) and kernels/*.c with cc, failing on any error or warning.

Each file is compiled once, for both architectures, together with every template
instantiation CuPy will build from it (listed in gpubp/backends/kernel_catalog.py),
since nvcc checks a template's body only where it is instantiated. Files compile in
parallel. The C kernels (the NumPy backend's) compile with the flags
gpubp/backends/cpu_kernels.py builds them with, plus -Wall -Wextra -Wconversion
-Werror. Without nvcc or a C compiler that check is skipped with the reason
(exit 0), unless --require is given. Run from anywhere: python3 .ci/compile_kernels.py
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("80", "90")


def load_backend_module(name: str):
    # By path, so the check needs neither NumPy nor an installed gpubp.
    spec = importlib.util.spec_from_file_location(name, ROOT / "gpubp" / "backends" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_c_kernels(require: bool) -> bool:
    """Compiles kernels/*.c as the NumPy backend does, warnings as errors; True if all pass."""
    cpu_kernels = load_backend_module("cpu_kernels")
    compiler = cpu_kernels.find_compiler()
    if compiler is None:
        print("kernels: no C compiler (cc, gcc, clang or $CC); skipping the C compile check")
        return not require
    sources = sorted((ROOT / "kernels").glob("*.c"))
    listed = sorted(ROOT / "kernels" / name for name in cpu_kernels.SOURCES)
    if sources != listed:
        print(f"kernels: FAIL kernels/*.c is {[s.name for s in sources]} but cpu_kernels.SOURCES lists {listed}")
        return False
    with tempfile.TemporaryDirectory(prefix="gpubp-cc-") as tmp:
        command = cpu_kernels.compile_command(compiler, sources, Path(tmp) / "gpubp_cpu_kernels.so", True)
        result = subprocess.run(command, capture_output=True, text=True)
    names = " ".join(source.name for source in sources)
    if result.returncode != 0 or result.stderr.strip() or result.stdout.strip():
        print(f"kernels: FAIL {names} ({Path(compiler).name})\n  {' '.join(command)}")
        print("  " + (result.stdout + result.stderr).strip().replace("\n", "\n  "))
        return False
    print(f"kernels: ok   {names} ({Path(compiler).name})")
    return True


def nvcc_command(nvcc: str, unit: Path, archs: tuple[str, ...], options: tuple[str, ...]) -> list[str]:
    command = [nvcc, "-c", str(unit), "-o", str(unit.with_suffix(".o")), *options, "-Werror", "all-warnings"]
    for arch in archs:
        command += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvcc", default=shutil.which("nvcc"), help="nvcc to use (default: the one on PATH)")
    parser.add_argument("--arch", action="append", help="compute capability, e.g. 90 (default: 80 and 90)")
    parser.add_argument(
        "--require", action="store_true", help="fail instead of skipping when nvcc or a C compiler is absent"
    )
    args = parser.parse_args(argv)
    archs = tuple(args.arch or ARCHS)
    c_ok = check_c_kernels(args.require)
    if not args.nvcc:
        print("kernels: nvcc not found on PATH; skipping the CUDA compile check")
        return 1 if args.require or not c_ok else 0

    catalog = load_backend_module("kernel_catalog")
    sources = sorted((ROOT / "kernels").glob("*.cu"))
    if not sources:
        print("kernels: no .cu files in kernels/")
        return 1
    failed = False
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpubp-nvcc-") as tmp:
        jobs = []
        for source in sources:
            unit = Path(tmp) / source.name
            if source.stem in catalog.FAMILIES:
                unit.write_text(catalog.instantiation_unit(source.stem, source))
            else:
                unit.write_text(f'#include "{source.as_posix()}"\n')
            command = nvcc_command(args.nvcc, unit, archs, catalog.COMPILE_OPTIONS)
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            jobs.append((source, command, process))
        for source, command, process in jobs:
            output, _ = process.communicate()
            # A warning nvcc does not count as one (e.g. from ptxas) still fails the check.
            if process.returncode != 0 or output.strip():
                failed = True
                print(f"kernels: FAIL {source.name} (sm_{', sm_'.join(archs)})\n  {' '.join(command)}")
                print("  " + output.strip().replace("\n", "\n  "))
            else:
                print(f"kernels: ok   {source.name} (sm_{', sm_'.join(archs)})")
    print(f"kernels: {len(sources)} files compiled in {time.perf_counter() - started:.1f} s")
    return 1 if failed or not c_ok else 0


if __name__ == "__main__":
    sys.exit(main())

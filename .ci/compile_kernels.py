#!/usr/bin/env python3
"""Compiles every kernels/*.cu with nvcc for sm_80 and sm_90 and fails on any error or warning.

Each file is compiled once, for both architectures, together with every template
instantiation CuPy will build from it (listed in gpubp/backends/kernel_catalog.py),
since nvcc checks a template's body only where it is instantiated. Files compile in
parallel. Without nvcc the check is skipped with the reason (exit 0), unless
--require is given. Run from anywhere: python3 .ci/compile_kernels.py
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


def load_catalog():
    # By path, so the check needs neither NumPy nor an installed gpubp.
    spec = importlib.util.spec_from_file_location("kernel_catalog", ROOT / "gpubp" / "backends" / "kernel_catalog.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nvcc_command(nvcc: str, unit: Path, archs: tuple[str, ...], options: tuple[str, ...]) -> list[str]:
    command = [nvcc, "-c", str(unit), "-o", str(unit.with_suffix(".o")), *options, "-Werror", "all-warnings"]
    for arch in archs:
        command += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nvcc", default=shutil.which("nvcc"), help="nvcc to use (default: the one on PATH)")
    parser.add_argument("--arch", action="append", help="compute capability, e.g. 90 (default: 80 and 90)")
    parser.add_argument("--require", action="store_true", help="fail instead of skipping when nvcc is absent")
    args = parser.parse_args(argv)
    archs = tuple(args.arch or ARCHS)
    if not args.nvcc:
        print("kernels: nvcc not found on PATH; skipping the CUDA compile check")
        return 1 if args.require else 0

    catalog = load_catalog()
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
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

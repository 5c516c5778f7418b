"""The CUDA sources compile without a GPU: nvcc for sm_80 and sm_90 (as CI does),
NVRTC the way CuPy calls it, and the Philox function run on the host."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpubp.backends import kernel_catalog as catalog
from gpubp.backends.philox import KNOWN_ANSWERS

ROOT = Path(__file__).resolve().parents[2]
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed (CUDA toolkit absent)")


@needs_nvcc
@pytest.mark.slow
def test_every_kernel_file_compiles_for_sm80_and_sm90_without_warnings():
    result = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "compile_kernels.py"), "--require"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for family in catalog.FAMILIES:
        assert f"ok   {family}.cu" in result.stdout
    assert "ok   activation_cpu.c optim_cpu.c" in result.stdout


def _nvrtc_program():
    try:
        from cupy.cuda import compiler

        compiler._get_nvrtc_version()  # loads libnvrtc; fails where it is absent
    except Exception as err:  # ImportError, or the library not found
        pytest.skip(f"NVRTC through CuPy is not available: {type(err).__name__}: {str(err).splitlines()[0]}")
    return compiler._NVRTCProgram


@pytest.mark.parametrize("family", catalog.FAMILIES)
@pytest.mark.parametrize("arch", ["80", "90"])
def test_nvrtc_compiles_every_name_expression_silently(family, arch):
    # What cupy.RawModule(code=..., name_expressions=...) does, minus the device query:
    # CuPy adds -ftz=true and --device-as-default-execution-space itself.
    program = _nvrtc_program()
    names = list(catalog.name_expressions(family))
    prog = program(catalog.kernel_source(family), f"{family}.cu", (), (), name_expressions=names, method="cubin")
    log = io.StringIO()
    options = (*catalog.COMPILE_OPTIONS, "-ftz=true", "--device-as-default-execution-space", f"-arch=sm_{arch}")
    cubin, mapping = prog.compile(options, log)
    assert cubin and set(mapping) == set(names)
    assert log.getvalue().strip() == ""


@needs_nvcc
def test_device_philox_matches_known_answers_on_the_host(tmp_path):
    harness = tmp_path / "philox_kat.cu"
    harness.write_text(
        f'#include "{catalog.kernel_path("random").as_posix()}"\n'
        "#include <cstdio>\n#include <cstdlib>\n"
        "int main(int argc, char** argv) {\n"
        "    unsigned int v[6];\n"
        "    for (int i = 0; i < 6; ++i) v[i] = (unsigned int)strtoul(argv[i + 1], nullptr, 16);\n"
        "    Words r = philox4x32_10(v[0], v[1], v[2], v[3], v[4], v[5]);\n"
        '    printf("%08x %08x %08x %08x\\n", r.w[0], r.w[1], r.w[2], r.w[3]);\n'
        "    return 0;\n}\n"
    )
    exe = tmp_path / "philox_kat"
    build = subprocess.run(
        [NVCC, "-std=c++17", "-arch=sm_80", "-o", str(exe), str(harness)], capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stdout + build.stderr
    for counter, key, expected in KNOWN_ANSWERS:
        args = [f"{v:08x}" for v in (*counter, *key)]
        out = subprocess.run([str(exe), *args], capture_output=True, text=True, check=True).stdout.split()
        assert tuple(int(w, 16) for w in out) == expected


def test_the_tensor_table_and_step_list_layouts_match_the_catalogue():
    """kernel_catalog's TABLE_* word offsets (what cupy_backend writes) are where the
    compiler puts the fields of tensor_table.cuh's TensorTable, and amp.cu's StepList
    has the size advance_steps' host words have."""
    program = _nvrtc_program()
    fields = {
        "count": catalog.TABLE_COUNT,
        "chunk_begin": catalog.TABLE_CHUNK_BEGIN,
        "size": catalog.TABLE_SIZE,
        "param": catalog.TABLE_PARAM,
        "grad": catalog.TABLE_GRAD,
        "state1": catalog.TABLE_STATE1,
        "state2": catalog.TABLE_STATE2,
        "step": catalog.TABLE_STEP,
        "found_inf": catalog.TABLE_FOUND_INF,
        "replay_scalars": catalog.TABLE_REPLAY_SCALARS,
        "scalars": catalog.TABLE_SCALARS,
    }
    checks = [f'static_assert(__builtin_offsetof(TensorTable, {f}) == {8 * w}, "{f}");' for f, w in fields.items()]
    checks.append(f'static_assert(sizeof(TensorTable) == {8 * catalog.TABLE_WORDS}, "TensorTable size");')
    size = 8 * (2 + catalog.STEP_LIST_MAX)
    checks.append(f'static_assert(sizeof(StepList<{catalog.STEP_LIST_MAX}>) == {size}, "StepList size");')
    source = catalog.kernel_source("amp") + "\n" + "\n".join(checks) + "\n"
    log = io.StringIO()
    program(source, "layout.cu", (), ()).compile((*catalog.COMPILE_OPTIONS, "-arch=sm_80"), log)
    assert log.getvalue().strip() == ""

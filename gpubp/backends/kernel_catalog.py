"""The CUDA kernels in ``kernels/*.cu``: where their sources are, the template
instantiations each file is compiled with, and how launches are shaped.

Plain Python with no CuPy or NumPy, so it is tested on any machine and the CI
kernel compile check (``.ci/compile_kernels.py``) can load it by path.

A kernel is named the way CuPy's ``RawModule(name_expressions=...)`` wants it:
``"bias_act_fwd<float, 1, 4>"``. The same string compiles it and fetches it.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

# A local include of one of our headers (kernels/*.cuh), inlined by kernel_source.
_INCLUDE = re.compile(r'^#include "([A-Za-z0-9_]+\.cuh)"$', re.MULTILINE)

# Storage dtype name -> C++ type in the kernels. half_t is float16 bits with float arithmetic.
FLOAT_TYPES = {"float16": "half_t", "float32": "float", "float64": "double"}
LABEL_TYPES = {"int32": "int", "int64": "long long"}
# The ACT template parameter of activation.cu.
ACTIVATION_CODES = {None: 0, "sigmoid": 1, "tanh": 2, "relu": 3}

ACCESS_BYTES = 16  # one vectorised load or store per thread (float4, double2, 8 halves)
BLOCK = 256  # threads per block; a multiple of the warp size (softmax_xent uses a warp per row)
BLOCKS_PER_SM = 8  # 8 x 256 = 2048 threads, the resident maximum of an SM on sm_80 and sm_90
WARP = 32

# Options for NVRTC through CuPy and for nvcc in CI, the same both ways. No FMA
# contraction: a fused a*b + c rounds once where the NumPy twin rounds twice, and
# where the sum cancels (1 - y*y near y = 1) that difference is all of the result.
# These kernels are bound by memory, not arithmetic, so exactness costs nothing.
COMPILE_OPTIONS = ("-std=c++17", "--fmad=false")

FAMILIES = ("activation", "softmax_xent", "optim", "random")

_ITEMSIZE = {"float16": 2, "float32": 4, "float64": 8}


def _name(kernel: str, *args: object) -> str:
    return f"{kernel}<{', '.join(str(a) for a in args)}>"


def vector_width(dtype: str) -> int:
    """Elements per 16-byte access: 8 for float16, 4 for float32, 2 for float64."""
    return ACCESS_BYTES // _ITEMSIZE[dtype]


def vector_widths(dtype: str) -> tuple[int, int]:
    """The two compiled widths: 1 (any alignment) and the 16-byte width."""
    return (1, vector_width(dtype))


# -- one function per kernel: its name expression --------------------------------
def bias_act_fwd(dtype: str, activation: str | None, vec: int) -> str:
    return _name("bias_act_fwd", FLOAT_TYPES[dtype], ACTIVATION_CODES[activation], vec)


def act_bwd(dtype: str, activation: str, vec: int) -> str:
    return _name("act_bwd", FLOAT_TYPES[dtype], ACTIVATION_CODES[activation], vec)


def softmax_xent_fwd(dtype: str, label_dtype: str) -> str:
    return _name("softmax_xent_fwd", FLOAT_TYPES[dtype], LABEL_TYPES[label_dtype])


def softmax_xent_bwd(dtype: str, label_dtype: str) -> str:
    return _name("softmax_xent_bwd", FLOAT_TYPES[dtype], LABEL_TYPES[label_dtype])


def sgd_update(dtype: str, vec: int) -> str:
    return _name("sgd_update", FLOAT_TYPES[dtype], vec)


def adam_update(dtype: str, vec: int) -> str:
    return _name("adam_update", FLOAT_TYPES[dtype], vec)


def uniform(dtype: str) -> str:
    return _name("uniform", FLOAT_TYPES[dtype])


def normal(dtype: str) -> str:
    return _name("normal", FLOAT_TYPES[dtype])


def dropout_mask(dtype: str) -> str:
    return _name("dropout_mask", FLOAT_TYPES[dtype])


def values_per_counter(kernel: str, dtype: str) -> int:
    """Random values one Philox call (one counter) yields in ``random.cu``: four
    32-bit words make 4 floats or halves, or 2 doubles (two words each); dropout
    masks always take 4 (one 24-bit draw per element)."""
    if kernel == "dropout_mask":
        return 4
    if kernel == "normal" and dtype == "float16":
        return 4  # float16 normals draw float uniforms
    return 2 if dtype == "float64" else 4


def name_expressions(family: str) -> tuple[str, ...]:
    """Every instantiation of a family's templates, in a fixed order."""
    names: list[str] = []
    for dtype in FLOAT_TYPES:
        widths = vector_widths(dtype)
        if family == "activation":
            names += [bias_act_fwd(dtype, act, vec) for act in ACTIVATION_CODES for vec in widths]
            names += [act_bwd(dtype, act, vec) for act in ACTIVATION_CODES if act is not None for vec in widths]
        elif family == "softmax_xent":
            for label_dtype in LABEL_TYPES:
                names += [softmax_xent_fwd(dtype, label_dtype), softmax_xent_bwd(dtype, label_dtype)]
        elif family == "optim":
            names += [sgd_update(dtype, vec) for vec in widths] + [adam_update(dtype, vec) for vec in widths]
        elif family == "random":
            names += [uniform(dtype), normal(dtype), dropout_mask(dtype)]
        else:
            raise KeyError(f"unknown kernel family {family!r}; expected one of {FAMILIES}")
    return tuple(names)


# -- launch shapes ---------------------------------------------------------------
def pick_vector_width(dtype: str, pointers: list[int], cols: int | None = None) -> int:
    """The 16-byte width when every pointer is 16-byte aligned (and, for a bias
    broadcast along rows of ``cols`` entries, when a vector cannot straddle two
    rows); else 1. CuPy's allocations are 256-byte aligned; views may not be."""
    width = vector_width(dtype)
    if any(p % ACCESS_BYTES for p in pointers):
        return 1
    if cols is not None and cols % width:
        return 1
    return width


def grid_size(work_items: int, sm_count: int, block: int = BLOCK, blocks_per_sm: int = BLOCKS_PER_SM) -> int:
    """Blocks for a grid-stride loop over ``work_items`` thread-sized pieces of
    work: one full wave of resident blocks on every multiprocessor at most (more
    blocks would only queue), fewer when there is less work, and at least 1."""
    if sm_count < 1:
        raise ValueError(f"sm_count must be positive, got {sm_count}")
    wanted = -(-work_items // block)
    return max(1, min(wanted, sm_count * blocks_per_sm))


# -- sources ---------------------------------------------------------------------
def kernel_path(family: str) -> Path:
    """The ``.cu`` file of a family: in an installed wheel it is package data of
    ``gpubp.kernels``; in a source checkout it is ``<repo>/kernels/``."""
    if family not in FAMILIES:
        raise KeyError(f"unknown kernel family {family!r}; expected one of {FAMILIES}")
    filename = f"{family}.cu"
    try:
        packaged = resources.files("gpubp.kernels").joinpath(filename)
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError, NotADirectoryError):
        pass  # running from a checkout that was not installed
    checkout = Path(__file__).resolve().parents[2] / "kernels" / filename
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(
        f"CUDA kernel source {filename} not found in the gpubp.kernels package data or in {checkout.parent}; "
        "reinstall gpubp (the wheel ships kernels/*.cu)"
    )


def kernel_source(family: str) -> str:
    """The CUDA C++ source text of a family, with its ``#include "common.cuh"``
    replaced by that header's text: CuPy keys its compile cache on the text it
    is given, so the key must cover the shared header too."""
    path = kernel_path(family)
    return _INCLUDE.sub(lambda m: (path.parent / m.group(1)).read_text(encoding="utf-8"), path.read_text("utf-8"))


def instantiation_unit(family: str, source: Path | None = None) -> str:
    """A translation unit that includes the family's source (``source``, or the
    file ``kernel_path`` finds) and takes the address of every instantiation, so
    that ``nvcc`` compiles, and warns about, exactly the kernels CuPy will build.
    Used by the CI compile check."""
    path = kernel_path(family) if source is None else source
    lines = [f'#include "{Path(path).resolve().as_posix()}"', "", "extern void* const gpubp_instances[];"]
    lines.append("void* const gpubp_instances[] = {")
    lines += [f"    (void*)&{name}," for name in name_expressions(family)]
    lines.append("};")
    return "\n".join(lines) + "\n"

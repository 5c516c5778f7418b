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

# Storage dtype name -> C++ type in the kernels. half_t and bf16_t are float16's and
# bfloat16's bits with float arithmetic (common.cuh).
FLOAT_TYPES = {"float16": "half_t", "bfloat16": "bf16_t", "float32": "float", "float64": "double"}
# Dtypes stored in 16 bits: their layer's bias gradient may be written in float32
# (autocast's float32 master weights get their gradients without a cast pass).
HALF_TYPES = ("float16", "bfloat16")
# cast.cu's conversions: to and from bfloat16, which CuPy cannot do, and float32 to
# and from float16, autocast's (CuPy's own astype took 1.6x as long on an H100).
CAST_PAIRS = tuple(
    pair for other in ("float16", "float32", "float64") for pair in ((other, "bfloat16"), ("bfloat16", other))
) + (("float32", "float16"), ("float16", "float32"))
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

FAMILIES = ("activation", "softmax_xent", "optim", "random", "graph", "cast", "amp")

# graph.cu: 8-byte words per write_words launch (its argument block stays under 4 KB).
REPLAY_WORDS = 480
# amp.cu: device step counts per advance_steps launch (StepList, also under 4 KB).
STEP_LIST_MAX = 480

# The TensorTable of optim.cu and amp.cu (kernels/tensor_table.cuh), a kernel argument of
# 8-byte words: the word offsets of its fields (tests/backends/test_kernel_compile.py
# checks them against the compiler's layout).
MULTI_TENSOR_MAX = 16  # tensors per launch (MAX_TENSORS)
MULTI_TENSOR_SCALARS = 10  # hyper-parameters per tensor (MAX_SCALARS)
MULTI_TENSOR_CHUNK = 4096  # elements per chunk (CHUNK)
TABLE_COUNT = 0
TABLE_CHUNK_BEGIN = 1
TABLE_SIZE = TABLE_CHUNK_BEGIN + MULTI_TENSOR_MAX + 1
TABLE_PARAM = TABLE_SIZE + MULTI_TENSOR_MAX
TABLE_GRAD = TABLE_PARAM + MULTI_TENSOR_MAX
TABLE_STATE1 = TABLE_GRAD + MULTI_TENSOR_MAX
TABLE_STATE2 = TABLE_STATE1 + MULTI_TENSOR_MAX
TABLE_STEP = TABLE_STATE2 + MULTI_TENSOR_MAX  # device step counts (GradScaler steps)
TABLE_FOUND_INF = TABLE_STEP + MULTI_TENSOR_MAX
TABLE_REPLAY_SCALARS = TABLE_FOUND_INF + 1
TABLE_SCALARS = TABLE_REPLAY_SCALARS + 1
TABLE_WORDS = TABLE_SCALARS + MULTI_TENSOR_MAX * MULTI_TENSOR_SCALARS

# activation.cu's act_bwd_bias: 32 columns a block (8 rows at a time), and a
# device word per column tile for the last-block ticket (so at most this many tiles).
BIAS_TILE = 64  # columns a block sums: 32 threads across, two neighbouring columns each
BIAS_THREADS = (32, 8)  # its block: 32 threads x 8 rows
BIAS_ROWS_PER_BLOCK_MIN = 64
TICKETS = 1 << 16

_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


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


def act_bwd_bias(dtype: str, activation: str | None, grad_dtype: str | None = None) -> str:
    """``grad_dtype``: the bias gradient's dtype (the storage dtype, or float32 for a half one)."""
    return _name("act_bwd_bias", FLOAT_TYPES[dtype], ACTIVATION_CODES[activation], FLOAT_TYPES[grad_dtype or dtype])


def softmax_xent_fwd(dtype: str, label_dtype: str) -> str:
    return _name("softmax_xent_fwd", FLOAT_TYPES[dtype], LABEL_TYPES[label_dtype])


def softmax_xent_bwd(dtype: str, label_dtype: str) -> str:
    return _name("softmax_xent_bwd", FLOAT_TYPES[dtype], LABEL_TYPES[label_dtype])


def accumulate_metrics(dtype: str, label_dtype: str) -> str:
    return _name("accumulate_metrics", FLOAT_TYPES[dtype], LABEL_TYPES[label_dtype])


def sgd_multi(dtype: str) -> str:
    return _name("sgd_multi", FLOAT_TYPES[dtype])


def adam_multi(dtype: str) -> str:
    return _name("adam_multi", FLOAT_TYPES[dtype])


def uniform(dtype: str) -> str:
    return _name("uniform", FLOAT_TYPES[dtype])


def normal(dtype: str) -> str:
    return _name("normal", FLOAT_TYPES[dtype])


def dropout_mask(dtype: str) -> str:
    return _name("dropout_mask", FLOAT_TYPES[dtype])


def dropout_apply(dtype: str) -> str:
    return _name("dropout_apply", FLOAT_TYPES[dtype])


CAST_VECTOR = 4  # elements per access of cast.cu's aligned path


def cast(source: str, target: str, vec: int = 1) -> str:
    return _name("cast", FLOAT_TYPES[source], FLOAT_TYPES[target], vec)


def amp_unscale(dtype: str) -> str:
    return _name("amp_unscale", FLOAT_TYPES[dtype])


def update_scale() -> str:
    return _name("update_scale", FLOAT_TYPES["float32"])  # the scale is float32, as PyTorch's


def advance_steps() -> str:
    return _name("advance_steps", STEP_LIST_MAX)


def write_words() -> str:
    return _name("write_words", REPLAY_WORDS)


def values_per_counter(kernel: str, dtype: str) -> int:
    """Random values one Philox call (one counter) yields in ``random.cu``: four
    32-bit words make 4 floats or halves, or 2 doubles (two words each); dropout
    masks always take 4 (one 24-bit draw per element)."""
    if kernel in ("dropout_mask", "dropout_apply"):
        return 4
    if dtype == "bfloat16":
        raise ValueError(f"random.cu has no {kernel} for bfloat16 (it draws float32 and casts)")
    if kernel == "normal" and dtype == "float16":
        return 4  # float16 normals draw float uniforms
    return 2 if dtype == "float64" else 4


def name_expressions(family: str) -> tuple[str, ...]:
    """Every instantiation of a family's templates, in a fixed order."""
    if family not in FAMILIES:
        raise KeyError(f"unknown kernel family {family!r}; expected one of {FAMILIES}")
    if family == "graph":
        return (write_words(),)
    if family == "cast":
        return tuple(cast(a, b, vec) for a, b in CAST_PAIRS for vec in (1, CAST_VECTOR))
    names: list[str] = []
    for dtype in FLOAT_TYPES:
        widths = vector_widths(dtype)
        if family == "activation":
            names += [bias_act_fwd(dtype, act, vec) for act in ACTIVATION_CODES for vec in widths]
            names += [act_bwd(dtype, act, vec) for act in ACTIVATION_CODES if act is not None for vec in widths]
            names += [act_bwd_bias(dtype, act) for act in ACTIVATION_CODES]
            if dtype in HALF_TYPES:
                names += [act_bwd_bias(dtype, act, "float32") for act in ACTIVATION_CODES]
        elif family == "softmax_xent":
            for label_dtype in LABEL_TYPES:
                names += [softmax_xent_fwd(dtype, label_dtype), softmax_xent_bwd(dtype, label_dtype)]
                names.append(accumulate_metrics(dtype, label_dtype))
        elif family == "optim":
            names += [sgd_multi(dtype), adam_multi(dtype)]
        elif family == "amp":
            names.append(amp_unscale(dtype))
            if dtype == "float32":
                names += [update_scale(), advance_steps()]
        elif dtype == "bfloat16":  # random bfloat16 values are drawn in float32 and cast
            names += [dropout_mask(dtype), dropout_apply(dtype)]
        else:
            names += [uniform(dtype), normal(dtype), dropout_mask(dtype), dropout_apply(dtype)]
    return tuple(names)


_C_TYPES = {ctype: dtype for dtype, ctype in FLOAT_TYPES.items()}


def dtype_of(name: str) -> str | None:
    """The storage dtype a kernel is instantiated for (its first template
    argument), or None for a kernel without one (``write_words<480>``)."""
    first = name[name.index("<") + 1 :].split(",")[0].rstrip(">").strip()
    return _C_TYPES.get(first)


def modules() -> dict[tuple[str, str | None], tuple[str, ...]]:
    """The modules the CUDA backend compiles, one per family and dtype, each with
    its instantiations: compiled side by side, a cold start waits only for the
    module it needs (float32's, in training) instead of every dtype's."""
    grouped: dict[tuple[str, str | None], list[str]] = {}
    for family in FAMILIES:
        for name in name_expressions(family):
            grouped.setdefault((family, dtype_of(name)), []).append(name)
    return {key: tuple(names) for key, names in grouped.items()}


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


def chunk_begins(sizes: list[int]) -> list[int]:
    """The first chunk of each tensor of a multi-tensor launch, and the total last."""
    begins = [0]
    for size in sizes:
        begins.append(begins[-1] + -(-size // MULTI_TENSOR_CHUNK))
    return begins


def bias_grad_grid(rows: int, cols: int, sm_count: int) -> tuple[int, int, int]:
    """(column tiles, row chunks, rows per chunk) of ``act_bwd_bias``: about one
    wave of resident blocks, but at least BIAS_ROWS_PER_BLOCK_MIN rows a block,
    so small batches take one chunk (no partial sums to combine) and big ones
    spread over the device."""
    if sm_count < 1:
        raise ValueError(f"sm_count must be positive, got {sm_count}")
    tiles = -(-cols // BIAS_TILE)
    if tiles > TICKETS:
        raise ValueError(f"act_bwd_bias takes at most {TICKETS * BIAS_TILE} columns, got {cols}")
    wanted = -(-sm_count * BLOCKS_PER_SM // tiles)  # its blocks have 256 threads, as BLOCK
    chunks = max(1, min(wanted, -(-rows // BIAS_ROWS_PER_BLOCK_MIN), 65535))
    per_chunk = max(1, -(-rows // chunks))
    return tiles, -(-rows // per_chunk) if rows else 1, per_chunk


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

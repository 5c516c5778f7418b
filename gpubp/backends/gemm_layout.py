"""How a row-major matrix product maps onto a column-major cuBLAS GEMM call.

gpubp's arrays are row-major (C order) and its matrix products are
C (m×n) = A (m×k) @ B (k×n), where A and B may be transposed or sliced views.
cuBLAS reads column-major matrices. A C-contiguous C is, read column-major,
Cᵀ (n×m) with leading dimension n, and Cᵀ = Bᵀ Aᵀ; so cuBLAS is asked for
Bᵀ·Aᵀ with B as its first operand and A as its second. Each operand is used
in place when its memory is row-major (then reading it column-major already
gives the transpose: op N) or column-major (op T) with a valid leading
dimension; anything else (negative or non-unit inner strides) is copied first.

Plain Python with no CuPy, so every layout is checked on the CPU against
NumPy (tests/backends/test_gemm_layout.py emulates the column-major call).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

OP_N = 0  # CUBLAS_OP_N
OP_T = 1  # CUBLAS_OP_T
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Operand:
    """How one input is handed to cuBLAS: its op, leading dimension, and
    whether it must first be copied to C order (then op N, ld = its columns)."""

    op: int
    ld: int
    copy: bool = False


@dataclass(frozen=True)
class GemmCall:
    """The arguments of ``cublasGemmEx(handle, transa, transb, m, n, k, α, A, lda,
    B, ldb, β, C, ldc)`` that compute the row-major ``out = a @ b``: cuBLAS's A
    is our b and its B is our a."""

    transa: int
    transb: int
    m: int
    n: int
    k: int
    lda: int
    ldb: int
    ldc: int
    a: Operand  # our left operand (cuBLAS's B)
    b: Operand  # our right operand (cuBLAS's A)


def operand(shape: tuple[int, int], strides: tuple[int, int], itemsize: int) -> Operand:
    """How a (rows, cols) array with byte ``strides`` is read as the column-major
    transpose cuBLAS needs: in place with op N when it is row-major, with op T
    when it is column-major, else from a C-order copy."""
    rows, cols = shape
    s0, s1 = strides
    if s0 % itemsize or s1 % itemsize:
        return _copied(cols)
    s0, s1 = s0 // itemsize, s1 // itemsize
    # A dimension of length 1 never advances, so its stride is free to be anything.
    if (s1 == 1 or cols == 1) and (rows == 1 or s0 >= max(cols, 1)):
        return Operand(OP_N, s0 if rows > 1 else max(cols, 1))
    if (s0 == 1 or rows == 1) and (cols == 1 or s1 >= max(rows, 1)):
        return Operand(OP_T, s1 if cols > 1 else max(rows, 1))
    return _copied(cols)


def _copied(cols: int) -> Operand:
    return Operand(OP_N, max(cols, 1), copy=True)


@functools.lru_cache(maxsize=4096)  # a training step asks for the same few layouts every time
def gemm_call(
    a_shape: tuple[int, int],
    a_strides: tuple[int, int],
    b_shape: tuple[int, int],
    b_strides: tuple[int, int],
    itemsize: int,
) -> GemmCall:
    """The cuBLAS call for ``a @ b`` into a C-contiguous (m, n) output.

    Raises ValueError when the inner dimensions differ or a size does not fit
    cuBLAS's 32-bit integers."""
    m, k = a_shape
    k2, n = b_shape
    if k != k2:
        raise ValueError(f"matmul: shapes {a_shape} and {b_shape} are not aligned ({k} != {k2})")
    a = operand(a_shape, a_strides, itemsize)
    b = operand(b_shape, b_strides, itemsize)
    call = GemmCall(transa=b.op, transb=a.op, m=n, n=m, k=k, lda=b.ld, ldb=a.ld, ldc=max(n, 1), a=a, b=b)
    if max(m, n, k, call.lda, call.ldb, call.ldc) > INT_MAX:
        raise ValueError(f"matmul: shapes {a_shape} @ {b_shape} exceed cuBLAS's 32-bit sizes")
    return call

"""The row-major → column-major mapping of the cuBLAS binding, checked on the CPU:
the (op, m, n, k, ld) it computes, read back from raw memory the way cuBLAS
reads it, must give ``a @ b`` for every layout the engine produces."""

from __future__ import annotations

import numpy as np
import pytest

from gpubp.backends import gemm_layout
from gpubp.backends.gemm_layout import OP_N, OP_T


def _flat(view: np.ndarray) -> tuple[np.ndarray, int]:
    """The memory under a view, as a flat array, and the view's offset in elements."""
    base = view
    while base.base is not None:
        base = base.base
    flat = base.reshape(-1)
    offset = view.__array_interface__["data"][0] - flat.__array_interface__["data"][0]
    assert offset % view.itemsize == 0
    return flat, offset // view.itemsize


def _column_major(flat: np.ndarray, offset: int, rows: int, cols: int, ld: int) -> np.ndarray:
    """The rows × cols column-major matrix at ``offset`` with leading dimension ld."""
    out = np.empty((rows, cols), dtype=flat.dtype)
    for j in range(cols):
        out[:, j] = flat[offset + j * ld : offset + j * ld + rows]
    return out


def emulate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What cuBLAS computes from the arguments gemm_call gives for a @ b."""
    call = gemm_layout.gemm_call(a.shape, a.strides, b.shape, b.strides, a.itemsize)
    if call.a.copy:
        a = np.ascontiguousarray(a)
    if call.b.copy:
        b = np.ascontiguousarray(b)
    m, n, k = call.m, call.n, call.k
    # cuBLAS's A is our b: stored m × k (op N) or k × m (op T).
    flat_b, off_b = _flat(b)
    stored = _column_major(flat_b, off_b, *((m, k) if call.transa == OP_N else (k, m)), call.lda)
    op_a = stored if call.transa == OP_N else stored.T
    flat_a, off_a = _flat(a)
    stored = _column_major(flat_a, off_a, *((k, n) if call.transb == OP_N else (n, k)), call.ldb)
    op_b = stored if call.transb == OP_N else stored.T
    assert call.lda >= max(1, m if call.transa == OP_N else k)
    assert call.ldb >= max(1, k if call.transb == OP_N else n)
    assert call.ldc == max(1, m)
    return (op_a @ op_b).T  # the column-major m × n result, read row-major


def _arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape)

    wide = r(7, 12)
    return {
        "contiguous": (r(5, 4), r(4, 3)),
        "x @ w.T (Linear forward)": (r(6, 4), r(3, 4).T),
        "delta.T @ x (weight gradient)": (r(6, 3).T, r(6, 4)),
        "delta @ w (input gradient)": (r(6, 3), r(3, 4)),
        "both transposed": (r(4, 5).T, r(3, 4).T),
        "column slice (ld > cols)": (wide[:, 2:6], r(4, 3)),
        "row slice of a transposed view": (r(9, 5).T[1:4], r(9, 2)),
        "k = 1": (r(5, 1), r(1, 3)),
        "row vector times matrix": (r(1, 4), r(4, 3)),
        "matrix times column": (r(5, 4), r(4, 1)),
        "column from a wide matrix": (r(5, 4), wide[:4, 3:4]),
        "every other row (ld = 2 rows)": (r(10, 4)[::2], r(4, 3)),
        "every other column (copied)": (r(5, 8)[:, ::2], r(4, 3)),
        "reversed columns (copied)": (r(5, 4)[:, ::-1], r(4, 3)),
        "single element": (r(1, 1), r(1, 1)),
    }


@pytest.mark.parametrize("name", list(_arrays()))
def test_gemm_call_reproduces_matmul(name: str) -> None:
    a, b = _arrays()[name]
    np.testing.assert_allclose(emulate(a, b), a @ b, rtol=1e-12, atol=1e-12)


def test_contiguous_operands_are_used_in_place_with_the_right_ops() -> None:
    x, w = np.ones((128, 784)), np.ones((256, 784))
    forward = gemm_layout.gemm_call(x.shape, x.strides, w.T.shape, w.T.strides, 8)
    # out = x wᵀ is read by cuBLAS as outᵀ = w xᵀ: w's memory read column-major needs op T.
    assert (forward.transa, forward.transb, forward.m, forward.n, forward.k) == (OP_T, OP_N, 256, 128, 784)
    assert (forward.lda, forward.ldb, forward.ldc) == (784, 784, 256)
    assert not forward.a.copy and not forward.b.copy


def test_strided_operands_are_copied_and_misfits_rejected() -> None:
    every_other_row = np.ones((6, 4))[::2]  # still row-major, with twice the leading dimension
    call = gemm_layout.gemm_call(every_other_row.shape, every_other_row.strides, (4, 3), (24, 8), 8)
    assert not call.a.copy and call.ldb == 8
    every_other_column = np.ones((3, 8))[:, ::2]
    call = gemm_layout.gemm_call(every_other_column.shape, every_other_column.strides, (4, 3), (24, 8), 8)
    assert call.a.copy and not call.b.copy
    broadcast = np.broadcast_to(np.ones(4), (5, 4))  # stride 0 over the rows
    assert gemm_layout.operand(broadcast.shape, broadcast.strides, 8).copy
    with pytest.raises(ValueError, match=r"not aligned \(4 != 5\)"):
        gemm_layout.gemm_call((3, 4), (32, 8), (5, 2), (16, 8), 8)
    with pytest.raises(ValueError, match="32-bit"):
        gemm_layout.gemm_call((2**31, 1), (8, 8), (1, 1), (8, 8), 8)

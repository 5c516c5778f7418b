"""bfloat16 inputs of an op with no bfloat16 path of its own: computed in float32, rounded once.

A GPU's bfloat16 arrays are raw uint16 words (CuPy has no bfloat16), on which
NumPy-style code would do integer arithmetic; ml_dtypes' CPU bfloat16 works in
NumPy, but rounds every intermediate of a composite op (softmax's exp, sum and
divide). So an op whose class does not set ``handles_bfloat16`` gets float32
copies of its bfloat16 inputs, and each of its float32 results is rounded once
to bfloat16: the same on both devices, and what PyTorch's bfloat16 ops do
(compute in float, round the result). Backward does the same: the gradient
arrives in bfloat16 and is widened, and the gradients of bfloat16 inputs are
rounded back. The ops that handle bfloat16 themselves (casts, Linear, 2-D
MatMul, the saved-output activations, dropout, views) run kernels that load
16 bits, compute in float32 and store 16 bits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpubp import dtypes

if TYPE_CHECKING:
    from gpubp.tensor import Function

_BFLOAT16 = (dtypes.bfloat16, dtypes.RAW_BFLOAT16)


def forward(fn: Function, arrays: list[Any]) -> Any:
    """``fn.forward`` on float32 copies of the bfloat16 arrays; float32 results
    rounded to bfloat16. Marks ``fn`` so that ``backward`` below runs its backward."""
    backend = fn.backend
    widened = tuple(getattr(a, "dtype", None) in _BFLOAT16 for a in arrays)
    wide = [backend.astype(a, dtypes.float32) if w else a for a, w in zip(arrays, widened)]
    fn.bfloat16_inputs = widened
    return _narrowed(backend, fn.forward(*wide))


def backward(fn: Function, g: Any) -> Any:
    """``fn.backward`` for an op ``forward`` ran: the gradient widened, the
    gradients of its bfloat16 inputs rounded back to bfloat16."""
    backend = fn.backend
    if getattr(g, "dtype", None) in _BFLOAT16:
        g = backend.astype(g, dtypes.float32)
    grads = fn.backward(g)
    single = type(grads) is not tuple
    grads = (grads,) if single else grads
    rounded = tuple(
        backend.astype(grad, dtypes.bfloat16) if w and grad is not None and grad.dtype == dtypes.float32 else grad
        for grad, w in zip(grads, fn.bfloat16_inputs)
    )
    return rounded[0] if single else rounded


def _narrowed(backend: Any, out: Any) -> Any:
    if isinstance(out, tuple):
        return tuple(_narrowed(backend, o) for o in out)
    if getattr(out, "dtype", None) == dtypes.float32:
        return backend.astype(backend.xp.asarray(out), dtypes.bfloat16)
    return out

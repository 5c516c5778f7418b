"""gpubp: a small tensor autodiff engine on NumPy (CPU) and CuPy (NVIDIA GPU).

>>> import gpubp as gp
>>> x = gp.tensor([[1.0, 2.0]], requires_grad=True)
>>> gp.sigmoid(x).sum().backward()
"""

from gpubp import amp, cuda, data, distributed, nn, optim, viz
from gpubp.autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled
from gpubp.creation import arange, full, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from gpubp.dtypes import bfloat16, bool_, float16, float32, float64, int32, int64, uint8
from gpubp.grad_mode import enable_grad, is_grad_enabled, no_grad
from gpubp.gradcheck import GradcheckError, GradcheckResult, gradcheck
from gpubp.interop import from_dlpack
from gpubp.jit import CaptureError, jit
from gpubp.ops.activation import gelu, leaky_relu, log_softmax, relu, sigmoid, softmax, tanh
from gpubp.ops.convert import cast, move
from gpubp.ops.dropout import dropout
from gpubp.ops.elementwise import abs, exp, log, sqrt  # noqa: A004 (PyTorch's names)
from gpubp.ops.join import cat, stack
from gpubp.ops.linear import linear
from gpubp.ops.loss import binary_cross_entropy_with_logits, cross_entropy, mse_loss, nll_loss
from gpubp.ops.matmul import matmul
from gpubp.ops.operands import promote_types, result_type
from gpubp.ops.reduce import argmax, argmin, max, mean, min, std, sum, var  # noqa: A004 (PyTorch's names)
from gpubp.ops.select import clamp, maximum, minimum, where
from gpubp.ops.shape import clone, flatten, permute, reshape, squeeze, t, transpose, unsqueeze
from gpubp.random import get_rng_state, manual_seed, set_rng_state
from gpubp.serialization import SerializationError, load, save
from gpubp.tensor import Function, Tensor

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "Function",
    "tensor",
    "zeros",
    "ones",
    "full",
    "zeros_like",
    "ones_like",
    "randn",
    "rand",
    "arange",
    "float16",
    "bfloat16",
    "autocast",
    "is_autocast_enabled",
    "get_autocast_dtype",
    "float32",
    "float64",
    "int32",
    "int64",
    "uint8",
    "bool_",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "gradcheck",
    "jit",
    "CaptureError",
    "GradcheckError",
    "GradcheckResult",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "gelu",
    "softmax",
    "log_softmax",
    "exp",
    "log",
    "sqrt",
    "abs",
    "sum",
    "mean",
    "max",
    "min",
    "std",
    "var",
    "argmax",
    "argmin",
    "matmul",
    "reshape",
    "flatten",
    "squeeze",
    "unsqueeze",
    "permute",
    "transpose",
    "t",
    "clone",
    "cat",
    "stack",
    "where",
    "maximum",
    "minimum",
    "clamp",
    "result_type",
    "promote_types",
    "from_dlpack",
    "save",
    "load",
    "SerializationError",
    "nll_loss",
    "linear",
    "dropout",
    "cross_entropy",
    "mse_loss",
    "binary_cross_entropy_with_logits",
    "cast",
    "move",
    "manual_seed",
    "get_rng_state",
    "set_rng_state",
    "cuda",
    "distributed",
    "nn",
    "data",
    "optim",
    "viz",
    "amp",
]

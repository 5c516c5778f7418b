"""The GPU backend: CuPy arrays, cuBLAS GEMMs, and our CUDA kernels for the fused steps.

Everything not overridden here runs the generic code of ``Backend`` over
``xp = cupy``. The overrides launch the kernels of ``kernels/*.cu`` (compiled
by NVRTC through ``cupy.RawModule`` once per process and device, and cached on
disk by CuPy under ``CUPY_CACHE_DIR``). Each override computes what the generic
method computes (its "NumPy twin", the oracle of the GPU tests) and falls back
to it for inputs the kernels do not take (integer dtypes, odd shapes).

No method here reads a device value on the host: a training step only queues
work. Out-of-range cross-entropy labels are flagged on the device and reported
when the host next synchronises anyway (``.item()``, ``.numpy()``,
``gp.cuda.synchronize()``). RawKernel ignores strides, so arrays are made
C-contiguous first (a device copy, only where they are not already).

Imported only by ``gpubp.cuda.get_backend``, after checking that CuPy and a
device are there.
"""

from __future__ import annotations

import secrets
from typing import Any

import cupy
import numpy as np

from gpubp.backends import kernel_catalog as catalog
from gpubp.backends import philox
from gpubp.backends.base import Backend

_FLOAT_NAMES = {np.dtype(np.float16): "float16", np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}
_LABEL_NAMES = {np.dtype(np.int32): "int32", np.dtype(np.int64): "int64"}
_NULL = np.uint64(0)  # a null pointer argument (CuPy passes it by value, 8 bytes)
_U64 = (1 << 64) - 1


def _acc(dtype: np.dtype) -> type:
    """The kernels' arithmetic type for a storage dtype: scalars are passed in it."""
    return np.float64 if dtype == np.float64 else np.float32


class CupyBackend(Backend):
    """Runs ops on CUDA device ``index`` with CuPy; fused steps use our kernels."""

    name = "cuda"
    xp = cupy
    array_type = cupy.ndarray
    needs_activation = True  # CuPy refuses arrays of another device than the current one

    def __init__(self, index: int) -> None:
        self.index = index
        self.device = f"cuda:{index}"
        self._cuda_device = cupy.cuda.Device(index)
        with self._cuda_device:
            self.sm_count = int(
                cupy.cuda.runtime.deviceGetAttribute(cupy.cuda.runtime.cudaDevAttrMultiProcessorCount, index)
            )
            # {flag, first bad label, classes}, written only by a kernel that met a bad label.
            self._label_error = cupy.zeros(3, dtype=cupy.uint64)
        self._labels_pending = False
        self._modules: dict[str, cupy.RawModule] = {}
        self._kernels: dict[str, cupy.RawKernel] = {}
        self._seed = secrets.randbits(64)
        self._offset = 0
        self._empty = cupy.empty  # every kernel output comes from here (tests poison it with NaN)
        from gpubp import cuda

        cuda.apply_tf32()

    # -- device, transfers, synchronisation ---------------------------------
    def activate(self) -> None:
        """Makes this device CUDA's current one (CuPy allocates and launches there)."""
        if cupy.cuda.runtime.getDevice() != self.index:
            cupy.cuda.runtime.setDevice(self.index)

    def from_host(self, array: np.ndarray) -> Any:
        self.activate()
        return cupy.asarray(np.ascontiguousarray(array))

    def to_host(self, array: Any) -> np.ndarray:
        out = cupy.asnumpy(array)  # waits for the queued work: a point to report label errors
        self._check_label_errors()
        return out

    def item(self, array: Any) -> Any:
        value = array.item()
        self._check_label_errors()
        return value

    def synchronize(self) -> None:
        self._cuda_device.synchronize()
        self._check_label_errors()

    def receive(self, array: Any, source: Backend) -> Any:
        """Device to device without the host; ordered after the source's queued work by an event."""
        if not isinstance(source, CupyBackend):
            return super().receive(array, source)
        with source._cuda_device:
            array = cupy.ascontiguousarray(array)
            ready = cupy.cuda.Event(block=False, disable_timing=True)
            ready.record()
        self.activate()
        cupy.cuda.get_current_stream().wait_event(ready)
        out = cupy.empty(array.shape, dtype=array.dtype)
        if array.nbytes:
            out.data.copy_from_device_async(array.data, array.nbytes)
            # The source's memory may go back to its pool when this returns: work
            # queued there later must wait for the copy to have read it.
            copied = cupy.cuda.Event(block=False, disable_timing=True)
            copied.record()
            with source._cuda_device:
                cupy.cuda.get_current_stream().wait_event(copied)
        return out

    def check_labels(self, labels: Any, classes: int) -> None:
        """Nothing on the host: comparing labels here would copy them back. The
        cross-entropy kernel flags a bad label on the device instead."""

    def _check_label_errors(self) -> None:
        if not self._labels_pending:
            return
        self._labels_pending = False
        flag, label, classes = (int(v) for v in self._label_error.get())
        if flag:
            self._label_error.fill(0)
            label = label - (1 << 64) if label >= 1 << 63 else label
            raise IndexError(
                f"cross_entropy: label {label} is out of range for {classes} classes "
                f"(labels must be in [0, {classes - 1}]); found on {self.device} by the loss kernel, "
                "so it is reported at this synchronisation and the loss is NaN"
            )

    # -- kernels ---------------------------------------------------------------
    def _kernel(self, family: str, name: str) -> Any:
        kernel = self._kernels.get(name)
        if kernel is None:
            module = self._modules.get(family)
            if module is None:
                module = cupy.RawModule(
                    code=catalog.kernel_source(family),
                    options=catalog.COMPILE_OPTIONS,
                    name_expressions=catalog.name_expressions(family),
                )
                self._modules[family] = module
            with self._cuda_device:
                kernel = self._kernels[name] = module.get_function(name)
        return kernel

    def _launch(self, family: str, name: str, work_items: int, args: tuple) -> None:
        kernel = self._kernel(family, name)
        grid = catalog.grid_size(work_items, self.sm_count)
        kernel((grid,), (catalog.BLOCK,), args)

    @staticmethod
    def _contiguous(array: Any) -> Any:
        return array if array.flags.c_contiguous else cupy.ascontiguousarray(array)

    # -- activations -----------------------------------------------------------
    def _fused_forward(self, x: Any, bias: Any, activation: str | None, out: Any) -> Any:
        """act(x + bias) by ``bias_act_fwd``, or None when the generic path must do it."""
        dtype = _FLOAT_NAMES.get(x.dtype)
        if dtype is None or (bias is not None and bias.dtype != x.dtype):
            return None
        if out is not None and (out.dtype != x.dtype or out.shape != x.shape or not out.flags.c_contiguous):
            return None
        self.activate()
        x = self._contiguous(x)
        y = self._empty(x.shape, x.dtype) if out is None else out
        if x.size == 0:
            return y
        if bias is None:
            cols, pointers, bias_arg = 1, [x.data.ptr, y.data.ptr], _NULL
            vec = catalog.pick_vector_width(dtype, pointers)
        else:
            bias_arg = self._contiguous(bias)
            cols = x.shape[-1]
            vec = catalog.pick_vector_width(dtype, [x.data.ptr, y.data.ptr, bias_arg.data.ptr], cols)
        name = catalog.bias_act_fwd(dtype, activation, vec)
        self._launch("activation", name, -(-x.size // vec), (x, bias_arg, y, np.int64(x.size), np.int64(cols)))
        return y

    def _fused_backward(self, g: Any, y: Any, activation: str) -> Any:
        """g ⊙ act′ from the saved output y by ``act_bwd``, or None for the generic path."""
        dtype = _FLOAT_NAMES.get(y.dtype)
        if dtype is None or g.dtype != y.dtype or g.shape != y.shape:
            return None
        self.activate()
        g = self._contiguous(g)  # e.g. the zero-stride gradient of a sum
        y = self._contiguous(y)
        dz = self._empty(y.shape, y.dtype)
        if y.size:
            vec = catalog.pick_vector_width(dtype, [g.data.ptr, y.data.ptr, dz.data.ptr])
            name = catalog.act_bwd(dtype, activation, vec)
            self._launch("activation", name, -(-y.size // vec), (g, y, dz, np.int64(y.size)))
        return dz

    def sigmoid(self, z: Any, out: Any = None) -> Any:
        y = self._fused_forward(z, None, "sigmoid", out)
        return super().sigmoid(z, out=out) if y is None else y

    def tanh(self, z: Any, out: Any = None) -> Any:
        y = self._fused_forward(z, None, "tanh", out)
        return super().tanh(z, out=out) if y is None else y

    def relu(self, z: Any, out: Any = None) -> Any:
        y = self._fused_forward(z, None, "relu", out)
        return super().relu(z, out=out) if y is None else y

    def sigmoid_backward(self, g: Any, y: Any) -> Any:
        dz = self._fused_backward(g, y, "sigmoid")
        return super().sigmoid_backward(g, y) if dz is None else dz

    def tanh_backward(self, g: Any, y: Any) -> Any:
        dz = self._fused_backward(g, y, "tanh")
        return super().tanh_backward(g, y) if dz is None else dz

    def relu_backward(self, g: Any, y: Any) -> Any:
        dz = self._fused_backward(g, y, "relu")
        return super().relu_backward(g, y) if dz is None else dz

    def bias_activation(self, z: Any, bias: Any, activation: str | None) -> Any:
        if bias is None and activation is None:
            return z
        if z.ndim == 2 and (bias is None or bias.shape == (z.shape[1],)):
            y = self._fused_forward(z, bias, activation, out=z if z.flags.c_contiguous else None)
            if y is not None:
                return y
        return super().bias_activation(z, bias, activation)

    # -- softmax cross-entropy ---------------------------------------------------
    @staticmethod
    def _labels(labels: Any) -> Any:
        if labels.dtype not in _LABEL_NAMES:
            labels = labels.astype(cupy.int64)
        return CupyBackend._contiguous(labels)

    def softmax_cross_entropy(self, logits: Any, labels: Any) -> tuple[Any, Any]:
        dtype = _FLOAT_NAMES.get(logits.dtype)
        if dtype is None or logits.ndim != 2 or labels.shape != logits.shape[:1] or logits.shape[1] >= 2**31:
            return super().softmax_cross_entropy(logits, labels)
        self.activate()
        logits = self._contiguous(logits)
        labels = self._labels(labels)
        rows, classes = logits.shape
        probs = self._empty(logits.shape, logits.dtype)
        row_loss = self._empty((rows,), _acc(logits.dtype))
        if rows and classes:
            name = catalog.softmax_xent_fwd(dtype, _LABEL_NAMES[labels.dtype])
            args = (logits, labels, probs, row_loss, self._label_error, np.int64(rows), np.int32(classes))
            self._launch("softmax_xent", name, rows * catalog.WARP, args)
            self._labels_pending = True
        elif rows:
            row_loss.fill(np.nan)  # no classes: every label is out of range
        loss = row_loss.mean()
        return (loss if loss.dtype == logits.dtype else loss.astype(logits.dtype)), probs

    def softmax_cross_entropy_backward(self, probs: Any, labels: Any, g: Any) -> Any:
        dtype = _FLOAT_NAMES.get(probs.dtype)
        if dtype is None or probs.ndim != 2 or g.size != 1 or g.dtype != probs.dtype:
            return super().softmax_cross_entropy_backward(probs, labels, g)
        self.activate()
        probs = self._contiguous(probs)
        labels = self._labels(labels)
        g = self._contiguous(g)
        grad = self._empty(probs.shape, probs.dtype)
        if probs.size:
            rows, classes = probs.shape
            name = catalog.softmax_xent_bwd(dtype, _LABEL_NAMES[labels.dtype])
            self._launch("softmax_xent", name, probs.size, (probs, labels, g, grad, np.int64(rows), np.int32(classes)))
        return grad

    # -- random numbers: Philox, state (seed, offset) ------------------------------
    def manual_seed(self, seed: int) -> None:
        self._seed = int(seed) & _U64
        self._offset = 0

    def get_rng_state(self) -> dict:
        return {"bit_generator": "philox4x32-10", "seed": self._seed, "offset": self._offset}

    def set_rng_state(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("bit_generator") != "philox4x32-10":
            raise ValueError(f"{self.device}: expected a state from get_rng_state('{self.device}'), got {state!r}")
        seed, offset = state.get("seed"), state.get("offset")
        if not all(isinstance(v, int) and 0 <= v <= _U64 for v in (seed, offset)):
            raise ValueError(f"{self.device}: seed and offset must be integers in [0, 2**64), got {state!r}")
        self._seed, self._offset = seed, offset

    def _next_offset(self) -> np.uint64:
        offset = self._offset
        self._offset = (offset + 1) & _U64
        return np.uint64(offset)

    def _random(self, kernel: str, shape: tuple[int, ...], dtype: np.dtype, extra: tuple = ()) -> Any:
        self.activate()
        name = _FLOAT_NAMES[dtype]
        out = self._empty(shape, dtype)
        offset = self._next_offset()  # consumed even when empty, like every draw
        if out.size:
            counters = -(-out.size // catalog.values_per_counter(kernel, name))
            args = (out, np.int64(out.size), np.uint64(self._seed), offset, *extra)
            self._launch("random", getattr(catalog, kernel)(name), counters, args)
        return out

    def standard_normal(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        if dtype not in _FLOAT_NAMES:
            return self._random("normal", shape, np.dtype(np.float64)).astype(dtype)
        return self._random("normal", shape, dtype)

    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        compute = dtype if dtype in _FLOAT_NAMES else np.dtype(np.float64)
        acc = _acc(compute)
        out = self._random("uniform", shape, compute, (acc(low), acc(high)))
        return out if compute == dtype else out.astype(dtype)

    def dropout_mask(self, shape: tuple[int, ...], p: float, dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        if p >= 1:
            self.activate()
            return cupy.zeros(shape, dtype=dtype)
        if dtype not in _FLOAT_NAMES:
            return super().dropout_mask(shape, p, dtype)
        # The scale rounded to the storage dtype first, as the twin's dtype.type(1 / (1 - p)).
        scale = _acc(dtype)(dtype.type(1.0 / (1.0 - p)))
        return self._random("dropout_mask", shape, dtype, (np.uint32(philox.dropout_threshold(p)), scale))

    # -- optimizer updates ----------------------------------------------------------
    def _update_ready(self, param: Any, grad: Any, *buffers: Any) -> bool:
        """Whether the fused update kernel takes these arrays (the grad may be strided:
        it is made contiguous; the parameter and buffers are written in place)."""
        return (
            param.dtype in _FLOAT_NAMES
            and all(a.flags.c_contiguous for a in (param, *buffers))
            and all(o.dtype == param.dtype and o.shape == param.shape for o in (grad, *buffers))
        )

    def _update_launch(self, param: Any, grad: Any, buffers: tuple) -> tuple[Any, str, Any, int]:
        """What both update kernels' launches need: this device current, a contiguous
        gradient, the dtype's kernel name, its scalar type and the vector width."""
        self.activate()
        grad = self._contiguous(grad)
        dtype = _FLOAT_NAMES[param.dtype]
        vec = catalog.pick_vector_width(dtype, [a.data.ptr for a in (param, grad, *buffers)])
        return grad, dtype, _acc(param.dtype), vec

    def sgd_update(self, param: Any, grad: Any, momentum_buffer: Any, **hyper: Any) -> None:
        """Backend.sgd_update (same arguments) as one kernel launch."""
        momentum = hyper["momentum"]
        buffers = (momentum_buffer,) if momentum else ()
        if not self._update_ready(param, grad, *buffers):
            super().sgd_update(param, grad, momentum_buffer, **hyper)
            return
        lr, dampening, weight_decay = hyper["lr"], hyper["dampening"], hyper["weight_decay"]
        nesterov, first_step = hyper["nesterov"], hyper["first_step"]
        if param.size == 0:
            return
        grad, dtype, acc, vec = self._update_launch(param, grad, buffers)
        args = (
            param,
            grad,
            momentum_buffer if momentum else _NULL,
            np.int64(param.size),
            acc(lr),
            acc(momentum),
            acc(1 - dampening),
            acc(weight_decay),
            np.int32(bool(nesterov)),
            np.int32(bool(first_step)),
        )
        self._launch("optim", catalog.sgd_update(dtype, vec), -(-param.size // vec), args)

    def adam_update(self, param: Any, grad: Any, exp_avg: Any, exp_avg_sq: Any, **hyper: Any) -> None:
        """Backend.adam_update (same arguments) as one kernel launch."""
        buffers = (exp_avg, exp_avg_sq)
        if not self._update_ready(param, grad, *buffers):
            super().adam_update(param, grad, exp_avg, exp_avg_sq, **hyper)
            return
        step, lr, eps = hyper["step"], hyper["lr"], hyper["eps"]
        beta1, beta2 = hyper["beta1"], hyper["beta2"]
        weight_decay, decoupled = hyper["weight_decay"], hyper["decoupled"]
        if param.size == 0:
            return
        grad, dtype, acc, vec = self._update_launch(param, grad, buffers)
        # Host scalars only: the step count lives in Python, never on the device.
        step_size = lr / (1 - beta1**step)
        root_correction = (1 - beta2**step) ** 0.5
        args = (
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            np.int64(param.size),
            acc(beta1),
            acc(beta2),
            acc(1 - beta1),
            acc(1 - beta2),
            acc(eps),
            acc(weight_decay),
            np.int32(bool(decoupled)),
            acc(1 - lr * weight_decay),
            acc(step_size),
            acc(root_correction),
        )
        self._launch("optim", catalog.adam_update(dtype, vec), -(-param.size // vec), args)

"""The GPU backend: CuPy arrays, our cuBLAS binding for GEMMs, and our CUDA kernels for the fused steps.

Everything not overridden here runs the generic code of ``Backend`` over
``xp = cupy``. The overrides launch the kernels of ``kernels/*.cu``, compiled
by NVRTC through ``cupy.RawModule`` and cached on disk by CuPy under
``CUPY_CACHE_DIR``. Each kernel family is compiled once per dtype, all of them
in background threads from the moment the backend is made (NVRTC runs outside
the GIL), so a first epoch waits for at most the slowest of them. Each override
computes what the generic method computes (its "NumPy twin", the oracle of the
GPU tests) and falls back to it for inputs the kernels do not take (integer
dtypes, odd shapes).

No method here reads a device value on the host: a training step only queues
work. Out-of-range cross-entropy labels are flagged on the device and reported
when the host next synchronises anyway (``.item()``, ``.numpy()``,
``gp.cuda.synchronize()``). RawKernel ignores strides, so arrays are made
C-contiguous first (a device copy, only where they are not already).

Inside a ``gp.jit`` capture (``gpubp.capture.current``) nothing that changes
from step to step is passed by value: random-number offsets and optimizer
hyper-parameters become replay values the host rewrites before each replay.
gpubp queues a device's work on one stream (the current one; graphs replay on
it too), which is what lets kernels share the device-side tickets below.

Imported only by ``gpubp.cuda.get_backend``, after checking that CuPy and a
device are there.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import cupy
import numpy as np

from gpubp import capture, dtypes
from gpubp import cuda as gp_cuda
from gpubp.backends import kernel_catalog as catalog
from gpubp.backends import philox
from gpubp.backends.base import Backend
from gpubp.backends.cublas import GEMM_DTYPES, Cublas
from gpubp.backends.raw_bfloat16 import RawBfloat16Storage

# Storage dtype -> the kernels' dtype name; bfloat16 is stored as raw uint16 words.
_FLOAT_NAMES = {
    np.dtype(np.float16): "float16",
    dtypes.RAW_BFLOAT16: "bfloat16",
    np.dtype(np.float32): "float32",
    np.dtype(np.float64): "float64",
}
_STORAGE = {dtypes.bfloat16: dtypes.RAW_BFLOAT16}
_HALF_CASTS = {("float32", "float16"), ("float16", "float32")}
_LABEL_NAMES = {np.dtype(np.int32): "int32", np.dtype(np.int64): "int64"}
_NULL = np.uint64(0)  # a null pointer argument (CuPy passes it by value, 8 bytes)
_U64 = (1 << 64) - 1
_SGD_SCALARS = ("lr", "momentum", "keep", "weight_decay", "nesterov", "first_step")


class _DeviceOutOfMemory(gp_cuda.OutOfMemoryError, cupy.cuda.memory.OutOfMemoryError):
    def __init__(self, message: str) -> None:
        MemoryError.__init__(self, message)  # CuPy's __init__ wants (size, total): the message is ours


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB ({nbytes:,} bytes)"


def out_of_memory(size: int) -> gp_cuda.OutOfMemoryError:
    """gpubp's error for a device allocation of ``size`` bytes that did not fit
    (CuPy's pool has already freed its cached blocks and tried again)."""
    device = cupy.cuda.runtime.getDevice()
    free, total = cupy.cuda.runtime.memGetInfo()
    pool = cupy.get_default_memory_pool()
    return _DeviceOutOfMemory(
        f"cuda:{device} is out of memory: asked for {_gib(size)}, and the device has {_gib(free)} free of "
        f"{_gib(total)} ({_gib(pool.used_bytes())} of it in use by CuPy's memory pool in this process)"
    )


def _install_allocator() -> None:
    """Puts gpubp's error on out-of-memory into CuPy's default allocator (once per
    process, and only while CuPy's default pool is the allocator, so a user's own
    allocator is left alone)."""
    pool = cupy.get_default_memory_pool()
    current = cupy.cuda.get_allocator()
    if getattr(current, "__self__", None) is not pool:
        return
    malloc = pool.malloc

    def allocate(size: int) -> Any:
        try:
            return malloc(size)
        except cupy.cuda.memory.OutOfMemoryError:
            raise out_of_memory(size) from None

    cupy.cuda.set_allocator(allocate)


def _acc(dtype: np.dtype) -> type:
    """The kernels' arithmetic type for a storage dtype: scalars are passed in it."""
    return np.float64 if dtype == np.float64 else np.float32


def _sgd_scalars(h: dict) -> list[float]:
    """optim.cu's per-tensor SGD scalars, from sgd_update's keywords (first_step None:
    the kernel decides it from the tensor's device step count)."""
    row = [h["lr"], h["momentum"], 1 - h["dampening"], h["weight_decay"], bool(h["nesterov"]), bool(h["first_step"])]
    return [float(v) for v in row] + [0.0] * (catalog.MULTI_TENSOR_SCALARS - len(row))


def _adam_scalars(h: dict) -> list[float]:
    """optim.cu's per-tensor Adam scalars, from adam_update's keywords: the same
    host arithmetic as the NumPy backend's C kernel call. Step None (a device step
    count): the kernel works out the bias corrections, from lr in their first slot."""
    step, lr, beta1, beta2 = h["step"], float(h["lr"]), float(h["beta1"]), float(h["beta2"])
    weight_decay = float(h["weight_decay"])
    corrections = [lr, 0.0] if step is None else [lr / (1 - beta1**step), (1 - beta2**step) ** 0.5]
    return [
        beta1,
        beta2,
        1 - beta1,
        1 - beta2,
        float(h["eps"]),
        weight_decay,
        float(bool(h["decoupled"])),
        1 - lr * weight_decay,
        *corrections,
    ]


class _Draw:
    """What dropout's backward needs to draw the forward's mask again (never stored)."""

    __slots__ = ("seed", "offset", "replayed", "threshold", "scale")

    def __init__(self, seed: int, offset: int, replayed: int, threshold: int, scale: float) -> None:
        self.seed, self.offset, self.replayed = seed, offset, replayed
        self.threshold, self.scale = threshold, scale


class CupyBackend(RawBfloat16Storage, Backend):
    """Runs ops on CUDA device ``index`` with CuPy; GEMMs and fused steps use our code."""

    name = "cuda"
    xp = cupy
    array_type = cupy.ndarray
    needs_activation = True  # CuPy refuses arrays of another device than the current one
    supports_graphs = True

    def __init__(self, index: int) -> None:
        self.index = index
        self.device = f"cuda:{index}"
        self._cuda_device = cupy.cuda.Device(index)
        with self._cuda_device:
            runtime = cupy.cuda.runtime
            self.sm_count = int(runtime.deviceGetAttribute(runtime.cudaDevAttrMultiProcessorCount, index))
            self.compute_capability = int(self._cuda_device.compute_capability)
            # {flag, first bad label, classes}, written only by a kernel that met a bad label.
            self._label_error = cupy.zeros(3, dtype=cupy.uint64)
            # Last-block tickets (activation.cu, softmax_xent.cu): 0 between launches.
            tickets = cupy.zeros(catalog.TICKETS + 1, dtype=cupy.uint32)
            self._bias_tickets, self._loss_ticket = tickets[: catalog.TICKETS], tickets[catalog.TICKETS :]
        self._labels_pending = False
        self._modules: dict[tuple[str, str | None], Future] = {}
        self._kernels: dict[str, Any] = {}
        self._cublas: Cublas | None = None
        self._seed = secrets.randbits(64)
        self._offset = 0
        self._table = np.zeros(catalog.TABLE_WORDS, dtype=np.uint64)  # optim.cu's TensorTable
        self._table_argument = self._table.view(np.dtype((np.void, self._table.nbytes)))
        self._empty = cupy.empty  # every kernel output comes from here (tests poison it with NaN)
        gp_cuda.apply_tf32()
        _install_allocator()
        self._compile_all()

    # -- device, transfers, synchronisation ---------------------------------
    def activate(self) -> None:
        """Makes this device CUDA's current one (CuPy allocates and launches there)."""
        if cupy.cuda.runtime.getDevice() != self.index:
            cupy.cuda.runtime.setDevice(self.index)

    def from_host(self, array: np.ndarray) -> Any:
        if capture.current is not None:
            capture.current.host_copy("a host array's copy to the device")
        self.activate()
        array = np.asarray(array, order="C")  # not ascontiguousarray: it makes a 0-d array 1-d
        if array.dtype == dtypes.bfloat16:
            array = array.view(dtypes.RAW_BFLOAT16)  # the same bits, as CuPy can hold them
        return cupy.asarray(array)

    def to_host(self, array: Any) -> np.ndarray:
        out = cupy.asnumpy(array)  # waits for the queued work: a point to report label errors
        self._check_label_errors()
        return out.view(dtypes.bfloat16) if out.dtype == dtypes.RAW_BFLOAT16 else out

    def item(self, array: Any) -> Any:
        if array.dtype == dtypes.RAW_BFLOAT16:
            return self.to_host(array).item()
        value = array.item()
        self._check_label_errors()
        return value

    # -- dtypes: bfloat16 is raw uint16 words (RawBfloat16Storage), converted by cast.cu ----
    def astype(self, array: Any, dtype: np.dtype) -> Any:
        if (_FLOAT_NAMES.get(array.dtype), _FLOAT_NAMES.get(dtype)) in _HALF_CASTS:
            return self._convert(array, dtype)  # float32 <-> float16: cast.cu is faster than CuPy's astype
        return super().astype(array, dtype)

    def _convert(self, array: Any, target: np.dtype) -> Any:
        self.activate()
        array = self._contiguous(array)
        out = self._empty(array.shape, target)
        if array.size:
            vec = catalog.CAST_VECTOR
            aligned = array.data.ptr % (vec * array.itemsize) == 0 and out.data.ptr % (vec * out.itemsize) == 0
            vec = vec if aligned else 1
            name = catalog.cast(_FLOAT_NAMES[array.dtype], _FLOAT_NAMES[target], vec)
            self.launch("cast", name, -(-array.size // vec), (array, out, np.int64(array.size)))
        return out

    def synchronize(self) -> None:
        self._cuda_device.synchronize()
        self._check_label_errors()

    def receive(self, array: Any, source: Backend) -> Any:
        """Device to device without the host; ordered after the source's queued work by an event."""
        if not isinstance(source, CupyBackend):
            return super().receive(array, source)
        with source._cuda_device:
            array = self._contiguous(array)
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

    def capture_graph(self, fn: Callable[[Any], Any]) -> tuple[Any, Any]:
        from gpubp.backends.cuda_graph import CudaGraph

        return CudaGraph.capture(self, fn)

    def copy_into(self, destination: Any, source: Any) -> None:
        """destination[...] = source on the device, queued (a plain DMA copy when both are contiguous)."""
        if destination.flags.c_contiguous and source.flags.c_contiguous and destination.dtype == source.dtype:
            if source.nbytes:
                destination.data.copy_from_device_async(source.data, source.nbytes)
        else:
            destination[...] = source

    def check_labels(self, labels: Any, classes: int) -> None:
        """Nothing on the host: comparing labels here would copy them back. The
        cross-entropy kernel flags a bad label on the device instead."""

    def _mark_labels_pending(self) -> None:
        self._labels_pending = True

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
    def _compile_all(self) -> None:
        """Starts compiling every kernel module in background threads (one per
        family and dtype); a launch waits only for the module it needs."""
        modules = catalog.modules()
        pool = ThreadPoolExecutor(max_workers=len(modules), thread_name_prefix="gpubp-nvrtc")
        for (family, dtype), names in modules.items():
            self._modules[family, dtype] = pool.submit(self._compile, family, names)
        pool.shutdown(wait=False)

    def _compile(self, family: str, names: tuple[str, ...]) -> cupy.RawModule:
        module = cupy.RawModule(
            code=catalog.kernel_source(family), options=catalog.COMPILE_OPTIONS, name_expressions=names
        )
        with self._cuda_device:
            module.compile()
        return module

    def _kernel(self, family: str, name: str) -> Any:
        kernel = self._kernels.get(name)
        if kernel is None:
            module = self._modules[family, catalog.dtype_of(name)].result()
            with self._cuda_device:
                kernel = self._kernels[name] = module.get_function(name)
        return kernel

    def launch(self, family: str, name: str, work_items: int, args: tuple) -> None:
        """Queues kernel ``name`` of ``family`` on the current stream, one thread
        per work item in a grid-stride loop of at most one wave of blocks."""
        kernel = self._kernels.get(name) or self._kernel(family, name)
        grid = catalog.grid_size(work_items, self.sm_count)
        kernel((grid,), (catalog.BLOCK,), args)

    @staticmethod
    def _contiguous(array: Any) -> Any:
        return array if array.flags.c_contiguous else cupy.ascontiguousarray(array)

    # -- matrix products -----------------------------------------------------------
    @property
    def cublas(self) -> Cublas:
        """This device's cuBLAS binding (made on first use)."""
        if self._cublas is None:
            self._cublas = Cublas(self.index, self.compute_capability)
        return self._cublas

    def matmul(self, a: Any, b: Any, out: Any = None, out_dtype: np.dtype | None = None) -> Any:
        target = out.dtype if out is not None else _STORAGE.get(out_dtype, out_dtype) if out_dtype else a.dtype
        if (
            a.ndim == 2
            and b.ndim == 2
            and a.dtype == b.dtype
            and a.dtype in GEMM_DTYPES
            and (target == a.dtype or (target == np.float32 and a.dtype.itemsize == 2))
            and (out is None or (out.shape == (a.shape[0], b.shape[1]) and out.flags.c_contiguous))
        ):
            self.activate()
            if a.dtype == dtypes.RAW_BFLOAT16 and self.compute_capability < 80:
                raise TypeError(
                    f"bfloat16 matrix products need a GPU of compute capability 8.0 or newer; {self.device} "
                    f"has {self.compute_capability / 10:.1f} (use float16 autocast there)"
                )
            if out is None and target != a.dtype:
                out = cupy.empty((a.shape[0], b.shape[1]), dtype=target)
            return self.cublas.gemm(a, b, out, gp_cuda.tf32_enabled())
        return super().matmul(a, b, out, out_dtype)

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
        self.launch("activation", name, -(-x.size // vec), (x, bias_arg, y, np.int64(x.size), np.int64(cols)))
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
            self.launch("activation", name, -(-y.size // vec), (g, y, dz, np.int64(y.size)))
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

    def linear_delta(
        self, g: Any, y: Any, activation: str | None, bias_grad: bool, bias_dtype: np.dtype | None = None
    ) -> tuple[Any, Any]:
        """δ = g ⊙ act′ and Σ_rows δ in one pass by ``act_bwd_bias`` (deterministic sum)."""
        dtype = _FLOAT_NAMES.get(y.dtype)
        bias_storage = y.dtype if bias_dtype is None else _STORAGE.get(bias_dtype, bias_dtype)
        if (
            not bias_grad
            or dtype is None
            or y.ndim != 2
            or g.dtype != y.dtype
            or g.shape != y.shape
            or -(-y.shape[1] // catalog.BIAS_TILE) > catalog.TICKETS
            or not (bias_storage == y.dtype or (bias_storage == np.float32 and dtype in catalog.HALF_TYPES))
        ):
            return super().linear_delta(g, y, activation, bias_grad, bias_dtype)
        self.activate()
        rows, cols = y.shape
        g = self._contiguous(g)
        delta = g if activation is None else self._empty(y.shape, y.dtype)
        bias = self._empty((cols,), bias_storage)
        if cols == 0:
            return delta, bias
        if rows == 0:
            bias.fill(0)
            return delta, bias
        y = self._contiguous(y)
        tiles, chunks, per_chunk = catalog.bias_grad_grid(rows, cols, self.sm_count)
        partial = self._empty((chunks, cols), _acc(y.dtype)) if chunks > 1 else _NULL
        kernel = self._kernel("activation", catalog.act_bwd_bias(dtype, activation, _FLOAT_NAMES[bias_storage]))
        args = (g, y, _NULL if activation is None else delta, bias, partial, self._bias_tickets)
        kernel(
            (tiles, chunks),
            catalog.BIAS_THREADS,
            (*args, *map(np.int64, (rows, cols, per_chunk))),
        )
        return delta, bias

    # -- softmax cross-entropy and the batch metrics ---------------------------------
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
        loss = self._empty((), logits.dtype)
        if rows and classes:
            row_loss = self._empty((rows,), _acc(logits.dtype))
            name = catalog.softmax_xent_fwd(dtype, _LABEL_NAMES[labels.dtype])
            args = (logits, labels, probs, row_loss, loss, self._label_error, self._loss_ticket)
            self.launch("softmax_xent", name, rows * catalog.WARP, (*args, np.int64(rows), np.int32(classes)))
            self._labels_pending = True
            if capture.current is not None:
                capture.current.on_replay(self._mark_labels_pending)
        else:
            loss.fill(np.nan)  # the mean of no rows, or every label out of range of no classes
        return loss, probs

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
            self.launch("softmax_xent", name, probs.size, (probs, labels, g, grad, np.int64(rows), np.int32(classes)))
        return grad

    def accumulate_metrics(self, totals: Any, logits: Any, labels: Any, loss: Any) -> None:
        if loss.dtype != logits.dtype and loss.dtype in _FLOAT_NAMES and logits.dtype in _FLOAT_NAMES:
            logits = self.astype(logits, dtypes.logical(loss.dtype))  # autocast: 16-bit logits, a float32 loss
        dtype = _FLOAT_NAMES.get(logits.dtype)
        if (
            dtype is None
            or logits.ndim != 2
            or labels.shape != logits.shape[:1]
            or labels.dtype.kind not in "iu"
            or loss.dtype != logits.dtype
            or totals.dtype != np.float64
            or totals.shape != (self.METRICS,)
            or not totals.flags.c_contiguous
            or 0 in logits.shape
        ):
            super().accumulate_metrics(totals, logits, labels, loss)
            return
        self.activate()
        logits = self._contiguous(logits)
        labels = self._labels(labels)
        kernel = self._kernel("softmax_xent", catalog.accumulate_metrics(dtype, _LABEL_NAMES[labels.dtype]))
        rows, classes = logits.shape
        kernel((1,), (catalog.BLOCK,), (logits, labels, loss, totals, np.int64(rows), np.int32(classes)))

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

    def _next_draw(self) -> tuple[int, int]:
        """(seed, offset) for the next generating launch; every launch takes one offset."""
        offset = self._offset
        self._offset = (offset + 1) & _U64
        return self._seed, offset

    def _draw_arguments(self) -> tuple[np.uint64, np.uint64, Any]:
        """(seed, offset, replayed) of random.cu's kernels: by value when eager; in a
        capture, a replay value that takes the next offset at each replay."""
        if capture.current is not None:
            replayed = capture.current.replay_value(2, self._next_draw, floats=False)
            return _NULL, _NULL, np.uint64(replayed)
        seed, offset = self._next_draw()
        return np.uint64(seed), np.uint64(offset), _NULL

    def _random(self, kernel: str, shape: tuple[int, ...], dtype: np.dtype, extra: tuple = ()) -> Any:
        self.activate()
        name = _FLOAT_NAMES[dtype]
        out = self._empty(shape, dtype)
        draw = self._draw_arguments()  # consumed even when empty, like every draw
        if out.size:
            counters = -(-out.size // catalog.values_per_counter(kernel, name))
            args = (out, np.int64(out.size), *draw, *extra)
            self.launch("random", getattr(catalog, kernel)(name), counters, args)
        return out

    def standard_normal(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        if dtype in _STORAGE or dtype == dtypes.RAW_BFLOAT16:  # bfloat16: float32 draws, rounded
            return self.astype(self._random("normal", shape, dtypes.float32), dtypes.bfloat16)
        if dtype not in _FLOAT_NAMES:
            return self._random("normal", shape, np.dtype(np.float64)).astype(dtype)
        return self._random("normal", shape, dtype)

    def uniform(self, shape: tuple[int, ...], low: float, high: float, dtype: np.dtype) -> Any:
        dtype = np.dtype(dtype)
        if dtype in _STORAGE or dtype == dtypes.RAW_BFLOAT16:  # bfloat16: float32 draws, rounded
            return self.astype(self.uniform(shape, low, high, dtypes.float32), dtypes.bfloat16)
        compute = dtype if dtype in _FLOAT_NAMES else np.dtype(np.float64)
        acc = _acc(compute)
        out = self._random("uniform", shape, compute, (acc(low), acc(high)))
        return out if compute == dtype else out.astype(dtype)

    @staticmethod
    def _dropout_constants(p: float, dtype: np.dtype) -> tuple[np.uint32, Any]:
        # The scale rounded to the storage dtype first, as the twin's dtype.type(1 / (1 - p)).
        scale = dtypes.logical(dtype).type(1.0 / (1.0 - p))
        return np.uint32(philox.dropout_threshold(p)), _acc(dtype)(float(scale))

    def dropout_mask(self, shape: tuple[int, ...], p: float, dtype: np.dtype) -> Any:
        dtype = self.storage_dtype(np.dtype(dtype))
        if p >= 1:
            self.activate()
            return cupy.zeros(shape, dtype=dtype)
        if dtype not in _FLOAT_NAMES:
            return super().dropout_mask(shape, p, dtype)
        return self._random("dropout_mask", shape, dtype, self._dropout_constants(p, dtype))

    def dropout_forward(self, x: Any, p: float) -> tuple[Any, Any]:
        """x ⊙ mask in one pass; the mask is not kept: backward draws it again
        from the same (seed, offset), which costs less than storing and reading it."""
        dtype = _FLOAT_NAMES.get(x.dtype)
        if dtype is None or p >= 1:
            return super().dropout_forward(x, p)
        self.activate()
        x = self._contiguous(x)
        threshold, scale = self._dropout_constants(p, x.dtype)
        seed, offset, replayed = self._draw_arguments()
        draw = _Draw(seed, offset, replayed, threshold, scale)
        return self._apply_dropout(x, draw), draw

    def dropout_backward(self, g: Any, saved: Any) -> Any:
        if not isinstance(saved, _Draw) or g.dtype not in _FLOAT_NAMES:
            return super().dropout_backward(g, saved)
        self.activate()
        return self._apply_dropout(self._contiguous(g), saved)

    def _apply_dropout(self, x: Any, draw: _Draw) -> Any:
        out = self._empty(x.shape, x.dtype)
        if x.size:
            name = catalog.dropout_apply(_FLOAT_NAMES[x.dtype])
            args = (x, out, np.int64(x.size), draw.seed, draw.offset, draw.replayed, draw.threshold, draw.scale)
            self.launch("random", name, -(-x.size // 4), args)
        return out

    # -- optimizer updates: every parameter of a dtype in one launch ---------------------
    def sgd_update(self, param: Any, grad: Any, momentum_buffer: Any, **hyper: Any) -> None:
        """Backend.sgd_update (same arguments), as the multi-tensor kernel on one tensor."""
        self.sgd_updates([(param, grad, momentum_buffer)], lambda: [hyper])

    def adam_update(self, param: Any, grad: Any, exp_avg: Any, exp_avg_sq: Any, **hyper: Any) -> None:
        """Backend.adam_update (same arguments), as the multi-tensor kernel on one tensor."""
        self.adam_updates([(param, grad, exp_avg, exp_avg_sq)], lambda: [hyper])

    def sgd_updates(
        self,
        tensors: list[tuple],
        hypers: Callable[[], list[dict]],
        found_inf: Any = None,
        steps: list | None = None,
    ) -> None:
        self._multi_update("sgd", tensors, hypers, _sgd_scalars, Backend.sgd_update, found_inf, steps)

    def adam_updates(
        self,
        tensors: list[tuple],
        hypers: Callable[[], list[dict]],
        found_inf: Any = None,
        steps: list | None = None,
    ) -> None:
        self._multi_update("adam", tensors, hypers, _adam_scalars, Backend.adam_update, found_inf, steps)

    @staticmethod
    def _update_ready(param: Any, grad: Any, *states: Any) -> bool:
        """Whether the update kernel takes these arrays (the grad may be strided: it is
        made contiguous; the parameter and its state are written in place)."""
        return (
            param.dtype in _FLOAT_NAMES
            and all(a.flags.c_contiguous for a in (param, *states))
            and all(o.dtype == param.dtype and o.shape == param.shape for o in (grad, *states))
        )

    @staticmethod
    def _launch_groups(kinds: list[np.dtype]) -> list[list[int]]:
        """Indices of the arrays of each multi-tensor launch, given their dtypes: one
        dtype and at most MULTI_TENSOR_MAX arrays a launch, in a fixed order."""
        groups: list[list[int]] = []
        for i in sorted(range(len(kinds)), key=lambda i: kinds[i].str):
            if groups and kinds[groups[-1][0]] == kinds[i] and len(groups[-1]) < catalog.MULTI_TENSOR_MAX:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _multi_update(
        self,
        kind: str,
        tensors: list[tuple],
        hypers: Callable[[], list[dict]],
        scalars_of: Callable[[dict], list[float]],
        twin: Callable[..., None],
        found_inf: Any = None,
        steps: list | None = None,
    ) -> None:
        if not all(self._update_ready(p, g, *(s for s in states if s is not None)) for p, g, *states in tensors):
            if capture.current is not None:
                capture.current.cannot_replay(f"{kind}'s update of a parameter the fused kernel cannot take")
            if found_inf is not None or steps is not None:
                # The generic skip and step counting (it reads found_inf and the counts on the host).
                getattr(Backend, f"{kind}_updates")(self, tensors, hypers, found_inf, steps)
                return
            for arrays, hyper in zip(tensors, hypers()):
                twin(self, *arrays, **hyper)  # the generic formula (its float16 path calls back in with float32)
            return
        self.activate()
        # Launches of at most MULTI_TENSOR_MAX tensors of one dtype; the scalars in launch order.
        groups = self._launch_groups([p.dtype for p, *_ in tensors])
        record = capture.current
        rows: list[list[dict]] = []  # hypers() of this update (or replay), shared by its launches

        def group_scalars(k: int) -> list[float]:
            if k == 0:  # the first launch's values are computed first: advance the host state once
                rows[:] = [hypers()]
            return [v for i in groups[k] for v in scalars_of(rows[0][i])]

        for k, group in enumerate(groups):
            members = [tensors[i] for i in group]
            counts = None if steps is None else [steps[i] for i in group]
            if record is None:
                self._launch_table(kind, members, group_scalars(k), 0, found_inf, counts)
            else:
                count = len(group) * catalog.MULTI_TENSOR_SCALARS
                replayed = record.replay_value(count, lambda k=k: group_scalars(k))
                self._launch_table(kind, members, None, replayed, found_inf, counts)
        if steps is not None:
            self.advance_steps(steps, found_inf)  # after the updates, which read the counts

    def _fill_table(self, sizes: list[int], pointers: dict[int, list[int]], found_inf: Any, replayed: int) -> int:
        """Writes a TensorTable (tensor_table.cuh): the sizes and their chunks, each
        pointer field in ``pointers`` (word offset -> a pointer per tensor; the
        other pointer fields are null), found_inf and replay_scalars. Returns the
        launch's chunk count."""
        table = self._table
        count = len(sizes)
        begins = catalog.chunk_begins(sizes)
        table[catalog.TABLE_COUNT] = count
        table[catalog.TABLE_CHUNK_BEGIN : catalog.TABLE_CHUNK_BEGIN + count + 1] = begins
        table[catalog.TABLE_SIZE : catalog.TABLE_SIZE + count] = sizes
        for field in (catalog.TABLE_PARAM, catalog.TABLE_GRAD, catalog.TABLE_STATE1, catalog.TABLE_STATE2):
            table[field : field + count] = pointers.get(field, 0)
        table[catalog.TABLE_STEP : catalog.TABLE_STEP + count] = pointers.get(catalog.TABLE_STEP, 0)
        table[catalog.TABLE_FOUND_INF] = 0 if found_inf is None else found_inf.data.ptr
        table[catalog.TABLE_REPLAY_SCALARS] = replayed
        return begins[-1]

    def _launch_table(
        self,
        kind: str,
        tensors: list[tuple],
        scalars: list[float] | None,
        replayed: int,
        found_inf: Any = None,
        steps: list | None = None,
    ) -> None:
        """One multi-tensor update launch: fills the TensorTable and passes it by value."""

        def pointers(index: int) -> list[int]:
            return [t[index].data.ptr if len(t) > index and t[index] is not None else 0 for t in tensors]

        grads = [self._contiguous(g) for _, g, *_ in tensors]  # kept alive until the launch is queued
        fields = {
            catalog.TABLE_PARAM: pointers(0),
            catalog.TABLE_GRAD: [g.data.ptr for g in grads],
            catalog.TABLE_STATE1: pointers(2),
            catalog.TABLE_STATE2: pointers(3),
        }
        if steps is not None:
            fields[catalog.TABLE_STEP] = [0 if s is None else s.data.ptr for s in steps]
        chunks = self._fill_table([p.size for p, *_ in tensors], fields, found_inf, replayed)
        if chunks == 0:
            return
        if scalars is not None:
            start = catalog.TABLE_SCALARS
            self._table.view(np.float64)[start : start + len(scalars)] = scalars
        name = (catalog.sgd_multi if kind == "sgd" else catalog.adam_multi)(_FLOAT_NAMES[tensors[0][0].dtype])
        self.launch("optim", name, chunks * catalog.BLOCK, (self._table_argument,))

    def advance_steps(self, steps: list, found_inf: Any = None) -> None:
        """Backend.advance_steps: one advance_steps launch per STEP_LIST_MAX counts."""
        pointers = [s.data.ptr for s in steps if s is not None]
        if not pointers:
            return
        self.activate()
        name = catalog.advance_steps()
        size = catalog.STEP_LIST_MAX
        for start in range(0, len(pointers), size):
            part = pointers[start : start + size]
            words = np.zeros(2 + size, dtype=np.uint64)  # amp.cu's StepList
            words[0] = len(part)
            words[1] = 0 if found_inf is None else found_inf.data.ptr
            words[2 : 2 + len(part)] = part
            self.launch("amp", name, len(part), (words.view(np.dtype((np.void, words.nbytes))),))

    # -- loss scaling (amp.cu): no host reads, so a GradScaler step can be captured ------
    def unscale_grads(self, grads: list, inv_scale: Any, found_inf: Any) -> None:
        """Backend.unscale_grads: one amp_unscale launch per dtype (and MULTI_TENSOR_MAX
        gradients); strided gradients, which the kernel cannot change in place, take
        the generic path (device ops too)."""
        flags = self._amp_scalar(inv_scale, np.float32) and self._amp_scalar(found_inf, np.float32)
        takes = [flags and g.dtype in _FLOAT_NAMES and g.flags.c_contiguous for g in grads]
        fused = [g for g, t in zip(grads, takes) if t]
        if len(fused) < len(grads):
            super().unscale_grads([g for g, t in zip(grads, takes) if not t], inv_scale, found_inf)
        self.activate()
        for group in self._launch_groups([g.dtype for g in fused]):
            members = [fused[i] for i in group]
            fields = {catalog.TABLE_GRAD: [g.data.ptr for g in members]}
            chunks = self._fill_table([g.size for g in members], fields, found_inf, 0)
            if chunks:
                name = catalog.amp_unscale(_FLOAT_NAMES[members[0].dtype])
                self.launch("amp", name, chunks * catalog.BLOCK, (self._table_argument, inv_scale))

    def update_scale(
        self, scale: Any, growth_tracker: Any, found_inf: Any, factors: Callable[[], tuple[float, float, int]]
    ) -> None:
        """Backend.update_scale as one thread of ``update_scale``. In a capture the
        factors are replay values, computed by ``factors()`` before each replay."""
        if not (
            self._amp_scalar(scale, np.float32)
            and self._amp_scalar(growth_tracker, np.int32)
            and self._amp_scalar(found_inf, np.float32)
        ):
            super().update_scale(scale, growth_tracker, found_inf, factors)
            return
        self.activate()
        kernel = self._kernel("amp", catalog.update_scale())
        if capture.current is not None:
            replayed = capture.current.replay_value(3, lambda: [float(v) for v in factors()])
            args = (np.float64(0), np.float64(0), np.int64(0), np.uint64(replayed))
        else:
            growth_factor, backoff_factor, growth_interval = factors()
            args = (np.float64(growth_factor), np.float64(backoff_factor), np.int64(growth_interval), _NULL)
        kernel((1,), (1,), (scale, growth_tracker, found_inf, *args))

    @staticmethod
    def _amp_scalar(array: Any, dtype: type) -> bool:
        """Whether a kernel can take ``array`` as its one-element ``dtype`` value."""
        return isinstance(array, cupy.ndarray) and array.size == 1 and array.dtype == dtype

// Loss scaling (gpubp/amp/grad_scaler.py) on the device, so a GradScaler step
// never waits for the host: PyTorch's _amp_foreach_non_finite_check_and_unscale_
// and _amp_update_scale_, and the step counting of its fused optimizers.
//
// NumPy twins: Backend.unscale_grads, Backend.update_scale and
// Backend.advance_steps in gpubp/backends/base.py.
//
// - amp_unscale<T>: every gradient of one dtype (a TensorTable of them, as the
//   optimizer updates take: tensor_table.cuh) multiplied in place by inv_scale
//   (1 / scale, worked out in double and rounded to float beforehand), and
//   found_inf set to 1 when any element is inf or NaN. T is the storage type;
//   half_t and bf16_t multiply in float, as PyTorch's opmath does.
// - update_scale<float>: one thread; the scale backs off on found_inf, else
//   grows every growth_interval-th clean step (never to inf). A launch captured
//   into a CUDA graph reads growth_factor, backoff_factor and growth_interval
//   from device words the host rewrites before each replay (`replayed`), so
//   set_growth_factor between replays is honoured.
// - advance_steps<N>: the device step counts of one optimizer step (up to N of
//   them) advance by 1, or by 0 when found_inf is set (a skipped step does not
//   count, as in PyTorch).

#include "common.cuh"
#include "tensor_table.cuh"

__device__ __forceinline__ bool is_finite(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }
__device__ __forceinline__ bool is_finite(double x) {
    return (__double_as_longlong(x) & 0x7ff0000000000000LL) != 0x7ff0000000000000LL;
}

// table.grad[t]: the gradients (changed in place); table.found_inf: a float, set
// to 1 here on inf or NaN (never cleared: the host zeroes it before the launch).
template <typename T>
__global__ void amp_unscale(TensorTable table, const float* inv_scale) {
    typedef typename Num<T>::acc A;
    constexpr int VEC = 16 / sizeof(T);
    typedef Pack<T, VEC> P;
    const A inv = A(*inv_scale);
    bool bad = false;
    const long long chunks = table.chunk_begin[table.count];
    for (long long chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
        const int t = tensor_of(table, chunk);
        T* grad = reinterpret_cast<T*>(table.grad[t]);
        const long long begin = (chunk - table.chunk_begin[t]) * CHUNK;
        const long long end = begin + CHUNK < table.size[t] ? begin + CHUNK : table.size[t];
        for_chunk<VEC>(begin, end, (table.grad[t] & 15) == 0, [&](long long i, int width) {
            if (width == VEC) {
                P gv = *reinterpret_cast<P*>(grad + i);
#pragma unroll
                for (int k = 0; k < VEC; ++k) {
                    const A g = Num<T>::load(gv.v[k]);
                    bad = bad || !is_finite(g);
                    gv.v[k] = Num<T>::store(g * inv);
                }
                *reinterpret_cast<P*>(grad + i) = gv;
            } else {
                const A g = Num<T>::load(grad[i]);
                bad = bad || !is_finite(g);
                grad[i] = Num<T>::store(g * inv);
            }
        });
    }
    // Every writer writes the same 1: the race is harmless, and no atomics are needed.
    if (bad) *reinterpret_cast<float*>(table.found_inf) = 1.0f;
}

// PyTorch's _amp_update_scale_ (the products in double, rounded to the scale's
// float). replayed: 0, or {growth_factor, backoff_factor, growth_interval} as
// doubles, read instead of the by-value arguments.
template <typename T>
__global__ void update_scale(T* scale, int* growth_tracker, const float* found_inf, double growth_factor,
                             double backoff_factor, long long growth_interval, const double* replayed) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    if (replayed) {
        growth_factor = replayed[0];
        backoff_factor = replayed[1];
        growth_interval = (long long)replayed[2];
    }
    if (*found_inf != 0.0f) {
        *scale = T(double(*scale) * backoff_factor);
        *growth_tracker = 0;
        return;
    }
    const long long successful = (long long)*growth_tracker + 1;
    if (successful == growth_interval) {
        const T grown = T(double(*scale) * growth_factor);
        if (is_finite(grown)) *scale = grown;  // never grow past the float range to inf
        *growth_tracker = 0;
    } else {
        *growth_tracker = (int)successful;
    }
}

// The device step counts (doubles) of one optimizer step, and the step's found_inf.
template <int N>
struct StepList {
    long long count;
    unsigned long long found_inf;  // 0 (no GradScaler: every step counts), or a device float
    unsigned long long step[N];
};

template <int N>
__global__ void advance_steps(StepList<N> list) {
    const bool skipped = list.found_inf != 0ULL && *reinterpret_cast<const float*>(list.found_inf) != 0.0f;
    const double add = skipped ? 0.0 : 1.0;
    for (long long i = grid_first(); i < list.count; i += grid_stride()) {
        *reinterpret_cast<double*>(list.step[i]) += add;
    }
}

// Activations: fused bias-add + activation forward, and the backward Hadamard
// steps that compute f'(z) from the saved output y.
//
// NumPy twins (CPU path and test oracle): Backend.bias_activation, .sigmoid,
// .tanh, .relu and .<activation>_backward in gpubp/backends/base.py.
//
// Template parameters: T is the storage type (half_t, bf16_t, float, double;
// the 16-bit ones do their arithmetic in float), ACT the activation (0 none, 1 sigmoid, 2 tanh,
// 3 relu), VEC the elements per 16-byte access (1 when a pointer is not 16-byte
// aligned). The host picks VEC and the grid (gpubp/backends/kernel_catalog.py).
// Shared types and math: common.cuh.

#include "common.cuh"

// -- the activations, in the twin's order of operations ----------------------
template <int ACT, typename A>
__device__ __forceinline__ A act_forward(A z) {
    if constexpr (ACT == 1) {
        // 1 / (1 + e^(-z)): e^(-z) overflows to inf for z << 0 and the result
        // is the correct limit 0, so no branch is needed; NaN stays NaN.
        return A(1) / (A(1) + math_exp(-z));
    } else if constexpr (ACT == 2) {
        return math_tanh(z);
    } else if constexpr (ACT == 3) {
        // max(z, 0) that keeps NaN, like numpy.maximum.
        return (z > A(0) || z != z) ? z : A(0);
    } else {
        return z;
    }
}

template <int ACT, typename A>
__device__ __forceinline__ A act_backward(A g, A y) {
    if constexpr (ACT == 1) {
        return ((A(1) - y) * y) * g;  // g * s * (1 - s)
    } else if constexpr (ACT == 2) {
        return (A(1) - y * y) * g;  // g * (1 - tanh^2)
    } else if constexpr (ACT == 3) {
        return g * (y > A(0) ? A(1) : A(0));  // a product, so NaN in g propagates
    } else {
        return g;
    }
}

// y = act(x + bias[column]) over a C-contiguous (n / cols, cols) matrix; bias may
// be null (then cols is ignored). x and y may be the same array (in place).
// With bias and VEC > 1 the host guarantees cols % VEC == 0, so a vector never
// straddles two rows and the bias vector is aligned.
template <typename T, int ACT, int VEC>
__global__ void bias_act_fwd(const T* x, const T* bias, T* y, long long n, long long cols) {
    typedef typename Num<T>::acc A;
    typedef Pack<T, VEC> P;
    const long long nvec = n / VEC;
    const long long first = grid_first(), stride = grid_stride();
    // The column is tracked incrementally: a 64-bit division per vector would
    // cost more than the arithmetic it feeds.
    long long col = bias ? (first * VEC) % cols : 0;
    const long long col_step = bias ? (stride * VEC) % cols : 0;
    for (long long i = first; i < nvec; i += stride) {
        const P xv = reinterpret_cast<const P*>(x)[i];
        P bv;
        if (bias) bv = *reinterpret_cast<const P*>(bias + col);
        P yv;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            A z = Num<T>::load(xv.v[k]);
            if (bias) z = z + Num<T>::load(bv.v[k]);
            yv.v[k] = Num<T>::store(act_forward<ACT>(z));
        }
        reinterpret_cast<P*>(y)[i] = yv;
        if (bias) {
            col += col_step;
            if (col >= cols) col -= cols;
        }
    }
    // The n % VEC elements after the last whole vector (fewer than VEC threads).
    const long long t = nvec * VEC + first;
    if (t < n) {
        A z = Num<T>::load(x[t]);
        if (bias) z = z + Num<T>::load(bias[t % cols]);
        y[t] = Num<T>::store(act_forward<ACT>(z));
    }
}

// dz = g * act'(z), with act' computed from the saved output y.
template <typename T, int ACT, int VEC>
__global__ void act_bwd(const T* g, const T* y, T* dz, long long n) {
    typedef typename Num<T>::acc A;
    typedef Pack<T, VEC> P;
    const long long nvec = n / VEC;
    const long long first = grid_first(), stride = grid_stride();
    for (long long i = first; i < nvec; i += stride) {
        const P gv = reinterpret_cast<const P*>(g)[i];
        const P yv = reinterpret_cast<const P*>(y)[i];
        P dv;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            dv.v[k] = Num<T>::store(act_backward<ACT>(Num<T>::load(gv.v[k]), Num<T>::load(yv.v[k])));
        }
        reinterpret_cast<P*>(dz)[i] = dv;
    }
    const long long t = nvec * VEC + first;
    if (t < n) {
        dz[t] = Num<T>::store(act_backward<ACT>(Num<T>::load(g[t]), Num<T>::load(y[t])));
    }
}

// The layer's backward Hadamard step and its bias gradient in one pass:
// dz = g * act'(z) (written to dz; with ACT 0 dz is g itself and is not
// written) and bias_grad[c] = sum over rows of dz[r, c], for a C-contiguous
// (rows, cols) matrix.
//
// Block (32, 8): 32 columns side by side (coalesced rows), 8 rows at a time.
// Grid: (column tiles, row chunks). Each block sums its chunk of rows of its
// columns in a fixed order into partial[chunk][col]. The last block of a
// column tile to finish (a ticket per tile, reset by that block) adds the
// chunks' partials in chunk order, so the sum does not depend on which block
// ran first: the result is the same from run to run. The tickets start at 0
// and are shared by every launch on the device, which is safe because gpubp
// queues a device's work on one stream.
//
// The sum adds the values as stored (rounded to T), in the arithmetic type,
// as the twin sums dz: Backend.linear_delta in gpubp/backends/base.py. G is
// the bias gradient's storage type: T, or float for a 16-bit T under autocast
// (float32 master weights then get their gradient with no cast pass).
template <typename T, int ACT, typename G>
__global__ void act_bwd_bias(const T* g, const T* y, T* dz, G* bias_grad, typename Num<T>::acc* partial,
                             unsigned int* tickets, long long rows, long long cols, long long rows_per_chunk) {
    typedef typename Num<T>::acc A;
    __shared__ A column_sums[8][33];  // 33: no bank conflicts on the transposed read
    __shared__ bool last;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long long col = (long long)blockIdx.x * 32 + tx;
    const long long begin = (long long)blockIdx.y * rows_per_chunk;
    const long long end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
    A sum = A(0);
    if (col < cols) {
#pragma unroll 4
        for (long long r = begin + ty; r < end; r += 8) {
            const long long i = r * cols + col;
            T d;
            if (ACT) {
                d = Num<T>::store(act_backward<ACT>(Num<T>::load(g[i]), Num<T>::load(y[i])));
                dz[i] = d;
            } else {
                d = g[i];
            }
            sum += Num<T>::load(d);
        }
    }
    column_sums[ty][tx] = sum;
    __syncthreads();
    A chunk_sum = A(0);
    if (ty == 0) {
#pragma unroll
        for (int k = 0; k < 8; ++k) chunk_sum += column_sums[k][tx];
    }
    if (gridDim.y == 1) {  // one chunk: no partials to combine
        if (ty == 0 && col < cols) bias_grad[col] = Num<G>::store(chunk_sum);
        return;
    }
    if (ty == 0 && col < cols) partial[blockIdx.y * cols + col] = chunk_sum;
    __threadfence();  // the partials are visible device-wide before the ticket is taken
    __syncthreads();
    if (tx == 0 && ty == 0) last = atomicAdd(&tickets[blockIdx.x], 1u) == gridDim.y - 1;
    __syncthreads();
    if (last && ty == 0) {
        if (col < cols) {
            A total = A(0);
            // volatile: read from L2, where the other blocks' partials are, not from a stale L1 line.
            const volatile A* partials = partial;
            for (unsigned int c = 0; c < gridDim.y; ++c) total += partials[c * cols + col];
            bias_grad[col] = Num<G>::store(total);
        }
        if (tx == 0) tickets[blockIdx.x] = 0u;
    }
}

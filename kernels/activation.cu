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
// Block (32, 8): each thread takes two neighbouring columns, so a warp reads 64
// columns of a row (128 bytes of a 16-bit matrix, one pair per load when cols is
// even, which keeps every pair aligned), 8 rows at a time. Grid: (64-column tiles,
// row chunks). Each block sums its chunk of rows of its columns in a fixed order
// into partial[chunk][col]. The last block of a column tile to finish (a ticket
// per tile, reset by that block) adds the chunks' partials in chunk order, so the
// sum does not depend on which block ran first: the result is the same from run
// to run. The tickets start at 0 and are shared by every launch on the device,
// which is safe because gpubp queues a device's work on one stream.
//
// The sum adds the values as stored (rounded to T), in the arithmetic type,
// as the twin sums dz: Backend.linear_delta in gpubp/backends/base.py. G is
// the bias gradient's storage type: T, or float for a 16-bit T under autocast
// (float32 master weights then get their gradient with no cast pass).
template <typename T, int ACT, typename G>
__global__ void act_bwd_bias(const T* g, const T* y, T* dz, G* bias_grad, typename Num<T>::acc* partial,
                             unsigned int* tickets, long long rows, long long cols, long long rows_per_chunk) {
    typedef typename Num<T>::acc A;
    typedef Pack<T, 2> P;
    __shared__ A column_sums[8][65];  // 65: no bank conflicts on the transposed read
    __shared__ bool last;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const long long col = (long long)blockIdx.x * 64 + 2 * tx;  // this thread's first column
    const long long begin = (long long)blockIdx.y * rows_per_chunk;
    const long long end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
    // Pairs are loaded whole when every row's pair at col is aligned: cols even and
    // the arrays aligned to a pair (a view may start anywhere).
    const unsigned long long addresses = (unsigned long long)g | (unsigned long long)y | (unsigned long long)dz;
    const bool pairs = (cols & 1) == 0 && addresses % sizeof(P) == 0;
    A sum0 = A(0), sum1 = A(0);
    if (col < cols) {
        const bool both = col + 1 < cols;
#pragma unroll 4
        for (long long r = begin + ty; r < end; r += 8) {
            const long long i = r * cols + col;
            T d0, d1;
            if (pairs) {
                const P gv = *reinterpret_cast<const P*>(g + i);
                if (ACT) {
                    const P yv = *reinterpret_cast<const P*>(y + i);
                    P dv;
                    dv.v[0] = Num<T>::store(act_backward<ACT>(Num<T>::load(gv.v[0]), Num<T>::load(yv.v[0])));
                    dv.v[1] = Num<T>::store(act_backward<ACT>(Num<T>::load(gv.v[1]), Num<T>::load(yv.v[1])));
                    *reinterpret_cast<P*>(dz + i) = dv;
                    d0 = dv.v[0];
                    d1 = dv.v[1];
                } else {
                    d0 = gv.v[0];
                    d1 = gv.v[1];
                }
            } else {
                d0 = ACT ? Num<T>::store(act_backward<ACT>(Num<T>::load(g[i]), Num<T>::load(y[i]))) : g[i];
                if (ACT) dz[i] = d0;
                if (both) {
                    d1 = ACT ? Num<T>::store(act_backward<ACT>(Num<T>::load(g[i + 1]), Num<T>::load(y[i + 1])))
                             : g[i + 1];
                    if (ACT) dz[i + 1] = d1;
                } else {
                    d1 = Num<T>::store(A(0));
                }
            }
            sum0 += Num<T>::load(d0);
            sum1 += Num<T>::load(d1);
        }
    }
    column_sums[ty][2 * tx] = sum0;
    column_sums[ty][2 * tx + 1] = sum1;
    __syncthreads();
    // Thread (tx, 0) finishes columns tx and tx + 32 of the tile: each sums its 8 row groups in order.
    const long long out_a = (long long)blockIdx.x * 64 + tx, out_b = out_a + 32;
    A chunk_a = A(0), chunk_b = A(0);
    if (ty == 0) {
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            chunk_a += column_sums[k][tx];
            chunk_b += column_sums[k][tx + 32];
        }
    }
    if (gridDim.y == 1) {  // one chunk: no partials to combine
        if (ty == 0) {
            if (out_a < cols) bias_grad[out_a] = Num<G>::store(chunk_a);
            if (out_b < cols) bias_grad[out_b] = Num<G>::store(chunk_b);
        }
        return;
    }
    if (ty == 0) {
        if (out_a < cols) partial[blockIdx.y * cols + out_a] = chunk_a;
        if (out_b < cols) partial[blockIdx.y * cols + out_b] = chunk_b;
    }
    __threadfence();  // the partials are visible device-wide before the ticket is taken
    __syncthreads();
    if (tx == 0 && ty == 0) last = atomicAdd(&tickets[blockIdx.x], 1u) == gridDim.y - 1;
    __syncthreads();
    if (last && ty == 0) {
        // volatile: read from L2, where the other blocks' partials are, not from a stale L1 line.
        const volatile A* partials = partial;
        if (out_a < cols) {
            A total = A(0);
            for (unsigned int c = 0; c < gridDim.y; ++c) total += partials[c * cols + out_a];
            bias_grad[out_a] = Num<G>::store(total);
        }
        if (out_b < cols) {
            A total = A(0);
            for (unsigned int c = 0; c < gridDim.y; ++c) total += partials[c * cols + out_b];
            bias_grad[out_b] = Num<G>::store(total);
        }
        if (tx == 0) tickets[blockIdx.x] = 0u;
    }
}

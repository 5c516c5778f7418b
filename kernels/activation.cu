// Activations: fused bias-add + activation forward, and the backward Hadamard
// steps that compute f'(z) from the saved output y.
//
// NumPy twins (CPU path and test oracle): Backend.bias_activation, .sigmoid,
// .tanh, .relu and .<activation>_backward in gpubp/backends/base.py.
//
// Template parameters: T is the storage type (half_t, float, double; half_t
// does its arithmetic in float), ACT the activation (0 none, 1 sigmoid, 2 tanh,
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

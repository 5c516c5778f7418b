// Casts to and from bfloat16, which CuPy cannot do (it has no bfloat16 dtype:
// gpubp's CUDA arrays of bfloat16 are uint16 words), and between float32 and
// float16, which autocast does at every step (faster here than CuPy's astype).
//
// NumPy twin: Backend.astype in gpubp/backends/base.py, i.e. ml_dtypes'
// casts: round to nearest even; float64 goes through float32 as ml_dtypes does
// (so a float64 exactly between two bfloat16 values after rounding to float32
// rounds as that float32 does); NaN stays a quiet NaN.
//
// Template parameters: S and D, the source and destination storage types
// (common.cuh's Num<> loads and stores them), VEC the elements per access. A
// grid-stride loop of at most one wave; a cast is bound by memory bandwidth.

#include "common.cuh"

// float <-> double in PTX without .ftz: CuPy compiles with -ftz=true, under which
// these conversions would flush float subnormals (bfloat16's smallest values) to
// zero, where ml_dtypes keeps them. The 16-bit loads and stores are exact already
// (bit arithmetic, or cvt without .ftz in common.cuh).
template <typename S>
__device__ __forceinline__ float widen_to_float(S x) {
    return Num<S>::load(x);
}
template <>
__device__ __forceinline__ float widen_to_float<double>(double x) {
    float f;
    asm("cvt.rn.f32.f64 %0, %1;" : "=f"(f) : "d"(x));
    return f;
}

template <typename D>
__device__ __forceinline__ D narrow_from_float(float f) {
    return Num<D>::store(f);
}
template <>
__device__ __forceinline__ double narrow_from_float<double>(float f) {
    double d;
    asm("cvt.f64.f32 %0, %1;" : "=d"(d) : "f"(f));
    return d;
}

// y = x converted, VEC elements per access (4 when both arrays are aligned to
// four of their elements, else 1; the host picks), the n % VEC last ones one by one.
template <typename S, typename D, int VEC>
__global__ void cast(const S* x, D* y, long long n) {
    typedef Pack<S, VEC> PS;
    typedef Pack<D, VEC> PD;
    const long long nvec = n / VEC;
    const long long first = grid_first(), stride = grid_stride();
    for (long long i = first; i < nvec; i += stride) {
        const PS xv = reinterpret_cast<const PS*>(x)[i];
        PD yv;
#pragma unroll
        for (int k = 0; k < VEC; ++k) yv.v[k] = narrow_from_float<D>(widen_to_float<S>(xv.v[k]));
        reinterpret_cast<PD*>(y)[i] = yv;
    }
    const long long t = nvec * VEC + first;
    if (t < n) y[t] = narrow_from_float<D>(widen_to_float<S>(x[t]));
}

// Casts to and from bfloat16, which CuPy cannot do (it has no bfloat16 dtype:
// gpubp's CUDA arrays of bfloat16 are uint16 words).
//
// NumPy twin: Backend.astype in gpubp/backends/base.py, i.e. ml_dtypes'
// casts: round to nearest even; float64 goes through float32 as ml_dtypes does
// (so a float64 exactly between two bfloat16 values after rounding to float32
// rounds as that float32 does); NaN stays a quiet NaN.
//
// Template parameters: S and D, the source and destination storage types
// (common.cuh's Num<> loads and stores them). One element per thread in a
// grid-stride loop: the loads and stores of a warp are contiguous, and a cast
// is bound by memory bandwidth, not by instructions.

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

template <typename S, typename D>
__global__ void cast(const S* x, D* y, long long n) {
    const long long stride = grid_stride();
    for (long long i = grid_first(); i < n; i += stride) {
        y[i] = narrow_from_float<D>(widen_to_float<S>(x[i]));
    }
}

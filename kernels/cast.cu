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

template <typename S, typename D>
__global__ void cast(const S* x, D* y, long long n) {
    const long long stride = grid_stride();
    for (long long i = grid_first(); i < n; i += stride) {
        y[i] = Num<D>::store((float)Num<S>::load(x[i]));
    }
}

// Shared by every kernel file: storage types, 16-byte packs and math overloads.
//
// Included with #include "common.cuh". CuPy keys its compile cache on the
// source text only, so gpubp never hands NVRTC a file that includes another:
// kernel_catalog.kernel_source() inlines this header into each family's text,
// and the cache key covers it. nvcc (CI, hooks) resolves the include normally.
// No CUDA headers either: NVRTC may run without the toolkit's headers.
#pragma once

// -- storage types ------------------------------------------------------------
// float16 as raw bits with PTX conversions, so <cuda_fp16.h> is not needed.
struct alignas(2) half_t {
    unsigned short bits;
};

// Num<T>::acc is the arithmetic type of storage type T; load/store convert.
template <typename T>
struct Num;

template <>
struct Num<float> {
    typedef float acc;
    static __device__ __forceinline__ float load(float x) { return x; }
    static __device__ __forceinline__ float store(float x) { return x; }
};

template <>
struct Num<double> {
    typedef double acc;
    static __device__ __forceinline__ double load(double x) { return x; }
    static __device__ __forceinline__ double store(double x) { return x; }
};

template <>
struct Num<half_t> {
    typedef float acc;
    static __device__ __forceinline__ float load(half_t h) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
        return f;
    }
    static __device__ __forceinline__ half_t store(float f) {
        half_t h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
        return h;
    }
};

// bfloat16 as raw bits (CuPy has no bfloat16 dtype: the arrays are uint16).
// The conversion is bit arithmetic, not cvt.rn.bf16.f32 (sm_80+ only, and its
// NaN is canonical): round to nearest even, as ml_dtypes (the CPU's bfloat16)
// rounds, and NaN stays a quiet NaN of the same sign.
struct alignas(2) bf16_t {
    unsigned short bits;
};

template <>
struct Num<bf16_t> {
    typedef float acc;
    static __device__ __forceinline__ float load(bf16_t h) { return __uint_as_float(((unsigned int)h.bits) << 16); }
    static __device__ __forceinline__ bf16_t store(float f) {
        const unsigned int u = __float_as_uint(f);
        bf16_t h;
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            h.bits = (unsigned short)((u >> 16) | 0x0040u);  // quiet NaN, sign kept
        } else {
            h.bits = (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
        return h;
    }
};

// VEC consecutive elements moved as one 16-byte (or narrower) access.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
};

// -- grid-stride loops: this thread's first index, and the step to its next ----
__device__ __forceinline__ long long grid_first() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_stride() { return (long long)gridDim.x * blockDim.x; }

// -- math in the arithmetic type, by overload ----------------------------------
__device__ __forceinline__ float math_exp(float x) { return expf(x); }
__device__ __forceinline__ double math_exp(double x) { return exp(x); }
__device__ __forceinline__ float math_log(float x) { return logf(x); }
__device__ __forceinline__ double math_log(double x) { return log(x); }
__device__ __forceinline__ float math_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double math_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float math_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double math_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ void math_sincospi(float x, float* s, float* c) { sincospif(x, s, c); }
__device__ __forceinline__ void math_sincospi(double x, double* s, double* c) { sincospi(x, s, c); }
__device__ __forceinline__ float quiet_nan(float) { return __int_as_float(0x7fc00000); }
__device__ __forceinline__ double quiet_nan(double) { return __longlong_as_double(0x7ff8000000000000LL); }
__device__ __forceinline__ float infinity(float) { return __int_as_float(0x7f800000); }
__device__ __forceinline__ double infinity(double) { return __longlong_as_double(0x7ff0000000000000LL); }

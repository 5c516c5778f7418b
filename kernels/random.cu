// Counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11), used for
// uniform and normal samples and for inverted-dropout masks.
//
// Every value is a pure function of (seed, offset, index): counter =
// (index / per-call values, offset) and key = seed. So the generator's whole
// state is the pair (seed, offset); each launch uses one offset and the host
// advances it by one. Masks are reproducible and the state is JSON-friendly.
//
// In a launch captured into a CUDA graph the pair cannot be a kernel argument
// (a replay would repeat the capture's masks): then `replayed` points at the
// {seed, offset} words that the host writes before each replay, and the
// by-value pair is ignored.
//
// NumPy twin: gpubp/backends/philox.py computes the same bits on the CPU; the
// GPU tests compare the two exactly. The Philox function is __host__ __device__
// so that a host-only test program can check it against the published known
// answers without a GPU.
//
// T is the storage type (half_t, float, double). Shared types and math:
// common.cuh.

#include "common.cuh"

struct Words {
    unsigned int w[4];
};

__host__ __device__ __forceinline__ unsigned int mul_hi(unsigned int a, unsigned int b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return (unsigned int)(((unsigned long long)a * b) >> 32);
#endif
}

// Philox4x32 with 10 rounds: counter c0..c3, key k0 k1 -> four random words.
__host__ __device__ __forceinline__ Words philox4x32_10(unsigned int c0, unsigned int c1, unsigned int c2,
                                                        unsigned int c3, unsigned int k0, unsigned int k1) {
    const unsigned int m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    const unsigned int w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += w0;
            k1 += w1;
        }
        const unsigned int hi0 = mul_hi(m0, c0), lo0 = m0 * c0;
        const unsigned int hi1 = mul_hi(m1, c2), lo1 = m1 * c2;
        const unsigned int n0 = hi1 ^ c1 ^ k0;
        const unsigned int n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
    }
    Words out;
    out.w[0] = c0;
    out.w[1] = c1;
    out.w[2] = c2;
    out.w[3] = c3;
    return out;
}

// The words of counter j at this offset.
__host__ __device__ __forceinline__ Words philox_at(unsigned long long j, unsigned long long seed,
                                                    unsigned long long offset) {
    return philox4x32_10((unsigned int)j, (unsigned int)(j >> 32), (unsigned int)offset, (unsigned int)(offset >> 32),
                         (unsigned int)seed, (unsigned int)(seed >> 32));
}

// The (seed, offset) of this launch.
struct PhiloxState {
    unsigned long long seed, offset;
};

__device__ __forceinline__ PhiloxState philox_state(unsigned long long seed, unsigned long long offset,
                                            const unsigned long long* replayed) {
    PhiloxState s;
    s.seed = replayed ? replayed[0] : seed;
    s.offset = replayed ? replayed[1] : offset;
    return s;
}

// Uniform in [0, 1): 24 bits for float (exact in float), 11 bits for half_t
// (exact in half, so rounding never gives 1), 53 bits from two words for double.
// Values per counter: 4 for half_t and float, 2 for double.
template <typename T>
struct Uniform;

template <>
struct Uniform<float> {
    static constexpr int per = 4;
    static __device__ __forceinline__ float at(const Words& r, int k) { return (float)(r.w[k] >> 8) * 0x1p-24f; }
};

template <>
struct Uniform<half_t> {
    static constexpr int per = 4;
    static __device__ __forceinline__ float at(const Words& r, int k) {
        return (float)(r.w[k] >> 21) * 0x1p-11f;
    }
};

template <>
struct Uniform<double> {
    static constexpr int per = 2;
    static __device__ __forceinline__ double at(const Words& r, int k) {
        const unsigned long long a = r.w[2 * k] >> 5, b = r.w[2 * k + 1] >> 6;
        return (double)(a * 67108864ull + b) * 0x1p-53;
    }
};

// out[i] = low + u * (high - low), as the twin computes it.
template <typename T>
__global__ void uniform(T* out, long long n, unsigned long long seed, unsigned long long offset,
                        const unsigned long long* replayed, typename Num<T>::acc low, typename Num<T>::acc high) {
    const PhiloxState rs = philox_state(seed, offset, replayed);
    const int per = Uniform<T>::per;
    const long long counters = (n + per - 1) / per;
    const long long stride = grid_stride();
    for (long long j = grid_first(); j < counters; j += stride) {
        const Words r = philox_at((unsigned long long)j, rs.seed, rs.offset);
#pragma unroll
        for (int k = 0; k < per; ++k) {
            const long long i = j * per + k;
            if (i < n) out[i] = Num<T>::store(Uniform<T>::at(r, k) * (high - low) + low);
        }
    }
}

// Standard normal samples by Box-Muller on pairs (u1, u2), u1 taken in (0, 1]
// as 1 - u so that log never sees 0. half_t draws float uniforms (11 bits would
// cap |z| near 3.9).
template <typename T>
__global__ void normal(T* out, long long n, unsigned long long seed, unsigned long long offset,
                       const unsigned long long* replayed) {
    typedef typename Num<T>::acc A;
    const PhiloxState rs = philox_state(seed, offset, replayed);
    typedef Uniform<A> U;
    const int per = U::per;
    const long long counters = (n + per - 1) / per;
    const long long stride = grid_stride();
    for (long long j = grid_first(); j < counters; j += stride) {
        const Words r = philox_at((unsigned long long)j, rs.seed, rs.offset);
#pragma unroll
        for (int k = 0; k < per; k += 2) {
            const A u1 = A(1) - U::at(r, k);
            const A u2 = U::at(r, k + 1);
            const A radius = math_sqrt(A(-2) * math_log(u1));
            A s, c;
            math_sincospi(A(2) * u2, &s, &c);
            const long long i = j * per + k;
            if (i < n) out[i] = Num<T>::store(radius * c);
            if (i + 1 < n) out[i + 1] = Num<T>::store(radius * s);
        }
    }
}

// Inverted dropout mask: mask[i] = scale where the 24-bit draw (word >> 8) is at
// least threshold = ceil(p * 2^24), else 0; so P(keep) = 1 - p up to 2^-24 and
// the comparison is exact integer arithmetic, identical in the NumPy twin.
// Four values per counter for every T.
template <typename T>
__global__ void dropout_mask(T* mask, long long n, unsigned long long seed, unsigned long long offset,
                             const unsigned long long* replayed, unsigned int threshold, typename Num<T>::acc scale) {
    typedef typename Num<T>::acc A;
    const PhiloxState rs = philox_state(seed, offset, replayed);
    const long long counters = (n + 3) / 4;
    const long long stride = grid_stride();
    const T kept = Num<T>::store(scale);
    const T dropped = Num<T>::store(A(0));
    for (long long j = grid_first(); j < counters; j += stride) {
        const Words r = philox_at((unsigned long long)j, rs.seed, rs.offset);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const long long i = j * 4 + k;
            if (i < n) mask[i] = (r.w[k] >> 8) >= threshold ? kept : dropped;
        }
    }
}

// Dropout applied to x: out = x * mask, where mask is what dropout_mask draws
// at this (seed, offset), rounded once to T (as the twin's x * mask). The
// forward pass applies it to the input, the backward pass to the gradient
// with the same (seed, offset): the mask itself is never stored.
template <typename T>
__global__ void dropout_apply(const T* x, T* out, long long n, unsigned long long seed, unsigned long long offset,
                              const unsigned long long* replayed, unsigned int threshold, typename Num<T>::acc scale) {
    typedef typename Num<T>::acc A;
    const PhiloxState rs = philox_state(seed, offset, replayed);
    const long long counters = (n + 3) / 4;
    const long long stride = grid_stride();
    const A kept = Num<T>::load(Num<T>::store(scale));  // the scale as the mask stores it
    for (long long j = grid_first(); j < counters; j += stride) {
        const Words r = philox_at((unsigned long long)j, rs.seed, rs.offset);
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            const long long i = j * 4 + k;
            if (i < n) out[i] = Num<T>::store(Num<T>::load(x[i]) * ((r.w[k] >> 8) >= threshold ? kept : A(0)));
        }
    }
}

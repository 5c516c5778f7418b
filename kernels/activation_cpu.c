/* CPU kernels for the sigmoid steps, in one pass over memory.
 *
 * NumPy computes σ(z + b) in four passes (−(z + b), exp, +1, 1/x) and σ′ ⊙ g in
 * three, each over the whole array; these loops do each in one, and GCC turns
 * them into SIMD code (AVX2 + FMA where the CPU has it, chosen at load time by
 * target_clones; SSE2 otherwise). Loaded by gpubp/backends/cpu_kernels.py with
 * ctypes; their NumPy twins, and test oracles, are Backend.bias_activation,
 * Backend.sigmoid and Backend.sigmoid_backward in gpubp/backends/base.py.
 *
 * Compiled with -fno-trapping-math (so the clamps below become branch-free
 * min/max/select) and without -ffast-math: NaN and ±inf keep their meaning.
 * No loop is restrict-qualified: the forward runs in place (out == z).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define GPUBP_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define GPUBP_CLONES
#endif

/* e^t for t in [−87, 88] (no overflow, no denormals), within 2 ulp: t = n·ln2 + r
 * with |r| ≤ ln2/2, e^r by Cephes' degree-7 polynomial, 2^n built in the exponent
 * bits. Adding 1.5·2^23 rounds t·log2(e) to the integer n and leaves n in the low
 * mantissa bits, which avoids a float→int conversion and floor() (SSE4.1). */
static inline float exp_in_range(float t) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f; /* ln2 split so n·ln2_hi is exact */
    const float round_shift = 12582912.0f;                       /* 1.5 · 2^23 */
    float shifted = t * log2e + round_shift;
    uint32_t shifted_bits;
    memcpy(&shifted_bits, &shifted, sizeof shifted_bits);
    float n = shifted - round_shift;
    float r = t - n * ln2_hi;
    r = r - n * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* n + 127 in the exponent field; shifted_bits − 0x4B400000 is n (two's complement). */
    uint32_t scale_bits = (shifted_bits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &scale_bits, sizeof scale);
    return p * scale;
}

/* σ(z) from t = −z: 1 / (1 + e^t). Below t = −87, e^t < 2^−125 and σ rounds to 1,
 * which the clamp gives; above t = 88, σ < 2^−126 is flushed to 0 (NumPy returns a
 * denormal there: the difference is below 6.1e−39). NaN passes through the clamps
 * (a comparison with NaN is false) and the arithmetic. */
static inline float sigmoid_of_negated(float t) {
    float clamped = t < -87.0f ? -87.0f : t;
    clamped = clamped > 88.0f ? 88.0f : clamped;
    float y = 1.0f / (1.0f + exp_in_range(clamped));
    return t > 88.0f ? 0.0f : y;
}

/* out = σ(z) over n contiguous values; out may be z. */
GPUBP_CLONES
void gpubp_sigmoid_f32(const float *z, float *out, ptrdiff_t n) {
#pragma GCC ivdep
    for (ptrdiff_t i = 0; i < n; ++i) out[i] = sigmoid_of_negated(-z[i]);
}

/* out = σ(z + bias) for a C-contiguous rows × cols matrix z and a row vector bias
 * of cols values (the fused Linear layer's forward); out may be z. */
GPUBP_CLONES
void gpubp_bias_sigmoid_f32(const float *z, const float *bias, float *out, ptrdiff_t rows, ptrdiff_t cols) {
    for (ptrdiff_t row = 0; row < rows; ++row) {
        const float *z_row = z + row * cols;
        float *out_row = out + row * cols;
#pragma GCC ivdep
        for (ptrdiff_t col = 0; col < cols; ++col) out_row[col] = sigmoid_of_negated(-(z_row[col] + bias[col]));
    }
}

/* out = g ⊙ y ⊙ (1 − y) over n contiguous values, from the saved output y = σ(z);
 * out may be g. */
GPUBP_CLONES
void gpubp_sigmoid_backward_f32(const float *g, const float *y, float *out, ptrdiff_t n) {
#pragma GCC ivdep
    for (ptrdiff_t i = 0; i < n; ++i) out[i] = g[i] * (y[i] * (1.0f - y[i]));
}

// Fused softmax + cross-entropy, forward and backward, and the running
// metrics of a classification batch.
//
// NumPy twins: Backend.softmax_cross_entropy, .softmax_cross_entropy_backward
// and .accumulate_metrics in gpubp/backends/base.py.
//
// Forward: one warp per row reads the logits once with an online max/sum
// (the running sum is rescaled whenever the maximum grows, so exp never
// overflows), then writes softmax = e^(x - max) / sum and the row's loss
// log(sum) - (x[label] - max). The last block to finish (a ticket) averages
// the rows' losses in row order, in double, so the mean loss comes out of the
// same launch and does not depend on block order. An out-of-range label does
// not stop the device: it sets a device-side error flag (checked by the host
// when it next synchronises anyway) and makes that row's loss NaN.
//
// Backward: one pass over the saved probabilities, (softmax - onehot) * g / N.
//
// T is the storage type (half_t, float, double), L the label type (int or
// long long). Shared types and math: common.cuh.

#include "common.cuh"

// e^(a - b) for a <= b, where a = -inf contributes 0 even when b is -inf too
// (a row whose entries so far are all -inf must not turn its sum into NaN).
template <typename A>
__device__ __forceinline__ A exp_below(A a, A b) {
    return a == -infinity(a) ? A(0) : math_exp(a - b);
}

// Merges the running (max m, sum s of e^(x - m)) with another such pair.
// NaN in either sum stays NaN, so a NaN logit makes its row NaN as in NumPy.
template <typename A>
__device__ __forceinline__ void merge(A& m, A& s, A m2, A s2) {
    if (m2 > m) {
        s = s * exp_below(m, m2) + s2;
        m = m2;
    } else {
        s = s + s2 * exp_below(m2, m);
    }
}

// Sums a value over the block's threads (blockDim.x <= 1024, a multiple of 32)
// in a fixed order; thread 0 gets the total.
template <typename A>
__device__ __forceinline__ A block_sum(A value) {
    __shared__ A warp_sums[32];
    const unsigned full = 0xffffffffu;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(full, value, offset);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_sums[warp] = value;
    __syncthreads();
    A total = A(0);
    if (threadIdx.x == 0) {
        for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += warp_sums[w];
    }
    __syncthreads();  // warp_sums may be reused by the caller's next block_sum
    return total;
}

// row_loss has the arithmetic type (float for half_t and float); loss is the
// mean, one element of T. error holds {flag, first bad label, classes} and is
// only written when a label is bad. ticket is a device word that is 0 between
// launches (the last block resets it); gpubp queues a device's work on one
// stream, so launches never share it at the same time.
template <typename T, typename L>
__global__ void softmax_xent_fwd(const T* logits, const L* labels, T* probs, typename Num<T>::acc* row_loss, T* loss,
                                 unsigned long long* error, unsigned int* ticket, long long rows, int classes) {
    typedef typename Num<T>::acc A;
    const unsigned full = 0xffffffffu;
    const int lane = threadIdx.x & 31;
    const long long warp = (grid_first()) >> 5;
    const long long warps = grid_stride() >> 5;
    // r is the same for all lanes of a warp, so the shuffles below see a full warp.
    for (long long r = warp; r < rows; r += warps) {
        const T* x = logits + r * classes;
        A m = -infinity(A(0));
        A s = A(0);
        for (int c = lane; c < classes; c += 32) {
            merge(m, s, Num<T>::load(x[c]), A(1));
        }
#pragma unroll
        for (int offset = 16; offset > 0; offset >>= 1) {
            const A m2 = __shfl_xor_sync(full, m, offset);
            const A s2 = __shfl_xor_sync(full, s, offset);
            merge(m, s, m2, s2);
        }
        // A +inf logit gives inf - inf = NaN in the twin's shifted logits.
        if (m == infinity(m)) s = quiet_nan(s);
        T* p = probs + r * classes;
        for (int c = lane; c < classes; c += 32) {
            p[c] = Num<T>::store(math_exp(Num<T>::load(x[c]) - m) / s);
        }
        if (lane == 0) {
            const L label = labels[r];
            if (label < 0 || label >= classes) {
                row_loss[r] = quiet_nan(A(0));
                if (atomicCAS(error, 0ull, 1ull) == 0ull) {
                    error[1] = (unsigned long long)(long long)label;
                    error[2] = (unsigned long long)classes;
                }
            } else {
                row_loss[r] = math_log(s) - (Num<T>::load(x[label]) - m);
            }
        }
    }
    // The mean, by the last block to finish: every row's loss is written by then.
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    const volatile A* losses = row_loss;  // from L2, not a stale L1 line
    double sum = 0.0;
    for (long long r = threadIdx.x; r < rows; r += blockDim.x) sum += (double)losses[r];
    sum = block_sum(sum);
    if (threadIdx.x == 0) {
        loss[0] = Num<T>::store(A(sum / (double)rows));
        *ticket = 0u;
    }
}

// grad = probs * (g / rows), minus g / rows at each row's label; g is the
// loss's incoming gradient, a one-element device array (never read on the host).
template <typename T, typename L>
__global__ void softmax_xent_bwd(const T* probs, const L* labels, const T* g, T* grad, long long rows,
                                 int classes) {
    typedef typename Num<T>::acc A;
    const A scale = Num<T>::load(g[0]) / A(rows);
    const long long n = rows * classes;
    const long long stride = grid_stride();
    for (long long i = grid_first(); i < n; i += stride) {
        const long long r = i / classes;
        const long long c = i - r * classes;
        A v = Num<T>::load(probs[i]) * scale;
        if (c == (long long)labels[r]) v -= scale;
        grad[i] = Num<T>::store(v);
    }
}

// The running metrics of a training batch, summed on the device (doubles; exact
// counts up to 2^53): totals[0] += loss * rows; totals[1] += the rows whose
// highest logit is at the label (the first maximum, NumPy's argmax; a NaN
// counts as the maximum, as there); totals[2] += 1 (batches); and totals[3],
// while 0, becomes the 1-based number of the first batch whose loss is not
// finite, so the host learns which batch went wrong when it next reads the
// totals instead of after every step. One block.
template <typename T, typename L>
__global__ void accumulate_metrics(const T* logits, const L* labels, const T* loss, double* totals, long long rows,
                                   int classes) {
    typedef typename Num<T>::acc A;
    double correct = 0.0;
    for (long long r = threadIdx.x; r < rows; r += blockDim.x) {
        const T* x = logits + r * classes;
        A best = Num<T>::load(x[0]);
        long long best_index = 0;
        for (int c = 1; c < classes && best == best; ++c) {
            const A v = Num<T>::load(x[c]);
            if (v > best || v != v) {
                best = v;
                best_index = c;
            }
        }
        if (best_index == (long long)labels[r]) correct += 1.0;
    }
    correct = block_sum(correct);
    if (threadIdx.x == 0) {
        const double value = (double)Num<T>::load(loss[0]);
        totals[0] += value * (double)rows;
        totals[1] += correct;
        totals[2] += 1.0;
        if (!(value - value == 0.0) && totals[3] == 0.0) totals[3] = totals[2];  // NaN or ±inf
    }
}

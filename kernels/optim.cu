// Fused optimizer updates: one launch updates every parameter of one dtype
// (up to MAX_TENSORS of them), reading each parameter, its gradient and the
// optimizer's buffers once and writing them back once.
//
// NumPy twins: Backend.sgd_update and Backend.adam_update in
// gpubp/backends/base.py (PyTorch's formulas, in the same order of operations).
//
// The tensors arrive in a TensorTable passed by value (the kernel's argument
// block, as PyTorch's multi_tensor_apply does): their pointers, sizes, and
// each tensor's hyper-parameters as doubles, precomputed on the host exactly as
// the per-tensor formulas need them and rounded to the arithmetic type here. A
// launch captured into a CUDA graph reads the hyper-parameters from device
// memory instead (replay_scalars), which the host rewrites before each replay:
// the learning rate and Adam's bias corrections change every step. The host
// layout of the table is gpubp/backends/kernel_catalog.py (TABLE_*); the table
// and its chunking are tensor_table.cuh.
//
// Stepped by a GradScaler (gpubp/amp), the table also carries found_inf (the
// whole update is skipped, on the device, when it is nonzero) and each tensor's
// device step count, from which SGD decides its first step and Adam computes
// its bias corrections; amp.cu's advance_steps then counts the step.
//
// T is the storage type (half_t, float, double; half_t does its arithmetic in
// float). Shared types and math: common.cuh.

#include "common.cuh"
#include "tensor_table.cuh"

// SGD for one element: d = g + wd*p; with momentum, buf = first ? d : m*buf + (1-dampening)*d
// and d = nesterov ? d + m*buf : buf; then p -= lr*d. Returns the new (p, buf).
template <typename A>
__device__ __forceinline__ void sgd_step(A& p, A g, A& buf, bool has_buffer, A lr, A momentum, A keep, A weight_decay,
                                         bool nesterov, bool first_step) {
    A d = g;
    if (weight_decay != A(0)) d = d + weight_decay * p;
    if (has_buffer) {
        buf = first_step ? d : buf * momentum + keep * d;
        d = nesterov ? d + momentum * buf : buf;
    }
    p = p - lr * d;
}


// Per-tensor scalars: lr, momentum, keep (1 - dampening), weight_decay,
// nesterov (0/1), first_step (0/1: the buffer is uninitialised, never read it).
// With a device step count, first_step is whether that count is still 0.
template <typename T>
__global__ void sgd_multi(TensorTable table) {
    typedef typename Num<T>::acc A;
    constexpr int VEC = 16 / sizeof(T);
    typedef Pack<T, VEC> P;
    if (step_skipped(table)) return;
    const long long chunks = table.chunk_begin[table.count];
    for (long long chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
        const int t = tensor_of(table, chunk);
        const double* s = scalars_of(table, t);
        const A lr = A(s[0]), momentum = A(s[1]), keep = A(s[2]), weight_decay = A(s[3]);
        const bool nesterov = s[4] != 0.0;
        const bool first_step =
            table.step[t] ? *reinterpret_cast<const double*>(table.step[t]) == 0.0 : s[5] != 0.0;
        T* param = reinterpret_cast<T*>(table.param[t]);
        const T* grad = reinterpret_cast<const T*>(table.grad[t]);
        T* buf = reinterpret_cast<T*>(table.state1[t]);
        const bool has_buffer = buf != nullptr;
        const long long begin = (chunk - table.chunk_begin[t]) * CHUNK;
        const long long end = begin + CHUNK < table.size[t] ? begin + CHUNK : table.size[t];
        const bool aligned = ((table.param[t] | table.grad[t] | table.state1[t]) & 15) == 0;
        for_chunk<VEC>(begin, end, aligned, [&](long long i, int width) {
            if (width == VEC) {
                P pv = *reinterpret_cast<P*>(param + i);
                const P gv = *reinterpret_cast<const P*>(grad + i);
                P bv;
                if (has_buffer && !first_step) bv = *reinterpret_cast<P*>(buf + i);
#pragma unroll
                for (int k = 0; k < VEC; ++k) {
                    A p = Num<T>::load(pv.v[k]);
                    A b = (has_buffer && !first_step) ? Num<T>::load(bv.v[k]) : A(0);
                    sgd_step(p, Num<T>::load(gv.v[k]), b, has_buffer, lr, momentum, keep, weight_decay, nesterov,
                             first_step);
                    pv.v[k] = Num<T>::store(p);
                    bv.v[k] = Num<T>::store(b);
                }
                *reinterpret_cast<P*>(param + i) = pv;
                if (has_buffer) *reinterpret_cast<P*>(buf + i) = bv;
            } else {
                A p = Num<T>::load(param[i]);
                A b = (has_buffer && !first_step) ? Num<T>::load(buf[i]) : A(0);
                sgd_step(p, Num<T>::load(grad[i]), b, has_buffer, lr, momentum, keep, weight_decay, nesterov,
                         first_step);
                param[i] = Num<T>::store(p);
                if (has_buffer) buf[i] = Num<T>::store(b);
            }
        });
    }
}

// Adam for one element. decay = 1 - lr*wd (AdamW) is applied to p first;
// Adam's L2 term wd*p is added to g instead. step_size = lr / (1 - beta1^t),
// root_correction = sqrt(1 - beta2^t).
template <typename A>
__device__ __forceinline__ void adam_step(A& p, A g, A& m, A& v, A beta1, A beta2, A one_minus_beta1,
                                          A one_minus_beta2, A eps, A weight_decay, bool decoupled, A decay,
                                          A step_size, A root_correction) {
    if (weight_decay != A(0)) {
        if (decoupled) {
            p = p * decay;
        } else {
            g = g + weight_decay * p;
        }
    }
    m = m * beta1 + one_minus_beta1 * g;
    v = v * beta2 + one_minus_beta2 * (g * g);
    const A denom = math_sqrt(v) / root_correction + eps;
    p = p - (m / denom) * step_size;
}


// Per-tensor scalars: beta1, beta2, 1 - beta1, 1 - beta2, eps, weight_decay,
// decoupled (0/1), decay (1 - lr*wd), step_size (lr / (1 - beta1^t)),
// root_correction (sqrt(1 - beta2^t)). With a device step count the host cannot
// know t: slot 8 holds lr instead, and both corrections are worked out here from
// t = count + 1 in double, as the host works them out in Python.
template <typename T>
__global__ void adam_multi(TensorTable table) {
    typedef typename Num<T>::acc A;
    constexpr int VEC = 16 / sizeof(T);
    typedef Pack<T, VEC> P;
    if (step_skipped(table)) return;
    const long long chunks = table.chunk_begin[table.count];
    for (long long chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
        const int t = tensor_of(table, chunk);
        const double* s = scalars_of(table, t);
        const A beta1 = A(s[0]), beta2 = A(s[1]), one_minus_beta1 = A(s[2]), one_minus_beta2 = A(s[3]);
        const A eps = A(s[4]), weight_decay = A(s[5]), decay = A(s[7]);
        A step_size = A(s[8]), root_correction = A(s[9]);
        if (table.step[t]) {
            const double next = *reinterpret_cast<const double*>(table.step[t]) + 1.0;
            step_size = A(s[8] / (1.0 - pow(s[0], next)));
            root_correction = A(sqrt(1.0 - pow(s[1], next)));
        }
        const bool decoupled = s[6] != 0.0;
        T* param = reinterpret_cast<T*>(table.param[t]);
        const T* grad = reinterpret_cast<const T*>(table.grad[t]);
        T* exp_avg = reinterpret_cast<T*>(table.state1[t]);
        T* exp_avg_sq = reinterpret_cast<T*>(table.state2[t]);
        const long long begin = (chunk - table.chunk_begin[t]) * CHUNK;
        const long long end = begin + CHUNK < table.size[t] ? begin + CHUNK : table.size[t];
        const bool aligned = ((table.param[t] | table.grad[t] | table.state1[t] | table.state2[t]) & 15) == 0;
        for_chunk<VEC>(begin, end, aligned, [&](long long i, int width) {
            if (width == VEC) {
                P pv = *reinterpret_cast<P*>(param + i);
                const P gv = *reinterpret_cast<const P*>(grad + i);
                P mv = *reinterpret_cast<P*>(exp_avg + i);
                P vv = *reinterpret_cast<P*>(exp_avg_sq + i);
#pragma unroll
                for (int k = 0; k < VEC; ++k) {
                    A p = Num<T>::load(pv.v[k]);
                    A m = Num<T>::load(mv.v[k]);
                    A v = Num<T>::load(vv.v[k]);
                    adam_step(p, Num<T>::load(gv.v[k]), m, v, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                              weight_decay, decoupled, decay, step_size, root_correction);
                    pv.v[k] = Num<T>::store(p);
                    mv.v[k] = Num<T>::store(m);
                    vv.v[k] = Num<T>::store(v);
                }
                *reinterpret_cast<P*>(param + i) = pv;
                *reinterpret_cast<P*>(exp_avg + i) = mv;
                *reinterpret_cast<P*>(exp_avg_sq + i) = vv;
            } else {
                A p = Num<T>::load(param[i]);
                A m = Num<T>::load(exp_avg[i]);
                A v = Num<T>::load(exp_avg_sq[i]);
                adam_step(p, Num<T>::load(grad[i]), m, v, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                          weight_decay, decoupled, decay, step_size, root_correction);
                param[i] = Num<T>::store(p);
                exp_avg[i] = Num<T>::store(m);
                exp_avg_sq[i] = Num<T>::store(v);
            }
        });
    }
}

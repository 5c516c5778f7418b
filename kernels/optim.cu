// Fused optimizer updates: one kernel per parameter tensor reads the parameter,
// its gradient and the optimizer's buffers once and writes them back once.
//
// NumPy twins: Backend.sgd_update and Backend.adam_update in
// gpubp/backends/base.py (PyTorch's formulas, in the same order of operations).
//
// T is the storage type (half_t, float, double; half_t does its arithmetic in
// float), VEC the elements per 16-byte access. Scalars arrive in the arithmetic
// type, precomputed on the host (no device value is ever read back).
// Shared types and math: common.cuh.

#include "common.cuh"

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

// buf is null when momentum is 0. keep = 1 - dampening.
template <typename T, int VEC>
__global__ void sgd_update(T* param, const T* grad, T* buf, long long n, typename Num<T>::acc lr,
                           typename Num<T>::acc momentum, typename Num<T>::acc keep, typename Num<T>::acc weight_decay,
                           int nesterov, int first_step) {
    typedef typename Num<T>::acc A;
    typedef Pack<T, VEC> P;
    const bool has_buffer = buf != nullptr;
    const long long nvec = n / VEC;
    const long long first = grid_first(), stride = grid_stride();
    for (long long i = first; i < nvec; i += stride) {
        P pv = reinterpret_cast<P*>(param)[i];
        const P gv = reinterpret_cast<const P*>(grad)[i];
        P bv;
        // On the first step the buffer is uninitialised memory: never read it.
        if (has_buffer && !first_step) bv = reinterpret_cast<P*>(buf)[i];
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            A p = Num<T>::load(pv.v[k]);
            A b = (has_buffer && !first_step) ? Num<T>::load(bv.v[k]) : A(0);
            sgd_step(p, Num<T>::load(gv.v[k]), b, has_buffer, lr, momentum, keep, weight_decay, nesterov != 0,
                     first_step != 0);
            pv.v[k] = Num<T>::store(p);
            bv.v[k] = Num<T>::store(b);
        }
        reinterpret_cast<P*>(param)[i] = pv;
        if (has_buffer) reinterpret_cast<P*>(buf)[i] = bv;
    }
    const long long t = nvec * VEC + first;
    if (t < n) {
        A p = Num<T>::load(param[t]);
        A b = (has_buffer && !first_step) ? Num<T>::load(buf[t]) : A(0);
        sgd_step(p, Num<T>::load(grad[t]), b, has_buffer, lr, momentum, keep, weight_decay, nesterov != 0,
                 first_step != 0);
        param[t] = Num<T>::store(p);
        if (has_buffer) buf[t] = Num<T>::store(b);
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

template <typename T, int VEC>
__global__ void adam_update(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, long long n,
                            typename Num<T>::acc beta1, typename Num<T>::acc beta2,
                            typename Num<T>::acc one_minus_beta1, typename Num<T>::acc one_minus_beta2,
                            typename Num<T>::acc eps, typename Num<T>::acc weight_decay, int decoupled,
                            typename Num<T>::acc decay, typename Num<T>::acc step_size,
                            typename Num<T>::acc root_correction) {
    typedef typename Num<T>::acc A;
    typedef Pack<T, VEC> P;
    const long long nvec = n / VEC;
    const long long first = grid_first(), stride = grid_stride();
    for (long long i = first; i < nvec; i += stride) {
        P pv = reinterpret_cast<P*>(param)[i];
        const P gv = reinterpret_cast<const P*>(grad)[i];
        P mv = reinterpret_cast<P*>(exp_avg)[i];
        P vv = reinterpret_cast<P*>(exp_avg_sq)[i];
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            A p = Num<T>::load(pv.v[k]);
            A m = Num<T>::load(mv.v[k]);
            A v = Num<T>::load(vv.v[k]);
            adam_step(p, Num<T>::load(gv.v[k]), m, v, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                      weight_decay, decoupled != 0, decay, step_size, root_correction);
            pv.v[k] = Num<T>::store(p);
            mv.v[k] = Num<T>::store(m);
            vv.v[k] = Num<T>::store(v);
        }
        reinterpret_cast<P*>(param)[i] = pv;
        reinterpret_cast<P*>(exp_avg)[i] = mv;
        reinterpret_cast<P*>(exp_avg_sq)[i] = vv;
    }
    const long long t = nvec * VEC + first;
    if (t < n) {
        A p = Num<T>::load(param[t]);
        A m = Num<T>::load(exp_avg[t]);
        A v = Num<T>::load(exp_avg_sq[t]);
        adam_step(p, Num<T>::load(grad[t]), m, v, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay,
                  decoupled != 0, decay, step_size, root_correction);
        param[t] = Num<T>::store(p);
        exp_avg[t] = Num<T>::store(m);
        exp_avg_sq[t] = Num<T>::store(v);
    }
}

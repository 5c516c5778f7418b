/* CPU kernels for the optimizer updates, in one pass over memory.
 *
 * NumPy needs a pass per arithmetic step (SGD with momentum: five; Adam: ten),
 * each reading and writing a parameter-sized array; these loops read each of
 * param, grad and the state buffers once and write them once. Per-element
 * formulas and their order are those of kernels/optim.cu (PyTorch's), and the
 * scalars come precomputed the same way. Loaded by gpubp/backends/cpu_kernels.py;
 * their NumPy twins are Backend.sgd_update and Backend.adam_update in
 * gpubp/backends/base.py. Built as activation_cpu.c is (see its header).
 */
#include <math.h>
#include <stddef.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define GPUBP_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define GPUBP_CLONES
#endif

/* SGD: d = g + weight_decay·p; with a momentum buffer (buf not NULL),
 * buf = first_step ? d : momentum·buf + keep·d (keep = 1 − dampening) and
 * d = nesterov ? d + momentum·buf : buf; then p −= lr·d. On the first step buf
 * is uninitialised memory and is never read. The flags are constants in each
 * call below, so every combination compiles to its own branch-free loop; the
 * weight-decay term is left out, not multiplied by 0, so an inf in p stays inf. */
static inline void sgd_loop(float *param, const float *grad, float *buf, ptrdiff_t n, float lr, float momentum,
                            float keep, float weight_decay, int has_decay, int has_buffer, int nesterov,
                            int first_step) {
#pragma GCC ivdep
    for (ptrdiff_t i = 0; i < n; ++i) {
        float d = has_decay ? grad[i] + weight_decay * param[i] : grad[i];
        if (has_buffer) {
            float b = first_step ? d : buf[i] * momentum + keep * d;
            buf[i] = b;
            d = nesterov ? d + momentum * b : b;
        }
        param[i] -= lr * d;
    }
}

GPUBP_CLONES
void gpubp_sgd_update_f32(float *param, const float *grad, float *buf, ptrdiff_t n, float lr, float momentum,
                          float keep, float weight_decay, int nesterov, int first_step) {
    const int has_decay = weight_decay != 0.0f;
    if (buf == NULL) {
        if (has_decay) sgd_loop(param, grad, NULL, n, lr, 0.0f, 0.0f, weight_decay, 1, 0, 0, 0);
        else sgd_loop(param, grad, NULL, n, lr, 0.0f, 0.0f, 0.0f, 0, 0, 0, 0);
    } else if (first_step) {
        if (nesterov) sgd_loop(param, grad, buf, n, lr, momentum, keep, weight_decay, has_decay, 1, 1, 1);
        else sgd_loop(param, grad, buf, n, lr, momentum, keep, weight_decay, has_decay, 1, 0, 1);
    } else if (nesterov) {
        sgd_loop(param, grad, buf, n, lr, momentum, keep, weight_decay, has_decay, 1, 1, 0);
    } else {
        sgd_loop(param, grad, buf, n, lr, momentum, keep, weight_decay, has_decay, 1, 0, 0);
    }
}

/* Adam (decoupled = 0: L2 term weight_decay·p added to g) or AdamW (decoupled = 1:
 * p scaled by decay = 1 − lr·weight_decay first), with step_size = lr / (1 − β1^t)
 * and root_correction = √(1 − β2^t):
 * m = β1·m + (1 − β1)·g, v = β2·v + (1 − β2)·g², p −= m / (√v / root_correction + eps) · step_size.
 * mode: 0 no weight decay, 1 Adam's L2 term, 2 AdamW's decay (constants, as in sgd_loop). */
static inline void adam_loop(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, ptrdiff_t n,
                             float beta1, float beta2, float one_minus_beta1, float one_minus_beta2, float eps,
                             float weight_decay, int mode, float decay, float step_size, float root_correction) {
#pragma GCC ivdep
    for (ptrdiff_t i = 0; i < n; ++i) {
        float p = mode == 2 ? param[i] * decay : param[i];
        float g = mode == 1 ? grad[i] + weight_decay * p : grad[i];
        float m = exp_avg[i] * beta1 + one_minus_beta1 * g;
        float v = exp_avg_sq[i] * beta2 + one_minus_beta2 * (g * g);
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        param[i] = p - (m / (sqrtf(v) / root_correction + eps)) * step_size;
    }
}

GPUBP_CLONES
void gpubp_adam_update_f32(float *param, const float *grad, float *exp_avg, float *exp_avg_sq, ptrdiff_t n,
                           float beta1, float beta2, float one_minus_beta1, float one_minus_beta2, float eps,
                           float weight_decay, int decoupled, float decay, float step_size, float root_correction) {
    if (weight_decay == 0.0f)
        adam_loop(param, grad, exp_avg, exp_avg_sq, n, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, 0.0f, 0,
                  1.0f, step_size, root_correction);
    else if (decoupled)
        adam_loop(param, grad, exp_avg, exp_avg_sq, n, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                  weight_decay, 2, decay, step_size, root_correction);
    else
        adam_loop(param, grad, exp_avg, exp_avg_sq, n, beta1, beta2, one_minus_beta1, one_minus_beta2, eps,
                  weight_decay, 1, decay, step_size, root_correction);
}

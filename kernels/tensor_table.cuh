// The multi-tensor launch shared by optim.cu and amp.cu: a TensorTable passed by
// value (the kernel's argument block, as PyTorch's multi_tensor_apply does) lists
// up to MAX_TENSORS tensors of one dtype, split into chunks of CHUNK elements;
// block b takes chunks b, b + gridDim.x, ...
//
// Included after common.cuh (kernel_catalog.kernel_source inlines one level of
// includes, so this header includes nothing itself). The host layout of the
// table is gpubp/backends/kernel_catalog.py (TABLE_*), checked against this
// struct by tests/backends/test_kernel_compile.py.
#pragma once

#define MAX_TENSORS 16
#define MAX_SCALARS 10
#define CHUNK 4096  // elements: a multiple of 256 threads x 16-byte vectors of every dtype

struct TensorTable {
    long long count;                          // tensors in this launch
    long long chunk_begin[MAX_TENSORS + 1];   // tensor t owns chunks [chunk_begin[t], chunk_begin[t + 1])
    long long size[MAX_TENSORS];
    unsigned long long param[MAX_TENSORS];
    unsigned long long grad[MAX_TENSORS];
    unsigned long long state1[MAX_TENSORS];   // SGD's momentum buffer (0: none), Adam's exp_avg
    unsigned long long state2[MAX_TENSORS];   // Adam's exp_avg_sq
    // 0, or a device double: the tensor's count of applied updates, read in place
    // of the host's (a GradScaler may skip a step on the device, so only the
    // device knows it). SGD: 0 means the momentum buffer holds nothing yet.
    unsigned long long step[MAX_TENSORS];
    // 0, or a device float: the GradScaler's found_inf. The optimizer kernels
    // write nothing when it is nonzero; amp_unscale sets it to 1 on inf or NaN.
    unsigned long long found_inf;
    unsigned long long replay_scalars;        // 0, or a device array shaped like `scalars`
    double scalars[MAX_TENSORS * MAX_SCALARS];
};

// The tensor that owns a chunk, and that tensor's hyper-parameters.
__device__ __forceinline__ int tensor_of(const TensorTable& table, long long chunk) {
    int t = 0;
    while (chunk >= table.chunk_begin[t + 1]) ++t;
    return t;
}

__device__ __forceinline__ const double* scalars_of(const TensorTable& table, int t) {
    const double* all =
        table.replay_scalars ? reinterpret_cast<const double*>(table.replay_scalars) : table.scalars;
    return all + t * MAX_SCALARS;
}

// Whether the GradScaler found an inf or NaN gradient: the update is skipped.
__device__ __forceinline__ bool step_skipped(const TensorTable& table) {
    return table.found_inf != 0ULL && *reinterpret_cast<const float*>(table.found_inf) != 0.0f;
}

// Calls body(i, k) for the elements [begin, end) of one chunk: VEC at a time
// (k = VEC) while the tensor's pointers are 16-byte aligned, the rest one by one.
template <int VEC, typename Body>
__device__ __forceinline__ void for_chunk(long long begin, long long end, bool aligned, Body body) {
    long long vector_end = begin;
    if (aligned) {
        vector_end = begin + (end - begin) / VEC * VEC;
        for (long long i = begin + (long long)threadIdx.x * VEC; i < vector_end; i += (long long)blockDim.x * VEC) {
            body(i, VEC);
        }
    }
    for (long long i = vector_end + threadIdx.x; i < end; i += blockDim.x) body(i, 1);
}

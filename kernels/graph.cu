// The values a captured CUDA graph reads from device memory and the host
// rewrites before every replay (learning rates, Adam's bias corrections,
// random-number offsets): one launch copies them from its own argument block.
//
// Kernel arguments are copied when the launch is queued, so the host's buffer
// is free again as soon as the launch call returns, and a replay queued behind
// another can never see the later replay's values (a copy from host memory
// could). No NumPy twin: the host side is gpubp/backends/cuda_graph.py
// (ReplayValues), tested through the graphs that read these values.
// Shared types: common.cuh.

#include "common.cuh"

// N 8-byte words per launch: the block stays under CUDA's 4 KB of kernel arguments.
template <int N>
struct WordBlock {
    long long count;
    unsigned long long words[N];
};

template <int N>
__global__ void write_words(unsigned long long* out, WordBlock<N> block) {
    for (long long i = grid_first(); i < block.count; i += grid_stride()) out[i] = block.words[i];
}

// Just enough CUDA for ggufy's kernels to build as C++ and run on the CPU: the thread and block
// indices (thread-local), shared memory (statics: one block runs at a time), __syncthreads (a
// barrier across the block's threads, which are real threads) and the float intrinsics (plain
// IEEE operations on x86-64 and AArch64; build with -ffp-contract=off so nothing is fused).
#pragma once
#define GGUFY_CUDA_EMULATION 1

#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

typedef unsigned char u8;
typedef unsigned int u32;
typedef int i32;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
inline std::barrier<>* block_barrier = nullptr;

inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }
inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

// Runs `kernel` over a 1-D grid: `block` threads, which take the blocks one after another
// together, meeting at a barrier after each (so shared memory is reused safely).
template <class F>
void launch(unsigned grid, unsigned block, F kernel) {
    blockDim = dim3{block, 1, 1};
    gridDim = dim3{grid, 1, 1};
    std::barrier<> sync(block);
    block_barrier = &sync;
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < block; t++) {
        threads.emplace_back([&, t] {
            threadIdx = dim3{t, 1, 1};
            for (unsigned b = 0; b < grid; b++) {
                blockIdx = dim3{b, 1, 1};
                kernel();
                sync.arrive_and_wait();
            }
        });
    }
    for (auto& th : threads) th.join();
}

// For kernels without __syncthreads or shared memory: the same grid, every thread of every block
// run in turn on the calling thread (much faster than real threads and a barrier).
template <class F>
void launch_independent(unsigned grid, unsigned block, F kernel) {
    blockDim = dim3{block, 1, 1};
    gridDim = dim3{grid, 1, 1};
    for (unsigned b = 0; b < grid; b++) {
        blockIdx = dim3{b, 1, 1};
        for (unsigned t = 0; t < block; t++) {
            threadIdx = dim3{t, 1, 1};
            kernel();
        }
    }
}

// Runs plain CUDA C kernels on the CPU: one OS thread per CUDA thread, blocks one after
// another, a barrier for __syncthreads, `__shared__` as function statics (shared by the
// threads of the running block). Enough for kernels without warp intrinsics or dynamic
// shared memory (src/finetune/kernels.cu); used by tests/cuda_kernels.rs.
#include <math.h>
#include <barrier>
#include <thread>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};
static dim3 blockIdx, gridDim, blockDim;
static thread_local dim3 threadIdx;
static std::barrier<>* emu_barrier = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static

inline void __syncthreads() { emu_barrier->arrive_and_wait(); }

template <class F>
void emu_launch(dim3 grid, dim3 block, F f) {
    gridDim = grid;
    blockDim = block;
    const unsigned int n = block.x * block.y * block.z;
    for (unsigned int z = 0; z < grid.z; z++)
        for (unsigned int y = 0; y < grid.y; y++)
            for (unsigned int x = 0; x < grid.x; x++) {
                blockIdx = dim3{x, y, z};
                std::barrier<> bar(n);
                emu_barrier = &bar;
                std::vector<std::thread> ts;
                for (unsigned int t = 0; t < n; t++)
                    ts.emplace_back([&, t] {
                        threadIdx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                        f();
                    });
                for (auto& th : ts) th.join();
            }
}

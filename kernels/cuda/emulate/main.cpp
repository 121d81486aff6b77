// The CUDA emulation harness: runs one of ggufy's CUDA kernels on the CPU, through cuda_shim.h,
// with the launch geometry the CUDA backend uses. Kernels that synchronize (mat-mul) run their
// block's threads as real threads; the others run each thread in turn. Inputs are raw files DIR/in0, DIR/in1, …;
// outputs go to DIR/out0, DIR/out1. crates/gpu/tests/cuda_emulation.rs builds and drives it.
//
//   emulate KERNEL DIR P0 [P1 [P2]]
#include "cuda_shim.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "../dequantize.cu"
#include "../matmul.cu"
#include "../quantize.cu"

static std::string dir;

static std::vector<u8> input(int i) {
    std::ifstream f(dir + "/in" + std::to_string(i), std::ios::binary);
    return std::vector<u8>(std::istreambuf_iterator<char>(f), {});
}

static void output(int i, const void* data, size_t bytes) {
    std::ofstream f(dir + "/out" + std::to_string(i), std::ios::binary);
    f.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
}

template <class T>
static const T* as(const std::vector<u8>& v) {
    return reinterpret_cast<const T*>(v.data());
}

int main(int argc, char** argv) {
    if (argc < 4) {
        std::fprintf(stderr, "usage: emulate KERNEL DIR P0 [P1 [P2]]\n");
        return 2;
    }
    std::string k = argv[1];
    dir = argv[2];
    u32 p[3] = {0, 0, 0};
    for (int i = 3; i < argc && i < 6; i++) p[i - 3] = static_cast<u32>(std::stoul(argv[i]));
    auto blocks = [](u32 n, u32 per) { return (n + per - 1) / per; };

    if (k.rfind("dequantize_", 0) == 0) {
        u32 n = p[0];
        std::vector<float> y(n);
        auto in0 = input(0), in1 = input(1);
        if (k == "dequantize_q8_0") launch_independent(blocks(n, 256), 256, [&] { dequantize_q8_0(in0.data(), y.data(), n); });
        else if (k == "dequantize_q4_0") launch_independent(blocks(n, 256), 256, [&] { dequantize_q4_0(in0.data(), y.data(), n); });
        else if (k == "dequantize_nf4") launch_independent(blocks(n, 256), 256, [&] { dequantize_nf4(in0.data(), as<float>(in1), y.data(), n); });
        else return 2;
        output(0, y.data(), y.size() * 4);
    } else if (k.rfind("quantize_", 0) == 0) {
        u32 nb = p[0];
        auto x = input(0);
        if (k == "quantize_q8_0") {
            std::vector<u8> q(nb * 34u);
            launch_independent(blocks(nb, 64), 64, [&] { quantize_q8_0(as<float>(x), q.data(), nb); });
            output(0, q.data(), q.size());
        } else if (k == "quantize_q4_0") {
            std::vector<u8> q(nb * 18u);
            launch_independent(blocks(nb, 64), 64, [&] { quantize_q4_0(as<float>(x), q.data(), nb); });
            output(0, q.data(), q.size());
        } else if (k == "quantize_nf4") {
            std::vector<u8> q(nb * 32u);
            std::vector<float> am(nb);
            launch_independent(blocks(nb, 64), 64, [&] { quantize_nf4(as<float>(x), q.data(), am.data(), nb); });
            output(0, q.data(), q.size());
            output(1, am.data(), am.size() * 4);
        } else return 2;
    } else if (k.rfind("matmul_", 0) == 0) {
        u32 rows = p[0], cols = p[1], tokens = p[2];
        std::vector<float> y(static_cast<size_t>(rows) * tokens);
        auto in0 = input(0), in1 = input(1), in2 = input(2);
        u32 grid = rows * tokens;
        if (k == "matmul_q8_0") launch(grid, 256, [&] { matmul_q8_0(in0.data(), as<float>(in1), y.data(), rows, cols); });
        else if (k == "matmul_q4_0") launch(grid, 256, [&] { matmul_q4_0(in0.data(), as<float>(in1), y.data(), rows, cols); });
        else if (k == "matmul_nf4") launch(grid, 256, [&] { matmul_nf4(in0.data(), as<float>(in1), as<float>(in2), y.data(), rows, cols); });
        else return 2;
        output(0, y.data(), y.size() * 4);
    } else {
        std::fprintf(stderr, "unknown kernel %s\n", k.c_str());
        return 2;
    }
    return 0;
}

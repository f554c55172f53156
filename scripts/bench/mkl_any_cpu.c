// Lets the MKL inside PyTorch's wheels run its fastest kernels on any x86 CPU.
//
// MKL picks its kernels by CPU vendor as well as by instruction set: on an AMD CPU with AVX-512
// it runs its AVX2 paths, so PyTorch's f32 matmul there reaches less than half of what the same
// MKL does when it takes the CPU for Intel's (docs/PERFORMANCE.md, "On an AMD CPU with
// AVX-512"). Loaded with LD_PRELOAD, these two functions answer MKL's vendor check with yes, so
// the side-by-side script compares against the fastest PyTorch this machine can run. MKL still
// checks the instruction sets themselves.
//
//   cc -shared -fPIC -O2 -o libmkl_any_cpu.so mkl_any_cpu.c
int mkl_serv_intel_cpu_true(void) { return 1; }
int mkl_serv_intel_cpu(void) { return 1; }

// Annotations that let one inline function compile for both the host compiler
// and nvcc. Math helpers shared by the CPU and CUDA kernels use VLMKERN_INLINE:
// internal linkage (static), so a helper compiled into an AVX-512 translation unit
// can never be picked by the linker for a baseline one (the COMDAT hazard of
// per-file ISA flags).
#pragma once

#if defined(__CUDACC__) || defined(__HIPCC__)
#define VLMKERN_HOST_DEVICE __host__ __device__
#define VLMKERN_FORCE_INLINE __forceinline__
#else
#define VLMKERN_HOST_DEVICE
#define VLMKERN_FORCE_INLINE inline __attribute__((always_inline))
#endif

#define VLMKERN_INLINE static VLMKERN_FORCE_INLINE VLMKERN_HOST_DEVICE

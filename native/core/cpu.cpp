#include "cpu.h"

#include <cstdlib>

namespace rapm {

std::vector<const Kernels*> supported_kernels() {
  std::vector<const Kernels*> out;
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__GNUC__) || defined(__clang__)
  __builtin_cpu_init();
  // libgcc's probe checks the OS saves the wider registers (XCR0) before reporting these.
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool vnni = avx512 && __builtin_cpu_supports("avx512vnni");
  const bool bf16 = vnni && __builtin_cpu_supports("avx512bf16");
#else
  const bool avx512 = false, avx2 = false, vnni = false, bf16 = false;  // MSVC: __cpuid/_xgetbv probe not wired yet
#endif
  if (bf16) out.push_back(kernels_avx512bf16());
  if (vnni) out.push_back(kernels_avx512vnni());
  if (avx512) out.push_back(kernels_avx512());
  if (avx2) out.push_back(kernels_avx2());
#elif defined(__aarch64__) || defined(_M_ARM64)
  out.push_back(kernels_neon());  // NEON is baseline on aarch64
#endif
  out.push_back(kernels_scalar());
  return out;
}

const Kernels* kernels_by_name(const std::string& name) {
  for (const Kernels* k : supported_kernels())
    if (name == k->name) return k;
  return nullptr;
}

const Kernels* default_kernels() {
  if (const char* env = std::getenv("RAPM_SIMD")) {
    if (const Kernels* k = kernels_by_name(env)) return k;
    // An unsupported or misspelled override falls back to the best level; the JS side
    // reports RAPM_SIMD mismatches when it loads the addon.
  }
  return supported_kernels().front();
}

}  // namespace rapm

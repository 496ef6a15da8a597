#include "cpu.h"

#include <cstdlib>

#if defined(__x86_64__) || defined(_M_X64)
#define RAPM_X86_64 1
#if defined(_MSC_VER)
#include <intrin.h>  // __cpuidex, _xgetbv (MSVC and clang-cl)
#elif defined(__GNUC__) || defined(__clang__)
#include <cpuid.h>  // __cpuid_count
#endif
#endif

namespace rapm {

namespace {
inline bool bit(uint64_t word, int b) { return ((word >> b) & 1u) != 0; }
}  // namespace

X86Features decode_x86_features(const CpuidWords& w) {
  X86Features f;
  if (w.max_leaf < 1) return f;
  const bool fma = bit(w.l1_ecx, 12), osxsave = bit(w.l1_ecx, 27), avx = bit(w.l1_ecx, 28);
  // XCR0: bit 1 SSE, bit 2 AVX (YMM upper halves), bits 5-7 opmask, ZMM_Hi256, Hi16_ZMM.
  // A CPU may have the instructions while the OS does not save the registers: then they fault.
  const bool os_ymm = osxsave && (w.xcr0 & 0x6u) == 0x6u;
  const bool os_zmm = os_ymm && (w.xcr0 & 0xE0u) == 0xE0u;
  if (w.max_leaf < 7) return f;
  const bool avx2 = bit(w.l7_ebx, 5);
  const bool avx512f = bit(w.l7_ebx, 16), avx512dq = bit(w.l7_ebx, 17);
  const bool avx512bw = bit(w.l7_ebx, 30), avx512vl = bit(w.l7_ebx, 31);
  f.avx2_fma = os_ymm && avx && fma && avx2;
  f.avx512 = f.avx2_fma && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_vnni = f.avx512 && bit(w.l7_ecx, 11);
  f.avx512_bf16 = f.avx512 && w.l7_max_sub >= 1 && bit(w.l7s1_eax, 5);
  return f;
}

#if defined(RAPM_X86_64)
namespace {
// regs = EAX, EBX, ECX, EDX of CPUID(leaf, subleaf).
void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t regs[4]) {
#if defined(_MSC_VER)
  int r[4];
  __cpuidex(r, static_cast<int>(leaf), static_cast<int>(subleaf));
  for (int i = 0; i < 4; ++i) regs[i] = static_cast<uint32_t>(r[i]);
#else
  __cpuid_count(leaf, subleaf, regs[0], regs[1], regs[2], regs[3]);
#endif
}

// XGETBV(0) = XCR0. Only legal when CPUID.1:ECX.OSXSAVE is set (else #UD).
uint64_t xgetbv0() {
#if defined(_MSC_VER) && !defined(__clang__)
  return _xgetbv(0);
#else
  // clang-cl's _xgetbv needs the xsave target feature; GNU asm works for GCC and every clang.
  uint32_t lo, hi;
  __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
#endif
}
}  // namespace
#endif

CpuidWords read_cpuid_words() {
  CpuidWords w;
#if defined(RAPM_X86_64)
  uint32_t r[4];
  cpuid(0, 0, r);
  w.max_leaf = r[0];
  if (w.max_leaf >= 1) {
    cpuid(1, 0, r);
    w.l1_ecx = r[2];
    if (bit(w.l1_ecx, 27)) w.xcr0 = xgetbv0();
  }
  if (w.max_leaf >= 7) {
    cpuid(7, 0, r);
    w.l7_max_sub = r[0];
    w.l7_ebx = r[1];
    w.l7_ecx = r[2];
    if (w.l7_max_sub >= 1) {
      cpuid(7, 1, r);
      w.l7s1_eax = r[0];
    }
  }
#endif
  return w;
}

const X86Features& x86_features() {
  static const X86Features f = [] {
#if defined(RAPM_X86_64) && !defined(_MSC_VER) && (defined(__GNUC__) || defined(__clang__))
    // GCC/Clang: libgcc's / compiler-rt's probe (it checks XCR0 as well). The decoder above
    // is the MSVC path; the kernel test checks the two agree on the machine it runs on.
    __builtin_cpu_init();
    X86Features g;
    g.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    g.avx512 = g.avx2_fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    g.avx512_vnni = g.avx512 && __builtin_cpu_supports("avx512vnni");
    g.avx512_bf16 = g.avx512 && __builtin_cpu_supports("avx512bf16");
    return g;
#else
    return decode_x86_features(read_cpuid_words());  // MSVC (and all-false off x86-64)
#endif
  }();
  return f;
}

std::vector<const Kernels*> supported_kernels() {
  std::vector<const Kernels*> out;
#if defined(RAPM_X86_64)
  const X86Features& f = x86_features();
  if (f.avx512_bf16 && f.avx512_vnni) out.push_back(kernels_avx512bf16());
  if (f.avx512_vnni) out.push_back(kernels_avx512vnni());
  if (f.avx512) out.push_back(kernels_avx512());
  if (f.avx2_fma) out.push_back(kernels_avx2());
#elif defined(__aarch64__) || defined(_M_ARM64)
  out.push_back(kernels_neon());  // NEON (Advanced SIMD) is baseline on aarch64
#endif
  out.push_back(kernels_scalar());
  return out;
}

const std::vector<std::string>& known_level_names() {
  // Every Kernels::name of every build; a level added to kernels.h is added here too
  // (the kernel test fails when a supported table's name is missing).
  static const std::vector<std::string> names = {"scalar", "neon", "avx2", "avx512", "avx512vnni", "avx512bf16"};
  return names;
}

const Kernels* kernels_by_name(const std::string& name) {
  for (const Kernels* k : supported_kernels())
    if (name == k->name) return k;
  return nullptr;
}

namespace {
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}
}  // namespace

KernelChoice choose_kernels(const char* rapm_simd) {
  const std::vector<const Kernels*> have = supported_kernels();
  const Kernels* best = have.front();
  if (rapm_simd == nullptr || *rapm_simd == '\0') return {best, KernelChoice::kBest, ""};
  const std::string want = rapm_simd;
  for (const Kernels* k : have)
    if (want == k->name) return {k, KernelChoice::kOverride, ""};
  std::vector<std::string> supported;
  for (const Kernels* k : have) supported.push_back(k->name);
  for (const std::string& n : known_level_names()) {
    if (n == want) {
      return {best, KernelChoice::kFallback,
              "RAPM_SIMD=" + want + " is not supported by this CPU or build; using " + best->name +
                  " (supported here: " + join(supported) + ")"};
    }
  }
  return {best, KernelChoice::kUnknown,
          "RAPM_SIMD=\"" + want + "\" is not a SIMD level; using " + best->name + " (valid levels: " +
              join(known_level_names()) + "; supported here: " + join(supported) + ")"};
}

const Kernels* default_kernels() { return choose_kernels(std::getenv("RAPM_SIMD")).kernels; }

}  // namespace rapm

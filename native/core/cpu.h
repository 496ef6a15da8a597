// CPU feature detection and kernel-table selection.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../kernels/kernels.h"

namespace rapm {

// Levels this CPU can run, best first (always ends with scalar). The fallback chain is
// explicit: avx512 -> avx2 -> scalar on x86-64, neon -> scalar on aarch64.
std::vector<const Kernels*> supported_kernels();
// Table for a level name ("scalar", "avx2", "avx512", "avx512vnni", "avx512bf16", "neon"), or nullptr if unsupported here.
const Kernels* kernels_by_name(const std::string& name);
// Every level name this build knows, whether or not this CPU or build can run it: the
// valid values of RAPM_SIMD. A misspelt value is one that is not in this list.
const std::vector<std::string>& known_level_names();

// The kernel table to start with, given the value of RAPM_SIMD (nullptr or "" = unset).
struct KernelChoice {
  enum How : int {
    kBest = 0,      // no override: the best supported level
    kOverride = 1,  // RAPM_SIMD named a supported level
    kFallback = 2,  // RAPM_SIMD named a known level this CPU/build cannot run: the best level
    kUnknown = 3,   // RAPM_SIMD is not a level name at all (a typo): the best level
  };
  const Kernels* kernels;  // never null
  How how;
  std::string message;     // the warning for kFallback and kUnknown: names the level used and the valid ones
};
KernelChoice choose_kernels(const char* rapm_simd);
// choose_kernels(getenv("RAPM_SIMD")).kernels
const Kernels* default_kernels();

// x86-64 features the kernels need, each already checked against the OS-enabled register
// state (XCR0): AVX state for avx2, opmask + ZMM state for AVX-512. All false elsewhere.
struct X86Features {
  bool avx2_fma = false;     // AVX2 + FMA (+ AVX, YMM state)
  bool avx512 = false;       // AVX-512 F + BW + VL + DQ (+ ZMM and opmask state)
  bool avx512_bf16 = false;  // AVX512_BF16 (VDPBF16PS), with `avx512`
  bool avx512_vnni = false;  // AVX512_VNNI (VPDPBUSD), with `avx512`
};

// Raw CPUID / XGETBV words the decoder reads (x86 register names).
struct CpuidWords {
  uint32_t max_leaf = 0;    // CPUID.0:EAX
  uint32_t l1_ecx = 0;      // CPUID.1:ECX (FMA bit 12, OSXSAVE bit 27, AVX bit 28)
  uint32_t l7_max_sub = 0;  // CPUID.(7,0):EAX
  uint32_t l7_ebx = 0;      // CPUID.(7,0):EBX (AVX2 5, AVX512F 16, DQ 17, BW 30, VL 31)
  uint32_t l7_ecx = 0;      // CPUID.(7,0):ECX (AVX512_VNNI 11)
  uint32_t l7s1_eax = 0;    // CPUID.(7,1):EAX (AVX512_BF16 5)
  uint64_t xcr0 = 0;        // XGETBV(0), read only when OSXSAVE is set (else 0)
};

// Pure decoder (testable with made-up words on any machine).
X86Features decode_x86_features(const CpuidWords& w);
// This CPU's words: __cpuid/__cpuidex/_xgetbv under MSVC, <cpuid.h> + xgetbv elsewhere.
// All zero when not built for x86-64.
CpuidWords read_cpuid_words();
// decode_x86_features(read_cpuid_words()), probed once.
const X86Features& x86_features();

}  // namespace rapm

// CPU feature detection and kernel-table selection.
#pragma once
#include <string>
#include <vector>

#include "../kernels/kernels.h"

namespace rapm {

// Levels this CPU can run, best first (always ends with scalar).
std::vector<const Kernels*> supported_kernels();
// Best supported level, unless RAPM_SIMD names another supported one.
const Kernels* default_kernels();
// Table for a level name ("scalar", "avx2", "avx512", "avx512vnni", "avx512bf16", "neon"), or nullptr if unsupported here.
const Kernels* kernels_by_name(const std::string& name);

}  // namespace rapm

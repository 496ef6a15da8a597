// SSE2 in baseline code. It is part of the x86-64 baseline (every x86-64 CPU has it), so core/
// translation units may use it without ISA flags: RAPM_BASELINE_SSE2 is defined where it is
// available, and each use keeps a plain-loop fallback (aarch64) that gives the same results.
#pragma once
#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define RAPM_BASELINE_SSE2 1
#endif

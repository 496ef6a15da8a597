// f32 <-> bf16 bit conversions shared by the datastore, its shadow and the search.
#pragma once
#include <cstdint>
#include <cstring>

namespace rapm {

// Round-to-nearest-even f32 -> bf16 (finite inputs).
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace rapm

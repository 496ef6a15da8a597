// A std::vector whose resize leaves new elements of trivial types uninitialised: for scratch
// buffers that are written in full before they are read (normalised queries, packed query
// tiles), so a search does not spend a memset on megabytes it is about to overwrite.
#pragma once
#include <memory>
#include <new>
#include <utility>
#include <vector>

namespace rapm {

template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  DefaultInitAllocator() = default;
  template <typename U>
  DefaultInitAllocator(const DefaultInitAllocator<U>&) noexcept {}
  // Value-initialisation (resize(n), vector(n)) becomes default-initialisation.
  template <typename U>
  void construct(U* p) noexcept(noexcept(::new (static_cast<void*>(p)) U)) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};

template <typename T>
using UninitVector = std::vector<T, DefaultInitAllocator<T>>;

}  // namespace rapm

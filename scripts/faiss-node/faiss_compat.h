// Forced-include header (-include) for building faiss-node 0.5.1 against
// Debian's libfaiss-dev 1.7.3. faiss-node's src/faiss.cc uses the
// namespace-level alias `faiss::idx_t`, which only appeared in faiss 1.7.4;
// 1.7.3 only has the member alias `faiss::Index::idx_t` (= int64_t).
#pragma once

#ifdef __cplusplus
#include <faiss/Index.h>

#if FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR < 7 || \
    (FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR == 7 && FAISS_VERSION_PATCH < 4)
namespace faiss {
using idx_t = Index::idx_t;
} // namespace faiss
#endif
#endif

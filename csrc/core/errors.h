// The native side of strata's exception family. The bindings translate each of these into
// the matching Python class of strata.errors (StrataError, UnsupportedModelError, ...).
#pragma once

#include <stdexcept>
#include <string>

namespace strata {

struct StrataError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A weight type, op or argument combination this build cannot run.
struct UnsupportedError : StrataError {
    using StrataError::StrataError;
};

// A step would write past the KV cache (positions >= n_ctx).
struct ContextOverflow : StrataError {
    using StrataError::StrataError;
};

// Checked arithmetic for sizes that come from files or users: overflow is an error.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) throw StrataError(std::string("size overflow: ") + what);
    return r;
}
inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) throw StrataError(std::string("size overflow: ") + what);
    return r;
}

}  // namespace strata

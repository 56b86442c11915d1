#pragma once
/// @file detail/core/shared_text.hpp
/// An immutable, reference-counted string: a name many messages point to.

#include <string>
#include <utility>

#include "ref_ptr.hpp"

namespace warren::detail {

/// A name (an exchange's, a consumer tag) shared by the messages and deliveries that carry
/// it, so handing one out copies a pointer instead of a string (and never allocates).
template <class Policy>
struct shared_text : ref_counted<Policy> {
    explicit shared_text(std::string text) : value(std::move(text)) {}
    const std::string value;
};

/// The empty string, for a text that is absent.
inline const std::string& empty_text() noexcept {
    static const std::string empty;
    return empty;
}

} // namespace warren::detail

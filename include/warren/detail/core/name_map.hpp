#pragma once
/// @file detail/core/name_map.hpp
/// Tables by name and by slot: a map from names looked up by string_view, and slots that
/// are reused once freed.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace warren::detail {

/// A string hash that takes string_views, so that lookups by name build no string.
struct transparent_string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
/// A map from names, looked up by string_view.
template <class T>
using name_map = std::unordered_map<std::string, T, transparent_string_hash, std::equal_to<>>;

/// Takes a free slot of `slots` (or appends one) and returns its index.
template <class T>
std::uint32_t take_slot(std::vector<T>& slots, std::vector<std::uint32_t>& free_list) {
    if (!free_list.empty()) {
        const std::uint32_t index = free_list.back();
        free_list.pop_back();
        return index;
    }
    slots.emplace_back();
    return static_cast<std::uint32_t>(slots.size() - 1);
}

} // namespace warren::detail

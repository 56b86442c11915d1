// Many distinct bindings of one exchange type, for the tests that measure what bindings cost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <warren/field_table.hpp>

namespace warren_test {

/// The key and arguments of a binding.
struct binding_spec {
    std::string key;
    warren::field_table arguments;
};

/// Binding `i` of many distinct ones on an exchange of `type`: direct and fanout keys
/// `k.<i>`, topic patterns `k.<i>.*`, headers arguments matching header `id` = i.
inline binding_spec nth_binding(const std::string& type, std::size_t i) {
    if (type == "headers") return {"", {{"x-match", "any"}, {"id", static_cast<std::int64_t>(i)}}};
    if (type == "topic") return {"k." + std::to_string(i) + ".*", {}};
    return {"k." + std::to_string(i), {}};
}

} // namespace warren_test

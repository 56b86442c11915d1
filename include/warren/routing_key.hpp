#pragma once
/// @file routing_key.hpp
/// Routing keys and names: the 255-byte limit and topic word splitting.

#include <cstddef>
#include <string>
#include <string_view>

#include "error.hpp"

namespace warren {

/// Longest routing key, binding key or object name AMQP can carry (a short string).
inline constexpr std::size_t max_name_length = 255;

/// Calls `f(word)` for each dot-separated word of `key`, in order. The empty key has zero
/// words; empty words are words (`a..b` has three), as RabbitMQ splits them. Thread-safe.
template <class F>
constexpr void for_each_word(std::string_view key, F&& f) {
    if (key.empty()) return;
    std::size_t start = 0;
    for (;;) {
        const std::size_t dot = key.find('.', start);
        if (dot == std::string_view::npos) {
            f(key.substr(start));
            return;
        }
        f(key.substr(start, dot - start));
        start = dot + 1;
    }
}

/// How many words `key` has (0 for the empty key). Thread-safe.
[[nodiscard]] constexpr std::size_t word_count(std::string_view key) noexcept {
    if (key.empty()) return 0;
    std::size_t n = 1;
    for (char c : key) n += c == '.' ? 1U : 0U;
    return n;
}

namespace detail {

/// Refuses a name or key over 255 bytes. `what` names it in the error ("routing key").
inline void check_length(std::string_view value, std::string_view what) {
    if (value.size() > max_name_length) {
        raise(reply_code::precondition_failed, std::string(what) + " of " +
                                                   std::to_string(value.size()) +
                                                   " bytes exceeds the limit of " + std::to_string(max_name_length));
    }
}

} // namespace detail
} // namespace warren

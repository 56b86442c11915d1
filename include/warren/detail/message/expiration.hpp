#pragma once
/// @file detail/message/expiration.hpp
/// The per-message TTL of the AMQP `expiration` property, read as RabbitMQ reads it.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "../../error.hpp"

namespace warren::detail {

/// RabbitMQ's limit for TTLs, x-expires and expirations (rabbit_misc:check_expiry): ten
/// years in milliseconds.
inline constexpr std::int64_t max_timer_ms = 315'360'000'000;

/// The TTL in `expiration` (decimal milliseconds). Anything else is precondition_failed
/// (406) with RabbitMQ's words: "invalid expiration 'soon': no_integer".
inline std::chrono::milliseconds parse_expiration(std::string_view text) {
    auto refuse = [&](const std::string& why) {
        raise(reply_code::precondition_failed, "invalid expiration " + detail::quoted(text) + ": " + why);
    };
    std::size_t i = 0;
    const bool negative = !text.empty() && text[0] == '-';
    if (!text.empty() && (text[0] == '-' || text[0] == '+')) ++i;
    const std::size_t digits_start = i;
    std::int64_t value = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        if (value <= max_timer_ms) value = value * 10 + (text[i] - '0'); // stops growing past the limit
    }
    if (i == digits_start) refuse("no_integer");
    // Erlang prints the leftover, a list, in double quotes: {leftover_string,"ms"}.
    if (i != text.size()) refuse("{leftover_string,\"" + std::string(text.substr(i)) + "\"}");
    if (value == 0) return std::chrono::milliseconds(0); // "-0" too
    // The number as Erlang prints it: no sign of its own, no leading zeros.
    std::string_view digits = text.substr(digits_start, i - digits_start);
    digits.remove_prefix(std::min(digits.find_first_not_of('0'), digits.size()));
    if (negative) refuse("{value_negative,-" + std::string(digits) + "}");
    if (value > max_timer_ms) refuse("{value_too_large," + std::string(digits) + "}");
    return std::chrono::milliseconds(value);
}

} // namespace warren::detail

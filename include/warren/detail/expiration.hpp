#pragma once
/// @file detail/expiration.hpp
/// The per-message TTL of the AMQP `expiration` property, read as RabbitMQ reads it.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "../error.hpp"

namespace warren::detail {

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
    bool saturated = false;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        const int digit = text[i] - '0';
        if (value > (INT64_MAX - digit) / 10) saturated = true;
        else value = value * 10 + digit;
    }
    if (i == digits_start) refuse("no_integer");
    if (i != text.size()) refuse("{leftover_string," + detail::quoted(text.substr(i)) + "}");
    if (negative && value != 0) refuse("{value_negative,-" + std::to_string(value) + "}");
    if (saturated) return std::chrono::milliseconds::max();
    return std::chrono::milliseconds(value);
}

} // namespace warren::detail

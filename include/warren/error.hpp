#pragma once
/// @file error.hpp
/// warren::error: the one exception type, carrying an AMQP reply code.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "config.hpp"

namespace warren {

/// AMQP 0-9-1 reply codes, as RabbitMQ uses them in channel and connection errors.
enum class reply_code : std::uint16_t {
    content_too_large = 311,
    no_route = 312,
    no_consumers = 313,
    connection_forced = 320,
    invalid_path = 402,
    access_refused = 403,
    not_found = 404,
    resource_locked = 405,
    precondition_failed = 406,
    frame_error = 501,
    syntax_error = 502,
    command_invalid = 503,
    channel_error = 504,
    unexpected_frame = 505,
    resource_error = 506,
    not_allowed = 530,
    not_implemented = 540,
    internal_error = 541,
};

/// The reply name as RabbitMQ prints it, e.g. `NOT_FOUND`. Thread-safe.
[[nodiscard]] constexpr std::string_view reply_name(reply_code code) noexcept {
    switch (code) {
    case reply_code::content_too_large: return "CONTENT_TOO_LARGE";
    case reply_code::no_route: return "NO_ROUTE";
    case reply_code::no_consumers: return "NO_CONSUMERS";
    case reply_code::connection_forced: return "CONNECTION_FORCED";
    case reply_code::invalid_path: return "INVALID_PATH";
    case reply_code::access_refused: return "ACCESS_REFUSED";
    case reply_code::not_found: return "NOT_FOUND";
    case reply_code::resource_locked: return "RESOURCE_LOCKED";
    case reply_code::precondition_failed: return "PRECONDITION_FAILED";
    case reply_code::frame_error: return "FRAME_ERROR";
    case reply_code::syntax_error: return "SYNTAX_ERROR";
    case reply_code::command_invalid: return "COMMAND_INVALID";
    case reply_code::channel_error: return "CHANNEL_ERROR";
    case reply_code::unexpected_frame: return "UNEXPECTED_FRAME";
    case reply_code::resource_error: return "RESOURCE_ERROR";
    case reply_code::not_allowed: return "NOT_ALLOWED";
    case reply_code::not_implemented: return "NOT_IMPLEMENTED";
    case reply_code::internal_error: return "INTERNAL_ERROR";
    }
    return "UNKNOWN";
}

/// The exception warren throws for bad input at its API boundary.
///
/// `what()` reads like RabbitMQ's channel errors: `NOT_FOUND - no exchange 'logs'`.
/// @code
/// try { broker.publish("logs", msg); }
/// catch (const warren::error& e) { if (e.code() == warren::reply_code::not_found) ... }
/// @endcode
class error : public std::runtime_error {
public:
    /// @param code the AMQP reply code; @param text what was wrong, naming the object.
    error(reply_code code, std::string_view text)
        : std::runtime_error(std::string(reply_name(code)) + " - " + std::string(text)),
          code_(code) {}

    /// The AMQP reply code, e.g. 404. Thread-safe.
    [[nodiscard]] reply_code code() const noexcept { return code_; }
    /// The reply name, e.g. `NOT_FOUND`. Thread-safe.
    [[nodiscard]] std::string_view name() const noexcept { return reply_name(code_); }

private:
    reply_code code_;
};

namespace detail {

/// Every warren error leaves through here, so a build without exceptions aborts instead.
[[noreturn]] inline void raise(reply_code code, std::string_view text) {
#if WARREN_EXCEPTIONS
    throw error(code, text);
#else
    std::fprintf(stderr, "warren: %s - %.*s\n", reply_name(code).data(),
                 static_cast<int>(text.size()), text.data());
    std::abort();
#endif
}

/// Throws a copy of `e` (a stored error, say a call's outcome); without exceptions prints
/// it and aborts, as raise(code, text) does.
[[noreturn]] inline void raise(const error& e) {
#if WARREN_EXCEPTIONS
    throw e;
#else
    std::fprintf(stderr, "warren: %s\n", e.what());
    std::abort();
#endif
}

/// `'name'` as RabbitMQ quotes object names in its messages, with control characters
/// made visible: a name that ends in a carriage return reads `'q\r'`, not a `'q` that
/// seems to end the line. CR, LF and TAB are written `\r`, `\n`, `\t`, other control
/// characters and DEL `\xHH`, and a backslash `\\`, so two names never print alike.
[[nodiscard]] inline std::string quoted(std::string_view name) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string text;
    text.reserve(name.size() + 2);
    text += '\'';
    for (const char c : name) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '\\') {
            text += "\\\\";
        } else if (c == '\r') {
            text += "\\r";
        } else if (c == '\n') {
            text += "\\n";
        } else if (c == '\t') {
            text += "\\t";
        } else if (byte < 0x20 || byte == 0x7f) {
            text += "\\x";
            text += hex[byte >> 4];
            text += hex[byte & 0xf];
        } else {
            text += c;
        }
    }
    text += '\'';
    return text;
}

} // namespace detail
} // namespace warren

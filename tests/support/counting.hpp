#pragma once
// Test helpers: a body that counts its copies, and the code and text of a warren::error.

#include <string>

#include <warren/error.hpp>

namespace warren_test {

/// A message body that counts how often bodies were copied, to show the broker moves
/// bodies and shares one message on fanout instead of copying it. Reset `copies` at the
/// start of a test.
struct copy_counter {
    inline static int copies = 0;

    int value = 0;

    copy_counter() = default;
    explicit copy_counter(int v) noexcept : value(v) {}
    copy_counter(const copy_counter& other) noexcept : value(other.value) { ++copies; }
    copy_counter(copy_counter&& other) noexcept = default;
    copy_counter& operator=(const copy_counter& other) noexcept {
        value = other.value;
        ++copies;
        return *this;
    }
    copy_counter& operator=(copy_counter&& other) noexcept = default;
    ~copy_counter() = default;
};

/// "<reply code> <what()>" of the warren::error that `f` throws, e.g.
/// "404 NOT_FOUND - no exchange 'logs'", or "no error". One string checks both the code
/// and the message, and Catch prints it whole when it differs. Other exceptions escape.
template <class F>
[[nodiscard]] std::string error_of(F&& f) {
    try {
        f();
    } catch (const warren::error& e) {
        return std::to_string(static_cast<int>(e.code())) + " " + e.what();
    }
    return "no error";
}

} // namespace warren_test

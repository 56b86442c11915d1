// What the warren::error thrown by a call says, as one string to compare.
#pragma once

#include <stdexcept>
#include <string>

#include <warren/error.hpp>

#include "support/catch.hpp"

namespace warren_test {

/// What a test's consumer callback throws on purpose.
struct callback_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
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

/// The what() of the warren::error that `f` throws, after CHECKing that its reply code is
/// `code`, or "no error" when `f` returns normally. Other exceptions escape.
template <class F>
[[nodiscard]] std::string error_of(F&& f, warren::reply_code code) {
    try {
        f();
    } catch (const warren::error& e) {
        CHECK(e.code() == code);
        return e.what();
    }
    return "no error";
}

} // namespace warren_test

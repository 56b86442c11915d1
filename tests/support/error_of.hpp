// error_of: what a warren::error thrown by a call says, after checking its reply code.
#pragma once

#include <string>

#include <warren/error.hpp>

#include "support/catch.hpp"

namespace warren_test {

/// Runs `fn` and returns the what() of the warren::error it throws (checking that its
/// code is `code`), or "no error" when it returns normally.
template <class F>
std::string error_of(F&& fn, warren::reply_code code) {
    try {
        fn();
    } catch (const warren::error& e) {
        CHECK(e.code() == code);
        return e.what();
    }
    return "no error";
}

} // namespace warren_test

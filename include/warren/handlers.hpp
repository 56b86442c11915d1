#pragma once
/// @file handlers.hpp
/// What the broker's two handlers receive: a returned mandatory message, and what a
/// consumer callback threw.

#include <cstdint>
#include <exception>
#include <string>

#include "error.hpp"

namespace warren {

/// A mandatory message that no queue took, handed back to the return handler.
template <class Message>
struct basic_returned_message {
    reply_code code = reply_code::no_route;
    std::string reply_text;
    std::string exchange;
    Message message;
};

/// What a consumer callback (or an on_cancel notification) threw, handed to the broker's
/// error handler. `delivery_tag` is 0 for an on_cancel.
struct consumer_error {
    std::exception_ptr exception;
    std::string queue;
    std::string consumer_tag;
    std::uint64_t delivery_tag = 0;
};

} // namespace warren

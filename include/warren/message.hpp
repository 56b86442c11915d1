#pragma once
/// @file message.hpp
/// basic_message<Body>: routing key, properties and a body of any movable type.

#include <concepts>
#include <string>
#include <type_traits>

#include "properties.hpp"

namespace warren {

/// A message: what a publisher hands to an exchange.
///
/// `Body` is any movable type: bytes, std::string, a user struct, a std::variant of event
/// types. The routing key holds at most 255 bytes (checked when published).
/// @code
/// warren::message m{.routing_key = "kern.critical", .body = "disk full"};
/// m.properties.headers.set("host", "db1");
/// @endcode
/// Thread safety: a value type.
template <class Body>
    requires std::movable<Body>
struct basic_message {
    using body_type = Body;

    /// Where the exchange routes it; at most 255 bytes.
    std::string routing_key;
    /// The payload. The broker never copies it: fanout shares one message between queues.
    Body body{};
    /// AMQP basic properties, including the headers table.
    warren::properties properties{};
};

/// Whether T is some basic_message<Body>.
template <class T>
concept message_type = requires(T m) {
    typename T::body_type;
    requires std::same_as<T, basic_message<typename T::body_type>>;
};

} // namespace warren

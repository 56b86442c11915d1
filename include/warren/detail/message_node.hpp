#pragma once
/// @file detail/message_node.hpp
/// The shared, immutable form a message takes once published.

#include <chrono>
#include <cstddef>
#include <optional>
#include <ranges>
#include <string>
#include <utility>

#include "ref_ptr.hpp"

namespace warren::detail {

/// The bytes a body counts for in x-max-length-bytes: the size of a range of byte-sized
/// elements (std::string, std::vector<std::byte>, ...), else the size of the object.
template <class Body>
concept byte_range = std::ranges::sized_range<const Body> && sizeof(std::ranges::range_value_t<const Body>) == 1;

template <class Body>
[[nodiscard]] std::size_t body_size(const Body& body) noexcept {
    if constexpr (byte_range<Body>) {
        return static_cast<std::size_t>(std::ranges::size(body));
    } else {
        return sizeof(Body);
    }
}

/// A published message and where it came from. Queues hold references to one node, so
/// a message routed to ten queues is stored once.
template <class Message, class Policy>
struct message_node : ref_counted<Policy> {
    message_node(Message m, std::string exchange_name, std::optional<std::chrono::milliseconds> message_ttl = {})
        : message(std::move(m)), exchange(std::move(exchange_name)), ttl(message_ttl),
          body_bytes(body_size(message.body)) {}

    Message message;
    std::string exchange;
    std::optional<std::chrono::milliseconds> ttl; ///< from the expiration property, parsed once
    std::size_t body_bytes;
};

} // namespace warren::detail

#pragma once
/// @file detail/message_node.hpp
/// The shared, immutable form a message takes once published.

#include <string>
#include <utility>

#include "ref_ptr.hpp"

namespace warren::detail {

/// A published message and where it came from. Queues hold references to one node, so
/// a message routed to ten queues is stored once.
template <class Message, class Policy>
struct message_node : ref_counted<Policy> {
    message_node(Message m, std::string exchange_name)
        : message(std::move(m)), exchange(std::move(exchange_name)) {}

    Message message;
    std::string exchange;
};

} // namespace warren::detail

#pragma once
/// @file detail/message/outgoing_message.hpp
/// outgoing_message: a message being published, as parts its publisher still owns.

#include <string>
#include <string_view>
#include <utility>

#include "../../properties.hpp"
#include "stored_properties.hpp"

namespace warren::detail {

/// A message on its way in, as references to parts that its publisher still owns: the
/// checks and routing read them in place, and only a message that is routed is stored
/// (message_node::make moves the body in once, and the properties only when set); an
/// unroutable one is handed back whole (to_message). Thread safety: the publishing
/// thread's, for the publish.
template <class Body>
struct outgoing_message {
    std::string_view routing_key;
    Body& body;
    warren::properties* set_properties; ///< null when the message sets none

    /// The parts of `m`; its properties count as none when they are all unset.
    template <class Message>
    [[nodiscard]] static outgoing_message of(Message& m) noexcept {
        return {m.routing_key, m.body, sets_properties(m.properties) ? &m.properties : nullptr};
    }

    /// The properties to route by.
    [[nodiscard]] const warren::properties& properties() const noexcept {
        return set_properties != nullptr ? *set_properties : no_properties();
    }

    /// The whole message, its body and properties moved (for basic.return).
    template <class Message>
    [[nodiscard]] Message to_message() {
        return Message{std::string(routing_key), std::move(body),
                       set_properties != nullptr ? std::move(*set_properties) : warren::properties{}};
    }
};

} // namespace warren::detail

#pragma once
/// @file patterns/service_error.hpp
/// How a service answers a request with a failure: a reply whose header `x-error` says
/// why. The orchestrator (patterns/orchestrator.hpp) reads it; answering_errors() lets an
/// rpc_server handler throw service_failure to send one.

#include <concepts>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "../config.hpp"
#include "../fwd.hpp"
#include "../message.hpp"
#include "../properties.hpp"

namespace warren {

/// The reply header that marks a reply as the service's failure; its value, a string,
/// says why ("insufficient funds"). A header rather than the body, so that the convention
/// holds for any body type, and rather than the `type` property, which stays the
/// application's. A failure is an answer: the service handled the request and refused it,
/// which retrying the same request would not change (the orchestrator does not retry it
/// unless told to). A service that cannot answer (its handler threw, it is gone) sends
/// nothing, and its caller times out, which is retried.
inline constexpr std::string_view service_error_header = "x-error";

/// Thrown by a handler wrapped in answering_errors() to answer with an error reply.
/// Thread safety: a value type.
class service_failure : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A reply that reports failure `reason`, with `body` (empty by default).
/// @code
/// return warren::error_reply("insufficient funds");
/// @endcode
/// Thread safety: a pure function.
template <class Message = message>
[[nodiscard]] Message error_reply(std::string_view reason, typename Message::body_type body = {}) {
    Message reply{.routing_key = {}, .body = std::move(body)};
    reply.properties.headers.set(service_error_header, std::string(reason));
    return reply;
}

/// The failure a reply reports: the `x-error` header's text (empty if it is not a
/// string), or nothing for a reply without the header.
/// Thread safety: a pure function.
[[nodiscard]] inline std::optional<std::string> service_error_of(const properties& reply) {
    if (!reply.headers.contains(service_error_header)) return std::nullopt;
    const std::string* text = reply.headers.find_string(service_error_header);
    return text != nullptr ? *text : std::string();
}

/// Wraps an rpc_server handler so that a service_failure it throws becomes an error
/// reply (its what() in `x-error`) instead of a rejected request and no reply. Other
/// exceptions go on as rpc_server defines (the request is rejected, the caller times
/// out): they are bugs or outages, not answers. `fn(const delivery&)` returns a body or a
/// whole message, as rpc_server's handler does.
/// @code
/// warren::rpc_server payments(broker, "payment", warren::answering_errors([&](const warren::delivery& d) {
///     if (balance < std::stoi(d.body())) throw warren::service_failure("insufficient funds");
///     return std::string("paid");
/// }));
/// @endcode
/// Thread safety: the wrapper is as thread-safe as `fn`.
template <class Fn>
[[nodiscard]] auto answering_errors(Fn fn) {
    return [fn = std::move(fn)]<class Delivery>(const Delivery& request) mutable -> typename Delivery::message_type {
        using message_type = typename Delivery::message_type;
        using returned = std::invoke_result_t<Fn&, const Delivery&>;
#if WARREN_EXCEPTIONS
        try {
#endif
            if constexpr (std::convertible_to<returned, message_type>) {
                return fn(request);
            } else {
                return message_type{.routing_key = {}, .body = fn(request)};
            }
#if WARREN_EXCEPTIONS
        } catch (const service_failure& failure) {
            return error_reply<message_type>(failure.what());
        }
#endif
    };
}

} // namespace warren

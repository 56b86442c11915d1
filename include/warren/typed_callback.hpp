#pragma once
/// @file typed_callback.hpp
/// typed_callback: a consumer callback that takes one alternative of a std::variant body.

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "error.hpp"

namespace warren {
namespace detail {

template <class Event, class Variant>
struct is_alternative_of : std::false_type {};
template <class Event, class... Alternatives>
struct is_alternative_of<Event, std::variant<Alternatives...>>
    : std::bool_constant<(std::is_same_v<Event, Alternatives> + ...) == 1> {};

template <class Event, class... Alternatives>
constexpr std::size_t alternative_index(const std::variant<Alternatives...>*) noexcept {
    constexpr bool is_event[] = {std::is_same_v<Event, Alternatives>...};
    std::size_t index = 0;
    while (!is_event[index]) ++index; // Event is an alternative: the loop ends on it
    return index;
}

} // namespace detail

/// Whether `Event` is exactly one of the alternatives of the variant `Body`.
template <class Event, class Body>
concept alternative_of = detail::is_alternative_of<Event, Body>::value;

/// Whether `Fn` can handle an `Event` of a delivery `Delivery`: called as `fn(event)` or
/// `fn(event, delivery)`.
template <class Fn, class Event, class Delivery>
concept event_handler = std::invocable<Fn&, const Event&> || std::invocable<Fn&, const Event&, Delivery&>;

/// Turns `fn`, which takes one alternative `Event` of a std::variant body, into a consumer
/// callback: the callback tests the variant's index once and passes the alternative (and,
/// if `fn` takes it, the delivery, to ack it or read its envelope).
///
/// `fn(event)` under manual acks: the delivery is acked once `fn` returns, so a throwing
/// `fn` gets its message rejected; `fn(event, delivery)` settles it itself.
///
/// A message holding another alternative is a routing mistake, never dropped unseen: the
/// callback throws precondition_failed naming the consumer, the alternative it takes and
/// the one the message holds, and the dispatcher hands that to the error handler (or lets
/// it leave dispatch()), as for any throwing callback. Under manual acks the message is
/// then rejected without requeue, so it is dead-lettered where the queue has a dead-letter
/// exchange; under automatic acks it was settled when it was handed out. Give each event
/// type its own queue, bound by routing key, as EnTT's dispatcher gives each type a sink.
/// basic_broker::subscribe<Event> is the usual way in:
/// @code
/// using event = std::variant<collision, explosion>;
/// warren::basic_broker<warren::basic_message<event>> b;
/// auto sub = b.subscribe<collision>("collisions", [](const collision& c) { resolve(c); });
/// @endcode
/// Thread safety: the callback is as thread-safe as `fn`.
template <class Event, class Delivery, class Fn>
    requires alternative_of<Event, typename Delivery::body_type> && event_handler<Fn, Event, Delivery>
[[nodiscard]] auto typed_callback(Fn fn) {
    using body = typename Delivery::body_type;
    return [fn = std::move(fn)](Delivery& d) mutable {
        const body& b = d.body();
        const Event* event = std::get_if<Event>(&b);
        if (event == nullptr) [[unlikely]] {
            detail::raise(reply_code::precondition_failed,
                          "consumer " + detail::quoted(d.consumer_tag()) + " takes alternative " +
                              std::to_string(detail::alternative_index<Event>(static_cast<const body*>(nullptr))) +
                              " of the message's variant, the message holds alternative " +
                              (b.valueless_by_exception() ? std::string("none (valueless)") : std::to_string(b.index())));
        }
        if constexpr (std::invocable<Fn&, const Event&, Delivery&>) {
            fn(*event, d);
        } else {
            fn(*event);
            if (d.pending()) d.ack();
        }
    };
}

} // namespace warren

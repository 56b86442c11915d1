// Publishing to a broker and reading back what arrived, for tests that check contents and
// order. Works with any basic_broker whose body is std::string. Also routing through an
// exchange used directly, without a broker.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <warren/broker.hpp>
#include <warren/exchange.hpp>
#include <warren/properties.hpp>

#include "support/catch.hpp"

namespace warren_test {

/// Shorthand for warren::ack_mode::manual, in try_get calls and consumer options.
inline constexpr auto manual = warren::ack_mode::manual;

/// Queue options with these arguments and nothing else.
inline warren::queue_options with_args(warren::field_table arguments) {
    warren::queue_options options;
    options.arguments = std::move(arguments);
    return options;
}

/// The counters of `queue`, CHECKing on the way that every accepted message is accounted for.
template <class Broker>
warren::queue_counters stats(const Broker& b, std::string_view queue) {
    warren::queue_counters c = b.queue_stats(queue);
    CHECK(c.accounted());
    return c;
}

/// The number a test wrote as a delivery's body.
template <class Delivery>
std::size_t id_of(const Delivery& d) {
    return static_cast<std::size_t>(std::stoul(d.body()));
}

/// The string value of header `name`, or "" if it is missing or not a string.
inline std::string header_text(const warren::properties& p, std::string_view name) {
    const std::string* s = p.headers.find_string(name);
    return s == nullptr ? std::string() : *s;
}

/// Options of a manual-ack consumer.
inline warren::consumer_options manual_options(std::string tag = {}, std::uint16_t prefetch = 0) {
    warren::consumer_options o;
    o.tag = std::move(tag);
    o.ack = warren::ack_mode::manual;
    o.prefetch = prefetch;
    return o;
}

/// Shorthand for the expected side of a comparison: `drain(b, "q") == strings{"a", "b"}`.
using strings = std::vector<std::string>;

/// A message with routing key `key` and body `body`.
inline warren::message msg(std::string key, std::string body = {}) {
    warren::message m;
    m.routing_key = std::move(key);
    m.body = std::move(body);
    return m;
}

/// A message for the default exchange: it goes to the queue named `queue`.
template <class Broker>
typename Broker::message_type to_queue(std::string_view queue, std::string_view body) {
    typename Broker::message_type m;
    m.routing_key = std::string(queue);
    m.body = std::string(body);
    return m;
}

/// Publishes each body to `queue` through the default exchange; each must arrive.
template <class Broker>
void send(Broker& broker, std::string_view queue, std::initializer_list<std::string_view> bodies) {
    for (std::string_view body : bodies) {
        REQUIRE(broker.publish("", to_queue<Broker>(queue, body)) == 1);
    }
}

/// Publishes `count` bodies `prefix0`, `prefix1`, ... to `queue`; each must arrive.
template <class Broker>
void send_numbered(Broker& broker, std::string_view queue, std::string_view prefix, int count) {
    for (int i = 0; i < count; ++i) {
        REQUIRE(broker.publish("", to_queue<Broker>(queue, std::string(prefix) + std::to_string(i))) == 1);
    }
}

/// Takes every ready message of `queue` (basic.get with automatic ack until empty) and
/// returns the bodies in order.
template <class Broker>
strings drain(Broker& broker, std::string_view queue) {
    strings bodies;
    while (auto d = broker.try_get(queue)) bodies.push_back(d->body());
    return bodies;
}

/// Like drain, but marks a redelivered message with a trailing '*': "a*" was requeued.
template <class Broker>
strings drain_marked(Broker& broker, std::string_view queue) {
    strings bodies;
    while (auto d = broker.try_get(queue)) bodies.push_back(d->body() + (d->redelivered() ? "*" : ""));
    return bodies;
}

/// Publishes `m` to `exchange` and returns the queues (among `queues`) that got it, sorted,
/// one entry per copy so duplicates show, taking the messages out. CHECKs that every copy
/// arrived as sent (routing key, exchange, body, headers) and that publish counted each.
template <class Broker>
strings route(Broker& broker, std::string_view exchange, typename Broker::message_type m, const strings& queues) {
    const std::string key = m.routing_key;
    const std::string body = m.body;
    const warren::field_table headers = m.properties.headers;
    const std::size_t routed = broker.publish(exchange, std::move(m));
    strings got;
    for (const auto& q : queues) {
        while (auto d = broker.try_get(q)) {
            CHECK(d->routing_key() == key);
            CHECK(d->exchange() == exchange);
            CHECK(d->body() == body);
            CHECK(d->properties().headers == headers);
            got.push_back(q);
        }
    }
    std::sort(got.begin(), got.end());
    CHECK(routed == got.size());
    return got;
}

/// route for a message with routing key `key`, body "m" and no headers.
template <class Broker>
strings route(Broker& broker, std::string_view exchange, std::string_view key, const strings& queues) {
    return route(broker, exchange, {.routing_key = std::string(key), .body = "m"}, queues);
}

/// The destinations that exchange `ex`, used directly without a broker, routes `key` to:
/// sorted, each once (the broker delivers one copy per destination).
template <class Exchange>
std::vector<warren::destination> destinations_for(const Exchange& ex, std::string_view key) {
    const warren::properties props;
    warren::destination_list out;
    ex.route({key, props}, out);
    std::vector<warren::destination> got(out.begin(), out.end());
    std::sort(got.begin(), got.end());
    got.erase(std::unique(got.begin(), got.end()), got.end());
    return got;
}

} // namespace warren_test

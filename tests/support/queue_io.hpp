// Putting messages into a queue and reading them back, for tests that check contents
// and order. Works with any basic_broker whose body is std::string.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <warren/broker.hpp>

#include "support/catch.hpp"

namespace warren_test {

/// A message for the default exchange: it goes to the queue named `queue`.
template <class Broker>
typename Broker::message_type to_queue(std::string_view queue, std::string_view body) {
    typename Broker::message_type msg;
    msg.routing_key = std::string(queue);
    msg.body = std::string(body);
    return msg;
}

/// Publishes each body to `queue` through the default exchange; each must arrive.
template <class Broker>
void send(Broker& broker, std::string_view queue, std::initializer_list<std::string_view> bodies) {
    for (std::string_view body : bodies) {
        REQUIRE(broker.publish("", to_queue<Broker>(queue, body)) == 1);
    }
}

/// Publishes `count` bodies `prefix0`, `prefix1`, ... to `queue`.
template <class Broker>
void send_numbered(Broker& broker, std::string_view queue, std::string_view prefix, int count) {
    for (int i = 0; i < count; ++i) {
        REQUIRE(broker.publish("", to_queue<Broker>(queue, std::string(prefix) + std::to_string(i))) == 1);
    }
}

/// Takes every ready message of `queue` (automatic ack) and returns the bodies in order.
template <class Broker>
std::vector<std::string> drain(Broker& broker, std::string_view queue) {
    std::vector<std::string> bodies;
    while (auto d = broker.try_get(queue)) bodies.push_back(d->body());
    return bodies;
}

/// Like drain, but marks a redelivered message with a trailing '*': "a*" was requeued.
template <class Broker>
std::vector<std::string> drain_marked(Broker& broker, std::string_view queue) {
    std::vector<std::string> bodies;
    while (auto d = broker.try_get(queue)) bodies.push_back(d->body() + (d->redelivered() ? "*" : ""));
    return bodies;
}

/// Shorthand for the expected side of a comparison.
using strings = std::vector<std::string>;

} // namespace warren_test

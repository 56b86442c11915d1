// RabbitMQ tutorial 1, "Hello World!", on warren.
// https://www.rabbitmq.com/tutorials/tutorial-one-python
//
// A producer sends one message to the queue "hello" through the default exchange; a
// consumer receives it and prints it. In RabbitMQ these are two programs (send and
// receive) talking through a server; here both halves run in one process and
// broker.dispatch() plays the part of the consumer's event loop.

#include <iostream>
#include <string>
#include <vector>

#include <warren/warren.hpp>

int main() {
    warren::broker broker;

    // send: make sure the queue exists, then publish to the default exchange (""), which
    // routes to the queue named by the routing key.
    broker.declare_queue("hello");
    const std::size_t routed = broker.publish("", {.routing_key = "hello", .body = "Hello World!"});
    std::cout << " [x] Sent 'Hello World!'\n";

    // receive: declaring again is harmless (idempotent) and means whichever program starts
    // first creates the queue.
    broker.declare_queue("hello");
    std::vector<std::string> received;
    auto subscription = broker.subscribe("hello", [&](warren::delivery& d) {
        std::cout << " [x] Received '" << d.body() << "'\n";
        received.push_back(d.body());
    });
    std::cout << " [*] Waiting for messages (dispatching what is there, then exiting)\n";
    broker.dispatch();

    if (routed != 1 || received != std::vector<std::string>{"Hello World!"}) {
        std::cout << "FAILED: expected exactly one 'Hello World!'\n";
        return 1;
    }
    return 0;
}

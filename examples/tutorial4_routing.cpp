// RabbitMQ tutorial 4, "Routing", on warren.
// https://www.rabbitmq.com/tutorials/tutorial-four-python
//
// emit_log_direct publishes log lines to the direct exchange "direct_logs" with the
// severity as routing key. Each receive_logs_direct binds its own server-named queue once
// per severity it wants. As in the tutorial, one receiver saves only errors and warnings
// to disk, the other prints info, warning and error. Nobody subscribed to "debug", so
// those lines are dropped; both are bound with "error", so errors reach both (multiple
// bindings with one key behave like fanout).

#include <cstddef>
#include <initializer_list>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

namespace {

/// receive_logs_direct.py <severity>...: a server-named queue bound once per severity.
struct log_receiver {
    std::string name;
    std::vector<std::string> got; // "severity: message"
    warren::subscription subscription;

    log_receiver(warren::broker& broker, std::string receiver_name, std::initializer_list<const char*> severities)
        : name(std::move(receiver_name)) {
        broker.declare_exchange("direct_logs", "direct");
        const std::string queue = broker.declare_queue("", {.exclusive = true});
        std::cout << " [*] " << name << " binds " << queue << " with";
        for (const char* severity : severities) {
            broker.bind_queue(queue, "direct_logs", severity);
            std::cout << " '" << severity << '\'';
        }
        std::cout << '\n';
        subscription = broker.subscribe(queue, [this](warren::delivery& d) {
            std::cout << "     " << name << " [x] " << d.routing_key() << ":" << d.body() << '\n';
            got.push_back(std::string(d.routing_key()) + ":" + d.body());
        });
    }
};

} // namespace

int main() {
    warren::broker broker;
    log_receiver disk(broker, "receiver 1 (disk)", {"warning", "error"});
    log_receiver screen(broker, "receiver 2 (screen)", {"info", "warning", "error"});

    struct log_line {
        const char* severity;
        const char* text;
        std::size_t expected_queues;
    };
    const log_line lines[] = {
        {"info", "Hello World!", 1},
        {"warning", "disk 90% full", 2},
        {"error", "Run. Run. Or it will explode.", 2},
        {"debug", "x = 42", 0},
    };
    bool ok = true;
    for (const auto& line : lines) {
        const std::size_t queues = broker.publish("direct_logs", {.routing_key = line.severity, .body = line.text});
        std::cout << " [x] Sent " << line.severity << ":" << line.text << "  -> " << queues
                  << (queues == 1 ? " queue" : " queues") << (queues == 0 ? " (no binding for it: dropped)" : "")
                  << '\n';
        ok &= queues == line.expected_queues;
    }
    broker.dispatch();

    ok &= disk.got == std::vector<std::string>{"warning:disk 90% full", "error:Run. Run. Or it will explode."};
    ok &= screen.got == std::vector<std::string>{"info:Hello World!", "warning:disk 90% full",
                                                 "error:Run. Run. Or it will explode."};
    if (!ok) {
        std::cout << "FAILED: the direct exchange did not route by severity as expected\n";
        return 1;
    }
    std::cout << " disk got " << disk.got.size() << " lines, screen got " << screen.got.size()
              << "; debug reached nobody\n";
    return 0;
}

// RabbitMQ tutorial 3, "Publish/Subscribe", on warren.
// https://www.rabbitmq.com/tutorials/tutorial-three-python
//
// emit_log publishes log lines to the fanout exchange "logs". Each receive_logs declares
// its own fresh, exclusive, server-named queue (amq.gen-...) and binds it to "logs", so
// every running receiver gets every log line. One receiver "writes to disk" (collects the
// lines), the other prints them.

#include <cstddef>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

namespace {

/// emit_log: publish to the fanout exchange; the routing key is ignored.
std::size_t emit_log(warren::broker& broker, const std::string& line) {
    const std::size_t queues = broker.publish("logs", {.routing_key = "", .body = line});
    std::cout << " [x] Sent '" << line << "' (reached " << queues << (queues == 1 ? " queue" : " queues") << ")\n";
    return queues;
}

/// receive_logs: a queue of its own, bound to "logs", and a consumer on it.
struct log_receiver {
    std::string name;
    std::string queue;
    std::vector<std::string> lines;
    warren::subscription subscription;

    log_receiver(warren::broker& broker, std::string receiver_name) : name(std::move(receiver_name)) {
        broker.declare_exchange("logs", "fanout"); // both sides declare; the second is a no-op
        queue = broker.declare_queue("", {.exclusive = true}); // empty name: the broker picks one
        broker.bind_queue(queue, "logs");
        std::cout << " [*] " << name << " waiting for logs on queue " << queue << '\n';
        subscription = broker.subscribe(queue, [this](warren::delivery& d) {
            std::cout << "     " << name << " [x] " << d.body() << '\n';
            lines.push_back(d.body());
        });
    }
};

} // namespace

int main() {
    warren::broker broker;
    bool ok = true;

    broker.declare_exchange("logs", "fanout");
    // Before any receiver is bound the message has nowhere to go and is dropped, as the
    // tutorial warns: "if no queue is bound to the exchange yet the messages will be lost".
    ok &= emit_log(broker, "info: nobody is listening yet") == 0;

    log_receiver to_disk(broker, "receiver 1 (> logs_from_rabbit.log)");
    log_receiver to_screen(broker, "receiver 2 (screen)");
    ok &= to_disk.queue != to_screen.queue && to_disk.queue.starts_with("amq.gen-");

    const std::vector<std::string> logs{"info: Hello World!", "warning: disk 90% full", "error: disk full"};
    for (const auto& line : logs) ok &= emit_log(broker, line) == 2;
    broker.dispatch();

    // The screen receiver stops: with RabbitMQ its exclusive queue goes with its
    // connection; here we cancel the consumer and delete the queue ourselves.
    std::cout << " [*] receiver 2 stops; its queue is deleted\n";
    const std::string gone = to_screen.queue;
    to_screen.subscription.release();
    (void)broker.delete_queue(gone);
    ok &= emit_log(broker, "info: only the disk hears this") == 1;
    broker.dispatch();

    std::cout << " logs_from_rabbit.log now holds " << to_disk.lines.size() << " lines\n";
    std::vector<std::string> expected_disk = logs;
    expected_disk.push_back("info: only the disk hears this");
    ok &= to_disk.lines == expected_disk && to_screen.lines == logs;
    if (!ok) {
        std::cout << "FAILED: the receivers did not get what the fanout exchange should have sent\n";
        return 1;
    }
    return 0;
}

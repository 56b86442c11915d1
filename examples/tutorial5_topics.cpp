// RabbitMQ tutorial 5, "Topics", on warren.
// https://www.rabbitmq.com/tutorials/tutorial-five-python
//
// Routing keys of a topic exchange are dot-separated words; binding keys may use '*'
// (exactly one word) and '#' (zero or more words).
//
// Part 1 is the tutorial's animal example: keys "<speed>.<colour>.<species>", Q1 bound
// with "*.orange.*", Q2 with "*.*.rabbit" and "lazy.#".
// Part 2 is its program: emit_log_topic publishes "<facility>.<severity>" to "topic_logs",
// and four receive_logs_topic run with the binding keys the tutorial suggests.

#include <cstddef>
#include <initializer_list>
#include <iomanip>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

namespace {

bool animals() {
    warren::broker broker;
    broker.declare_exchange("animals", "topic");
    broker.declare_queue("Q1");
    broker.declare_queue("Q2");
    broker.bind_queue("Q1", "animals", "*.orange.*");
    broker.bind_queue("Q2", "animals", "*.*.rabbit");
    broker.bind_queue("Q2", "animals", "lazy.#");
    std::cout << "Part 1: Q1 <- \"*.orange.*\";  Q2 <- \"*.*.rabbit\", \"lazy.#\"\n\n";

    struct row {
        const char* key;
        std::size_t q1, q2; // copies each queue should get
        const char* note;
    };
    const row rows[] = {
        {"quick.orange.rabbit", 1, 1, ""},
        {"lazy.orange.elephant", 1, 1, ""},
        {"quick.orange.fox", 1, 0, ""},
        {"lazy.brown.fox", 0, 1, ""},
        {"lazy.pink.rabbit", 0, 1, "matches both Q2 bindings, delivered once"},
        {"quick.brown.fox", 0, 0, "matches no binding: discarded"},
        {"orange", 0, 0, "one word: matches nothing"},
        {"quick.orange.new.rabbit", 0, 0, "four words: matches nothing"},
        {"lazy.orange.new.rabbit", 0, 1, "four words, but matches \"lazy.#\""},
    };
    bool ok = true;
    std::cout << "  " << std::left << std::setw(26) << "routing key" << "Q1  Q2\n";
    for (const auto& r : rows) {
        (void)broker.publish("animals", {.routing_key = r.key, .body = r.key});
        const std::size_t q1 = broker.message_count("Q1");
        const std::size_t q2 = broker.message_count("Q2");
        (void)broker.purge_queue("Q1");
        (void)broker.purge_queue("Q2");
        std::cout << "  " << std::left << std::setw(26) << r.key << q1 << "   " << q2 << "   " << r.note << '\n';
        ok &= q1 == r.q1 && q2 == r.q2;
    }
    std::cout << '\n';
    return ok;
}

/// receive_logs_topic.py <binding_key>...
struct log_receiver {
    std::string name;
    std::vector<std::string> got;
    warren::subscription subscription;

    log_receiver(warren::broker& broker, std::initializer_list<const char*> binding_keys) {
        broker.declare_exchange("topic_logs", "topic");
        const std::string queue = broker.declare_queue("", {.exclusive = true});
        for (const char* key : binding_keys) {
            broker.bind_queue(queue, "topic_logs", key);
            name += (name.empty() ? "" : " ") + std::string("\"") + key + "\"";
        }
        std::cout << " [*] receiver " << std::left << std::setw(24) << name << " on " << queue << '\n';
        subscription = broker.subscribe(queue, [this](warren::delivery& d) {
            std::cout << "     receiver " << std::left << std::setw(24) << name << " [x] " << d.routing_key() << ":"
                      << d.body() << '\n';
            got.emplace_back(d.routing_key());
        });
    }
};

bool logs() {
    std::cout << "Part 2: emit_log_topic and four receive_logs_topic\n";
    warren::broker broker;
    log_receiver all(broker, {"#"});
    log_receiver kern(broker, {"kern.*"});
    log_receiver critical(broker, {"*.critical"});
    log_receiver both(broker, {"kern.*", "*.critical"});

    const std::pair<const char*, const char*> sent[] = {
        {"kern.critical", "A critical kernel error"},
        {"kern.info", "kernel booted"},
        {"cron.critical", "cron died"},
        {"anonymous.info", "Hello World!"}, // emit_log_topic.py's default key
    };
    for (const auto& [key, text] : sent) {
        const std::size_t queues = broker.publish("topic_logs", {.routing_key = key, .body = text});
        std::cout << " [x] Sent " << key << ":" << text << "  -> " << queues << (queues == 1 ? " queue\n" : " queues\n");
    }
    broker.dispatch();

    using keys = std::vector<std::string>;
    return all.got == keys{"kern.critical", "kern.info", "cron.critical", "anonymous.info"} &&
           kern.got == keys{"kern.critical", "kern.info"} && critical.got == keys{"kern.critical", "cron.critical"} &&
           both.got == keys{"kern.critical", "kern.info", "cron.critical"}; // kern.critical once
}

} // namespace

int main() {
    const bool table_ok = animals();
    const bool logs_ok = logs();
    if (!table_ok || !logs_ok) {
        std::cout << "FAILED: topic routing differs from the tutorial\n";
        return 1;
    }
    return 0;
}

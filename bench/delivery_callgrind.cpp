// Instructions per message on the delivery path, for callgrind (noise-free, unlike time):
//   valgrind --tool=callgrind --collect-atstart=no ./bench_delivery_callgrind <workload>
// Each workload warms up, then collects only around N publishes and their dispatch.
// Workloads: direct (1 queue, 1 callback), topic (cache hit), fanout10 (10 queues), each
// published by exchange name; direct_publisher publishes through a basic_publisher. Each
// builds a warren::message and moves it in; direct_parts and direct_publisher_parts
// publish the same key and body without one (publish(exchange, key, body) and
// publisher.publish(key, body)), where the tree has those overloads. fanout10_synchronous
// is fanout10 with synchronous subscribers (the publish runs them), where the tree has them;
// direct_publisher_many publishes the key and bodies in batches of 64 (publish_many).
// Each workload's loop is its own instantiation, so that adding one does not change how
// the compiler inlines the others. Prints nothing useful itself; read "Collected" from
// callgrind's summary and divide by N.
#include <warren/broker.hpp>

#include <valgrind/callgrind.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr int messages = 10000;

/// Runs a round of `messages` calls of `publish()` and a dispatch to warm up, then
/// another round collected by callgrind.
template <class Publish>
void measure(warren::broker& broker, Publish publish) {
    auto round = [&] {
        for (int i = 0; i < messages; ++i) publish();
        broker.dispatch();
    };
    round(); // warm: pools, caches, rings
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_TOGGLE_COLLECT;
    round();
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_STOP_INSTRUMENTATION;
}

/// The key-and-body workloads, through `publisher` or by name; false where the tree has no
/// such overloads (a template, so that the harness builds against older trees too).
template <class Broker>
bool measure_parts(Broker& broker, const typename Broker::publisher& publisher, bool through_publisher,
                   const std::string& exchange, const std::string& key) {
    if constexpr (requires { broker.publish(exchange, std::string_view(key), std::string()); }) {
        if (through_publisher) {
            measure(broker, [&] { (void)publisher.publish(key, std::string("0123456789abcdef")); });
        } else {
            measure(broker, [&] { (void)broker.publish(exchange, key, std::string("0123456789abcdef")); });
        }
        return true;
    } else {
        return false;
    }
}

/// direct_publisher_many: the same key and bodies through publisher.publish_many, in
/// batches of 64 (the last of a round shorter); false where the tree has no publish_many.
template <class Broker>
bool measure_batches(Broker& broker, const typename Broker::publisher& publisher, const std::string& key) {
    if constexpr (requires(std::vector<std::string>& v) { publisher.publish_many(key, v); }) {
        std::vector<std::string> bodies;
        bodies.reserve(64);
        int in_round = 0;
        measure(broker, [&] {
            bodies.emplace_back("0123456789abcdef");
            if (++in_round == messages) in_round = 0;
            if (bodies.size() == 64 || in_round == 0) {
                (void)publisher.publish_many(key, bodies);
                bodies.clear();
            }
        });
        return true;
    } else {
        return false;
    }
}

/// Makes `options` synchronous; false where the tree has no synchronous consumers.
template <class Options>
bool make_synchronous(Options& options) {
    if constexpr (requires { options.synchronous = true; }) {
        options.synchronous = true;
        return true;
    } else {
        return false;
    }
}

int run(std::string_view workload) {
    warren::broker broker;
    std::string exchange;
    std::string key = "k";
    int queues = 1;
    const bool through_publisher = workload == "direct_publisher" || workload == "direct_publisher_parts";
    const bool by_parts = workload == "direct_parts" || workload == "direct_publisher_parts";
    const bool in_batches = workload == "direct_publisher_many";
    if (workload == "direct" || by_parts || through_publisher || in_batches) {
        exchange = "amq.direct";
    } else if (workload == "topic") {
        exchange = "amq.topic";
        key = "a.b.c";
    } else if (workload == "fanout10" || workload == "fanout10_synchronous") {
        exchange = "amq.fanout";
        queues = 10;
    } else {
        std::fprintf(stderr, "unknown workload %.*s\n", static_cast<int>(workload.size()), workload.data());
        return 2;
    }
    warren::consumer_options options;
    if (workload == "fanout10_synchronous" && !make_synchronous(options)) {
        std::fprintf(stderr, "this tree has no synchronous consumers\n");
        return 2;
    }
    std::size_t delivered = 0;
    std::vector<warren::subscription> subs;
    for (int i = 0; i < queues; ++i) {
        const std::string q = "q" + std::to_string(i);
        broker.declare_queue(q);
        broker.bind_queue(q, exchange, exchange == "amq.topic" ? "a.*.c" : key);
        subs.push_back(broker.subscribe(q, [&](warren::delivery& d) { delivered += d.body().size(); }, options));
    }
    const auto publisher = broker.make_publisher(exchange);
    if (in_batches) {
        if (!measure_batches(broker, publisher, key)) {
            std::fprintf(stderr, "this tree has no publish_many\n");
            return 2;
        }
    } else if (by_parts) {
        if (!measure_parts(broker, publisher, through_publisher, exchange, key)) {
            std::fprintf(stderr, "this tree has no publish(exchange, key, body)\n");
            return 2;
        }
    } else if (through_publisher) {
        measure(broker, [&] {
            warren::message m{.routing_key = key, .body = "0123456789abcdef"};
            (void)publisher.publish(std::move(m));
        });
    } else {
        measure(broker, [&] {
            warren::message m{.routing_key = key, .body = "0123456789abcdef"};
            (void)broker.publish(exchange, std::move(m));
        });
    }
    std::printf("%.*s: %zu bytes delivered\n", static_cast<int>(workload.size()), workload.data(), delivered);
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run(argc > 1 ? argv[1] : "direct"); }

// Instructions per message on the delivery path, for callgrind (noise-free, unlike time):
//   valgrind --tool=callgrind --collect-atstart=no ./bench_delivery_callgrind <workload>
// Each workload warms up, then collects only around N publishes and their dispatch.
// Workloads: direct (1 queue, 1 callback), topic (cache hit), fanout10 (10 queues), each
// published by exchange name; direct_publisher publishes through a basic_publisher.
// Prints nothing useful itself; read "Collected" from callgrind's summary and divide by N.
#include <warren/broker.hpp>

#include <valgrind/callgrind.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace {

constexpr int messages = 10000;

int run(const char* workload) {
    warren::broker broker;
    std::string exchange;
    std::string key = "k";
    int queues = 1;
    const bool through_publisher = std::strcmp(workload, "direct_publisher") == 0;
    if (std::strcmp(workload, "direct") == 0 || through_publisher) {
        exchange = "amq.direct";
    } else if (std::strcmp(workload, "topic") == 0) {
        exchange = "amq.topic";
        key = "a.b.c";
    } else if (std::strcmp(workload, "fanout10") == 0) {
        exchange = "amq.fanout";
        queues = 10;
    } else {
        std::fprintf(stderr, "unknown workload %s\n", workload);
        return 2;
    }
    std::size_t delivered = 0;
    std::vector<warren::subscription> subs;
    for (int i = 0; i < queues; ++i) {
        const std::string q = "q" + std::to_string(i);
        broker.declare_queue(q);
        broker.bind_queue(q, exchange, exchange == "amq.topic" ? "a.*.c" : key);
        subs.push_back(broker.subscribe(q, [&](warren::delivery& d) { delivered += d.body().size(); }));
    }
    const auto publisher = broker.make_publisher(exchange);
    auto round = [&] {
        for (int i = 0; i < messages; ++i) {
            warren::message m{.routing_key = key, .body = "0123456789abcdef"};
            (void)(through_publisher ? publisher.publish(std::move(m)) : broker.publish(exchange, std::move(m)));
        }
        broker.dispatch();
    };
    round(); // warm: pools, caches, rings
    CALLGRIND_START_INSTRUMENTATION;
    CALLGRIND_TOGGLE_COLLECT;
    round();
    CALLGRIND_TOGGLE_COLLECT;
    CALLGRIND_STOP_INSTRUMENTATION;
    std::printf("%s: %zu bytes delivered\n", workload, delivered);
    return 0;
}

} // namespace

int main(int argc, char** argv) { return run(argc > 1 ? argv[1] : "direct"); }

// Draws a broker's topology as a Graphviz picture.
//
// An order pipeline: orders come in on a topic exchange with an alternate exchange for
// what nothing matches; the work queue has a length limit, priorities and a dead-letter
// exchange that parks failed orders; a fanout audits everything. After some traffic the
// example takes a snapshot and writes it as DOT (to the file named on the command line, or
// to standard output):
//
//     build/gcc/examples/topology_dot orders.dot && dot -Tsvg orders.dot -o orders.svg
//
// It checks that the picture holds what the snapshot says, and exits 1 if not.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include <warren/warren.hpp>

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

} // namespace

int main(int argc, char** argv) {
    warren::broker broker;

    // Exchanges: the entry point, its alternate for unmatched keys, an audit fanout that
    // sees every order event, and the dead-letter exchange.
    broker.declare_exchange("unrouted", "fanout");
    broker.declare_exchange("orders", "topic", {.arguments = {{"alternate-exchange", "unrouted"}}});
    broker.declare_exchange("audit", "fanout");
    broker.declare_exchange("orders.dlx", "direct");
    broker.bind_exchange("audit", "orders", "order.#");

    // Queues: work with a limit, priorities and dead letters; a parking lot; an audit log;
    // a queue for whatever nothing matched.
    broker.declare_queue("order.work", {.arguments = {{"x-max-length", 100},
                                                      {"x-max-priority", 5},
                                                      {"x-dead-letter-exchange", "orders.dlx"},
                                                      {"x-dead-letter-routing-key", "failed"}}});
    broker.declare_queue("order.parked");
    broker.declare_queue("audit.log");
    broker.declare_queue("unrouted.log");
    broker.bind_queue("order.work", "orders", "order.*.created");
    broker.bind_queue("order.parked", "orders.dlx", "failed");
    broker.bind_queue("audit.log", "audit");
    broker.bind_queue("unrouted.log", "unrouted");

    // Two workers with a prefetch each; the one with the higher priority is served first.
    int handled = 0;
    auto worker = [&](warren::delivery& d) {
        ++handled;
        if (d.body() == "broken") d.reject(false); // to the parking lot, with x-death
        else d.ack();
    };
    auto fast = broker.subscribe("order.work", worker, {.tag = "fast-worker", .ack = warren::ack_mode::manual,
                                                         .prefetch = 10, .priority = 10});
    auto slow = broker.subscribe("order.work", worker, {.tag = "slow-worker", .ack = warren::ack_mode::manual,
                                                         .prefetch = 1});

    (void)broker.publish("orders", {.routing_key = "order.eu.created", .body = "book"});
    (void)broker.publish("orders", {.routing_key = "order.us.created", .body = "broken"});
    (void)broker.publish("orders", {.routing_key = "invoice.sent", .body = "unmatched"});
    broker.dispatch();

    const warren::topology_snapshot topology = broker.snapshot();
    const std::string dot = warren::to_dot(topology);
    if (argc > 1) {
        std::ofstream(argv[1]) << dot;
        std::cout << "wrote " << argv[1] << '\n';
    } else {
        std::cout << dot;
    }

    // What the picture must show.
    const auto* parked = topology.find_queue("order.parked");
    const bool ok = handled == 2 && parked != nullptr && parked->counters.ready == 1 &&
                    topology.find_queue("unrouted.log")->counters.ready == 1 &&
                    topology.find_queue("audit.log")->counters.ready == 2 && topology.consumers.size() == 2 &&
                    contains(dot, "\"x:orders\" -> \"q:order.work\" [label=\"order.*.created\"]") &&
                    contains(dot, "\"x:orders\" -> \"x:unrouted\" [style=dashed") &&
                    contains(dot, "\"q:order.work\" -> \"x:orders.dlx\" [style=dotted") &&
                    contains(dot, "fast-worker") && !contains(dot, "amq.fanout");
    if (!ok) {
        std::cerr << "topology_dot: the snapshot or the picture is not what was built\n";
        return 1;
    }
    return 0;
}

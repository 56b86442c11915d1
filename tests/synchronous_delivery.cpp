// Synchronous consumers (consumer_options::synchronous): the callback runs inside the
// publish that delivers to it, as a signal's slot runs inside the emit. The order of
// receivers, nesting and its depth bound, acks and prefetch, exceptions, dead letters, and
// consumers that end themselves or delete their queue from inside the callback.

#include <warren/broker.hpp>

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/counters_text.hpp"

using warren_test::counts;
using warren_test::drain;
using warren_test::manual;
using warren_test::send;
using warren_test::stats;
using warren_test::strings;
using warren_test::to_queue;
using warren_test::with_args;

namespace {

warren::consumer_options synchronous(warren::ack_mode ack = warren::ack_mode::automatic, std::uint16_t prefetch = 0) {
    warren::consumer_options o;
    o.ack = ack;
    o.prefetch = prefetch;
    o.synchronous = true;
    return o;
}

} // namespace

TEMPLATE_TEST_CASE("synchronous: every receiver's callback has run when publish returns, in the order of the queues",
                   "[synchronous]", warren::broker, warren::concurrent_broker) {
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_exchange("signal", "fanout");
    strings seen;
    std::vector<subscription> subs;
    for (const char* q : {"first", "second", "third"}) {
        b.declare_queue(q);
        b.bind_queue(q, "signal");
        subs.push_back(b.subscribe(q, [&, q](auto& d) { seen.push_back(std::string(q) + ":" + d.body()); }, synchronous()));
    }
    CHECK(b.publish("signal", {.routing_key = "", .body = "fired"}) == 3);
    CHECK(seen == strings{"first:fired", "second:fired", "third:fired"});
    CHECK(b.dispatch() == 0); // nothing left for dispatch
    CHECK(counts(stats(b, "second")) == "enqueued=1 delivered=1 acked=1 consumers=1");
    CHECK(b.publish("signal", "", std::string("again")) == 3); // the parts form too
    CHECK(seen.size() == 6);
}

TEMPLATE_TEST_CASE("synchronous: beside ordinary consumers of the same queue, each keeps its own delivery point",
                   "[synchronous]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings seen;
    auto now = b.subscribe("q", [&](auto& d) { seen.push_back("sync:" + d.body()); }, synchronous());
    auto later = b.subscribe("q", [&](auto& d) { seen.push_back("dispatch:" + d.body()); });
    send(b, "q", {"a", "b", "c", "d"}); // round robin: a and c to `now`, b and d to `later`
    CHECK(seen == strings{"sync:a", "sync:c"});
    CHECK(stats(b, "q").awaiting_callback == 2);
    CHECK(b.dispatch() == 2);
    CHECK(seen == strings{"sync:a", "sync:c", "dispatch:b", "dispatch:d"});
}

TEMPLATE_TEST_CASE("synchronous: manual acks and prefetch, and what waits ready goes by dispatch",
                   "[synchronous][ack]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    std::vector<delivery> held;
    strings seen;
    SECTION("acked inside the callback") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                d.ack();
            },
            synchronous(manual, 1));
        send(b, "q", {"a", "b"});
        CHECK(seen == strings{"a", "b"}); // each acked before the next arrived: credit again
        CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=2 acked=2 consumers=1");
    }
    SECTION("kept past the callback: at its prefetch limit, the next message waits ready for dispatch") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                held.push_back(std::move(d));
            },
            synchronous(manual, 1));
        send(b, "q", {"a", "b"});
        CHECK(seen == strings{"a"});
        CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=1 ready=1 unacked=1 ready_bytes=1 consumers=1");
        held.front().ack();
        CHECK(seen == strings{"a"}); // an ack is not a publish
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"a", "b"});
    }
    SECTION("a callback's requeue goes back to the queue, for dispatch") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body() + (d.redelivered() ? "*" : ""));
                if (!d.redelivered()) d.nack(false, true);
                else d.ack();
            },
            synchronous(manual));
        send(b, "q", {"a"});
        CHECK(seen == strings{"a"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"a", "a*"});
    }
}

TEMPLATE_TEST_CASE("synchronous: a publish from a callback runs its receivers nested, and one to the callback's own queue waits for dispatch",
                   "[synchronous][reentrancy]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("outer");
    b.declare_queue("inner");
    strings seen;
    auto inner = b.subscribe("inner", [&](auto& d) { seen.push_back("inner:" + d.body()); }, synchronous());
    auto outer = b.subscribe(
        "outer",
        [&](auto& d) {
            seen.push_back("outer begins:" + d.body());
            if (d.body() == "1") {
                CHECK(b.publish("", to_queue<TestType>("inner", "x")) == 1);
                CHECK(b.publish("", to_queue<TestType>("outer", "2")) == 1); // its own queue: never re-entered
            }
            seen.push_back("outer ends:" + d.body());
        },
        synchronous());
    send(b, "outer", {"1"});
    CHECK(seen == strings{"outer begins:1", "inner:x", "outer ends:1"});
    CHECK(stats(b, "outer").awaiting_callback == 1); // handed to it, for dispatch
    CHECK(b.dispatch() == 1);
    CHECK(seen == strings{"outer begins:1", "inner:x", "outer ends:1", "outer begins:2", "outer ends:2"});
}

TEMPLATE_TEST_CASE("synchronous: a cycle of publishes ends inside the publish, and goes on one round per dispatch",
                   "[synchronous][reentrancy]", warren::broker, warren::concurrent_broker) {
    // ping publishes to pong, pong to ping: as signals, this would recurse without end.
    TestType b;
    b.declare_queue("ping");
    b.declare_queue("pong");
    strings seen;
    auto ping = b.subscribe("ping", [&](auto& d) {
        seen.push_back("ping:" + d.body());
        (void)b.publish("", to_queue<TestType>("pong", d.body()));
    }, synchronous());
    auto pong = b.subscribe("pong", [&](auto& d) {
        seen.push_back("pong:" + d.body());
        (void)b.publish("", to_queue<TestType>("ping", d.body() + "'"));
    }, synchronous());
    send(b, "ping", {"x"});
    CHECK(seen == strings{"ping:x", "pong:x"}); // ping is running when pong publishes to it
    CHECK(b.dispatch(1) == 1);
    CHECK(seen == strings{"ping:x", "pong:x", "ping:x'", "pong:x'"});
}

TEMPLATE_TEST_CASE("synchronous: a chain of publishes nests up to max_synchronous_depth, deeper links wait for dispatch",
                   "[synchronous][reentrancy]", warren::broker, warren::concurrent_broker) {
    using subscription = typename TestType::subscription;
    constexpr std::size_t links = 3 * TestType::max_synchronous_depth;
    TestType b;
    std::size_t depth = 0;
    std::size_t deepest = 0;
    std::vector<std::size_t> order;
    std::vector<subscription> subs;
    for (std::size_t i = 0; i < links; ++i) b.declare_queue("link" + std::to_string(i));
    for (std::size_t i = 0; i < links; ++i) {
        subs.push_back(b.subscribe(
            "link" + std::to_string(i),
            [&, i](auto&) {
                ++depth;
                deepest = std::max(deepest, depth);
                order.push_back(i);
                if (i + 1 < links) CHECK(b.publish("", to_queue<TestType>("link" + std::to_string(i + 1), "")) == 1);
                --depth;
            },
            synchronous()));
    }
    constexpr std::size_t bound = TestType::max_synchronous_depth;
    send(b, "link0", {""});
    CHECK(deepest == bound);
    CHECK(order.size() == bound); // links 0 to 7 inside the publish
    CHECK(b.dispatch() == 2);     // link 8 (and 9 to 16 inside its publish), then link 17 (18 to 23)
    CHECK(deepest == bound + 1);  // link 8, run by dispatch, below eight nested ones
    REQUIRE(order.size() == links);
    for (std::size_t i = 0; i < links; ++i) CHECK(order[i] == i);
}

TEMPLATE_TEST_CASE("synchronous: a throwing callback: the other receivers still run, then publish rethrows or the handler hears",
                   "[synchronous][error]", warren::broker, warren::concurrent_broker) {
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_exchange("signal", "fanout");
    b.declare_queue("dead");
    strings seen;
    std::vector<subscription> subs;
    for (const char* q : {"a", "b", "c"}) {
        b.declare_queue(q, with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dead"}}));
        b.bind_queue(q, "signal");
        subs.push_back(b.subscribe(
            q,
            [&, q](auto& d) {
                seen.push_back(q);
                if (std::string(q) != "b") d.ack();
                else throw std::runtime_error(std::string("refused by ") + q);
            },
            synchronous(manual)));
    }
    SECTION("without an error handler: rethrown once every receiver ran; the delivery it left pending is rejected") {
        CHECK_THROWS_WITH(b.publish("signal", {.routing_key = "", .body = "m"}), "refused by b");
        CHECK(seen == strings{"a", "b", "c"});
        CHECK(counts(stats(b, "b")) == "enqueued=1 delivered=1 dead_lettered.rejected=1 consumers=1");
        CHECK(drain(b, "dead") == strings{"m"});
    }
    SECTION("with an error handler: it hears the failure, and publish returns the queues routed to") {
        strings failures;
        b.set_error_handler([&](const warren::consumer_error& e) { failures.push_back(e.queue); });
        CHECK(b.publish("signal", {.routing_key = "", .body = "m"}) == 3);
        CHECK(seen == strings{"a", "b", "c"});
        CHECK(failures == strings{"b"});
        CHECK(drain(b, "dead") == strings{"m"});
    }
    CHECK(stats(b, "a").acked == 1);
    CHECK(stats(b, "c").acked == 1);
}

TEMPLATE_TEST_CASE("synchronous: dead letters a publish causes reach synchronous receivers inside it, a reject's wait for dispatch",
                   "[synchronous][dead-letter]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("dead");
    b.declare_queue("full", with_args({{"x-max-length", 1}, {"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dead"}}));
    strings dead;
    auto watcher = b.subscribe("dead", [&](delivery& d) { dead.push_back(d.body()); }, synchronous());
    send(b, "full", {"a", "b"}); // no consumer on "full": b drops a from its head
    CHECK(dead == strings{"a"});

    b.declare_queue("work", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dead"}}));
    std::optional<delivery> held;
    auto worker = b.subscribe("work", [&](delivery& d) { held = std::move(d); }, warren_test::manual_options());
    send(b, "work", {"job"});
    CHECK(b.dispatch() == 1);
    REQUIRE(held);
    held->reject(false); // dead-lettered by a reject, not by a publish
    CHECK(dead == strings{"a"});
    CHECK(b.dispatch() == 1);
    CHECK(dead == strings{"a", "job"});
}

TEMPLATE_TEST_CASE("synchronous: a callback may end its own subscription or delete its own queue",
                   "[synchronous][reentrancy]", warren::broker, warren::concurrent_broker) {
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_exchange("signal", "fanout");
    strings seen;
    std::optional<subscription> self;
    std::vector<subscription> others;
    b.declare_queue("a");
    b.declare_queue("b");
    b.bind_queue("a", "signal");
    b.bind_queue("b", "signal");
    SECTION("its own subscription") {
        self = b.subscribe(
            "a",
            [&](auto& d) {
                seen.push_back("a:" + d.body());
                self.reset();
            },
            synchronous());
        others.push_back(b.subscribe("b", [&](auto& d) { seen.push_back("b:" + d.body()); }, synchronous()));
        CHECK(b.publish("signal", {.routing_key = "", .body = "1"}) == 2);
        CHECK(b.publish("signal", {.routing_key = "", .body = "2"}) == 2);
        CHECK(seen == strings{"a:1", "b:1", "b:2"});
        CHECK(drain(b, "a") == strings{"2"}); // no consumer left: it waited ready
    }
    SECTION("its own queue") {
        others.push_back(b.subscribe(
            "a",
            [&](auto& d) {
                seen.push_back("a:" + d.body());
                CHECK(b.delete_queue("a") == 0);
            },
            synchronous()));
        others.push_back(b.subscribe("b", [&](auto& d) { seen.push_back("b:" + d.body()); }, synchronous()));
        CHECK(b.publish("signal", {.routing_key = "", .body = "1"}) == 2);
        CHECK(b.publish("signal", {.routing_key = "", .body = "2"}) == 1);
        CHECK(seen == strings{"a:1", "b:1", "b:2"});
        CHECK_FALSE(b.has_queue("a"));
    }
}

TEMPLATE_TEST_CASE("synchronous: publishes into another broker from a callback run there, each broker's receivers by its own rules",
                   "[synchronous][reentrancy]", warren::broker, warren::concurrent_broker) {
    TestType left;
    TestType right;
    left.declare_queue("q");
    right.declare_queue("q");
    strings seen;
    std::vector<std::string> left_errors;
    left.set_error_handler([&](const warren::consumer_error&) { left_errors.push_back("left"); });
    auto r = right.subscribe("q", [&](auto& d) {
        seen.push_back("right:" + d.body());
        throw std::runtime_error("right fails");
    }, synchronous());
    auto l = left.subscribe("q", [&](auto& d) {
        seen.push_back("left:" + d.body());
        CHECK_THROWS_WITH(right.publish("", to_queue<TestType>("q", "from left")), "right fails"); // right has no handler
    }, synchronous());
    CHECK(left.publish("", to_queue<TestType>("q", "go")) == 1);
    CHECK(seen == strings{"left:go", "right:from left"});
    CHECK(left_errors.empty());
}

TEMPLATE_TEST_CASE("synchronous: a rejection cycle between two synchronous consumers ends inside the publish",
                   "[synchronous][dead-letter]", warren::broker, warren::concurrent_broker) {
    // Each rejects into a dead-letter exchange that routes back to their queue: the dead
    // letter of a reject is not a publish, so it waits for dispatch (found by the fuzzer,
    // which saw the publish never return).
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "q"}}));
    std::size_t rejected = 0;
    auto rejecting = [&](delivery& d) {
        ++rejected;
        d.reject(false);
    };
    auto first = b.subscribe("q", rejecting, synchronous(manual));
    auto second = b.subscribe("q", rejecting, synchronous(manual));
    send(b, "q", {"m"});
    CHECK(rejected == 1);
    CHECK(stats(b, "q").awaiting_callback == 1); // the dead letter, handed to `second`
    CHECK(b.dispatch(3) == 3);
    CHECK(rejected == 4);
}

TEMPLATE_TEST_CASE("synchronous: a consumer's messages keep their order when one of them waits for dispatch",
                   "[synchronous][order]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    strings seen;
    // A second consumer, at its prefetch limit, so that every message goes to the first.
    std::optional<delivery> held;
    auto full = b.subscribe("q", [&](delivery& d) { held = std::move(d); }, warren_test::manual_options("full", 1));
    send(b, "q", {"held"});
    CHECK(b.dispatch() == 1);
    auto consumer = b.subscribe("q", [&](auto& d) {
        seen.push_back(d.body());
        if (d.body() == "first") (void)b.publish("", to_queue<TestType>("q", "second")); // waits: never re-entered
    }, synchronous());
    send(b, "q", {"first"});
    send(b, "q", {"third"}); // arrives after "second", which waits for dispatch: so does it
    CHECK(seen == strings{"first"});
    CHECK(b.dispatch() == 2);
    CHECK(seen == strings{"first", "second", "third"});
    send(b, "q", {"fourth"}); // nothing waits any more: inside the publish again
    CHECK(seen == strings{"first", "second", "third", "fourth"});
}

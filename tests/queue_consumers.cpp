// Consumers as RabbitMQ documents them: consumer priorities (consumer-priority.html), single
// active consumer (consumers.html), the server's cancel notification when a queue is deleted
// (consumer_options::on_cancel), and prefetch with negative acknowledgements and requeueing
// (consumer-prefetch.html, confirms.html "Negative Acknowledgement and Requeuing").
// The basics (rotation, prefetch limits, exclusive consumers) are in queue.cpp and
// subscription.cpp.

#include <warren/broker.hpp>
#include <warren/topology.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::drain_marked;
using warren_test::error_of;
using warren_test::manual;
using warren_test::send;
using warren_test::send_numbered;
using warren_test::strings;
using warren_test::to_queue;

namespace {

constexpr auto automatic = warren::ack_mode::automatic;

warren::consumer_options consumer(std::string tag, std::int32_t priority = 0, warren::ack_mode ack = automatic,
                                  std::uint16_t prefetch = 0) {
    warren::consumer_options o;
    o.tag = std::move(tag);
    o.priority = priority;
    o.ack = ack;
    o.prefetch = prefetch;
    return o;
}

warren::queue_options single_active() {
    warren::queue_options o;
    o.arguments.set("x-single-active-consumer", true);
    return o;
}

/// Records "tag:body" (a trailing '*' marks a redelivery) across consumers, in callback
/// order; hold() also keeps manual deliveries unsettled, by tag.
template <class Broker>
struct recorder {
    using delivery = typename Broker::delivery;
    strings seen;
    std::map<std::string, std::vector<delivery>> held;

    void note(const std::string& tag, const delivery& d) {
        seen.push_back(tag + ":" + d.body() + (d.redelivered() ? "*" : ""));
    }
    auto record(std::string tag) {
        return [this, tag = std::move(tag)](delivery& d) { note(tag, d); };
    }
    auto hold(std::string tag) {
        return [this, tag = std::move(tag)](delivery& d) {
            note(tag, d);
            held[tag].push_back(std::move(d));
        };
    }
};

/// Whether the snapshot shows `tag` as a consumer of `queue`, and as its active one.
enum class consumer_state { absent, active, waiting };
consumer_state state_of(const warren::topology_snapshot& s, const std::string& queue, const std::string& tag) {
    for (const auto& c : s.consumers) {
        if (c.queue == queue && c.tag == tag) return c.active ? consumer_state::active : consumer_state::waiting;
    }
    return consumer_state::absent;
}

} // namespace

// ---------------------------------------------------------------------------------------
// consumer priorities (consumer-priority.html)

TEMPLATE_TEST_CASE("consumer priority: the highest-priority consumer receives every message while it is active "
                   "(RabbitMQ consumer-priority.html)",
                   "[consumer][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto low = b.subscribe("q", r.record("low"), consumer("low", 0));
    auto high = b.subscribe("q", r.record("high"), consumer("high", 10));
    auto mid = b.subscribe("q", r.record("mid"), consumer("mid", 5));
    send_numbered(b, "q", "m", 4);
    CHECK(b.dispatch() == 4);
    CHECK(r.seen == strings{"high:m0", "high:m1", "high:m2", "high:m3"});
}

TEMPLATE_TEST_CASE("consumer priority: round robin among the active consumers of the same highest priority "
                   "(RabbitMQ consumer-priority.html)",
                   "[consumer][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto a = b.subscribe("q", r.record("a"), consumer("a", 5));
    auto low = b.subscribe("q", r.record("low"), consumer("low", 0));
    auto bb = b.subscribe("q", r.record("b"), consumer("b", 5));
    send_numbered(b, "q", "m", 5);
    CHECK(b.dispatch() == 5);
    CHECK(r.seen == strings{"a:m0", "b:m1", "a:m2", "b:m3", "a:m4"});
}

TEMPLATE_TEST_CASE("consumer priority: a lower-priority consumer receives only while the higher ones are blocked "
                   "at their prefetch (RabbitMQ consumer-priority.html)",
                   "[consumer][priority][prefetch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto high = b.subscribe("q", r.hold("high"), consumer("high", 10, manual, 2));
    auto low = b.subscribe("q", r.record("low"), consumer("low", 0));
    send_numbered(b, "q", "m", 5);
    CHECK(b.dispatch() == 5);
    CHECK(r.seen == strings{"high:m0", "high:m1", "low:m2", "low:m3", "low:m4"});

    SECTION("an ack makes the high one active again: it takes the next message, then blocks again") {
        r.held["high"][0].ack();
        send_numbered(b, "q", "n", 2);
        CHECK(b.dispatch() == 2);
        CHECK(r.seen == strings{"high:m0", "high:m1", "low:m2", "low:m3", "low:m4", "high:n0", "low:n1"});
    }
    SECTION("a requeued message goes to the high one once the requeue unblocked it") {
        r.held["high"][0].reject(); // m0 back at the head, high has room for one
        CHECK(b.dispatch() == 1);
        CHECK(r.seen.back() == "high:m0*");
        CHECK(b.message_count("q") == 0);
    }
}

TEMPLATE_TEST_CASE("consumer priority: negative priorities rank below the default 0 "
                   "(RabbitMQ consumer-priority.html)",
                   "[consumer][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto lowest = b.subscribe("q", r.record("p-5"), consumer("p-5", -5));
    auto standard = b.subscribe("q", r.hold("p0"), consumer("p0", 0, manual, 1)); // priority left at its default
    auto minus_one = b.subscribe("q", r.hold("p-1"), consumer("p-1", -1, manual, 1));
    send_numbered(b, "q", "m", 4);
    CHECK(b.dispatch() == 4);
    CHECK(r.seen == strings{"p0:m0", "p-1:m1", "p-5:m2", "p-5:m3"});
}

TEMPLATE_TEST_CASE("consumer priority: equals unblocked by acks rejoin the rotation in the order they were freed",
                   "[consumer][priority][prefetch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto a = b.subscribe("q", r.hold("a"), consumer("a", 5, manual, 1));
    auto bb = b.subscribe("q", r.hold("b"), consumer("b", 5, manual, 1));
    auto low = b.subscribe("q", r.record("low"), consumer("low", 0));
    send_numbered(b, "q", "m", 4);
    CHECK(b.dispatch() == 4);
    CHECK(r.seen == strings{"a:m0", "b:m1", "low:m2", "low:m3"});
    // RabbitMQ puts an unblocked consumer back at the end of its priority's rotation: b,
    // freed first, is ahead of a.
    r.held["b"][0].ack();
    r.held["a"][0].ack();
    send_numbered(b, "q", "n", 3);
    CHECK(b.dispatch() == 3);
    CHECK(r.seen == strings{"a:m0", "b:m1", "low:m2", "low:m3", "b:n0", "a:n1", "low:n2"});
}

TEMPLATE_TEST_CASE("consumer priority: a consumer whose callback is running counts as blocked, so a nested "
                   "dispatch serves the next priority down",
                   "[consumer][priority][reentrancy]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    std::size_t nested = 0;
    send_numbered(b, "q", "m", 3); // ready before anyone subscribes: nothing is handed over on arrival
    auto high = b.subscribe(
        "q",
        [&](typename TestType::delivery& d) {
            r.note("high", d);
            if (d.body() == "m0") nested = b.dispatch(1);
        },
        consumer("high", 10));
    auto low = b.subscribe("q", r.record("low"), consumer("low", 0));
    CHECK(b.dispatch() == 2); // m0 and m2; m1 went in the nested call
    CHECK(nested == 1);
    CHECK(r.seen == strings{"high:m0", "low:m1", "high:m2"});
}

TEMPLATE_TEST_CASE("consumer priority: a higher-priority consumer that subscribes later takes over at once",
                   "[consumer][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto low = b.subscribe("q", r.record("low"), consumer("low", 0));
    send_numbered(b, "q", "m", 1);
    CHECK(b.dispatch() == 1);
    auto high = b.subscribe("q", r.record("high"), consumer("high", 1));
    send_numbered(b, "q", "n", 2);
    CHECK(b.dispatch() == 2);
    CHECK(r.seen == strings{"low:m0", "high:n0", "high:n1"});

    SECTION("and the lower one receives again once it has gone") {
        high.release();
        send_numbered(b, "q", "o", 1);
        CHECK(b.dispatch() == 1);
        CHECK(r.seen.back() == "low:o0");
    }
}

TEMPLATE_TEST_CASE("consumer priority: a cancelled high-priority consumer's unacked messages go to the next "
                   "priority down, redelivered, in their original order",
                   "[consumer][priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto high = b.subscribe("q", r.hold("high"), consumer("high", 3, manual)); // no prefetch limit
    auto low = b.subscribe("q", r.record("low"), consumer("low", -3));
    send_numbered(b, "q", "m", 3);
    CHECK(b.dispatch() == 3);
    CHECK(r.seen == strings{"high:m0", "high:m1", "high:m2"}); // never blocked: low got nothing
    r.held["high"][1].ack();
    high.release();
    CHECK(b.message_count("q") == 2);
    send_numbered(b, "q", "n", 1);
    CHECK(b.dispatch() == 3);
    CHECK(r.seen == strings{"high:m0", "high:m1", "high:m2", "low:m0*", "low:m2*", "low:n0"});
    const auto s = b.queue_stats("q");
    CHECK(s.requeued == 2);
    CHECK(s.redelivered == 2);
    CHECK(s.delivered == 6);
    CHECK(s.acked == 4); // m1 by hand, three automatic deliveries
    CHECK(s.unacked == 0);
    CHECK(s.accounted());
}

// ---------------------------------------------------------------------------------------
// single active consumer (consumers.html, "Single Active Consumer")

TEMPLATE_TEST_CASE("single active consumer: only the first consumer registered receives "
                   "(RabbitMQ consumers.html)",
                   "[consumer][sac]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", single_active());
    recorder<TestType> r;
    auto first = b.subscribe("q", r.record("first"), consumer("first"));
    auto second = b.subscribe("q", r.record("second"), consumer("second"));
    // Priorities do not choose the active consumer of a classic queue in RabbitMQ 3.10.
    auto third = b.subscribe("q", r.record("third"), consumer("third", 100));
    CHECK(b.consumer_count("q") == 3);
    send_numbered(b, "q", "m", 4);
    CHECK(b.dispatch() == 4);
    CHECK(r.seen == strings{"first:m0", "first:m1", "first:m2", "first:m3"});

    SECTION("the snapshot marks only the active consumer active") {
        const auto s = b.snapshot();
        CHECK(state_of(s, "q", "first") == consumer_state::active);
        CHECK(state_of(s, "q", "second") == consumer_state::waiting);
        CHECK(state_of(s, "q", "third") == consumer_state::waiting);
    }
    SECTION("a queue without the argument has every consumer active") {
        b.declare_queue("plain");
        auto p1 = b.subscribe("plain", r.record("p1"), consumer("p1"));
        auto p2 = b.subscribe("plain", r.record("p2"), consumer("p2"));
        const auto s = b.snapshot();
        CHECK(state_of(s, "plain", "p1") == consumer_state::active);
        CHECK(state_of(s, "plain", "p2") == consumer_state::active);
    }
}

TEMPLATE_TEST_CASE("single active consumer: messages wait for the active consumer even while it is at its "
                   "prefetch (RabbitMQ consumers.html)",
                   "[consumer][sac][prefetch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", single_active());
    recorder<TestType> r;
    auto active = b.subscribe("q", r.hold("active"), consumer("active", 0, manual, 2));
    auto other = b.subscribe("q", r.record("other"), consumer("other"));
    send_numbered(b, "q", "m", 5);
    CHECK(b.dispatch() == 2);
    CHECK(r.seen == strings{"active:m0", "active:m1"});
    CHECK(b.message_count("q") == 3);
    CHECK(b.dispatch() == 0);

    r.held["active"][0].ack();
    CHECK(b.dispatch() == 1);
    CHECK(r.seen.back() == "active:m2");

    SECTION("basic.get is not a consumer: it still takes messages") {
        auto got = b.try_get("q");
        REQUIRE(got);
        CHECK(got->body() == "m3");
        CHECK(b.message_count("q") == 1);
    }
}

TEMPLATE_TEST_CASE("single active consumer: when the active consumer is cancelled, its unacked messages return "
                   "in their original positions, redelivered, and the next one in subscription order receives "
                   "them (RabbitMQ consumers.html)",
                   "[consumer][sac]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", single_active());
    recorder<TestType> r;
    auto c1 = b.subscribe("q", r.hold("c1"), consumer("c1", 0, manual, 3));
    auto c2 = b.subscribe("q", r.record("c2"), consumer("c2"));
    auto c3 = b.subscribe("q", r.record("c3"), consumer("c3"));
    send_numbered(b, "q", "m", 5);
    CHECK(b.dispatch() == 3);
    r.held["c1"][1].ack(); // m1
    CHECK(b.dispatch() == 1);
    CHECK(r.seen == strings{"c1:m0", "c1:m1", "c1:m2", "c1:m3"});
    CHECK(b.message_count("q") == 1); // m4

    c1.release(); // m0, m2, m3 return ahead of m4
    CHECK(b.message_count("q") == 4);
    {
        const auto s = b.snapshot();
        CHECK(state_of(s, "q", "c1") == consumer_state::absent);
        CHECK(state_of(s, "q", "c2") == consumer_state::active);
        CHECK(state_of(s, "q", "c3") == consumer_state::waiting);
    }
    CHECK(b.dispatch() == 4);
    CHECK(r.seen == strings{"c1:m0", "c1:m1", "c1:m2", "c1:m3", "c2:m0*", "c2:m2*", "c2:m3*", "c2:m4"});
    const auto s = b.queue_stats("q");
    CHECK(s.requeued == 3);
    CHECK(s.redelivered == 3);
    CHECK(s.delivered == 8);
    CHECK(s.consumers == 2);
    CHECK(s.accounted());
}

TEMPLATE_TEST_CASE("single active consumer: failover follows subscription order, whatever the rotation or "
                   "the priorities",
                   "[consumer][sac]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", single_active());
    recorder<TestType> r;
    std::optional<typename TestType::subscription> c1(b.subscribe("q", r.record("c1"), consumer("c1", 0)));
    std::optional<typename TestType::subscription> c2(b.subscribe("q", r.record("c2"), consumer("c2", -7)));
    std::optional<typename TestType::subscription> c3(b.subscribe("q", r.record("c3"), consumer("c3", 7)));
    std::optional<typename TestType::subscription> c4(b.subscribe("q", r.record("c4"), consumer("c4", 0)));

    send(b, "q", {"a"});
    CHECK(b.dispatch() == 1);
    c3.reset(); // a waiting consumer leaves: nothing changes
    send(b, "q", {"b"});
    CHECK(b.dispatch() == 1);
    c1.reset(); // the active one leaves: c2, the earliest left
    send(b, "q", {"c"});
    CHECK(b.dispatch() == 1);
    c2.reset();
    send(b, "q", {"d"});
    CHECK(b.dispatch() == 1);
    CHECK(r.seen == strings{"c1:a", "c1:b", "c2:c", "c4:d"});

    SECTION("a consumer subscribing after the others left becomes active only when none is left") {
        auto c5 = b.subscribe("q", r.record("c5"), consumer("c5", 50));
        send(b, "q", {"e"});
        CHECK(b.dispatch() == 1);
        CHECK(r.seen.back() == "c4:e");
        c4.reset();
        send(b, "q", {"f"});
        CHECK(b.dispatch() == 1);
        CHECK(r.seen.back() == "c5:f");
    }
}

TEMPLATE_TEST_CASE("single active consumer: the active consumer ending itself in its callback hands over, "
                   "the unsettled in-flight message returns first",
                   "[consumer][sac][reentrancy]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q", single_active());
    recorder<TestType> r;
    typename TestType::subscription first;
    first = b.subscribe(
        "q",
        [&](delivery& d) {
            r.note("first", d);
            first.release(); // not settled: m0 goes back when this returns
        },
        consumer("first", 0, manual));
    auto second = b.subscribe("q", r.record("second"), consumer("second"));
    send_numbered(b, "q", "m", 3);
    CHECK(b.dispatch() == 4);
    // All three were handed to `first` as they arrived (no prefetch limit), so all three
    // return, redelivered, when it ends, as on RabbitMQ; the one in flight keeps its place.
    CHECK(r.seen == strings{"first:m0", "second:m0*", "second:m1*", "second:m2*"});
    CHECK(b.queue_stats("q").requeued == 3);
}

TEMPLATE_TEST_CASE("single active consumer: an exclusive consumer is refused, even on a queue without "
                   "consumers (RabbitMQ: exclusive_consume_unavailable)",
                   "[consumer][sac][exclusive]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", single_active());
    auto noop = [](auto&) {};
    warren::consumer_options exclusive = consumer("x");
    exclusive.exclusive = true;

    SECTION("no consumers yet") {
        CHECK(error_of([&] { (void)b.subscribe("q", noop, exclusive); }, warren::reply_code::access_refused) ==
              "ACCESS_REFUSED - queue 'q' in exclusive use");
        CHECK(b.consumer_count("q") == 0);
        auto plain = b.subscribe("q", noop, consumer("plain")); // the refusal left nothing behind
        CHECK(b.consumer_count("q") == 1);
    }
    SECTION("with consumers") {
        auto plain = b.subscribe("q", noop, consumer("plain"));
        CHECK(error_of([&] { (void)b.subscribe("q", noop, exclusive); }, warren::reply_code::access_refused) ==
              "ACCESS_REFUSED - queue 'q' in exclusive use");
        CHECK(b.consumer_count("q") == 1);
    }
    SECTION("a queue without single active consumer still takes one on an empty queue") {
        b.declare_queue("plain");
        auto only = b.subscribe("plain", noop, exclusive);
        CHECK(b.consumer_count("plain") == 1);
        CHECK(error_of([&] { (void)b.subscribe("plain", noop, consumer("other")); },
                       warren::reply_code::access_refused) == "ACCESS_REFUSED - queue 'plain' in exclusive use");
    }
}

// ---------------------------------------------------------------------------------------
// the server's cancel notification: consumer_options::on_cancel

TEMPLATE_TEST_CASE("consumer cancellation: deleting a queue ends its consumers and runs each on_cancel once "
                   "(RabbitMQ consumer-cancel notification)",
                   "[consumer][cancel]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", single_active());
    strings cancelled;
    std::vector<bool> queue_there; // what each on_cancel saw
    auto notify = [&](std::string tag) {
        warren::consumer_options o = consumer(tag, 0, manual);
        o.on_cancel = [&, tag] {
            cancelled.push_back(tag);
            queue_there.push_back(b.has_queue("q"));
        };
        return o;
    };
    recorder<TestType> r;
    auto active = b.subscribe("q", r.hold("active"), notify("active"));
    auto waiting = b.subscribe("q", r.record("waiting"), notify("waiting"));
    auto quiet = b.subscribe("q", r.record("quiet"), consumer("quiet")); // no on_cancel
    send_numbered(b, "q", "m", 3);
    CHECK(b.dispatch() == 3);

    CHECK(b.delete_queue("q") == 0); // every message was unacked: none ready
    // on_cancel ran inside delete_queue, once the queue was gone.
    std::sort(cancelled.begin(), cancelled.end());
    CHECK(cancelled == strings{"active", "waiting"});
    CHECK(queue_there == std::vector<bool>{false, false});
    CHECK_FALSE(active.active());
    CHECK_FALSE(waiting.active());
    CHECK_FALSE(quiet.active());

    // Nothing runs it again: not ending the handles, not settling, not the broker.
    REQUIRE_NOTHROW(r.held["active"][0].ack());
    active.release();
    waiting.release();
    CHECK(b.delete_queue("q") == 0);
    CHECK(cancelled.size() == 2);
}

TEMPLATE_TEST_CASE("consumer cancellation: on_cancel does not run when the consumer ends by itself or with the "
                   "broker",
                   "[consumer][cancel]", warren::broker, warren::concurrent_broker) {
    int calls = 0;
    warren::consumer_options o = consumer("c");
    o.on_cancel = [&] { ++calls; };

    SECTION("a plain unsubscribe") {
        TestType b;
        b.declare_queue("q");
        auto sub = b.subscribe("q", [](auto&) {}, o);
        sub.release();
        CHECK(b.delete_queue("q") == 0);
    }
    SECTION("an auto-delete queue deleted as its last consumer leaves") {
        TestType b;
        warren::queue_options auto_delete;
        auto_delete.auto_delete = true;
        b.declare_queue("q", auto_delete);
        auto sub = b.subscribe("q", [](auto&) {}, o);
        sub.release();
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("delete_queue refused by if_unused") {
        TestType b;
        b.declare_queue("q");
        auto sub = b.subscribe("q", [](auto&) {}, o);
        CHECK(error_of([&] { (void)b.delete_queue("q", {.if_unused = true}); },
                       warren::reply_code::precondition_failed) == "PRECONDITION_FAILED - queue 'q' in use");
        CHECK(sub.active());
    }
    SECTION("the broker is destroyed") {
        std::optional<TestType> b(std::in_place);
        b->declare_queue("q");
        auto sub = b->subscribe("q", [](auto&) {}, o);
        b.reset();
        CHECK_FALSE(sub.active());
    }
    CHECK(calls == 0);
}

TEMPLATE_TEST_CASE("consumer cancellation: on_cancel may use the broker: declare the queue again and subscribe",
                   "[consumer][cancel][reentrancy]", warren::broker, warren::concurrent_broker) {
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    std::vector<subscription> renewed;
    warren::consumer_options o = consumer("old");
    o.on_cancel = [&] {
        b.declare_queue("q");
        renewed.push_back(b.subscribe("q", r.record("new"), consumer("new")));
        (void)b.publish("", to_queue<TestType>("q", "hello"));
    };
    auto old = b.subscribe("q", r.record("old"), o);
    send(b, "q", {"lost"});
    CHECK(b.delete_queue("q") == 1); // "lost", handed to `old` on arrival, its callback never ran
    CHECK(b.queue_stats("q").purged == 0); // the new queue's counters
    REQUIRE(renewed.size() == 1);
    CHECK(renewed[0].active());
    CHECK_FALSE(old.active());
    CHECK(b.consumer_count("q") == 1);
    CHECK(b.dispatch() == 1);
    CHECK(r.seen == strings{"new:hello"});
}

TEMPLATE_TEST_CASE("consumer cancellation: a callback deleting its own queue gets the cancel notification "
                   "before it returns",
                   "[consumer][cancel][reentrancy]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    strings events;
    warren::consumer_options o = consumer("c", 0, manual);
    o.on_cancel = [&] { events.push_back("cancelled"); };
    auto sub = b.subscribe(
        "q",
        [&](delivery& d) {
            events.push_back("got " + d.body());
            CHECK(b.delete_queue("q") == 0); // "b" was delivered on arrival too: unacked, not ready
            events.push_back("deleted");
            d.ack(); // ignored: the queue is gone
        },
        o);
    send(b, "q", {"a", "b"});
    CHECK(b.dispatch() == 1);
    CHECK(events == strings{"got a", "cancelled", "deleted"});
    CHECK_FALSE(sub.active());
}

TEMPLATE_TEST_CASE("consumer cancellation: every on_cancel runs though some throw, the errors go to the error "
                   "handler, or the first is rethrown once all ran",
                   "[consumer][cancel][error]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings ran;
    auto notify = [&](std::string tag, bool throws) {
        warren::consumer_options o = consumer(tag);
        o.on_cancel = [&ran, tag, throws] {
            ran.push_back(tag);
            if (throws) throw std::runtime_error("on_cancel of " + tag);
        };
        return o;
    };
    auto noop = [](typename TestType::delivery&) {};
    auto first = b.subscribe("q", noop, notify("first", true));
    auto second = b.subscribe("q", noop, notify("second", false));
    auto third = b.subscribe("q", noop, notify("third", true));
    send(b, "q", {"m"});

    SECTION("without an error handler, delete_queue rethrows the first error after every on_cancel ran") {
        std::string what;
        try {
            (void)b.delete_queue("q");
        } catch (const std::runtime_error& e) {
            what = e.what();
        }
        CHECK(what == "on_cancel of first");
    }
    SECTION("with an error handler, each error goes there and delete_queue returns") {
        std::vector<warren::consumer_error> errors;
        b.set_error_handler([&](const warren::consumer_error& e) { errors.push_back(e); });
        CHECK(b.delete_queue("q") == 1); // "m", handed to `first` on arrival, no callback saw
        REQUIRE(errors.size() == 2);
        strings failed;
        for (const auto& e : errors) {
            CHECK(e.queue == "q");
            CHECK(e.delivery_tag == 0); // not about a delivery
            try {
                std::rethrow_exception(e.exception);
            } catch (const std::runtime_error& x) {
                failed.push_back(e.consumer_tag + ": " + x.what());
            }
        }
        CHECK(failed == strings{"first: on_cancel of first", "third: on_cancel of third"});
    }
    CHECK(ran == strings{"first", "second", "third"});
    CHECK_FALSE(b.has_queue("q"));
    CHECK_FALSE(first.active());
    CHECK_FALSE(third.active());
    // The broker goes on.
    b.declare_queue("q");
    send(b, "q", {"again"});
    CHECK(b.message_count("q") == 1);
}

// ---------------------------------------------------------------------------------------
// prefetch, negative acknowledgements and requeueing (consumer-prefetch.html, confirms.html)

TEMPLATE_TEST_CASE("negative acknowledgement: a requeued message goes back to the head and the next consumer in "
                   "turn receives it, redelivered (RabbitMQ confirms.html)",
                   "[consumer][nack]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto picky = b.subscribe(
        "q",
        [&](delivery& d) {
            r.note("picky", d);
            d.reject(); // requeue
        },
        consumer("picky", 0, manual, 1));
    auto other = b.subscribe("q", r.record("other"), consumer("other"));
    send_numbered(b, "q", "m", 2);
    // m0 goes to picky on arrival, which is then at its prefetch limit, so m1 goes to other.
    // picky's reject puts m0 back at the head; picky, freed, rejoins behind other.
    CHECK(b.dispatch() == 3);
    CHECK(r.seen == strings{"picky:m0", "other:m1", "other:m0*"});
    const auto s = b.queue_stats("q");
    CHECK(s.requeued == 1);
    CHECK(s.redelivered == 1);
    CHECK(s.delivered == 3);
    CHECK(s.acked == 2);
}

TEMPLATE_TEST_CASE("negative acknowledgement: nack(multiple) requeues the consumer's earlier deliveries in their "
                   "original order and frees its prefetch (RabbitMQ confirms.html)",
                   "[consumer][nack][prefetch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto c = b.subscribe("q", r.hold("c"), consumer("c", 0, manual, 3));
    send_numbered(b, "q", "m", 5);
    CHECK(b.dispatch() == 3);
    auto& held = r.held["c"];
    REQUIRE(held.size() == 3);
    held[2].nack(true); // m0, m1, m2 back ahead of m3 and m4
    CHECK(b.message_count("q") == 5);
    CHECK(b.queue_stats("q").unacked == 0);
    CHECK(b.dispatch() == 3); // the whole prefetch is free again
    CHECK(r.seen == strings{"c:m0", "c:m1", "c:m2", "c:m0*", "c:m1*", "c:m2*"});

    SECTION("nack(multiple, no requeue) drops them and frees the prefetch too") {
        held[5].nack(true, false);
        CHECK(b.dispatch() == 2);
        CHECK(r.seen.back() == "c:m4");
        const auto s = b.queue_stats("q");
        CHECK(s.dropped.rejected == 3);
        CHECK(s.unacked == 2);
        CHECK(s.accounted());
    }
}

// Regression: cancelling a consumer blocked at its prefetch unblocked it while returning its
// messages, which moved it in the rotation, and the consumer that took its old place was
// removed instead of it.
TEMPLATE_TEST_CASE("prefetch: cancelling a consumer blocked at its prefetch returns its messages and leaves the "
                   "other consumers subscribed",
                   "[consumer][prefetch][cancel]", warren::broker, warren::concurrent_broker) {
    recorder<TestType> r;

    SECTION("round robin") {
        TestType b;
        b.declare_queue("q");
        auto blocked = b.subscribe("q", r.hold("blocked"), consumer("blocked", 0, manual, 1));
        auto other = b.subscribe("q", r.record("other"), consumer("other"));
        send_numbered(b, "q", "m", 2);
        CHECK(b.dispatch() == 2); // m1 went to other: blocked sat out at its limit
        blocked.release();
        CHECK(b.consumer_count("q") == 1);
        send_numbered(b, "q", "n", 1);
        CHECK(b.dispatch() == 2);
        CHECK(r.seen == strings{"blocked:m0", "other:m1", "other:m0*", "other:n0"});
        CHECK(other.active());
        other.release();
        CHECK(b.consumer_count("q") == 0);
    }
    SECTION("single active consumer: the next one takes over") {
        TestType b;
        b.declare_queue("q", single_active());
        auto active = b.subscribe("q", r.hold("active"), consumer("active", 0, manual, 1));
        auto next = b.subscribe("q", r.record("next"), consumer("next"));
        send_numbered(b, "q", "m", 2);
        CHECK(b.dispatch() == 1);
        CHECK(b.dispatch() == 0); // active is blocked at its limit, next waits
        active.release();
        CHECK(b.consumer_count("q") == 1);
        CHECK(b.dispatch() == 2);
        CHECK(r.seen == strings{"active:m0", "next:m0*", "next:m1"});
        CHECK(state_of(b.snapshot(), "q", "next") == consumer_state::active);
    }
}

TEMPLATE_TEST_CASE("prefetch: ack(multiple) frees as many slots as it settles (RabbitMQ consumer-prefetch.html)",
                   "[consumer][prefetch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    auto c = b.subscribe("q", r.hold("c"), consumer("c", 0, manual, 3));
    send_numbered(b, "q", "m", 8);
    CHECK(b.dispatch() == 3);
    r.held["c"][1].ack(true); // m0 and m1
    CHECK(b.dispatch() == 2);
    CHECK(r.seen == strings{"c:m0", "c:m1", "c:m2", "c:m3", "c:m4"});
    CHECK(b.queue_stats("q").unacked == 3);
    CHECK(b.message_count("q") == 3);
}

TEMPLATE_TEST_CASE("prefetch: a consumer's limit counts only its own deliveries, not basic.get's",
                   "[consumer][prefetch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    recorder<TestType> r;
    send_numbered(b, "q", "m", 4);
    auto g0 = b.try_get("q", manual);
    auto g1 = b.try_get("q", manual);
    REQUIRE((g0 && g1));
    auto c = b.subscribe("q", r.hold("c"), consumer("c", 0, manual, 1));
    CHECK(b.dispatch() == 1);
    CHECK(r.seen == strings{"c:m2"});
    // A get is not held back by a consumer at its limit either.
    auto g2 = b.try_get("q", manual);
    REQUIRE(g2);
    CHECK(g2->body() == "m3");
    CHECK(b.queue_stats("q").unacked == 4);
    g1->reject(); // m1 back: the consumer is still at its limit
    CHECK(b.dispatch() == 0);
    r.held["c"][0].ack();
    CHECK(b.dispatch() == 1);
    CHECK(r.seen == strings{"c:m2", "c:m1*"});
}

TEMPLATE_TEST_CASE("requeue: in a priority queue a requeued message returns to its place within its priority",
                   "[consumer][requeue][x-max-priority]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::queue_options options;
    options.arguments.set("x-max-priority", 5);
    b.declare_queue("q", options);
    auto publish = [&](std::string body, std::uint8_t priority) {
        auto m = to_queue<TestType>("q", body);
        m.properties.priority = priority;
        REQUIRE(b.publish("", std::move(m)) == 1);
    };
    publish("lo0", 1);
    publish("hi0", 5);
    publish("lo1", 1);
    publish("hi1", 9); // above x-max-priority: counts as 5
    auto hi0 = b.try_get("q", manual);
    auto hi1 = b.try_get("q", manual);
    auto lo0 = b.try_get("q", manual);
    REQUIRE((hi0 && hi1 && lo0));
    CHECK(hi0->body() == "hi0");
    CHECK(hi1->body() == "hi1");
    CHECK(lo0->body() == "lo0");
    publish("hi2", 5);
    publish("mid", 3);
    lo0->reject();
    hi1->reject();
    hi0->ack();
    CHECK(drain_marked(b, "q") == strings{"hi1*", "hi2", "mid", "lo0*", "lo1"});
}

TEMPLATE_TEST_CASE("negative acknowledgement: reject without requeue dead-letters with reason 'rejected' and "
                   "frees the consumer's prefetch (RabbitMQ dlx.html)",
                   "[consumer][nack][dlx]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    warren::queue_options options;
    options.arguments.set("x-dead-letter-exchange", "dlx");
    b.declare_queue("q", options);
    recorder<TestType> r;
    auto c = b.subscribe(
        "q",
        [&](delivery& d) {
            r.note("c", d);
            if (d.body() == "bad") d.reject(false);
            else d.ack();
        },
        consumer("c", 0, manual, 1));
    send(b, "q", {"bad", "good"});
    CHECK(b.dispatch() == 2);
    CHECK(r.seen == strings{"c:bad", "c:good"});
    auto dead = b.try_get("dead");
    REQUIRE(dead);
    CHECK(dead->body() == "bad");
    CHECK_FALSE(dead->redelivered());
    const warren::field_value* reason = dead->properties().headers.find("x-first-death-reason");
    REQUIRE(reason != nullptr);
    CHECK(*reason == warren::field_value("rejected"));
    const auto s = b.queue_stats("q");
    CHECK(s.dead_lettered.rejected == 1);
    CHECK(s.dropped.rejected == 0);
    CHECK(s.acked == 1);
    CHECK(s.accounted());
    CHECK(b.message_count("dead") == 0);
}

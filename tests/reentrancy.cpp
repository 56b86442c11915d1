// What callbacks may do to the broker that runs them, under both policies: purge, settle
// deliveries of other queues (and of other consumers), dead-letter back into their own
// queue, run a nested dispatch that ends their own subscription, and what on_cancel, the
// return handler and the error handler may do. Under multi_threaded each of these would
// deadlock if the broker held a lock while running user code (docs/threading.md).
// Publishing, subscribing, unsubscribing, declaring and deleting from callbacks are in
// subscription.cpp; the same rules with other threads at work are in
// reentrancy_multithread.cpp.

#include <warren/broker.hpp>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::drain;
using warren_test::drain_marked;
using warren_test::manual;
using warren_test::manual_options;
using warren_test::send;
using warren_test::strings;
using warren_test::to_queue;

namespace {


/// Queue options that dead-letter through the default exchange to `target`.
warren::queue_options dead_letter_to(const std::string& target) {
    warren::queue_options o;
    o.arguments = {{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", target}};
    return o;
}

/// What the tests' callbacks throw.
using warren_test::callback_failure;

} // namespace

// ---------------------------------------------------------------------------------------
// purging

TEMPLATE_TEST_CASE("reentrancy: a callback may purge its own queue, which leaves its in-flight delivery "
                   "(unacked, not ready)",
                   "[reentrancy][purge]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    b.declare_queue("other");
    strings seen;
    std::size_t purged = 0;

    SECTION("acked after the purge: counted as acked, the rest as purged") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                purged = b.purge_queue("q");
                d.ack();
            },
            manual_options({}, 1)); // b and c stay ready
        send(b, "q", {"a", "b", "c"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"a"});
        CHECK(purged == 2);
        const auto s = b.queue_stats("q");
        CHECK(s.acked == 1);
        CHECK(s.purged == 2);
        CHECK(s.ready == 0);
        CHECK(s.accounted());
    }
    SECTION("requeued after the purge: it is the only message left") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                if (d.redelivered()) {
                    d.ack();
                    return;
                }
                purged = b.purge_queue("q");
                d.nack(false, true);
            },
            manual_options({}, 1)); // b and c stay ready
        send(b, "q", {"a", "b", "c"});
        CHECK(b.dispatch() == 2); // a, then a again
        CHECK(seen == strings{"a", "a"});
        CHECK(purged == 2);
        const auto s = b.queue_stats("q");
        CHECK(s.requeued == 1);
        CHECK(s.acked == 1);
        CHECK(s.purged == 2);
        CHECK(s.accounted());
    }
    SECTION("purging a queue still to be served this round") {
        send(b, "other", {"x", "y"}); // ready: no consumer to hand them to yet
        auto other = b.subscribe("other", [&](delivery& d) { seen.push_back("other:" + d.body()); });
        auto sub = b.subscribe("q", [&](delivery& d) {
            seen.push_back("q:" + d.body());
            if (d.body() == "a") purged = b.purge_queue("other");
        });
        send(b, "q", {"a", "b"});
        CHECK(b.dispatch() == 2);
        CHECK(seen == strings{"q:a", "q:b"});
        CHECK(purged == 2);
        CHECK(b.queue_stats("other").purged == 2);
    }
}

// ---------------------------------------------------------------------------------------
// settling deliveries that are not the callback's own

TEMPLATE_TEST_CASE("reentrancy: a callback may settle deliveries of other queues", "[reentrancy][settle]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("held", dead_letter_to("dead"));
    b.declare_queue("dead");
    b.declare_queue("q");
    send(b, "held", {"h0", "h1", "h2", "h3"});
    std::vector<delivery> held;
    for (int i = 0; i < 4; ++i) {
        auto d = b.try_get("held", manual);
        REQUIRE(d);
        held.push_back(std::move(*d));
    }
    strings seen;

    SECTION("ack, reject into a dead-letter queue, and requeue, each exactly once") {
        auto sub = b.subscribe("q", [&](delivery& d) {
            seen.push_back(d.body());
            if (d.body() == "settle") {
                held[0].ack();
                held[1].reject(false); // dead-lettered to "dead"
                held[2].nack(false, true);
                REQUIRE_THROWS_WITH(held[0].ack(), "PRECONDITION_FAILED - unknown delivery tag 1");
            }
        });
        send(b, "q", {"settle"});
        CHECK(b.dispatch() == 1);
        CHECK(drain(b, "dead") == strings{"h1"});
        CHECK(drain_marked(b, "held") == strings{"h2*"});
        const auto s = b.queue_stats("held");
        CHECK(s.acked == 2); // h0, and h2 taken again automatically
        CHECK(s.dead_lettered.rejected == 1);
        CHECK(s.requeued == 1);
        CHECK(s.unacked == 1); // h3
        CHECK(s.accounted());
    }
    SECTION("ack(multiple) of another queue's deliveries, then that queue deleted: later settlements are ignored") {
        auto sub = b.subscribe("q", [&](delivery& d) {
            seen.push_back(d.body());
            held[2].ack(true); // h0, h1, h2
            CHECK(b.queue_stats("held").acked == 3);
            CHECK(b.delete_queue("held") == 0);
            held[3].reject(false); // the queue is gone: accepted, nothing dead-lettered
        });
        send(b, "q", {"go"});
        CHECK(b.dispatch() == 1);
        CHECK_FALSE(b.has_queue("held"));
        CHECK(b.message_count("dead") == 0);
    }
    SECTION("a rejected delivery dead-lettered into the callback's own queue is served in the same dispatch") {
        b.declare_queue("back", dead_letter_to("q")); // its dead letters go to "q"
        send(b, "back", {"returned"});
        auto from_back = b.try_get("back", manual);
        REQUIRE(from_back);
        auto sub = b.subscribe("q", [&](delivery& d) {
            seen.push_back(d.body());
            if (d.body() == "go") from_back->reject(false);
        });
        send(b, "q", {"go"});
        CHECK(b.dispatch() == 2);
        CHECK(seen == strings{"go", "returned"});
        CHECK(b.queue_stats("back").dead_lettered.rejected == 1);
    }
}

TEMPLATE_TEST_CASE("reentrancy: a callback may settle another consumer's deliveries", "[reentrancy][settle]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("work");
    b.declare_queue("acks");
    strings seen;
    std::vector<delivery> stash;
    // "worker" keeps its deliveries (prefetch 1); "acker", on another queue, settles them.
    auto worker = b.subscribe(
        "work",
        [&](delivery& d) {
            seen.push_back("worker:" + d.body());
            stash.push_back(std::move(d));
        },
        manual_options("worker", 1));

    SECTION("an ack frees it from its prefetch limit: it is served again in the same dispatch") {
        auto acker = b.subscribe("acks", [&](delivery& d) {
            seen.push_back("acker:" + d.body());
            for (auto& held : stash) {
                if (held.pending()) held.ack();
            }
        });
        send(b, "work", {"w1", "w2"});
        send(b, "acks", {"go"});
        CHECK(b.dispatch() == 3);
        CHECK(seen == strings{"worker:w1", "acker:go", "worker:w2"});
        CHECK(b.queue_stats("work").acked == 1);
        CHECK(b.queue_stats("work").unacked == 1);
    }
    SECTION("a requeued one goes back to its place and to the freed worker") {
        auto acker = b.subscribe("acks", [&](delivery& d) {
            seen.push_back("acker:" + d.body());
            stash.front().nack(false, true);
        });
        send(b, "work", {"w1", "w2"});
        send(b, "acks", {"go"});
        CHECK(b.dispatch() == 3);
        CHECK(seen == strings{"worker:w1", "acker:go", "worker:w1"});
        REQUIRE(stash.size() == 2);
        CHECK(stash[1].redelivered());
        CHECK(b.message_count("work") == 1); // w2 waits for the next ack
    }
}

TEMPLATE_TEST_CASE("reentrancy: a callback may take from its own queue with a get", "[reentrancy][settle]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    strings seen;
    auto sub = b.subscribe(
        "q",
        [&](delivery& d) {
            seen.push_back("callback:" + d.body());
            if (d.body() != "a") {
                d.ack();
                return;
            }
            auto next = b.try_get("q", manual);
            REQUIRE(next);
            seen.push_back("get:" + next->body());
            next->ack();
            d.ack(true); // nothing earlier of this consumer: only a
        },
        manual_options({}, 1)); // b and c stay ready
    send(b, "q", {"a", "b", "c"});
    CHECK(b.dispatch() == 2);
    CHECK(seen == strings{"callback:a", "get:b", "callback:c"});
    const auto s = b.queue_stats("q");
    CHECK(s.acked == 3);
    CHECK(s.unacked == 0);
    CHECK(s.accounted());
}

// ---------------------------------------------------------------------------------------
// dead letters

TEMPLATE_TEST_CASE("reentrancy: a callback may reject into a dead-letter exchange that routes back to its own queue",
                   "[reentrancy][dead-letter]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q", dead_letter_to("q")); // a rejection cycle: RabbitMQ allows it
    strings seen;
    auto sub = b.subscribe(
        "q",
        [&](delivery& d) {
            const bool died_before = d.properties().headers.find("x-death") != nullptr;
            seen.push_back(d.body() + (died_before ? "(dead-lettered)" : ""));
            if (d.body() == "a" && !died_before) d.reject(false);
            else d.ack();
        },
        manual_options());
    send(b, "q", {"a", "b"});
    CHECK(b.dispatch() == 3);
    CHECK(seen == strings{"a", "b", "a(dead-lettered)"});
    const auto s = b.queue_stats("q");
    CHECK(s.enqueued == 3);
    CHECK(s.dead_lettered.rejected == 1);
    CHECK(s.acked == 2);
    CHECK(s.accounted());
    CHECK(b.stats().dead_letter_cycles == 0);
}

// ---------------------------------------------------------------------------------------
// nested dispatch

TEMPLATE_TEST_CASE("reentrancy: a nested dispatch may end the subscription whose callback is running below it",
                   "[reentrancy][subscription]", warren::broker, warren::concurrent_broker) {
    // "outer" runs a nested dispatch; there "ender" ends outer's subscription. Under
    // multi_threaded, ending a subscription waits for its running callback unless that runs
    // on the calling thread, as here: it must not wait for itself.
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    strings seen;
    std::optional<typename TestType::subscription> outer;
    std::size_t nested = 0;
    bool pending_after_nested = false;

    SECTION("left unsettled: requeued when the outer callback returns") {
        outer = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back("outer:" + d.body());
                nested = b.dispatch();
                pending_after_nested = d.pending();
            },
            manual_options("outer", 1)); // m0 only: m1 and m2 go to ender
        auto ender = b.subscribe("q", [&](delivery& d) {
            seen.push_back("ender:" + d.body());
            outer.reset();
        });
        send(b, "q", {"m0", "m1", "m2"});
        CHECK(b.dispatch() == 2);
        CHECK(nested == 2);
        CHECK(pending_after_nested);
        CHECK(seen == strings{"outer:m0", "ender:m1", "ender:m2", "ender:m0"});
        const auto s = b.queue_stats("q");
        CHECK(s.requeued == 1);
        CHECK(s.redelivered == 1);
        CHECK(s.consumers == 1);
        CHECK(s.accounted());
    }
    SECTION("acked after the nested dispatch: stays acked") {
        outer = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back("outer:" + d.body());
                nested = b.dispatch();
                d.ack();
            },
            manual_options("outer", 1)); // m0 only: m1 and m2 go to ender
        auto ender = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back("ender:" + d.body());
                outer.reset();
                d.ack();
            },
            manual_options("ender"));
        send(b, "q", {"m0", "m1", "m2"});
        CHECK(b.dispatch() == 1);
        CHECK(nested == 2);
        CHECK(seen == strings{"outer:m0", "ender:m1", "ender:m2"});
        const auto s = b.queue_stats("q");
        CHECK(s.acked == 3);
        CHECK(s.requeued == 0);
        CHECK(s.accounted());
    }
}

// ---------------------------------------------------------------------------------------
// on_cancel and the handlers: user code the broker runs outside dispatch()

TEMPLATE_TEST_CASE("reentrancy: on_cancel may use the broker", "[reentrancy][cancel]", warren::broker,
                   warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_queue("q");
    b.declare_queue("notices");
    strings seen;
    std::optional<subscription> replacement;

    SECTION("a callback deletes its own queue; its on_cancel redeclares it and subscribes again") {
        warren::consumer_options options;
        options.tag = "first";
        options.on_cancel = [&] {
            seen.push_back(std::string("on_cancel, queue there: ") + (b.has_queue("q") ? "yes" : "no"));
            b.declare_queue("q");
            replacement = b.subscribe("q", [&](delivery& d) { seen.push_back("replacement:" + d.body()); });
            CHECK(b.publish("", to_queue<TestType>("notices", "first cancelled")) == 1);
        };
        auto first = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back("first:" + d.body());
                CHECK(b.delete_queue("q") == 1); // b is dropped with it
                seen.push_back("deleted");
            },
            options);
        send(b, "q", {"a", "b"});
        CHECK(b.dispatch() == 1);
        send(b, "q", {"c"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"first:a", "on_cancel, queue there: no", "deleted", "replacement:c"});
        CHECK_FALSE(first.active());
        REQUIRE(replacement);
        CHECK(replacement->active());
        CHECK(drain(b, "notices") == strings{"first cancelled"});
    }
    SECTION("deleted by another consumer's callback: on_cancel may delete further queues") {
        b.declare_queue("also");
        warren::consumer_options options;
        options.on_cancel = [&] {
            seen.push_back("on_cancel");
            CHECK(b.delete_queue("also") == 1);
        };
        auto victim = b.subscribe("q", [&](delivery& d) { seen.push_back("victim:" + d.body()); }, options);
        b.declare_queue("control");
        auto killer = b.subscribe("control", [&](delivery&) {
            seen.push_back("killer");
            CHECK(b.delete_queue("q") == 0);
        });
        send(b, "also", {"x"});
        send(b, "control", {"go"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"killer", "on_cancel"});
        CHECK_FALSE(b.has_queue("q"));
        CHECK_FALSE(b.has_queue("also"));
    }
}

TEMPLATE_TEST_CASE("reentrancy: the return handler may declare and publish", "[reentrancy][return]", warren::broker,
                   warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_exchange("x", "direct");
    b.declare_queue("q");
    strings seen;
    // A mandatory message nobody took is parked in a queue the handler declares.
    b.set_return_handler([&](typename TestType::returned_message& r) {
        seen.push_back("returned:" + r.message.body);
        b.declare_queue("parking");
        CHECK(b.publish("", to_queue<TestType>("parking", r.message.body)) == 1);
    });
    auto sub = b.subscribe("q", [&](delivery& d) {
        seen.push_back("q:" + d.body());
        const auto outcome =
            b.publish_confirmed("x", to_queue<TestType>("nowhere", "from " + d.body()), {.mandatory = true});
        CHECK(outcome.returned);
        seen.push_back("published");
    });
    send(b, "q", {"a"});
    CHECK(b.dispatch() == 1);
    CHECK(seen == strings{"q:a", "returned:from a", "published"});
    CHECK(drain(b, "parking") == strings{"from a"});
    CHECK(b.exchange_stats("x").returned == 1);
}

TEMPLATE_TEST_CASE("reentrancy: the error handler may end the failing subscription and publish", "[reentrancy][error]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_queue("q");
    b.declare_queue("errors");
    std::optional<subscription> failing;
    b.set_error_handler([&](const warren::consumer_error& e) {
        // The callback has returned (thrown): ending its subscription waits for nothing.
        if (failing && failing->tag() == e.consumer_tag) failing.reset();
        CHECK(b.publish("", to_queue<TestType>("errors", e.queue + ":" + e.consumer_tag + ":" +
                                                             std::to_string(e.delivery_tag))) == 1);
    });
    failing = b.subscribe(
        "q", [&](delivery& d) { throw callback_failure("cannot handle " + d.body()); }, manual_options("failing"));
    send(b, "q", {"a", "b", "c"});
    CHECK(b.dispatch() == 1);
    CHECK_FALSE(failing);
    CHECK(drain(b, "errors") == strings{"q:failing:1"});
    const auto s = b.queue_stats("q");
    CHECK(s.dropped.rejected == 1); // the pending delivery of a throwing callback
    CHECK(s.consumers == 0);
    CHECK(s.ready == 2);
    CHECK(s.accounted());
}

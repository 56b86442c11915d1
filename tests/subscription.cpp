// Subscriptions: the RAII handle of a consumer, what callbacks may do to the broker while
// they run (reentrancy), and what happens when they throw.

#include <warren/broker.hpp>

#include <cstdint>
#include <exception>
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
using warren_test::manual_options;
using warren_test::send;
using warren_test::strings;
using warren_test::to_queue;

namespace {

/// What the tests' callbacks throw.
using warren_test::callback_failure;

} // namespace

// ---------------------------------------------------------------------------------------
// the handle

TEMPLATE_TEST_CASE("subscription: ending it ends the consumer", "[subscription]", warren::broker,
                   warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    strings seen;
    std::vector<delivery> held;

    SECTION("destroyed: no more callbacks") {
        {
            auto sub = b.subscribe("q", [&](delivery& d) { seen.push_back(d.body()); });
            CHECK(sub.active());
            CHECK(b.consumer_count("q") == 1);
        }
        CHECK(b.consumer_count("q") == 0);
        send(b, "q", {"a"});
        CHECK(b.dispatch() == 0);
        CHECK(seen.empty());
        CHECK(b.message_count("q") == 1);
    }
    SECTION("destroyed: its unacked messages return to the queue, redelivered, in place") {
        send(b, "q", {"a", "b", "c"});
        {
            auto sub = b.subscribe("q", [&](delivery& d) { held.push_back(std::move(d)); }, manual_options({}, 2));
            CHECK(b.dispatch() == 2);
            CHECK(b.message_count("q") == 1);
        }
        CHECK(b.queue_stats("q").requeued == 2);
        CHECK(b.queue_stats("q").unacked == 0);
        CHECK(drain_marked(b, "q") == strings{"a*", "b*", "c"});
        // Their deliveries are no longer pending on the queue.
        REQUIRE_THROWS_WITH(held[0].ack(), "PRECONDITION_FAILED - unknown delivery tag 1");
    }
    SECTION("acked messages stay acked") {
        send(b, "q", {"a", "b"});
        auto sub = b.subscribe("q", [&](delivery& d) { held.push_back(std::move(d)); }, manual_options());
        CHECK(b.dispatch() == 2);
        held[0].ack();
        sub.release();
        CHECK(b.queue_stats("q").acked == 1);
        CHECK(b.queue_stats("q").requeued == 1);
        CHECK(drain_marked(b, "q") == strings{"b*"});
    }
    SECTION("release() ends it early, and again does nothing") {
        auto sub = b.subscribe("q", [&](delivery& d) { seen.push_back(d.body()); });
        const std::string tag = sub.tag();
        sub.release();
        CHECK_FALSE(sub.active());
        CHECK(b.consumer_count("q") == 0);
        sub.release();
        CHECK(sub.tag() == tag); // the handle still says what it was
        send(b, "q", {"a"});
        CHECK(b.dispatch() == 0);
        CHECK(seen.empty());
    }
    SECTION("a default-constructed handle is subscribed to nothing") {
        typename TestType::subscription none;
        CHECK_FALSE(none.active());
        CHECK(none.queue().empty());
        CHECK(none.tag().empty());
        none.release();
    }
}

TEMPLATE_TEST_CASE("subscription: moves", "[subscription]", warren::broker, warren::concurrent_broker) {
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_queue("q");
    b.declare_queue("r");
    strings seen;
    auto on = [&seen](std::string name) {
        return [&seen, name](auto& d) { seen.push_back(name + ":" + d.body()); };
    };

    SECTION("move construction hands the consumer over") {
        auto first = b.subscribe("q", on("first"));
        const std::string tag = first.tag();
        subscription second(std::move(first));
        CHECK_FALSE(first.active()); // NOLINT(bugprone-use-after-move): checking the moved-from state
        CHECK(first.queue().empty());
        CHECK(second.active());
        CHECK(second.tag() == tag);
        CHECK(second.queue() == "q");
        first.release(); // the empty handle ends nothing
        CHECK(b.consumer_count("q") == 1);
        send(b, "q", {"a"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"first:a"});
    }
    SECTION("move assignment ends the consumer it held") {
        std::vector<typename TestType::delivery> held;
        auto target = b.subscribe("q", [&](auto& d) { held.push_back(std::move(d)); }, manual_options("old"));
        send(b, "q", {"a"});
        CHECK(b.dispatch() == 1);
        target = b.subscribe("r", on("new"));
        CHECK(target.queue() == "r");
        CHECK(b.consumer_count("q") == 0);
        CHECK(b.consumer_count("r") == 1);
        CHECK(drain_marked(b, "q") == strings{"a*"}); // the old consumer's unacked came back
        send(b, "r", {"b"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"new:b"});
    }
    SECTION("subscriptions kept in a vector") {
        std::vector<subscription> subs;
        for (int i = 0; i < 5; ++i) subs.push_back(b.subscribe("q", on("s" + std::to_string(i))));
        CHECK(b.consumer_count("q") == 5);
        subs.erase(subs.begin() + 1, subs.begin() + 3);
        CHECK(b.consumer_count("q") == 3);
        warren_test::send_numbered(b, "q", "m", 3);
        CHECK(b.dispatch() == 3);
        CHECK(seen == strings{"s0:m0", "s3:m1", "s4:m2"});
        subs.clear();
        CHECK(b.consumer_count("q") == 0);
    }
}

TEMPLATE_TEST_CASE("subscription: inactive once its queue is deleted", "[subscription]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    auto sub = b.subscribe("q", [](auto&) {});
    CHECK(sub.active());
    CHECK(b.delete_queue("q") == 0);
    CHECK_FALSE(sub.active());
    CHECK(sub.queue() == "q");

    SECTION("a new queue of the same name does not revive it") {
        b.declare_queue("q");
        CHECK_FALSE(sub.active());
        CHECK(b.consumer_count("q") == 0);
        sub.release();
        CHECK(b.consumer_count("q") == 0);
    }
    SECTION("releasing it is harmless") {
        sub.release();
        CHECK_FALSE(b.has_queue("q"));
    }
}

TEMPLATE_TEST_CASE("subscription: outliving the broker is harmless", "[subscription]", warren::broker,
                   warren::concurrent_broker) {
    std::optional<TestType> b(std::in_place);
    b->declare_queue("q", warren::queue_options{.auto_delete = true});
    auto sub = b->subscribe("q", [](auto&) {});
    b.reset();
    CHECK_FALSE(sub.active());
    sub.release();
    CHECK_FALSE(sub.active());
}

TEMPLATE_TEST_CASE("subscription: an auto-delete queue goes with its last consumer", "[subscription]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::queue_options options;
    options.auto_delete = true;
    b.declare_queue("q", options);
    b.declare_exchange("ex", "fanout");
    b.bind_queue("q", "ex");

    SECTION("not before it had one") {
        send(b, "q", {"a"});
        CHECK(b.has_queue("q"));
    }
    SECTION("deleted when the last of two ends, with its messages and bindings") {
        auto s1 = b.subscribe("q", [](auto&) {});
        auto s2 = b.subscribe("q", [](auto&) {});
        s1.release();
        CHECK(b.has_queue("q"));
        send(b, "q", {"a"});
        s2.release();
        CHECK_FALSE(b.has_queue("q"));
        CHECK(b.publish("ex", to_queue<TestType>("", "x")) == 0); // the binding went too
        REQUIRE_THROWS_WITH(b.message_count("q"), "NOT_FOUND - no queue 'q'");
    }
    SECTION("a queue of the same name declared meanwhile is left alone") {
        auto s1 = b.subscribe("q", [](auto&) {});
        CHECK(b.delete_queue("q") == 0);
        b.declare_queue("q", options);
        s1.release();
        CHECK(b.has_queue("q"));
    }
    SECTION("deleted when its consumer ends itself in its callback") {
        typename TestType::subscription sub;
        strings seen;
        sub = b.subscribe("q", [&](auto& d) {
            seen.push_back(d.body());
            sub.release();
        });
        send(b, "q", {"a", "b"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"a"});
        CHECK_FALSE(b.has_queue("q"));
    }
}

// ---------------------------------------------------------------------------------------
// ending a subscription inside its own callback

TEMPLATE_TEST_CASE("subscription: a callback may end its own subscription", "[subscription][reentrancy]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b", "c"});
    typename TestType::subscription sub;
    strings seen;

    SECTION("automatic: no further callbacks, the rest stays in the queue") {
        sub = b.subscribe("q", [&](delivery& d) {
            seen.push_back(d.body());
            sub.release();
        });
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"a"});
        CHECK_FALSE(sub.active());
        CHECK(b.consumer_count("q") == 0);
        CHECK(drain_marked(b, "q") == strings{"b", "c"});
    }
    SECTION("manual: the in-flight delivery can still be acked in the callback") {
        sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                sub.release();
                d.ack();
            },
            manual_options());
        CHECK(b.dispatch() == 1);
        CHECK(b.queue_stats("q").acked == 1);
        CHECK(b.queue_stats("q").unacked == 0);
        CHECK(drain_marked(b, "q") == strings{"b", "c"});
    }
    SECTION("manual: left unsettled, it is requeued after the callback returns") {
        bool pending_after_release = false;
        std::size_t ready_in_callback = 0;
        sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                sub.release();
                pending_after_release = d.pending();
                ready_in_callback = b.message_count("q");
            },
            manual_options());
        CHECK(b.dispatch() == 1);
        CHECK(pending_after_release);
        CHECK(ready_in_callback == 2); // not back yet while the callback runs
        CHECK(b.queue_stats("q").requeued == 1);
        CHECK(drain_marked(b, "q") == strings{"a*", "b", "c"});
    }
    SECTION("manual: its other unacked messages return at once, in place") {
        std::vector<delivery> held;
        sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                if (d.body() == "c") {
                    sub.release();
                    d.reject(false); // the in-flight one is dropped, a and b come back
                } else {
                    held.push_back(std::move(d));
                }
            },
            manual_options());
        CHECK(b.dispatch() == 3);
        CHECK(b.queue_stats("q").dropped.rejected == 1);
        CHECK(drain_marked(b, "q") == strings{"a*", "b*"});
    }
    SECTION("manual: the in-flight delivery moved out of the callback still goes back") {
        std::optional<delivery> moved;
        sub = b.subscribe(
            "q",
            [&](delivery& d) {
                sub.release();
                moved.emplace(std::move(d));
            },
            manual_options());
        CHECK(b.dispatch() == 1);
        REQUIRE(moved);
        CHECK(drain_marked(b, "q") == strings{"a*", "b", "c"});
        REQUIRE_THROWS_WITH(moved->ack(), "PRECONDITION_FAILED - unknown delivery tag 1");
    }
}

// ---------------------------------------------------------------------------------------
// reentrancy: callbacks that change the broker

TEMPLATE_TEST_CASE("subscription: callbacks may publish", "[subscription][reentrancy]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("first");
    b.declare_queue("second");
    strings seen;

    SECTION("to their own queue: served in the same dispatch") {
        auto sub = b.subscribe("first", [&](auto& d) {
            seen.push_back(d.body());
            if (d.body().size() < 3) REQUIRE(b.publish("", to_queue<TestType>("first", d.body() + "+")) == 1);
        });
        send(b, "first", {"a", "b"});
        CHECK(b.dispatch() == 6);
        CHECK(seen == strings{"a", "b", "a+", "b+", "a++", "b++"});
    }
    SECTION("to other queues, later and earlier in the order") {
        b.declare_queue("third");
        auto s1 = b.subscribe("first", [&](auto& d) {
            seen.push_back("first:" + d.body());
            REQUIRE(b.publish("", to_queue<TestType>("third", d.body())) == 1);
        });
        auto s3 = b.subscribe("third", [&](auto& d) {
            seen.push_back("third:" + d.body());
            if (d.body() == "a") REQUIRE(b.publish("", to_queue<TestType>("second", "from-third")) == 1);
        });
        send(b, "first", {"a", "b"});
        CHECK(b.dispatch() == 4);
        CHECK(seen == strings{"first:a", "third:a", "first:b", "third:b"});
        CHECK(drain(b, "second") == strings{"from-third"}); // no consumer there
    }
    SECTION("through a fanout exchange, to their own queue among others") {
        b.declare_exchange("fan", "fanout");
        b.bind_queue("first", "fan");
        b.bind_queue("second", "fan");
        auto s1 = b.subscribe("first", [&](auto& d) {
            seen.push_back("first:" + d.body());
            if (d.body() == "go") REQUIRE(b.publish("fan", to_queue<TestType>("", "echo")) == 2);
        });
        send(b, "first", {"go"});
        CHECK(b.dispatch() == 2);
        CHECK(seen == strings{"first:go", "first:echo"});
        CHECK(drain(b, "second") == strings{"echo"});
    }
}

TEMPLATE_TEST_CASE("subscription: callbacks may subscribe and unsubscribe", "[subscription][reentrancy]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    using subscription = typename TestType::subscription;
    TestType b;
    b.declare_queue("q");
    strings seen;
    std::vector<subscription> added;

    // As in RabbitMQ, the consumer just served is at the back of the rotation when the new
    // one joins after it, so the first consumer is served once more before the new one.
    SECTION("a new consumer on the same queue joins the rotation") {
        warren_test::send_numbered(b, "q", "m", 4); // ready: no consumer to hand them to yet
        auto first = b.subscribe("q", [&](delivery& d) {
            seen.push_back("first:" + d.body());
            if (added.empty()) {
                added.push_back(b.subscribe("q", [&](delivery& e) { seen.push_back("added:" + e.body()); }));
            }
        });
        CHECK(b.dispatch() == 4);
        CHECK(seen == strings{"first:m0", "first:m1", "added:m2", "first:m3"});
        CHECK(b.consumer_count("q") == 2);
    }
    SECTION("a consumer on another queue") {
        b.declare_queue("other");
        send(b, "other", {"x"});
        auto first = b.subscribe("q", [&](delivery& d) {
            seen.push_back("q:" + d.body());
            added.push_back(b.subscribe("other", [&](delivery& e) { seen.push_back("other:" + e.body()); }));
        });
        send(b, "q", {"a"});
        CHECK(b.dispatch() == 2);
        CHECK(seen == strings{"q:a", "other:x"});
    }
    SECTION("ending another consumer returns its unacked messages") {
        std::vector<delivery> held;
        std::optional<subscription> victim;
        victim = b.subscribe("q", [&](delivery& d) { seen.push_back("victim:" + d.body()); held.push_back(std::move(d)); },
                             manual_options("victim"));
        auto killer = b.subscribe("q", [&](delivery& d) {
            seen.push_back("killer:" + d.body());
            if (victim) {
                victim.reset(); // ends it: m0 and m2, both handed to it, go back
                CHECK(b.consumer_count("q") == 1);
            }
        });
        warren_test::send_numbered(b, "q", "m", 3);
        CHECK(b.dispatch() == 4); // m0 twice
        CHECK(seen == strings{"victim:m0", "killer:m1", "killer:m0", "killer:m2"});
        REQUIRE(held.size() == 1);
        CHECK_FALSE(b.queue_stats("q").unacked);
        CHECK(b.queue_stats("q").requeued == 2);
    }
}

TEMPLATE_TEST_CASE("subscription: callbacks may change the topology", "[subscription][reentrancy]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings seen;

    SECTION("declare, bind, publish, unbind and delete queues and exchanges") {
        auto sub = b.subscribe("q", [&](auto& d) {
            seen.push_back(d.body());
            if (d.body() != "build") return;
            b.declare_exchange("events", "topic");
            b.declare_exchange("fan", "fanout");
            b.bind_exchange("events", "fan");
            const std::string tmp = b.declare_queue();
            b.bind_queue(tmp, "events", "a.*");
            b.bind_queue("q", "events", "#");
            CHECK(b.publish("fan", to_queue<TestType>("a.b", "routed")) == 2);
            CHECK(drain(b, tmp) == strings{"routed"});
            b.unbind_queue("q", "events", "#");
            CHECK(b.publish("fan", to_queue<TestType>("a.b", "tmp-only")) == 1);
            CHECK(b.delete_queue(tmp) == 1);
            b.delete_exchange("fan");
            b.delete_exchange("events");
        });
        send(b, "q", {"build", "after"});
        CHECK(b.dispatch() == 3);
        CHECK(seen == strings{"build", "after", "routed"});
        CHECK_FALSE(b.has_exchange("events"));
        CHECK_FALSE(b.has_exchange("fan"));
    }
    SECTION("a queue declared in a callback gets its messages by a later dispatch") {
        std::vector<typename TestType::subscription> subs;
        auto sub = b.subscribe("q", [&](auto& d) {
            seen.push_back("q:" + d.body());
            b.declare_queue("late");
            subs.push_back(b.subscribe("late", [&](auto& e) { seen.push_back("late:" + e.body()); }));
            send(b, "late", {d.body()});
        });
        send(b, "q", {"a"});
        std::size_t total = 0;
        while (const std::size_t n = b.dispatch()) total += n;
        CHECK(total == 2);
        CHECK(seen == strings{"q:a", "late:a"});
    }
    SECTION("deleting another queue that is still to be served this round") {
        b.declare_queue("doomed");
        auto doomed = b.subscribe("doomed", [&](auto& d) { seen.push_back("doomed:" + d.body()); });
        auto sub = b.subscribe("q", [&](auto& d) {
            seen.push_back("q:" + d.body());
            if (d.body() == "a") CHECK(b.delete_queue("doomed") == 2);
        });
        send(b, "q", {"a", "b"});
        send(b, "doomed", {"x", "y"});
        CHECK(b.dispatch() == 2);
        CHECK(seen == strings{"q:a", "q:b"});
        CHECK_FALSE(doomed.active());
    }
}

TEMPLATE_TEST_CASE("subscription: a callback may delete its own queue", "[subscription][reentrancy]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    b.declare_queue("other");
    strings seen;
    auto other = b.subscribe("other", [&](delivery& d) { seen.push_back("other:" + d.body()); });

    SECTION("automatic") {
        auto sub = b.subscribe("q", [&](delivery& d) {
            seen.push_back("q:" + d.body());
            CHECK(b.delete_queue("q") == 2);
        });
        send(b, "q", {"a", "b", "c"});
        send(b, "other", {"x", "y"});
        CHECK(b.dispatch() == 3);
        CHECK(seen == strings{"q:a", "other:x", "other:y"});
        CHECK_FALSE(sub.active());
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("manual: the in-flight delivery can still be settled, and is ignored") {
        bool still_pending = false;
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back("q:" + d.body());
                (void)b.delete_queue("q");
                still_pending = d.pending();
                d.ack();
            },
            manual_options());
        send(b, "q", {"a", "b"});
        CHECK(b.dispatch() == 1);
        CHECK(still_pending);
        CHECK(seen == strings{"q:a"});
        b.declare_queue("q"); // a fresh queue, untouched by the old delivery
        CHECK(b.queue_stats("q").acked == 0);
        CHECK(b.message_count("q") == 0);
    }
    SECTION("manual, not settled: nothing is requeued anywhere") {
        auto sub = b.subscribe(
            "q", [&](delivery&) { (void)b.delete_queue("q"); }, manual_options());
        send(b, "q", {"a"});
        CHECK(b.dispatch() == 1);
        b.declare_queue("q");
        CHECK(b.message_count("q") == 0);
    }
}

// ---------------------------------------------------------------------------------------
// throwing callbacks

TEMPLATE_TEST_CASE("subscription: a throwing callback without an error handler", "[subscription][error]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b", "c"});
    strings seen;

    SECTION("automatic: dispatch rethrows; the message counts as delivered") {
        auto sub = b.subscribe("q", [&](delivery& d) {
            seen.push_back(d.body());
            if (d.body() == "b") throw callback_failure("bad b");
        });
        REQUIRE_THROWS_AS(b.dispatch(), callback_failure);
        CHECK(seen == strings{"a", "b"});
        auto s = b.queue_stats("q");
        CHECK(s.delivered == 2);
        CHECK(s.acked == 2);
        CHECK(s.dropped.rejected == 0);
        CHECK(s.ready == 1);
        // The broker is still usable and the consumer still subscribed.
        CHECK(b.dispatch() == 1);
        CHECK(seen == strings{"a", "b", "c"});
        CHECK(sub.active());
    }
    SECTION("manual, left pending: rejected without requeue") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                if (d.body() == "b") throw callback_failure("bad b");
                d.ack();
            },
            manual_options({}, 1));
        REQUIRE_THROWS_WITH(b.dispatch(), "bad b");
        auto s = b.queue_stats("q");
        CHECK(s.dropped.rejected == 1);
        CHECK(s.acked == 1);
        CHECK(s.unacked == 0);
        CHECK(s.requeued == 0);
        CHECK(b.dispatch() == 1); // prefetch 1: the rejected one freed the slot
        CHECK(seen == strings{"a", "b", "c"});
        CHECK(b.message_count("q") == 0);
    }
    SECTION("manual, acked before throwing: stays acked") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                d.ack();
                throw callback_failure("after ack");
            },
            manual_options());
        REQUIRE_THROWS_AS(b.dispatch(), callback_failure);
        auto s = b.queue_stats("q");
        CHECK(s.acked == 1);
        CHECK(s.dropped.rejected == 0);
        CHECK(b.message_count("q") == 2);
    }
    SECTION("manual, requeued before throwing: stays requeued") {
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                d.reject();
                throw callback_failure("after requeue");
            },
            manual_options("c1"));
        REQUIRE_THROWS_AS(b.dispatch(), callback_failure);
        sub.release();
        CHECK(b.queue_stats("q").dropped.rejected == 0);
        CHECK(drain_marked(b, "q") == strings{"a*", "b", "c"});
    }
    SECTION("manual, moved out before throwing: not rejected, still unacked") {
        std::optional<delivery> kept;
        auto sub = b.subscribe(
            "q",
            [&](delivery& d) {
                kept.emplace(std::move(d));
                throw callback_failure("after move");
            },
            manual_options());
        REQUIRE_THROWS_AS(b.dispatch(), callback_failure);
        CHECK(b.queue_stats("q").dropped.rejected == 0);
        CHECK(b.queue_stats("q").unacked == 1);
        kept->ack();
        CHECK(b.queue_stats("q").acked == 1);
    }
    SECTION("manual, ended its own subscription then threw: rejected, not requeued") {
        typename TestType::subscription self;
        self = b.subscribe(
            "q",
            [&](delivery& d) {
                seen.push_back(d.body());
                self.release();
                throw callback_failure("gave up");
            },
            manual_options());
        REQUIRE_THROWS_AS(b.dispatch(), callback_failure);
        CHECK(seen == strings{"a"});
        const auto s = b.queue_stats("q");
        CHECK(s.dropped.rejected == 1);
        CHECK(s.requeued == 0);
        CHECK(s.consumers == 0);
        CHECK(drain_marked(b, "q") == strings{"b", "c"});
    }
    SECTION("a callback that throws something that is not an exception") {
        auto sub = b.subscribe("q", [&](delivery&) { throw 42; });
        REQUIRE_THROWS_AS(b.dispatch(), int);
        CHECK(b.message_count("q") == 2);
    }
}

TEMPLATE_TEST_CASE("subscription: a throwing callback with an error handler", "[subscription][error]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    b.declare_queue("other");
    std::vector<warren::consumer_error> errors;
    b.set_error_handler([&](const warren::consumer_error& e) { errors.push_back(e); });
    strings seen;

    auto sub = b.subscribe(
        "q",
        [&](delivery& d) {
            seen.push_back("q:" + d.body());
            if (d.body() != "ok") throw callback_failure("cannot handle " + d.body());
            d.ack();
        },
        manual_options("worker"));
    auto other = b.subscribe("other", [&](delivery& d) { seen.push_back("other:" + d.body()); });
    send(b, "q", {"bad1", "ok", "bad2"});
    send(b, "other", {"x", "y"});

    CHECK(b.dispatch() == 5); // dispatch goes on after each failure
    CHECK(seen == strings{"q:bad1", "other:x", "q:ok", "other:y", "q:bad2"});
    REQUIRE(errors.size() == 2);
    CHECK(errors[0].queue == "q");
    CHECK(errors[0].consumer_tag == "worker");
    CHECK(errors[0].delivery_tag == 1);
    CHECK(errors[1].delivery_tag == 3);
    REQUIRE(errors[0].exception);
    REQUIRE_THROWS_WITH(std::rethrow_exception(errors[0].exception), "cannot handle bad1");
    REQUIRE_THROWS_AS(std::rethrow_exception(errors[1].exception), callback_failure);
    auto s = b.queue_stats("q");
    CHECK(s.dropped.rejected == 2);
    CHECK(s.acked == 1);
    CHECK(s.ready == 0);
    CHECK(s.unacked == 0);

    SECTION("removing the handler makes dispatch rethrow again") {
        b.set_error_handler({});
        send(b, "q", {"bad3"});
        REQUIRE_THROWS_AS(b.dispatch(), callback_failure);
        CHECK(errors.size() == 2);
    }
}

// Queues and consumers: basic.get, FIFO order, requeue position, counters, round robin,
// prefetch, consumer tags, exclusive consumers and the order dispatch() serves them in.

#include <warren/broker.hpp>
#include <warren/clock.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::drain;
using warren_test::drain_marked;
using warren_test::error_of;
using warren_test::send;
using warren_test::strings;

namespace {

/// Records "tag:body" for every delivery, across consumers, in callback order.
struct tag_recorder {
    std::vector<std::string> seen;
    auto callback(std::string tag) {
        return [this, tag = std::move(tag)](auto& d) { seen.push_back(tag + ":" + d.body()); };
    }
};

warren::consumer_options tagged(std::string tag, warren::ack_mode ack = warren::ack_mode::automatic,
                                std::uint16_t prefetch = 0) {
    warren::consumer_options o;
    o.tag = std::move(tag);
    o.ack = ack;
    o.prefetch = prefetch;
    return o;
}

} // namespace

// ---------------------------------------------------------------------------------------
// basic.get

TEMPLATE_TEST_CASE("queue: try_get takes messages in arrival order", "[queue]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b", "c"});
    REQUIRE(b.message_count("q") == 3);

    SECTION("automatic: settled on the way out") {
        std::vector<std::uint64_t> tags;
        strings bodies;
        while (auto d = b.try_get("q")) {
            CHECK_FALSE(d->pending());
            CHECK_FALSE(d->redelivered());
            CHECK(d->consumer_tag().empty());
            tags.push_back(d->delivery_tag());
            bodies.push_back(d->body());
        }
        CHECK(bodies == strings{"a", "b", "c"});
        CHECK(tags == std::vector<std::uint64_t>{1, 2, 3});
        CHECK(b.message_count("q") == 0);
        const auto stats = b.queue_stats("q");
        CHECK(stats.delivered == 3);
        CHECK(stats.acked == 3);
        CHECK(stats.unacked == 0);
    }
    SECTION("manual: unacked until acked") {
        auto d = b.try_get("q", warren::ack_mode::manual);
        REQUIRE(d);
        CHECK(d->body() == "a");
        CHECK(d->pending());
        CHECK(b.message_count("q") == 2);
        CHECK(b.queue_stats("q").unacked == 1);
        CHECK(b.queue_stats("q").acked == 0);
        d->ack();
        CHECK_FALSE(d->pending());
        CHECK(b.queue_stats("q").unacked == 0);
        CHECK(b.queue_stats("q").acked == 1);
        CHECK(drain(b, "q") == strings{"b", "c"});
    }
}

TEMPLATE_TEST_CASE("queue: try_get on an empty or unknown queue", "[queue]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    CHECK_FALSE(b.try_get("q"));
    CHECK_FALSE(b.try_get("q", warren::ack_mode::manual));
    CHECK(b.queue_stats("q").delivered == 0);
    REQUIRE_THROWS_AS(b.try_get("nope"), warren::error);
    REQUIRE_THROWS_WITH(b.try_get("nope"), "NOT_FOUND - no queue 'nope'");
    REQUIRE_THROWS_WITH(b.message_count("nope"), "NOT_FOUND - no queue 'nope'");
    REQUIRE_THROWS_WITH(b.subscribe("nope", [](auto&) {}), "NOT_FOUND - no queue 'nope'");
}

TEMPLATE_TEST_CASE("queue: a requeued message goes back to its original position", "[queue]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b", "c", "d"});

    SECTION("nack with requeue: before the later messages, redelivered") {
        auto a = b.try_get("q", warren::ack_mode::manual);
        auto bb = b.try_get("q", warren::ack_mode::manual);
        REQUIRE(a);
        REQUIRE(bb);
        bb->nack();
        CHECK(drain_marked(b, "q") == strings{"b*", "c", "d"});
        a->ack();
    }
    SECTION("reject with requeue") {
        auto a = b.try_get("q", warren::ack_mode::manual);
        REQUIRE(a);
        a->reject();
        auto again = b.try_get("q", warren::ack_mode::manual);
        REQUIRE(again);
        CHECK(again->body() == "a");
        CHECK(again->redelivered());
        CHECK(again->delivery_tag() == 2); // a new tag for the redelivery
        again->ack();
        CHECK(drain_marked(b, "q") == strings{"b", "c", "d"});
    }
    SECTION("requeued out of order: the queue puts them back in arrival order") {
        auto a = b.try_get("q", warren::ack_mode::manual);
        auto bb = b.try_get("q", warren::ack_mode::manual);
        auto c = b.try_get("q", warren::ack_mode::manual);
        REQUIRE((a && bb && c));
        c->reject();
        a->reject();
        CHECK(b.message_count("q") == 3);
        bb->nack();
        CHECK(drain_marked(b, "q") == strings{"a*", "b*", "c*", "d"});
        CHECK(b.queue_stats("q").requeued == 3);
    }
    SECTION("a message requeued twice keeps its place") {
        for (int round = 0; round < 2; ++round) {
            auto a = b.try_get("q", warren::ack_mode::manual);
            REQUIRE(a);
            CHECK(a->body() == "a");
            CHECK(a->redelivered() == (round > 0));
            a->nack();
        }
        CHECK(drain_marked(b, "q") == strings{"a*", "b", "c", "d"});
    }
    SECTION("a message published after the requeue still comes after it") {
        auto a = b.try_get("q", warren::ack_mode::manual);
        REQUIRE(a);
        (void)drain(b, "q");
        send(b, "q", {"e"});
        a->nack();
        CHECK(drain_marked(b, "q") == strings{"a*", "e"});
    }
}

TEMPLATE_TEST_CASE("queue: reject without requeue drops the message", "[queue]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b"});
    auto a = b.try_get("q", warren::ack_mode::manual);
    REQUIRE(a);
    SECTION("reject(false)") { a->reject(false); }
    SECTION("nack(false, false)") { a->nack(false, false); }
    const auto stats = b.queue_stats("q");
    CHECK(stats.dropped.rejected == 1);
    CHECK(stats.requeued == 0);
    CHECK(stats.acked == 0);
    CHECK(stats.unacked == 0);
    CHECK(drain_marked(b, "q") == strings{"b"});
}

TEMPLATE_TEST_CASE("queue: counters add up", "[queue][stats]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"m1", "m2", "m3", "m4", "m5", "m6"});

    REQUIRE(b.try_get("q")->body() == "m1"); // automatic: acked when delivered
    b.try_get("q", warren::ack_mode::manual)->ack();
    b.try_get("q", warren::ack_mode::manual)->reject(); // m3 back to the front
    auto m3 = b.try_get("q", warren::ack_mode::manual);
    REQUIRE(m3->body() == "m3");
    REQUIRE(m3->redelivered());
    m3->reject(false);
    auto m4 = b.try_get("q", warren::ack_mode::manual); // left unacked
    REQUIRE(m4->body() == "m4");
    REQUIRE(b.purge_queue("q") == 2); // m5, m6
    send(b, "q", {"m7"});

    const auto s = b.queue_stats("q");
    CHECK(s.enqueued == 7);
    CHECK(s.delivered == 5);
    CHECK(s.acked == 2);
    CHECK(s.requeued == 1);
    CHECK(s.dropped.rejected == 1);
    CHECK(s.purged == 2);
    CHECK(s.ready == 1);
    CHECK(s.unacked == 1);
    CHECK(s.consumers == 0);
    // Every ready entry came in by publish or requeue and left by delivery or purge;
    // every delivery ended acked, requeued, rejected or is still unacked.
    CHECK(s.enqueued + s.requeued == s.delivered + s.ready + s.purged);
    CHECK(s.delivered == s.acked + s.requeued + s.dropped.rejected + s.unacked);
    CHECK(s.accounted());
}

// ---------------------------------------------------------------------------------------
// consumers

TEMPLATE_TEST_CASE("queue: callbacks run only inside dispatch", "[queue][consumer]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings seen;
    auto sub = b.subscribe("q", [&](auto& d) { seen.push_back(d.body()); });
    send(b, "q", {"a", "b"});
    CHECK(seen.empty());
    CHECK(b.message_count("q") == 0); // handed to the consumer as they arrived, as RabbitMQ does
    CHECK(b.queue_stats("q").awaiting_callback == 2);
    CHECK(b.dispatch() == 2);
    CHECK(seen == strings{"a", "b"});
    CHECK(b.dispatch() == 0);
    CHECK(b.queue_stats("q").delivered == 2);
}

TEMPLATE_TEST_CASE("queue: consumers take turns in subscription order", "[queue][consumer]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    tag_recorder r;
    auto c1 = b.subscribe("q", r.callback("c1"), tagged("c1"));
    auto c2 = b.subscribe("q", r.callback("c2"), tagged("c2"));
    auto c3 = b.subscribe("q", r.callback("c3"), tagged("c3"));
    CHECK(b.consumer_count("q") == 3);

    SECTION("round robin") {
        warren_test::send_numbered(b, "q", "m", 7);
        CHECK(b.dispatch() == 7);
        CHECK(r.seen == strings{"c1:m0", "c2:m1", "c3:m2", "c1:m3", "c2:m4", "c3:m5", "c1:m6"});
    }
    SECTION("the turn carries over between dispatch calls") {
        warren_test::send_numbered(b, "q", "m", 2);
        CHECK(b.dispatch() == 2);
        warren_test::send_numbered(b, "q", "n", 2);
        CHECK(b.dispatch() == 2);
        CHECK(r.seen == strings{"c1:m0", "c2:m1", "c3:n0", "c1:n1"});
    }
    SECTION("a consumer that leaves is skipped, the others keep their turn") {
        warren_test::send_numbered(b, "q", "m", 2);
        CHECK(b.dispatch() == 2); // c1, c2
        c2.release();
        warren_test::send_numbered(b, "q", "n", 3);
        CHECK(b.dispatch() == 3);
        CHECK(r.seen == strings{"c1:m0", "c2:m1", "c3:n0", "c1:n1", "c3:n2"});
    }
    SECTION("the consumer whose turn is next leaves") {
        warren_test::send_numbered(b, "q", "m", 2);
        CHECK(b.dispatch() == 2); // c1, c2; c3 is next
        c3.release();
        warren_test::send_numbered(b, "q", "n", 3);
        CHECK(b.dispatch() == 3);
        CHECK(r.seen == strings{"c1:m0", "c2:m1", "c1:n0", "c2:n1", "c1:n2"});
    }
}

// RabbitMQ keeps a queue's consumers in a rotation: the one served goes to the back, and a
// new consumer joins at the back (rabbit_queue_consumers:deliver/add). After c1 is served the
// rotation is c2, c1; c3 joins after c1. warren inserts c3 after c2 in subscription order.
TEMPLATE_TEST_CASE("queue: a new consumer joins the back of the rotation", "[queue][consumer]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    tag_recorder r;
    auto c1 = b.subscribe("q", r.callback("c1"), tagged("c1"));
    auto c2 = b.subscribe("q", r.callback("c2"), tagged("c2"));
    warren_test::send_numbered(b, "q", "m", 1);
    CHECK(b.dispatch() == 1);
    auto c3 = b.subscribe("q", r.callback("c3"), tagged("c3"));
    warren_test::send_numbered(b, "q", "n", 3);
    CHECK(b.dispatch() == 3);
    CHECK(r.seen == strings{"c1:m0", "c2:n0", "c1:n1", "c3:n2"});
}

// RabbitMQ takes a consumer at its prefetch limit out of the rotation and puts it back at
// the end when an ack unblocks it (rabbit_queue_consumers:deliver/unblock). warren keeps it
// in its place, so after A's ack A is served before B.
TEMPLATE_TEST_CASE("queue: a consumer unblocked by an ack rejoins the back of the rotation",
                   "[queue][consumer][prefetch]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    tag_recorder r;
    std::vector<delivery> held;
    auto a = b.subscribe(
        "q", [&](delivery& d) { r.seen.push_back("A:" + d.body()); held.push_back(std::move(d)); },
        tagged("A", warren::ack_mode::manual, 1));
    auto bb = b.subscribe("q", r.callback("B"), tagged("B"));
    auto c = b.subscribe("q", r.callback("C"), tagged("C"));
    warren_test::send_numbered(b, "q", "m", 4);
    CHECK(b.dispatch() == 4); // A, B, C, then A is full: B
    held[0].ack();
    warren_test::send_numbered(b, "q", "n", 3);
    CHECK(b.dispatch() == 3);
    CHECK(r.seen == strings{"A:m0", "B:m1", "C:m2", "B:m3", "C:n0", "B:n1", "A:n2"});
}

TEMPLATE_TEST_CASE("queue: prefetch limits unacknowledged messages per consumer", "[queue][consumer][prefetch]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    tag_recorder r;
    std::vector<delivery> held; // manual deliveries kept unsettled

    SECTION("a consumer at its limit gets nothing more") {
        auto c = b.subscribe(
            "q", [&](delivery& d) { r.seen.push_back(d.body()); held.push_back(std::move(d)); },
            tagged("c", warren::ack_mode::manual, 2));
        warren_test::send_numbered(b, "q", "m", 5);
        CHECK(b.dispatch() == 2);
        CHECK(r.seen == strings{"m0", "m1"});
        CHECK(b.message_count("q") == 3);
        CHECK(b.queue_stats("q").unacked == 2);
        CHECK(b.dispatch() == 0);

        held[0].ack(); // room for one more
        CHECK(b.dispatch() == 1);
        CHECK(r.seen == strings{"m0", "m1", "m2"});
        held[1].nack(false, false); // a reject also makes room
        held[2].reject();           // so does a requeue, and m2 comes back first
        CHECK(b.dispatch() == 2);
        CHECK(r.seen == strings{"m0", "m1", "m2", "m2", "m3"});
        CHECK(held[3].redelivered());
    }
    SECTION("prefetch 1 and two consumers: the free one gets the next message") {
        std::vector<delivery> fast_held;
        auto slow = b.subscribe(
            "q", [&](delivery& d) { r.seen.push_back("slow:" + d.body()); held.push_back(std::move(d)); },
            tagged("slow", warren::ack_mode::manual, 1));
        auto fast = b.subscribe(
            "q", [&](delivery& d) { r.seen.push_back("fast:" + d.body()); d.ack(); },
            tagged("fast", warren::ack_mode::manual, 1));
        warren_test::send_numbered(b, "q", "m", 5);
        CHECK(b.dispatch() == 5);
        // slow holds m0 unacked, so everything after goes to fast.
        CHECK(r.seen == strings{"slow:m0", "fast:m1", "fast:m2", "fast:m3", "fast:m4"});
        CHECK(b.queue_stats("q").unacked == 1);
    }
    SECTION("prefetch 0 means no limit") {
        auto c = b.subscribe(
            "q", [&](delivery& d) { held.push_back(std::move(d)); },
            tagged("c", warren::ack_mode::manual, 0));
        warren_test::send_numbered(b, "q", "m", 50);
        CHECK(b.dispatch() == 50);
        CHECK(b.queue_stats("q").unacked == 50);
    }
    SECTION("automatic consumers ignore prefetch") {
        auto c = b.subscribe("q", r.callback("c"), tagged("c", warren::ack_mode::automatic, 1));
        warren_test::send_numbered(b, "q", "m", 4);
        CHECK(b.dispatch() == 4);
        CHECK(r.seen == strings{"c:m0", "c:m1", "c:m2", "c:m3"});
    }
    SECTION("every consumer at its limit: dispatch stops with messages left") {
        auto c1 = b.subscribe(
            "q", [&](delivery& d) { held.push_back(std::move(d)); },
            tagged("c1", warren::ack_mode::manual, 1));
        auto c2 = b.subscribe(
            "q", [&](delivery& d) { held.push_back(std::move(d)); },
            tagged("c2", warren::ack_mode::manual, 2));
        warren_test::send_numbered(b, "q", "m", 6);
        CHECK(b.dispatch() == 3);
        CHECK(b.message_count("q") == 3);
        REQUIRE(held.size() == 3);
        CHECK(held[0].consumer_tag() == "c1");
        CHECK(held[1].consumer_tag() == "c2");
        CHECK(held[2].consumer_tag() == "c2");
    }
}

TEMPLATE_TEST_CASE("queue: dispatch budget", "[queue][dispatch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings seen;
    auto sub = b.subscribe("q", [&](auto& d) { seen.push_back(d.body()); });
    warren_test::send_numbered(b, "q", "m", 5);
    CHECK(b.dispatch(0) == 0);
    CHECK(seen.empty());
    CHECK(b.dispatch(2) == 2);
    CHECK(seen == strings{"m0", "m1"});
    CHECK(b.queue_stats("q").awaiting_callback == 3);
    CHECK(b.dispatch(10) == 3); // fewer than the budget: returns what it delivered
    CHECK(seen == strings{"m0", "m1", "m2", "m3", "m4"});
    CHECK(b.dispatch(10) == 0);
}

TEMPLATE_TEST_CASE("queue: dispatch serves one message per queue per round, in declaration order",
                   "[queue][dispatch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q1");
    b.declare_queue("q2");
    b.declare_queue("q3");
    tag_recorder r;
    // Subscribed in another order than declared: declaration order is what counts.
    auto s3 = b.subscribe("q3", r.callback("q3"));
    auto s1 = b.subscribe("q1", r.callback("q1"));
    auto s2 = b.subscribe("q2", r.callback("q2"));
    send(b, "q1", {"a", "b", "c"});
    send(b, "q2", {"d"});
    send(b, "q3", {"e", "f"});

    SECTION("all of it") {
        CHECK(b.dispatch() == 6);
        CHECK(r.seen == strings{"q1:a", "q2:d", "q3:e", "q1:b", "q3:f", "q1:c"});
    }
    SECTION("a budget that ends mid-round; the next call goes on after the last queue served") {
        CHECK(b.dispatch(4) == 4);
        CHECK(r.seen == strings{"q1:a", "q2:d", "q3:e", "q1:b"});
        CHECK(b.dispatch() == 2);
        CHECK(r.seen == strings{"q1:a", "q2:d", "q3:e", "q1:b", "q3:f", "q1:c"});
    }
    SECTION("a budget of one per call still reaches every queue in turn") {
        strings expected{"q1:a", "q2:d", "q3:e", "q1:b", "q3:f", "q1:c"};
        for (std::size_t i = 0; i < expected.size(); ++i) CHECK(b.dispatch(1) == 1);
        CHECK(b.dispatch(1) == 0);
        CHECK(r.seen == expected);
    }
    SECTION("a queue without consumers keeps its messages") {
        s2.release();
        CHECK(b.dispatch() == 5);
        CHECK(r.seen == strings{"q1:a", "q3:e", "q1:b", "q3:f", "q1:c"});
        CHECK(drain(b, "q2") == strings{"d"});
    }
    SECTION("a deleted and redeclared queue moves to the end of the order") {
        (void)b.delete_queue("q1");
        b.declare_queue("q1");
        auto again = b.subscribe("q1", r.callback("q1"));
        send(b, "q1", {"x"});
        CHECK(b.dispatch() == 4);
        CHECK(r.seen == strings{"q2:d", "q3:e", "q1:x", "q3:f"});
    }
}

// ---------------------------------------------------------------------------------------
// consumer tags and exclusive consumers

TEMPLATE_TEST_CASE("queue: consumer tags", "[queue][consumer]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    b.declare_queue("other");
    auto noop = [](auto&) {};

    SECTION("an empty tag gets a generated, unique one") {
        auto s1 = b.subscribe("q", noop);
        auto s2 = b.subscribe("q", noop);
        auto s3 = b.subscribe("other", noop);
        CHECK_FALSE(s1.tag().empty());
        CHECK_FALSE(s2.tag().empty());
        CHECK(s1.tag() != s2.tag());
        CHECK(s1.tag() != s3.tag());
        CHECK(b.consumer_count("q") == 2);
    }
    SECTION("the tag is the one the deliveries carry") {
        std::string seen;
        auto s = b.subscribe("q", [&](auto& d) { seen = d.consumer_tag(); });
        send(b, "q", {"a"});
        CHECK(b.dispatch() == 1);
        CHECK(seen == s.tag());
    }
    SECTION("a given tag is kept") {
        auto s = b.subscribe("q", noop, tagged("mine"));
        CHECK(s.tag() == "mine");
        CHECK(s.queue() == "q");
    }
    SECTION("reusing a tag on one queue is not_allowed") {
        auto s = b.subscribe("q", noop, tagged("mine"));
        CHECK(error_of([&] { (void)b.subscribe("q", noop, tagged("mine")); }, warren::reply_code::not_allowed) ==
              "NOT_ALLOWED - attempt to reuse consumer tag 'mine'");
        CHECK(b.consumer_count("q") == 1);
    }
    SECTION("a tag is free again once its subscription ended") {
        auto s = b.subscribe("q", noop, tagged("mine"));
        s.release();
        auto again = b.subscribe("q", noop, tagged("mine"));
        CHECK(again.tag() == "mine");
        CHECK(b.consumer_count("q") == 1);
    }
}

// A generated tag must not collide with one an application chose: RabbitMQ generates
// "amq.ctag-" followed by random characters. warren generates "ctag-<n>", so an application
// tag "ctag-2" makes the next generated subscribe fail with NOT_ALLOWED.
TEMPLATE_TEST_CASE("queue: a generated consumer tag never collides with a chosen one",
                   "[queue][consumer]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    auto noop = [](auto&) {};
    std::vector<typename TestType::subscription> subs;
    // Chosen tags that look like generated ones, each followed by a generated one.
    for (int i = 1; i <= 4; ++i) {
        subs.push_back(b.subscribe("q", noop, tagged("ctag-" + std::to_string(2 * i))));
        REQUIRE_NOTHROW(subs.push_back(b.subscribe("q", noop)));
    }
    CHECK(b.consumer_count("q") == 8);
}

TEMPLATE_TEST_CASE("queue: exclusive consumers", "[queue][consumer]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    auto noop = [](auto&) {};
    warren::consumer_options exclusive;
    exclusive.exclusive = true;

    SECTION("a second consumer is refused while an exclusive one holds the queue") {
        auto only = b.subscribe("q", noop, exclusive);
        CHECK(error_of([&] { (void)b.subscribe("q", noop); }, warren::reply_code::access_refused) ==
              "ACCESS_REFUSED - queue 'q' in exclusive use");
        REQUIRE_THROWS_WITH(b.subscribe("q", noop, exclusive), "ACCESS_REFUSED - queue 'q' in exclusive use");
        CHECK(b.consumer_count("q") == 1);
        only.release();
        auto next = b.subscribe("q", noop); // free again
        CHECK(b.consumer_count("q") == 1);
    }
    SECTION("exclusive is refused on a queue that has consumers") {
        auto first = b.subscribe("q", noop);
        CHECK(error_of([&] { (void)b.subscribe("q", noop, exclusive); }, warren::reply_code::access_refused) ==
              "ACCESS_REFUSED - queue 'q' in exclusive use");
        CHECK(b.consumer_count("q") == 1);
    }
    SECTION("an exclusive consumer gets every message") {
        strings seen;
        auto only = b.subscribe("q", [&](auto& d) { seen.push_back(d.body()); }, exclusive);
        send(b, "q", {"a", "b"});
        CHECK(b.dispatch() == 2);
        CHECK(seen == strings{"a", "b"});
    }
}

// Deliveries: the envelope they carry and how they are settled (ack, nack, reject,
// multiple, twice, after the queue is gone).

#include <warren/broker.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::drain_marked;
using warren_test::error_of;
using warren_test::manual;
using warren_test::send;
using warren_test::strings;

namespace {


} // namespace

TEMPLATE_TEST_CASE("delivery: carries the message and its envelope", "[delivery]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");

    SECTION("published to a named exchange") {
        b.declare_exchange("ex", "direct");
        b.bind_queue("q", "ex", "rk");
        typename TestType::message_type msg;
        msg.routing_key = "rk";
        msg.body = "hello";
        msg.properties.message_id = "id-1";
        msg.properties.headers.set("h", "v");
        REQUIRE(b.publish("ex", std::move(msg)) == 1);

        auto d = b.try_get("q", manual);
        REQUIRE(d);
        CHECK(d->body() == "hello");
        CHECK(d->routing_key() == "rk");
        CHECK(d->exchange() == "ex");
        CHECK(d->properties().message_id == "id-1");
        CHECK(d->properties().headers.contains("h"));
        CHECK_FALSE(d->redelivered());
        CHECK(d->delivery_tag() == 1);
        CHECK(d->consumer_tag().empty()); // a get has no consumer
        CHECK(d->pending());
        d->ack();
    }
    SECTION("published to the default exchange") {
        send(b, "q", {"x"});
        auto d = b.try_get("q");
        REQUIRE(d);
        CHECK(d->exchange().empty());
        CHECK(d->routing_key() == "q");
        CHECK_FALSE(d->pending());
    }
    SECTION("pushed to a consumer") {
        send(b, "q", {"a", "b"});
        std::vector<std::string> seen;
        warren::consumer_options options;
        options.tag = "worker";
        auto sub = b.subscribe(
            "q",
            [&](auto& d) {
                seen.push_back(d.consumer_tag() + "/" + std::to_string(d.delivery_tag()) + "/" + d.body());
            },
            options);
        CHECK(b.dispatch() == 2);
        CHECK(seen == strings{"worker/1/a", "worker/2/b"});
    }
    SECTION("delivery tags grow per queue, gets and pushes alike") {
        b.declare_queue("other");
        send(b, "q", {"a", "b", "c"});
        send(b, "other", {"x"});
        CHECK(b.try_get("q")->delivery_tag() == 1);
        CHECK(b.try_get("other")->delivery_tag() == 1);
        std::uint64_t pushed = 0;
        auto sub = b.subscribe("q", [&](auto& d) { pushed = d.delivery_tag(); });
        CHECK(b.dispatch(1) == 1);
        CHECK(pushed == 2);
        CHECK(b.try_get("q")->delivery_tag() == 3);
    }
}

TEMPLATE_TEST_CASE("delivery: the message outlives its queue and the broker", "[delivery]", warren::broker,
                   warren::concurrent_broker) {
    std::optional<typename TestType::delivery> kept;
    {
        TestType b;
        b.declare_queue("q");
        send(b, "q", {"survivor"});
        kept = b.try_get("q", manual);
        REQUIRE(kept);
        (void)b.delete_queue("q");
        CHECK(kept->body() == "survivor");
    }
    CHECK(kept->body() == "survivor");
    CHECK(kept->routing_key() == "q");
    REQUIRE_NOTHROW(kept->ack()); // the queue is gone: ignored
    CHECK_FALSE(kept->pending());
}

TEMPLATE_TEST_CASE("delivery: settling", "[delivery]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b", "c", "d"});

    SECTION("ack forgets the message") {
        auto a = b.try_get("q", manual);
        a->ack();
        CHECK_FALSE(a->pending());
        CHECK(b.queue_stats("q").acked == 1);
        CHECK(drain_marked(b, "q") == strings{"b", "c", "d"});
    }
    SECTION("settling twice is an unknown delivery tag") {
        auto a = b.try_get("q", manual);
        auto bb = b.try_get("q", manual);
        REQUIRE(bb->delivery_tag() == 2);
        SECTION("ack, ack") {
            bb->ack();
            CHECK(error_of([&] { bb->ack(); }, warren::reply_code::precondition_failed) ==
                  "PRECONDITION_FAILED - unknown delivery tag 2");
        }
        SECTION("ack, nack") {
            bb->ack();
            CHECK(error_of([&] { bb->nack(); }, warren::reply_code::precondition_failed) ==
                  "PRECONDITION_FAILED - unknown delivery tag 2");
        }
        SECTION("reject, ack") {
            bb->reject();
            CHECK(error_of([&] { bb->ack(); }, warren::reply_code::precondition_failed) ==
                  "PRECONDITION_FAILED - unknown delivery tag 2");
            CHECK(b.queue_stats("q").acked == 0);
        }
        SECTION("nack without requeue, reject") {
            bb->nack(false, false);
            CHECK(error_of([&] { bb->reject(false); }, warren::reply_code::precondition_failed) ==
                  "PRECONDITION_FAILED - unknown delivery tag 2");
            CHECK(b.queue_stats("q").dropped.rejected == 1);
        }
        // The failed attempt changed nothing else.
        CHECK(a->pending());
        a->ack();
        CHECK(b.queue_stats("q").unacked == 0);
    }
    SECTION("an automatic delivery cannot be settled") {
        auto a = b.try_get("q");
        REQUIRE(a->delivery_tag() == 1);
        CHECK(error_of([&] { a->ack(); }, warren::reply_code::precondition_failed) ==
              "PRECONDITION_FAILED - unknown delivery tag 1");
        CHECK(error_of([&] { a->reject(); }, warren::reply_code::precondition_failed) ==
              "PRECONDITION_FAILED - unknown delivery tag 1");
        CHECK(b.queue_stats("q").acked == 1);
        CHECK(b.queue_stats("q").requeued == 0);
        CHECK(drain_marked(b, "q") == strings{"b", "c", "d"});
    }
    SECTION("a moved-from delivery has nothing to settle") {
        auto a = b.try_get("q", manual);
        auto moved = std::move(*a);
        CHECK_FALSE(a->pending()); // NOLINT(bugprone-use-after-move): checking the moved-from state
        CHECK(moved.pending());
        CHECK(error_of([&] { a->ack(); }, warren::reply_code::precondition_failed) ==
              "PRECONDITION_FAILED - unknown delivery tag 1");
        moved.ack();
        CHECK(b.queue_stats("q").acked == 1);
    }
}

TEMPLATE_TEST_CASE("delivery: multiple settles the owner's earlier deliveries", "[delivery]", warren::broker,
                   warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b", "c", "d"});

    SECTION("ack(multiple) over gets") {
        auto a = b.try_get("q", manual);
        auto bb = b.try_get("q", manual);
        auto c = b.try_get("q", manual);
        bb->ack();
        c->ack(true); // settles a too; b was already acked
        const auto s = b.queue_stats("q");
        CHECK(s.acked == 3);
        CHECK(s.unacked == 0);
        CHECK(error_of([&] { a->ack(); }, warren::reply_code::precondition_failed) ==
              "PRECONDITION_FAILED - unknown delivery tag 1");
        CHECK(drain_marked(b, "q") == strings{"d"});
    }
    SECTION("later deliveries are not touched") {
        auto a = b.try_get("q", manual);
        auto bb = b.try_get("q", manual);
        auto c = b.try_get("q", manual);
        bb->ack(true);
        CHECK(b.queue_stats("q").acked == 2);
        CHECK(b.queue_stats("q").unacked == 1);
        CHECK(c->pending());
        c->ack();
    }
    SECTION("nack(multiple) requeues them in their original order") {
        auto a = b.try_get("q", manual);
        auto bb = b.try_get("q", manual);
        auto c = b.try_get("q", manual);
        c->nack(true);
        CHECK(b.queue_stats("q").requeued == 3);
        CHECK(drain_marked(b, "q") == strings{"a*", "b*", "c*", "d"});
    }
    SECTION("nack(multiple, no requeue) drops them") {
        auto a = b.try_get("q", manual);
        auto bb = b.try_get("q", manual);
        bb->nack(true, false);
        CHECK(b.queue_stats("q").dropped.rejected == 2);
        CHECK(drain_marked(b, "q") == strings{"c", "d"});
    }
    SECTION("only the same consumer's deliveries") {
        std::vector<delivery> c1;
        std::vector<delivery> c2;
        warren::consumer_options options;
        options.ack = manual;
        auto s1 = b.subscribe("q", [&](delivery& d) { c1.push_back(std::move(d)); }, options);
        auto s2 = b.subscribe("q", [&](delivery& d) { c2.push_back(std::move(d)); }, options);
        CHECK(b.dispatch() == 4);
        REQUIRE(c1.size() == 2); // a, c
        REQUIRE(c2.size() == 2); // b, d
        CHECK(c1[1].body() == "c");
        c1[1].ack(true); // a and c, not b
        auto s = b.queue_stats("q");
        CHECK(s.acked == 2);
        CHECK(s.unacked == 2);
        CHECK(c2[0].pending());
        c2[1].nack(true); // b and d back, in order
        s1.release();
        s2.release();
        CHECK(drain_marked(b, "q") == strings{"b*", "d*"});
    }
}

TEMPLATE_TEST_CASE("delivery: settling after the queue was deleted is ignored", "[delivery]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b", "c"});
    auto a = b.try_get("q", manual);
    auto bb = b.try_get("q", manual);
    auto c = b.try_get("q", manual);
    CHECK(b.delete_queue("q") == 0); // nothing ready: all three were unacked
    REQUIRE_NOTHROW(a->ack());
    REQUIRE_NOTHROW(bb->nack());
    REQUIRE_NOTHROW(c->reject(false));
    CHECK_FALSE(a->pending());
    CHECK_FALSE(bb->pending());
    CHECK_FALSE(c->pending());

    // A new queue of the same name is another queue: nothing came back into it.
    b.declare_queue("q");
    CHECK(b.message_count("q") == 0);
    CHECK(b.queue_stats("q").requeued == 0);
}

TEMPLATE_TEST_CASE("delivery: a consumer's delivery moved out of the callback is settled later", "[delivery]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    send(b, "q", {"a", "b"});
    std::vector<delivery> later;
    warren::consumer_options options;
    options.ack = manual;
    options.prefetch = 1;
    auto sub = b.subscribe("q", [&](delivery& d) { later.push_back(std::move(d)); }, options);
    CHECK(b.dispatch() == 1); // prefetch 1: b waits for a's ack
    REQUIRE(later.size() == 1);
    CHECK(later[0].body() == "a");
    CHECK(later[0].pending());
    CHECK(later[0].consumer_tag() == sub.tag());
    CHECK(b.queue_stats("q").unacked == 1);
    later[0].ack();
    CHECK(b.dispatch() == 1);
    REQUIRE(later.size() == 2);
    CHECK(later[1].body() == "b");
    later[1].ack();
    CHECK(b.queue_stats("q").acked == 2);
}

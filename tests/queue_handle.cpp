// basic_queue_handle: takes from one queue, resolved once, as try_get does by name.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using namespace std::chrono_literals;
using warren_test::drain;
using warren_test::error_of;
using warren_test::msg;
using warren_test::send;
using warren_test::strings;
using warren_test::with_args;

TEMPLATE_TEST_CASE("queue handle: takes messages in order, as try_get does", "[queue_handle]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    const auto q = b.make_queue_handle("q");
    REQUIRE(static_cast<bool>(q));
    CHECK(q.queue() == "q");
    CHECK_FALSE(q.try_get());
    send(b, "q", {"1", "2", "3"});
    CHECK(q.message_count() == 3);
    auto first = q.try_get();
    REQUIRE(first);
    CHECK(first->body() == "1");
    CHECK_FALSE(first->pending());
    auto second = q.try_get(warren::ack_mode::manual);
    REQUIRE(second);
    CHECK(second->body() == "2");
    second->nack(false, true); // back where it was
    CHECK(drain(b, "q") == strings{"2", "3"});
    CHECK(b.queue_stats("q").redelivered == 1);
}

TEMPLATE_TEST_CASE("queue handle: a deleted queue is not_found, even once redeclared", "[queue_handle]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    const auto q = b.make_queue_handle("q");
    (void)b.delete_queue("q");
    CHECK(error_of([&] { (void)q.try_get(); }) == "404 NOT_FOUND - no queue 'q' (deleted)");
    (void)b.declare_queue("q");
    send(b, "q", {"new"});
    CHECK(error_of([&] { (void)q.try_get(); }) == "404 NOT_FOUND - no queue 'q' (deleted)");
    CHECK(b.make_queue_handle("q").try_get()->body() == "new");
    CHECK(error_of([&] { (void)b.make_queue_handle("ghost"); }) == "404 NOT_FOUND - no queue 'ghost'");
}

TEMPLATE_TEST_CASE("queue handle: a handle that outlives its broker is not_found, and touches nothing",
                   "[queue_handle]", warren::broker, warren::concurrent_broker) {
    auto b = std::make_unique<TestType>();
    (void)b->declare_queue("q");
    send(*b, "q", {"1"});
    const auto q = b->make_queue_handle("q");
    b.reset();
    CHECK(error_of([&] { (void)q.try_get(); }) == "404 NOT_FOUND - no queue 'q' (deleted)");
}

TEMPLATE_TEST_CASE("queue handle: expired heads are dead-lettered when it takes", "[queue_handle][ttl]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_exchange("dlx", "fanout");
    (void)b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    (void)b.declare_queue("q", with_args({{"x-message-ttl", 100}, {"x-dead-letter-exchange", "dlx"}}));
    const auto q = b.make_queue_handle("q");
    send(b, "q", {"old"});
    time.advance(100ms);
    send(b, "q", {"fresh"});
    // The push of "fresh" already dropped "old" (expired heads go at every change), so
    // expire it through the handle instead: a message that expires with nothing after it.
    auto got = q.try_get();
    REQUIRE(got);
    CHECK(got->body() == "fresh");
    send(b, "q", {"late"});
    time.advance(100ms);
    CHECK_FALSE(q.try_get());
    CHECK(drain(b, "dead") == strings{"old", "late"});
}

TEMPLATE_TEST_CASE("queue handle: try_get_many takes up to its count in order, each as a get", "[queue_handle][batch]",
                   warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    (void)b.declare_queue("q");
    const auto q = b.make_queue_handle("q");
    std::vector<delivery> got;
    CHECK(q.try_get_many(got, 10) == 0);
    send(b, "q", {"1", "2", "3", "4", "5"});
    CHECK(q.try_get_many(got, 3) == 3);
    CHECK(q.try_get_many(got, 0) == 0);
    REQUIRE(got.size() == 3);
    CHECK(got[0].body() == "1");
    CHECK(got[2].body() == "3");
    CHECK(q.try_get_many(got, 10, warren::ack_mode::manual) == 2); // appended: what is left
    REQUIRE(got.size() == 5);
    CHECK(got[3].body() == "4");
    CHECK(got[4].pending());
    got[4].ack(true); // one owner for the gets: 4 and 5
    const auto s = b.queue_stats("q");
    CHECK(s.delivered == 5);
    CHECK(s.acked == 5);
    CHECK(s.ready == 0);
    CHECK(s.accounted());
    (void)b.delete_queue("q");
    CHECK(error_of([&] { (void)q.try_get_many(got, 1); }) == "404 NOT_FOUND - no queue 'q' (deleted)");
}

TEMPLATE_TEST_CASE("queue handle: try_get_many dead-letters expired heads and stops at an empty queue",
                   "[queue_handle][batch][ttl]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    warren::manual_clock time;
    TestType b(time);
    (void)b.declare_queue("dead");
    (void)b.declare_queue("q", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dead"}}));
    const auto q = b.make_queue_handle("q");
    for (const char* body : {"short", "long"}) {
        typename TestType::message_type m = msg("q", body);
        m.properties.expiration = std::string(body) == "short" ? "10" : "1000";
        REQUIRE(b.publish("", std::move(m)) == 1);
    }
    time.advance(10ms);
    std::vector<delivery> got;
    CHECK(q.try_get_many(got, 5) == 1);
    REQUIRE(got.size() == 1);
    CHECK(got[0].body() == "long");
    CHECK(drain(b, "dead") == strings{"short"});
}

// idempotent_consumer (include/warren/patterns/idempotent_consumer.hpp): a message_id is
// handled once however the message comes back (published twice, requeued, redelivered to
// another consumer after the first ended before its ack), a throwing handler's message is
// handled again, messages without an id are handled every time, and the counters.

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <warren/clock.hpp>
#include <warren/patterns/idempotent_consumer.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

template <class Broker>
std::size_t send(Broker& b, const std::string& queue, const std::string& body, std::optional<std::string> id) {
    typename Broker::message_type m{.routing_key = queue, .body = body};
    m.properties.message_id = std::move(id);
    return b.publish("", std::move(m));
}

} // namespace

TEMPLATE_TEST_CASE("idempotent_consumer: a message_id published twice is handled once and acked twice",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    std::vector<std::string> handled;
    warren::idempotent_consumer consumer(b, "q", [&](const typename TestType::delivery& d) { handled.push_back(d.body()); });
    REQUIRE(send(b, "q", "charge 10", "m-1") == 1);
    REQUIRE(send(b, "q", "charge 10 (again)", "m-1") == 1);
    REQUIRE(send(b, "q", "charge 20", "m-2") == 1);
    (void)b.dispatch();
    CHECK(handled == std::vector<std::string>{"charge 10", "charge 20"});
    CHECK(consumer.handled() == 2);
    CHECK(consumer.duplicates() == 1);
    CHECK(consumer.failures() == 0);
    const auto stats = b.queue_stats("q");
    CHECK(stats.acked == 3);
    CHECK(stats.unacked == 0);
    CHECK(stats.ready == 0);
}

TEMPLATE_TEST_CASE("idempotent_consumer: a message requeued after it was handled is acked, not handled again",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    int runs = 0;
    std::optional<delivery> held;
    // The handler keeps the delivery to settle it later, and it is then requeued (say, an
    // ack that a later step failed to send): the same message comes back, redelivered.
    warren::idempotent_consumer consumer(b, "q", [&](delivery& d) {
        ++runs;
        held.emplace(std::move(d));
    });
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    (void)b.dispatch();
    REQUIRE(held);
    REQUIRE(held->pending());
    held->reject(true);
    (void)b.dispatch();
    CHECK(runs == 1);
    CHECK(consumer.handled() == 1);
    CHECK(consumer.duplicates() == 1);
    const auto stats = b.queue_stats("q");
    CHECK(stats.redelivered == 1);
    CHECK(stats.acked == 1);
    CHECK(stats.unacked == 0);
}

TEMPLATE_TEST_CASE("idempotent_consumer: a consumer that ends before its ack leaves the redelivery to one that "
                   "shares its deduplicator, which acks it unhandled",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    using consumer_type = warren::idempotent_consumer<TestType>;
    TestType b;
    b.declare_queue("q");
    int first_runs = 0;
    int second_runs = 0;
    std::vector<bool> second_saw_redelivered;
    std::optional<delivery> never_acked;
    SECTION("sharing a deduplicator: handled once") {
        typename consumer_type::deduplicator_type seen;
        {
            consumer_type first(b, "q", seen, [&](delivery& d) {
                ++first_runs;
                never_acked.emplace(std::move(d)); // the work is done; the ack never comes
            });
            REQUIRE(send(b, "q", "x", "m-1") == 1);
            (void)b.dispatch();
            REQUIRE(first_runs == 1);
        } // the first consumer dies: its unacknowledged message goes back to the queue
        CHECK(b.queue_stats("q").ready == 1);
        consumer_type second(b, "q", seen, [&](const delivery& d) {
            ++second_runs;
            second_saw_redelivered.push_back(d.redelivered());
        });
        (void)b.dispatch();
        CHECK(second_runs == 0);
        CHECK(second.duplicates() == 1);
        CHECK(b.queue_stats("q").acked == 1);
    }
    SECTION("each with its own deduplicator: handled again (deduplication is per deduplicator)") {
        {
            consumer_type first(b, "q", [&](delivery& d) {
                ++first_runs;
                never_acked.emplace(std::move(d));
            });
            REQUIRE(send(b, "q", "x", "m-1") == 1);
            (void)b.dispatch();
        }
        consumer_type second(b, "q", [&](const delivery& d) {
            ++second_runs;
            second_saw_redelivered.push_back(d.redelivered());
        });
        (void)b.dispatch();
        CHECK(first_runs == 1);
        CHECK(second_runs == 1);
        CHECK(second_saw_redelivered == std::vector<bool>{true});
    }
}

TEMPLATE_TEST_CASE("idempotent_consumer: a throwing handler's message is requeued and handled again on redelivery",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    int attempts = 0;
    std::vector<bool> redelivered;
    warren::idempotent_consumer consumer(b, "q", [&](const delivery& d) {
        redelivered.push_back(d.redelivered());
        if (++attempts == 1) throw std::runtime_error("payment service down");
    });
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    SECTION("without an error handler the exception comes out of dispatch()") {
        CHECK_THROWS_WITH(b.dispatch(), "payment service down");
        CHECK(consumer.failures() == 1);
        CHECK(consumer.handled() == 0);
        CHECK(b.queue_stats("q").ready == 1);
        CHECK(consumer.seen().size() == 0); // the claim was given up
        (void)b.dispatch();
    }
    SECTION("with an error handler dispatch() goes on and redelivers it") {
        std::vector<std::string> errors;
        b.set_error_handler([&](const warren::consumer_error& e) {
            try {
                std::rethrow_exception(e.exception);
            } catch (const std::exception& x) {
                errors.emplace_back(x.what());
            }
        });
        (void)b.dispatch();
        CHECK(errors == std::vector<std::string>{"payment service down"});
    }
    CHECK(attempts == 2);
    CHECK(redelivered == std::vector<bool>{false, true});
    CHECK(consumer.handled() == 1);
    CHECK(consumer.failures() == 1);
    CHECK(consumer.active());
    // Handled now: a further copy is a duplicate.
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    (void)b.dispatch();
    CHECK(attempts == 2);
    CHECK(consumer.duplicates() == 1);
    const auto stats = b.queue_stats("q");
    CHECK(stats.acked == 2);
    CHECK(stats.requeued == 1);
    CHECK(stats.dropped.total() == 0);
}

TEMPLATE_TEST_CASE("idempotent_consumer: without requeue_on_error a throwing handler's message is dead-lettered, "
                   "and its id stays unclaimed",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    b.declare_queue("q", {.arguments = {{"x-dead-letter-exchange", "dlx"}}});
    int attempts = 0;
    warren::idempotent_consumer consumer(
        b, "q",
        [&](const delivery&) {
            if (++attempts == 1) throw std::runtime_error("bad");
        },
        {.requeue_on_error = false});
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    CHECK_THROWS_WITH(b.dispatch(), "bad");
    CHECK(b.message_count("dead") == 1);
    CHECK(b.queue_stats("q").ready == 0);
    // Published again (say, moved back from the dead-letter queue): handled this time.
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    (void)b.dispatch();
    CHECK(attempts == 2);
    CHECK(consumer.handled() == 1);
    CHECK(consumer.duplicates() == 0);
}

TEMPLATE_TEST_CASE("idempotent_consumer: requeue_once dead-letters a message that fails again once redelivered",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    b.declare_queue("q", {.arguments = {{"x-dead-letter-exchange", "dlx"}}});
    int attempts = 0;
    warren::idempotent_consumer consumer(
        b, "q",
        [&](const delivery&) {
            ++attempts;
            throw std::runtime_error("poison");
        },
        {.requeue_once = true});
    b.set_error_handler([](const warren::consumer_error&) {});
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    (void)b.dispatch(); // fails, is requeued, fails again redelivered: dead-lettered, and dispatch() ends
    CHECK(attempts == 2);
    CHECK(consumer.failures() == 2);
    CHECK(b.message_count("dead") == 1);
    CHECK(b.queue_stats("q").requeued == 1);
}

TEMPLATE_TEST_CASE("idempotent_consumer: a message without a message_id is handled each time and counted",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    int runs = 0;
    warren::idempotent_consumer consumer(b, "q", [&](const typename TestType::delivery&) { ++runs; });
    REQUIRE(send(b, "q", "x", std::nullopt) == 1);
    REQUIRE(send(b, "q", "x", std::nullopt) == 1);
    REQUIRE(send(b, "q", "x", std::string()) == 1); // an empty id is no id
    (void)b.dispatch();
    CHECK(runs == 3);
    CHECK(consumer.handled() == 3);
    CHECK(consumer.without_message_id() == 3);
    CHECK(consumer.duplicates() == 0);
    CHECK(b.queue_stats("q").acked == 3);
}

TEMPLATE_TEST_CASE("idempotent_consumer: an id being handled elsewhere is requeued, then acked as a duplicate",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    using consumer_type = warren::idempotent_consumer<TestType>;
    TestType b;
    b.declare_queue("q");
    typename consumer_type::deduplicator_type seen;
    int runs = 0;
    consumer_type consumer(b, "q", seen, [&](const typename TestType::delivery&) { ++runs; });
    // Another consumer sharing the deduplicator holds the claim (on another thread, in
    // real use): this one gives the message back to the queue.
    REQUIRE(seen.try_begin("m-1") == warren::claim::first);
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    // One delivery at a time: while the claim is held the message would come straight back.
    CHECK(b.dispatch(1) == 1);
    CHECK(consumer.requeued_in_progress() == 1);
    CHECK(b.queue_stats("q").ready == 1);
    seen.complete("m-1"); // the other consumer is done with it
    CHECK(b.dispatch() == 1);
    CHECK(runs == 0);
    CHECK(consumer.duplicates() == 1);
    CHECK(b.queue_stats("q").acked == 1);
}

TEMPLATE_TEST_CASE("idempotent_consumer: a handler that settles the delivery itself is not settled again",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    warren::idempotent_consumer consumer(b, "q", [](typename TestType::delivery& d) { d.ack(); });
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    REQUIRE_NOTHROW(b.dispatch());
    CHECK(consumer.handled() == 1);
    CHECK(b.queue_stats("q").acked == 1);
}

TEMPLATE_TEST_CASE("idempotent_consumer: its own deduplicator forgets ids after the retention on the broker's clock",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("q");
    int runs = 0;
    warren::idempotent_consumer consumer(b, "q", [&](const typename TestType::delivery&) { ++runs; },
                                         {.deduplicator = {.capacity = 10, .retention = 1min}});
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    (void)b.dispatch();
    time.advance(59s);
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    (void)b.dispatch();
    CHECK(runs == 1);
    time.advance(1s);
    REQUIRE(send(b, "q", "x", "m-1") == 1);
    (void)b.dispatch();
    CHECK(runs == 2);
    CHECK(consumer.duplicates() == 1);
}

TEMPLATE_TEST_CASE("idempotent_consumer: prefetch and tag reach the subscription, and release ends it",
                   "[patterns][idempotent_consumer]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    TestType b;
    b.declare_queue("q");
    std::vector<delivery> held;
    warren::idempotent_consumer consumer(b, "q", [&](delivery& d) { held.push_back(std::move(d)); },
                                         {.prefetch = 2, .tag = "payments-1"});
    CHECK(consumer.tag() == "payments-1");
    for (const char* id : {"a", "b", "c"}) REQUIRE(send(b, "q", "x", id) == 1);
    (void)b.dispatch();
    CHECK(held.size() == 2); // the third waits for an ack
    CHECK(b.queue_stats("q").ready == 1);
    consumer.release();
    CHECK_FALSE(consumer.active());
    CHECK(b.consumer_count("q") == 0);
    CHECK(b.queue_stats("q").ready == 3); // the two held went back
}

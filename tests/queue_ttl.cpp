// Time in queues, all on a manual_clock: message TTL (x-message-ttl and the per-message
// expiration property), expiry only at the queue head, dead-lettering of expired messages,
// refused expiration values, and queue expiry (x-expires). RabbitMQ's rules: ttl.html and
// dlx.html; where the docs leave a detail open, rabbit_amqqueue_process decides.

#include <warren/broker.hpp>
#include <warren/clock.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using namespace std::chrono_literals;
using warren_test::drain;
using warren_test::drain_marked;
using warren_test::error_of;
using warren_test::send;
using warren_test::strings;

namespace {

/// A message for the default exchange (it goes to queue `queue`), with an expiration
/// property if `expiration` is given.
warren::message to(std::string_view queue, std::string_view body, std::optional<std::string> expiration = {}) {
    warren::message m;
    m.routing_key = std::string(queue);
    m.body = std::string(body);
    m.properties.expiration = std::move(expiration);
    return m;
}

/// Declares `name` with `args`.
template <class Broker>
void declare(Broker& b, std::string_view name, warren::field_table args = {}) {
    warren::queue_options options;
    options.arguments = std::move(args);
    REQUIRE(b.declare_queue(name, options) == name);
}

/// Publishes `m`; it must reach exactly one queue.
template <class Broker>
void put(Broker& b, warren::message m) {
    REQUIRE(b.publish("", std::move(m)) == 1);
}

/// Collects the bodies a subscription receives, in order.
struct collected {
    strings bodies;
    auto callback() {
        return [this](auto& d) { bodies.push_back(d.body()); };
    }
};

/// The one entry of a message's x-death header; fails the test if there is not exactly one.
const warren::field_table& only_death(const warren::properties& props) {
    const warren::field_value* deaths = props.headers.find("x-death");
    REQUIRE(deaths != nullptr);
    const auto* array = deaths->get_if<warren::field_array>();
    REQUIRE(array != nullptr);
    REQUIRE(array->size() == 1);
    const auto* entry = array->front().get_if<warren::field_table>();
    REQUIRE(entry != nullptr);
    return *entry;
}

/// The text of a string field, or "<missing>" / "<not a string>".
std::string text_of(const warren::field_table& table, std::string_view name) {
    const warren::field_value* value = table.find(name);
    if (value == nullptr) return "<missing>";
    const auto* s = value->get_if<std::string>();
    return s == nullptr ? "<not a string>" : *s;
}

} // namespace

// ---------------------------------------------------------------------------------------
// x-message-ttl

TEMPLATE_TEST_CASE("ttl: a message whose x-message-ttl passed is never delivered (RabbitMQ ttl.html)", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 100}});
    put(b, to("q", "hello"));

    SECTION("1 ms before the TTL it is still delivered") {
        time.advance(99ms);
        CHECK(b.message_count("q") == 1);
        CHECK(drain(b, "q") == strings{"hello"});
        const auto s = b.queue_stats("q");
        CHECK(s.delivered == 1);
        CHECK(s.dropped.expired == 0);
        CHECK(s.accounted());
    }
    SECTION("once the TTL has passed it is gone, to basic.get and to the counts") {
        time.advance(100ms); // expired at exactly its TTL (RabbitMQ: Now >= Expiry)
        CHECK(b.message_count("q") == 0);
        CHECK_FALSE(b.try_get("q"));
        const auto s = b.queue_stats("q");
        CHECK(s.enqueued == 1);
        CHECK(s.delivered == 0);
        CHECK(s.dropped.expired == 1);
        CHECK(s.dropped.maxlen == 0);
        CHECK(s.dead_lettered.total() == 0);
        CHECK(s.ready == 0);
        CHECK(s.ready_bytes == 0);
        CHECK(s.accounted());
    }
    SECTION("and it is not delivered to a subscriber") {
        collected got;
        auto sub = b.subscribe("q", got.callback());
        time.advance(150ms);
        CHECK(b.dispatch() == 0);
        CHECK(got.bodies.empty());
        put(b, to("q", "fresh"));
        CHECK(b.dispatch() == 1);
        CHECK(got.bodies == strings{"fresh"});
        CHECK(b.queue_stats("q").dropped.expired == 1);
    }
}

TEMPLATE_TEST_CASE("ttl: x-message-ttl counts from when each message entered the queue (RabbitMQ ttl.html)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 100}});
    put(b, to("q", "a"));
    time.advance(40ms);
    put(b, to("q", "b"));
    time.advance(40ms);
    put(b, to("q", "c"));
    time.advance(20ms); // a: 100 ms old, b: 60, c: 20
    CHECK(b.message_count("q") == 2);
    time.advance(39ms); // b: 99 ms old
    CHECK(drain(b, "q") == strings{"b", "c"});
    CHECK(b.queue_stats("q").dropped.expired == 1);
}

TEMPLATE_TEST_CASE("ttl: a message routed to several queues dies in each by that queue's own TTL "
                   "(RabbitMQ ttl.html)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "short", {{"x-message-ttl", 10}});
    declare(b, "long", {{"x-message-ttl", 1000}});
    declare(b, "forever");
    for (const char* q : {"short", "long", "forever"}) b.bind_queue(q, "amq.fanout");
    REQUIRE(b.publish("amq.fanout", to("", "m")) == 3);
    time.advance(500ms);
    CHECK(drain(b, "short").empty());
    CHECK(b.message_count("long") == 1);
    time.advance(500ms);
    CHECK(drain(b, "long").empty());
    CHECK(drain(b, "forever") == strings{"m"});
    CHECK(b.queue_stats("short").dropped.expired == 1);
    CHECK(b.queue_stats("long").dropped.expired == 1);
    CHECK(b.queue_stats("forever").dropped.expired == 0);
}

// ---------------------------------------------------------------------------------------
// per-message TTL

TEMPLATE_TEST_CASE("ttl: the expiration property is a per-message TTL in milliseconds (RabbitMQ ttl.html)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q");
    put(b, to("q", "soon", "50"));
    put(b, to("q", "never"));

    SECTION("delivered before it expires, with the property as published") {
        time.advance(49ms);
        auto d = b.try_get("q");
        REQUIRE(d);
        CHECK(d->body() == "soon");
        CHECK(d->properties().expiration == std::optional<std::string>("50"));
    }
    SECTION("gone once it has") {
        time.advance(50ms);
        CHECK(drain(b, "q") == strings{"never"});
        const auto s = b.queue_stats("q");
        CHECK(s.dropped.expired == 1);
        CHECK(s.accounted());
    }
}

TEMPLATE_TEST_CASE("ttl: with x-message-ttl and expiration both set, the smaller TTL wins (RabbitMQ ttl.html)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    SECTION("the message's is smaller") {
        declare(b, "q", {{"x-message-ttl", 100}});
        put(b, to("q", "m", "30"));
        time.advance(29ms);
        CHECK(b.message_count("q") == 1);
        time.advance(1ms);
        CHECK(b.message_count("q") == 0);
    }
    SECTION("the queue's is smaller") {
        declare(b, "q", {{"x-message-ttl", 30}});
        put(b, to("q", "m", "100"));
        time.advance(29ms);
        CHECK(b.message_count("q") == 1);
        time.advance(1ms);
        CHECK(b.message_count("q") == 0);
    }
    CHECK(b.queue_stats("q").dropped.expired == 1);
}

TEMPLATE_TEST_CASE("ttl: expiration values RabbitMQ accepts", "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q");
    put(b, to("q", "plus", "+20"));         // string:to_integer takes a sign
    put(b, to("q", "zeros", "0020"));       // and leading zeros
    put(b, to("q", "ten-years", "315360000000")); // the longest TTL RabbitMQ takes
    time.advance(19ms);
    CHECK(b.message_count("q") == 3);
    time.advance(1ms);
    CHECK(drain(b, "q") == strings{"ten-years"});
    CHECK(b.queue_stats("q").dropped.expired == 2);
}

// ---------------------------------------------------------------------------------------
// TTL 0

TEMPLATE_TEST_CASE("ttl: TTL 0 expires a message no consumer took, even if the clock has not moved "
                   "(RabbitMQ ttl.html)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    SECTION("x-message-ttl 0") {
        declare(b, "q", {{"x-message-ttl", 0}});
        put(b, to("q", "m"));
    }
    SECTION("expiration \"0\"") {
        declare(b, "q");
        put(b, to("q", "m", "0"));
    }
    SECTION("expiration \"-0\"") {
        declare(b, "q");
        put(b, to("q", "m", "-0"));
    }
    CHECK(b.message_count("q") == 0);
    CHECK_FALSE(b.try_get("q"));
    const auto s = b.queue_stats("q");
    CHECK(s.enqueued == 1);
    CHECK(s.dropped.expired == 1);
    CHECK(s.accounted());
}

TEMPLATE_TEST_CASE("ttl: TTL 0 still reaches a consumer that can take the message at once (RabbitMQ ttl.html)",
                   "[ttl][.bug]", warren::broker, warren::concurrent_broker) {
    // ttl.html: "Setting the TTL to 0 causes messages to be expired upon reaching a queue
    // unless they can be delivered to a consumer immediately." RabbitMQ hands the message
    // to a waiting consumer on arrival (rabbit_amqqueue_process:attempt_delivery) before
    // TTL is looked at. warren delivers in dispatch(), which expires it first: with the
    // clock standing still the consumer never gets it.
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 0}});
    collected got;
    auto sub = b.subscribe("q", got.callback());
    put(b, to("q", "m"));
    CHECK(b.dispatch() == 1);
    CHECK(got.bodies == strings{"m"});
}

// ---------------------------------------------------------------------------------------
// expiry only at the head

TEMPLATE_TEST_CASE("ttl: per-message TTL expires only at the head: a longer-lived head shields an expired message "
                   "(RabbitMQ ttl.html caveats)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q");
    put(b, to("q", "long", "100"));
    put(b, to("q", "short", "10"));
    time.advance(50ms);
    // "short" has expired but waits behind "long": still counted, as in RabbitMQ.
    CHECK(b.expire() == 0);
    CHECK(b.message_count("q") == 2);
    CHECK(b.queue_stats("q").dropped.expired == 0);

    SECTION("taking the head lets it reach the head, where it expires unseen") {
        auto d = b.try_get("q");
        REQUIRE(d);
        CHECK(d->body() == "long");
        CHECK_FALSE(b.try_get("q"));
    }
    SECTION("a subscriber gets the head only") {
        collected got;
        auto sub = b.subscribe("q", got.callback());
        b.dispatch();
        CHECK(got.bodies == strings{"long"});
    }
    SECTION("once the head expires, the one behind goes with it") {
        time.advance(50ms);
        CHECK(b.expire() == 2);
        CHECK(b.message_count("q") == 0);
        CHECK(b.queue_stats("q").dropped.expired == 2);
    }
    const auto s = b.queue_stats("q");
    CHECK(s.ready == 0);
    CHECK(s.dropped.expired >= 1);
    CHECK(s.accounted());
}

TEMPLATE_TEST_CASE("ttl: in a priority queue only the overall head expires (rabbit_priority_queue:dropwhile)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-max-priority", 5}});
    warren::message high = to("q", "high", "100");
    high.properties.priority = 5;
    warren::message low = to("q", "low", "10");
    low.properties.priority = 1;
    put(b, std::move(low));
    put(b, std::move(high));
    time.advance(50ms);
    // "low" expired, but "high" is ahead of it: RabbitMQ drops from a lower priority only
    // once every higher one is empty.
    CHECK(b.message_count("q") == 2);
    auto d = b.try_get("q");
    REQUIRE(d);
    CHECK(d->body() == "high");
    CHECK(b.message_count("q") == 0); // now "low" is the head, and expired
    CHECK(b.queue_stats("q").dropped.expired == 1);
}

TEMPLATE_TEST_CASE("ttl: an expired head is removed before a publish is judged against the length limit", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    // RabbitMQ's TTL timer would have removed it by the time the next message arrives.
    warren::manual_clock time;
    TestType b(time);
    SECTION("drop-head: the expired head counts as expired, not as dropped for length") {
        declare(b, "q", {{"x-message-ttl", 10}, {"x-max-length", 1}});
        put(b, to("q", "old"));
        time.advance(10ms);
        put(b, to("q", "new"));
        const auto s = b.queue_stats("q");
        CHECK(s.dropped.expired == 1);
        CHECK(s.dropped.maxlen == 0);
    }
    SECTION("reject-publish: the new message is accepted") {
        declare(b, "q", {{"x-message-ttl", 10}, {"x-max-length", 1}, {"x-overflow", "reject-publish"}});
        put(b, to("q", "old"));
        time.advance(10ms);
        const warren::confirmation c = b.publish_confirmed("", to("q", "new"));
        CHECK(c.ack);
        CHECK(c.routed == 1);
        CHECK(c.refused == 0);
        CHECK(b.queue_stats("q").refused == 0);
    }
    CHECK(drain(b, "q") == strings{"new"});
    CHECK(b.queue_stats("q").accounted());
}

// ---------------------------------------------------------------------------------------
// requeued and unacknowledged messages

TEMPLATE_TEST_CASE("ttl: a requeued message keeps its original expiry (RabbitMQ ttl.html)", "[ttl]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 100}});
    put(b, to("q", "m"));
    time.advance(30ms);
    auto d = b.try_get("q", warren::ack_mode::manual);
    REQUIRE(d);

    SECTION("requeued after its TTL passed: expired, not redelivered") {
        time.advance(200ms);
        d->nack(false, true);
        CHECK_FALSE(b.try_get("q"));
        const auto s = b.queue_stats("q");
        CHECK(s.requeued == 1);
        CHECK(s.redelivered == 0);
        CHECK(s.dropped.expired == 1);
        CHECK(s.accounted());
    }
    SECTION("requeued before: redelivered, and still expires 100 ms after it first arrived") {
        time.advance(20ms); // 50 ms old
        d->reject(true);
        time.advance(49ms);
        CHECK(b.message_count("q") == 1);
        time.advance(1ms); // 100 ms since it was published, 50 since it was requeued
        CHECK(b.message_count("q") == 0);
        CHECK(b.queue_stats("q").dropped.expired == 1);
    }
}

TEMPLATE_TEST_CASE("ttl: messages a cancelled consumer returns keep their original expiry", "[ttl]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 100}});
    put(b, to("q", "a"));
    put(b, to("q", "b"));
    std::vector<typename TestType::delivery> held;
    auto sub = b.subscribe("q", [&](typename TestType::delivery& d) { held.push_back(std::move(d)); },
                           {.ack = warren::ack_mode::manual});
    CHECK(b.dispatch() == 2);
    REQUIRE(held.size() == 2);
    time.advance(100ms);
    held[1].ack();
    sub.release(); // "a" goes back to the queue, its TTL long passed
    CHECK_FALSE(b.try_get("q"));
    const auto s = b.queue_stats("q");
    CHECK(s.requeued == 1);
    CHECK(s.acked == 1);
    CHECK(s.dropped.expired == 1);
    CHECK(s.accounted());
}

TEMPLATE_TEST_CASE("ttl: unacknowledged messages never expire (RabbitMQ ttl.html)", "[ttl]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 10}});
    put(b, to("q", "got", "5"));
    put(b, to("q", "consumed"));
    auto got = b.try_get("q", warren::ack_mode::manual);
    REQUIRE(got);
    std::vector<typename TestType::delivery> held;
    auto sub = b.subscribe("q", [&](typename TestType::delivery& d) { held.push_back(std::move(d)); },
                           {.ack = warren::ack_mode::manual});
    CHECK(b.dispatch() == 1);
    REQUIRE(held.size() == 1);

    time.advance(1h);
    CHECK(b.expire() == 0);
    auto s = b.queue_stats("q");
    CHECK(s.unacked == 2);
    CHECK(s.dropped.expired == 0);
    CHECK(got->body() == "got");
    CHECK(held[0].body() == "consumed");
    got->ack();
    held[0].ack();
    s = b.queue_stats("q");
    CHECK(s.acked == 2);
    CHECK(s.unacked == 0);
    CHECK(s.dropped.expired == 0);
    CHECK(s.accounted());
}

TEMPLATE_TEST_CASE("ttl: messages waiting behind a consumer at its prefetch limit expire unseen", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 100}});
    std::vector<typename TestType::delivery> held;
    strings seen;
    auto sub = b.subscribe(
        "q",
        [&](typename TestType::delivery& d) {
            seen.push_back(d.body());
            held.push_back(std::move(d));
        },
        {.ack = warren::ack_mode::manual, .prefetch = 1});
    send(b, "q", {"a", "b", "c"});
    CHECK(b.dispatch() == 1);
    time.advance(60ms);
    send(b, "q", {"d"});
    time.advance(40ms); // b and c expired, d has 60 ms left
    REQUIRE(held.size() == 1);
    held.front().ack();
    CHECK(b.dispatch() == 1);
    CHECK(seen == strings{"a", "d"});
    const auto s = b.queue_stats("q");
    CHECK(s.dropped.expired == 2);
    CHECK(s.unacked == 1);
    CHECK(s.accounted());
}

// ---------------------------------------------------------------------------------------
// what becomes of expired messages

TEMPLATE_TEST_CASE("ttl: expired messages are dead-lettered with reason expired (RabbitMQ dlx.html)", "[ttl][dlx]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time(1'700'000'000);
    TestType b(time);
    b.declare_exchange("dlx", "fanout");
    declare(b, "dead");
    b.bind_queue("dead", "dlx");
    warren::message m = to("q", "m");
    m.properties.headers.set("origin", "test");

    SECTION("by x-message-ttl") {
        declare(b, "q", {{"x-message-ttl", 10}, {"x-dead-letter-exchange", "dlx"}});
        put(b, std::move(m));
        time.advance(2500ms);
        CHECK(b.expire() == 1);

        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(d->body() == "m");
        CHECK(d->exchange() == "dlx");
        CHECK(d->routing_key() == "q"); // the original key: no x-dead-letter-routing-key
        CHECK_FALSE(d->properties().expiration);
        const warren::properties& props = d->properties();
        CHECK(text_of(props.headers, "origin") == "test");
        CHECK(text_of(props.headers, "x-first-death-reason") == "expired");
        CHECK(text_of(props.headers, "x-first-death-queue") == "q");
        CHECK(text_of(props.headers, "x-first-death-exchange") == "");
        const warren::field_table& death = only_death(props);
        CHECK(death == warren::field_table{{"count", std::int64_t{1}},
                                           {"reason", "expired"},
                                           {"queue", "q"},
                                           {"time", std::int64_t{1'700'000'002}},
                                           {"exchange", ""},
                                           {"routing-keys", warren::field_array{warren::field_value("q")}}});
        CHECK_FALSE(death.contains("original-expiration")); // it had no expiration property
    }
    SECTION("by its expiration property: x-death keeps it as original-expiration, the property goes") {
        declare(b, "q", {{"x-dead-letter-exchange", "dlx"}});
        m.properties.expiration = "10";
        put(b, std::move(m));
        time.advance(10ms);
        CHECK(b.expire() == 1);

        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK_FALSE(d->properties().expiration);
        const warren::field_table& death = only_death(d->properties());
        CHECK(text_of(death, "original-expiration") == "10");
        CHECK(text_of(death, "reason") == "expired");
        CHECK(death.find("time") != nullptr);
        CHECK(*death.find("time") == warren::field_value(std::int64_t{1'700'000'000}));
    }
    SECTION("the dead letter does not expire again where it lands") {
        declare(b, "q", {{"x-dead-letter-exchange", "dlx"}});
        m.properties.expiration = "10";
        put(b, std::move(m));
        time.advance(10ms);
        b.expire();
        time.advance(24h);
        CHECK(drain(b, "dead") == strings{"m"});
        CHECK(b.queue_stats("dead").dropped.expired == 0);
    }

    const auto s = b.queue_stats("q");
    CHECK(s.dead_lettered.expired == 1);
    CHECK(s.dead_lettered.total() == 1);
    CHECK(s.dropped.total() == 0);
    CHECK(s.accounted());
    CHECK(b.exchange_stats("dlx").published == 1);
}

TEMPLATE_TEST_CASE("ttl: expired messages go out with x-dead-letter-routing-key, x-death keeps the original key "
                   "(RabbitMQ dlx.html)",
                   "[ttl][dlx]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_exchange("dlx", "direct");
    declare(b, "late");
    declare(b, "original-key");
    b.bind_queue("late", "dlx", "late");
    b.bind_queue("original-key", "dlx", "q");
    declare(b, "q",
            {{"x-message-ttl", 10}, {"x-dead-letter-exchange", "dlx"}, {"x-dead-letter-routing-key", "late"}});
    put(b, to("q", "a"));
    put(b, to("q", "b"));
    time.advance(10ms);
    CHECK(b.expire() == 2);
    CHECK(drain(b, "original-key").empty());
    std::vector<std::string> keys;
    strings bodies;
    while (auto d = b.try_get("late")) {
        bodies.push_back(d->body());
        keys.emplace_back(d->routing_key());
        const warren::field_value* rks = only_death(d->properties()).find("routing-keys");
        REQUIRE(rks != nullptr);
        CHECK(*rks == warren::field_value(warren::field_array{warren::field_value("q")}));
    }
    CHECK(bodies == strings{"a", "b"}); // in the order they died
    CHECK(keys == std::vector<std::string>{"late", "late"});
}

TEMPLATE_TEST_CASE("ttl: without a dead-letter exchange expired messages are dropped and counted", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 10}});
    send(b, "q", {"a", "b", "c"});
    time.advance(10ms);
    CHECK(b.expire() == 3);
    CHECK(b.expire() == 0); // nothing left to expire
    const auto s = b.queue_stats("q");
    CHECK(s.enqueued == 3);
    CHECK(s.dropped.expired == 3);
    CHECK(s.dead_lettered.total() == 0);
    CHECK(s.ready == 0);
    CHECK(s.accounted());
}

TEMPLATE_TEST_CASE("ttl: an expired message dead-lettered back to its own queue is dropped as a cycle "
                   "(RabbitMQ dlx.html)",
                   "[ttl][dlx]", warren::broker, warren::concurrent_broker) {
    // dlx.html: a queue that dead-letters to the default exchange without a dead-letter
    // routing key sends messages back to itself; with no rejection in the cycle they are
    // dropped.
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 10}, {"x-dead-letter-exchange", ""}});
    put(b, to("q", "m"));
    time.advance(10ms);
    CHECK(b.expire() == 1);
    CHECK(b.message_count("q") == 0);
    const auto s = b.queue_stats("q");
    CHECK(s.dead_lettered.expired == 1);
    CHECK(s.enqueued == 1);
    CHECK(s.accounted());
    CHECK(b.stats().dead_letter_cycles == 1);
    time.advance(1h);
    CHECK(b.expire() == 0);
}

// ---------------------------------------------------------------------------------------
// invalid expiration

TEMPLATE_TEST_CASE("ttl: an invalid expiration is refused at publish with 406 and goes nowhere (rabbit_channel)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q");
    b.declare_exchange("x", "fanout");
    b.bind_queue("q", "x");
    int returned = 0;
    b.set_return_handler([&](auto&) { ++returned; });

    struct refusal {
        std::string expiration;
        std::string error;
    };
    const std::vector<refusal> refusals{
        {"abc", "no_integer"},
        {"", "no_integer"},
        {" 5", "no_integer"},
        {"-", "no_integer"},
        {"10ms", "{leftover_string,\"ms\"}"},
        {"1.5", "{leftover_string,\".5\"}"},
        {"5 ", "{leftover_string,\" \"}"},
        {"-5", "{value_negative,-5}"},
        {"-007", "{value_negative,-7}"},
        {"315360000001", "{value_too_large,315360000001}"},
        {"99999999999999999999999", "{value_too_large,99999999999999999999999}"},
    };
    for (const auto& r : refusals) {
        INFO("expiration '" << r.expiration << "'");
        const std::string expected = "406 PRECONDITION_FAILED - invalid expiration '" + r.expiration + "': " + r.error;
        CHECK(error_of([&] { (void)b.publish("x", to("k", "m", r.expiration)); }) == expected);
        CHECK(error_of([&] { (void)b.publish_confirmed("x", to("k", "m", r.expiration), {.mandatory = true}); }) ==
              expected);
        // Checked before routing: an unroutable message is refused the same way, not returned.
        CHECK(error_of([&] { (void)b.publish("", to("nowhere", "m", r.expiration), {.mandatory = true}); }) ==
              expected);
    }
    CHECK(b.message_count("q") == 0);
    CHECK(b.queue_stats("q").enqueued == 0);
    CHECK(b.exchange_stats("x").published == 0);
    CHECK(b.exchange_stats("").published == 0);
    CHECK(returned == 0);
}

// ---------------------------------------------------------------------------------------
// applying time: broker.expire() and dispatch()

TEMPLATE_TEST_CASE("ttl: dispatch() applies time before it delivers", "[ttl]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 100}});
    declare(b, "p");
    put(b, to("q", "expires"));
    put(b, to("p", "stays", "100"));
    put(b, to("p", "goes", "50"));
    put(b, to("q", "later"));
    collected got;
    auto sub_q = b.subscribe("q", got.callback());
    time.advance(100ms);
    put(b, to("q", "new"));
    CHECK(b.dispatch() == 1);
    CHECK(got.bodies == strings{"new"});
    // "p" has no consumer: dispatch() expired its head anyway, as RabbitMQ's timer would.
    // "goes" is behind "stays", whose TTL has passed too.
    CHECK(b.queue_stats("p").dropped.expired == 2);
    CHECK(b.queue_stats("q").dropped.expired == 2);
}

TEMPLATE_TEST_CASE("ttl: broker.expire() returns how many messages expired across queues", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "a", {{"x-message-ttl", 10}});
    declare(b, "b", {{"x-message-ttl", 20}});
    declare(b, "c");
    send(b, "a", {"1", "2"});
    send(b, "b", {"3"});
    put(b, to("c", "4", "10"));
    put(b, to("c", "5"));
    CHECK(b.expire() == 0);
    time.advance(10ms);
    CHECK(b.expire() == 3);
    time.advance(10ms);
    CHECK(b.expire() == 1);
    CHECK(b.expire() == 0);
    CHECK(drain(b, "c") == strings{"5"});
}

// ---------------------------------------------------------------------------------------
// x-expires

TEMPLATE_TEST_CASE("ttl: x-expires deletes a queue left unused that long, not before (RabbitMQ ttl.html)", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-expires", 1000}});
    b.bind_queue("q", "amq.fanout");
    send(b, "q", {"a", "b"}); // publishing is not a use

    time.advance(999ms);
    SECTION("by broker.expire()") { CHECK(b.expire() == 0); }
    SECTION("by dispatch()") { CHECK(b.dispatch() == 0); }
    REQUIRE(b.has_queue("q"));
    CHECK(b.message_count("q") == 2);

    time.advance(1ms);
    b.dispatch();
    CHECK_FALSE(b.has_queue("q"));
    CHECK(error_of([&] { (void)b.message_count("q"); }) == "404 NOT_FOUND - no queue 'q'");
    // Its bindings went with it.
    CHECK(b.publish("amq.fanout", to("", "m")) == 0);
    CHECK(b.exchange_stats("amq.fanout").unroutable == 1);
    // The name is free again, for a new queue.
    declare(b, "q");
    CHECK(b.message_count("q") == 0);
}

TEMPLATE_TEST_CASE("ttl: x-expires only counts unused time: a get, a redeclare or a consumer is a use "
                   "(RabbitMQ ttl.html)",
                   "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-expires", 1000}});
    time.advance(600ms);

    SECTION("a basic.get, even of an empty queue") {
        CHECK_FALSE(b.try_get("q"));
        time.advance(999ms);
        b.expire();
        CHECK(b.has_queue("q"));
        time.advance(1ms);
        b.expire();
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("a redeclare") {
        declare(b, "q", {{"x-expires", 1000}});
        time.advance(999ms);
        b.expire();
        CHECK(b.has_queue("q"));
        time.advance(1ms);
        b.expire();
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("a consumer: never while it lasts, then counted from its cancel") {
        {
            collected got;
            auto sub = b.subscribe("q", got.callback());
            time.advance(1h);
            b.expire();
            CHECK(b.has_queue("q"));
            put(b, to("q", "m"));
            CHECK(b.dispatch() == 1);
        }
        time.advance(999ms);
        b.dispatch();
        CHECK(b.has_queue("q"));
        time.advance(1ms);
        b.dispatch();
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("not publishing, nor reading its counts") {
        put(b, to("q", "m"));
        CHECK(b.message_count("q") == 1);
        CHECK(b.queue_stats("q").ready == 1);
        time.advance(400ms);
        b.expire();
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("not an inequivalent redeclare, which is refused") {
        warren::queue_options other;
        other.arguments = {{"x-expires", 2000}};
        CHECK(error_of([&] { (void)b.declare_queue("q", other); }).starts_with("406 "));
        time.advance(400ms);
        b.expire();
        CHECK_FALSE(b.has_queue("q"));
    }
}

TEMPLATE_TEST_CASE("ttl: a queue deleted by x-expires drops its messages rather than dead-lettering them", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "dead");
    b.bind_queue("dead", "amq.fanout");
    declare(b, "q", {{"x-expires", 100}, {"x-dead-letter-exchange", "amq.fanout"}});
    send(b, "q", {"a", "b"});
    time.advance(100ms);
    b.expire();
    CHECK_FALSE(b.has_queue("q"));
    CHECK(b.message_count("dead") == 0);
}

TEMPLATE_TEST_CASE("ttl: x-message-ttl and x-expires together", "[ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 50}, {"x-expires", 100}});
    put(b, to("q", "a"));
    time.advance(50ms);
    CHECK(b.expire() == 1);
    CHECK(b.has_queue("q"));
    time.advance(50ms);
    CHECK(b.expire() == 0);
    CHECK_FALSE(b.has_queue("q"));
}

TEMPLATE_TEST_CASE("ttl: purge and delete find expired messages already gone (RabbitMQ ttl.html)", "[ttl]",
                   warren::broker, warren::concurrent_broker) {
    // RabbitMQ removes an expired head when its TTL passes, so queue.purge-ok and
    // queue.delete-ok count only the messages still alive, and if-empty holds for a queue
    // whose messages all expired.
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-message-ttl", 100}});
    send(b, "q", {"a", "b"});
    time.advance(50ms);
    send(b, "q", {"c"});
    time.advance(50ms); // a and b expired, c has 50 ms to go

    SECTION("purge") {
        CHECK(b.purge_queue("q") == 1);
        const auto s = b.queue_stats("q");
        CHECK(s.purged == 1);
        CHECK(s.dropped.expired == 2);
        CHECK(s.accounted());
    }
    SECTION("delete") {
        CHECK(b.delete_queue("q") == 1);
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("delete if empty, once the last one expired") {
        CHECK(error_of([&] { (void)b.delete_queue("q", {.if_empty = true}); }) ==
              "406 PRECONDITION_FAILED - queue 'q' not empty");
        time.advance(50ms);
        CHECK(b.delete_queue("q", {.if_empty = true}) == 0);
        CHECK_FALSE(b.has_queue("q"));
    }
}

TEMPLATE_TEST_CASE("ttl: purging a queue dead-letters its expired head first", "[ttl][dlx]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    declare(b, "dead");
    b.bind_queue("dead", "amq.fanout");
    declare(b, "q", {{"x-message-ttl", 10}, {"x-dead-letter-exchange", "amq.fanout"}});
    send(b, "q", {"a"});
    time.advance(10ms);
    CHECK(b.purge_queue("q") == 0);
    CHECK(drain(b, "dead") == strings{"a"});
    CHECK(b.queue_stats("q").dead_lettered.expired == 1);
}

TEMPLATE_TEST_CASE("ttl: a queue whose x-expires has passed is gone, even before expire() or dispatch() runs "
                   "(RabbitMQ ttl.html)",
                   "[ttl][.bug]", warren::broker, warren::concurrent_broker) {
    // RabbitMQ deletes the queue when its expiry timer fires. warren deletes it only in
    // expire()/dispatch(): until then it still takes publishes (lost when it is deleted,
    // where RabbitMQ would report them unroutable), and a get or a redeclare revives it.
    warren::manual_clock time;
    TestType b(time);
    declare(b, "q", {{"x-expires", 100}});
    time.advance(100ms);
    SECTION("publish") {
        CHECK(b.publish("", to("q", "m")) == 0);
    }
    SECTION("get") {
        CHECK(error_of([&] { (void)b.try_get("q"); }) == "404 NOT_FOUND - no queue 'q'");
    }
    SECTION("redeclare makes a new, empty queue") {
        put(b, to("q", "m"));
        declare(b, "q", {{"x-expires", 100}});
        CHECK(b.message_count("q") == 0);
    }
}

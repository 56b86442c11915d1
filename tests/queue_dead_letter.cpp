// Dead-lettering (x-dead-letter-exchange, x-dead-letter-routing-key): why messages die,
// the x-death header they carry, where they go and the cycles that are dropped, as
// RabbitMQ 3.10 defines them (dlx.html, rabbit_dead_letter).

#include <warren/broker.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
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

constexpr std::int64_t epoch = 1'700'000'000; // the manual clocks' unix_seconds() at time zero


std::string render(const warren::field_value& value);

/// A field table as text, fields in name order: {count: 1, queue: "q"}. Strings are
/// quoted and integers are not, so the text tells the types apart.
std::string render(const warren::field_table& table) {
    std::string out = "{";
    for (const auto& entry : table) {
        if (out.size() > 1) out += ", ";
        out += entry.name + ": " + render(entry.value);
    }
    return out + "}";
}

std::string render(const warren::field_value& value) {
    if (value.is_void()) return "void";
    if (const bool* b = value.get_if<bool>()) return *b ? "true" : "false";
    if (const std::int64_t* n = value.get_if<std::int64_t>()) return std::to_string(*n);
    if (const double* d = value.get_if<double>()) return std::to_string(*d);
    if (const std::string* s = value.get_if<std::string>()) return '"' + *s + '"';
    if (const warren::field_table* t = value.get_if<warren::field_table>()) return render(*t);
    std::string out = "[";
    for (const auto& item : *value.get_if<warren::field_array>()) {
        if (out.size() > 1) out += ", ";
        out += render(item);
    }
    return out + "]";
}

/// One x-death entry as render() prints it (fields in name order).
std::string death(std::string_view reason, std::string_view queue, std::string_view exchange, std::string_view key,
                  std::int64_t time, std::int64_t count = 1, std::optional<std::string> original_expiration = {}) {
    std::string out = "{count: " + std::to_string(count) + ", exchange: \"" + std::string(exchange) + "\"";
    if (original_expiration) out += ", original-expiration: \"" + *original_expiration + "\"";
    out += ", queue: \"" + std::string(queue) + "\", reason: \"" + std::string(reason) + "\", routing-keys: [\"" +
           std::string(key) + "\"], time: " + std::to_string(time) + "}";
    return out;
}

/// The x-first-death-* headers as render() prints them, after the x-death array.
std::string first_death(std::string_view reason, std::string_view queue, std::string_view exchange) {
    return "x-first-death-exchange: \"" + std::string(exchange) + "\", x-first-death-queue: \"" + std::string(queue) +
           "\", x-first-death-reason: \"" + std::string(reason) + "\"";
}

/// The x-death header of a delivery, rendered; "none" when it has none.
template <class Delivery>
std::string x_death(const Delivery& d) {
    const warren::field_value* deaths = d.properties().headers.find("x-death");
    return deaths == nullptr ? "none" : render(*deaths);
}

/// A fanout exchange `exchange` feeding a new queue `queue`.
template <class Broker>
void declare_sink(Broker& b, const std::string& exchange, const std::string& queue) {
    b.declare_exchange(exchange, "fanout");
    b.declare_queue(queue);
    b.bind_queue(queue, exchange);
}

/// Rejects (without requeue) the next message of `queue`, which must be `body`.
template <class Broker>
void reject_next(Broker& b, std::string_view queue, std::string_view body) {
    auto d = b.try_get(queue, manual);
    REQUIRE(d);
    CHECK(d->body() == body);
    d->reject(false);
}

} // namespace

// ---------------------------------------------------------------------------------------
// reasons

TEMPLATE_TEST_CASE("dead-lettering: a message rejected without requeue goes to the DLX with reason rejected (RabbitMQ dlx.html)",
                   "[dead-letter]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_exchange("work", "direct");
    declare_sink(b, "dlx", "dead");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
    b.bind_queue("q", "work", "task");
    typename TestType::message_type m{.routing_key = "task", .body = "m1"};
    m.properties.headers.set("app", "billing");
    m.properties.content_type = "text/plain";
    m.properties.priority = 3;
    REQUIRE(b.publish("work", m) == 1);
    m.body = "m2";
    REQUIRE(b.publish("work", m) == 1);

    auto d1 = b.try_get("q", manual);
    auto d2 = b.try_get("q", manual);
    REQUIRE(d1);
    REQUIRE(d2);
    SECTION("reject") {
        d1->reject(false);
        d2->reject(false);
    }
    SECTION("nack") {
        d1->nack(false, false);
        d2->nack(false, false);
    }
    SECTION("nack multiple") {
        d2->nack(true, false); // settles d1 too, in tag order
    }
    CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=2 dead_lettered.rejected=2");
    for (const char* body : {"m1", "m2"}) {
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(d->body() == body);
        CHECK(d->routing_key() == "task");
        CHECK(d->exchange() == "dlx");
        CHECK_FALSE(d->redelivered());
        CHECK(render(d->properties().headers) == "{app: \"billing\", x-death: [" +
                                                     death("rejected", "q", "work", "task", epoch) + "], " +
                                                     first_death("rejected", "q", "work") + "}");
        // The other properties travel unchanged.
        CHECK(d->properties().content_type == "text/plain");
        CHECK(d->properties().priority == std::optional<std::uint8_t>(3));
    }
    CHECK_FALSE(b.try_get("dead").has_value());
}

TEMPLATE_TEST_CASE("dead-lettering: a consumer callback that throws rejects its message to the DLX (RabbitMQ dlx.html)",
                   "[dead-letter]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    declare_sink(b, "dlx", "dead");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
    strings errors;
    b.set_error_handler([&](const warren::consumer_error& e) { errors.push_back(e.queue + ":" + e.consumer_tag); });
    auto fail = [](typename TestType::delivery&) { throw std::runtime_error("poison"); };
    send(b, "q", {"a"});

    SECTION("manual acknowledgement: the pending delivery is rejected") {
        auto sub = b.subscribe("q", fail, {.tag = "c1", .ack = manual});
        CHECK(b.dispatch() == 1);
        CHECK(errors == strings{"q:c1"});
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(d->body() == "a");
        CHECK(x_death(*d) == "[" + death("rejected", "q", "", "q", epoch) + "]");
        CHECK(counts(stats(b, "q")) == "enqueued=1 delivered=1 dead_lettered.rejected=1 consumers=1");
    }
    SECTION("automatic acknowledgement: the message was settled on delivery") {
        auto sub = b.subscribe("q", fail, {.tag = "c1"});
        CHECK(b.dispatch() == 1);
        CHECK(errors == strings{"q:c1"});
        CHECK(b.message_count("dead") == 0);
        CHECK(counts(stats(b, "q")) == "enqueued=1 delivered=1 acked=1 consumers=1");
    }
}

TEMPLATE_TEST_CASE("dead-lettering: an expired message goes to the DLX with reason expired (RabbitMQ dlx.html, ttl.html)",
                   "[dead-letter][ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    declare_sink(b, "dlx", "dead");

    SECTION("x-message-ttl") {
        b.declare_queue("q", with_args({{"x-message-ttl", 1500}, {"x-dead-letter-exchange", "dlx"}}));
        send(b, "q", {"a"});
        clock.advance(std::chrono::milliseconds(1499));
        CHECK(b.expire() == 0);
        CHECK(b.message_count("q") == 1);
        clock.advance(std::chrono::milliseconds(1));
        CHECK(b.expire() == 1);
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(d->body() == "a");
        CHECK(d->exchange() == "dlx");
        CHECK(render(d->properties().headers) ==
              "{x-death: [" + death("expired", "q", "", "q", epoch + 1) + "], " + first_death("expired", "q", "") + "}");
        CHECK_FALSE(d->properties().expiration.has_value());
        CHECK(counts(stats(b, "q")) == "enqueued=1 dead_lettered.expired=1");
    }
    SECTION("per-message expiration: kept in x-death as original-expiration, removed from the message") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
        auto m = to_queue<TestType>("q", "a");
        m.properties.expiration = "2500";
        REQUIRE(b.publish("", std::move(m)) == 1);
        clock.advance(std::chrono::milliseconds(2500));
        CHECK(b.dispatch() == 0); // dispatch() applies time first
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(x_death(*d) == "[" + death("expired", "q", "", "q", epoch + 2, 1, "2500") + "]");
        CHECK_FALSE(d->properties().expiration.has_value());
        CHECK(counts(stats(b, "q")) == "enqueued=1 dead_lettered.expired=1");
    }
    SECTION("an expiration is recorded whatever the reason (rabbit_dead_letter:per_msg_ttl_header)") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
        auto m = to_queue<TestType>("q", "a");
        m.properties.expiration = "60000";
        REQUIRE(b.publish("", std::move(m)) == 1);
        reject_next(b, "q", "a");
        // Without its expiration the dead letter does not expire in its new queue.
        clock.advance(std::chrono::hours(1));
        CHECK(b.message_count("dead") == 1);
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(x_death(*d) == "[" + death("rejected", "q", "", "q", epoch, 1, "60000") + "]");
        CHECK_FALSE(d->properties().expiration.has_value());
    }
}

TEMPLATE_TEST_CASE("dead-lettering: a message dropped at the length limit goes with reason maxlen (RabbitMQ dlx.html)",
                   "[dead-letter][maxlength]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    declare_sink(b, "dlx", "dead");
    b.declare_exchange("work", "direct");

    SECTION("drop-head: the head") {
        b.declare_queue("q", with_args({{"x-max-length", 1}, {"x-dead-letter-exchange", "dlx"}}));
        b.bind_queue("q", "work", "k");
        REQUIRE(b.publish("work", {.routing_key = "k", .body = "a"}) == 1);
        REQUIRE(b.publish("work", {.routing_key = "k", .body = "b"}) == 1);
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(d->body() == "a");
        CHECK(render(d->properties().headers) ==
              "{x-death: [" + death("maxlen", "q", "work", "k", epoch) + "], " + first_death("maxlen", "q", "work") + "}");
        CHECK(counts(stats(b, "q")) == "enqueued=2 dead_lettered.maxlen=1 ready=1 ready_bytes=1");
    }
    SECTION("reject-publish-dlx: the refused message") {
        b.declare_queue("q", with_args({{"x-max-length", 1},
                                        {"x-overflow", "reject-publish-dlx"},
                                        {"x-dead-letter-exchange", "dlx"}}));
        b.bind_queue("q", "work", "k");
        REQUIRE(b.publish("work", {.routing_key = "k", .body = "a"}) == 1);
        CHECK(b.publish("work", {.routing_key = "k", .body = "b"}) == 0);
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(d->body() == "b");
        CHECK(d->exchange() == "dlx");
        CHECK(render(d->properties().headers) ==
              "{x-death: [" + death("maxlen", "q", "work", "k", epoch) + "], " + first_death("maxlen", "q", "work") + "}");
        CHECK(counts(stats(b, "q")) == "enqueued=1 refused=1 ready=1 ready_bytes=1");
    }
}

// ---------------------------------------------------------------------------------------
// where dead letters go

TEMPLATE_TEST_CASE("dead-lettering: x-dead-letter-routing-key replaces the routing key, x-death keeps the original (RabbitMQ dlx.html)",
                   "[dead-letter]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_exchange("work", "direct");
    b.declare_exchange("dlx", "direct");
    b.declare_queue("by-dlrk");
    b.declare_queue("by-original");
    b.bind_queue("by-dlrk", "dlx", "errors");
    b.bind_queue("by-original", "dlx", "task");

    SECTION("with x-dead-letter-routing-key") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}, {"x-dead-letter-routing-key", "errors"}}));
        b.bind_queue("q", "work", "task");
        REQUIRE(b.publish("work", {.routing_key = "task", .body = "a"}) == 1);
        reject_next(b, "q", "a");
        CHECK(b.message_count("by-original") == 0);
        auto d = b.try_get("by-dlrk");
        REQUIRE(d);
        CHECK(d->routing_key() == "errors");
        CHECK(d->exchange() == "dlx");
        CHECK(x_death(*d) == "[" + death("rejected", "q", "work", "task", epoch) + "]");
    }
    SECTION("without: the original routing key") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
        b.bind_queue("q", "work", "task");
        REQUIRE(b.publish("work", {.routing_key = "task", .body = "a"}) == 1);
        reject_next(b, "q", "a");
        CHECK(b.message_count("by-dlrk") == 0);
        auto d = b.try_get("by-original");
        REQUIRE(d);
        CHECK(d->routing_key() == "task");
        CHECK(x_death(*d) == "[" + death("rejected", "q", "work", "task", epoch) + "]");
    }
}

TEMPLATE_TEST_CASE("dead-lettering: the default exchange as DLX routes to the queue the key names (RabbitMQ dlx.html)",
                   "[dead-letter]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_exchange("work", "direct");
    b.declare_queue("dead");
    std::string published_key;

    SECTION("named by x-dead-letter-routing-key") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "dead"}}));
        published_key = "task";
    }
    SECTION("named by the original routing key") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", ""}}));
        published_key = "dead";
    }
    b.bind_queue("q", "work", published_key);
    REQUIRE(b.publish("work", {.routing_key = published_key, .body = "a"}) == 1);
    reject_next(b, "q", "a");
    auto d = b.try_get("dead");
    REQUIRE(d);
    CHECK(d->body() == "a");
    CHECK(d->routing_key() == "dead");
    CHECK(d->exchange() == "");
    CHECK(render(d->properties().headers) == "{x-death: [" + death("rejected", "q", "work", published_key, epoch) +
                                                 "], " + first_death("rejected", "q", "work") + "}");
}

TEMPLATE_TEST_CASE("dead-lettering: a DLX that does not exist drops the message and counts it (RabbitMQ dlx.html)",
                   "[dead-letter]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "missing"}}));
    send(b, "q", {"a", "b"});
    reject_next(b, "q", "a");
    CHECK(b.stats().dead_letters_without_exchange == 1);
    CHECK(b.stats().dead_letter_cycles == 0);
    CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=1 dead_lettered.rejected=1 ready=1 ready_bytes=1");

    // The exchange is looked up when a message dies, so one declared later is used.
    declare_sink(b, "missing", "dead");
    reject_next(b, "q", "b");
    CHECK(b.stats().dead_letters_without_exchange == 1);
    CHECK(drain(b, "dead") == strings{"b"});
}

TEMPLATE_TEST_CASE("dead-lettering: a DLX that routes nowhere loses the message (RabbitMQ dlx.html)",
                   "[dead-letter]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("dlx", "direct");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
    send(b, "q", {"a"});
    reject_next(b, "q", "a");
    const warren::exchange_counters x = b.exchange_stats("dlx");
    CHECK(x.published == 1);
    CHECK(x.routed == 0);
    CHECK(x.unroutable == 1);
    CHECK(x.returned == 0); // dead letters are never mandatory
    CHECK(b.stats().dead_letters_without_exchange == 0);
    CHECK(counts(stats(b, "q")) == "enqueued=1 delivered=1 dead_lettered.rejected=1");
}

TEMPLATE_TEST_CASE("dead-lettering: a dead letter follows the DLX's alternate exchange and exchange bindings (rabbit_exchange:route)",
                   "[dead-letter][alternate]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    warren::exchange_options with_alternate;
    with_alternate.arguments.set("alternate-exchange", "ae");
    b.declare_exchange("dlx", "direct", with_alternate);
    declare_sink(b, "ae", "caught");
    b.declare_exchange("inner", "topic");
    b.declare_queue("matched");
    b.bind_queue("matched", "inner", "task.#");
    b.bind_exchange("inner", "dlx", "bound");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
    b.declare_exchange("work", "topic");
    b.bind_queue("q", "work", "#");

    SECTION("no binding of the DLX matches: its alternate exchange takes it") {
        REQUIRE(b.publish("work", {.routing_key = "task.a", .body = "a"}) == 1);
        reject_next(b, "q", "a");
        CHECK(b.message_count("matched") == 0);
        auto d = b.try_get("caught");
        REQUIRE(d);
        CHECK(d->exchange() == "dlx");
        CHECK(x_death(*d) == "[" + death("rejected", "q", "work", "task.a", epoch) + "]");
    }
    SECTION("through an exchange-to-exchange binding") {
        REQUIRE(b.publish("work", {.routing_key = "bound", .body = "a"}) == 1);
        reject_next(b, "q", "a");
        CHECK(b.message_count("caught") == 0);
        CHECK(b.message_count("matched") == 0); // "bound" does not match task.#
        b.unbind_exchange("inner", "dlx", "bound");
        b.bind_exchange("inner", "dlx", "task.b");
        REQUIRE(b.publish("work", {.routing_key = "task.b", .body = "b"}) == 1);
        reject_next(b, "q", "b");
        auto d = b.try_get("matched");
        REQUIRE(d);
        CHECK(d->exchange() == "dlx");
        CHECK(d->routing_key() == "task.b");
        CHECK(b.message_count("caught") == 0);
    }
}

TEMPLATE_TEST_CASE("dead-lettering: an internal exchange can be a DLX (RabbitMQ e2e.html, dlx.html)",
                   "[dead-letter]", warren::broker, warren::concurrent_broker) {
    // internal only keeps clients from publishing to it; the broker's dead letters may.
    TestType b;
    warren::exchange_options internal;
    internal.internal = true;
    b.declare_exchange("dlx", "fanout", internal);
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
    send(b, "q", {"a"});
    reject_next(b, "q", "a");
    CHECK(drain(b, "dead") == strings{"a"});
}

TEMPLATE_TEST_CASE("dead-lettering: a headers DLX can route on the death headers (RabbitMQ dlx.html)",
                   "[dead-letter][headers]", warren::broker, warren::concurrent_broker) {
    // The dead letter is routed with its new headers, so x-first-death-reason is matchable
    // (x- fields only count with all-with-x / any-with-x).
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_exchange("dlx", "headers");
    for (const char* reason : {"rejected", "expired", "maxlen"}) {
        b.declare_queue(reason);
        b.bind_queue(reason, "dlx", "", {{"x-match", "all-with-x"}, {"x-first-death-reason", reason}});
    }
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}, {"x-max-length", 2}, {"x-message-ttl", 1000}}));
    send(b, "q", {"a", "b", "c"}); // a: maxlen
    reject_next(b, "q", "b");
    clock.advance(std::chrono::seconds(1));
    CHECK(b.expire() == 1); // c
    CHECK(drain(b, "maxlen") == strings{"a"});
    CHECK(drain(b, "rejected") == strings{"b"});
    CHECK(drain(b, "expired") == strings{"c"});
}

// ---------------------------------------------------------------------------------------
// x-death

TEMPLATE_TEST_CASE("dead-lettering: a chain q1 -> q2 -> q3 records each death, newest first (RabbitMQ dlx.html)",
                   "[dead-letter][x-death]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_exchange("work", "direct");
    declare_sink(b, "dlx1", "q2-feed");
    b.declare_exchange("dlx2", "fanout");
    b.declare_queue("q1", with_args({{"x-dead-letter-exchange", "dlx1"}}));
    // q2 is fed by dlx1 and expires what it holds into dlx2.
    b.declare_queue("q2", with_args({{"x-message-ttl", 1000}, {"x-dead-letter-exchange", "dlx2"}}));
    b.bind_queue("q2", "dlx1");
    b.declare_queue("q3");
    b.bind_queue("q3", "dlx2");
    b.bind_queue("q1", "work", "k");
    REQUIRE(b.publish("work", {.routing_key = "k", .body = "a"}) == 1);

    reject_next(b, "q1", "a"); // at epoch
    CHECK(b.message_count("q2") == 1);
    clock.advance(std::chrono::seconds(2));
    CHECK(b.expire() == 1); // at epoch + 2
    auto d = b.try_get("q3");
    REQUIRE(d);
    CHECK(d->routing_key() == "k");
    CHECK(d->exchange() == "dlx2");
    CHECK(render(d->properties().headers) == "{x-death: [" + death("expired", "q2", "dlx1", "k", epoch + 2) + ", " +
                                                 death("rejected", "q1", "work", "k", epoch) + "], " +
                                                 first_death("rejected", "q1", "work") + "}");
    CHECK(b.stats().dead_letter_cycles == 0);
}

TEMPLATE_TEST_CASE("dead-lettering: a second death in a queue for the same reason counts and moves to the front (rabbit_dead_letter:update_x_death_header)",
                   "[dead-letter][x-death]", warren::broker, warren::concurrent_broker) {
    // The retry pattern: q rejects to a delay queue whose expired messages come back to q.
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_exchange("work", "direct");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "delay"}}));
    b.declare_queue("delay", with_args({{"x-message-ttl", 1000},
                                        {"x-dead-letter-exchange", ""},
                                        {"x-dead-letter-routing-key", "q"}}));
    b.bind_queue("q", "work", "task");
    REQUIRE(b.publish("work", {.routing_key = "task", .body = "a"}) == 1);
    const std::string first = first_death("rejected", "q", "work");

    reject_next(b, "q", "a"); // epoch
    clock.advance(std::chrono::seconds(1));
    CHECK(b.expire() == 1); // epoch + 1: back in q
    {
        auto d = b.try_get("q", manual);
        REQUIRE(d);
        CHECK(d->routing_key() == "q");
        CHECK(d->exchange() == "");
        CHECK(render(d->properties().headers) == "{x-death: [" + death("expired", "delay", "", "delay", epoch + 1) +
                                                     ", " + death("rejected", "q", "work", "task", epoch) + "], " +
                                                     first + "}");
        clock.advance(std::chrono::seconds(5));
        d->reject(false); // epoch + 6: q's entry counts 2, keeps its first time, exchange and keys
    }
    {
        auto d = b.try_get("delay");
        REQUIRE(d);
        CHECK(render(d->properties().headers) == "{x-death: [" + death("rejected", "q", "work", "task", epoch, 2) +
                                                     ", " + death("expired", "delay", "", "delay", epoch + 1) + "], " +
                                                     first + "}");
    }
    CHECK(b.stats().dead_letter_cycles == 0);
}

TEMPLATE_TEST_CASE("dead-lettering: the retry cycle counts every round (rabbit_dead_letter:update_x_death_header)",
                   "[dead-letter][x-death]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "delay"}}));
    b.declare_queue("delay", with_args({{"x-message-ttl", 1000},
                                        {"x-dead-letter-exchange", ""},
                                        {"x-dead-letter-routing-key", "q"}}));
    send(b, "q", {"a"});
    for (int round = 0; round < 3; ++round) {
        reject_next(b, "q", "a");
        clock.advance(std::chrono::seconds(1));
        REQUIRE(b.expire() == 1);
    }
    auto d = b.try_get("q");
    REQUIRE(d);
    CHECK(x_death(*d) == "[" + death("expired", "delay", "", "delay", epoch + 1, 3) + ", " +
                             death("rejected", "q", "", "q", epoch, 3) + "]");
    CHECK(counts(stats(b, "q")) == "enqueued=4 delivered=4 acked=1 dead_lettered.rejected=3");
    CHECK(counts(stats(b, "delay")) == "enqueued=3 dead_lettered.expired=3");
}

TEMPLATE_TEST_CASE("dead-lettering: a republished dead letter carries its x-death on (rabbit_dead_letter:update_x_death_header)",
                   "[dead-letter][x-death]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    declare_sink(b, "dlx", "dead");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
    send(b, "q", {"a"});
    reject_next(b, "q", "a");

    SECTION("a client sends the dead letter back with its headers: the same death counts 2") {
        auto d = b.try_get("dead");
        REQUIRE(d);
        warren::message again{.routing_key = "q", .body = d->body(), .properties = d->properties()};
        REQUIRE(b.publish("", std::move(again)) == 1);
        clock.advance(std::chrono::seconds(3));
        reject_next(b, "q", "a");
        auto twice = b.try_get("dead");
        REQUIRE(twice);
        CHECK(render(twice->properties().headers) == "{x-death: [" + death("rejected", "q", "", "q", epoch, 2) + "], " +
                                                         first_death("rejected", "q", "") + "}");
    }
    SECTION("an x-death that is not an array is replaced; the first-death headers are not added") {
        // update_x_death_header's InvalidType branch resets x-death only: x-first-death-*
        // are written when the message had no x-death at all.
        CHECK(drain(b, "dead") == strings{"a"});
        auto m = to_queue<TestType>("q", "b");
        m.properties.headers.set("x-death", "mangled by a client");
        m.properties.headers.set("x-first-death-queue", "elsewhere");
        REQUIRE(b.publish("", std::move(m)) == 1);
        reject_next(b, "q", "b");
        auto d = b.try_get("dead");
        REQUIRE(d);
        CHECK(render(d->properties().headers) ==
              "{x-death: [" + death("rejected", "q", "", "q", epoch) + "], x-first-death-queue: \"elsewhere\"}");
    }
}

// RabbitMQ 3.10's update_x_death_header first regroups the existing entries with
// group_by_queue_and_reason, whose foldl reverses them when there are two or more; the new
// entry then goes in front. So after deaths in q1, q2, q3 (in that order) x-death lists
// q3, q1, q2, and warren does the same.
TEMPLATE_TEST_CASE("dead-lettering: x-death order after three deaths is RabbitMQ 3.10's (rabbit_dead_letter:group_by_queue_and_reason)",
                   "[dead-letter][x-death]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_queue("q1", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "q2"}}));
    b.declare_queue("q2", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "q3"}}));
    b.declare_queue("q3", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "q4"}}));
    b.declare_queue("q4");
    send(b, "q1", {"a"});
    reject_next(b, "q1", "a");
    reject_next(b, "q2", "a");
    reject_next(b, "q3", "a");
    auto d = b.try_get("q4");
    REQUIRE(d);
    CHECK(x_death(*d) == "[" + death("rejected", "q3", "", "q3", epoch) + ", " +
                             death("rejected", "q1", "", "q1", epoch) + ", " +
                             death("rejected", "q2", "", "q2", epoch) + "]");
}

// The same regrouping decides cycles: is_cycle reads x-death in that order. After q1
// (expired) -> q2 (rejected) -> q3 (expired) the header is [q3, q1, q2], so the way back
// into q1 looks fully automatic ([q3, q1] has no rejection) and RabbitMQ 3.10 drops it,
// as warren does.
TEMPLATE_TEST_CASE("dead-lettering: a cycle is judged on x-death in RabbitMQ 3.10's order (rabbit_dead_letter:is_cycle)",
                   "[dead-letter][cycle]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_queue("q1", with_args({{"x-message-ttl", 100},
                                     {"x-dead-letter-exchange", ""},
                                     {"x-dead-letter-routing-key", "q2"}}));
    b.declare_queue("q2", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "q3"}}));
    b.declare_queue("q3", with_args({{"x-message-ttl", 100},
                                     {"x-dead-letter-exchange", ""},
                                     {"x-dead-letter-routing-key", "q1"}}));
    send(b, "q1", {"a"});
    clock.advance(std::chrono::milliseconds(100));
    CHECK(b.expire() == 1);
    reject_next(b, "q2", "a");
    clock.advance(std::chrono::milliseconds(100));
    CHECK(b.expire() == 1);
    CHECK(b.message_count("q1") == 0);
    CHECK(b.stats().dead_letter_cycles == 1);
}

// ---------------------------------------------------------------------------------------
// cycles

TEMPLATE_TEST_CASE("dead-lettering: a fully automatic cycle is dropped and counted (rabbit_dead_letter:is_cycle)",
                   "[dead-letter][cycle]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);

    SECTION("a queue dead-lettering expired messages to itself") {
        b.declare_queue("q", with_args({{"x-message-ttl", 100}, {"x-dead-letter-exchange", ""}}));
        send(b, "q", {"a"});
        clock.advance(std::chrono::milliseconds(100));
        CHECK(b.expire() == 1);
        CHECK(b.stats().dead_letter_cycles == 1);
        CHECK(counts(stats(b, "q")) == "enqueued=1 dead_lettered.expired=1");
    }
    SECTION("a queue dead-lettering messages over its length limit to itself") {
        b.declare_queue("q", with_args({{"x-max-length", 1}, {"x-dead-letter-exchange", ""}}));
        send(b, "q", {"a", "b"});
        CHECK(b.stats().dead_letter_cycles == 1);
        CHECK(drain(b, "q") == strings{"b"});
        CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=1 acked=1 dead_lettered.maxlen=1");
    }
    SECTION("reject-publish-dlx back to the same full queue") {
        b.declare_queue("q", with_args({{"x-max-length", 1},
                                        {"x-overflow", "reject-publish-dlx"},
                                        {"x-dead-letter-exchange", ""}}));
        send(b, "q", {"a"});
        CHECK_FALSE(b.publish_confirmed("", to_queue<TestType>("q", "b")).ack);
        CHECK(b.stats().dead_letter_cycles == 1);
        CHECK(counts(stats(b, "q")) == "enqueued=1 refused=1 ready=1 ready_bytes=1");
    }
    SECTION("two queues expiring into each other") {
        b.declare_queue("q1", with_args({{"x-message-ttl", 100},
                                         {"x-dead-letter-exchange", ""},
                                         {"x-dead-letter-routing-key", "q2"}}));
        b.declare_queue("q2", with_args({{"x-message-ttl", 100},
                                         {"x-dead-letter-exchange", ""},
                                         {"x-dead-letter-routing-key", "q1"}}));
        send(b, "q1", {"a"});
        clock.advance(std::chrono::milliseconds(100));
        CHECK(b.expire() == 1);
        CHECK(b.message_count("q2") == 1);
        CHECK(b.stats().dead_letter_cycles == 0);
        clock.advance(std::chrono::milliseconds(100));
        CHECK(b.expire() == 1); // q2 -> q1 would close the cycle q1 -> q2 -> q1
        CHECK(b.stats().dead_letter_cycles == 1);
        CHECK(b.message_count("q1") == 0);
        CHECK(counts(stats(b, "q1")) == "enqueued=1 dead_lettered.expired=1");
        CHECK(counts(stats(b, "q2")) == "enqueued=1 dead_lettered.expired=1");
    }
    SECTION("only the queue that closes the cycle is skipped") {
        b.declare_exchange("dlx", "fanout");
        b.declare_queue("q", with_args({{"x-message-ttl", 100}, {"x-dead-letter-exchange", "dlx"}}));
        b.declare_queue("dead");
        b.bind_queue("q", "dlx");
        b.bind_queue("dead", "dlx");
        send(b, "q", {"a"});
        clock.advance(std::chrono::milliseconds(100));
        CHECK(b.expire() == 1);
        CHECK(b.stats().dead_letter_cycles == 1);
        CHECK(drain(b, "dead") == strings{"a"});
        CHECK(b.message_count("q") == 0);
    }
}

TEMPLATE_TEST_CASE("dead-lettering: a cycle with a rejection in it is not dropped (rabbit_dead_letter:is_cycle)",
                   "[dead-letter][cycle]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);

    SECTION("a queue rejecting to itself") {
        b.declare_queue("q", with_args({{"x-dead-letter-exchange", ""}}));
        send(b, "q", {"a"});
        reject_next(b, "q", "a");
        reject_next(b, "q", "a");
        auto d = b.try_get("q");
        REQUIRE(d);
        CHECK(x_death(*d) == "[" + death("rejected", "q", "", "q", epoch, 2) + "]");
    }
    SECTION("a rejection, then an expiry back into the rejecting queue") {
        b.declare_queue("q1", with_args({{"x-dead-letter-exchange", ""}, {"x-dead-letter-routing-key", "q2"}}));
        b.declare_queue("q2", with_args({{"x-message-ttl", 100},
                                         {"x-dead-letter-exchange", ""},
                                         {"x-dead-letter-routing-key", "q1"}}));
        send(b, "q1", {"a"});
        reject_next(b, "q1", "a");
        clock.advance(std::chrono::milliseconds(100));
        CHECK(b.expire() == 1);
        // The cycle q1 -> q2 -> q1 went through a client: the message is back in q1.
        auto d = b.try_get("q1");
        REQUIRE(d);
        CHECK(x_death(*d) == "[" + death("expired", "q2", "", "q2", epoch) + ", " +
                                 death("rejected", "q1", "", "q1", epoch) + "]");
    }
    CHECK(b.stats().dead_letter_cycles == 0);
}

// ---------------------------------------------------------------------------------------
// accounting

TEMPLATE_TEST_CASE("dead-lettering: without a DLX a queue drops what dies, and counts it by reason",
                   "[dead-letter][stats]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock clock(epoch);
    TestType b(clock);
    b.declare_queue("q", with_args({{"x-max-length", 2}, {"x-message-ttl", 1000}}));
    send(b, "q", {"a", "b", "c"});       // a: maxlen
    reject_next(b, "q", "b");           // b: rejected
    clock.advance(std::chrono::seconds(1));
    CHECK(b.expire() == 1);             // c: expired
    CHECK(counts(stats(b, "q")) == "enqueued=3 delivered=1 dropped.expired=1 dropped.maxlen=1 dropped.rejected=1");

    // The same with a DLX: dead_lettered instead of dropped.
    declare_sink(b, "dlx", "dead");
    b.declare_queue("r", with_args({{"x-max-length", 2}, {"x-message-ttl", 1000}, {"x-dead-letter-exchange", "dlx"}}));
    send(b, "r", {"a", "b", "c"});
    reject_next(b, "r", "b");
    clock.advance(std::chrono::seconds(1));
    CHECK(b.expire() == 1);
    CHECK(counts(stats(b, "r")) ==
          "enqueued=3 delivered=1 dead_lettered.expired=1 dead_lettered.maxlen=1 dead_lettered.rejected=1");
    CHECK(drain(b, "dead") == strings{"a", "b", "c"});
    CHECK(counts(stats(b, "dead")) == "enqueued=3 delivered=3 acked=3");
}

// RabbitMQ bounces a rejected message between full reject-publish-dlx queues in the
// background until one has room (the first death was a rejection, so it is never a
// cycle); warren routes dead letters synchronously, so it ends the chain after
// max_dead_letter_hops and counts it, instead of looping forever.
TEMPLATE_TEST_CASE("dead-lettering: a rejected message bouncing between full reject-publish-dlx queues ends",
                   "[dead-letter][cycle]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q0", with_args({{"x-max-length", 0},
                                     {"x-overflow", "reject-publish-dlx"},
                                     {"x-dead-letter-exchange", ""},
                                     {"x-dead-letter-routing-key", "q2"}}));
    b.declare_queue("q2", with_args({{"x-max-length", 1},
                                     {"x-overflow", "reject-publish-dlx"},
                                     {"x-dead-letter-exchange", ""},
                                     {"x-dead-letter-routing-key", "q0"}}));
    send(b, "q2", {"m0"});
    auto held = b.try_get("q2", warren::ack_mode::manual);
    REQUIRE(held);
    send(b, "q2", {"m1"});
    held->reject(false); // m0 is refused by q0 and q2 in turn until the chain is cut
    CHECK(b.stats().dead_letter_cycles == 1);
    CHECK(drain(b, "q2") == strings{"m1"});
    CHECK(b.message_count("q0") == 0);
    CHECK(b.queue_stats("q2").accounted());
}

TEMPLATE_TEST_CASE("dead-lettering: x-death counts saturate at the largest integer instead of overflowing",
                   "[dead-letter][x-death]", warren::broker, warren::concurrent_broker) {
    constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
    constexpr std::int64_t min = std::numeric_limits<std::int64_t>::min();
    warren::manual_clock clock(epoch);
    TestType b(clock);
    declare_sink(b, "dlx", "dead");
    b.declare_queue("q", with_args({{"x-dead-letter-exchange", "dlx"}}));
    // A message that arrives with a history, as a client may set x-death itself.
    auto entry = [](std::int64_t count) {
        return warren::field_value(warren::field_table{{"queue", "q"},
                                                       {"reason", "rejected"},
                                                       {"count", count},
                                                       {"exchange", ""},
                                                       {"routing-keys", warren::field_array{"q"}},
                                                       {"time", std::int64_t{1}}});
    };
    auto count_after_rejecting = [&](warren::field_array history) {
        warren::message m{.routing_key = "q", .body = "m"};
        m.properties.headers.set("x-death", std::move(history));
        REQUIRE(b.publish("", std::move(m)) == 1);
        reject_next(b, "q", "m");
        auto d = b.try_get("dead");
        REQUIRE(d);
        const auto& deaths = *d->properties().headers.find("x-death")->template get_if<warren::field_array>();
        REQUIRE(deaths.size() == 1);
        return *deaths.front().template get_if<warren::field_table>()->find("count")->template get_if<std::int64_t>();
    };
    CHECK(count_after_rejecting({entry(max)}) == max);
    CHECK(count_after_rejecting({entry(max - 1)}) == max);
    CHECK(count_after_rejecting({entry(max), entry(max)}) == max); // entries of one queue and reason merge
    CHECK(count_after_rejecting({entry(1), entry(max)}) == max);
    CHECK(count_after_rejecting({entry(min), entry(min)}) == min + 1); // the sum saturates below too
    CHECK(count_after_rejecting({entry(5)}) == 6);
}

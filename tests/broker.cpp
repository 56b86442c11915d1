// Topology and publishing of basic_broker: exchanges, queues, bindings, the default
// exchange, exchange-to-exchange bindings, and the errors RabbitMQ gives for each.

#include <iterator>
#include <optional>
#include <set>
#include <string>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::drain;
using warren_test::error_of;
using warren_test::msg;
using warren_test::strings;

// ---------------------------------------------------------------------------------------
// declare_exchange

TEMPLATE_TEST_CASE("broker: declare_exchange declares each built-in type", "[broker][exchange]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    const auto q = b.declare_queue("q");

    // Each type is told apart by a message only it routes.
    SECTION("direct routes the exact key only") {
        b.declare_exchange("x", "direct");
        b.bind_queue(q, "x", "a.b");
        CHECK(b.publish("x", msg("a.b", "1")) == 1);
        CHECK(b.publish("x", msg("a.*", "2")) == 0);
        CHECK(b.publish("x", msg("a", "3")) == 0);
    }
    SECTION("fanout ignores the key") {
        b.declare_exchange("x", "fanout");
        b.bind_queue(q, "x", "a.b");
        CHECK(b.publish("x", msg("zzz", "1")) == 1);
        CHECK(b.publish("x", msg("", "2")) == 1);
        CHECK(drain(b, q) == strings{"1", "2"});
    }
    SECTION("topic matches patterns") {
        b.declare_exchange("x", "topic");
        b.bind_queue(q, "x", "a.*");
        CHECK(b.publish("x", msg("a.b", "1")) == 1);
        CHECK(b.publish("x", msg("a.b.c", "2")) == 0);
        CHECK(drain(b, q) == strings{"1"});
    }
    SECTION("headers matches the header table, not the key") {
        b.declare_exchange("x", "headers");
        b.bind_queue(q, "x", "", warren::field_table{{"format", "pdf"}});
        auto m = msg("anything", "1");
        m.properties.headers.set("format", "pdf");
        CHECK(b.publish("x", m) == 1);
        CHECK(b.publish("x", msg("anything", "2")) == 0);
        CHECK(drain(b, q) == strings{"1"});
    }
    CHECK(b.has_exchange("x"));
}

TEMPLATE_TEST_CASE("broker: redeclaring an exchange the same way does nothing", "[broker][exchange]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::exchange_options options;
    options.durable = true;
    options.arguments.set("x-note", "kept");
    b.declare_exchange("logs", "topic", options);
    const auto q = b.declare_queue("q");
    b.bind_queue(q, "logs", "kern.*");

    REQUIRE_NOTHROW(b.declare_exchange("logs", "topic", options));
    // Still the same exchange: its binding survived.
    CHECK(b.publish("logs", msg("kern.info", "m")) == 1);
    CHECK(drain(b, q) == strings{"m"});
}

TEMPLATE_TEST_CASE("broker: redeclaring an exchange differently is precondition_failed", "[broker][exchange]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("logs", "direct");
    const auto q = b.declare_queue("q");
    b.bind_queue(q, "logs", "k");
    warren::exchange_options other;

    SECTION("type") {
        CHECK(error_of([&] { b.declare_exchange("logs", "fanout"); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'logs': received 'fanout' but "
              "current is 'direct'");
    }
    SECTION("durable") {
        other.durable = true;
        CHECK(error_of([&] { b.declare_exchange("logs", "direct", other); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'logs': received 'true' but "
              "current is 'false'");
    }
    SECTION("auto_delete") {
        other.auto_delete = true;
        CHECK(error_of([&] { b.declare_exchange("logs", "direct", other); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange 'logs': received 'true' but "
              "current is 'false'");
    }
    SECTION("internal") {
        other.internal = true;
        CHECK(error_of([&] { b.declare_exchange("logs", "direct", other); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'internal' for exchange 'logs': received 'true' but "
              "current is 'false'");
    }
    SECTION("arguments RabbitMQ does not compare are accepted, as there") {
        other.arguments.set("x-note", 1);
        REQUIRE_NOTHROW(b.declare_exchange("logs", "direct", other));
    }
    // The refused redeclare changed nothing: still a direct exchange with its binding.
    CHECK(b.publish("logs", msg("k", "m")) == 1);
    CHECK(b.publish("logs", msg("other")) == 0);
    CHECK(drain(b, q) == strings{"m"});
}

TEMPLATE_TEST_CASE("broker: an unknown exchange type is command_invalid", "[broker][exchange]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    SECTION("for a new exchange") {
        CHECK(error_of([&] { b.declare_exchange("x", "x-nope"); }) ==
              "503 COMMAND_INVALID - unknown exchange type 'x-nope'");
        CHECK_FALSE(b.has_exchange("x"));
    }
    SECTION("for an existing exchange: RabbitMQ checks the type first") {
        b.declare_exchange("x", "direct");
        CHECK(error_of([&] { b.declare_exchange("x", "x-nope"); }) ==
              "503 COMMAND_INVALID - unknown exchange type 'x-nope'");
    }
    SECTION("type names are case-sensitive") {
        CHECK(error_of([&] { b.declare_exchange("x", "Direct"); }) ==
              "503 COMMAND_INVALID - unknown exchange type 'Direct'");
    }
}

TEMPLATE_TEST_CASE("broker: reserved and empty exchange names are access_refused", "[broker][exchange]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    SECTION("amq. prefix") {
        CHECK(error_of([&] { b.declare_exchange("amq.foo", "direct"); }) ==
              "403 ACCESS_REFUSED - exchange name 'amq.foo' contains reserved prefix 'amq.*'");
        CHECK_FALSE(b.has_exchange("amq.foo"));
    }
    SECTION("the default exchange") {
        CHECK(error_of([&] { b.declare_exchange("", "direct"); }) ==
              "403 ACCESS_REFUSED - operation not permitted on the default exchange");
    }
    SECTION("a prefix only counts with its dot") {
        REQUIRE_NOTHROW(b.declare_exchange("amqfoo", "direct"));
        CHECK(b.has_exchange("amqfoo"));
    }
    SECTION("an amq.* exchange that exists may be redeclared the way it is, as in RabbitMQ") {
        warren::exchange_options durable;
        durable.durable = true;
        REQUIRE_NOTHROW(b.declare_exchange("amq.topic", "topic", durable));
        CHECK(error_of([&] { b.declare_exchange("amq.topic", "topic"); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.topic': received 'false' "
              "but current is 'true'");
    }
}

TEMPLATE_TEST_CASE("broker: names and keys over 255 bytes are precondition_failed", "[broker]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    const std::string longest(255, 'n');
    const std::string too_long(256, 'n');
    SECTION("exchange name") {
        REQUIRE_NOTHROW(b.declare_exchange(longest, "fanout"));
        CHECK(b.has_exchange(longest));
        CHECK(error_of([&] { b.declare_exchange(too_long, "fanout"); }) ==
              "406 PRECONDITION_FAILED - exchange name of 256 bytes exceeds the limit of 255");
        CHECK_FALSE(b.has_exchange(too_long));
    }
    SECTION("queue name") {
        CHECK(b.declare_queue(longest) == longest);
        CHECK(error_of([&] { (void)b.declare_queue(too_long); }) ==
              "406 PRECONDITION_FAILED - queue name of 256 bytes exceeds the limit of 255");
        CHECK_FALSE(b.has_queue(too_long));
    }
    SECTION("binding key") {
        b.declare_exchange("x", "direct");
        const auto q = b.declare_queue("q");
        REQUIRE_NOTHROW(b.bind_queue(q, "x", longest));
        CHECK(error_of([&] { b.bind_queue(q, "x", too_long); }) ==
              "406 PRECONDITION_FAILED - binding key of 256 bytes exceeds the limit of 255");
        CHECK(b.publish("x", msg(longest)) == 1);
    }
}

TEMPLATE_TEST_CASE("broker: a short-string property over 255 bytes is precondition_failed, naming it", "[broker]",
                   warren::broker, warren::concurrent_broker) {
    // AMQP carries these properties as short strings: no client could send a longer one,
    // so a message that holds one is refused before it is routed.
    TestType b;
    const auto q = b.declare_queue("q");
    using property = std::optional<std::string> warren::properties::*;
    const std::pair<property, const char*> short_strings[] = {
        {&warren::properties::content_type, "content_type"}, {&warren::properties::content_encoding, "content_encoding"},
        {&warren::properties::correlation_id, "correlation_id"}, {&warren::properties::reply_to, "reply_to"},
        {&warren::properties::message_id, "message_id"},     {&warren::properties::type, "type"},
        {&warren::properties::user_id, "user_id"},           {&warren::properties::app_id, "app_id"}};
    for (const auto& [member, name] : short_strings) {
        CAPTURE(name);
        auto longest = msg(q);
        longest.properties.*member = std::string(255, 'p');
        CHECK(b.publish("", std::move(longest)) == 1);
        auto too_long = msg(q);
        too_long.properties.*member = std::string(256, 'p');
        CHECK(error_of([&] { (void)b.publish("", std::move(too_long)); }) ==
              std::string("406 PRECONDITION_FAILED - property ") + name + " of 256 bytes exceeds the limit of 255");
    }
    CHECK(b.message_count(q) == std::size(short_strings)); // the refused ones left no trace
}

TEMPLATE_TEST_CASE("broker: the amq.* exchanges are predeclared and route", "[broker][exchange]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    for (const char* name : {"amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"}) {
        CAPTURE(name);
        CHECK(b.has_exchange(name));
    }
    CHECK(b.has_exchange("")); // the default exchange, as a passive declare finds it
    const auto q = b.declare_queue("q");

    SECTION("amq.direct") {
        b.bind_queue(q, "amq.direct", "k");
        CHECK(b.publish("amq.direct", msg("k", "1")) == 1);
        CHECK(b.publish("amq.direct", msg("j", "2")) == 0);
        CHECK(drain(b, q) == strings{"1"});
    }
    SECTION("amq.fanout") {
        b.bind_queue(q, "amq.fanout");
        CHECK(b.publish("amq.fanout", msg("any", "1")) == 1);
        CHECK(drain(b, q) == strings{"1"});
    }
    SECTION("amq.topic") {
        b.bind_queue(q, "amq.topic", "a.#");
        CHECK(b.publish("amq.topic", msg("a.b.c", "1")) == 1);
        CHECK(b.publish("amq.topic", msg("b.a", "2")) == 0);
        CHECK(drain(b, q) == strings{"1"});
    }
    SECTION("amq.headers and amq.match are headers exchanges") {
        const std::string name = GENERATE(as<std::string>{}, "amq.headers", "amq.match");
        CAPTURE(name);
        b.bind_queue(q, name, "", warren::field_table{{"x-match", "any"}, {"a", 1}, {"b", 2}});
        auto m = msg("", "1");
        m.properties.headers.set("b", 2);
        CHECK(b.publish(name, m) == 1);
        CHECK(b.publish(name, msg("", "2")) == 0);
        CHECK(drain(b, q) == strings{"1"});
    }
    SECTION("they are durable and not internal") {
        warren::exchange_options durable;
        durable.durable = true;
        REQUIRE_NOTHROW(b.declare_exchange("amq.direct", "direct", durable));
        REQUIRE_NOTHROW(b.declare_exchange("amq.fanout", "fanout", durable));
        REQUIRE_NOTHROW(b.declare_exchange("amq.headers", "headers", durable));
        REQUIRE_NOTHROW(b.declare_exchange("amq.match", "headers", durable));
    }
}

TEMPLATE_TEST_CASE("broker: has_exchange follows declare and delete", "[broker][exchange]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    CHECK_FALSE(b.has_exchange("x"));
    b.declare_exchange("x", "fanout");
    CHECK(b.has_exchange("x"));
    CHECK_FALSE(b.has_exchange("X"));
    b.delete_exchange("x");
    CHECK_FALSE(b.has_exchange("x"));
    CHECK(error_of([&] { (void)b.publish("x", msg("")); }) == "404 NOT_FOUND - no exchange 'x'");
}

TEMPLATE_TEST_CASE("broker: delete_exchange", "[broker][exchange]", warren::broker, warren::concurrent_broker) {
    TestType b;
    SECTION("an unknown name does nothing") {
        REQUIRE_NOTHROW(b.delete_exchange("nope"));
        REQUIRE_NOTHROW(b.delete_exchange("nope", true));
        b.declare_exchange("x", "fanout");
        b.delete_exchange("x");
        REQUIRE_NOTHROW(b.delete_exchange("x")); // twice
    }
    SECTION("the default exchange is refused") {
        CHECK(error_of([&] { b.delete_exchange(""); }) ==
              "403 ACCESS_REFUSED - operation not permitted on the default exchange");
        CHECK(b.has_exchange(""));
    }
    SECTION("amq.* exchanges are refused, declared or not") {
        for (const char* name : {"amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"}) {
            CAPTURE(name);
            CHECK(error_of([&] { b.delete_exchange(name); }) ==
                  "403 ACCESS_REFUSED - deletion of system exchange '" + std::string(name) + "' not allowed");
            CHECK(b.has_exchange(name));
        }
        CHECK(error_of([&] { b.delete_exchange("amq.nope"); }) ==
              "403 ACCESS_REFUSED - deletion of system exchange 'amq.nope' not allowed");
    }
    SECTION("if_unused refuses while the exchange has bindings") {
        b.declare_exchange("x", "fanout");
        const auto q = b.declare_queue("q");
        b.bind_queue(q, "x");
        CHECK(error_of([&] { b.delete_exchange("x", true); }) == "406 PRECONDITION_FAILED - exchange 'x' in use");
        CHECK(b.has_exchange("x"));
        CHECK(b.publish("x", msg("", "still routed")) == 1);
        b.unbind_queue(q, "x");
        REQUIRE_NOTHROW(b.delete_exchange("x", true));
        CHECK_FALSE(b.has_exchange("x"));
    }
    SECTION("if_unused refuses while bound to another exchange as a source") {
        b.declare_exchange("x", "fanout");
        b.declare_exchange("y", "fanout");
        b.bind_exchange("y", "x");
        CHECK(error_of([&] { b.delete_exchange("x", true); }) == "406 PRECONDITION_FAILED - exchange 'x' in use");
        // Being a destination is not being used, as in RabbitMQ (has_for_source).
        REQUIRE_NOTHROW(b.delete_exchange("y", true));
        CHECK_FALSE(b.has_exchange("y"));
        REQUIRE_NOTHROW(b.delete_exchange("x", true)); // its only binding went with y
        CHECK_FALSE(b.has_exchange("x"));
    }
    SECTION("if_unused deletes an exchange that never had bindings") {
        b.declare_exchange("x", "topic");
        REQUIRE_NOTHROW(b.delete_exchange("x", true));
        CHECK_FALSE(b.has_exchange("x"));
    }
}

// ---------------------------------------------------------------------------------------
// declare_queue

TEMPLATE_TEST_CASE("broker: server-named queues are amq.gen-* and unique", "[broker][queue]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    std::set<std::string> names;
    for (int i = 0; i < 200; ++i) {
        const std::string name = b.declare_queue();
        CAPTURE(name);
        REQUIRE(name.size() == 30); // "amq.gen-" and 22 characters, as RabbitMQ's
        REQUIRE(name.rfind("amq.gen-", 0) == 0);
        REQUIRE(b.has_queue(name));
        names.insert(name);
    }
    CHECK(names.size() == 200);
    // A server-named queue may be redeclared by its name despite the amq. prefix.
    const std::string first = *names.begin();
    CHECK(b.declare_queue(first) == first);
    // A second broker does not hand out the same names (they are seeded per broker).
    TestType other;
    CHECK_FALSE(names.contains(other.declare_queue()));
}

TEMPLATE_TEST_CASE("broker: redeclaring a queue the same way returns its name and keeps it", "[broker][queue]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::queue_options options;
    options.durable = true;
    options.arguments.set("x-queue-type", "classic");
    CHECK(b.declare_queue("jobs", options) == "jobs");
    CHECK(b.publish("", msg("jobs", "kept")) == 1);
    CHECK(b.declare_queue("jobs", options) == "jobs");
    CHECK(b.message_count("jobs") == 1);
    CHECK(drain(b, "jobs") == strings{"kept"});
}

TEMPLATE_TEST_CASE("broker: redeclaring a queue differently is precondition_failed", "[broker][queue]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    CHECK(b.publish("", msg("q", "m")) == 1);
    warren::queue_options other;
    SECTION("durable") {
        other.durable = true;
        CHECK(error_of([&] { (void)b.declare_queue("q", other); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q': received 'true' but current is "
              "'false'");
    }
    SECTION("exclusive") {
        other.exclusive = true;
        CHECK(error_of([&] { (void)b.declare_queue("q", other); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'exclusive' for queue 'q': received 'true' but current "
              "is 'false'");
    }
    SECTION("auto_delete") {
        other.auto_delete = true;
        CHECK(error_of([&] { (void)b.declare_queue("q", other); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'auto_delete' for queue 'q': received 'true' but current "
              "is 'false'");
    }
    SECTION("arguments that change behaviour, named in the message") {
        other.arguments.set("x-max-length", 10);
        CHECK(error_of([&] { (void)b.declare_queue("q", other); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue 'q': received '10' but "
              "current is none");
    }
    SECTION("other arguments are accepted, as in RabbitMQ") {
        other.arguments.set("x-note", "anything");
        CHECK(b.declare_queue("q", other) == "q");
    }
    // Nothing changed: the message is still there.
    CHECK(b.message_count("q") == 1);
}

TEMPLATE_TEST_CASE("broker: queue names with the amq. prefix are access_refused", "[broker][queue]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    CHECK(error_of([&] { (void)b.declare_queue("amq.x"); }) ==
          "403 ACCESS_REFUSED - queue name 'amq.x' contains reserved prefix 'amq.*'");
    CHECK_FALSE(b.has_queue("amq.x"));
    CHECK(b.declare_queue("amqx") == "amqx");
}

TEMPLATE_TEST_CASE("broker: x-queue-type and unknown queue arguments are accepted", "[broker][queue]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::queue_options options;
    options.arguments.set("x-queue-type", "classic");
    options.arguments.set("x-custom", "kept");
    CHECK(b.declare_queue("q", options) == "q");
    CHECK(b.has_queue("q"));
    CHECK(b.publish("", msg("q", "m")) == 1);
    CHECK(drain(b, "q") == strings{"m"});
}

TEMPLATE_TEST_CASE("broker: delete_queue", "[broker][queue]", warren::broker, warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    for (const char* body : {"1", "2", "3"}) REQUIRE(b.publish("", msg("q", body)) == 1);

    SECTION("returns the number of ready messages dropped") {
        auto unacked = b.try_get("q", warren::ack_mode::manual); // not ready: not counted
        REQUIRE(unacked);
        CHECK(b.delete_queue("q") == 2);
        CHECK_FALSE(b.has_queue("q"));
        CHECK(error_of([&] { (void)b.message_count("q"); }) == "404 NOT_FOUND - no queue 'q'");
        CHECK(b.publish("", msg("q")) == 0);
    }
    SECTION("is idempotent for unknown names") {
        CHECK(b.delete_queue("nope") == 0);
        CHECK(b.delete_queue("q") == 3);
        CHECK(b.delete_queue("q") == 0);
    }
    SECTION("if_unused refuses while the queue has consumers") {
        auto sub = b.subscribe("q", [](auto&) {});
        warren::queue_delete_options options;
        options.if_unused = true;
        CHECK(error_of([&] { (void)b.delete_queue("q", options); }) == "406 PRECONDITION_FAILED - queue 'q' in use");
        CHECK(b.has_queue("q"));
        CHECK(b.message_count("q") == 3);
        sub.release();
        CHECK(b.delete_queue("q", options) == 3);
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("if_empty refuses while the queue has ready messages") {
        warren::queue_delete_options options;
        options.if_empty = true;
        CHECK(error_of([&] { (void)b.delete_queue("q", options); }) ==
              "406 PRECONDITION_FAILED - queue 'q' not empty");
        CHECK(b.message_count("q") == 3);
        CHECK(b.purge_queue("q") == 3);
        CHECK(b.delete_queue("q", options) == 0);
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("a queue of the same name declared again starts empty") {
        CHECK(b.delete_queue("q") == 3);
        CHECK(b.declare_queue("q") == "q");
        CHECK(b.message_count("q") == 0);
        CHECK_FALSE(b.try_get("q"));
    }
}

TEMPLATE_TEST_CASE("broker: purge_queue drops ready messages", "[broker][queue]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    CHECK(b.purge_queue("q") == 0);
    for (const char* body : {"1", "2"}) REQUIRE(b.publish("", msg("q", body)) == 1);
    CHECK(b.purge_queue("q") == 2);
    CHECK(b.message_count("q") == 0);
    CHECK(b.queue_stats("q").purged == 2);
    CHECK(b.publish("", msg("q", "after")) == 1);
    CHECK(drain(b, "q") == strings{"after"});
    CHECK(error_of([&] { (void)b.purge_queue("nope"); }) == "404 NOT_FOUND - no queue 'nope'");
}

TEMPLATE_TEST_CASE("broker: queue observers on an unknown queue are not_found", "[broker][queue]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    CHECK_FALSE(b.has_queue("nope"));
    CHECK(error_of([&] { (void)b.message_count("nope"); }) == "404 NOT_FOUND - no queue 'nope'");
    CHECK(error_of([&] { (void)b.consumer_count("nope"); }) == "404 NOT_FOUND - no queue 'nope'");
    CHECK(error_of([&] { (void)b.queue_stats("nope"); }) == "404 NOT_FOUND - no queue 'nope'");
    CHECK(error_of([&] { (void)b.try_get("nope"); }) == "404 NOT_FOUND - no queue 'nope'");
    (void)b.declare_queue("q");
    CHECK(b.has_queue("q"));
    CHECK_FALSE(b.has_queue("Q"));
    CHECK(b.message_count("q") == 0);
    CHECK(b.consumer_count("q") == 0);
}

// ---------------------------------------------------------------------------------------
// bindings

TEMPLATE_TEST_CASE("broker: binding errors", "[broker][binding]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    (void)b.declare_queue("q");
    SECTION("an unknown exchange is not_found, reported before an unknown queue") {
        CHECK(error_of([&] { b.bind_queue("q", "nox"); }) == "404 NOT_FOUND - no exchange 'nox'");
        CHECK(error_of([&] { b.bind_queue("noq", "nox"); }) == "404 NOT_FOUND - no exchange 'nox'");
        CHECK(error_of([&] { b.unbind_queue("noq", "nox"); }) == "404 NOT_FOUND - no exchange 'nox'");
    }
    SECTION("an unknown queue is not_found") {
        CHECK(error_of([&] { b.bind_queue("noq", "x"); }) == "404 NOT_FOUND - no queue 'noq'");
        CHECK(error_of([&] { b.unbind_queue("noq", "x"); }) == "404 NOT_FOUND - no queue 'noq'");
    }
    SECTION("the default exchange is access_refused, before names are looked up") {
        CHECK(error_of([&] { b.bind_queue("q", "", "q"); }) ==
              "403 ACCESS_REFUSED - operation not permitted on the default exchange");
        CHECK(error_of([&] { b.unbind_queue("q", "", "q"); }) ==
              "403 ACCESS_REFUSED - operation not permitted on the default exchange");
        CHECK(error_of([&] { b.bind_queue("noq", ""); }) ==
              "403 ACCESS_REFUSED - operation not permitted on the default exchange");
        // The default exchange still routes by queue name.
        CHECK(b.publish("", msg("q")) == 1);
    }
    SECTION("bad headers arguments are refused and bind nothing") {
        b.declare_exchange("h", "headers");
        CHECK(error_of([&] { b.bind_queue("q", "h", "", warren::field_table{{"x-match", "some"}}); }) ==
              "406 PRECONDITION_FAILED - invalid x-match field value 'some'; expected all, any, all-with-x or "
              "any-with-x");
        CHECK(b.publish("h", msg("")) == 0);
        // Not even a phantom binding that would keep if_unused from deleting it.
        REQUIRE_NOTHROW(b.delete_exchange("h", true));
    }
}

TEMPLATE_TEST_CASE("broker: the same binding twice is one binding", "[broker][binding]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    (void)b.declare_queue("q");
    b.bind_queue("q", "x", "k");
    b.bind_queue("q", "x", "k");
    CHECK(b.publish("x", msg("k", "once")) == 1);
    CHECK(drain(b, "q") == strings{"once"});
    // One unbind removes it: there was only one.
    b.unbind_queue("q", "x", "k");
    CHECK(b.publish("x", msg("k")) == 0);

    SECTION("other arguments make another binding, still one copy per queue") {
        b.bind_queue("q", "x", "k");
        b.bind_queue("q", "x", "k", warren::field_table{{"tag", 1}});
        CHECK(b.publish("x", msg("k", "one")) == 1);
        CHECK(drain(b, "q") == strings{"one"});
        b.unbind_queue("q", "x", "k");
        CHECK(b.publish("x", msg("k", "two")) == 1); // the binding with arguments is left
        b.unbind_queue("q", "x", "k", warren::field_table{{"tag", 1}});
        CHECK(b.publish("x", msg("k", "three")) == 0);
        CHECK(drain(b, "q") == strings{"two"});
    }
    SECTION("several matching keys deliver one copy") {
        b.declare_exchange("t", "topic");
        b.bind_queue("q", "t", "a.*");
        b.bind_queue("q", "t", "#");
        b.bind_queue("q", "t", "a.b");
        CHECK(b.publish("t", msg("a.b", "m")) == 1);
        CHECK(drain(b, "q") == strings{"m"});
    }
}

TEMPLATE_TEST_CASE("broker: unbinding a binding that does not exist does nothing", "[broker][binding]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    (void)b.declare_queue("q");
    b.bind_queue("q", "x", "k");
    REQUIRE_NOTHROW(b.unbind_queue("q", "x", "other"));
    REQUIRE_NOTHROW(b.unbind_queue("q", "x", "k", warren::field_table{{"a", 1}}));
    (void)b.declare_queue("q2");
    REQUIRE_NOTHROW(b.unbind_queue("q2", "x", "k"));
    CHECK(b.publish("x", msg("k", "m")) == 1); // the real binding is untouched
    CHECK(drain(b, "q") == strings{"m"});
    b.unbind_queue("q", "x", "k");
    REQUIRE_NOTHROW(b.unbind_queue("q", "x", "k"));
    CHECK(b.publish("x", msg("k")) == 0);
}

TEMPLATE_TEST_CASE("broker: deleting a queue removes its bindings", "[broker][binding]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "fanout");
    b.declare_exchange("t", "topic");
    (void)b.declare_queue("q");
    (void)b.declare_queue("other");
    b.bind_queue("q", "x");
    b.bind_queue("q", "t", "#");
    b.bind_queue("other", "x");
    CHECK(b.publish("x", msg("")) == 2);
    CHECK(b.delete_queue("q") == 1);

    (void)b.declare_queue("q"); // same name, a new queue: not bound
    CHECK(b.publish("x", msg("", "x")) == 1);
    CHECK(b.publish("t", msg("a", "t")) == 0);
    CHECK(b.message_count("q") == 0);
    CHECK(drain(b, "other") == strings{"", "x"});
    // The exchanges have no bindings left to q, so if_unused sees t unused.
    REQUIRE_NOTHROW(b.delete_exchange("t", true));
}

TEMPLATE_TEST_CASE("broker: deleting an exchange removes its bindings", "[broker][binding]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "fanout");
    (void)b.declare_queue("q");
    b.bind_queue("q", "x");
    b.delete_exchange("x");
    CHECK(b.has_queue("q")); // queues outlive the exchanges they were bound to
    b.declare_exchange("x", "fanout");
    CHECK(b.publish("x", msg("")) == 0);
    // Unbinding what the old exchange had is a no-op now.
    REQUIRE_NOTHROW(b.unbind_queue("q", "x"));
    b.bind_queue("q", "x");
    CHECK(b.publish("x", msg("", "m")) == 1);
    CHECK(drain(b, "q") == strings{"m"});
}

TEMPLATE_TEST_CASE("broker: an auto_delete exchange goes with its last binding", "[broker][binding]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::exchange_options options;
    options.auto_delete = true;
    b.declare_exchange("x", "direct", options);
    (void)b.declare_queue("q1");
    (void)b.declare_queue("q2");
    CHECK(b.has_exchange("x")); // never bound: it stays

    SECTION("unbinding the last binding") {
        b.bind_queue("q1", "x", "a");
        b.bind_queue("q2", "x", "b");
        b.unbind_queue("q1", "x", "a");
        CHECK(b.has_exchange("x"));
        CHECK(b.publish("x", msg("b")) == 1);
        b.unbind_queue("q2", "x", "b");
        CHECK_FALSE(b.has_exchange("x"));
        CHECK(error_of([&] { (void)b.publish("x", msg("b")); }) == "404 NOT_FOUND - no exchange 'x'");
    }
    SECTION("deleting the bound queues") {
        b.bind_queue("q1", "x", "a");
        b.bind_queue("q1", "x", "b");
        b.bind_queue("q2", "x", "b");
        (void)b.delete_queue("q2");
        CHECK(b.has_exchange("x"));
        (void)b.delete_queue("q1");
        CHECK_FALSE(b.has_exchange("x"));
    }
    SECTION("unbinding or deleting the destination exchange") {
        b.declare_exchange("y", "fanout");
        b.bind_exchange("y", "x", "k");
        b.bind_queue("q1", "y");
        CHECK(b.publish("x", msg("k")) == 1);
        b.delete_exchange("y");
        CHECK_FALSE(b.has_exchange("x"));
    }
    SECTION("deletion cascades along exchange-to-exchange bindings") {
        b.declare_exchange("top", "fanout", options);
        b.declare_exchange("keep", "fanout");
        b.bind_exchange("x", "top");
        b.bind_exchange("x", "keep");
        b.bind_queue("q1", "x", "k");
        CHECK(b.publish("top", msg("k")) == 1);
        (void)b.delete_queue("q1");
        CHECK_FALSE(b.has_exchange("x"));
        CHECK_FALSE(b.has_exchange("top")); // its only binding led to x
        CHECK(b.has_exchange("keep"));      // not auto_delete
        CHECK(b.publish("keep", msg("k")) == 0);
    }
    SECTION("an auto_delete queue losing its last consumer takes the exchange along") {
        warren::queue_options auto_queue;
        auto_queue.auto_delete = true;
        (void)b.declare_queue("temp", auto_queue);
        b.bind_queue("temp", "x", "k");
        {
            auto sub = b.subscribe("temp", [](auto&) {});
            CHECK(b.publish("x", msg("k")) == 1);
        }
        CHECK_FALSE(b.has_queue("temp"));
        CHECK_FALSE(b.has_exchange("x"));
    }
    SECTION("it can be declared again afterwards") {
        b.bind_queue("q1", "x", "a");
        b.unbind_queue("q1", "x", "a");
        REQUIRE_FALSE(b.has_exchange("x"));
        b.declare_exchange("x", "topic", options);
        CHECK(b.has_exchange("x"));
        b.bind_queue("q1", "x", "#");
        CHECK(b.publish("x", msg("any.key")) == 1);
    }
}

// ---------------------------------------------------------------------------------------
// the default exchange and publish

TEMPLATE_TEST_CASE("broker: the default exchange routes to the queue named by the key", "[broker][publish]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("a");
    (void)b.declare_queue("b");
    const auto generated = b.declare_queue();
    CHECK(b.publish("", msg("a", "to a")) == 1);
    CHECK(b.publish("", msg(generated, "to gen")) == 1);
    CHECK(b.publish("", msg("nope", "lost")) == 0);
    CHECK(b.publish("", msg("", "lost")) == 0);
    CHECK(b.publish("", msg("A", "lost")) == 0);
    CHECK(drain(b, "a") == strings{"to a"});
    CHECK(drain(b, "b").empty());
    auto d = b.try_get(generated);
    REQUIRE(d);
    CHECK(d->body() == "to gen");
    CHECK(d->exchange().empty());
    CHECK(d->routing_key() == generated);
}

TEMPLATE_TEST_CASE("broker: publish returns the number of queues reached", "[broker][publish]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "topic");
    for (const char* q : {"q1", "q2", "q3"}) (void)b.declare_queue(q);
    b.bind_queue("q1", "x", "a.*");
    b.bind_queue("q2", "x", "*.b");
    b.bind_queue("q3", "x", "#");
    CHECK(b.publish("x", msg("a.b", "1")) == 3);
    CHECK(b.publish("x", msg("a.c", "2")) == 2);
    CHECK(b.publish("x", msg("c", "3")) == 1);
    b.unbind_queue("q3", "x", "#");
    CHECK(b.publish("x", msg("c", "4")) == 0);
    CHECK(drain(b, "q1") == strings{"1", "2"});
    CHECK(drain(b, "q2") == strings{"1"});
    CHECK(drain(b, "q3") == strings{"1", "2", "3"});
}

TEMPLATE_TEST_CASE("broker: publish errors", "[broker][publish]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "fanout");
    (void)b.declare_queue("q");
    b.bind_queue("q", "x");
    SECTION("unknown exchange") {
        CHECK(error_of([&] { (void)b.publish("logs", msg("k")); }) == "404 NOT_FOUND - no exchange 'logs'");
    }
    SECTION("a routing key of 256 bytes") {
        CHECK(b.publish("x", msg(std::string(255, 'k'), "ok")) == 1);
        CHECK(error_of([&] { (void)b.publish("x", msg(std::string(256, 'k'), "refused")); }) ==
              "406 PRECONDITION_FAILED - routing key of 256 bytes exceeds the limit of 255");
        CHECK(error_of([&] { (void)b.publish("", msg(std::string(256, 'k'))); }) ==
              "406 PRECONDITION_FAILED - routing key of 256 bytes exceeds the limit of 255");
        CHECK(drain(b, "q") == strings{"ok"});
    }
    SECTION("an internal exchange, directly") {
        warren::exchange_options internal;
        internal.internal = true;
        b.declare_exchange("inner", "fanout", internal);
        b.bind_queue("q", "inner");
        CHECK(error_of([&] { (void)b.publish("inner", msg("k", "refused")); }) ==
              "403 ACCESS_REFUSED - cannot publish to internal exchange 'inner'");
        CHECK(b.message_count("q") == 0);
        SECTION("but it is reachable through an exchange-to-exchange binding") {
            b.unbind_queue("q", "x");
            b.bind_exchange("inner", "x");
            CHECK(b.publish("x", msg("k", "via x")) == 1);
            CHECK(drain(b, "q") == strings{"via x"});
        }
    }
}

// ---------------------------------------------------------------------------------------
// exchange-to-exchange bindings

TEMPLATE_TEST_CASE("broker: exchange-to-exchange bindings chain", "[broker][e2e]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("fan", "fanout");
    b.declare_exchange("topic", "topic");
    (void)b.declare_queue("kern");
    (void)b.declare_queue("all");
    (void)b.declare_queue("copy");
    b.bind_exchange("topic", "fan");
    b.bind_queue("kern", "topic", "kern.*");
    b.bind_queue("all", "topic", "#");
    b.bind_queue("copy", "fan");

    CHECK(b.publish("fan", msg("kern.info", "1")) == 3);
    CHECK(b.publish("fan", msg("user.info", "2")) == 2);
    CHECK(b.publish("topic", msg("kern.warn", "3")) == 2); // entering midway routes onward only
    CHECK(drain(b, "kern") == strings{"1", "3"});
    CHECK(drain(b, "all") == strings{"1", "2", "3"});
    CHECK(drain(b, "copy") == strings{"1", "2"});

    SECTION("the binding key of an exchange-to-exchange binding filters") {
        b.declare_exchange("d", "direct");
        b.bind_exchange("topic", "d", "only");
        CHECK(b.publish("d", msg("only", "4")) == 1); // all ("#"), not kern ("kern.*")
        b.bind_queue("kern", "topic", "only");
        CHECK(b.publish("d", msg("only", "5")) == 2);
        CHECK(b.publish("d", msg("kern.x", "6")) == 0); // d's binding key is "only"
        CHECK(drain(b, "kern") == strings{"5"});
        CHECK(drain(b, "all") == strings{"4", "5"});
    }
    SECTION("the delivery names the exchange it was published to") {
        CHECK(b.publish("fan", msg("kern.x", "7")) == 3);
        auto d = b.try_get("kern");
        REQUIRE(d);
        CHECK(d->exchange() == "fan");
        CHECK(d->routing_key() == "kern.x");
    }
}

TEMPLATE_TEST_CASE("broker: exchange cycles end and a queue gets one copy", "[broker][e2e]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("a", "fanout");
    b.declare_exchange("b", "fanout");
    (void)b.declare_queue("q");
    SECTION("a -> b -> a") {
        b.bind_exchange("b", "a");
        b.bind_exchange("a", "b");
        b.bind_queue("q", "a");
        b.bind_queue("q", "b");
        CHECK(b.publish("a", msg("", "from a")) == 1);
        CHECK(b.publish("b", msg("", "from b")) == 1);
        CHECK(drain(b, "q") == strings{"from a", "from b"});
    }
    SECTION("an exchange bound to itself") {
        b.bind_exchange("a", "a");
        b.bind_queue("q", "a");
        CHECK(b.publish("a", msg("", "m")) == 1);
        CHECK(drain(b, "q") == strings{"m"});
        b.delete_exchange("a"); // its binding to itself goes with it
        CHECK_FALSE(b.has_exchange("a"));
    }
    SECTION("two paths to one queue (a diamond)") {
        b.declare_exchange("c", "topic");
        b.declare_exchange("d", "direct");
        b.bind_exchange("c", "a");
        b.bind_exchange("d", "a");
        b.bind_queue("q", "c", "#");
        b.bind_queue("q", "d", "k");
        CHECK(b.publish("a", msg("k", "m")) == 1);
        CHECK(drain(b, "q") == strings{"m"});
    }
    SECTION("a cycle with no queue routes nowhere") {
        b.bind_exchange("b", "a");
        b.bind_exchange("a", "b");
        CHECK(b.publish("a", msg("", "m")) == 0);
    }
}

TEMPLATE_TEST_CASE("broker: unbind_exchange", "[broker][e2e]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("src", "direct");
    b.declare_exchange("dst", "fanout");
    (void)b.declare_queue("q");
    b.bind_queue("q", "dst");
    b.bind_exchange("dst", "src", "k");
    b.bind_exchange("dst", "src", "k"); // twice is one binding
    CHECK(b.publish("src", msg("k")) == 1);
    REQUIRE_NOTHROW(b.unbind_exchange("dst", "src", "other")); // missing: no-op
    CHECK(b.publish("src", msg("k")) == 1);
    b.unbind_exchange("dst", "src", "k");
    CHECK(b.publish("src", msg("k")) == 0);
    REQUIRE_NOTHROW(b.unbind_exchange("dst", "src", "k"));
    CHECK(b.publish("dst", msg("k")) == 1); // dst itself is untouched
    // The source has no bindings left.
    REQUIRE_NOTHROW(b.delete_exchange("src", true));
}

TEMPLATE_TEST_CASE("broker: exchange-to-exchange binding errors", "[broker][e2e]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "fanout");
    CHECK(error_of([&] { b.bind_exchange("x", "nosrc"); }) == "404 NOT_FOUND - no exchange 'nosrc'");
    CHECK(error_of([&] { b.bind_exchange("nodst", "nosrc"); }) == "404 NOT_FOUND - no exchange 'nosrc'");
    CHECK(error_of([&] { b.bind_exchange("nodst", "x"); }) == "404 NOT_FOUND - no exchange 'nodst'");
    CHECK(error_of([&] { b.unbind_exchange("x", "nosrc"); }) == "404 NOT_FOUND - no exchange 'nosrc'");
    CHECK(error_of([&] { b.unbind_exchange("nodst", "x"); }) == "404 NOT_FOUND - no exchange 'nodst'");
    struct names {
        const char* destination;
        const char* source;
    };
    for (const names n : {names{"", "x"}, names{"x", ""}, names{"", "nosrc"}, names{"nodst", ""}}) {
        CAPTURE(n.destination, n.source);
        CHECK(error_of([&] { b.bind_exchange(n.destination, n.source); }) ==
              "403 ACCESS_REFUSED - operation not permitted on the default exchange");
        CHECK(error_of([&] { b.unbind_exchange(n.destination, n.source); }) ==
              "403 ACCESS_REFUSED - operation not permitted on the default exchange");
    }
}

TEMPLATE_TEST_CASE("broker: deleting a destination exchange removes the bindings to it", "[broker][e2e]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("a", "fanout");
    b.declare_exchange("b", "fanout");
    (void)b.declare_queue("q");
    b.bind_exchange("b", "a");
    b.bind_queue("q", "b");
    CHECK(b.publish("a", msg("")) == 1);
    b.delete_exchange("b");
    CHECK(b.publish("a", msg("")) == 0);
    // A new exchange named b is not bound to a.
    b.declare_exchange("b", "fanout");
    b.bind_queue("q", "b");
    CHECK(b.publish("a", msg("")) == 0);
    CHECK(b.publish("b", msg("")) == 1);
    // And a has no bindings left at all.
    REQUIRE_NOTHROW(b.delete_exchange("a", true));
    CHECK_FALSE(b.has_exchange("a"));
}

TEMPLATE_TEST_CASE("broker: deleting a source exchange leaves its destinations", "[broker][e2e]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("a", "fanout");
    b.declare_exchange("b", "fanout");
    (void)b.declare_queue("q");
    b.bind_exchange("b", "a");
    b.bind_queue("q", "b");
    b.delete_exchange("a");
    CHECK(b.has_exchange("b"));
    CHECK(b.publish("b", msg("", "m")) == 1);
    b.declare_exchange("a", "fanout");
    CHECK(b.publish("a", msg("")) == 0);
    // b has nothing bound from a any more: a new binding is the only one.
    b.bind_exchange("b", "a");
    CHECK(b.publish("a", msg("", "n")) == 1);
    CHECK(drain(b, "q") == strings{"m", "n"});
}

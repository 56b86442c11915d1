// warren::error: AMQP reply codes, their names, and what() as RabbitMQ words it.

#include <warren/broker.hpp>
#include <warren/error.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

#include "support/catch.hpp"
#include "support/errors.hpp"

namespace {

using warren::reply_code;

} // namespace

TEST_CASE("error: reply codes are AMQP 0-9-1's", "[error]") {
    struct row {
        reply_code code;
        std::uint16_t value;
        std::string_view name;
    };
    const row rows[] = {
        {reply_code::content_too_large, 311, "CONTENT_TOO_LARGE"},
        {reply_code::no_route, 312, "NO_ROUTE"},
        {reply_code::no_consumers, 313, "NO_CONSUMERS"},
        {reply_code::connection_forced, 320, "CONNECTION_FORCED"},
        {reply_code::invalid_path, 402, "INVALID_PATH"},
        {reply_code::access_refused, 403, "ACCESS_REFUSED"},
        {reply_code::not_found, 404, "NOT_FOUND"},
        {reply_code::resource_locked, 405, "RESOURCE_LOCKED"},
        {reply_code::precondition_failed, 406, "PRECONDITION_FAILED"},
        {reply_code::frame_error, 501, "FRAME_ERROR"},
        {reply_code::syntax_error, 502, "SYNTAX_ERROR"},
        {reply_code::command_invalid, 503, "COMMAND_INVALID"},
        {reply_code::channel_error, 504, "CHANNEL_ERROR"},
        {reply_code::unexpected_frame, 505, "UNEXPECTED_FRAME"},
        {reply_code::resource_error, 506, "RESOURCE_ERROR"},
        {reply_code::not_allowed, 530, "NOT_ALLOWED"},
        {reply_code::not_implemented, 540, "NOT_IMPLEMENTED"},
        {reply_code::internal_error, 541, "INTERNAL_ERROR"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.value);
        CHECK(static_cast<std::uint16_t>(r.code) == r.value);
        CHECK(warren::reply_name(r.code) == r.name);
    }
    // A value outside the enumeration still gets a name.
    CHECK(warren::reply_name(static_cast<reply_code>(999)) == "UNKNOWN");
    static_assert(warren::reply_name(reply_code::not_found) == "NOT_FOUND");
}

TEST_CASE("error: carries its code, its name and RabbitMQ's text", "[error]") {
    const warren::error e(reply_code::resource_locked, "cannot obtain exclusive access to locked queue 'q'");
    CHECK(e.code() == reply_code::resource_locked);
    CHECK(e.name() == "RESOURCE_LOCKED");
    CHECK(std::string(e.what()) == "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'q'");

    static_assert(std::is_base_of_v<std::runtime_error, warren::error>);
    const std::runtime_error& base = e;
    CHECK(std::string(base.what()) == e.what());

    const warren::error copy = e;
    CHECK(copy.code() == reply_code::resource_locked);
    CHECK(std::string(copy.what()) == e.what());

    CHECK(std::string(warren::error(reply_code::not_found, "").what()) == "NOT_FOUND - ");
}

TEMPLATE_TEST_CASE("error: what() from real broker calls", "[error]", warren::broker, warren::concurrent_broker) {
    using warren_test::error_of;
    TestType broker;
    SECTION("publishing to a missing exchange") {
        bool caught = false;
        try {
            (void)broker.publish("logs", {.routing_key = "k", .body = "m"});
        } catch (const warren::error& e) {
            caught = true;
            CHECK(e.code() == reply_code::not_found);
            CHECK(e.name() == "NOT_FOUND");
            CHECK(std::string(e.what()) == "NOT_FOUND - no exchange 'logs'");
        }
        CHECK(caught);
    }
    SECTION("the error is catchable as std::exception") {
        std::string text;
        try {
            (void)broker.publish("logs", {.routing_key = "k", .body = "m"});
        } catch (const std::exception& e) {
            text = e.what();
        }
        CHECK(text == "NOT_FOUND - no exchange 'logs'");
    }
    SECTION("a missing queue") {
        CHECK(error_of([&] { (void)broker.try_get("jobs"); }, reply_code::not_found) == "NOT_FOUND - no queue 'jobs'");
    }
    SECTION("an unknown exchange type") {
        CHECK(error_of([&] { broker.declare_exchange("x", "nope"); }, reply_code::command_invalid) ==
              "COMMAND_INVALID - unknown exchange type 'nope'");
    }
    SECTION("a reserved name") {
        CHECK(error_of([&] { broker.declare_exchange("amq.mine", "direct"); }, reply_code::access_refused) ==
              "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'");
    }
    SECTION("redeclaring with another type") {
        broker.declare_exchange("x", "direct");
        CHECK(error_of([&] { broker.declare_exchange("x", "fanout"); }, reply_code::precondition_failed) ==
              "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x': received 'fanout' but current is 'direct'");
    }
}

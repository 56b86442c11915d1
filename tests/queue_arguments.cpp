// Queue arguments: the values RabbitMQ accepts for each x- argument, its refusals word for
// word (rabbit_amqqueue:declare_args, 406 PRECONDITION_FAILED), redeclaration with other
// values, and what queue_arguments::parse makes of them.

#include <warren/broker.hpp>
#include <warren/queue_arguments.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using namespace std::chrono_literals;
using warren_test::drain;
using warren_test::error_of;
using warren_test::msg;
using warren_test::send;
using warren_test::strings;

namespace {

/// "<code> <what()>" of declaring queue `name` with `args`, or "no error".
template <class Broker>
std::string declare_error(Broker& b, warren::field_table args, std::string_view name = "q") {
    warren::queue_options options;
    options.arguments = std::move(args);
    return error_of([&] { (void)b.declare_queue(name, options); });
}

/// What RabbitMQ answers for an invalid argument (rabbit_amqqueue:check_arguments).
std::string invalid_arg(std::string_view key, std::string_view why, std::string_view queue = "q") {
    return "406 PRECONDITION_FAILED - invalid arg '" + std::string(key) + "' for queue '" + std::string(queue) +
           "': " + std::string(why);
}

/// One value of one argument and what declaring a queue with it comes to.
struct verdict {
    warren::field_value value;
    std::string error; // empty: accepted
};

/// Declares a queue "q" with `key` set to each value in turn: accepted ones create the
/// queue (deleted again before the next), refused ones give exactly their error and
/// create nothing.
template <class Broker>
void check_values(std::string_view key, const std::vector<verdict>& verdicts, warren::field_table base = {}) {
    Broker b;
    for (const auto& v : verdicts) {
        warren::field_table args = base;
        args.set(key, v.value);
        const std::string got = declare_error(b, args);
        INFO(key << " = " << (v.error.empty() ? "accepted value" : v.error));
        if (v.error.empty()) {
            CHECK(got == "no error");
            CHECK(b.has_queue("q"));
            (void)b.delete_queue("q");
        } else {
            CHECK(got == invalid_arg(key, v.error));
            CHECK_FALSE(b.has_queue("q")); // a refused declare creates nothing
        }
    }
}

constexpr std::int64_t ten_years_ms = 315'360'000'000; // rabbit_misc:check_expiry's limit

} // namespace

// ---------------------------------------------------------------------------------------
// accepted values and refusals, argument by argument

TEMPLATE_TEST_CASE("queue arguments: x-message-ttl is a non-negative integer of milliseconds (RabbitMQ ttl.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    check_values<TestType>("x-message-ttl",
                           {{0, ""},
                            {1, ""},
                            {60'000, ""},
                            {ten_years_ms, ""},
                            {-1, "{value_negative,-1}"},
                            {ten_years_ms + 1, "{value_too_large,315360000001}"},
                            {"60000", "{unacceptable_type,longstr}"},
                            {1.5, "{unacceptable_type,double}"},
                            {true, "{unacceptable_type,bool}"},
                            {warren::field_table{}, "{unacceptable_type,table}"},
                            {warren::field_array{}, "{unacceptable_type,array}"},
                            {warren::field_value{}, "{unacceptable_type,void}"}});
}

TEMPLATE_TEST_CASE("queue arguments: x-expires is a positive integer of milliseconds, never 0 (RabbitMQ ttl.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    check_values<TestType>("x-expires", {{1, ""},
                                         {1'800'000, ""},
                                         {ten_years_ms, ""},
                                         {0, "{value_zero,0}"},
                                         {-1, "{value_negative,-1}"},
                                         {ten_years_ms + 1, "{value_too_large,315360000001}"},
                                         {"1000", "{unacceptable_type,longstr}"},
                                         {false, "{unacceptable_type,bool}"}});
}

TEMPLATE_TEST_CASE("queue arguments: x-max-length and x-max-length-bytes are non-negative integers "
                   "(RabbitMQ maxlength.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    for (std::string_view key : {"x-max-length", "x-max-length-bytes"}) {
        check_values<TestType>(key, {{0, ""},
                                     {1, ""},
                                     {INT64_MAX, ""},
                                     {-1, "{value_negative,-1}"},
                                     {INT64_MIN, "{value_negative,-9223372036854775808}"},
                                     {"10", "{unacceptable_type,longstr}"},
                                     {10.0, "{unacceptable_type,double}"}});
    }
}

TEMPLATE_TEST_CASE("queue arguments: x-overflow is drop-head, reject-publish or reject-publish-dlx "
                   "(RabbitMQ maxlength.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    check_values<TestType>("x-overflow", {{"drop-head", ""},
                                          {"reject-publish", ""},
                                          {"reject-publish-dlx", ""},
                                          {"drop-tail", "invalid_overflow"},
                                          {"Drop-Head", "invalid_overflow"},
                                          {"", "invalid_overflow"},
                                          {1, "{unacceptable_type,long}"}});
}

TEMPLATE_TEST_CASE("queue arguments: x-dead-letter-exchange is a string, and the exchange need not exist yet "
                   "(RabbitMQ dlx.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    check_values<TestType>("x-dead-letter-exchange", {{"", ""},
                                                      {"not-declared-yet", ""},
                                                      {"amq.fanout", ""},
                                                      {7, "{unacceptable_type,long}"},
                                                      {true, "{unacceptable_type,bool}"}});
}

TEMPLATE_TEST_CASE("queue arguments: x-dead-letter-routing-key is a string and needs x-dead-letter-exchange "
                   "(RabbitMQ dlx.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    SECTION("with a dead-letter exchange") {
        check_values<TestType>("x-dead-letter-routing-key",
                               {{"", ""}, {"retry", ""}, {7, "{unacceptable_type,long}"}},
                               {{"x-dead-letter-exchange", "dlx"}});
    }
    SECTION("without one: refused, but a wrong type is reported first") {
        check_values<TestType>("x-dead-letter-routing-key", {{"retry", "routing_key_but_no_dlx_defined"},
                                                             {"", "routing_key_but_no_dlx_defined"},
                                                             {7, "{unacceptable_type,long}"}});
    }
}

TEMPLATE_TEST_CASE("queue arguments: x-max-priority is an integer from 0 to 255 (RabbitMQ priority.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    check_values<TestType>("x-max-priority", {{0, ""},
                                              {1, ""},
                                              {10, ""},
                                              {255, ""},
                                              {256, "{max_value_exceeded,256}"},
                                              {-1, "{value_negative,-1}"},
                                              {"10", "{unacceptable_type,longstr}"}});
}

TEMPLATE_TEST_CASE("queue arguments: x-single-active-consumer is a boolean (RabbitMQ consumers.html)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    check_values<TestType>("x-single-active-consumer", {{true, ""},
                                                        {false, ""},
                                                        {"true", "{unacceptable_type,longstr}"},
                                                        {1, "{unacceptable_type,long}"}});
}

TEMPLATE_TEST_CASE("queue arguments: x-queue-type, x-queue-mode and unknown arguments are accepted and change "
                   "nothing",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    TestType b;
    CHECK(declare_error(b, {{"x-queue-type", "classic"}, {"x-queue-mode", "lazy"}, {"x-custom", 5}}) == "no error");
    send(b, "q", {"a", "b", "c"});
    CHECK(drain(b, "q") == strings{"a", "b", "c"});
    const warren::queue_arguments parsed =
        warren::queue_arguments::parse({{"x-queue-type", "classic"}, {"x-queue-mode", "lazy"}}, "q");
    CHECK_FALSE(parsed.message_ttl);
    CHECK_FALSE(parsed.limited());
    CHECK(parsed.max_priority == 0);
}

TEMPLATE_TEST_CASE("queue arguments: of several invalid arguments, the first in RabbitMQ's order is reported",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    // rabbit_amqqueue:declare_args() checks x-expires, x-message-ttl, x-dead-letter-exchange,
    // x-dead-letter-routing-key, x-max-length, x-max-length-bytes, x-max-priority,
    // x-overflow, ..., x-single-active-consumer, in that order.
    TestType b;
    CHECK(declare_error(b, {{"x-message-ttl", -1}, {"x-expires", 0}}) == invalid_arg("x-expires", "{value_zero,0}"));
    CHECK(declare_error(b, {{"x-max-length", -1}, {"x-dead-letter-routing-key", "k"}}) ==
          invalid_arg("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined"));
    CHECK(declare_error(b, {{"x-max-length-bytes", -2}, {"x-max-length", -1}}) ==
          invalid_arg("x-max-length", "{value_negative,-1}"));
    CHECK(declare_error(b, {{"x-overflow", "bad"}, {"x-max-priority", 300}}) ==
          invalid_arg("x-max-priority", "{max_value_exceeded,300}"));
    CHECK(declare_error(b, {{"x-single-active-consumer", "yes"}, {"x-overflow", "bad"}}) ==
          invalid_arg("x-overflow", "invalid_overflow"));
    CHECK_FALSE(b.has_queue("q"));
}

TEMPLATE_TEST_CASE("queue arguments: a refused declare creates nothing", "[queue_arguments]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    REQUIRE(declare_error(b, {{"x-max-length", -1}}, "orders") ==
            invalid_arg("x-max-length", "{value_negative,-1}", "orders"));
    CHECK_FALSE(b.has_queue("orders"));
    CHECK(b.publish("", msg("orders", "m")) == 0);
    CHECK(error_of([&] { (void)b.message_count("orders"); }) == "404 NOT_FOUND - no queue 'orders'");
    CHECK(error_of([&] { b.bind_queue("orders", "amq.direct", "k"); }) == "404 NOT_FOUND - no queue 'orders'");
    // The name is still free, for a valid declare.
    CHECK(declare_error(b, {{"x-max-length", 1}}, "orders") == "no error");
    send(b, "orders", {"a", "b"});
    CHECK(drain(b, "orders") == strings{"b"});
}

TEMPLATE_TEST_CASE("queue arguments: an invalid redeclare leaves the queue as it was", "[queue_arguments]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    REQUIRE(declare_error(b, {{"x-max-length", 2}}) == "no error");
    send(b, "q", {"a", "b"});
    // RabbitMQ compares a redeclare's arguments before it validates them, so its words here
    // differ ("inequivalent arg"); both are 406 and change nothing.
    CHECK(error_of([&] {
              warren::queue_options options;
              options.arguments = {{"x-max-length", -1}};
              (void)b.declare_queue("q", options);
          }).starts_with("406 PRECONDITION_FAILED - "));
    send(b, "q", {"c"});
    CHECK(drain(b, "q") == strings{"b", "c"}); // still x-max-length 2
}

TEST_CASE("queue arguments: x-dead-letter-exchange needs a copyable message type", "[queue_arguments]") {
    // A dead letter is a changed copy of the message (new headers and routing key).
    warren::basic_broker<warren::basic_message<std::unique_ptr<int>>> b;
    warren::queue_options options;
    options.arguments = {{"x-dead-letter-exchange", "dlx"}};
    CHECK(error_of([&] { (void)b.declare_queue("q", options); }) ==
          "540 NOT_IMPLEMENTED - x-dead-letter-exchange needs a copyable message type (queue 'q')");
    CHECK_FALSE(b.has_queue("q"));
    options.arguments = {{"x-message-ttl", 10}};
    CHECK(b.declare_queue("q", options) == "q");
}

// ---------------------------------------------------------------------------------------
// redeclaring

TEMPLATE_TEST_CASE("queue arguments: redeclaring with another value of a queue argument is inequivalent (406)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    struct change {
        std::string key;
        warren::field_value current;
        warren::field_value received;
        std::string current_text;
        std::string received_text;
    };
    const std::vector<change> changes{
        {"x-message-ttl", 1000, 2000, "'1000'", "'2000'"},
        {"x-expires", 60'000, 1000, "'60000'", "'1000'"},
        {"x-max-length", 10, 20, "'10'", "'20'"},
        {"x-max-length-bytes", 100, 0, "'100'", "'0'"},
        {"x-overflow", "drop-head", "reject-publish", "'drop-head'", "'reject-publish'"},
        {"x-dead-letter-exchange", "dlx", "", "'dlx'", "''"},
        {"x-max-priority", 5, 10, "'5'", "'10'"},
        {"x-single-active-consumer", true, false, "'true'", "'false'"},
        {"x-queue-mode", "lazy", "default", "'lazy'", "'default'"},
        {"x-queue-type", "quorum", "stream", "'quorum'", "'stream'"},
    };
    for (const auto& c : changes) {
        INFO(c.key);
        TestType b;
        warren::queue_options declared;
        declared.arguments.set(c.key, c.current);
        REQUIRE(b.declare_queue("q", declared) == "q");
        send(b, "q", {"kept"});
        const std::string prefix = "406 PRECONDITION_FAILED - inequivalent arg '" + c.key + "' for queue 'q': ";

        warren::queue_options other;
        other.arguments.set(c.key, c.received);
        CHECK(error_of([&] { (void)b.declare_queue("q", other); }) ==
              prefix + "received " + c.received_text + " but current is " + c.current_text);
        // Left out counts as a difference too, and so does one added.
        CHECK(error_of([&] { (void)b.declare_queue("q"); }) == prefix + "received none but current is " + c.current_text);
        (void)b.declare_queue("plain");
        warren::queue_options added;
        added.arguments.set(c.key, c.received);
        CHECK(error_of([&] { (void)b.declare_queue("plain", added); }) ==
              "406 PRECONDITION_FAILED - inequivalent arg '" + c.key + "' for queue 'plain': received " +
                  c.received_text + " but current is none");
        // The same value again is the same queue, messages and all.
        CHECK(b.declare_queue("q", declared) == "q");
        CHECK(b.message_count("q") == 1);
    }
}

TEMPLATE_TEST_CASE("queue arguments: x-dead-letter-routing-key is compared on redeclare", "[queue_arguments]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::queue_options declared;
    declared.arguments = {{"x-dead-letter-exchange", "dlx"}, {"x-dead-letter-routing-key", "retry"}};
    REQUIRE(b.declare_queue("q", declared) == "q");
    warren::queue_options other = declared;
    other.arguments.set("x-dead-letter-routing-key", "parked");
    CHECK(error_of([&] { (void)b.declare_queue("q", other); }) ==
          "406 PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-routing-key' for queue 'q': received "
          "'parked' but current is 'retry'");
    other.arguments.erase("x-dead-letter-routing-key");
    CHECK(error_of([&] { (void)b.declare_queue("q", other); }) ==
          "406 PRECONDITION_FAILED - inequivalent arg 'x-dead-letter-routing-key' for queue 'q': received none "
          "but current is 'retry'");
    CHECK(b.declare_queue("q", declared) == "q");
}

TEMPLATE_TEST_CASE("queue arguments: an inequivalent redeclare changes nothing", "[queue_arguments]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    warren::queue_options declared;
    declared.arguments = {{"x-message-ttl", 100}};
    (void)b.declare_queue("q", declared);
    send(b, "q", {"a"});
    warren::queue_options longer;
    longer.arguments = {{"x-message-ttl", 1000}};
    CHECK(error_of([&] { (void)b.declare_queue("q", longer); }).starts_with("406 "));
    time.advance(100ms);
    CHECK(drain(b, "q").empty()); // the TTL is still 100 ms
}

TEMPLATE_TEST_CASE("queue arguments: arguments RabbitMQ does not compare may differ on redeclare",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::queue_options declared;
    declared.arguments = {{"x-max-length", 1}, {"x-note", "first"}};
    REQUIRE(b.declare_queue("q", declared) == "q");
    warren::queue_options other;
    other.arguments = {{"x-max-length", 1}, {"x-note", "second"}, {"x-other", true}};
    CHECK(b.declare_queue("q", other) == "q");
    // The queue keeps the arguments it was declared with.
    send(b, "q", {"a", "b"});
    CHECK(drain(b, "q") == strings{"b"});
}

TEMPLATE_TEST_CASE("queue arguments: no x-queue-type and x-queue-type 'classic' are equivalent on redeclare "
                   "(rabbit_misc:assert_field_equivalence, rabbitmq-common#341)",
                   "[queue_arguments]", warren::broker, warren::concurrent_broker) {
    // RabbitMQ: "Classic queues do not necessarily have an x-queue-type field associated
    // with them so we special-case that scenario here".
    TestType b;
    (void)b.declare_queue("plain");
    warren::queue_options classic;
    classic.arguments = {{"x-queue-type", "classic"}};
    CHECK(error_of([&] { (void)b.declare_queue("plain", classic); }) == "no error");
    (void)b.declare_queue("typed", classic);
    CHECK(error_of([&] { (void)b.declare_queue("typed"); }) == "no error");
}

// ---------------------------------------------------------------------------------------
// queue_arguments::parse

TEST_CASE("queue arguments: parse reads every argument RabbitMQ defines", "[queue_arguments]") {
    const warren::queue_arguments parsed = warren::queue_arguments::parse(
        {{"x-message-ttl", 1500},
         {"x-expires", 60'000},
         {"x-max-length", 10},
         {"x-max-length-bytes", 4096},
         {"x-overflow", "reject-publish-dlx"},
         {"x-dead-letter-exchange", "dlx"},
         {"x-dead-letter-routing-key", "parked"},
         {"x-max-priority", 255},
         {"x-single-active-consumer", true}},
        "q");
    REQUIRE(parsed.message_ttl);
    CHECK(*parsed.message_ttl == 1500ms);
    REQUIRE(parsed.expires);
    CHECK(*parsed.expires == 60s);
    CHECK(parsed.max_length == std::optional<std::uint64_t>(10));
    CHECK(parsed.max_length_bytes == std::optional<std::uint64_t>(4096));
    CHECK(parsed.overflow == warren::overflow_mode::reject_publish_dlx);
    CHECK(parsed.dead_letter_exchange == std::optional<std::string>("dlx"));
    CHECK(parsed.dead_letter_routing_key == std::optional<std::string>("parked"));
    CHECK(parsed.max_priority == 255);
    CHECK(parsed.single_active_consumer);
    CHECK(parsed.limited());
}

TEST_CASE("queue arguments: parse of no arguments is no limit, no TTL, no dead-lettering", "[queue_arguments]") {
    const warren::queue_arguments parsed = warren::queue_arguments::parse({}, "q");
    CHECK_FALSE(parsed.message_ttl);
    CHECK_FALSE(parsed.expires);
    CHECK_FALSE(parsed.max_length);
    CHECK_FALSE(parsed.max_length_bytes);
    CHECK(parsed.overflow == warren::overflow_mode::drop_head);
    CHECK_FALSE(parsed.dead_letter_exchange);
    CHECK_FALSE(parsed.dead_letter_routing_key);
    CHECK(parsed.max_priority == 0);
    CHECK_FALSE(parsed.single_active_consumer);
    CHECK_FALSE(parsed.limited());
}

TEST_CASE("queue arguments: parse keeps zero values apart from absent ones", "[queue_arguments]") {
    const warren::queue_arguments parsed = warren::queue_arguments::parse(
        {{"x-message-ttl", 0}, {"x-max-length", 0}, {"x-dead-letter-exchange", ""}, {"x-overflow", "reject-publish"}},
        "q");
    REQUIRE(parsed.message_ttl);
    CHECK(*parsed.message_ttl == 0ms);
    CHECK(parsed.max_length == std::optional<std::uint64_t>(0));
    CHECK_FALSE(parsed.max_length_bytes);
    CHECK(parsed.limited());
    CHECK(parsed.dead_letter_exchange == std::optional<std::string>("")); // the default exchange
    CHECK(parsed.overflow == warren::overflow_mode::reject_publish);
    CHECK(warren::queue_arguments::parse({{"x-max-length-bytes", 1}}, "q").limited());
    CHECK(warren::queue_arguments::parse({{"x-overflow", "drop-head"}}, "q").overflow ==
          warren::overflow_mode::drop_head);
    CHECK_FALSE(warren::queue_arguments::parse({{"x-single-active-consumer", false}}, "q").single_active_consumer);
}

TEST_CASE("queue arguments: parse refuses with precondition_failed, naming the queue", "[queue_arguments]") {
    CHECK(error_of([] { (void)warren::queue_arguments::parse({{"x-max-length", -1}}, "orders"); }) ==
          "406 PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'orders': {value_negative,-1}");
    CHECK(error_of([] { (void)warren::queue_arguments::parse({{"x-expires", 0}}, "tmp"); }) ==
          "406 PRECONDITION_FAILED - invalid arg 'x-expires' for queue 'tmp': {value_zero,0}");
    CHECK(error_of([] { (void)warren::queue_arguments::parse({{"x-dead-letter-routing-key", "k"}}, "q"); }) ==
          "406 PRECONDITION_FAILED - invalid arg 'x-dead-letter-routing-key' for queue 'q': "
          "routing_key_but_no_dlx_defined");
}

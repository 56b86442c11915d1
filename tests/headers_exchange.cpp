// Headers exchanges: headers_match as RabbitMQ's rabbit_exchange_type_headers decides,
// x-match parsing and its errors, and routing through a broker.

#include <warren/broker.hpp>
#include <warren/headers_exchange.hpp>

#include <cstdint>
#include <string>
#include <utility>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren_test::strings;

namespace {

using warren::field_array;
using warren::field_table;
using warren::field_value;
using warren::header_match;
using warren::headers_match;

/// headers_match with the mode read from `args`, as the exchange does.
bool match(const field_table& args, const field_table& headers) {
    return headers_match(args, warren::parse_header_match(args), headers);
}

/// warren_test::route for a message with `headers` (and a routing key the exchange ignores).
template <class Broker>
strings route(Broker& broker, const char* exchange, const field_table& headers, const strings& queues) {
    warren::message m{.routing_key = "ignored", .body = "m"};
    m.properties.headers = headers;
    return warren_test::route(broker, exchange, std::move(m), queues);
}

} // namespace

TEST_CASE("headers: x-match all needs every field to match", "[headers]") {
    const field_table args{{"x-match", "all"}, {"format", "pdf"}, {"type", "report"}};
    CHECK(match(args, {{"format", "pdf"}, {"type", "report"}}));
    CHECK(match(args, {{"format", "pdf"}, {"type", "report"}, {"extra", 1}, {"aaa", true}}));
    CHECK_FALSE(match(args, {{"format", "pdf"}}));
    CHECK_FALSE(match(args, {{"format", "pdf"}, {"type", "log"}}));
    CHECK_FALSE(match(args, {}));
}

TEST_CASE("headers: x-match any needs one field to match", "[headers]") {
    const field_table args{{"x-match", "any"}, {"format", "pdf"}, {"type", "report"}};
    CHECK(match(args, {{"format", "pdf"}}));
    CHECK(match(args, {{"type", "report"}, {"zzz", 0}}));
    CHECK(match(args, {{"format", "zip"}, {"type", "report"}}));
    CHECK_FALSE(match(args, {{"format", "zip"}, {"type", "log"}}));
    CHECK_FALSE(match(args, {{"other", "pdf"}}));
    CHECK_FALSE(match(args, {}));
}

TEST_CASE("headers: x-match defaults to all", "[headers]") {
    CHECK(warren::parse_header_match({}) == header_match::all);
    CHECK(warren::parse_header_match({{"a", 1}}) == header_match::all);
    const field_table args{{"a", 1}, {"b", 2}};
    CHECK(match(args, {{"a", 1}, {"b", 2}}));
    CHECK_FALSE(match(args, {{"a", 1}}));
}

TEST_CASE("headers: x-match values", "[headers]") {
    CHECK(warren::parse_header_match({{"x-match", "all"}}) == header_match::all);
    CHECK(warren::parse_header_match({{"x-match", "any"}}) == header_match::any);
    CHECK(warren::parse_header_match({{"x-match", "all-with-x"}}) == header_match::all_with_x);
    CHECK(warren::parse_header_match({{"x-match", "any-with-x"}}) == header_match::any_with_x);
}

TEST_CASE("headers: x- fields are ignored unless the mode ends in -with-x", "[headers]") {
    SECTION("all ignores them") {
        const field_table args{{"x-match", "all"}, {"x-tenant", "t1"}, {"a", 1}};
        CHECK(match(args, {{"a", 1}}));
        CHECK(match(args, {{"a", 1}, {"x-tenant", "t2"}}));
    }
    SECTION("any does not count them") {
        const field_table args{{"x-match", "any"}, {"x-tenant", "t1"}, {"a", 1}};
        CHECK_FALSE(match(args, {{"x-tenant", "t1"}}));
        CHECK(match(args, {{"a", 1}}));
    }
    SECTION("all-with-x needs them to match") {
        const field_table args{{"x-match", "all-with-x"}, {"x-tenant", "t1"}, {"a", 1}};
        CHECK(match(args, {{"a", 1}, {"x-tenant", "t1"}}));
        CHECK_FALSE(match(args, {{"a", 1}}));
        CHECK_FALSE(match(args, {{"a", 1}, {"x-tenant", "t2"}}));
    }
    SECTION("any-with-x counts them") {
        const field_table args{{"x-match", "any-with-x"}, {"x-tenant", "t1"}, {"a", 1}};
        CHECK(match(args, {{"x-tenant", "t1"}}));
        CHECK(match(args, {{"a", 1}}));
        CHECK_FALSE(match(args, {{"x-tenant", "t2"}, {"a", 2}}));
    }
    SECTION("x-match itself is never compared") {
        CHECK(match({{"x-match", "all-with-x"}, {"a", 1}}, {{"a", 1}}));
        CHECK_FALSE(match({{"x-match", "any-with-x"}}, {{"x-match", "any-with-x"}}));
    }
}

TEST_CASE("headers: a void argument matches on presence", "[headers]") {
    const field_table args{{"x-match", "all"}, {"flag", field_value{}}, {"a", 1}};
    CHECK(match(args, {{"flag", "anything"}, {"a", 1}}));
    CHECK(match(args, {{"flag", field_value{}}, {"a", 1}}));
    CHECK(match(args, {{"flag", field_table{}}, {"a", 1}}));
    CHECK_FALSE(match(args, {{"a", 1}}));
    CHECK_FALSE(match(args, {{"flag", 0}, {"a", 2}}));
    // A void header only equals a void argument.
    CHECK_FALSE(match({{"a", 1}}, {{"a", field_value{}}}));
    CHECK(match({{"x-match", "any"}, {"flag", field_value{}}}, {{"flag", false}}));
}

TEST_CASE("headers: numbers compare by value, other kinds only with their own kind", "[headers]") {
    SECTION("integer 1 equals float 1.0, whatever the widths") {
        CHECK(match({{"n", 1}}, {{"n", 1.0}}));
        CHECK(match({{"n", 1.0}}, {{"n", 1}}));
        CHECK(match({{"n", 1.0F}}, {{"n", static_cast<unsigned char>(1)}}));
        CHECK(match({{"n", std::int64_t{1}}}, {{"n", std::int16_t{1}}}));
        CHECK_FALSE(match({{"n", 1}}, {{"n", 1.5}}));
        CHECK_FALSE(match({{"n", 1}}, {{"n", 2}}));
    }
    SECTION("integer 1 is neither the string \"1\" nor true") {
        CHECK_FALSE(match({{"n", 1}}, {{"n", "1"}}));
        CHECK_FALSE(match({{"n", 1}}, {{"n", true}}));
        CHECK_FALSE(match({{"n", true}}, {{"n", 1}}));
        CHECK_FALSE(match({{"n", 0}}, {{"n", false}}));
        CHECK_FALSE(match({{"s", "true"}}, {{"s", true}}));
        CHECK(match({{"b", true}}, {{"b", true}}));
        CHECK_FALSE(match({{"b", true}}, {{"b", false}}));
    }
    SECTION("strings compare bytewise") {
        CHECK(match({{"s", "pdf"}}, {{"s", std::string("pdf")}}));
        CHECK_FALSE(match({{"s", "pdf"}}, {{"s", "PDF"}}));
        CHECK_FALSE(match({{"s", "pdf"}}, {{"s", "pdf "}}));
    }
}

TEST_CASE("headers: nested tables and arrays compare by content", "[headers]") {
    field_table inner;
    inner.set("b", "x");
    inner.set("a", 1);
    field_table same_other_order;
    same_other_order.set("a", 1);
    same_other_order.set("b", "x");
    const field_table args{{"t", inner}};

    CHECK(match(args, {{"t", same_other_order}}));
    CHECK_FALSE(match(args, {{"t", field_table{{"a", 1}}}}));
    CHECK_FALSE(match(args, {{"t", field_table{{"a", 1}, {"b", "y"}}}}));
    CHECK_FALSE(match(args, {{"t", field_table{{"a", 1}, {"b", "x"}, {"c", 0}}}}));
    CHECK_FALSE(match(args, {{"t", "x"}}));

    const field_table list{{"l", field_array{1, "two", field_table{{"k", true}}}}};
    CHECK(match(list, {{"l", field_array{1, "two", field_table{{"k", true}}}}}));
    CHECK_FALSE(match(list, {{"l", field_array{"two", 1, field_table{{"k", true}}}}}));
    CHECK_FALSE(match(list, {{"l", field_array{1, "two"}}}));
}

TEST_CASE("headers: a binding with no fields to compare", "[headers]") {
    SECTION("any matches nothing") {
        CHECK_FALSE(match({{"x-match", "any"}}, {}));
        CHECK_FALSE(match({{"x-match", "any"}}, {{"a", 1}}));
        CHECK_FALSE(match({{"x-match", "any"}, {"x-only", 1}}, {{"x-only", 1}}));
    }
    SECTION("all matches everything") {
        CHECK(match({}, {}));
        CHECK(match({{"x-match", "all"}}, {{"a", 1}}));
        CHECK(match({{"x-match", "all"}, {"x-only", 1}}, {}));
        CHECK(match({{"x-match", "all-with-x"}}, {}));
    }
}

TEST_CASE("headers: fields interleave with headers in sorted order", "[headers]") {
    // The match walks both sorted tables together; headers before, between and after the
    // binding's fields must not throw it off.
    const field_table headers{{"a", 1}, {"b", 2}, {"c", 3}, {"d", 4}, {"e", 5}};
    CHECK(match({{"b", 2}, {"d", 4}}, headers));
    CHECK(match({{"a", 1}, {"e", 5}}, headers));
    CHECK_FALSE(match({{"b", 2}, {"bb", 0}, {"d", 4}}, headers));
    CHECK_FALSE(match({{"d", 4}, {"f", 6}}, headers));
    CHECK(match({{"x-match", "any"}, {"0", 0}, {"c", 3}, {"z", 0}}, headers));
    CHECK_FALSE(match({{"x-match", "any"}, {"0", 0}, {"cc", 3}, {"z", 0}}, headers));
}

TEST_CASE("headers: an invalid x-match is PRECONDITION_FAILED", "[headers]") {
    auto refusal = [](const field_table& args) {
        return warren_test::error_of([&] { (void)warren::parse_header_match(args); },
                                     warren::reply_code::precondition_failed);
    };
    SECTION("an unknown string") {
        for (const char* value : {"some", "ALL", "", "all "}) {
            CAPTURE(value);
            CHECK(refusal({{"x-match", value}}) == "PRECONDITION_FAILED - invalid x-match field value '" +
                                                       std::string(value) +
                                                       "'; expected all, any, all-with-x or any-with-x");
        }
    }
    SECTION("a value that is not a string") {
        const std::string text =
            "PRECONDITION_FAILED - invalid x-match field type; expected a string: all, any, all-with-x or any-with-x";
        CHECK(refusal({{"x-match", 1}}) == text);
        CHECK(refusal({{"x-match", true}}) == text);
        CHECK(refusal({{"x-match", field_value{}}}) == text);
        CHECK(refusal({{"x-match", field_table{{"all", 1}}}}) == text);
        CHECK(refusal({{"x-match", field_array{"all"}}}) == text);
    }
}

TEMPLATE_TEST_CASE("headers exchange: routes by headers through a broker", "[headers]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("h", "headers");
    for (const char* q : {"all", "any", "with-x", "flag", "none"}) broker.declare_queue(q);
    broker.bind_queue("all", "h", "", {{"x-match", "all"}, {"format", "pdf"}, {"size", 1}});
    broker.bind_queue("any", "h", "", {{"x-match", "any"}, {"format", "pdf"}, {"size", 1}});
    broker.bind_queue("with-x", "h", "", {{"x-match", "any-with-x"}, {"x-tenant", "t1"}});
    broker.bind_queue("flag", "h", "", {{"urgent", field_value{}}});
    broker.bind_queue("none", "h", "", {{"x-match", "any"}});
    const strings queues{"all", "any", "with-x", "flag", "none"};

    CHECK(route(broker, "h", {{"format", "pdf"}, {"size", 1.0}}, queues) == strings{"all", "any"});
    CHECK(route(broker, "h", {{"format", "pdf"}}, queues) == strings{"any"});
    CHECK(route(broker, "h", {{"size", "1"}}, queues).empty());
    CHECK(route(broker, "h", {{"x-tenant", "t1"}, {"urgent", false}}, queues) == strings{"flag", "with-x"});
    CHECK(route(broker, "h", {}, queues).empty());
}

TEMPLATE_TEST_CASE("headers exchange: the routing key does not matter", "[headers]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("h", "headers");
    broker.declare_queue("q");
    broker.bind_queue("q", "h", "some.key", {{"a", 1}});
    for (const char* key : {"", "some.key", "other"}) {
        warren::message msg{.routing_key = key, .body = "m"};
        msg.properties.headers.set("a", 1);
        CHECK(broker.publish("h", std::move(msg)) == 1);
    }
    CHECK(broker.message_count("q") == 3);
}

TEMPLATE_TEST_CASE("headers exchange: bindings and unbinding", "[headers]", warren::broker, warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("h", "headers");
    broker.declare_queue("q");
    const strings queues{"q"};
    const field_table a{{"a", 1}};
    const field_table b{{"b", 1}};

    SECTION("several matching bindings give one copy") {
        broker.bind_queue("q", "h", "", a);
        broker.bind_queue("q", "h", "", b);
        broker.bind_queue("q", "h", "k", a);
        CHECK(route(broker, "h", {{"a", 1}, {"b", 1}}, queues) == strings{"q"});
    }
    SECTION("unbind removes only the binding with those arguments") {
        broker.bind_queue("q", "h", "", a);
        broker.bind_queue("q", "h", "", b);
        broker.unbind_queue("q", "h", "", a);
        CHECK(route(broker, "h", {{"a", 1}}, queues).empty());
        CHECK(route(broker, "h", {{"b", 1}}, queues) == strings{"q"});
    }
    SECTION("the same arguments under another key are another binding") {
        broker.bind_queue("q", "h", "k1", a);
        broker.bind_queue("q", "h", "k2", a);
        broker.unbind_queue("q", "h", "k1", a);
        CHECK(route(broker, "h", {{"a", 1}}, queues) == strings{"q"});
        broker.unbind_queue("q", "h", "k2", a);
        CHECK(route(broker, "h", {{"a", 1}}, queues).empty());
    }
    SECTION("binding the same arguments twice is one binding") {
        broker.bind_queue("q", "h", "", a);
        broker.bind_queue("q", "h", "", a);
        broker.unbind_queue("q", "h", "", a);
        CHECK(route(broker, "h", {{"a", 1}}, queues).empty());
    }
}

TEMPLATE_TEST_CASE("headers exchange: an invalid x-match is refused at bind time", "[headers]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("h", "headers");
    broker.declare_queue("q");
    CHECK(warren_test::error_of([&] { broker.bind_queue("q", "h", "", {{"x-match", "one"}, {"a", 1}}); },
                                warren::reply_code::precondition_failed) ==
          "PRECONDITION_FAILED - invalid x-match field value 'one'; expected all, any, all-with-x or any-with-x");
    REQUIRE_THROWS_AS(broker.bind_queue("q", "h", "", {{"x-match", 2}}), warren::error);
    // Nothing was bound: the exchange can still be deleted as unused.
    CHECK(route(broker, "h", {{"a", 1}}, {"q"}).empty());
    REQUIRE_NOTHROW(broker.delete_exchange("h", true));
    CHECK_FALSE(broker.has_exchange("h"));
}

TEMPLATE_TEST_CASE("headers exchange: amq.headers and amq.match are predeclared", "[headers]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_queue("q");
    broker.bind_queue("q", "amq.headers", "", {{"a", 1}});
    broker.bind_queue("q", "amq.match", "", {{"x-match", "any"}, {"b", 1}});
    CHECK(route(broker, "amq.headers", {{"a", 1}}, {"q"}) == strings{"q"});
    CHECK(route(broker, "amq.match", {{"b", 1}}, {"q"}) == strings{"q"});
    CHECK(route(broker, "amq.match", {{"a", 1}}, {"q"}).empty());
}

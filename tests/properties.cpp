// warren::properties: every AMQP basic property survives routing, and equality.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"

namespace {

/// Every property set, none to its default, headers of every field kind.
warren::properties all_set() {
    warren::properties p;
    p.content_type = "application/json";
    p.content_encoding = "gzip";
    p.headers.set("bool", true);
    p.headers.set("int", -42);
    p.headers.set("big", std::int64_t{1} << 40);
    p.headers.set("float", 2.5);
    p.headers.set("string", "text");
    p.headers.set("void", warren::field_value());
    p.headers.set("table", warren::field_table{{"inner", 1}, {"deeper", warren::field_table{{"x", "y"}}}});
    p.headers.set("array", warren::field_array{1, "two", 3.0, warren::field_array{false}});
    p.delivery_mode = std::uint8_t{2};
    p.priority = std::uint8_t{9};
    p.correlation_id = "corr-1";
    p.reply_to = "amq.gen-reply";
    p.expiration = "60000";
    p.message_id = "msg-1";
    p.timestamp = std::uint64_t{1700000000};
    p.type = "order.created";
    p.user_id = "guest";
    p.app_id = "shop";
    return p;
}

warren::message with(warren::properties p, std::string key = "k") {
    warren::message m;
    m.routing_key = std::move(key);
    m.body = "body";
    m.properties = std::move(p);
    return m;
}

} // namespace

TEMPLATE_TEST_CASE("properties: every basic property survives publish and try_get", "[properties]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    const warren::properties sent = all_set();

    SECTION("through the default exchange") {
        REQUIRE(b.publish("", with(sent, "q")) == 1);
    }
    SECTION("through an exchange-to-exchange chain") {
        b.declare_exchange("a", "fanout");
        b.declare_exchange("h", "headers");
        b.bind_exchange("h", "a");
        b.bind_queue("q", "h", "", warren::field_table{{"string", "text"}, {"int", -42}});
        REQUIRE(b.publish("a", with(sent)) == 1);
    }
    auto d = b.try_get("q");
    REQUIRE(d);
    const warren::properties& got = d->properties();
    CHECK(got.content_type == "application/json");
    CHECK(got.content_encoding == "gzip");
    CHECK(got.delivery_mode == std::uint8_t{2});
    CHECK(got.priority == std::uint8_t{9});
    CHECK(got.correlation_id == "corr-1");
    CHECK(got.reply_to == "amq.gen-reply");
    CHECK(got.expiration == "60000");
    CHECK(got.message_id == "msg-1");
    CHECK(got.timestamp == std::uint64_t{1700000000});
    CHECK(got.type == "order.created");
    CHECK(got.user_id == "guest");
    CHECK(got.app_id == "shop");
    REQUIRE(got.headers.size() == 8);
    std::vector<std::string> names;
    for (const auto& field : got.headers) names.push_back(field.name);
    CHECK(names == std::vector<std::string>{"array", "big", "bool", "float", "int", "string", "table", "void"});
    REQUIRE(got.headers.find("big") != nullptr);
    REQUIRE(got.headers.find("big")->get_if<std::int64_t>() != nullptr);
    CHECK(*got.headers.find("big")->get_if<std::int64_t>() == std::int64_t{1} << 40);
    REQUIRE(got.headers.find("void") != nullptr);
    CHECK(got.headers.find("void")->is_void());
    CHECK(got.headers == sent.headers);
    CHECK(got == sent);
}

TEMPLATE_TEST_CASE("properties: unset properties stay unset", "[properties]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    warren::properties sent;
    sent.content_type = ""; // set, but empty: not the same as absent
    REQUIRE(b.publish("", with(sent, "q")) == 1);
    auto d = b.try_get("q");
    REQUIRE(d);
    const warren::properties& got = d->properties();
    CHECK(got.content_type == std::optional<std::string>(""));
    CHECK_FALSE(got.content_encoding);
    CHECK_FALSE(got.delivery_mode);
    CHECK_FALSE(got.priority);
    CHECK_FALSE(got.correlation_id);
    CHECK_FALSE(got.reply_to);
    CHECK_FALSE(got.expiration);
    CHECK_FALSE(got.message_id);
    CHECK_FALSE(got.timestamp);
    CHECK_FALSE(got.type);
    CHECK_FALSE(got.user_id);
    CHECK_FALSE(got.app_id);
    CHECK(got.headers.empty());
    CHECK(got == sent);
    CHECK_FALSE(got == warren::properties{});
}

TEMPLATE_TEST_CASE("properties: a subscriber sees the same properties", "[properties]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    REQUIRE(b.publish("", with(all_set(), "q")) == 1);
    std::optional<warren::properties> seen;
    auto sub = b.subscribe("q", [&](auto& d) { seen = d.properties(); });
    REQUIRE(b.dispatch() == 1);
    REQUIRE(seen);
    CHECK(*seen == all_set());
}

TEMPLATE_TEST_CASE("properties: header tables AMQP cannot carry are refused on publish", "[properties]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    (void)b.declare_queue("q");
    warren::properties p;
    p.headers.set(std::string(255, 'h'), 1);
    CHECK(b.publish("", with(p, "q")) == 1);
    p.headers.set(std::string(256, 'h'), 1);
    CHECK(warren_test::error_of([&] { (void)b.publish("", with(p, "q")); }) ==
          "406 PRECONDITION_FAILED - message headers has a field name of 256 bytes; the limit is 255");
    CHECK(b.message_count("q") == 1);
}

TEST_CASE("properties: equality compares every property", "[properties]") {
    const warren::properties base = all_set();
    CHECK(base == all_set());
    CHECK(warren::properties{} == warren::properties{});

    using change = std::function<void(warren::properties&)>;
    const std::vector<std::pair<const char*, change>> changes{
        {"content_type", [](auto& p) { p.content_type = "text/plain"; }},
        {"content_type unset", [](auto& p) { p.content_type.reset(); }},
        {"content_encoding", [](auto& p) { p.content_encoding = "identity"; }},
        {"headers value", [](auto& p) { p.headers.set("int", -43); }},
        {"headers kind", [](auto& p) { p.headers.set("string", warren::field_table{}); }},
        {"headers extra", [](auto& p) { p.headers.set("extra", 1); }},
        {"headers missing", [](auto& p) { p.headers.erase("void"); }},
        {"delivery_mode", [](auto& p) { p.delivery_mode = std::uint8_t{1}; }},
        {"priority", [](auto& p) { p.priority = std::uint8_t{0}; }},
        {"priority unset", [](auto& p) { p.priority.reset(); }},
        {"correlation_id", [](auto& p) { p.correlation_id = "corr-2"; }},
        {"reply_to", [](auto& p) { p.reply_to = "other"; }},
        {"expiration", [](auto& p) { p.expiration = "60001"; }},
        {"message_id", [](auto& p) { p.message_id = "msg-2"; }},
        {"timestamp", [](auto& p) { p.timestamp = std::uint64_t{0}; }},
        {"type", [](auto& p) { p.type = "order.shipped"; }},
        {"user_id", [](auto& p) { p.user_id = "admin"; }},
        {"app_id", [](auto& p) { p.app_id = "shop2"; }},
    };
    for (const auto& [name, apply] : changes) {
        CAPTURE(name);
        warren::properties changed = base;
        apply(changed);
        CHECK_FALSE(changed == base);
        CHECK(changed != base);
    }

    SECTION("headers compare by content, not by the order they were set in") {
        warren::properties a;
        a.headers.set("x", 1);
        a.headers.set("y", "two");
        warren::properties b;
        b.headers.set("y", "two");
        b.headers.set("x", 1);
        CHECK(a == b);
    }
    SECTION("header numbers compare by value, as RabbitMQ does") {
        warren::properties a;
        a.headers.set("n", 1);
        warren::properties b;
        b.headers.set("n", 1.0);
        CHECK(a == b);
    }
}

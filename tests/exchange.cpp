// The exchange concept: destinations, destination lists, and a user-defined exchange type
// registered with a broker, declared, bound, routed through and unbound.

#include <warren/broker.hpp>
#include <warren/exchange.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/errors.hpp"

using warren::reply_code;
using warren_test::error_of;
using warren_test::route;
using warren_test::strings;

namespace {

/// A user exchange type: routes to every destination whose binding key is a prefix of the
/// routing key ("" is a prefix of every key). Refuses bindings with an "x-refuse" argument.
class prefix_exchange {
public:
    static constexpr std::string_view type_name = "x-prefix";

    void bind(warren::destination d, std::string_view key, const warren::field_table& args) {
        if (args.contains("x-refuse")) {
            throw warren::error(reply_code::precondition_failed, "x-prefix refuses this binding");
        }
        bindings_.emplace_back(std::string(key), d);
    }
    void unbind(warren::destination d, std::string_view key, const warren::field_table& /*args*/) {
        auto it = std::find(bindings_.begin(), bindings_.end(), std::pair<std::string, warren::destination>(key, d));
        if (it != bindings_.end()) bindings_.erase(it);
    }
    void route(const warren::routing_view& msg, warren::destination_list& out) const {
        for (const auto& [key, d] : bindings_) {
            if (msg.routing_key.starts_with(key)) out.add(d);
        }
    }

private:
    std::vector<std::pair<std::string, warren::destination>> bindings_;
};

/// Missing route(): not an exchange type.
struct not_an_exchange {
    static constexpr std::string_view type_name = "x-broken";
    void bind(warren::destination, std::string_view, const warren::field_table&) {}
    void unbind(warren::destination, std::string_view, const warren::field_table&) {}
};

} // namespace

static_assert(warren::exchange_type<prefix_exchange>);
static_assert(!warren::exchange_type<not_an_exchange>);
static_assert(!warren::exchange_type<int>);

TEST_CASE("exchange: a destination packs its kind and index", "[exchange]") {
    using kind = warren::destination::kind;
    const warren::destination q(kind::queue, 7);
    const warren::destination e(kind::exchange, 7);
    CHECK(q.type() == kind::queue);
    CHECK(q.index() == 7);
    CHECK(e.type() == kind::exchange);
    CHECK(e.index() == 7);
    CHECK(q != e);
    CHECK(q == warren::destination(kind::queue, 7));
    CHECK(q < e);
    CHECK(warren::destination(kind::exchange, 1) < warren::destination(kind::queue, 2));
    const warren::destination big(kind::exchange, (std::uint32_t{1} << 31) - 1);
    CHECK(big.index() == (std::uint32_t{1} << 31) - 1);
    CHECK(big.type() == kind::exchange);
    constexpr warren::destination none{};
    static_assert(none.type() == kind::queue && none.index() == 0);
}

TEST_CASE("exchange: a destination_list collects in order, and only the broker clears it", "[exchange]") {
    using kind = warren::destination::kind;
    warren::destination_list list;
    CHECK(list.empty());
    list.add({kind::queue, 2});
    list.add({kind::exchange, 1});
    list.add({kind::queue, 2});
    REQUIRE(list.size() == 3);
    CHECK(list[0] == warren::destination(kind::queue, 2));
    CHECK(list[1] == warren::destination(kind::exchange, 1));
    using access = warren::detail::destination_list_access;
    CHECK(std::vector<warren::destination>(list.begin(), list.end()) == access::storage(list));
    access::clear(list);
    CHECK(list.empty());
    CHECK(list.begin() == list.end());
}

TEMPLATE_TEST_CASE("exchange: a user-defined exchange type routes inside the broker", "[exchange]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.template register_exchange_type<prefix_exchange>();
    broker.declare_exchange("p", "x-prefix");
    for (const char* q : {"a", "ab", "b", "all"}) broker.declare_queue(q);
    broker.bind_queue("a", "p", "a");
    broker.bind_queue("ab", "p", "a.b");
    broker.bind_queue("b", "p", "b");
    broker.bind_queue("all", "p", "");
    const strings queues{"a", "ab", "b", "all"};

    CHECK(route(broker, "p", "a.b.c", queues) == strings{"a", "ab", "all"});
    CHECK(route(broker, "p", "a.c", queues) == strings{"a", "all"});
    CHECK(route(broker, "p", "b", queues) == strings{"all", "b"});
    CHECK(route(broker, "p", "", queues) == strings{"all"});

    SECTION("unbind reaches the exchange") {
        broker.unbind_queue("a", "p", "a");
        CHECK(route(broker, "p", "a.b.c", queues) == strings{"ab", "all"});
    }
    SECTION("a queue that several bindings match gets one copy") {
        broker.bind_queue("all", "p", "a");
        broker.bind_queue("all", "p", "a.b");
        CHECK(route(broker, "p", "a.b", queues) == strings{"a", "ab", "all"});
        broker.unbind_queue("all", "p", "");
        broker.unbind_queue("all", "p", "a");
        CHECK(route(broker, "p", "a.b", queues) == strings{"a", "ab", "all"});
        CHECK(route(broker, "p", "a.c", queues) == strings{"a"});
    }
    SECTION("the exchange may refuse a binding; the broker then keeps nothing") {
        broker.declare_exchange("p2", "x-prefix");
        CHECK(error_of([&] { broker.bind_queue("a", "p2", "z", {{"x-refuse", true}}); },
                       reply_code::precondition_failed) == "PRECONDITION_FAILED - x-prefix refuses this binding");
        CHECK(route(broker, "p2", "z", queues).empty());
        REQUIRE_NOTHROW(broker.delete_exchange("p2", true)); // unused: no binding was kept
    }
    SECTION("each declared exchange has its own state") {
        broker.declare_exchange("p2", "x-prefix");
        broker.bind_queue("b", "p2", "a");
        CHECK(route(broker, "p2", "a.b.c", queues) == strings{"b"});
        CHECK(route(broker, "p", "a.b.c", queues) == strings{"a", "ab", "all"});
    }
    SECTION("it routes to exchanges bound to it") {
        broker.declare_exchange("f", "fanout");
        broker.declare_queue("via-f");
        broker.bind_queue("via-f", "f");
        broker.bind_exchange("f", "p", "c");
        CHECK(route(broker, "p", "c.d", {"a", "ab", "b", "all", "via-f"}) == strings{"all", "via-f"});
    }
    SECTION("redeclaring with the same type does nothing; another type is refused") {
        REQUIRE_NOTHROW(broker.declare_exchange("p", "x-prefix"));
        CHECK(route(broker, "p", "b", queues) == strings{"all", "b"});
        CHECK(error_of([&] { broker.declare_exchange("p", "topic"); }, reply_code::precondition_failed) ==
              "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'p': received 'topic' but current is "
              "'x-prefix'");
    }
}

TEMPLATE_TEST_CASE("exchange: registering a type name twice is PRECONDITION_FAILED", "[exchange]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.template register_exchange_type<prefix_exchange>();
    CHECK(error_of([&] { broker.template register_exchange_type<prefix_exchange>(); },
                   reply_code::precondition_failed) ==
          "PRECONDITION_FAILED - exchange type 'x-prefix' is already registered");

    // The built-in types are registered from the start.
    CHECK(error_of([&] { broker.template register_exchange_type<warren::topic_exchange>(); },
                   reply_code::precondition_failed) == "PRECONDITION_FAILED - exchange type 'topic' is already registered");

    // The first registration still works.
    broker.declare_exchange("p", "x-prefix");
    broker.declare_queue("q");
    broker.bind_queue("q", "p", "k");
    CHECK(route(broker, "p", "key", {"q"}) == strings{"q"});
}

TEMPLATE_TEST_CASE("exchange: declaring an unknown type is COMMAND_INVALID", "[exchange]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    SECTION("a type nobody registered") {
        CHECK(error_of([&] { broker.declare_exchange("p", "x-prefix"); }, reply_code::command_invalid) ==
              "COMMAND_INVALID - unknown exchange type 'x-prefix'");
        CHECK_FALSE(broker.has_exchange("p"));
    }
    SECTION("registration is per broker") {
        TestType other;
        other.template register_exchange_type<prefix_exchange>();
        REQUIRE_NOTHROW(other.declare_exchange("p", "x-prefix"));
        REQUIRE_THROWS_AS(broker.declare_exchange("p", "x-prefix"), warren::error);
    }
    SECTION("RabbitMQ checks the type before the name") {
        broker.declare_exchange("logs", "topic");
        for (const char* name : {"logs", "amq.topic", "amq.new", ""}) {
            CAPTURE(name);
            CHECK(error_of([&] { broker.declare_exchange(name, "nope"); }, reply_code::command_invalid) ==
                  "COMMAND_INVALID - unknown exchange type 'nope'");
        }
    }
    SECTION("type names are case-sensitive") {
        CHECK(error_of([&] { broker.declare_exchange("x", "Topic"); }, reply_code::command_invalid) ==
              "COMMAND_INVALID - unknown exchange type 'Topic'");
    }
}

// Direct exchanges: exact routing-key match, binding identity, unbinding, the default
// exchange and amq.direct.

#include <warren/broker.hpp>
#include <warren/direct_exchange.hpp>

#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::destinations_for;
using warren_test::route;
using warren_test::strings;

TEMPLATE_TEST_CASE("direct exchange: routes on exact key equality", "[direct]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("d", "direct");
    for (const char* q : {"info", "error", "both", "empty"}) broker.declare_queue(q);
    broker.bind_queue("info", "d", "info");
    broker.bind_queue("error", "d", "error");
    broker.bind_queue("both", "d", "info");
    broker.bind_queue("both", "d", "error");
    broker.bind_queue("empty", "d", "");
    const strings queues{"info", "error", "both", "empty"};

    CHECK(route(broker, "d", "info", queues) == strings{"both", "info"});
    CHECK(route(broker, "d", "error", queues) == strings{"both", "error"});
    CHECK(route(broker, "d", "", queues) == strings{"empty"});
    SECTION("no wildcards, no prefixes, no case folding") {
        CHECK(route(broker, "d", "warn", queues).empty());
        CHECK(route(broker, "d", "INFO", queues).empty());
        CHECK(route(broker, "d", "info.x", queues).empty());
        CHECK(route(broker, "d", "inf", queues).empty());
        CHECK(route(broker, "d", "info ", queues).empty());
        broker.bind_queue("info", "d", "*");
        broker.bind_queue("info", "d", "#");
        CHECK(route(broker, "d", "warn", queues).empty());
        CHECK(route(broker, "d", "*", queues) == strings{"info"});
    }
}

TEMPLATE_TEST_CASE("direct exchange: the same key bound twice is one binding", "[direct]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("d", "direct");
    broker.declare_queue("q");
    broker.bind_queue("q", "d", "k");
    broker.bind_queue("q", "d", "k");
    CHECK(route(broker, "d", "k", {"q"}) == strings{"q"});
    broker.unbind_queue("q", "d", "k");
    CHECK(route(broker, "d", "k", {"q"}).empty());
    // And it can be deleted as unused now.
    REQUIRE_NOTHROW(broker.delete_exchange("d", true));
}

TEMPLATE_TEST_CASE("direct exchange: one key with different arguments is two bindings, one copy", "[direct]",
                   warren::broker, warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("d", "direct");
    broker.declare_queue("q");
    broker.bind_queue("q", "d", "k");
    broker.bind_queue("q", "d", "k", {{"v", 1}});
    broker.bind_queue("q", "d", "k", {{"v", 2}});
    CHECK(route(broker, "d", "k", {"q"}) == strings{"q"});
    broker.unbind_queue("q", "d", "k");
    CHECK(route(broker, "d", "k", {"q"}) == strings{"q"});
    broker.unbind_queue("q", "d", "k", {{"v", 2}});
    CHECK(route(broker, "d", "k", {"q"}) == strings{"q"});
    broker.unbind_queue("q", "d", "k", {{"v", 1}});
    CHECK(route(broker, "d", "k", {"q"}).empty());
}

TEMPLATE_TEST_CASE("direct exchange: unbind removes only that binding", "[direct]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("d", "direct");
    broker.declare_queue("q");
    broker.declare_queue("r");
    broker.bind_queue("q", "d", "a");
    broker.bind_queue("q", "d", "b");
    broker.bind_queue("r", "d", "a");
    const strings queues{"q", "r"};

    SECTION("the queue's other key stays") {
        broker.unbind_queue("q", "d", "a");
        CHECK(route(broker, "d", "a", queues) == strings{"r"});
        CHECK(route(broker, "d", "b", queues) == strings{"q"});
    }
    SECTION("unbinding what is not bound does nothing") {
        broker.unbind_queue("q", "d", "c");
        broker.unbind_queue("r", "d", "b");
        broker.unbind_queue("q", "d", "a", {{"v", 1}});
        CHECK(route(broker, "d", "a", queues) == strings{"q", "r"});
        CHECK(route(broker, "d", "b", queues) == strings{"q"});
    }
    SECTION("unknown names are NOT_FOUND") {
        REQUIRE_THROWS_WITH(broker.unbind_queue("q", "nope", "a"), "NOT_FOUND - no exchange 'nope'");
        REQUIRE_THROWS_WITH(broker.unbind_queue("nope", "d", "a"), "NOT_FOUND - no queue 'nope'");
        REQUIRE_THROWS_WITH(broker.bind_queue("nope", "d", "a"), "NOT_FOUND - no queue 'nope'");
        // RabbitMQ names the missing exchange first.
        REQUIRE_THROWS_WITH(broker.bind_queue("nope", "nope2", "a"), "NOT_FOUND - no exchange 'nope2'");
    }
}

TEMPLATE_TEST_CASE("direct exchange: the default exchange routes to the queue named by the key", "[direct]",
                   warren::broker, warren::concurrent_broker) {
    TestType broker;
    broker.declare_queue("tasks");
    broker.declare_queue("other");
    CHECK(route(broker, "", "tasks", {"tasks", "other"}) == strings{"tasks"});
    CHECK(route(broker, "", "missing", {"tasks", "other"}).empty());
    CHECK(route(broker, "", "", {"tasks", "other"}).empty());
    REQUIRE_THROWS_WITH(broker.bind_queue("tasks", "", "x"),
                        "ACCESS_REFUSED - operation not permitted on the default exchange");
    REQUIRE_THROWS_WITH(broker.unbind_queue("tasks", "", "tasks"),
                        "ACCESS_REFUSED - operation not permitted on the default exchange");
}

TEMPLATE_TEST_CASE("direct exchange: amq.direct is predeclared", "[direct]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    CHECK(broker.has_exchange("amq.direct"));
    broker.declare_queue("q");
    broker.bind_queue("q", "amq.direct", "k");
    CHECK(route(broker, "amq.direct", "k", {"q"}) == strings{"q"});
    CHECK(route(broker, "amq.direct", "j", {"q"}).empty());
}

TEST_CASE("direct exchange: used directly, counts bindings per destination", "[direct]") {
    static_assert(warren::exchange_type<warren::direct_exchange>);
    CHECK(warren::direct_exchange::type_name == "direct");
    warren::direct_exchange ex;
    const warren::destination q(warren::destination::kind::queue, 0);
    const warren::destination r(warren::destination::kind::queue, 1);
    using dests = std::vector<warren::destination>;

    // The broker binds once per distinct (destination, key, arguments): here twice for q.
    ex.bind(q, "k", {});
    ex.bind(q, "k", {{"v", 1}});
    ex.bind(r, "k", {});
    CHECK(destinations_for(ex, "k") == dests{q, r});
    CHECK(destinations_for(ex, "K").empty());
    ex.unbind(q, "k", {});
    CHECK(destinations_for(ex, "k") == dests{q, r});
    ex.unbind(q, "k", {{"v", 1}});
    CHECK(destinations_for(ex, "k") == dests{r});
    ex.unbind(r, "k", {});
    CHECK(destinations_for(ex, "k").empty());
    // Unbinding what was never bound is harmless.
    ex.unbind(r, "k", {});
    ex.unbind(q, "nothing", {});
    CHECK(destinations_for(ex, "k").empty());
}

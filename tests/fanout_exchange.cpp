// Fanout exchanges: every bound queue gets every message once, whatever the key.

#include <warren/broker.hpp>
#include <warren/fanout_exchange.hpp>

#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"

using warren_test::destinations_for;
using warren_test::route;
using warren_test::strings;

TEMPLATE_TEST_CASE("fanout exchange: every bound queue gets every message, whatever the key", "[fanout]",
                   warren::broker, warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("f", "fanout");
    for (const char* q : {"a", "b", "c", "unbound"}) broker.declare_queue(q);
    broker.bind_queue("a", "f");
    broker.bind_queue("b", "f", "some.key");
    broker.bind_queue("c", "f", "#");
    const strings queues{"a", "b", "c", "unbound"};
    for (const char* key : {"", "x", "some.key", "a.b.c"}) {
        CAPTURE(key);
        CHECK(route(broker, "f", key, queues) == strings{"a", "b", "c"});
    }
}

TEMPLATE_TEST_CASE("fanout exchange: a queue bound several times gets one copy", "[fanout]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("f", "fanout");
    broker.declare_queue("q");
    broker.bind_queue("q", "f", "k1");
    broker.bind_queue("q", "f", "k2");
    broker.bind_queue("q", "f", "k1", {{"v", 1}});
    broker.bind_queue("q", "f", "k1"); // the same binding again: no new one
    CHECK(route(broker, "f", "any", {"q"}) == strings{"q"});

    SECTION("it stays bound until its last binding goes") {
        broker.unbind_queue("q", "f", "k1");
        CHECK(route(broker, "f", "any", {"q"}) == strings{"q"});
        broker.unbind_queue("q", "f", "k2");
        CHECK(route(broker, "f", "any", {"q"}) == strings{"q"});
        broker.unbind_queue("q", "f", "k1", {{"v", 1}});
        CHECK(route(broker, "f", "any", {"q"}).empty());
    }
    SECTION("unbinding what is not bound does nothing") {
        broker.unbind_queue("q", "f", "k3");
        broker.unbind_queue("q", "f", "k2", {{"v", 1}});
        CHECK(route(broker, "f", "any", {"q"}) == strings{"q"});
    }
}

TEMPLATE_TEST_CASE("fanout exchange: unbinding one queue leaves the others", "[fanout]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    broker.declare_exchange("f", "fanout");
    broker.declare_queue("q");
    broker.declare_queue("r");
    broker.bind_queue("q", "f");
    broker.bind_queue("r", "f");
    broker.unbind_queue("q", "f");
    CHECK(route(broker, "f", "", {"q", "r"}) == strings{"r"});
    broker.unbind_queue("r", "f");
    CHECK(route(broker, "f", "", {"q", "r"}).empty());
}

TEMPLATE_TEST_CASE("fanout exchange: amq.fanout is predeclared", "[fanout]", warren::broker,
                   warren::concurrent_broker) {
    TestType broker;
    CHECK(broker.has_exchange("amq.fanout"));
    broker.declare_queue("q");
    broker.bind_queue("q", "amq.fanout");
    CHECK(route(broker, "amq.fanout", "whatever", {"q"}) == strings{"q"});
}

TEST_CASE("fanout exchange: used directly, counts bindings per destination", "[fanout]") {
    static_assert(warren::exchange_type<warren::fanout_exchange>);
    CHECK(warren::fanout_exchange::type_name == "fanout");
    warren::fanout_exchange ex;
    const warren::destination q(warren::destination::kind::queue, 3);
    const warren::destination e(warren::destination::kind::exchange, 3);
    using dests = std::vector<warren::destination>;

    ex.bind(q, "a", {});
    ex.bind(q, "b", {});
    ex.bind(e, "", {});
    CHECK(destinations_for(ex, "x") == dests{q, e});
    ex.unbind(q, "a", {});
    CHECK(destinations_for(ex, "x") == dests{q, e});
    ex.unbind(q, "b", {});
    CHECK(destinations_for(ex, "x") == dests{e});
    ex.unbind(q, "b", {}); // not bound any more: harmless
    ex.unbind(e, "", {});
    CHECK(destinations_for(ex, "").empty());
}

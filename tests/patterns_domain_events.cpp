// Domain events (include/warren/patterns/domain_events.hpp): what event_publisher puts on
// each event, event_subscriber's bindings and routing by event name, the correlation and
// causation ids a reaction carries, and deduplication of redelivered events.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/clock.hpp>
#include <warren/patterns/domain_events.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

TEMPLATE_TEST_CASE("domain events: publish sets name, type, ids, timestamp from the broker's clock and persistence",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time(1'700'000'000);
    TestType b(time);
    warren::event_publisher events(b, "shop", {.source = "order", .content_type = "application/json"});
    b.declare_queue("tap");
    b.bind_queue("tap", "shop", "#");
    time.advance(5s);
    const auto sent = events.publish("order.created", R"({"total":30})", {.correlation_id = "order-42"});
    CHECK(sent.routed == 1);
    auto d = b.try_get("tap");
    REQUIRE(d);
    const auto& p = d->properties();
    CHECK(d->exchange() == "shop");
    CHECK(d->routing_key() == "order.created");
    CHECK(d->body() == R"({"total":30})");
    CHECK(p.type == "order.created");
    CHECK(p.correlation_id == "order-42");
    REQUIRE(p.message_id);
    CHECK(*p.message_id == sent.message_id);
    CHECK(sent.message_id.starts_with("order-"));
    CHECK(p.timestamp == std::uint64_t{1'700'000'005});
    CHECK(p.delivery_mode == std::uint8_t{2});
    CHECK(p.app_id == "order");
    CHECK(p.content_type == "application/json");
    CHECK_FALSE(p.headers.contains(warren::causation_id_header));
}

TEMPLATE_TEST_CASE("domain events: the exchange is declared topic and durable, by publisher or subscriber first",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    TestType b;
    SECTION("publisher first") {
        warren::event_publisher events(b);
        warren::event_subscriber sub(b, "svc");
        CHECK(events.exchange() == "events");
    }
    SECTION("subscriber first") {
        warren::event_subscriber sub(b, "svc");
        warren::event_publisher events(b);
    }
    CHECK(b.has_exchange("events"));
    CHECK(b.has_queue("svc"));
    // Declared as something else: refused, as a redeclare with other options is.
    b.declare_exchange("plain", "fanout");
    CHECK_THROWS_AS(warren::event_publisher<TestType>(b, "plain"), warren::error);
}

TEMPLATE_TEST_CASE("domain events: generated message ids are unique, given ones are kept",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::event_publisher one(b, "events", {.source = "svc"});
    warren::event_publisher two(b, "events", {.source = "svc"}); // same source, another publisher
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) {
        ids.push_back(one.publish("x.happened", "").message_id);
        ids.push_back(two.publish("x.happened", "").message_id);
    }
    std::sort(ids.begin(), ids.end());
    CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
    CHECK(one.generated_ids() == 3);
    CHECK(one.publish("x.happened", "", {.message_id = "saga-7/step-2"}).message_id == "saga-7/step-2");
    CHECK(one.generated_ids() == 3);
    warren::event_publisher anonymous(b);
    CHECK(anonymous.publish("x.happened", "").message_id.starts_with("event-"));
    CHECK(one.publish("x.happened", "").routed == 0); // nobody subscribes
}

TEMPLATE_TEST_CASE("domain events: a subscriber gets the events it has handlers for, each at its handler",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    using event = typename warren::event_subscriber<TestType>::event;
    TestType b;
    warren::event_publisher events(b);
    warren::event_subscriber payment(b, "payment-service");
    std::vector<std::string> seen;
    payment.on("order.created", [&](const event& e) { seen.push_back("created:" + e.body()); })
        .on("order.cancelled", [&](const event& e) { seen.push_back("cancelled:" + e.body()); });
    payment.start();
    CHECK(events.publish("order.created", "1").routed == 1);
    CHECK(events.publish("order.shipped", "2").routed == 0); // not bound
    CHECK(events.publish("order.cancelled", "3").routed == 1);
    CHECK(events.publish("order.created.extra", "4").routed == 0); // exact names, not patterns
    (void)b.dispatch();
    CHECK(seen == std::vector<std::string>{"created:1", "cancelled:3"});
    CHECK(payment.handled() == 2);
    CHECK(payment.unhandled() == 0);
}

TEMPLATE_TEST_CASE("domain events: bind() patterns bring events to on_any, or count them unhandled without one",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    using event = typename warren::event_subscriber<TestType>::event;
    TestType b;
    warren::event_publisher events(b);
    warren::event_subscriber audit(b, "audit");
    std::vector<std::string> exact;
    std::vector<std::string> any;
    audit.on("payment.failed", [&](const event& e) { exact.emplace_back(e.name()); });
    SECTION("with on_any") {
        audit.bind("payment.*").bind("order.#").on_any([&](const event& e) { any.emplace_back(e.name()); });
        audit.start();
        for (const char* name : {"payment.completed", "payment.failed", "order.created", "order", "shipment.scheduled"}) {
            (void)events.publish(name, "");
        }
        (void)b.dispatch();
        CHECK(exact == std::vector<std::string>{"payment.failed"}); // its own handler, once, though two bindings match
        CHECK(any == std::vector<std::string>{"payment.completed", "order.created", "order"});
        CHECK(audit.handled() == 4);
        CHECK(audit.unhandled() == 0);
    }
    SECTION("without on_any") {
        audit.bind("payment.*");
        audit.start();
        (void)events.publish("payment.completed", "");
        (void)b.dispatch();
        CHECK(audit.unhandled() == 1);
        CHECK(audit.handled() == 0);
        CHECK(b.queue_stats("audit").acked == 1);
    }
}

TEMPLATE_TEST_CASE("domain events: a reaction carries the flow's correlation id and its cause's message id",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    using event = typename warren::event_subscriber<TestType>::event;
    TestType b;
    warren::event_publisher orders(b, "events", {.source = "order"});
    warren::event_publisher payments(b, "events", {.source = "payment"});
    warren::event_subscriber payment(b, "payment-service");
    warren::event_subscriber order(b, "order-service");
    std::string cause_id;
    payment.on("order.created", [&](const event& e) {
        cause_id = std::string(e.message_id());
        (void)payments.publish_after(e, "payment.completed", "paid " + e.body());
    });
    struct seen_event {
        std::string name, correlation, causation, source;
    };
    std::vector<seen_event> seen;
    order.on("payment.completed", [&](const event& e) {
        seen.push_back({std::string(e.name()), std::string(e.correlation_id()), std::string(e.causation_id()),
                        std::string(e.source())});
    });
    payment.start();
    order.start();
    const auto created = orders.publish("order.created", "30", {.correlation_id = "order-42"});
    (void)b.dispatch();
    REQUIRE(seen.size() == 1);
    CHECK(cause_id == created.message_id);
    CHECK(seen[0].name == "payment.completed");
    CHECK(seen[0].correlation == "order-42");
    CHECK(seen[0].causation == created.message_id);
    CHECK(seen[0].source == "payment");
}

TEMPLATE_TEST_CASE("domain events: an event published twice with one message id is handled once",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::event_publisher events(b);
    warren::event_subscriber shipping(b, "shipping-service");
    int scheduled = 0;
    shipping.on("inventory.reserved", [&](const auto&) { ++scheduled; });
    shipping.start();
    (void)events.publish("inventory.reserved", "", {.correlation_id = "order-1", .message_id = "order-1/reserve"});
    (void)events.publish("inventory.reserved", "", {.correlation_id = "order-1", .message_id = "order-1/reserve"});
    (void)events.publish("inventory.reserved", "", {.correlation_id = "order-2", .message_id = "order-2/reserve"});
    (void)b.dispatch();
    CHECK(scheduled == 2);
    CHECK(shipping.handled() == 2);
    CHECK(shipping.duplicates() == 1);
}

TEMPLATE_TEST_CASE("domain events: the subscriber's deduplicator outlives stop() and start()",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::event_publisher events(b);
    warren::event_subscriber inventory(b, "inventory-service");
    int reserved = 0;
    inventory.on("payment.completed", [&](const auto&) { ++reserved; });
    inventory.start();
    (void)events.publish("payment.completed", "", {.message_id = "p-1"});
    (void)b.dispatch();
    inventory.stop();
    CHECK_FALSE(inventory.started());
    // Events wait in the service's queue while it is down, a repeat among them.
    (void)events.publish("payment.completed", "", {.message_id = "p-1"});
    (void)events.publish("payment.completed", "", {.message_id = "p-2"});
    CHECK(b.message_count("inventory-service") == 2);
    inventory.start();
    (void)b.dispatch();
    CHECK(reserved == 2);
    CHECK(inventory.handled() == 2);
    CHECK(inventory.duplicates() == 1);
}

TEMPLATE_TEST_CASE("domain events: a throwing handler's event is redelivered and handled again",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::event_publisher events(b);
    warren::event_subscriber payment(b, "payment-service");
    int attempts = 0;
    payment.on("order.created", [&](const auto& e) {
        if (++attempts == 1) throw std::runtime_error("card processor timeout");
        CHECK(e.delivery().redelivered());
    });
    payment.start();
    (void)events.publish("order.created", "", {.correlation_id = "order-9"});
    CHECK_THROWS_WITH(b.dispatch(), "card processor timeout");
    CHECK(payment.failures() == 1);
    (void)b.dispatch();
    CHECK(attempts == 2);
    CHECK(payment.handled() == 1);
    CHECK(b.queue_stats("payment-service").acked == 1);
}

TEMPLATE_TEST_CASE("domain events: instances of one service sharing a deduplicator handle an event once",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    using subscriber = warren::event_subscriber<TestType>;
    TestType b;
    warren::event_publisher events(b);
    typename subscriber::deduplicator_type seen;
    int runs = 0;
    subscriber one(b, "payment-service");
    subscriber two(b, "payment-service"); // the same queue: competing consumers
    one.on("order.created", [&](const auto&) { ++runs; }).deduplicate_with(seen).start();
    two.on("order.created", [&](const auto&) { ++runs; }).deduplicate_with(seen).start();
    for (int i = 0; i < 2; ++i) (void)events.publish("order.created", "", {.message_id = "o-1"});
    (void)b.dispatch();
    CHECK(runs == 1);
    CHECK(one.duplicates() + two.duplicates() == 1);
    CHECK(&one.seen() == &seen);
}

TEMPLATE_TEST_CASE("domain events: a reaction's default message id is derived from its cause and name, so a "
                   "handler run again publishes a duplicate",
                   "[patterns][domain_events]", warren::broker, warren::concurrent_broker) {
    using event = typename warren::event_subscriber<TestType>::event;
    TestType b;
    warren::event_publisher orders(b, "events", {.source = "order"});
    warren::event_publisher payments(b, "events", {.source = "payment"});
    warren::event_subscriber payment(b, "payment-service");
    warren::event_subscriber inventory(b, "inventory-service");
    std::vector<std::string> ids;
    int attempts = 0;
    // The handler publishes its reaction, then fails: its event is redelivered and the
    // handler runs again, publishing the reaction a second time.
    payment.on("order.created", [&](const event& e) {
        ids.push_back(payments.publish_after(e, "payment.completed", "").message_id);
        ids.push_back(payments.publish_after(e, "payment.receipt", "").message_id);
        if (++attempts == 1) throw std::runtime_error("crashed after publishing");
    });
    int reserved = 0;
    inventory.on("payment.completed", [&](const event&) { ++reserved; });
    payment.start();
    inventory.start();
    (void)orders.publish("order.created", "", {.correlation_id = "order-1"});
    CHECK_THROWS(b.dispatch());
    (void)b.dispatch();
    REQUIRE(ids.size() == 4);
    CHECK(ids[0] == ids[2]); // the same cause and name: the same id
    CHECK(ids[1] == ids[3]);
    CHECK(ids[0] != ids[1]); // another name: another id
    CHECK(ids[0].starts_with("payment-"));
    CHECK(ids[0].size() == std::string("payment-").size() + 16);
    CHECK(reserved == 1);
    CHECK(inventory.duplicates() == 1);
    // Another cause: another id. A cause without a message id: a generated one each time.
    (void)orders.publish("order.created", "", {.correlation_id = "order-2"});
    (void)b.dispatch();
    REQUIRE(ids.size() == 6);
    CHECK(ids[4] != ids[0]);
    CHECK(reserved == 2);
    // A given id wins.
    warren::event_subscriber probe(b, "probe");
    std::vector<std::string> reaction_ids;
    probe.on("probe.ping", [&](const event& e) {
        reaction_ids.push_back(payments.publish_after(e, "probe.pong", "", "pong-1").message_id);
        reaction_ids.push_back(payments.publish_after(e, "probe.pong", "").message_id);
        reaction_ids.push_back(payments.publish_after(e, "probe.pong", "").message_id);
    });
    probe.start();
    typename TestType::message_type anonymous{.routing_key = "probe.ping", .body = ""};
    (void)b.publish("events", std::move(anonymous)); // no message_id
    (void)b.dispatch();
    REQUIRE(reaction_ids.size() == 3);
    CHECK(reaction_ids[0] == "pong-1");
    CHECK(reaction_ids[1] != reaction_ids[2]);
}

// The choreographed saga (include/warren/patterns/saga_choreography.hpp): the order flow
// on a topic exchange, each role_participant compensating on the failure events that concern
// it; deduplication under redelivery; a failure event that overtakes its trigger.

#include <algorithm>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/saga_choreography.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

namespace {

using role_participant = warren::saga_choreography_participant<warren::broker>;
using role = warren::saga_role<>;
using outcome = warren::saga_outcome<>;

/// The order flow: order (initiator) → inventory → payment → shipping, each failing on
/// demand, all logging what they do; a spy on "#" records every event.
struct order_flow {
    warren::broker broker;
    std::vector<std::string> log;
    std::vector<std::string> events;
    std::vector<warren::properties> event_properties;
    std::set<std::string> failing; // participants whose action fails
    std::unique_ptr<role_participant> order, inventory, payment, shipping;
    warren::subscription spy;

    order_flow() {
        order = std::make_unique<role_participant>(
            broker, "shop",
            role{.name = "order",
                 .action = [this](const warren::saga_event<>& e) { return act("order", e); },
                 .succeeded = "order.created",
                 .failed = {},
                 .compensate_on = {"inventory.failed", "payment.failed", "shipment.failed"},
                 .compensation = [this](const warren::saga_event<>& e,
                                        const std::string& r) { log.push_back("order: cancel " + r + " on " + e.name); },
                 .compensated = "order.cancelled"});
        inventory = std::make_unique<role_participant>(
            broker, "shop",
            role{.name = "inventory",
                 .on = "order.created",
                 .action = [this](const warren::saga_event<>& e) { return act("inventory", e); },
                 .succeeded = "inventory.reserved",
                 .failed = "inventory.failed",
                 .compensate_on = {"payment.failed", "shipment.failed"},
                 .compensation = [this](const warren::saga_event<>& e,
                                        const std::string& r) { log.push_back("inventory: release " + r + " on " + e.name); },
                 .compensated = "inventory.released"});
        payment = std::make_unique<role_participant>(
            broker, "shop",
            role{.name = "payment",
                 .on = "inventory.reserved",
                 .action = [this](const warren::saga_event<>& e) { return act("payment", e); },
                 .succeeded = "payment.completed",
                 .failed = "payment.failed",
                 .compensate_on = {"shipment.failed"},
                 .compensation = [this](const warren::saga_event<>& e,
                                        const std::string& r) { log.push_back("payment: refund " + r + " on " + e.name); },
                 .compensated = "payment.refunded"});
        shipping = std::make_unique<role_participant>(
            broker, "shop",
            role{.name = "shipping",
                 .on = "payment.completed",
                 .action = [this](const warren::saga_event<>& e) { return act("shipping", e); },
                 .succeeded = "shipment.completed",
                 .failed = "shipment.failed"});
        const auto spy_queue = broker.declare_queue();
        broker.bind_queue(spy_queue, "shop", "#");
        spy = broker.subscribe(spy_queue, [this](warren::delivery& d) {
            events.emplace_back(d.routing_key());
            event_properties.push_back(d.properties());
        });
    }

    outcome act(const std::string& who, const warren::saga_event<>& e) {
        log.push_back(who + ": act on " + (e.name.empty() ? std::string("start") : e.name));
        if (failing.contains(who)) return outcome::failure(who + " failed");
        return who + "(" + e.body + ")";
    }

    void settle() {
        while (broker.dispatch() != 0) {
        }
    }
};

} // namespace

TEST_CASE("saga choreography: each role_participant compensates its own transaction on the failure events concerning it",
          "[saga][choreography]") {
    order_flow f;
    SECTION("the shipment fails: payment refunded, inventory released, order cancelled") {
        f.failing = {"shipping"};
        REQUIRE(f.order->start("o1", "book"));
        f.settle();
        CHECK(f.log == std::vector<std::string>{
                           "order: act on start", "inventory: act on order.created", "payment: act on inventory.reserved",
                           "shipping: act on payment.completed",
                           // the queues are served in declaration order: order, inventory, payment
                           "order: cancel order(book) on shipment.failed",
                           "inventory: release inventory(order(book)) on shipment.failed",
                           "payment: refund payment(inventory(order(book))) on shipment.failed"});
        CHECK(f.order->state("o1") == warren::saga_role_state::compensated);
        CHECK(f.inventory->state("o1") == warren::saga_role_state::compensated);
        CHECK(f.payment->state("o1") == warren::saga_role_state::compensated);
        CHECK(f.shipping->state("o1") == warren::saga_role_state::failed);
        CHECK(f.events == std::vector<std::string>{"order.created", "inventory.reserved", "payment.completed",
                                                   "shipment.failed", "order.cancelled", "inventory.released",
                                                   "payment.refunded"});
    }
    SECTION("the payment fails: inventory released and order cancelled; shipping never acts") {
        f.failing = {"payment"};
        REQUIRE(f.order->start("o1", "book"));
        f.settle();
        CHECK(f.log == std::vector<std::string>{"order: act on start", "inventory: act on order.created",
                                                "payment: act on inventory.reserved",
                                                "order: cancel order(book) on payment.failed",
                                                "inventory: release inventory(order(book)) on payment.failed"});
        CHECK(f.payment->state("o1") == warren::saga_role_state::failed);
        CHECK(f.payment->compensations() == 0);
        CHECK(f.shipping->state("o1") == warren::saga_role_state::none);
        CHECK(f.shipping->actions() == 0);
    }
    SECTION("the inventory fails: only the order is cancelled") {
        f.failing = {"inventory"};
        REQUIRE(f.order->start("o1", "book"));
        f.settle();
        CHECK(f.log == std::vector<std::string>{"order: act on start", "inventory: act on order.created",
                                                "order: cancel order(book) on inventory.failed"});
        CHECK(f.inventory->compensations() == 0);
    }
    SECTION("nothing fails: nobody compensates") {
        REQUIRE(f.order->start("o1", "book"));
        f.settle();
        CHECK(f.events.back() == "shipment.completed");
        CHECK(f.order->compensations() + f.inventory->compensations() + f.payment->compensations() == 0);
        CHECK(f.payment->result("o1") == "payment(inventory(order(book)))");
    }
}

TEST_CASE("saga choreography: events carry correlation_id = the saga id and message_id = saga/event",
          "[saga][choreography]") {
    order_flow f;
    f.failing = {"payment"};
    REQUIRE(f.order->start("o7", "pen"));
    f.settle();
    REQUIRE(f.event_properties.size() == f.events.size());
    for (std::size_t i = 0; i < f.events.size(); ++i) {
        CHECK(f.event_properties[i].correlation_id == "o7");
        CHECK(f.event_properties[i].message_id == "o7/" + f.events[i]);
    }
    const auto failed = std::find(f.events.begin(), f.events.end(), "payment.failed");
    REQUIRE(failed != f.events.end());
    const auto& props = f.event_properties[static_cast<std::size_t>(failed - f.events.begin())];
    REQUIRE(props.headers.find_string(warren::saga_wire::error_header) != nullptr);
    CHECK(*props.headers.find_string(warren::saga_wire::error_header) == "payment failed");
}

TEST_CASE("saga choreography: a redelivered event (same message_id) is handled once", "[saga][choreography]") {
    order_flow f;
    f.failing = {"shipping"};
    SECTION("the trigger published again does not run the action twice") {
        REQUIRE(f.order->start("o1", "book"));
        f.settle();
        (void)warren::publish_saga_event(f.broker, "shop", "o1", "order.created", "book");
        (void)warren::publish_saga_event(f.broker, "shop", "o1", "inventory.reserved", "x");
        f.settle();
        CHECK(f.inventory->actions() == 1);
        CHECK(f.payment->actions() == 1);
        CHECK(f.inventory->duplicates() == 1);
        CHECK(f.payment->duplicates() == 1);
    }
    SECTION("a failure event published again does not compensate twice") {
        REQUIRE(f.order->start("o1", "book"));
        f.settle();
        (void)warren::publish_saga_event(f.broker, "shop", "o1", "shipment.failed", "again", "again");
        f.settle();
        CHECK(f.payment->compensations() == 1);
        CHECK(f.inventory->compensations() == 1);
        CHECK(f.order->compensations() == 1);
        CHECK(f.payment->duplicates() == 1);
    }
    SECTION("a second, different failure event of the same saga finds nothing more to undo") {
        REQUIRE(f.order->start("o1", "book"));
        f.settle();
        (void)warren::publish_saga_event(f.broker, "shop", "o1", "payment.failed", "late", "late");
        f.settle();
        CHECK(f.inventory->compensations() == 1);
        CHECK(f.order->compensations() == 1);
        CHECK(f.inventory->duplicates() == 0);
        CHECK(f.inventory->ignored() == 1);
    }
    SECTION("the same event published twice (a publisher's retry after a lost confirm) is handled once, both acked") {
        warren::broker b;
        int reserved = 0;
        role_participant inv(b, "shop",
                        role{.name = "inventory",
                             .on = "order.created",
                             .action = [&](const warren::saga_event<>&) -> outcome {
                                 ++reserved;
                                 return std::string("ok");
                             },
                             .succeeded = "inventory.reserved"});
        (void)warren::publish_saga_event(b, "shop", "o1", "order.created", "book");
        (void)warren::publish_saga_event(b, "shop", "o1", "order.created", "book"); // the publisher's retry
        while (b.dispatch() != 0) {
        }
        CHECK(reserved == 1);
        CHECK(inv.duplicates() == 1);
        CHECK(b.queue_stats(inv.queue()).acked == 2);
    }
    SECTION("the initiator started twice acts once") {
        CHECK(f.order->start("o1", "book"));
        CHECK_FALSE(f.order->start("o1", "book"));
        CHECK(f.order->actions() == 1);
    }
}

TEST_CASE("saga choreography: a failure event that overtakes the trigger aborts the action (ordering)",
          "[saga][choreography]") {
    order_flow f;
    // The payment failed before inventory saw the order (events of one saga can take other
    // paths): inventory must not reserve stock nobody will release.
    (void)warren::publish_saga_event(f.broker, "shop", "o1", "payment.failed", "no", "card declined");
    f.settle();
    CHECK(f.inventory->state("o1") == warren::saga_role_state::aborted);
    (void)warren::publish_saga_event(f.broker, "shop", "o1", "order.created", "book");
    f.settle();
    CHECK(f.inventory->actions() == 0);
    CHECK(f.inventory->state("o1") == warren::saga_role_state::aborted);
    CHECK(f.payment->actions() == 0);
    CHECK(std::find(f.events.begin(), f.events.end(), "inventory.reserved") == f.events.end());
}

TEST_CASE("saga choreography: an action that throws rejects its event and forgets its id, so a redelivery runs it",
          "[saga][choreography]") {
    warren::broker b;
    b.set_error_handler([](const warren::consumer_error&) {});
    int tries = 0;
    role_participant inv(b, "shop",
                    role{.name = "inventory",
                         .on = "order.created",
                         .action = [&](const warren::saga_event<>&) -> outcome {
                             if (++tries == 1) throw std::runtime_error("database locked");
                             return std::string("ok");
                         },
                         .succeeded = "inventory.reserved"});
    (void)warren::publish_saga_event(b, "shop", "o1", "order.created", "book");
    while (b.dispatch() != 0) {
    }
    CHECK(tries == 1);
    CHECK(inv.state("o1") == warren::saga_role_state::none);
    CHECK(b.queue_stats(inv.queue()).dropped.rejected == 1);
    (void)warren::publish_saga_event(b, "shop", "o1", "order.created", "book");
    while (b.dispatch() != 0) {
    }
    CHECK(tries == 2);
    CHECK(inv.state("o1") == warren::saga_role_state::done);
}

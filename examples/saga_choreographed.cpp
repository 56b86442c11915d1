// The order flow as a choreographed saga (warren::saga_choreography_participant): no
// coordinator. Each service, with its own in-memory store, reacts to the events of the
// others on the topic exchange "shop" and publishes its own:
//
//   order.created -> [inventory] -> inventory.reserved -> [payment] -> payment.completed
//                 -> [shipping]  -> shipment.completed | shipment.failed
//
// and each listens for the failure events that concern it and undoes its own local
// transaction: on shipment.failed the payment is refunded, the stock released and the
// order cancelled. order-1 ships; order-2 is going to an address no courier serves, so its
// shipment fails and everything before it is compensated. A redelivered event (the same
// message_id) is shown doing nothing twice. The program exits 0 only if the stores end as
// the trace says.

#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <warren/patterns/saga_choreography.hpp>
#include <warren/warren.hpp>

namespace {

using participant = warren::saga_choreography_participant<warren::broker>;
using role = warren::saga_role<>;
using outcome = warren::saga_outcome<>;
using event = warren::saga_event<>;

/// An order as the events carry it: "<customer> <item> <quantity> <price each> <city>".
struct order_line {
    std::string customer, item, city;
    int quantity = 0, price = 0;
    explicit order_line(const std::string& text) {
        std::istringstream(text) >> customer >> item >> quantity >> price >> city;
    }
    [[nodiscard]] int total() const { return quantity * price; }
};

} // namespace

int main() {
    warren::broker broker;

    // Every event, printed inside its publish (a synchronous consumer): the trace of a
    // saga nobody drives.
    broker.declare_exchange("shop", "topic");
    const auto trace_queue = broker.declare_queue();
    broker.bind_queue(trace_queue, "shop", "#");
    auto trace = broker.subscribe(
        trace_queue,
        [](warren::delivery& d) {
            std::cout << "  event " << d.routing_key() << " (message_id " << d.properties().message_id.value_or("")
                      << ")\n";
        },
        {.synchronous = true});

    // The order service: creates the order (the saga's start), cancels it on any failure.
    std::map<std::string, std::string> orders;
    participant order(broker, "shop",
                      role{.name = "order",
                           .action = [&](const event& e) -> outcome {
                               orders[e.saga_id] = "pending";
                               std::cout << "[order]     " << e.saga_id << " created, pending\n";
                               return e.body;
                           },
                           .succeeded = "order.created",
                           .compensate_on = {"inventory.failed", "payment.failed", "shipment.failed"},
                           .compensation = [&](const event& e, const std::string&) {
                               orders[e.saga_id] = "cancelled";
                               std::cout << "[order]     " << e.saga_id << " cancelled on " << e.name << "\n";
                           },
                           .compensated = "order.cancelled"});
    participant order_approval(broker, "shop",
                               role{.name = "order-approval",
                                    .on = "shipment.completed",
                                    .action = [&](const event& e) -> outcome {
                                        orders[e.saga_id] = "approved";
                                        std::cout << "[order]     " << e.saga_id << " approved\n";
                                        return e.body;
                                    }});

    // The inventory service: reserves stock, releases it on a later failure.
    std::map<std::string, int> stock{{"book", 10}};
    participant inventory(broker, "shop",
                          role{.name = "inventory",
                               .on = "order.created",
                               .action = [&](const event& e) -> outcome {
                                   const order_line line(e.body);
                                   if (stock[line.item] < line.quantity) return outcome::failure("out of stock");
                                   stock[line.item] -= line.quantity;
                                   std::cout << "[inventory] reserved " << line.quantity << " " << line.item
                                             << " (stock " << stock[line.item] << ")\n";
                                   return e.body;
                               },
                               .succeeded = "inventory.reserved",
                               .failed = "inventory.failed",
                               .compensate_on = {"payment.failed", "shipment.failed"},
                               .compensation = [&](const event& e, const std::string& reserved) {
                                   const order_line line(reserved);
                                   stock[line.item] += line.quantity;
                                   std::cout << "[inventory] released " << line.quantity << " " << line.item
                                             << " on " << e.name << " (stock " << stock[line.item] << ")\n";
                               },
                               .compensated = "inventory.released"});

    // The payment service: charges the customer, refunds on a later failure.
    std::map<std::string, int> balances{{"alice", 100}, {"bob", 100}};
    participant payment(broker, "shop",
                        role{.name = "payment",
                             .on = "inventory.reserved",
                             .action = [&](const event& e) -> outcome {
                                 const order_line line(e.body);
                                 if (balances[line.customer] < line.total()) return outcome::failure("insufficient funds");
                                 balances[line.customer] -= line.total();
                                 std::cout << "[payment]   charged " << line.customer << " " << line.total() << "\n";
                                 return e.body;
                             },
                             .succeeded = "payment.completed",
                             .failed = "payment.failed",
                             .compensate_on = {"shipment.failed"},
                             .compensation = [&](const event& e, const std::string& charged) {
                                 const order_line line(charged);
                                 balances[line.customer] += line.total();
                                 std::cout << "[payment]   refunded " << line.customer << " " << line.total() << " on "
                                           << e.name << "\n";
                             },
                             .compensated = "payment.refunded"});

    // The shipping service: ships, or fails where no courier goes.
    std::vector<std::string> shipments;
    participant shipping(broker, "shop",
                         role{.name = "shipping",
                              .on = "payment.completed",
                              .action = [&](const event& e) -> outcome {
                                  const order_line line(e.body);
                                  if (line.city == "Atlantis") {
                                      std::cout << "[shipping]  no courier serves " << line.city << "\n";
                                      return outcome::failure("no courier for " + line.city);
                                  }
                                  shipments.push_back(e.saga_id);
                                  std::cout << "[shipping]  shipped " << e.saga_id << " to " << line.city << "\n";
                                  return e.body;
                              },
                              .succeeded = "shipment.completed",
                              .failed = "shipment.failed"});

    const auto settle = [&] {
        while (broker.dispatch() != 0) {
        }
    };
    std::cout << "order-1:\n";
    (void)order.start("order-1", "alice book 2 30 Lisbon");
    settle();
    std::cout << "\norder-2:\n";
    (void)order.start("order-2", "bob book 3 20 Atlantis");
    settle();

    std::cout << "\nredelivered: shipment.failed of order-2 again (same message_id)\n";
    (void)warren::publish_saga_event(broker, "shop", "order-2", "shipment.failed", "bob book 3 20 Atlantis",
                                     std::string("no courier for Atlantis"));
    settle();
    std::cout << "  payment ignored it as a duplicate: " << payment.duplicates() << " duplicate\n";

    std::cout << "\nstores: order-1 " << orders["order-1"] << ", order-2 " << orders["order-2"] << "; stock "
              << stock["book"] << " books; alice " << balances["alice"] << ", bob " << balances["bob"] << "; "
              << shipments.size() << " shipment\n";

    const bool ok = orders["order-1"] == "approved" && orders["order-2"] == "cancelled" && stock["book"] == 8 &&
                    balances["alice"] == 40 && balances["bob"] == 100 && shipments == std::vector<std::string>{"order-1"} &&
                    payment.state("order-2") == warren::saga_role_state::compensated &&
                    inventory.state("order-2") == warren::saga_role_state::compensated &&
                    order.state("order-2") == warren::saga_role_state::compensated && payment.compensations() == 1 &&
                    inventory.compensations() == 1 && payment.duplicates() == 1;
    if (!ok) {
        std::cout << "FAILED: order-2's failed shipment was not compensated as shown\n";
        return 1;
    }
    return 0;
}

// The order flow as an orchestrated saga (warren::saga_orchestrator): four services, each
// with its own in-memory store and its own queue, and a coordinator that calls them in
// turn by request/reply. No transaction spans the stores, so when a step fails the
// coordinator undoes the completed steps with their compensations, in reverse order.
//
// Two orders: order-1 goes through; order-2's payment is declined (the customer cannot
// pay), so the stock reserved for it is released and the order is rejected. The program
// exits 0 only if the stores end as the trace says.

#include <chrono>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <warren/patterns/saga.hpp>
#include <warren/patterns/saga_participant.hpp>
#include <warren/warren.hpp>

namespace {

using participant = warren::saga_participant<warren::broker>;
using outcome = warren::saga_outcome<>;
using op = warren::saga_operation<>;

/// An order as the services pass it: "<customer> <item> <quantity> <price each>".
struct order_line {
    std::string customer, item;
    int quantity = 0, price = 0;
    explicit order_line(const std::string& text) { std::istringstream(text) >> customer >> item >> quantity >> price; }
    [[nodiscard]] int total() const { return quantity * price; }
};

std::string saga_of(const warren::delivery& d) { return d.properties().correlation_id.value_or("?"); }

/// The order service: orders and their status.
struct order_service {
    std::map<std::string, std::string> orders; // saga id -> status
    participant server;
    explicit order_service(warren::broker& b)
        : server(
              b, "orders",
              [this](const warren::delivery& d) {
                  orders[saga_of(d)] = "pending";
                  std::cout << "    [order]     " << saga_of(d) << " created, pending\n";
                  return d.body();
              },
              [this](const warren::delivery& d) {
                  orders[saga_of(d)] = "rejected";
                  std::cout << "    [order]     " << saga_of(d) << " rejected\n";
                  return std::string("rejected");
              }) {}
};

/// The inventory service: stock per item.
struct inventory_service {
    std::map<std::string, int> stock{{"book", 10}};
    participant server;
    explicit inventory_service(warren::broker& b)
        : server(
              b, "inventory",
              [this](const warren::delivery& d) -> outcome {
                  const order_line line(d.body());
                  if (stock[line.item] < line.quantity) return outcome::failure("out of " + line.item);
                  stock[line.item] -= line.quantity;
                  std::cout << "    [inventory] reserved " << line.quantity << " " << line.item << " (stock "
                            << stock[line.item] << ")\n";
                  return d.body(); // the reservation: what its compensation releases
              },
              [this](const warren::delivery& d) {
                  const order_line line(d.body()); // the action's result
                  stock[line.item] += line.quantity;
                  std::cout << "    [inventory] released " << line.quantity << " " << line.item << " (stock "
                            << stock[line.item] << ")\n";
                  return std::string("released");
              }) {}
};

/// The payment service: customers' balances.
struct payment_service {
    std::map<std::string, int> balances{{"alice", 100}, {"bob", 20}};
    participant server;
    explicit payment_service(warren::broker& b)
        : server(
              b, "payment",
              [this](const warren::delivery& d) -> outcome {
                  const order_line line(d.body());
                  if (balances[line.customer] < line.total()) {
                      std::cout << "    [payment]   declined: " << line.customer << " has " << balances[line.customer]
                                << ", needs " << line.total() << "\n";
                      return outcome::failure("insufficient funds");
                  }
                  balances[line.customer] -= line.total();
                  std::cout << "    [payment]   charged " << line.customer << " " << line.total() << "\n";
                  return d.body();
              },
              [this](const warren::delivery& d) {
                  const order_line line(d.body());
                  balances[line.customer] += line.total();
                  std::cout << "    [payment]   refunded " << line.customer << " " << line.total() << "\n";
                  return std::string("refunded");
              }) {}
};

/// The shipping service: shipments scheduled.
struct shipping_service {
    std::vector<std::string> shipments;
    participant server;
    explicit shipping_service(warren::broker& b)
        : server(
              b, "shipping",
              [this](const warren::delivery& d) {
                  shipments.push_back(saga_of(d));
                  std::cout << "    [shipping]  shipment scheduled for " << saga_of(d) << "\n";
                  return "shipment-" + std::to_string(shipments.size());
              },
              [](const warren::delivery&) { return std::string(); }) {}
};

warren::broker& with_queues(warren::broker& b) {
    for (const char* q : {"orders", "inventory", "payment", "shipping"}) b.declare_queue(q);
    return b;
}

} // namespace

int main() {
    using namespace std::chrono_literals;
    warren::manual_clock time;
    warren::broker broker(time);
    with_queues(broker);
    order_service orders(broker);
    inventory_service inventory(broker);
    payment_service payment(broker);
    shipping_service shipping(broker);
    warren::saga_orchestrator<warren::broker> sagas(broker);

    const auto call = [](const char* queue) { return op::request("", queue, 2s, warren::retry_policy::fixed(3, 500ms)); };
    warren::saga_definition<> place_order("place-order");
    place_order.step("create-order", call("orders"), call("orders"))
        .step("reserve-inventory", call("inventory"), call("inventory"))
        .step("charge-payment", call("payment"), call("payment"))
        .step("schedule-shipment", call("shipping"))
        .step("approve-order", op::local([&](const warren::saga_step_context<>& c) {
                  orders.orders[c.saga_id] = "approved"; // the order service's own store, in-process
                  std::cout << "    [order]     " << c.saga_id << " approved\n";
              }));
    place_order.hooks.started = [](const std::string& id) { std::cout << id << ": started\n"; };
    place_order.hooks.step_completed = [](const std::string& id, const std::string& step, const std::string&) {
        std::cout << id << ": step " << step << " completed\n";
    };
    place_order.hooks.compensating = [](const std::string& id, const warren::saga_failure& e) {
        std::cout << id << ": step " << e.step << " failed (" << e.what << "), compensating\n";
    };
    place_order.hooks.step_compensated = [](const std::string& id, const std::string& step) {
        std::cout << id << ": step " << step << " compensated\n";
    };
    place_order.hooks.completed = [](const warren::saga_result<>& r) { std::cout << r.id << ": completed\n\n"; };
    place_order.hooks.rolled_back = [](const warren::saga_result<>& r) {
        std::cout << r.id << ": rolled back after " << r.error->step << " failed: " << r.error->what << "\n\n";
    };
    place_order.hooks.failed = [](const warren::saga_result<>& r) { std::cout << r.id << ": FAILED to roll back\n\n"; };

    const auto run = [&](const std::string& id, const std::string& line) {
        (void)sagas.start(place_order, id, line);
        while (sagas.active() != 0) { // dispatch; if nothing is left, time moves to the next timeout or retry
            if (broker.dispatch() != 0) continue;
            const auto due = sagas.next_due();
            if (!due) break;
            time.advance(*due - time.now());
            (void)sagas.poll();
        }
    };
    run("order-1", "alice book 2 30"); // 60: alice can pay
    run("order-2", "bob book 3 30");   // 90: bob has 20

    const auto r1 = sagas.result("order-1");
    const auto r2 = sagas.result("order-2");
    std::cout << "stores: order-1 " << orders.orders["order-1"] << ", order-2 " << orders.orders["order-2"]
              << "; stock " << inventory.stock["book"] << " books; alice " << payment.balances["alice"] << ", bob "
              << payment.balances["bob"] << "; " << shipping.shipments.size() << " shipment\n";

    const bool ok = r1 && r1->status == warren::saga_status::completed && r2 &&
                    r2->status == warren::saga_status::rolled_back && r2->error &&
                    r2->error->step == "charge-payment" && r2->error->what == "insufficient funds" &&
                    r2->compensated == std::vector<std::string>{"reserve-inventory", "create-order"} &&
                    orders.orders["order-1"] == "approved" && orders.orders["order-2"] == "rejected" &&
                    inventory.stock["book"] == 8 && payment.balances["alice"] == 40 && payment.balances["bob"] == 20 &&
                    shipping.shipments == std::vector<std::string>{"order-1"};
    if (!ok) {
        std::cout << "FAILED: order-2's payment was not compensated as shown\n";
        return 1;
    }
    return 0;
}

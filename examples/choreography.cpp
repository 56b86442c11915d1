// The order flow as choreography: no controller. Four services, each with its own store
// (a std::map of its own), publish domain events on the "events" topic exchange when their
// state changes and react to each other's:
//
//   order      places an order                       -> order.created
//   payment    order.created: charges the card        -> payment.completed | payment.failed
//   inventory  order.created: notes the order lines;
//              payment.completed: reserves the stock  -> inventory.reserved
//              payment.failed: forgets the lines
//   shipping   inventory.reserved: books a carrier    -> shipment.scheduled
//   order      every other event: moves the order on
//
// Each event carries the order id as correlation_id and the message_id of the event it
// reacts to as causation_id; each service consumes its own queue through an
// idempotent_consumer (warren::event_subscriber), so an event that comes twice is handled
// once. Order 2's payment.completed is sent twice with one message_id (the payment service
// did not learn that its first publish got through, and retried): the inventory reserves
// its stock once, and the order service moves the order on once. An audit queue bound to
// "#" prints every event as it is published (a synchronous consumer: its callback runs
// inside the publish), repeats included.
//
// One single-threaded warren::broker; broker.dispatch() runs every service's handlers.

#include <cstddef>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <warren/patterns/domain_events.hpp>
#include <warren/warren.hpp>

namespace {

using event = warren::event_subscriber<warren::broker>::event;

/// The value of `key` in a body of "key=value" words separated by spaces.
std::string field(std::string_view body, std::string_view key) {
    std::size_t at = 0;
    while (at < body.size()) {
        std::size_t end = body.find(' ', at);
        if (end == std::string_view::npos) end = body.size();
        const std::string_view word = body.substr(at, end - at);
        if (word.size() > key.size() && word.starts_with(key) && word[key.size()] == '=') {
            return std::string(word.substr(key.size() + 1));
        }
        at = end + 1;
    }
    return {};
}

std::string money(std::int64_t cents) {
    return std::to_string(cents / 100) + "." + (cents % 100 < 10 ? "0" : "") + std::to_string(cents % 100);
}

void say(std::string_view service, const std::string& what) {
    std::cout << "  " << std::left << std::setw(10) << service << what << '\n';
}

/// Owns the orders: places them and follows what the others say about them.
class order_service {
public:
    struct order {
        std::string item;
        int quantity = 0;
        std::int64_t amount = 0;
        std::string status;
        std::vector<std::string> history; ///< the events seen, in order
    };

    explicit order_service(warren::broker& broker)
        : events_(broker, "events", {.source = "order"}), inbox_(broker, "order-service") {
        inbox_.on("payment.completed", [this](const event& e) { move_on(e, "paid"); })
            .on("payment.failed", [this](const event& e) { move_on(e, "cancelled (" + field(e.body(), "reason") + ")"); })
            .on("inventory.reserved", [this](const event& e) { move_on(e, "reserved"); })
            .on("shipment.scheduled", [this](const event& e) { move_on(e, "shipped"); });
        inbox_.start();
    }

    void place(const std::string& id, const std::string& item, int quantity, std::int64_t amount,
               const std::string& card) {
        orders_[id] = {item, quantity, amount, "pending", {"order.created"}};
        say("order", id + ": " + std::to_string(quantity) + " x " + item + ", " + money(amount) + " -> order.created");
        (void)events_.publish("order.created",
                              "item=" + item + " qty=" + std::to_string(quantity) + " amount=" + std::to_string(amount) +
                                  " card=" + card,
                              {.correlation_id = id, .message_id = id + "/order.created"});
    }

    [[nodiscard]] const std::map<std::string, order>& orders() const noexcept { return orders_; }
    [[nodiscard]] const warren::event_subscriber<warren::broker>& inbox() const noexcept { return inbox_; }

private:
    void move_on(const event& e, std::string status) {
        auto& o = orders_.at(std::string(e.correlation_id()));
        o.history.emplace_back(e.name());
        o.status = std::move(status);
        say("order", std::string(e.correlation_id()) + " is " + o.status);
    }

    warren::event_publisher<warren::broker> events_;
    warren::event_subscriber<warren::broker> inbox_;
    std::map<std::string, order> orders_;
};

/// Charges cards. Declines card 0000, and anything over its limit.
class payment_service {
public:
    explicit payment_service(warren::broker& broker)
        : events_(broker, "events", {.source = "payment"}), inbox_(broker, "payment-service") {
        inbox_.on("order.created", [this](const event& e) { charge(e); });
        inbox_.start();
    }

    /// The next payment.completed is published twice with its one message_id.
    void retry_next_publish() noexcept { retry_next_ = true; }

    [[nodiscard]] const std::map<std::string, std::string>& payments() const noexcept { return payments_; }

private:
    void charge(const event& e) {
        const std::string order(e.correlation_id());
        const std::int64_t amount = std::stoll(field(e.body(), "amount"));
        // The message id says which step of which order this is, so a publish repeated
        // after a crash or a lost confirm is recognised downstream as the same event.
        const std::string id = order + "/payment";
        if (field(e.body(), "card") == "0000" || amount > limit) {
            payments_[order] = "declined";
            say("payment", order + ": card declined -> payment.failed");
            (void)events_.publish_after(e, "payment.failed", "reason=card-declined", id);
            return;
        }
        payments_[order] = "charged " + money(amount);
        say("payment", order + ": charged " + money(amount) + " -> payment.completed");
        (void)events_.publish_after(e, "payment.completed", "amount=" + std::to_string(amount), id);
        if (retry_next_) {
            retry_next_ = false;
            say("payment", order + ": no confirm seen, publishing payment.completed again (same message_id)");
            (void)events_.publish_after(e, "payment.completed", "amount=" + std::to_string(amount), id);
        }
    }

    static constexpr std::int64_t limit = 100'00;
    warren::event_publisher<warren::broker> events_;
    warren::event_subscriber<warren::broker> inbox_;
    std::map<std::string, std::string> payments_;
    bool retry_next_ = false;
};

/// Keeps the stock; reserves an order's lines once it is paid.
class inventory_service {
public:
    explicit inventory_service(warren::broker& broker)
        : events_(broker, "events", {.source = "inventory"}), inbox_(broker, "inventory-service") {
        inbox_
            .on("order.created",
                [this](const event& e) {
                    lines_[std::string(e.correlation_id())] = {field(e.body(), "item"), std::stoi(field(e.body(), "qty"))};
                })
            .on("payment.completed", [this](const event& e) { reserve(e); })
            .on("payment.failed", [this](const event& e) {
                lines_.erase(std::string(e.correlation_id()));
                say("inventory", std::string(e.correlation_id()) + ": nothing to reserve, lines dropped");
            });
        inbox_.start();
    }

    [[nodiscard]] const std::map<std::string, int>& stock() const noexcept { return stock_; }
    [[nodiscard]] std::size_t pending_lines() const noexcept { return lines_.size(); }
    [[nodiscard]] const warren::event_subscriber<warren::broker>& inbox() const noexcept { return inbox_; }

private:
    struct line {
        std::string item;
        int quantity = 0;
    };

    void reserve(const event& e) {
        const std::string order(e.correlation_id());
        const auto found = lines_.find(order);
        if (found == lines_.end()) return; // order.created not seen: nothing to reserve
        stock_.at(found->second.item) -= found->second.quantity;
        say("inventory", order + ": reserved " + std::to_string(found->second.quantity) + " x " + found->second.item +
                             " (" + std::to_string(stock_.at(found->second.item)) + " left) -> inventory.reserved");
        lines_.erase(found);
        (void)events_.publish_after(e, "inventory.reserved", "", order + "/inventory");
    }

    warren::event_publisher<warren::broker> events_;
    warren::event_subscriber<warren::broker> inbox_;
    std::map<std::string, int> stock_{{"book", 10}, {"lamp", 5}, {"chair", 3}};
    std::map<std::string, line> lines_;
};

/// Books carriers for reserved orders.
class shipping_service {
public:
    explicit shipping_service(warren::broker& broker)
        : events_(broker, "events", {.source = "shipping"}), inbox_(broker, "shipping-service") {
        inbox_.on("inventory.reserved", [this](const event& e) {
            const std::string order(e.correlation_id());
            const std::string shipment = "SHP-" + std::to_string(shipments_.size() + 1);
            shipments_[order] = shipment;
            say("shipping", order + ": " + shipment + " booked -> shipment.scheduled");
            (void)events_.publish_after(e, "shipment.scheduled", "shipment=" + shipment, order + "/shipping");
        });
        inbox_.start();
    }

    [[nodiscard]] const std::map<std::string, std::string>& shipments() const noexcept { return shipments_; }

private:
    warren::event_publisher<warren::broker> events_;
    warren::event_subscriber<warren::broker> inbox_;
    std::map<std::string, std::string> shipments_;
};

} // namespace

int main() {
    warren::broker broker;
    // The audit tap: every event on the exchange, as it flows (not deduplicated).
    broker.declare_exchange("events", "topic", {.durable = true});
    broker.declare_queue("audit");
    broker.bind_queue("audit", "events", "#");
    std::map<std::string, int> copies; // of each message_id
    auto audit = broker.subscribe(
        "audit",
        [&](warren::delivery& d) {
        const event e(d);
        const int n = ++copies[std::string(e.message_id())];
        std::cout << "[event] " << std::left << std::setw(19) << e.name() << " order " << e.correlation_id()
                  << "  id " << e.message_id();
        if (!e.causation_id().empty()) std::cout << "  after " << e.causation_id();
        if (n > 1) std::cout << "  (copy " << n << ")";
        std::cout << '\n';
        },
        {.synchronous = true});

    order_service orders(broker);
    payment_service payment(broker);
    inventory_service inventory(broker);
    shipping_service shipping(broker);

    // Runs every handler until no event is left, then says which services took a repeat.
    auto run = [&] {
        const std::size_t orders_before = orders.inbox().duplicates();
        const std::size_t inventory_before = inventory.inbox().duplicates();
        while (broker.dispatch() != 0) {
        }
        if (orders.inbox().duplicates() != orders_before) say("order", "a repeated event acked, not handled again");
        if (inventory.inbox().duplicates() != inventory_before) {
            say("inventory", "a repeated event acked, not handled again");
        }
    };

    std::cout << "-- order-1: paid, reserved, shipped\n";
    orders.place("order-1", "book", 2, 30'00, "4242");
    run();
    std::cout << "-- order-2: payment.completed comes twice\n";
    payment.retry_next_publish();
    orders.place("order-2", "lamp", 1, 45'00, "4242");
    run();
    std::cout << "-- order-3: the card is declined\n";
    orders.place("order-3", "chair", 1, 120'00, "0000");
    run();

    std::cout << "-- final state\n";
    for (const auto& [id, o] : orders.orders()) {
        std::cout << "  " << id << ": " << o.status << "  (";
        for (std::size_t i = 0; i < o.history.size(); ++i) std::cout << (i ? ", " : "") << o.history[i];
        std::cout << ")\n";
    }
    for (const auto& [item, left] : inventory.stock()) std::cout << "  stock " << item << ": " << left << '\n';
    std::cout << "  inventory handled " << inventory.inbox().handled() << " events, acked "
              << inventory.inbox().duplicates() << " duplicate unhandled\n";

    const auto& o = orders.orders();
    const std::vector<std::string> shipped_history{"order.created", "payment.completed", "inventory.reserved",
                                                   "shipment.scheduled"};
    bool ok = o.size() == 3 && o.at("order-1").status == "shipped" && o.at("order-2").status == "shipped" &&
              o.at("order-3").status == "cancelled (card-declined)" && o.at("order-1").history == shipped_history &&
              o.at("order-2").history == shipped_history &&
              o.at("order-3").history == std::vector<std::string>{"order.created", "payment.failed"};
    ok &= payment.payments() == std::map<std::string, std::string>{
                                    {"order-1", "charged 30.00"}, {"order-2", "charged 45.00"}, {"order-3", "declined"}};
    // Reserved once each, the repeated payment.completed of order-2 included.
    ok &= inventory.stock() == std::map<std::string, int>{{"book", 8}, {"lamp", 4}, {"chair", 3}};
    ok &= inventory.pending_lines() == 0 && inventory.inbox().duplicates() == 1;
    ok &= shipping.shipments() == std::map<std::string, std::string>{{"order-1", "SHP-1"}, {"order-2", "SHP-2"}};
    // The order service got the repeat too (it listens to payment.completed) and took it once.
    ok &= orders.inbox().duplicates() == 1;
    ok &= copies.at("order-2/payment") == 2;
    for (const char* q : {"audit", "order-service", "payment-service", "inventory-service", "shipping-service"}) {
        const auto stats = broker.queue_stats(q);
        ok &= stats.ready == 0 && stats.unacked == 0;
    }
    if (!ok) {
        std::cout << "FAILED: the orders, payments, stock or shipments are not what the events should have made them\n";
        return 1;
    }
    return 0;
}

// The order flow as orchestration: an order service (the composite) drives payment,
// inventory and shipping, each an rpc_server with its own in-memory store, by
// request/reply through warren::orchestrator.
//
// For each order the order service first asks in parallel (a scatter-gather with a
// 200 ms deadline) whether the item is in stock and what shipping costs, then runs a
// sequence: payment -> reserve -> ship, each step's request made from the reply before
// it. Failures are answers, not exceptions: a service refuses with an error reply
// (warren::service_failure thrown in a handler wrapped by answering_errors), and the
// sequence stops at the step that failed. The shipping service crashes once after
// shipping but before replying: the orchestrator's call times out and is retried with
// the same message_id, and shipping, which remembers the message_ids it handled,
// answers the retry with the same tracking number instead of shipping twice.
//
// One single-threaded broker and a manual clock: the services run inside dispatch(),
// timeouts and retries inside poll(), and the loop moves simulation time to whatever is
// due next, so every run prints the same trace.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <warren/patterns/orchestrator.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/patterns/service_error.hpp>
#include <warren/warren.hpp>

using namespace std::chrono_literals;

namespace {

using orchestrator = warren::orchestrator<warren::broker>;

warren::manual_clock sim_time;

/// "[ 150 ms] " on the simulation clock.
std::ostream& log() {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(sim_time.elapsed()).count();
    return std::cout << '[' << std::setw(4) << ms << " ms] ";
}

/// "a:b:c" -> {"a", "b", "c"}.
std::vector<std::string> fields(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    for (std::string part; std::getline(in, part, ':');) out.push_back(part);
    return out;
}

/// Payment: accounts by customer. "charge:<order>:<customer>:<amount>" -> "paid:<order>".
class payment_service {
public:
    explicit payment_service(warren::broker& b)
        : server_(declared(b, "payment"), "payment",
                  warren::answering_errors([this](const warren::delivery& d) { return charge(d.body()); })) {}

    std::map<std::string, int> accounts{{"alice", 100}, {"bob", 10}};

private:
    std::string charge(const std::string& request) {
        const auto f = fields(request); // charge, order, customer, amount
        const int amount = std::stoi(f.at(3));
        int& balance = accounts[f.at(2)];
        if (balance < amount) {
            log() << "  payment:   " << f.at(2) << " has " << balance << ", " << f.at(1) << " costs " << amount
                  << ": refused\n";
            throw warren::service_failure("insufficient funds");
        }
        balance -= amount;
        log() << "  payment:   charged " << f.at(2) << ' ' << amount << " for " << f.at(1) << " (balance " << balance
              << ")\n";
        return "paid:" + f.at(1);
    }
    static warren::broker& declared(warren::broker& b, const char* queue) {
        b.declare_queue(queue);
        return b;
    }

    warren::rpc_server<warren::broker> server_;
};

/// Inventory: stock and prices by item, reservations by order.
/// "check:<item>:<qty>" -> "<unit price>"; "reserve:<order>:<item>:<qty>" -> "R<n>".
class inventory_service {
public:
    explicit inventory_service(warren::broker& b)
        : server_(declared(b), "inventory",
                  warren::answering_errors([this](const warren::delivery& d) { return handle(d.body()); })) {}

    std::map<std::string, int> stock{{"book", 3}, {"lamp", 0}};
    std::map<std::string, int> prices{{"book", 20}, {"lamp", 35}};
    std::map<std::string, std::string> reservations; // order -> reservation

private:
    std::string handle(const std::string& request) {
        const auto f = fields(request);
        if (f.at(0) == "check") {
            const int qty = std::stoi(f.at(2));
            const bool enough = stock[f.at(1)] >= qty;
            log() << "  inventory: " << f.at(1) << " x" << qty << (enough ? " in stock" : " out of stock") << '\n';
            if (!enough) throw warren::service_failure(f.at(1) + " out of stock");
            return std::to_string(prices.at(f.at(1)));
        }
        const int qty = std::stoi(f.at(3)); // reserve, order, item, qty
        if (stock[f.at(2)] < qty) throw warren::service_failure(f.at(2) + " out of stock");
        stock[f.at(2)] -= qty;
        const std::string id = "R" + std::to_string(reservations.size() + 1);
        reservations[f.at(1)] = id;
        log() << "  inventory: reserved " << f.at(2) << " x" << qty << " for " << f.at(1) << " as " << id << '\n';
        return id;
    }
    static warren::broker& declared(warren::broker& b) {
        b.declare_queue("inventory");
        return b;
    }

    warren::rpc_server<warren::broker> server_;
};

/// Shipping: quotes, and shipments by order. "quote:<item>" -> "<cost>";
/// "ship:<order>:<reservation>" -> "T<n>". Crashes once, after shipping and before replying.
/// Idempotent: a request whose message_id it already handled gets the same answer again.
class shipping_service {
public:
    explicit shipping_service(warren::broker& b)
        : server_(declared(b), "shipping", [this](const warren::delivery& d) { return handle(d); }) {}

    std::map<std::string, std::string> shipments; // order -> tracking number
    std::map<std::string, std::string> answered;  // message_id -> reply
    int ship_requests = 0;

private:
    std::string handle(const warren::delivery& d) {
        const auto f = fields(d.body());
        if (f.at(0) == "quote") {
            log() << "  shipping:  quote for " << f.at(1) << ": 5\n";
            return "5";
        }
        ++ship_requests;
        const std::string id = d.properties().message_id.value_or("");
        if (const auto seen = answered.find(id); seen != answered.end()) {
            log() << "  shipping:  " << f.at(1) << " again (message_id seen): already shipped as " << seen->second
                  << ", not shipping twice\n";
            return seen->second;
        }
        const std::string tracking = "T" + std::to_string(shipments.size() + 1);
        shipments[f.at(1)] = tracking;
        answered[id] = tracking;
        log() << "  shipping:  shipped " << f.at(1) << " (" << f.at(2) << ") as " << tracking << '\n';
        if (!crashed_) {
            crashed_ = true;
            log() << "  shipping:  crashes before replying\n";
            throw std::runtime_error("shipping crashed");
        }
        return tracking;
    }
    static warren::broker& declared(warren::broker& b) {
        b.declare_queue("shipping");
        return b;
    }

    bool crashed_ = false;
    warren::rpc_server<warren::broker> server_;
};

/// A request of `body` whose every attempt carries `message_id` (the order and the step),
/// by which the service can tell a retry from a new request.
warren::message with_id(std::string body, std::string message_id) {
    warren::message m{.routing_key = {}, .body = std::move(body)};
    m.properties.message_id = std::move(message_id);
    return m;
}

const char* status_text(warren::call_status s) {
    switch (s) {
    case warren::call_status::replied: return "replied";
    case warren::call_status::service_error: return "error reply";
    case warren::call_status::timed_out: return "timed out";
    case warren::call_status::unroutable: return "unroutable";
    case warren::call_status::cancelled: return "cancelled";
    }
    return "?";
}

struct order {
    std::string id;
    std::string customer;
    std::string item;
    int qty = 1;
};

/// The composite: its own store of order states, and the orchestrator it calls through.
class order_service {
public:
    explicit order_service(warren::broker& b) : orchestrator_(b) {}

    /// Starts the flow of `o`; `done` is set when it has ended.
    void place(const order& o, bool& done) {
        log() << o.id << ": " << o.customer << " orders " << o.qty << " x " << o.item << '\n';
        states[o.id] = "checking";
        const warren::call_options quick{.timeout = 100ms};
        orchestrator_.scatter_gather(
            {{"inventory", with_id("check:" + o.item + ":" + std::to_string(o.qty), o.id + "/check"), quick},
             {"shipping", with_id("quote:" + o.item, o.id + "/quote"), quick}},
            {.deadline = 200ms}, [this, o, &done](warren::gather_result<> g) {
                log() << o.id << ": gathered " << g.replied() << " of " << g.results().size() << " answers ("
                      << g.failed() << " failed, " << g.timed_out() << " timed out)\n";
                if (!g.complete()) {
                    for (const auto& r : g.results()) {
                        if (!r.ok()) log() << o.id << ":   " << r.error().what() << '\n';
                    }
                    finish(o, "rejected before payment", done);
                    return;
                }
                const int amount = std::stoi(g[0].reply().body) * o.qty + std::stoi(g[1].reply().body);
                pay_reserve_ship(o, amount, done);
            });
    }

    /// Runs the broker until `done`: delivers what is ready, applies time, and otherwise
    /// moves the simulation clock to the next timeout or retry.
    bool run_until(warren::broker& b, const bool& done) {
        while (!done) {
            if (b.dispatch() != 0) continue;
            if (orchestrator_.poll() != 0) continue;
            const auto due = orchestrator_.next_due();
            if (!due) return false; // nothing can happen any more
            sim_time.advance(*due - sim_time.now());
        }
        return true;
    }
    [[nodiscard]] const orchestrator& calls() const noexcept { return orchestrator_; }

    std::map<std::string, std::string> states;       // order -> state
    std::optional<warren::call_result<>> last_ship; // the ship call of the last sequence that got there

private:
    void pay_reserve_ship(const order& o, int amount, bool& done) {
        states[o.id] = "paying";
        using step = orchestrator::step;
        // Shipping may be slow to answer: retried twice, 50 ms then 100 ms after a timeout.
        const warren::call_options retried{.timeout = 100ms, .retry = warren::retry_policy::exponential(3, 50ms)};
        orchestrator_.call_sequence(
            {.routing_key = {}, .body = o.id},
            {step{"payment",
                  [o, amount](const warren::message&) {
                      return with_id("charge:" + o.id + ":" + o.customer + ":" + std::to_string(amount), o.id + "/pay");
                  },
                  {.timeout = 100ms}},
             step{"inventory",
                  [o](const warren::message&) {
                      return with_id("reserve:" + o.id + ":" + o.item + ":" + std::to_string(o.qty), o.id + "/reserve");
                  },
                  {.timeout = 100ms}},
             step{"shipping",
                  [o](const warren::message& reserved) {
                      return with_id("ship:" + o.id + ":" + reserved.body, o.id + "/ship");
                  },
                  retried}},
            [this, o, &done](warren::sequence_result<> s) {
                for (const auto& c : s.calls()) {
                    log() << o.id << ":   " << c.service() << ": " << (c.ok() ? c.reply().body : "failed") << ", sent at";
                    for (const auto& a : c.history()) {
                        std::cout << ' ' << std::chrono::duration_cast<std::chrono::milliseconds>(a.sent_at.time_since_epoch()).count()
                                  << " ms (" << status_text(a.outcome) << ')';
                    }
                    std::cout << '\n';
                }
                if (s.calls().size() == 3) last_ship = s.calls()[2];
                if (s.ok()) {
                    finish(o, "shipped as " + s.reply().body, done);
                } else {
                    log() << o.id << ":   " << s.error().what() << '\n';
                    finish(o, "rejected at step " + std::to_string(*s.failed_step() + 1) + " (" +
                                  s.calls().back().service() + ")",
                           done);
                }
            });
    }
    void finish(const order& o, const std::string& state, bool& done) {
        states[o.id] = state;
        log() << o.id << ": " << state << '\n';
        done = true;
    }

    orchestrator orchestrator_;
};

} // namespace

int main() {
    warren::broker broker(sim_time);
    broker.set_error_handler([](const warren::consumer_error& e) {
        try {
            std::rethrow_exception(e.exception);
        } catch (const std::exception& what) {
            log() << "  (broker: consumer of '" << e.queue << "' threw: " << what.what() << "; request rejected)\n";
        }
    });
    payment_service payment(broker);
    inventory_service inventory(broker);
    shipping_service shipping(broker);
    order_service orders(broker);

    bool ran = true;
    for (const order& o : {order{"order-1", "alice", "book", 1}, order{"order-2", "bob", "book", 1},
                           order{"order-3", "alice", "lamp", 1}}) {
        bool done = false;
        orders.place(o, done);
        ran &= orders.run_until(broker, done);
        std::cout << '\n';
    }

    std::cout << "orders:";
    for (const auto& [id, state] : orders.states) std::cout << "  " << id << " " << state << ';';
    std::cout << "\naccounts: alice " << payment.accounts["alice"] << ", bob " << payment.accounts["bob"]
              << "; stock: book " << inventory.stock["book"] << ", lamp " << inventory.stock["lamp"]
              << "; shipments: " << shipping.shipments.size() << " (from " << shipping.ship_requests
              << " ship requests); late replies: " << orders.calls().late_replies() << '\n';

    const bool ok = ran && orders.states["order-1"] == "shipped as T1" &&
                    orders.states["order-2"] == "rejected at step 1 (payment)" &&
                    orders.states["order-3"] == "rejected before payment" && payment.accounts["alice"] == 75 &&
                    payment.accounts["bob"] == 10 && inventory.stock["book"] == 2 && inventory.stock["lamp"] == 0 &&
                    inventory.reservations.size() == 1 && shipping.shipments.size() == 1 &&
                    shipping.ship_requests == 2 && orders.last_ship && orders.last_ship->attempts() == 2 &&
                    orders.last_ship->history()[1].sent_at.time_since_epoch() == 150ms;
    if (!ok) {
        std::cout << "FAILED: the orders did not end as the trace should show (order-1 shipped once after a retry, "
                     "order-2 refused by payment, order-3 out of stock)\n";
        return 1;
    }
    return 0;
}

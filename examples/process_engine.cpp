// The order flow as a process engine workflow (issue 13, 6 c).
//
// Four services (order, payment, inventory, shipping), each with its own in-memory store,
// do their work as task workers (warren::task_worker): they consume their task queues and
// publish a completion or failure event back. The engine (warren::process_engine) holds
// the flow: it publishes each step's task, reacts to the events, retries the flaky
// payment gateway with an exponential backoff, runs inventory and payment in parallel (a
// fork and its join), chooses express or standard shipping (a decision), and, when a
// step fails for good, compensates the completed steps in reverse order and starts the
// cancellation workflow. Everything it did is in each instance's history, printed at the
// end: asynchronous like choreography, visible like orchestration.
//
// Time is a manual clock, so the run (and its output) is the same every time: each
// worker moves it on by the time its work takes, and the loop delivers what is ready,
// then moves the clock to the engine's next timer and polls.

#include <chrono>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

#include <warren/patterns/process_engine.hpp>
#include <warren/warren.hpp>

using namespace std::chrono_literals;
using worker = warren::task_worker<warren::broker>;

namespace {

/// The order service: its orders and their states.
struct order_service {
    std::map<std::string, std::string> orders; // id -> state
    worker create, confirm, cancel;
    order_service(warren::broker& b, warren::manual_clock& time)
        : create(b, "order.create", [this, &time](const warren::workflow_task& t) {
              time.advance(5ms); // the work takes time
              orders[t.input.at("order_id")] = "created";
              std::cout << "  [order]     " << t.input.at("order_id") << " created\n";
          }),
          confirm(b, "order.confirm", [this, &time](const warren::workflow_task& t) {
              time.advance(5ms); // the work takes time
              orders[t.input.at("order_id")] = "confirmed";
              std::cout << "  [order]     " << t.input.at("order_id") << " confirmed, " << t.input.at("tracking") << '\n';
          }),
          cancel(b, "order.cancel", [this, &time](const warren::workflow_task& t) {
              time.advance(5ms); // the work takes time
              orders[t.input.at("order_id")] = "cancelled";
              std::cout << "  [order]     " << t.input.at("order_id") << " cancelled: " << t.input.at("reason") << '\n';
          }) {}
};

/// The payment service: a gateway that times out on the first try of every charge.
struct payment_service {
    std::map<std::string, std::int64_t> balance; // order id -> amount held
    int gateway_calls = 0;
    worker charge, refund;
    payment_service(warren::broker& b, warren::manual_clock& time)
        : charge(b, "payment.charge", [this, &time](const warren::workflow_task& t) {
              time.advance(30ms); // the work takes time
              ++gateway_calls;
              if (t.attempt == 1) {
                  std::cout << "  [payment]   " << t.input.at("order_id") << " attempt 1: gateway timeout\n";
                  throw std::runtime_error("payment gateway timeout");
              }
              balance[t.input.at("order_id")] += std::stoll(t.input.at("amount"));
              std::cout << "  [payment]   " << t.input.at("order_id") << " attempt " << t.attempt << ": charged "
                        << t.input.at("amount") << '\n';
              return warren::workflow_data{{"payment_id", "pay-" + t.input.at("order_id")}};
          }),
          refund(b, "payment.refund", [this, &time](const warren::workflow_task& t) {
              time.advance(20ms); // the work takes time
              balance[t.input.at("order_id")] -= std::stoll(t.input.at("amount"));
              std::cout << "  [payment]   " << t.input.at("order_id") << " refunded " << t.input.at("amount") << '\n';
          }) {}
};

/// The inventory service: stock per item.
struct inventory_service {
    std::map<std::string, int> stock{{"book", 5}, {"lamp", 2}};
    worker reserve, release;
    inventory_service(warren::broker& b, warren::manual_clock& time)
        : reserve(b, "inventory.reserve", [this, &time](const warren::workflow_task& t) {
              time.advance(10ms); // the work takes time
              const std::string& item = t.input.at("item");
              if (stock[item] == 0) throw std::runtime_error("out of stock: " + item);
              --stock[item];
              std::cout << "  [inventory] " << t.input.at("order_id") << " reserved one " << item << '\n';
          }),
          release(b, "inventory.release", [this, &time](const warren::workflow_task& t) {
              time.advance(10ms); // the work takes time
              ++stock[t.input.at("item")];
              std::cout << "  [inventory] " << t.input.at("order_id") << " released one " << t.input.at("item") << '\n';
          }) {}
};

/// The shipping service: express by courier, standard by post; no post to the moon.
struct shipping_service {
    std::map<std::string, std::string> shipments; // order id -> how
    worker express, standard;
    shipping_service(warren::broker& b, warren::manual_clock& time)
        : express(b, "shipping.express", [this, &time](const warren::workflow_task& t) {
              time.advance(50ms); // the work takes time
              shipments[t.input.at("order_id")] = "courier";
              std::cout << "  [shipping]  " << t.input.at("order_id") << " sent by courier\n";
              return warren::workflow_data{{"tracking", "EX-" + t.input.at("order_id")}};
          }),
          standard(b, "shipping.standard", [this, &time](const warren::workflow_task& t) {
              time.advance(40ms); // the work takes time
              if (t.input.at("address") == "moon") throw std::runtime_error("no post to the moon");
              shipments[t.input.at("order_id")] = "post";
              std::cout << "  [shipping]  " << t.input.at("order_id") << " sent by post\n";
              return warren::workflow_data{{"tracking", "ST-" + t.input.at("order_id")}};
          }) {}
};

warren::broker& with_queues(warren::broker& b) {
    for (const char* q : {"order.create", "order.confirm", "order.cancel", "payment.charge", "payment.refund",
                          "inventory.reserve", "inventory.release", "shipping.express", "shipping.standard"}) {
        b.declare_queue(q);
    }
    return b;
}

warren::workflow_definition order_fulfilment() {
    return {
        .name = "order_fulfilment",
        .version = 1,
        .steps =
            {
                warren::task_step{.name = "create_order", .queue = "order.create"},
                warren::fork_step{
                    .name = "reserve_and_charge",
                    .branches =
                        {
                            {.name = "inventory",
                             .steps = {warren::task_step{.name = "reserve_stock",
                                                         .queue = "inventory.reserve",
                                                         .compensation_queue = "inventory.release"}}},
                            {.name = "payment",
                             .steps = {warren::task_step{.name = "charge_payment",
                                                         .queue = "payment.charge",
                                                         .retry = warren::retry_policy::exponential(3, 100ms),
                                                         .timeout = 2s,
                                                         .compensation_queue = "payment.refund"}}},
                        }},
                warren::decision_step{
                    .name = "shipping_speed",
                    .key = "shipping",
                    .cases = {{.name = "express",
                               .steps = {warren::task_step{.name = "ship_express", .queue = "shipping.express"}}}},
                    .otherwise = {warren::task_step{.name = "ship_standard", .queue = "shipping.standard"}}},
                warren::task_step{.name = "confirm_order", .queue = "order.confirm"},
            },
        .timeout = 1min,
        .failure_workflow = "order_cancellation",
    };
}

warren::workflow_definition order_cancellation() {
    return {.name = "order_cancellation", .steps = {warren::task_step{.name = "cancel_order", .queue = "order.cancel"}}};
}

void print_history(const warren::process_engine<warren::broker>& engine, const std::string& id) {
    const auto inst = engine.find(id);
    std::cout << "history of " << id << " (" << inst->workflow << " v" << inst->version
              << "): " << warren::to_string(inst->status) << '\n';
    for (const auto& h : inst->history) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(h.at.time_since_epoch()).count();
        std::cout << "  " << std::setw(6) << ms << " ms  " << std::left << std::setw(19) << (h.step.empty() ? "-" : h.step)
                  << std::setw(3) << (h.attempt ? std::to_string(h.attempt) : "");
        if (h.detail.empty()) {
            std::cout << warren::to_string(h.event) << std::right << '\n';
        } else {
            std::cout << std::setw(25) << warren::to_string(h.event) << std::right << h.detail << '\n';
        }
    }
}

} // namespace

int main() {
    warren::manual_clock time;
    warren::broker broker(time);
    warren::memory_store store;
    warren::process_engine engine(with_queues(broker), store);
    engine.register_workflow(order_fulfilment());
    engine.register_workflow(order_cancellation());
    order_service orders(broker, time);
    payment_service payments(broker, time);
    inventory_service inventory(broker, time);
    shipping_service shipping(broker, time);

    std::cout << " [x] order A-1: a book, express\n";
    const std::string a = engine.start("order_fulfilment", {{"order_id", "A-1"}, {"item", "book"}, {"amount", "25"},
                                                            {"shipping", "express"}, {"address", "Baker Street"}});
    std::cout << " [x] order B-2: a lamp, standard, to the moon\n";
    const std::string b = engine.start("order_fulfilment", {{"order_id", "B-2"}, {"item", "lamp"}, {"amount", "40"},
                                                            {"shipping", "standard"}, {"address", "moon"}});

    // The loop an application runs: deliver what is ready, then wait for the next timer.
    while (true) {
        while (broker.dispatch() != 0) {
        }
        const auto due = engine.next_due();
        if (engine.instances(warren::workflow_status::running).empty() &&
            engine.instances(warren::workflow_status::compensating).empty()) {
            break;
        }
        if (!due) break; // stuck: nothing in flight will ever time out (the checks below fail)
        if (*due > time.now()) time.advance(*due - time.now());
        (void)engine.poll();
    }

    std::cout << '\n';
    print_history(engine, a);
    print_history(engine, b);
    const auto ia = engine.find(a);
    const auto ib = engine.find(b);
    const std::string cancellation = ib->failure_instance;
    std::cout << "order states: A-1 " << orders.orders["A-1"] << ", B-2 " << orders.orders["B-2"] << "; stock: book "
              << inventory.stock["book"] << ", lamp " << inventory.stock["lamp"] << "; held: A-1 "
              << payments.balance["A-1"] << ", B-2 " << payments.balance["B-2"] << "; gateway calls "
              << payments.gateway_calls << '\n';

    bool ok = ia->status == warren::workflow_status::completed && orders.orders["A-1"] == "confirmed" &&
              shipping.shipments["A-1"] == "courier" && ia->data.at("tracking") == "EX-A-1" &&
              ia->find_step("charge_payment")->attempt == 2 && ia->find_step("shipping_speed")->branch == "express" &&
              payments.balance["A-1"] == 25 && inventory.stock["book"] == 4;
    ok = ok && ib->status == warren::workflow_status::failed && ib->failed_step == "ship_standard" &&
         ib->find_step("charge_payment")->status == warren::step_status::compensated &&
         ib->find_step("reserve_stock")->status == warren::step_status::compensated &&
         payments.balance["B-2"] == 0 && inventory.stock["lamp"] == 2 && shipping.shipments.count("B-2") == 0 &&
         !cancellation.empty() && engine.status(cancellation) == warren::workflow_status::completed &&
         orders.orders["B-2"] == "cancelled";
    ok = ok && payments.gateway_calls == 4 && engine.stale_events() == 0;
    if (!ok) {
        std::cout << "FAILED: A-1 should be confirmed and sent by courier after one payment retry; B-2 should be "
                     "refunded, released and cancelled\n";
        return 1;
    }
    return 0;
}

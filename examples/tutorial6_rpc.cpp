// RabbitMQ tutorial 6, "Remote procedure call (RPC)", on warren.
// https://www.rabbitmq.com/tutorials/tutorial-six-python
//
// rpc_server consumes "rpc_queue" (prefetch 1, manual acks), computes fib(n) and publishes
// the answer to the default exchange with routing key = the request's reply_to and the
// request's correlation_id. The client declares an exclusive server-named callback queue,
// sends requests carrying reply_to and a fresh correlation_id, and waits for the reply
// whose correlation_id matches, discarding any other (the tutorial's "why ignore unknown
// correlation ids" case is shown with a stale reply).
//
// Client and server share one single-threaded broker: where the Python client calls
// connection.process_data_events(), this one calls broker.dispatch(), which runs the
// server's callback and then the client's.

#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include <warren/warren.hpp>

namespace {

std::uint64_t fib(std::uint64_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

/// rpc_server.py
class fibonacci_rpc_server {
public:
    explicit fibonacci_rpc_server(warren::broker& broker) : broker_(broker) {
        broker_.declare_queue("rpc_queue");
        subscription_ = broker_.subscribe(
            "rpc_queue", [this](warren::delivery& request) { on_request(request); },
            {.ack = warren::ack_mode::manual, .prefetch = 1});
        std::cout << " [x] Awaiting RPC requests\n";
    }

private:
    void on_request(warren::delivery& request) {
        const auto n = std::stoull(request.body());
        std::cout << " [.] fib(" << n << ")\n";
        const auto& props = request.properties();
        if (props.reply_to) {
            warren::message reply{.routing_key = *props.reply_to, .body = std::to_string(fib(n))};
            reply.properties.correlation_id = props.correlation_id;
            (void)broker_.publish("", std::move(reply));
        }
        request.ack();
    }

    warren::broker& broker_;
    warren::subscription subscription_;
};

/// rpc_client.py
class fibonacci_rpc_client {
public:
    explicit fibonacci_rpc_client(warren::broker& broker)
        : broker_(broker), callback_queue_(broker.declare_queue("", {.exclusive = true})) {
        subscription_ = broker_.subscribe(callback_queue_, [this](warren::delivery& d) { on_response(d); });
    }

    [[nodiscard]] const std::string& callback_queue() const noexcept { return callback_queue_; }

    /// Sends fib(n) and waits for its answer; nothing if none arrives.
    std::optional<std::uint64_t> call(std::uint64_t n) {
        response_.reset();
        corr_id_ = "corr-" + std::to_string(++calls_); // the tutorial uses uuid4(); unique per call is what matters
        warren::message request{.routing_key = "rpc_queue", .body = std::to_string(n)};
        request.properties.reply_to = callback_queue_;
        request.properties.correlation_id = corr_id_;
        (void)broker_.publish("", std::move(request));
        // process_data_events(), bounded: the answer arrives within the first pass.
        for (int pass = 0; pass < 10 && !response_; ++pass) broker_.dispatch();
        if (!response_) return std::nullopt;
        return std::stoull(*response_);
    }

    int ignored = 0; // replies whose correlation_id was not ours

private:
    void on_response(warren::delivery& d) {
        if (d.properties().correlation_id == corr_id_) {
            response_ = d.body();
        } else {
            std::cout << " [!] ignoring a reply with unknown correlation_id '"
                      << d.properties().correlation_id.value_or("(none)") << "'\n";
            ++ignored;
        }
    }

    warren::broker& broker_;
    std::string callback_queue_;
    warren::subscription subscription_;
    std::optional<std::string> response_;
    std::string corr_id_;
    int calls_ = 0;
};

} // namespace

int main() {
    warren::broker broker;
    fibonacci_rpc_server server(broker);
    fibonacci_rpc_client client(broker);
    std::cout << " [*] client's exclusive callback queue: " << client.callback_queue() << '\n';

    bool ok = client.callback_queue().starts_with("amq.gen-");

    std::cout << " [x] Requesting fib(30)\n";
    const auto fib30 = client.call(30);
    std::cout << " [.] Got " << (fib30 ? std::to_string(*fib30) : "nothing") << '\n';
    ok &= fib30 == 832040U;

    // A late reply to a request the client gave up on (say, the server restarted before
    // acking and answered twice): the client must not take it for the next call's answer.
    warren::message stale{.routing_key = client.callback_queue(), .body = "999"};
    stale.properties.correlation_id = "corr-from-an-earlier-life";
    (void)broker.publish("", std::move(stale));

    std::cout << " [x] Requesting fib(10)\n";
    const auto fib10 = client.call(10);
    std::cout << " [.] Got " << (fib10 ? std::to_string(*fib10) : "nothing") << '\n';
    ok &= fib10 == 55U && client.ignored == 1;

    const auto stats = broker.queue_stats("rpc_queue");
    ok &= stats.acked == 2 && stats.unacked == 0 && stats.ready == 0;
    if (!ok) {
        std::cout << "FAILED: the RPC round trips did not return fib(30) = 832040 and fib(10) = 55\n";
        return 1;
    }
    return 0;
}

// RabbitMQ tutorial 6, "Remote procedure call (RPC)", on warren's rpc_server and rpc_client.
// https://www.rabbitmq.com/tutorials/tutorial-six-python
//
// The server (warren::rpc_server) consumes "rpc_queue" (prefetch 1, manual acks), computes
// fib(n) and publishes the answer to the default exchange with routing key = the
// request's reply_to and the request's correlation_id, then acks the request. The client
// (warren::rpc_client) declares an exclusive server-named callback queue, sends requests
// carrying reply_to and a fresh correlation_id, and takes the reply whose correlation_id
// matches, ignoring (and counting) any other: the tutorial's "why ignore unknown
// correlation ids" case is shown with a stale reply.
//
// Client and server share one single-threaded broker: where the Python client calls
// connection.process_data_events(), call_and_wait() calls broker.dispatch(), which runs
// the server's callback and then the client's.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <utility>

#include <warren/patterns/rpc_client.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/warren.hpp>

namespace {

std::uint64_t fib(std::uint64_t n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

/// rpc_server.py
class fibonacci_rpc_server {
public:
    explicit fibonacci_rpc_server(warren::broker& broker)
        : server_(declared(broker), "rpc_queue", [](const warren::delivery& request) { return on_request(request); },
                  {.prefetch = 1}) {
        std::cout << " [x] Awaiting RPC requests\n";
    }

private:
    static warren::broker& declared(warren::broker& broker) {
        broker.declare_queue("rpc_queue");
        return broker;
    }
    static std::string on_request(const warren::delivery& request) {
        const auto n = std::stoull(request.body());
        std::cout << " [.] fib(" << n << ")\n";
        return std::to_string(fib(n));
    }

    warren::rpc_server<warren::broker> server_;
};

/// rpc_client.py
class fibonacci_rpc_client {
public:
    explicit fibonacci_rpc_client(warren::broker& broker) : client_(broker) {}

    [[nodiscard]] const std::string& callback_queue() const noexcept { return client_.reply_queue(); }

    /// Sends fib(n) and waits for its answer; nothing if none arrives in time.
    std::optional<std::uint64_t> call(std::uint64_t n) {
        const std::size_t ignored_before = client_.unknown_replies();
        std::optional<std::uint64_t> answer;
        try {
            answer = std::stoull(client_.call_and_wait("", "rpc_queue", std::to_string(n), std::chrono::seconds(5)).body);
        } catch (const warren::error& e) {
            std::cout << " [!] " << e.what() << '\n';
        }
        if (client_.unknown_replies() != ignored_before) {
            std::cout << " [!] ignored " << client_.unknown_replies() - ignored_before
                      << " reply with an unknown correlation_id\n";
        }
        return answer;
    }

    /// Replies whose correlation_id was not ours.
    [[nodiscard]] std::size_t ignored() const { return client_.unknown_replies(); }

private:
    warren::rpc_client<warren::broker> client_;
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
    ok &= fib10 == 55U && client.ignored() == 1;

    const auto stats = broker.queue_stats("rpc_queue");
    ok &= stats.acked == 2 && stats.unacked == 0 && stats.ready == 0;
    if (!ok) {
        std::cout << "FAILED: the RPC round trips did not return fib(30) = 832040 and fib(10) = 55\n";
        return 1;
    }
    return 0;
}

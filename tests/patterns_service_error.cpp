// The error-reply convention (include/warren/patterns/service_error.hpp): a reply with
// header x-error is a service's failure; answering_errors() turns a thrown
// service_failure into one, and leaves other exceptions to rpc_server.

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include <warren/patterns/rpc_client.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/patterns/service_error.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

TEST_CASE("service_error: an error reply carries its reason in x-error, and an ordinary reply none",
          "[service_error]") {
    const auto failed = warren::error_reply("insufficient funds", "order-7");
    CHECK(failed.body == "order-7");
    CHECK(warren::service_error_of(failed.properties) == "insufficient funds");
    CHECK(warren::service_error_of(warren::message{}.properties) == std::nullopt);
    warren::properties odd;
    odd.headers.set(warren::service_error_header, 42);
    CHECK(warren::service_error_of(odd) == ""); // present, not a string: still a failure
}

TEST_CASE("service_error: answering_errors turns a thrown service_failure into an error reply, the request acked",
          "[service_error]") {
    warren::broker b;
    b.declare_queue("payment");
    warren::rpc_server server(b, "payment", warren::answering_errors([](const warren::delivery& d) {
                                  if (d.body() == "broke") throw warren::service_failure("insufficient funds");
                                  return std::string("paid");
                              }));
    warren::rpc_client client(b);
    const auto ok = client.call_and_wait("", "payment", "rich", 1s);
    CHECK(ok.body == "paid");
    CHECK(warren::service_error_of(ok.properties) == std::nullopt);
    const auto refused = client.call_and_wait("", "payment", "broke", 1s);
    CHECK(warren::service_error_of(refused.properties) == "insufficient funds");
    CHECK(server.replies() == 2);
    CHECK(server.failures() == 0);
    CHECK(b.queue_stats("payment").acked == 2);
}

TEST_CASE("service_error: answering_errors leaves other exceptions to rpc_server (rejected, no reply)",
          "[service_error]") {
    warren::manual_clock time;
    warren::broker b(time);
    b.set_error_handler([](const auto&) {});
    b.declare_queue("payment");
    warren::rpc_server server(b, "payment", warren::answering_errors([](const warren::delivery&) -> warren::message {
                                  throw std::logic_error("bug");
                              }));
    warren::rpc_client client(b);
    std::optional<bool> answered;
    (void)client.call("", "payment", "x", 1s, [&](const warren::rpc_result<>& r) { answered = r.ok(); });
    (void)b.dispatch();
    CHECK(server.failures() == 1);
    CHECK(server.replies() == 0);
    CHECK_FALSE(answered);
}

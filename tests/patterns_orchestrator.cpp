// orchestrator (include/warren/patterns/orchestrator.hpp) on the single-threaded broker
// and a manual clock: one call with its timeout and retries (when each attempt goes out,
// what it carries, how it ends), and calls in sequence.

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/orchestrator.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/patterns/service_error.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/orchestrator.hpp"

using namespace std::chrono_literals;
using warren::call_status;

using warren_test::act;
using warren_test::run_until;
using warren_test::scripted_service;

TEST_CASE("orchestrator: a call returns the service's reply, its request carrying a message_id",
          "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service payment(b, time, "payment", {act::answer});
    warren::orchestrator o(b);
    const auto r = o.call_and_wait("payment", "42", {.timeout = 100ms});
    REQUIRE(r.ok());
    CHECK(r.status() == call_status::replied);
    CHECK(r.reply().body == "re:42");
    CHECK(r.service() == "payment");
    CHECK(r.attempts() == 1);
    REQUIRE(payment.requests.size() == 1);
    CHECK(payment.requests[0].message_id == r.message_id());
    CHECK(payment.requests[0].reply_to == o.client().reply_queue());
    CHECK(o.running() == 0);
    CHECK(o.next_due() == std::nullopt);
}

TEST_CASE("orchestrator: the handler of an asynchronous call runs inside the dispatch that brings the reply",
          "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    b.declare_queue("payment");
    warren::rpc_server server(b, "payment", [](const warren::delivery& d) { return "paid " + d.body(); });
    warren::orchestrator o(b);
    std::optional<warren::call_result<>> got;
    const std::string id = o.call("payment", "42", {.timeout = 1s}, [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    CHECK_FALSE(got);
    CHECK(o.running() == 1);
    (void)b.dispatch();
    REQUIRE(got);
    CHECK(got->reply().body == "paid 42");
    CHECK(got->message_id() == id);
}

TEST_CASE("orchestrator: a request's own message_id and headers are kept on every attempt", "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::ignore, act::answer});
    warren::orchestrator o(b);
    warren::message request{.routing_key = "ignored", .body = "42"};
    request.properties.message_id = "order-7/pay";
    request.properties.headers.set("tenant", "acme");
    request.properties.type = "payment.request";
    request.properties.reply_to = "somebody-else";     // replaced by the client's
    request.properties.correlation_id = "not-the-call's"; // replaced per attempt
    std::optional<warren::call_result<>> got;
    (void)o.call({"payment", request, {.timeout = 100ms, .retry = warren::retry_policy::fixed(2, 0ms)}},
                 [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    run_until(b, time, o, [&] { return got.has_value(); });
    REQUIRE(got);
    CHECK(got->ok());
    CHECK(got->message_id() == "order-7/pay");
    REQUIRE(svc.requests.size() == 2);
    for (const auto& r : svc.requests) {
        CHECK(r.message_id == "order-7/pay");
        CHECK(r.body == "42");
        REQUIRE(r.properties.headers.find_string("tenant") != nullptr);
        CHECK(*r.properties.headers.find_string("tenant") == "acme");
        CHECK(r.properties.type == "payment.request");
        CHECK(r.reply_to == o.client().reply_queue());
        REQUIRE(r.correlation_id);
        CHECK(r.correlation_id->starts_with(o.client().reply_queue() + "."));
    }
    CHECK(svc.requests[0].correlation_id != svc.requests[1].correlation_id);
}

TEST_CASE("orchestrator: attempt k goes out exactly after k-1 timeouts and backoff delays (manual clock)",
          "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "inventory", {act::ignore, act::ignore, act::ignore, act::answer});
    warren::orchestrator o(b);
    std::optional<warren::call_result<>> got;
    const auto policy = warren::retry_policy::exponential(4, 50ms); // delays 50, 100, 200 ms
    (void)o.call("inventory", "book", {.timeout = 100ms, .retry = policy},
                 [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    (void)b.dispatch();

    // attempt 1 at 0; times out at 100; attempt 2 at 150; out at 250; attempt 3 at 350; out
    // at 450; attempt 4 at 650.
    const std::vector<warren::clock::duration> expected{0ms, 150ms, 350ms, 650ms};
    for (std::size_t k = 1; k < expected.size(); ++k) {
        // A nanosecond before its time, the attempt has not gone out.
        time.advance(expected[k] - 1ns - time.elapsed());
        (void)o.poll();
        (void)b.dispatch();
        CHECK(svc.requests.size() == k);
        time.advance(1ns);
        (void)o.poll();
        (void)b.dispatch();
        REQUIRE(svc.requests.size() == k + 1);
    }
    REQUIRE(got);
    REQUIRE(got->ok());
    CHECK(got->reply().body == "re:book");
    REQUIRE(got->attempts() == 4);
    for (std::size_t k = 0; k < expected.size(); ++k) {
        CHECK(svc.requests[k].at == expected[k]);
        CHECK(got->history()[k].sent_at.time_since_epoch() == expected[k]);
        CHECK(got->history()[k].outcome == (k < 3 ? call_status::timed_out : call_status::replied));
        // Same message_id every time, so the service can deduplicate; a fresh
        // correlation_id, so an earlier attempt's reply is told apart.
        CHECK(svc.requests[k].message_id == got->message_id());
        for (std::size_t j = 0; j < k; ++j) CHECK(svc.requests[k].correlation_id != svc.requests[j].correlation_id);
    }
    CHECK(o.attempts_sent() == 4);
    CHECK(o.retries_sent() == 3);
}

TEST_CASE("orchestrator: next_due says when the next timeout and the next retry are due", "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "q", {act::ignore});
    warren::orchestrator o(b);
    int ended = 0;
    (void)o.call("q", "x", {.timeout = 30ms, .retry = warren::retry_policy::fixed(2, 20ms)},
                 [&](const warren::call_result<>&) { ++ended; });
    REQUIRE(o.next_due());
    CHECK(o.next_due()->time_since_epoch() == 30ms); // the first attempt's deadline
    time.advance(30ms);
    CHECK(o.poll() == 1);
    REQUIRE(o.next_due());
    CHECK(o.next_due()->time_since_epoch() == 50ms); // the retry
    time.advance(20ms);
    CHECK(o.poll() == 1);
    CHECK(o.next_due()->time_since_epoch() == 80ms); // the second attempt's deadline
    time.advance(30ms);
    (void)o.poll();
    CHECK(ended == 1);
    CHECK(o.next_due() == std::nullopt);
}

TEST_CASE("orchestrator: retries exhausted end the call timed_out, the error naming the service and the attempts",
          "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::ignore});
    warren::orchestrator o(b);
    std::optional<warren::call_result<>> got;
    const std::string id = o.call("payment", "42", {.timeout = 100ms, .retry = warren::retry_policy::fixed(3, 10ms)},
                                  [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    run_until(b, time, o, [&] { return got.has_value(); });
    REQUIRE(got);
    CHECK_FALSE(got->ok());
    CHECK(got->status() == call_status::timed_out);
    CHECK(got->attempts() == 3);
    CHECK_FALSE(got->has_reply());
    CHECK(got->error().code() == warren::reply_code::resource_error);
    CHECK(std::string(got->error().what()) == "RESOURCE_ERROR - call to service 'payment' (message_id '" + id +
                                                  "') got no reply in time after 3 attempts (timeout 100 ms each)");
    CHECK(svc.requests.size() == 3);
    CHECK(time.elapsed() == 320ms); // 3 timeouts and 2 delays
    CHECK_THROWS_AS(got->take(), warren::error);
}

TEST_CASE("orchestrator: without a retry policy a call has one attempt", "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::ignore});
    warren::orchestrator o(b);
    std::optional<warren::call_result<>> got;
    (void)o.call("payment", "42", {.timeout = 100ms}, [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    run_until(b, time, o, [&] { return got.has_value(); });
    REQUIRE(got);
    CHECK(got->attempts() == 1);
    CHECK(std::string(got->error().what()).ends_with("got no reply in time after 1 attempt (timeout 100 ms)"));
    CHECK(o.retries_sent() == 0);
}

TEST_CASE("orchestrator: an error reply ends the call at once unless the options retry service errors",
          "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    warren::orchestrator o(b);
    std::optional<warren::call_result<>> got;
    const auto retry = warren::retry_policy::fixed(3, 10ms);

    SECTION("not retried by default: the service answered, and would answer the same again") {
        scripted_service svc(b, time, "inventory", {act::fail, act::answer});
        (void)o.call("inventory", "book", {.timeout = 100ms, .retry = retry},
                     [&](warren::call_result<> r) { got.emplace(std::move(r)); });
        run_until(b, time, o, [&] { return got.has_value(); });
        REQUIRE(got);
        CHECK(got->status() == call_status::service_error);
        CHECK(got->attempts() == 1);
        CHECK(svc.requests.size() == 1);
        REQUIRE(got->has_reply()); // the error reply itself
        CHECK(warren::service_error_of(got->reply().properties) == "out of stock");
        CHECK(got->error().code() == warren::reply_code::precondition_failed);
        CHECK(std::string(got->error().what()) ==
              "PRECONDITION_FAILED - call to service 'inventory' (message_id '" + got->message_id() +
                  "') failed after 1 attempt: the service answered 'out of stock'");
        CHECK(time.elapsed() == 0ms);
    }
    SECTION("retried with retry_service_errors, after the policy's delay") {
        scripted_service svc(b, time, "inventory", {act::fail, act::answer});
        (void)o.call("inventory", "book", {.timeout = 100ms, .retry = retry, .retry_service_errors = true},
                     [&](warren::call_result<> r) { got.emplace(std::move(r)); });
        run_until(b, time, o, [&] { return got.has_value(); });
        REQUIRE(got);
        CHECK(got->ok());
        CHECK(got->attempts() == 2);
        REQUIRE(svc.requests.size() == 2);
        CHECK(svc.requests[1].at == 10ms); // the delay counts from the error reply
    }
    SECTION("retried with retry_service_errors, the last error kept once attempts run out") {
        scripted_service svc(b, time, "inventory", {act::fail});
        (void)o.call("inventory", "book", {.timeout = 100ms, .retry = retry, .retry_service_errors = true},
                     [&](warren::call_result<> r) { got.emplace(std::move(r)); });
        run_until(b, time, o, [&] { return got.has_value(); });
        REQUIRE(got);
        CHECK(got->status() == call_status::service_error);
        CHECK(got->attempts() == 3);
        CHECK(std::string(got->error().what()).ends_with("failed after 3 attempts: the service answered 'out of stock'"));
    }
}

TEST_CASE("orchestrator: a late reply of an earlier attempt is dropped and counted, the later attempt's kept",
          "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "shipping", {act::hold, act::hold});
    warren::orchestrator o(b);
    std::optional<warren::call_result<>> got;
    (void)o.call("shipping", "parcel", {.timeout = 100ms, .retry = warren::retry_policy::fixed(2, 0ms)},
                 [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    (void)b.dispatch();
    time.advance(100ms);
    (void)o.poll(); // attempt 1 times out; attempt 2 goes out at once (no delay)
    (void)b.dispatch();
    REQUIRE(svc.requests.size() == 2);

    SECTION("the first attempt's reply comes while the second is in flight") {
        svc.release(0, "first");
        (void)b.dispatch();
        CHECK_FALSE(got);
        CHECK(o.late_replies() == 1);
        svc.release(1, "second");
        (void)b.dispatch();
    }
    SECTION("the first attempt's reply comes after the second's") {
        svc.release(1, "second");
        (void)b.dispatch();
        svc.release(0, "first");
        (void)b.dispatch();
        CHECK(o.late_replies() == 1);
    }
    REQUIRE(got);
    CHECK(got->reply().body == "second");
    CHECK(got->attempts() == 2);
}

TEST_CASE("orchestrator: a reply after the call ended is dropped and counted late", "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "shipping", {act::hold});
    warren::orchestrator o(b);
    int ended = 0;
    (void)o.call("shipping", "parcel", {.timeout = 100ms}, [&](const warren::call_result<>&) { ++ended; });
    (void)b.dispatch();
    time.advance(100ms);
    (void)o.poll();
    CHECK(ended == 1);
    svc.release(0, "too late");
    (void)b.dispatch();
    CHECK(ended == 1);
    CHECK(o.late_replies() == 1);
}

TEST_CASE("orchestrator: an unroutable request is retried like a timeout, and ends unroutable", "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    warren::orchestrator o(b);
    std::optional<warren::call_result<>> got;
    const std::string id = o.call("payment", "42", {.timeout = 100ms, .retry = warren::retry_policy::fixed(2, 10ms)},
                                  [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    CHECK_FALSE(got); // the retry waits 10 ms
    CHECK(o.client().pending() == 0); // the attempt failed inside its publish, not at its timeout
    REQUIRE(o.next_due());
    CHECK(o.next_due()->time_since_epoch() == 10ms);

    SECTION("the service's queue never comes") {
        time.advance(10ms);
        (void)o.poll();
        REQUIRE(got);
        CHECK(got->status() == call_status::unroutable);
        CHECK(got->attempts() == 2);
        CHECK(got->error().code() == warren::reply_code::no_route);
        CHECK(std::string(got->error().what()) ==
              "NO_ROUTE - call to service 'payment' (message_id '" + id + "') was unroutable after 2 attempts");
        CHECK(o.client().timeouts() == 0); // neither attempt waited for its timeout
    }
    SECTION("the service comes up before the retry") {
        scripted_service svc(b, time, "payment", {act::answer});
        time.advance(10ms);
        (void)o.poll();
        (void)b.dispatch();
        REQUIRE(got);
        CHECK(got->ok());
        CHECK(got->history()[0].outcome == call_status::unroutable);
        CHECK(svc.requests.size() == 1);
    }
}

TEST_CASE("orchestrator: a handler that throws when its retry is unroutable throws out of poll()",
          "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    warren::orchestrator o(b);
    int ran = 0;
    (void)o.call("payment", "42", {.timeout = 100ms, .retry = warren::retry_policy::fixed(2, 10ms)},
                 [&](const warren::call_result<>& r) {
                     ++ran;
                     throw r.error(); // a warren::error, not to be taken for a refused publish
                 });
    time.advance(10ms);
    CHECK_THROWS_AS(o.poll(), warren::error);
    CHECK(ran == 1);
    CHECK(o.running() == 0);
    CHECK(o.next_due() == std::nullopt);
}

TEST_CASE("orchestrator: a first request to an unknown exchange throws and leaves nothing running", "[orchestrator]") {
    warren::broker b;
    warren::orchestrator o(b);
    bool ran = false;
    CHECK_THROWS_AS(o.call("payment", "42", {.exchange = "no-such-exchange"}, [&](const warren::call_result<>&) { ran = true; }),
                    warren::error);
    CHECK_FALSE(ran);
    CHECK(o.running() == 0);
    CHECK(o.next_due() == std::nullopt);
}

TEST_CASE("orchestrator: a call to a service behind an exchange is routed by the service as routing key",
          "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    b.declare_exchange("services", "direct");
    scripted_service svc(b, time, "payments-v2", {act::answer});
    b.bind_queue("payments-v2", "services", "payment");
    warren::orchestrator o(b);
    const auto r = o.call_and_wait("payment", "42", {.timeout = 100ms, .exchange = "services"});
    CHECK(r.ok());
    const auto lost = o.call_and_wait("refunds", "42", {.timeout = 100ms, .exchange = "services"});
    CHECK(lost.status() == call_status::unroutable);
    CHECK(std::string(lost.error().what()).starts_with("NO_ROUTE - call to service 'refunds' on exchange 'services'"));
}

TEST_CASE("orchestrator: call_and_wait with a clock standing still and no reply to come ends at once",
          "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::ignore});
    warren::orchestrator o(b);
    const auto r = o.call_and_wait("payment", "42", {.timeout = 1s, .retry = warren::retry_policy::fixed(3, 1s)});
    CHECK(r.status() == call_status::timed_out);
    CHECK(r.attempts() == 1);
    CHECK(std::string(r.error().what()).ends_with("got no reply after 1 attempt: nothing left to deliver and the clock stands still"));
    CHECK(o.running() == 0);
}

TEST_CASE("orchestrator: call_and_wait on the steady clock retries in real time", "[orchestrator][retry]") {
    warren::broker b;
    b.declare_queue("flaky");
    int seen = 0;
    auto sub = b.subscribe("flaky", [&](warren::delivery& d) {
        if (++seen == 1) return; // the first request is lost
        warren::message reply{.routing_key = d.properties().reply_to.value_or(""), .body = "ok"};
        reply.properties.correlation_id = d.properties().correlation_id;
        (void)b.publish("", std::move(reply));
    });
    warren::orchestrator o(b);
    const auto r = o.call_and_wait("flaky", "x", {.timeout = 20ms, .retry = warren::retry_policy::fixed(3, 5ms)});
    REQUIRE(r.ok());
    CHECK(r.attempts() == 2);
    CHECK(r.history()[1].sent_at - r.history()[0].sent_at >= 25ms);
}

TEST_CASE("orchestrator: jittered delays are reproducible from the call's seed", "[orchestrator][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "q", {act::ignore});
    warren::orchestrator o(b);
    const auto policy = warren::retry_policy::fixed(2, 100ms).with_jitter(0.5);
    std::optional<warren::call_result<>> got;
    (void)o.call("q", "x", {.timeout = 10ms, .retry = policy, .jitter_seed = 7},
                 [&](warren::call_result<> r) { got.emplace(std::move(r)); });
    run_until(b, time, o, [&] { return got.has_value(); });
    REQUIRE(got);
    REQUIRE(got->attempts() == 2);
    CHECK(got->history()[1].sent_at - got->history()[0].sent_at == 10ms + policy.delay_before_retry(1, 7));
}

// --- sequences ---------------------------------------------------------------------------

namespace {

/// rpc_servers that append their name to the body: "order" -> "order>pay>reserve".
struct sequence_service_queues {
    explicit sequence_service_queues(warren::broker& b) {
        for (const char* name : {"payment", "inventory", "shipping"}) b.declare_queue(name);
    }
};

} // namespace

TEST_CASE("orchestrator: a sequence runs its steps in order, each from the previous reply", "[orchestrator][sequence]") {
    warren::manual_clock time;
    warren::broker b(time);
    sequence_service_queues queues(b);
    std::vector<std::string> order_seen;
    auto append = [&](const char* name) {
        return [&order_seen, name](const warren::delivery& d) {
            order_seen.emplace_back(name);
            return d.body() + ">" + name;
        };
    };
    warren::rpc_server pay(b, "payment", append("pay"));
    warren::rpc_server reserve(b, "inventory", append("reserve"));
    warren::rpc_server ship(b, "shipping", append("ship"));
    warren::orchestrator o(b);
    using step = warren::orchestrator<warren::broker>::step;
    const auto s = o.call_sequence_and_wait(
        {.routing_key = {}, .body = "order"},
        {step{"payment", [](const warren::message& in) { return in.body; }},
         step{"inventory", [](const warren::message& paid) { return paid.body; }},
         step{"shipping", [](const warren::message& reserved) { return reserved.body; }}});
    REQUIRE(s.ok());
    CHECK(s.steps() == 3);
    CHECK(s.calls().size() == 3);
    CHECK(s.reply().body == "order>pay>reserve>ship");
    CHECK(order_seen == std::vector<std::string>{"pay", "reserve", "ship"});
    CHECK(s.failed_step() == std::nullopt);
}

TEST_CASE("orchestrator: a sequence stops at the first failed step and says which it was", "[orchestrator][sequence]") {
    warren::manual_clock time;
    warren::broker b(time);
    sequence_service_queues queues(b);
    int shipped = 0;
    warren::rpc_server pay(b, "payment", [](const warren::delivery& d) { return d.body() + ">pay"; });
    warren::rpc_server reserve(b, "inventory", warren::answering_errors([](const warren::delivery& d) -> std::string {
                                   throw warren::service_failure("out of stock: " + d.body());
                               }));
    warren::rpc_server ship(b, "shipping", [&](const warren::delivery& d) {
        ++shipped;
        return d.body();
    });
    warren::orchestrator o(b);
    using step = warren::orchestrator<warren::broker>::step;
    const auto pass = [](const warren::message& m) { return m.body; };
    const auto s = o.call_sequence_and_wait({.routing_key = {}, .body = "order"},
                                            {step{"payment", pass}, step{"inventory", pass}, step{"shipping", pass}});
    REQUIRE_FALSE(s.ok());
    CHECK(s.failed_step() == 1U);
    REQUIRE(s.calls().size() == 2);
    CHECK(s.calls()[0].ok());
    CHECK(s.calls()[1].status() == call_status::service_error);
    CHECK(shipped == 0);
    CHECK(std::string(s.error().what()) ==
          "PRECONDITION_FAILED - step 2 of 3 (service 'inventory') failed: PRECONDITION_FAILED - call to service "
          "'inventory' (message_id '" +
              s.calls()[1].message_id() + "') failed after 1 attempt: the service answered 'out of stock: order>pay'");
}

TEST_CASE("orchestrator: a sequence step that times out after its retries fails the sequence", "[orchestrator][sequence]") {
    warren::manual_clock time;
    warren::broker b(time);
    b.declare_queue("payment");
    warren::rpc_server pay(b, "payment", [](const warren::delivery& d) { return d.body(); });
    scripted_service stock(b, time, "inventory", {act::ignore});
    warren::orchestrator o(b);
    using step = warren::orchestrator<warren::broker>::step;
    const auto pass = [](const warren::message& m) { return m.body; };
    std::optional<warren::sequence_result<>> got;
    o.call_sequence({.routing_key = {}, .body = "order"},
                    {step{"payment", pass},
                     step{"inventory", pass, {.timeout = 50ms, .retry = warren::retry_policy::fixed(2, 25ms)}}},
                    [&](warren::sequence_result<> s) { got.emplace(std::move(s)); });
    run_until(b, time, o, [&] { return got.has_value(); });
    REQUIRE(got);
    CHECK(got->failed_step() == 1U);
    CHECK(got->calls()[1].attempts() == 2);
    CHECK(time.elapsed() == 125ms);
    CHECK(std::string(got->error().what()).find("got no reply in time after 2 attempts") != std::string::npos);
}

TEST_CASE("orchestrator: a request maker that throws fails its step with nothing sent", "[orchestrator][sequence]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::answer});
    warren::orchestrator o(b);
    using step = warren::orchestrator<warren::broker>::step;
    const auto s = o.call_sequence_and_wait(
        {.routing_key = {}, .body = "order"},
        {step{"payment", [](const warren::message& m) { return m.body; }},
         step{"payment", [](const warren::message&) -> std::string { throw std::runtime_error("no address"); }}});
    CHECK(s.failed_step() == 1U);
    CHECK(s.calls().size() == 1);
    CHECK(svc.requests.size() == 1);
    CHECK(std::string(s.error().what()) ==
          "PRECONDITION_FAILED - step 2 of 2 (service 'payment') failed: could not make its request: no address");
}

TEST_CASE("orchestrator: a sequence handler that throws when a step is unroutable at once throws out of the call",
          "[orchestrator][sequence]") {
    warren::broker b;
    warren::orchestrator o(b);
    using step = warren::orchestrator<warren::broker>::step;
    int ran = 0;
    try {
        o.call_sequence({.routing_key = {}, .body = "order"},
                        {step{"nobody", [](const warren::message& m) { return m.body; }}},
                        [&](const warren::sequence_result<>& s) {
                            ++ran;
                            throw s.error();
                        });
        FAIL("the handler's exception did not come out");
    } catch (const warren::error& e) {
        const std::string what = e.what();
        CHECK(what.starts_with("PRECONDITION_FAILED - step 1 of 1 (service 'nobody') failed: NO_ROUTE"));
        CHECK(what.ends_with("was unroutable after 1 attempt"));
    }
    CHECK(ran == 1);
    CHECK(o.running() == 0);
}

TEST_CASE("orchestrator: an empty sequence succeeds at once", "[orchestrator][sequence]") {
    warren::broker b;
    warren::orchestrator o(b);
    int ran = 0;
    o.call_sequence({}, {}, [&](const warren::sequence_result<>& s) {
        ++ran;
        CHECK(s.ok());
        CHECK(s.calls().empty());
    });
    CHECK(ran == 1);
}

TEST_CASE("orchestrator: destroying it with calls running runs no handler and leaves no queue", "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::hold});
    int ran = 0;
    const auto before = b.snapshot();
    {
        warren::orchestrator o(b);
        CHECK(b.snapshot().queues.size() == before.queues.size() + 1); // its reply queue
        CHECK(b.snapshot().exchanges.size() == before.exchanges.size());
        (void)o.call("payment", "42", {.timeout = 1s, .retry = warren::retry_policy::fixed(3, 1s)},
                     [&](const warren::call_result<>&) { ++ran; });
        (void)b.dispatch();
    }
    svc.release(0, "after");
    (void)b.dispatch();
    time.advance(10s);
    (void)b.dispatch();
    CHECK(ran == 0);
    const auto after = b.snapshot();
    CHECK(after.queues.size() == before.queues.size());
    CHECK(after.exchanges.size() == before.exchanges.size());
    CHECK(after.bindings.size() == before.bindings.size());
}

TEST_CASE("orchestrator: a sequence step sent to an unknown exchange fails its step", "[orchestrator][sequence]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::answer});
    warren::orchestrator o(b);
    using step = warren::orchestrator<warren::broker>::step;
    const auto pass = [](const warren::message& m) { return m.body; };
    const auto s = o.call_sequence_and_wait({.routing_key = {}, .body = "order"},
                                            {step{"payment", pass}, step{"payment", pass, {.exchange = "gone"}}});
    CHECK(s.failed_step() == 1U);
    CHECK(std::string(s.error().what()) == "PRECONDITION_FAILED - step 2 of 2 (service 'payment') failed: could not be "
                                           "sent: NOT_FOUND - no exchange 'gone'");
    CHECK(o.running() == 0);
}

TEST_CASE("orchestrator: two orchestrators on one broker keep their own message ids", "[orchestrator]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service svc(b, time, "payment", {act::answer});
    const bool direct = GENERATE(false, true);
    CAPTURE(direct);
    warren::orchestrator one(b, {.direct_reply_to = direct});
    warren::orchestrator two(b, {.direct_reply_to = direct});
    const auto r1 = one.call_and_wait("payment", "1", {.timeout = 100ms});
    const auto r2 = two.call_and_wait("payment", "2", {.timeout = 100ms});
    CHECK(r1.ok());
    CHECK(r2.ok());
    CHECK(r1.message_id() != r2.message_id());
    CHECK(svc.requests.size() == 2); // each request sent once
    CHECK(svc.requests[0].reply_to == one.client().reply_queue());
    CHECK(svc.requests[1].reply_to == two.client().reply_queue());
}

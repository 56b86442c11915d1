// orchestrator::scatter_gather (include/warren/patterns/orchestrator.hpp) on the
// single-threaded broker and a manual clock: requests sent at once, gathered until all
// ended, a quorum answered, or the deadline passed; partial results; late replies.

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <warren/patterns/orchestrator.hpp>
#include <warren/patterns/service_error.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/orchestrator.hpp"

using namespace std::chrono_literals;
using warren::call_status;

using warren_test::act;
using warren_test::scripted_service;
using gather_request = warren::orchestrator<warren::broker>::request;

TEST_CASE("scatter-gather: every request goes out at once and the results come in request order",
          "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service inventory(b, time, "inventory", {act::hold}, {.answer_prefix = "inventory:"});
    scripted_service shipping(b, time, "shipping", {act::answer}, {.answer_prefix = "shipping:"});
    warren::orchestrator o(b);
    std::optional<warren::gather_result<>> got;
    o.scatter_gather({gather_request{"inventory", "book"}, gather_request{"shipping", "book"}}, {.deadline = 1s},
                     [&](warren::gather_result<> g) { got.emplace(std::move(g)); });
    (void)b.dispatch();
    CHECK(inventory.arrivals().size() == 1);
    CHECK(shipping.arrivals().size() == 1);
    CHECK_FALSE(got); // inventory holds its reply
    inventory.release();
    (void)b.dispatch();
    REQUIRE(got);
    CHECK(got->ok());
    CHECK(got->complete());
    CHECK(got->replied() == 2);
    REQUIRE(got->results().size() == 2);
    CHECK((*got)[0].service() == "inventory");
    CHECK((*got)[0].reply().body == "inventory:book");
    CHECK((*got)[1].reply().body == "shipping:book");
    CHECK(o.running() == 0);
    CHECK(o.next_due() == std::nullopt);
}

TEST_CASE("scatter-gather: at the deadline it returns partial results saying which replied, failed and timed out",
          "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service a(b, time, "a", {act::answer});
    scripted_service f(b, time, "f", {act::fail});
    scripted_service slow(b, time, "slow", {act::hold});
    warren::orchestrator o(b);
    std::optional<warren::gather_result<>> got;
    o.scatter_gather({gather_request{"a", "1"}, gather_request{"f", "2"}, gather_request{"slow", "3", {.timeout = 1s}}}, {.deadline = 200ms},
                     [&](warren::gather_result<> g) { got.emplace(std::move(g)); });
    (void)b.dispatch();
    CHECK_FALSE(got);
    REQUIRE(o.next_due());
    CHECK(o.next_due()->time_since_epoch() == 200ms); // the deadline comes before slow's timeout
    time.advance(199ms);
    (void)o.poll();
    CHECK_FALSE(got);
    time.advance(1ms);
    (void)o.poll();
    REQUIRE(got);
    CHECK_FALSE(got->ok());
    CHECK(got->replied() == 1);
    CHECK(got->failed() == 1);
    CHECK(got->timed_out() == 1);
    CHECK((*got)[0].ok());
    CHECK((*got)[1].status() == call_status::service_error);
    CHECK((*got)[2].status() == call_status::timed_out);
    CHECK(std::string((*got)[2].error().what()) == "RESOURCE_ERROR - call to service 'slow' (message_id '" +
                                                       (*got)[2].message_id() +
                                                       "') got no reply before the gather's deadline after 1 attempt");
    CHECK(o.running() == 0);

    // slow answers after the deadline: dropped, counted late.
    slow.release();
    (void)b.dispatch();
    CHECK(o.late_replies() == 1);
}

TEST_CASE("scatter-gather: a call retries within the deadline, and its pending retry ends with the gather",
          "[orchestrator][gather][retry]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service once(b, time, "once", {act::ignore, act::answer});
    scripted_service never(b, time, "never", {act::ignore});
    warren::orchestrator o(b);
    std::optional<warren::gather_result<>> got;
    const warren::call_options retried{.timeout = 50ms, .retry = warren::retry_policy::fixed(5, 10ms)};
    o.scatter_gather({gather_request{"once", "x", retried}, gather_request{"never", "y", retried}}, {.deadline = 100ms},
                     [&](warren::gather_result<> g) { got.emplace(std::move(g)); });
    (void)b.dispatch();
    for (const auto t : {50ms, 60ms, 100ms}) {
        time.advance(t - time.elapsed());
        (void)o.poll();
        (void)b.dispatch();
    }
    REQUIRE(got);
    CHECK((*got)[0].ok());
    CHECK((*got)[0].attempts() == 2);
    CHECK(once.arrivals() == std::vector<warren::clock::duration>{0ms, 60ms});
    CHECK((*got)[1].status() == call_status::timed_out);
    CHECK((*got)[1].attempts() == 2); // its third attempt would have gone out at 120 ms
    CHECK(never.arrivals().size() == 2);
    CHECK(o.next_due() == std::nullopt);
    time.advance(1s);
    (void)o.poll();
    (void)b.dispatch();
    CHECK(never.arrivals().size() == 2);
}

TEST_CASE("scatter-gather: a quorum of answers ends the gather early and cancels the calls still running",
          "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service q1(b, time, "q1", {act::answer});
    scripted_service q2(b, time, "q2", {act::hold});
    scripted_service q3(b, time, "q3", {act::answer});
    warren::orchestrator o(b);
    std::optional<warren::gather_result<>> got;
    o.scatter_gather({gather_request{"q1", "x"}, gather_request{"q2", "x"}, gather_request{"q3", "x"}}, {.deadline = 1s, .quorum = 2},
                     [&](warren::gather_result<> g) { got.emplace(std::move(g)); });
    (void)b.dispatch();
    REQUIRE(got);
    CHECK(got->ok());
    CHECK_FALSE(got->complete());
    CHECK(got->replied() == 2);
    CHECK(got->cancelled() == 1);
    CHECK((*got)[1].status() == call_status::cancelled);
    CHECK(std::string((*got)[1].error().what()).ends_with("was cancelled after 1 attempt: its gather had ended"));
    CHECK(time.elapsed() == 0ms);
    CHECK(o.running() == 0);
    q2.release();
    (void)b.dispatch();
    CHECK(o.late_replies() == 1);
}

TEST_CASE("scatter-gather: a quorum that can no longer be reached ends the gather", "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service q1(b, time, "q1", {act::fail});
    scripted_service q2(b, time, "q2", {act::fail});
    scripted_service q3(b, time, "q3", {act::hold});
    warren::orchestrator o(b);
    std::optional<warren::gather_result<>> got;
    o.scatter_gather({gather_request{"q1", "x"}, gather_request{"q2", "x"}, gather_request{"q3", "x"}}, {.deadline = 1s, .quorum = 2},
                     [&](warren::gather_result<> g) { got.emplace(std::move(g)); });
    (void)b.dispatch();
    REQUIRE(got);
    CHECK_FALSE(got->ok());
    CHECK(got->failed() == 2);
    CHECK(got->cancelled() == 1);
}

TEST_CASE("scatter-gather: without a quorum a failed call does not end the gather", "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service q1(b, time, "q1", {act::fail});
    scripted_service q2(b, time, "q2", {act::hold});
    warren::orchestrator o(b);
    std::optional<warren::gather_result<>> got;
    o.scatter_gather({gather_request{"q1", "x"}, gather_request{"q2", "x"}}, {.deadline = 1s},
                     [&](warren::gather_result<> g) { got.emplace(std::move(g)); });
    (void)b.dispatch();
    CHECK_FALSE(got);
    q2.release();
    (void)b.dispatch();
    REQUIRE(got);
    CHECK(got->replied() == 1);
    CHECK(got->failed() == 1);
}

TEST_CASE("scatter-gather: an unroutable request fails its call and the others still gather", "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service q1(b, time, "q1", {act::answer});
    warren::orchestrator o(b);
    const auto g = o.scatter_gather_and_wait({gather_request{"q1", "x"}, gather_request{"nobody", "x"}}, {.deadline = 1s});
    CHECK(g.replied() == 1);
    CHECK(g[1].status() == call_status::unroutable);
    CHECK(g.failed() == 1);
}

TEST_CASE("scatter-gather: scatter_gather_and_wait with a clock standing still ends with what came", "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service q1(b, time, "q1", {act::answer});
    scripted_service q2(b, time, "q2", {act::ignore});
    warren::orchestrator o(b);
    const auto g = o.scatter_gather_and_wait({gather_request{"q1", "x"}, gather_request{"q2", "x"}}, {.deadline = 1s});
    CHECK(g.replied() == 1);
    CHECK(g.timed_out() == 1);
    CHECK(std::string(g[1].error().what()).ends_with("nothing left to deliver and the clock stands still"));
    CHECK(o.running() == 0);
}

TEST_CASE("scatter-gather: an empty gather ends at once, complete", "[orchestrator][gather]") {
    warren::broker b;
    warren::orchestrator o(b);
    int ran = 0;
    o.scatter_gather({}, {}, [&](const warren::gather_result<>& g) {
        ++ran;
        CHECK(g.ok());
        CHECK(g.results().empty());
    });
    CHECK(ran == 1);
    CHECK(o.next_due() == std::nullopt);
}

TEST_CASE("scatter-gather: a first publish that throws drops the gather and its calls", "[orchestrator][gather]") {
    warren::manual_clock time;
    warren::broker b(time);
    scripted_service q1(b, time, "q1", {act::hold});
    warren::orchestrator o(b);
    bool ran = false;
    CHECK_THROWS_AS(o.scatter_gather({gather_request{"q1", "x"}, gather_request{"q2", "x", {.exchange = "no-such-exchange"}}},
                                     {.deadline = 1s}, [&](const warren::gather_result<>&) { ran = true; }),
                    warren::error);
    CHECK(o.running() == 0);
    CHECK(o.next_due() == std::nullopt);
    q1.release();
    (void)b.dispatch();
    CHECK_FALSE(ran);
}

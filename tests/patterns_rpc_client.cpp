// rpc_client (include/warren/patterns/rpc_client.hpp) on the single-threaded broker, and
// on concurrent_broker from one thread: replies, timeouts on a manual clock, late and
// unknown replies, destruction with calls pending.

#include <chrono>
#include <cstddef>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <warren/patterns/rpc_client.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"

using namespace std::chrono_literals;

namespace {

/// A server that echoes "re:" + body, by hand, so that the client is tested alone.
template <class Broker>
auto echo_by_hand(Broker& b, const std::string& queue) {
    b.declare_queue(queue);
    return b.subscribe(queue, [&b](typename Broker::delivery& d) {
        const auto& p = d.properties();
        typename Broker::message_type reply{.routing_key = p.reply_to.value_or(""), .body = "re:" + d.body()};
        reply.properties.correlation_id = p.correlation_id;
        (void)b.publish("", std::move(reply));
    });
}

/// Publishes a reply to the client's queue with correlation id `cid`.
template <class Broker, class Client>
void reply_as(Broker& b, const Client& c, const std::string& cid, const std::string& body) {
    typename Broker::message_type reply{.routing_key = c.reply_queue(), .body = body};
    reply.properties.correlation_id = cid;
    (void)b.publish("", std::move(reply));
}

/// A server that records the properties of each request it gets and answers "re:" + body,
/// inside the publish of the request (so that a blocking call needs no other thread).
template <class Broker>
struct recording_server {
    recording_server(Broker& b, const std::string& queue) : broker(b) {
        b.declare_queue(queue);
        sub = b.subscribe(
            queue,
            [this](typename Broker::delivery& d) {
                seen.push_back(d.properties());
                typename Broker::message_type reply{.routing_key = d.properties().reply_to.value_or(""),
                                                    .body = "re:" + d.body()};
                reply.properties.correlation_id = d.properties().correlation_id;
                (void)broker.publish("", std::move(reply));
            },
            {.synchronous = true});
    }

    Broker& broker;
    std::vector<warren::properties> seen;
    typename Broker::subscription sub;
};

/// A request with properties of its own, reply_to and correlation_id included (which the
/// client must overwrite).
inline warren::message rich_request(const std::string& queue, const std::string& body) {
    warren::message m{.routing_key = queue, .body = body};
    m.properties.message_id = "order-7/pay";
    m.properties.type = "payment.request";
    m.properties.expiration = "60000";
    m.properties.app_id = "shop";
    m.properties.headers.set("tenant", "acme");
    m.properties.reply_to = "somebody-else";
    m.properties.correlation_id = "not-the-clients";
    return m;
}

/// Whether `p` carries rich_request()'s own properties.
inline void check_rich_properties(const warren::properties& p) {
    CHECK(p.message_id == "order-7/pay");
    CHECK(p.type == "payment.request");
    CHECK(p.expiration == "60000");
    CHECK(p.app_id == "shop");
    REQUIRE(p.headers.find_string("tenant") != nullptr);
    CHECK(*p.headers.find_string("tenant") == "acme");
}

} // namespace

TEMPLATE_TEST_CASE("rpc_client: a reply reaches the call's callback with its correlation id", "[rpc][rpc_client]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    auto server = echo_by_hand(b, "rpc_queue");
    warren::rpc_client client(b);
    REQUIRE(client.reply_queue().starts_with("amq.gen-"));
    CHECK(b.has_queue(client.reply_queue()));

    std::vector<std::string> seen;
    std::optional<std::string> cid_seen;
    const std::string cid = client.call("", "rpc_queue", "30", 1s, [&](warren::rpc_result<> r) {
        REQUIRE(r.ok());
        seen.push_back(r.reply().body);
        cid_seen = r.reply().properties.correlation_id;
    });
    CHECK(cid.starts_with(client.reply_queue()));
    (void)b.dispatch();
    (void)b.dispatch();
    CHECK(seen == std::vector<std::string>{"re:30"});
    CHECK(cid_seen == cid);
    CHECK(client.pending() == 0);
    CHECK(client.late_replies() == 0);
    CHECK(client.unknown_replies() == 0);
}

TEMPLATE_TEST_CASE("rpc_client: two calls get their own replies, in whatever order they come", "[rpc][rpc_client]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("requests");
    warren::rpc_client client(b, {.replies = warren::rpc_replies::dispatched});
    std::vector<std::string> first;
    std::vector<std::string> second;
    const auto a = client.call("", "requests", "a", 1s, [&](warren::rpc_result<> r) { first.push_back(r.reply().body); });
    const auto c = client.call("", "requests", "c", 1s, [&](warren::rpc_result<> r) { second.push_back(r.reply().body); });
    CHECK(a != c);
    CHECK(client.pending() == 2);
    reply_as(b, client, c, "for c");
    reply_as(b, client, a, "for a");
    (void)b.dispatch();
    CHECK(first == std::vector<std::string>{"for a"});
    CHECK(second == std::vector<std::string>{"for c"});
    CHECK(client.pending() == 0);
}

TEMPLATE_TEST_CASE("rpc_client: a reply with an unknown correlation id is ignored and counted", "[rpc][rpc_client]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("requests");
    warren::rpc_client client(b);
    int calls = 0;
    const auto cid = client.call("", "requests", "x", 1s, [&](const warren::rpc_result<>&) { ++calls; });
    reply_as(b, client, "corr-from-an-earlier-life", "999");
    reply_as(b, client, client.reply_queue() + ".999", "never issued");
    reply_as(b, client, client.reply_queue() + ".01", "not ours either");
    typename TestType::message_type no_id{.routing_key = client.reply_queue(), .body = "no id"};
    (void)b.publish("", std::move(no_id));
    (void)b.dispatch();
    CHECK(calls == 0);
    CHECK(client.unknown_replies() == 4);
    CHECK(client.late_replies() == 0);
    CHECK(client.pending() == 1);
    reply_as(b, client, cid, "ours");
    (void)b.dispatch();
    CHECK(calls == 1);
}

TEMPLATE_TEST_CASE("rpc_client: a call times out on the broker's clock with a clear error (manual clock)",
                   "[rpc][rpc_client]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("slow");
    warren::rpc_client client(b);
    std::optional<warren::rpc_result<>> outcome;
    const auto cid = client.call("", "slow", "x", 100ms, [&](warren::rpc_result<> r) { outcome.emplace(std::move(r)); });
    time.advance(99ms);
    CHECK(client.expire() == 0);
    CHECK_FALSE(outcome);
    time.advance(1ms);
    CHECK(client.expire() == 1);
    REQUIRE(outcome);
    REQUIRE_FALSE(outcome->ok());
    CHECK(outcome->error().code() == warren::reply_code::resource_error);
    const std::string what = outcome->error().what();
    CHECK(what == "RESOURCE_ERROR - rpc call to exchange '' with routing key 'slow' (correlation_id '" + cid +
                      "') got no reply in time (timeout 100 ms)");
    CHECK(client.pending() == 0);
    CHECK(client.timeouts() == 1);
    CHECK(client.expire() == 0);
}

TEMPLATE_TEST_CASE("rpc_client: a late reply after the timeout is dropped and counted", "[rpc][rpc_client]",
                   warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("slow");
    warren::rpc_client client(b, {.replies = warren::rpc_replies::dispatched});
    std::vector<bool> outcomes;
    const auto cid = client.call("", "slow", "x", 100ms, [&](const warren::rpc_result<>& r) { outcomes.push_back(r.ok()); });

    SECTION("failed by expire(), then the reply comes") {
        time.advance(100ms);
        CHECK(client.expire() == 1);
        reply_as(b, client, cid, "too late");
        (void)b.dispatch();
    }
    SECTION("the reply comes after the deadline, before any expire(): the timeout wins") {
        reply_as(b, client, cid, "too late");
        time.advance(150ms);
        (void)b.dispatch();
    }
    CHECK(outcomes == std::vector<bool>{false});
    CHECK(client.late_replies() == 1);
    CHECK(client.unknown_replies() == 0);
    CHECK(client.timeouts() == 1);
}

TEMPLATE_TEST_CASE("rpc_client: a second reply to an answered call is counted late", "[rpc][rpc_client]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    warren::rpc_client client(b);
    int answers = 0;
    const auto cid = client.call("", "q", "x", 10s, [&](const warren::rpc_result<>&) { ++answers; });
    reply_as(b, client, cid, "1");
    reply_as(b, client, cid, "2");
    (void)b.dispatch();
    CHECK(answers == 1);
    CHECK(client.late_replies() == 1);
}

TEMPLATE_TEST_CASE("rpc_client: an unroutable request fails its call with no_route at once", "[rpc][rpc_client]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::rpc_client client(b);
    std::optional<warren::rpc_result<>> outcome;
    (void)client.call("", "nobody-listens", "x", 1s, [&](warren::rpc_result<> r) { outcome.emplace(std::move(r)); });
    REQUIRE(outcome);
    REQUIRE_FALSE(outcome->ok());
    CHECK(outcome->error().code() == warren::reply_code::no_route);
    CHECK(client.pending() == 0);
}

TEMPLATE_TEST_CASE("rpc_client: a publish that throws leaves nothing pending", "[rpc][rpc_client]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    warren::rpc_client client(b);
    bool ran = false;
    CHECK_THROWS_AS(client.call("no-such-exchange", "k", "x", 1s, [&](const warren::rpc_result<>&) { ran = true; }),
                    warren::error);
    CHECK(client.pending() == 0);
    CHECK_FALSE(ran);
}

TEMPLATE_TEST_CASE("rpc_client: a throwing callback leaves the client consistent", "[rpc][rpc_client]", warren::broker,
                   warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("q");
    warren::rpc_client client(b, {.replies = warren::rpc_replies::dispatched});
    int ran = 0;
    const auto thrower = [&](const warren::rpc_result<>&) {
        ++ran;
        throw std::runtime_error("boom");
    };

    SECTION("from a reply: out of dispatch()") {
        const auto cid = client.call("", "q", "x", 1s, thrower);
        reply_as(b, client, cid, "r");
        CHECK_THROWS_AS(b.dispatch(), std::runtime_error);
        CHECK(client.pending() == 0);
        reply_as(b, client, cid, "again");
        (void)b.dispatch();
        CHECK(client.late_replies() == 1);
    }
    SECTION("from expire(): every overdue callback runs, the first exception is rethrown") {
        (void)client.call("", "q", "x", 1s, thrower);
        (void)client.call("", "q", "y", 1s, thrower);
        time.advance(1s);
        CHECK_THROWS_AS(client.expire(), std::runtime_error);
        CHECK(ran == 2);
        CHECK(client.pending() == 0);
    }
}

TEMPLATE_TEST_CASE("rpc_client: destroyed with calls pending, their callbacks are dropped and never run",
                   "[rpc][rpc_client]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    std::string reply_queue;
    int ran = 0;
    auto token = std::make_shared<int>(0);
    {
        warren::rpc_client client(b);
        reply_queue = client.reply_queue();
        (void)client.call("", "q", "x", 1s, [&, token](const warren::rpc_result<>&) { ++ran; });
        CHECK(token.use_count() == 2);
    }
    CHECK(token.use_count() == 1); // the callback was destroyed
    CHECK_FALSE(b.has_queue(reply_queue));
    (void)b.dispatch();
    CHECK(ran == 0);
}

TEST_CASE("rpc_client: call_and_wait dispatches until the reply", "[rpc][rpc_client]") {
    warren::broker b;
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", [](const warren::delivery& d) { return "re:" + d.body(); });
    warren::rpc_client client(b);
    CHECK(client.call_and_wait("", "rpc_queue", "1", 5s).body == "re:1");
    CHECK(client.call_and_wait("", "rpc_queue", "2", 5s).body == "re:2");
    CHECK(client.pending() == 0);
    CHECK(b.queue_stats("rpc_queue").acked == 2);
}

TEST_CASE("rpc_client: call_and_wait with a clock that stands still fails at once instead of hanging",
          "[rpc][rpc_client]") {
    warren::manual_clock time;
    warren::broker b(time);
    b.declare_queue("nobody-serves");
    warren::rpc_client client(b);
    try {
        (void)client.call_and_wait("", "nobody-serves", "x", 1s);
        FAIL("call_and_wait returned without a reply");
    } catch (const warren::error& e) {
        CHECK(e.code() == warren::reply_code::resource_error);
        CHECK(std::string(e.what()).find("clock stands still") != std::string::npos);
    }
    CHECK(client.pending() == 0);
}

TEST_CASE("rpc_client: call_and_wait times out on a moving clock", "[rpc][rpc_client]") {
    warren::broker b;
    b.declare_queue("nobody-serves");
    warren::rpc_client client(b);
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH(client.call_and_wait("", "nobody-serves", "x", 20ms),
                      Catch::Contains("got no reply in time (timeout 20 ms)"));
    CHECK(std::chrono::steady_clock::now() - start >= 20ms);
    CHECK(client.timeouts() == 1);
}

TEST_CASE("rpc_client: an exception out of dispatch() in call_and_wait leaves nothing pending", "[rpc][rpc_client]") {
    warren::broker b;
    b.declare_queue("rpc_queue");
    auto bad = b.subscribe("rpc_queue", [](warren::delivery&) { throw std::runtime_error("server crashed"); });
    warren::rpc_client client(b);
    CHECK_THROWS_AS(client.call_and_wait("", "rpc_queue", "x", 1s), std::runtime_error);
    CHECK(client.pending() == 0);
}

// --- whole request messages ----------------------------------------------------------------

TEMPLATE_TEST_CASE("rpc_client: a whole request keeps its routing key, properties and headers, while reply_to and "
                   "correlation_id are the client's",
                   "[rpc][rpc_client]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    recording_server server(b, "rpc_queue");
    const bool direct = GENERATE(false, true);
    CAPTURE(direct);
    warren::rpc_client client(b, {.direct_reply_to = direct});
    std::optional<warren::rpc_result<>> outcome;
    const std::string cid = client.call("", rich_request("rpc_queue", "30"), 1s,
                                        [&](warren::rpc_result<> r) { outcome.emplace(std::move(r)); });
    (void)b.dispatch();
    (void)b.dispatch();
    REQUIRE(server.seen.size() == 1);
    const auto& p = server.seen[0];
    check_rich_properties(p);
    CHECK(p.reply_to == client.reply_queue());
    CHECK(p.correlation_id == cid);
    CHECK(cid.starts_with(client.reply_queue() + "."));
    REQUIRE(outcome);
    REQUIRE(outcome->ok());
    CHECK(outcome->reply().body == "re:30");
    CHECK(outcome->reply().properties.correlation_id == cid);
    CHECK(client.pending() == 0);
    CHECK(client.unknown_replies() == 0);
}

TEMPLATE_TEST_CASE("rpc_client: an unroutable whole request fails with no_route naming its routing key",
                   "[rpc][rpc_client]", warren::broker, warren::concurrent_broker) {
    TestType b;
    warren::rpc_client client(b);
    std::optional<warren::rpc_result<>> outcome;
    (void)client.call("", rich_request("nobody-listens", "x"), 1s,
                      [&](warren::rpc_result<> r) { outcome.emplace(std::move(r)); });
    REQUIRE(outcome);
    REQUIRE_FALSE(outcome->ok());
    CHECK(outcome->error().code() == warren::reply_code::no_route);
    CHECK(std::string(outcome->error().what()).find("routing key 'nobody-listens'") != std::string::npos);
    CHECK(client.pending() == 0);
}

TEST_CASE("rpc_client: call_and_wait of a whole request", "[rpc][rpc_client]") {
    warren::broker b;
    recording_server server(b, "rpc_queue");
    const bool direct = GENERATE(false, true);
    CAPTURE(direct);
    warren::rpc_client client(b, {.direct_reply_to = direct});
    CHECK(client.call_and_wait("", rich_request("rpc_queue", "1"), 5s).body == "re:1");
    REQUIRE(server.seen.size() == 1);
    check_rich_properties(server.seen[0]);
    CHECK(server.seen[0].reply_to == client.reply_queue());
    REQUIRE(server.seen[0].correlation_id);
    CHECK(server.seen[0].correlation_id->starts_with(client.reply_queue() + "."));
    CHECK(client.pending() == 0);
}

TEST_CASE("rpc_client: call_for and call_async of a whole request (concurrent_broker, one thread)",
          "[rpc][rpc_client]") {
    warren::concurrent_broker b;
    recording_server server(b, "rpc_queue");
    const bool direct = GENERATE(false, true);
    CAPTURE(direct);
    warren::rpc_client client(b, {.direct_reply_to = direct});
    CHECK(client.call_for("", rich_request("rpc_queue", "1"), 5s).body == "re:1");
    auto future = client.call_async("", rich_request("rpc_queue", "2"), 5s);
    REQUIRE(future.wait_for(0s) == std::future_status::ready); // answered inside the publish
    CHECK(future.get().body == "re:2");
    REQUIRE(server.seen.size() == 2);
    for (const auto& p : server.seen) {
        check_rich_properties(p);
        CHECK(p.reply_to == client.reply_queue());
        REQUIRE(p.correlation_id);
        CHECK(p.correlation_id->starts_with(client.reply_queue() + "."));
    }
    CHECK(server.seen[0].correlation_id != server.seen[1].correlation_id);
    CHECK(client.pending() == 0);
}

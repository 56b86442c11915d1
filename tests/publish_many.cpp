// publish_many: a batch of bodies under one routing key, routed once and pushed with one
// lock per queue, is what that many publish(exchange, key, body) calls would be.

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <warren/warren.hpp>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/counters_text.hpp"
#include "support/errors.hpp"

using warren_test::drain;
using warren_test::error_of;
using warren_test::strings;
using warren_test::with_args;

namespace {

std::vector<std::string> numbered(std::string_view prefix, int count) {
    std::vector<std::string> bodies;
    for (int i = 0; i < count; ++i) bodies.push_back(std::string(prefix) + std::to_string(i));
    return bodies;
}

/// One topology with every queue feature the batch path must keep: a plain queue, a
/// length-limited one (reject-publish), one that drops its head into a dead-letter queue,
/// a priority queue, a TTL queue, and a consumer with prefetch 2 taking on arrival.
template <class Broker>
void declare_mixed(Broker& b) {
    b.declare_exchange("ev", "direct");
    b.declare_exchange("dlx", "fanout");
    (void)b.declare_queue("plain");
    (void)b.declare_queue("capped", with_args({{"x-max-length", 3}, {"x-overflow", "reject-publish"}}));
    (void)b.declare_queue("dropping", with_args({{"x-max-length", 2}, {"x-dead-letter-exchange", "dlx"}}));
    (void)b.declare_queue("prio", with_args({{"x-max-priority", 5}}));
    (void)b.declare_queue("ttl", with_args({{"x-message-ttl", 60000}}));
    (void)b.declare_queue("consumed");
    (void)b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    for (const char* q : {"plain", "capped", "dropping", "prio", "ttl", "consumed"}) b.bind_queue(q, "ev", "k");
}

/// Every queue's bodies and counters, and the exchange's, as text.
template <class Broker>
std::string state_of(Broker& b) {
    std::string out;
    for (const char* q : {"plain", "capped", "dropping", "prio", "ttl", "consumed", "dead"}) {
        out += std::string(q) + ": " + warren_test::counts(b.queue_stats(q)) + " [";
        for (const auto& body : drain(b, q)) out += body + " ";
        out += "]\n";
    }
    const auto ev = b.exchange_stats("ev");
    out += "ev: published " + std::to_string(ev.published) + " unroutable " + std::to_string(ev.unroutable) + " nacked " +
           std::to_string(ev.nacked) + "\n";
    return out;
}

} // namespace

TEMPLATE_TEST_CASE("publish_many: a batch ends as that many publishes of its bodies, in order, whatever the queues use",
                   "[publish][publish_many]", warren::broker, warren::concurrent_broker) {
    TestType batched;
    TestType one_by_one;
    declare_mixed(batched);
    declare_mixed(one_by_one);
    warren::consumer_options prefetch2 = warren_test::manual_options("c", 2);
    std::vector<std::string> got_batched, got_one_by_one;
    auto s1 = batched.subscribe("consumed", [&](auto& d) { got_batched.push_back(d.body()); }, prefetch2);
    auto s2 = one_by_one.subscribe("consumed", [&](auto& d) { got_one_by_one.push_back(d.body()); }, prefetch2);

    auto bodies = numbered("m", 7);
    const auto copies = bodies;
    std::size_t routed_one_by_one = 0;
    for (const auto& body : copies) routed_one_by_one += one_by_one.publish("ev", "k", body);
    const std::size_t routed = batched.publish_many("ev", "k", bodies);

    CHECK(routed == routed_one_by_one);
    CHECK(routed == 6 * 7 - 4); // "capped" refused 4 of the 7
    CHECK(bodies == std::vector<std::string>(7)); // each body moved from (a moved std::string is empty here)
    batched.dispatch();
    one_by_one.dispatch();
    CHECK(got_batched == strings{"m0", "m1"}); // handed on arrival, the rest ready behind the prefetch
    CHECK(got_batched == got_one_by_one);
    CHECK(state_of(batched) == state_of(one_by_one));
}

TEMPLATE_TEST_CASE("publish_many: a publisher's batch routes by the topology of the moment", "[publish][publish_many][publisher]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("logs", "topic");
    (void)b.declare_queue("kern");
    (void)b.declare_queue("all");
    b.bind_queue("kern", "logs", "kern.*");
    b.bind_queue("all", "logs", "#");
    const auto logs = b.make_publisher("logs");

    auto first = numbered("a", 3);
    CHECK(logs.publish_many("kern.info", first) == 6);
    b.unbind_queue("all", "logs", "#"); // the remembered route must not outlive this
    auto second = numbered("b", 2);
    CHECK(logs.publish_many("kern.info", second) == 2);
    auto third = numbered("c", 2);
    CHECK(logs.publish_many("user.info", third) == 0);
    CHECK(drain(b, "kern") == strings{"a0", "a1", "a2", "b0", "b1"});
    CHECK(drain(b, "all") == strings{"a0", "a1", "a2"});
    CHECK(b.exchange_stats("logs").published == 7);
    CHECK(b.exchange_stats("logs").unroutable == 2);
}

TEMPLATE_TEST_CASE("publish_many: mandatory messages no queue took return one by one, in order, whole",
                   "[publish][publish_many][mandatory]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("ev", "direct");
    std::vector<std::string> returned;
    b.set_return_handler([&](auto& r) {
        CHECK(r.code == warren::reply_code::no_route);
        CHECK(r.exchange == "ev");
        CHECK(r.message.routing_key == "nowhere");
        returned.push_back(r.message.body);
    });
    auto bodies = numbered("r", 4);
    CHECK(b.publish_many("ev", "nowhere", bodies, {.mandatory = true}) == 0);
    CHECK(returned == strings{"r0", "r1", "r2", "r3"});
    auto quiet = numbered("q", 2);
    CHECK(b.publish_many("ev", "nowhere", quiet) == 0); // not mandatory: dropped, counted
    CHECK(returned.size() == 4);
    CHECK(b.exchange_stats("ev").returned == 4);
    CHECK(b.exchange_stats("ev").unroutable == 6);
}

TEMPLATE_TEST_CASE("publish_many: a return handler may publish a batch of its own", "[publish][publish_many][mandatory]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("ev", "direct");
    (void)b.declare_queue("lost");
    b.bind_queue("lost", "ev", "lost");
    std::vector<std::string> returned;
    b.set_return_handler([&](auto& r) {
        returned.push_back(r.message.body);
        std::vector<std::string> again{r.message.body + ".x", r.message.body + ".y"};
        CHECK(b.publish_many("ev", "lost", again) == 2);
    });
    auto bodies = numbered("r", 3);
    CHECK(b.publish_many("ev", "nowhere", bodies, {.mandatory = true}) == 0);
    CHECK(returned == strings{"r0", "r1", "r2"});
    CHECK(drain(b, "lost") == strings{"r0.x", "r0.y", "r1.x", "r1.y", "r2.x", "r2.y"});
}

TEMPLATE_TEST_CASE("publish_many: errors are those of publish, raised before any body is moved",
                   "[publish][publish_many][errors]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("hidden", "direct", {.internal = true});
    b.declare_exchange("ev", "direct");
    auto bodies = numbered("e", 2);
    const auto kept = bodies;
    CHECK(error_of([&] { (void)b.publish_many("missing", "k", bodies); }) == "404 NOT_FOUND - no exchange 'missing'");
    CHECK(error_of([&] { (void)b.publish_many("hidden", "k", bodies); }, warren::reply_code::access_refused) ==
          "ACCESS_REFUSED - cannot publish to internal exchange 'hidden'");
    CHECK(error_of([&] { (void)b.publish_many("ev", std::string(256, 'k'), bodies); },
                   warren::reply_code::precondition_failed) != "no error");
    CHECK(bodies == kept);
    const auto ev = b.make_publisher("ev");
    b.delete_exchange("ev");
    CHECK(error_of([&] { (void)ev.publish_many("k", bodies); }) == "404 NOT_FOUND - no exchange 'ev'");
    CHECK(bodies == kept);
    std::vector<std::string> none;
    b.declare_exchange("ev2", "fanout");
    CHECK(b.publish_many("ev2", "k", none) == 0);
    CHECK(b.exchange_stats("ev2").published == 0);
}

TEMPLATE_TEST_CASE("publish_many: synchronous receivers have run every message of the batch, in order, when it returns",
                   "[publish][publish_many][synchronous]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("signal", "fanout");
    (void)b.declare_queue("r1");
    (void)b.declare_queue("r2");
    b.bind_queue("r1", "signal");
    b.bind_queue("r2", "signal");
    warren::consumer_options sync;
    sync.synchronous = true;
    strings seen1, seen2;
    auto s1 = b.subscribe("r1", [&](auto& d) { seen1.push_back(d.body()); }, sync);
    auto s2 = b.subscribe("r2", [&](auto& d) {
        seen2.push_back(d.body());
        if (d.body().size() == 2) { // a receiver that publishes a batch of its own: r1 runs it nested
            std::vector<std::string> echo{d.body() + "!"};
            CHECK(b.publish_many("signal", "", echo) == 2);
        }
    }, sync);
    auto bodies = numbered("s", 2);
    CHECK(b.publish_many("signal", "", bodies) == 4);
    CHECK(seen1 == strings{"s0", "s1", "s0!", "s1!"});
    // r2 is never re-entered: what its own callback published waits for dispatch().
    CHECK(seen2 == strings{"s0", "s1"});
    CHECK(b.dispatch() == 2);
    CHECK(seen2 == strings{"s0", "s1", "s0!", "s1!"});
}

TEMPLATE_TEST_CASE("publish_many: a move-only body is moved in once", "[publish][publish_many]", warren::single_threaded,
                   warren::multi_threaded) {
    warren::basic_broker<warren::basic_message<std::unique_ptr<int>>, TestType> b;
    (void)b.declare_queue("q");
    std::vector<std::unique_ptr<int>> bodies;
    for (int i = 0; i < 3; ++i) bodies.push_back(std::make_unique<int>(i));
    const int* first = bodies[0].get();
    CHECK(b.publish_many("", "q", bodies) == 3);
    for (const auto& p : bodies) CHECK(p == nullptr);
    auto d = b.try_get("q");
    REQUIRE(d);
    CHECK(d->body().get() == first);
    CHECK(*d->body() == 0);
}

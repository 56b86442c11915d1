// Delivery on arrival, as RabbitMQ does it (rabbit_amqqueue_process:deliver_or_enqueue): a
// message that reaches a queue with no ready messages and a consumer with credit is handed
// to that consumer at once; its callback runs at the next dispatch. What that means for
// length limits, TTLs, prefetch, the order of callbacks, and consumers that end first.

#include <warren/broker.hpp>

#include <string>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/counters_text.hpp"

using warren_test::counts;
using warren_test::drain_marked;
using warren_test::manual;
using warren_test::manual_options;
using warren_test::send;
using warren_test::stats;
using warren_test::strings;
using warren_test::to_queue;
using warren_test::with_args;

TEMPLATE_TEST_CASE("hand-off: a message for an idle consumer is delivered on arrival, its callback runs at dispatch",
                   "[queue][handoff]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings got;
    auto sub = b.subscribe("q", [&](auto& d) { got.push_back(d.body()); });
    send(b, "q", {"a", "b"});
    CHECK(got.empty());
    CHECK(b.message_count("q") == 0);
    CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=2 acked=2 awaiting_callback=2 consumers=1");
    CHECK_FALSE(b.try_get("q")); // delivered: a get finds nothing
    CHECK(b.dispatch() == 2);
    CHECK(got == strings{"a", "b"});
    CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=2 acked=2 consumers=1");
}

TEMPLATE_TEST_CASE("hand-off: a message handed to a consumer never counts against x-max-length",
                   "[queue][handoff][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 1}}));
    strings got;
    auto sub = b.subscribe("q", [&](auto& d) { got.push_back(d.body()); });
    send(b, "q", {"a", "b", "c"}); // automatic acks: always credit, so all three go out
    CHECK(b.dispatch() == 3);
    CHECK(got == strings{"a", "b", "c"});
    CHECK(counts(stats(b, "q")) == "enqueued=3 delivered=3 acked=3 consumers=1");
}

TEMPLATE_TEST_CASE("hand-off: beyond a consumer's prefetch, messages wait in the queue under its limits",
                   "[queue][handoff][maxlength][prefetch]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 1}}));
    strings got;
    auto sub = b.subscribe(
        "q",
        [&](auto& d) {
            got.push_back(d.body());
            d.ack();
        },
        manual_options("c", 1));
    send(b, "q", {"a", "b", "c"}); // a: handed over (unacked); b: ready; c: drops b, the head
    CHECK(counts(stats(b, "q")) ==
          "enqueued=3 delivered=1 dropped.maxlen=1 ready=1 unacked=1 awaiting_callback=1 ready_bytes=1 consumers=1");
    CHECK(b.dispatch() == 2);
    CHECK(got == strings{"a", "c"});
}

TEMPLATE_TEST_CASE("hand-off: reject-publish refuses at the limit even when a consumer could take the message",
                   "[queue][handoff][maxlength]", warren::broker, warren::concurrent_broker) {
    // rabbit_amqqueue_process:maybe_deliver_or_enqueue checks will_overflow before it
    // tries a consumer.
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 0}, {"x-overflow", "reject-publish"}}));
    strings got;
    auto sub = b.subscribe("q", [&](auto& d) { got.push_back(d.body()); });
    CHECK(b.publish("", to_queue<TestType>("q", "a")) == 0);
    CHECK(b.dispatch() == 0);
    CHECK(counts(stats(b, "q")) == "refused=1 consumers=1");
}

TEMPLATE_TEST_CASE("hand-off: a message with TTL 0 reaches an idle consumer, and expires without one",
                   "[queue][handoff][ttl]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("queue-ttl", with_args({{"x-message-ttl", 0}}));
    b.declare_queue("message-ttl");
    strings got;
    auto a = b.subscribe("queue-ttl", [&](auto& d) { got.push_back("queue-ttl:" + d.body()); });
    auto c = b.subscribe("message-ttl", [&](auto& d) { got.push_back("message-ttl:" + d.body()); });
    send(b, "queue-ttl", {"a"});
    auto m = to_queue<TestType>("message-ttl", "b");
    m.properties.expiration = "0";
    REQUIRE(b.publish("", std::move(m)) == 1);
    time.advance(std::chrono::seconds(1)); // handed over: time no longer ages them
    CHECK(b.dispatch() == 2);
    CHECK(got == strings{"queue-ttl:a", "message-ttl:b"});
    a.release();
    send(b, "queue-ttl", {"c"});
    CHECK(b.message_count("queue-ttl") == 0);
    CHECK(stats(b, "queue-ttl").dropped.expired == 1);
}

TEMPLATE_TEST_CASE("hand-off: a consumer that ends before its callback ran gives its messages back",
                   "[queue][handoff][cancel]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    auto never = [](auto&) { FAIL("the callback of an ended subscription ran"); };

    SECTION("automatic acks: restored as they were, in order, not redelivered (nothing saw them)") {
        auto sub = b.subscribe("q", never);
        send(b, "q", {"a", "b", "c"});
        sub.release();
        CHECK(counts(stats(b, "q")) == "enqueued=3 ready=3 ready_bytes=3");
        CHECK(b.dispatch() == 0);
        CHECK(drain_marked(b, "q") == strings{"a", "b", "c"});
    }
    SECTION("manual acks: requeued and redelivered, as RabbitMQ does with what it sent") {
        auto sub = b.subscribe("q", never, manual_options());
        send(b, "q", {"a", "b", "c"});
        sub.release();
        CHECK(counts(stats(b, "q")) == "enqueued=3 delivered=3 requeued=3 ready=3 ready_bytes=3");
        CHECK(drain_marked(b, "q") == strings{"a*", "b*", "c*"});
    }
    SECTION("messages handed to other consumers stay theirs, in arrival order") {
        strings got;
        auto keep = b.subscribe("q", [&](auto& d) { got.push_back(d.body()); });
        auto sub = b.subscribe("q", never);
        send(b, "q", {"a", "b", "c", "d"}); // round robin: a, c to keep; b, d to sub
        sub.release();
        CHECK(b.dispatch() == 4); // a and c as handed, then b and d from the queue
        CHECK(got == strings{"a", "c", "b", "d"});
    }
}

TEMPLATE_TEST_CASE("hand-off: deleting the queue accounts for the messages whose callbacks never ran",
                   "[queue][handoff][delete]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings order;
    auto with_cancel = [&](std::string tag, warren::ack_mode mode) {
        warren::consumer_options o{.tag = tag, .ack = mode};
        o.on_cancel = [&order, tag] { order.push_back(tag); };
        return o;
    };
    auto never = [](auto&) { FAIL("a callback ran after its queue was deleted"); };
    auto first = b.subscribe("q", never, with_cancel("first", warren::ack_mode::automatic));
    auto second = b.subscribe("q", never, with_cancel("second", manual));
    send(b, "q", {"a", "b", "c"});
    const auto before = stats(b, "q");
    CHECK(counts(before) == "enqueued=3 delivered=3 acked=2 unacked=1 awaiting_callback=3 consumers=2");
    CHECK(b.delete_queue("q") == 2); // none was ready; the automatic ones no code saw (manual: unacked)
    CHECK(order == strings{"first", "second"}); // subscription order, whatever the rotation
    CHECK(b.dispatch() == 0);
}

TEMPLATE_TEST_CASE("hand-off: a callback publishing to its own queue gets the message after it returns, in order",
                   "[queue][handoff][reentrancy]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings got;
    auto sub = b.subscribe("q", [&](auto& d) {
        got.push_back(d.body());
        if (d.body().size() < 3) {
            send(b, "q", {d.body() + "1"});
            send(b, "q", {d.body() + "2"});
        }
    });
    send(b, "q", {"a"});
    CHECK(b.dispatch() == 7);
    CHECK(got == strings{"a", "a1", "a2", "a11", "a12", "a21", "a22"});
    CHECK(counts(stats(b, "q")) == "enqueued=7 delivered=7 acked=7 consumers=1");
}

TEMPLATE_TEST_CASE("hand-off: a nested dispatch runs other consumers' handed messages, never the running one's",
                   "[queue][handoff][reentrancy]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q");
    strings got;
    std::size_t nested = 0;
    auto first = b.subscribe("q", [&](auto& d) {
        got.push_back("first:" + d.body());
        if (d.body() == "a") nested = b.dispatch();
    });
    auto second = b.subscribe("q", [&](auto& d) { got.push_back("second:" + d.body()); });
    send(b, "q", {"a", "b", "c", "d"}); // a, c to first; b, d to second
    CHECK(b.dispatch() == 2);
    CHECK(nested == 2); // b and d: c waits for first's callback to return
    CHECK(got == strings{"first:a", "second:b", "second:d", "first:c"});
}

TEMPLATE_TEST_CASE("hand-off: single active consumer and consumer priorities choose who is handed the message",
                   "[queue][handoff][priority][sac]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("sac", with_args({{"x-single-active-consumer", true}}));
    b.declare_queue("prio");
    strings got;
    auto note = [&](std::string tag) { return [&got, tag](auto& d) { got.push_back(tag + ":" + d.body()); }; };
    auto s1 = b.subscribe("sac", note("s1"));
    auto s2 = b.subscribe("sac", note("s2"));
    auto low = b.subscribe("prio", note("low"), {.tag = "low", .priority = 0});
    auto high = b.subscribe("prio", note("high"), {.tag = "high", .priority = 5});
    send(b, "sac", {"a", "b"});
    send(b, "prio", {"c", "d"});
    CHECK(b.dispatch() == 4);
    CHECK(got == strings{"s1:a", "high:c", "s1:b", "high:d"});
}

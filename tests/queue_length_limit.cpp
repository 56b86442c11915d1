// Queue length limits (x-max-length, x-max-length-bytes, x-overflow) and what a publisher
// in confirm mode learns about them, as RabbitMQ 3.10's classic queues define them
// (maxlength.html, confirms.html, rabbit_amqqueue_process).

#include <warren/broker.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/counters_text.hpp"

using warren_test::counts;
using warren_test::drain;
using warren_test::drain_marked;
using warren_test::manual;
using warren_test::send;
using warren_test::stats;
using warren_test::strings;
using warren_test::to_queue;
using warren_test::with_args;

namespace {

/// A confirm as one string: "ack routed=1 refused=0", with " returned" when it was.
std::string describe(const warren::confirmation& c) {
    return std::string(c.ack ? "ack" : "nack") + " routed=" + std::to_string(c.routed) +
           " refused=" + std::to_string(c.refused) + (c.returned ? " returned" : "");
}


/// The counters of an exchange, as counts() has them.
std::string counts(const warren::exchange_counters& c) {
    std::string out;
    auto add = [&](const char* name, std::uint64_t n) {
        if (n == 0) return;
        if (!out.empty()) out += ' ';
        out += name + ("=" + std::to_string(n));
    };
    add("published", c.published);
    add("routed", c.routed);
    add("unroutable", c.unroutable);
    add("returned", c.returned);
    add("nacked", c.nacked);
    return out;
}

/// Takes every message of `queue` and returns each as "body:reason", the reason of the
/// newest x-death entry ("none" without one).
template <class Broker>
strings dead_letters(Broker& b, std::string_view queue) {
    strings out;
    while (auto d = b.try_get(queue)) {
        std::string reason = "none";
        const warren::field_value* deaths = d->properties().headers.find("x-death");
        const warren::field_array* array = deaths == nullptr ? nullptr : deaths->get_if<warren::field_array>();
        if (array != nullptr && !array->empty()) {
            if (const auto* newest = array->front().get_if<warren::field_table>()) {
                const warren::field_value* r = newest->find("reason");
                if (const std::string* text = r == nullptr ? nullptr : r->get_if<std::string>()) reason = *text;
            }
        }
        out.push_back(d->body() + ":" + reason);
    }
    return out;
}

} // namespace

// ---------------------------------------------------------------------------------------
// drop-head

TEMPLATE_TEST_CASE("max-length: drop-head drops the oldest ready message (RabbitMQ maxlength.html)",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    SECTION("drop-head is the default") {
        b.declare_queue("q", with_args({{"x-max-length", 2}}));
    }
    SECTION("drop-head named") {
        b.declare_queue("q", with_args({{"x-max-length", 2}, {"x-overflow", "drop-head"}}));
    }
    send(b, "q", {"a", "b"});
    CHECK(counts(stats(b, "q")) == "enqueued=2 ready=2 ready_bytes=2");

    // The message that takes the queue over its limit is accepted (ack), the head goes.
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "c"))) == "ack routed=1 refused=0");
    CHECK(counts(stats(b, "q")) == "enqueued=3 dropped.maxlen=1 ready=2 ready_bytes=2");
    send(b, "q", {"d"});
    CHECK(counts(stats(b, "q")) == "enqueued=4 dropped.maxlen=2 ready=2 ready_bytes=2");
    CHECK(drain(b, "q") == strings{"c", "d"});
    CHECK(counts(stats(b, "q")) == "enqueued=4 delivered=2 acked=2 dropped.maxlen=2");
    CHECK(counts(b.exchange_stats("")) == "published=4 routed=4");
}

TEMPLATE_TEST_CASE("max-length: drop-head dead-letters the dropped messages with reason maxlen (RabbitMQ maxlength.html)",
                   "[queue][maxlength][dead-letter]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    b.declare_queue("q", with_args({{"x-max-length", 1}, {"x-dead-letter-exchange", "dlx"}}));
    send(b, "q", {"a", "b", "c"});
    CHECK(drain(b, "q") == strings{"c"});
    CHECK(dead_letters(b, "dead") == strings{"a:maxlen", "b:maxlen"}); // in the order they were dropped
    CHECK(counts(stats(b, "q")) == "enqueued=3 delivered=1 acked=1 dead_lettered.maxlen=2");
    CHECK(counts(b.exchange_stats("dlx")) == "published=2 routed=2");
}

TEMPLATE_TEST_CASE("max-length: unacknowledged messages do not count toward the limit (RabbitMQ maxlength.html)",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    SECTION("drop-head") {
        b.declare_queue("q", with_args({{"x-max-length", 1}}));
        send(b, "q", {"a"});
        auto a = b.try_get("q", manual);
        REQUIRE(a);
        send(b, "q", {"b"}); // a is unacked: the queue holds one ready message, at its limit
        CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=1 ready=1 unacked=1 ready_bytes=1");
        send(b, "q", {"c"});
        CHECK(counts(stats(b, "q")) == "enqueued=3 delivered=1 dropped.maxlen=1 ready=1 unacked=1 ready_bytes=1");
        a->ack();
        CHECK(drain(b, "q") == strings{"c"});
    }
    SECTION("reject-publish") {
        b.declare_queue("q", with_args({{"x-max-length", 1}, {"x-overflow", "reject-publish"}}));
        send(b, "q", {"a"});
        auto a = b.try_get("q", manual);
        REQUIRE(a);
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "b"))) == "ack routed=1 refused=0");
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "c"))) == "nack routed=0 refused=1");
        CHECK(counts(stats(b, "q")) == "enqueued=2 refused=1 delivered=1 ready=1 unacked=1 ready_bytes=1");
        a->ack();
        CHECK(drain(b, "q") == strings{"b"});
    }
}

TEMPLATE_TEST_CASE("max-length-bytes: drop-head limits the body bytes of ready messages (RabbitMQ maxlength.html)",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length-bytes", 10}}));

    SECTION("the oldest messages go until the rest fit") {
        send(b, "q", {"aaaa", "bbbb", "cc"});
        CHECK(counts(stats(b, "q")) == "enqueued=3 ready=3 ready_bytes=10"); // exactly at the limit
        send(b, "q", {"d"});
        CHECK(counts(stats(b, "q")) == "enqueued=4 dropped.maxlen=1 ready=3 ready_bytes=7");
        send(b, "q", {"eeeeeeee"});
        CHECK(counts(stats(b, "q")) == "enqueued=5 dropped.maxlen=3 ready=2 ready_bytes=9");
        CHECK(drain(b, "q") == strings{"d", "eeeeeeee"});
    }
    SECTION("a message larger than the limit is accepted, then dropped itself") {
        send(b, "q", {"abc"});
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "0123456789X"))) == "ack routed=1 refused=0");
        CHECK(counts(stats(b, "q")) == "enqueued=2 dropped.maxlen=2");
        CHECK(drain(b, "q").empty());
    }
    SECTION("properties, headers and the routing key do not count") {
        typename TestType::message_type m = to_queue<TestType>("q", "0123456789");
        m.properties.headers.set("padding", std::string(1000, 'x'));
        m.properties.content_type = std::string(200, 'y');
        REQUIRE(b.publish("", std::move(m)) == 1);
        CHECK(counts(stats(b, "q")) == "enqueued=1 ready=1 ready_bytes=10");
    }
    SECTION("unacknowledged bodies do not count") {
        send(b, "q", {"0123456789"});
        auto first = b.try_get("q", manual);
        REQUIRE(first);
        send(b, "q", {"abcdefghij"});
        CHECK(counts(stats(b, "q")) == "enqueued=2 delivered=1 ready=1 unacked=1 ready_bytes=10");
        first->ack();
        CHECK(drain(b, "q") == strings{"abcdefghij"});
    }
}

TEMPLATE_TEST_CASE("max-length and max-length-bytes: whichever limit is passed applies (RabbitMQ maxlength.html)",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 3}, {"x-max-length-bytes", 5}}));
    send(b, "q", {"aa", "bb", "c"});                 // 3 messages, 5 bytes: at both limits
    send(b, "q", {"d"});                             // 4 messages: the count limit drops aa
    CHECK(counts(stats(b, "q")) == "enqueued=4 dropped.maxlen=1 ready=3 ready_bytes=4");
    send(b, "q", {"eeee"});                          // 4 messages, 8 bytes: bb goes, then c for bytes
    CHECK(counts(stats(b, "q")) == "enqueued=5 dropped.maxlen=3 ready=2 ready_bytes=5");
    CHECK(drain(b, "q") == strings{"d", "eeee"});
}

// ---------------------------------------------------------------------------------------
// reject-publish, reject-publish-dlx

TEMPLATE_TEST_CASE("max-length: reject-publish refuses the newest message and nacks it (RabbitMQ maxlength.html)",
                   "[queue][maxlength][confirm]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 2}, {"x-overflow", "reject-publish"}}));
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "a"))) == "ack routed=1 refused=0");
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "b"))) == "ack routed=1 refused=0");
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "c"))) == "nack routed=0 refused=1");
    CHECK(b.publish("", to_queue<TestType>("q", "d")) == 0); // no queue got it
    CHECK(counts(stats(b, "q")) == "enqueued=2 refused=2 ready=2 ready_bytes=2");
    // A refused message was routed: it is not unroutable, it is nacked.
    CHECK(counts(b.exchange_stats("")) == "published=4 routed=4 nacked=2");

    CHECK(drain(b, "q") == strings{"a", "b"});
    // Room again: the next one is taken.
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "e"))) == "ack routed=1 refused=0");
    CHECK(drain(b, "q") == strings{"e"});
}

TEMPLATE_TEST_CASE("max-length-bytes: reject-publish refuses a message whose body would pass the limit (RabbitMQ maxlength.html)",
                   "[queue][maxlength][confirm]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length-bytes", 5}, {"x-overflow", "reject-publish"}}));
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "abc"))) == "ack routed=1 refused=0");
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "def"))) == "nack routed=0 refused=1");
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "de"))) == "ack routed=1 refused=0");
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "f"))) == "nack routed=0 refused=1");
    // rabbit_amqqueue_process:will_overflow: bytes + 0 > 5 is false, so an empty body fits.
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", ""))) == "ack routed=1 refused=0");
    CHECK(counts(stats(b, "q")) == "enqueued=3 refused=2 ready=3 ready_bytes=5");
    CHECK(drain(b, "q") == strings{"abc", "de", ""});
}

TEMPLATE_TEST_CASE("max-length: reject-publish-dlx refuses, nacks and dead-letters the newest message (RabbitMQ maxlength.html)",
                   "[queue][maxlength][confirm][dead-letter]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");

    SECTION("with a dead-letter exchange") {
        b.declare_queue("q", with_args({{"x-max-length", 1},
                                        {"x-overflow", "reject-publish-dlx"},
                                        {"x-dead-letter-exchange", "dlx"}}));
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "a"))) == "ack routed=1 refused=0");
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "b"))) == "nack routed=0 refused=1");
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "c"))) == "nack routed=0 refused=1");
        CHECK(drain(b, "q") == strings{"a"});
        CHECK(dead_letters(b, "dead") == strings{"b:maxlen", "c:maxlen"});
        // The refused messages were never in the queue: they count as refused only, so that
        // enqueued still equals what left the queue (accounted()).
        CHECK(counts(stats(b, "q")) == "enqueued=1 refused=2 delivered=1 acked=1");
        CHECK(counts(b.exchange_stats("dlx")) == "published=2 routed=2");
    }
    SECTION("by bytes") {
        b.declare_queue("q", with_args({{"x-max-length-bytes", 4},
                                        {"x-overflow", "reject-publish-dlx"},
                                        {"x-dead-letter-exchange", "dlx"}}));
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "abc"))) == "ack routed=1 refused=0");
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "de"))) == "nack routed=0 refused=1");
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "f"))) == "ack routed=1 refused=0");
        CHECK(drain(b, "q") == strings{"abc", "f"});
        CHECK(dead_letters(b, "dead") == strings{"de:maxlen"});
        CHECK(counts(stats(b, "q")) == "enqueued=2 refused=1 delivered=2 acked=2");
    }
    SECTION("without one it is reject-publish") {
        b.declare_queue("q", with_args({{"x-max-length", 1}, {"x-overflow", "reject-publish-dlx"}}));
        send(b, "q", {"a"});
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "b"))) == "nack routed=0 refused=1");
        CHECK(drain(b, "q") == strings{"a"});
        CHECK(b.message_count("dead") == 0);
        CHECK(counts(stats(b, "q")) == "enqueued=1 refused=1 delivered=1 acked=1");
    }
}

TEMPLATE_TEST_CASE("max-length: reject-publish does not drop when a requeue passes the limit (rabbit_amqqueue_process:maybe_drop_head)",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 2}, {"x-overflow", "reject-publish"}}));
    send(b, "q", {"a"});
    auto a = b.try_get("q", manual);
    REQUIRE(a);
    send(b, "q", {"b", "c"});
    a->nack(false, true); // three ready now, one over the limit: kept
    CHECK(counts(stats(b, "q")) == "enqueued=3 delivered=1 requeued=1 ready=3 ready_bytes=3");
    CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "d"))) == "nack routed=0 refused=1");
    CHECK(drain_marked(b, "q") == strings{"a*", "b", "c"});
}

// ---------------------------------------------------------------------------------------
// requeue and drop-head

TEMPLATE_TEST_CASE("max-length: a requeue over the limit with drop-head drops the head again (rabbit_amqqueue_process:requeue_and_run)",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("dlx", "fanout");
    b.declare_queue("dead");
    b.bind_queue("dead", "dlx");
    b.declare_queue("q", with_args({{"x-max-length", 2}, {"x-dead-letter-exchange", "dlx"}}));
    send(b, "q", {"a"});
    auto a = b.try_get("q", manual);
    REQUIRE(a);
    send(b, "q", {"b", "c"});

    SECTION("nack with requeue") {
        // a returns to its place, the head, and the queue is one over: a is dropped again.
        a->nack(false, true);
    }
    SECTION("reject with requeue") {
        a->reject(true);
    }
    CHECK(counts(stats(b, "q")) == "enqueued=3 delivered=1 requeued=1 dead_lettered.maxlen=1 ready=2 ready_bytes=2");
    CHECK(dead_letters(b, "dead") == strings{"a:maxlen"});
    CHECK(drain_marked(b, "q") == strings{"b", "c"});
}

TEMPLATE_TEST_CASE("max-length: messages a consumer leaves unacked return over the limit and drop the head",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 2}}));
    send(b, "q", {"a", "b"});
    std::vector<typename TestType::delivery> held;
    {
        auto sub = b.subscribe("q", [&](typename TestType::delivery& d) { held.push_back(std::move(d)); },
                               {.ack = manual, .prefetch = 2});
        REQUIRE(b.dispatch() == 2);
        send(b, "q", {"c", "d"}); // ready: the consumer is at its prefetch limit
        // Ending the subscription requeues a and b ahead of c and d: two over the limit.
    }
    CHECK(counts(stats(b, "q")) == "enqueued=4 delivered=2 requeued=2 dropped.maxlen=2 ready=2 ready_bytes=2");
    CHECK(drain_marked(b, "q") == strings{"c", "d"});
}

// ---------------------------------------------------------------------------------------
// max-length 0

TEMPLATE_TEST_CASE("max-length 0: drop-head keeps nothing and reject-publish refuses everything (RabbitMQ maxlength.html)",
                   "[queue][maxlength][confirm]", warren::broker, warren::concurrent_broker) {
    TestType b;
    SECTION("drop-head: accepted and acked, then dropped") {
        b.declare_queue("q", with_args({{"x-max-length", 0}}));
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "a"))) == "ack routed=1 refused=0");
        CHECK(counts(stats(b, "q")) == "enqueued=1 dropped.maxlen=1");
        CHECK_FALSE(b.try_get("q").has_value());
    }
    SECTION("drop-head with a dead-letter exchange: dead-lettered at once") {
        b.declare_queue("dead");
        b.declare_queue("q", with_args({{"x-max-length", 0},
                                        {"x-dead-letter-exchange", ""},
                                        {"x-dead-letter-routing-key", "dead"}}));
        send(b, "q", {"a", "b"});
        CHECK(dead_letters(b, "dead") == strings{"a:maxlen", "b:maxlen"});
        CHECK(counts(stats(b, "q")) == "enqueued=2 dead_lettered.maxlen=2");
    }
    SECTION("reject-publish: refused and nacked") {
        b.declare_queue("q", with_args({{"x-max-length", 0}, {"x-overflow", "reject-publish"}}));
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", ""))) == "nack routed=0 refused=1");
        CHECK(counts(stats(b, "q")) == "refused=1");
    }
    SECTION("x-max-length-bytes 0 with reject-publish takes empty bodies only") {
        b.declare_queue("q", with_args({{"x-max-length-bytes", 0}, {"x-overflow", "reject-publish"}}));
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", "a"))) == "nack routed=0 refused=1");
        CHECK(describe(b.publish_confirmed("", to_queue<TestType>("q", ""))) == "ack routed=1 refused=0");
        CHECK(counts(stats(b, "q")) == "enqueued=1 refused=1 ready=1");
    }
}

// rabbit_amqqueue_process:deliver_or_enqueue tries a waiting consumer before it enqueues,
// so a message for an idle consumer never counts toward the limit; so does warren (the
// callback then runs at the next dispatch).
TEMPLATE_TEST_CASE("max-length 0: drop-head delivers to a consumer that can take the message (rabbit_amqqueue_process:deliver_or_enqueue)",
                   "[queue][maxlength]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("q", with_args({{"x-max-length", 0}}));
    strings got;
    auto sub = b.subscribe("q", [&](typename TestType::delivery& d) { got.push_back(d.body()); });
    send(b, "q", {"a"});
    CHECK(b.dispatch() == 1);
    CHECK(got == strings{"a"});
    CHECK(counts(stats(b, "q")) == "enqueued=1 delivered=1 acked=1 consumers=1");
}

// ---------------------------------------------------------------------------------------
// confirms with several queues, mandatory

TEMPLATE_TEST_CASE("confirms: a message one queue refuses is nacked and still enqueued in the others (RabbitMQ maxlength.html)",
                   "[queue][maxlength][confirm]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("f", "fanout");
    b.declare_queue("full", with_args({{"x-max-length", 1}, {"x-overflow", "reject-publish"}}));
    b.declare_queue("open");
    b.bind_queue("full", "f");
    b.bind_queue("open", "f");
    CHECK(describe(b.publish_confirmed("f", {.routing_key = "", .body = "a"})) == "ack routed=2 refused=0");
    CHECK(describe(b.publish_confirmed("f", {.routing_key = "", .body = "b"})) == "nack routed=1 refused=1");
    CHECK(drain(b, "full") == strings{"a"});
    CHECK(drain(b, "open") == strings{"a", "b"});
    CHECK(counts(b.exchange_stats("f")) == "published=2 routed=2 nacked=1");

    SECTION("a drop-head queue at its limit does not nack") {
        b.declare_queue("drops", with_args({{"x-max-length", 1}}));
        b.bind_queue("drops", "f");
        CHECK(describe(b.publish_confirmed("f", {.routing_key = "", .body = "c"})) == "ack routed=3 refused=0");
        CHECK(describe(b.publish_confirmed("f", {.routing_key = "", .body = "d"})) == "nack routed=2 refused=1");
        CHECK(drain(b, "drops") == strings{"d"});
    }
}

TEMPLATE_TEST_CASE("confirms: a mandatory message every queue refused is nacked, not returned (RabbitMQ confirms.html)",
                   "[queue][maxlength][confirm][mandatory]", warren::broker, warren::concurrent_broker) {
    TestType b;
    int returns = 0;
    b.set_return_handler([&](typename TestType::returned_message&) { ++returns; });
    b.declare_exchange("f", "fanout");
    for (const char* name : {"q1", "q2"}) {
        b.declare_queue(name, with_args({{"x-max-length", 0}, {"x-overflow", "reject-publish"}}));
        b.bind_queue(name, "f");
    }
    CHECK(describe(b.publish_confirmed("f", {.routing_key = "", .body = "a"}, {.mandatory = true})) ==
          "nack routed=0 refused=2");
    CHECK(returns == 0);
    CHECK(counts(b.exchange_stats("f")) == "published=1 routed=1 nacked=1");
}

TEMPLATE_TEST_CASE("confirms: an unroutable mandatory message is returned before it is acked (RabbitMQ confirms.html)",
                   "[queue][confirm][mandatory]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    strings returned;
    b.set_return_handler([&](typename TestType::returned_message& r) {
        returned.push_back(std::to_string(static_cast<int>(r.code)) + " " + r.reply_text + " " + r.exchange + " " +
                           r.message.routing_key + " " + r.message.body);
    });

    SECTION("mandatory: the handler has run when publish_confirmed returns") {
        const warren::confirmation c = b.publish_confirmed("x", {.routing_key = "k", .body = "a"}, {.mandatory = true});
        CHECK(returned == strings{"312 NO_ROUTE x k a"});
        CHECK(describe(c) == "ack routed=0 refused=0 returned");
        CHECK(counts(b.exchange_stats("x")) == "published=1 unroutable=1 returned=1");
    }
    SECTION("not mandatory: dropped, acked, not returned") {
        CHECK(describe(b.publish_confirmed("x", {.routing_key = "k", .body = "a"})) == "ack routed=0 refused=0");
        CHECK(returned.empty());
        CHECK(counts(b.exchange_stats("x")) == "published=1 unroutable=1");
    }
    SECTION("a routable mandatory message is not returned") {
        b.declare_queue("q");
        b.bind_queue("q", "x", "k");
        CHECK(describe(b.publish_confirmed("x", {.routing_key = "k", .body = "a"}, {.mandatory = true})) ==
              "ack routed=1 refused=0");
        CHECK(returned.empty());
        CHECK(counts(b.exchange_stats("x")) == "published=1 routed=1");
    }
}

TEMPLATE_TEST_CASE("publisher: publish_confirmed through a handle reports nacks and returns (RabbitMQ confirms.html)",
                   "[queue][maxlength][confirm][publisher]", warren::broker, warren::concurrent_broker) {
    TestType b;
    int returns = 0;
    b.set_return_handler([&](typename TestType::returned_message&) { ++returns; });
    b.declare_exchange("f", "fanout");
    b.declare_queue("q", with_args({{"x-max-length", 1}, {"x-overflow", "reject-publish"}}));
    b.bind_queue("q", "f");
    auto pub = b.make_publisher("f");
    CHECK(describe(pub.publish_confirmed({.routing_key = "", .body = "a"})) == "ack routed=1 refused=0");
    CHECK(describe(pub.publish_confirmed({.routing_key = "", .body = "b"}, {.mandatory = true})) ==
          "nack routed=0 refused=1");
    CHECK(pub.publish({.routing_key = "", .body = "c"}) == 0);
    CHECK(returns == 0);
    b.unbind_queue("q", "f");
    CHECK(describe(pub.publish_confirmed({.routing_key = "", .body = "d"}, {.mandatory = true})) ==
          "ack routed=0 refused=0 returned");
    CHECK(returns == 1);
    CHECK(counts(b.exchange_stats("f")) == "published=4 routed=3 unroutable=1 returned=1 nacked=2");
    CHECK(drain(b, "q") == strings{"a"});
}

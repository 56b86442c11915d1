// RabbitMQ's direct reply-to (basic_broker::subscribe on "amq.rabbitmq.reply-to"): no reply
// queue declared, reply_to rewritten by the broker, replies at most once and dropped once
// the requester is gone; the refusals in RabbitMQ's words; and rpc_client on it
// (rpc_client_options::direct_reply_to). On both policies, from one thread.

#include <chrono>
#include <cstddef>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include <warren/patterns/rpc_client.hpp>
#include <warren/patterns/rpc_server.hpp>
#include <warren/warren.hpp>

#include "support/catch.hpp"
#include "support/errors.hpp"

using namespace std::chrono_literals;
using warren_test::error_of;

namespace {

constexpr const char* drt_pseudo_queue = "amq.rabbitmq.reply-to";

/// A request to `queue` (default exchange) asking for a direct reply.
template <class Broker>
typename Broker::message_type drt_request(const std::string& queue, const std::string& body,
                                      std::optional<std::string> reply_to = drt_pseudo_queue) {
    typename Broker::message_type m{.routing_key = queue, .body = body};
    m.properties.reply_to = std::move(reply_to);
    m.properties.correlation_id = "c-" + body;
    return m;
}

/// A reply to `address` (a rewritten reply_to) with `body` and correlation id `cid`.
template <class Broker>
std::size_t drt_reply(Broker& b, const std::string& address, const std::string& body,
                  std::optional<std::string> cid = std::nullopt) {
    typename Broker::message_type m{.routing_key = address, .body = body};
    m.properties.correlation_id = std::move(cid);
    return b.publish("", std::move(m));
}

} // namespace

TEMPLATE_TEST_CASE("direct reply-to: the broker rewrites reply_to and the reply reaches the requester with no queue",
                   "[direct_reply_to]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    std::vector<std::string> replies;
    auto requester = b.subscribe(drt_pseudo_queue, [&](typename TestType::delivery& d) {
        replies.push_back(d.body());
        CHECK(d.properties().correlation_id == "c-30");
        CHECK(d.exchange().empty());
        CHECK_FALSE(d.redelivered());
        CHECK_FALSE(d.pending()); // settled as it was handed out
    });
    const std::string address = requester.queue();
    REQUIRE(address.starts_with("amq.rabbitmq.reply-to."));
    CHECK(address.size() > std::string("amq.rabbitmq.reply-to.").size());

    REQUIRE(b.publish("", drt_request<TestType>("rpc_queue", "30")) == 1);
    auto got = b.try_get("rpc_queue");
    REQUIRE(got);
    CHECK(got->properties().reply_to == address); // rewritten from amq.rabbitmq.reply-to
    CHECK(drt_reply(b, *got->properties().reply_to, "832040", got->properties().correlation_id) == 1);
    (void)b.dispatch();
    CHECK(replies == std::vector<std::string>{"832040"});

    SECTION("no reply queue was declared, and snapshot() shows none") {
        const auto topology = b.snapshot();
        REQUIRE(topology.queues.size() == 1);
        CHECK(topology.queues[0].name == "rpc_queue");
        CHECK(topology.consumers.empty());
    }
    SECTION("a responder can check that the requester is still there (a passive declare)") {
        CHECK(b.has_queue(address));
        CHECK(b.declare_queue(address) == address);
        CHECK(b.has_queue(drt_pseudo_queue));
        CHECK(b.declare_queue(drt_pseudo_queue) == drt_pseudo_queue);
    }
}

TEMPLATE_TEST_CASE("direct reply-to drops replies to a requester that left", "[direct_reply_to]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    int replies = 0;
    auto requester = b.subscribe(drt_pseudo_queue, [&](typename TestType::delivery&) { ++replies; });
    REQUIRE(b.publish("", drt_request<TestType>("rpc_queue", "1")) == 1);
    const std::string address = *b.try_get("rpc_queue")->properties().reply_to;

    SECTION("the reply routes to nothing once the subscription ended") {
        requester.release();
        CHECK(drt_reply(b, address, "late") == 0);
        CHECK(b.dispatch() == 0);
        CHECK(replies == 0);
        CHECK_FALSE(b.has_queue(address));
        CHECK(error_of([&] { (void)b.declare_queue(address); }) ==
              "404 NOT_FOUND - no queue '" + address + "'");
    }
    SECTION("a reply waiting for dispatch() goes with the subscription") {
        CHECK(drt_reply(b, address, "waiting") == 1);
        requester.release();
        CHECK(b.dispatch() == 0);
        CHECK(replies == 0);
    }
    SECTION("a mandatory reply to a requester that left is returned as unroutable (312)") {
        requester.release();
        std::vector<std::string> returned;
        b.set_return_handler([&](typename TestType::returned_message& r) { returned.push_back(r.message.body); });
        typename TestType::message_type m{.routing_key = address, .body = "late"};
        CHECK(b.publish("", std::move(m), {.mandatory = true}) == 0);
        CHECK(returned == std::vector<std::string>{"late"});
    }
    SECTION("a new subscription gets a new address: the old one stays dead") {
        requester.release();
        int again = 0;
        auto second = b.subscribe(drt_pseudo_queue, [&](typename TestType::delivery&) { ++again; });
        CHECK(second.queue() != address);
        CHECK(drt_reply(b, address, "for the first") == 0);
        CHECK(drt_reply(b, second.queue(), "for the second") == 1);
        (void)b.dispatch();
        CHECK(again == 1);
        CHECK(replies == 0);
    }
    SECTION("with rpc_server: the reply is counted unroutable and the request acked") {
        // The request taken above is gone (automatic ack); send another for the server.
        REQUIRE(b.publish("", drt_request<TestType>("rpc_queue", "2")) == 1);
        requester.release();
        warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) { return "re:" + d.body(); });
        (void)b.dispatch();
        CHECK(server.handled() == 1);
        CHECK(server.unroutable_replies() == 1);
        CHECK(b.message_count("rpc_queue") == 0);
        CHECK(replies == 0);
    }
}

TEMPLATE_TEST_CASE("direct reply-to: at most once: a reply whose callback throws is not delivered again",
                   "[direct_reply_to]", warren::broker, warren::concurrent_broker) {
    TestType b;
    std::vector<std::string> seen;
    std::vector<std::string> errors;
    b.set_error_handler([&](const warren::consumer_error& e) { errors.push_back(e.consumer_tag); });
    auto requester = b.subscribe(
        drt_pseudo_queue,
        [&](typename TestType::delivery& d) {
            seen.push_back(d.body());
            if (d.body() == "poison") throw warren_test::callback_failure("reply handler failed");
        },
        {.tag = "requester"});
    CHECK(drt_reply(b, requester.queue(), "poison") == 1);
    CHECK(drt_reply(b, requester.queue(), "fine") == 1);
    CHECK(b.dispatch() == 2);
    CHECK(b.dispatch() == 0);
    CHECK(b.dispatch() == 0);
    CHECK(seen == std::vector<std::string>{"poison", "fine"}); // "poison" once: never redelivered
    CHECK(errors == std::vector<std::string>{"requester"});
}

TEMPLATE_TEST_CASE("direct reply-to: refusals in RabbitMQ's words", "[direct_reply_to]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    auto none = [](typename TestType::delivery&) {};

    SECTION("a reply consumer with manual acks: reply consumer cannot acknowledge (406)") {
        CHECK(error_of([&] { (void)b.subscribe(drt_pseudo_queue, none, {.ack = warren::ack_mode::manual}); }) ==
              "406 PRECONDITION_FAILED - reply consumer cannot acknowledge");
        // Nothing was made: a publish asking for a direct reply still has no consumer.
        CHECK(error_of([&] { (void)b.publish("", drt_request<TestType>("rpc_queue", "x")); }) ==
              "406 PRECONDITION_FAILED - fast reply consumer does not exist");
    }
    SECTION("a publish asking for a direct reply with no reply consumer: fast reply consumer does not exist (406)") {
        CHECK(error_of([&] { (void)b.publish("", drt_request<TestType>("rpc_queue", "x")); }) ==
              "406 PRECONDITION_FAILED - fast reply consumer does not exist");
        CHECK(b.message_count("rpc_queue") == 0); // refused before routing
        SECTION("also through a publisher handle") {
            auto p = b.make_publisher("");
            CHECK(error_of([&] { (void)p.publish(drt_request<TestType>("rpc_queue", "x")); }) ==
                  "406 PRECONDITION_FAILED - fast reply consumer does not exist");
        }
        SECTION("also once the only reply consumer left") {
            auto requester = b.subscribe(drt_pseudo_queue, none);
            CHECK(b.publish("", drt_request<TestType>("rpc_queue", "x")) == 1);
            requester.release();
            CHECK(error_of([&] { (void)b.publish("", drt_request<TestType>("rpc_queue", "y")); }) ==
                  "406 PRECONDITION_FAILED - fast reply consumer does not exist");
            CHECK(b.message_count("rpc_queue") == 1);
        }
    }
    SECTION("a publish naming a tag that has no reply consumer: fast reply consumer does not exist (406)") {
        auto requester = b.subscribe(drt_pseudo_queue, none, {.tag = "mine"});
        CHECK(error_of([&] { (void)b.publish("", drt_request<TestType>("rpc_queue", "x"), {.reply_consumer = "other"}); }) ==
              "406 PRECONDITION_FAILED - fast reply consumer does not exist");
    }
    SECTION("a second reply consumer under the same tag: reply consumer already set (406)") {
        auto requester = b.subscribe(drt_pseudo_queue, none, {.tag = "mine"});
        CHECK(error_of([&] { (void)b.subscribe(drt_pseudo_queue, none, {.tag = "mine"}); }) ==
              "406 PRECONDITION_FAILED - reply consumer already set");
        requester.release();
        auto again = b.subscribe(drt_pseudo_queue, none, {.tag = "mine"}); // free once it left
        CHECK(again.active());
    }
    SECTION("checks before the rewrite come first: unknown exchange, internal exchange") {
        CHECK(error_of([&] { (void)b.publish("nowhere", drt_request<TestType>("rpc_queue", "x")); }) ==
              "404 NOT_FOUND - no exchange 'nowhere'");
        b.declare_exchange("inside", "direct", {.internal = true});
        CHECK(error_of([&] { (void)b.publish("inside", drt_request<TestType>("rpc_queue", "x")); }) ==
              "403 ACCESS_REFUSED - cannot publish to internal exchange 'inside'");
    }
}

TEMPLATE_TEST_CASE("direct reply-to: a publish names its requester by consumer tag, or none when there is one",
                   "[direct_reply_to]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    auto none = [](typename TestType::delivery&) {};
    auto first = b.subscribe(drt_pseudo_queue, none, {.tag = "first"});
    auto reply_to_of = [&](warren::publish_options options) {
        REQUIRE(b.publish("", drt_request<TestType>("rpc_queue", "x"), options) == 1);
        return b.try_get("rpc_queue")->properties().reply_to.value_or("");
    };
    CHECK(reply_to_of({}) == first.queue()); // the only one

    auto second = b.subscribe(drt_pseudo_queue, none, {.tag = "second"});
    CHECK(first.queue() != second.queue());
    CHECK(reply_to_of({.reply_consumer = "first"}) == first.queue());
    CHECK(reply_to_of({.reply_consumer = "second"}) == second.queue());
    CHECK(error_of([&] { (void)b.publish("", drt_request<TestType>("rpc_queue", "x")); }) ==
          "406 PRECONDITION_FAILED - fast reply consumer is ambiguous: 2 consumers of 'amq.rabbitmq.reply-to', and "
          "publish_options::reply_consumer names none");
    first.release();
    CHECK(reply_to_of({}) == second.queue());

    SECTION("a publisher handle's publish is rewritten alike") {
        auto p = b.make_publisher("");
        REQUIRE(p.publish(drt_request<TestType>("rpc_queue", "x"), {.reply_consumer = "second"}) == 1);
        CHECK(b.try_get("rpc_queue")->properties().reply_to == second.queue());
    }
    SECTION("a generated tag works as well") {
        auto third = b.subscribe(drt_pseudo_queue, none);
        CHECK(third.tag().starts_with("amq.ctag-"));
        CHECK(reply_to_of({.reply_consumer = third.tag()}) == third.queue());
    }
}

TEMPLATE_TEST_CASE("direct reply-to: only reply_to = amq.rabbitmq.reply-to exactly is rewritten", "[direct_reply_to]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    auto requester = b.subscribe(drt_pseudo_queue, [](typename TestType::delivery&) {});
    for (const std::string other : {"amq.rabbitmq.reply-to.made-up", "amq.rabbitmq.reply-tox", "my_replies", ""}) {
        REQUIRE(b.publish("", drt_request<TestType>("rpc_queue", "x", other)) == 1);
        CHECK(b.try_get("rpc_queue")->properties().reply_to == other);
    }
    SECTION("publishing to the pseudo-queue's own name routes to nothing") {
        CHECK(drt_reply(b, drt_pseudo_queue, "x") == 0);
    }
    SECTION("a mandatory request that no queue takes is returned with reply_to rewritten") {
        std::optional<std::string> returned_reply_to;
        b.set_return_handler(
            [&](typename TestType::returned_message& r) { returned_reply_to = r.message.properties.reply_to; });
        CHECK(b.publish("", drt_request<TestType>("no_such_queue", "x"), {.mandatory = true}) == 0);
        CHECK(returned_reply_to == requester.queue());
    }
}

TEMPLATE_TEST_CASE("direct reply-to: the pseudo-queue and the addresses are not queues", "[direct_reply_to]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_exchange("x", "direct");
    auto requester = b.subscribe(drt_pseudo_queue, [](typename TestType::delivery&) {});
    const std::string address = requester.queue();
    for (const std::string& name : {std::string(drt_pseudo_queue), address}) {
        INFO(name);
        const std::string missing = "404 NOT_FOUND - no queue '" + name + "'";
        CHECK(error_of([&] { b.bind_queue(name, "x", "k"); }) == missing);
        CHECK(error_of([&] { (void)b.try_get(name); }) == missing);
        CHECK(error_of([&] { (void)b.purge_queue(name); }) == missing);
        CHECK(error_of([&] { (void)b.message_count(name); }) == missing);
        CHECK(error_of([&] { (void)b.consumer_count(name); }) == missing);
        CHECK(error_of([&] { (void)b.make_queue_handle(name); }) == missing);
        CHECK(b.delete_queue(name) == 0);
    }
    CHECK(error_of([&] { (void)b.subscribe(address, [](typename TestType::delivery&) {}); }) ==
          "404 NOT_FOUND - no queue '" + address + "'");
    CHECK(error_of([&] { (void)b.declare_queue("amq.rabbitmq.reply-to.made-up"); }) ==
          "404 NOT_FOUND - no queue 'amq.rabbitmq.reply-to.made-up'");
    // Deleting did nothing: the requester still gets its replies.
    CHECK(requester.active());
    CHECK(drt_reply(b, address, "still here") == 1);
    CHECK(b.dispatch() == 1);
}

TEST_CASE("direct reply-to: a synchronous reply consumer runs inside the responder's publish", "[direct_reply_to]") {
    warren::broker b;
    b.declare_queue("rpc_queue");
    std::vector<std::string> replies;
    auto requester = b.subscribe(
        drt_pseudo_queue, [&](warren::delivery& d) { replies.push_back(d.body()); }, {.synchronous = true});
    auto server = b.subscribe("rpc_queue", [&](warren::delivery& d) {
        (void)drt_reply(b, *d.properties().reply_to, "re:" + d.body());
        CHECK(replies == std::vector<std::string>{"re:ping"}); // already there
    });
    REQUIRE(b.publish("", drt_request<warren::broker>("rpc_queue", "ping")) == 1);
    CHECK(b.dispatch() == 1);
    CHECK(replies == std::vector<std::string>{"re:ping"});
}

TEST_CASE("direct reply-to: a reply consumer that ends its own subscription drops what follows", "[direct_reply_to]") {
    warren::broker b;
    std::vector<std::string> seen;
    warren::broker::subscription requester;
    requester = b.subscribe(drt_pseudo_queue, [&](warren::delivery& d) {
        seen.push_back(d.body());
        requester.release();
    });
    const std::string address = requester.queue();
    CHECK(drt_reply(b, address, "a") == 1);
    CHECK(drt_reply(b, address, "b") == 1);
    (void)b.dispatch();
    CHECK(seen == std::vector<std::string>{"a"});
    CHECK(drt_reply(b, address, "c") == 0);
}

TEST_CASE("direct reply-to: a reply consumer that outlives its broker is harmless", "[direct_reply_to]") {
    std::optional<warren::broker> b(std::in_place);
    auto requester = b->subscribe(drt_pseudo_queue, [](warren::delivery&) {});
    CHECK(drt_reply(*b, requester.queue(), "x") == 1);
    b.reset();
    CHECK_FALSE(requester.active());
    requester.release(); // harmless
}

// -- rpc_client on direct reply-to ----------------------------------------------------------

TEMPLATE_TEST_CASE("rpc_client with direct reply-to: replies arrive and no reply queue is declared",
                   "[direct_reply_to][rpc_client]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) { return "re:" + d.body(); });
    warren::rpc_client client(b, {.direct_reply_to = true});
    CHECK(client.direct_reply_to());
    CHECK(client.reply_queue().starts_with("amq.rabbitmq.reply-to."));
    CHECK(b.snapshot().queues.size() == 1); // rpc_queue alone

    std::vector<std::string> seen;
    const std::string cid = client.call("", "rpc_queue", "30", 1s, [&](warren::rpc_result<> r) {
        REQUIRE(r.ok());
        seen.push_back(r.reply().body);
        CHECK(r.reply().routing_key == client.reply_queue());
    });
    CHECK(cid.starts_with(client.reply_queue() + "."));
    (void)b.dispatch();
    (void)b.dispatch();
    CHECK(seen == std::vector<std::string>{"re:30"});
    CHECK(client.pending() == 0);
    CHECK(server.replies() == 1);

    SECTION("two clients on one broker each get their own replies") {
        warren::rpc_client other(b, {.direct_reply_to = true});
        CHECK(other.reply_queue() != client.reply_queue());
        std::vector<std::string> mine;
        std::vector<std::string> theirs;
        (void)client.call("", "rpc_queue", "a", 1s, [&](warren::rpc_result<> r) { mine.push_back(r.reply().body); });
        (void)other.call("", "rpc_queue", "b", 1s, [&](warren::rpc_result<> r) { theirs.push_back(r.reply().body); });
        while (b.dispatch() != 0) {
        }
        CHECK(mine == std::vector<std::string>{"re:a"});
        CHECK(theirs == std::vector<std::string>{"re:b"});
        CHECK(client.unknown_replies() == 0);
        CHECK(other.unknown_replies() == 0);
    }
}

TEST_CASE("rpc_client with direct reply-to: call_and_wait on warren::broker", "[direct_reply_to][rpc_client]") {
    warren::broker b;
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", [](const warren::delivery& d) { return "re:" + d.body(); });
    warren::rpc_client client(b, {.direct_reply_to = true});
    CHECK(client.call_and_wait("", "rpc_queue", "10", 1s).body == "re:10");
}

TEST_CASE("rpc_client with direct reply-to: call_for with synchronous replies on concurrent_broker",
          "[direct_reply_to][rpc_client]") {
    warren::concurrent_broker b;
    b.declare_queue("rpc_queue");
    warren::rpc_server responder(b, "rpc_queue", [](const warren::concurrent_broker::delivery& d) {
        return "re:" + d.body();
    });
    warren::rpc_client client(b, {.direct_reply_to = true}); // synchronous replies by policy
    // The server's consumer is dispatched: run it from here until the reply came.
    auto reply_future = std::async(std::launch::async, [&] { return client.call_for("", "rpc_queue", "7", 5s); });
    while (reply_future.wait_for(1ms) != std::future_status::ready) (void)b.dispatch();
    CHECK(reply_future.get().body == "re:7");
}

TEMPLATE_TEST_CASE("rpc_client with direct reply-to: a reply after the client is gone is dropped",
                   "[direct_reply_to][rpc_client]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("rpc_queue");
    std::string address;
    {
        warren::rpc_client client(b, {.replies = warren::rpc_replies::dispatched, .direct_reply_to = true});
        address = client.reply_queue();
        (void)client.call("", "rpc_queue", "x", 1s,
                          [](const warren::rpc_result<>&) { FAIL("no callback after the destructor"); });
    }
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) { return "re:" + d.body(); });
    (void)b.dispatch();
    CHECK(server.handled() == 1);
    CHECK(server.unroutable_replies() == 1);
    CHECK_FALSE(b.has_queue(address));
}

TEMPLATE_TEST_CASE("rpc_client with direct reply-to: a reply whose handler throws is not delivered again",
                   "[direct_reply_to][rpc_client]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) { return "re:" + d.body(); });
    warren::rpc_client client(b, {.replies = warren::rpc_replies::dispatched, .direct_reply_to = true});
    std::size_t errors = 0;
    b.set_error_handler([&](const warren::consumer_error&) { ++errors; });
    int calls = 0;
    (void)client.call("", "rpc_queue", "x", 1s, [&](const warren::rpc_result<>&) {
        ++calls;
        throw warren_test::callback_failure("the reply handler failed");
    });
    while (b.dispatch() != 0) {
    }
    CHECK(calls == 1);
    CHECK(errors == 1);
    CHECK(client.pending() == 0);
    CHECK(client.late_replies() == 0);
    CHECK(server.replies() == 1);
}

TEMPLATE_TEST_CASE("rpc_client with direct reply-to: timeouts and late replies as with a reply queue",
                   "[direct_reply_to][rpc_client]", warren::broker, warren::concurrent_broker) {
    warren::manual_clock time;
    TestType b(time);
    b.declare_queue("slow");
    warren::rpc_client client(b, {.replies = warren::rpc_replies::dispatched, .direct_reply_to = true});
    std::optional<warren::rpc_result<>> outcome;
    const auto cid = client.call("", "slow", "x", 100ms, [&](warren::rpc_result<> r) { outcome.emplace(std::move(r)); });
    auto asked = b.try_get("slow");
    REQUIRE(asked);
    CHECK(asked->properties().reply_to == client.reply_queue());
    time.advance(100ms);
    CHECK(client.expire() == 1);
    REQUIRE(outcome);
    CHECK(outcome->error().code() == warren::reply_code::resource_error);
    typename TestType::message_type late{.routing_key = *asked->properties().reply_to, .body = "late"};
    late.properties.correlation_id = cid;
    CHECK(b.publish("", std::move(late)) == 1);
    (void)b.dispatch();
    CHECK(client.late_replies() == 1);
}

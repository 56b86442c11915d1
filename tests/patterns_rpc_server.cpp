// rpc_server (include/warren/patterns/rpc_server.hpp): replies to reply_to with the
// correlation id after the handler, acks after replying, and what it does with requests
// without reply_to and with handlers that throw.

#include <cstddef>
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

template <class Broker>
void request(Broker& b, const std::string& queue, const std::string& body, std::optional<std::string> reply_to,
             std::optional<std::string> cid) {
    typename Broker::message_type m{.routing_key = queue, .body = body};
    m.properties.reply_to = std::move(reply_to);
    m.properties.correlation_id = std::move(cid);
    (void)b.publish("", std::move(m));
}

} // namespace

TEMPLATE_TEST_CASE("rpc_server: replies to reply_to with the correlation id and acks after replying",
                   "[rpc][rpc_server]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    b.declare_queue("answers");
    std::vector<std::size_t> acked_when_replied;
    // What the reply's consumer sees of the request queue when the reply arrives (it runs
    // inside the server's publish): the request not yet acked.
    auto watcher = b.subscribe(
        "answers",
        [&](typename TestType::delivery&) { acked_when_replied.push_back(b.queue_stats("rpc_queue").acked); },
        {.synchronous = true});
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) { return "fib:" + d.body(); });
    request(b, "rpc_queue", "10", "answers", "c-1");
    (void)b.dispatch();
    CHECK(acked_when_replied == std::vector<std::size_t>{0});
    const auto stats = b.queue_stats("rpc_queue");
    CHECK(stats.acked == 1);
    CHECK(stats.unacked == 0);
    CHECK(server.handled() == 1);
    CHECK(server.replies() == 1);

    watcher.release();
    request(b, "rpc_queue", "11", "answers", "c-2");
    (void)b.dispatch();
    auto reply = b.try_get("answers");
    REQUIRE(reply);
    CHECK(reply->body() == "fib:11");
    CHECK(reply->properties().correlation_id == "c-2");
    CHECK(reply->exchange().empty());
    CHECK(reply->routing_key() == "answers");
}

TEMPLATE_TEST_CASE("rpc_server: a handler returning a message keeps its properties", "[rpc][rpc_server]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    b.declare_queue("answers");
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) {
        warren::message m{.routing_key = "ignored", .body = d.body()};
        m.properties.content_type = "text/plain";
        m.properties.correlation_id = "replaced";
        return m;
    });
    request(b, "rpc_queue", "x", "answers", "c-9");
    (void)b.dispatch();
    auto reply = b.try_get("answers");
    REQUIRE(reply);
    CHECK(reply->properties().content_type == "text/plain");
    CHECK(reply->properties().correlation_id == "c-9");
}

TEMPLATE_TEST_CASE("rpc_server: a request without reply_to is handled and acked, with no reply", "[rpc][rpc_server]",
                   warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    int ran = 0;
    warren::rpc_server server(b, "rpc_queue", [&](const typename TestType::delivery&) {
        ++ran;
        return std::string("unused");
    });
    request(b, "rpc_queue", "x", std::nullopt, "c-1");
    (void)b.dispatch();
    CHECK(ran == 1);
    CHECK(server.without_reply_to() == 1);
    CHECK(server.replies() == 0);
    CHECK(b.queue_stats("rpc_queue").acked == 1);
}

TEMPLATE_TEST_CASE("rpc_server: a reply no queue takes still acks the request", "[rpc][rpc_server]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) { return d.body(); });
    request(b, "rpc_queue", "x", "gone-client", "c-1");
    (void)b.dispatch();
    CHECK(server.unroutable_replies() == 1);
    CHECK(b.queue_stats("rpc_queue").acked == 1);
}

TEMPLATE_TEST_CASE("rpc_server: a handler that throws has its request rejected, and the server keeps serving",
                   "[rpc][rpc_server]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    b.declare_queue("answers");
    const bool requeue = GENERATE(false, true);
    CAPTURE(requeue);
    int throws_left = 1;
    warren::rpc_server server(
        b, "rpc_queue",
        [&](const typename TestType::delivery& d) {
            if (throws_left > 0) {
                --throws_left;
                throw std::runtime_error("handler failed");
            }
            return "ok:" + d.body();
        },
        {.requeue_on_error = requeue});
    std::vector<std::string> errors;
    b.set_error_handler([&](const auto& failure) {
        try {
            std::rethrow_exception(failure.exception);
        } catch (const std::exception& e) {
            errors.emplace_back(e.what());
        }
    });
    request(b, "rpc_queue", "1", "answers", "c-1");
    request(b, "rpc_queue", "2", "answers", "c-2");
    (void)b.dispatch();
    (void)b.dispatch();
    CHECK(errors == std::vector<std::string>{"handler failed"});
    CHECK(server.failures() == 1);
    const auto stats = b.queue_stats("rpc_queue");
    CHECK(stats.unacked == 0);
    std::vector<std::string> answered;
    while (auto reply = b.try_get("answers")) answered.push_back(reply->body());
    if (requeue) {
        CHECK(answered == std::vector<std::string>{"ok:1", "ok:2"}); // requeued to its place
        CHECK(stats.acked == 2);
    } else {
        CHECK(answered == std::vector<std::string>{"ok:2"});
        CHECK(stats.acked == 1);
    }
}

TEMPLATE_TEST_CASE("rpc_server: with rpc_client, a round trip", "[rpc][rpc_server]", warren::broker,
                   warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) { return "re:" + d.body(); });
    warren::rpc_client client(b);
    std::vector<std::string> got;
    (void)client.call("", "rpc_queue", "x", 5s, [&](warren::rpc_result<> r) { got.push_back(r.take().body); });
    (void)b.dispatch();
    (void)b.dispatch();
    CHECK(got == std::vector<std::string>{"re:x"});
}

TEMPLATE_TEST_CASE("rpc_server: a reply the broker refuses has its request rejected, not left unacked",
                   "[rpc][rpc_server]", warren::broker, warren::concurrent_broker) {
    TestType b;
    b.declare_queue("rpc_queue");
    b.declare_queue("answers");
    // The handler's reply carries an expiration that is not a number: publishing it is
    // refused (PRECONDITION_FAILED), after the handler returned.
    warren::rpc_server server(b, "rpc_queue", [](const typename TestType::delivery& d) {
        typename TestType::message_type reply{.routing_key = {}, .body = "re:" + d.body()};
        reply.properties.expiration = "soon";
        return reply;
    });
    std::vector<std::string> errors;
    b.set_error_handler([&](const auto& failure) {
        try {
            std::rethrow_exception(failure.exception);
        } catch (const warren::error& e) {
            errors.emplace_back(e.what());
        }
    });
    request(b, "rpc_queue", "1", "answers", "c-1");
    (void)b.dispatch();
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("PRECONDITION_FAILED") != std::string::npos);
    CHECK(server.failures() == 1);
    CHECK(server.handled() == 0);
    CHECK(b.message_count("answers") == 0);
    const auto stats = b.queue_stats("rpc_queue");
    CHECK(stats.unacked == 0);
    CHECK(stats.ready == 0);
    CHECK(stats.acked == 0);
}

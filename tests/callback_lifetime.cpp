// User objects are destroyed after every lock is released and never while a container
// that holds them is being walked: consumer callbacks and their captures, on_cancel, the
// error and return handlers, message bodies and exchange types. So a destructor may use the
// broker, and a callback may own its own subscription (a worker kept alive by the lambda
// that captures it).
//
// Each test runs on both policies on one thread: under multi_threaded a destructor that
// runs under a lock it then takes again deadlocks, which the watchdog turns into a failure
// within seconds; under single_threaded one that runs while a container is being walked
// corrupts it, which ASan reports.

#include <warren/broker.hpp>
#include <warren/clock.hpp>
#include <warren/exchange.hpp>
#include <warren/message.hpp>
#include <warren/policy.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "support/broker_io.hpp"
#include "support/catch.hpp"
#include "support/destructor_hook.hpp"
#include "support/threads.hpp"

using warren_test::destructor_hook;
using warren_test::manual_options;
using warren_test::send;
using warren_test::to_queue;
using warren_test::watchdog;

namespace {

/// What a destructor does to show that it runs with no lock held and no container being
/// walked: it declares a queue (the topology lock, exclusively), publishes to `queue`, the
/// one it came from, if that still exists (that queue's lock), and reads the new queue.
template <class Broker>
void use_broker(Broker& b, std::string_view queue) {
    b.declare_queue("side");
    CHECK(b.publish("", to_queue<Broker>("side", "from a destructor")) == 1);
    if (b.has_queue(queue)) (void)b.publish("", to_queue<Broker>(queue, "from a destructor"));
    CHECK(b.message_count("side") >= 1);
}

/// A worker that its own callback keeps alive: the subscription handle lives in the
/// object the callback captures.
template <class Broker>
struct worker {
    typename Broker::subscription sub;
    int handled = 0;
};

} // namespace

// ---------------------------------------------------------------------------------------
// a callback that owns its own subscription

TEMPLATE_TEST_CASE("callback lifetime: a callback that owns its subscription ends cleanly when its queue is deleted",
                   "[lifetime]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    const watchdog guard("delete_queue of a queue whose callback owns its subscription");
    TestType b;
    b.declare_queue("q");
    std::weak_ptr<worker<TestType>> alive;
    {
        auto w = std::make_shared<worker<TestType>>();
        alive = w;
        w->sub = b.subscribe("q", [w](delivery&) { ++w->handled; });
    }
    send(b, "q", {"a"});
    CHECK(b.dispatch() == 1);
    CHECK(alive.lock()->handled == 1);

    CHECK(b.delete_queue("q") == 0);
    CHECK(alive.expired()); // the consumer, its callback and the worker are gone
    CHECK_FALSE(b.has_queue("q"));

    // The broker goes on: the name is free again and a new consumer works.
    b.declare_queue("q");
    int got = 0;
    auto sub = b.subscribe("q", [&](delivery&) { ++got; });
    send(b, "q", {"b"});
    CHECK(b.dispatch() == 1);
    CHECK(got == 1);
}

TEMPLATE_TEST_CASE("callback lifetime: a callback that owns its subscription ends cleanly when the broker is destroyed",
                   "[lifetime]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    const watchdog guard("destroying a broker whose callback owns its subscription");
    auto b = std::make_unique<TestType>();
    b->declare_queue("q");
    b->declare_queue("other");
    std::weak_ptr<worker<TestType>> alive;
    std::weak_ptr<worker<TestType>> other_alive;
    {
        auto w = std::make_shared<worker<TestType>>();
        alive = w;
        w->sub = b->subscribe("q", [w](delivery&) { ++w->handled; });
        // A second worker whose callback also holds the first: destroying one releases a
        // subscription of another queue while the broker is going away.
        auto v = std::make_shared<worker<TestType>>();
        other_alive = v;
        v->sub = b->subscribe("other", [v, w](delivery&) { ++v->handled; });
    }
    send(*b, "q", {"a", "b"});
    send(*b, "other", {"c"});
    b.reset();
    CHECK(alive.expired());
    CHECK(other_alive.expired());
}

TEMPLATE_TEST_CASE("callback lifetime: a callback that releases its own subscription is destroyed after it returns",
                   "[lifetime]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    const watchdog guard("a callback releasing its own subscription");
    TestType b;
    b.declare_queue("q");
    std::weak_ptr<worker<TestType>> alive;
    bool hook_ran = false;
    {
        auto w = std::make_shared<worker<TestType>>();
        alive = w;
        auto hook = std::make_shared<destructor_hook>([&] {
            hook_ran = true;
            use_broker(b, "q");
        });
        w->sub = b.subscribe("q", [w, hook](delivery&) {
            ++w->handled;
            w->sub.release(); // destroys nothing yet: the callback is still running
        });
    }
    send(b, "q", {"a", "b"});
    CHECK(b.dispatch() == 1);
    CHECK(hook_ran);
    CHECK(alive.expired());
    CHECK(b.message_count("q") == 2); // "b" and the hook's message: no consumer took them
}

// ---------------------------------------------------------------------------------------
// captures, on_cancel and handlers

TEMPLATE_TEST_CASE("callback lifetime: a callback's captures are destroyed with no lock held, however its consumer ends",
                   "[lifetime]", warren::broker, warren::concurrent_broker) {
    using delivery = typename TestType::delivery;
    const watchdog guard("destroying a callback whose captures use the broker");
    TestType b;
    int hooks_ran = 0;
    auto hook = [&](std::string queue) {
        return std::make_shared<destructor_hook>([&b, &hooks_ran, queue] {
            ++hooks_ran;
            use_broker(b, queue);
        });
    };

    SECTION("its subscription is released") {
        b.declare_queue("q");
        auto sub = b.subscribe("q", [h = hook("q")](delivery&) {});
        sub.release();
        CHECK(hooks_ran == 1);
        CHECK(b.message_count("q") == 1);
    }
    SECTION("its queue is deleted, and its on_cancel's captures too") {
        b.declare_queue("q");
        warren::consumer_options options;
        options.on_cancel = [h = hook("q")] {};
        auto sub = b.subscribe("q", [h = hook("q")](delivery&) {}, std::move(options));
        (void)b.delete_queue("q");
        CHECK(hooks_ran == 2);
        CHECK_FALSE(sub.active());
    }
    SECTION("its auto-delete queue goes with it") {
        warren::queue_options options;
        options.auto_delete = true;
        b.declare_queue("q", options);
        auto sub = b.subscribe("q", [h = hook("q")](delivery&) {});
        sub.release();
        CHECK(hooks_ran == 1);
        CHECK_FALSE(b.has_queue("q"));
    }
    SECTION("it ends with unacked messages, which go back to its queue") {
        b.declare_queue("q");
        send(b, "q", {"a", "b"});
        auto sub = b.subscribe("q", [h = hook("q")](delivery&) {}, manual_options({}, 1));
        CHECK(b.dispatch() == 1);
        sub.release();
        CHECK(hooks_ran == 1);
        CHECK(b.message_count("q") == 3); // a (requeued), b, and the hook's message
    }
    CHECK(b.message_count("side") == static_cast<std::size_t>(hooks_ran)); // one message per hook
}

TEMPLATE_TEST_CASE("callback lifetime: a replaced error or return handler is destroyed with no lock held",
                   "[lifetime]", warren::broker, warren::concurrent_broker) {
    const watchdog guard("replacing a handler whose captures use the broker");
    TestType b;
    b.declare_queue("q");
    int hooks_ran = 0;
    auto hook = std::make_shared<destructor_hook>([&] {
        ++hooks_ran;
        use_broker(b, "q");
    });

    SECTION("the error handler") {
        b.set_error_handler([h = std::move(hook)](const warren::consumer_error&) {});
        b.set_error_handler({});
    }
    SECTION("the return handler") {
        b.set_return_handler([h = std::move(hook)](typename TestType::returned_message&) {});
        b.set_return_handler({});
    }
    CHECK(hooks_ran == 1);
    CHECK(b.message_count("q") == 1);
}

// ---------------------------------------------------------------------------------------
// message bodies

namespace {

/// A message whose body runs a function when its last copy goes.
using hooked_message = warren::basic_message<std::shared_ptr<destructor_hook>>;

} // namespace

TEMPLATE_TEST_CASE("callback lifetime: a message body is destroyed with no lock held, however the message ends",
                   "[lifetime]", warren::single_threaded, warren::multi_threaded) {
    using broker_type = warren::basic_broker<hooked_message, TestType>;
    using delivery = typename broker_type::delivery;
    const watchdog guard("destroying a message whose body uses the broker");
    warren::manual_clock time;
    broker_type b(time);
    int hooks_ran = 0;
    // Publishes to `queue` (through the default exchange) a message whose body, when
    // destroyed, uses the broker.
    auto publish_hooked = [&](const std::string& queue, std::string_view exchange = "") {
        hooked_message m;
        m.routing_key = queue;
        m.body = std::make_shared<destructor_hook>([&b, &hooks_ran, queue] {
            ++hooks_ran;
            b.declare_queue("side");
            hooked_message plain;
            plain.routing_key = "side";
            CHECK(b.publish("", std::move(plain)) == 1);
            if (b.has_queue(queue)) {
                hooked_message again;
                again.routing_key = queue;
                (void)b.publish("", std::move(again));
            }
        });
        return b.publish(exchange, std::move(m));
    };
    auto declare = [&](std::string_view name, warren::field_table arguments = {}) {
        warren::queue_options options;
        options.arguments = std::move(arguments);
        b.declare_queue(name, options);
    };

    SECTION("purged") {
        declare("q");
        REQUIRE(publish_hooked("q") == 1);
        CHECK(b.purge_queue("q") == 1);
    }
    SECTION("deleted with its queue") {
        declare("q");
        REQUIRE(publish_hooked("q") == 1);
        CHECK(b.delete_queue("q") == 1);
    }
    SECTION("deleted with its queue while unacked, its delivery gone") {
        declare("q");
        REQUIRE(publish_hooked("q") == 1);
        auto sub = b.subscribe("q", [](delivery&) {}, manual_options()); // never settles
        CHECK(b.dispatch() == 1);
        (void)b.delete_queue("q");
    }
    SECTION("acked with multiple, its delivery long gone") {
        declare("q");
        REQUIRE(publish_hooked("q") == 1);
        hooked_message plain;
        plain.routing_key = "q";
        REQUIRE(b.publish("", std::move(plain)) == 1);
        std::optional<delivery> last;
        auto sub = b.subscribe("q", [&](delivery& d) {
            if (d.delivery_tag() == 2) last.emplace(std::move(d));
        }, manual_options());
        CHECK(b.dispatch() == 2);
        last->ack(true); // the hooked message's only reference is the queue's
    }
    SECTION("rejected, with no dead-letter exchange") {
        declare("q");
        REQUIRE(publish_hooked("q") == 1);
        auto sub = b.subscribe("q", [](delivery& d) { d.reject(false); }, manual_options());
        CHECK(b.dispatch() >= 1);
    }
    SECTION("expired, with no dead-letter exchange") {
        declare("q", {{"x-message-ttl", 10}});
        REQUIRE(publish_hooked("q") == 1);
        time.advance(std::chrono::milliseconds(20));
        CHECK(b.expire() == 1);
    }
    SECTION("dropped at the head of a full queue") {
        declare("q", {{"x-max-length", 1}});
        REQUIRE(publish_hooked("q") == 1);
        hooked_message next;
        next.routing_key = "q";
        REQUIRE(b.publish("", std::move(next)) == 1); // drops the hooked head
    }
    SECTION("refused by a full queue") {
        declare("q", {{"x-max-length", 0}, {"x-overflow", "reject-publish"}});
        CHECK(publish_hooked("q") == 0);
    }
    SECTION("dead-lettered: the original goes once its copy is routed") {
        b.declare_exchange("dlx", "fanout");
        declare("dead");
        b.bind_queue("dead", "dlx");
        declare("q", {{"x-dead-letter-exchange", "dlx"}, {"x-message-ttl", 10}});
        REQUIRE(publish_hooked("q") == 1);
        time.advance(std::chrono::milliseconds(20));
        CHECK(b.expire() == 1);
        CHECK(hooks_ran == 0); // the copy in "dead" shares the body
        CHECK(b.purge_queue("dead") == 1);
    }
    SECTION("routed nowhere") {
        b.declare_exchange("nowhere", "fanout");
        CHECK(publish_hooked("q", "nowhere") == 0);
    }
    CHECK(hooks_ran == 1);
    CHECK(b.message_count("side") == 1);
    for (const auto& q : b.snapshot().queues) CHECK(q.counters.accounted());
}

namespace {

/// A body each of whose instances runs the hook when destroyed, copies included (a move
/// hands the duty over): a dead letter is a copy of its message, destroyed on its own.
struct instance_hooked_body {
    std::shared_ptr<std::function<void()>> on_destroy;
    bool armed = true;
    instance_hooked_body() = default;
    explicit instance_hooked_body(std::function<void()> f) : on_destroy(std::make_shared<std::function<void()>>(std::move(f))) {}
    instance_hooked_body(const instance_hooked_body& other) : on_destroy(other.on_destroy) {}
    instance_hooked_body(instance_hooked_body&& other) noexcept
        : on_destroy(std::move(other.on_destroy)), armed(std::exchange(other.armed, false)) {}
    instance_hooked_body& operator=(const instance_hooked_body& other) {
        on_destroy = other.on_destroy;
        return *this;
    }
    instance_hooked_body& operator=(instance_hooked_body&& other) noexcept {
        on_destroy = std::move(other.on_destroy);
        armed = std::exchange(other.armed, false);
        return *this;
    }
    ~instance_hooked_body() {
        if (armed && on_destroy && *on_destroy) (*on_destroy)();
    }
};

} // namespace

TEMPLATE_TEST_CASE("callback lifetime: a dead letter's copy is destroyed with no lock held, whatever becomes of it",
                   "[lifetime][dead-letter]", warren::single_threaded, warren::multi_threaded) {
    using broker_type = warren::basic_broker<warren::basic_message<instance_hooked_body>, TestType>;
    const watchdog guard("destroying a dead letter's copy whose body uses the broker");
    warren::manual_clock time;
    broker_type b(time);
    int hooks_ran = 0;
    auto hooked = [&] {
        warren::basic_message<instance_hooked_body> m;
        m.routing_key = "q";
        m.body = instance_hooked_body([&] {
            ++hooks_ran;
            b.declare_queue("side"); // the topology lock, exclusively
        });
        return m;
    };
    b.declare_exchange("dlx", "direct");
    warren::queue_options options;
    options.arguments = {{"x-dead-letter-exchange", "dlx"}, {"x-message-ttl", 10}};
    b.declare_queue("q", options);

    SECTION("its dead-letter exchange routes it nowhere") {}
    SECTION("the queue it is routed to refuses it") {
        warren::queue_options full;
        full.arguments = {{"x-max-length", 0}, {"x-overflow", "reject-publish"}};
        b.declare_queue("full", full);
        b.bind_queue("full", "dlx", "q");
    }
    REQUIRE(b.publish("", hooked()) == 1);
    time.advance(std::chrono::milliseconds(20));
    CHECK(b.expire() == 1);
    CHECK(hooks_ran == 2); // the original and its copy
    CHECK(b.has_queue("side"));
}

// ---------------------------------------------------------------------------------------
// exchange types

namespace {

/// A fanout whose instances run `on_destroy` when the broker destroys them.
struct hooked_exchange : warren::fanout_exchange {
    static constexpr std::string_view type_name = "x-hooked";
    inline static std::function<void()> on_destroy;
    hooked_exchange() = default;
    hooked_exchange(const hooked_exchange&) = delete;
    hooked_exchange& operator=(const hooked_exchange&) = delete;
    ~hooked_exchange() {
        if (on_destroy) on_destroy();
    }
};

} // namespace

TEMPLATE_TEST_CASE("callback lifetime: an exchange type is destroyed with no lock held", "[lifetime]", warren::broker,
                   warren::concurrent_broker) {
    const watchdog guard("destroying an exchange whose destructor uses the broker");
    TestType b;
    struct unhook {
        ~unhook() { hooked_exchange::on_destroy = nullptr; } // before b goes, even on failure
    } const unhook_first;
    b.template register_exchange_type<hooked_exchange>();
    int hooks_ran = 0;
    hooked_exchange::on_destroy = [&] {
        ++hooks_ran;
        use_broker(b, "q");
    };
    b.declare_queue("q");

    SECTION("deleted") {
        b.declare_exchange("x", "x-hooked");
        b.delete_exchange("x");
    }
    SECTION("auto-deleted when its last binding is removed") {
        warren::exchange_options options;
        options.auto_delete = true;
        b.declare_exchange("x", "x-hooked", options);
        b.bind_queue("q", "x");
        b.unbind_queue("q", "x");
    }
    SECTION("auto-deleted when the queue of its last binding is deleted") {
        warren::exchange_options options;
        options.auto_delete = true;
        b.declare_exchange("x", "x-hooked", options);
        b.declare_queue("bound");
        b.bind_queue("bound", "x");
        (void)b.delete_queue("bound");
    }
    CHECK(hooks_ran == 1);
    CHECK_FALSE(b.has_exchange("x"));
    CHECK(b.message_count("q") == 1);
}

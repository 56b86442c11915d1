#pragma once
/// @file patterns/domain_events.hpp
/// Choreography: services publish domain events ("order.created", "payment.failed") on a
/// topic exchange when their state changes, and subscribe to each other's; no controller.
/// event_publisher publishes them with the ids that correlate a flow and deduplicate it;
/// event_subscriber gives a service its own queue, bound to the events it handles, and
/// handles each event once (through idempotent_consumer). Built on the public broker API.

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../broker.hpp"
#include "../config.hpp"
#include "../options.hpp"
#include "deduplicator.hpp"
#include "idempotent_consumer.hpp"

namespace warren {

/// The exchange domain events go to when none is named.
inline constexpr std::string_view default_event_exchange = "events";
/// The header that carries the message_id of the event an event reacts to.
inline constexpr std::string_view causation_id_header = "causation_id";

namespace detail {
/// Declares the topic exchange of domain events, as publishers and subscribers both do (so
/// either may come first). Durable: the same topology on RabbitMQ keeps it over a restart.
template <class Broker>
void declare_event_exchange(Broker& broker, std::string_view exchange) {
    broker.declare_exchange(exchange, "topic", {.durable = true});
}

/// FNV-1a, 64 bits: a hash that is the same in every process and on every platform (unlike
/// std::hash), for message ids that another process must derive alike.
constexpr std::uint64_t fnv1a(std::string_view text, std::uint64_t hash = 0xcbf29ce484222325ULL) noexcept {
    for (const char c : text) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

/// A number unique to each event_publisher of the process, so that two publishers with
/// one source still generate different message ids.
inline std::uint64_t next_event_publisher_number() noexcept {
    static std::atomic<std::uint64_t> made{0};
    return made.fetch_add(1, std::memory_order_relaxed) + 1;
}
} // namespace detail

/// The ids an event carries besides its name.
struct event_ids {
    /// The business id that correlates one flow (an order id): the correlation_id property.
    /// Empty: none.
    std::string correlation_id{};
    /// The event's own id, the message_id property, by which subscribers deduplicate.
    /// Empty: generated, unique within the process. Derive it from the business (an order
    /// id or saga id, and the step) when the same event may be published again (a retry
    /// after a crash) and must be recognised as the same.
    std::string message_id{};
    /// The message_id of the event this one reacts to (header causation_id). Empty: none.
    std::string causation_id{};
};

/// A domain event as a subscriber's handler sees it: a view of the delivery.
/// @code
/// payments.on("order.created", [&](const auto& e) {
///     std::cout << e.name() << " for order " << e.correlation_id() << '\n';
/// });
/// @endcode
/// Thread safety: a view; valid while the handler runs (the delivery it views lives).
template <class Delivery>
class received_event {
public:
    using body_type = typename Delivery::body_type;

    /// Views `d`, which must outlive the view.
    explicit received_event(const Delivery& d) noexcept : delivery_(d) {}

    /// The event's name: its routing key (what the subscriber's bindings matched; an
    /// event_publisher sets the type property to the same).
    [[nodiscard]] std::string_view name() const noexcept { return delivery_.routing_key(); }
    /// The id of the flow it belongs to (correlation_id), or empty.
    [[nodiscard]] std::string_view correlation_id() const noexcept { return text(delivery_.properties().correlation_id); }
    /// Its own id (message_id), or empty.
    [[nodiscard]] std::string_view message_id() const noexcept { return text(delivery_.properties().message_id); }
    /// The message_id of the event it reacts to (header causation_id), or empty.
    [[nodiscard]] std::string_view causation_id() const noexcept {
        const std::string* found = delivery_.properties().headers.find_string(causation_id_header);
        return found == nullptr ? std::string_view() : std::string_view(*found);
    }
    /// Who published it (app_id: the publisher's source), or empty.
    [[nodiscard]] std::string_view source() const noexcept { return text(delivery_.properties().app_id); }
    /// When it was published, in seconds since the epoch on the publisher's broker clock.
    [[nodiscard]] std::optional<std::uint64_t> timestamp() const noexcept { return delivery_.properties().timestamp; }
    /// The payload.
    [[nodiscard]] const body_type& body() const noexcept { return delivery_.body(); }
    /// The delivery, for its envelope (redelivered(), exchange()) and every property.
    [[nodiscard]] const Delivery& delivery() const noexcept { return delivery_; }

private:
    static std::string_view text(const std::optional<std::string>& value) noexcept {
        return value ? std::string_view(*value) : std::string_view();
    }

    const Delivery& delivery_;
};

/// How an event_publisher stamps its events.
struct event_publisher_options {
    /// Who publishes (the app_id of every event, say "payment"), and the start of
    /// generated message ids. Empty: no app_id; ids start with "event".
    std::string source{};
    /// The content_type of every event (say "application/json"). Empty: none.
    std::string content_type{};
};

/// What publishing one event did.
struct published_event {
    /// Its message_id (the one given, or the one generated).
    std::string message_id;
    /// How many queues took it: 0 when no service subscribes to it.
    std::size_t routed = 0;
};

/// Publishes domain events on a topic exchange, which it declares (topic, durable).
///
/// Each event's routing key and type property are its name ("order.created"); it carries
/// a message_id (given; derived from its cause in publish_after(); or generated: the
/// source, a number unique to this publisher in the process, and a sequence number), the
/// correlation_id of its flow, the causation_id
/// header when it reacts to another event, a timestamp from the broker's clock
/// (basic_broker::time_source(), so a manual_clock stamps simulation time), and
/// delivery_mode 2 (persistent), as it would need on RabbitMQ.
/// @code
/// warren::event_publisher orders(broker, "events", {.source = "order"});
/// auto sent = orders.publish("order.created", R"({"total": 30})", {.correlation_id = "order-42"});
/// // in a subscriber's handler, reacting to an event e:
/// (void)payments.publish_after(e, "payment.completed", "paid");  // same correlation_id
/// @endcode
/// Thread safety: publish() and publish_after() are thread-safe on concurrent_broker. The
/// broker must outlive the publisher.
template <class Broker>
class event_publisher {
public:
    using broker_type = Broker;
    using message_type = typename Broker::message_type;
    using body_type = typename Broker::body_type;
    using delivery = typename Broker::delivery;
    using event = received_event<delivery>;

    /// Declares `exchange` (topic, durable). An exchange of that name declared otherwise:
    /// precondition_failed.
    explicit event_publisher(Broker& owner, std::string_view exchange = default_event_exchange,
                             event_publisher_options options = {})
        : broker_(owner), exchange_(exchange), options_(std::move(options)),
          id_prefix_((options_.source.empty() ? std::string("event") : options_.source) + "-" +
                     std::to_string(detail::next_event_publisher_number()) + "-") {
        detail::declare_event_exchange(broker_, exchange_);
    }

    /// Publishes event `name` with `body` and `ids` (see event_ids). Errors of the publish
    /// (the exchange deleted, a name over 255 bytes) are thrown. Thread-safe on
    /// concurrent_broker.
    [[nodiscard]] published_event publish(std::string_view name, body_type body, event_ids ids = {}) {
        WARREN_ASSERT(!name.empty(), "event_publisher::publish needs an event name");
        message_type m{.routing_key = std::string(name), .body = std::move(body)};
        auto& p = m.properties;
        p.type = std::string(name);
        p.message_id = ids.message_id.empty() ? next_message_id() : std::move(ids.message_id);
        if (!ids.correlation_id.empty()) p.correlation_id = std::move(ids.correlation_id);
        if (!ids.causation_id.empty()) p.headers.set(causation_id_header, std::move(ids.causation_id));
        p.timestamp = static_cast<std::uint64_t>(std::max<std::int64_t>(broker_.time_source().unix_seconds(), 0));
        p.delivery_mode = 2;
        if (!options_.source.empty()) p.app_id = options_.source;
        if (!options_.content_type.empty()) p.content_type = options_.content_type;
        std::string id = *p.message_id;
        const std::size_t routed = broker_.publish(exchange_, std::move(m));
        return {std::move(id), routed};
    }

    /// Publishes event `name` in reaction to `cause`: with its correlation_id, and its
    /// message_id as causation_id, so a flow can be followed event by event.
    ///
    /// An empty `message_id` is derived from the cause's message_id and the event name
    /// (the source, `-`, and 16 hex digits of a hash that is the same in every process),
    /// so that a handler run again for one cause (its event redelivered after it threw, or
    /// after a crash, once it had published) publishes its reaction with the same id, and
    /// subscribers take the repeat for a duplicate. Hence two reactions of one name to one
    /// cause need ids of their own. A cause without a message_id gets a generated, unique
    /// id. Thread-safe on concurrent_broker.
    [[nodiscard]] published_event publish_after(const event& cause, std::string_view name, body_type body,
                                                std::string message_id = {}) {
        if (message_id.empty() && !cause.message_id().empty()) message_id = derived_id(cause.message_id(), name);
        return publish(name, std::move(body),
                       {.correlation_id = std::string(cause.correlation_id()),
                        .message_id = std::move(message_id),
                        .causation_id = std::string(cause.message_id())});
    }

    /// The exchange it publishes to. Thread-safe.
    [[nodiscard]] const std::string& exchange() const noexcept { return exchange_; }
    /// Events published so far with a generated message_id. Thread-safe.
    [[nodiscard]] std::uint64_t generated_ids() const noexcept { return sequence_.load(); }

private:
    std::string next_message_id() { return id_prefix_ + std::to_string(sequence_.fetch_add(1) + 1); }

    std::string derived_id(std::string_view cause, std::string_view name) const {
        // The NUL keeps ("ab", "c") and ("a", "bc") apart. The source needs no hashing: it
        // is the whole id but its last 17 characters, so two sources never give one id.
        std::uint64_t h = detail::fnv1a(cause);
        h = detail::fnv1a(std::string_view("\0", 1), h);
        h = detail::fnv1a(name, h);
        std::string id = (options_.source.empty() ? std::string("event") : options_.source) + "-";
        for (int shift = 60; shift >= 0; shift -= 4) id += "0123456789abcdef"[(h >> shift) & 0xf];
        return id;
    }

    Broker& broker_;
    std::string exchange_;
    event_publisher_options options_;
    std::string id_prefix_;
    std::atomic<std::uint64_t> sequence_{0};
};

/// How an event_subscriber declares its queue and consumes it.
struct event_subscriber_options {
    /// The service's queue (durable by default; put a dead-letter exchange in its
    /// arguments to keep the events whose handler failed, with consumer.requeue_on_error
    /// false or requeue_once).
    queue_options queue{.durable = true};
    /// Prefetch, tag, what a throwing handler does, and the deduplicator's size.
    idempotent_consumer_options consumer{};
};

/// A service's subscription to domain events: its own queue, bound to the events it
/// handles, consumed through an idempotent_consumer, each event handed to the handler of
/// its name.
///
/// on(name, fn) binds the queue to that event name and registers fn for it; bind(pattern)
/// adds a binding with topic wildcards (`payment.*`, `order.#`) whose events go to the
/// on_any() handler unless they have one of their own; an event with no handler is acked
/// and counted (unhandled()). Register everything, then start(): handlers are fixed from
/// then on, so they are read without a lock on every thread. Each event is handled once
/// per message_id (redelivered, or published twice with one id), and a handler that
/// throws has its event redelivered and handled again, as idempotent_consumer does.
/// The handler sees a received_event: name, correlation_id, message_id, causation_id,
/// body.
/// @code
/// warren::event_subscriber payment(broker, "payment-service");
/// payment.on("order.created", [&](const auto& e) {
///     (void)events.publish_after(e, charge(e.body()) ? "payment.completed" : "payment.failed", "");
/// });
/// payment.start();
/// broker.dispatch();
/// @endcode
/// Thread safety: on(), on_any(), bind(), deduplicate_with(), start(), stop(),
/// duplicates() and failures() on the owner thread; handled() and unhandled() are
/// thread-safe; handlers run where dispatch() runs (see
/// idempotent_consumer). Destroying it ends its subscription; the queue and its bindings
/// stay (a durable service queue keeps collecting events while the service is down). The
/// broker must outlive it.
template <class Broker>
class event_subscriber {
public:
    using broker_type = Broker;
    using delivery = typename Broker::delivery;
    using event = received_event<delivery>;
    using consumer_type = idempotent_consumer<Broker>;
    using deduplicator_type = typename consumer_type::deduplicator_type;
    /// A handler as stored.
    using handler = std::function<void(const event&)>;

    /// Declares `exchange` (topic, durable) and the service's `queue` (options.queue; an
    /// empty name gets a server-named queue). A queue or exchange of that name declared
    /// otherwise: precondition_failed.
    explicit event_subscriber(Broker& owner, std::string_view queue, std::string_view exchange = default_event_exchange,
                              event_subscriber_options options = {})
        : broker_(owner), exchange_(exchange), consumer_options_(std::move(options.consumer)),
          own_(consumer_options_.deduplicator, owner.time_source()) {
        detail::declare_event_exchange(broker_, exchange_);
        queue_ = broker_.declare_queue(queue, options.queue);
    }
    event_subscriber(const event_subscriber&) = delete;
    event_subscriber& operator=(const event_subscriber&) = delete;
    ~event_subscriber() = default;

    /// Handles event `name` (an exact name, no wildcard words) with `fn(const event&)`,
    /// binding the queue to it. One handler per name. Before start(). Owner thread.
    template <class Fn>
        requires std::invocable<Fn&, const event&>
    event_subscriber& on(std::string_view name, Fn fn) {
        WARREN_ASSERT(!started(), "event_subscriber::on after start()");
        WARREN_ASSERT(!is_pattern(name), "event_subscriber::on takes an event name; bind a pattern with bind()");
        WARREN_ASSERT(handlers_.find(name) == handlers_.end(), "event_subscriber::on: a second handler for one event");
        broker_.bind_queue(queue_, exchange_, name);
        handlers_.emplace(std::string(name), handler(std::move(fn)));
        return *this;
    }

    /// Handles every event that has no handler of its own (those that bind() brings) with
    /// `fn(const event&)`. Before start(). Owner thread.
    template <class Fn>
        requires std::invocable<Fn&, const event&>
    event_subscriber& on_any(Fn fn) {
        WARREN_ASSERT(!started(), "event_subscriber::on_any after start()");
        fallback_ = handler(std::move(fn));
        return *this;
    }

    /// Binds the queue to `pattern` (topic wildcards: `*` one word, `#` zero or more), for
    /// the on_any() handler. Owner thread.
    event_subscriber& bind(std::string_view pattern) {
        broker_.bind_queue(queue_, exchange_, pattern);
        return *this;
    }

    /// Deduplicates through `shared` instead of its own deduplicator (made from
    /// options.consumer.deduplicator on the broker's clock, kept over stop() and start()):
    /// give every instance of one service (several subscribers of one queue, or one that
    /// replaces a destroyed one) the same. It must outlive the subscriber. Before start().
    /// Owner thread.
    event_subscriber& deduplicate_with(deduplicator_type& shared) noexcept {
        WARREN_ASSERT(!started(), "event_subscriber::deduplicate_with after start()");
        shared_ = &shared;
        return *this;
    }

    /// Starts consuming the queue. Does nothing if started. Owner thread.
    void start() {
        if (started()) return;
        consumer_.emplace(broker_, queue_, shared_ != nullptr ? *shared_ : own_,
                          [this](const delivery& d) { deliver(d); }, consumer_options_);
    }
    /// Stops consuming (waiting for a handler running on another thread); events wait in
    /// the queue until start(), and those it held unacknowledged go back to it. Owner thread.
    void stop() noexcept {
        if (!consumer_) return;
        const consumer_type& ending = *consumer_;
        ended_duplicates_ += ending.duplicates();
        ended_failures_ += ending.failures();
        consumer_.reset();
    }
    /// Whether it consumes. Owner thread.
    [[nodiscard]] bool started() const noexcept { return consumer_.has_value(); }

    /// The service's queue. Thread-safe.
    [[nodiscard]] const std::string& queue() const noexcept { return queue_; }
    /// The exchange of its events. Thread-safe.
    [[nodiscard]] const std::string& exchange() const noexcept { return exchange_; }
    /// Events whose handler (or on_any) ran and returned. Thread-safe.
    [[nodiscard]] std::size_t handled() const noexcept { return handled_.load(); }
    /// Events acked without handling: their message_id was handled before. Owner thread
    /// (it reads the running consumer's counter).
    [[nodiscard]] std::size_t duplicates() const noexcept {
        return ended_duplicates_ + (consumer_ ? consumer_->duplicates() : 0);
    }
    /// Events whose handler threw (each is redelivered or dead-lettered as
    /// options.consumer says). Owner thread.
    [[nodiscard]] std::size_t failures() const noexcept {
        return ended_failures_ + (consumer_ ? consumer_->failures() : 0);
    }
    /// Events acked with no handler for them. Thread-safe.
    [[nodiscard]] std::size_t unhandled() const noexcept { return unhandled_.load(); }
    /// The deduplicator in use: the one given to deduplicate_with(), or its own. Thread-safe
    /// as the deduplicator is.
    [[nodiscard]] deduplicator_type& seen() noexcept { return shared_ != nullptr ? *shared_ : own_; }

private:
    static bool is_pattern(std::string_view key) noexcept {
        std::size_t start = 0;
        for (;;) {
            const std::size_t dot = key.find('.', start);
            const std::string_view word = key.substr(start, dot == std::string_view::npos ? key.size() - start : dot - start);
            if (word == "*" || word == "#") return true;
            if (dot == std::string_view::npos) return false;
            start = dot + 1;
        }
    }

    void deliver(const delivery& d) {
        const event e(d);
        if (const auto found = handlers_.find(e.name()); found != handlers_.end()) {
            found->second(e);
        } else if (fallback_) {
            fallback_(e);
        } else {
            ++unhandled_;
            return;
        }
        ++handled_;
    }

    Broker& broker_;
    std::string exchange_;
    std::string queue_;
    idempotent_consumer_options consumer_options_;
    std::map<std::string, handler, std::less<>> handlers_;
    handler fallback_;
    deduplicator_type own_;
    deduplicator_type* shared_ = nullptr;
    std::atomic<std::size_t> handled_{0};
    std::atomic<std::size_t> unhandled_{0};
    std::size_t ended_duplicates_ = 0; // of consumers ended by stop()
    std::size_t ended_failures_ = 0;
    std::optional<consumer_type> consumer_; // last: ends before the members above
};

} // namespace warren

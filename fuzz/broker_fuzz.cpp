// libFuzzer target: the broker's public API, driven by random programs. See docs/fuzzing.md.
//
// An input is a program: each operation is one byte (its code) followed by the bytes it
// needs (names, keys, arguments, options, callback behaviours), read by `program` below;
// when the bytes run out, the program ends. The same program runs twice, on
// warren::broker and on a concurrent_broker driven from one thread, and both runs must
// tell the same story (the outcome of every operation, and the final counters).
//
// Operations: declare, delete and purge exchanges and queues (with their arguments, good
// and bad), bind and unbind (queue and exchange bindings, headers arguments), publish
// (properties, headers, mandatory, confirms) by name and through publisher handles, in
// batches (publish_many),
// subscribe with callbacks that themselves ack, nack, reject, throw, publish, subscribe,
// dispatch, release their own subscription, delete their own queue or keep their delivery
// for later; release subscriptions, get, settle kept deliveries (twice, too), dispatch,
// advance the clock and expire, set and clear the handlers, and destroy the broker and
// make a new one while handles still point at the old one. Some message bodies and some
// callbacks carry a hook whose destructor uses the broker, and some callbacks own their
// own subscription: user objects must be destroyed with no lock held.
//
// After every operation:
// - every queue's counters account for every message it accepted (queue_counters::accounted);
// - every exchange's counters add up, and the snapshot is consistent with the name lookups;
// - every handle still works or fails with a warren::error: subscriptions, publishers and
//   deliveries are read, and the operations on them only ever throw warren::error (and the
//   callbacks' own exceptions, which the fuzzer throws itself).
// Anything else aborts, and so do ASan and UBSan reports; a deadlock (a lock taken twice on
// the concurrent broker) is a timeout, which libFuzzer reports too.
// Set WARREN_FUZZ_TRACE=1 to print every operation while replaying an input.

#include <warren/broker.hpp>
#include <warren/clock.hpp>
#include <warren/error.hpp>
#include <warren/topology.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/destructor_hook.hpp"

namespace {

bool tracing() {
    static const bool on = std::getenv("WARREN_FUZZ_TRACE") != nullptr;
    return on;
}

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "broker_fuzz: %s\n", what.c_str());
    std::abort();
}

// ---------------------------------------------------------------------------------------
// the input

/// Reads the program's bytes; past the end every read is 0 and `done()` is true.
class program {
public:
    program(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
    [[nodiscard]] bool done() const noexcept { return at_ >= size_; }
    std::uint8_t byte() noexcept { return at_ < size_ ? data_[at_++] : (at_++, std::uint8_t{0}); }
    /// A number in [0, n).
    std::size_t pick(std::size_t n) noexcept { return n == 0 ? 0 : byte() % n; }
    bool flag() noexcept { return (byte() & 1U) != 0; }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t at_ = 0;
};

// Small alphabets, so that operations collide: the same names, keys and arguments recur.
constexpr std::string_view exchange_names[] = {"x0", "x1", "x2", "x3", "", "amq.direct", "amq.topic", "amq.fanout",
                                               "amq.headers", "missing"};
constexpr std::string_view exchange_types[] = {"direct", "fanout", "topic", "headers", "bogus"};
constexpr std::string_view queue_names[] = {"q0", "q1", "q2", "q3", "q4", "missing", "amq.q"};
constexpr std::string_view keys[] = {"", "a", "b", "a.b", "a.b.c", "#", "*", "a.*", "*.b", "a.#", "#.b", "q0", "q1", "q2", "q3", "q4"};
constexpr std::string_view header_names[] = {"h", "k", "x-match", "x-h"};
constexpr std::string_view header_values[] = {"v", "w", "any", "all", "bad"};

template <std::size_t N>
std::string_view one_of(program& p, const std::string_view (&options)[N]) {
    return options[p.pick(N)];
}

/// A small table: up to three fields of strings or integers, sometimes an x-match.
warren::field_table table(program& p) {
    std::vector<warren::field_entry> entries;
    const std::size_t n = p.pick(4);
    for (std::size_t i = 0; i < n; ++i) {
        const std::string name(one_of(p, header_names));
        if (p.flag()) entries.push_back({name, std::string(one_of(p, header_values))});
        else entries.push_back({name, static_cast<std::int64_t>(p.pick(3))});
    }
    return warren::field_table(std::move(entries));
}

/// Queue arguments from a menu of RabbitMQ's, some of them invalid.
warren::field_table x_arguments(program& p) {
    warren::field_table args;
    const std::uint8_t bits = p.byte();
    if (bits & 0x01U) args.set("x-message-ttl", static_cast<std::int64_t>(p.pick(4)) * 10 - 5); // -5: refused
    if (bits & 0x02U) args.set("x-max-length", static_cast<std::int64_t>(p.pick(4)));
    if (bits & 0x04U) {
        constexpr std::string_view modes[] = {"drop-head", "reject-publish", "reject-publish-dlx", "bogus"};
        args.set("x-overflow", std::string(one_of(p, modes)));
    }
    if (bits & 0x08U) args.set("x-dead-letter-exchange", std::string(one_of(p, exchange_names)));
    if (bits & 0x10U) args.set("x-dead-letter-routing-key", std::string(one_of(p, keys)));
    if (bits & 0x20U) args.set("x-max-priority", static_cast<std::int64_t>(p.pick(4)));
    if (bits & 0x40U) args.set("x-single-active-consumer", p.flag());
    if (bits & 0x80U) args.set(p.flag() ? "x-expires" : "x-max-length-bytes", static_cast<std::int64_t>(p.pick(3)) * 20);
    return args;
}

// ---------------------------------------------------------------------------------------
// message bodies and user objects whose destructors use the broker

using warren_test::destructor_hook; // a capture or a body whose destructor uses the broker

/// A body: text (its bytes count for x-max-length-bytes) and, sometimes, a hook.
struct fuzz_body {
    std::string text;
    std::shared_ptr<destructor_hook> hook;
    [[nodiscard]] const char* begin() const noexcept { return text.data(); }
    [[nodiscard]] const char* end() const noexcept { return text.data() + text.size(); }
    [[nodiscard]] std::size_t size() const noexcept { return text.size(); }
};
using fuzz_message = warren::basic_message<fuzz_body>;

/// What a callback throws on purpose.
struct callback_failure : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------
// one run

/// Drives one broker through a program, and writes down what each operation came to.
template <class Policy>
class run {
public:
    using broker_type = warren::basic_broker<fuzz_message, Policy>;
    using delivery = typename broker_type::delivery;
    using subscription = typename broker_type::subscription;
    using publisher = typename broker_type::publisher;

    explicit run(program p) : p_(p) { make_broker(); }
    run(const run&) = delete;
    run& operator=(const run&) = delete;
    ~run() {
        alive_ = false; // hooks that run from here on leave the broker alone
        publishers_.clear();
        kept_.clear();
        subscriptions_.clear();
        owned_.clear();
        broker_.reset();
    }

    /// Runs the program to its end; returns the story.
    std::string go() {
        for (int step = 0; step < 400 && !p_.done(); ++step) {
            one_operation();
            check();
        }
        story_ += "final: " + counters();
        return story_;
    }

private:
    // -- bookkeeping ---------------------------------------------------------------------

    void note(const std::string& what) {
        if (tracing()) std::fprintf(stderr, "  %s\n", what.c_str());
        story_ += what;
        story_ += '\n';
    }
    /// Runs `f`; notes "ok" or the reply code of the warren::error it threw, or "callback"
    /// for the fuzzer's own exception from a callback. Anything else is a failure.
    template <class F>
    void attempt(const std::string& what, F&& f) {
        try {
            const std::string result = f();
            note(what + " -> " + result);
        } catch (const warren::error& e) {
            note(what + " -> error " + std::to_string(static_cast<int>(e.code())));
        } catch (const callback_failure&) {
            note(what + " -> callback threw");
        } catch (const std::exception& e) {
            fail(what + " threw something other than warren::error: " + e.what());
        }
    }
    /// Server-named queues get random names: the story names them by their order.
    std::string name_of(const std::string& queue) {
        if (!queue.starts_with("amq.gen-")) return queue;
        auto [it, added] = generated_.try_emplace(queue, "gen" + std::to_string(generated_.size()));
        return it->second;
    }

    void make_broker() {
        broker_ = std::make_unique<broker_type>(clock_);
        ++generation_;
        // Read under both policies, so the programs stay in step; only a single-threaded
        // broker has a routing cache, and routes are the same with or without it.
        const std::size_t cache = p_.pick(4);
        if constexpr (!Policy::thread_safe) broker_->set_routing_cache_capacity(cache == 0 ? 0 : std::size_t{1} << (cache * 2));
    }

    // -- the operations ------------------------------------------------------------------

    fuzz_message make_message(std::string_view key) {
        fuzz_message m;
        m.routing_key = std::string(key);
        m.body.text = std::string(p_.pick(30), 'b');
        const std::uint8_t bits = p_.byte();
        if (bits & 0x01U) m.properties.priority = static_cast<std::uint8_t>(p_.pick(6));
        if (bits & 0x02U) {
            constexpr std::string_view expirations[] = {"0", "10", "25", "1000", "-1", "soon"};
            m.properties.expiration = std::string(one_of(p_, expirations));
        }
        if (bits & 0x04U) m.properties.headers = table(p_);
        if (bits & 0x08U) m.properties.message_id = std::to_string(p_.pick(4));
        if (bits & 0x10U) m.body.hook = body_hook(std::string(one_of(p_, queue_names)));
        return m;
    }
    /// A hook that, when the last copy of its body goes, publishes a plain message to
    /// `queue` and declares a queue: only possible with no lock held.
    std::shared_ptr<destructor_hook> body_hook(std::string queue) {
        const int generation = generation_;
        return std::make_shared<destructor_hook>([this, queue, generation] {
            if (!alive_ || generation != generation_ || broker_ == nullptr || in_destruction_) return;
            ++hooks_ran_;
            try {
                broker_->declare_queue("hooked");
                fuzz_message plain;
                plain.routing_key = queue;
                (void)broker_->publish("", std::move(plain));
            } catch (const warren::error&) {
            } catch (const callback_failure&) { // a synchronous receiver threw: publish rethrows it
            }
        });
    }

    void one_operation() {
        const std::uint8_t op = p_.byte();
        switch (op % 25) {
        case 0: declare_exchange(); break;
        case 1: {
            const std::string_view x = one_of(p_, exchange_names);
            const bool if_unused = p_.flag();
            attempt("delete_exchange " + std::string(x), [&] {
                broker_->delete_exchange(x, if_unused);
                return std::string("ok");
            });
            break;
        }
        case 2: case 3: declare_queue(); break;
        case 4: {
            const std::string q(one_of(p_, queue_names));
            warren::queue_delete_options options{p_.flag(), p_.flag()};
            attempt("delete_queue " + q, [&] { return std::to_string(broker_->delete_queue(q, options)); });
            break;
        }
        case 5: {
            const std::string q(one_of(p_, queue_names));
            attempt("purge " + q, [&] { return std::to_string(broker_->purge_queue(q)); });
            break;
        }
        case 6: case 7: bind(true); break;
        case 8: bind(false); break;
        case 9: bind_exchanges(); break;
        case 10: case 11: case 12: publish(); break;
        case 13: publish_through_handle(); break;
        case 14: case 15: subscribe(); break;
        case 16: {
            if (subscriptions_.empty()) break;
            const std::size_t i = p_.pick(subscriptions_.size());
            note("release subscription " + std::to_string(i));
            subscriptions_[i].release(); // noexcept
            if (p_.flag()) subscriptions_.erase(subscriptions_.begin() + static_cast<std::ptrdiff_t>(i));
            break;
        }
        case 17: get(); break;
        case 18: settle(); break;
        case 19: {
            const std::size_t n = 1 + p_.pick(8);
            attempt("dispatch " + std::to_string(n), [&] { return std::to_string(broker_->dispatch(n)); });
            break;
        }
        case 20: {
            const auto ms = std::chrono::milliseconds(p_.pick(40));
            clock_.advance(ms);
            attempt("advance " + std::to_string(ms.count()) + " ms, expire", [&] { return std::to_string(broker_->expire()); });
            break;
        }
        case 21: handlers(); break;
        case 22: {
            // Handles outlive the broker: subscriptions and deliveries stay harmless;
            // publishers must not outlive it (documented), so they go first.
            note("destroy the broker");
            publishers_.clear();
            in_destruction_ = true;
            broker_.reset();
            in_destruction_ = false;
            generated_.clear();
            make_broker();
            break;
        }
        case 23: observe(); break;
        case 24: publish_many(); break;
        default: break;
        }
    }

    void declare_exchange() {
        const std::string_view name = one_of(p_, exchange_names);
        const std::string_view type = one_of(p_, exchange_types);
        warren::exchange_options options;
        const std::uint8_t bits = p_.byte();
        options.auto_delete = (bits & 1U) != 0;
        options.internal = (bits & 2U) != 0;
        if (bits & 4U) options.arguments.set("alternate-exchange", std::string(one_of(p_, exchange_names)));
        if (bits & 8U) options.arguments.set("alternate-exchange", 7); // not a string: refused
        attempt("declare_exchange " + std::string(name) + " " + std::string(type), [&] {
            broker_->declare_exchange(name, type, options);
            return std::string("ok");
        });
    }

    void declare_queue() {
        std::string name(one_of(p_, queue_names));
        if (p_.pick(4) == 0) name.clear(); // server-named
        warren::queue_options options;
        options.auto_delete = p_.pick(4) == 0;
        options.arguments = x_arguments(p_);
        attempt("declare_queue " + name, [&] { return name_of(broker_->declare_queue(name, options)); });
    }

    void bind(bool queue) {
        const std::string_view q = one_of(p_, queue_names);
        const std::string_view x = one_of(p_, exchange_names);
        const std::string_view key = one_of(p_, keys);
        const warren::field_table args = p_.flag() ? table(p_) : warren::field_table{};
        const bool remove = !queue;
        attempt(std::string(remove ? "unbind " : "bind ") + std::string(q) + " " + std::string(x) + " '" +
                    std::string(key) + "'",
                [&] {
                    if (remove) broker_->unbind_queue(q, x, key, args);
                    else broker_->bind_queue(q, x, key, args);
                    return std::string("ok");
                });
    }

    void bind_exchanges() {
        const std::string_view destination = one_of(p_, exchange_names);
        const std::string_view source = one_of(p_, exchange_names);
        const std::string_view key = one_of(p_, keys);
        const bool remove = p_.flag();
        attempt(std::string(remove ? "unbind_exchange " : "bind_exchange ") + std::string(destination) + " " +
                    std::string(source) + " '" + std::string(key) + "'",
                [&] {
                    if (remove) broker_->unbind_exchange(destination, source, key);
                    else broker_->bind_exchange(destination, source, key);
                    return std::string("ok");
                });
    }

    static std::string describe(const warren::confirmation& c) {
        return std::string(c.ack ? "ack" : "nack") + " routed " + std::to_string(c.routed) + " refused " +
               std::to_string(c.refused) + (c.returned ? " returned" : "");
    }

    void publish() {
        const std::string_view x = one_of(p_, exchange_names);
        const std::string_view key = one_of(p_, keys);
        fuzz_message m = make_message(key);
        const warren::publish_options options{p_.flag()};
        attempt("publish " + std::string(x) + " '" + std::string(key) + "'",
                [&] { return describe(broker_->publish_confirmed(x, std::move(m), options)); });
    }

    void publish_through_handle() {
        if (p_.flag() || publishers_.empty()) {
            const std::string_view x = one_of(p_, exchange_names);
            attempt("make_publisher " + std::string(x), [&] {
                publishers_.push_back(broker_->make_publisher(x));
                return std::string("ok");
            });
            return;
        }
        const std::size_t i = p_.pick(publishers_.size());
        fuzz_message m = make_message(one_of(p_, keys));
        attempt("publish through publisher " + std::to_string(i),
                [&] { return describe(publishers_[i].publish_confirmed(std::move(m))); });
    }

    /// A batch of 1 to 4 bodies under one key (publish_many), by name or through a
    /// publisher handle; the bodies may carry hooks that publish when they go.
    void publish_many() {
        const bool through_handle = p_.flag() && !publishers_.empty();
        const std::size_t handle = through_handle ? p_.pick(publishers_.size()) : 0;
        const std::string_view x = through_handle ? std::string_view{} : one_of(p_, exchange_names);
        const std::string_view key = one_of(p_, keys);
        const std::size_t n = 1 + p_.pick(4);
        std::vector<typename fuzz_message::body_type> bodies;
        for (std::size_t i = 0; i < n; ++i) bodies.push_back(std::move(make_message(key).body));
        const warren::publish_options options{p_.flag()};
        attempt("publish_many " + std::to_string(n) + (through_handle ? " through publisher " + std::to_string(handle)
                                                                        : " to " + std::string(x)) +
                    " '" + std::string(key) + "'",
                [&] {
                    const std::size_t routed = through_handle ? publishers_[handle].publish_many(key, bodies, options)
                                                              : broker_->publish_many(x, key, bodies, options);
                    return "routed " + std::to_string(routed);
                });
    }

    /// What a callback does with its delivery, from a byte read when it subscribes.
    enum class behaviour : std::uint8_t {
        nothing, ack, nack_requeue, nack_drop, reject, throws, publish, release_self, delete_queue, keep, ack_multiple,
        subscribe_other, nested_dispatch, count
    };

    void subscribe() {
        const std::string q(one_of(p_, queue_names));
        warren::consumer_options options;
        const std::uint8_t bits = p_.byte();
        options.ack = (bits & 1U) != 0 ? warren::ack_mode::manual : warren::ack_mode::automatic;
        options.prefetch = static_cast<std::uint16_t>((bits >> 1U) & 3U);
        options.exclusive = (bits & 8U) != 0;
        options.priority = static_cast<std::int32_t>((bits >> 4U) & 1U);
        if ((bits & 32U) != 0) options.tag = "tag";
        const auto does = static_cast<behaviour>(p_.pick(static_cast<std::size_t>(behaviour::count)));
        const bool owns_itself = (bits & 64U) != 0; // the worker pattern: the callback keeps the handle
        const bool hooked = (bits & 128U) != 0;
        const std::uint8_t more_bits = p_.byte();
        const std::uint8_t on_cancel = (more_bits & 127U) % 3;
        options.synchronous = (more_bits & 128U) != 0; // its callback runs inside the publish
        if (on_cancel == 1) options.on_cancel = [] { throw callback_failure("on_cancel"); };
        if (on_cancel == 2) {
            options.on_cancel = [this, q, generation = generation_] {
                if (alive_ && generation == generation_ && broker_ && !in_destruction_) (void)broker_->declare_queue(q);
            };
        }
        auto owner = std::make_shared<std::optional<subscription>>();
        std::shared_ptr<destructor_hook> hook = hooked ? body_hook(q) : nullptr;
        const int generation = generation_;
        const std::string_view target_key = one_of(p_, keys);
        auto callback = [this, does, owner = owns_itself ? owner : nullptr, hook, generation, q,
                         target_key](delivery& d) {
            if (!alive_ || generation != generation_) return;
            ++callbacks_ran_;
            switch (does) {
            case behaviour::nothing: break;
            case behaviour::ack: if (d.pending()) d.ack(); break;
            case behaviour::nack_requeue: if (d.pending()) d.nack(false, true); break;
            case behaviour::nack_drop: if (d.pending()) d.nack(false, false); break;
            case behaviour::reject: if (d.pending()) d.reject(false); break;
            case behaviour::throws: throw callback_failure("callback");
            case behaviour::publish: {
                fuzz_message m;
                m.routing_key = std::string(target_key);
                (void)broker_->publish("", std::move(m));
                break;
            }
            case behaviour::release_self:
                if (owner && *owner) (*owner)->release();
                break;
            case behaviour::delete_queue: (void)broker_->delete_queue(q); break;
            case behaviour::keep: kept_.push_back(std::move(d)); break;
            case behaviour::ack_multiple: if (d.pending()) d.ack(true); break;
            case behaviour::subscribe_other:
                subscriptions_.push_back(broker_->subscribe("q0", [](delivery&) {}));
                break;
            case behaviour::nested_dispatch:
                if (depth_ < 2) {
                    ++depth_;
                    struct leave {
                        int& depth;
                        ~leave() { --depth; }
                    } const guard{depth_};
                    (void)broker_->dispatch(2);
                }
                break;
            case behaviour::count: break;
            }
        };
        attempt("subscribe " + q + " does " + std::to_string(static_cast<int>(does)) + (owns_itself ? " owning itself" : ""),
                [&] {
                    subscription sub = broker_->subscribe(q, callback, options);
                    if (owns_itself) {
                        *owner = std::move(sub); // only the callback keeps it now
                        owned_.push_back(owner);
                        if (p_.flag()) owned_.pop_back(); // and sometimes nothing else holds the callback
                    } else {
                        subscriptions_.push_back(std::move(sub));
                    }
                    return std::string("ok");
                });
    }

    void get() {
        const std::string q(one_of(p_, queue_names));
        const bool manual = p_.flag();
        attempt(std::string("get ") + q + (manual ? " manual" : ""), [&]() -> std::string {
            auto d = broker_->try_get(q, manual ? warren::ack_mode::manual : warren::ack_mode::automatic);
            if (!d) return "empty";
            std::string out = "#" + std::to_string(d->delivery_tag()) + (d->redelivered() ? " redelivered" : "");
            if (manual) kept_.push_back(std::move(*d));
            return out;
        });
    }

    void settle() {
        if (kept_.empty()) return;
        const std::size_t i = p_.pick(kept_.size());
        const std::uint8_t how = p_.byte();
        attempt("settle kept " + std::to_string(i) + " how " + std::to_string(how % 5), [&] {
            delivery& d = kept_[i];
            switch (how % 5) {
            case 0: d.ack(); break;
            case 1: d.ack(true); break;
            case 2: d.nack(true, true); break;
            case 3: d.nack(false, false); break;
            default: d.reject(true); break;
            }
            return std::string("ok");
        });
        if (p_.flag()) {
            // Out of the container before it goes: its message's destructor may publish to
            // a synchronous consumer whose callback keeps its delivery in kept_.
            delivery doomed = std::move(kept_[i]);
            kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(i));
        }
    }

    void handlers() {
        const std::uint8_t which = p_.byte() % 4;
        const int generation = generation_;
        note("handlers " + std::to_string(which));
        switch (which) {
        case 0: broker_->set_error_handler([](const warren::consumer_error&) {}); break;
        case 1: broker_->set_error_handler({}); break;
        case 2:
            broker_->set_return_handler([this, generation, hook = body_hook("q1")](typename broker_type::returned_message& r) {
                if (!alive_ || generation != generation_) return;
                // A returned message republished to the default exchange, as a client might.
                (void)broker_->publish("", std::move(r.message));
            });
            break;
        default: broker_->set_return_handler({}); break;
        }
    }

    /// Reads every handle and the broker's state, as an application would.
    void observe() {
        for (const auto& s : subscriptions_) note("subscription " + name_of(s.queue()) + (s.active() ? " active" : " ended"));
        for (const auto& d : kept_) {
            note("kept #" + std::to_string(d.delivery_tag()) + " " + std::to_string(d.body().text.size()) + " bytes" +
                 (d.pending() ? " pending" : ""));
        }
        for (const auto& pub : publishers_) note("publisher " + pub.exchange());
        const auto c = broker_->stats();
        note("dead letters without exchange " + std::to_string(c.dead_letters_without_exchange) + ", cycles " +
             std::to_string(c.dead_letter_cycles));
    }

    // -- the invariants --------------------------------------------------------------------

    std::string counters() {
        const warren::topology_snapshot s = broker_->snapshot();
        std::string out;
        for (const auto& q : s.queues) {
            const auto& c = q.counters;
            out += name_of(q.name) + ":" + std::to_string(c.enqueued) + "/" + std::to_string(c.acked) + "/" +
                   std::to_string(c.dead_lettered.total()) + "/" + std::to_string(c.dropped.total()) + "/" +
                   std::to_string(c.purged) + "/" + std::to_string(c.ready) + "/" + std::to_string(c.unacked) + " ";
        }
        return out + "\n";
    }

    void check() {
        const warren::topology_snapshot s = broker_->snapshot();
        for (const auto& q : s.queues) {
            if (!q.counters.accounted()) fail("queue " + q.name + " does not account for its messages");
            if (!broker_->has_queue(q.name)) fail("snapshot lists queue " + q.name + " that has_queue denies");
            std::size_t consumers = 0;
            for (const auto& c : s.consumers) consumers += c.queue == q.name ? 1 : 0;
            if (consumers != q.counters.consumers) fail("queue " + q.name + ": consumers do not match its counters");
        }
        for (const auto& x : s.exchanges) {
            if (x.counters.published != x.counters.routed + x.counters.unroutable) fail("exchange " + x.name + " counters");
            if (!broker_->has_exchange(x.name)) fail("snapshot lists exchange " + x.name + " that has_exchange denies");
        }
        for (const auto& b : s.bindings) {
            const bool destination_exists = b.to_exchange ? broker_->has_exchange(b.destination) : broker_->has_queue(b.destination);
            if (!broker_->has_exchange(b.source) || !destination_exists) fail("a binding outlives its source or destination");
        }
    }

    program p_;
    warren::manual_clock clock_;
    std::unique_ptr<broker_type> broker_;
    int generation_ = 0;       // which broker a callback or hook was made for
    bool alive_ = true;        // false once the run is being torn down
    bool in_destruction_ = false;
    int depth_ = 0;            // nested dispatch
    std::size_t hooks_ran_ = 0;
    std::size_t callbacks_ran_ = 0;
    std::vector<subscription> subscriptions_;
    std::vector<std::shared_ptr<std::optional<subscription>>> owned_; // worker handles also kept here
    std::vector<publisher> publishers_;
    std::vector<delivery> kept_;
    std::map<std::string, std::string> generated_;
    std::string story_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (tracing()) std::fprintf(stderr, "single_threaded:\n");
    std::string single;
    {
        run<warren::single_threaded> r(program(data, size));
        single = r.go();
    }
    if (tracing()) std::fprintf(stderr, "multi_threaded:\n");
    std::string multi;
    {
        run<warren::multi_threaded> r(program(data, size));
        multi = r.go();
    }
    if (single != multi) {
        std::fprintf(stderr, "--- single_threaded\n%s--- multi_threaded\n%s", single.c_str(), multi.c_str());
        fail("the two policies tell different stories");
    }
    return 0;
}
